//go:build cgo

// resample.c: the horizontal and vertical passes of Pillow's 8-bit
// resampling (see resample.go, which computes the coefficients and holds
// the Go twin the tests compare this with), written so that the compiler
// can keep the sums in registers and vectorize the vertical pass.
#include "resample.h"

#define PRECISION_BITS (32 - 8 - 2)

static inline uint8_t clip8(int32_t ss) {
  int32_t v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : (v > 255 ? 255 : (uint8_t)v);
}

void gaia_resample_h(const uint8_t *src, int src_w, int c, int rows, const int32_t *bounds, const int32_t *k,
                     int ksize, int out_cols, uint8_t *dst) {
  const int32_t half = 1 << (PRECISION_BITS - 1);
  for (int y = 0; y < rows; y++) {
    const uint8_t *row = src + (long)y * src_w * c;
    uint8_t *out = dst + (long)y * out_cols * c;
    for (int x = 0; x < out_cols; x++) {
      const int32_t xmin = bounds[2 * x], n = bounds[2 * x + 1];
      const int32_t *w = k + (long)x * ksize;
      const uint8_t *in = row + (long)xmin * c;
      if (c == 3) {
        int32_t s0 = half, s1 = half, s2 = half;
        for (int t = 0; t < n; t++) {
          s0 += in[3 * t] * w[t];
          s1 += in[3 * t + 1] * w[t];
          s2 += in[3 * t + 2] * w[t];
        }
        out[3 * x] = clip8(s0);
        out[3 * x + 1] = clip8(s1);
        out[3 * x + 2] = clip8(s2);
      } else {
        for (int ch = 0; ch < c; ch++) {
          int32_t s = half;
          for (int t = 0; t < n; t++) {
            s += in[c * t + ch] * w[t];
          }
          out[c * x + ch] = clip8(s);
        }
      }
    }
  }
}

void gaia_resample_v(const uint8_t *src, int width, const int32_t *bounds, const int32_t *k, int ksize, int out_rows,
                     uint8_t *dst, int32_t *acc) {
  const int32_t half = 1 << (PRECISION_BITS - 1);
  for (int y = 0; y < out_rows; y++) {
    const int32_t ymin = bounds[2 * y], n = bounds[2 * y + 1];
    const int32_t *w = k + (long)y * ksize;
    for (int i = 0; i < width; i++) {
      acc[i] = half;
    }
    for (int t = 0; t < n; t++) {
      const uint8_t *row = src + (long)(ymin + t) * width;
      const int32_t kw = w[t];
      for (int i = 0; i < width; i++) {
        acc[i] += row[i] * kw;
      }
    }
    uint8_t *out = dst + (long)y * width;
    for (int i = 0; i < width; i++) {
      out[i] = clip8(acc[i]);
    }
  }
}
