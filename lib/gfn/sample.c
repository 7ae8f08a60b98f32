/* Forward and backward sampling of trajectory batches. Each step evaluates the network
 * once on all still-active rows (one gemm per layer) and queries the env once per batch. */
#include <math.h>
#include <string.h>
#include "gfn.h"

double tchi_masked_log_softmax(const float *logits, const uint8_t *mask, size_t k,
                               double *out_logp)
{
  double mx = -INFINITY;
  for (size_t j = 0; j < k; j++)
    if (mask[j] && logits[j] > mx) mx = logits[j];
  double sum = 0.0;
  for (size_t j = 0; j < k; j++)
    if (mask[j]) sum += exp((double)logits[j] - mx);
  double lse = mx + log(sum);
  for (size_t j = 0; j < k; j++) out_logp[j] = mask[j] ? (double)logits[j] - lse : -INFINITY;
  return lse;
}

/* Draws an action from the behaviour distribution of one row: (1-eps) softmax(logits/temp)
 * + eps uniform over valid actions. logp holds the policy's own log-probabilities. */
static uint32_t draw_action(const float *logits, const uint8_t *mask, const double *logp,
                            size_t k, double eps, double temp, tchi_rng *rng, double *scratch)
{
  const double *w = logp;
  if (temp != 1.0 || eps > 0.0) {
    size_t n_valid = 0;
    double mx = -INFINITY, sum = 0.0;
    for (size_t j = 0; j < k; j++)
      if (mask[j]) {
        n_valid++;
        if (logits[j] / temp > mx) mx = logits[j] / temp;
      }
    for (size_t j = 0; j < k; j++) {
      scratch[j] = mask[j] ? exp(logits[j] / temp - mx) : 0.0;
      sum += scratch[j];
    }
    for (size_t j = 0; j < k; j++)
      scratch[j] = mask[j] ? (1.0 - eps) * scratch[j] / sum + eps / (double)n_valid : 0.0;
    /* scratch now holds probabilities; sample by inverse CDF below. */
    double u = tchi_rng_uniform(rng), c = 0.0;
    uint32_t last = 0;
    for (size_t j = 0; j < k; j++) {
      if (!mask[j]) continue;
      last = (uint32_t)j;
      c += scratch[j];
      if (u < c) return (uint32_t)j;
    }
    return last;
  }
  double u = tchi_rng_uniform(rng), c = 0.0;
  uint32_t last = 0;
  for (size_t j = 0; j < k; j++) {
    if (!mask[j]) continue;
    last = (uint32_t)j;
    c += exp(w[j]);
    if (u < c) return (uint32_t)j;
  }
  return last;   /* rounding: the CDF summed to slightly below 1 */
}

/* Scratch for one sampling call; sized for n rows. */
typedef struct sample_ws {
  int32_t *cur, *next, *act;
  size_t *row_of;            /* active position -> trajectory index */
  uint8_t *fwd, *bwd;
  double *logp, *probs;
} sample_ws;

static void sample_ws_free(sample_ws *w)
{
  tchi_free(w->cur); tchi_free(w->next); tchi_free(w->act); tchi_free(w->row_of);
  tchi_free(w->fwd); tchi_free(w->bwd); tchi_free(w->logp); tchi_free(w->probs);
}

static tch_status sample_ws_alloc(sample_ws *w, size_t n, uint32_t sd, uint32_t na)
{
  memset(w, 0, sizeof *w);
  tch_status s;
  if ((s = tchi_alloc_array(&w->cur, n, sd * sizeof(int32_t), 0, "sampler states")) ||
      (s = tchi_alloc_array(&w->next, n, sd * sizeof(int32_t), 0, "sampler states")) ||
      (s = tchi_alloc_array(&w->act, n, sizeof(int32_t), 0, "sampler actions")) ||
      (s = tchi_alloc_array(&w->row_of, n, sizeof(size_t), 0, "sampler rows")) ||
      (s = tchi_alloc_array(&w->fwd, n, na, 0, "sampler masks")) ||
      (s = tchi_alloc_array(&w->bwd, n, na - 1, 0, "sampler masks")) ||
      (s = tchi_alloc_array(&w->logp, na, sizeof(double), 0, "sampler probabilities")) ||
      (s = tchi_alloc_array(&w->probs, na, sizeof(double), 0, "sampler probabilities")))
    sample_ws_free(w);
  return s;
}

tch_status tchi_sample_forward(tch_policy *p, tch_env *e, tchi_rng *rng, size_t n,
                               double eps, double temp, tchi_traj *out, double *log_pf)
{
  return tchi_sample_forward_from(p, e, rng, n, NULL, eps, temp, out, log_pf);
}

tch_status tchi_sample_forward_from(tch_policy *p, tch_env *e, tchi_rng *rng, size_t n,
                                    const int32_t *start, double eps, double temp,
                                    tchi_traj *out, double *log_pf)
{
  tch_status s = tchi_traj_reserve(out, e, n);
  if (s || n == 0) return s;
  const uint32_t sd = e->d.state_dim, na = e->d.n_actions;
  const size_t T = out->T;
  sample_ws w;
  if ((s = sample_ws_alloc(&w, n, sd, na))) return s;

  size_t m = n;   /* active rows, compacted at the front of w.cur */
  for (size_t i = 0; i < n; i++) {
    memcpy(w.cur + i * sd, start ? start + i * sd : e->s0, sd * sizeof(int32_t));
    w.row_of[i] = i;
    out->len[i] = 0;
    if (log_pf) log_pf[i] = 0.0;
  }
  for (size_t t = 0; m > 0; t++) {
    if (t == T) {
      s = tchi_fail(TCH_E_CALLBACK, "a trajectory exceeded the env's max_len (%u) without "
                    "reaching a terminal state", e->d.max_len);
      goto done;
    }
    if ((s = tchi_env_masks(e, m, w.cur, w.fwd, w.bwd))) goto done;
    const float *outp;
    if ((s = tchi_policy_forward(p, e, m, w.cur, &outp))) goto done;
    size_t m_next = 0;
    for (size_t r = 0; r < m; r++) {
      size_t i = w.row_of[r];
      const float *logits = outp + r * p->out_dim;
      const uint8_t *mask = w.fwd + r * na;
      tchi_masked_log_softmax(logits, mask, na, w.logp);
      uint32_t a = draw_action(logits, mask, w.logp, na, eps, temp, rng, w.probs);
      if (log_pf) log_pf[i] += w.logp[a];
      memcpy(tchi_traj_state(out, i, t), w.cur + r * sd, sd * sizeof(int32_t));
      memcpy(out->fwd + (i * T + t) * na, mask, na);
      memcpy(out->bwd + (i * T + t) * (na - 1), w.bwd + r * (na - 1), na - 1);
      out->actions[i * T + t] = (int32_t)a;
      if (a == na - 1) {
        out->len[i] = (uint32_t)(t + 1);
        for (size_t k = t + 1; k < T; k++) out->actions[i * T + k] = -1;
      } else {
        /* compact: continuing rows move to the front */
        memmove(w.cur + m_next * sd, w.cur + r * sd, sd * sizeof(int32_t));
        w.act[m_next] = (int32_t)a;
        w.row_of[m_next] = i;
        m_next++;
      }
    }
    m = m_next;
    if (m > 0) {
      if ((s = tchi_env_step(e, m, w.cur, w.act, w.next))) goto done;
      int32_t *tmp = w.cur; w.cur = w.next; w.next = tmp;
    }
  }
done:
  sample_ws_free(&w);
  return s;
}

tch_status tchi_sample_backward(tch_policy *p, tch_env *e, tchi_rng *rng, size_t n,
                                const int32_t *x, tchi_traj *out)
{
  tch_status s = tchi_traj_reserve(out, e, n);
  if (s || n == 0) return s;
  const uint32_t sd = e->d.state_dim, na = e->d.n_actions, nb = na - 1;
  const size_t T = out->T;
  const int learned = p && p->learn_pb;
  if (learned && (p->state_dim != sd || p->n_actions != na))
    return tchi_fail(TCH_E_ARG, "policy does not fit the env");
  /* Reversed trajectories are built in out's storage: position k = k-th state from the end. */
  int32_t *cand = NULL, *cand_act = NULL, *parents = NULL;
  size_t *cand_row = NULL;
  uint8_t *pfwd = NULL;
  sample_ws w;
  if ((s = sample_ws_alloc(&w, n, sd, na))) return s;
  size_t cap = n * nb;
  if ((s = tchi_alloc_array(&cand, cap, sd * sizeof(int32_t), 0, "parent candidates")) ||
      (s = tchi_alloc_array(&cand_act, cap, sizeof(int32_t), 0, "parent candidates")) ||
      (s = tchi_alloc_array(&cand_row, cap, sizeof(size_t), 0, "parent candidates")) ||
      (s = tchi_alloc_array(&parents, cap, sd * sizeof(int32_t), 0, "parent candidates")) ||
      (s = tchi_alloc_array(&pfwd, cap, na, 0, "parent masks")))
    goto done;

  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(tchi_traj_state(out, i, 0), x + i * sd, sd * sizeof(int32_t));
    out->actions[i * T] = (int32_t)na - 1;   /* EXIT from x */
    out->len[i] = 1;
    if (!tchi_env_is_s0(e, x + i * sd)) {
      memcpy(w.cur + m * sd, x + i * sd, sd * sizeof(int32_t));
      w.row_of[m++] = i;
    }
  }
  for (size_t k = 1; m > 0; k++) {
    if (k == T) {
      s = tchi_fail(TCH_E_ARG, "backward sampling exceeded max_len (%u): a terminal state is "
                    "not reachable from s0", e->d.max_len);
      goto done;
    }
    if ((s = tchi_env_masks(e, m, w.cur, w.fwd, w.bwd))) goto done;
    size_t nc = 0;
    for (size_t r = 0; r < m; r++)
      for (uint32_t a = 0; a < nb; a++)
        if (w.bwd[r * nb + a]) {
          memcpy(cand + nc * sd, w.cur + r * sd, sd * sizeof(int32_t));
          cand_act[nc] = (int32_t)a;
          cand_row[nc++] = r;
        }
    if (nc > 0) {
      if ((s = tchi_env_backward_step(e, nc, cand, cand_act, parents))) goto done;
      if ((s = tchi_env_masks(e, nc, parents, pfwd, NULL))) goto done;
    }
    const float *outp = NULL;
    if (learned && (s = tchi_policy_forward(p, e, m, w.cur, &outp))) goto done;
    size_t m_next = 0, c0 = 0;
    for (size_t r = 0; r < m; r++) {
      size_t i = w.row_of[r];
      size_t c1 = c0;
      while (c1 < nc && cand_row[c1] == r) c1++;
      /* valid parents: the forward action from the parent must be allowed there */
      double total = 0.0;
      double mx = -INFINITY;
      for (size_t c = c0; c < c1; c++)
        if (pfwd[c * na + (size_t)cand_act[c]] && learned) {
          double l = outp[r * p->out_dim + p->off_pb + (size_t)cand_act[c]];
          if (l > mx) mx = l;
        }
      for (size_t c = c0; c < c1; c++) {
        double wgt = 0.0;
        if (pfwd[c * na + (size_t)cand_act[c]])
          wgt = learned ? exp(outp[r * p->out_dim + p->off_pb + (size_t)cand_act[c]] - mx) : 1.0;
        total += wgt;
      }
      if (total <= 0.0) {
        s = tchi_fail(TCH_E_ARG, "terminal state %zu has no valid parent at backward step %zu "
                      "(is it reachable from s0?)", i, k);
        goto done;
      }
      double u = tchi_rng_uniform(rng) * total, acc = 0.0;
      size_t pick = c1;
      for (size_t c = c0; c < c1; c++) {
        double wgt = 0.0;
        if (pfwd[c * na + (size_t)cand_act[c]])
          wgt = learned ? exp(outp[r * p->out_dim + p->off_pb + (size_t)cand_act[c]] - mx) : 1.0;
        if (wgt > 0.0) {
          pick = c;
          acc += wgt;
          if (u < acc) break;
        }
      }
      memcpy(tchi_traj_state(out, i, k), parents + pick * sd, sd * sizeof(int32_t));
      out->actions[i * T + k] = cand_act[pick];
      out->len[i] = (uint32_t)(k + 1);
      if (!tchi_env_is_s0(e, parents + pick * sd)) {
        memcpy(w.next + m_next * sd, parents + pick * sd, sd * sizeof(int32_t));
        w.row_of[m_next++] = i;
      }
      c0 = c1;
    }
    int32_t *tmp = w.cur; w.cur = w.next; w.next = tmp;
    m = m_next;
  }
  /* Reverse each trajectory in place: stored position k holds state s_{L-1-k} and the
   * action that led from it... Stored: pos 0 = (x, EXIT); pos k = (parent_k, a_k) where
   * a_k leads from parent_k to the state at pos k-1. Reversed: s_j = pos L-1-j, and the
   * forward action from s_j is the action stored with it. */
  for (size_t i = 0; i < n; i++) {
    size_t L = out->len[i];
    for (size_t a = 0, b = L - 1; a < b; a++, b--) {
      int32_t *sa = tchi_traj_state(out, i, a), *sb = tchi_traj_state(out, i, b);
      for (uint32_t d = 0; d < sd; d++) { int32_t t = sa[d]; sa[d] = sb[d]; sb[d] = t; }
      int32_t ta = out->actions[i * T + a];
      out->actions[i * T + a] = out->actions[i * T + b];
      out->actions[i * T + b] = ta;
    }
    for (size_t k = L; k < T; k++) out->actions[i * T + k] = -1;
  }
  s = tchi_traj_fill_masks(out, e);
done:
  sample_ws_free(&w);
  tchi_free(cand); tchi_free(cand_act); tchi_free(cand_row); tchi_free(parents); tchi_free(pfwd);
  return s;
}
