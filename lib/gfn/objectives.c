/* Trajectory balance and detailed balance with analytic gradients. The network runs once
 * over every state of the batch (one gemm per layer); the gradient of the loss with
 * respect to the outputs is formed here and pushed back through one backward pass. */
#include <math.h>
#include <string.h>
#include "gfn.h"

void tchi_eval_init(tchi_eval *ev) { memset(ev, 0, sizeof *ev); }

void tchi_eval_destroy(tchi_eval *ev)
{
  tchi_free(ev->row0);
  tchi_free(ev->dout);
  tchi_free(ev->log_pf);
  tchi_free(ev->log_pb);
  tchi_free(ev->rowstates);
  tchi_free(ev->lp);
  tchi_free(ev->fwd);
  tchi_free(ev->bwd);
  memset(ev, 0, sizeof *ev);
}

/* Grows *p to hold count elements of size bytes (contents not kept). */
static tch_status grow(void *pp, size_t *cap, size_t count, size_t size, const char *what)
{
  if (count <= *cap) return TCH_OK;
  void *fresh;
  tch_status s = tchi_alloc_array(&fresh, count, size, 0, what);
  if (s) return s;
  tchi_free(*(void **)pp);
  *(void **)pp = fresh;
  *cap = count;
  return TCH_OK;
}

static tch_status eval_reserve(tchi_eval *ev, size_t n, size_t rows, size_t sd, size_t out_dim,
                               size_t na)
{
  tch_status s;
  size_t cap_n = ev->cap_n;
  if (n > cap_n) {
    size_t c1 = 0, c2 = 0, c3 = 0;
    if ((s = grow(&ev->row0, &c1, n + 1, sizeof(size_t), "row index")) ||
        (s = grow(&ev->log_pf, &c2, n, sizeof(double), "log-probabilities")) ||
        (s = grow(&ev->log_pb, &c3, n, sizeof(double), "log-probabilities")))
      return s;
    ev->cap_n = n;
  }
  if ((s = grow(&ev->dout, &ev->cap_rows, rows * out_dim + TCHI_GEMM_PAD, sizeof(float), "output gradients")) ||
      (s = grow(&ev->rowstates, &ev->cap_rowstates, rows * sd, sizeof(int32_t), "state rows")) ||
      (s = grow(&ev->lp, &ev->cap_lp, na, sizeof(double), "log-probabilities")))
    return s;
  return TCH_OK;
}

static size_t count_valid(const uint8_t *mask, size_t k)
{
  size_t c = 0;
  for (size_t j = 0; j < k; j++) c += mask[j] != 0;
  return c;
}

int tchi_forced_terminal(const uint8_t *fmask, size_t na)
{
  return fmask[na - 1] && count_valid(fmask, na) == 1;
}

tch_status tchi_eval_traj(tch_policy *p, tch_env *e, const tchi_traj *t, tchi_eval *ev)
{
  const size_t n = t->n, T = t->T, sd = t->state_dim, na = t->n_actions, nb = na - 1;
  size_t rows = 0;
  for (size_t i = 0; i < n; i++) rows += t->len[i];
  tch_status s = eval_reserve(ev, n, rows, sd, p->out_dim, na);
  if (s) return s;
  size_t r = 0;
  for (size_t i = 0; i < n; i++) {
    ev->row0[i] = r;
    memcpy(ev->rowstates + r * sd, tchi_traj_state(t, i, 0), t->len[i] * sd * sizeof(int32_t));
    r += t->len[i];
  }
  ev->row0[n] = r;
  ev->rows = rows;
  if (rows == 0) return TCH_OK;
  if ((s = tchi_policy_forward(p, e, rows, ev->rowstates, &ev->out))) return s;

  for (size_t i = 0; i < n; i++) {
    double pf = 0.0, pb = 0.0;
    size_t L = t->len[i];
    for (size_t k = 0; k < L; k++) {
      const float *row = ev->out + (ev->row0[i] + k) * p->out_dim;
      int32_t a = t->actions[i * T + k];
      const uint8_t *fm = t->fwd + (i * T + k) * na;
      if (a < 0 || (size_t)a >= na || !fm[a])
        return tchi_fail(TCH_E_ARG, "trajectory %zu takes forward action %d at step %zu, "
                         "which the env's mask forbids", i, a, k);
      tchi_masked_log_softmax(row, fm, na, ev->lp);
      pf += ev->lp[a];
      if (k + 1 < L) {
        const uint8_t *bm = t->bwd + (i * T + k + 1) * nb;
        if (!bm[a])
          return tchi_fail(TCH_E_ARG, "trajectory %zu: backward action %d into step %zu is not "
                           "valid in the env's backward mask", i, a, k + 1);
        if (p->learn_pb) {
          tchi_masked_log_softmax(row + p->out_dim + p->off_pb, bm, nb, ev->lp);
          pb += ev->lp[a];
        } else {
          pb -= log((double)count_valid(bm, nb));
        }
      }
    }
    ev->log_pf[i] = pf;
    ev->log_pb[i] = pb;
  }
  return TCH_OK;
}

/* dout[row, j] += g * (onehot(a) - softmax(logits | mask))_j over the k masked entries. */
static void add_logp_grad(float *dout, const float *logits, const uint8_t *mask, size_t k,
                          int32_t a, double g, double *scratch)
{
  tchi_masked_log_softmax(logits, mask, k, scratch);
  for (size_t j = 0; j < k; j++)
    if (mask[j]) dout[j] += (float)(g * (((int32_t)j == a) - exp(scratch[j])));
}

tch_status tchi_tb_loss(tch_policy *p, tch_env *e, const tchi_traj *t, tchi_eval *evp,
                        const double *log_r, const double *weight, int grad, double *delta,
                        double *loss)
{
  tchi_eval local;
  tchi_eval_init(&local);
  tchi_eval *ev = evp ? evp : &local;
  *loss = NAN;
  if (t->n == 0) return tchi_fail(TCH_E_ARG, "empty batch");
  tch_status s = tchi_eval_traj(p, e, t, ev);
  if (s) goto done;
  const size_t n = t->n, T = t->T, na = t->n_actions, nb = na - 1;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = log_r[i] + ev->log_pb[i] - p->log_z - ev->log_pf[i];
    if (delta) delta[i] = d;
    sum += (weight ? weight[i] : 1.0) * d * d;
  }
  *loss = sum / (double)n;
  if (!isfinite(*loss)) {
    s = tchi_fail(TCH_E_NUMERIC, "trajectory balance loss is %g", *loss);
    goto done;
  }
  if (!grad) goto done;
  memset(ev->dout, 0, ev->rows * p->out_dim * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    double d = log_r[i] + ev->log_pb[i] - p->log_z - ev->log_pf[i];
    double g = (weight ? weight[i] : 1.0) * 2.0 * d / (double)n;   /* dL/d delta_i */
    p->log_z_grad -= g;
    for (size_t k = 0; k < t->len[i]; k++) {
      size_t row = ev->row0[i] + k;
      int32_t a = t->actions[i * T + k];
      /* delta has -log P_F: d delta / d logits = -(onehot - p) */
      add_logp_grad(ev->dout + row * p->out_dim, ev->out + row * p->out_dim,
                    t->fwd + (i * T + k) * na, na, a, -g, ev->lp);
      if (p->learn_pb && k + 1 < t->len[i])
        add_logp_grad(ev->dout + (row + 1) * p->out_dim + p->off_pb,
                      ev->out + (row + 1) * p->out_dim + p->off_pb,
                      t->bwd + (i * T + k + 1) * nb, nb, a, g, ev->lp);
    }
  }
  s = tchi_policy_backward(p, ev->dout);
done:
  tchi_eval_destroy(&local);
  return s;
}

tch_status tchi_db_loss(tch_policy *p, tch_env *e, const tchi_traj *t, tchi_eval *evp,
                        const double *log_r, int grad, double *dres, double *loss)
{
  *loss = NAN;
  if (!p->has_flow) return tchi_fail(TCH_E_ARG, "DB needs a policy with a flow head (student.loss: db)");
  if (t->n == 0) return tchi_fail(TCH_E_ARG, "empty batch");
  tchi_eval local;
  tchi_eval_init(&local);
  tchi_eval *ev = evp ? evp : &local;
  tch_status s = tchi_eval_traj(p, e, t, ev);
  if (s) goto done;
  const size_t n = t->n, T = t->T, na = t->n_actions, nb = na - 1, od = p->out_dim;
  if (grad) memset(ev->dout, 0, ev->rows * od * sizeof(float));
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    size_t L = t->len[i];
    for (size_t k = 0; k < T; k++)
      if (dres) dres[i * T + k] = 0.0;
    for (size_t k = 0; k < L; k++) {
      size_t row = ev->row0[i] + k;
      const float *out = ev->out + row * od;
      const uint8_t *fm = t->fwd + (i * T + k) * na;
      int32_t a = t->actions[i * T + k];
      int is_exit = (size_t)a == na - 1;
      if (is_exit && tchi_forced_terminal(fm, na)) continue;   /* F(x) is tied to R(x) */
      tchi_masked_log_softmax(out, fm, na, ev->lp);
      double d = out[p->off_flow] + ev->lp[a];
      int next_is_reward = 0;
      double pb = 0.0;
      if (is_exit) {
        d -= log_r[i];
      } else {
        const float *nout = out + od;
        const uint8_t *nfm = t->fwd + (i * T + k + 1) * na;
        const uint8_t *nbm = t->bwd + (i * T + k + 1) * nb;
        next_is_reward = tchi_forced_terminal(nfm, na);
        d -= next_is_reward ? log_r[i] : (double)nout[p->off_flow];
        if (p->learn_pb) {
          tchi_masked_log_softmax(nout + p->off_pb, nbm, nb, ev->lp);
          pb = ev->lp[a];
        } else {
          pb = -log((double)count_valid(nbm, nb));
        }
        d -= pb;
      }
      if (dres) dres[i * T + k] = d;
      sum += d * d;
      if (!grad) continue;
      double g = 2.0 * d / (double)n;
      float *dout = ev->dout + row * od;
      dout[p->off_flow] += (float)g;
      add_logp_grad(dout, out, fm, na, a, g, ev->lp);
      if (!is_exit) {
        if (!next_is_reward) dout[od + p->off_flow] -= (float)g;
        if (p->learn_pb)
          add_logp_grad(dout + od + p->off_pb, out + od + p->off_pb,
                        t->bwd + (i * T + k + 1) * nb, nb, a, -g, ev->lp);
      }
    }
  }
  *loss = sum / (double)n;
  if (!isfinite(*loss)) {
    s = tchi_fail(TCH_E_NUMERIC, "detailed balance loss is %g", *loss);
    goto done;
  }
  if (grad) s = tchi_policy_backward(p, ev->dout);
done:
  tchi_eval_destroy(&local);
  return s;
}

tch_status tchi_db_transition_loss(tch_policy *p, tch_env *e, size_t n, const int32_t *rec,
                                   const double *log_r, tchi_eval *ev, int grad, double *dres,
                                   double *loss)
{
  *loss = NAN;
  if (!p->has_flow) return tchi_fail(TCH_E_ARG, "DB needs a policy with a flow head");
  if (n == 0) return tchi_fail(TCH_E_ARG, "empty batch");
  const size_t sd = e->d.state_dim, na = e->d.n_actions, nb = na - 1, od = p->out_dim;
  const size_t w = 2 * sd + 2, rows = 2 * n;
  tch_status s;
  if ((s = eval_reserve(ev, 1, rows, sd, od, na)) ||
      (s = grow(&ev->fwd, &ev->cap_fwd, rows * na, 1, "transition masks")) ||
      (s = grow(&ev->bwd, &ev->cap_bwd, rows * nb, 1, "transition masks")))
    return s;
  for (size_t i = 0; i < n; i++) {
    const int32_t *r = rec + i * w;
    if (r[sd] < 0 || (size_t)r[sd] >= na || (r[2 * sd + 1] != 0 && r[2 * sd + 1] != 1))
      return tchi_fail(TCH_E_ARG, "transition record %zu is malformed", i);
    memcpy(ev->rowstates + 2 * i * sd, r, sd * sizeof(int32_t));
    memcpy(ev->rowstates + (2 * i + 1) * sd, r + sd + 1, sd * sizeof(int32_t));
  }
  if ((s = tchi_env_masks(e, rows, ev->rowstates, ev->fwd, ev->bwd))) return s;
  if ((s = tchi_policy_forward(p, e, rows, ev->rowstates, &ev->out))) return s;
  ev->rows = rows;
  if (grad) memset(ev->dout, 0, rows * od * sizeof(float));
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    const int32_t *r = rec + i * w;
    const int32_t a = r[sd];
    const int term = r[2 * sd + 1], is_exit = (size_t)a == na - 1;
    const float *o0 = ev->out + 2 * i * od, *o1 = o0 + od;
    const uint8_t *fm = ev->fwd + 2 * i * na, *bm = ev->bwd + (2 * i + 1) * nb;
    if (!fm[a] || (!is_exit && !bm[a]))
      return tchi_fail(TCH_E_ARG, "transition record %zu takes an action its masks forbid", i);
    tchi_masked_log_softmax(o0, fm, na, ev->lp);
    double d = (double)o0[p->off_flow] + ev->lp[a];
    d -= term ? log_r[i] : (double)o1[p->off_flow];
    if (!is_exit) {
      if (p->learn_pb) {
        tchi_masked_log_softmax(o1 + p->off_pb, bm, nb, ev->lp);
        d -= ev->lp[a];
      } else {
        d += log((double)count_valid(bm, nb));
      }
    }
    if (dres) dres[i] = d;
    sum += d * d;
    if (!grad) continue;
    double g = 2.0 * d / (double)n;
    float *d0 = ev->dout + 2 * i * od, *d1 = d0 + od;
    d0[p->off_flow] += (float)g;
    add_logp_grad(d0, o0, fm, na, a, g, ev->lp);
    if (!term) d1[p->off_flow] -= (float)g;
    if (!is_exit && p->learn_pb) add_logp_grad(d1 + p->off_pb, o1 + p->off_pb, bm, nb, a, -g, ev->lp);
  }
  *loss = sum / (double)n;
  if (!isfinite(*loss)) return tchi_fail(TCH_E_NUMERIC, "detailed balance loss is %g", *loss);
  if (grad) return tchi_policy_backward(p, ev->dout);
  return TCH_OK;
}
