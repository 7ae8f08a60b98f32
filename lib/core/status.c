/* Status strings and the thread-local error text. */
#include <stdio.h>
#include <string.h>
#include "core.h"

#define TCHI_ERR_LEN 1024

static _Thread_local char last_error[TCHI_ERR_LEN];
static _Thread_local char callback_error[TCHI_ERR_LEN];
static _Thread_local int callback_code;

const char *tch_status_str(tch_status s)
{
  switch (s) {
  case TCH_OK: return "success";
  case TCH_STOPPED: return "stopped by the progress callback";
  case TCH_E_ARG: return "invalid argument";
  case TCH_E_NOMEM: return "out of memory";
  case TCH_E_STATE: return "operation not valid in the current state";
  case TCH_E_CONFIG: return "invalid configuration";
  case TCH_E_CALLBACK: return "a host callback reported an error";
  case TCH_E_NUMERIC: return "non-finite value (NaN or Inf)";
  case TCH_E_IO: return "input/output error or corrupt file";
  case TCH_E_VERSION: return "unsupported format or version";
  case TCH_E_INTERNAL: return "internal error";
  }
  return "unknown status";
}

const char *tch_last_error(void) { return last_error; }

int tch_last_callback_code(void) { return callback_code; }

void tch_set_callback_error(const char *msg)
{
  if (!msg) msg = "";
  snprintf(callback_error, sizeof callback_error, "%s", msg);
}

void tchi_callback_error_reset(void) { callback_error[0] = '\0'; }

void tchi_clear_error(void) { last_error[0] = '\0'; }

tch_status tchi_fail(tch_status s, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return s;
}

tch_status tchi_fail_prefix(tch_status s, const char *fmt, ...)
{
  char prev[TCHI_ERR_LEN], prefix[TCHI_ERR_LEN];
  snprintf(prev, sizeof prev, "%s", last_error);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  /* Truncation is intended: the message is cut at the buffer size. */
  size_t k = strlen(prefix);
  memcpy(last_error, prefix, k);
  size_t room = sizeof last_error - 1 - k, m = strlen(prev);
  if (m > room) m = room;
  memcpy(last_error + k, prev, m);
  last_error[k + m] = '\0';
  return s;
}

tch_status tchi_callback_fail(int code, const char *what)
{
  callback_code = code;
  if (callback_error[0])
    return tchi_fail(TCH_E_CALLBACK, "%s callback returned %d: %s", what, code, callback_error);
  return tchi_fail(TCH_E_CALLBACK, "%s callback returned %d", what, code);
}

unsigned tch_version_number(void) { return TCH_VERSION_NUMBER; }
const char *tch_version_string(void) { return TCH_VERSION_STRING; }
unsigned tch_abi_version(void) { return TCH_ABI_VERSION; }
