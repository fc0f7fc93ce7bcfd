//go:build cgo && !gaia_nolibtorch

package gaia

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gaia-ood/gaia/torch"
)

// BenchmarkLibrary measures what the library adds to LibTorch, side by side
// in one run (make bench; docs/perf.md): Model.ScoreTensor of a batch
// against torch.Module.Run of the same batch with the same passes (the
// queue, the copy of the inputs, the results as maps), at batch 1 and 64,
// in alternating rounds (a lone call of 1 input also waits MaxWait, 2 ms,
// for others to join its batch); and 32 goroutines each scoring one input at a time
// through the batcher against the same inputs scored one call after
// another (the batching gain).
func BenchmarkLibrary(b *testing.B) {
	for _, mdl := range benchModels(b) {
		var c, h, w int
		if _, err := fmt.Sscanf(mdl[2], "%dx%dx%d", &c, &h, &w); err != nil {
			b.Fatalf("%s: input %q: %v", mdl[0], mdl[2], err)
		}
		b.Run(mdl[0], func(b *testing.B) {
			// SmallBatch 1: batches of every size on the same threads as
			// Module.Run's (the one-thread rule for small batches is
			// measured on its own in docs/perf.md).
			m, err := Open(context.Background(), mdl[1], Options{Device: "cpu", Detectors: []string{"gaia-z", "msp"}, MaxBatch: 64,
				Input: [3]int{c, h, w}, MaxWait: 2 * time.Millisecond, SmallBatch: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			rng := rand.New(rand.NewSource(1))
			x := make([]float32, 64*c*h*w)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			s, r := m.scorers[0], m.replicas[0]
			for _, n := range []int{1, 64} {
				xs := x[:n*c*h*w]
				t := &torch.Tensor{Shape: []int{n, c, h, w}, Data: xs}
				raw := func() error { _, err := r.Run(t, s.values, s.passes, s.heads...); return err }
				scorer := func() error { _, err := s.Score(t); return err }
				lib := func() error { _, err := m.ScoreTensor(context.Background(), xs, n); return err }
				var tt [3]time.Duration
				var it [3]int
				span := 300 * time.Millisecond
				if n > 1 {
					span = time.Second
				}
				for round := 0; round < 6; round++ { // alternating, so drift hits all three
					for k, f := range []func() error{raw, scorer, lib} {
						d, i := timeFor(b, f, span)
						tt[k], it[k] = tt[k]+d, it[k]+i
					}
				}
				per := func(k int) float64 { return tt[k].Seconds() / float64(it[k]) }
				libBench(fmt.Sprintf("%s batch %d: Module.Run %.2f ms, Scorer.Score %.2f ms (+ the detectors' arithmetic in Go), ScoreTensor %.2f ms (+ queue, copies, result maps): ScoreTensor / Run = %.3f, ScoreTensor / Score = %.3f",
					mdl[0], n, 1e3*per(0), 1e3*per(1), 1e3*per(2), per(2)/per(0), per(2)/per(1)))
				b.ReportMetric(per(2)/per(0), fmt.Sprintf("lib/run-b%d", n))
				b.ReportMetric(per(2)/per(1), fmt.Sprintf("lib/score-b%d", n))
			}

			// 32 goroutines, one input a call, against one call after another.
			const inputs = 512
			one := func(i int) error {
				k := i % 64
				_, err := m.ScoreTensor(context.Background(), x[k*c*h*w:(k+1)*c*h*w], 1)
				return err
			}
			start := time.Now()
			for i := 0; i < inputs; i++ {
				if err := one(i); err != nil {
					b.Fatal(err)
				}
			}
			seq := time.Since(start)
			start = time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for g := 0; g < 32; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for i := g; i < inputs; i += 32 {
						if err := one(i); err != nil {
							errs <- err
							return
						}
					}
				}(g)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			conc := time.Since(start)
			libBench(fmt.Sprintf("%s %d inputs one a call: one after another %.0f inputs/s, 32 goroutines %.0f inputs/s: batching gain %.2fx",
				mdl[0], inputs, inputs/seq.Seconds(), inputs/conc.Seconds(), seq.Seconds()/conc.Seconds()))
			b.ReportMetric(seq.Seconds()/conc.Seconds(), "batching-gain")
		})
	}
}

// timeFor runs f for at least d (and 3 times), returning the time and count.
func timeFor(b *testing.B, f func() error, d time.Duration) (time.Duration, int) {
	start := time.Now()
	k := 0
	for time.Since(start) < d || k < 3 {
		if err := f(); err != nil {
			b.Fatal(err)
		}
		k++
	}
	return time.Since(start), k
}

func libBench(line string) { fmt.Fprintln(os.Stdout, "library:", line) }
