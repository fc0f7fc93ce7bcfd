package gaia

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gaia-ood/gaia/torch"
)

// Reference workloads measured beside the detectors: what no gradient
// detector can be cheaper than.
const (
	RefForward           = "forward"
	RefBackwardInput     = "forward+backward(input)"
	RefBackwardParams    = "forward+backward(params)"
	AllDetectorsTogether = "all detectors"
)

// Speed is one measured workload.
type Speed struct {
	Name         string  `json:"name"`
	Batch        int     `json:"batch"`
	Iters        int     `json:"iters"`
	Seconds      float64 `json:"seconds"` // wall time of the timed iterations
	ImagesPerSec float64 `json:"images_per_sec"`
	PeakBytes    int64   `json:"peak_bytes"` // CUDA: the caching allocator's peak; CPU: peak resident set growth (approximate)
}

// workload returns a function that runs one batch of the named workload,
// and one that frees what it holds.
func workload(m *torch.Module, name string, x *torch.Tensor, cfg ScorerConfig) (func() error, func(), error) {
	none := func() {}
	switch name {
	case RefForward:
		return func() error { _, err := m.Forward(x); return err }, none, nil
	case RefBackwardInput:
		p := []torch.Pass{{Loss: torch.LossMaxLogit, Taps: []int{torch.InputTap}, Reduce: torch.ReduceL1}}
		return func() error { _, err := m.Run(x, nil, p); return err }, none, nil
	case RefBackwardParams:
		p := []torch.Pass{{Loss: torch.LossMaxLogit, Taps: []int{torch.ParamsTap}}}
		return func() error { _, err := m.Run(x, nil, p); return err }, none, nil
	}
	cfg.Detectors = []string{name}
	if name == AllDetectorsTogether {
		cfg.Detectors = allNames()
		if cfg.Fit != nil {
			cfg.Detectors, _ = ParseDetectors("every")
		}
	}
	sc, err := NewScorer(m, cfg)
	if err != nil {
		return nil, nil, err
	}
	return func() error { _, err := sc.Score(x); return err }, func() { sc.Close() }, nil
}

// MeasureSpeed runs a workload (a detector name, AllDetectorsTogether or a
// Ref* name) on batch x, once to warm up, then for at least minTime, and
// reports images per second and peak memory. cfg gives the detectors'
// settings, the input normalization's std and a fit (its Detectors are the
// workload's).
func MeasureSpeed(m *torch.Module, name string, x *torch.Tensor, cfg ScorerConfig, minTime time.Duration) (Speed, error) {
	run, done, err := workload(m, name, x, cfg)
	if err != nil {
		return Speed{}, err
	}
	defer done()
	cuda := strings.HasPrefix(m.Device(), "cuda")
	dev := 0
	if cuda {
		if i := strings.IndexByte(m.Device(), ':'); i >= 0 {
			dev, _ = strconv.Atoi(m.Device()[i+1:])
		}
	}
	// Warm-up: allocator, kernel selection, executor; at least 3 batches or a
	// fifth of the timed span.
	for i, t := 0, time.Now(); i < 3 || time.Since(t) < minTime/5; i++ {
		if err := run(); err != nil {
			return Speed{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	if cuda {
		torch.CUDAMemory(dev, true)
	}
	rss0 := resetPeakRSS()
	sp := Speed{Name: name, Batch: x.Shape[0]}
	start := time.Now()
	for time.Since(start) < minTime || sp.Iters < 3 {
		if err := run(); err != nil {
			return Speed{}, fmt.Errorf("%s: %w", name, err)
		}
		sp.Iters++
	}
	sp.Seconds = time.Since(start).Seconds()
	sp.ImagesPerSec = float64(sp.Iters*sp.Batch) / sp.Seconds
	if cuda {
		_, peak, _ := torch.CUDAMemory(dev, false)
		sp.PeakBytes = peak
	} else if hwm := peakRSS(); hwm > 0 && rss0 > 0 {
		sp.PeakBytes = hwm - rss0
	}
	return sp, nil
}

// resetPeakRSS resets the kernel's resident-set high-water mark of this
// process (Linux: /proc/self/clear_refs) and returns the current RSS.
func resetPeakRSS() int64 {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	return procStatus("VmRSS:")
}

func peakRSS() int64 { return procStatus("VmHWM:") }

func procStatus(key string) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
