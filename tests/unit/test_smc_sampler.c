/* Reinforced SMC's sampler pieces: the OU-DDS reference process (schedule values, kernels
 * against their closed forms, detailed balance of p_B with N(0, sigma^2), gradients against
 * finite differences, forward/backward trajectory batches), the learnt log-flow twist
 * (batched network against per-row evaluation, gradients, the beta schedules and the
 * partial energy) and tchi_smc_run (telescoping to single-trajectory weights and identity
 * with tchi_dsample_forward without resampling, exact log Ẑ under an exact proposal,
 * unbiased Ẑ with resampling and with exact partial resampling, the resampling rule and
 * the tempering target replayed from the record, callback errors, allocation failures).
 * Statistical checks use fixed seeds and state their margins. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "diffusion/diffusion.h"
#include "envs/env.h"
#include "smc/smc.h"
#include "teacher/behaviour.h"
#include "teacher.h"
#include "smc_fixtures.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Host target: log R(x) = log_z + log N(x; mean 1, sd^2 I); counts calls; can fail or
 * return NaN at a given call. */
typedef struct gauss {
  double mean, sd, log_z;
  int calls, fail_at, nan_at;
} gauss;

static int gauss_density(void *user, size_t n, size_t dim, const double *x, double *lp,
                         double *grad)
{
  gauss *g = user;
  g->calls++;
  if (g->fail_at == g->calls) return 7;
  double v = g->sd * g->sd;
  for (size_t i = 0; i < n; i++) {
    double sq = 0;
    for (size_t d = 0; d < dim; d++) {
      double e = x[i * dim + d] - g->mean;
      sq += e * e;
      if (grad) grad[i * dim + d] = -e / v;
    }
    lp[i] = g->log_z - 0.5 * (sq / v + (double)dim * log(2 * M_PI * v));
  }
  if (g->nan_at == g->calls) lp[n / 2] = NAN;
  return 0;
}

static tch_env *gauss_env(gauss *g, uint32_t dim)
{
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = dim;
  d.flags = TCH_ENERGY_HAS_GRAD;
  d.log_density = gauss_density;
  d.log_Z = g->log_z;
  d.user = g;
  tch_env *e = NULL;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &e), TCH_OK);
  return e;
}

static double log_normal(uint32_t dim, const double *x, const double *mu, double var)
{
  double sq = 0;
  for (uint32_t d = 0; d < dim; d++) sq += (x[d] - mu[d]) * (x[d] - mu[d]);
  return -0.5 * (sq / var + dim * log(2 * M_PI * var));
}

/* ---- OU-DDS schedule -------------------------------------------------------------------------- */

START_TEST(ou_schedule_values)
{
  /* the values the spec quotes for T = 64 (§2.1) */
  ck_assert_double_eq_tol(tchi_ou_dds_step(64, 6.0, 0), 0.248, 1e-3);
  ck_assert_double_eq_tol(tchi_ou_dds_step(64, 6.0, 32), 0.0605, 1e-4);
  ck_assert_double_eq_tol(tchi_ou_dds_step(64, 6.0, 63) / 8.7e-8, 1.0, 0.01);
  /* against a long-double evaluation of the formula, the total nu, monotone decrease */
  uint32_t Ts[3] = {8, 64, 128};
  for (int t = 0; t < 3; t++) {
    uint32_t T = Ts[t];
    long double c[129], sum = 0;
    for (uint32_t k = 0; k <= T; k++) {
      long double ph = (((long double)k / T + 0.008L) / 1.008L) * 3.14159265358979323846L * 0.5L;
      c[k] = powl(cosl(ph), 4);
      sum += c[k];
    }
    double total = 0, prev = INFINITY;
    for (uint32_t k = 0; k <= T; k++) {
      double a = tchi_ou_dds_step(T, 6.0, k);
      ck_assert_double_eq_tol(a, (double)(6.0L * c[k] / sum), 1e-13 * fmax(a, 1e-3));
      ck_assert(a < prev);
      prev = a;
      total += a;
    }
    ck_assert_double_eq_tol(total, 6.0, 1e-12);
  }
  /* few steps: a_0 > 1 is clipped (the reference clips sqrt(a) to [0, 1]) */
  tchi_dnet_spec s;
  small_spec(&s, 2, 2, 1.5);
  tchi_dstep st;
  tchi_dstep_at(&s, 0, &st);
  ck_assert(tchi_ou_dds_step(2, 6.0, 0) > 4.8);
  ck_assert(st.a == 1.0 && st.shrink == 0.0);
  ck_assert_double_eq_tol(st.var, 2.25, 1e-15);
  const double x0[2] = {0.3, -1.0}, x1[2] = {2.0, 1.0};
  ck_assert(isfinite(tchi_dstep_log_pb(&st, 2, x0, x1)));
  /* names and spec checks */
  int r;
  ck_assert_int_eq(tchi_dref_from_name("ou_dds", &r), TCH_OK);
  ck_assert_int_eq(r, TCHI_DREF_OU_DDS);
  ck_assert_str_eq(tchi_dref_name(TCHI_DREF_BROWNIAN), "brownian");
  ck_assert_int_eq(tchi_dref_from_name("ou", &r), TCH_E_ARG);
  tchi_dnet *net = NULL;
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  s.init_std = 0.0;
  ck_assert_int_eq(tchi_dnet_create(&s, &rng, &net), TCH_E_ARG);
  s.init_std = 1.0;
  s.noise_scale = NAN;
  ck_assert_int_eq(tchi_dnet_create(&s, &rng, &net), TCH_E_ARG);
  s.reference = 5;
  ck_assert_int_eq(tchi_dnet_create(&s, &rng, &net), TCH_E_ARG);
  ck_assert_ptr_null(net);
}
END_TEST

/* ---- OU-DDS kernels ----------------------------------------------------------------------------- */

START_TEST(ou_kernels_closed_form)
{
  tchi_dnet_spec s;
  const uint32_t D = 3, T = 16;
  const double sigma = 1.7;
  small_spec(&s, D, T, sigma);
  s.t_scale = 2.5;   /* only the learned-variance reference point of OU */
  tchi_rng rng;
  tchi_rng_seed(&rng, 11, 2);
  for (uint32_t k = 0; k < T; k++) {
    tchi_dstep st;
    tchi_dstep_at(&s, k, &st);
    double a = tchi_ou_dds_step(T, 6.0, k);
    ck_assert_double_eq_tol(st.a, a, 1e-15);
    double x0[3], x1[3], u[3], lv[3], lv0[3], mu[3], mu_b[3];
    for (uint32_t d = 0; d < D; d++) {
      x0[d] = 2 * tchi_rng_normal(&rng);
      x1[d] = 2 * tchi_rng_normal(&rng);
      u[d] = tchi_rng_normal(&rng);
      lv0[d] = log(2.5);
      lv[d] = log(2.5) + 0.4 * tchi_rng_normal(&rng);
      mu[d] = sqrt(1 - a) * x0[d] + a * u[d];
      mu_b[d] = sqrt(1 - a) * x1[d];
    }
    double var = a * sigma * sigma;
    /* forward, without and with a learned-variance correction */
    ck_assert_double_eq_tol(tchi_dstep_log_pf(&st, D, x0, x1, u, lv0), log_normal(D, x1, mu, var), 1e-9);
    double ref = 0;
    for (uint32_t d = 0; d < D; d++) {
      double v = var * exp(lv[d] - log(2.5));
      ref += log_normal(1, x1 + d, mu + d, v);
    }
    ck_assert_double_eq_tol(tchi_dstep_log_pf(&st, D, x0, x1, u, lv), ref, 1e-9);
    /* backward */
    ck_assert_double_eq_tol(tchi_dstep_log_pb(&st, D, x0, x1), log_normal(D, x0, mu_b, var), 1e-9);
    /* detailed balance with u = 0: p_0(x0) q(x1|x0) = p_0(x1) p_B(x0|x1) */
    const double zero[3] = {0, 0, 0};
    double lhs = tchi_dref_log_p0(&s, x0) + tchi_dstep_log_pf(&st, D, x0, x1, zero, lv0);
    double rhs = tchi_dref_log_p0(&s, x1) + tchi_dstep_log_pb(&st, D, x0, x1);
    ck_assert_double_eq_tol(lhs, rhs, 1e-9 * fmax(1.0, fabs(lhs)));
    /* gradients against central differences */
    double dm[3] = {0}, dl[3] = {0};
    double val = tchi_dstep_log_pf_grad(&st, D, x0, x1, u, lv, 0.7, dm, dl);
    ck_assert_double_eq_tol(val, ref, 1e-9);
    for (uint32_t d = 0; d < D; d++) {
      double h = 1e-6, up[3], lp[3];
      memcpy(up, u, sizeof up);
      up[d] += h;
      double fp = tchi_dstep_log_pf(&st, D, x0, x1, up, lv);
      up[d] -= 2 * h;
      double fm = tchi_dstep_log_pf(&st, D, x0, x1, up, lv);
      double fd = 0.7 * (fp - fm) / (2 * h);
      ck_assert_msg(fabs(fd - dm[d]) <= 1e-5 * fmax(1.0, fabs(fd)), "k %u d %u: du %g vs fd %g", k, d, dm[d], fd);
      memcpy(lp, lv, sizeof lp);
      lp[d] += h;
      fp = tchi_dstep_log_pf(&st, D, x0, x1, u, lp);
      lp[d] -= 2 * h;
      fm = tchi_dstep_log_pf(&st, D, x0, x1, u, lp);
      fd = 0.7 * (fp - fm) / (2 * h);
      ck_assert_msg(fabs(fd - dl[d]) <= 1e-5 * fmax(1.0, fabs(fd)), "k %u d %u: dlogvar %g vs fd %g", k, d, dl[d], fd);
    }
  }
  /* log p_0 and the marginals */
  double x[3] = {0.5, -2.0, 1.0};
  const double zero[3] = {0, 0, 0};
  ck_assert_double_eq_tol(tchi_dref_log_p0(&s, x), log_normal(D, x, zero, sigma * sigma), 1e-12);
  ck_assert_double_eq_tol(tchi_dref_log_marginal(&s, 7, x), log_normal(D, x, zero, sigma * sigma), 1e-12);
  /* the Brownian reference through tchi_dstep is exactly the kernels of kernels.c */
  tchi_dnet_spec b;
  small_spec(&b, D, T, 0);
  b.t_scale = 2.5;
  for (uint32_t k = 0; k < T; k++) {
    tchi_dstep st;
    tchi_dstep_at(&b, k, &st);
    double x0[3], x1[3], u[3], lv[3], d1[3] = {0}, d2[3] = {0}, e1[3] = {0}, e2[3] = {0};
    for (uint32_t d = 0; d < D; d++) {
      x0[d] = tchi_rng_normal(&rng);
      x1[d] = tchi_rng_normal(&rng);
      u[d] = tchi_rng_normal(&rng);
      lv[d] = 0.3 * tchi_rng_normal(&rng);
    }
    double dt = 1.0 / T;
    ck_assert(tchi_dstep_log_pf(&st, D, x0, x1, u, lv) == tchi_dkernel_log_pf(D, dt, x0, x1, u, lv));
    ck_assert(tchi_dstep_log_pb(&st, D, x0, x1) == tchi_dkernel_log_pb(D, k, dt, 2.5, x0, x1));
    ck_assert(tchi_dstep_log_pf_grad(&st, D, x0, x1, u, lv, 0.3, d1, e1) ==
              tchi_dkernel_log_pf_grad(D, dt, x0, x1, u, lv, 0.3, d2, e2));
    ck_assert(memcmp(d1, d2, sizeof d1) == 0 && memcmp(e1, e2, sizeof e1) == 0);
  }
  ck_assert(tchi_dref_log_p0(&b, x) == 0.0);
  ck_assert(tchi_dref_log_marginal(&b, 0, x) == 0.0);
  ck_assert_double_eq_tol(tchi_dref_log_marginal(&b, 4, x), log_normal(D, x, zero, 2.5 * 4 / 16.0), 1e-12);
}
END_TEST

/* ---- OU-DDS trajectory batches -------------------------------------------------------------------- */

START_TEST(ou_trajectories)
{
  const uint32_t D = 3, T = 8;
  const double sigma = 2.0;
  tchi_dnet_spec s;
  small_spec(&s, D, T, sigma);
  const double zero[3] = {0, 0, 0};
  tchi_rng rng;
  for (int randomised = 0; randomised < 2; randomised++) {
    tchi_dnet *net = make_net(&s, 5, randomised ? 0.3 : 0.0);
    tchi_dtraj tr, bw;
    tchi_dtraj_init(&tr);
    tchi_dtraj_init(&bw);
    const size_t n = randomised ? 200 : 4000;
    tchi_rng_seed(&rng, 21, 3);
    ck_assert_int_eq(tchi_dsample_forward(net, NULL, &rng, n, 0.0, &tr), TCH_OK);
    double *lpf = malloc(n * sizeof *lpf);
    ck_assert_int_eq(tchi_dnet_log_pf(net, &tr, 0, lpf), TCH_OK);
    double m2 = 0;
    for (size_t i = 0; i < n; i++) {
      /* the recomputed log_pf (log p_0 folded in) matches the sampler's */
      ck_assert_double_eq_tol(lpf[i], tr.log_pf[i], 1e-9 * fmax(1.0, fabs(lpf[i])));
      const double *xT = tchi_dtraj_state(&tr, i, T);
      if (!randomised) {
        /* u = 0: telescoped detailed balance, log_pf - log_pb = log N(x_T; 0, sigma^2) */
        ck_assert_double_eq_tol(tr.log_pf[i] - tr.log_pb[i], log_normal(D, xT, zero, sigma * sigma), 1e-8);
        for (uint32_t d = 0; d < D; d++) m2 += xT[d] * xT[d];
      }
    }
    if (!randomised) {
      /* x_T ~ N(0, sigma^2 I): sd of the variance estimate ~ sigma^2 sqrt(2 / 12000) = 1.3% */
      double var = m2 / (double)(n * D);
      ck_assert_msg(fabs(var / (sigma * sigma) - 1.0) < 0.05, "terminal variance %g", var);
    }
    /* backward trajectories from the terminal points */
    double *xT = malloc(n * D * sizeof *xT);
    tchi_dtraj_terminals(&tr, xT);
    ck_assert_int_eq(tchi_dsample_backward(net, NULL, &rng, n, xT, &bw), TCH_OK);
    for (size_t i = 0; i < n; i++) {
      ck_assert(memcmp(tchi_dtraj_state(&bw, i, T), xT + i * D, D * sizeof(double)) == 0);
      double lp0 = tchi_dref_log_p0(&s, tchi_dtraj_state(&bw, i, 0)), pb = 0, pf = lp0;
      for (uint32_t k = 0; k < T; k++) {
        tchi_dstep st;
        tchi_dstep_at(&s, k, &st);
        pb += tchi_dstep_log_pb(&st, D, tchi_dtraj_state(&bw, i, k), tchi_dtraj_state(&bw, i, k + 1));
      }
      ck_assert_double_eq_tol(bw.log_pb[i], pb, 1e-9 * fmax(1.0, fabs(pb)));
      (void)pf;
      if (!randomised)
        ck_assert_double_eq_tol(bw.log_pf[i] - bw.log_pb[i], log_normal(D, xT + i * D, zero, sigma * sigma), 1e-8);
    }
    free(lpf);
    free(xT);
    tchi_dtraj_destroy(&tr);
    tchi_dtraj_destroy(&bw);
    tchi_dnet_free(net);
  }
}
END_TEST

/* ---- flow network and beta schedule ------------------------------------------------------------------ */

static double flow_loss(tchi_dflow *f, uint32_t ns, const uint32_t *steps, size_t m,
                        const double *x, const double *c, int keep)
{
  const double *o;
  ck_assert_int_eq(tchi_dflow_forward(f, ns, steps, m, x, keep, &o), TCH_OK);
  double l = 0;
  for (size_t r = 0; r < ns * m; r++) l += c[r] * o[r];
  return l;
}

START_TEST(flow_network)
{
  const uint32_t D = 3, T = 8;
  tchi_dflow *f = make_flow(D, T, 3, 0.5, TCHI_BETA_LEARNT);
  for (uint32_t i = 0; i < f->spec.hidden; i++) f->phase[i] = (float)(0.1 * i);
  tchi_rng rng;
  tchi_rng_seed(&rng, 4, 4);
  const uint32_t steps[3] = {0, 5, 8};
  const size_t m = 5, rows = 15;
  double x[15 * 3], c[15];
  for (size_t i = 0; i < rows * D; i++) x[i] = tchi_rng_normal(&rng);
  for (size_t i = 0; i < rows; i++) c[i] = tchi_rng_normal(&rng);
  /* batched = one row at a time */
  const double *o;
  ck_assert_int_eq(tchi_dflow_forward(f, 3, steps, m, x, 0, &o), TCH_OK);
  double batched[15];
  memcpy(batched, o, sizeof batched);
  for (size_t r = 0; r < rows; r++) {
    ck_assert_int_eq(tchi_dflow_forward(f, 1, &steps[r / m], 1, x + r * D, 0, &o), TCH_OK);
    ck_assert_double_eq_tol(o[0], batched[r], 1e-5 * fmax(1.0, fabs(o[0])));
  }
  /* backward without a kept forward */
  ck_assert_int_eq(tchi_dflow_backward(f, c), TCH_E_STATE);
  /* gradients against central differences in float: a sample of parameters of each part */
  tchi_dflow_zero_grad(f);
  flow_loss(f, 3, steps, m, x, c, 1);
  ck_assert_int_eq(tchi_dflow_backward(f, c), TCH_OK);
  struct { float *p, *g; size_t n; } parts[3] = {
    {f->time.params, f->time.grads, f->time.n_params},
    {f->phase, f->phase_grad, f->spec.hidden},
    {f->body.params, f->body.grads, f->body.n_params}};
  int checked = 0;
  double largest[3] = {0, 0, 0};   /* the check must see real gradients in every part */
  for (int q = 0; q < 3; q++)
    for (int t = 0; t < 12; t++) {
      size_t i = tchi_rng_below(&rng, (uint32_t)parts[q].n);
      float save = parts[q].p[i];
      const float h = 1e-2f;
      parts[q].p[i] = save + h;
      double fp = flow_loss(f, 3, steps, m, x, c, 0);
      parts[q].p[i] = save - h;
      double fm = flow_loss(f, 3, steps, m, x, c, 0);
      parts[q].p[i] = save;
      double fd = (fp - fm) / (2.0 * h), an = parts[q].g[i];
      ck_assert_msg(fabs(fd - an) <= 2e-2 * fmax(0.05, fabs(an)) + 2e-3,
                    "part %d param %zu: analytic %g, fd %g", q, i, an, fd);
      largest[q] = fmax(largest[q], fabs(an));
      checked++;
    }
  ck_assert_int_eq(checked, 36);
  for (int q = 0; q < 3; q++) ck_assert_msg(largest[q] > 0.05, "part %d: largest gradient %g", q, largest[q]);
  /* bad arguments */
  uint32_t bad = T + 1;
  ck_assert_int_eq(tchi_dflow_forward(f, 1, &bad, 1, x, 0, &o), TCH_E_ARG);
  ck_assert_int_eq(tchi_dflow_forward(f, 0, steps, 1, x, 0, &o), TCH_E_ARG);
  tchi_param_group g[TCHI_DFLOW_MAX_GROUPS];
  ck_assert_uint_eq(tchi_dflow_param_groups(f, 1e-3, 1e-1, 0, g), 4);
  ck_assert(g[3].pd == f->beta_logit && g[3].n == T && g[3].lr == 1e-1);
  tchi_dflow_free(f);
}
END_TEST

START_TEST(beta_schedules_and_partial_energy)
{
  const uint32_t D = 2, T = 10;
  tchi_dnet_spec ou, br;
  small_spec(&ou, D, T, 1.5);
  small_spec(&br, D, T, 0);
  tchi_dflow *f = make_flow(D, T, 8, 0.5, TCHI_BETA_LEARNT);
  double beta[11];
  /* learnt at initialisation (b = 1) is the linear schedule */
  ck_assert_int_eq(tchi_dflow_betas(f, &ou, beta), TCH_OK);
  for (uint32_t k = 0; k <= T; k++) ck_assert_double_eq_tol(beta[k], (double)k / T, 1e-15);
  /* random logits: monotone from exactly 0 to exactly 1; gradient against differences */
  tchi_rng rng;
  tchi_rng_seed(&rng, 9, 9);
  for (uint32_t j = 0; j < T; j++) f->beta_logit[j] = 2.0 * tchi_rng_normal(&rng);
  ck_assert_int_eq(tchi_dflow_betas(f, &ou, beta), TCH_OK);
  ck_assert(beta[0] == 0.0 && beta[T] == 1.0);
  for (uint32_t k = 0; k < T; k++) ck_assert(beta[k + 1] > beta[k]);
  double adj[11];
  for (uint32_t k = 0; k <= T; k++) adj[k] = tchi_rng_normal(&rng);
  memset(f->beta_grad, 0, T * sizeof(double));
  tchi_dflow_beta_backward(f, adj);
  for (uint32_t j = 0; j < T; j++) {
    double save = f->beta_logit[j], h = 1e-6, bp[11], bm[11], fp = 0, fm = 0;
    f->beta_logit[j] = save + h;
    tchi_dflow_betas(f, &ou, bp);
    f->beta_logit[j] = save - h;
    tchi_dflow_betas(f, &ou, bm);
    f->beta_logit[j] = save;
    for (uint32_t k = 0; k <= T; k++) {
      fp += adj[k] * bp[k];
      fm += adj[k] * bm[k];
    }
    ck_assert_double_eq_tol(f->beta_grad[j], (fp - fm) / (2 * h), 1e-7);
  }
  /* the partial energy at an interior step, and the boundary conventions */
  double x[6] = {0.3, -1.2, 2.0, 0.5, -0.7, 0.1}, lr[3] = {-3.0, 0.5, 1.25}, out[3];
  ck_assert_int_eq(tchi_dflow_log_f(f, &ou, 4, 3, x, lr, out), TCH_OK);
  const double *fphi;
  uint32_t k4 = 4;
  ck_assert_int_eq(tchi_dflow_forward(f, 1, &k4, 3, x, 0, &fphi), TCH_OK);
  for (int i = 0; i < 3; i++) {
    double want = fphi[i] + (1 - beta[4]) * tchi_dref_log_marginal(&ou, 4, x + 2 * i) + beta[4] * lr[i];
    ck_assert(fabs(fphi[i]) > 1e-3);   /* the twist is really there */
    ck_assert_double_eq_tol(out[i], want, 1e-12);
  }
  ck_assert_int_eq(tchi_dflow_log_f(f, &ou, 0, 3, x, NULL, out), TCH_OK);
  for (int i = 0; i < 3; i++) ck_assert(out[i] == tchi_dref_log_p0(&ou, x + 2 * i));
  ck_assert_int_eq(tchi_dflow_log_f(f, &ou, T, 3, x, lr, out), TCH_OK);
  for (int i = 0; i < 3; i++) ck_assert(out[i] == lr[i]);
  /* no flow: f = 0 with the linear schedule; Brownian reference marginal */
  ck_assert_int_eq(tchi_dflow_log_f(NULL, &br, 3, 3, x, lr, out), TCH_OK);
  for (int i = 0; i < 3; i++)
    ck_assert_double_eq_tol(out[i], 0.7 * tchi_dref_log_marginal(&br, 3, x + 2 * i) + 0.3 * lr[i], 1e-12);
  ck_assert_int_eq(tchi_dflow_log_f(f, &ou, T + 1, 3, x, lr, out), TCH_E_ARG);
  tchi_dflow_free(f);
  /* linear and cosine */
  f = make_flow(D, T, 8, 0, TCHI_BETA_COSINE);
  ck_assert_int_eq(tchi_dflow_betas(f, &br, beta), TCH_E_ARG);
  ck_assert_int_eq(tchi_dflow_betas(f, &ou, beta), TCH_OK);
  double prod = 1;
  for (uint32_t k = T + 1; k-- > 0;) {
    prod *= 1 - fmin(1.0, tchi_ou_dds_step(T, 6.0, k));
    ck_assert_double_eq_tol(beta[k], prod, 1e-15);
    if (k < T) ck_assert(beta[k] <= beta[k + 1]);
  }
  tchi_param_group g[TCHI_DFLOW_MAX_GROUPS];
  ck_assert_uint_eq(tchi_dflow_param_groups(f, 1e-3, 1e-1, 0, g), 3);   /* no beta group */
  tchi_dflow_free(f);
  f = make_flow(D, T, 8, 0, TCHI_BETA_LINEAR);
  ck_assert_int_eq(tchi_dflow_betas(f, &br, beta), TCH_OK);
  for (uint32_t k = 0; k <= T; k++) ck_assert(beta[k] == (double)k / T);
  tchi_beta_schedule b;
  ck_assert_int_eq(tchi_beta_schedule_from_name("cosine", &b), TCH_OK);
  ck_assert_int_eq(b, TCHI_BETA_COSINE);
  ck_assert_int_eq(tchi_beta_schedule_from_name("geometric", &b), TCH_E_ARG);
  tchi_dflow_free(f);
}
END_TEST

/* ---- the SMC sampler ------------------------------------------------------------------------------------- */

/* Replays the weight bookkeeping from the record: checks log Ẑ, the ESS values, the
 * resampling rule and, after tempered resampling, ESS_n(lw / T*) = rho; returns the number
 * of chunks resampled with T* > 1. */
static int replay_record(const tchi_smc_sampler *o, const tchi_smc_params *p)
{
  size_t n = o->n;
  uint32_t K = o->K;
  double *lw = malloc(n * sizeof *lw), *tmp = malloc(n * sizeof *tmp);
  for (size_t i = 0; i < n; i++) lw[i] = -log((double)n);
  double log_z = 0;
  int tempered = 0;
  for (uint32_t j = 0; j < K; j++) {
    const double *g = o->chunk_log_g + (size_t)j * n;
    for (size_t i = 0; i < n; i++) {
      /* incremental weight = end twist - start twist + log p_B - log q of that particle */
      size_t q = (size_t)j * n + i;
      ck_assert_double_eq_tol(g[i], o->chunk_log_f1[q] - o->chunk_log_f0[q] + o->chunk_log_pb[q] - o->chunk_log_pf[q], 1e-12 * fmax(1, fabs(g[i])));
      lw[i] += g[i];
    }
    double lse = tchi_smc_logsumexp(n, lw);
    ck_assert_double_eq_tol(lse, o->chunk_log_z_inc[j], 1e-12 * fmax(1, fabs(lse)));
    log_z += lse;
    double ess = tchi_smc_ess_normalised(n, lw, 1.0);
    ck_assert_double_eq_tol(ess, o->chunk_ess[j], 1e-12);
    int want = p->target_ess < 1.0 && j + 1 < K && ess < p->resample_threshold;
    ck_assert_int_eq(o->chunk_resampled[j], want);
    const uint32_t *anc = o->chunk_anc + (size_t)j * n;
    if (want) {
      double T = o->chunk_temperature[j];
      ck_assert(T >= 1.0);
      if (T > 1.0) {
        tempered++;
        ck_assert(ess < p->target_ess);
        double et = tchi_smc_ess_normalised(n, lw, 1.0 / T);
        ck_assert_msg(fabs(et - p->target_ess) <= TCHI_SMC_TEMPER_RTOL * p->target_ess + 1e-12,
                      "chunk %u: tempered ESS %g, target %g", j, et, p->target_ess);
        ck_assert_double_eq_tol(et, o->chunk_ess_tempered[j], 1e-9);
      } else {
        ck_assert(ess >= p->target_ess);
      }
      if (p->unbiased_partial_resampling) log_z += o->chunk_log_correction[j];
      for (size_t i = 0; i < n; i++) tmp[i] = (1.0 - 1.0 / T) * lw[anc[i]];
      memcpy(lw, tmp, n * sizeof *lw);
    } else {
      for (size_t i = 0; i < n; i++) ck_assert_uint_eq(anc[i], i);
    }
    /* states and twists continue by ancestor */
    if (j + 1 < K)
      for (size_t i = 0; i < n; i++) {
        ck_assert(memcmp(o->chunk_x0 + ((size_t)(j + 1) * n + i) * o->dim,
                         o->chunk_x1 + ((size_t)j * n + anc[i]) * o->dim, o->dim * sizeof(double)) == 0);
        ck_assert(o->chunk_log_f0[(size_t)(j + 1) * n + i] == o->chunk_log_f1[(size_t)j * n + anc[i]]);
      }
    tchi_smc_log_normalise(n, lw);
  }
  ck_assert_double_eq_tol(log_z, o->log_z, 1e-10 * fmax(1, fabs(log_z)));
  /* outputs: the weights average to Ẑ, the particles and log R are the last chunk's */
  ck_assert_double_eq_tol(tchi_smc_log_mean_exp(n, o->log_w), o->log_z, 1e-10 * fmax(1, fabs(o->log_z)));
  for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(o->log_w[i], lw[i] + log_z + log((double)n), 1e-9);
  ck_assert(memcmp(o->x, o->chunk_x1 + (size_t)(K - 1) * n * o->dim, n * o->dim * sizeof(double)) == 0);
  ck_assert(memcmp(o->log_r, o->chunk_log_r1 + (size_t)(K - 1) * n, n * sizeof(double)) == 0);
  ck_assert_uint_eq(o->chunk_resampled[K - 1], 0);
  free(lw);
  free(tmp);
  return tempered;
}

START_TEST(smc_telescopes_and_matches_forward_sampling)
{
  /* Without resampling the chunk products are single-trajectory weights and the particles
   * are exactly tchi_dsample_forward's trajectories for the same stream, for both
   * reference processes, any twist and any chunking. */
  const uint32_t D = 2, T = 12;
  gauss g = {0.5, 0.8, 0.3, 0, 0, 0};
  tch_env *env = gauss_env(&g, D);
  for (int ref = 0; ref < 2; ref++) {
    tchi_dnet_spec s;
    small_spec(&s, D, T, ref ? 1.5 : 0);
    tchi_dnet *net = make_net(&s, 7, 0.4);
    tchi_dflow *flow = make_flow(D, T, 7, 0.5, TCHI_BETA_LEARNT);
    for (uint32_t j = 0; j < T; j++) flow->beta_logit[j] = 0.5 * sin(j);
    const uint32_t Ks[3] = {1, 3, 12};
    tchi_smc_sampler o;
    tchi_smc_sampler_init(&o);
    for (int kk = 0; kk < 3; kk++) {
      const size_t n = 64;
      tchi_smc_params p;
      tchi_smc_params_default(&p, n, Ks[kk]);
      p.target_ess = 1.0;   /* resampling off */
      p.keep_paths = 1;
      tchi_rng rng;
      tchi_rng_seed(&rng, 100 + kk, 6);
      tch_status st = tchi_smc_run(net, flow, env, &p, &rng, &o);
      ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
      ck_assert_uint_eq(o.n_resamples, 0);
      ck_assert_uint_eq(o.n_energy_evals, n * Ks[kk]);
      replay_record(&o, &p);
      tchi_dtraj tr;
      tchi_dtraj_init(&tr);
      tchi_rng_seed(&rng, 100 + kk, 6);
      ck_assert_int_eq(tchi_dsample_forward(net, NULL, &rng, n, 0.0, &tr), TCH_OK);
      uint32_t L = T / Ks[kk];
      for (size_t i = 0; i < n; i++) {
        /* identical states, step by step */
        for (uint32_t j = 0; j < Ks[kk]; j++)
          for (uint32_t l = 0; l <= L; l++)
            ck_assert(memcmp(o.path + (((size_t)j * n + i) * (L + 1) + l) * D,
                             tchi_dtraj_state(&tr, i, j * L + l), D * sizeof(double)) == 0);
        double pf = o.log_p0[i], pb = 0;
        for (uint32_t j = 0; j < Ks[kk]; j++) {
          pf += o.chunk_log_pf[(size_t)j * n + i];
          pb += o.chunk_log_pb[(size_t)j * n + i];
        }
        ck_assert_double_eq_tol(pf, tr.log_pf[i], 1e-9 * fmax(1, fabs(pf)));
        ck_assert_double_eq_tol(pb, tr.log_pb[i], 1e-9 * fmax(1, fabs(pb)));
        /* the SMC weight is the single-trajectory log-IW */
        double iw = o.log_r[i] + tr.log_pb[i] - tr.log_pf[i];
        ck_assert_double_eq_tol(o.log_w[i], iw, 1e-9 * fmax(1, fabs(iw)));
      }
      tchi_dtraj_destroy(&tr);
    }
    tchi_smc_sampler_destroy(&o);
    tchi_dflow_free(flow);
    tchi_dnet_free(net);
  }
  tch_env_free(env);
}
END_TEST

START_TEST(smc_exact_proposal_gives_exact_log_z)
{
  /* Target = Z N(0, sigma^2 I), the OU reference's own marginal; the initial policy (u = 0)
   * is then exact: every trajectory weight is Z and log Ẑ = log Z in every run. */
  const uint32_t D = 3, T = 16;
  const double sigma = 1.3;
  gauss g = {0.0, sigma, 2.75, 0, 0, 0};
  tch_env *env = gauss_env(&g, D);
  tchi_dnet_spec s;
  small_spec(&s, D, T, sigma);
  tchi_dnet *net = make_net(&s, 3, 0.0);
  tchi_dflow *flow = make_flow(D, T, 3, 0.0, TCHI_BETA_LEARNT);   /* f = 0 exactly */
  for (uint32_t j = 0; j < T; j++) flow->beta_logit[j] = cos(j);   /* any beta */
  tchi_smc_sampler o;
  tchi_smc_sampler_init(&o);
  for (int seed = 0; seed < 5; seed++) {
    tchi_smc_params p;
    tchi_smc_params_default(&p, 100, 4);
    tchi_rng rng;
    tchi_rng_seed(&rng, seed, 8);
    ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_OK);
    ck_assert_double_eq_tol(o.log_z, 2.75, 1e-9);
    for (size_t i = 0; i < 100; i++) ck_assert_double_eq_tol(o.log_w[i], 2.75, 1e-9);
    for (uint32_t j = 0; j < 4; j++) ck_assert_double_eq_tol(o.chunk_ess[j], 1.0, 1e-12);
    ck_assert_uint_eq(o.n_resamples, 0);
  }
  tchi_smc_sampler_destroy(&o);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}
END_TEST

/* mean of Ẑ / Z over runs and its standard error */
static void z_ratio_stats(tchi_dnet *net, tchi_dflow *flow, tch_env *env, const tchi_smc_params *p,
                          double log_z, int runs, uint64_t seed0, double *mean, double *se,
                          int *n_resampled, int *n_tempered)
{
  tchi_smc_sampler o;
  tchi_smc_sampler_init(&o);
  double s1 = 0, s2 = 0;
  *n_resampled = *n_tempered = 0;
  for (int r = 0; r < runs; r++) {
    tchi_rng rng;
    tchi_rng_seed(&rng, seed0 + r, 9);
    tch_status st = tchi_smc_run(net, flow, env, p, &rng, &o);
    ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
    *n_tempered += replay_record(&o, p);
    *n_resampled += (int)o.n_resamples;
    double z = exp(o.log_z - log_z);
    s1 += z;
    s2 += z * z;
  }
  *mean = s1 / runs;
  *se = sqrt(fmax(0, s2 / runs - *mean * *mean) / (runs - 1));
  tchi_smc_sampler_destroy(&o);
}

START_TEST(smc_log_z_is_unbiased)
{
  /* Gaussian target Z N(0.8, 0.6^2 I) in 2-D, OU reference sigma = 1 with the initial policy
   * (u = 0) and a random twist: the proposal is poor, so weights degenerate and resampling
   * happens. E[Ẑ] = Z holds for ordinary resampling (rho = 0: T* = 1 always) and for
   * tempered partial resampling with the exact correction. Margin: 4 standard errors, and
   * the standard error must be small enough (< 0.05) for the test to be able to fail. */
  const uint32_t D = 2, T = 16;
  const double log_z = 0.3;
  gauss g = {0.8, 0.6, log_z, 0, 0, 0};
  tch_env *env = gauss_env(&g, D);
  tchi_dnet_spec s;
  small_spec(&s, D, T, 1.0);
  tchi_dnet *net = make_net(&s, 13, 0.0);
  tchi_dflow *flow = make_flow(D, T, 13, 0.3, TCHI_BETA_LEARNT);
  tchi_smc_params p;
  tchi_smc_params_default(&p, 64, 8);
  p.resample_threshold = 0.7;
  p.target_ess = 0.0;
  double mean, se;
  int nres, ntemp;
  z_ratio_stats(net, flow, env, &p, log_z, 400, 1000, &mean, &se, &nres, &ntemp);
  fprintf(stderr, "ordinary resampling: E[Zhat/Z] = %.4f +- %.4f, %d resamplings\n", mean, se, nres);
  ck_assert_msg(nres > 400, "resampling must happen (%d)", nres);
  ck_assert_int_eq(ntemp, 0);
  ck_assert(se < 0.05);
  ck_assert_msg(fabs(mean - 1.0) < 4 * se, "E[Zhat/Z] = %g +- %g", mean, se);

  /* tempered partial resampling, exact variant: rho = 0.5 > kappa forces T* > 1 */
  p.resample_threshold = 0.7;
  p.target_ess = 0.5;
  p.unbiased_partial_resampling = 1;
  z_ratio_stats(net, flow, env, &p, log_z, 400, 5000, &mean, &se, &nres, &ntemp);
  fprintf(stderr, "tempered (exact): E[Zhat/Z] = %.4f +- %.4f, %d resamplings, %d tempered\n", mean, se, nres, ntemp);
  ck_assert_msg(ntemp > 100, "tempering must happen (%d)", ntemp);
  ck_assert(se < 0.05);
  ck_assert_msg(fabs(mean - 1.0) < 4 * se, "E[Zhat/Z] = %g +- %g", mean, se);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}
END_TEST

START_TEST(smc_resampling_rule_and_tempering)
{
  /* A narrow, offset target makes the ESS collapse: the paper's kappa = 0.2, rho = 0.05.
   * The replay checks every chunk: resampled iff ESS_n < kappa and not the last chunk;
   * ESS_n(lw / T*) = rho after tempering. Over the seeds both tempering and a collapsed
   * last chunk (ESS_n < kappa, not resampled) must occur. Also with the Brownian reference
   * and each resampler. */
  const uint32_t D = 2, T = 12;
  gauss g = {1.5, 0.25, -1.0, 0, 0, 0};
  tch_env *env = gauss_env(&g, D);
  int tempered = 0, last_low = 0, plain = 0;
  for (int ref = 0; ref < 2; ref++) {
    tchi_dnet_spec s;
    small_spec(&s, D, T, ref ? 1.0 : 0);
    tchi_dnet *net = make_net(&s, 17, 0.2);
    tchi_dflow *flow = make_flow(D, T, 17, 0.2, TCHI_BETA_LEARNT);
    tchi_smc_sampler o;
    tchi_smc_sampler_init(&o);
    for (int seed = 0; seed < 30; seed++) {
      tchi_smc_params p;
      tchi_smc_params_default(&p, 200, seed % 2 ? 4 : 6);
      p.resampler = (tchi_resampler)(seed % TCHI_RESAMPLER_COUNT);
      tchi_rng rng;
      tchi_rng_seed(&rng, seed, 10 + ref);
      tch_status st = tchi_smc_run(net, flow, env, &p, &rng, &o);
      ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
      tempered += replay_record(&o, &p);
      for (uint32_t j = 0; j + 1 < o.K; j++)
        if (o.chunk_resampled[j] && o.chunk_temperature[j] == 1.0) plain++;
      if (o.chunk_ess[o.K - 1] < p.resample_threshold) last_low++;
    }
    tchi_smc_sampler_destroy(&o);
    tchi_dflow_free(flow);
    tchi_dnet_free(net);
  }
  fprintf(stderr, "tempered resamplings %d, plain %d, collapsed last chunks %d\n", tempered, plain, last_low);
  ck_assert(tempered > 0);
  ck_assert(plain > 0);
  ck_assert(last_low > 0);
  tch_env_free(env);
}
END_TEST

START_TEST(smc_callback_errors_and_arguments)
{
  const uint32_t D = 2, T = 8;
  gauss g = {0.0, 1.0, 0.0, 0, 0, 0};
  tch_env *env = gauss_env(&g, D);
  tchi_dnet_spec s;
  small_spec(&s, D, T, 1.0);
  tchi_dnet *net = make_net(&s, 1, 0.1);
  tchi_dflow *flow = make_flow(D, T, 1, 0.1, TCHI_BETA_LEARNT);
  tchi_smc_sampler o;
  tchi_smc_sampler_init(&o);
  tchi_smc_params p;
  tchi_smc_params_default(&p, 32, 4);
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  /* a NaN energy, at the first and at a later chunk end */
  for (int at = 1; at <= 3; at += 2) {
    g.calls = 0;
    g.nan_at = at;
    ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_NUMERIC);
    ck_assert_msg(strstr(tch_last_error(), "row 16") != NULL, "%s", tch_last_error());
    g.nan_at = 0;
    g.calls = 0;
    g.fail_at = at;
    ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_CALLBACK);
    ck_assert_int_eq(tch_last_callback_code(), 7);
    g.fail_at = 0;
  }
  /* still usable afterwards */
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_OK);
  /* arguments */
  p.n_chunks = 3;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_ARG);
  p.n_chunks = 4;
  p.n_particles = 0;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_ARG);
  p.n_particles = 32;
  p.target_ess = NAN;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_ARG);
  p.target_ess = 0.05;
  ck_assert_int_eq(tchi_smc_run(NULL, flow, env, &p, &rng, &o), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_run(net, flow, NULL, &p, &rng, &o), TCH_E_ARG);
  tchi_dflow *f3 = make_flow(D, 4, 1, 0, TCHI_BETA_LINEAR);   /* other T */
  ck_assert_int_eq(tchi_smc_run(net, f3, env, &p, &rng, &o), TCH_E_ARG);
  tchi_dflow_free(f3);
  gauss g3 = {0.0, 1.0, 0.0, 0, 0, 0};
  tch_env *env3 = gauss_env(&g3, 3);   /* other dimension */
  ck_assert_int_eq(tchi_smc_run(net, flow, env3, &p, &rng, &o), TCH_E_ARG);
  tch_env_free(env3);
  /* a Langevin net: the gradient comes from the env at every step (T N more points) */
  tchi_dnet_spec sl = s;
  sl.langevin = 1;
  tchi_dnet *lnet = make_net(&sl, 2, 0.1);
  ck_assert_int_eq(tchi_smc_run(lnet, flow, env, &p, &rng, &o), TCH_OK);
  ck_assert_uint_eq(o.n_energy_evals, 32 * 4 + 32 * T);
  g.calls = 0;
  g.nan_at = 2;   /* inside a chunk: a step's gradient call */
  ck_assert_int_eq(tchi_smc_run(lnet, flow, env, &p, &rng, &o), TCH_E_NUMERIC);
  g.nan_at = 0;
  tchi_dnet_free(lnet);
  tchi_smc_sampler_destroy(&o);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}
END_TEST

START_TEST(smc_allocation_failures)
{
  /* Every allocation of a first run (sampler, network and flow workspaces) may fail: the
   * status is TCH_E_NOMEM, nothing leaks (ASan), and a later run succeeds. */
  const uint32_t D = 2, T = 8;
  gauss g = {0.0, 1.0, 0.0, 0, 0, 0};
  tch_env *env = gauss_env(&g, D);
  tchi_dnet_spec s;
  small_spec(&s, D, T, 1.0);
  tchi_smc_params p;
  tchi_smc_params_default(&p, 40, 2);
  p.keep_paths = 1;
  int failures = 0;
  for (uint64_t k = 1;; k++) {
    tchi_dnet *net = make_net(&s, 1, 0.1);
    tchi_dflow *flow = make_flow(D, T, 1, 0.1, TCHI_BETA_LEARNT);
    tchi_smc_sampler o;
    tchi_smc_sampler_init(&o);
    tchi_rng rng;
    tchi_rng_seed(&rng, 2, 2);
    tchi_alloc_fail_at(k);
    tch_status st = tchi_smc_run(net, flow, env, &p, &rng, &o);
    tchi_alloc_fail_at(0);
    ck_assert_msg(st == TCH_OK || st == TCH_E_NOMEM, "k %llu: %d", (unsigned long long)k, (int)st);
    if (st != TCH_OK) {
      failures++;
      ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_OK);
    }
    tchi_smc_sampler_destroy(&o);
    tchi_dflow_free(flow);
    tchi_dnet_free(net);
    if (st == TCH_OK) break;
  }
  ck_assert(failures > 5);
  tch_env_free(env);
}
END_TEST

/* ---- MALA settings through tch_smc, and tch_smc as a mixer source ------------------------------ */

#define MX_T 16
#define MX_N 32

static tch_trainer *tiny_trainer(tch_env *e, int rsmc, const char *mala_steps)
{
  const char *kv[] = {"seed", "3", "nn.hidden_dim", "32", "train.batch_size", "32",
                      "train.steps", "40", "smc.enabled", rsmc ? "true" : "false",
                      "smc.n_chunks", "4", "smc.prefill_batches", "2", "smc.buffer_batches", "4",
                      "smc.flow_hidden", "16", "smc.init_std", "20", "smc.replay_ratio", "1",
                      "smc.mala_steps", mala_steps, NULL};
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  for (const char **k = kv; *k; k += 2) {
    if (!rsmc && strncmp(k[0], "smc.", 4) == 0 && strcmp(k[0], "smc.mala_steps") != 0 &&
        strcmp(k[0], "smc.n_chunks") != 0)
      continue;
    ck_assert_int_eq(tch_config_set_from_string(c, k[0], k[1]), TCH_OK);
  }
  tch_trainer *t = NULL;
  tch_status st = tch_trainer_create(e, c, &t);
  ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
  tch_config_free(c);
  return t;
}

static tch_env *tiny_gmm40(void)
{
  tch_config *c;
  tch_env *e;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", MX_T), TCH_OK);
  ck_assert_int_eq(tch_env_create_gmm40(2, c, &e), TCH_OK);
  tch_config_free(c);
  return e;
}

static double smc_value(const tch_smc *s, const char *name)
{
  double v;
  ck_assert_int_eq(tch_smc_metric(s, name, &v), TCH_OK);
  return v;
}

START_TEST(smc_handle_mala_settings)
{
  /* MALA settings resolve from the descriptor or the config; a version-1 descriptor (40
   * bytes, garbage after it) never reads the new fields; moves without a gradient are
   * TCH_E_CONFIG at creation; a run with moves counts them. */
  tch_env *e = tiny_gmm40();
  tch_trainer *t = tiny_trainer(e, 1, "2");
  tch_smc *s = NULL;
  tch_smc_desc d;
  memset(&d, 0xab, sizeof d);   /* what lies beyond an old descriptor */
  d.struct_size = (uint32_t)offsetof(tch_smc_desc, mala_step);
  ck_assert_uint_eq(d.struct_size, 40);
  d.n_particles = MX_N;
  d.n_chunks = 4;
  d.resampler = TCH_SMC_RESAMPLER_CONFIG;
  d.resample_threshold = 0.0;
  d.target_ess = 0.0;
  d.unbiased = 0;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_OK);
  ck_assert(smc_value(s, "mala_steps") == 2.0);        /* smc.mala_steps */
  ck_assert(smc_value(s, "mala_step") == TCHI_SMC_MALA_STEP);
  ck_assert(isnan(smc_value(s, "mala_accept")));
  double *x = malloc(MX_N * 2 * sizeof *x), lw[MX_N], lz;
  ck_assert_int_eq(tch_smc_run(s, 1, MX_N, x, lw, &lz), TCH_OK);
  ck_assert(smc_value(s, "energy_evals") == MX_N * 4 * 3);
  double acc = smc_value(s, "mala_accept");
  ck_assert_msg(acc > 0 && acc <= 1, "acceptance %g", acc);
  tch_smc_free(s);
  tch_smc_desc_init(&d);
  d.n_particles = MX_N;
  d.mala_steps = -1;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_OK);
  ck_assert(smc_value(s, "mala_steps") == 0.0);
  ck_assert_int_eq(tch_smc_run(s, 1, MX_N, x, lw, &lz), TCH_OK);
  ck_assert(smc_value(s, "energy_evals") == MX_N * 4);
  ck_assert(isnan(smc_value(s, "mala_accept")));
  tch_smc_free(s);
  d.mala_steps = 5;
  d.mala_step = 0.01;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_OK);
  ck_assert(smc_value(s, "mala_steps") == 5.0 && smc_value(s, "mala_step") == 0.01);
  tch_smc_free(s);
  d.mala_steps = -2;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_E_ARG);
  d.mala_steps = 1;
  d.mala_step = -0.1;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_E_ARG);
  d.mala_step = NAN;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_E_ARG);
  ck_assert_ptr_null(s);
  tch_trainer_free(t);
  tch_env_free(e);
  /* a host energy without gradient: fine without moves, TCH_E_CONFIG with them */
  gauss g = {0.0, 1.0, 0.0, 0, 0, 0};
  tch_energy_desc ed;
  tch_energy_desc_init(&ed);
  ed.dim = 2;
  ed.log_density = gauss_density;
  ed.log_Z = 0.0;
  ed.user = &g;
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", MX_T), TCH_OK);
  ck_assert_int_eq(tch_env_create_energy(&ed, c, &e), TCH_OK);
  tch_config_free(c);
  t = tiny_trainer(e, 0, "0");
  tch_smc_desc_init(&d);
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_OK);
  tch_smc_free(s);
  d.mala_steps = 1;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_E_CONFIG);
  ck_assert_msg(strstr(tch_last_error(), "TCH_ENERGY_HAS_GRAD") != NULL, "%s", tch_last_error());
  ck_assert_ptr_null(s);
  tch_trainer_free(t);
  tch_env_free(e);
  free(x);
}
END_TEST

START_TEST(smc_as_a_mixer_source)
{
  /* Schedules: "smc" parses for standalone mixers (not with +ls), never for a trainer;
   * random weights include it. Draws: only smc steps, from the attached sampler, for its
   * env, deterministic in (seed, step), weights consistent with the sampler's log Z-hat. */
  tch_mixer *m = NULL;
  const char *text;
  ck_assert_int_eq(tch_mixer_create("student, smc", &m), TCH_OK);
  ck_assert_int_eq(tch_mixer_schedule(m, &text), TCH_OK);
  ck_assert_str_eq(text, "student,smc");
  tch_mixer_free(m);
  ck_assert_int_eq(tch_mixer_create("smc+ls", &m), TCH_E_CONFIG);
  ck_assert_ptr_null(m);
  ck_assert_int_eq(tchi_mixer_create("student,smc", &m), TCH_E_CONFIG);
  ck_assert_msg(strstr(tch_last_error(), "standalone") != NULL, "%s", tch_last_error());
  ck_assert_int_eq(tchi_mixer_create("random:smc=1,student=1", &m), TCH_E_CONFIG);
  ck_assert_int_eq(tch_mixer_create("random:student=1,teacher=2,buffer=1", &m), TCH_OK);
  ck_assert_int_eq(tch_mixer_schedule(m, &text), TCH_OK);
  ck_assert_str_eq(text, "random:student=1,teacher=2,buffer=1");   /* as before */
  tch_mixer_free(m);
  ck_assert_int_eq(tch_mixer_create("random:student=1,smc=3", &m), TCH_OK);
  ck_assert_int_eq(tch_mixer_schedule(m, &text), TCH_OK);
  ck_assert_str_eq(text, "random:student=1,teacher=0,buffer=0,smc=3");
  int counts[4] = {0, 0, 0, 0};
  const int steps = 20000;
  for (int i = 0; i < steps; i++) {
    tch_source src;
    ck_assert_int_eq(tch_mixer_source(m, 5, (uint64_t)i, &src, NULL), TCH_OK);
    ck_assert(src == TCH_SOURCE_STUDENT || src == TCH_SOURCE_SMC);
    counts[src]++;
  }
  /* 0.75 expected; 5 standard errors */
  ck_assert(fabs(counts[TCH_SOURCE_SMC] / (double)steps - 0.75) < 5 * sqrt(0.1875 / steps));
  tch_mixer_free(m);

  /* a discrete trainer's mixer.schedule cannot name smc */
  tch_env *grid;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &grid), TCH_OK);
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(c, "mixer.schedule", "student,smc"), TCH_OK);
  tch_trainer *gt = NULL;
  ck_assert_int_eq(tch_trainer_create(grid, c, &gt), TCH_E_CONFIG);
  ck_assert_ptr_null(gt);
  tch_config_free(c);

  /* draws */
  tch_env *e = tiny_gmm40(), *e2 = tiny_gmm40();
  tch_trainer *t = tiny_trainer(e, 1, "0");
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = MX_N;
  d.mala_steps = 2;
  d.mala_step = 0.05;
  tch_smc *s;
  ck_assert_int_eq(tch_smc_create(t, &d, &s), TCH_OK);
  ck_assert_int_eq(tch_mixer_create("smc,student", &m), TCH_OK);
  double x[MX_N * 2], x2[MX_N * 2], lw[MX_N], lw2[MX_N];
  tch_source src = TCH_SOURCE_STUDENT;
  uint32_t flags = 7;
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N, x, lw, &src, &flags), TCH_E_STATE);
  ck_assert(src == TCH_SOURCE_SMC && flags == 0);
  ck_assert_int_eq(tch_mixer_set_smc(m, s), TCH_OK);
  tch_smc_free(s);              /* the mixer holds it, the handle its trainer and env */
  tch_trainer_free(t);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N, x, lw, &src, NULL), TCH_OK);
  ck_assert_int_eq(src, TCH_SOURCE_SMC);
  double m_lw = -INFINITY, acc = 0;
  for (int i = 0; i < MX_N; i++) m_lw = fmax(m_lw, lw[i]);
  for (int i = 0; i < MX_N; i++) acc += exp(lw[i] - m_lw);
  const double log_z = m_lw + log(acc / MX_N);
  ck_assert(isfinite(log_z));
  /* deterministic in (seed, step); another step (of the cycle) or seed differs */
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N, x2, lw2, NULL, NULL), TCH_OK);
  ck_assert(memcmp(x, x2, sizeof x) == 0 && memcmp(lw, lw2, sizeof lw) == 0);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 2, MX_N, x2, NULL, NULL, NULL), TCH_OK);
  ck_assert(memcmp(x, x2, sizeof x) != 0);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 2, 0, MX_N, x2, NULL, NULL, NULL), TCH_OK);
  ck_assert(memcmp(x, x2, sizeof x) != 0);
  /* the wrong source, size, env or draw function */
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 1, MX_N, x2, lw2, &src, NULL), TCH_E_STATE);
  ck_assert_int_eq(src, TCH_SOURCE_STUDENT);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 1, 0, x2, lw2, &src, NULL), TCH_OK);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N - 1, x2, lw2, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e2, 1, 0, MX_N, x2, lw2, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_mixer_draw_energy(m, grid, 1, 0, MX_N, x2, lw2, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N, NULL, lw2, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_mixer_draw_energy(NULL, e, 1, 0, MX_N, x2, lw2, NULL, NULL), TCH_E_ARG);
  int32_t st[MX_N * 8 * 2], ac[MX_N * 8];
  uint32_t len[MX_N];
  ck_assert_int_eq(tch_mixer_draw_discrete(m, grid, 1, 0, 4, st, ac, len, &src, NULL), TCH_E_STATE);
  ck_assert_msg(strstr(tch_last_error(), "tch_mixer_draw_energy") != NULL, "%s", tch_last_error());
  ck_assert_int_eq(tch_mixer_set_smc(NULL, NULL), TCH_E_ARG);
  /* env freed by the host: the attached sampler's trainer still holds it */
  tch_env_free(e2);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N, x2, NULL, NULL, NULL), TCH_OK);
  ck_assert(memcmp(x, x2, sizeof x) == 0);
  ck_assert_int_eq(tch_mixer_set_smc(m, NULL), TCH_OK);
  ck_assert_int_eq(tch_mixer_draw_energy(m, e, 1, 0, MX_N, x2, lw2, NULL, NULL), TCH_E_STATE);
  tch_mixer_free(m);
  tch_env_free(e);
  tch_env_free(grid);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc_sampler");
  TCase *tc = tcase_create("smc_sampler");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, ou_schedule_values);
  tcase_add_test(tc, ou_kernels_closed_form);
  tcase_add_test(tc, ou_trajectories);
  tcase_add_test(tc, flow_network);
  tcase_add_test(tc, beta_schedules_and_partial_energy);
  tcase_add_test(tc, smc_telescopes_and_matches_forward_sampling);
  tcase_add_test(tc, smc_exact_proposal_gives_exact_log_z);
  tcase_add_test(tc, smc_log_z_is_unbiased);
  tcase_add_test(tc, smc_resampling_rule_and_tempering);
  tcase_add_test(tc, smc_callback_errors_and_arguments);
  tcase_add_test(tc, smc_allocation_failures);
  tcase_add_test(tc, smc_handle_mala_settings);
  tcase_add_test(tc, smc_as_a_mixer_source);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
