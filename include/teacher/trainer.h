/** @file teacher/trainer.h
 * @brief tch_trainer: owns the Student (and, with the Teacher, the Teacher), their
 * optimisers, the RNG streams, the metrics and the step loop.
 *
 * Built from an env and a config. A discrete env gets the Teacher-Student GFlowNet loop; an
 * energy env (tch_env_create_energy(), the built-in GMM25 and ManyWell) gets a diffusion
 * sampler trained with trajectory balance on-policy, with a replay buffer (and MALA local
 * search), or with the adaptive Teacher. Guide: docs/api/trainer.md. */
#ifndef TEACHER_TRAINER_H
#define TEACHER_TRAINER_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"
#include "teacher/config.h"
#include "teacher/env.h"
#include "teacher/policy.h"
#include "teacher/buffer.h"
#include "teacher/mixer.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted trainer. */
typedef struct tch_trainer tch_trainer;

/** Progress callback. Called every `every_n_steps` completed steps; a non-zero return makes
 * tch_trainer_step return TCH_STOPPED after the current step. */
typedef int (*tch_progress_fn)(void *user, const tch_trainer *t, uint64_t step);

/** Creates a trainer. The trainer retains env and copies c (c may be NULL for defaults). What it builds:
 * a Student (student.*, nn.*), a Teacher when teacher.enabled, a replay buffer when
 * buffer.enabled, local search when local_search.enabled, and the behaviour mixer
 * (mixer.schedule "auto": the reference's alternation for that method). Energy envs build
 * diffusion samplers (diffusion.*) and follow the reference's fixed iteration patterns
 * (no mixer; keys of the discrete loop other than their defaults are TCH_E_CONFIG). Keys
 * set to -1 take the env's default (see docs/config.md); the trainer's own config holds
 * the resolved values. */
TCH_API tch_status tch_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out);
/** Adds a reference; returns t (NULL-tolerant). */
TCH_API tch_trainer *tch_trainer_retain(tch_trainer *t);
/** Drops a reference; with the last one the trainer releases its env, policies, buffer and
 * mixer (each destroyed unless retained elsewhere). NULL is a no-op. */
TCH_API void tch_trainer_free(tch_trainer *t);

/** Installs the progress callback (see ::tch_progress_fn), called every every_n_steps
 * completed steps (> 0); fn NULL removes it. */
TCH_API tch_status tch_trainer_set_progress(tch_trainer *t, tch_progress_fn fn, void *user,
                                            uint64_t every_n_steps);
/** Runs n_steps gradient steps. On an error the failing step is rolled back (weights,
 * optimiser and counters as before it) and the error returned. */
TCH_API tch_status tch_trainer_step(tch_trainer *t, uint64_t n_steps);
/** The number of steps a full run takes: train.steps, or when it is -1 the reference's
 * default for the env and method (hypergrid: grid/trainer.py's rule; energy envs: 10001;
 * TCH_E_CONFIG for other envs). */
TCH_API tch_status tch_trainer_planned_steps(const tch_trainer *t, uint64_t *out);
/** Samples n fresh Student objects (no exploration) and updates the eval.* metrics.
 * Discrete envs: eval.l1, eval.modes (envs that enumerate their terminal set; TCH_E_STATE
 * otherwise). Energy envs: eval.log_z (importance-weighted), eval.elbo, eval.ess,
 * eval.delta_log_z (with a known log Z), and with exact target samples (built-ins, or a
 * host sample_reference) eval.eubo, eval.mean_log_likelihood and, for n <=
 * diffusion.eval_distance_max, eval.w1, eval.w2, eval.mmd; GMM40 targets add eval.modes
 * (components nearest to at least one sample) and eval.emc (entropic mode coverage). */
TCH_API tch_status tch_trainer_evaluate(tch_trainer *t, size_t n_samples);

/** Reads a metric by name:  "step", "loss.student", "logz.student", "loss.teacher", "logz.teacher",
 * "l1" (empirical L1 of the last training visits), "modes" (modes visited so far),
 * "reward_calls", "grad_steps", "buffer.size", "source" (0 student, 1 teacher, 2 buffer),
 * "eval.l1", "eval.modes"... Diffusion trainers add "threshold", "teacher.kept",
 * "skipped.*", "eval.log_z", "eval.elbo", "eval.eubo"... (docs/api/trainer.md). NaN when
 * not (yet) defined or defined only for the other kind of trainer; TCH_E_ARG for an
 * unknown name. tch_trainer_next_metric(t, NULL) is the first name of t's kind, NULL after
 * the last. */
TCH_API tch_status tch_trainer_metric(const tch_trainer *t, const char *name, double *out);
/** Iterates over the metric names: NULL gives the first, NULL follows the last (static
 * strings). */
TCH_API const char *tch_trainer_next_metric(const tch_trainer *t, const char *prev);

/** The Student (borrowed). Borrowed handles: valid while the trainer lives
 * (tch_*_retain to keep them longer). TCH_E_STATE for a diffusion trainer (its sampler is
 * not a tch_policy; see tch_trainer_sample_continuous()). */
TCH_API tch_status tch_trainer_get_student(tch_trainer *t, tch_policy **borrowed);
/** The env the trainer retains (borrowed). */
TCH_API tch_status tch_trainer_get_env(tch_trainer *t, tch_env **borrowed);
/** The trainer's own copy of the config (borrowed, read-only). */
TCH_API tch_status tch_trainer_get_config(tch_trainer *t, const tch_config **borrowed);
/** The Teacher (borrowed); TCH_E_STATE when the trainer has no Teacher or is a diffusion
 * trainer. */
TCH_API tch_status tch_trainer_get_teacher(tch_trainer *t, tch_policy **borrowed);
/** The replay buffer (borrowed); TCH_E_STATE when the trainer has no buffer. */
TCH_API tch_status tch_trainer_get_buffer(tch_trainer *t, tch_buffer **borrowed);
/** The behaviour mixer (borrowed); TCH_E_STATE for a diffusion trainer (it has none). */
TCH_API tch_status tch_trainer_get_mixer(tch_trainer *t, tch_mixer **borrowed);

/** Saves a checkpoint of the whole state (config, weights, optimiser moments, buffer, counters,
 * visit statistics), written atomically: a crash mid-write never destroys the previous
 * file. Callbacks cannot be saved: tch_trainer_load takes a fresh env of the same shape. A
 * run resumed from a checkpoint is bit-identical to an uninterrupted one. Truncated or
 * corrupt files are TCH_E_IO, other format versions TCH_E_VERSION, an env of another shape
 * TCH_E_ARG. */
TCH_API tch_status tch_trainer_save(const tch_trainer *t, const char *path);
/** Rebuilds a trainer from a checkpoint written by tch_trainer_save(), with a fresh env of
 * the same shape (errors as described for tch_trainer_save()). */
TCH_API tch_status tch_trainer_load(tch_env *env, const char *path, tch_trainer **out);

/** Diffusion trainers (energy envs): n fresh samples of the Student's diffusion sampler,
 * without exploration, into out_x (n x dim, row-major) and, unless out_log_w is NULL, their
 * log-weights log R(x) + sum log P_B - sum log P_F (log R from the env's log density:
 * logmeanexp of them estimates log Z). Reproducible for a given seed and trainer state;
 * does not change the trainer's training state. TCH_E_STATE for a discrete trainer;
 * TCH_E_CALLBACK / TCH_E_NUMERIC from the log density (only with out_log_w). */
TCH_API tch_status tch_trainer_sample_continuous(tch_trainer *t, uint64_t seed, size_t n,
                                                 double *out_x,
                                                 double *out_log_w /* may be NULL */);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_TRAINER_H */
