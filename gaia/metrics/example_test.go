package metrics_test

import (
	"fmt"

	"github.com/gaia-ood/gaia/gaia/metrics"
)

// A gate's threshold: the smallest that accepts 90% of the in-distribution
// scores, and the fraction it really accepts.
func ExampleCalibrate() {
	id := []float64{0.1, 0.4, 0.2, 0.9, 0.3, 0.5, 0.6, 0.8, 0.7, 2.5}
	threshold, accepted, err := metrics.Calibrate(id, 0.9)
	if err != nil {
		panic(err)
	}
	fmt.Println(threshold, accepted)
	// Output: 0.9 0.9
}

// The ROC curve of OOD scores, OOD positive, from (0, 0) to (1, 1).
func ExampleROCCurve() {
	fpr, tpr := metrics.ROCCurve([]float64{1, 2, 3}, []float64{2.5, 4})
	fmt.Println(fpr)
	fmt.Println(tpr)
	// Output:
	// [0 0 0.3333333333333333 0.3333333333333333 0.6666666666666666 1]
	// [0 0.5 0.5 1 1 1]
}
