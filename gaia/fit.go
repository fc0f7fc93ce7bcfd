package gaia

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/outfile"
	"github.com/gaia-ood/gaia/internal/safetensors"
	"github.com/gaia-ood/gaia/torch"
)

// FitFormat and FitVersion identify a fit file.
const (
	FitFormat  = "gaia-fit"
	FitVersion = 1
)

// FitMeta says what a fit was made from.
type FitMeta struct {
	Format          string `json:"format"`
	Version         int    `json:"version"`
	Model           string `json:"model"`
	ModelSHA256     string `json:"model_sha256"`
	ClassifierInput string `json:"classifier_input"` // the tap the features are
	Data            string `json:"data"`
	DataSHA256      string `json:"data_sha256"` // data.Fingerprint
	Samples         int    `json:"samples"`
	Skipped         int    `json:"skipped"`
	Labelled        bool   `json:"labelled"`
	Kept            int    `json:"kept"`       // feature vectors kept (KNN's bank, ReAct's percentile, ViM's alpha)
	KNNSample       string `json:"knn_sample"` // how many were asked for
	Seed            int64  `json:"seed"`
	Gaia            string `json:"gaia"`
	LibTorch        string `json:"libtorch"`
	Created         string `json:"created"`
}

// Fit is what the feature-based detectors learn from in-distribution data
// (gaia fit): streaming sums over every sample, in float64, and a seeded
// sample of the feature vectors themselves. Everything a detector derives
// from it (means, covariance, pseudo-inverse, subspace, percentiles) is
// computed in float64 when a scorer is made, and kept for the process.
type Fit struct {
	Meta FitMeta
	Path string // the file it was read from ("" when made in memory)
	K, D int    // classes (logits) and features (the classifier input)
	N    int    // samples

	ClassCount  []float64 // K: samples per true class (when labelled)
	ClassSum    []float64 // K x D: their features' sums
	Sum         []float64 // D: the sum of every feature vector
	Gram        []float64 // D x D: the sum of h h^T
	SumMaxLogit float64
	PredCount   []float64 // K: samples predicted as each class
	PredSoftmax []float64 // K x K: the sums of their softmax

	SampleH        []float32 // M x D: the kept feature vectors
	SampleMaxLogit []float64 // M: their max logits
	M              int

	mu   sync.Mutex
	memo map[string]any
}

// cached computes a derived statistic once per fit and key.
func (f *Fit) cached(key string, compute func() (any, error)) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.memo[key]; ok {
		return v, nil
	}
	v, err := compute()
	if err != nil {
		return nil, err
	}
	if f.memo == nil {
		f.memo = map[string]any{}
	}
	f.memo[key] = v
	return v, nil
}

// Mean is the mean feature vector.
func (f *Fit) Mean() []float64 {
	out := make([]float64, f.D)
	for i, v := range f.Sum {
		out[i] = v / float64(f.N)
	}
	return out
}

// WriteFit writes a fit file (safetensors: the statistics as float64, the
// kept features as float32, the meta as metadata), atomically.
func WriteFit(path string, f *Fit) error {
	meta, err := json.Marshal(f.Meta)
	if err != nil {
		return err
	}
	f64 := func(v []float64, shape ...int) *safetensors.Tensor {
		return &safetensors.Tensor{DType: "F64", Shape: shape, Data: v}
	}
	file := &safetensors.File{Tensors: map[string]*safetensors.Tensor{
		"sum":              f64(f.Sum, f.D),
		"gram":             f64(f.Gram, f.D, f.D),
		"pred_count":       f64(f.PredCount, f.K),
		"pred_softmax":     f64(f.PredSoftmax, f.K, f.K),
		"sample_h":         {DType: "F32", Shape: []int{f.M, f.D}, Data32: f.SampleH},
		"sample_max_logit": f64(f.SampleMaxLogit, f.M),
		"n":                f64([]float64{float64(f.N)}, 1),
		"sum_max_logit":    f64([]float64{f.SumMaxLogit}, 1),
	}, Metadata: map[string]string{"gaia_fit": string(meta)}}
	if f.Meta.Labelled {
		file.Tensors["class_count"] = f64(f.ClassCount, f.K)
		file.Tensors["class_sum"] = f64(f.ClassSum, f.K, f.D)
	}
	b, err := safetensors.Encode(file)
	if err != nil {
		return fmt.Errorf("fit %s: %w", path, err)
	}
	return outfile.WriteFile(path, b)
}

// ReadFit reads a fit file, checking its format, version and shapes.
func ReadFit(path string) (*Fit, error) {
	file, err := safetensors.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	f := &Fit{Path: path}
	raw, ok := file.Metadata["gaia_fit"]
	if !ok {
		return nil, fmt.Errorf("fit %s: not a gaia fit file (no gaia_fit metadata)", path)
	}
	if err := requireKeys([]byte(raw), "format", "version", "model_sha256", "classifier_input", "samples", "labelled"); err != nil {
		return nil, fmt.Errorf("fit %s: metadata: %w", path, err)
	}
	if err := json.Unmarshal([]byte(raw), &f.Meta); err != nil {
		return nil, fmt.Errorf("fit %s: metadata: %w", path, err)
	}
	if f.Meta.Format != FitFormat || f.Meta.Version != FitVersion {
		return nil, fmt.Errorf("fit %s: format %q version %d; this gaia reads %s version %d", path, f.Meta.Format, f.Meta.Version, FitFormat, FitVersion)
	}
	get := func(name string, shape ...int) ([]float64, error) {
		t, ok := file.Tensors[name]
		if !ok {
			return nil, fmt.Errorf("fit %s: no %s", path, name)
		}
		if fmt.Sprint(t.Shape) != fmt.Sprint(shape) || t.DType != "F64" {
			return nil, fmt.Errorf("fit %s: %s is %s %v, want F64 %v", path, name, t.DType, t.Shape, shape)
		}
		return t.Data, nil
	}
	sum, ok := file.Tensors["sum"]
	pc, ok2 := file.Tensors["pred_count"]
	sh, ok3 := file.Tensors["sample_h"]
	if !ok || !ok2 || !ok3 || len(sum.Shape) != 1 || len(pc.Shape) != 1 || len(sh.Shape) != 2 || sh.DType != "F32" {
		return nil, fmt.Errorf("fit %s: missing or malformed sum, pred_count or sample_h", path)
	}
	f.D, f.K, f.M = sum.Shape[0], pc.Shape[0], sh.Shape[0]
	if sh.Shape[1] != f.D {
		return nil, fmt.Errorf("fit %s: sample_h has %d features, sum %d", path, sh.Shape[1], f.D)
	}
	f.SampleH = sh.Data32
	var n, sml []float64
	for _, e := range []struct {
		dst   *[]float64
		name  string
		shape []int
	}{{&f.Sum, "sum", []int{f.D}}, {&f.Gram, "gram", []int{f.D, f.D}}, {&f.PredCount, "pred_count", []int{f.K}},
		{&f.PredSoftmax, "pred_softmax", []int{f.K, f.K}}, {&f.SampleMaxLogit, "sample_max_logit", []int{f.M}},
		{&n, "n", []int{1}}, {&sml, "sum_max_logit", []int{1}}} {
		if *e.dst, err = get(e.name, e.shape...); err != nil {
			return nil, err
		}
	}
	f.N, f.SumMaxLogit = int(n[0]), sml[0]
	if f.Meta.Labelled {
		if f.ClassCount, err = get("class_count", f.K); err != nil {
			return nil, err
		}
		if f.ClassSum, err = get("class_sum", f.K, f.D); err != nil {
			return nil, err
		}
	}
	if f.N <= 0 {
		return nil, fmt.Errorf("fit %s: no samples", path)
	}
	return f, nil
}

// CheckFor refuses a fit made for another model or other taps.
func (f *Fit) CheckFor(modelSHA256 string, taps []torch.Tap) error {
	if f.Meta.ModelSHA256 != modelSHA256 {
		return fmt.Errorf("fit %s was made for model %s (sha256 %.12s), not this one (sha256 %.12s)", f.Path, f.Meta.Model, f.Meta.ModelSHA256, modelSHA256)
	}
	h, ok := findKind(taps, torch.KindClassifierInput)
	if !ok || h.Name != f.Meta.ClassifierInput || h.Channels != f.D {
		return fmt.Errorf("fit %s: made on features %s (%d), the model's classifier input is %s (%d)", f.Path, f.Meta.ClassifierInput, f.D, h.Name, h.Channels)
	}
	return nil
}

// FitConfig configures a Fitter.
type FitConfig struct {
	Total     int    // samples the data has (for a fractional KNNSample)
	KNNSample string // feature vectors to keep: N, a fraction in (0, 1], or all; default 50000
	Seed      int64
	Labelled  bool
}

// MaxFitFeatures bounds the feature dimension a fit accepts: its D x D
// covariance is float64 on the device.
const MaxFitFeatures = 16384

// Fitter accumulates a Fit over batches: one shared forward a batch, the
// D x D sum of h h^T on the model's device (a Gram head), the rest from the
// features handed back. Close frees its device memory (Finish does too).
type Fitter struct {
	mu   sync.Mutex
	m    *torch.Module
	h    torch.Tap
	gram torch.Buffer
	fit  *Fit
	keep int
	seen int
	rng  *rand.Rand
	cfg  FitConfig
	done bool // finished or closed: the Gram buffer is freed
}

// parseKNNSample reads how many feature vectors to keep of total: a count,
// a fraction in (0, 1], or "all".
func parseKNNSample(s string, total int) (int, error) {
	switch s {
	case "":
		return min(total, 50000), nil
	case "all":
		return total, nil
	}
	if strings.Contains(s, ".") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || !(f > 0 && f <= 1) {
			return 0, fmt.Errorf("KNN sample %q: want a count, a fraction in (0, 1] or all", s)
		}
		return max(1, int(math.Round(f*float64(total)))), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("KNN sample %q: want a count, a fraction in (0, 1] or all", s)
	}
	return min(n, total), nil
}

// CheckKNNSample checks a KNN sample size (FitConfig.KNNSample) before any
// work: a count, a fraction in (0, 1], or all.
func CheckKNNSample(s string) error {
	_, err := parseKNNSample(s, 1)
	return err
}

// NewFitter starts a fit on m's classifier input.
func NewFitter(m *torch.Module, cfg FitConfig) (*Fitter, error) {
	h, ok := findKind(m.Taps(), torch.KindClassifierInput)
	if !ok {
		return nil, errors.New("fit: the model has no classifier input tap (see gaia info)")
	}
	w, _, ok := m.Classifier()
	if !ok {
		return nil, errors.New("fit: no classifier weight found in the model (a Linear, or a 1x1 convolution on a pooled map)")
	}
	k, d := w.Shape[0], w.Shape[1]
	if d > MaxFitFeatures {
		return nil, fmt.Errorf("fit: %d features: the %d x %d float64 covariance would take %.1f GiB on the device (at most %d features)",
			d, d, d, float64(d*d*8)/(1<<30), MaxFitFeatures)
	}
	keep, err := parseKNNSample(cfg.KNNSample, cfg.Total)
	if err != nil {
		return nil, err
	}
	gram, err := m.PutF64(make([]float64, d*d), d, d)
	if err != nil {
		return nil, fmt.Errorf("fit: the %d x %d float64 covariance on %s: %w", d, d, m.Device(), err)
	}
	f := &Fit{K: k, D: d, Sum: make([]float64, d), PredCount: make([]float64, k), PredSoftmax: make([]float64, k*k),
		ClassCount: make([]float64, k), ClassSum: make([]float64, k*d)}
	return &Fitter{m: m, h: h, gram: gram, fit: f, keep: keep, rng: rand.New(rand.NewSource(cfg.Seed)), cfg: cfg}, nil
}

// Add accumulates one batch x (normalized inputs) with its labels (-1 where
// unknown; nil without labels).
func (ft *Fitter) Add(x *torch.Tensor, labels []int, sources []string) error {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.done {
		return ErrClosed
	}
	r, err := ft.m.Run(x, []int{ft.h.Index}, nil, torch.Head{Kind: torch.HeadGram, Tap: ft.h.Index,
		Buf: [4]torch.Buffer{ft.gram, torch.NoBuffer, torch.NoBuffer, torch.NoBuffer}})
	if err != nil {
		return err
	}
	z, hv := r.Outputs[0], r.Values[0]
	f := ft.fit
	n, d, k := x.Shape[0], f.D, f.K
	if len(z.Shape) != 2 || z.Shape[1] != k || len(hv.Data) != n*d {
		return fmt.Errorf("fit: logits %v and features %v for a classifier of %d x %d", z.Shape, hv.Shape, k, d)
	}
	p := make([]float64, k)
	for i := 0; i < n; i++ {
		row := hv.Data[i*d : (i+1)*d]
		for _, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				src := fmt.Sprint("sample ", ft.seen)
				if i < len(sources) {
					src = sources[i]
				}
				return fmt.Errorf("fit: %s has non-finite features (%v): the statistics would be NaN", src, v)
			}
		}
		for j, v := range row {
			f.Sum[j] += float64(v)
		}
		if labels != nil && i < len(labels) && labels[i] >= 0 {
			c := labels[i]
			if c >= k {
				return fmt.Errorf("fit: label %d for a model of %d classes", c, k)
			}
			f.ClassCount[c]++
			for j, v := range row {
				f.ClassSum[c*d+j] += float64(v)
			}
		}
		zr := z.Data[i*k : (i+1)*k]
		pred, mx := 0, math.Inf(-1)
		for j, v := range zr {
			if float64(v) > mx {
				pred, mx = j, float64(v)
			}
		}
		var se float64
		for j, v := range zr {
			p[j] = math.Exp(float64(v) - mx)
			se += p[j]
		}
		f.PredCount[pred]++
		for j := range p {
			f.PredSoftmax[pred*k+j] += p[j] / se
		}
		f.SumMaxLogit += mx
		ft.reservoir(row, mx)
		ft.seen++
	}
	f.N = ft.seen
	return nil
}

// reservoir keeps a seeded uniform sample of ft.keep feature vectors
// (Algorithm R): all of them while they fit.
func (ft *Fitter) reservoir(row []float32, maxLogit float64) {
	f := ft.fit
	if f.M < ft.keep {
		f.SampleH = append(f.SampleH, row...)
		f.SampleMaxLogit = append(f.SampleMaxLogit, maxLogit)
		f.M++
		return
	}
	if j := ft.rng.Intn(ft.seen + 1); j < ft.keep {
		copy(f.SampleH[j*f.D:(j+1)*f.D], row)
		f.SampleMaxLogit[j] = maxLogit
	}
}

// Finish collects the device's sums and returns the fit, its meta to be
// completed by the caller (model, data).
func (ft *Fitter) Finish() (*Fit, error) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.done {
		return nil, ErrClosed
	}
	defer ft.release()
	f := ft.fit
	if f.N == 0 {
		return nil, errors.New("fit: no samples")
	}
	g, err := ft.m.Get(ft.gram)
	if err != nil {
		return nil, err
	}
	f.Gram = g.Float64()
	labelled := 0.0
	for _, c := range f.ClassCount {
		labelled += c
	}
	f.Meta = FitMeta{Format: FitFormat, Version: FitVersion, ClassifierInput: ft.h.Name, Samples: f.N, Kept: f.M,
		KNNSample: ft.cfg.KNNSample, Seed: ft.cfg.Seed, Labelled: labelled > 0, Gaia: Version, LibTorch: torch.Version(),
		Created: time.Now().UTC().Format(time.RFC3339)}
	if !f.Meta.Labelled {
		f.ClassCount, f.ClassSum = nil, nil
	}
	return f, nil
}

// Close frees the fitter's device memory; it is idempotent, and later
// calls return ErrClosed.
func (ft *Fitter) Close() error {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if !ft.done {
		ft.release()
	}
	return nil
}

func (ft *Fitter) release() {
	ft.m.Drop(ft.gram)
	ft.done = true
}

// FitOptions say how Model.Fit reads its data and what it keeps.
type FitOptions struct {
	DatasetOptions
	// KNNSample is how many feature vectors to keep for KNN, ReAct's
	// percentile and ViM: a count, a fraction in (0, 1], or all; default
	// 50000. Seed seeds the sample.
	KNNSample string
	Seed      int64
	// NeedLabels refuses a dataset without labels before the pass (the
	// fit of mahalanobis needs them).
	NeedLabels bool
}

// Fit makes the statistics of in-distribution data that the feature-based
// detectors score with: one pass over ds on the model's first replica
// (labels, when ds has them, give the per-class statistics), the meta
// filled in. WriteFit saves it; Options.Fit opens a model with it.
func (m *Model) Fit(ctx context.Context, ds *Dataset, opt FitOptions) (*Fit, error) {
	if err := m.enter(); err != nil {
		return nil, err
	}
	defer m.leave()
	src, tf := ds.Source, ds.Transform
	total := src.Len()
	if total == 0 {
		return nil, fmt.Errorf("fit: %s has no samples", src.Describe())
	}
	_, _, label, err := src.Load(0)
	if err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	labelled := label >= 0
	if !labelled && opt.NeedLabels {
		return nil, fmt.Errorf("fit: mahalanobis needs labels, and %s gives none (a folder with a subfolder per class, or a list with labels; or leave mahalanobis out)", src.Describe())
	}
	l, err := opt.loader(ds, m.opt.Limits)
	if err != nil {
		return nil, err
	}
	ft, err := NewFitter(m.replicas[0], FitConfig{Total: total, KNNSample: opt.KNNSample, Seed: opt.Seed, Labelled: labelled})
	if err != nil {
		return nil, err
	}
	defer ft.Close()
	skipped := 0
	progress := opt.Progress
	if progress == nil {
		progress = func(int) {}
	}
	err = l.Run(ctx, func(b *data.Batch) error {
		skipped += len(b.Skipped)
		progress(b.N + len(b.Skipped))
		if b.N == 0 {
			return nil
		}
		for i, lb := range b.Label {
			if (lb >= 0) != labelled {
				return fmt.Errorf("fit: %s has a label and the first sample not, or the other way round: labels must be all there or all missing", b.Source[i])
			}
		}
		var labels []int
		if labelled {
			labels = b.Label
		}
		return ft.Add(&torch.Tensor{Shape: []int{b.N, tf.C, tf.H, tf.W}, Data: b.X}, labels, b.Source)
	})
	if err != nil {
		return nil, err
	}
	fit, err := ft.Finish()
	if err != nil {
		return nil, err
	}
	fp, err := data.Fingerprint(ds.Spec, src)
	if err != nil {
		return nil, err
	}
	fit.Meta.Model, fit.Meta.ModelSHA256 = m.path, m.sha
	fit.Meta.Data, fit.Meta.DataSHA256, fit.Meta.Skipped = ds.Spec.Raw, fp, skipped
	return fit, nil
}

// pinvSym is the pseudo-inverse of a symmetric d x d matrix, as
// torch.linalg.pinv(a, hermitian=True): eigenvalues of magnitude at most
// d * eps * max |eigenvalue| are dropped.
func pinvSym(a []float64, d int) ([]float64, int, error) {
	w, v, err := torch.EighF64(a, d)
	if err != nil {
		return nil, 0, err
	}
	top := 0.0
	for _, x := range w {
		top = math.Max(top, math.Abs(x))
	}
	tol := float64(d) * 2.220446049250313e-16 * top
	var keep []int
	for c, x := range w {
		if math.Abs(x) > tol {
			keep = append(keep, c)
		}
	}
	r := len(keep)
	if r == 0 {
		return make([]float64, d*d), 0, nil
	}
	// V_r diag(1 / w_r) V_r^T by one product.
	scaled, vt := make([]float64, d*r), make([]float64, r*d)
	for j, c := range keep {
		for i := 0; i < d; i++ {
			scaled[i*r+j] = v[i*d+c] / w[c]
			vt[j*d+i] = v[i*d+c]
		}
	}
	out, err := torch.MatMulF64(scaled, d, r, vt, d)
	return out, r, err
}

// percentile is numpy's np.percentile with its default linear method, in
// numpy's arithmetic (its _lerp), of values, which it sorts.
func percentile(values []float64, p float64) float64 {
	sort.Float64s(values)
	pos := float64(p/100) * float64(len(values)-1)
	lo := math.Floor(pos)
	i := int(lo)
	if i >= len(values)-1 {
		return values[len(values)-1]
	}
	t := pos - lo
	a, b := values[i], values[i+1]
	diff := b - a
	if t >= 0.5 {
		return b - float64(diff*(1-t))
	}
	return a + float64(diff*t)
}
