/* Prepend/append sequence MDP ("SeqPA") of the reference's discovery tasks
 * (discovery/gflownet/MDPs/seqpamdp.py: SeqPrependAppendMDP; molstrmdp.py: MolStrMDP is the
 * same MDP over block symbols) and the tasks built on it (builtin/qm9str.c,
 * builtin/sehstr.c). Internal API.
 *
 * A state is a string of 0..L characters from an alphabet of A, stored as L int32 values:
 * the characters 0..A-1 left-aligned, then -1 padding (the built-in one-hot then equals the
 * reference's featurisation: one-hot per character, zero-padded to L*A). Forward actions:
 * a < A prepends character a, A <= a < 2A appends character a-A, 2A is EXIT. A string of
 * length L may only EXIT and every terminal object has length L (forced stop; the reference
 * allows stop only at L). Backward action a undoes forward action a: a < A deletes the first
 * character (which must be a), A <= a < 2A deletes the last (which must be a-A).
 *
 * The reference's policies and its uniform P_B work over *unique* children and parents
 * (basemdp.py: unique_keep_order_remove_none), and two actions lead to the same string
 * exactly when the string is empty or constant ("cc..c": prepend c = append c). The masks
 * therefore keep only the first such action in the reference's order [stop, prepend..,
 * append..]: from the empty string or a constant string of c, "append c" is masked; and a
 * constant string's only valid backward action is "delete first". Each valid action then is
 * one unique child/parent, so a softmax over valid actions is the reference's softmax over
 * unique children and the library's uniform P_B over valid backward actions is the
 * reference's uniform P_B over unique parents (-log 2 per step from a non-constant string
 * of length >= 2, 0 otherwise). */
#ifndef TCHI_SEQPA_H
#define TCHI_SEQPA_H
#include "envs/env.h"

/* Symbols of the reference's block strings (molstrmdp.py): character i is written as
 * TCHI_SEQPA_SYMBOLS[i] ("0123456789a" for qm9str, "0123456789abcdefgh" for sehstr). */
#define TCHI_SEQPA_SYMBOLS "0123456789abcdefghijklmnopqrstuvwxyz"
#define TCHI_SEQPA_MAX_CHARS 36u
/* Largest terminal set (A^L) a SeqPA env enumerates for its exact target. */
#define TCHI_SEQPA_EXACT_MAX ((uint64_t)1 << 24)

/* The reference's reward transform of a raw score y (exps/<task>/<task>.py):
 * y+ = max(y, y_min); R = max(y+^beta * scale + add_floor, max_floor) with
 * scale = reward_max / max over X of y+^beta. */
typedef struct tchi_reward_transform {
  double y_min;       /* scale_reward_min (0.001 in every task) */
  double beta;        /* reward exponent */
  double log_scale;   /* log(scale) */
  double add_floor;   /* added to R (qm9str: 1e-12; 0 = none) */
  double max_floor;   /* lower bound of R (sehstr: 1e-32; 0 = none) */
} tchi_reward_transform;

/* log R of a raw score y under t, in double (the reference rounds qm9str's R to float32). */
double tchi_reward_transform_log(const tchi_reward_transform *t, double y);

/* Raw scores y of n full-length strings (n x L, already checked). 0 or a non-zero
 * callback code (reported as a callback failure). */
typedef int (*tchi_seqpa_score_fn)(void *user, size_t n, const int32_t *states, double *out_y);

/* A task on the SeqPA MDP: the MDP's size, the score and its transform, and the modes. */
typedef struct tchi_seqpa_task {
  const char *name;            /* for messages; static storage */
  uint32_t len, n_chars;       /* L >= 1, 1 <= A <= TCHI_SEQPA_MAX_CHARS */
  tchi_seqpa_score_fn score;   /* required */
  void *score_user;            /* passed to score; not owned */
  tchi_reward_transform reward;
  const uint32_t *modes;       /* strictly increasing base-A indices; not owned; may be NULL */
  size_t n_modes;
  int enumerate;               /* build the exact target (A^L <= TCHI_SEQPA_EXACT_MAX) */
  size_t buffer_capacity;      /* reference's replay_buffer_size (env default; 0 = none) */
  /* Exact log Z of a task too large to enumerate at creation, computed once offline (e.g.
   * sehstr: tools/seqpa_log_z); used when has_known_log_z and not enumerate. */
  int has_known_log_z;
  double known_log_z;
} tchi_seqpa_task;

/* Creates a SeqPA env for a task (copied). With task->enumerate the exact target holds all
 * A^L strings in base-A order (index = tchi_seqpa_index) and, when the task has a mode list,
 * its modes are that list (else the maximal-reward strings); log Z is then exact
 * (tchi_seqpa_log_z). Errors: TCH_E_ARG (bad task), TCH_E_NOMEM, TCH_E_NUMERIC,
 * TCH_E_CALLBACK (the score failed during enumeration). */
tch_status tchi_env_create_seqpa(const tchi_seqpa_task *task, tch_env **out);

/* The reference's tasks with the reference's constants (see builtin/qm9str.c, sehstr.c). */
tch_status tchi_env_create_qm9str(tch_env **out);
tch_status tchi_env_create_sehstr(tch_env **out);

/* The task of a SeqPA env, or NULL for any other env. */
const tchi_seqpa_task *tchi_seqpa_task_of(const tch_env *e);
/* Exact log Z = log sum over X of R(x) (the env's reward) of an enumerated SeqPA env, or
 * the task's known_log_z; TCH_E_STATE when neither exists, TCH_E_ARG for another env. */
tch_status tchi_seqpa_log_z(const tch_env *e, double *out);
/* Raw scores y (before the transform; the reference's "real reward" is max(y, y_min)) of n
 * terminal states. TCH_E_ARG for another env, a state that is not a full string, or NULL. */
tch_status tchi_seqpa_scores(tch_env *e, size_t n, const int32_t *states, double *out_y);
/* Rank of a terminal state in the task's sorted mode list, or -1 (not a mode, not a full
 * string of this env, no mode list). O(log n_modes), no allocation. */
int64_t tchi_seqpa_mode_id(const tch_env *e, const int32_t *state);
/* Distinct modes among n terminal states (the reference's mode count of a sample set).
 * Works without an exact target. TCH_E_ARG for another env or NULL; TCH_E_NOMEM. */
tch_status tchi_seqpa_count_modes(const tch_env *e, size_t n, const int32_t *states, size_t *out);

/* ---- string helpers (no env needed) ---------------------------------------------------- */

/* Length of a state (characters before the padding); len if unpadded. Does not validate. */
uint32_t tchi_seqpa_length(const int32_t *s, uint32_t len);
/* 1 if s is a valid state: 0 <= s[i] < n_chars for i < its length, -1 after it. */
int tchi_seqpa_valid(const int32_t *s, uint32_t len, uint32_t n_chars);
/* Base-n_chars value of a full-length state, position 0 most significant. */
uint64_t tchi_seqpa_index(const int32_t *s, uint32_t len, uint32_t n_chars);
/* Inverse of tchi_seqpa_index. */
void tchi_seqpa_from_index(uint64_t k, uint32_t len, uint32_t n_chars, int32_t *out);
/* Parses a string of at most len symbols of TCHI_SEQPA_SYMBOLS into a padded state; 0, or
 * -1 if it is too long or has a symbol outside the first n_chars. */
int tchi_seqpa_parse(const char *text, uint32_t len, uint32_t n_chars, int32_t *out);
/* Writes the symbols of s (its length, at most len) and a NUL into buf (len + 1 bytes). */
void tchi_seqpa_format(const int32_t *s, uint32_t len, char *buf);

/* Task scores, batched, no allocation, on full-length states (not checked here). */
void tchi_qm9str_score(size_t n, const int32_t *states, double *out_y);   /* table lookup */
void tchi_sehstr_predict(size_t n, const int32_t *states, double *out_y); /* GBR proxy */

#endif /* TCHI_SEQPA_H */
