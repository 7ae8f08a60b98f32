/** @file teacher/env.h
 * @brief tch_env: the environment a sampler builds objects in.
 *
 * Discrete environments are defined by batched host callbacks. A state is state_dim int32
 * values; batches are row-major (n x state_dim). Actions are 0..n_actions-1 and action
 * n_actions-1 is EXIT: taking it ends the trajectory and the current state is the
 * terminal object x. Backward action a (0..n_actions-2) means "undo forward action a",
 * so the parents of s are { backward_step(s, a) : bwd[s][a] = 1 }.
 *
 * Every callback takes `user` first, is called only on the thread that called into the
 * library, and returns 0 on success or any non-zero code, which stops the current
 * operation and is reported as TCH_E_CALLBACK (tch_last_callback_code() gives the code;
 * the callback may call tch_set_callback_error() to attach text). Guides: docs/api/env.md,
 * docs/callbacks.md.
 *
 * Energy environments (tch_env_create_energy() and the built-ins GMM25, ManyWell, GMM40
 * and the funnel) are continuous targets for diffusion samplers: an unnormalised log
 * density on R^dim, with optional gradient, log Z and exact sampler. The discrete queries
 * (tch_env_dims(), tch_env_log_reward(), the exact-target functions) do not apply to them. */
#ifndef TEACHER_ENV_H
#define TEACHER_ENV_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "teacher/status.h"
#include "teacher/config.h"
#ifndef TCH_NO_INLINE_HELPERS
#include <math.h>   /* NAN, for tch_energy_desc_init() */
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted environment (host callbacks or a built-in). */
typedef struct tch_env tch_env;

/** Step callback, forward or backward: out_states[i] = child of states[i] under actions[i] (forward), or the parent reached by
 * undoing actions[i] (backward). Never called with EXIT. */
typedef int (*tch_step_fn)(void *user, size_t n, const int32_t *states,
                           const int32_t *actions, int32_t *out_states);
/** Masks callback. fwd: n x n_actions, 1 = valid forward action. A state whose only valid action is EXIT
 * is terminal (forced stop). bwd: n x (n_actions-1), 1 = valid backward action; NULL when
 * the library does not need it. */
typedef int (*tch_masks_fn)(void *user, size_t n, const int32_t *states,
                            uint8_t *fwd, uint8_t *bwd);
/** Reward callback: log R(x) of terminal states. NaN/Inf is TCH_E_NUMERIC unless a clip is configured. */
typedef int (*tch_log_reward_fn)(void *user, size_t n, const int32_t *states,
                                 double *out_log_r);
/** Features callback: network input of states, n x feat_dim floats. */
typedef int (*tch_features_fn)(void *user, size_t n, const int32_t *states, float *out);

/** Descriptor flag: callbacks may run concurrently on disjoint chunks (reserved: the
 * library does not call callbacks concurrently yet). */
#define TCH_ENV_REENTRANT 0x1u   /* callbacks may run concurrently on disjoint chunks */

/** Describes a discrete environment made of host callbacks (tch_env_create_discrete()).
 * Initialise with tch_discrete_env_desc_init(); fields are only ever appended. */
typedef struct tch_discrete_env_desc {
  uint32_t struct_size;          /**< = sizeof(tch_discrete_env_desc); set by _init() */
  uint32_t state_dim;            /**< int32 values per state (>= 1) */
  uint32_t n_actions;            /**< forward actions including EXIT (>= 2) */
  uint32_t feat_dim;             /**< features() output width; ignored when features == NULL */
  uint32_t max_len;              /**< bound on non-EXIT steps of any trajectory (>= 1) */
  const int32_t *s0;             /**< initial state, state_dim values; copied */
  tch_step_fn step;              /**< forward step; required */
  tch_step_fn backward_step;     /**< backward step (undo a forward action); required */
  tch_masks_fn masks;            /**< forward and backward masks; required */
  tch_log_reward_fn log_reward;  /**< log-reward of terminal states; required */
  tch_features_fn features;      /**< NULL: built-in one-hot of each position (needs vocab) */
  void *user;                    /**< passed first to every callback */
  void (*user_free)(void *user); /**< called once when the env is destroyed; may be NULL */
  /* --- appended fields (read only if struct_size covers them) --- */
  const uint32_t *vocab;         /**< state_dim entries: position i takes values 0..vocab[i]-1
                                    (negative = padding, encodes as all zeros); copied */
  uint32_t flags;                /**< TCH_ENV_* */
  uint32_t cond_dim;             /**< reserved for conditional rewards; must be 0 */
} tch_discrete_env_desc;

#ifndef TCH_NO_INLINE_HELPERS
/** Zeroes a descriptor and sets struct_size = sizeof *d (an inline helper; hosts without a
 * C compiler set struct_size themselves). */
static inline void tch_discrete_env_desc_init(tch_discrete_env_desc *d)
{ memset(d, 0, sizeof *d); d->struct_size = (uint32_t)sizeof *d; }
#endif

/** Creates an env from host callbacks. On failure *out = NULL and user_free is NOT called
 * (the caller still owns user). */
TCH_API tch_status tch_env_create_discrete(const tch_discrete_env_desc *d, tch_env **out);

/** Built-in deceptive hypergrid of "Adaptive teachers for amortized samplers":
 * states {0..horizon-1}^ndim from 0, actions "increment coordinate i" and EXIT, forced stop
 * when a coordinate reaches horizon-1, reward R = (0.1 - 0.1*[all |u_i|>0.2]
 * + 2*[all 0.6<|u_i|<0.8] + 1e-5)^beta with u_i = 2 s_i/(horizon-1) - 1.
 * Enumerates its exact target distribution and its modes (grids of at most 2^24 cells). */
TCH_API tch_status tch_env_create_hypergrid(uint32_t ndim, uint32_t horizon, double beta,
                                            tch_env **out);
/** A built-in env from config keys env.name and env.\<name\>.* (e.g. env.hypergrid.ndim). */
TCH_API tch_status tch_env_create_from_config(const tch_config *c, tch_env **out);

/** Adds a reference; returns e (NULL-tolerant). */
TCH_API tch_env *tch_env_retain(tch_env *e);   /* returns e; NULL-tolerant */
/** Drops a reference; with the last one the env is destroyed and user_free(user) runs.
 * NULL is a no-op. */
TCH_API void tch_env_free(tch_env *e);         /* drops a reference; NULL is a no-op */

/** Shape: any out pointer may be NULL. Trajectories have at most max_len + 1 states
 * (s_0..x) and max_len + 1 actions (the last one EXIT). TCH_E_ARG for an energy env
 * (see tch_env_energy_dim()). */
TCH_API tch_status tch_env_dims(const tch_env *e, uint32_t *state_dim, uint32_t *n_actions,
                                uint32_t *max_len);

/** Calls the env's (checked) reward: NaN/Inf -> TCH_E_NUMERIC. TCH_E_ARG for an energy env
 * (see tch_env_log_density()). */
TCH_API tch_status tch_env_log_reward(tch_env *e, size_t n, const int32_t *states,
                                      double *out_log_r);

/** Size of the terminal set. Exact-target queries work only for envs that can enumerate
 * their terminal set, e.g. the hypergrid; TCH_E_STATE otherwise. */
TCH_API tch_status tch_env_n_terminal(const tch_env *e, size_t *out);
/** Number of modes of the exact target (terminal states of maximal reward); TCH_E_STATE
 * unless the env enumerates its terminal set. */
TCH_API tch_status tch_env_n_modes(const tch_env *e, size_t *out);
/** Copies min(cap, n_terminal) terminal states and their log-rewards (either may be NULL). */
TCH_API tch_status tch_env_enumerate_terminal(const tch_env *e, size_t cap, int32_t *states,
                                              double *log_r);
/** Empirical L1 of n terminal samples against the exact target, as the reference computes
 * it: mean over the terminal set X of |p_hat(x) - p*(x)|. */
TCH_API tch_status tch_env_empirical_l1(const tch_env *e, size_t n, const int32_t *states,
                                        double *out_l1);
/** Number of distinct modes among n terminal samples. */
TCH_API tch_status tch_env_count_modes(const tch_env *e, size_t n, const int32_t *states,
                                       size_t *out);

/* ---- energy environments (continuous targets for diffusion samplers) ------------------ */

/** Log-density callback of a continuous target: for the n points x (n x dim, row-major)
 * writes the unnormalised log density log p(x_i) (= -energy) into out_log_p[i] and, when
 * out_grad is not NULL, its gradient d log p / dx into out_grad (n x dim). The library
 * passes out_grad only to envs that declare TCH_ENERGY_HAS_GRAD and only when a feature
 * needs it. Every value written must be finite (NaN/Inf is TCH_E_NUMERIC). Returns 0, or
 * any non-zero code (TCH_E_CALLBACK). */
typedef int (*tch_log_density_fn)(void *user, size_t n, size_t dim, const double *x,
                                  double *out_log_p,
                                  double *out_grad /* n x dim, NULL unless needed */);
/** Exact-sample callback (optional): writes n independent samples of the normalised
 * target into out_x (n x dim), reproducibly for a given seed. Used for metrics that need
 * ground-truth samples (EUBO, Wasserstein distances). Returns 0 or a non-zero code. */
typedef int (*tch_sample_reference_fn)(void *user, uint64_t seed, size_t n, size_t dim,
                                       double *out_x);

/** Energy descriptor flag: log_density can write gradients (out_grad). */
#define TCH_ENERGY_HAS_GRAD 0x1u

/** Describes a continuous target (tch_env_create_energy()). Initialise with
 * tch_energy_desc_init(); fields are only ever appended. */
typedef struct tch_energy_desc {
  uint32_t struct_size;                     /**< = sizeof(tch_energy_desc); set by _init() */
  uint32_t dim;                             /**< dimension of x (>= 1) */
  uint32_t flags;                           /**< TCH_ENERGY_* */
  tch_log_density_fn log_density;           /**< unnormalised log density; required */
  double log_Z;                             /**< log of the normalising constant; NAN if
                                                 unknown (evaluation only) */
  tch_sample_reference_fn sample_reference; /**< exact samples of the target; may be NULL */
  void *user;                               /**< passed first to every callback */
  void (*user_free)(void *user);            /**< called once when the env is destroyed;
                                                 may be NULL */
} tch_energy_desc;

#ifndef TCH_NO_INLINE_HELPERS
/** Zeroes a descriptor, sets struct_size = sizeof *d and log_Z = NAN (unknown); an inline
 * helper (hosts without a C compiler set both themselves). */
static inline void tch_energy_desc_init(tch_energy_desc *d)
{ memset(d, 0, sizeof *d); d->struct_size = (uint32_t)sizeof *d; d->log_Z = NAN; }
#endif

/** Creates an energy env (the target of a diffusion sampler) from a host descriptor; the
 * descriptor is copied. The forward SDE's discretisation is read from c (NULL: defaults):
 * env.diffusion.steps and env.diffusion.t_scale. On failure *out = NULL and user_free is
 * NOT called (the caller still owns user). Errors: TCH_E_ARG (NULL arguments, struct_size
 * too small, dim 0, log_density NULL, unknown flags, infinite log_Z), TCH_E_NOMEM. */
TCH_API tch_status tch_env_create_energy(const tch_energy_desc *d, const tch_config *c,
                                         tch_env **out);
/** Built-in 25-component Gaussian mixture in 2-D ("25GMM" of the reference): equal
 * weights, means {-10,-5,0,5,10}^2, covariance 0.3 I; normalised (log Z = 0); gradient and
 * exact sampler. c (may be NULL) gives env.diffusion.*. */
TCH_API tch_status tch_env_create_gmm25(const tch_config *c, tch_env **out);
/** Built-in ManyWell in 32-D: 16 independent pairs with log p = sum_k (-x_{2k}^4 +
 * 6 x_{2k}^2 + 0.5 x_{2k} - 0.5 x_{2k+1}^2); log Z = 16 (log 11784.50927 + log(2 pi)/2) =
 * 164.69567532; gradient and exact sampler. c (may be NULL) gives env.diffusion.*. */
TCH_API tch_status tch_env_create_manywell(const tch_config *c, tch_env **out);
/** Built-in 40-component Gaussian mixture of Reinforced SMC ("GMM40"): equal weights,
 * covariance I, log Z = 0; gradient and exact sampler. dim 2 uses the reference's 40 means
 * (in [-40, 40]^2); any other dim (1..100000; the paper uses 5 and 50) uses fixed means
 * drawn uniformly in [-40, 40)^dim from a seed-independent Philox stream (see
 * docs/api/env.md). c (may be NULL) gives env.diffusion.*. TCH_E_ARG for dim 0 or too
 * large. */
TCH_API tch_status tch_env_create_gmm40(uint32_t dim, const tch_config *c, tch_env **out);
/** Built-in funnel of Reinforced SMC: x_1 ~ N(0, 3^2), x_i ~ N(0, e^{x_1}) for i >= 2;
 * log Z = 0; gradient and exact (unclipped) sampler. dim 2..100000 (the paper uses 10).
 * c (may be NULL) gives env.diffusion.*. */
TCH_API tch_status tch_env_create_funnel(uint32_t dim, const tch_config *c, tch_env **out);

/** Dimension of an energy env's points. TCH_E_ARG for a discrete env. */
TCH_API tch_status tch_env_energy_dim(const tch_env *e, uint32_t *dim);
/** Evaluates the target's (checked) log density at n points x (n x dim) into out_log_p,
 * and its gradient into out_grad (n x dim) unless out_grad is NULL. Errors: TCH_E_ARG
 * (NULL pointers, a discrete env), TCH_E_STATE (a gradient from an env without
 * TCH_ENERGY_HAS_GRAD), TCH_E_CALLBACK, TCH_E_NUMERIC (a NaN/Inf value; the message names
 * the row). */
TCH_API tch_status tch_env_log_density(tch_env *e, size_t n, const double *x,
                                       double *out_log_p, double *out_grad);
/** The target's log normalising constant. TCH_E_STATE if it is unknown (NAN). */
TCH_API tch_status tch_env_log_Z(const tch_env *e, double *out);
/** n exact samples of the normalised target (n x dim), reproducible for a given seed.
 * TCH_E_STATE if the env has no exact sampler; TCH_E_CALLBACK, TCH_E_NUMERIC for a host
 * sampler that fails or writes NaN/Inf. */
TCH_API tch_status tch_env_sample_target(tch_env *e, uint64_t seed, size_t n, double *out_x);
/** The discretisation of the diffusion sampler's forward SDE on this env: steps T (time
 * step 1/T) and the variance scale t_scale of its Brownian noise. Either out may be NULL. */
TCH_API tch_status tch_env_diffusion_steps(const tch_env *e, uint32_t *steps, double *t_scale);

/* ---- sequence tasks on the prepend/append MDP (discovery experiments) ------------------ */

/** Raw-score callback of a sequence task (tch_env_create_seqpa()): writes the raw score y of
 * n complete strings into out_y (n values; the reward is a transform of y, see
 * tch_seqpa_env_desc). strings is n x len int32 characters in [0, n_chars), row-major.
 * Called only on the thread that called the library, with batches of at most the training
 * batch size (all n_chars^len strings in one call when the env enumerates them). Returns 0,
 * or any non-zero code (TCH_E_CALLBACK); NaN or +Inf scores are TCH_E_NUMERIC. */
typedef int (*tch_seqpa_score_fn)(void *user, size_t n, const int32_t *strings, double *out_y);

/** tch_seqpa_env_desc flag: enumerate all n_chars^len strings at creation (at most 2^24) for
 * the exact target, its modes and log Z (tch_env_n_terminal(), tch_env_target_log_Z(), ...). */
#define TCH_SEQPA_ENUMERATE 0x1u
/** tch_seqpa_env_desc flag: the log_Z field holds the known log Z of the reward. */
#define TCH_SEQPA_HAS_LOG_Z 0x2u

/** Describes a sequence task (tch_env_create_seqpa()): strings of exactly len characters
 * from an alphabet of n_chars, built by prepending or appending one character at a time
 * (the discovery experiments' SeqPA MDP), with reward
 * R(x) = max(max(y, y_min)^beta * scale + add_floor, max_floor) of the raw score y = score(x).
 * Initialise with tch_seqpa_env_desc_init(); fields are only ever appended. */
typedef struct tch_seqpa_env_desc {
  uint32_t struct_size;          /**< = sizeof(tch_seqpa_env_desc); set by _init() */
  uint32_t len;                  /**< L: length of every terminal string (>= 1) */
  uint32_t n_chars;              /**< A: alphabet size, 1..36 */
  uint32_t flags;                /**< TCH_SEQPA_* */
  tch_seqpa_score_fn score;      /**< raw score of complete strings; required */
  void *user;                    /**< passed first to score */
  void (*user_free)(void *user); /**< called once when the env is destroyed; may be NULL */
  const char *name;              /**< task name for messages; copied; NULL: "seqpa" */
  double beta;                   /**< reward exponent, >= 0 (_init(): 1) */
  double y_min;                  /**< floor of the raw score, > 0 (_init(): 0.001) */
  double log_scale;              /**< log of scale; used when r_max is 0 (_init(): 0) */
  double r_max;                  /**< > 0: scale = r_max / max over all strings of
                                      max(y, y_min)^beta (needs TCH_SEQPA_ENUMERATE) */
  double add_floor;              /**< added to R, >= 0 */
  double max_floor;              /**< lower bound of R, >= 0 */
  double log_Z;                  /**< log sum of R over all strings, with TCH_SEQPA_HAS_LOG_Z */
  const uint64_t *modes;         /**< mode strings as base-n_chars indices (position 0 most
                                      significant), any order; copied; may be NULL */
  size_t n_modes;                /**< entries of modes */
} tch_seqpa_env_desc;

#ifndef TCH_NO_INLINE_HELPERS
/** Zeroes a descriptor, sets struct_size = sizeof *d, beta = 1 and y_min = 0.001 (an inline
 * helper; hosts without a C compiler set them themselves). */
static inline void tch_seqpa_env_desc_init(tch_seqpa_env_desc *d)
{ memset(d, 0, sizeof *d); d->struct_size = (uint32_t)sizeof *d; d->beta = 1.0; d->y_min = 0.001; }
#endif

/** Creates a sequence task from a host score. States are len int32 values: the characters
 * left-aligned, then -1 padding; actions a < A prepend character a, A <= a < 2A append
 * a - A, 2A is EXIT (only from a complete string, and the only action there). The descriptor
 * and the mode list are copied. On failure *out = NULL and user_free is NOT called. Errors:
 * TCH_E_ARG (NULL arguments, struct_size too small, len, n_chars, beta, y_min, scale or floors
 * out of range, unknown flags, r_max without TCH_SEQPA_ENUMERATE, too many strings to
 * enumerate, a mode index >= A^L), TCH_E_NOMEM, and while enumerating TCH_E_CALLBACK,
 * TCH_E_NUMERIC. */
TCH_API tch_status tch_env_create_seqpa(const tch_seqpa_env_desc *d, tch_env **out);

/** Built-in QM9 fragment strings (5 of 11 blocks; exhaustive proxy table; exact target, 805
 * modes), the reference's qm9str task. Also env.name: qm9str. */
TCH_API tch_status tch_env_create_qm9str(tch_env **out);
/** Built-in sEH fragment strings (6 of 18 blocks; the gradient-boosted proxy; 129 modes; not
 * enumerated), the reference's sehstr task. Also env.name: sehstr. */
TCH_API tch_status tch_env_create_sehstr(tch_env **out);
/** Built-in TFBind8 (DNA 8-mers, 65 536 strings enumerated, 328 modes). Unless the library
 * was built with the exact table (-Dtfbind8_table), the score is a documented STAND-IN: true
 * on the public half of the table, modelled elsewhere (docs/api/env.md). Also env.name:
 * tfbind8. */
TCH_API tch_status tch_env_create_tfbind8(tch_env **out);
/** Built-in L14 RNA-binding task `task` (1..3) scored with ViennaRNA's duplex folding.
 * TCH_E_STATE when the library was built without ViennaRNA (then use
 * tch_env_create_seqpa() with your own folding, see examples/rna_host_reward.c); TCH_E_ARG
 * for another task. Also env.name: rna with env.rna.task. */
TCH_API tch_status tch_env_create_rna(uint32_t task, tch_env **out);

/** Raw scores y (before the reward transform; the reference's "real reward" is
 * max(y, y_min)) of n complete strings of a sequence task. TCH_E_STATE for an env without raw
 * scores (hypergrid, tch_env_create_discrete()); TCH_E_ARG for NULL arguments, an energy env,
 * or a state that is not a complete string; TCH_E_CALLBACK; TCH_E_NUMERIC (NaN or +Inf). */
TCH_API tch_status tch_env_raw_scores(tch_env *e, size_t n, const int32_t *states,
                                      double *out_y);
/** log Z of any env's target: log sum R(x) over the terminal set when the env enumerates it
 * (hypergrid, qm9str, tfbind8, TCH_SEQPA_ENUMERATE) or knows it (rna, TCH_SEQPA_HAS_LOG_Z),
 * and the log normalising constant of an energy env (as tch_env_log_Z()). TCH_E_STATE when
 * unknown, TCH_E_ARG for NULL. */
TCH_API tch_status tch_env_target_log_Z(const tch_env *e, double *out);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_ENV_H */
