/* MALA local search of the diffusion samplers (diffusion/langevin.py:langevin_dynamics,
 * spec §3.8). All chains share one step size η and one pooled acceptance rate, exactly as
 * the reference's scalar ld_step:
 *
 *   for i in 0 .. max_iter-1:
 *     η = η0 if i == 0 else η·(1 + 0.01) if rate > target else η·(1 − 0.01)   (adaptive)
 *     x' = x + η ∇log R(x) + sqrt(2η) ξ
 *     log α = log R(x') − log R(x) + log q(x|x') − log q(x'|x),
 *       log q(b|a) = −‖b − a − η ∇log R(a)‖² / (4η)
 *     accept where u < exp(min(0, log α)); count accepts and proposals
 *     if i > burn_in: emit the accepted x' with their log R
 *     if i % 5 == 0: rate = accepts / proposals, reset both counts
 *
 * The reference re-evaluates ∇log R(x) at the current states every iteration; we keep the
 * gradient of each accepted proposal instead, which is the same value for a deterministic
 * target and saves a call per iteration. */
#include <math.h>
#include <string.h>
#include "dmetrics.h"

void tchi_mala_params_default(tchi_mala_params *p)
{
  p->max_iter = 200;
  p->burn_in = 100;
  p->step = 0.001;
  p->target_accept = 0.574;
  p->adaptive = 1;
}

void tchi_mala_result_init(tchi_mala_result *r) { memset(r, 0, sizeof *r); }

void tchi_mala_result_destroy(tchi_mala_result *r)
{
  tchi_free(r->x);
  tchi_free(r->log_r);
  memset(r, 0, sizeof *r);
}

void tchi_mala_ws_init(tchi_mala_ws *w) { memset(w, 0, sizeof *w); }

static void ws_free_buffers(tchi_mala_ws *w)
{
  tchi_free(w->x); tchi_free(w->lp); tchi_free(w->grad);
  tchi_free(w->xp); tchi_free(w->lpp); tchi_free(w->gradp);
  tchi_free(w->mean_fwd);
}

void tchi_mala_ws_destroy(tchi_mala_ws *w)
{
  ws_free_buffers(w);
  memset(w, 0, sizeof *w);
}

static tch_status ws_reserve(tchi_mala_ws *w, size_t n, size_t dim)
{
  if (n <= w->cap && dim == w->dim) return TCH_OK;
  int of = 0;
  size_t need = tchi_mul_size(n, dim, &of);
  if (of) return tchi_fail(TCH_E_ARG, "MALA: %zu chains x %zu dimensions overflows", n, dim);
  tchi_mala_ws_destroy(w);
  tch_status s;
  if ((s = tchi_alloc_array(&w->x, need, sizeof(double), 0, "MALA states")) ||
      (s = tchi_alloc_array(&w->grad, need, sizeof(double), 0, "MALA gradients")) ||
      (s = tchi_alloc_array(&w->xp, need, sizeof(double), 0, "MALA proposals")) ||
      (s = tchi_alloc_array(&w->gradp, need, sizeof(double), 0, "MALA gradients")) ||
      (s = tchi_alloc_array(&w->mean_fwd, need, sizeof(double), 0, "MALA proposal means")) ||
      (s = tchi_alloc_array(&w->lp, n, sizeof(double), 0, "MALA log-rewards")) ||
      (s = tchi_alloc_array(&w->lpp, n, sizeof(double), 0, "MALA log-rewards"))) {
    tchi_mala_ws_destroy(w);
    return s;
  }
  w->cap = n;
  w->dim = dim;
  return TCH_OK;
}

/* Room for every sample a run can emit: n chains x the iterations after burn-in. */
static tch_status result_reserve(tchi_mala_result *r, size_t samples, size_t dim)
{
  if (samples == 0 || (samples <= r->cap && dim == r->dim)) return TCH_OK;
  int of = 0;
  size_t need = tchi_mul_size(samples, dim, &of);
  if (of) return tchi_fail(TCH_E_ARG, "MALA: result size overflows");
  double *x = NULL, *lr = NULL;
  tch_status s;
  if ((s = tchi_alloc_array(&x, need, sizeof(double), 0, "MALA samples")) ||
      (s = tchi_alloc_array(&lr, samples, sizeof(double), 0, "MALA samples"))) {
    tchi_free(x);
    return s;
  }
  tchi_free(r->x);
  tchi_free(r->log_r);
  r->x = x;
  r->log_r = lr;
  r->cap = samples;
  r->dim = dim;
  return TCH_OK;
}

static int all_finite(size_t n, const double *a)
{
  for (size_t i = 0; i < n; i++)
    if (!isfinite(a[i])) return 0;
  return 1;
}

/* ---- the MALA transition, shared by the local search and SMC rejuvenation -------------- */

void tchi_mala_propose(size_t nd, double step, const double *x, const double *grad,
                       tchi_rng *rng, double *mean_fwd, double *xp)
{
  const double noise = sqrt(2.0 * step);
  for (size_t k = 0; k < nd; k++) {
    mean_fwd[k] = x[k] + step * grad[k];
    xp[k] = mean_fwd[k] + noise * tchi_rng_normal(rng);
  }
}

double tchi_mala_log_alpha(size_t dim, double step, const double *x, double lp,
                           const double *mean_fwd, const double *xp, double lpp,
                           const double *gradp)
{
  const double inv4 = 1.0 / (4.0 * step);
  double fwd = 0.0, bwd = 0.0;
  for (size_t k = 0; k < dim; k++) {
    double a = xp[k] - mean_fwd[k], b = x[k] - xp[k] - step * gradp[k];
    fwd += a * a;
    bwd += b * b;
  }
  return (lpp - lp) + (-bwd * inv4) - (-fwd * inv4);
}

int tchi_mala_accept(double log_alpha, double u, double lpp, size_t dim, const double *gradp)
{
  /* NaN log α rejects, as torch's clamp/exp/< chain does (clamp keeps the NaN, u < NaN is
   * false). The comparison alone would not: min(0, NaN) written as a < 0 ? a : 0 is 0. */
  return !isnan(log_alpha) && u < exp(log_alpha < 0.0 ? log_alpha : 0.0) && isfinite(lpp) &&
         all_finite(dim, gradp);
}

tch_status tchi_mala_run(const tchi_mala_params *p, tchi_logp_fn logp, void *ctx, size_t n,
                         size_t dim, const double *x0, tchi_rng *rng, tchi_mala_ws *w,
                         tchi_mala_result *out)
{
  if (!p || !logp || !x0 || !rng || !w || !out || n == 0 || dim == 0)
    return tchi_fail(TCH_E_ARG, "MALA: need params, a target, n >= 1 chains of dim >= 1, "
                                "start states, an RNG, a workspace and a result");
  if (!(p->step > 0.0) || !isfinite(p->step) || !(p->target_accept >= 0.0) ||
      !(p->target_accept <= 1.0))
    return tchi_fail(TCH_E_ARG, "MALA: step must be finite and > 0, target acceptance in [0, 1]");
  out->n = 0;
  const size_t post = p->max_iter > p->burn_in + 1 ? p->max_iter - p->burn_in - 1 : 0;
  int of = 0;
  size_t max_samples = tchi_mul_size(n, post, &of);
  if (of) return tchi_fail(TCH_E_ARG, "MALA: result size overflows");
  tch_status s;
  if ((s = ws_reserve(w, n, dim)) || (s = result_reserve(out, max_samples, dim))) return s;
  out->dim = dim;
  out->n_proposals = out->n_accepted = 0;
  out->final_step = p->step;
  out->last_accept_rate = 0.0;

  const size_t nd = n * dim;
  memcpy(w->x, x0, nd * sizeof(double));
  if ((s = logp(ctx, n, w->x, w->lp, w->grad)))
    return tchi_fail_prefix(s, "MALA local search: ");

  double step = p->step, rate = 0.0;
  size_t accepts = 0, proposals = 0;
  for (size_t it = 0; it < p->max_iter; it++) {
    if (p->adaptive && it > 0)
      step = rate > p->target_accept ? step + 0.01 * step : step - 0.01 * step;
    tchi_mala_propose(nd, step, w->x, w->grad, rng, w->mean_fwd, w->xp);
    if ((s = logp(ctx, n, w->xp, w->lpp, w->gradp))) {
      out->n = 0;
      return tchi_fail_prefix(s, "MALA local search: ");
    }
    for (size_t c = 0; c < n; c++) {
      const double *xp = w->xp + c * dim, *gp = w->gradp + c * dim;
      double log_alpha = tchi_mala_log_alpha(dim, step, w->x + c * dim, w->lp[c],
                                             w->mean_fwd + c * dim, xp, w->lpp[c], gp);
      double u = tchi_rng_uniform(rng);
      if (!tchi_mala_accept(log_alpha, u, w->lpp[c], dim, gp)) continue;
      accepts++;
      out->n_accepted++;
      if (it > p->burn_in) {
        memcpy(out->x + out->n * dim, xp, dim * sizeof(double));
        out->log_r[out->n] = w->lpp[c];
        out->n++;
      }
      memcpy(w->x + c * dim, xp, dim * sizeof(double));
      memcpy(w->grad + c * dim, gp, dim * sizeof(double));
      w->lp[c] = w->lpp[c];
    }
    proposals += n;
    out->n_proposals += n;
    if (it % 5 == 0) {
      rate = (double)accepts / (double)proposals;
      out->last_accept_rate = rate;
      accepts = proposals = 0;
    }
    out->final_step = step;
  }
  return TCH_OK;
}

tch_status tchi_mala_chains(tchi_logp_fn logp, void *ctx, size_t n, size_t dim, double step,
                            size_t steps, double *x, double *lp, double *grad, tchi_rng *rng,
                            tchi_mala_ws *w, uint64_t *n_accepted)
{
  if (!logp || !x || !lp || !grad || !rng || !w || n == 0 || dim == 0)
    return tchi_fail(TCH_E_ARG, "MALA chains: need a target, n >= 1 chains of dim >= 1 with "
                                "their log-densities and gradients, an RNG and a workspace");
  if (!(step > 0.0) || !isfinite(step))
    return tchi_fail(TCH_E_ARG, "MALA chains: step %g must be finite and > 0", step);
  if (steps == 0) return TCH_OK;
  tch_status s = ws_reserve(w, n, dim);
  if (s != TCH_OK) return s;
  uint64_t accepted = 0;
  for (size_t it = 0; it < steps; it++) {
    tchi_mala_propose(n * dim, step, x, grad, rng, w->mean_fwd, w->xp);
    if ((s = logp(ctx, n, w->xp, w->lpp, w->gradp)) != TCH_OK) return s;
    for (size_t c = 0; c < n; c++) {
      const double *xp = w->xp + c * dim, *gp = w->gradp + c * dim;
      double log_alpha = tchi_mala_log_alpha(dim, step, x + c * dim, lp[c],
                                             w->mean_fwd + c * dim, xp, w->lpp[c], gp);
      double u = tchi_rng_uniform(rng);
      if (!tchi_mala_accept(log_alpha, u, w->lpp[c], dim, gp)) continue;
      accepted++;
      memcpy(x + c * dim, xp, dim * sizeof(double));
      memcpy(grad + c * dim, gp, dim * sizeof(double));
      lp[c] = w->lpp[c];
    }
  }
  if (n_accepted) *n_accepted += accepted;
  return TCH_OK;
}
