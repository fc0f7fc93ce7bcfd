//go:build cgo && !gaia_nolibtorch

package gaia_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"sort"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/metrics"
)

// exampleImages are n seeded 28x28 gray PNGs, as an upload would be.
func exampleImages(n int) [][]byte {
	var out [][]byte
	for s := 0; s < n; s++ {
		im := image.NewGray(image.Rect(0, 0, 28, 28))
		for y := 0; y < 28; y++ {
			for x := 0; x < 28; x++ {
				v := uint8((x*7 + y*13 + s*31) % 40)
				if d := x - 8 - s%12; d > -2 && d < 2 {
					v = 250
				}
				im.SetGray(x, y, color.Gray{v})
			}
		}
		var b bytes.Buffer
		if err := png.Encode(&b, im); err != nil {
			log.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	return out
}

// Open a model once, then score uploaded image bytes from any goroutine.
func ExampleOpen() {
	ctx := context.Background()
	m, err := gaia.Open(ctx, "../models/mnist_resnet.pt", gaia.Options{Detectors: []string{"gaia-z", "msp"}})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	results, err := m.ScoreImages(ctx, exampleImages(3))
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range results {
		z := r.Scores["gaia-z"] // higher = more out-of-distribution
		fmt.Println(len(r.Scores), "scores; gaia-z finite:", !math.IsNaN(z) && !math.IsInf(z, 0), "; class named:", r.Class != "")
	}
	// Output:
	// 2 scores; gaia-z finite: true ; class named: true
	// 2 scores; gaia-z finite: true ; class named: true
	// 2 scores; gaia-z finite: true ; class named: true
}

// Apply a calibrated gate: here one made on the spot from ten images' GAIA-Z
// scores, accepting 80% of them (gaia calibrate writes gate files;
// gaia.LoadGate reads them).
func ExampleOpenGate() {
	ctx := context.Background()
	path := "../models/mnist_resnet.pt"
	images := exampleImages(10)

	m, err := gaia.Open(ctx, path, gaia.Options{Detectors: []string{"gaia-z"}})
	if err != nil {
		log.Fatal(err)
	}
	res, err := m.ScoreImages(ctx, images)
	m.Close()
	if err != nil {
		log.Fatal(err)
	}
	var scores []float64
	for _, r := range res {
		scores = append(scores, r.Scores["gaia-z"])
	}
	threshold, _, err := metrics.Calibrate(scores, 0.8)
	if err != nil {
		log.Fatal(err)
	}
	gate := &gaia.Gate{Detector: "gaia-z", Threshold: threshold, ModelSHA256: m.SHA256()}

	g, err := gaia.OpenGate(ctx, path, gate, gaia.Options{})
	if err != nil {
		log.Fatal(err) // a *gaia.MismatchError for a gate of another model, fit, taps or settings
	}
	defer g.Close()
	verdicts, err := g.Check(ctx, images)
	if err != nil {
		log.Fatal(err)
	}
	accepted := 0
	for _, v := range verdicts {
		if v.Accept {
			accepted++
		}
	}
	sort.Float64s(scores)
	fmt.Printf("%d of %d accepted; the two highest scores rejected: %v\n", accepted, len(images), threshold < scores[8])
	// Output:
	// 8 of 10 accepted; the two highest scores rejected: true
}
