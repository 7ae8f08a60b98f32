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
 * docs/callbacks.md. */
#ifndef TEACHER_ENV_H
#define TEACHER_ENV_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "teacher/status.h"
#include "teacher/config.h"

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
 * (s_0..x) and max_len + 1 actions (the last one EXIT). */
TCH_API tch_status tch_env_dims(const tch_env *e, uint32_t *state_dim, uint32_t *n_actions,
                                uint32_t *max_len);

/** Calls the env's (checked) reward: NaN/Inf -> TCH_E_NUMERIC. */
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

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_ENV_H */
