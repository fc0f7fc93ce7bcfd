//go:build cgo && !gaia_nolibtorch

// reduce.cpp: a tap gradient reduced on its device before it is copied out.
//
// The reductions are one pass over each (sample, channel) plane, giving the
// spatial mean and the fraction of non-zeros, then the per-sample GAIA sums:
// on the CPU the parallel loop below (double accumulators), on CUDA the fused
// kernels of cuda/reduce.cu (launched from here, on LibTorch's current
// stream). Anything else (other dtypes, other reductions) goes through
// LibTorch ops.
#ifdef GAIA_WITH_CUDA
#include <c10/cuda/CUDAStream.h>

#include "gaia_cuda.h"
#endif

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "shim_internal.h"

namespace gaia {
namespace {

at::Tensor as4d(const at::Tensor& g) {
  if (g.dim() == 4) {
    return g;
  }
  if (g.dim() == 2) {
    return g.unsqueeze(2).unsqueeze(3);
  }
  if (g.dim() == 3) {
    return g.unsqueeze(3);
  }
  throw ShimError(GAIA_ERR_INVALID, "cannot reduce a gradient of " + std::to_string(g.dim()) + " dimensions per channel");
}

bool fused(const at::Tensor& g, int reduce) {
  return g.scalar_type() == at::kFloat && g.dim() >= 2 && g.dim() <= 4 && reduce >= GAIA_REDUCE_CHANNEL_MEAN &&
         reduce <= GAIA_REDUCE_MEANABS_MEAN;
}

// reduceCPU: one pass over each (n, c) plane, in parallel over planes, then
// the per-sample sums.
at::Tensor reduceCPU(const at::Tensor& g0, int reduce) {
  at::Tensor g = as4d(g0).contiguous();
  const int64_t n = g.size(0), c = g.size(1), hw = g.size(2) * g.size(3);
  at::Tensor mean = at::empty({n, c}, at::kFloat);
  at::Tensor nonzero = at::empty({n, c}, at::kFloat);
  const float* src = g.data_ptr<float>();
  float* pm = mean.data_ptr<float>();
  float* pz = nonzero.data_ptr<float>();
  at::parallel_for(0, n * c, std::max<int64_t>(1, 32768 / std::max<int64_t>(hw, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; nc++) {
      const float* p = src + nc * hw;
      // Eight independent lanes (instruction-level parallelism, and the
      // compiler may use SIMD), each summing at most hw/8 floats, then
      // combined in double.
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int32_t z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= hw; i += 8) {
        for (int k = 0; k < 8; k++) {
          s[k] += p[i + k];
          z[k] += p[i + k] != 0.0f;
        }
      }
      double sum = 0;
      int64_t count = 0;
      for (int k = 0; k < 8; k++) {
        sum += s[k];
        count += z[k];
      }
      for (; i < hw; i++) {
        sum += p[i];
        count += p[i] != 0.0f;
      }
      pm[nc] = static_cast<float>(sum / static_cast<double>(hw));
      pz[nc] = static_cast<float>(static_cast<double>(count) / static_cast<double>(hw));
    }
  });
  if (reduce == GAIA_REDUCE_CHANNEL_MEAN) {
    return mean;
  }
  if (reduce == GAIA_REDUCE_CHANNEL_NONZERO) {
    return nonzero;
  }
  at::Tensor out = at::empty({n}, at::kFloat);
  float* po = out.data_ptr<float>();
  for (int64_t i = 0; i < n; i++) {
    double acc = 0;
    for (int64_t k = 0; k < c; k++) {
      double m = pm[i * c + k], z = pz[i * c + k];
      switch (reduce) {
        case GAIA_REDUCE_SUMSQ_NONZERO:
          acc += z * z;
          break;
        case GAIA_REDUCE_SUMSQ_MEAN:
          acc += m * m;
          break;
        default:
          acc += std::abs(m);
      }
    }
    po[i] = static_cast<float>(reduce == GAIA_REDUCE_MEANABS_MEAN ? acc / static_cast<double>(c) : acc);
  }
  return out;
}

#ifdef GAIA_WITH_CUDA
void checkCuda(int rc, const char* msg) {
  if (rc != 0) {
    throw ShimError(GAIA_ERR_TORCH, msg);
  }
}

// reduceCUDA: the same reductions by the kernels of cuda/reduce.cu.
at::Tensor reduceCUDA(const at::Tensor& g0, int reduce) {
  at::Tensor g = as4d(g0);
  int64_t n = g.size(0), c = g.size(1), h = g.size(2), w = g.size(3);
  int64_t strides[4] = {g.stride(0), g.stride(1), g.stride(2), g.stride(3)};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(g.device().index()).stream();
  char err[256] = {0};
  at::Tensor mean = at::empty({n, c}, g.options());
  at::Tensor nonzero = at::empty({n, c}, g.options());
  checkCuda(gaia_cuda_channel_stats(g.data_ptr<float>(), n, c, h, w, strides, mean.data_ptr<float>(),
                                    nonzero.data_ptr<float>(), stream, err, sizeof err),
            err);
  if (reduce == GAIA_REDUCE_CHANNEL_MEAN) {
    return mean;
  }
  if (reduce == GAIA_REDUCE_CHANNEL_NONZERO) {
    return nonzero;
  }
  at::Tensor out = at::empty({3, n}, g.options());
  checkCuda(gaia_cuda_per_sample(mean.data_ptr<float>(), nonzero.data_ptr<float>(), n, c, out.data_ptr<float>(),
                                 stream, err, sizeof err),
            err);
  switch (reduce) {
    case GAIA_REDUCE_SUMSQ_NONZERO:
      return out[0];
    case GAIA_REDUCE_SUMSQ_MEAN:
      return out[1];
    default:
      return out[2];
  }
}
#endif

}  // namespace

at::Tensor reduceGrad(const at::Tensor& g, int reduce) {
  if (g.device().is_cpu() && fused(g, reduce)) {
    return reduceCPU(g, reduce);
  }
#ifdef GAIA_WITH_CUDA
  if (g.is_cuda() && fused(g, reduce)) {
    return reduceCUDA(g, reduce);
  }
#endif
  switch (reduce) {
    case GAIA_REDUCE_NONE:
      return g;
    case GAIA_REDUCE_CHANNEL_MEAN:
      return as4d(g).mean({2, 3});
    case GAIA_REDUCE_CHANNEL_NONZERO:
      return as4d(g).ne(0).to(at::kFloat).mean({2, 3});
    case GAIA_REDUCE_SUMSQ_NONZERO:
      return as4d(g).ne(0).to(at::kFloat).mean({2, 3}).pow(2).sum(1);
    case GAIA_REDUCE_SUMSQ_MEAN:
      return as4d(g).mean({2, 3}).pow(2).sum(1);
    case GAIA_REDUCE_MEANABS_MEAN:
      return as4d(g).mean({2, 3}).abs().mean(1);
    case GAIA_REDUCE_L1:
      return g.abs().reshape({g.size(0), -1}).sum(1);
    default:
      throw ShimError(GAIA_ERR_INVALID, "unknown reduction " + std::to_string(reduce));
  }
}

}  // namespace gaia
