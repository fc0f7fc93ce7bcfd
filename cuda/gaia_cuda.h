// gaia_cuda.h: fused reductions of tap gradients on the GPU.
//
// The shim calls these on LibTorch's current CUDA stream when it is built with
// GAIA_WITH_CUDA (the Makefile does so when it finds nvcc and a CUDA LibTorch).
// Every function checks the launch and returns 0 or a CUDA error code, with
// its message in err (at most errlen bytes, NUL-terminated).
#ifndef GAIA_CUDA_H
#define GAIA_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// gaia_cuda_channel_stats reads a float32 gradient G of shape N x C x H x W
// with element strides strides[0..3] (any layout) once, and writes, per (n, c),
// mean[n*C + c] = mean over H, W of G and nonzero[n*C + c] = the fraction of
// those entries that are not zero.
int gaia_cuda_channel_stats(const float* g, int64_t n, int64_t c, int64_t h, int64_t w,
                            const int64_t* strides, float* mean, float* nonzero, void* stream,
                            char* err, size_t errlen);

// gaia_cuda_per_sample reduces the N x C outputs of gaia_cuda_channel_stats
// (contiguous) to three numbers per sample, written to out[0..3N):
//   out[n]       = sum_c nonzero[n, c]^2          (GAIA-Z, one tap)
//   out[N + n]   = sum_c mean[n, c]^2             (GAIA-A inner, one tap)
//   out[2N + n]  = mean_c |mean[n, c]|            (GAIA-A outer: o(n)^2)
int gaia_cuda_per_sample(const float* mean, const float* nonzero, int64_t n, int64_t c, float* out,
                         void* stream, char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif  // GAIA_CUDA_H
