// jpeg_turbo.h: the C side of gaia/data's JPEG decoder (jpeg_turbo.c).
#ifndef GAIA_JPEG_TURBO_H
#define GAIA_JPEG_TURBO_H

#include <stddef.h>

typedef struct gaia_jpeg_image {
  int declared_width, declared_height;  // from the header
  int components;                       // in the file: 1, 3 or 4
  int width, height, channels;          // decoded (scaled) size; channels 1 (gray), 3 (RGB) or 4 (CMYK)
  int warnings;                         // libjpeg warnings ignored, as Pillow ignores them
  unsigned char *pixels;                // height x width x channels, malloc'd; the caller frees it
} gaia_jpeg_image;

// gaia_jpeg_version names the libjpeg linked.
const char *gaia_jpeg_version(void);

// gaia_jpeg_decode decodes len bytes of JPEG at data into out. A declared
// size over max_pixels, or one whose decoding would hold more than
// max_bytes (the output pixels twice, for the caller's copy, and a
// progressive JPEG's coefficients), is refused (when positive) before
// anything is allocated; a file of more than max_scans scans (when
// positive) is refused when its scan max_scans + 1 starts; a non-zero
// *stop (stop may be NULL), set by another thread, abandons the decode at
// the next row. scale_denom > 1 decodes at 1/scale_denom in the DCT domain
// (2, 4 or 8). Returns 0; 2 for a size limit passed, 6 for the scans, 5 when stopped, another
// non-zero code for a corrupt file; with a message in msg.
int gaia_jpeg_decode(const unsigned char *data, unsigned long len, long long max_pixels, long long max_bytes, int max_scans,
                     const int *stop, int scale_denom, gaia_jpeg_image *out, char *msg, size_t msg_len);

#endif
