/* The training loop, internal view. */
#ifndef TCHI_TRAINER_H
#define TCHI_TRAINER_H
#include "core/core.h"
#include "gfn/gfn.h"
#include "nn/nn.h"
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

struct tch_trainer {
  tchi_ref ref;
  tch_env *env;
  tch_config *cfg;
  tch_policy *student;
  tchi_adam opt;
  tchi_loss_kind loss_kind;
  uint64_t seed;
  size_t batch;
  double eps, temp, reward_exponent, clip_min, grad_clip;
  /* per-step scratch */
  tchi_traj traj;
  tchi_eval ev;
  double *log_r, *delta, *dres;
  int32_t *terminals;
  /* counters */
  uint64_t step, reward_calls, grad_steps;
  double last_loss, last_grad_norm;
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

#endif /* TCHI_TRAINER_H */
