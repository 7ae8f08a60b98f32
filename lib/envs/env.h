/* Environments, internal view. A tch_env wraps either host callbacks (discrete.c) or a
 * built-in environment that implements the same callbacks in C (builtin/hypergrid.c), plus
 * optional exact-target extras (enumeration of the terminal set, modes). An energy env
 * (energy.c; built-ins builtin/gmm25.c, builtin/manywell.c) wraps a continuous target's
 * log density instead. The adaptor checks everything the host returns before the library
 * uses it. */
#ifndef TCHI_ENV_H
#define TCHI_ENV_H
#include "core/core.h"
#include "teacher/env.h"

typedef enum tchi_env_kind { TCHI_ENV_DISCRETE = 1, TCHI_ENV_ENERGY = 2 } tchi_env_kind;

/* Exact target of an env that can enumerate its terminal set X. Indices are 0..n-1. */
typedef struct tchi_exact_target {
  size_t n;                  /* |X| */
  int32_t *states;           /* n x state_dim */
  double *log_r;             /* n */
  double *p;                 /* n, normalised target p*(x) = R(x) / sum R */
  uint8_t *is_mode;          /* n */
  size_t n_modes;
  /* Maps a terminal state to its index in X, or -1 if it is not in X. */
  int64_t (*index_of)(const struct tch_env *e, const int32_t *state);
} tchi_exact_target;

/* Exact sampler of a built-in energy env: n samples (n x dim) from Philox streams keyed by
 * seed. Cannot fail except on bad arguments (checked by the caller). */
typedef tch_status (*tchi_energy_sampler)(const struct tch_env *e, uint64_t seed, size_t n,
                                          double *out_x);

struct tch_env {
  tchi_ref ref;
  tchi_env_kind kind;
  tch_discrete_env_desc d;   /* copy of the host descriptor (s0/vocab point to our copies) */
  int32_t *s0;
  uint32_t *vocab;           /* NULL when the host provides features */
  uint32_t *vocab_off;       /* one-hot offset of each position */
  uint32_t in_dim;           /* network input width: feat_dim or sum(vocab) */
  tchi_exact_target *exact;  /* NULL unless enumerable */
  size_t default_num_empirical; /* reference's L1 window for this env (0: library default) */
  size_t default_buffer_capacity; /* reference's replay-buffer size (0: none, must be set) */
  uint64_t default_steps_base;  /* reference's n_train_steps before its x1.5 / x2 rules (0: none) */
  size_t default_replay_factor; /* DB transition replay: batch_size x this (hypergrid H div 2) */
  void *builtin;             /* built-in env's own data (freed by builtin_free) */
  void (*builtin_free)(void *);
  /* Scratch for mask checks (grown on demand). */
  uint8_t *scratch_mask;
  size_t scratch_cap;
  /* Energy envs (kind == TCHI_ENV_ENERGY, energy.c): a copy of the descriptor, the
   * forward SDE's discretisation (env.diffusion.*), and a built-in's exact sampler (used
   * instead of en.sample_reference; NULL for host envs). */
  tch_energy_desc en;
  uint32_t diffusion_steps;
  double t_scale;
  tchi_energy_sampler builtin_sample;
  /* Data a constructor attaches besides builtin (the SeqPA env of a host score keeps the
   * host's callback, user and user_free there, seqpa_api.c); ext_free runs at destruction,
   * after builtin_free. */
  void *ext;
  void (*ext_free)(void *);
  /* A built-in whose reward calls host code (that SeqPA env): points to a flag its wrapper
   * raises when the host callback fails, so that failure is TCH_E_CALLBACK and not a bad
   * argument (discrete.c: callback_failed). NULL otherwise. */
  int *host_failed;
};

/* Checked wrappers around the callbacks. Masks: every row must allow at least one forward
 * action; bwd may be NULL. log_reward: NaN/Inf -> TCH_E_NUMERIC naming the row, unless
 * clip_min is finite (then NaN/-Inf -> clip_min and values below are raised to it). */
tch_status tchi_env_step(tch_env *e, size_t n, const int32_t *s, const int32_t *a, int32_t *out);
tch_status tchi_env_backward_step(tch_env *e, size_t n, const int32_t *s, const int32_t *a,
                                  int32_t *out);
tch_status tchi_env_masks(tch_env *e, size_t n, const int32_t *s, uint8_t *fwd, uint8_t *bwd);
tch_status tchi_env_log_reward(tch_env *e, size_t n, const int32_t *s, double clip_min,
                               double *out);
/* Network input: if the env has host features, writes n x in_dim floats into feat and sets
 * *use_onehot = 0. Otherwise writes n x state_dim one-hot indices into idx (offset per
 * position, -1 for padding) and sets *use_onehot = 1. */
tch_status tchi_env_encode(tch_env *e, size_t n, const int32_t *s, float *feat, int32_t *idx,
                           int *use_onehot);
int tchi_env_is_s0(const tch_env *e, const int32_t *state);

/* Generic constructor used by tch_env_create_discrete and the built-ins. */
tch_status tchi_env_create_discrete(const tch_discrete_env_desc *d, tch_env **out);
/* A built-in discrete env: d's callbacks get data as their user pointer, and the env owns
 * data (data_free at destruction, via builtin / builtin_free; d->user and d->user_free are
 * set here). On failure data is freed at once and *out is NULL. */
tch_status tchi_env_create_builtin_discrete(tch_discrete_env_desc *d, void *data,
                                            void (*data_free)(void *), tch_env **out);

/* Energy envs (energy.c). The generic constructor used by tch_env_create_energy and the
 * built-ins (c may be NULL: defaults). */
tch_status tchi_env_create_energy(const tch_energy_desc *d, const tch_config *c, tch_env **out);
/* A built-in target: density with gradient (TCH_ENERGY_HAS_GRAD), known log Z and an exact
 * sampler; user is passed to log_density (not freed: built-ins free it via builtin_free). */
tch_status tchi_env_create_builtin_energy(uint32_t dim, tch_log_density_fn log_density,
                                          double log_Z, void *user, tchi_energy_sampler sample,
                                          const tch_config *c, tch_env **out);
/* Checked log density: n points x (n x dim) -> out_log_p (n) and, unless out_grad is NULL,
 * the gradient (n x dim). TCH_E_ARG for a discrete env or NULL pointers, TCH_E_STATE for a
 * gradient from an env without TCH_ENERGY_HAS_GRAD, TCH_E_CALLBACK (code recorded for
 * tch_last_callback_code()), TCH_E_NUMERIC for NaN/Inf (the message names row/column). */
tch_status tchi_env_log_density(tch_env *e, size_t n, const double *x, double *out_log_p,
                                double *out_grad);
/* 1 if e is an energy env whose log density provides gradients. */
int tchi_env_has_grad(const tch_env *e);
/* Built-in energies (builtin/gmm25.c, builtin/manywell.c): the C log densities, exposed
 * for tests and benchmarks (the tch_log_density_fn contract; user is unused). */
int tchi_gmm25_log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                           double *out_grad);
int tchi_manywell_log_density(void *user, size_t n, size_t dim, const double *x,
                              double *out_log_p, double *out_grad);
/* Reinforced SMC's built-ins (builtin/gmm40.c, builtin/funnel.c). The GMM40 density's user
 * is the env's builtin data (e->en.user); the funnel's is unused. */
int tchi_gmm40_log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                           double *out_grad);
int tchi_funnel_log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                            double *out_grad);
/* The component means (TCHI_GMM40_NCOMP x dim, component-major) of a GMM40 env; NULL for
 * any other env. */
#define TCHI_GMM40_NCOMP 40
const double *tchi_gmm40_means(const tch_env *e, uint32_t *n_components);
/* Mode coverage on a GMM40 env: counts[c] (40 entries) = samples whose nearest mean (the
 * most likely component: equal weights and scales; first on ties) is c, and *out_covered
 * (may be NULL) = components with a count > 0. TCH_E_ARG for another env or NULL. */
tch_status tchi_gmm40_mode_counts(const tch_env *e, size_t n, const double *x, size_t *counts,
                                  size_t *out_covered);
/* Entropic mode coverage (EMC, spec §10): the entropy of counts / total divided by log k;
 * 1 = every mode equally visited. NaN when k < 2 or there are no samples. */
double tchi_mode_entropy(size_t k, const size_t *counts);

/* Exact targets (exact.c). Builds a target from n enumerated terminal states (n x
 * state_dim) and their log-rewards: p = softmax(log_r) in double, modes = log_r >= max -
 * 1e-12. Takes ownership of states and log_r (they are freed on failure too). NaN/+Inf in
 * log_r, or all -Inf, is TCH_E_NUMERIC. */
tch_status tchi_exact_target_create(size_t n, int32_t *states, double *log_r,
                                    int64_t (*index_of)(const struct tch_env *e,
                                                        const int32_t *state),
                                    tchi_exact_target **out);
void tchi_exact_target_free(tchi_exact_target *x);   /* NULL is a no-op */

/* Hypergrid helpers used by tests (builtin/hypergrid.c). */
double tchi_hypergrid_reward(uint32_t ndim, uint32_t horizon, double beta, const int32_t *s);

#endif /* TCHI_ENV_H */
