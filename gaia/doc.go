// Package gaia detects out-of-distribution inputs to a trained image
// classifier from the abnormality of its attribution gradients (GAIA,
// Chen et al., NeurIPS 2023) and with the standard baselines.
//
// Every detector reports an OOD score per sample: higher means more
// out-of-distribution. The definitions are in docs/method.md; each detector
// is one entry of the registry (Detector, in a det_*.go file of its own).
package gaia

// Version is the version of this module.
const Version = "0.1.0-dev"
