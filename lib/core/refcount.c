/* C11 atomic reference counts: handles may be released from any thread, in any order. */
#include "core.h"

void tchi_ref_init(tchi_ref *r) { atomic_init(&r->n, 1); }
void tchi_ref_inc(tchi_ref *r) { atomic_fetch_add_explicit(&r->n, 1, memory_order_relaxed); }
int tchi_ref_dec(tchi_ref *r)
{
  return atomic_fetch_sub_explicit(&r->n, 1, memory_order_acq_rel) == 1;
}
