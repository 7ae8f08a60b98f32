/* The Teacher's reward: large where the Student's loss is large, twenty times larger where
 * the Student under-samples (delta > 0), optionally mixed with the Student reward. */
#include <math.h>
#include "behaviour.h"

static double f_of(const tchi_teacher_reward *tr, double y)
{
  return tr->use_log ? log(1.0 + 1e-3 + y) : y;
}

/* R^alpha from log R; alpha = 0 gives 1 even for R = 0 (as 0.0 ** 0 = 1 in Python). */
static double pow_r(double alpha, double log_r)
{
  return alpha == 0.0 ? 1.0 : exp(alpha * log_r);
}

/* w L: L = d^2, or min(d^2, loss_clamp) (discovery's torch.clamp(losses, max=5000)). */
static double weighted_loss(const tchi_teacher_reward *tr, double delta)
{
  double w = 1.0 + (delta > 0.0 ? tr->C : 0.0), l = delta * delta;
  if (tr->loss_clamp > 0.0 && l > tr->loss_clamp) l = tr->loss_clamp;
  return w * l;
}

double tchi_teacher_reward_value(const tchi_teacher_reward *tr, double delta, double log_r)
{
  return f_of(tr, weighted_loss(tr, delta)) * pow_r(tr->alpha, log_r);
}

double tchi_teacher_train_log_reward(const tchi_teacher_reward *tr, double delta, double log_r)
{
  if (!tr->additive) return tchi_teacher_log_reward(tr, tchi_teacher_reward_value(tr, delta, log_r));
  /* Discovery: log(adv) + alpha log r, adv = log(1.001 + w L) (teacher.py
   * batch_traj_back_logp); summed in log space, so a tiny R does not hit a floor. */
  double v = log(f_of(tr, weighted_loss(tr, delta)));
  if (tr->alpha != 0.0) v += tr->alpha * log_r;
  return tr->exponent * v;
}

void tchi_teacher_rewards_tb(const tchi_teacher_reward *tr, const tchi_traj *t,
                             const double *delta, const double *log_r, double *out_rt)
{
  for (size_t i = 0; i < t->n; i++) out_rt[i] = tchi_teacher_reward_value(tr, delta[i], log_r[i]);
}

void tchi_teacher_rewards_db(const tchi_teacher_reward *tr, const tchi_traj *t, const double *d,
                             const double *log_r, double *out_rt)
{
  const size_t T = t->T, na = t->n_actions;
  for (size_t i = 0; i < t->n; i++) {
    size_t L = t->len[i];
    /* transitions with a residual: all L, minus the EXIT of a forced-terminal state */
    size_t n_tr = L - (size_t)tchi_forced_terminal(t->fwd + (i * T + L - 1) * na, na);
    double sum = 0.0, R = exp(log_r[i]);
    for (size_t k = 0; k < n_tr; k++) {
      double dk = d[i * T + k], w = 1.0 + (dk > 0.0 ? tr->C : 0.0);
      double r_t = k + 1 == n_tr ? 1.0 + R : 1.0;
      sum += f_of(tr, dk * dk * w) * (tr->alpha == 0.0 ? 1.0 : pow(r_t, tr->alpha));
    }
    out_rt[i] = sum;
  }
}
