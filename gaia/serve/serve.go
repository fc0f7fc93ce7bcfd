// Package serve is an out-of-distribution gate over HTTP: a handler that
// scores images (or tensors) with a model's detectors, gathers concurrent
// requests into batches, and answers each with its prediction, its scores and
// the decision of a gate calibrated by `gaia calibrate`.
//
//	s, err := serve.New(serve.Config{Model: "model.pt", Gate: "gate.json"})
//	...
//	http.Handle("/", s) // POST /v1/score, /healthz, /readyz, /metrics
//	defer s.Close()
package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
	"github.com/gaia-ood/gaia/torch"
)

// Config configures a Server. Zero values take the defaults.
type Config struct {
	Model  string // TorchScript file; MODEL.json beside it gives input size, mean and std
	Device string // auto (default), cpu, cuda, cuda:N
	// Gate is a gate file from `gaia calibrate` (optional). Its detector is
	// always scored, with its taps; its model hash must match Model's.
	Gate string
	// Detectors to score besides the gate's (default: the gate's alone, or
	// gaia-z without a gate).
	Detectors []string
	// Transform is the image preprocessing as data spec options
	// ("resize=32x32", "resize=256,center-crop=224"); default the gate's
	// (the calibration data's), else MODEL.json's, else none: images must
	// have the model's size.
	Transform string
	// Settings are detector settings (gaia.Settings, by flag name); the
	// gate's detector takes the gate's own, as calibrated.
	Settings gaia.Settings
	// Fit is a fit file (gaia fit) for the detectors that need one; default
	// the gate's.
	Fit string

	MaxBatch  int           // inputs per batch (default 32)
	MaxWait   time.Duration // how long a batch waits to fill (default 5ms)
	Queue     int           // inputs waiting at most (default 16 x MaxBatch)
	MaxInputs int           // inputs per request (default MaxBatch x 4, at most Queue)
	MaxBytes  int64         // request body (default 32 MiB)
	MaxPixels int64         // declared image size (default 4096 x 4096)
	// MaxImageBytes bounds the memory one image takes decoded, counting its
	// channels and bit depth as the decoder holds them (data.DecodedBytes):
	// default 128 MiB. At most DecodeWorkers images are decoded at once, so
	// decoding holds at most DecodeWorkers x MaxImageBytes.
	MaxImageBytes int64
	// BodyMemory bounds the request bodies held at once, counted as they
	// arrive (default 16 x MaxBytes); past it a request gets 503.
	BodyMemory int64
	Timeout    time.Duration // per request, queue and scoring (default 30s)
	// ReadTimeout is how long a request's body may take to arrive (default
	// 20s): a client that trickles its body is cut off then (408), and never
	// holds a decode slot, which is taken only once the body has arrived.
	ReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for this long (default
	// 30s; HTTPServer's).
	IdleTimeout time.Duration
	// Threads are LibTorch's intra-op threads for batches (default: the
	// process's, every core); batches of fewer than SmallBatch inputs run on
	// one thread, which on the CPU cuts their tail latency (docs/perf.md).
	Threads    int
	SmallBatch int // default 4; 1 turns the one-thread rule off
	// DecodeWorkers bounds concurrent image decodes (default: the CPUs).
	DecodeWorkers int

	Logger *slog.Logger // default slog.Default()
}

// Server is an http.Handler serving /v1/score, /healthz, /readyz and /metrics.
type Server struct {
	cfg     Config
	log     *slog.Logger
	model   *gaia.Model
	mod     *torch.Module
	scorer  *gaia.Scorer
	gate    *gaia.Gate
	dec     *decoder
	labels  []string
	modelID string

	q       *queue
	decode  chan struct{}
	bodies  *budget
	mux     *http.ServeMux
	metrics *metrics

	ready     atomic.Bool
	closing   atomic.Bool
	warmErr   atomic.Pointer[error] // the warm-up's error, if it failed
	warmed    chan struct{}         // closed when the warm-up has ended
	closeOnce sync.Once
	done      chan struct{} // closed when the batcher has stopped
	closeErr  error

	beforeBatch func()
}

// New loads the model and the gate, checks that they belong together, and
// starts the batcher; the model is warmed up in the background (Ready).
func New(cfg Config) (*Server, error) { return newServer(cfg, nil) }

// newServer is New with a hook the batcher calls before each batch (tests
// hold it to fill the queue).
func newServer(cfg Config, beforeBatch func()) (*Server, error) {
	if cfg.Model == "" {
		return nil, errors.New("serve: no model")
	}
	if cfg.Device == "" {
		cfg.Device = "auto"
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 32
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 5 * time.Millisecond
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 16 * cfg.MaxBatch
	}
	if cfg.MaxInputs <= 0 {
		cfg.MaxInputs = 4 * cfg.MaxBatch
	}
	cfg.MaxInputs = min(cfg.MaxInputs, cfg.Queue)
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 32 << 20
	}
	if cfg.MaxPixels <= 0 {
		cfg.MaxPixels = 4096 * 4096
	}
	if cfg.MaxImageBytes <= 0 {
		cfg.MaxImageBytes = 128 << 20
	}
	if cfg.BodyMemory <= 0 {
		cfg.BodyMemory = 16 * cfg.MaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 20 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.SmallBatch <= 0 {
		cfg.SmallBatch = 4
	}
	if cfg.DecodeWorkers <= 0 {
		cfg.DecodeWorkers = runtime.NumCPU()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, beforeBatch: beforeBatch, decode: make(chan struct{}, cfg.DecodeWorkers), done: make(chan struct{}), warmed: make(chan struct{}),
		bodies: &budget{limit: cfg.BodyMemory}}

	if cfg.Device == "cuda:all" || strings.Contains(cfg.Device, ",") {
		return nil, fmt.Errorf("serve: device %q: a server runs one model replica; name one device (run one server per GPU)", cfg.Device)
	}
	mc := gaia.ModelConfig{Path: cfg.Model, Device: cfg.Device, Detectors: cfg.Detectors, Settings: cfg.Settings.Clone(), Fit: cfg.Fit}
	if mc.Settings == nil {
		mc.Settings = gaia.Settings{}
	}
	var g *gaia.Gate
	if cfg.Gate != "" {
		var err error
		if g, err = gaia.LoadGate(cfg.Gate); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		if mc.Fit == "" && g.Fit != nil {
			mc.Fit = g.Fit.Path
		}
	}
	model, err := gaia.ReadModel(mc)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	meta := model.Meta
	s.labels, s.modelID = meta.ClassNames, model.SHA256
	transform := cfg.Transform
	if g != nil {
		if g.Fit != nil && g.Fit.SHA256 != model.FitSHA {
			return nil, fmt.Errorf("serve: gate %s was calibrated with fit %s (sha256 %.12s), not with %q (sha256 %.12s)",
				cfg.Gate, g.Fit.Path, g.Fit.SHA256, mc.Fit, model.FitSHA)
		}
		if g.ModelSHA256 != "" && g.ModelSHA256 != model.SHA256 {
			return nil, fmt.Errorf("serve: gate %s was calibrated on %s (sha256 %.12s), not on %s (sha256 %.12s)",
				cfg.Gate, g.Model, g.ModelSHA256, cfg.Model, model.SHA256)
		}
		s.gate = g
		// The gate's detector first, computed as it was calibrated.
		dets := []string{g.Detector}
		for _, d := range mc.Detectors {
			if d != g.Detector {
				dets = append(dets, d)
			}
		}
		model.Config.Detectors = dets
		for k, v := range g.Settings {
			model.Config.Settings[k] = v
		}
		if transform == "" {
			transform = g.Transform
		}
	} else if len(mc.Detectors) == 0 {
		model.Config.Detectors = []string{gaia.GAIAZ}
	}
	if transform == "" {
		transform = meta.Transform
	}
	c, h, w := model.Input()
	tf, err := data.ParseTransform(transform, c, h, w, meta.Mean, meta.Std)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.dec = &decoder{shape: shape{c, h, w}, transform: tf, maxPixels: cfg.MaxPixels, maxBytes: cfg.MaxImageBytes, maxInputs: cfg.MaxInputs}

	if err := model.Load(); err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.model, s.mod, s.scorer = model, model.Replicas[0], model.Scorer()
	if s.gate != nil {
		if err := checkGateTaps(s.gate, s.scorer); err != nil {
			model.Close()
			return nil, fmt.Errorf("serve: gate %s: %w", cfg.Gate, err)
		}
	}
	s.metrics = newMetrics(cfg.MaxBatch)
	s.q = newQueue(cfg.Queue, func(n int) { s.metrics.queueDepth.Set(float64(n)) })
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/score", s.handleScore)
	s.mux.HandleFunc("/v1/score", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		s.writeError(w, r, time.Now(), &requestError{http.StatusMethodNotAllowed, "use POST"})
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	s.mux.HandleFunc("GET /readyz", s.handleReady)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.log.Info("model loaded", "model", cfg.Model, "device", s.mod.Device(), "detectors", s.scorer.Detectors(),
		"transform", tf.Describe(), "gate", cfg.Gate, "max_batch", cfg.MaxBatch, "max_wait", cfg.MaxWait, "queue", cfg.Queue)
	go s.run()
	return s, nil
}

// checkGateTaps refuses a scorer whose taps differ from the gate's.
func checkGateTaps(g *gaia.Gate, s *gaia.Scorer) error {
	if len(g.Taps) == 0 {
		return nil
	}
	taps := s.TapNames(g.Detector)
	if len(taps) != len(g.Taps) {
		return fmt.Errorf("calibrated with %d taps (%s), the model gives %d (%s)", len(g.Taps), brief(g.Taps), len(taps), brief(taps))
	}
	for i, t := range taps {
		if t != g.Taps[i] {
			return fmt.Errorf("calibrated with tap %s, the model gives %s", g.Taps[i], t)
		}
	}
	return nil
}

// brief lists at most four names.
func brief(names []string) string {
	if len(names) > 4 {
		return strings.Join(names[:4], ", ") + fmt.Sprintf(", ... %d more", len(names)-4)
	}
	return strings.Join(names, ", ")
}

// Ready reports whether the model is loaded and warmed up and the server is
// not shutting down.
func (s *Server) Ready() bool { return s.ready.Load() && !s.closing.Load() }

// WaitReady waits for the warm-up (a batch of 1 and one of MaxBatch) and
// returns its error: a model that cannot score a full batch (out of memory
// at MaxBatch, a forward that raises) fails here, and the server then
// answers every score request with 503 and the error, and never reports
// ready. gaia serve exits with it.
func (s *Server) WaitReady(ctx context.Context) error {
	select {
	case <-s.warmed:
	case <-ctx.Done():
		return ctx.Err()
	}
	if e := s.warmErr.Load(); e != nil {
		return *e
	}
	return nil
}

// HTTPServer is an http.Server for s with the timeouts a public listener
// needs: headers within 10s, bodies within ReadTimeout (the handler sets
// that deadline itself, so an embedder's own http.Server gets it too),
// answers within ReadTimeout + Timeout + 10s, and keep-alive connections
// closed after IdleTimeout. On SIGTERM, http.Server.Shutdown then waits at
// most for those deadlines.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: s.cfg.IdleTimeout,
		WriteTimeout: s.cfg.ReadTimeout + s.cfg.Timeout + 10*time.Second}
}

// Detectors are the detectors scored for each input, gate's first.
func (s *Server) Detectors() []string { return s.scorer.Detectors() }

// Registry is the server's Prometheus registry (what /metrics serves), for
// embedders that gather it elsewhere.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// ServeHTTP routes to the endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops taking requests, scores those already queued, then frees the
// model. Requests in flight get their answers; new ones get 503. It waits
// for the batcher and is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.q.close()
		<-s.done
		s.closeErr = s.model.Close()
		s.log.Info("server closed")
	})
	return s.closeErr
}

// run warms the model up, then scores batches until the queue closes.
func (s *Server) run() {
	defer close(s.done)
	start := time.Now()
	per := s.dec.shape.size()
	buf := make([]float32, s.cfg.MaxBatch*per)
	for _, n := range []int{1, s.cfg.MaxBatch} {
		x := &torch.Tensor{Shape: []int{n, s.dec.shape.c, s.dec.shape.h, s.dec.shape.w}, Data: buf[:n*per]}
		if _, err := s.scorer.Score(x); err != nil {
			err = fmt.Errorf("serve: warm-up at batch %d (max batch %d) failed: %w", n, s.cfg.MaxBatch, err)
			s.log.Error("warm-up failed: not ready", "batch", n, "err", err)
			s.warmErr.Store(&err)
			break
		}
	}
	failed := s.warmErr.Load()
	if failed == nil {
		s.ready.Store(true)
		s.log.Info("ready", "warmup", time.Since(start).Round(time.Millisecond))
	}
	close(s.warmed)
	var batch []segment
	for {
		var ok bool
		batch, ok = s.q.gather(batch[:0], s.cfg.MaxBatch, s.cfg.MaxWait)
		if !ok {
			return
		}
		if failed != nil { // requests that raced the warm-up
			for _, sg := range batch {
				sg.j.complete(sg.from, nil, &requestError{http.StatusServiceUnavailable, (*failed).Error()})
			}
			continue
		}
		if s.beforeBatch != nil {
			s.beforeBatch()
		}
		s.score(batch, buf)
	}
}

// score runs one batch and hands each job its outputs.
func (s *Server) score(batch []segment, buf []float32) {
	per := s.dec.shape.size()
	n := 0
	for _, sg := range batch {
		n += copy(buf[n*per:], sg.j.x[sg.from*per:sg.to*per]) / per
	}
	if n < s.cfg.SmallBatch && !strings.HasPrefix(s.mod.Device(), "cuda") {
		s.mod.SetThreads(1)
	} else {
		s.mod.SetThreads(s.cfg.Threads)
	}
	t0 := time.Now()
	x := &torch.Tensor{Shape: []int{n, s.dec.shape.c, s.dec.shape.h, s.dec.shape.w}, Data: buf[:n*per]}
	bs, err := s.scorer.Score(x)
	s.metrics.batchSize.Observe(float64(n))
	s.metrics.batchSeconds.Observe(time.Since(t0).Seconds())
	if err != nil {
		s.log.Error("batch failed", "inputs", n, "err", err)
	}
	i := 0
	for _, sg := range batch {
		if err != nil {
			sg.j.complete(sg.from, nil, fmt.Errorf("scoring failed: %w", err))
			continue
		}
		outs := make([]output, sg.to-sg.from)
		for k := range outs {
			outs[k] = output{pred: bs.Pred[i], prob: bs.Prob[i], scores: bs.Sample(i)}
			i++
		}
		sg.j.complete(sg.from, outs, nil)
	}
}

// Response is the answer to POST /v1/score.
type Response struct {
	Model     string   `json:"model_sha256"`
	Detectors []string `json:"detectors"`
	Results   []Result `json:"results"`
}

// Result is one input's answer.
type Result struct {
	Index       int              `json:"index"`
	Name        string           `json:"name,omitempty"`
	Class       int              `json:"class"`
	Label       string           `json:"label,omitempty"`
	Probability Score            `json:"probability"` // NaN where the model's output was
	Scores      map[string]Score `json:"scores"`
	Gate        *Decision        `json:"gate,omitempty"`
}

// Decision is the gate's verdict on one input: OOD when its score is above
// the threshold.
type Decision struct {
	Detector  string  `json:"detector"`
	Score     Score   `json:"score"`
	Threshold float64 `json:"threshold"`
	OOD       bool    `json:"ood"`
}

// Score is a detector score; JSON has no infinities, so +Inf (GAIA-A when
// the output gradient is zero), -Inf and NaN are written as strings.
type Score float64

// MarshalJSON writes finite scores as numbers and the others as "+Inf",
// "-Inf" or "NaN".
func (v Score) MarshalJSON() ([]byte, error) {
	f := float64(v)
	switch {
	case math.IsInf(f, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Inf"`), nil
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Score) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"+Inf"`:
		*v = Score(math.Inf(1))
	case `"-Inf"`:
		*v = Score(math.Inf(-1))
	case `"NaN"`:
		*v = Score(math.NaN())
	default:
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return fmt.Errorf("score %s: %w", b, err)
		}
		*v = Score(f)
	}
	return nil
}

type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	switch {
	case s.closing.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
	case s.warmErr.Load() != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "warm-up failed", "error": (*s.warmErr.Load()).Error()})
	case !s.ready.Load():
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "warming up"})
	default:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if s.closing.Load() {
		s.writeError(w, r, start, &requestError{http.StatusServiceUnavailable, errShutdown.Error()})
		return
	}
	if e := s.warmErr.Load(); e != nil {
		s.writeError(w, r, start, &requestError{http.StatusServiceUnavailable, (*e).Error()})
		return
	}
	if r.ContentLength > s.cfg.MaxBytes {
		s.writeError(w, r, start, &requestError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes is over the limit of %d", r.ContentLength, s.cfg.MaxBytes)})
		return
	}
	// The whole body first, within ReadTimeout and the body budget; only
	// then a decode slot, so a slow client holds neither a slot nor more
	// memory than it has sent.
	raw, held, err := s.readBody(w, r)
	defer s.bodies.release(held)
	if err != nil {
		s.writeError(w, r, start, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout) // decode, queue and scoring
	defer cancel()
	select {
	case s.decode <- struct{}{}:
	case <-ctx.Done():
		s.writeError(w, r, start, ctxError(r, ctx))
		return
	}
	in, err := s.dec.decode(r.Header.Get("Content-Type"), bytes.NewReader(raw))
	<-s.decode
	raw = nil
	if err != nil {
		s.writeError(w, r, start, err)
		return
	}
	j := newJob(ctx, in.x, in.n)
	if err := s.q.push(j); err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, errQueueFull) {
			w.Header().Set("Retry-After", "1")
		}
		s.writeError(w, r, start, &requestError{status, err.Error()})
		return
	}
	select {
	case <-j.finished:
	case <-ctx.Done():
		s.q.remove(j)
		select {
		case <-j.finished: // finished meanwhile: answer it
		default:
			s.writeError(w, r, start, ctxError(r, ctx))
			return
		}
	}
	if j.err != nil {
		s.writeError(w, r, start, j.err)
		return
	}
	dets := s.scorer.Detectors()
	resp := Response{Model: s.modelID, Detectors: dets, Results: make([]Result, in.n)}
	for i, o := range j.res {
		res := Result{Index: i, Name: in.names[i], Class: o.pred, Probability: Score(o.prob), Scores: make(map[string]Score, len(dets))}
		if o.pred < len(s.labels) {
			res.Label = s.labels[o.pred]
		}
		for d, name := range dets {
			res.Scores[name] = Score(o.scores[d])
		}
		decision := "none"
		if s.gate != nil {
			sc := o.scores[0]         // the gate's detector is scored first
			ood := !s.gate.Accept(sc) // NaN is not accepted
			res.Gate = &Decision{Detector: s.gate.Detector, Score: Score(sc), Threshold: s.gate.Threshold, OOD: ood}
			decision = "accepted"
			if ood {
				decision = "ood"
			}
		}
		s.metrics.inputs.WithLabelValues(decision).Inc()
		resp.Results[i] = res
	}
	b, err := json.Marshal(resp)
	if err != nil { // never a 200 with a cut body
		s.writeError(w, r, start, fmt.Errorf("encoding the answer: %w", err))
		return
	}
	writeBody(w, http.StatusOK, b)
	s.metrics.observe(http.StatusOK, start)
	s.log.Debug("scored", "inputs", in.n, "elapsed", time.Since(start))
}

// readBody reads r's body whole: at most MaxBytes (413), within ReadTimeout
// from now (408), each chunk taken from the body budget as it arrives (503
// when the bodies held at once would pass BodyMemory). held is what it took
// from the budget, to release when the request is done.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (raw []byte, held int64, err error) {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(s.cfg.ReadTimeout)
	if err := rc.SetReadDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, 0, err
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBytes)
	size := 64 << 10
	if r.ContentLength > 0 {
		size = int(r.ContentLength) + 1 // +1: reading to EOF needs no growth
	}
	grow := func(n int) error {
		if !s.bodies.take(int64(n)) {
			return &requestError{http.StatusServiceUnavailable,
				fmt.Sprintf("busy: request bodies held at once would pass %d bytes", s.cfg.BodyMemory)}
		}
		held += int64(n)
		return nil
	}
	if err := grow(size); err != nil {
		return nil, held, err
	}
	raw = make([]byte, 0, size)
	for {
		if len(raw) == cap(raw) {
			more := cap(raw)
			if err := grow(more); err != nil {
				return nil, held, err
			}
			raw = append(raw, make([]byte, more)...)[:len(raw)]
		}
		n, err := body.Read(raw[len(raw):cap(raw)])
		raw = raw[:len(raw)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			var mb *http.MaxBytesError
			var ne net.Error
			switch {
			case errors.As(err, &mb):
				return nil, held, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body is over the limit of %d bytes", s.cfg.MaxBytes)}
			case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
				return nil, held, &requestError{http.StatusRequestTimeout,
					fmt.Sprintf("body not received within %s (%d bytes arrived)", s.cfg.ReadTimeout, len(raw))}
			}
			return nil, held, &requestError{http.StatusBadRequest, fmt.Sprintf("reading the body: %v", err)}
		}
	}
	_ = rc.SetReadDeadline(time.Time{})
	return raw, held, nil
}

// budget is a count of bytes taken and released, never past limit.
type budget struct {
	mu           sync.Mutex
	limit, taken int64
}

func (b *budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.taken+n > b.limit {
		return false
	}
	b.taken += n
	return true
}

func (b *budget) release(n int64) {
	b.mu.Lock()
	b.taken -= n
	b.mu.Unlock()
}

// ctxError says why a request's context ended: the client went away (499,
// as nginx counts it; nobody reads the answer) or the server's timeout (503).
func ctxError(r *http.Request, ctx context.Context) error {
	if r.Context().Err() != nil {
		return &requestError{499, "client closed the request"}
	}
	return &requestError{http.StatusServiceUnavailable, "timed out before scoring finished"}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, start time.Time, err error) {
	status := http.StatusInternalServerError
	var re *requestError
	if errors.As(err, &re) {
		status = re.status
	}
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{Error: err.Error(), Status: status})
	s.metrics.observe(status, start)
	if status == http.StatusRequestTimeout {
		s.metrics.slowBodies.Inc()
	}
	level := slog.LevelInfo
	if status >= 500 && status != http.StatusServiceUnavailable {
		level = slog.LevelError
	}
	s.log.Log(r.Context(), level, "request refused", "status", status, "err", err.Error(),
		"remote", r.RemoteAddr, "content_type", r.Header.Get("Content-Type"))
}

// writeJSON writes v, whose types always encode (maps of strings, error
// bodies); answers that may not (scores) are marshalled by the caller first.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed","status":500}`)
	}
	writeBody(w, status, b)
}

func writeBody(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
