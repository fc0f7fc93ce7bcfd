package metrics

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Metrics of one detector on one in-distribution set against one OOD set.
// Scores are OOD scores (higher = more out-of-distribution).
//
// FPR95 follows the papers of the GAIA line (GAIA, ReAct, ASH, GradNorm):
// in-distribution is the positive class; the threshold is the one at which
// at least 95% of ID samples are accepted (the first point of the ROC curve,
// over every distinct score, with TPR >= 0.95), and FPR95 is the fraction of
// OOD samples also accepted there. FPR95OODPositive is OpenOOD's: OOD
// positive, the fraction of ID samples flagged when 95% of OOD is caught.
// AUROC is the area under the ROC curve with ties counted half (the same under
// both conventions). AUPRIn and AUPROut are average precision (sklearn's
// average_precision_score: no interpolation) with ID, resp. OOD, positive.
// DetectionError is min over thresholds of 0.5 (1 - TPR) + 0.5 FPR.
type Metrics struct {
	FPR95            float64 `json:"fpr95"`
	FPR95OODPositive float64 `json:"fpr95_ood_positive"`
	AUROC            float64 `json:"auroc"`
	AUPRIn           float64 `json:"aupr_in"`
	AUPROut          float64 `json:"aupr_out"`
	DetectionError   float64 `json:"detection_error"`
	NumID            int     `json:"n_id"`
	NumOOD           int     `json:"n_ood"`
	// NaNID and NaNOOD count the NaN scores, ranked as the most OOD (tied
	// with +Inf), as a gate rejects them (gaia.NonFinite).
	NaNID  int `json:"nan_id,omitempty"`
	NaNOOD int `json:"nan_ood,omitempty"`

	// Intervals at the evaluation's level (gaia.EvalOptions), when asked
	// for: AUROC's standard error by DeLong and its interval AUC +- z SE
	// (clipped to [0, 1]) on a set, a percentile bootstrap interval for
	// everything else and for every mean.
	AUROCSE            float64     `json:"auroc_se,omitempty"`
	AUROCCI            *[2]float64 `json:"auroc_ci,omitempty"`
	FPR95CI            *[2]float64 `json:"fpr95_ci,omitempty"`
	FPR95OODPositiveCI *[2]float64 `json:"fpr95_ood_positive_ci,omitempty"`
	AUPRInCI           *[2]float64 `json:"aupr_in_ci,omitempty"`
	AUPROutCI          *[2]float64 `json:"aupr_out_ci,omitempty"`
}

// ErrEmptySet is returned when the ID or the OOD side has no scores.
var ErrEmptySet = errors.New("metrics: a side has no samples")

// rocPoint is a threshold's (tp, fp) counts, positives being the class
// whose scores are higher.
type rocPoint struct{ tp, fp int }

// roc returns the cumulative counts at each distinct threshold, from the
// highest score down, as sklearn's roc_curve (drop_intermediate=False) does.
func roc(pos, neg []float64) []rocPoint {
	type sv struct {
		s   float64
		pos bool
	}
	all := make([]sv, 0, len(pos)+len(neg))
	for _, s := range pos {
		all = append(all, sv{s, true})
	}
	for _, s := range neg {
		all = append(all, sv{s, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].s > all[j].s })
	pts := []rocPoint{{0, 0}}
	tp, fp := 0, 0
	for i, v := range all {
		if v.pos {
			tp++
		} else {
			fp++
		}
		if i+1 == len(all) || all[i+1].s != v.s {
			pts = append(pts, rocPoint{tp, fp})
		}
	}
	return pts
}

// fprAtTPR is the FPR at the first ROC point whose TPR reaches tpr.
func fprAtTPR(pts []rocPoint, nPos, nNeg int, tpr float64) float64 {
	for _, p := range pts {
		if float64(p.tp)/float64(nPos) >= tpr-1e-12 {
			return float64(p.fp) / float64(nNeg)
		}
	}
	return 1
}

// averagePrecision is sum_k (R_k - R_{k-1}) P_k over the ROC points.
func averagePrecision(pts []rocPoint, nPos int) float64 {
	ap, prevR := 0.0, 0.0
	for _, p := range pts[1:] {
		if p.tp+p.fp == 0 {
			continue
		}
		r := float64(p.tp) / float64(nPos)
		ap += (r - prevR) * float64(p.tp) / float64(p.tp+p.fp)
		prevR = r
	}
	return ap
}

// rankNaN returns s with NaN as +Inf (the most OOD) and how many there were;
// s itself is copied only when it has NaNs.
func rankNaN(s []float64) ([]float64, int) {
	n := 0
	for _, v := range s {
		if math.IsNaN(v) {
			n++
		}
	}
	if n == 0 {
		return s, 0
	}
	out := make([]float64, len(s))
	for i, v := range s {
		if math.IsNaN(v) {
			v = math.Inf(1)
		}
		out[i] = v
	}
	return out, n
}

// Compute returns the metrics of OOD scores id (in-distribution samples)
// against ood (out-of-distribution samples). NaN scores rank as the most
// OOD, tied with +Inf, and are counted (NaNID, NaNOOD).
func Compute(id, ood []float64) (Metrics, error) {
	if len(id) == 0 {
		return Metrics{}, fmt.Errorf("%w: no in-distribution scores", ErrEmptySet)
	}
	if len(ood) == 0 {
		return Metrics{}, fmt.Errorf("%w: no OOD scores", ErrEmptySet)
	}
	id, nanID := rankNaN(id)
	ood, nanOOD := rankNaN(ood)
	nID, nOOD := len(id), len(ood)
	// OOD positive: OOD scores are higher.
	out := roc(ood, id)
	// ID positive: confidence = -score.
	negID := make([]float64, nID)
	for i, v := range id {
		negID[i] = -v
	}
	negOOD := make([]float64, nOOD)
	for i, v := range ood {
		negOOD[i] = -v
	}
	in := roc(negID, negOOD)

	m := Metrics{NumID: nID, NumOOD: nOOD, NaNID: nanID, NaNOOD: nanOOD}
	m.FPR95 = fprAtTPR(in, nID, nOOD, 0.95)
	m.FPR95OODPositive = fprAtTPR(out, nOOD, nID, 0.95)
	// Trapezoidal area over the OOD-positive ROC (ties count half).
	auc := 0.0
	for i := 1; i < len(out); i++ {
		x0, x1 := float64(out[i-1].fp)/float64(nID), float64(out[i].fp)/float64(nID)
		y0, y1 := float64(out[i-1].tp)/float64(nOOD), float64(out[i].tp)/float64(nOOD)
		auc += (x1 - x0) * (y0 + y1) / 2
	}
	m.AUROC = auc
	m.AUPROut = averagePrecision(out, nOOD)
	m.AUPRIn = averagePrecision(in, nID)
	m.DetectionError = 1
	for _, p := range out {
		tpr := float64(p.tp) / float64(nOOD)
		fpr := float64(p.fp) / float64(nID)
		if e := 0.5*(1-tpr) + 0.5*fpr; e < m.DetectionError {
			m.DetectionError = e
		}
	}
	return m, nil
}

// ROCCurve returns the ROC curve of OOD scores with OOD as the positive
// class: (FPR, TPR) at every distinct threshold, from (0, 0) to (1, 1).
func ROCCurve(id, ood []float64) (fpr, tpr []float64) {
	for _, p := range roc(ood, id) {
		fpr = append(fpr, float64(p.fp)/float64(len(id)))
		tpr = append(tpr, float64(p.tp)/float64(len(ood)))
	}
	return fpr, tpr
}

// Threshold95 is the score threshold at which FPR95 is measured: the
// lowest OOD score that still accepts at least 95% of the in-distribution
// scores id (a sample is accepted when its score is <= the threshold; NaN
// ranks as the most OOD). FPR95 is the fraction of OOD scores <= it; the ID
// samples above it are the false alarms.
func Threshold95(id []float64) float64 {
	if len(id) == 0 {
		return math.NaN()
	}
	s, _ := rankNaN(id)
	s = append([]float64(nil), s...)
	sort.Float64s(s)
	// The first ROC point (ID positive, from the most in-distribution up,
	// whole ties at once) whose TPR reaches 0.95, as fprAtTPR finds it.
	k := int(math.Ceil(0.95*float64(len(s)) - 1e-12*float64(len(s))))
	return s[max(k, 1)-1]
}

// Calibrate returns the smallest threshold that accepts at least tpr of the
// in-distribution scores id (a score is accepted when it is <= the
// threshold), and the fraction it really accepts (ties), NaN counting as
// +Inf (never accepted). A threshold that would be +Inf (more than 1 - tpr of
// the scores NaN or +Inf) is refused: no finite threshold accepts that
// fraction.
func Calibrate(id []float64, tpr float64) (threshold, measured float64, err error) {
	if len(id) == 0 {
		return 0, 0, fmt.Errorf("calibrate: %w", ErrEmptySet)
	}
	if !(tpr > 0 && tpr <= 1) {
		return 0, 0, fmt.Errorf("calibrate: tpr %v must be in (0, 1]", tpr)
	}
	s, nan := rankNaN(id)
	s = append([]float64(nil), s...)
	sort.Float64s(s)
	k := int(math.Ceil(tpr*float64(len(s)) - 1e-9))
	k = max(1, min(len(s), k))
	threshold = s[k-1]
	if math.IsInf(threshold, 0) {
		inf := len(s) - sort.Search(len(s), func(i int) bool { return math.IsInf(s[i], 1) })
		return 0, 0, fmt.Errorf("calibrate: %d of %d in-distribution scores are NaN (%d) or +Inf: no finite threshold accepts %.4g of them", inf, len(s), nan, tpr)
	}
	n := sort.Search(len(s), func(i int) bool { return s[i] > threshold })
	return threshold, float64(n) / float64(len(s)), nil
}
