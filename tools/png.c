/* Minimal PNG writer (8-bit RGB, no filtering, stored deflate blocks) and the density plot
 * of `teacher` for 2-D targets. The program links only the public library, so the
 * checksums are local. Stored blocks make files about as large as the raw pixels
 * (3 bytes each), which is fine for plots of a few hundred pixels a side. */
#include "png.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
  if (!err || err_len == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_len, fmt, ap);
  va_end(ap);
}

/* ---- checksums ----------------------------------------------------------------------- */

/* CRC-32 (ISO-HDLC, as zlib and the PNG chunks use), table built per call (256 entries). */
typedef struct crc_table { uint32_t t[256]; } crc_table;

static void crc_table_init(crc_table *ct)
{
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    ct->t[n] = c;
  }
}

static uint32_t crc_update(const crc_table *ct, uint32_t crc, const unsigned char *p, size_t n)
{
  uint32_t c = crc ^ 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) c = ct->t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

static uint32_t adler32(const unsigned char *p, size_t n)
{
  uint32_t a = 1, b = 0;
  while (n > 0) {
    /* 5552 is the largest run for which b cannot overflow 32 bits before the reduction. */
    size_t k = n < 5552 ? n : 5552;
    n -= k;
    while (k--) {
      a += *p++;
      b += a;
    }
    a %= 65521u;
    b %= 65521u;
  }
  return b << 16 | a;
}

/* ---- PNG file ------------------------------------------------------------------------- */

static unsigned char *put_u32be(unsigned char *p, uint32_t v)
{
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
  return p + 4;
}

/* Writes one chunk (length, type, data, CRC of type + data) at p; returns the end. */
static unsigned char *put_chunk(const crc_table *ct, unsigned char *p, const char type[4],
                                const unsigned char *data, size_t len)
{
  p = put_u32be(p, (uint32_t)len);
  unsigned char *typed = p;
  memcpy(p, type, 4);
  p += 4;
  if (len) memmove(p, data, len);
  p += len;
  return put_u32be(p, crc_update(ct, 0, typed, len + 4));
}

/* Writes buf to path through a temporary file in the same directory and a rename. */
static int write_atomic(const char *path, const unsigned char *buf, size_t len, char *err,
                        size_t err_len)
{
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 32);
  if (!tmp) {
    set_err(err, err_len, "out of memory");
    return -1;
  }
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    set_err(err, err_len, "cannot create '%s': %s", tmp, strerror(errno));
    free(tmp);
    return -1;
  }
  size_t off = 0;
  int e = 0;
  while (off < len) {
    ssize_t k = write(fd, buf + off, len - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      e = k < 0 ? errno : EIO;
      break;
    }
    off += (size_t)k;
  }
  if (!e && fsync(fd) != 0) e = errno;
  if (close(fd) != 0 && !e) e = errno;
  if (!e && rename(tmp, path) != 0) e = errno;
  if (e) {
    unlink(tmp);
    set_err(err, err_len, "cannot write '%s': %s", path, strerror(e));
  }
  free(tmp);
  return e ? -1 : 0;
}

int tcli_png_write_rgb(const char *path, int width, int height, const unsigned char *rgb,
                       char *err, size_t err_len)
{
  if (!path || !rgb) {
    set_err(err, err_len, "PNG: no path or no pixels");
    return -1;
  }
  if (width < 1 || height < 1 || width > TCLI_PNG_MAX_SIDE || height > TCLI_PNG_MAX_SIDE) {
    set_err(err, err_len, "PNG: size %d x %d outside 1..%d", width, height, TCLI_PNG_MAX_SIDE);
    return -1;
  }
  const size_t row = 1 + 3 * (size_t)width, raw_len = row * (size_t)height;
  const size_t nblocks = raw_len / 65535 + (raw_len % 65535 != 0);
  /* zlib: 2-byte header, 5 bytes per stored block, 4-byte Adler-32. */
  const size_t zlen = 2 + 5 * nblocks + raw_len + 4;
  const size_t total = 8 + (12 + 13) + (12 + zlen) + 12;
  unsigned char *raw = malloc(raw_len), *file = malloc(total);
  if (!raw || !file) {
    free(raw);
    free(file);
    set_err(err, err_len, "PNG: out of memory for %d x %d pixels", width, height);
    return -1;
  }
  for (size_t r = 0; r < (size_t)height; r++) {
    raw[r * row] = 0;   /* filter type None */
    memcpy(raw + r * row + 1, rgb + r * 3 * (size_t)width, 3 * (size_t)width);
  }

  crc_table ct;
  crc_table_init(&ct);
  static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  unsigned char *p = file;
  memcpy(p, signature, 8);
  p += 8;
  unsigned char ihdr[13];
  put_u32be(ihdr, (uint32_t)width);
  put_u32be(ihdr + 4, (uint32_t)height);
  ihdr[8] = 8;    /* bit depth */
  ihdr[9] = 2;    /* colour type: RGB */
  ihdr[10] = 0;   /* compression: deflate */
  ihdr[11] = 0;   /* filter method 0 */
  ihdr[12] = 0;   /* no interlace */
  p = put_chunk(&ct, p, "IHDR", ihdr, sizeof ihdr);

  /* The zlib stream is built in place after the IDAT length and type fields. */
  unsigned char *z = p + 8, *q = z;
  *q++ = 0x78;   /* CMF: deflate, 32 KiB window */
  *q++ = 0x01;   /* FLG: no dictionary, fastest; (0x78 << 8 | 0x01) % 31 == 0 */
  for (size_t off = 0; off < raw_len;) {
    size_t k = raw_len - off < 65535 ? raw_len - off : 65535;
    *q++ = off + k == raw_len;   /* BFINAL on the last block, BTYPE 00 (stored) */
    q[0] = (unsigned char)(k & 0xFF);
    q[1] = (unsigned char)(k >> 8);
    q[2] = (unsigned char)(~k & 0xFF);
    q[3] = (unsigned char)((~k >> 8) & 0xFF);
    q += 4;
    memcpy(q, raw + off, k);
    q += k;
    off += k;
  }
  q = put_u32be(q, adler32(raw, raw_len));
  free(raw);
  p = put_chunk(&ct, p, "IDAT", z, (size_t)(q - z));
  p = put_chunk(&ct, p, "IEND", NULL, 0);

  int rc = write_atomic(path, file, (size_t)(p - file), err, err_len);
  free(file);
  return rc;
}

/* ---- density plot ------------------------------------------------------------------------ */

void tcli_png_grid_point(int width, int height, double x_min, double x_max, double y_min,
                         double y_max, int row, int col, double *x, double *y)
{
  *x = x_min + ((double)col + 0.5) * (x_max - x_min) / width;
  *y = y_max - ((double)row + 0.5) * (y_max - y_min) / height;
}

/* Shown range of log p below its maximum, and the spacing of the contour lines (nats). */
#define PLOT_LOG_RANGE 50.0
#define PLOT_CONTOUR_STEP 2.5

/* A viridis-like ramp, t in [0, 1]. */
static void ramp(double t, unsigned char out[3])
{
  static const unsigned char stops[9][3] = {
    {68, 1, 84}, {71, 44, 122}, {59, 81, 139}, {44, 113, 142}, {33, 144, 141},
    {39, 173, 129}, {92, 200, 99}, {170, 220, 50}, {253, 231, 37}};
  if (!(t > 0.0)) t = 0.0;
  if (t > 1.0) t = 1.0;
  double s = t * 8.0;
  int k = (int)s;
  if (k > 7) k = 7;
  double f = s - k;
  for (int c = 0; c < 3; c++)
    out[c] = (unsigned char)lround(stops[k][c] + f * (stops[k + 1][c] - stops[k][c]));
}

/* Contour band of a log density value; INT32_MIN below the shown range (no lines there). */
static long band_of(double lp, double top)
{
  if (!isfinite(lp) || lp < top - PLOT_LOG_RANGE) return INT32_MIN;
  return (long)floor((lp - top) / PLOT_CONTOUR_STEP);
}

static void shade(const double *ld, int width, int height, unsigned char *rgb)
{
  double top = -INFINITY;
  for (size_t i = 0; i < (size_t)width * (size_t)height; i++)
    if (isfinite(ld[i]) && ld[i] > top) top = ld[i];
  for (int r = 0; r < height; r++)
    for (int c = 0; c < width; c++) {
      size_t i = (size_t)r * (size_t)width + (size_t)c;
      unsigned char *px = rgb + 3 * i;
      double lp = ld[i];
      if (isnan(lp)) {
        px[0] = px[1] = px[2] = 128;
        continue;
      }
      double t = isfinite(top) ? 1.0 + (lp - top) / PLOT_LOG_RANGE : 0.0;
      ramp(t, px);
      long b = band_of(lp, top);
      int line = 0;
      if (b != INT32_MIN) {
        if (c + 1 < width && band_of(ld[i + 1], top) != b) line = 1;
        if (r + 1 < height && band_of(ld[i + (size_t)width], top) != b) line = 1;
      }
      if (line)
        for (int k = 0; k < 3; k++) px[k] = (unsigned char)(px[k] * 3 / 5);
    }
}

/* Pixel index of coordinate v in [lo, hi] split into `cells`, clamped to the plot. */
static int cell_of(double v, double lo, double hi, int cells)
{
  double f = (v - lo) / (hi - lo) * cells;
  if (f < 0.0) return 0;
  if (f >= cells) return cells - 1;
  return (int)f;
}

int tcli_png_plot_density(const char *path, int width, int height, const double *log_density,
                          double x_min, double x_max, double y_min, double y_max, size_t n,
                          const double *xy, char *err, size_t err_len)
{
  if (!path || (n > 0 && !xy)) {
    set_err(err, err_len, "plot: no path or no samples");
    return -1;
  }
  if (width < 1 || height < 1 || width > TCLI_PNG_MAX_SIDE || height > TCLI_PNG_MAX_SIDE) {
    set_err(err, err_len, "plot: size %d x %d outside 1..%d", width, height, TCLI_PNG_MAX_SIDE);
    return -1;
  }
  if (!isfinite(x_min) || !isfinite(x_max) || !isfinite(y_min) || !isfinite(y_max) ||
      !(x_max > x_min) || !(y_max > y_min)) {
    set_err(err, err_len, "plot: bounds [%g, %g] x [%g, %g] must be finite and non-empty",
            x_min, x_max, y_min, y_max);
    return -1;
  }
  size_t npx = (size_t)width * (size_t)height;
  unsigned char *rgb = malloc(3 * npx);
  if (!rgb) {
    set_err(err, err_len, "plot: out of memory for %d x %d pixels", width, height);
    return -1;
  }
  if (log_density) shade(log_density, width, height, rgb);
  else memset(rgb, 255, 3 * npx);
  static const unsigned char dot[3] = {220, 30, 30};
  for (size_t s = 0; s < n; s++) {
    double x = xy[2 * s], y = xy[2 * s + 1];
    if (isnan(x) || isnan(y)) continue;
    int c = cell_of(x, x_min, x_max, width), r = cell_of(y_max - y, 0.0, y_max - y_min, height);
    for (int dr = -1; dr <= 1; dr++)
      for (int dc = -1; dc <= 1; dc++) {
        int rr = r + dr, cc = c + dc;
        if (rr < 0 || rr >= height || cc < 0 || cc >= width) continue;
        memcpy(rgb + 3 * ((size_t)rr * (size_t)width + (size_t)cc), dot, 3);
      }
  }
  int rc = tcli_png_write_rgb(path, width, height, rgb, err, err_len);
  free(rgb);
  return rc;
}
