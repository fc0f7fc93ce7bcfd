// Package gaia detects out-of-distribution inputs to a trained image
// classifier from the abnormality of its attribution gradients (GAIA,
// Chen et al., NeurIPS 2023) and with the standard baselines, on LibTorch.
//
// Open a TorchScript model once and score inputs from any goroutine:
//
//	m, err := gaia.Open(ctx, "resnet50.pt", gaia.Options{Detectors: []string{"gaia-z", "msp"}})
//	if err != nil { ... }
//	defer m.Close()
//	res, err := m.ScoreImages(ctx, [][]byte{pngOrJPEG}) // res[0].Scores["gaia-z"]
//
// Every detector reports an OOD score per sample: higher means more
// out-of-distribution. Concurrent calls are gathered into batches of up to
// Options.MaxBatch inputs; a result never depends on the other inputs of
// its batch. OpenGate applies a gate calibrated by gaia calibrate, after
// checking that model, fit, taps and settings are the ones it was
// calibrated with (*MismatchError otherwise); Gated.Check says accept or
// refuse. ScoreDataset scores a whole data spec (package data) as gaia score
// does, and Fit makes the statistics of the feature-based detectors.
//
// Errors are typed: sentinels for conditions (ErrClosed, ErrUnknownDetector,
// ErrUnknownSetting, ErrNeedsFit, ErrQueueFull, ErrNoMetadata,
// ErrInvalidOptions, ErrInvalidGate), types for details (*MismatchError,
// *ImageError, *InputError). Importing the package changes nothing of the
// process; torch.TuneProcess is the tuning the commands apply.
//
// Lower down, a Scorer scores batches on a torch.Module with several
// detectors sharing one forward pass; the definitions are in
// docs/method.md, and each detector is one entry of the registry (a
// det_*.go file of its own; Detectors describes them). Package metrics
// measures how scores separate in- from out-of-distribution data; docs/
// library.md is the whole manual.
package gaia

// Version is the version of this module.
const Version = "0.1.0-dev"
