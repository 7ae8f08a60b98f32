/** @file teacher/buffer.h
 * @brief tch_buffer: a replay buffer of fixed-width records (terminal states, or any int32
 * record) with a log-reward and a priority each.
 *
 * - Capacity with FIFO eviction; adding a record that is already present removes the old
 *   entry and inserts it again as the newest, with the new log-reward and priority
 *   (de-duplication with refresh, as the reference's OrderedDict).
 * - Sampling with replacement: uniform (TCH_PRIORITY_NONE) or rank-based on the priority
 *   (the reference's rule): rank 0 = highest priority, ties broken by age (older first),
 *   weight_j = 1 / (rank_k * N + rank_j). Each draw costs O(log N).
 * - A trainer fills it; a host may also seed it (tch_buffer_add) and draw from it.
 *
 * Guide: docs/api/buffer.md. */
#ifndef TEACHER_BUFFER_H
#define TEACHER_BUFFER_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"
#include "teacher/env.h"
#include "teacher/policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted replay buffer. */
typedef struct tch_buffer tch_buffer;

/** What the priority of an object means (pinned). The buffer only ranks by the number it is
 * given; the mode tells a trainer what to store, and is NONE for uniform sampling. */
typedef enum tch_priority {
  TCH_PRIORITY_NONE = 0,            /**< uniform sampling */
  TCH_PRIORITY_REWARD = 1,          /**< R(x)  (the paper's PRT) */
  TCH_PRIORITY_LOSS = 2,            /**< the Student's squared residual */
  TCH_PRIORITY_TEACHER_REWARD = 3   /**< the Teacher's reward R_T(x) (PER) */
} tch_priority;

/** Creates an empty buffer: record_dim int32 values per record (the env's state_dim for
 * terminal states); capacity >= 1; rank_k > 0 (reference: 0.01). */
TCH_API tch_status tch_buffer_create(uint32_t record_dim, size_t capacity,
                                     tch_priority priority, double rank_k, tch_buffer **out);
/** Adds a reference; returns b (NULL-tolerant). */
TCH_API tch_buffer *tch_buffer_retain(tch_buffer *b);
/** Drops a reference; NULL is a no-op. */
TCH_API void tch_buffer_free(tch_buffer *b);

/** Adds n records (n x record_dim) with their log-rewards. priority may be NULL: then each
 * record gets exp(log_r) in REWARD mode and, in LOSS / TEACHER_REWARD mode, the largest
 * priority currently in the buffer (1.0 when empty), so seeded records are replayed at
 * least as often as the best-ranked one. Records are added in order (a later duplicate in
 * the same call wins). NaN log-rewards or priorities are TCH_E_NUMERIC and add nothing. */
TCH_API tch_status tch_buffer_add(tch_buffer *b, size_t n, const int32_t *records,
                                  const double *log_r, const double *priority);
/** The design's name for seeding a buffer of terminal states with known objects. */
TCH_API tch_status tch_buffer_add_discrete(tch_buffer *b, size_t n, const int32_t *states,
                                           const double *log_r);

/** Draws n records with replacement (TCH_E_STATE if empty). Either output may be NULL. */
TCH_API tch_status tch_buffer_sample(tch_buffer *b, uint64_t seed, size_t n,
                                     int32_t *out_records, double *out_log_r);
/** Draws n terminal states and rebuilds a trajectory for each by backward sampling with
 * the policy's P_B (uniform over valid parents unless it learns P_B); layout as in
 * policy.h. out_log_r may be NULL. */
TCH_API tch_status tch_buffer_sample_trajectories(tch_buffer *b, tch_policy *p, tch_env *env,
                                                  uint64_t seed, size_t n, int32_t *out_states,
                                                  int32_t *out_actions, uint32_t *out_len,
                                                  double *out_log_r);

/** Number of records held. */
TCH_API tch_status tch_buffer_size(const tch_buffer *b, size_t *out);
/** Maximum number of records (older ones are evicted beyond it). */
TCH_API tch_status tch_buffer_capacity(const tch_buffer *b, size_t *out);
/** int32 values per record. */
TCH_API tch_status tch_buffer_record_dim(const tch_buffer *b, uint32_t *out);
/** The i-th record in FIFO order (0 = oldest). Any output may be NULL. */
TCH_API tch_status tch_buffer_get(const tch_buffer *b, size_t i, int32_t *out_record,
                                  double *out_log_r, double *out_priority);
/** Removes every record (capacity, mode and rank_k are kept). */
TCH_API tch_status tch_buffer_clear(tch_buffer *b);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_BUFFER_H */
