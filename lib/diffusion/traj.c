/* Trajectory batches of the diffusion sampler: forward sampling with the learned kernel,
 * backward sampling through the fixed Brownian bridge, and log P_F of given trajectories.
 * Nets with the OU-DDS reference (spec.reference, ou.c) take the marked branches instead. */
#include <float.h>
#include <math.h>
#include <string.h>
#include "diffusion/diffusion.h"

/* ---- batches ------------------------------------------------------------------------------ */
void tchi_dtraj_init(tchi_dtraj *t)
{
  memset(t, 0, sizeof *t);
}

void tchi_dtraj_destroy(tchi_dtraj *t)
{
  if (!t) return;
  tchi_free(t->states);
  tchi_free(t->log_pf);
  tchi_free(t->log_pb);
  tchi_free(t->grad);
  tchi_free(t->scr);
  memset(t, 0, sizeof *t);
}

static tch_status grow(double **p, size_t count, const char *what)
{
  double *q = tchi_realloc(*p, TCHI_MAX(count, (size_t)1) * sizeof(double));
  if (!q) return tchi_fail(TCH_E_NOMEM, "out of memory allocating %s (%zu values)", what, count);
  *p = q;
  return TCH_OK;
}

tch_status tchi_dtraj_reserve(tchi_dtraj *t, uint32_t T, uint32_t dim, size_t n, int with_grad)
{
  if (!t) return tchi_fail(TCH_E_ARG, "dtraj_reserve: NULL batch");
  if (T == 0 || dim == 0) return tchi_fail(TCH_E_ARG, "dtraj_reserve: T and dim must be >= 1");
  if (T != t->T || dim != t->dim) {   /* new shape: old rows mean nothing */
    t->cap = 0;
    t->n = 0;
    t->grad_valid = 0;
    tchi_free(t->grad);
    t->grad = NULL;
  }
  int ovf = 0;
  size_t per_state = tchi_mul_size((size_t)T + 1, dim, &ovf), per_grad = tchi_mul_size(T, dim, &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "dtraj_reserve: trajectory size overflows");
  size_t cap = t->cap;
  if (n > cap || (with_grad && !t->grad)) {
    if (n > cap) cap = TCHI_MAX(n, cap + cap / 2);
    size_t ns = tchi_mul_size(cap, per_state, &ovf), ng = tchi_mul_size(cap, per_grad, &ovf);
    if (ovf || ns > SIZE_MAX / sizeof(double)) return tchi_fail(TCH_E_NOMEM, "dtraj_reserve: batch size overflows");
    tch_status s;
    if ((s = grow(&t->states, ns, "diffusion states")) != TCH_OK ||
        (s = grow(&t->log_pf, cap, "diffusion log P_F")) != TCH_OK ||
        (s = grow(&t->log_pb, cap, "diffusion log P_B")) != TCH_OK)
      return s;
    if ((with_grad || t->grad) && (s = grow(&t->grad, ng, "diffusion reward gradients")) != TCH_OK)
      return s;
    t->cap = cap;
  }
  t->T = T;
  t->dim = dim;
  t->n = n;
  return TCH_OK;
}

void tchi_dtraj_terminals(const tchi_dtraj *t, double *out)
{
  for (size_t i = 0; i < t->n; i++)
    memcpy(out + i * t->dim, tchi_dtraj_state(t, i, t->T), t->dim * sizeof(double));
}

void tchi_dtraj_compact(tchi_dtraj *t, const uint8_t *keep)
{
  size_t per_state = ((size_t)t->T + 1) * t->dim, per_grad = (size_t)t->T * t->dim, k = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (!keep[i]) continue;
    if (k != i) {
      memcpy(t->states + k * per_state, t->states + i * per_state, per_state * sizeof(double));
      if (t->grad) memcpy(t->grad + k * per_grad, t->grad + i * per_grad, per_grad * sizeof(double));
      t->log_pf[k] = t->log_pf[i];
      t->log_pb[k] = t->log_pb[i];
    }
    k++;
  }
  t->n = k;
}

/* ---- reward gradients (Langevin) ------------------------------------------------------------- */
static tch_status need_scr(tchi_dtraj *t, size_t n)
{
  if (n <= t->scr_cap && t->scr) return TCH_OK;
  size_t cap = TCHI_MAX(n, t->scr_cap + t->scr_cap / 2);
  tch_status s = grow(&t->scr, cap, "reward scratch");
  if (s == TCH_OK) t->scr_cap = cap;
  return s;
}

/* grad log R at the n staged points x into g, sanitised as the reference
 * (torch.nan_to_num on float32, then the optional clip), and copied to step i of t->grad. */
static tch_status langevin_grad(const tchi_dnet *net, const tchi_dreward *rw, tchi_dtraj *t,
                                uint32_t i, const double *x, double *g)
{
  size_t n = t->n, D = t->dim;
  tch_status s = need_scr(t, n);
  if (s != TCH_OK) return s;
  tchi_callback_error_reset();
  int rc = rw->fn(rw->ctx, n, D, x, t->scr, g);
  if (rc != 0) return tchi_callback_fail(rc, "grad_log_reward");
  double clip = net->spec.lgv_clip;
  for (size_t q = 0; q < n * D; q++) {
    double v = g[q];
    if (isnan(v)) v = 0.0;
    else if (isinf(v)) v = v > 0 ? FLT_MAX : -FLT_MAX;
    if (net->spec.clipping) v = v > clip ? clip : v < -clip ? -clip : v;
    g[q] = v;
  }
  for (size_t r = 0; r < n; r++)
    memcpy(t->grad + (r * t->T + i) * D, g + r * D, D * sizeof(double));
  return TCH_OK;
}

static tch_status check_sampler(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng,
                                tchi_dtraj *out, const char *fn)
{
  if (!net || !rng || !out) return tchi_fail(TCH_E_ARG, "%s: NULL %s", fn, !net ? "net" : !rng ? "rng" : "batch");
  if (net->spec.langevin && (!rw || !rw->fn))
    return tchi_fail(TCH_E_ARG, "%s: a Langevin net needs the gradient of log R", fn);
  return TCH_OK;
}

static tch_status check_finite_sums(const tchi_dtraj *t, const char *fn)
{
  for (size_t r = 0; r < t->n; r++)
    if (!isfinite(t->log_pf[r]) || !isfinite(t->log_pb[r]))
      return tchi_fail(TCH_E_NUMERIC, "%s: trajectory %zu has log P_F = %g, log P_B = %g", fn, r,
                       t->log_pf[r], t->log_pb[r]);
  return TCH_OK;
}

/* ---- forward sampling ------------------------------------------------------------------------ */
tch_status tchi_dsample_forward(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng,
                                size_t n, double expl_std, tchi_dtraj *out)
{
  tch_status s = check_sampler(net, rw, rng, out, "dsample_forward");
  if (s != TCH_OK) return s;
  if (!(expl_std >= 0) || !isfinite(expl_std))
    return tchi_fail(TCH_E_ARG, "dsample_forward: exploration std must be finite and >= 0");
  uint32_t T = net->spec.T, D = net->spec.dim;
  int lgv = net->spec.langevin;
  if ((s = tchi_dtraj_reserve(out, T, D, n, lgv)) != TCH_OK) return s;
  out->grad_valid = 0;
  if (n == 0) return TCH_OK;
  if ((s = tchi_dnet_reserve(net, 1, n, 0)) != TCH_OK) return s;
  double dt = 1.0 / T, sq_dt = sqrt(dt);
  double add_lv = expl_std > 0 ? 2.0 * log(expl_std / sq_dt) : 0.0;
  double *x, *g;
  tchi_dnet_stage(net, &x, &g);
  /* OU-DDS reference (ou.c): x_0 ~ N(0, sigma^2 I), log p_0(x_0) folded into log_pf */
  int ou = net->spec.reference == TCHI_DREF_OU_DDS;
  for (size_t r = 0; r < n; r++) {
    if (ou) {
      tchi_dref_sample_p0(&net->spec, rng, 1, tchi_dtraj_state(out, r, 0));
      out->log_pf[r] = tchi_dref_log_p0(&net->spec, tchi_dtraj_state(out, r, 0));
    } else {
      memset(tchi_dtraj_state(out, r, 0), 0, D * sizeof(double));
      out->log_pf[r] = 0.0;
    }
    out->log_pb[r] = 0.0;
  }
  for (uint32_t i = 0; i < T; i++) {
    for (size_t r = 0; r < n; r++) memcpy(x + r * D, tchi_dtraj_state(out, r, i), D * sizeof(double));
    if (lgv && (s = langevin_grad(net, rw, out, i, x, g)) != TCH_OK) return s;
    const double *mean, *logvar;
    tchi_dnet_forward(net, i, 1, n, 0, &mean, &logvar);
    if (ou) {   /* OU-DDS kernels (ou.c); the Brownian loop below is unchanged */
      tchi_dstep st;
      tchi_dstep_at(&net->spec, i, &st);
      for (size_t r = 0; r < n; r++) {
        const double *s0 = tchi_dtraj_state(out, r, i);
        double *s1 = tchi_dtraj_state(out, r, i + 1);
        out->log_pf[r] += tchi_dstep_sample(&st, D, s0, mean + r * D, logvar + r * D, expl_std, rng, s1);
        out->log_pb[r] += tchi_dstep_log_pb(&st, D, s0, s1);
      }
      continue;
    }
    for (size_t r = 0; r < n; r++) {
      const double *s0 = tchi_dtraj_state(out, r, i), *mr = mean + r * D, *lr = logvar + r * D;
      double *s1 = tchi_dtraj_state(out, r, i + 1);
      for (uint32_t d = 0; d < D; d++) {
        double lv = lr[d];
        if (expl_std > 0) {   /* logaddexp(lv, add_lv) */
          double hi = lv > add_lv ? lv : add_lv, lo = lv > add_lv ? add_lv : lv;
          lv = hi + log1p(exp(lo - hi));
        }
        s1[d] = s0[d] + dt * mr[d] + sq_dt * exp(0.5 * lv) * tchi_rng_normal(rng);
      }
      out->log_pf[r] += tchi_dkernel_log_pf(D, dt, s0, s1, mr, lr);
      out->log_pb[r] += tchi_dkernel_log_pb(D, i, dt, net->spec.t_scale, s0, s1);
    }
  }
  out->grad_valid = lgv;
  return check_finite_sums(out, "dsample_forward");
}

tch_status tchi_dsample(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng, size_t n,
                        tchi_dtraj *scratch, double *x)
{
  if (!x && n) return tchi_fail(TCH_E_ARG, "dsample: NULL output");
  tch_status s = tchi_dsample_forward(net, rw, rng, n, 0.0, scratch);
  if (s == TCH_OK) tchi_dtraj_terminals(scratch, x);
  return s;
}

/* ---- backward sampling and log P_F of given trajectories ------------------------------------- */
tch_status tchi_dsample_backward(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng,
                                 size_t n, const double *x, tchi_dtraj *out)
{
  tch_status s = check_sampler(net, rw, rng, out, "dsample_backward");
  if (s != TCH_OK) return s;
  if (!x && n) return tchi_fail(TCH_E_ARG, "dsample_backward: NULL terminal points");
  uint32_t T = net->spec.T, D = net->spec.dim;
  for (size_t q = 0; q < n * D; q++)
    if (!isfinite(x[q]))
      return tchi_fail(TCH_E_ARG, "dsample_backward: terminal point %zu is not finite", q / D);
  int lgv = net->spec.langevin;
  if ((s = tchi_dtraj_reserve(out, T, D, n, lgv)) != TCH_OK) return s;
  out->grad_valid = 0;
  if (n == 0) return TCH_OK;
  double dt = 1.0 / T, t_scale = net->spec.t_scale;
  for (size_t r = 0; r < n; r++) {
    memcpy(tchi_dtraj_state(out, r, T), x + r * D, D * sizeof(double));
    memset(tchi_dtraj_state(out, r, 0), 0, D * sizeof(double));
    out->log_pb[r] = 0.0;
  }
  /* OU-DDS reference (ou.c): p_B down to x_0 included (no pinned origin); the Brownian
   * bridge loop below is skipped */
  int ou = net->spec.reference == TCHI_DREF_OU_DDS;
  for (uint32_t k = T; ou && k-- > 0;) {
    tchi_dstep st;
    tchi_dstep_at(&net->spec, k, &st);
    double sd = sqrt(st.var);
    for (size_t r = 0; r < n; r++) {
      const double *s1 = tchi_dtraj_state(out, r, k + 1);
      double *s0 = tchi_dtraj_state(out, r, k);
      for (uint32_t d = 0; d < D; d++) s0[d] = st.shrink * s1[d] + sd * tchi_rng_normal(rng);
      out->log_pb[r] += tchi_dstep_log_pb(&st, D, s0, s1);
    }
  }
  for (uint32_t k = T - 1; !ou && k >= 1; k--) {
    double factor, var;
    tchi_dbridge(k, dt, t_scale, &factor, &var);
    double sd = sqrt(var);
    for (size_t r = 0; r < n; r++) {
      const double *s1 = tchi_dtraj_state(out, r, k + 1);
      double *s0 = tchi_dtraj_state(out, r, k);
      for (uint32_t d = 0; d < D; d++) s0[d] = factor * s1[d] + sd * tchi_rng_normal(rng);
      out->log_pb[r] += tchi_dkernel_log_pb(D, k, dt, t_scale, s0, s1);
    }
  }
  if (lgv) {
    if ((s = tchi_dnet_reserve(net, 1, n, 0)) != TCH_OK) return s;
    double *xs, *g;
    tchi_dnet_stage(net, &xs, &g);
    for (uint32_t i = 0; i < T; i++) {
      for (size_t r = 0; r < n; r++) memcpy(xs + r * D, tchi_dtraj_state(out, r, i), D * sizeof(double));
      if ((s = langevin_grad(net, rw, out, i, xs, g)) != TCH_OK) return s;
    }
    out->grad_valid = 1;
  }
  if ((s = tchi_dnet_log_pf(net, out, 0, out->log_pf)) != TCH_OK) return s;
  return check_finite_sums(out, "dsample_backward");
}

/* Stages the states (and gradients) of steps i0..i0+k-1 step-major for the network. */
static void stage_block(tchi_dnet *net, const tchi_dtraj *t, uint32_t i0, uint32_t k)
{
  size_t n = t->n, D = t->dim;
  double *x, *g;
  tchi_dnet_stage(net, &x, &g);
  for (uint32_t j = 0; j < k; j++)
    for (size_t r = 0; r < n; r++) {
      size_t row = (size_t)j * n + r;
      memcpy(x + row * D, tchi_dtraj_state(t, r, i0 + j), D * sizeof(double));
      if (g) memcpy(g + row * D, t->grad + (r * t->T + i0 + j) * D, D * sizeof(double));
    }
}

tch_status tchi_dtraj_check(tchi_dnet *net, const tchi_dtraj *t, const char *fn)
{
  if (!net || !t) return tchi_fail(TCH_E_ARG, "%s: NULL %s", fn, net ? "batch" : "net");
  if (t->n && (t->T != net->spec.T || t->dim != net->spec.dim))
    return tchi_fail(TCH_E_ARG, "%s: batch has T = %u, dim = %u; the net T = %u, dim = %u", fn,
                     t->T, t->dim, net->spec.T, net->spec.dim);
  if (t->n && net->spec.langevin && (!t->grad || !t->grad_valid))
    return tchi_fail(TCH_E_ARG, "%s: a Langevin net needs the batch's grad log R (sample it with this net)", fn);
  return TCH_OK;
}

uint32_t tchi_dchunk(const tchi_dnet *net, size_t n, uint32_t chunk)
{
  if (chunk == 0) chunk = n >= TCHI_DCHUNK_ROWS ? 1 : (uint32_t)(TCHI_DCHUNK_ROWS / TCHI_MAX(n, (size_t)1));
  return TCHI_MIN(chunk, net->spec.T);
}

tch_status tchi_dnet_log_pf(tchi_dnet *net, const tchi_dtraj *t, uint32_t chunk, double *log_pf)
{
  tch_status s = tchi_dtraj_check(net, t, "dnet_log_pf");
  if (s != TCH_OK) return s;
  size_t n = t->n;
  if (n == 0) return TCH_OK;
  if (!log_pf) return tchi_fail(TCH_E_ARG, "dnet_log_pf: NULL output");
  uint32_t T = net->spec.T, D = net->spec.dim, k = tchi_dchunk(net, n, chunk);
  if ((s = tchi_dnet_reserve(net, k, n, 0)) != TCH_OK) return s;
  double dt = 1.0 / T;
  /* OU-DDS reference (ou.c): log p_0(x_0) folded into log_pf, kernels per step */
  int ou = net->spec.reference == TCHI_DREF_OU_DDS;
  for (size_t r = 0; r < n; r++) log_pf[r] = ou ? tchi_dref_log_p0(&net->spec, tchi_dtraj_state(t, r, 0)) : 0.0;
  for (uint32_t i0 = 0; i0 < T; i0 += k) {
    uint32_t kk = TCHI_MIN(k, T - i0);
    stage_block(net, t, i0, kk);
    const double *mean, *logvar;
    tchi_dnet_forward(net, i0, kk, n, 0, &mean, &logvar);
    for (uint32_t j = 0; ou && j < kk; j++) {
      tchi_dstep st;
      tchi_dstep_at(&net->spec, i0 + j, &st);
      for (size_t r = 0; r < n; r++) {
        size_t row = (size_t)j * n + r;
        log_pf[r] += tchi_dstep_log_pf(&st, D, tchi_dtraj_state(t, r, i0 + j),
                                       tchi_dtraj_state(t, r, i0 + j + 1), mean + row * D,
                                       logvar + row * D);
      }
    }
    for (uint32_t j = 0; !ou && j < kk; j++)
      for (size_t r = 0; r < n; r++) {
        size_t row = (size_t)j * n + r;
        log_pf[r] += tchi_dkernel_log_pf(D, dt, tchi_dtraj_state(t, r, i0 + j),
                                         tchi_dtraj_state(t, r, i0 + j + 1), mean + row * D,
                                         logvar + row * D);
      }
  }
  return TCH_OK;
}

void tchi_dtraj_stage(tchi_dnet *net, const tchi_dtraj *t, uint32_t i0, uint32_t k)
{
  stage_block(net, t, i0, k);
}
