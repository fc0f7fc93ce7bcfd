//go:build cgo

// jpeg_turbo.c: JPEG decoding with libjpeg-turbo as Pillow sets it up
// (Pillow's JpegDecode.c): libjpeg's defaults (the islow integer IDCT,
// fancy chroma upsampling, its own colour-space guess from the JFIF and
// Adobe markers), output as grayscale, RGB or CMYK by component count, no
// scaling. Errors longjmp back here; a warning that the data ended early is
// an error too (Pillow raises "image file is truncated" there), other
// warnings are counted and ignored, as Pillow ignores them.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "jpeg_turbo.h"

struct gaia_jpeg_error {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char *msg;
  size_t msg_len;
  int code; /* the return code of an error that longjmps */
};

/* The progress monitor: libjpeg calls it once per iMCU row of every pass,
   and, for a progressive or multi-scan file, before each row of input it
   absorbs, so it sees every scan start and can stop a long decode. */
struct gaia_jpeg_progress {
  struct jpeg_progress_mgr pub;
  int max_scans;
  const int *stop; /* set (non-zero) by the caller's thread to abandon the decode */
};

static void gaia_jpeg_progress_monitor(j_common_ptr cinfo) {
  struct gaia_jpeg_progress *p = (struct gaia_jpeg_progress *)cinfo->progress;
  struct gaia_jpeg_error *err = (struct gaia_jpeg_error *)cinfo->err;
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (p->max_scans > 0 && d->input_scan_number > p->max_scans) {
    snprintf(err->msg, err->msg_len, "more than %d scans: each scan is a pass over the whole image", p->max_scans);
    err->code = 6;
    longjmp(err->jump, 1);
  }
  if (p->stop != NULL && __atomic_load_n(p->stop, __ATOMIC_RELAXED) != 0) {
    snprintf(err->msg, err->msg_len, "stopped");
    err->code = 5;
    longjmp(err->jump, 1);
  }
}

static void gaia_jpeg_error_exit(j_common_ptr cinfo) {
  struct gaia_jpeg_error *err = (struct gaia_jpeg_error *)cinfo->err;
  char buf[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, buf);
  snprintf(err->msg, err->msg_len, "%s", buf);
  longjmp(err->jump, 1);
}

static void gaia_jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level >= 0) {
    return; /* trace messages */
  }
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
    struct gaia_jpeg_error *err = (struct gaia_jpeg_error *)cinfo->err;
    snprintf(err->msg, err->msg_len, "truncated: the data ends before the image does");
    longjmp(err->jump, 1);
  }
  cinfo->err->num_warnings++;
}

static void gaia_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

const char *gaia_jpeg_version(void) {
#ifdef LIBJPEG_TURBO_VERSION
#define GAIA_STR2(x) #x
#define GAIA_STR(x) GAIA_STR2(x)
  return "libjpeg-turbo " GAIA_STR(LIBJPEG_TURBO_VERSION);
#else
  return "libjpeg";
#endif
}

int gaia_jpeg_decode(const unsigned char *data, unsigned long len, long long max_pixels, long long max_bytes, int max_scans,
                     const int *stop, int scale_denom, gaia_jpeg_image *out, char *msg, size_t msg_len) {
  struct jpeg_decompress_struct cinfo;
  struct gaia_jpeg_error err;
  struct gaia_jpeg_progress progress;
  /* volatile: they change between setjmp and a longjmp back to it. */
  unsigned char *volatile pixels = NULL;
  memset(out, 0, sizeof *out);
  memset(&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = gaia_jpeg_error_exit;
  err.pub.emit_message = gaia_jpeg_emit_message;
  err.pub.output_message = gaia_jpeg_output_message;
  err.msg = msg;
  err.msg_len = msg_len;
  err.code = 1;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    return err.code;
  }
  jpeg_create_decompress(&cinfo);
  memset(&progress, 0, sizeof progress);
  progress.pub.progress_monitor = gaia_jpeg_progress_monitor;
  progress.max_scans = max_scans;
  progress.stop = stop;
  cinfo.progress = &progress.pub;
  jpeg_mem_src(&cinfo, data, len);
  jpeg_read_header(&cinfo, TRUE);
  out->declared_width = (int)cinfo.image_width;
  out->declared_height = (int)cinfo.image_height;
  out->components = cinfo.num_components;
  if (max_pixels > 0 && (long long)cinfo.image_width * (long long)cinfo.image_height > max_pixels) {
    snprintf(msg, msg_len, "declared size %ux%u is over the limit of %lld pixels", cinfo.image_width,
             cinfo.image_height, max_pixels);
    jpeg_destroy_decompress(&cinfo);
    return 2;
  }
  switch (cinfo.num_components) {
    case 1:
      cinfo.out_color_space = JCS_GRAYSCALE;
      break;
    case 3:
      cinfo.out_color_space = JCS_RGB;
      break;
    case 4:
      cinfo.out_color_space = JCS_CMYK;
      break;
    default:
      snprintf(msg, msg_len, "a JPEG of %d components (Pillow reads 1, 3 or 4)", cinfo.num_components);
      jpeg_destroy_decompress(&cinfo);
      return 3;
  }
  if (scale_denom > 1) {
    cinfo.scale_num = 1;
    cinfo.scale_denom = (unsigned int)scale_denom;
  }
  jpeg_calc_output_dimensions(&cinfo);
  {
    long long px = (long long)cinfo.output_width * (long long)cinfo.output_height;
    long long need = 2 * px * cinfo.output_components;
    if (cinfo.progressive_mode) /* whole-image DCT coefficients, 2 bytes each */
      need += 2LL * (long long)cinfo.image_width * (long long)cinfo.image_height * cinfo.num_components;
    if (max_bytes > 0 && need > max_bytes) {
      snprintf(msg, msg_len, "a %ux%u%s JPEG takes %lld MiB to decode (at most %lld MiB)",
               cinfo.image_width, cinfo.image_height, cinfo.progressive_mode ? " progressive" : "", need >> 20,
               max_bytes >> 20);
      jpeg_destroy_decompress(&cinfo);
      return 2;
    }
  }
  jpeg_start_decompress(&cinfo);
  size_t stride = (size_t)cinfo.output_width * (size_t)cinfo.output_components;
  pixels = (unsigned char *)malloc(stride * cinfo.output_height + 1);
  if (pixels == NULL) {
    snprintf(msg, msg_len, "out of memory for %ux%u pixels", cinfo.output_width, cinfo.output_height);
    jpeg_destroy_decompress(&cinfo);
    return 4;
  }
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels + (size_t)cinfo.output_scanline * stride;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  out->width = (int)cinfo.output_width;
  out->height = (int)cinfo.output_height;
  out->channels = cinfo.output_components;
  out->warnings = (int)err.pub.num_warnings;
  out->pixels = pixels;
  jpeg_destroy_decompress(&cinfo);
  return 0;
}
