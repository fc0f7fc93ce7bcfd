//go:build !cgo || gaia_nolibtorch

package torch

import (
	"fmt"
	"sync/atomic"

	"gonum.org/v1/gonum/mat"
)

// This build has no LibTorch: cgo is off (CGO_ENABLED=0, or no C compiler)
// or the gaia_nolibtorch tag is set. Everything that describes models, taps
// and passes still works; loading a model fails with ErrNoLibTorch.

// Available reports whether this build links LibTorch (it does not).
func Available() bool { return false }

// handle is the LibTorch side of a Module; this build has none.
type handle struct{}

func openHandle(op, path string, b []byte, device string, threads *atomic.Int32) (*handle, *moduleInfo, error) {
	return nil, nil, fmt.Errorf("torch: %s: %w", op, ErrNoLibTorch)
}

func (h *handle) free()                             {}
func (h *handle) run(*request) (*response, error)   { return nil, ErrNoLibTorch }
func (h *handle) tapShapes([4]int) ([][]int, error) { return nil, ErrNoLibTorch }
func (h *handle) threadsInUse() int                 { return 0 }
func (h *handle) put([]float32, []float64, []int) (Buffer, error) {
	return 0, ErrNoLibTorch
}
func (h *handle) get(Buffer) (*Tensor, error) { return nil, ErrNoLibTorch }
func (h *handle) drop(Buffer)                 {}

// CUDAKernelsBuilt is false: no LibTorch, no kernels.
func CUDAKernelsBuilt() bool { return false }

// CUDAMemory reports nothing without LibTorch.
func CUDAMemory(device int, reset bool) (current, peak int64, ok bool) { return 0, 0, false }

// SetAllowTF32 does nothing without LibTorch.
func SetAllowTF32(allow bool) {}

// ManualSeed does nothing without LibTorch.
func ManualSeed(seed uint64) {}

// Version says that no LibTorch is linked.
func Version() string { return "none (built without cgo)" }

// CUDADeviceCount is 0 without LibTorch.
func CUDADeviceCount() int { return 0 }

// TuneProcess does nothing without LibTorch.
func TuneProcess() (malloc, blas bool) { return false, false }

// BLASTuned is false without LibTorch.
func BLASTuned() bool { return false }

// MallocTuned is false: the tuning is done by the LibTorch build.
func MallocTuned() bool { return false }

// EighF64 is the eigen-decomposition of the symmetric d x d matrix a
// (row-major): ascending eigenvalues w and the eigenvectors as the columns
// of v. Without LibTorch, gonum's (slower; the same within rounding).
func EighF64(a []float64, d int) (w, v []float64, err error) {
	if d <= 0 || len(a) != d*d {
		return nil, nil, &Error{Op: "eigh", Code: CodeInvalid, Msg: fmt.Sprintf("%d values for a %d x %d matrix", len(a), d, d)}
	}
	var e mat.EigenSym
	if !e.Factorize(mat.NewSymDense(d, append([]float64(nil), a...)), true) {
		return nil, nil, &Error{Op: "eigh", Code: CodeInvalid, Msg: "the eigen-decomposition did not converge"}
	}
	var vecs mat.Dense
	e.VectorsTo(&vecs)
	return e.Values(nil), vecs.RawMatrix().Data, nil
}

// MatMulF64 is a (m x k) times b (k x n), float64, row-major (gonum's,
// without LibTorch).
func MatMulF64(a []float64, m, k int, b []float64, n int) ([]float64, error) {
	if m <= 0 || k <= 0 || n <= 0 || len(a) != m*k || len(b) != k*n {
		return nil, &Error{Op: "matmul", Code: CodeInvalid, Msg: fmt.Sprintf("%d x %d times %d x %d with %d and %d values", m, k, k, n, len(a), len(b))}
	}
	var out mat.Dense
	out.Mul(mat.NewDense(m, k, a), mat.NewDense(k, n, b))
	return out.RawMatrix().Data, nil
}
