// Package metrics measures how well OOD scores separate in-distribution
// samples from out-of-distribution ones, as the papers of the GAIA line and
// OpenOOD report it: FPR at 95% TPR (both conventions), AUROC, AUPR-In,
// AUPR-Out and the detection error (Compute), the ROC curve, the FPR95
// threshold, and the calibration of a gate's threshold (Calibrate).
//
// Scores are OOD scores: higher means more out-of-distribution. NaN ranks
// as the most OOD, tied with +Inf, and is counted. The package is pure Go,
// without LibTorch; docs/method.md gives every definition.
package metrics
