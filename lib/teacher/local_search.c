/* Back-and-forth local search (grid/local_search.py): destroy the last part of each
 * trajectory by sampling backward from its terminal state, rebuild it forward with a
 * policy, and keep the new trajectory if it scores higher. */
#include <math.h>
#include <string.h>
#include "behaviour.h"

void tchi_ls_ws_init(tchi_ls_ws *w)
{
  memset(w, 0, sizeof *w);
  tchi_traj_init(&w->back);
  tchi_traj_init(&w->fwd);
  tchi_traj_init(&w->cand);
  tchi_eval_init(&w->ev);
}

void tchi_ls_ws_destroy(tchi_ls_ws *w)
{
  tchi_traj_destroy(&w->back);
  tchi_traj_destroy(&w->fwd);
  tchi_traj_destroy(&w->cand);
  tchi_eval_destroy(&w->ev);
  tchi_free(w->mid); tchi_free(w->x);
  tchi_free(w->log_r_new); tchi_free(w->score_old); tchi_free(w->score_new);
  tchi_free(w->delta); tchi_free(w->dres);
  memset(w, 0, sizeof *w);
}

static tch_status ls_reserve(tchi_ls_ws *w, size_t n, size_t sd, size_t T)
{
  if (n <= w->cap) return TCH_OK;
  tchi_free(w->mid); tchi_free(w->x);
  tchi_free(w->log_r_new); tchi_free(w->score_old); tchi_free(w->score_new);
  tchi_free(w->delta); tchi_free(w->dres);
  w->mid = w->x = NULL;
  w->log_r_new = w->score_old = w->score_new = w->delta = w->dres = NULL;
  w->cap = 0;
  tch_status s;
  if ((s = tchi_alloc_array(&w->mid, n, sd * sizeof(int32_t), 0, "local search states")) ||
      (s = tchi_alloc_array(&w->x, n, sd * sizeof(int32_t), 0, "local search states")) ||
      (s = tchi_alloc_array(&w->log_r_new, n, sizeof(double), 0, "local search rewards")) ||
      (s = tchi_alloc_array(&w->score_old, n, sizeof(double), 0, "local search scores")) ||
      (s = tchi_alloc_array(&w->score_new, n, sizeof(double), 0, "local search scores")) ||
      (s = tchi_alloc_array(&w->delta, n, sizeof(double), 0, "local search residuals")) ||
      (s = tchi_alloc_array(&w->dres, n * T, sizeof(double), 0, "local search residuals")))
    return s;
  w->cap = n;
  return TCH_OK;
}

/* Acceptance score of each trajectory of t: its log-reward, or (teacher_ls) the Teacher
 * reward from the Student's residuals, computed without gradients. */
static tch_status scores(const tchi_ls_params *lp, tch_env *e, tchi_traj *t, tchi_ls_ws *w,
                         double *out)
{
  if (!lp->teacher_ls) {
    memcpy(out, t->log_r, t->n * sizeof(double));
    return TCH_OK;
  }
  double loss;
  tch_status s;
  if (lp->student_db) {
    s = tchi_db_loss(lp->student, e, t, &w->ev, t->log_r, 0, w->dres, &loss);
    if (s == TCH_OK) tchi_teacher_rewards_db(lp->tr, t, w->dres, t->log_r, out);
  } else {
    s = tchi_tb_loss(lp->student, e, t, &w->ev, t->log_r, NULL, 0, w->delta, &loss);
    if (s == TCH_OK) tchi_teacher_rewards_tb(lp->tr, t, w->delta, t->log_r, out);
  }
  return s;
}

tch_status tchi_local_search(tch_policy *p, tch_env *e, tchi_rng *rng, const tchi_ls_params *lp,
                             tchi_traj *t, tchi_ls_ws *w)
{
  const size_t n = t->n, T = t->T, sd = t->state_dim, na = t->n_actions;
  tch_status s = ls_reserve(w, n, sd, T);
  if (s) return s;
  if ((s = scores(lp, e, t, w, w->score_old))) return s;
  size_t *keep = NULL;
  if ((s = tchi_alloc_array(&keep, n, sizeof(size_t), 0, "local search lengths"))) return s;

  for (int it = 0; it < lp->iterations; it++) {
    tchi_traj_terminals(t, w->x);
    if ((s = tchi_sample_backward(NULL, e, rng, n, w->x, &w->back))) goto done;
    /* The reference counts the states of its own trajectory format, which repeats x after
     * a voluntary stop: len = L + [voluntary]. It keeps len - floor(len * ratio) of them. */
    for (size_t i = 0; i < n; i++) {
      size_t L = t->len[i];
      int voluntary = !tchi_forced_terminal(t->fwd + (i * T + L - 1) * na, na);
      size_t ref_len = L + (size_t)voluntary;
      size_t k = (size_t)floor((double)ref_len * lp->back_ratio);
      size_t kept = ref_len - k;                 /* states kept, s_0 .. s_{kept-1} */
      if (kept > w->back.len[i]) kept = w->back.len[i];
      keep[i] = k == 0 ? 0 : kept;
      const int32_t *from = tchi_traj_state(&w->back, i, (keep[i] ? keep[i] : 1) - 1);
      memcpy(w->mid + i * sd, from, sd * sizeof(int32_t));
    }
    /* Roll forward from the kept prefixes (epsilon 0, as the reference's eps_noisy=False). */
    if ((s = tchi_sample_forward_from(p, e, rng, n, w->mid, 0.0, 1.0, &w->fwd, NULL))) goto done;
    if ((s = tchi_traj_reserve(&w->cand, e, n))) goto done;
    for (size_t i = 0; i < n; i++) {
      if (keep[i] == 0) {          /* nothing destroyed: the candidate is the trajectory */
        tchi_traj_copy_one(&w->cand, i, t, i);
        continue;
      }
      size_t pre = keep[i] - 1, Lf = w->fwd.len[i];
      if (pre + Lf > T) {
        s = tchi_fail(TCH_E_CALLBACK, "local search built a trajectory longer than max_len");
        goto done;
      }
      /* prefix: states s_0..s_{pre-1} with their actions from the backward sample */
      memcpy(tchi_traj_state(&w->cand, i, 0), tchi_traj_state(&w->back, i, 0), pre * sd * sizeof(int32_t));
      memcpy(w->cand.actions + i * T, w->back.actions + i * T, pre * sizeof(int32_t));
      memcpy(w->cand.fwd + i * T * na, w->back.fwd + i * T * na, pre * na);
      memcpy(w->cand.bwd + i * T * (na - 1), w->back.bwd + i * T * (na - 1), pre * (na - 1));
      /* suffix: the forward rollout, starting at the kept state */
      memcpy(tchi_traj_state(&w->cand, i, pre), tchi_traj_state(&w->fwd, i, 0), Lf * sd * sizeof(int32_t));
      memcpy(w->cand.actions + i * T + pre, w->fwd.actions + i * T, Lf * sizeof(int32_t));
      memcpy(w->cand.fwd + (i * T + pre) * na, w->fwd.fwd + i * T * na, Lf * na);
      memcpy(w->cand.bwd + (i * T + pre) * (na - 1), w->fwd.bwd + i * T * (na - 1), Lf * (na - 1));
      for (size_t k = pre + Lf; k < T; k++) w->cand.actions[i * T + k] = -1;
      w->cand.len[i] = (uint32_t)(pre + Lf);
    }
    /* New rewards, on the training scale. */
    tchi_traj_terminals(&w->cand, w->x);
    if ((s = tchi_env_log_reward(e, n, w->x, lp->clip_min, w->log_r_new))) goto done;
    for (size_t i = 0; i < n; i++) w->cand.log_r[i] = w->log_r_new[i] * lp->reward_exponent;
    if ((s = scores(lp, e, &w->cand, w, w->score_new))) goto done;
    for (size_t i = 0; i < n; i++)
      if (keep[i] != 0 && w->score_new[i] > w->score_old[i]) {   /* strict, as the reference */
        tchi_traj_copy_one(t, i, &w->cand, i);
        w->score_old[i] = w->score_new[i];
      }
  }
done:
  tchi_free(keep);
  return s;
}
