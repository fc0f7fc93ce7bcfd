package gaia

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/gaia/data"
)

// Options say how Open opens a model and what it scores. The zero value
// means the defaults; a negative number is refused (ErrInvalidOptions).
type Options struct {
	// Device is "" or auto (CUDA when LibTorch sees a GPU, else the CPU),
	// cpu, cuda, cuda:N, cuda:all or a list (cuda:0,cuda:2): one model
	// replica each. Concurrent batches run on the replicas side by side.
	Device string
	// Detectors to score, by name or group (all, features, every;
	// ParseDetectors): nil means the group "all", GAIA and the baselines
	// that need nothing but the model (OpenGate: the gate's detector alone).
	Detectors []string
	// Settings of the detectors (defaults for those not given). A name no
	// detector declares is refused (ErrUnknownSetting).
	Settings Settings
	// Fit is a fit file (gaia fit, or Model.Fit and WriteFit) for the
	// detectors that need one (ErrNeedsFit without).
	Fit string

	// Input (C, H, W), Mean and Std override MODEL.json's (zero: its own);
	// a model without MODEL.json needs Input, and takes mean 0 and std 1
	// where these are not given.
	Input     [3]int
	Mean, Std []float64
	// Transform is the preprocessing of ScoreImages, as data spec options
	// ("resize=256,center-crop=224"); "" means MODEL.json's, else none
	// (images must then have the model's input size).
	Transform string
	// Limits bound each image ScoreImages decodes, before any pixel is
	// decoded (zero fields: data.DefaultLimits).
	Limits data.Limits

	// MaxBatch is the most inputs of one batch (default 32); MaxWait how
	// long a batch waits to fill once its first input is there (default
	// 5ms). Concurrent calls share batches.
	MaxBatch int
	MaxWait  time.Duration
	// Queue bounds the inputs waiting for a batch (default 16 x MaxBatch):
	// a call that would pass it gets ErrQueueFull at once.
	Queue int
	// DecodeWorkers bounds the images decoded at once by ScoreImages
	// (default: the CPUs), so decoding holds at most DecodeWorkers x
	// Limits.Bytes.
	DecodeWorkers int
	// Threads are LibTorch's intra-op threads for a batch on the CPU
	// (default: the replica's share of the process's); batches of fewer
	// than SmallBatch inputs (default 4; 1 turns the rule off) run on one
	// thread, which cuts their latency (docs/perf.md).
	Threads    int
	SmallBatch int

	// SkipWarmup skips Open's warm-up (a batch of 1 and one of MaxBatch on
	// each replica), for work whose first batch may as well be its warm-up.
	SkipWarmup bool
	// OnBatch, if set, is called after every batch with its size and time;
	// OnQueue with the inputs waiting whenever that changes (metrics).
	OnBatch func(inputs int, elapsed time.Duration)
	OnQueue func(waiting int)
}

// Default batching.
const (
	DefaultMaxBatch   = 32
	DefaultMaxWait    = 5 * time.Millisecond
	DefaultSmallBatch = 4
)

// normalized checks o and fills in its defaults, with the detectors
// expanded from groups (nil: def).
func (o Options) normalized(def []string) (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"MaxBatch", int64(o.MaxBatch)}, {"MaxWait", int64(o.MaxWait)}, {"Queue", int64(o.Queue)},
		{"DecodeWorkers", int64(o.DecodeWorkers)}, {"Threads", int64(o.Threads)}, {"SmallBatch", int64(o.SmallBatch)},
		{"Limits.Pixels", o.Limits.Pixels}, {"Limits.Bytes", o.Limits.Bytes}, {"Limits.Scans", int64(o.Limits.Scans)}} {
		if f.v < 0 {
			return bad("%s %d is negative", f.name, f.v)
		}
	}
	if o.Input != [3]int{} && (o.Input[0] <= 0 || o.Input[1] <= 0 || o.Input[2] <= 0) {
		return bad("Input %v: want C, H and W all positive (or all zero: MODEL.json's)", o.Input)
	}
	for _, v := range o.Mean {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return bad("Mean %v has a non-finite entry", o.Mean)
		}
	}
	for _, v := range o.Std {
		if !(v >= MinStd) || math.IsInf(v, 0) {
			return bad("Std %v has an entry that is not finite and at least %g", o.Std, MinStd)
		}
	}
	if o.Device == "" {
		o.Device = "auto"
	}
	if len(o.Detectors) == 0 {
		o.Detectors = def
	}
	dets, err := ParseDetectors(strings.Join(o.Detectors, ","))
	if err != nil {
		return Options{}, err
	}
	o.Detectors = dets
	s := Settings{}
	for k, v := range o.Settings {
		s[k] = v
	}
	if err := s.Validate(); err != nil {
		return Options{}, err
	}
	o.Settings = s
	o.Mean, o.Std = append([]float64(nil), o.Mean...), append([]float64(nil), o.Std...)
	if len(o.Mean) == 0 {
		o.Mean = nil
	}
	if len(o.Std) == 0 {
		o.Std = nil
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.MaxWait == 0 {
		o.MaxWait = DefaultMaxWait
	}
	if o.Queue == 0 {
		o.Queue = 16 * o.MaxBatch
	}
	if o.Queue < o.MaxBatch {
		return bad("Queue %d is below MaxBatch %d: no batch could fill", o.Queue, o.MaxBatch)
	}
	if o.DecodeWorkers == 0 {
		o.DecodeWorkers = runtime.NumCPU()
	}
	if o.SmallBatch == 0 {
		o.SmallBatch = DefaultSmallBatch
	}
	def0 := data.DefaultLimits()
	if o.Limits.Pixels == 0 {
		o.Limits.Pixels = def0.Pixels
	}
	if o.Limits.Bytes == 0 {
		o.Limits.Bytes = def0.Bytes
	}
	if o.Limits.Scans == 0 {
		o.Limits.Scans = def0.Scans
	}
	return o, nil
}
