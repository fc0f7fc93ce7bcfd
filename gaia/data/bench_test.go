package data

import (
	"context"
	"os"
	"testing"
)

// BenchmarkLoader measures decode + transforms from a folder of JPEGs with
// the loader's workers: GAIA_BENCH_IMAGES names the folder (make bench sets
// ../shared/data/tinyimagenet/test when present).
func BenchmarkLoader(b *testing.B) {
	dir := os.Getenv("GAIA_BENCH_IMAGES")
	if dir == "" {
		b.Skip("GAIA_BENCH_IMAGES is not set: run `make bench`")
	}
	sp, err := ParseSpec("folder:" + dir + ",center-crop=32x32")
	if err != nil {
		b.Fatal(err)
	}
	src, err := Open(sp)
	if err != nil {
		b.Fatal(err)
	}
	tf, err := NewTransform(sp, 3, 32, 32, []float64{0.485, 0.456, 0.406}, []float64{0.229, 0.224, 0.225})
	if err != nil {
		b.Fatal(err)
	}
	n := min(src.Len(), 2048)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := &Loader{Src: src, Transform: tf, BatchSize: 128, End: n}
		if err := l.Run(context.Background(), func(*Batch) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "images/s")
}
