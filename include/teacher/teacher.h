/* libteacher: amortized samplers (GFlowNets) trained with the adaptive Teacher and with
 * reinforced SMC. Umbrella public header.
 *
 * Conventions: every fallible call returns tch_status (TCH_OK = 0, errors < 0) and leaves
 * detail in tch_last_error(); constructors write *out (NULL on failure); handles are
 * opaque and reference counted, *_free(NULL) is a no-op; callbacks take `void *user` first. */
#ifndef TEACHER_TEACHER_H
#define TEACHER_TEACHER_H
#include "teacher/export.h"
#include "teacher/version.h"
#include "teacher/status.h"
#include "teacher/config.h"
#include "teacher/env.h"
#include "teacher/policy.h"
#include "teacher/buffer.h"
#include "teacher/mixer.h"
#include "teacher/trainer.h"
#endif /* TEACHER_TEACHER_H */
