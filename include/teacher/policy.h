/** @file teacher/policy.h
 * @brief tch_policy: one amortized sampler -- an MLP whose outputs are the forward-policy logits
 * (P_F), optionally learned backward logits (P_B) and a log-flow head (DB), plus a scalar
 * log Z. Student and Teacher are both tch_policy. A policy can be created and used on its
 * own (sample, score, save, load) or borrowed from a trainer.
 *
 * Trajectory arrays: a trajectory has L actions (L <= max_len + 1, the last one EXIT) and
 * L states s_0..s_{L-1} = x. Batches are padded to T = max_len + 1: states is
 * n x T x state_dim (rows past L are unspecified), actions is n x T (-1 past L). Guide: docs/api/policy.md. */
#ifndef TEACHER_POLICY_H
#define TEACHER_POLICY_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"
#include "teacher/config.h"
#include "teacher/env.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted policy (Student or Teacher network and its log Z). */
typedef struct tch_policy tch_policy;

/** New randomly initialised policy for env, shaped by config keys nn.* and student.*
 * (c may be NULL for defaults); weights drawn from the "init" stream of `seed`. */
TCH_API tch_status tch_policy_create(tch_env *env, const tch_config *c, uint64_t seed,
                                     tch_policy **out);
/** A deep copy of p (weights, log Z, architecture) with its own workspace: the way to
 * sample one trained policy from several threads. */
TCH_API tch_status tch_policy_clone(const tch_policy *p, tch_policy **out);
/** Adds a reference; returns p (NULL-tolerant). */
TCH_API tch_policy *tch_policy_retain(tch_policy *p);
/** Drops a reference; NULL is a no-op. */
TCH_API void tch_policy_free(tch_policy *p);

/** Samples n terminal objects (n x state_dim) with the policy itself (no exploration) and
 * their trajectory log P_F. Either output may be NULL. */
TCH_API tch_status tch_policy_sample_discrete(tch_policy *p, tch_env *env, uint64_t seed,
                                              size_t n, int32_t *out_states,
                                              double *out_log_pf);
/** Samples n whole trajectories (layout above). epsilon mixes the uniform distribution over
 * valid actions, temperature divides the logits; log P_F / log P_B are always scored under
 * the policy itself. Any of out_len, out_log_pf, out_log_pb may be NULL. */
TCH_API tch_status tch_policy_sample_trajectories(tch_policy *p, tch_env *env, uint64_t seed,
                                                  size_t n, double epsilon, double temperature,
                                                  int32_t *out_states, int32_t *out_actions,
                                                  uint32_t *out_len, double *out_log_pf,
                                                  double *out_log_pb);
/** Builds n trajectories that end in the given terminal states by sampling backward
 * (uniformly over valid parents, or with the learned P_B if the policy has one). */
TCH_API tch_status tch_policy_sample_backward(tch_policy *p, tch_env *env, uint64_t seed,
                                              size_t n, const int32_t *terminal_states,
                                              int32_t *out_states, int32_t *out_actions,
                                              uint32_t *out_len);
/** Scores given trajectories: log P_F and log P_B sums (either may be NULL). */
TCH_API tch_status tch_policy_score_discrete(tch_policy *p, tch_env *env, size_t n,
                                             const int32_t *states, const int32_t *actions,
                                             const uint32_t *len, double *out_log_pf,
                                             double *out_log_pb);

/** The policy's current log Z estimate. */
TCH_API tch_status tch_policy_log_z(const tch_policy *p, double *out);
/** Number of trainable parameters: network weights and biases plus log Z. */
TCH_API tch_status tch_policy_n_params(const tch_policy *p, size_t *out);
/** Name of the BLIS kernel context the policy's gemms run on, e.g. "zen3" (static). */
TCH_API tch_status tch_policy_gemm_kernel(const tch_policy *p, const char **out);

/** Saves the policy to a versioned binary file (magic "TCHP", format version, CRC-32);
 * written atomically. */
TCH_API tch_status tch_policy_save(const tch_policy *p, const char *path);
/** Loads a policy file written by tch_policy_save(): TCH_E_IO if unreadable, truncated or
 * corrupt, TCH_E_VERSION for another format version or endianness. */
TCH_API tch_status tch_policy_load(const char *path, tch_policy **out);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_POLICY_H */
