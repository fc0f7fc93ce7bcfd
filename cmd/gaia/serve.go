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
	"syscall"
	"time"

	"github.com/gaia-ood/gaia/gaia"
	"github.com/gaia-ood/gaia/gaia/serve"
	"github.com/gaia-ood/gaia/torch"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", stderr)
	var cfg serve.Config
	fs.StringVar(&cfg.Model, "model", "", "the TorchScript `file` (MODEL.json beside it gives input size, mean and std)")
	fs.StringVar(&cfg.Device, "device", "auto", "`device`: auto, cpu, cuda or cuda:N")
	fs.StringVar(&cfg.Gate, "gate", "", "a gate `file` from gaia calibrate: its detector, taps, threshold and preprocessing")
	dets := fs.String("detectors", "", "more detectors to score and report (`list`), besides the gate's")
	fs.StringVar(&cfg.Transform, "transform", "", "image preprocessing as data spec `options` (resize=32x32, resize=256,center-crop=224); default the gate's")
	cfg.Settings = gaia.Settings{}
	gaia.AddSettingFlags(fs, cfg.Settings)
	fs.StringVar(&cfg.Fit, "fit", "", "a fit `file` (gaia fit) for the detectors that need one (default: the gate's)")
	addr := fs.String("addr", "127.0.0.1:8080", "listen `address`")
	fs.IntVar(&cfg.MaxBatch, "max-batch", 32, "inputs per batch at most")
	fs.DurationVar(&cfg.MaxWait, "max-wait", 5*time.Millisecond, "how long a batch waits to fill")
	fs.IntVar(&cfg.Queue, "queue", 0, "inputs waiting at most before requests get 503 (default 16 x max-batch)")
	fs.IntVar(&cfg.MaxInputs, "max-inputs", 0, "inputs per request at most (default 4 x max-batch)")
	fs.Int64Var(&cfg.MaxBytes, "max-bytes", 32<<20, "request body `bytes` at most")
	fs.Int64Var(&cfg.MaxPixels, "max-pixels", 4096*4096, "declared image `pixels` at most")
	fs.Int64Var(&cfg.MaxImageBytes, "max-image-bytes", 128<<20, "`bytes` one image may take decoded (channels and bit depth counted); decoding holds at most decode slots (the CPUs) x this")
	fs.Int64Var(&cfg.BodyMemory, "body-memory", 0, "request body `bytes` held at once, past which requests get 503 (default 16 x max-bytes)")
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 20*time.Second, "how long a request body may take to arrive (408 after)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 30*time.Second, "keep-alive connections idle this long are closed")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "per-request deadline once the body has arrived: decode, queue and scoring")
	fs.IntVar(&cfg.Threads, "threads", 0, "LibTorch intra-op threads for batches (default: every core)")
	fs.IntVar(&cfg.SmallBatch, "small-batch", 4, "batches of fewer inputs run on one thread (1: never)")
	grace := fs.Duration("grace", 60*time.Second, "on SIGTERM, how long requests in flight may take to finish (they end sooner: within read-timeout + timeout)")
	logJSON := fs.Bool("log-json", false, "logs as JSON lines (default text)")
	debug := fs.Bool("debug", false, "log every request")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needLibTorch("serve"); err != nil {
		return err
	}
	if cfg.Model == "" {
		return usagef("serve: -model is required")
	}
	if err := torch.CheckDevice(cfg.Device); err != nil {
		return usageError{err.Error()}
	}
	if *dets != "" {
		d, err := gaia.ParseDetectors(*dets)
		if err != nil {
			return usagef("serve: -detectors: %v", err)
		}
		cfg.Detectors = d
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
	s, err := serve.New(cfg)
	if err != nil {
		ln.Close()
		return err
	}
	hs := s.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	warm := make(chan error, 1)
	go func() { warm <- s.WaitReady(ctx) }()
	cfg.Logger.Info("listening", "addr", ln.Addr().String())
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	for ctx.Err() == nil {
		select {
		case err := <-errc:
			s.Close()
			return err
		case err := <-warm:
			if err != nil && ctx.Err() == nil { // a model that cannot score a full batch fails the start
				hs.Close()
				s.Close()
				return err
			}
		case <-ctx.Done():
		}
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
