/* GAFN baseline (grid/models/gafn.py, GAFNTBAgent with augmented=True): trajectory balance
 * with random-network-distillation intrinsic rewards on the terminal state and on the
 * edges, the latter entering through the state flow F(s):
 *
 *   D = log Z + sum log P_F - log(R + ri(x) + 1e-8)
 *       - sum_{t} log(P_B(s_t | s_{t+1}) + ri(s_{t+1}) / F(s_{t+1}))   (non-terminal s_{t+1})
 *       - log P_B(s_{n-1} | x)                                         (edge-terminated x)
 *   loss = mean D^2 + w * mean_traj mean_states || pred(s) - target(s) ||
 *
 * ri(s) = ri_scale * || pred(s) - target(s) || with the predictor trained and the target
 * frozen; intrinsic rewards are constants in D (the reference computes them without
 * gradients while sampling, with the same parameters). The reference's trajectory format
 * repeats x after a voluntary stop, so there x also counts as an intermediate state and
 * appears twice in the RND loss; this port keeps both. */
#include <math.h>
#include <string.h>
#include "behaviour.h"

tch_status tchi_rnd_init(tchi_rnd *r, size_t in_dim, size_t hidden, size_t latent, uint64_t seed)
{
  memset(r, 0, sizeof *r);
  size_t dims[4] = {in_dim, hidden, hidden, latent};
  tchi_mlp_ws_init(&r->ws_target);
  tchi_mlp_ws_init(&r->ws_pred);
  tch_status s;
  if ((s = tchi_mlp_init(&r->target, 3, dims, TCHI_ACT_LEAKY_RELU)) ||
      (s = tchi_mlp_init(&r->pred, 3, dims, TCHI_ACT_LEAKY_RELU))) {
    tchi_rnd_destroy(r);
    return s;
  }
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_INIT, 2));
  tchi_mlp_init_uniform(&r->target, &rng);
  tchi_mlp_init_uniform(&r->pred, &rng);
  return TCH_OK;
}

void tchi_rnd_destroy(tchi_rnd *r)
{
  tchi_mlp_destroy(&r->target);
  tchi_mlp_destroy(&r->pred);
  tchi_mlp_ws_destroy(&r->ws_target);
  tchi_mlp_ws_destroy(&r->ws_pred);
  tchi_free(r->idx);
  tchi_free(r->feat);
  tchi_free(r->dist);
  tchi_free(r->dpred);
  memset(r, 0, sizeof *r);
}

static tch_status rnd_reserve(tchi_rnd *r, size_t rows, size_t sd, size_t in_dim, size_t latent)
{
  if (rows <= r->cap) return TCH_OK;
  tchi_free(r->idx); tchi_free(r->feat); tchi_free(r->dist); tchi_free(r->dpred);
  r->idx = NULL; r->feat = NULL; r->dist = NULL; r->dpred = NULL;
  r->cap = 0;
  tch_status s;
  if ((s = tchi_alloc_array(&r->idx, rows, sd * sizeof(int32_t), 0, "RND codes")) ||
      (s = tchi_alloc_array(&r->feat, rows * in_dim + TCHI_GEMM_PAD, sizeof(float), 0, "RND input")) ||
      (s = tchi_alloc_array(&r->dist, rows, sizeof(double), 0, "RND distances")) ||
      (s = tchi_alloc_array(&r->dpred, rows * latent + TCHI_GEMM_PAD, sizeof(float), 0, "RND gradient")))
    return s;
  r->cap = rows;
  return TCH_OK;
}

/* dist[r] = || pred(s_r) - target(s_r) || for every row; keeps the predictor's activations. */
static tch_status rnd_distances(tchi_rnd *r, const tchi_gemm *g, tch_env *e, size_t rows,
                                const int32_t *states, const float **pred_out, const float **tgt_out)
{
  size_t latent = r->pred.dims[3];
  tch_status s = rnd_reserve(r, rows, e->d.state_dim, r->pred.dims[0], latent);
  if (s) return s;
  int onehot;
  if ((s = tchi_env_encode(e, rows, states, r->feat, r->idx, &onehot))) return s;
  if (onehot) {
    if ((s = tchi_mlp_forward_onehot(&r->target, g, &r->ws_target, rows, e->d.state_dim, r->idx, tgt_out)) ||
        (s = tchi_mlp_forward_onehot(&r->pred, g, &r->ws_pred, rows, e->d.state_dim, r->idx, pred_out)))
      return s;
  } else {
    if ((s = tchi_mlp_forward(&r->target, g, &r->ws_target, rows, r->feat, tgt_out)) ||
        (s = tchi_mlp_forward(&r->pred, g, &r->ws_pred, rows, r->feat, pred_out)))
      return s;
  }
  for (size_t k = 0; k < rows; k++) {
    double sq = 0.0;
    for (size_t j = 0; j < latent; j++) {
      double d = (double)(*pred_out)[k * latent + j] - (double)(*tgt_out)[k * latent + j];
      sq += d * d;
    }
    r->dist[k] = sqrt(sq);
  }
  return TCH_OK;
}

/* log P_B(s_t | s_{t+1}) of backward action a at the row of s_{t+1}. */
static double log_pb(const tch_policy *p, const float *row, const uint8_t *bmask, int32_t a,
                     double *scratch)
{
  const size_t nb = p->n_actions - 1;
  if (p->learn_pb) {
    tchi_masked_log_softmax(row + p->off_pb, bmask, nb, scratch);
    return scratch[a];
  }
  size_t c = 0;
  for (size_t j = 0; j < nb; j++) c += bmask[j] != 0;
  return -log((double)c);
}

tch_status tchi_gafn_loss(tch_policy *p, tchi_rnd *rnd, tch_env *e, const tchi_traj *t,
                          tchi_eval *ev, const double *log_r, const tchi_gafn_params *gp,
                          int grad, double *loss)
{
  *loss = NAN;
  if (!p->has_flow) return tchi_fail(TCH_E_ARG, "GAFN needs a policy with a flow head");
  if (t->n == 0) return tchi_fail(TCH_E_ARG, "empty batch");
  tch_status s = tchi_eval_traj(p, e, t, ev);
  if (s) return s;
  const float *pred, *tgt;
  if ((s = rnd_distances(rnd, &p->gemm, e, ev->rows, ev->rowstates, &pred, &tgt))) return s;
  const size_t n = t->n, T = t->T, na = t->n_actions, nb = na - 1, od = p->out_dim;
  const size_t latent = rnd->pred.dims[3];
  if (grad) {
    memset(ev->dout, 0, ev->rows * od * sizeof(float));
    memset(rnd->dpred, 0, ev->rows * latent * sizeof(float));
  }
  double sum = 0.0, rnd_sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    const size_t L = t->len[i], r0 = ev->row0[i];
    const int forced = tchi_forced_terminal(t->fwd + (i * T + L - 1) * na, na);
    const double ri_x = gp->ri_scale * rnd->dist[r0 + L - 1];
    /* D without the backward sum, then the backward terms with their bonus */
    double D = p->log_z + ev->log_pf[i] - log(exp(log_r[i]) + ri_x + 1e-8);
    size_t n_bonus = forced ? (L >= 2 ? L - 2 : 0) : L - 1;   /* transitions with a bonus */
    for (size_t k = 0; k + 1 < L; k++) {
      const float *nrow = ev->out + (r0 + k + 1) * od;
      const uint8_t *bm = t->bwd + (i * T + k + 1) * nb;
      double lpb = log_pb(p, nrow, bm, t->actions[i * T + k], ev->lp);
      if (k < n_bonus && gp->edge_ri) {
        double b = gp->ri_scale * rnd->dist[r0 + k + 1] / exp((double)nrow[p->off_flow]);
        D -= log(exp(lpb) + b);
      } else {
        D -= lpb;
      }
    }
    sum += D * D;
    /* RND loss: mean over the reference's states (x twice after a voluntary stop) */
    double m = (double)(L + (forced ? 0 : 1));
    double rs = rnd->dist[r0 + L - 1] * (forced ? 0.0 : 1.0);
    for (size_t k = 0; k < L; k++) rs += rnd->dist[r0 + k];
    rnd_sum += rs / m;
    if (!grad) continue;

    double g = 2.0 * D / (double)n;
    p->log_z_grad += g;
    for (size_t k = 0; k < L; k++) {   /* + sum log P_F */
      size_t row = r0 + k;
      const uint8_t *fm = t->fwd + (i * T + k) * na;
      int32_t a = t->actions[i * T + k];
      tchi_masked_log_softmax(ev->out + row * od, fm, na, ev->lp);
      for (size_t j = 0; j < na; j++)
        if (fm[j]) ev->dout[row * od + j] += (float)(g * (((int32_t)j == a) - exp(ev->lp[j])));
    }
    for (size_t k = 0; k + 1 < L; k++) {   /* - backward terms */
      size_t row = r0 + k + 1;
      const float *nrow = ev->out + row * od;
      const uint8_t *bm = t->bwd + (i * T + k + 1) * nb;
      int32_t a = t->actions[i * T + k];
      double pb_share = 1.0;   /* d log(PB + b) / d log PB */
      if (k < n_bonus && gp->edge_ri) {
        double lpb = log_pb(p, nrow, bm, a, ev->lp);
        double b = gp->ri_scale * rnd->dist[row] / exp((double)nrow[p->off_flow]);
        double pb = exp(lpb);
        pb_share = pb / (pb + b);
        /* d/d f of -log(PB + ri e^{-f}) = b / (PB + b) */
        ev->dout[row * od + p->off_flow] += (float)(g * b / (pb + b));
      }
      if (p->learn_pb) {
        tchi_masked_log_softmax(nrow + p->off_pb, bm, nb, ev->lp);
        for (size_t j = 0; j < nb; j++)
          if (bm[j])
            ev->dout[row * od + p->off_pb + j] -=
              (float)(g * pb_share * (((int32_t)j == a) - exp(ev->lp[j])));
      }
    }
    /* RND predictor: d/d pred of w * mean_i (1/m_i) sum ||pred - target|| */
    double scale = gp->ri_loss_weight / (double)n / m;
    for (size_t k = 0; k < L; k++) {
      size_t row = r0 + k;
      double dist = rnd->dist[row];
      if (dist <= 0.0) continue;
      double c = scale * (1.0 + (k + 1 == L && !forced ? 1.0 : 0.0)) / dist;
      for (size_t j = 0; j < latent; j++)
        rnd->dpred[row * latent + j] += (float)(c * ((double)pred[row * latent + j] - (double)tgt[row * latent + j]));
    }
  }
  *loss = sum / (double)n + gp->ri_loss_weight * rnd_sum / (double)n;
  if (!isfinite(*loss)) return tchi_fail(TCH_E_NUMERIC, "GAFN loss is %g", *loss);
  if (!grad) return TCH_OK;
  if ((s = tchi_policy_backward(p, ev->dout))) return s;
  return tchi_mlp_backward(&rnd->pred, &p->gemm, &rnd->ws_pred, rnd->dpred, NULL);
}
