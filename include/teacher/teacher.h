/** @mainpage libteacher C API
 *
 * libteacher trains amortized samplers (GFlowNets) for unnormalized densities with the
 * adaptive Teacher method. Include `<teacher.h>`; it pulls in every header below.
 *
 * | header | handle / topic |
 * |---|---|
 * | teacher/status.h  | ::tch_status, tch_last_error(), versions, log sink |
 * | teacher/config.h  | ::tch_config: typed keys, YAML |
 * | teacher/env.h     | ::tch_env: host callbacks, the built-in hypergrid, exact targets |
 * | teacher/policy.h  | ::tch_policy: a sampler network (Student or Teacher) |
 * | teacher/buffer.h  | ::tch_buffer: replay buffer |
 * | teacher/mixer.h   | ::tch_mixer: behaviour-policy schedule |
 * | teacher/smc.h     | ::tch_smc: twisted SMC over a diffusion trainer's Student |
 * | teacher/trainer.h | ::tch_trainer: the Teacher-Student training loop |
 *
 * The guides live in the repository's docs/ folder: getting-started.md, api/ (one page per
 * handle), callbacks.md, errors.md, threading.md, config.md. */

/** @file teacher/teacher.h
 * @brief libteacher: amortized samplers (GFlowNets) trained with the adaptive Teacher and
 * with reinforced SMC. Umbrella public header.
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
#include "teacher/smc.h"
#endif /* TEACHER_TEACHER_H */
