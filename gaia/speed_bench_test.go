//go:build cgo && !gaia_nolibtorch

package gaia

import (
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/gaia-ood/gaia/torch"
)

// benchModels reads GAIA_BENCH_MODELS, "name=path:CxHxW,...", as `make bench`
// sets it.
func benchModels(b *testing.B) [][3]string {
	env := os.Getenv("GAIA_BENCH_MODELS")
	if env == "" {
		b.Skip("GAIA_BENCH_MODELS is not set: run `make bench`")
	}
	var out [][3]string
	for _, item := range strings.Split(env, ",") {
		name, rest, ok1 := strings.Cut(item, "=")
		path, chw, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			b.Fatalf("GAIA_BENCH_MODELS item %q: want name=path:CxHxW", item)
		}
		out = append(out, [3]string{name, path, chw})
	}
	return out
}

var (
	benchMu      sync.Mutex
	benchResults = map[string]float64{} // "model/batch/workload" -> seconds per batch
)

var benchWorkloads = []string{RefForward, RefBackwardInput, RefBackwardParams,
	"gaia-z", "gaia-a", "msp", "maxlogit", "energy", "odin", "gradnorm",
	"mahalanobis", "react", "knn", "vim", "ash", "dice", "klm", AllDetectorsTogether}

// benchFitSize is the fit of the benchmark's feature-based detectors: this
// many random inputs, every feature vector kept (KNN's bank).
const benchFitSize = 2048

// benchFit fits m on benchFitSize random inputs of c x h x w, with labels
// cycling through the classes.
func benchFit(b *testing.B, m *torch.Module, c, h, w int) *Fit {
	ft, err := NewFitter(m, FitConfig{Total: benchFitSize, KNNSample: "all", Labelled: true})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(2))
	const batch = 128
	x := &torch.Tensor{Shape: []int{batch, c, h, w}, Data: make([]float32, batch*c*h*w)}
	labels := make([]int, batch)
	wt, _, _ := m.Classifier()
	for lo := 0; lo < benchFitSize; lo += batch {
		for i := range x.Data {
			x.Data[i] = float32(rng.NormFloat64())
		}
		for i := range labels {
			labels[i] = (lo + i) % wt.Shape[0]
		}
		if err := ft.Add(x, labels, nil); err != nil {
			b.Fatal(err)
		}
	}
	f, err := ft.Finish()
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkDetectors times every detector, all of them together and the
// bare references at batch 1, 32 and 128, reporting images/s; TestMain
// prints the ratios to the references measured in the same run. The
// feature-based detectors use a fit of benchFitSize random inputs (KNN: a
// bank of that many vectors).
func BenchmarkDetectors(b *testing.B) {
	for _, mdl := range benchModels(b) {
		var c, h, w int
		if _, err := fmt.Sscanf(mdl[2], "%dx%dx%d", &c, &h, &w); err != nil {
			b.Fatalf("%s: input %q: %v", mdl[0], mdl[2], err)
		}
		m, err := torch.Load(mdl[1], "cpu")
		if err != nil {
			b.Fatal(err)
		}
		fit := benchFit(b, m, c, h, w)
		for _, batch := range []int{1, 32, 128} {
			x := &torch.Tensor{Shape: []int{batch, c, h, w}, Data: make([]float32, batch*c*h*w)}
			rng := rand.New(rand.NewSource(1))
			for i := range x.Data {
				x.Data[i] = float32(rng.NormFloat64())
			}
			for _, wl := range benchWorkloads {
				b.Run(fmt.Sprintf("%s/b%d/%s", mdl[0], batch, wl), func(b *testing.B) {
					run, done, err := workload(m, wl, x, ScorerConfig{Fit: fit})
					if err != nil {
						b.Fatal(err)
					}
					defer done()
					if err := run(); err != nil { // warm-up
						b.Fatal(err)
					}
					b.ResetTimer()
					start := time.Now()
					for i := 0; i < b.N; i++ {
						if err := run(); err != nil {
							b.Fatal(err)
						}
					}
					per := time.Since(start).Seconds() / float64(b.N)
					b.ReportMetric(float64(batch)/per, "images/s")
					benchMu.Lock()
					benchResults[fmt.Sprintf("%s/b%d/%s", mdl[0], batch, wl)] = per
					benchMu.Unlock()
				})
			}
		}
		m.Close()
	}
}

// printBenchSummary writes the ratios of every workload to the references.
func printBenchSummary() {
	benchMu.Lock()
	defer benchMu.Unlock()
	if len(benchResults) == 0 {
		return
	}
	groups := map[string]bool{}
	for k := range benchResults {
		groups[k[:strings.LastIndexByte(k, '/')]] = true
	}
	var keys []string
	for g := range groups {
		keys = append(keys, g)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "\nmodel/batch\tworkload\timages/s\t/ forward\t/ fwd+bwd(input)\t/ fwd+bwd(params)\t/ gaia-z\t\n")
	for _, g := range keys {
		ref := func(wl string) float64 { return benchResults[g+"/"+wl] }
		batch := 1
		fmt.Sscanf(g[strings.LastIndexByte(g, '/')+2:], "%d", &batch)
		for _, wl := range benchWorkloads {
			per, ok := benchResults[g+"/"+wl]
			if !ok {
				continue
			}
			ratio := func(r float64) string {
				if r == 0 {
					return "-"
				}
				return fmt.Sprintf("%.2f", per/r)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t\n", g, wl, float64(batch)/per,
				ratio(ref(RefForward)), ratio(ref(RefBackwardInput)), ratio(ref(RefBackwardParams)), ratio(ref("gaia-z")))
		}
	}
	tw.Flush()
	fmt.Printf("(time per batch divided by the reference's, same run; peak RSS of the process: %.0f MB)\n", float64(peakRSS())/1e6)
}
