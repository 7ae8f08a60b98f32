/* MALA rejuvenation inside the twisted SMC sampler (spec reinforced-smc.md §4.3): the
 * Metropolis-Hastings log-ratio of the shared MALA transition against a direct computation
 * and its detailed-balance symmetry; the twist gradient grad_x log F_k (flow input gradient,
 * reference and energy terms) against finite differences; invariance of the intermediate
 * target under the moves (exact draws of a 1-D twisted target stay distributed as it, where
 * the unadjusted Langevin moves measurably do not; and a full run whose intermediate targets
 * are all N(0, sigma^2)); weights untouched by the moves (bit-identical log Ẑ with K = 1,
 * identical first chunk otherwise, E[Ẑ] = Z with moves and resampling); configuration and
 * callback errors, reproducibility and allocation failures.
 * Statistical checks use fixed seeds and state their margins. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "diffusion/diffusion.h"
#include "diffusion/dmetrics.h"
#include "envs/env.h"
#include "smc/smc.h"
#include "teacher.h"
#include "smc_fixtures.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

/* Host target log R(x) = log_z + log N(x; mean 1, sd^2 I), with its gradient; counts calls;
 * can fail or return NaN at a given call. */
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

static tch_env *gauss_env(gauss *g, uint32_t dim, int with_grad)
{
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = dim;
  d.flags = with_grad ? TCH_ENERGY_HAS_GRAD : 0;
  d.log_density = gauss_density;
  d.log_Z = g->log_z;
  d.user = g;
  tch_env *e = NULL;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &e), TCH_OK);
  return e;
}

static double log_normal_iso(size_t dim, const double *x, const double *mu, double var)
{
  double sq = 0;
  for (size_t d = 0; d < dim; d++) sq += (x[d] - mu[d]) * (x[d] - mu[d]);
  return -0.5 * (sq / var + (double)dim * log(2 * M_PI * var));
}

/* The twist log F_k at n points through the env (log R) and tchi_dflow_log_f. */
static void twist_values(tchi_dflow *f, const tchi_dnet_spec *ref, gauss *g, uint32_t k, size_t n,
                         const double *x, double *out)
{
  double *lr = malloc(n * sizeof *lr);
  gauss_density(g, n, ref->dim, x, lr, NULL);
  g->calls--;
  tch_status s = tchi_dflow_log_f(f, ref, k, n, x, lr, out);
  ck_assert_msg(s == TCH_OK, "%s", tch_last_error());
  free(lr);
}

/* ---- (b) the Metropolis-Hastings ratio ---------------------------------------------------------- */

START_TEST(mala_log_ratio_matches_direct_computation)
{
  /* log α = log π(x') - log π(x) + log q(x | x') - log q(x' | x) with the full Gaussian
   * proposal densities q(b | a) = N(b; a + η ∇log π(a), 2η I) (normalising constants
   * included: they cancel), against tchi_mala_log_alpha; and detailed balance of the
   * ratio: log α(x -> x') = -log α(x' -> x). */
  tchi_rng rng;
  tchi_rng_seed(&rng, 31, 1);
  for (int rep = 0; rep < 200; rep++) {
    const size_t D = 1 + (size_t)(rep % 5);
    const double eta = 0.01 + 0.5 * tchi_rng_uniform(&rng);
    double x[5], xp[5], g[5], gp[5], mf[5], mb[5];
    for (size_t d = 0; d < D; d++) {
      x[d] = 2 * tchi_rng_normal(&rng);
      g[d] = tchi_rng_normal(&rng);
      gp[d] = tchi_rng_normal(&rng);
    }
    tchi_mala_propose(D, eta, x, g, &rng, mf, xp);
    for (size_t d = 0; d < D; d++) {
      ck_assert(mf[d] == x[d] + eta * g[d]);
      mb[d] = xp[d] + eta * gp[d];
    }
    const double lp = tchi_rng_normal(&rng), lpp = tchi_rng_normal(&rng);
    const double direct = lpp - lp + log_normal_iso(D, x, mb, 2 * eta) - log_normal_iso(D, xp, mf, 2 * eta);
    const double la = tchi_mala_log_alpha(D, eta, x, lp, mf, xp, lpp, gp);
    ck_assert_msg(fabs(la - direct) <= 1e-10 * fmax(1, fabs(direct)), "rep %d: %g vs %g", rep, la, direct);
    const double back = tchi_mala_log_alpha(D, eta, xp, lpp, mb, x, lp, g);
    ck_assert_msg(fabs(la + back) <= 1e-10 * fmax(1, fabs(la)), "rep %d: %g vs %g", rep, la, back);
  }
  /* acceptance: u < exp(min(0, log α)); NaN and non-finite proposals reject */
  const double gp[2] = {0.1, -0.2}, bad[2] = {0.1, NAN};
  ck_assert(tchi_mala_accept(0.5, 0.999, 0.0, 2, gp));
  ck_assert(tchi_mala_accept(log(0.3), 0.29, 0.0, 2, gp));
  ck_assert(!tchi_mala_accept(log(0.3), 0.31, 0.0, 2, gp));
  ck_assert(!tchi_mala_accept(NAN, 0.0, 0.0, 2, gp));
  ck_assert(!tchi_mala_accept(1.0, 0.0, INFINITY, 2, gp));
  ck_assert(!tchi_mala_accept(1.0, 0.0, 0.0, 2, bad));
}
END_TEST

/* ---- (c) the twist gradient ---------------------------------------------------------------------- */

START_TEST(twist_gradient_matches_finite_differences)
{
  const uint32_t D = 3, T = 10;
  gauss g = {0.4, 0.9, 0.7, 0, 0, 0};
  tchi_rng rng;
  tchi_rng_seed(&rng, 5, 2);
  double flow_part = 0;   /* the check must see a real flow gradient */
  for (int ref_kind = 0; ref_kind < 2; ref_kind++)
    for (int with_flow = 0; with_flow < 2; with_flow++) {
      tchi_dnet_spec ref;
      small_spec(&ref, D, T, ref_kind ? 1.3 : 0);
      ref.t_scale = 1.7;
      tchi_dflow *f = with_flow ? make_flow(D, T, 9, 0.8, TCHI_BETA_LEARNT) : NULL;
      if (f) {
        for (uint32_t j = 0; j < T; j++) f->beta_logit[j] = 1.5 * sin(3.0 * j);
        for (uint32_t i = 0; i < f->spec.hidden; i++) f->phase[i] = (float)(0.2 * i);
      }
      const uint32_t ks[4] = {0, 3, 7, T};
      const size_t n = 4;
      double x[12], lr[4], glr[12], out[4], out2[4], grad[12];
      for (int kk = 0; kk < 4; kk++) {
        const uint32_t k = ks[kk];
        for (size_t i = 0; i < n * D; i++) x[i] = 1.5 * tchi_rng_normal(&rng);
        gauss_density(&g, n, D, x, lr, glr);
        ck_assert_int_eq(tchi_dflow_log_f_grad(f, &ref, k, n, x, lr, glr, out, grad), TCH_OK);
        ck_assert_int_eq(tchi_dflow_log_f(f, &ref, k, n, x, lr, out2), TCH_OK);
        for (size_t i = 0; i < n; i++) ck_assert_double_eq_tol(out[i], out2[i], 1e-12 * fmax(1, fabs(out[i])));
        /* float network: h = 1e-3 keeps rounding (~1e-7 / h) and truncation (~h^2) small */
        const double h = f ? 1e-3 : 1e-5, tol = f ? 5e-4 : 1e-6;
        for (size_t i = 0; i < n; i++)
          for (uint32_t d = 0; d < D; d++) {
            double xp[3], xm[3], lp, lm, fp, fm;
            memcpy(xp, x + i * D, sizeof xp);
            memcpy(xm, x + i * D, sizeof xm);
            xp[d] += h;
            xm[d] -= h;
            gauss_density(&g, 1, D, xp, &lp, NULL);
            gauss_density(&g, 1, D, xm, &lm, NULL);
            ck_assert_int_eq(tchi_dflow_log_f(f, &ref, k, 1, xp, &lp, &fp), TCH_OK);
            ck_assert_int_eq(tchi_dflow_log_f(f, &ref, k, 1, xm, &lm, &fm), TCH_OK);
            double fd = (fp - fm) / (2 * h), an = grad[i * D + d];
            ck_assert_msg(fabs(fd - an) <= tol * fmax(1.0, fabs(an)),
                          "ref %d flow %d k %u row %zu d %u: analytic %.9g, fd %.9g", ref_kind,
                          with_flow, k, i, d, an, fd);
          }
      }
      if (f) {
        /* the flow's own input gradient, weighted rows, against differences of f_phi */
        uint32_t k = 4;
        const double *o;
        double w[4] = {0.5, -1.0, 2.0, 1.5}, dx[12];
        for (size_t i = 0; i < n * D; i++) x[i] = tchi_rng_normal(&rng);
        ck_assert_int_eq(tchi_dflow_forward(f, 1, &k, n, x, 1, &o), TCH_OK);
        ck_assert_int_eq(tchi_dflow_input_grad(f, w, dx), TCH_OK);
        for (size_t i = 0; i < n; i++)
          for (uint32_t d = 0; d < D; d++) {
            double xs = x[i * D + d], fp, fm;
            x[i * D + d] = xs + 1e-3;
            ck_assert_int_eq(tchi_dflow_forward(f, 1, &k, 1, x + i * D, 0, &o), TCH_OK);
            fp = o[0];
            x[i * D + d] = xs - 1e-3;
            ck_assert_int_eq(tchi_dflow_forward(f, 1, &k, 1, x + i * D, 0, &o), TCH_OK);
            fm = o[0];
            x[i * D + d] = xs;
            double fd = w[i] * (fp - fm) / 2e-3;
            ck_assert_msg(fabs(fd - dx[i * D + d]) <= 5e-4 * fmax(1.0, fabs(fd)), "row %zu d %u: %g vs %g",
                          i, d, dx[i * D + d], fd);
            flow_part = fmax(flow_part, fabs(fd));
          }
        /* the kept forward was a plain forward: input gradients need one */
        ck_assert_int_eq(tchi_dflow_input_grad(f, NULL, dx), TCH_E_STATE);
      }
      tchi_dflow_free(f);
    }
  ck_assert_msg(flow_part > 0.05, "largest flow input gradient %g", flow_part);
}
END_TEST

/* ---- (a) invariance ------------------------------------------------------------------------------- */

/* Exact draws from a 1-D density known on a grid (piecewise constant on cells of width dx). */
static void draw_from_grid(size_t m, const double *grid, const double *cdf, double dx, size_t n,
                           tchi_rng *rng, double *out)
{
  for (size_t i = 0; i < n; i++) {
    double u = tchi_rng_uniform(rng) * cdf[m - 1];
    size_t lo = 0, hi = m - 1;   /* smallest c with cdf[c] >= u */
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (cdf[mid] >= u) hi = mid; else lo = mid + 1;
    }
    out[i] = grid[lo] + (tchi_rng_uniform(rng) - 0.5) * dx;
  }
}

static void moments(size_t n, const double *x, double *mean, double *var)
{
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) s += x[i];
  *mean = s / (double)n;
  for (size_t i = 0; i < n; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
  *var = s2 / (double)(n - 1);
}

START_TEST(moves_keep_a_twisted_target_invariant)
{
  /* 1-D twisted intermediate target pi(x) ∝ exp(log F_k(x)) with a random flow f_phi, the
   * OU reference and a Gaussian log R: its moments come from quadrature on a fine grid, and
   * N exact draws (inverse CDF on the grid) go through 40 moves with a large step. MALA
   * keeps them distributed as pi: mean and variance within 4.5 standard errors of the
   * quadrature. The same moves without the Metropolis-Hastings correction (unadjusted
   * Langevin) must miss by more, which shows the check can fail. */
  const uint32_t T = 8, k = 5;
  const size_t N = 4000, M = 24001;
  gauss g = {0.8, 0.7, 0.2, 0, 0, 0};
  tch_env *env = gauss_env(&g, 1, 1);
  tchi_dnet_spec ref;
  small_spec(&ref, 1, T, 1.2);
  tchi_dflow *f = make_flow(1, T, 21, 1.5, TCHI_BETA_LEARNT);
  for (uint32_t j = 0; j < T; j++) f->beta_logit[j] = cos(2.0 * j);
  /* quadrature on [-12, 12] */
  double *grid = malloc(M * sizeof *grid), *lf = malloc(M * sizeof *lf), *cdf = malloc(M * sizeof *cdf);
  const double dx = 24.0 / (double)(M - 1);
  for (size_t c = 0; c < M; c++) grid[c] = -12.0 + dx * (double)c;
  twist_values(f, &ref, &g, k, M, grid, lf);
  double mx = -INFINITY;
  for (size_t c = 0; c < M; c++) mx = fmax(mx, lf[c]);
  double z = 0, m1 = 0, m2 = 0;
  for (size_t c = 0; c < M; c++) {
    double w = exp(lf[c] - mx);
    z += w;
    cdf[c] = z;
    m1 += w * grid[c];
    m2 += w * grid[c] * grid[c];
  }
  ck_assert(exp(lf[0] - mx) < 1e-12 && exp(lf[M - 1] - mx) < 1e-12);   /* the grid holds pi */
  const double mean = m1 / z, var = m2 / z - mean * mean + dx * dx / 12.0;
  /* the twist really is not a Gaussian of the reference or the target alone */
  fprintf(stderr, "twisted target: mean %.4f, variance %.4f\n", mean, var);

  tchi_rng rng;
  tchi_rng_seed(&rng, 77, 3);
  double *x = malloc(N * sizeof *x), *x0 = malloc(N * sizeof *x0), *lfx = malloc(N * sizeof *lfx);
  double *lr = malloc(N * sizeof *lr), *glr = malloc(N * sizeof *glr);
  draw_from_grid(M, grid, cdf, dx, N, &rng, x);
  memcpy(x0, x, N * sizeof *x);
  double m_start, v_start;
  moments(N, x, &m_start, &v_start);
  gauss_density(&g, N, 1, x, lr, glr);
  ck_assert_int_eq(tchi_dflow_log_f(f, &ref, k, N, x, lr, lfx), TCH_OK);
  tchi_smc_sampler s;
  tchi_smc_sampler_init(&s);
  uint64_t acc = 0;
  const uint32_t steps = 40;
  const double eta = 0.3;
  tch_status st = tchi_smc_rejuvenate(&ref, f, env, k, N, steps, eta, x, lfx, lr, glr, &rng, &s, &acc);
  ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
  ck_assert_uint_eq(s.n_energy_evals, (uint64_t)N * steps);
  double rate = (double)acc / (double)(N * steps);
  size_t moved = 0;
  for (size_t i = 0; i < N; i++) moved += x[i] != x0[i];
  /* the carried twist is the twist at the moved states */
  double *chk = malloc(N * sizeof *chk);
  twist_values(f, &ref, &g, k, N, x, chk);
  for (size_t i = 0; i < N; i++) ck_assert_double_eq_tol(lfx[i], chk[i], 1e-9 * fmax(1, fabs(chk[i])));
  double m_mala, v_mala;
  moments(N, x, &m_mala, &v_mala);
  const double se_m = sqrt(var / N), se_v = var * sqrt(2.0 / N);
  fprintf(stderr, "MALA: acceptance %.3f, moved %zu; start mean %.4f var %.4f; after mean %.4f var %.4f "
          "(quadrature %.4f, %.4f; se %.4f, %.4f)\n", rate, moved, m_start, v_start, m_mala, v_mala,
          mean, var, se_m, se_v);
  ck_assert_msg(rate > 0.3 && rate < 0.98, "acceptance %g", rate);
  ck_assert(moved > N * 9 / 10);
  ck_assert_msg(fabs(m_mala - mean) < 4.5 * se_m, "mean %g vs %g", m_mala, mean);
  ck_assert_msg(fabs(v_mala - var) < 4.5 * se_v, "variance %g vs %g", v_mala, var);

  /* unadjusted Langevin from the same start: every proposal accepted */
  memcpy(x, x0, N * sizeof *x);
  double *gf = malloc(N * sizeof *gf), *mf = malloc(N * sizeof *mf), *xp = malloc(N * sizeof *xp);
  for (uint32_t it = 0; it < steps; it++) {
    gauss_density(&g, N, 1, x, lr, glr);
    ck_assert_int_eq(tchi_dflow_log_f_grad(f, &ref, k, N, x, lr, glr, NULL, gf), TCH_OK);
    tchi_mala_propose(N, eta, x, gf, &rng, mf, xp);
    memcpy(x, xp, N * sizeof *x);
  }
  double m_ula, v_ula;
  moments(N, x, &m_ula, &v_ula);
  fprintf(stderr, "ULA: mean %.4f var %.4f\n", m_ula, v_ula);
  ck_assert_msg(fabs(m_ula - mean) > 4.5 * se_m || fabs(v_ula - var) > 4.5 * se_v,
                "the unadjusted moves are not distinguishable: the check is too weak");
  free(gf);
  free(mf);
  free(xp);
  free(chk);
  free(x);
  free(x0);
  free(lfx);
  free(lr);
  free(glr);
  free(grid);
  free(lf);
  free(cdf);
  tchi_smc_sampler_destroy(&s);
  tchi_dflow_free(f);
  tch_env_free(env);
}
END_TEST

START_TEST(sampler_with_moves_keeps_exact_particles_exact)
{
  /* Target Z N(0, sigma^2 I) with the OU reference sigma, u = 0 and f = 0: every
   * intermediate target F_k ∝ N(0, sigma^2 I) and the particles are exact draws with equal
   * weights. With 10 moves after each of 4 chunks they stay N(0, sigma^2 I) (mean and
   * variance over N D coordinates within 4.5 standard errors) and every weight stays
   * log Z exactly as without moves. The record carries the moved states as the next chunk's
   * start with their twist. */
  const uint32_t D = 2, T = 16, K = 4;
  const size_t N = 1500;
  const double sigma = 1.3;
  gauss g = {0.0, sigma, 2.75, 0, 0, 0};
  tch_env *env = gauss_env(&g, D, 1);
  tchi_dnet_spec s;
  small_spec(&s, D, T, sigma);
  tchi_dnet *net = make_net(&s, 3, 0.0);
  tchi_dflow *flow = make_flow(D, T, 3, 0.0, TCHI_BETA_LEARNT);
  for (uint32_t j = 0; j < T; j++) flow->beta_logit[j] = cos(j);
  tchi_smc_sampler o;
  tchi_smc_sampler_init(&o);
  tchi_smc_params p;
  tchi_smc_params_default(&p, N, K);
  ck_assert_uint_eq(p.mala_steps, 0);
  ck_assert(p.mala_step == TCHI_SMC_MALA_STEP);
  p.mala_steps = 10;
  p.mala_step = 0.6 * sigma * sigma;
  p.keep_paths = 1;
  tchi_rng rng;
  tchi_rng_seed(&rng, 4, 8);
  tch_status st = tchi_smc_run(net, flow, env, &p, &rng, &o);
  ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
  ck_assert_double_eq_tol(o.log_z, 2.75, 1e-9);
  for (size_t i = 0; i < N; i++) ck_assert_double_eq_tol(o.log_w[i], 2.75, 1e-9);
  ck_assert_uint_eq(o.n_resamples, 0);
  ck_assert_uint_eq(o.n_energy_evals, (uint64_t)N * K * (1 + p.mala_steps));
  ck_assert_uint_eq(o.mala_proposals, (uint64_t)N * K * p.mala_steps);
  ck_assert(o.mala_accepted > 0 && o.mala_accepted < o.mala_proposals);
  for (uint32_t j = 0; j < K; j++) {
    fprintf(stderr, "chunk %u: MALA acceptance %.3f\n", j, o.chunk_mala_accept[j]);
    ck_assert(o.chunk_mala_accept[j] > 0.3 && o.chunk_mala_accept[j] < 1.0);
  }
  /* chunk j + 1 starts at the moved states, with their twist; and its path starts there */
  const uint32_t L = T / K;
  double *lf = malloc(N * sizeof *lf);
  size_t moved = 0;
  for (uint32_t j = 0; j + 1 < K; j++) {
    const double *x0 = o.chunk_x0 + (size_t)(j + 1) * N * D;
    twist_values(flow, &s, &g, (j + 1) * L, N, x0, lf);
    for (size_t i = 0; i < N; i++) {
      ck_assert_double_eq_tol(o.chunk_log_f0[(size_t)(j + 1) * N + i], lf[i], 1e-9 * fmax(1, fabs(lf[i])));
      moved += memcmp(x0 + i * D, o.chunk_x1 + ((size_t)j * N + i) * D, D * sizeof(double)) != 0;
      ck_assert(memcmp(o.path + ((size_t)(j + 1) * N + i) * (L + 1) * D, x0 + i * D, D * sizeof(double)) == 0);
    }
  }
  ck_assert(moved > 3 * (K - 1) * N / 4);
  /* final particles: moved after the last chunk, log R at them */
  double *lr = malloc(N * sizeof *lr);
  gauss_density(&g, N, D, o.x, lr, NULL);
  for (size_t i = 0; i < N; i++) ck_assert(lr[i] == o.log_r[i]);
  ck_assert(memcmp(o.x, o.chunk_x1 + (size_t)(K - 1) * N * D, N * D * sizeof(double)) != 0);
  double mean, var;
  moments(N * D, o.x, &mean, &var);
  const double v0 = sigma * sigma, se_m = sqrt(v0 / (N * D)), se_v = v0 * sqrt(2.0 / (N * D));
  fprintf(stderr, "final particles: mean %.4f (se %.4f), variance %.4f (target %.4f, se %.4f)\n",
          mean, se_m, var, v0, se_v);
  ck_assert(fabs(mean) < 4.5 * se_m);
  ck_assert(fabs(var - v0) < 4.5 * se_v);
  free(lf);
  free(lr);
  tchi_smc_sampler_destroy(&o);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}
END_TEST

/* ---- (d) weights and log Ẑ ------------------------------------------------------------------------ */

START_TEST(moves_leave_the_weights)
{
  /* The moves come after the weights of their chunk. K = 1: log Ẑ and every weight are
   * bit-identical with and without moves from the same rng state, the particles differ and
   * log R is the log R of the moved particles. K = 4 with resampling: the first chunk's
   * record (weights, log Ẑ increment, resampling, ancestors) is bit-identical. */
  const uint32_t D = 2, T = 12;
  const size_t N = 200;
  gauss g = {1.2, 0.5, -0.4, 0, 0, 0};
  tch_env *env = gauss_env(&g, D, 1);
  tchi_dnet_spec s;
  small_spec(&s, D, T, 1.0);
  tchi_dnet *net = make_net(&s, 11, 0.3);
  tchi_dflow *flow = make_flow(D, T, 11, 0.5, TCHI_BETA_LEARNT);
  tchi_smc_sampler a, b;
  tchi_smc_sampler_init(&a);
  tchi_smc_sampler_init(&b);
  for (int kk = 0; kk < 2; kk++) {
    const uint32_t K = kk ? 4 : 1;
    tchi_smc_params p;
    tchi_smc_params_default(&p, N, K);
    p.resample_threshold = 0.9;
    tchi_rng r1, r2;
    tchi_rng_seed(&r1, 12, 3);
    r2 = r1;
    ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &r1, &a), TCH_OK);
    p.mala_steps = 3;
    p.mala_step = 0.05;
    tch_status st = tchi_smc_run(net, flow, env, &p, &r2, &b);
    ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
    ck_assert(b.mala_accepted > 0);
    if (K == 1) {
      ck_assert(a.log_z == b.log_z);
      ck_assert(memcmp(a.log_w, b.log_w, N * sizeof(double)) == 0);
      size_t moved = 0;
      for (size_t i = 0; i < N; i++) moved += memcmp(a.x + i * D, b.x + i * D, D * sizeof(double)) != 0;
      ck_assert(moved > N / 4);
      double *lr = malloc(N * sizeof *lr);
      gauss_density(&g, N, D, b.x, lr, NULL);
      ck_assert(memcmp(lr, b.log_r, N * sizeof(double)) == 0);
      free(lr);
    } else {
      ck_assert(a.chunk_resampled[0] == 1 && b.chunk_resampled[0] == 1);
      ck_assert(a.chunk_log_z_inc[0] == b.chunk_log_z_inc[0]);
      ck_assert(memcmp(a.chunk_log_g, b.chunk_log_g, N * sizeof(double)) == 0);
      ck_assert(memcmp(a.chunk_anc, b.chunk_anc, N * sizeof(uint32_t)) == 0);
      ck_assert(a.log_z != b.log_z);   /* the later chunks start elsewhere */
    }
  }
  tchi_smc_sampler_destroy(&a);
  tchi_smc_sampler_destroy(&b);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}
END_TEST

START_TEST(log_z_stays_unbiased_with_moves)
{
  /* Gaussian target Z N(0.8, 0.6^2 I) in 2-D, OU reference sigma = 1, initial policy and a
   * random twist: a poor proposal, so resampling happens (rho = 0: T* = 1, the unbiased
   * estimator). With 2 moves after each chunk E[Ẑ] = Z still holds: mean of Ẑ / Z within 4
   * standard errors of 1 (and the standard error < 0.05, so the check can fail). */
  const uint32_t D = 2, T = 16;
  const double log_z = 0.3;
  gauss g = {0.8, 0.6, log_z, 0, 0, 0};
  tch_env *env = gauss_env(&g, D, 1);
  tchi_dnet_spec s;
  small_spec(&s, D, T, 1.0);
  tchi_dnet *net = make_net(&s, 13, 0.0);
  tchi_dflow *flow = make_flow(D, T, 13, 0.3, TCHI_BETA_LEARNT);
  tchi_smc_params p;
  tchi_smc_params_default(&p, 64, 8);
  p.resample_threshold = 0.7;
  p.target_ess = 0.0;
  p.mala_steps = 2;
  p.mala_step = 0.1;
  tchi_smc_sampler o;
  tchi_smc_sampler_init(&o);
  const int runs = 400;
  double s1 = 0, s2 = 0;
  uint64_t resamples = 0, acc = 0, props = 0;
  for (int r = 0; r < runs; r++) {
    tchi_rng rng;
    tchi_rng_seed(&rng, 7000 + r, 9);
    tch_status st = tchi_smc_run(net, flow, env, &p, &rng, &o);
    ck_assert_msg(st == TCH_OK, "%s", tch_last_error());
    double zr = exp(o.log_z - log_z);
    s1 += zr;
    s2 += zr * zr;
    resamples += o.n_resamples;
    acc += o.mala_accepted;
    props += o.mala_proposals;
  }
  double mean = s1 / runs, se = sqrt(fmax(0, s2 / runs - mean * mean) / (runs - 1));
  fprintf(stderr, "with moves: E[Zhat/Z] = %.4f +- %.4f, %llu resamplings, acceptance %.3f\n", mean,
          se, (unsigned long long)resamples, (double)acc / (double)props);
  ck_assert(resamples > 400);
  ck_assert(acc > props / 4);
  ck_assert(se < 0.05);
  ck_assert_msg(fabs(mean - 1.0) < 4 * se, "E[Zhat/Z] = %g +- %g", mean, se);
  tchi_smc_sampler_destroy(&o);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}
END_TEST

/* ---- errors, reproducibility, allocation failures ---------------------------------------------------- */

START_TEST(configuration_and_callback_errors)
{
  const uint32_t D = 2, T = 8;
  gauss g = {0.0, 1.0, 0.0, 0, 0, 0};
  tch_env *env = gauss_env(&g, D, 1), *nograd = gauss_env(&g, D, 0);
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
  /* no gradient: fine without moves, a configuration error with them */
  ck_assert_int_eq(tchi_smc_run(net, flow, nograd, &p, &rng, &o), TCH_OK);
  p.mala_steps = 2;
  ck_assert_int_eq(tchi_smc_run(net, flow, nograd, &p, &rng, &o), TCH_E_CONFIG);
  ck_assert_msg(strstr(tch_last_error(), "TCH_ENERGY_HAS_GRAD") != NULL, "%s", tch_last_error());
  p.mala_step = 0.0;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_ARG);
  p.mala_step = INFINITY;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_ARG);
  p.mala_step = 0.1;
  /* a failing or NaN energy during the moves: the first move of chunk 0 is call 2 */
  g.calls = 0;
  g.fail_at = 2;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_CALLBACK);
  ck_assert_msg(strstr(tch_last_error(), "MALA") != NULL, "%s", tch_last_error());
  ck_assert_int_eq(tch_last_callback_code(), 7);
  g.fail_at = 0;
  g.calls = 0;
  g.nan_at = 6;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &rng, &o), TCH_E_NUMERIC);
  g.nan_at = 0;
  /* usable afterwards, and reproducible */
  tchi_rng r1, r2;
  tchi_rng_seed(&r1, 9, 9);
  r2 = r1;
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &r1, &o), TCH_OK);
  double *x = malloc(32 * D * sizeof *x), lz = o.log_z;
  memcpy(x, o.x, 32 * D * sizeof *x);
  ck_assert_int_eq(tchi_smc_run(net, flow, env, &p, &r2, &o), TCH_OK);
  ck_assert(lz == o.log_z);
  ck_assert(memcmp(x, o.x, 32 * D * sizeof *x) == 0);
  free(x);
  /* the standalone entry point's arguments */
  double xs[2] = {0, 0}, lf = 0, lr = 0, gr[2] = {0, 0};
  ck_assert_int_eq(tchi_smc_rejuvenate(&s, flow, nograd, 3, 1, 1, 0.1, xs, &lf, &lr, gr, &rng, &o, NULL), TCH_E_CONFIG);
  ck_assert_int_eq(tchi_smc_rejuvenate(&s, flow, env, T + 1, 1, 1, 0.1, xs, &lf, &lr, gr, &rng, &o, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_rejuvenate(&s, flow, env, 3, 1, 1, -1.0, xs, &lf, &lr, gr, &rng, &o, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_rejuvenate(&s, flow, env, 3, 1, 1, 0.1, xs, &lf, NULL, gr, &rng, &o, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_rejuvenate(&s, flow, env, 3, 1, 0, 0.1, xs, &lf, &lr, gr, &rng, &o, NULL), TCH_OK);
  tchi_smc_sampler_destroy(&o);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
  tch_env_free(nograd);
}
END_TEST

START_TEST(allocation_failures_with_moves)
{
  /* Every allocation of a first run with moves may fail: TCH_E_NOMEM, nothing leaks (ASan),
   * and a later run succeeds. */
  const uint32_t D = 2, T = 8;
  gauss g = {0.0, 1.0, 0.0, 0, 0, 0};
  tch_env *env = gauss_env(&g, D, 1);
  tchi_dnet_spec s;
  small_spec(&s, D, T, 1.0);
  tchi_smc_params p;
  tchi_smc_params_default(&p, 40, 2);
  p.mala_steps = 2;
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
  ck_assert(failures > 10);
  tch_env_free(env);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc_mala");
  TCase *tc = tcase_create("smc_mala");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, mala_log_ratio_matches_direct_computation);
  tcase_add_test(tc, twist_gradient_matches_finite_differences);
  tcase_add_test(tc, moves_keep_a_twisted_target_invariant);
  tcase_add_test(tc, sampler_with_moves_keeps_exact_particles_exact);
  tcase_add_test(tc, moves_leave_the_weights);
  tcase_add_test(tc, log_z_stays_unbiased_with_moves);
  tcase_add_test(tc, configuration_and_callback_errors);
  tcase_add_test(tc, allocation_failures_with_moves);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
