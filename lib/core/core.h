/* Core services shared by every module: error reporting, allocation (with the test-only
 * fault hook), reference counts, the Philox RNG and logging. Internal: tchi_ prefix. */
#ifndef TCHI_CORE_H
#define TCHI_CORE_H
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"

#if defined(__GNUC__)
#  define TCHI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#  define TCHI_UNUSED __attribute__((unused))
#else
#  define TCHI_PRINTF(a, b)
#  define TCHI_UNUSED
#endif

/* ---- errors (status.c) ------------------------------------------------------------ */
/* Records the detail text on this thread and returns s, so: return tchi_fail(TCH_E_ARG, ...). */
tch_status tchi_fail(tch_status s, const char *fmt, ...) TCHI_PRINTF(2, 3);
/* Error for a callback that returned `code`; `what` names the callback ("log_reward"). */
tch_status tchi_callback_fail(int code, const char *what);
/* Prepends formatted context to the current error text and returns s. */
tch_status tchi_fail_prefix(tch_status s, const char *fmt, ...) TCHI_PRINTF(2, 3);
void tchi_clear_error(void);
/* Clears the text a callback may attach (before calling into the host). */
void tchi_callback_error_reset(void);

/* ---- allocation (alloc.c) --------------------------------------------------------- */
void *tchi_malloc(size_t n);
void *tchi_calloc(size_t count, size_t size);
void *tchi_realloc(void *p, size_t n);
void tchi_free(void *p);
/* Overflow-checked count*size for array allocation: returns 0 on overflow. */
size_t tchi_mul_size(size_t count, size_t size, int *overflow);
/* Test hook: the n-th allocation from now on this thread fails (n = 0 disables). */
void tchi_alloc_fail_at(uint64_t n);
uint64_t tchi_alloc_count(void);
/* Convenience: *p = alloc(count*size) or fail with TCH_E_NOMEM naming `what`. */
tch_status tchi_alloc_array(void *pp, size_t count, size_t size, int zero, const char *what);

/* ---- reference counts (refcount.c) ------------------------------------------------ */
typedef struct tchi_ref { atomic_int n; } tchi_ref;
void tchi_ref_init(tchi_ref *r);
void tchi_ref_inc(tchi_ref *r);
/* Returns 1 if this was the last reference. */
int tchi_ref_dec(tchi_ref *r);

/* ---- RNG: Philox4x32-10 (rng_philox.c) -------------------------------------------- */
/* A stream is (key = seed, counter high half = stream id). Draws walk the low half of the
 * counter, so the state is tiny, copyable and checkpointable. */
typedef struct tchi_rng {
  uint32_t key[2];
  uint32_t ctr[4];
  uint32_t out[4];
  uint32_t avail;      /* unread words left in out[] (taken from the end) */
  uint32_t pad_;
  double spare_normal; /* second Box-Muller value */
  uint32_t has_spare;
  uint32_t pad2_;
} tchi_rng;

/* Purposes of the independent streams a trainer derives from its seed. */
enum {
  TCHI_STREAM_INIT = 1,
  TCHI_STREAM_STUDENT = 2,
  TCHI_STREAM_TEACHER = 3,
  TCHI_STREAM_BUFFER = 4,
  TCHI_STREAM_MIXER = 5,
  TCHI_STREAM_SMC = 6,
  TCHI_STREAM_MCMC = 7,
  TCHI_STREAM_LOCAL_SEARCH = 8,
  TCHI_STREAM_EVAL = 9,
  TCHI_STREAM_USER = 10
};
/* stream id = purpose << 48 | index (index: step number, or any sub-index < 2^48). */
uint64_t tchi_stream_id(unsigned purpose, uint64_t index);

/* ---- numerics (logsumexp.c) ---------------------------------------------------------- */
/* log sum_i exp(a_i), stable: NaN if any a_i is NaN, -inf for n = 0 or all -inf, +inf if
 * some a_i is +inf. */
double tchi_log_sum_exp(size_t n, const double *a);
void tchi_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
void tchi_rng_seed(tchi_rng *r, uint64_t seed, uint64_t stream);
uint32_t tchi_rng_u32(tchi_rng *r);
uint64_t tchi_rng_u64(tchi_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double tchi_rng_uniform(tchi_rng *r);
/* Uniform in (0, 1): never 0, safe for log(). */
double tchi_rng_uniform_pos(tchi_rng *r);
double tchi_rng_normal(tchi_rng *r);
/* Uniform integer in [0, n), unbiased (n >= 1). */
uint32_t tchi_rng_below(tchi_rng *r, uint32_t n);

/* ---- logging (log.c) ------------------------------------------------------------- */
void tchi_log(int level, const char *fmt, ...) TCHI_PRINTF(2, 3);

/* ---- misc ------------------------------------------------------------------------ */
/* CRC-32 (IEEE, as zlib) for file checksums. */
uint32_t tchi_crc32(uint32_t crc, const void *data, size_t n);

#define TCHI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TCHI_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* TCHI_CORE_H */
