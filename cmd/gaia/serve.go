package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/serve"
	"github.com/gaia-ood/gaia/internal/cli"
	"github.com/gaia-ood/gaia/torch"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	def := serve.DefaultConfig()
	var mf cli.ModelFlags
	mf.Register(fs, cli.OneDevice)
	var cfg serve.Config
	fs.StringVar(&cfg.Gate, "gate", "", "a gate `file` from gaia calibrate: its detector, taps, threshold and preprocessing")
	dets := fs.String("detectors", "", "more detectors to score and report (`list`), besides the gate's")
	fs.StringVar(&cfg.Transform, "transform", "", "image preprocessing as data spec `options` (resize=32x32, resize=256,center-crop=224); default the gate's")
	cfg.Settings = gaia.Settings{}
	cli.AddSettingFlags(fs, cfg.Settings)
	addr := fs.String("addr", "127.0.0.1:8080", "listen `address`")
	fs.IntVar(&cfg.MaxBatch, "max-batch", def.MaxBatch, "inputs per batch at most")
	fs.DurationVar(&cfg.MaxWait, "max-wait", def.MaxWait, "how long a batch waits to fill")
	fs.IntVar(&cfg.Queue, "queue", 0, "inputs waiting at most before requests get 503 (default 16 x max-batch)")
	fs.IntVar(&cfg.MaxInputs, "max-inputs", 0, "inputs per request at most (default 4 x max-batch)")
	fs.Int64Var(&cfg.MaxBytes, "max-bytes", def.MaxBytes, "request body `bytes` at most")
	fs.Int64Var(&cfg.MaxPixels, "max-pixels", def.MaxPixels, "declared image `pixels` at most")
	fs.Int64Var(&cfg.MaxImageBytes, "max-image-bytes", def.MaxImageBytes, "`bytes` one image may take decoded (channels and bit depth counted); decoding holds at most decode slots (the CPUs) x this")
	fs.IntVar(&cfg.MaxScans, "max-scans", def.MaxScans, "`scans` a progressive JPEG may have")
	fs.Int64Var(&cfg.BodyMemory, "body-memory", 0, "request body `bytes` held at once, past which requests get 503 (default 16 x max-bytes; at least max-bytes)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", def.ReadTimeout, "how long a request body may take to arrive (408 after)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", def.IdleTimeout, "keep-alive connections idle this long are closed")
	fs.DurationVar(&cfg.Timeout, "timeout", def.Timeout, "per-request deadline once the body has arrived: decode, queue and scoring")
	fs.IntVar(&cfg.Threads, "threads", 0, "LibTorch intra-op threads for batches (default: every core)")
	fs.IntVar(&cfg.SmallBatch, "small-batch", def.SmallBatch, "batches of fewer inputs run on one thread (1: never)")
	grace := fs.Duration("grace", 60*time.Second, "on SIGTERM, how long requests in flight may take to finish (they end sooner: within read-timeout + timeout)")
	logJSON := fs.Bool("log-json", false, "logs as JSON lines (default text)")
	debug := fs.Bool("debug", false, "log every request")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needLibTorch("serve"); err != nil {
		return err
	}
	if mf.Model == "" {
		return usagef("serve: -model is required")
	}
	if err := torch.CheckDevice(mf.Device); err != nil {
		return usageError{err.Error()}
	}
	opt, err := mf.Options()
	if err != nil {
		return usagef("serve: %v", err)
	}
	cfg.Model, cfg.Device, cfg.Fit, cfg.Input, cfg.Mean, cfg.Std = mf.Model, mf.Device, mf.Fit, opt.Input, opt.Mean, opt.Std
	if *dets != "" {
		d, err := gaia.ParseDetectors(*dets)
		if err != nil {
			return usagef("serve: -detectors: %v", err)
		}
		cfg.Detectors = d
	}
	for _, n := range []struct {
		flag string
		v    int64
	}{{"max-batch", int64(cfg.MaxBatch)}, {"max-wait", int64(cfg.MaxWait)}, {"queue", int64(cfg.Queue)}, {"max-inputs", int64(cfg.MaxInputs)},
		{"max-bytes", cfg.MaxBytes}, {"max-pixels", cfg.MaxPixels}, {"max-image-bytes", cfg.MaxImageBytes}, {"max-scans", int64(cfg.MaxScans)},
		{"body-memory", cfg.BodyMemory}, {"threads", int64(cfg.Threads)}, {"small-batch", int64(cfg.SmallBatch)}} {
		if n.v < 0 {
			return usagef("serve: -%s must not be negative", n.flag)
		}
	}
	if cfg.BodyMemory != 0 && cfg.BodyMemory < cfg.MaxBytes {
		return usagef("serve: -body-memory %d is below -max-bytes %d: every request of the largest size allowed would get 503", cfg.BodyMemory, cfg.MaxBytes)
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if *logJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	cfg.Logger = slog.New(h)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	// While the model loads and warms up, the listener answers: /healthz
	// 200, /readyz and score requests 503 (Retry-After).
	var handler atomic.Pointer[http.Handler]
	var warming http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, `{"status":"ok"}`)
			return
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.URL.Path == "/readyz" {
			fmt.Fprintln(w, `{"status":"warming up"}`)
			return
		}
		fmt.Fprintln(w, `{"error":"warming up: the model is loading","status":503}`)
	})
	handler.Store(&warming)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load()).ServeHTTP(w, r) }),
		ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	cfg.Logger.Info("listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	type opened struct {
		s   *serve.Server
		err error
	}
	openc := make(chan opened, 1)
	go func() {
		s, err := serve.New(cfg)
		openc <- opened{s, err}
	}()
	var s *serve.Server
	select {
	case o := <-openc:
		if o.err != nil { // a model that cannot score a full batch fails the start
			hs.Close()
			return o.err
		}
		s = o.s
	case err := <-errc:
		if o := <-openc; o.s != nil {
			o.s.Close()
		}
		return err
	case <-ctx.Done():
		hs.Close()
		if o := <-openc; o.s != nil {
			o.s.Close()
		}
		return nil
	}
	// The server's own timeouts from now on (HTTPServer's).
	full := s.HTTPServer()
	hs.IdleTimeout, hs.WriteTimeout = full.IdleTimeout, full.WriteTimeout
	var served http.Handler = s
	handler.Store(&served)
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	cfg.Logger.Info("shutting down: finishing the requests in flight", "grace", *grace)
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	serr := hs.Shutdown(sctx)
	cerr := s.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if serr != nil {
		return fmt.Errorf("shutdown: %w", serr)
	}
	return cerr
}
