/* The PNG writer of the `teacher` program (tools/png.c, compiled into this test): file
 * structure re-parsed here with an independent bitwise CRC-32 (signature, chunk order and
 * CRCs, IHDR fields), the zlib stream of stored blocks decoded by hand (header, LEN/NLEN,
 * Adler-32, size, filter bytes), pixel colours of the density plot, python3's zlib on the
 * same stream when /usr/bin/python3 exists, and the errors (no file left behind). */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../tch_check.h"
#include "../../tools/png.h"

static char dir[256];

static void make_dir(void)
{
  const char *t = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/tch-png.XXXXXX", t && *t ? t : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Removes the files of dir and dir itself; returns how many files there were. */
static int clean_dir(void)
{
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  struct dirent *e;
  int n = 0;
  char p[512];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
      n++;
    }
  closedir(d);
  rmdir(dir);
  return n;
}

static unsigned char *slurp(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static uint32_t be32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bitwise CRC-32 (no table), independent of the writer's. */
static uint32_t crc32_bitwise(const unsigned char *p, size_t n)
{
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
  }
  return ~c;
}

/* Parses a PNG written by the writer: checks everything and returns the decoded raw
 * scanlines (height x (1 + 3 width)) and the IDAT stream (for python3). */
typedef struct parsed {
  uint32_t width, height;
  unsigned char *raw;
  size_t raw_len;
  unsigned char *z;
  size_t z_len;
} parsed;

static parsed parse_png(const char *path)
{
  size_t len;
  unsigned char *b = slurp(path, &len);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  ck_assert_uint_ge(len, 8);
  ck_assert_mem_eq(b, sig, 8);
  parsed out = {0};
  out.z = malloc(len);
  ck_assert_ptr_nonnull(out.z);
  size_t off = 8;
  int chunk = 0, seen_end = 0;
  while (off < len) {
    ck_assert_uint_ge(len - off, 12);
    uint32_t n = be32(b + off);
    ck_assert_uint_le(n, len - off - 12);
    const unsigned char *type = b + off + 4, *data = b + off + 8;
    ck_assert_uint_eq(be32(data + n), crc32_bitwise(type, n + 4));
    if (chunk == 0) {
      ck_assert_mem_eq(type, "IHDR", 4);
      ck_assert_uint_eq(n, 13);
      out.width = be32(data);
      out.height = be32(data + 4);
      ck_assert_uint_eq(data[8], 8);    /* bit depth */
      ck_assert_uint_eq(data[9], 2);    /* RGB */
      ck_assert_uint_eq(data[10], 0);
      ck_assert_uint_eq(data[11], 0);
      ck_assert_uint_eq(data[12], 0);
    } else if (memcmp(type, "IDAT", 4) == 0) {
      memcpy(out.z + out.z_len, data, n);
      out.z_len += n;
    } else {
      ck_assert_mem_eq(type, "IEND", 4);
      ck_assert_uint_eq(n, 0);
      seen_end = 1;
    }
    off += 12 + n;
    chunk++;
    if (seen_end) break;
  }
  ck_assert(seen_end);
  ck_assert_uint_eq(off, len);
  free(b);

  /* zlib: header, stored blocks, Adler-32. */
  const unsigned char *z = out.z;
  ck_assert_uint_ge(out.z_len, 2 + 5 + 4);
  ck_assert_uint_eq(z[0] & 0x0F, 8);                   /* deflate */
  ck_assert_uint_eq(((unsigned)z[0] << 8 | z[1]) % 31, 0);
  ck_assert_uint_eq(z[1] & 0x20, 0);                   /* no preset dictionary */
  out.raw = malloc(out.z_len);
  ck_assert_ptr_nonnull(out.raw);
  size_t p = 2;
  int final = 0;
  while (!final) {
    ck_assert_uint_le(p + 5, out.z_len);
    ck_assert_uint_eq(z[p] & 0x06, 0);                 /* BTYPE 00 */
    final = z[p] & 1;
    unsigned k = z[p + 1] | (unsigned)z[p + 2] << 8, nk = z[p + 3] | (unsigned)z[p + 4] << 8;
    ck_assert_uint_eq(k ^ 0xFFFFu, nk);
    p += 5;
    ck_assert_uint_le(p + k, out.z_len);
    memcpy(out.raw + out.raw_len, z + p, k);
    out.raw_len += k;
    p += k;
  }
  ck_assert_uint_eq(p + 4, out.z_len);
  uint32_t a = 1, s2 = 0;
  for (size_t i = 0; i < out.raw_len; i++) {
    a = (a + out.raw[i]) % 65521u;
    s2 = (s2 + a) % 65521u;
  }
  ck_assert_uint_eq(be32(z + p), s2 << 16 | a);
  ck_assert_uint_eq(out.raw_len, (size_t)out.height * (1 + 3 * (size_t)out.width));
  for (uint32_t r = 0; r < out.height; r++)
    ck_assert_uint_eq(out.raw[r * (1 + 3 * (size_t)out.width)], 0);   /* filter None */
  return out;
}

static const unsigned char *pixel(const parsed *p, uint32_t row, uint32_t col)
{
  return p->raw + row * (1 + 3 * (size_t)p->width) + 1 + 3 * (size_t)col;
}

START_TEST(rgb_roundtrip_multiblock)
{
  make_dir();
  /* 200 x 150 RGB: 90 150 raw bytes, i.e. two stored blocks. */
  const int w = 200, h = 150;
  unsigned char *rgb = malloc(3 * (size_t)w * h);
  ck_assert_ptr_nonnull(rgb);
  for (size_t i = 0; i < 3 * (size_t)w * h; i++) rgb[i] = (unsigned char)(i * 7 + i / 1000);
  char path[512], err[256] = "";
  snprintf(path, sizeof path, "%s/a.png", dir);
  ck_assert_int_eq(tcli_png_write_rgb(path, w, h, rgb, err, sizeof err), 0);
  parsed p = parse_png(path);
  ck_assert_uint_eq(p.width, (uint32_t)w);
  ck_assert_uint_eq(p.height, (uint32_t)h);
  for (int r = 0; r < h; r++)
    ck_assert_mem_eq(pixel(&p, (uint32_t)r, 0), rgb + 3 * (size_t)r * w, 3 * (size_t)w);
  free(p.raw);
  free(p.z);
  free(rgb);
  ck_assert_int_eq(clean_dir(), 1);   /* no temporary file left */
}
END_TEST

static double gauss_logp(double x, double y) { return -0.5 * (x * x + y * y); }

START_TEST(density_plot_pixels_and_python_zlib)
{
  make_dir();
  const int w = 64, h = 48;
  double *ld = malloc(sizeof(double) * (size_t)w * h);
  ck_assert_ptr_nonnull(ld);
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      double x, y;
      tcli_png_grid_point(w, h, -4.0, 4.0, -3.0, 3.0, r, c, &x, &y);
      ld[r * w + c] = gauss_logp(x, y);
    }
  ld[0] = NAN;             /* top-left: grey */
  ld[w - 1] = -INFINITY;   /* top-right: bottom of the ramp */
  /* One sample at (2, 1.5) and one far outside, clamped into the bottom-left corner. */
  double xy[4] = {2.0, 1.5, -100.0, -100.0};
  char path[512], err[256] = "";
  snprintf(path, sizeof path, "%s/plot.png", dir);
  ck_assert_int_eq(tcli_png_plot_density(path, w, h, ld, -4.0, 4.0, -3.0, 3.0, 2, xy, err,
                                         sizeof err), 0);
  parsed p = parse_png(path);
  ck_assert_uint_eq(p.width, (uint32_t)w);
  ck_assert_uint_eq(p.height, (uint32_t)h);
  const unsigned char grey[3] = {128, 128, 128}, red[3] = {220, 30, 30};
  ck_assert_mem_eq(pixel(&p, 0, 0), grey, 3);
  /* (2, 1.5): column (2 + 4) / 8 · 64 = 48, row (3 − 1.5) / 6 · 48 = 12, and its 3 x 3 dot. */
  for (int dr = -1; dr <= 1; dr++)
    for (int dc = -1; dc <= 1; dc++) ck_assert_mem_eq(pixel(&p, (uint32_t)(12 + dr), (uint32_t)(48 + dc)), red, 3);
  ck_assert_mem_eq(pixel(&p, (uint32_t)h - 1, 0), red, 3);
  /* The mode is the brightest (yellow) area, the -inf corner the darkest. */
  const unsigned char *mode = pixel(&p, (uint32_t)h / 2, (uint32_t)w / 2 + 2), *low = pixel(&p, 0, (uint32_t)w - 1);
  ck_assert_uint_gt(mode[0] + mode[1], 300);
  ck_assert_uint_lt(low[0] + low[1], 100);

  /* python3's zlib must inflate the IDAT stream to height x (1 + 3 width) bytes. */
  if (access("/usr/bin/python3", X_OK) == 0) {
    char zpath[512], cmd[2048];
    snprintf(zpath, sizeof zpath, "%s/idat.bin", dir);
    FILE *f = fopen(zpath, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p.z, 1, p.z_len, f), p.z_len);
    fclose(f);
    /* The length and the bytes (compared with our own decoding, written to a file). */
    char rpath[512];
    snprintf(rpath, sizeof rpath, "%s/raw.bin", dir);
    f = fopen(rpath, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p.raw, 1, p.raw_len, f), p.raw_len);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys, zlib; d = zlib.decompress(open(sys.argv[1], \"rb\").read());"
             " sys.exit(0 if len(d) == int(sys.argv[2]) and d == open(sys.argv[3], \"rb\").read() else 1)'"
             " '%s' %zu '%s'", zpath, p.raw_len, rpath);
    ck_assert_int_eq(system(cmd), 0);
  }
  free(p.raw);
  free(p.z);
  free(ld);
  clean_dir();
}
END_TEST

START_TEST(samples_only_and_grid_points)
{
  make_dir();
  char path[512], err[256] = "";
  snprintf(path, sizeof path, "%s/s.png", dir);
  double xy[2] = {0.0, 0.0};
  ck_assert_int_eq(tcli_png_plot_density(path, 10, 10, NULL, -1.0, 1.0, -1.0, 1.0, 1, xy, err,
                                         sizeof err), 0);
  parsed p = parse_png(path);
  const unsigned char white[3] = {255, 255, 255}, red[3] = {220, 30, 30};
  ck_assert_mem_eq(pixel(&p, 0, 0), white, 3);
  ck_assert_mem_eq(pixel(&p, 5, 5), red, 3);   /* (0, 0) is the corner of pixels 4 and 5 */
  free(p.raw);
  free(p.z);
  double x, y;
  tcli_png_grid_point(4, 2, 0.0, 8.0, -1.0, 1.0, 0, 0, &x, &y);
  ck_assert_double_eq_tol(x, 1.0, 1e-15);
  ck_assert_double_eq_tol(y, 0.5, 1e-15);
  tcli_png_grid_point(4, 2, 0.0, 8.0, -1.0, 1.0, 1, 3, &x, &y);
  ck_assert_double_eq_tol(x, 7.0, 1e-15);
  ck_assert_double_eq_tol(y, -0.5, 1e-15);
  ck_assert_int_eq(clean_dir(), 1);
}
END_TEST

START_TEST(errors_leave_no_file)
{
  make_dir();
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/e.png", dir);
  unsigned char rgb[3] = {1, 2, 3};
  err[0] = '\0';
  ck_assert_int_ne(tcli_png_write_rgb(path, 0, 1, rgb, err, sizeof err), 0);
  ck_assert_str_ne(err, "");
  err[0] = '\0';
  ck_assert_int_ne(tcli_png_write_rgb(path, 1, TCLI_PNG_MAX_SIDE + 1, rgb, err, sizeof err), 0);
  ck_assert_str_ne(err, "");
  err[0] = '\0';
  ck_assert_int_ne(tcli_png_plot_density(path, 4, 4, NULL, 1.0, 1.0, 0.0, 1.0, 0, NULL, err,
                                         sizeof err), 0);
  ck_assert_str_ne(err, "");
  ck_assert_int_ne(tcli_png_plot_density(path, 4, 4, NULL, 0.0, 1.0, 0.0, NAN, 0, NULL, err,
                                         sizeof err), 0);
  ck_assert_int_ne(tcli_png_plot_density(path, 4, 4, NULL, 0.0, 1.0, 0.0, 1.0, 3, NULL, err,
                                         sizeof err), 0);
  /* A missing directory: the temporary file cannot be created. */
  char bad[600];
  snprintf(bad, sizeof bad, "%s/missing/e.png", dir);
  err[0] = '\0';
  ck_assert_int_ne(tcli_png_write_rgb(bad, 1, 1, rgb, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "cannot create"));
  /* The target is a directory: writing works, the rename fails, the temporary is removed. */
  char sub[600];
  snprintf(sub, sizeof sub, "%s/sub", dir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  char inner[700];
  snprintf(inner, sizeof inner, "%s/x", sub);
  FILE *f = fopen(inner, "w");
  ck_assert_ptr_nonnull(f);
  fclose(f);
  err[0] = '\0';
  ck_assert_int_ne(tcli_png_write_rgb(sub, 1, 1, rgb, err, sizeof err), 0);
  ck_assert_ptr_nonnull(strstr(err, "cannot write"));
  /* NULL err is allowed. */
  ck_assert_int_ne(tcli_png_write_rgb(path, 0, 0, rgb, NULL, 0), 0);
  unlink(inner);
  rmdir(sub);
  ck_assert_int_eq(clean_dir(), 0);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("png");
  TCase *tc = tcase_create("png");
  tcase_add_test(tc, rgb_roundtrip_multiblock);
  tcase_add_test(tc, density_plot_pixels_and_python_zlib);
  tcase_add_test(tc, samples_only_and_grid_points);
  tcase_add_test(tc, errors_leave_no_file);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
