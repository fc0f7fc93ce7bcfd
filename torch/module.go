//go:build cgo

package torch

// LibTorch's include and library paths come from CGO_CXXFLAGS and CGO_LDFLAGS,
// which the Makefile sets for the LibTorch it found. Build tags: gaia_torch_cuda
// links LibTorch's CUDA backend (a CUDA LibTorch); gaia_cuda also links the
// fused kernels of cuda/ (build/cuda/libgaia_cuda.a, made with nvcc).

/*
#cgo CXXFLAGS: -std=c++17 -O2 -Wno-deprecated-declarations -Wno-unused-parameter
#cgo LDFLAGS: -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed -lstdc++
#cgo gaia_torch_cuda LDFLAGS: -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed
#cgo gaia_cuda CXXFLAGS: -DGAIA_WITH_CUDA
#cgo gaia_cuda LDFLAGS: -lgaia_cuda -lcudart
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Loss names the scalar a backward pass starts from.
type Loss int32

// Losses. z are the logits (the module's first output), N x K.
const (
	LossMaxLogit      Loss = C.GAIA_LOSS_MAX_LOGIT       // sum_n max_k z_nk (GAIA-Z)
	LossSumLogSoftmax Loss = C.GAIA_LOSS_SUM_LOG_SOFTMAX // sum_n sum_k log softmax(z_n)_k (GAIA-A, output component)
	LossSumTap        Loss = C.GAIA_LOSS_SUM_TAP         // sum of a tap's value (GAIA-A, inner component: the classifier input)
	LossODIN          Loss = C.GAIA_LOSS_ODIN            // sum_n -log softmax(z_n/T)_{argmax z_n}
	LossUniformCE     Loss = C.GAIA_LOSS_UNIFORM_CE      // sum_n cross-entropy of softmax(z_n) against the uniform distribution
	LossGate          Loss = C.GAIA_LOSS_GATE            // no backward: each tap's ReLU gate mask (gate > 0), reduced like a gradient
)

// Reduce names how a tap gradient G (N x C x H x W) is reduced on the device.
type Reduce int32

// Reductions. A 2-D gradient is taken as N x C x 1 x 1.
const (
	ReduceNone           Reduce = C.GAIA_REDUCE_NONE            // the full gradient
	ReduceChannelMean    Reduce = C.GAIA_REDUCE_CHANNEL_MEAN    // N x C: spatial mean
	ReduceChannelNonzero Reduce = C.GAIA_REDUCE_CHANNEL_NONZERO // N x C: spatial fraction of non-zeros
	ReduceSumSqNonzero   Reduce = C.GAIA_REDUCE_SUMSQ_NONZERO   // N: sum over channels of (fraction of non-zeros)^2
	ReduceSumSqMean      Reduce = C.GAIA_REDUCE_SUMSQ_MEAN      // N: sum over channels of (spatial mean)^2
	ReduceMeanAbsMean    Reduce = C.GAIA_REDUCE_MEANABS_MEAN    // N: mean over channels of |spatial mean|
	ReduceL1             Reduce = C.GAIA_REDUCE_L1              // N: sum of |G| per sample
)

// InputTap is the tap index that names the input batch itself.
const InputTap = C.GAIA_TAP_INPUT

// ParamsTap, alone in a pass, takes the gradient of every parameter (a full
// backward, as training does); the result is each parameter's gradient L1 norm.
const ParamsTap = C.GAIA_TAP_PARAMS

// Pass is one backward pass: the gradient of Loss with respect to each of
// Taps, each reduced by Reduce.
type Pass struct {
	Loss      Loss
	LossTap   int     // the tap summed by LossSumTap
	LossParam float64 // the temperature of LossODIN
	Taps      []int
	Reduce    Reduce
}

// Result is what Run returns, all in Go memory.
type Result struct {
	Outputs []*Tensor   // the module's own outputs; Outputs[0] are the logits
	Values  []*Tensor   // the values of the taps asked for, in order
	Grads   [][]*Tensor // Grads[p][i]: pass p's reduced gradient at its i-th tap
}

// Module is a TorchScript module loaded onto a device, with its taps.
type Module struct {
	mu       sync.Mutex
	w        *worker
	h        *C.gaia_module
	device   string
	inputC   int
	taps     []Tap
	warnings []string
	source   string
	flags    C.int32_t
}

// SetReduceInHooks chooses how tap gradients are reduced: in tensor hooks as
// autograd produces each one (the default: the full gradients are never all
// held at once), or after the backward pass, from all of them (for measuring
// what the hooks save). Both give the same numbers.
func (m *Module) SetReduceInHooks(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if on {
		m.flags &^= C.GAIA_RUN_REDUCE_AFTER
	} else {
		m.flags |= C.GAIA_RUN_REDUCE_AFTER
	}
}

// CUDAKernelsBuilt reports whether the shim was built with the fused CUDA
// reductions of cuda/ (otherwise CUDA gradients are reduced with LibTorch ops).
func CUDAKernelsBuilt() bool { return C.gaia_cuda_kernels_built() != 0 }

// CUDAMemory reports the CUDA caching allocator's current and peak allocated
// bytes on a device, and resets the peak when reset is true. ok is false
// without CUDA.
func CUDAMemory(device int, reset bool) (current, peak int64, ok bool) {
	var cur, pk C.int64_t
	r := C.int32_t(0)
	if reset {
		r = 1
	}
	if C.gaia_cuda_memory(C.int32_t(device), r, &cur, &pk) != 0 {
		return 0, 0, false
	}
	return int64(cur), int64(pk), true
}

// LibTorch's OpenMP thread pools and thread counts belong to the OS thread
// that runs a parallel region. Goroutines move between OS threads, and each
// OS thread that ran LibTorch would get a pool of its own, spinning against
// the others (measured: a third of the throughput on 2 cores). So every call
// of a Module runs on one OS thread of its own, a worker goroutine locked to
// it, which also applies the thread count.

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

// worker runs functions on one locked OS thread.
type worker struct {
	calls   chan func()
	applied int32
	threads atomic.Int32 // this module's own thread count (0: the process's)
}

func startWorker() *worker {
	w := &worker{calls: make(chan func())}
	go func() {
		runtime.LockOSThread()
		for f := range w.calls {
			n := w.threads.Load()
			if n <= 0 {
				n = desiredThreads()
			}
			if n != w.applied {
				C.gaia_set_num_threads(C.int32_t(n))
				w.applied = n
			}
			f()
		}
	}()
	return w
}

// do runs f on the worker's thread and waits for it.
func (w *worker) do(f func()) {
	done := make(chan struct{})
	w.calls <- func() {
		defer close(done)
		f()
	}
	<-done
}

func (w *worker) stop() { close(w.calls) }

// SetThreads sets this module's intra-op threads from its next call on; 0
// returns it to the process's setting (SetNumThreads). A server may run
// single inputs on one thread and batches on all.
func (m *Module) SetThreads(n int) { m.w.threads.Store(int32(max(0, n))) }

// threadsInUse is LibTorch's intra-op thread count on the module's thread.
func (m *Module) threadsInUse() int {
	var n C.int32_t
	m.w.do(func() { n = C.gaia_get_num_threads() })
	return int(n)
}

// SetAllowTF32 says whether CUDA convolutions and matmuls may use TF32
// (LibTorch's default for convolutions: allowed). TF32 is faster on Ampere
// and later GPUs at about 1e-3 relative error; checks against float32
// references turn it off.
func SetAllowTF32(allow bool) {
	a := C.int32_t(0)
	if allow {
		a = 1
	}
	C.gaia_set_allow_tf32(a)
}

// ManualSeed seeds LibTorch's generators (CPU and CUDA).
func ManualSeed(seed uint64) { C.gaia_manual_seed(C.uint64_t(seed)) }

// Version is the version of the LibTorch linked.
func Version() string { return C.GoString(C.gaia_torch_version()) }

// CUDADeviceCount is the number of CUDA devices LibTorch sees (0 without CUDA).
func CUDADeviceCount() int { return int(C.gaia_cuda_device_count()) }

// CUDAAvailable reports whether LibTorch can use a CUDA device.
func CUDAAvailable() bool { return CUDADeviceCount() > 0 }

func statusError(op string, st *C.gaia_status) error {
	msg := "unknown error"
	if st.msg != nil {
		msg = strings.TrimSpace(C.GoString(st.msg))
		C.gaia_free(unsafe.Pointer(st.msg))
		st.msg = nil
	}
	return &Error{Op: op, Code: Code(st.code), Msg: msg}
}

// Load loads the TorchScript file at path onto device ("auto", "cpu",
// "cuda", "cuda:N").
func Load(path, device string) (*Module, error) {
	if err := CheckDevice(device); err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("torch: load %s: %w", path, err)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return load("load "+path, cpath, nil, 0, device, path)
}

// LoadBytes loads a TorchScript module from its serialized bytes.
func LoadBytes(b []byte, device string) (*Module, error) {
	if err := CheckDevice(device); err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("torch: load from bytes: no data")
	}
	buf := C.CBytes(b)
	defer C.free(buf)
	return load("load from bytes", nil, buf, len(b), device, "<bytes>")
}

func load(op string, cpath *C.char, data unsafe.Pointer, n int, device, source string) (*Module, error) {
	cdev := C.CString(device)
	defer C.free(unsafe.Pointer(cdev))
	var h *C.gaia_module
	var st C.gaia_status
	w := startWorker()
	var rc C.int
	w.do(func() { rc = C.gaia_module_load(cpath, data, C.size_t(n), cdev, &h, &st) })
	if rc != 0 {
		w.stop()
		return nil, statusError(op, &st)
	}
	m := &Module{w: w, h: h, source: source}
	if err := m.describe(); err != nil {
		w.do(func() { C.gaia_module_free(h) })
		w.stop()
		return nil, fmt.Errorf("torch: %s: %w", op, err)
	}
	runtime.SetFinalizer(m, (*Module).Close)
	return m, nil
}

func (m *Module) describe() error {
	var out *C.char
	var st C.gaia_status
	if C.gaia_module_describe(m.h, &out, &st) != 0 {
		return statusError("describe", &st)
	}
	text := C.GoString(out)
	C.gaia_free(unsafe.Pointer(out))
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Split(line, "\t")
		switch f[0] {
		case "device":
			m.device = f[1]
		case "input_channels":
			m.inputC, _ = strconv.Atoi(f[1])
		case "warning":
			m.warnings = append(m.warnings, f[1])
		case "tap":
			if len(f) != 6 {
				return fmt.Errorf("malformed tap record %q", line)
			}
			idx, _ := strconv.Atoi(f[1])
			ch, _ := strconv.Atoi(f[4])
			m.taps = append(m.taps, Tap{Index: idx, Name: f[2], Kind: TapKind(f[3]), Channels: ch, Gated: f[5] == "1"})
		}
	}
	return nil
}

// Close frees the module, after waiting for a call in flight. It is
// idempotent and safe to call from several goroutines.
func (m *Module) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h != nil {
		h := m.h
		m.w.do(func() { C.gaia_module_free(h) })
		m.w.stop()
		m.h = nil
		runtime.SetFinalizer(m, nil)
	}
	return nil
}

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

// Run does, in one call, the forward on x, returns the values of the taps
// listed in values, and runs each pass in order on the same forward.
func (m *Module) Run(x *Tensor, values []int, passes []Pass) (*Result, error) {
	if err := checkInput(x); err != nil {
		return nil, &Error{Op: "run", Code: CodeInvalid, Msg: err.Error()}
	}
	if x.Shape[1] != m.inputC && m.inputC > 0 {
		return nil, &Error{Op: "run", Code: CodeInvalid,
			Msg: fmt.Sprintf("input has %d channels; the model expects %d", x.Shape[1], m.inputC)}
	}
	for _, v := range values {
		if err := m.checkTap(v); err != nil {
			return nil, err
		}
	}
	cpasses := make([]C.gaia_pass, len(passes))
	var tapList []C.int32_t
	for i, p := range passes {
		for _, t := range p.Taps {
			if err := m.checkTap(t); err != nil {
				return nil, err
			}
		}
		if p.Loss == LossSumTap {
			if err := m.checkTap(p.LossTap); err != nil {
				return nil, err
			}
		}
		cpasses[i] = C.gaia_pass{
			loss: C.int32_t(p.Loss), loss_tap: C.int32_t(p.LossTap), loss_param: C.double(p.LossParam),
			reduce: C.int32_t(p.Reduce), taps_offset: C.int32_t(len(tapList)), n_taps: C.int32_t(len(p.Taps)),
		}
		for _, t := range p.Taps {
			tapList = append(tapList, C.int32_t(t))
		}
	}
	cvalues := make([]C.int32_t, len(values))
	for i, v := range values {
		cvalues[i] = C.int32_t(v)
	}
	shape := [4]C.int64_t{C.int64_t(x.Shape[0]), C.int64_t(x.Shape[1]), C.int64_t(x.Shape[2]), C.int64_t(x.Shape[3])}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.h == nil {
		return nil, ErrClosed
	}
	var res *C.gaia_result
	var st C.gaia_status
	var rc C.int
	m.w.do(func() {
		rc = C.gaia_module_run(m.h, (*C.float)(unsafe.Pointer(&x.Data[0])), &shape[0],
			ptrOrNil(cvalues), C.int32_t(len(cvalues)),
			passPtrOrNil(cpasses), C.int32_t(len(cpasses)),
			ptrOrNil(tapList), C.int32_t(len(tapList)), m.flags, &res, &st)
	})
	runtime.KeepAlive(x)
	if rc != 0 {
		return nil, statusError("run", &st)
	}
	defer C.gaia_result_free(res)
	all := copyResult(res)
	nOut := len(all) - len(values)
	for _, p := range passes {
		nOut -= len(p.Taps)
	}
	if nOut < 1 {
		return nil, &Error{Op: "run", Code: CodeGraph, Msg: "result has fewer tensors than asked for"}
	}
	r := &Result{Outputs: all[:nOut], Values: all[nOut : nOut+len(values)]}
	k := nOut + len(values)
	for _, p := range passes {
		r.Grads = append(r.Grads, all[k:k+len(p.Taps)])
		k += len(p.Taps)
	}
	return r, nil
}

func (m *Module) checkTap(i int) error {
	if i == InputTap || i == ParamsTap || (i >= 0 && i < len(m.taps)) {
		return nil
	}
	return &Error{Op: "run", Code: CodeInvalid, Msg: fmt.Sprintf("tap index %d out of range (the module has %d taps)", i, len(m.taps))}
}

func ptrOrNil(s []C.int32_t) *C.int32_t {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

func passPtrOrNil(s []C.gaia_pass) *C.gaia_pass {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

func copyResult(res *C.gaia_result) []*Tensor {
	n := int(res.n)
	cts := unsafe.Slice(res.tensors, n)
	out := make([]*Tensor, n)
	for i := range cts {
		ct := &cts[i]
		shape := make([]int, int(ct.ndim))
		numel := 1
		for d := range shape {
			shape[d] = int(ct.shape[d])
			numel *= shape[d]
		}
		data := make([]float32, numel)
		if numel > 0 {
			copy(data, unsafe.Slice((*float32)(unsafe.Pointer(ct.data)), numel))
		}
		out[i] = &Tensor{Shape: shape, Data: data}
	}
	return out
}

// TapShapes runs one forward on zeros of the given input shape (N x C x H x
// W) and returns each tap's value shape, indexed as Taps.
func (m *Module) TapShapes(shape [4]int) ([][]int, error) {
	cs := [4]C.int64_t{C.int64_t(shape[0]), C.int64_t(shape[1]), C.int64_t(shape[2]), C.int64_t(shape[3])}
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
	var out *C.char
	var st C.gaia_status
	var rc C.int
	m.w.do(func() { rc = C.gaia_module_tap_shapes(m.h, &cs[0], &out, &st) })
	if rc != 0 {
		return nil, statusError("tap shapes", &st)
	}
	text := C.GoString(out)
	C.gaia_free(unsafe.Pointer(out))
	shapes := make([][]int, len(m.taps))
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 2 {
			continue
		}
		i, err := strconv.Atoi(f[0])
		if err != nil || i < 0 || i >= len(shapes) {
			continue
		}
		for _, d := range strings.Split(f[1], "x") {
			v, _ := strconv.Atoi(d)
			shapes[i] = append(shapes[i], v)
		}
	}
	return shapes, nil
}

// mallocTuned says whether init kept glibc from returning freed blocks to the
// kernel (see tuneMalloc).
var mallocTuned bool

// tuneMalloc: LibTorch on the CPU allocates every batch's activations and
// gradients afresh; glibc serves blocks over its (dynamic) mmap threshold
// with mmap and unmaps them on free, so each batch faults its memory in again
// (a quarter of GAIA-Z's CPU time on ResNet-20, docs/perf.md). Keeping blocks
// up to 32 MiB in the heap, and trimming only above 1 GiB free, gave 1.4-1.6x
// the throughput of forward+backward and GAIA-Z there. The process's resident
// memory then stays near its peak instead of shrinking between batches.
// GAIA_MALLOC=default, or glibc malloc tunables in GLIBC_TUNABLES, leave
// glibc as it is.
func tuneMalloc() {
	if os.Getenv("GAIA_MALLOC") == "default" || strings.Contains(os.Getenv("GLIBC_TUNABLES"), "glibc.malloc.") {
		return
	}
	mallocTuned = C.gaia_tune_malloc(32<<20, 1<<30) == 1
}

func init() { tuneMalloc() }

// MallocTuned reports whether the allocator tuning of this package applies
// (glibc, not turned off by GAIA_MALLOC=default).
func MallocTuned() bool { return mallocTuned }
