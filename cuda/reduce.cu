// reduce.cu: the kernels behind gaia_cuda.h.
#include "gaia_cuda.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ float warpSum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) {
    v += __shfl_down_sync(0xffffffffu, v, off);
  }
  return v;
}

// blockSum reduces v over the block; the result is valid in thread 0.
// shared must hold blockDim.x / 32 floats.
__device__ float blockSum(float v, float* shared) {
  int lane = threadIdx.x % kWarp;
  int warp = threadIdx.x / kWarp;
  v = warpSum(v);
  if (lane == 0) {
    shared[warp] = v;
  }
  __syncthreads();
  int warps = (blockDim.x + kWarp - 1) / kWarp;
  v = (threadIdx.x < warps) ? shared[threadIdx.x] : 0.0f;
  if (warp == 0) {
    v = warpSum(v);
  }
  __syncthreads();
  return v;
}

// One block per (n, c): one pass over H x W, summing values and counting non-zeros.
__global__ void channelStats(const float* __restrict__ g, int64_t C, int64_t H, int64_t W,
                             int64_t sN, int64_t sC, int64_t sH, int64_t sW,
                             float* __restrict__ mean, float* __restrict__ nonzero) {
  __shared__ float shared[2][32];
  int64_t nc = blockIdx.x;
  int64_t n = nc / C;
  int64_t c = nc % C;
  const float* base = g + n * sN + c * sC;
  int64_t hw = H * W;
  float sum = 0.0f;
  float count = 0.0f;
  if (sW == 1 && sH == W) {
    for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
      float v = base[i];
      sum += v;
      count += (v != 0.0f) ? 1.0f : 0.0f;
    }
  } else {
    for (int64_t i = threadIdx.x; i < hw; i += blockDim.x) {
      float v = base[(i / W) * sH + (i % W) * sW];
      sum += v;
      count += (v != 0.0f) ? 1.0f : 0.0f;
    }
  }
  sum = blockSum(sum, shared[0]);
  count = blockSum(count, shared[1]);
  if (threadIdx.x == 0) {
    mean[nc] = sum / static_cast<float>(hw);
    nonzero[nc] = count / static_cast<float>(hw);
  }
}

// One block per sample: the three per-sample reductions over channels.
__global__ void perSample(const float* __restrict__ mean, const float* __restrict__ nonzero,
                          int64_t N, int64_t C, float* __restrict__ out) {
  __shared__ float shared[3][32];
  int64_t n = blockIdx.x;
  float sqNZ = 0.0f, sqMean = 0.0f, absMean = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float m = mean[n * C + c];
    float z = nonzero[n * C + c];
    sqNZ += z * z;
    sqMean += m * m;
    absMean += fabsf(m);
  }
  sqNZ = blockSum(sqNZ, shared[0]);
  sqMean = blockSum(sqMean, shared[1]);
  absMean = blockSum(absMean, shared[2]);
  if (threadIdx.x == 0) {
    out[n] = sqNZ;
    out[N + n] = sqMean;
    out[2 * N + n] = absMean / static_cast<float>(C);
  }
}

int threadsFor(int64_t work) {
  int t = kWarp;
  while (t < 256 && t < work) {
    t *= 2;
  }
  return t;
}

int report(cudaError_t e, const char* what, char* err, size_t errlen) {
  if (e == cudaSuccess) {
    return 0;
  }
  if (err != nullptr && errlen > 0) {
    std::snprintf(err, errlen, "%s: %s", what, cudaGetErrorString(e));
  }
  return static_cast<int>(e);
}

}  // namespace

extern "C" int gaia_cuda_channel_stats(const float* g, int64_t n, int64_t c, int64_t h, int64_t w,
                                       const int64_t* strides, float* mean, float* nonzero, void* stream,
                                       char* err, size_t errlen) {
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) {
    return 0;
  }
  int64_t blocks = n * c;
  if (blocks > 0x7fffffffLL) {
    return report(cudaErrorInvalidValue, "channel stats: more than 2^31 channels", err, errlen);
  }
  channelStats<<<static_cast<unsigned>(blocks), threadsFor(h * w), 0, static_cast<cudaStream_t>(stream)>>>(
      g, c, h, w, strides[0], strides[1], strides[2], strides[3], mean, nonzero);
  return report(cudaGetLastError(), "channel stats kernel", err, errlen);
}

extern "C" int gaia_cuda_per_sample(const float* mean, const float* nonzero, int64_t n, int64_t c, float* out,
                                    void* stream, char* err, size_t errlen) {
  if (n <= 0 || c <= 0) {
    return 0;
  }
  perSample<<<static_cast<unsigned>(n), threadsFor(c), 0, static_cast<cudaStream_t>(stream)>>>(mean, nonzero, n, c,
                                                                                           out);
  return report(cudaGetLastError(), "per-sample kernel", err, errlen);
}
