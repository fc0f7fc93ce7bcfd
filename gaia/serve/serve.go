// Package serve is an out-of-distribution gate over HTTP: a handler that
// scores images (or tensors) with a model's detectors and answers each with
// its prediction, its scores and the decision of a gate calibrated by
// `gaia calibrate`. It is a thin user of package gaia: the model is opened
// by gaia.OpenGate (or gaia.Open without a gate), whose batcher gathers the
// concurrent requests into batches; this package adds HTTP: bodies read
// within their deadlines and a memory budget, errors as status codes, and
// Prometheus metrics.
//
//	s, err := serve.New(serve.Config{Model: "model.pt", Gate: "gate.json"})
//	...
//	http.Handle("/", s) // POST /v1/score, /healthz, /readyz, /metrics
//	defer s.Close()
package serve

import (
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/data"
)

// Config configures a Server. Zero values take DefaultConfig's; negative
// ones are refused.
type Config struct {
	Model  string // TorchScript file; MODEL.json beside it gives input size, mean and std
	Device string // auto (default), cpu, cuda, cuda:N
	// Gate is a gate file from `gaia calibrate` (optional). Its detector is
	// always scored, with its settings and taps as calibrated; its model's
	// and fit's hashes must match (gaia.OpenGate).
	Gate string
	// Detectors to score besides the gate's (default: the gate's alone, or
	// gaia-z without a gate).
	Detectors []string
	// Transform is the image preprocessing as data spec options
	// ("resize=32x32", "resize=256,center-crop=224"); default the gate's
	// (the calibration data's), else MODEL.json's, else none: images must
	// have the model's size.
	Transform string
	// Settings are detector settings (gaia.Settings); those of the gate's
	// detector must be the gate's own.
	Settings gaia.Settings
	// Fit is a fit file (gaia fit) for the detectors that need one; default
	// the gate's.
	Fit string
	// Input (C, H, W), Mean and Std override MODEL.json's (gaia.Options).
	Input     [3]int
	Mean, Std []float64

	MaxBatch  int           // inputs per batch
	MaxWait   time.Duration // how long a batch waits to fill
	Queue     int           // inputs waiting at most (0: 16 x MaxBatch)
	MaxInputs int           // inputs per request (0: 4 x MaxBatch, at most Queue)
	MaxBytes  int64         // request body
	MaxPixels int64         // declared image size
	// MaxImageBytes bounds the memory one image takes decoded, counting its
	// channels and bit depth as the decoder holds them. At most
	// DecodeWorkers images are decoded at once, so decoding holds at most
	// DecodeWorkers x MaxImageBytes.
	MaxImageBytes int64
	MaxScans      int // scans of a progressive JPEG
	// BodyMemory bounds the request bodies held at once, counted as they
	// arrive (0: 16 x MaxBytes); past it a request gets 503. It must be at
	// least MaxBytes.
	BodyMemory int64
	Timeout    time.Duration // per request once its body has arrived: decode, queue and scoring
	// ReadTimeout is how long a request's body may take to arrive: a
	// client that trickles its body is cut off then (408), and never holds
	// a decode slot, which is taken only once the body has arrived.
	ReadTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for this long
	// (HTTPServer's).
	IdleTimeout time.Duration
	// Threads are LibTorch's intra-op threads for batches (0: every core);
	// batches of fewer than SmallBatch inputs run on one thread, which on
	// the CPU cuts their tail latency (docs/perf.md); 1 turns that off.
	Threads    int
	SmallBatch int
	// DecodeWorkers bounds concurrent image decodes (0: the CPUs).
	DecodeWorkers int

	Logger *slog.Logger // default slog.Default()
}

// DefaultConfig is every default of a Server in one place (gaia serve's
// flags show them): a zero field of a Config takes its value here.
func DefaultConfig() Config {
	return Config{Device: "auto", MaxBatch: gaia.DefaultMaxBatch, MaxWait: gaia.DefaultMaxWait,
		MaxBytes: 32 << 20, MaxPixels: 4096 * 4096, MaxImageBytes: 128 << 20, MaxScans: data.MaxScans,
		Timeout: 30 * time.Second, ReadTimeout: 20 * time.Second, IdleTimeout: 30 * time.Second,
		SmallBatch: gaia.DefaultSmallBatch}
}

// withDefaults checks cfg and fills its zero fields.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Model == "" {
		return cfg, errors.New("serve: no model")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"MaxBatch", int64(cfg.MaxBatch)}, {"MaxWait", int64(cfg.MaxWait)}, {"Queue", int64(cfg.Queue)},
		{"MaxInputs", int64(cfg.MaxInputs)}, {"MaxBytes", cfg.MaxBytes}, {"MaxPixels", cfg.MaxPixels},
		{"MaxImageBytes", cfg.MaxImageBytes}, {"MaxScans", int64(cfg.MaxScans)}, {"BodyMemory", cfg.BodyMemory},
		{"Timeout", int64(cfg.Timeout)}, {"ReadTimeout", int64(cfg.ReadTimeout)}, {"IdleTimeout", int64(cfg.IdleTimeout)},
		{"Threads", int64(cfg.Threads)}, {"SmallBatch", int64(cfg.SmallBatch)}, {"DecodeWorkers", int64(cfg.DecodeWorkers)}} {
		if f.v < 0 {
			return cfg, fmt.Errorf("serve: %s %d is negative", f.name, f.v)
		}
	}
	d := DefaultConfig()
	if cfg.Device == "" {
		cfg.Device = d.Device
	}
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set64 := func(v *int64, def int64) {
		if *v == 0 {
			*v = def
		}
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&cfg.MaxBatch, d.MaxBatch)
	setDur(&cfg.MaxWait, d.MaxWait)
	setInt(&cfg.Queue, 16*cfg.MaxBatch)
	setInt(&cfg.MaxInputs, 4*cfg.MaxBatch)
	cfg.MaxInputs = min(cfg.MaxInputs, cfg.Queue)
	set64(&cfg.MaxBytes, d.MaxBytes)
	set64(&cfg.MaxPixels, d.MaxPixels)
	set64(&cfg.MaxImageBytes, d.MaxImageBytes)
	setInt(&cfg.MaxScans, d.MaxScans)
	set64(&cfg.BodyMemory, 16*cfg.MaxBytes)
	setDur(&cfg.Timeout, d.Timeout)
	setDur(&cfg.ReadTimeout, d.ReadTimeout)
	setDur(&cfg.IdleTimeout, d.IdleTimeout)
	setInt(&cfg.SmallBatch, d.SmallBatch)
	if cfg.BodyMemory < cfg.MaxBytes {
		return cfg, fmt.Errorf("serve: BodyMemory %d is below MaxBytes %d: a request of the largest size allowed could never be held", cfg.BodyMemory, cfg.MaxBytes)
	}
	if cfg.Queue < cfg.MaxBatch {
		return cfg, fmt.Errorf("serve: Queue %d is below MaxBatch %d", cfg.Queue, cfg.MaxBatch)
	}
	if cfg.Device == "cuda:all" || strings.Contains(cfg.Device, ",") {
		return cfg, fmt.Errorf("serve: device %q: a server runs one model replica; name one device (run one server per GPU)", cfg.Device)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

var errShutdown = errors.New("the server is shutting down")

// Server is an http.Handler serving /v1/score, /healthz, /readyz and /metrics.
type Server struct {
	cfg     Config
	log     *slog.Logger
	model   *gaia.Model
	gated   *gaia.Gated // nil without a gate
	gate    *gaia.Gate
	dec     *decoder
	bodies  *budget
	mux     *http.ServeMux
	metrics *metrics

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New opens the model (with the gate, through gaia.OpenGate, which checks
// that they belong together), warms it up, and returns a server ready to
// answer: a model that cannot score a full batch fails here.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, bodies: &budget{limit: cfg.BodyMemory}, metrics: newMetrics(cfg.MaxBatch)}
	opt := gaia.Options{Device: cfg.Device, Detectors: cfg.Detectors, Settings: cfg.Settings, Fit: cfg.Fit,
		Input: cfg.Input, Mean: cfg.Mean, Std: cfg.Std,
		Transform: cfg.Transform, Limits: data.Limits{Pixels: cfg.MaxPixels, Bytes: cfg.MaxImageBytes, Scans: cfg.MaxScans},
		MaxBatch: cfg.MaxBatch, MaxWait: cfg.MaxWait, Queue: cfg.Queue, DecodeWorkers: cfg.DecodeWorkers,
		Threads: cfg.Threads, SmallBatch: cfg.SmallBatch,
		OnBatch: func(n int, d time.Duration) {
			s.metrics.batchSize.Observe(float64(n))
			s.metrics.batchSeconds.Observe(d.Seconds())
		},
		OnQueue: func(n int) { s.metrics.queueDepth.Set(float64(n)) }}
	ctx := context.Background()
	if cfg.Gate != "" {
		g, err := gaia.LoadGate(cfg.Gate)
		if err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
		if s.gated, err = gaia.OpenGate(ctx, cfg.Model, g, opt); err != nil {
			return nil, fmt.Errorf("serve: gate %s: %w", cfg.Gate, err)
		}
		s.gate, s.model = g, s.gated.Model()
	} else {
		if len(opt.Detectors) == 0 {
			opt.Detectors = []string{gaia.GAIAZ}
		}
		if s.model, err = gaia.Open(ctx, cfg.Model, opt); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	c, h, w := s.model.Input()
	s.dec = &decoder{shape: shape{c, h, w}, maxInputs: cfg.MaxInputs}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /v1/score", s.handleScore)
	s.mux.HandleFunc("/v1/score", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		s.writeError(w, r, time.Now(), &requestError{http.StatusMethodNotAllowed, "use POST"})
	})
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	s.mux.HandleFunc("GET /readyz", s.handleReady)
	s.mux.Handle("GET /metrics", s.metrics.handler())
	s.log.Info("ready", "model", cfg.Model, "device", s.model.Devices(), "detectors", s.model.Detectors(),
		"transform", s.model.Transform(), "gate", cfg.Gate, "max_batch", cfg.MaxBatch, "max_wait", cfg.MaxWait, "queue", cfg.Queue)
	return s, nil
}

// Ready reports whether the server takes requests: it is open and not
// shutting down.
func (s *Server) Ready() bool { return !s.closing.Load() }

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
func (s *Server) Detectors() []string { return s.model.Detectors() }

// Model is the model the server scores with.
func (s *Server) Model() *gaia.Model { return s.model }

// Registry is the server's Prometheus registry (what /metrics serves), for
// embedders that gather it elsewhere.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// ServeHTTP routes to the endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops taking requests (503), lets those in flight be scored and
// answered, then frees the model (gaia.Model.Close). It is safe to call
// more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.closeErr = s.model.Close()
		s.log.Info("server closed")
	})
	return s.closeErr
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
	if s.closing.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if s.closing.Load() {
		s.writeError(w, r, start, &requestError{http.StatusServiceUnavailable, errShutdown.Error()})
		return
	}
	if r.ContentLength > s.cfg.MaxBytes {
		s.writeError(w, r, start, &requestError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body of %d bytes is over the limit of %d", r.ContentLength, s.cfg.MaxBytes)})
		return
	}
	// The whole body first, within ReadTimeout and the body budget; only
	// then decoding, so a slow client holds neither a decode slot nor more
	// memory than it has sent.
	raw, held, err := s.readBody(w, r)
	defer s.bodies.release(held)
	if err != nil {
		s.writeError(w, r, start, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout) // decode, queue and scoring
	defer cancel()
	in, err := s.dec.decode(r.Header.Get("Content-Type"), raw)
	raw = nil
	if err != nil {
		s.writeError(w, r, start, err)
		return
	}
	var res []gaia.Result
	if in.images != nil {
		res, err = s.model.ScoreImages(ctx, in.images)
	} else {
		res, err = s.model.ScoreTensor(ctx, in.x, in.n)
	}
	in.images, in.x = nil, nil
	if err != nil {
		s.writeError(w, r, start, s.scoreError(r, ctx, err, in))
		return
	}
	dets := s.model.Detectors()
	resp := Response{Model: s.model.SHA256(), Detectors: dets, Results: make([]Result, len(res))}
	for i, o := range res {
		out := Result{Index: i, Name: in.names[i], Class: o.Pred, Label: o.Class, Probability: Score(o.Prob), Scores: make(map[string]Score, len(dets))}
		for _, name := range dets {
			out.Scores[name] = Score(o.Scores[name])
		}
		decision := "none"
		if s.gate != nil {
			sc := o.Scores[s.gate.Detector]
			ood := !s.gate.Accept(sc) // NaN is not accepted
			out.Gate = &Decision{Detector: s.gate.Detector, Score: Score(sc), Threshold: s.gate.Threshold, OOD: ood}
			decision = "accepted"
			if ood {
				decision = "ood"
			}
		}
		s.metrics.inputs.WithLabelValues(decision).Inc()
		resp.Results[i] = out
	}
	b, err := json.Marshal(resp)
	if err != nil { // never a 200 with a cut body
		s.writeError(w, r, start, fmt.Errorf("encoding the answer: %w", err))
		return
	}
	writeBody(w, http.StatusOK, b)
	s.metrics.observe(http.StatusOK, start)
	s.log.Debug("scored", "inputs", len(res), "elapsed", time.Since(start))
}

// scoreError turns the library's error into the client's status: its own
// input (400, naming the part), a full queue or a closing model (503), the
// deadline or a client gone (503, 499), else a failure of the model (500).
func (s *Server) scoreError(r *http.Request, ctx context.Context, err error, in *inputs) error {
	var ie *gaia.ImageError
	var te *gaia.InputError
	switch {
	case errors.As(err, &ie):
		var size *data.SizeError
		if errors.As(ie.Err, &size) {
			return badRequest("%s: %v; send images the transform makes %dx%d of (with none: %dx%d images)",
				in.what(ie.Index), ie.Err, size.WantH, size.WantW, size.WantH, size.WantW)
		}
		return badRequest("%s: %v", in.what(ie.Index), ie.Err)
	case errors.As(err, &te):
		return badRequest("%v", te)
	case errors.Is(err, gaia.ErrQueueFull):
		return &requestError{http.StatusServiceUnavailable, err.Error()}
	case errors.Is(err, gaia.ErrClosed):
		return &requestError{http.StatusServiceUnavailable, errShutdown.Error()}
	case ctx.Err() != nil:
		return ctxError(r, ctx)
	}
	s.log.Error("scoring failed", "err", err)
	return fmt.Errorf("scoring failed: %w", err)
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
