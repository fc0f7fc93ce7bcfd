package gaia_test

import (
	"fmt"
	"os"

	"github.com/gaia-ood/gaia/gaia"
)

// Evaluate score files (as gaia score writes them, read with ReadScoreFile)
// into a table: every detector present in all of them, against each OOD set.
func ExampleEvaluate() {
	rows := func(scores ...float64) []gaia.ScoreRow {
		var out []gaia.ScoreRow
		for i, s := range scores {
			out = append(out, gaia.ScoreRow{Index: i, Label: -1, Scores: []float64{s}})
		}
		return out
	}
	id := &gaia.ScoreFile{Path: "id.csv", Detectors: []string{"gaia-z"}, Rows: rows(0.1, 0.2, 0.3, 0.4)}
	far := &gaia.ScoreFile{Path: "far.csv", Detectors: []string{"gaia-z"}, Rows: rows(0.5, 0.9, 0.7)}
	near := &gaia.ScoreFile{Path: "near.csv", Detectors: []string{"gaia-z"}, Rows: rows(0.35, 0.15, 0.8)}
	t, err := gaia.Evaluate(id, []gaia.OODSet{{Name: "far", Scores: far}, {Name: "near", Scores: near}}, gaia.EvalOptions{})
	if err != nil {
		panic(err)
	}
	m := t.Rows[0].Sets["near"] // 8 of the 12 (ID, OOD) pairs ranked right; 2 of 3 OOD accepted with all ID
	fmt.Printf("near: AUROC %.3f, FPR95 %.3f\n", m.AUROC, m.FPR95)
	t.Write(os.Stdout, "markdown", false)
	// Output:
	// near: AUROC 0.667, FPR95 0.667
	// | detector | far FPR95↓ | far AUROC↑ | near FPR95↓ | near AUROC↑ | mean FPR95↓ | mean AUROC↑ |
	// | --- | ---: | ---: | ---: | ---: | ---: | ---: |
	// | gaia-z | 0.00 | 100.00 | 66.67 | 66.67 | 33.33 | 83.33 |
	//
	// FPR95: % of OOD samples accepted at the threshold that accepts 95% of ID samples (ID positive, as the GAIA paper).
	// All values in %; scores are OOD scores (higher = more out-of-distribution).
}
