package gaia

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/internal/digest"
	"github.com/gaia-ood/gaia/torch"
)

// Model is an opened model: one replica per device with the detectors'
// scorer, its metadata and identity, and the batcher that gathers
// concurrent calls into batches. It is safe for concurrent use; nothing of
// it changes after Open. Close frees its device memory.
type Model struct {
	path   string
	opt    Options // normalized
	meta   Meta
	sha    string
	fit    *Fit
	fitSHA string
	config string // ScoreConfig
	tf     *data.Transform

	replicas []*torch.Module
	scorers  []*Scorer
	threads  []int // each replica's own intra-op threads (0: the process's)

	q      *queue
	decode chan struct{} // decode slots of ScoreImages
	done   chan struct{} // closed when every batcher has stopped

	mu        sync.RWMutex // closed, against calls entering
	closed    bool
	calls     sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens the TorchScript model at modelPath with the detectors,
// settings and fit of opt: everything is checked (the options, the
// detectors and settings by name and value, MODEL.json, the fit against the
// model), one replica is loaded per device with its scorer, and each is
// warmed up with a batch of 1 and one of MaxBatch, so that a model that
// cannot score a full batch fails here. ctx bounds the wait between these
// steps.
func Open(ctx context.Context, modelPath string, opt Options) (*Model, error) {
	m, err := prepare(modelPath, opt, allNames())
	if err != nil {
		return nil, err
	}
	if err := m.load(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// prepare is Open without LibTorch: the options checked and normalized,
// the metadata, the model's and the fit's hashes, the transform.
func prepare(modelPath string, opt Options, defaultDetectors []string) (*Model, error) {
	opt, err := opt.normalized(defaultDetectors)
	if err != nil {
		return nil, err
	}
	var needFit []string
	for _, d := range opt.Detectors {
		if det, _ := lookup(d); det.NeedsFit {
			needFit = append(needFit, d)
		}
	}
	if len(needFit) > 0 && opt.Fit == "" {
		return nil, fmt.Errorf("%s: %w (gaia fit makes one)", strings.Join(needFit, ", "), ErrNeedsFit)
	}
	if _, err := torch.Devices(opt.Device, torch.CUDADeviceCount()); err != nil {
		return nil, err
	}
	meta, err := ReadMeta(modelPath, opt)
	if err != nil {
		return nil, err
	}
	m := &Model{path: modelPath, opt: opt, meta: *meta}
	if m.sha, err = digest.File(modelPath); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if opt.Fit != "" {
		if m.fit, err = ReadFit(opt.Fit); err != nil {
			return nil, err
		}
		if m.fitSHA, err = digest.File(opt.Fit); err != nil {
			return nil, fmt.Errorf("fit: %w", err)
		}
	}
	m.config = scoreConfig(opt, m.fitSHA)
	transform := opt.Transform
	if transform == "" {
		transform = meta.Transform
	}
	c, h, w := m.Input()
	if m.tf, err = data.ParseTransform(transform, c, h, w, meta.Mean, meta.Std); err == nil {
		err = m.tf.Feasible(opt.Limits.Bytes) // a transform no image gets through is refused now
	}
	if err != nil {
		return nil, fmt.Errorf("model %s: transform: %w", modelPath, err)
	}
	return m, nil
}

// ReadMeta reads the metadata beside a model file (MODEL.json, MetaPath)
// with opt's Input, Mean and Std in place of its own, checked as MODEL.json
// is; without the file, opt must give the input size (mean 0 and std 1 then
// where it gives none). Nothing is loaded into LibTorch.
func ReadMeta(modelPath string, opt Options) (*Meta, error) {
	if _, err := os.Stat(modelPath); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	meta, err := LoadMeta(modelPath)
	switch {
	case err == nil:
	case errors.Is(err, os.ErrNotExist) && opt.Input != [3]int{}:
		meta = &Meta{}
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("model %s: %w (%w): export the model with scripts/export.py, or give its input size, mean and std", modelPath, ErrNoMetadata, err)
	default:
		return nil, fmt.Errorf("model %s: %w", modelPath, err)
	}
	if err := meta.override(opt); err != nil {
		what := "model metadata " + MetaPath(modelPath)
		if opt.Input != [3]int{} || opt.Mean != nil || opt.Std != nil {
			what = "the input size, mean and std given with " + what
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return meta, nil
}

// InputMeta is the metadata of inputs opt describes without a model: its
// input size, and its mean and std (0 and 1 where it gives none).
func InputMeta(opt Options) (*Meta, error) {
	meta := &Meta{}
	if opt.Input == [3]int{} {
		return nil, fmt.Errorf("%w: no input size", ErrInvalidOptions)
	}
	if err := meta.override(opt); err != nil {
		return nil, fmt.Errorf("the input size, mean and std: %w", err)
	}
	return meta, nil
}

// override puts opt's input size, mean and std into the metadata (mean 0
// and std 1 where neither gives them) and checks the result.
func (meta *Meta) override(opt Options) error {
	if opt.Input != [3]int{} {
		meta.InputSize = opt.Input[:]
	}
	c := 0
	if len(meta.InputSize) == 3 {
		c = meta.InputSize[0]
	}
	for _, o := range []struct {
		v   []float64
		dst *[]float64
		def float64
	}{{opt.Mean, &meta.Mean, 0}, {opt.Std, &meta.Std, 1}} {
		if o.v != nil {
			*o.dst = append([]float64(nil), o.v...)
		} else if *o.dst == nil && c > 0 {
			*o.dst = make([]float64, c)
			for i := range *o.dst {
				(*o.dst)[i] = o.def
			}
		}
	}
	return meta.check()
}

// scoreConfig is one line naming everything besides the model and the data
// that decides a run's scores: the detectors' settings (defaults filled
// in), the input overrides and the fit.
func scoreConfig(opt Options, fitSHA string) string {
	in := ""
	if opt.Input != [3]int{} {
		in = fmt.Sprintf("%dx%dx%d", opt.Input[0], opt.Input[1], opt.Input[2])
	}
	return fmt.Sprintf("%s input=%q mean=%q std=%q fit=%q", opt.Settings.For(opt.Detectors).Canonical(), in,
		formatFloats(opt.Mean), formatFloats(opt.Std), fitSHA)
}

func formatFloats(v []float64) string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = formatSetting(f)
	}
	return strings.Join(parts, ",")
}

// ScoreConfig is the line a run's score configuration is compared by (the
// shards of one job must agree on it), as Model.ScoreConfig gives it, for
// options not yet opened: it reads the fit file's hash, nothing else.
func ScoreConfig(opt Options) (string, error) {
	opt, err := opt.normalized(allNames())
	if err != nil {
		return "", err
	}
	sha := ""
	if opt.Fit != "" {
		if sha, err = digest.File(opt.Fit); err != nil {
			return "", fmt.Errorf("fit: %w", err)
		}
	}
	return scoreConfig(opt, sha), nil
}

// load loads one replica per device with its scorer, warms them up and
// starts their batchers. On an error everything loaded is freed.
func (m *Model) load(ctx context.Context) (err error) {
	devs, err := torch.Devices(m.opt.Device, torch.CUDADeviceCount())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.free()
		}
	}()
	cpus := 0
	for _, d := range devs {
		if d == "cpu" {
			cpus++
		}
	}
	for _, d := range devs {
		if err := ctx.Err(); err != nil {
			return err
		}
		r, err := torch.Load(m.path, d)
		if err != nil {
			return err
		}
		m.replicas = append(m.replicas, r)
		if m.fit != nil {
			if err := m.fit.CheckFor(m.sha, r.Taps()); err != nil {
				return err
			}
		}
		threads := 0
		if cpus > 1 && d == "cpu" {
			threads = max(1, torch.NumThreads()/cpus)
			r.SetThreads(threads)
		}
		if m.opt.Threads > 0 {
			threads = m.opt.Threads
		}
		m.threads = append(m.threads, threads)
		s, err := NewScorer(r, ScorerConfig{Detectors: m.opt.Detectors, Settings: m.opt.Settings, Std: m.meta.Std, Fit: m.fit})
		if err != nil {
			return err
		}
		m.scorers = append(m.scorers, s)
	}
	if !m.opt.SkipWarmup {
		for i, s := range m.scorers {
			if err := m.warmup(ctx, s, m.replicas[i]); err != nil {
				return err
			}
		}
	}
	m.q = newQueue(m.opt.Queue, m.opt.OnQueue)
	m.decode = make(chan struct{}, m.opt.DecodeWorkers)
	m.done = make(chan struct{})
	var wg sync.WaitGroup
	for i := range m.scorers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m.batcher(i)
		}(i)
	}
	go func() {
		wg.Wait()
		close(m.done)
	}()
	return nil
}

// warmup scores a batch of 1 and one of MaxBatch.
func (m *Model) warmup(ctx context.Context, s *Scorer, r *torch.Module) error {
	c, h, w := m.Input()
	buf := make([]float32, m.opt.MaxBatch*c*h*w)
	for _, n := range []int{1, m.opt.MaxBatch} {
		if err := ctx.Err(); err != nil {
			return err
		}
		x := &torch.Tensor{Shape: []int{n, c, h, w}, Data: buf[:n*c*h*w]}
		if _, err := s.Score(x); err != nil {
			return fmt.Errorf("model %s: warm-up on %s at batch %d (max batch %d) failed: %w", m.path, r.Device(), n, m.opt.MaxBatch, err)
		}
	}
	return nil
}

// enter registers a call in flight, or says the model is closed.
func (m *Model) enter() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	m.calls.Add(1)
	return nil
}

func (m *Model) leave() { m.calls.Done() }

// Close refuses new calls (ErrClosed), waits for the calls in flight (they
// are scored), stops the batchers and frees every replica's device memory.
// It is idempotent: later calls wait for the first and return its result.
// A long ScoreDataset or Fit keeps Close waiting: cancel its context first.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		m.calls.Wait()
		if m.q != nil {
			m.q.close()
			<-m.done
		}
		m.closeErr = m.free()
	})
	return m.closeErr
}

// free frees the scorers' buffers and the replicas.
func (m *Model) free() error {
	var errs []error
	for _, s := range m.scorers {
		errs = append(errs, s.Close())
	}
	for _, r := range m.replicas {
		errs = append(errs, r.Close())
	}
	m.scorers, m.replicas = nil, nil
	return errors.Join(errs...)
}

// Path is the model file's path, as given to Open.
func (m *Model) Path() string { return m.path }

// SHA256 is the hex SHA-256 of the model file: its identity, which gates
// and fit files record.
func (m *Model) SHA256() string { return m.sha }

// Meta is the model's metadata (MODEL.json with the options' overrides).
func (m *Model) Meta() Meta { return m.meta.clone() }

// Input is the model's input size, C, H, W.
func (m *Model) Input() (c, h, w int) {
	return m.meta.InputSize[0], m.meta.InputSize[1], m.meta.InputSize[2]
}

// Detectors are the detectors scored, in the order of score files.
func (m *Model) Detectors() []string { return append([]string(nil), m.opt.Detectors...) }

// Settings are the settings the detectors read, defaults filled in.
func (m *Model) Settings() Settings { return m.opt.Settings.For(m.opt.Detectors) }

// Taps are the names of the taps a detector's tap selection chose (nil for
// a detector without one).
func (m *Model) Taps(detector string) []string {
	if len(m.scorers) == 0 {
		return nil
	}
	return m.scorers[0].TapNames(detector)
}

// Uses says which taps each detector reads, a line each, for logs.
func (m *Model) Uses() string {
	if len(m.scorers) == 0 {
		return ""
	}
	return m.scorers[0].Describe()
}

// Warnings are what the detectors' plans had to leave out.
func (m *Model) Warnings() []string {
	if len(m.scorers) == 0 {
		return nil
	}
	return m.scorers[0].Warnings()
}

// Devices names the replicas' devices ("cuda:0,cuda:1").
func (m *Model) Devices() string {
	var d []string
	for _, r := range m.replicas {
		d = append(d, r.Device())
	}
	return strings.Join(d, ",")
}

// Transform describes the preprocessing of ScoreImages.
func (m *Model) Transform() string { return m.tf.Describe() }

// FitFile names the fit file the model scores with and its SHA-256 (nil
// without one).
func (m *Model) FitFile() *FitRef {
	if m.fit == nil {
		return nil
	}
	return &FitRef{Path: m.opt.Fit, SHA256: m.fitSHA}
}

// ScoreConfig is one line naming everything besides the model and the data
// that decides the scores: settings, input overrides and fit. Shards of one
// job must agree on it.
func (m *Model) ScoreConfig() string { return m.config }

// Provenance is what a score file's sidecar (or a shard's manifest) says of
// scores of a data spec made by this model: its identity, the data, the
// detectors, their settings and taps.
func (m *Model) Provenance(spec string, rows int) *ScoreMeta {
	meta := &ScoreMeta{Model: m.path, ModelSHA256: m.sha, Data: spec, Detectors: m.Detectors(),
		Settings: m.Settings(), Taps: map[string][]string{},
		Device: m.Devices(), LibTorch: torch.Version(), Rows: rows, Created: time.Now().UTC().Format(time.RFC3339),
		Arch: m.meta.Arch, ClassNames: append([]string(nil), m.meta.ClassNames...)}
	c, h, w := m.Input()
	meta.Input = []int{c, h, w}
	meta.Fit = m.FitFile()
	for _, d := range m.opt.Detectors {
		if names := m.Taps(d); len(names) > 0 {
			meta.Taps[d] = names
		}
	}
	return meta
}
