/* Binary files: an in-memory writer committed atomically (temp file, fsync, rename) and a
 * bounds-checked reader over a whole file. Shared by policy files and checkpoints.
 * Values are stored little-endian as the host writes them; an endianness tag in each
 * header lets readers reject foreign files with TCH_E_VERSION. */
#ifndef TCHI_IO_H
#define TCHI_IO_H
#include "core/core.h"

typedef struct tchi_writer {
  unsigned char *buf;
  size_t len, cap;
  tch_status status;   /* first error (TCH_E_NOMEM) sticks; later puts are no-ops */
} tchi_writer;

void tchi_writer_init(tchi_writer *w);
void tchi_writer_destroy(tchi_writer *w);
void tchi_put(tchi_writer *w, const void *data, size_t n);
void tchi_put_u32(tchi_writer *w, uint32_t v);
void tchi_put_u64(tchi_writer *w, uint64_t v);
void tchi_put_f64(tchi_writer *w, double v);
/* Appends CRC-32 of everything written so far, then writes path atomically. */
tch_status tchi_writer_commit(tchi_writer *w, const char *path);

typedef struct tchi_reader {
  unsigned char *buf;
  size_t len, pos;
  const char *path;    /* for messages */
  int failed;
} tchi_reader;

/* Reads the whole file and verifies the trailing CRC-32 (TCH_E_IO if missing/corrupt). */
tch_status tchi_reader_open(tchi_reader *r, const char *path);
void tchi_reader_close(tchi_reader *r);
/* Each get fails (returns TCH_E_IO "truncated") if fewer bytes remain. */
tch_status tchi_get(tchi_reader *r, void *out, size_t n);
tch_status tchi_get_u32(tchi_reader *r, uint32_t *v);
tch_status tchi_get_u64(tchi_reader *r, uint64_t *v);
tch_status tchi_get_f64(tchi_reader *r, double *v);

#define TCHI_ENDIAN_TAG 0x01020304u

#endif /* TCHI_IO_H */
