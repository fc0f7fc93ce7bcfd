// shim.h: the C ABI between Go and LibTorch.
//
// C++ inside, C at the edge. Every function that can fail returns 0 on
// success and a non-zero code on failure, and then fills *st with that code and
// a message allocated with malloc, which the caller frees with gaia_free.
// No C++ exception ever crosses this boundary. Nothing here keeps a pointer to
// memory passed in after the call returns. What a call hands back is
// allocated with malloc and owned by the caller, who frees it with the free
// function named beside it; the one exception is gaia_torch_version's static
// string.
//
// The implementation is split by job: abi.cpp (these functions and the
// copies in and out), graph.cpp (tap discovery and graph rewriting), run.cpp
// (the forward, the backward passes and their hooks) and reduce.cpp (the
// per-channel reductions, CPU loop and CUDA launcher side by side);
// shim_internal.h holds what they share.
#ifndef GAIA_SHIM_H
#define GAIA_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Status codes.
enum {
  GAIA_OK = 0,
  GAIA_ERR_TORCH = 1,    // a c10::Error raised by LibTorch
  GAIA_ERR_STD = 2,      // another std::exception
  GAIA_ERR_UNKNOWN = 3,  // anything else thrown
  GAIA_ERR_INVALID = 4,  // bad argument, detected by the shim
  GAIA_ERR_GRAPH = 5,    // a TorchScript graph the shim cannot understand
};

typedef struct gaia_status {
  int32_t code;
  char* msg;  // malloc'd; free with gaia_free
} gaia_status;

// An opaque loaded TorchScript module with its tapped forward graph.
typedef struct gaia_module gaia_module;

// What a tap is.
enum {
  GAIA_TAP_BATCH_NORM = 1,        // output of aten::batch_norm
  GAIA_TAP_GROUP_NORM = 2,        // output of aten::group_norm
  GAIA_TAP_INSTANCE_NORM = 3,     // output of aten::instance_norm
  GAIA_TAP_RELU_INPUT = 4,        // input of a ReLU (models without normalization)
  GAIA_TAP_FEATURE_MAP = 5,       // the final feature map, before global pooling
  GAIA_TAP_CLASSIFIER_INPUT = 6,  // the vector that enters the classifier (N x C)
};

// Scalar losses a backward pass can start from. z are the logits (the
// module's first output), N x K.
enum {
  GAIA_LOSS_MAX_LOGIT = 1,        // sum_n max_k z_nk
  GAIA_LOSS_SUM_LOG_SOFTMAX = 2,  // sum_n sum_k log softmax(z_n)_k
  GAIA_LOSS_SUM_TAP = 3,          // sum of every element of tap loss_tap's value
  GAIA_LOSS_ODIN = 4,             // sum_n -log softmax(z_n / T)_{argmax}, T = loss_param
  GAIA_LOSS_UNIFORM_CE = 5,       // sum_n sum_k -(1/K) log softmax(z_n)_k
  // No backward: for each tap, the forward mask (gate > 0) of the ReLU that
  // follows it (directly, or after one addition), reduced like a gradient.
  // Where that ReLU is the only thing between the tap and the loss's path
  // that can zero a gradient, the mask has the gradient's zero pattern.
  GAIA_LOSS_GATE = 6,
};

// What a pass hands back for each of its taps. G is the tap's gradient,
// N x C x H x W (a 2-D gradient is taken as N x C x 1 x 1).
enum {
  GAIA_REDUCE_NONE = 0,             // the full gradient
  GAIA_REDUCE_CHANNEL_MEAN = 1,     // N x C: mean over H, W
  GAIA_REDUCE_CHANNEL_NONZERO = 2,  // N x C: fraction of non-zero entries over H, W
  GAIA_REDUCE_SUMSQ_NONZERO = 3,    // N: sum_c (fraction non-zero)^2
  GAIA_REDUCE_SUMSQ_MEAN = 4,       // N: sum_c (mean over H, W)^2
  GAIA_REDUCE_MEANABS_MEAN = 5,     // N: mean_c |mean over H, W|
  GAIA_REDUCE_L1 = 6,               // N: sum of |G| over all but the first axis
  // For the input tap alone: x' = x - step_c * s, s = +1 where G >= 0 and -1
  // elsewhere, step_c = params[params_offset + c] (one per input channel);
  // hands back the logits of a second forward on x' (ODIN's perturbation,
  // done on the device).
  GAIA_REDUCE_PERTURB_FORWARD = 7,
};

// Flags of gaia_module_run.
enum {
  // Take every tap gradient first and reduce them afterwards (holds all the
  // full gradients at once), instead of reducing each in a hook as autograd
  // produces it. For measuring what the hooks save.
  GAIA_RUN_REDUCE_AFTER = 1,
};

// The tap index that names the input batch itself (for input gradients).
#define GAIA_TAP_INPUT (-1)
// The tap index that names every parameter of the module, alone in a pass:
// the pass's result is one vector, the L1 norm of each parameter's gradient
// (for measuring a full backward, as training does it).
#define GAIA_TAP_PARAMS (-2)

// One backward pass: the gradient of one loss with respect to n_taps taps,
// whose indices are tap_list[taps_offset : taps_offset + n_taps], each
// handed back as reduce says. Its parameters, if it has any, are
// params[params_offset : params_offset + n_params].
typedef struct gaia_pass {
  int32_t loss;
  int32_t loss_tap;
  double loss_param;
  int32_t reduce;
  int32_t taps_offset;
  int32_t n_taps;
  int32_t params_offset;
  int32_t n_params;
} gaia_pass;

// Element types of tensors and buffers.
enum {
  GAIA_F32 = 0,
  GAIA_F64 = 1,
};

typedef struct gaia_tensor {
  void* data;     // malloc'd, row-major, of dtype
  int32_t dtype;  // GAIA_F32 or GAIA_F64
  int32_t ndim;
  int64_t shape[8];
} gaia_tensor;

// What a head computes after the forward, on the device, from one value
// (tap: a tap index, or GAIA_TAP_LOGITS) and the module's buffers (buf:
// ids from gaia_module_put, -1 for none). x is the value as N x D (a map
// N x C x H x W for ASH). Results are N (f64 unless noted) or N x K logits
// (f32).
enum {
  // N x K: min(x, arg[1]) when arg[0] != 0, times buf[0]^T (K x D), plus
  // buf[1] (K): a classifier on a changed feature (ReAct, DICE).
  GAIA_HEAD_LINEAR = 1,
  // N: min over rows c of buf[0] (means, C x D) of (x - mu_c)^T buf[1]
  // (x - mu_c), buf[1] a D x D precision; in float64.
  GAIA_HEAD_MAHALANOBIS = 2,
  // N: the Euclidean distance from x / ||x|| to its arg[0]-th nearest row
  // of buf[0] (M x D, rows of unit norm), in float64.
  GAIA_HEAD_KNN = 3,
  // N: || (x - buf[0]) buf[1] ||, buf[0] an origin (D), buf[1] a D x R
  // basis of the residual space; in float64 (ViM).
  GAIA_HEAD_RESIDUAL = 4,
  // N x K: ASH on a map x: keep the k = n - round(n arg[1] / 100) largest
  // of each sample's n entries and zero the rest; arg[0] = 0 (s: scale the
  // kept by exp(sum x / sum kept)), 1 (p: prune only), 2 (b: set the kept to
  // sum x / k); then global average pooling, buf[0] (K x C) and buf[1] (K).
  GAIA_HEAD_ASH = 5,
  // N: min over rows c of buf[0] (log d_c, C x K) of KL(softmax(z) || d_c),
  // z the logits; in float64.
  GAIA_HEAD_KL = 6,
  // Fitting: buf[0] (D x D, f64) += x^T x in float64; hands back nothing
  // (an empty tensor).
  GAIA_HEAD_GRAM = 7,
};

// The tap index that names the logits (the module's first output), for heads.
#define GAIA_TAP_LOGITS (-3)

typedef struct gaia_head {
  int32_t kind;
  int32_t tap;
  int32_t buf[4];
  double arg[4];
} gaia_head;

// The result of gaia_module_run: n tensors, in order: the module's own
// outputs (n_outputs, the logits first), the values asked for (n_values),
// then pass_counts[p] tensors for each of the n_passes passes, then one
// tensor for each of the n_heads heads.
typedef struct gaia_result {
  int32_t n;
  gaia_tensor* tensors;
  int32_t n_outputs;
  int32_t n_values;
  int32_t n_passes;
  int32_t* pass_counts;
  int32_t n_heads;
} gaia_result;

// One tap, as gaia_module_describe lists it.
typedef struct gaia_tap_info {
  char* name;        // module path, such as "layer3.1.bn2"
  int32_t kind;      // GAIA_TAP_*
  int64_t channels;  // -1 when unknown before a forward
  int32_t gated;     // 1: a ReLU follows it and GAIA_LOSS_GATE can read it
} gaia_tap_info;

// What gaia_module_describe hands back; free with gaia_module_info_free.
typedef struct gaia_module_info {
  char* device;            // "cpu", "cuda:0"
  int64_t input_channels;  // of the first convolution; -1 when unknown
  int32_t n_taps;
  gaia_tap_info* taps;
  int32_t n_warnings;
  char** warnings;  // what the tap machinery could not handle
} gaia_module_info;

// One tensor shape.
typedef struct gaia_shape {
  int32_t ndim;
  int64_t dims[8];
} gaia_shape;

// gaia_free frees memory the shim allocated (messages).
void gaia_free(void* p);

// gaia_result_free frees a result and every tensor in it; NULL is fine.
void gaia_result_free(gaia_result* r);

// gaia_module_info_free frees what gaia_module_describe handed back; NULL is fine.
void gaia_module_info_free(gaia_module_info* info);

// gaia_torch_version returns LibTorch's version, a static string (not freed).
const char* gaia_torch_version(void);

// gaia_cuda_device_count wraps torch::cuda::device_count (0 without CUDA).
int32_t gaia_cuda_device_count(void);

// gaia_cuda_kernels_built reports whether the shim was built with the fused
// CUDA kernels of cuda/ (GAIA_WITH_CUDA).
int32_t gaia_cuda_kernels_built(void);

// gaia_tune_malloc keeps freed blocks up to mmap_threshold bytes in glibc's
// heap instead of returning them to the kernel (mallopt M_MMAP_THRESHOLD and
// M_TRIM_THRESHOLD), so that each batch's activations do not fault in fresh
// pages. Returns 1 when applied, 0 where the C library is not glibc.
int32_t gaia_tune_malloc(int64_t mmap_threshold, int64_t trim_threshold);

// gaia_tune_blas makes OpenBLAS (when LibTorch uses it, as Debian's does)
// run on the calling thread: its own worker threads spin after each call
// and slow down the next forward's OpenMP threads (measured: a KNN head's
// product made the next forward 1.3x slower on 2 cores). Leaves
// OPENBLAS_NUM_THREADS, when set, alone. Returns 1 when applied.
int32_t gaia_tune_blas(void);

// gaia_set_num_threads wraps at::set_num_threads (intra-op threads).
void gaia_set_num_threads(int32_t n);

// gaia_get_num_threads wraps at::get_num_threads.
int32_t gaia_get_num_threads(void);

// gaia_set_allow_tf32 wraps at::globalContext().setAllowTF32CuDNN and
// setAllowTF32CuBLAS: whether CUDA convolutions and matmuls may use TF32
// (faster on Ampere and later, about 1e-3 relative error).
void gaia_set_allow_tf32(int32_t allow);

// gaia_manual_seed wraps torch::manual_seed (CPU and every CUDA device).
void gaia_manual_seed(uint64_t seed);

// gaia_cuda_memory reports the CUDA caching allocator's current and peak
// allocated bytes on a device since the last reset (reset != 0 resets the
// peak after reading). Returns -1 without CUDA.
int gaia_cuda_memory(int32_t device, int32_t reset, int64_t* current, int64_t* peak);

// gaia_module_load loads a TorchScript module from the file at path, or, when
// path is NULL, from the len bytes at data (copied during the call). device is
// "cpu", "cuda", "cuda:N" or "auto". The module is put in eval mode and its
// forward graph is rewritten so that every tap is also returned.
int gaia_module_load(const char* path, const void* data, size_t len,
                     const char* device, gaia_module** out, gaia_status* st);

// gaia_module_free frees a module; NULL is fine.
void gaia_module_free(gaia_module* m);

// gaia_module_describe hands back the module's device, input channels, taps
// (in graph order: a tap's index is its position) and warnings.
int gaia_module_describe(gaia_module* m, gaia_module_info** out, gaia_status* st);

// gaia_module_run copies the float32 batch input (shape[0..3] = N, C, H, W)
// to the module's device, runs the tapped forward in eval mode and then each
// pass in order (the autograd graph is kept until the last pass), and hands
// back a gaia_result (see there). values are tap indices (or GAIA_TAP_INPUT)
// whose values are handed back; a classifier input that is N x C x 1 x 1 (a
// 1x1-convolution head) comes back as N x C.
int gaia_module_run(gaia_module* m, const float* input, const int64_t* shape,
                    const int32_t* values, int32_t n_values,
                    const gaia_pass* passes, int32_t n_passes,
                    const int32_t* tap_list, int32_t n_tap_list,
                    const double* params, int32_t n_params,
                    const gaia_head* heads, int32_t n_heads, int32_t flags,
                    gaia_result** out, gaia_status* st);

// gaia_module_put copies a host array (dtype GAIA_F32 or GAIA_F64, ndim <=
// 8 axes) to the module's device and keeps it as buffer *id for heads.
int gaia_module_put(gaia_module* m, const void* data, int32_t dtype, const int64_t* shape, int32_t ndim,
                    int32_t* id, gaia_status* st);

// gaia_module_get copies buffer id back to the host (its dtype kept) into a
// malloc'd tensor the caller frees with gaia_tensor_free.
int gaia_module_get(gaia_module* m, int32_t id, gaia_tensor** out, gaia_status* st);

// gaia_module_drop frees buffer id (an unknown id is fine).
void gaia_module_drop(gaia_module* m, int32_t id);

// gaia_tensor_free frees one tensor and its data; NULL is fine.
void gaia_tensor_free(gaia_tensor* t);

// gaia_module_classifier copies the classifier's weight (K x D: a Linear's,
// or a 1x1 convolution head's) and bias (K; zeros without one) to the host
// as float32 tensors the caller frees with gaia_tensor_free. Fails when the
// module has no classifier gaia recognized.
int gaia_module_classifier(gaia_module* m, gaia_tensor** weight, gaia_tensor** bias, gaia_status* st);

// gaia_eigh: the eigenvalues (ascending, w: d) and eigenvectors (columns of
// v: d x d, row-major) of the symmetric d x d float64 matrix a, by
// LibTorch's LAPACK on the CPU.
int gaia_eigh(const double* a, int64_t d, double* w, double* v, gaia_status* st);

// gaia_matmul_f64: out (m x n) = a (m x k) b (k x n), float64, row-major,
// by LibTorch's BLAS on the CPU.
int gaia_matmul_f64(const double* a, const double* b, int64_t m, int64_t k, int64_t n, double* out, gaia_status* st);

// gaia_module_tap_shapes runs one forward without gradients on a batch of
// zeros of the given shape and hands back each tap's value shape, one per tap
// in tap order (*n of them, malloc'd; free with gaia_free). It is how a
// caller learns spatial sizes.
int gaia_module_tap_shapes(gaia_module* m, const int64_t* shape, gaia_shape** out,
                           int32_t* n, gaia_status* st);

#ifdef __cplusplus
}
#endif

#endif  // GAIA_SHIM_H
