// resample.h: the two passes of gaia/data's resampling in C (resample.c),
// for cgo builds; resample.go holds the coefficients and the Go twin.
#ifndef GAIA_RESAMPLE_H
#define GAIA_RESAMPLE_H

#include <stdint.h>

// gaia_resample_h: for each of rows rows of src (src_w pixels of c bytes,
// stride src_w*c), out_cols output pixels; output pixel x reads taps
// bounds[2x] .. bounds[2x] + bounds[2x+1] - 1 with weights k[x*ksize ...]
// (22-bit fixed point). dst is rows x out_cols x c.
void gaia_resample_h(const uint8_t *src, int src_w, int c, int rows, const int32_t *bounds, const int32_t *k,
                     int ksize, int out_cols, uint8_t *dst);

// gaia_resample_v: out_rows output rows of width bytes each; output row y
// reads src rows bounds[2y] .. + bounds[2y+1] - 1 (stride width) with
// weights k[y*ksize ...]. acc is scratch for width int32s.
void gaia_resample_v(const uint8_t *src, int width, const int32_t *bounds, const int32_t *k, int ksize, int out_rows,
                     uint8_t *dst, int32_t *acc);

#endif
