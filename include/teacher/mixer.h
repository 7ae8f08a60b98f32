/** @file teacher/mixer.h
 * @brief tch_mixer: the behaviour-policy schedule. For every training step it says where the
 * batch comes from -- the Student on-policy, the Teacher, or buffer replay -- and whether
 * local search refines it; it also holds the exploration (epsilon-uniform mixing and logit
 * temperature) of each sampling source. Log-probabilities are always scored under the
 * policy being trained, never under the exploration distribution.
 *
 * Schedules (strings, as in the config key mixer.schedule):
 *   "student,buffer,teacher,buffer"   an explicit cycle: step i uses token i mod length;
 *                                     a token may carry "+ls" (local search on that step)
 *   "random:student=2,teacher=1,buffer=1"
 *                                     each step draws its source with these relative
 *                                     weights from the mixer stream of the trainer's seed
 * A trainer built from a config with mixer.schedule "auto" uses the reference's
 * alternation for its method (see docs/config.md). Standalone mixers (tch_mixer_create) also
 * know the source "smc" (no "+ls"): terminal samples with their importance log-weights from
 * an attached tch_smc (energy envs; tch_mixer_set_smc, tch_mixer_draw_energy); a trainer's
 * mixer.schedule cannot use it. Guide: docs/api/mixer.md. */
#ifndef TEACHER_MIXER_H
#define TEACHER_MIXER_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"
#include "teacher/env.h"
#include "teacher/policy.h"
#include "teacher/buffer.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted behaviour mixer. */
typedef struct tch_mixer tch_mixer;
/* The SMC sampler of teacher/smc.h (which includes this header through trainer.h). */
struct tch_smc;

/** Where a step's batch comes from (pinned). */
typedef enum tch_source {         /* pinned */
  TCH_SOURCE_STUDENT = 0,         /**< the Student, on-policy (with its exploration) */
  TCH_SOURCE_TEACHER = 1,         /**< the Teacher (with its exploration) */
  TCH_SOURCE_BUFFER = 2,          /**< replay: buffer objects rebuilt backward with P_B */
  TCH_SOURCE_SMC = 3              /**< standalone mixers: an attached tch_smc's weighted particles */
} tch_source;

/** Step flag: refine this step's batch by local search. */
#define TCH_MIXER_LOCAL_SEARCH 0x1u   /* flag: refine this step's batch by local search */

/** Parses a schedule (syntax above; spaces are ignored) into a new mixer. A malformed
 * schedule is TCH_E_CONFIG. */
TCH_API tch_status tch_mixer_create(const char *schedule, tch_mixer **out);
/** Adds a reference; returns m (NULL-tolerant). */
TCH_API tch_mixer *tch_mixer_retain(tch_mixer *m);
/** Drops a reference (and, with the last one, those it holds on attached policies and
 * buffer); NULL is a no-op. */
TCH_API void tch_mixer_free(tch_mixer *m);

/** The source and flags of a step. Deterministic in (schedule, seed, step). */
TCH_API tch_status tch_mixer_source(const tch_mixer *m, uint64_t seed, uint64_t step,
                                    tch_source *out_source, uint32_t *out_flags);
/** Canonical text of the schedule (borrowed; valid while the mixer lives). */
TCH_API tch_status tch_mixer_schedule(const tch_mixer *m, const char **out);

/** Sets the exploration of a sampling source (STUDENT or TEACHER): epsilon in [0, 1],
 * temperature > 0. Defaults 0 and 1. */
TCH_API tch_status tch_mixer_set_exploration(tch_mixer *m, tch_source src, double epsilon,
                                             double temperature);
/** Reads the exploration of a sampling source (STUDENT or TEACHER); either output may be
 * NULL. */
TCH_API tch_status tch_mixer_get_exploration(const tch_mixer *m, tch_source src,
                                             double *epsilon, double *temperature);

/** Standalone use: attach the policy a sampling source (STUDENT or TEACHER) draws from
 * (retained; NULL detaches). Buffer replay rebuilds trajectories with the STUDENT policy. */
TCH_API tch_status tch_mixer_set_policy(tch_mixer *m, tch_source src, tch_policy *p);
/** Standalone use: attach the buffer the BUFFER source replays (retained; NULL detaches). */
TCH_API tch_status tch_mixer_set_buffer(tch_mixer *m, tch_buffer *b);
/** Standalone use: draws the batch of a step from the source the schedule names, with the
 * same random streams a trainer uses. Local search needs the trainer (it scores with
 * the Student's loss) and is not applied by tch_mixer_draw_discrete; *out_flags reports it.
 * A step of the SMC source is TCH_E_STATE (see tch_mixer_draw_energy). Layout of the
 * outputs as in policy.h. */
TCH_API tch_status tch_mixer_draw_discrete(tch_mixer *m, tch_env *env, uint64_t seed,
                                           uint64_t step, size_t n, int32_t *out_states,
                                           int32_t *out_actions, uint32_t *out_len,
                                           tch_source *out_source, uint32_t *out_flags);

/** Standalone use, energy envs: attach the SMC sampler (teacher/smc.h) the SMC source draws
 * from (retained; NULL detaches). */
TCH_API tch_status tch_mixer_set_smc(tch_mixer *m, struct tch_smc *s);
/** Standalone use, energy envs: the batch of a step whose source is TCH_SOURCE_SMC: one run
 * of the attached sampler (n = its n_particles) on the SMC stream of (seed, step), giving
 * the terminal samples out_x (n x dim, row-major) and their unnormalised log importance
 * weights out_log_w (n, may be NULL; log-mean-exp = log Z-hat, see tch_smc_run). env must
 * be the env of the sampler's trainer. *out_source and *out_flags (may be NULL) report the
 * step; with n == 0 nothing else is done. TCH_E_STATE: the step's source is not SMC (energy
 * envs have no standalone policy or buffer sources), or no sampler is attached; TCH_E_ARG:
 * another env, n != n_particles; the sampler's errors (TCH_E_CALLBACK, TCH_E_NUMERIC,
 * TCH_E_CONFIG, TCH_E_NOMEM). */
TCH_API tch_status tch_mixer_draw_energy(tch_mixer *m, tch_env *env, uint64_t seed,
                                         uint64_t step, size_t n, double *out_x,
                                         double *out_log_w, tch_source *out_source,
                                         uint32_t *out_flags);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_MIXER_H */
