/* Atomic binary files with a CRC-32 trailer. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "io.h"

void tchi_writer_init(tchi_writer *w) { memset(w, 0, sizeof *w); }

void tchi_writer_destroy(tchi_writer *w)
{
  tchi_free(w->buf);
  memset(w, 0, sizeof *w);
}

void tchi_put(tchi_writer *w, const void *data, size_t n)
{
  if (w->status != TCH_OK || n == 0) return;
  if (w->len + n > w->cap) {
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n) cap *= 2;
    unsigned char *nb = tchi_realloc(w->buf, cap);
    if (!nb) {
      w->status = tchi_fail(TCH_E_NOMEM, "out of memory serialising (%zu bytes)", cap);
      return;
    }
    w->buf = nb;
    w->cap = cap;
  }
  memcpy(w->buf + w->len, data, n);
  w->len += n;
}

void tchi_put_u32(tchi_writer *w, uint32_t v) { tchi_put(w, &v, sizeof v); }
void tchi_put_u64(tchi_writer *w, uint64_t v) { tchi_put(w, &v, sizeof v); }
void tchi_put_f64(tchi_writer *w, double v) { tchi_put(w, &v, sizeof v); }

tch_status tchi_writer_commit(tchi_writer *w, const char *path)
{
  if (w->status != TCH_OK) return w->status;
  uint32_t crc = tchi_crc32(0, w->buf, w->len);
  tchi_put_u32(w, crc);
  if (w->status != TCH_OK) return w->status;

  size_t plen = strlen(path);
  char *tmp = tchi_malloc(plen + 32);
  if (!tmp) return tchi_fail(TCH_E_NOMEM, "out of memory");
  snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    tch_status s = tchi_fail(TCH_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
    tchi_free(tmp);
    return s;
  }
  size_t off = 0;
  while (off < w->len) {
    ssize_t k = write(fd, w->buf + off, w->len - off);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    off += (size_t)k;
  }
  int err = off < w->len ? errno : 0;
  if (!err && fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (!err && rename(tmp, path) != 0) err = errno;
  if (err) {
    unlink(tmp);
    tch_status s = tchi_fail(TCH_E_IO, "cannot write '%s': %s", path, strerror(err ? err : EIO));
    tchi_free(tmp);
    return s;
  }
  tchi_free(tmp);
  return TCH_OK;
}

tch_status tchi_reader_open(tchi_reader *r, const char *path)
{
  memset(r, 0, sizeof *r);
  r->path = path;
  FILE *f = fopen(path, "rb");
  if (!f) return tchi_fail(TCH_E_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return tchi_fail(TCH_E_IO, "'%s' is not a regular file", path);
  }
  size_t n = (size_t)st.st_size;
  if (n < 8) {
    fclose(f);
    return tchi_fail(TCH_E_IO, "'%s' is truncated (%zu bytes)", path, n);
  }
  r->buf = tchi_malloc(n);
  if (!r->buf) {
    fclose(f);
    return tchi_fail(TCH_E_NOMEM, "out of memory reading '%s' (%zu bytes)", path, n);
  }
  size_t got = fread(r->buf, 1, n, f);
  fclose(f);
  if (got != n) {
    tchi_reader_close(r);
    return tchi_fail(TCH_E_IO, "cannot read '%s'", path);
  }
  uint32_t stored;
  memcpy(&stored, r->buf + n - 4, 4);
  if (tchi_crc32(0, r->buf, n - 4) != stored) {
    tchi_reader_close(r);
    return tchi_fail(TCH_E_IO, "'%s' is corrupt or truncated (checksum mismatch)", path);
  }
  r->len = n - 4;
  return TCH_OK;
}

void tchi_reader_close(tchi_reader *r)
{
  tchi_free(r->buf);
  r->buf = NULL;
  r->len = r->pos = 0;
}

tch_status tchi_get(tchi_reader *r, void *out, size_t n)
{
  if (r->failed || n > r->len - r->pos) {
    r->failed = 1;
    return tchi_fail(TCH_E_IO, "'%s' is truncated or malformed (record at byte %zu)", r->path, r->pos);
  }
  memcpy(out, r->buf + r->pos, n);
  r->pos += n;
  return TCH_OK;
}

tch_status tchi_get_u32(tchi_reader *r, uint32_t *v) { return tchi_get(r, v, sizeof *v); }
tch_status tchi_get_u64(tchi_reader *r, uint64_t *v) { return tchi_get(r, v, sizeof *v); }
tch_status tchi_get_f64(tchi_reader *r, double *v) { return tchi_get(r, v, sizeof *v); }
