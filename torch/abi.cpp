//go:build cgo && !gaia_nolibtorch

// abi.cpp: the C ABI of shim.h. Each function catches every exception and
// turns it into a status; results are copied into malloc'd memory the caller
// owns. The work itself is in graph.cpp, run.cpp and reduce.cpp.
#include <torch/cuda.h>
#include <torch/version.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>

#ifdef GAIA_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <sstream>

#include "shim_internal.h"

namespace jit = torch::jit;
using gaia::ShimError;

namespace {

char* dupString(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p == nullptr) {
    throw ShimError(GAIA_ERR_STD, "out of memory");
  }
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

int fail(gaia_status* st, int code, const std::string& msg) {
  if (st != nullptr) {
    st->code = code;
    st->msg = static_cast<char*>(std::malloc(msg.size() + 1));
    if (st->msg != nullptr) {
      std::memcpy(st->msg, msg.c_str(), msg.size() + 1);
    }
  }
  return code;
}

// guarded runs f and turns every exception into a status.
template <typename F>
int guarded(gaia_status* st, F&& f) {
  try {
    f();
    return GAIA_OK;
  } catch (const ShimError& e) {
    return fail(st, e.code, e.what());
  } catch (const c10::Error& e) {
    return fail(st, GAIA_ERR_TORCH, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(st, GAIA_ERR_STD, e.what());
  } catch (...) {
    return fail(st, GAIA_ERR_UNKNOWN, "unknown C++ exception");
  }
}

template <typename T>
T* callocOrThrow(size_t n) {
  auto* p = static_cast<T*>(std::calloc(n > 0 ? n : 1, sizeof(T)));
  if (p == nullptr) {
    throw ShimError(GAIA_ERR_STD, "out of memory");
  }
  return p;
}

c10::Device parseDevice(const std::string& s) {
  if (s.empty() || s == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  c10::Device d(s);  // throws c10::Error on a malformed name
  if (d.is_cuda()) {
    int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (count == 0) {
      throw ShimError(GAIA_ERR_INVALID, "device " + s + ": CUDA is not available in this LibTorch build or on this machine");
    }
    if (!d.has_index()) {
      d = c10::Device(c10::kCUDA, 0);
    }
    if (d.index() >= count) {
      throw ShimError(GAIA_ERR_INVALID, "device " + s + ": only " + std::to_string(count) + " CUDA device(s)");
    }
  } else if (!d.is_cpu()) {
    throw ShimError(GAIA_ERR_INVALID, "device " + s + ": only cpu and cuda are supported");
  }
  return d;
}

// copyOut copies a tensor to the host into out: float64 stays float64,
// anything else becomes float32.
void copyOut(const at::Tensor& t0, gaia_tensor* out) {
  bool f64 = t0.scalar_type() == at::kDouble;
  at::Tensor t = t0.detach().to(at::kCPU, f64 ? at::kDouble : at::kFloat).contiguous();
  if (t.dim() > 8) {
    throw ShimError(GAIA_ERR_INVALID, "tensor of more than 8 dimensions");
  }
  out->dtype = f64 ? GAIA_F64 : GAIA_F32;
  out->ndim = static_cast<int32_t>(t.dim());
  for (int64_t i = 0; i < t.dim(); i++) {
    out->shape[i] = t.size(i);
  }
  size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  out->data = std::malloc(bytes > 0 ? bytes : 1);
  if (out->data == nullptr) {
    throw ShimError(GAIA_ERR_STD, "out of memory copying a result");
  }
  if (bytes > 0) {
    std::memcpy(out->data, t.data_ptr(), bytes);
  }
}

gaia_tensor* newTensorOut(const at::Tensor& t) {
  auto* out = callocOrThrow<gaia_tensor>(1);
  try {
    copyOut(t, out);
  } catch (...) {
    std::free(out);
    throw;
  }
  return out;
}

}  // namespace

extern "C" {

void gaia_free(void* p) { std::free(p); }

void gaia_result_free(gaia_result* r) {
  if (r == nullptr) {
    return;
  }
  if (r->tensors != nullptr) {
    for (int32_t i = 0; i < r->n; i++) {
      std::free(r->tensors[i].data);
    }
  }
  std::free(r->tensors);
  std::free(r->pass_counts);
  std::free(r);
}

void gaia_module_info_free(gaia_module_info* info) {
  if (info == nullptr) {
    return;
  }
  std::free(info->device);
  if (info->taps != nullptr) {
    for (int32_t i = 0; i < info->n_taps; i++) {
      std::free(info->taps[i].name);
    }
  }
  std::free(info->taps);
  if (info->warnings != nullptr) {
    for (int32_t i = 0; i < info->n_warnings; i++) {
      std::free(info->warnings[i]);
    }
  }
  std::free(info->warnings);
  std::free(info);
}

const char* gaia_torch_version(void) { return TORCH_VERSION; }

int32_t gaia_cuda_device_count(void) {
  try {
    return static_cast<int32_t>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

int32_t gaia_cuda_kernels_built(void) {
#ifdef GAIA_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

int32_t gaia_tune_malloc(int64_t mmap_threshold, int64_t trim_threshold) {
#ifdef __GLIBC__
  int ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold));
  ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) && ok;
  return ok ? 1 : 0;
#else
  return 0;
#endif
}

int32_t gaia_tune_blas(void) {
  if (std::getenv("OPENBLAS_NUM_THREADS") != nullptr) {
    return 0;
  }
  auto set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) {
    return 0;
  }
  set(1);
  return 1;
}

void gaia_set_num_threads(int32_t n) {
  try {
    if (n > 0) {
      at::set_num_threads(n);
    }
  } catch (...) {
  }
}

int32_t gaia_get_num_threads(void) {
  try {
    return at::get_num_threads();
  } catch (...) {
    return 0;
  }
}

void gaia_set_allow_tf32(int32_t allow) {
  try {
    at::globalContext().setAllowTF32CuDNN(allow != 0);
    at::globalContext().setAllowTF32CuBLAS(allow != 0);
  } catch (...) {
  }
}

void gaia_manual_seed(uint64_t seed) {
  try {
    torch::manual_seed(seed);
  } catch (...) {
  }
}

int gaia_cuda_memory(int32_t device, int32_t reset, int64_t* current, int64_t* peak) {
#ifdef GAIA_WITH_CUDA
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *current = stats.allocated_bytes[agg].current;
    *peak = stats.allocated_bytes[agg].peak;
    if (reset != 0) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
    }
    return 0;
  } catch (...) {
    return -1;
  }
#else
  (void)device;
  (void)reset;
  *current = 0;
  *peak = 0;
  return -1;
#endif
}

int gaia_module_load(const char* path, const void* data, size_t len, const char* device, gaia_module** out,
                     gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    auto m = std::make_unique<gaia_module>();
    m->device = parseDevice(device != nullptr ? device : "auto");
    if (path != nullptr) {
      m->module = jit::load(std::string(path), m->device);
    } else {
      std::string bytes(static_cast<const char*>(data), len);
      std::istringstream in(bytes);
      m->module = jit::load(in, m->device);
    }
    m->module.eval();
    gaia::buildTappedGraph(m.get());
    *out = m.release();
  });
}

void gaia_module_free(gaia_module* m) {
  try {
    delete m;
  } catch (...) {
  }
}

int gaia_module_describe(gaia_module* m, gaia_module_info** out, gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    auto* info = callocOrThrow<gaia_module_info>(1);
    try {
      info->device = dupString(m->device.str());
      info->input_channels = m->inputChannels;
      info->taps = callocOrThrow<gaia_tap_info>(m->taps.size());
      for (const gaia::Tap& t : m->taps) {
        gaia_tap_info& ti = info->taps[info->n_taps];
        ti.name = dupString(t.name);
        ti.kind = t.kind;
        ti.channels = t.channels;
        ti.gated = t.gateOutput >= 0 ? 1 : 0;
        info->n_taps++;
      }
      info->warnings = callocOrThrow<char*>(m->warnings.size());
      for (const std::string& w : m->warnings) {
        info->warnings[info->n_warnings] = dupString(w);
        info->n_warnings++;
      }
    } catch (...) {
      gaia_module_info_free(info);
      throw;
    }
    *out = info;
  });
}

int gaia_module_run(gaia_module* m, const float* input, const int64_t* shape, const int32_t* values, int32_t n_values,
                    const gaia_pass* passes, int32_t n_passes, const int32_t* tap_list, int32_t n_tap_list,
                    const double* params, int32_t n_params, const gaia_head* heads, int32_t n_heads, int32_t flags,
                    gaia_result** out, gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    gaia::RunRequest req{input, shape, values, n_values, passes, n_passes, tap_list, n_tap_list, params, n_params,
                         heads, n_heads, flags};
    gaia::RunResult res = gaia::runBatch(m, req);
    auto* r = callocOrThrow<gaia_result>(1);
    try {
      r->tensors = callocOrThrow<gaia_tensor>(res.tensors.size());
      for (const at::Tensor& t : res.tensors) {
        copyOut(t, &r->tensors[r->n]);
        r->n++;
      }
      r->n_outputs = res.nOutputs;
      r->n_values = res.nValues;
      r->pass_counts = callocOrThrow<int32_t>(res.passCounts.size());
      for (int32_t c : res.passCounts) {
        r->pass_counts[r->n_passes++] = c;
      }
      r->n_heads = res.nHeads;
    } catch (...) {
      gaia_result_free(r);
      throw;
    }
    *out = r;
  });
}

int gaia_module_put(gaia_module* m, const void* data, int32_t dtype, const int64_t* shape, int32_t ndim, int32_t* id,
                    gaia_status* st) {
  *id = 0;
  return guarded(st, [&] {
    if (ndim < 0 || ndim > 8 || (dtype != GAIA_F32 && dtype != GAIA_F64)) {
      throw ShimError(GAIA_ERR_INVALID, "put: a buffer of " + std::to_string(ndim) + " axes, dtype " + std::to_string(dtype));
    }
    std::vector<int64_t> sizes(shape, shape + ndim);
    auto opts = torch::TensorOptions().dtype(dtype == GAIA_F64 ? at::kDouble : at::kFloat);
    at::Tensor t = torch::from_blob(const_cast<void*>(data), sizes, opts).to(m->device, opts.dtype(), false, true);
    *id = m->nextBuffer++;
    m->buffers[*id] = t;
  });
}

int gaia_module_get(gaia_module* m, int32_t id, gaia_tensor** out, gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    auto it = m->buffers.find(id);
    if (it == m->buffers.end()) {
      throw ShimError(GAIA_ERR_INVALID, "get: no buffer " + std::to_string(id));
    }
    *out = newTensorOut(it->second);
  });
}

void gaia_module_drop(gaia_module* m, int32_t id) {
  try {
    m->buffers.erase(id);
  } catch (...) {
  }
}

void gaia_tensor_free(gaia_tensor* t) {
  if (t != nullptr) {
    std::free(t->data);
    std::free(t);
  }
}

int gaia_module_classifier(gaia_module* m, gaia_tensor** weight, gaia_tensor** bias, gaia_status* st) {
  *weight = nullptr;
  *bias = nullptr;
  return guarded(st, [&] {
    if (!m->clsWeight.defined()) {
      throw ShimError(GAIA_ERR_GRAPH, "no classifier weight found (a Linear, or a 1x1 convolution on a pooled map)");
    }
    gaia_tensor* w = newTensorOut(m->clsWeight);
    try {
      *bias = newTensorOut(m->clsBias);
    } catch (...) {
      gaia_tensor_free(w);
      throw;
    }
    *weight = w;
  });
}

int gaia_eigh(const double* a, int64_t d, double* w, double* v, gaia_status* st) {
  return guarded(st, [&] {
    at::Tensor m = torch::from_blob(const_cast<double*>(a), {d, d}, torch::TensorOptions().dtype(at::kDouble)).clone();
    auto res = at::linalg_eigh(m);
    at::Tensor vals = std::get<0>(res).contiguous(), vecs = std::get<1>(res).contiguous();
    std::memcpy(w, vals.data_ptr<double>(), static_cast<size_t>(d) * sizeof(double));
    std::memcpy(v, vecs.data_ptr<double>(), static_cast<size_t>(d * d) * sizeof(double));
  });
}

int gaia_matmul_f64(const double* a, const double* b, int64_t m, int64_t k, int64_t n, double* out, gaia_status* st) {
  return guarded(st, [&] {
    auto opts = torch::TensorOptions().dtype(at::kDouble);
    at::Tensor r = at::mm(torch::from_blob(const_cast<double*>(a), {m, k}, opts),
                          torch::from_blob(const_cast<double*>(b), {k, n}, opts))
                       .contiguous();
    std::memcpy(out, r.data_ptr<double>(), static_cast<size_t>(m * n) * sizeof(double));
  });
}

int gaia_module_tap_shapes(gaia_module* m, const int64_t* shape, gaia_shape** out, int32_t* n, gaia_status* st) {
  *out = nullptr;
  *n = 0;
  return guarded(st, [&] {
    auto shapes = gaia::tapShapes(m, shape);
    auto* s = callocOrThrow<gaia_shape>(shapes.size());
    for (size_t i = 0; i < shapes.size(); i++) {
      if (shapes[i].size() > 8) {
        std::free(s);
        throw ShimError(GAIA_ERR_INVALID, "tap of more than 8 dimensions");
      }
      s[i].ndim = static_cast<int32_t>(shapes[i].size());
      std::copy(shapes[i].begin(), shapes[i].end(), s[i].dims);
    }
    *out = s;
    *n = static_cast<int32_t>(shapes.size());
  });
}

}  // extern "C"
