/* Allocation wrappers. Every library allocation goes through here so that tests can make
 * the n-th one fail (SQLite-style fault injection) and check that every public entry
 * point then returns TCH_E_NOMEM without leaking. The counter is per thread, so a test
 * never disturbs allocations made by other threads of a host. */
#include <stdlib.h>
#include <string.h>
#include "core.h"

static _Thread_local uint64_t fail_at;  /* 0: never fail */
static _Thread_local uint64_t n_allocs;

void tchi_alloc_fail_at(uint64_t n) { fail_at = n; n_allocs = 0; }
uint64_t tchi_alloc_count(void) { return n_allocs; }

static int should_fail(void)
{
  n_allocs++;
  return fail_at != 0 && n_allocs == fail_at;
}

void *tchi_malloc(size_t n)
{
  if (should_fail()) return NULL;
  return malloc(n ? n : 1);
}

void *tchi_calloc(size_t count, size_t size)
{
  if (should_fail()) return NULL;
  if (count == 0 || size == 0) return calloc(1, 1);
  return calloc(count, size);
}

void *tchi_realloc(void *p, size_t n)
{
  if (should_fail()) return NULL;
  return realloc(p, n ? n : 1);
}

void tchi_free(void *p) { free(p); }

size_t tchi_mul_size(size_t count, size_t size, int *overflow)
{
  if (size != 0 && count > SIZE_MAX / size) {
    *overflow = 1;
    return 0;
  }
  return count * size;
}

tch_status tchi_alloc_array(void *pp, size_t count, size_t size, int zero, const char *what)
{
  int ovf = 0;
  size_t bytes = tchi_mul_size(count, size, &ovf);
  void **out = (void **)pp;
  *out = NULL;
  if (ovf) return tchi_fail(TCH_E_NOMEM, "allocation of %s overflows (%zu x %zu bytes)", what, count, size);
  *out = zero ? tchi_calloc(count, size) : tchi_malloc(bytes);
  if (!*out) return tchi_fail(TCH_E_NOMEM, "out of memory allocating %s (%zu bytes)", what, bytes);
  return TCH_OK;
}
