/** @file teacher/status.h
 * @brief Status codes, error text and version queries.
 *
 * Every fallible call returns a ::tch_status; the detail of the most recent failure on the
 * calling thread is tch_last_error(). See docs/errors.md. */
#ifndef TEACHER_STATUS_H
#define TEACHER_STATUS_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/export.h"
#include "teacher/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Result of every fallible call.
 * Values are ABI: append only, never renumber. > 0 informational, < 0 errors. */
typedef enum tch_status {
  TCH_OK = 0,             /**< success */
  TCH_STOPPED = 1,        /**< the progress callback asked to stop */
  TCH_E_ARG = -1,         /**< bad argument (NULL, out of range, mismatched sizes) */
  TCH_E_NOMEM = -2,       /**< allocation failed */
  TCH_E_STATE = -3,       /**< call not valid in the object's current state */
  TCH_E_CONFIG = -4,      /**< bad configuration key, type or value; malformed YAML */
  TCH_E_CALLBACK = -5,    /**< a host callback returned non-zero */
  TCH_E_NUMERIC = -6,     /**< NaN/Inf in a reward, loss or gradient */
  TCH_E_IO = -7,          /**< file could not be read/written, or is truncated/corrupt */
  TCH_E_VERSION = -8,     /**< file format or ABI version not supported */
  TCH_E_INTERNAL = -9     /**< internal invariant failed (a bug: please report) */
} tch_status;

/** Static description of a status code; never NULL. */
TCH_API const char *tch_status_str(tch_status s);
/** Detail of the most recent failure on the calling thread ("" before the first one).
 * Successful calls do not clear it: read it right after a call returned an error.
 * Valid until the next libteacher call on this thread. */
TCH_API const char *tch_last_error(void);
/** Call from inside a host callback to attach text to the failure it is about to return. */
TCH_API void tch_set_callback_error(const char *msg);
/** The non-zero value returned by the callback behind the last TCH_E_CALLBACK on this thread. */
TCH_API int tch_last_callback_code(void);

/** Runtime version of the loaded library (compare with TCH_VERSION_NUMBER). */
TCH_API unsigned tch_version_number(void);
/** Runtime version of the loaded library as text, e.g. "0.1.0" (static). */
TCH_API const char *tch_version_string(void);
/** ABI version (the soname number) of the loaded library; compare with TCH_ABI_VERSION. */
TCH_API unsigned tch_abi_version(void);

/** Optional log sink. level: 0 error, 1 warning, 2 info, 3 debug. Messages at or below
 * max_level are passed to fn on the thread that produced them; fn may be NULL (off, default). */
typedef void (*tch_log_fn)(void *user, int level, const char *msg);
/** Installs the process-wide log sink (see ::tch_log_fn); fn NULL turns logging off. */
TCH_API void tch_set_log_callback(tch_log_fn fn, void *user, int max_level);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_STATUS_H */
