package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/internal/digest"
	"github.com/gaia-ood/gaia/torch"
)

// defaultWorkloads: the references, every detector of "all", and all of them together.
func defaultWorkloads() []string {
	all, _ := gaia.ParseDetectors("all")
	return append(append([]string{gaia.RefForward, gaia.RefBackwardInput, gaia.RefBackwardParams}, all...), "all")
}

func runSpeed(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("speed", stderr)
	var mf cli.ModelFlags
	mf.Register(fs, cli.OneDevice, "model", "device", "input", "fit")
	model, device, input, fit := &mf.Model, &mf.Device, &mf.Input, &mf.Fit
	settings := gaia.Settings{}
	cli.AddSettingFlags(fs, settings)
	batch := fs.Int("batch", 128, "batch `size`")
	list := fs.String("workloads", "", "comma-separated workloads: detectors, all, and the references forward, forward+backward(input), forward+backward(params) (default: "+strings.Join(defaultWorkloads(), ",")+"; with --fit also the feature-based detectors)")
	seconds := fs.Float64("seconds", 3, "minimum timed `seconds` per workload")
	format := fs.String("format", "table", "table, markdown or json")
	after := fs.Bool("reduce-after", false, "reduce tap gradients after the backward instead of in hooks (to measure what the hooks save)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needLibTorch("speed"); err != nil {
		return err
	}
	if *model == "" {
		return usagef("speed: -model is required")
	}
	if *batch <= 0 || *seconds <= 0 {
		return usagef("speed: -batch and -seconds must be positive")
	}
	if *format != "table" && *format != "markdown" && *format != "json" {
		return usagef("speed: -format %q: want table, markdown or json", *format)
	}
	if err := torch.CheckDevice(*device); err != nil {
		return usageError{err.Error()}
	}
	if *input != "" {
		if _, err := cli.ParseCHW(*input); err != nil {
			return usagef("speed: -input %v", err)
		}
	}
	var chw [3]int
	if *input != "" {
		chw, _ = cli.ParseCHW(*input)
	}
	// The bare module, not a gaia.Model: speed measures each workload on
	// its own scorer, beside the forward and backward alone.
	meta, err := gaia.ReadMeta(*model, gaia.Options{Input: chw})
	if err != nil {
		return err
	}
	m, err := torch.Load(*model, *device)
	if err != nil {
		return err
	}
	defer m.Close()
	scfg := gaia.ScorerConfig{Settings: settings, Std: meta.Std}
	if *fit != "" {
		if scfg.Fit, err = gaia.ReadFit(*fit); err != nil {
			return err
		}
		sha, err := digest.File(*model)
		if err != nil {
			return err
		}
		if err := scfg.Fit.CheckFor(sha, m.Taps()); err != nil {
			return err
		}
	}
	c, h, w := meta.InputSize[0], meta.InputSize[1], meta.InputSize[2]
	m.SetReduceInHooks(!*after)
	x := &torch.Tensor{Shape: []int{*batch, c, h, w}, Data: make([]float32, *batch*c*h*w)}
	rng := rand.New(rand.NewSource(1))
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	// Warm-up: every workload a few times before any is timed, so that the
	// first one timed does not pay for the process's warm-up (allocator
	// growth, thread pools, kernel selection).
	if *list == "" {
		wl := defaultWorkloads()
		if *fit != "" {
			features, _ := gaia.ParseDetectors("features")
			wl = append(wl[:len(wl)-1], append(features, "all")...)
		}
		*list = strings.Join(wl, ",")
	}
	names := strings.Split(*list, ",")
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
		if names[i] == "all" {
			names[i] = gaia.AllDetectorsTogether
		}
		if _, err := gaia.MeasureSpeed(m, names[i], x, scfg, time.Millisecond); err != nil {
			return err
		}
	}
	var rows []gaia.Speed
	floor := 0.0
	for _, name := range names {
		sp, err := gaia.MeasureSpeed(m, name, x, scfg, time.Duration(*seconds*float64(time.Second)))
		if err != nil {
			return err
		}
		if name == gaia.RefBackwardInput {
			floor = sp.Seconds / float64(sp.Iters)
		}
		rows = append(rows, sp)
		fmt.Fprintf(stderr, "%s: %.1f images/s\n", name, sp.ImagesPerSec)
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		return enc.Encode(map[string]any{"libtorch": torch.Version(), "threads": torch.NumThreads(), "device": m.Device(), "results": rows})
	}
	mode := "in hooks"
	if *after {
		mode = "after the backward"
	}
	fmt.Fprintf(stdout, "model %s, input %dx%dx%d, batch %d, %s, LibTorch %s, %d intra-op threads, gradients reduced %s\n\n",
		*model, c, h, w, *batch, m.Device(), torch.Version(), torch.NumThreads(), mode)
	if torch.MallocTuned() {
		fmt.Fprintf(stdout, "glibc malloc keeps freed blocks up to 32 MiB (GAIA_MALLOC=default turns it off)\n\n")
	}
	if torch.BLASTuned() {
		fmt.Fprintf(stdout, "OpenBLAS runs on the calling thread (OPENBLAS_NUM_THREADS=N overrides)\n\n")
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	sep := "\t"
	if *format == "markdown" {
		fmt.Fprintln(stdout, "| workload | images/s | ms/batch | time / fwd+bwd(input) | peak memory MiB |")
		fmt.Fprintln(stdout, "| --- | ---: | ---: | ---: | ---: |")
	} else {
		fmt.Fprintln(tw, "workload\timages/s\tms/batch\ttime / fwd+bwd(input)\tpeak MiB\t")
	}
	for _, r := range rows {
		per := r.Seconds / float64(r.Iters)
		ratio := "-"
		if floor > 0 {
			ratio = fmt.Sprintf("%.2f", per/floor)
		}
		cells := []string{r.Name, fmt.Sprintf("%.1f", r.ImagesPerSec), fmt.Sprintf("%.1f", 1000*per), ratio, fmt.Sprintf("%.1f", float64(r.PeakBytes)/(1<<20))}
		if *format == "markdown" {
			fmt.Fprintf(stdout, "| %s |\n", strings.Join(cells, " | "))
		} else {
			fmt.Fprintln(tw, strings.Join(cells, sep)+sep)
		}
	}
	if *format == "table" {
		return tw.Flush()
	}
	return nil
}
