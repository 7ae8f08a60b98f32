/** @file teacher/smc.h
 * @brief tch_smc: a twisted sequential Monte Carlo sampler over the diffusion trajectories of
 * a trainer's Student (Reinforced SMC, spec reinforced-smc.md §4).
 *
 * N particles start from the Student's reference prior and are moved by its learnt forward
 * policy in K chunks of T / K steps; after each chunk they are reweighted by the log-flow
 * twists (the trainer's learnt twist network when it has one, see below) and the fixed
 * backward kernel; when the normalised ESS falls below resample_threshold (never after the
 * last chunk) they are resampled with adaptive weight tempering towards target_ess. A run
 * returns the final particles, their unnormalised log-weights on the scale of
 * single-trajectory importance weights (log R + sum log P_B - sum log P_F), and the running
 * log Z-hat, which equals the log-mean-exp of those log-weights.
 *
 * The handle is bound to a diffusion trainer (an energy env) and always uses the trainer's
 * current weights: train, run SMC, train again. Twists: with smc.enabled and an SMC method
 * the learnt log-flow and beta schedule; otherwise (the Teacher paper's Brownian sampler, or
 * the TB methods of smc.enabled) the untrained twist f = 0 with the linear schedule, i.e.
 * the partial energies (1 - k/T) log p_ref,k + (k/T) log R -- an annealed, still
 * consistent SMC whose K = 1 case is plain importance sampling. Optionally (mala_steps,
 * smc.mala_steps) every particle makes Metropolis-adjusted Langevin moves after each chunk on
 * that chunk end's twist (log R after the last one): they leave the weighted target
 * invariant, so weights and log Z-hat keep their meaning, and need the log density's
 * gradient. Guide: docs/api/smc.md. */
#ifndef TEACHER_SMC_H
#define TEACHER_SMC_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "teacher/status.h"
#include "teacher/trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted SMC sampler. */
typedef struct tch_smc tch_smc;

/** Resampling scheme (pinned). */
typedef enum tch_smc_resampler {   /* pinned */
  TCH_SMC_RESAMPLER_CONFIG = 0,      /**< the trainer's smc.resampler */
  TCH_SMC_RESAMPLER_SYSTEMATIC = 1,  /**< one uniform for every position (the default) */
  TCH_SMC_RESAMPLER_STRATIFIED = 2,  /**< one uniform per position */
  TCH_SMC_RESAMPLER_MULTINOMIAL = 3  /**< independent categorical draws */
} tch_smc_resampler;

/** SMC settings. A zero field (as a zeroed or older, shorter descriptor leaves it) takes
 * the trainer's value, so a descriptor from tch_smc_desc_init() reproduces the trainer's
 * own SMC sweep. Initialise with tch_smc_desc_init(); fields are only ever appended. */
typedef struct tch_smc_desc {
  uint32_t struct_size;        /**< = sizeof(tch_smc_desc); set by _init() */
  uint32_t n_particles;        /**< N >= 1; 0: train.batch_size */
  uint32_t n_chunks;           /**< K >= 1, dividing env.diffusion.steps; 0: smc.n_chunks */
  uint32_t resampler;          /**< a ::tch_smc_resampler value */
  double resample_threshold;   /**< kappa in (0, 1]: resample when ESS/N < kappa; 0: smc.resample_threshold */
  double target_ess;           /**< rho in (0, 1]: tempering target; 1 turns resampling off; 0: smc.target_ess */
  int32_t unbiased;            /**< 1: add the partial-resampling correction (exactly unbiased Z-hat);
                                    -1: the paper's estimator; 0: smc.unbiased_partial_resampling */
  /* Appended (version 2): MALA rejuvenation between chunks. A double first, so that no new
   * field falls in the padding that ends a version-1 descriptor. */
  double mala_step;            /**< step size eta > 0 of the rejuvenation moves; 0: smc.mala_step */
  int32_t mala_steps;          /**< moves after every chunk (> 0), -1: none; 0: smc.mala_steps */
} tch_smc_desc;

#ifndef TCH_NO_INLINE_HELPERS
/** Zeroes a descriptor (every setting: the trainer's) and sets struct_size = sizeof *d (an
 * inline helper; hosts without a C compiler set struct_size themselves). */
static inline void tch_smc_desc_init(tch_smc_desc *d)
{ memset(d, 0, sizeof *d); d->struct_size = (uint32_t)sizeof *d; }
#endif

/** Creates an SMC sampler over trainer tr's Student (retains tr; d may be NULL for the
 * trainer's settings). TCH_E_ARG: NULL tr or out, struct_size below the first version, a
 * value out of range, n_chunks not dividing the trainer's T (also when taken from
 * smc.n_chunks); TCH_E_STATE: tr is not a diffusion trainer (a discrete env);
 * TCH_E_CONFIG: MALA moves requested and the env has no gradient (TCH_ENERGY_HAS_GRAD);
 * TCH_E_NOMEM. *out = NULL on failure. */
TCH_API tch_status tch_smc_create(tch_trainer *tr, const tch_smc_desc *d, tch_smc **out);
/** Adds a reference; returns s (NULL-tolerant). */
TCH_API tch_smc *tch_smc_retain(tch_smc *s);
/** Drops a reference (with the last one, the one it holds on the trainer); NULL is a
 * no-op. */
TCH_API void tch_smc_free(tch_smc *s);

/** One SMC run of n = n_particles particles from the random stream of `seed`: final
 * particles into out_x (n x dim, row-major), their unnormalised log-weights into out_log_w
 * (n) and log Z-hat into *out_log_z; any output may be NULL. The same seed and trainer
 * state give bit-identical results. The trainer's training state (weights, optimiser,
 * counters, metrics, random streams, buffer) is not changed, and its energy counter
 * reward_calls does not count the run's evaluations (see the "energy_evals" metric).
 * TCH_E_ARG: NULL s, n != n_particles; TCH_E_CALLBACK from the log density;
 * TCH_E_NUMERIC: a non-finite energy, twist or weight (the message names chunk and
 * particle); TCH_E_NOMEM (first run only: workspaces are kept and reused). After an
 * error the outputs are unspecified and the run metrics NaN. */
TCH_API tch_status tch_smc_run(tch_smc *s, uint64_t seed, size_t n, double *out_x,
                               double *out_log_w /* may be NULL */,
                               double *out_log_z /* may be NULL */);

/** Reads a value by name. Settings (resolved at creation): "n_particles", "n_chunks",
 * "dim", "resample_threshold", "target_ess", "resampler" (a ::tch_smc_resampler value),
 * "unbiased" (0/1), "learnt_twist" (1 if the trainer's learnt log-flow is used). Last run
 * (NaN before the first successful run): "log_z", "ess" (normalised ESS of the output
 * weights, in (0, 1]), "resamples" (chunks after which resampling happened),
 * "energy_evals" (points passed to the log density, moves included), "min_chunk_ess". Counter: "runs"
 * (successful runs). MALA: settings "mala_steps", "mala_step"; last run "mala_accept"
 * (accepted / proposed moves; NaN without moves). TCH_E_ARG for an unknown name. */
TCH_API tch_status tch_smc_metric(const tch_smc *s, const char *name, double *out);

/** Per-chunk diagnostics of the last successful run, n_chunks = K entries each (any output
 * may be NULL): the normalised ESS after the chunk's reweighting, the weight temperature
 * T* used when resampling (1 when not resampled; +inf: uniform over the live particles),
 * and 1/0 for whether the particles were resampled after the chunk. TCH_E_ARG for
 * n_chunks != K; TCH_E_STATE before the first successful run. */
TCH_API tch_status tch_smc_chunk_stats(const tch_smc *s, size_t n_chunks, double *out_ess,
                                       double *out_temperature, uint8_t *out_resampled);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_SMC_H */
