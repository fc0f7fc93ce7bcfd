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

// BenchmarkImageNetDecode measures the ImageNet protocol's two preprocessing
// paths on full-size JPEGs (GAIA_BENCH_IMAGENET names a folder, such as the
// val/ of scripts/make_fake_imagenet.py or of ImageNet), with 1 and 2 decoding
// workers: images/s per core says how many cores a GPU needs.
func BenchmarkImageNetDecode(b *testing.B) {
	dir := os.Getenv("GAIA_BENCH_IMAGENET")
	if dir == "" {
		b.Skip("GAIA_BENCH_IMAGENET is not set (a folder of full-size JPEGs)")
	}
	for _, c := range []struct {
		name, opts string
		hw         int
		mean, std  []float64
	}{
		{"bit480", "resize=480x480", 480, []float64{0.5, 0.5, 0.5}, []float64{0.5, 0.5, 0.5}},
		{"imagenet224", "resize=256,center-crop=224", 224, []float64{0.485, 0.456, 0.406}, []float64{0.229, 0.224, 0.225}},
	} {
		for _, workers := range []int{1, 2} {
			b.Run(c.name+"/workers="+string(rune('0'+workers)), func(b *testing.B) {
				sp, err := ParseSpec("folder:" + dir + "," + c.opts)
				if err != nil {
					b.Fatal(err)
				}
				src, err := Open(sp)
				if err != nil {
					b.Fatal(err)
				}
				tf, err := NewTransform(sp, 3, c.hw, c.hw, c.mean, c.std)
				if err != nil {
					b.Fatal(err)
				}
				n := min(src.Len(), 200)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					l := &Loader{Src: src, Transform: tf, BatchSize: 16, Workers: workers, End: n}
					if err := l.Run(context.Background(), func(*Batch) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "images/s")
			})
		}
	}
}
