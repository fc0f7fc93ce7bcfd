package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/progress"
	"github.com/gaia-ood/gaia/torch"
)

// runFit makes a fit file: one pass over labelled in-distribution data,
// accumulating what the feature-based detectors need.
func runFit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fit", stderr)
	f := scoreFlags{settings: gaia.Settings{}}
	f.register(fs)
	spec := fs.String("data", "", "the in-distribution `SPEC` to fit on (labels from a folder per class, a list with labels, CIFAR or MNIST)")
	out := fs.String("out", "", "the fit `file` to write (safetensors)")
	knnSample := fs.String("knn-sample", "", "feature vectors to keep (KNN's bank, ReAct's percentile, ViM's alpha): a `count`, a fraction in (0, 1], or all (default 50000)")
	seed := fs.Int64("seed", 1, "the `seed` of the kept sample when the data has more vectors than it keeps")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needLibTorch("fit"); err != nil {
		return err
	}
	if f.Model == "" || *spec == "" || *out == "" {
		return usagef("fit: -model, -data and -out are required")
	}
	if f.batch <= 0 {
		return usagef("fit: -batch must be positive")
	}
	if err := f.check("fit"); err != nil {
		return err
	}
	if f.detectors == "all" { // the flag's default: the detectors a fit is for
		f.detectors = "features"
	}
	dets, err := gaia.ParseDetectors(f.detectors)
	if err != nil {
		return usagef("fit: -detectors: %v", err)
	}
	if _, err := data.ParseSpec(*spec); err != nil {
		return usageError{err.Error()}
	}
	if err := gaia.CheckKNNSample(*knnSample); err != nil {
		return usagef("fit: -knn-sample: %v", err)
	}
	devs, err := torch.Devices(f.Device, torch.CUDADeviceCount())
	if err != nil {
		return usageError{err.Error()}
	}
	if err := outfile.Check(*out); err != nil { // before the pass, not after it
		return fmt.Errorf("fit: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A fit runs on one device and reads only the forward: msp, the
	// cheapest detector, is what the model is opened with.
	opt := f.options([]string{"msp"})
	opt.Device, opt.Fit = devs[0], ""
	model, err := gaia.Open(ctx, f.Model, opt)
	if err != nil {
		return err
	}
	defer model.Close()
	ds, err := model.Dataset(*spec)
	if err != nil {
		return err
	}
	var progressW io.Writer = stderr
	if f.quiet {
		progressW = nil
	}
	if progressW != nil {
		fmt.Fprintf(stderr, "fit: model %s on %s; data %s; %s\n", f.Model, model.Devices(), ds.Source.Describe(), ds.Transform.Describe())
	}
	p := progress.New(progressW, "fit", ds.Source.Len())
	fit, err := model.Fit(ctx, ds, gaia.FitOptions{DatasetOptions: f.datasetOptions(p.Add), KNNSample: *knnSample, Seed: *seed,
		NeedLabels: slices.Contains(dets, "mahalanobis")})
	p.Finish()
	if err != nil {
		return interrupted(err, fmt.Sprintf("nothing was written to %s", *out))
	}
	if err := gaia.WriteFit(*out, fit); err != nil {
		return err
	}
	classes := 0
	for _, c := range fit.ClassCount {
		if c > 0 {
			classes++
		}
	}
	fmt.Fprintf(stdout, "fit: %d samples (%d classes with samples, %d skipped) of %d features; kept %d feature vectors; wrote %s\n",
		fit.N, classes, fit.Meta.Skipped, fit.D, fit.M, *out)
	return nil
}
