package torch

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// Module is a TorchScript module loaded onto a device, with its taps. What
// it knows of itself (device, taps) is plain Go; the LibTorch side is its
// handle (module_cgo.go; a build without cgo has none, and Load fails with
// ErrNoLibTorch).
type Module struct {
	mu       sync.Mutex
	h        *handle // nil once closed
	device   string
	inputC   int
	taps     []Tap
	warnings []string
	flags    int32
	threads  atomic.Int32 // this module's own thread count (0: the process's)
	clsW     *Tensor      // the classifier's weight (K x D) and bias (K); nil without one
	clsB     *Tensor
	buffers  map[Buffer]bool
}

// moduleInfo is what a handle reports of its module at load.
type moduleInfo struct {
	device     string
	inputC     int
	taps       []Tap
	warnings   []string
	clsW, clsB *Tensor
}

// request is one Run, flattened for the C ABI (shim.h's gaia_module_run).
type request struct {
	input   []float32
	shape   [4]int64
	values  []int32
	passes  []passSpec
	tapList []int32
	params  []float64
	heads   []Head
	flags   int32
}

// passSpec is one gaia_pass: the pass's taps and parameters are ranges of
// request.tapList and request.params.
type passSpec struct {
	loss, lossTap         int32
	lossParam             float64
	reduce                int32
	tapsOffset, nTaps     int32
	paramsOffset, nParams int32
}

// response is what a handle's run returns: every tensor, with the counts of
// each group (shim.h's gaia_result).
type response struct {
	tensors    []*Tensor
	nOutputs   int
	nValues    int
	passCounts []int
	nHeads     int
}

// runFlagReduceAfter is shim.h's GAIA_RUN_REDUCE_AFTER.
const runFlagReduceAfter = 1

// Load loads the TorchScript file at path onto device ("auto", "cpu",
// "cuda", "cuda:N").
func Load(path, device string) (*Module, error) {
	if err := CheckDevice(device); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("torch: load %s: %w", path, err)
	}
	return load("load "+path, path, nil, device)
}

// LoadBytes loads a TorchScript module from its serialized bytes.
func LoadBytes(b []byte, device string) (*Module, error) {
	if err := CheckDevice(device); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("torch: load from bytes: no data")
	}
	return load("load from bytes", "", b, device)
}

func load(op, path string, b []byte, device string) (*Module, error) {
	m := &Module{}
	h, info, err := openHandle(op, path, b, device, &m.threads)
	if err != nil {
		return nil, err
	}
	m.h, m.device, m.inputC, m.taps, m.warnings = h, info.device, info.inputC, info.taps, info.warnings
	m.clsW, m.clsB, m.buffers = info.clsW, info.clsB, map[Buffer]bool{}
	runtime.SetFinalizer(m, (*Module).Close)
	return m, nil
}

// Close frees the module, after waiting for a call in flight. It is
// idempotent and safe to call from several goroutines.
func (m *Module) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h != nil {
		m.h.free()
		m.h = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

// SetReduceInHooks chooses how tap gradients are reduced: in tensor hooks as
// autograd produces each one (the default: the full gradients are never all
// held at once), or after the backward pass, from all of them (for measuring
// what the hooks save). Both give the same numbers.
func (m *Module) SetReduceInHooks(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.flags &^= runFlagReduceAfter
	} else {
		m.flags |= runFlagReduceAfter
	}
}

// SetThreads sets this module's intra-op threads from its next call on; 0
// returns it to the process's setting (SetNumThreads). A server may run
// single inputs on one thread and batches on all.
func (m *Module) SetThreads(n int) { m.threads.Store(int32(max(0, n))) }

// Device is the device the module lives on ("cpu", "cuda:0").
func (m *Module) Device() string { return m.device }

// InputChannels is the channel count of the first convolution's input (-1
// when unknown).
func (m *Module) InputChannels() int { return m.inputC }

// Taps lists the module's taps, in graph order.
func (m *Module) Taps() []Tap { return append([]Tap(nil), m.taps...) }

// Warnings lists what the tap machinery could not handle in this graph.
func (m *Module) Warnings() []string { return append([]string(nil), m.warnings...) }

// Forward runs the model on x (N x C x H x W) without gradients and returns
// every tensor its forward returns, the logits first.
func (m *Module) Forward(x *Tensor) ([]*Tensor, error) {
	r, err := m.Run(x, nil, nil)
	if err != nil {
		return nil, err
	}
	return r.Outputs, nil
}

func checkInput(x *Tensor) error {
	if x == nil {
		return fmt.Errorf("no input")
	}
	if len(x.Shape) != 4 {
		return fmt.Errorf("input has shape %v; expected 4 axes N x C x H x W", x.Shape)
	}
	n := 1
	for _, d := range x.Shape {
		if d <= 0 {
			return fmt.Errorf("input shape %v has a non-positive axis", x.Shape)
		}
		n *= d
	}
	if n != len(x.Data) {
		return fmt.Errorf("input shape %v needs %d values, have %d", x.Shape, n, len(x.Data))
	}
	return nil
}

func invalid(format string, args ...any) error {
	return &Error{Op: "run", Code: CodeInvalid, Msg: fmt.Sprintf(format, args...)}
}

// checkTap says whether tap index i may be read where the shim reads it:
// values and gradients take a tap or InputTap; a summed loss tap must be a
// tap.
func (m *Module) checkTap(i int, inputOK bool) error {
	if (i >= 0 && i < len(m.taps)) || (inputOK && i == InputTap) {
		return nil
	}
	return invalid("tap index %d out of range (the module has %d taps)", i, len(m.taps))
}

// checkPass refuses what the shim would refuse in a pass.
func (m *Module) checkPass(p Pass, inputC int) error {
	switch {
	case len(p.Taps) == 1 && p.Taps[0] == ParamsTap:
	case p.Reduce == ReducePerturbForward:
		if len(p.Taps) != 1 || p.Taps[0] != InputTap {
			return invalid("a perturb-and-forward pass reads the input tap alone")
		}
		if len(p.Params) != inputC {
			return invalid("a perturb-and-forward pass needs one step per input channel (%d), has %d", inputC, len(p.Params))
		}
	default:
		for _, t := range p.Taps {
			if err := m.checkTap(t, p.Loss != LossGate); err != nil {
				return err
			}
			if p.Loss == LossGate && !m.taps[t].Gated {
				return invalid("tap %s has no ReLU gate (see the taps' gated column)", m.taps[t].Name)
			}
		}
	}
	if p.Loss == LossSumTap {
		return m.checkTap(p.LossTap, false)
	}
	return nil
}

// Classifier is the classifier's weight (K x D: a Linear's, or a 1x1
// convolution head's) and bias (K; zeros without one), as the model holds
// them; ok is false when gaia found no classifier.
func (m *Module) Classifier() (weight, bias *Tensor, ok bool) {
	return m.clsW, m.clsB, m.clsW != nil
}

// checkHead refuses what the shim would refuse in a head.
func (m *Module) checkHead(h Head) error {
	if h.Kind < HeadLinear || h.Kind > HeadGram {
		return invalid("unknown head kind %d", h.Kind)
	}
	if h.Kind == HeadKL {
		if h.Tap != TapLogits {
			return invalid("a KL head reads the logits (TapLogits)")
		}
	} else if err := m.checkTap(h.Tap, false); err != nil {
		return err
	}
	for _, b := range h.Buf {
		if b != NoBuffer && b != 0 && !m.buffers[b] {
			return invalid("head: buffer %d is not on the module", b)
		}
	}
	return nil
}

// PutF32 copies data (of shape) to the module's device and keeps it there
// as a buffer for heads, until Drop or Close.
func (m *Module) PutF32(data []float32, shape ...int) (Buffer, error) {
	return m.put(data, nil, shape)
}

// PutF64 is PutF32 for float64 data.
func (m *Module) PutF64(data []float64, shape ...int) (Buffer, error) {
	return m.put(nil, data, shape)
}

func (m *Module) put(f32 []float32, f64 []float64, shape []int) (Buffer, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, invalid("put: shape %v has a negative axis", shape)
		}
		n *= d
	}
	if len(shape) > 8 || (f64 == nil && len(f32) != n) || (f32 == nil && len(f64) != n) {
		return 0, invalid("put: shape %v needs %d values, have %d", shape, n, max(len(f32), len(f64)))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return 0, ErrClosed
	}
	id, err := m.h.put(f32, f64, shape)
	if err != nil {
		return 0, err
	}
	m.buffers[id] = true
	return id, nil
}

// Get copies a buffer back to Go memory.
func (m *Module) Get(b Buffer) (*Tensor, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	if !m.buffers[b] {
		return nil, invalid("get: buffer %d is not on the module", b)
	}
	return m.h.get(b)
}

// Drop frees a buffer.
func (m *Module) Drop(b Buffer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h != nil && m.buffers[b] {
		m.h.drop(b)
		delete(m.buffers, b)
	}
}

// Run does, in one call, the forward on x, returns the values of the taps
// listed in values, runs each pass in order on the same forward, then each
// head.
func (m *Module) Run(x *Tensor, values []int, passes []Pass, heads ...Head) (*Result, error) {
	if err := checkInput(x); err != nil {
		return nil, invalid("%v", err)
	}
	if x.Shape[1] != m.inputC && m.inputC > 0 {
		return nil, invalid("input has %d channels; the model expects %d", x.Shape[1], m.inputC)
	}
	req := &request{input: x.Data}
	for i, d := range x.Shape {
		req.shape[i] = int64(d)
	}
	for _, v := range values {
		if err := m.checkTap(v, true); err != nil {
			return nil, err
		}
		req.values = append(req.values, int32(v))
	}
	for _, p := range passes {
		if err := m.checkPass(p, x.Shape[1]); err != nil {
			return nil, err
		}
		req.passes = append(req.passes, passSpec{loss: int32(p.Loss), lossTap: int32(p.LossTap), lossParam: p.LossParam,
			reduce: int32(p.Reduce), tapsOffset: int32(len(req.tapList)), nTaps: int32(len(p.Taps)),
			paramsOffset: int32(len(req.params)), nParams: int32(len(p.Params))})
		for _, t := range p.Taps {
			req.tapList = append(req.tapList, int32(t))
		}
		req.params = append(req.params, p.Params...)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	for _, h := range heads {
		if err := m.checkHead(h); err != nil {
			return nil, err
		}
	}
	req.heads = heads
	req.flags = m.flags
	res, err := m.h.run(req)
	runtime.KeepAlive(x)
	if err != nil {
		return nil, err
	}
	if res.nOutputs < 1 || res.nValues != len(values) || len(res.passCounts) != len(passes) || res.nHeads != len(heads) {
		return nil, &Error{Op: "run", Code: CodeGraph, Msg: "the result does not hold what was asked for"}
	}
	r := &Result{Outputs: res.tensors[:res.nOutputs], Values: res.tensors[res.nOutputs : res.nOutputs+res.nValues]}
	k := res.nOutputs + res.nValues
	for p, c := range res.passCounts {
		if c != len(passes[p].Taps) || k+c > len(res.tensors) {
			return nil, &Error{Op: "run", Code: CodeGraph, Msg: fmt.Sprintf("pass %d handed back %d tensors for %d taps", p, c, len(passes[p].Taps))}
		}
		r.Grads = append(r.Grads, res.tensors[k:k+c])
		k += c
	}
	if k+len(heads) != len(res.tensors) {
		return nil, &Error{Op: "run", Code: CodeGraph, Msg: "the result does not hold every head's"}
	}
	r.Heads = res.tensors[k:]
	return r, nil
}

// TapShapes runs one forward on zeros of the given input shape (N x C x H x
// W) and returns each tap's value shape, indexed as Taps.
func (m *Module) TapShapes(shape [4]int) ([][]int, error) {
	for _, d := range shape {
		if d <= 0 {
			return nil, &Error{Op: "tap shapes", Code: CodeInvalid, Msg: fmt.Sprintf("input shape %v has a non-positive axis", shape)}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	shapes, err := m.h.tapShapes(shape)
	if err != nil {
		return nil, err
	}
	if len(shapes) != len(m.taps) {
		return nil, &Error{Op: "tap shapes", Code: CodeGraph, Msg: fmt.Sprintf("%d shapes for %d taps", len(shapes), len(m.taps))}
	}
	return shapes, nil
}

// threadsInUse is LibTorch's intra-op thread count on the module's thread.
func (m *Module) threadsInUse() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return 0
	}
	return m.h.threadsInUse()
}

var threadCount atomic.Int32 // 0: not chosen

// desiredThreads is SetNumThreads's value, else OMP_NUM_THREADS, else every
// core the process may use (LibTorch's own default can be 1).
func desiredThreads() int32 {
	if n := threadCount.Load(); n > 0 {
		return n
	}
	if v, err := strconv.Atoi(os.Getenv("OMP_NUM_THREADS")); err == nil && v > 0 {
		return int32(v)
	}
	return int32(runtime.NumCPU())
}

// SetNumThreads sets LibTorch's intra-op threads for every Module, from
// their next call on.
func SetNumThreads(n int) {
	if n > 0 {
		threadCount.Store(int32(n))
	}
}

// NumThreads reports the intra-op threads Modules run with.
func NumThreads() int { return int(desiredThreads()) }

// CUDAAvailable reports whether LibTorch can use a CUDA device.
func CUDAAvailable() bool { return CUDADeviceCount() > 0 }
