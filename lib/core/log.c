/* Optional host log sink. Library code never prints; it hands text to this sink. The sink
 * is process-wide by necessity (set once by the host at start-up), read atomically. */
#include <stdio.h>
#include "core.h"

static _Atomic(tch_log_fn) log_fn;
static void *_Atomic log_user;
static atomic_int log_level = -1;

void tch_set_log_callback(tch_log_fn fn, void *user, int max_level)
{
  atomic_store(&log_user, user);
  atomic_store(&log_level, fn ? max_level : -1);
  atomic_store(&log_fn, fn);
}

void tchi_log(int level, const char *fmt, ...)
{
  tch_log_fn fn = atomic_load(&log_fn);
  if (!fn || level > atomic_load(&log_level)) return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fn(atomic_load(&log_user), level, msg);
}
