/* The training loop, internal view. */
#ifndef TCHI_TRAINER_H
#define TCHI_TRAINER_H
#include "core/core.h"
#include "gfn/gfn.h"
#include "nn/nn.h"
#include "teacher/behaviour.h"
#include "teacher/trainer.h"

/* Exact-target statistics of the visited terminal states (training visits). */
typedef struct tchi_visits {
  size_t window;           /* last N visits used for the empirical L1 */
  int64_t *ring;           /* window entries: index in X */
  size_t head, count;
  uint32_t *counts;        /* |X| counts of the ring's content */
  uint8_t *seen_mode;      /* |X|: mode visited at least once */
  size_t modes_found;
  uint64_t total;
} tchi_visits;

typedef enum tchi_loss_kind { TCHI_LOSS_TB = 0, TCHI_LOSS_DB = 1 } tchi_loss_kind;

/* One trained sampler and its optimiser. */
typedef struct tchi_learner {
  tch_policy *policy;
  tchi_adam opt;
  tchi_eval ev;
  double grad_clip;
  size_t n_clip_groups;      /* leading optimiser groups covered by the norm clip */
  double last_loss, last_grad_norm;
} tchi_learner;

struct tch_trainer {
  tchi_ref ref;
  tch_env *env;
  tch_config *cfg;
  tchi_loss_kind loss_kind;
  uint64_t seed;
  size_t batch;
  double reward_exponent, clip_min;
  tchi_learner student;
  tchi_learner teacher;      /* policy == NULL when the Teacher is off */
  tchi_teacher_reward treward;
  tch_buffer *buffer;        /* NULL when off */
  tch_priority priority;
  int transitions;           /* DB with a buffer: the buffer holds transitions (trainer_db.py) */
  size_t replay_n;           /* transitions per replay step */
  int32_t *tr_rec;           /* transition records of a batch, or a replayed sample */
  double *tr_log_r, *tr_prio, *tr_d, *tr_tlog;
  size_t tr_cap;
  tch_mixer *mixer;
  int gafn;                  /* GAFN baseline: Student trained with RND intrinsic rewards */
  tchi_rnd rnd;
  tchi_gafn_params gafn_params;
  tchi_ls_params ls;
  tchi_ls_ws ls_ws;
  /* per-step scratch */
  tchi_traj traj;
  double *delta, *dres, *rt, *t_log_r, *prio;
  int32_t *terminals;
  int64_t *visit_idx;
  /* counters and metrics */
  uint64_t step, reward_calls, grad_steps;
  int last_source;
  double eval_l1, eval_modes;
  tchi_visits visits;
  /* progress */
  tch_progress_fn progress;
  void *progress_user;
  uint64_t progress_every;
};

tch_status tchi_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out);
void tchi_trainer_release(tch_trainer *t);
tch_status tchi_trainer_step(tch_trainer *t, uint64_t n_steps);
tch_status tchi_trainer_evaluate(tch_trainer *t, size_t n_samples);
tch_status tchi_trainer_metric(const tch_trainer *t, const char *name, double *out);
const char *tchi_trainer_next_metric(const char *prev);
tch_status tchi_trainer_planned_steps(const tch_trainer *t, uint64_t *out);

/* checkpoint.c */
tch_status tchi_trainer_save(const tch_trainer *t, const char *path);
tch_status tchi_trainer_load(tch_env *env, const char *path, tch_trainer **out);

/* shared with checkpoint.c */
void tchi_visits_rebuild_counts(tchi_visits *v, const tch_env *e);

#endif /* TCHI_TRAINER_H */
