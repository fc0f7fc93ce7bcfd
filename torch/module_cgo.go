//go:build cgo && !gaia_nolibtorch

package torch

// LibTorch's include and library paths come from CGO_CXXFLAGS and CGO_LDFLAGS,
// which the Makefile sets for the LibTorch it found. Build tags: gaia_torch_cuda
// links LibTorch's CUDA backend (a CUDA LibTorch); gaia_cuda also links the
// fused kernels of cuda/ (build/cuda/libgaia_cuda.a, made with nvcc);
// gaia_nolibtorch builds the package without LibTorch even with cgo on (the
// pure-Go core under the race detector, which needs cgo).

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
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The constants of pass.go and tap.go are shim.h's enums: a mismatch does
// not compile (a negative constant does not convert to uint).
const (
	_ = uint(int(LossMaxLogit)-C.GAIA_LOSS_MAX_LOGIT) + uint(C.GAIA_LOSS_MAX_LOGIT-int(LossMaxLogit))
	_ = uint(int(LossSumLogSoftmax)-C.GAIA_LOSS_SUM_LOG_SOFTMAX) + uint(C.GAIA_LOSS_SUM_LOG_SOFTMAX-int(LossSumLogSoftmax))
	_ = uint(int(LossSumTap)-C.GAIA_LOSS_SUM_TAP) + uint(C.GAIA_LOSS_SUM_TAP-int(LossSumTap))
	_ = uint(int(LossODIN)-C.GAIA_LOSS_ODIN) + uint(C.GAIA_LOSS_ODIN-int(LossODIN))
	_ = uint(int(LossUniformCE)-C.GAIA_LOSS_UNIFORM_CE) + uint(C.GAIA_LOSS_UNIFORM_CE-int(LossUniformCE))
	_ = uint(int(LossGate)-C.GAIA_LOSS_GATE) + uint(C.GAIA_LOSS_GATE-int(LossGate))
	_ = uint(int(ReduceNone)-C.GAIA_REDUCE_NONE) + uint(C.GAIA_REDUCE_NONE-int(ReduceNone))
	_ = uint(int(ReduceChannelMean)-C.GAIA_REDUCE_CHANNEL_MEAN) + uint(C.GAIA_REDUCE_CHANNEL_MEAN-int(ReduceChannelMean))
	_ = uint(int(ReduceChannelNonzero)-C.GAIA_REDUCE_CHANNEL_NONZERO) + uint(C.GAIA_REDUCE_CHANNEL_NONZERO-int(ReduceChannelNonzero))
	_ = uint(int(ReduceSumSqNonzero)-C.GAIA_REDUCE_SUMSQ_NONZERO) + uint(C.GAIA_REDUCE_SUMSQ_NONZERO-int(ReduceSumSqNonzero))
	_ = uint(int(ReduceSumSqMean)-C.GAIA_REDUCE_SUMSQ_MEAN) + uint(C.GAIA_REDUCE_SUMSQ_MEAN-int(ReduceSumSqMean))
	_ = uint(int(ReduceMeanAbsMean)-C.GAIA_REDUCE_MEANABS_MEAN) + uint(C.GAIA_REDUCE_MEANABS_MEAN-int(ReduceMeanAbsMean))
	_ = uint(int(ReduceL1)-C.GAIA_REDUCE_L1) + uint(C.GAIA_REDUCE_L1-int(ReduceL1))
	_ = uint(int(ReducePerturbForward)-C.GAIA_REDUCE_PERTURB_FORWARD) + uint(C.GAIA_REDUCE_PERTURB_FORWARD-int(ReducePerturbForward))
	_ = uint(InputTap-C.GAIA_TAP_INPUT) + uint(C.GAIA_TAP_INPUT-InputTap)
	_ = uint(ParamsTap-C.GAIA_TAP_PARAMS) + uint(C.GAIA_TAP_PARAMS-ParamsTap)
	_ = uint(runFlagReduceAfter-C.GAIA_RUN_REDUCE_AFTER) + uint(C.GAIA_RUN_REDUCE_AFTER-runFlagReduceAfter)
	_ = uint(int(HeadLinear)-C.GAIA_HEAD_LINEAR) + uint(C.GAIA_HEAD_LINEAR-int(HeadLinear))
	_ = uint(int(HeadMahalanobis)-C.GAIA_HEAD_MAHALANOBIS) + uint(C.GAIA_HEAD_MAHALANOBIS-int(HeadMahalanobis))
	_ = uint(int(HeadKNN)-C.GAIA_HEAD_KNN) + uint(C.GAIA_HEAD_KNN-int(HeadKNN))
	_ = uint(int(HeadResidual)-C.GAIA_HEAD_RESIDUAL) + uint(C.GAIA_HEAD_RESIDUAL-int(HeadResidual))
	_ = uint(int(HeadASH)-C.GAIA_HEAD_ASH) + uint(C.GAIA_HEAD_ASH-int(HeadASH))
	_ = uint(int(HeadKL)-C.GAIA_HEAD_KL) + uint(C.GAIA_HEAD_KL-int(HeadKL))
	_ = uint(int(HeadGram)-C.GAIA_HEAD_GRAM) + uint(C.GAIA_HEAD_GRAM-int(HeadGram))
	_ = uint(TapLogits-C.GAIA_TAP_LOGITS) + uint(C.GAIA_TAP_LOGITS-TapLogits)
)

// tapKinds maps shim.h's GAIA_TAP_* to TapKind.
var tapKinds = map[C.int32_t]TapKind{
	C.GAIA_TAP_BATCH_NORM:       KindBatchNorm,
	C.GAIA_TAP_GROUP_NORM:       KindGroupNorm,
	C.GAIA_TAP_INSTANCE_NORM:    KindInstanceNorm,
	C.GAIA_TAP_RELU_INPUT:       KindReLUInput,
	C.GAIA_TAP_FEATURE_MAP:      KindFeatureMap,
	C.GAIA_TAP_CLASSIFIER_INPUT: KindClassifierInput,
}

// Available reports whether this build links LibTorch (it does).
func Available() bool { return true }

// LibTorch's OpenMP thread pools and thread counts belong to the OS thread
// that runs a parallel region. Goroutines move between OS threads, and each
// OS thread that ran LibTorch would get a pool of its own, spinning against
// the others (measured: a third of the throughput on 2 cores). So every call
// of a Module runs on one OS thread of its own, a worker goroutine locked to
// it, which also applies the thread count.

// worker runs functions on one locked OS thread.
type worker struct {
	calls   chan func()
	applied int32
	threads *atomic.Int32 // the module's own count (0: the process's)
}

func startWorker(threads *atomic.Int32) *worker {
	w := &worker{calls: make(chan func()), threads: threads}
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

// handle is a loaded gaia_module and the worker that runs its calls.
type handle struct {
	w *worker
	h *C.gaia_module
}

func statusError(op string, st *C.gaia_status) error {
	msg := "unknown error"
	if st.msg != nil {
		msg = strings.TrimSpace(C.GoString(st.msg))
		C.gaia_free(unsafe.Pointer(st.msg))
		st.msg = nil
	}
	return &Error{Op: op, Code: Code(st.code), Msg: msg}
}

// openHandle loads a module from path, or from b when path is "", on its
// own worker, and describes it there.
func openHandle(op, path string, b []byte, device string, threads *atomic.Int32) (*handle, *moduleInfo, error) {
	cdev := C.CString(device)
	defer C.free(unsafe.Pointer(cdev))
	var cpath *C.char
	var data unsafe.Pointer
	if path != "" {
		cpath = C.CString(path)
		defer C.free(unsafe.Pointer(cpath))
	} else {
		data = C.CBytes(b)
		defer C.free(data)
	}
	h := &handle{w: startWorker(threads)}
	var st C.gaia_status
	var rc C.int
	h.w.do(func() { rc = C.gaia_module_load(cpath, data, C.size_t(len(b)), cdev, &h.h, &st) })
	if rc != 0 {
		h.w.stop()
		return nil, nil, statusError(op, &st)
	}
	var info *moduleInfo
	var err error
	h.w.do(func() { info, err = h.describe() })
	if err != nil {
		h.free()
		return nil, nil, &Error{Op: op, Code: CodeGraph, Msg: err.Error()}
	}
	return h, info, nil
}

// describe reads gaia_module_describe's struct arrays (on the worker).
func (h *handle) describe() (*moduleInfo, error) {
	var ci *C.gaia_module_info
	var st C.gaia_status
	if C.gaia_module_describe(h.h, &ci, &st) != 0 {
		return nil, statusError("describe", &st)
	}
	defer C.gaia_module_info_free(ci)
	info := &moduleInfo{device: C.GoString(ci.device), inputC: int(ci.input_channels)}
	for i, t := range unsafe.Slice(ci.taps, int(ci.n_taps)) {
		kind, ok := tapKinds[t.kind]
		if !ok {
			return nil, &Error{Op: "describe", Code: CodeGraph, Msg: "unknown tap kind " + C.GoString(t.name)}
		}
		info.taps = append(info.taps, Tap{Index: i, Name: C.GoString(t.name), Kind: kind, Channels: int(t.channels), Gated: t.gated != 0})
	}
	for _, w := range unsafe.Slice(ci.warnings, int(ci.n_warnings)) {
		info.warnings = append(info.warnings, C.GoString(w))
	}
	var cw, cb *C.gaia_tensor
	if C.gaia_module_classifier(h.h, &cw, &cb, &st) == 0 {
		info.clsW, info.clsB = copyTensor(cw), copyTensor(cb)
		C.gaia_tensor_free(cw)
		C.gaia_tensor_free(cb)
	} else {
		statusError("classifier", &st) // frees the message: a model without a classifier gaia recognizes
	}
	return info, nil
}

func (h *handle) free() {
	h.w.do(func() { C.gaia_module_free(h.h) })
	h.w.stop()
}

func ptrOrNil[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// run is gaia_module_run on the worker; the result is copied into Go memory
// and freed.
func (h *handle) run(req *request) (*response, error) {
	passes := make([]C.gaia_pass, len(req.passes))
	for i, p := range req.passes {
		passes[i] = C.gaia_pass{loss: C.int32_t(p.loss), loss_tap: C.int32_t(p.lossTap), loss_param: C.double(p.lossParam),
			reduce: C.int32_t(p.reduce), taps_offset: C.int32_t(p.tapsOffset), n_taps: C.int32_t(p.nTaps),
			params_offset: C.int32_t(p.paramsOffset), n_params: C.int32_t(p.nParams)}
	}
	values := make([]C.int32_t, len(req.values))
	for i, v := range req.values {
		values[i] = C.int32_t(v)
	}
	taps := make([]C.int32_t, len(req.tapList))
	for i, t := range req.tapList {
		taps[i] = C.int32_t(t)
	}
	params := make([]C.double, len(req.params))
	for i, p := range req.params {
		params[i] = C.double(p)
	}
	heads := make([]C.gaia_head, len(req.heads))
	for i, hd := range req.heads {
		heads[i] = C.gaia_head{kind: C.int32_t(hd.Kind), tap: C.int32_t(hd.Tap)}
		for j := range hd.Buf {
			heads[i].buf[j] = C.int32_t(hd.Buf[j])
			heads[i].arg[j] = C.double(hd.Arg[j])
		}
	}
	shape := [4]C.int64_t{C.int64_t(req.shape[0]), C.int64_t(req.shape[1]), C.int64_t(req.shape[2]), C.int64_t(req.shape[3])}
	var res *C.gaia_result
	var st C.gaia_status
	var rc C.int
	h.w.do(func() {
		rc = C.gaia_module_run(h.h, (*C.float)(unsafe.Pointer(&req.input[0])), &shape[0],
			ptrOrNil(values), C.int32_t(len(values)), ptrOrNil(passes), C.int32_t(len(passes)),
			ptrOrNil(taps), C.int32_t(len(taps)), ptrOrNil(params), C.int32_t(len(params)),
			ptrOrNil(heads), C.int32_t(len(heads)), C.int32_t(req.flags), &res, &st)
	})
	if rc != 0 {
		return nil, statusError("run", &st)
	}
	defer C.gaia_result_free(res)
	out := &response{nOutputs: int(res.n_outputs), nValues: int(res.n_values), nHeads: int(res.n_heads)}
	for _, c := range unsafe.Slice(res.pass_counts, int(res.n_passes)) {
		out.passCounts = append(out.passCounts, int(c))
	}
	for i := range unsafe.Slice(res.tensors, int(res.n)) {
		out.tensors = append(out.tensors, copyTensor(&unsafe.Slice(res.tensors, int(res.n))[i]))
	}
	return out, nil
}

func copyTensor(ct *C.gaia_tensor) *Tensor {
	shape := make([]int, int(ct.ndim))
	numel := 1
	for d := range shape {
		shape[d] = int(ct.shape[d])
		numel *= shape[d]
	}
	if ct.dtype == C.GAIA_F64 {
		data := make([]float64, numel)
		if numel > 0 {
			copy(data, unsafe.Slice((*float64)(ct.data), numel))
		}
		return &Tensor{Shape: shape, F64: data}
	}
	data := make([]float32, numel)
	if numel > 0 {
		copy(data, unsafe.Slice((*float32)(ct.data), numel))
	}
	return &Tensor{Shape: shape, Data: data}
}

// MatMulF64 is a (m x k) times b (k x n), float64, row-major, by
// LibTorch's BLAS on the CPU.
func MatMulF64(a []float64, m, k int, b []float64, n int) ([]float64, error) {
	if m <= 0 || k <= 0 || n <= 0 || len(a) != m*k || len(b) != k*n {
		return nil, &Error{Op: "matmul", Code: CodeInvalid, Msg: fmt.Sprintf("%d x %d times %d x %d with %d and %d values", m, k, k, n, len(a), len(b))}
	}
	out := make([]float64, m*n)
	var st C.gaia_status
	if C.gaia_matmul_f64((*C.double)(unsafe.Pointer(&a[0])), (*C.double)(unsafe.Pointer(&b[0])), C.int64_t(m), C.int64_t(k),
		C.int64_t(n), (*C.double)(unsafe.Pointer(&out[0])), &st) != 0 {
		return nil, statusError("matmul", &st)
	}
	return out, nil
}

// put is gaia_module_put on the worker.
func (h *handle) put(f32 []float32, f64 []float64, shape []int) (Buffer, error) {
	cs := make([]C.int64_t, len(shape))
	for i, d := range shape {
		cs[i] = C.int64_t(d)
	}
	dtype, ptr := C.int32_t(C.GAIA_F32), unsafe.Pointer(nil)
	switch {
	case f64 != nil:
		dtype = C.GAIA_F64
		if len(f64) > 0 {
			ptr = unsafe.Pointer(&f64[0])
		}
	case len(f32) > 0:
		ptr = unsafe.Pointer(&f32[0])
	}
	var dummy [1]float64
	if ptr == nil {
		ptr = unsafe.Pointer(&dummy[0]) // an empty buffer
	}
	var id C.int32_t
	var st C.gaia_status
	var rc C.int
	h.w.do(func() { rc = C.gaia_module_put(h.h, ptr, dtype, ptrOrNil(cs), C.int32_t(len(cs)), &id, &st) })
	if rc != 0 {
		return 0, statusError("put", &st)
	}
	return Buffer(id), nil
}

// get is gaia_module_get on the worker.
func (h *handle) get(b Buffer) (*Tensor, error) {
	var out *C.gaia_tensor
	var st C.gaia_status
	var rc C.int
	h.w.do(func() { rc = C.gaia_module_get(h.h, C.int32_t(b), &out, &st) })
	if rc != 0 {
		return nil, statusError("get", &st)
	}
	defer C.gaia_tensor_free(out)
	return copyTensor(out), nil
}

func (h *handle) drop(b Buffer) { h.w.do(func() { C.gaia_module_drop(h.h, C.int32_t(b)) }) }

// EighF64 is the eigen-decomposition of the symmetric d x d float64 matrix
// a (row-major): ascending eigenvalues w and the eigenvectors as the
// columns of v (row-major), by LibTorch's LAPACK on the CPU.
func EighF64(a []float64, d int) (w, v []float64, err error) {
	if d <= 0 || len(a) != d*d {
		return nil, nil, &Error{Op: "eigh", Code: CodeInvalid, Msg: fmt.Sprintf("%d values for a %d x %d matrix", len(a), d, d)}
	}
	w, v = make([]float64, d), make([]float64, d*d)
	var st C.gaia_status
	if C.gaia_eigh((*C.double)(unsafe.Pointer(&a[0])), C.int64_t(d), (*C.double)(unsafe.Pointer(&w[0])),
		(*C.double)(unsafe.Pointer(&v[0])), &st) != 0 {
		return nil, nil, statusError("eigh", &st)
	}
	return w, v, nil
}

// tapShapes is gaia_module_tap_shapes on the worker.
func (h *handle) tapShapes(shape [4]int) ([][]int, error) {
	cs := [4]C.int64_t{C.int64_t(shape[0]), C.int64_t(shape[1]), C.int64_t(shape[2]), C.int64_t(shape[3])}
	var out *C.gaia_shape
	var n C.int32_t
	var st C.gaia_status
	var rc C.int
	h.w.do(func() { rc = C.gaia_module_tap_shapes(h.h, &cs[0], &out, &n, &st) })
	if rc != 0 {
		return nil, statusError("tap shapes", &st)
	}
	defer C.gaia_free(unsafe.Pointer(out))
	var shapes [][]int
	for _, s := range unsafe.Slice(out, int(n)) {
		dims := make([]int, int(s.ndim))
		for d := range dims {
			dims[d] = int(s.dims[d])
		}
		shapes = append(shapes, dims)
	}
	return shapes, nil
}

func (h *handle) threadsInUse() int {
	var n C.int32_t
	h.w.do(func() { n = C.gaia_get_num_threads() })
	return int(n)
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

// mallocTuned and blasTuned say what TuneProcess applied.
var (
	tuneOnce    sync.Once
	mallocTuned bool
	blasTuned   bool
)

// TuneProcess tunes this process for LibTorch on the CPU, once; importing
// the package changes nothing. gaia's commands call it first thing; a
// program embedding gaia may call it before it opens a model, or leave the
// process as it is. It returns what it applied:
//
//   - malloc: glibc keeps freed blocks up to 32 MiB in its heap and trims
//     only above 1 GiB free. LibTorch on the CPU allocates every batch's
//     activations and gradients afresh; above glibc's (dynamic) mmap
//     threshold each is mapped and unmapped, and every batch faults its
//     memory in again (a quarter of GAIA-Z's CPU time on ResNet-20): kept,
//     forward+backward and GAIA-Z ran 1.4-1.6x faster (docs/perf.md). The
//     resident memory then stays near its peak between batches.
//     GAIA_MALLOC=default, or glibc malloc tunables in GLIBC_TUNABLES,
//     leave glibc as it is.
//   - blas: OpenBLAS (when LibTorch uses it, as Debian's does) runs on the
//     calling thread: its own spinning worker pool slowed the next forward
//     1.3x after a KNN head. OPENBLAS_NUM_THREADS, when set, is left alone.
func TuneProcess() (malloc, blas bool) {
	tuneOnce.Do(func() {
		if os.Getenv("GAIA_MALLOC") != "default" && !strings.Contains(os.Getenv("GLIBC_TUNABLES"), "glibc.malloc.") {
			mallocTuned = C.gaia_tune_malloc(32<<20, 1<<30) == 1
		}
		blasTuned = C.gaia_tune_blas() == 1
	})
	return mallocTuned, blasTuned
}

// BLASTuned reports whether TuneProcess made OpenBLAS run on LibTorch's
// calling thread.
func BLASTuned() bool { return blasTuned }

// MallocTuned reports whether TuneProcess tuned glibc's allocator.
func MallocTuned() bool { return mallocTuned }
