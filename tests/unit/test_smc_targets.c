/* Reinforced SMC's built-in targets (lib/envs/builtin/gmm40.c, funnel.c): log Z by numerical
 * integration (GMM40 in 1-D and 2-D on grids, the funnel in 2-D on a grid adapted to its
 * neck), values against independent long double formulas (GMM40-50D, funnel-10D), the 2-D
 * means against the spec's table, gradients against finite differences, the exact
 * samplers' statistics, mode counts, config keys and allocation failure.
 * Statistical checks use fixed seeds and state their margins. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "envs/env.h"
#include "teacher.h"

/* log(sum exp(v_i)) accumulated in a streaming, overflow-free way. */
typedef struct lse_acc { double m, s; } lse_acc;
static void lse_init(lse_acc *a) { a->m = -INFINITY; a->s = 0.0; }
static void lse_add(lse_acc *a, double v)
{
  if (v == -INFINITY) return;
  if (v <= a->m) {
    a->s += exp(v - a->m);
  } else {
    a->s = a->s * exp(a->m - v) + 1.0;
    a->m = v;
  }
}
static double lse_get(const lse_acc *a) { return a->m + log(a->s); }

static tch_env *mk_gmm40(uint32_t dim)
{
  tch_env *e = NULL;
  ck_assert_int_eq(tch_env_create_gmm40(dim, NULL, &e), TCH_OK);
  return e;
}

static tch_env *mk_funnel(uint32_t dim)
{
  tch_env *e = NULL;
  ck_assert_int_eq(tch_env_create_funnel(dim, NULL, &e), TCH_OK);
  return e;
}

/* log p of the GMM40 with the given means, term by term in long double (shifted by the
 * smallest squared distance, so far points do not underflow). */
static double gmm40_reference(uint32_t d, const double *means, const double *x)
{
  long double q[40], qmin = INFINITY, s = 0;
  for (int c = 0; c < 40; c++) {
    q[c] = 0;
    for (uint32_t j = 0; j < d; j++) {
      const long double t = (long double)x[j] - means[c * d + j];
      q[c] += t * t;
    }
    if (q[c] < qmin) qmin = q[c];
  }
  for (int c = 0; c < 40; c++) s += expl(-0.5L * (q[c] - qmin));
  return (double)(logl(s / 40.0L) - 0.5L * qmin -
                  0.5L * d * logl(2.0L * 3.14159265358979323846264L));
}

/* ---- GMM40 --------------------------------------------------------------------------------- */

START_TEST(gmm40_2d_means_and_log_z)
{
  /* the spec's table (§9.4), rounded to 4 decimals */
  static const double table[40][2] = {
    {-0.2995, 21.4577}, {-32.9218, -29.4376}, {-15.4062, 10.7263}, {-0.7925, 31.7156},
    {-3.5498, 10.5845}, {-12.0885, -7.8626}, {-38.2139, -26.4913}, {-16.4889, 1.4817},
    {15.8134, 24.0009}, {-27.1176, -17.4185}, {14.5287, 33.2155}, {-8.2320, 29.9325},
    {-6.4473, 4.2326}, {36.2190, -37.1068}, {-25.1815, -10.1266}, {-15.5920, 34.5600},
    {-25.9272, -18.4133}, {-27.9456, -37.4624}, {-23.3496, 34.3839}, {17.8487, 19.3869},
    {2.1037, -20.5073}, {6.7674, -37.3478}, {-28.9026, -20.6212}, {25.2375, 23.4528},
    {-17.7398, -1.4433}, {25.5824, 39.7653}, {15.8753, 5.4037}, {26.8195, -23.5521},
    {7.4538, -31.0122}, {-27.7234, -20.6633}, {18.0989, 16.0864}, {-23.6941, 12.0843},
    {21.9589, -5.0487}, {1.5273, 9.2682}, {24.8151, 38.4078}, {-30.8249, -14.6588},
    {15.7204, 33.1420}, {34.8083, 35.2943}, {7.9606, -34.7833}, {3.6797, -25.0242},
  };
  tch_env *e = mk_gmm40(2);
  uint32_t dim, nc = 0;
  ck_assert_int_eq(tch_env_energy_dim(e, &dim), TCH_OK);
  ck_assert_uint_eq(dim, 2);
  const double *mu = tchi_gmm40_means(e, &nc);
  ck_assert_ptr_nonnull(mu);
  ck_assert_uint_eq(nc, 40);
  for (int c = 0; c < 40; c++)
    for (int j = 0; j < 2; j++)
      ck_assert_msg(fabs(mu[2 * c + j] - table[c][j]) <= 5.1e-5, "mean %d: %.6f vs %.4f", c,
                    mu[2 * c + j], table[c][j]);
  /* the reference's float32 values exactly (first mean: -0.00748682022 x 40 in float32) */
  ck_assert(mu[0] == (double)-0.299472809f && mu[1] == (double)21.4577446f);
  double lz = NAN;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_OK);
  ck_assert(lz == 0.0);

  /* log Z by the trapezoid rule on [-50, 50]^2 (every mean is >= 10 sd inside), h = 0.2:
   * spectrally accurate for Gaussians of sd 1, so |log Z_hat| < 1e-9 */
  const int n = 501;
  const double h = 100.0 / (n - 1);
  double row[2 * 501], lp[501];
  lse_acc a;
  lse_init(&a);
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < n; j++) {
      row[2 * j] = -50.0 + i * h;
      row[2 * j + 1] = -50.0 + j * h;
    }
    ck_assert_int_eq(tch_env_log_density(e, (size_t)n, row, lp, NULL), TCH_OK);
    for (int j = 0; j < n; j++) {
      const double tw = (i == 0 || i == n - 1 ? 0.5 : 1.0) * (j == 0 || j == n - 1 ? 0.5 : 1.0);
      lse_add(&a, lp[j] + log(tw));
    }
  }
  const double log_z = lse_get(&a) + 2 * log(h);
  ck_assert_msg(fabs(log_z) < 1e-9, "GMM40-2D log Z by integration: %.3e", log_z);
  /* values against the reference formula */
  tchi_rng rng;
  tchi_rng_seed(&rng, 4, 0);
  for (int k = 0; k < 200; k++) {
    double x[2] = {-60 + 120 * tchi_rng_uniform(&rng), -60 + 120 * tchi_rng_uniform(&rng)}, v;
    ck_assert_int_eq(tch_env_log_density(e, 1, x, &v, NULL), TCH_OK);
    ck_assert_double_eq_tol(v, gmm40_reference(2, mu, x), 1e-10 * (1 + fabs(v)));
  }
  tch_env_free(e);
}
END_TEST

START_TEST(gmm40_other_dimensions)
{
  /* 1-D: seeded means in [-40, 40), log Z = 0 by integration on [-60, 60] */
  tch_env *e = mk_gmm40(1);
  const double *mu = tchi_gmm40_means(e, NULL);
  const int n = 6001;
  double x[6001], lp[6001];
  for (int i = 0; i < n; i++) x[i] = -60.0 + i * 0.02;
  ck_assert_int_eq(tch_env_log_density(e, (size_t)n, x, lp, NULL), TCH_OK);
  lse_acc a;
  lse_init(&a);
  for (int i = 0; i < n; i++) lse_add(&a, lp[i] + (i == 0 || i == n - 1 ? log(0.5) : 0.0));
  ck_assert_msg(fabs(lse_get(&a) + log(0.02)) < 1e-9, "GMM40-1D log Z %.3e", lse_get(&a) + log(0.02));
  tch_env_free(e);

  /* 50-D: means fixed (the same on every creation, independent of anything else), spread
   * uniformly over [-40, 40)^50, values against the long double formula */
  e = mk_gmm40(50);
  tch_env *f = mk_gmm40(50);
  mu = tchi_gmm40_means(e, NULL);
  ck_assert_mem_eq(mu, tchi_gmm40_means(f, NULL), 40 * 50 * sizeof(double));
  double mean = 0, lo = 1e9, hi = -1e9;
  for (int k = 0; k < 40 * 50; k++) {
    mean += mu[k];
    lo = fmin(lo, mu[k]);
    hi = fmax(hi, mu[k]);
  }
  mean /= 2000;
  ck_assert(lo >= -40.0 && hi < 40.0 && lo < -39.0 && hi > 39.0);
  ck_assert_msg(fabs(mean) < 5 * 40 / sqrt(3.0) / sqrt(2000.0), "mean of the means %g", mean);
  double lz;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_OK);
  ck_assert(lz == 0.0);
  tchi_rng rng;
  tchi_rng_seed(&rng, 8, 0);
  double pts[6 * 50], v[6];
  for (int p = 0; p < 6; p++)   /* near a mean (finite log density), and far from all */
    for (int j = 0; j < 50; j++)
      pts[p * 50 + j] = p < 4 ? mu[(7 * p) * 50 + j] + 0.8 * tchi_rng_normal(&rng)
                              : 100.0 * tchi_rng_normal(&rng);
  ck_assert_int_eq(tch_env_log_density(e, 6, pts, v, NULL), TCH_OK);
  for (int p = 0; p < 6; p++)
    ck_assert_double_eq_tol(v[p], gmm40_reference(50, mu, pts + p * 50), 1e-10 * (1 + fabs(v[p])));
  /* the 2-D means are not the seeded ones: dim 2 is the reference's table */
  tch_env *g = mk_gmm40(2);
  ck_assert(tchi_gmm40_means(g, NULL)[0] != mu[0]);
  tch_env_free(g);
  tch_env_free(f);
  tch_env_free(e);
}
END_TEST

/* Central differences against the analytic gradient: |g - fd| <= tol (1 + |g|). */
static void check_gradient(tch_env *e, size_t n, size_t dim, const double *x, double h, double tol)
{
  double *lp = malloc(n * sizeof *lp), *g = malloc(n * dim * sizeof *g);
  double *xp = malloc(dim * sizeof *xp);
  ck_assert_int_eq(tch_env_log_density(e, n, x, lp, g), TCH_OK);
  int bad = -1;
  double worst = 0;
  for (size_t i = 0; i < n && bad < 0; i++)
    for (size_t j = 0; j < dim; j++) {
      double hi, lo;
      memcpy(xp, x + i * dim, dim * sizeof *xp);
      xp[j] += h;
      ck_assert_int_eq(tch_env_log_density(e, 1, xp, &hi, NULL), TCH_OK);
      xp[j] -= 2 * h;
      ck_assert_int_eq(tch_env_log_density(e, 1, xp, &lo, NULL), TCH_OK);
      const double fd = (hi - lo) / (2 * h), an = g[i * dim + j];
      if (fabs(fd - an) > tol * (1 + fabs(an))) {
        bad = (int)i;
        worst = fd - an;
        break;
      }
    }
  ck_assert_msg(bad < 0, "gradient of row %d off by %g", bad, worst);
  free(lp);
  free(g);
  free(xp);
}

START_TEST(gradients_match_finite_differences)
{
  tchi_rng rng;
  tchi_rng_seed(&rng, 6, 0);
  tch_env *e = mk_gmm40(2);
  ck_assert(tchi_env_has_grad(e));
  double x2[2 * 300];
  for (int i = 0; i < 2 * 300; i++) x2[i] = -45 + 90 * tchi_rng_uniform(&rng);
  check_gradient(e, 300, 2, x2, 1e-5, 1e-6);
  tch_env_free(e);

  e = mk_gmm40(50);
  const double *mu = tchi_gmm40_means(e, NULL);
  double x50[50 * 8];
  for (int p = 0; p < 8; p++)   /* between two means, where responsibilities are mixed */
    for (int j = 0; j < 50; j++)
      x50[p * 50 + j] = 0.5 * (mu[p * 50 + j] + mu[(p + 1) * 50 + j]) + tchi_rng_normal(&rng);
  check_gradient(e, 8, 50, x50, 1e-5, 1e-6);
  tch_env_free(e);

  e = mk_funnel(10);
  ck_assert(tchi_env_has_grad(e));
  double xf[10 * 100];
  for (int p = 0; p < 100; p++) {
    xf[p * 10] = 3 * tchi_rng_normal(&rng);
    for (int j = 1; j < 10; j++) xf[p * 10 + j] = exp(0.5 * xf[p * 10]) * tchi_rng_normal(&rng);
  }
  /* relative step: the funnel's scales range over e^{+-9} */
  for (int p = 0; p < 100; p++) check_gradient(e, 1, 10, xf + p * 10, 1e-6 * exp(0.5 * xf[p * 10]) + 1e-7, 1e-5);
  tch_env_free(e);
}
END_TEST

/* ---- funnel -------------------------------------------------------------------------------- */

START_TEST(funnel_log_z_and_values)
{
  tch_env *e = mk_funnel(2);
  double lz;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_OK);
  ck_assert(lz == 0.0);
  /* 2-D trapezoid on a grid adapted to the neck: x1 in [-36, 36] (12 sd), and for each x1
   * x2 = e^{x1/2} t, t in [-12, 12], with the Jacobian e^{x1/2}. log Z_hat within 1e-9. */
  const int n1 = 3601, n2 = 481;
  const double h1 = 72.0 / (n1 - 1), h2 = 24.0 / (n2 - 1);
  double pts[2 * 481], lp[481];
  lse_acc a;
  lse_init(&a);
  for (int i = 0; i < n1; i++) {
    const double x1 = -36.0 + i * h1, s = exp(0.5 * x1);
    for (int j = 0; j < n2; j++) {
      pts[2 * j] = x1;
      pts[2 * j + 1] = s * (-12.0 + j * h2);
    }
    ck_assert_int_eq(tch_env_log_density(e, (size_t)n2, pts, lp, NULL), TCH_OK);
    const double wi = (i == 0 || i == n1 - 1) ? log(0.5) : 0.0;
    for (int j = 0; j < n2; j++)
      lse_add(&a, lp[j] + 0.5 * x1 + wi + ((j == 0 || j == n2 - 1) ? log(0.5) : 0.0));
  }
  const double log_z = lse_get(&a) + log(h1) + log(h2);
  ck_assert_msg(fabs(log_z) < 1e-9, "funnel-2D log Z by integration: %.3e", log_z);
  tch_env_free(e);

  /* 10-D: the sum of the 1 + 9 normal log densities, in long double */
  e = mk_funnel(10);
  tchi_rng rng;
  tchi_rng_seed(&rng, 12, 0);
  for (int p = 0; p < 100; p++) {
    double x[10], v;
    for (int j = 0; j < 10; j++) x[j] = (j == 0 ? 4.0 : 3.0) * tchi_rng_normal(&rng);
    ck_assert_int_eq(tch_env_log_density(e, 1, x, &v, NULL), TCH_OK);
    const long double l2pi = logl(2.0L * 3.14159265358979323846264L);
    long double ref = -0.5L * l2pi - logl(3.0L) - 0.5L * x[0] * (long double)x[0] / 9.0L;
    for (int j = 1; j < 10; j++)
      ref += -0.5L * l2pi - 0.5L * x[0] - 0.5L * x[j] * (long double)x[j] * expl(-(long double)x[0]);
    ck_assert_double_eq_tol(v, (double)ref, 1e-11 * (1 + fabs(v)));
  }
  /* deep in the neck: e^{-x1} overflows; x_i = 0 stays finite (value and gradient) */
  double x[10] = {-800.0}, v, g[10];
  ck_assert_int_eq(tch_env_log_density(e, 1, x, &v, g), TCH_OK);
  const double expect = -0.5 * log(2 * M_PI) - log(3.0) - 800.0 * 800.0 / 18.0 +
                        9 * (-0.5 * log(2 * M_PI) + 400.0);
  ck_assert_double_eq_tol(v, expect, 1e-9 * fabs(expect));
  ck_assert_double_eq_tol(g[0], 800.0 / 9.0 - 4.5, 1e-9);
  for (int j = 1; j < 10; j++) ck_assert(g[j] == 0.0);
  x[3] = 1e-200;   /* tiny, so x^2 e^{800} is representable: log-space path */
  ck_assert_int_eq(tch_env_log_density(e, 1, x, &v, g), TCH_OK);
  ck_assert_double_eq_tol(g[3], -exp(log(1e-200) + 800.0), 1e-9 * exp(log(1e-200) + 800.0));
  x[3] = 1.0;   /* a density below the smallest double: reported, not NaN */
  ck_assert_int_eq(tch_env_log_density(e, 1, x, &v, NULL), TCH_E_NUMERIC);
  tch_env_free(e);
}
END_TEST

/* ---- exact samplers ------------------------------------------------------------------------- */

START_TEST(gmm40_exact_sampler)
{
  enum { N = 40000 };
  double *x = malloc((size_t)N * 50 * sizeof *x), *y = malloc((size_t)N * 50 * sizeof *y);
  size_t counts[40], covered;
  /* 2-D: sample mean and covariance against the mixture's (mean of the means; I + the
   * means' covariance), 5 standard errors */
  tch_env *e = mk_gmm40(2);
  const double *mu = tchi_gmm40_means(e, NULL);
  ck_assert_int_eq(tch_env_sample_target(e, 3, N, x), TCH_OK);
  ck_assert_int_eq(tch_env_sample_target(e, 3, N, y), TCH_OK);
  ck_assert_mem_eq(x, y, (size_t)N * 2 * sizeof *x);   /* reproducible per seed */
  ck_assert_int_eq(tch_env_sample_target(e, 4, N, y), TCH_OK);
  ck_assert(memcmp(x, y, (size_t)N * 2 * sizeof *x) != 0);
  double m[2] = {0, 0}, cov[2][2] = {{0, 0}, {0, 0}}, sm[2] = {0, 0}, sc[2][2] = {{0}};
  for (int c = 0; c < 40; c++)
    for (int j = 0; j < 2; j++) m[j] += mu[2 * c + j] / 40;
  for (int c = 0; c < 40; c++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 2; k++) cov[j][k] += (mu[2 * c + j] - m[j]) * (mu[2 * c + k] - m[k]) / 40;
  cov[0][0] += 1;
  cov[1][1] += 1;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < 2; j++) sm[j] += x[2 * i + j] / N;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 2; k++) sc[j][k] += (x[2 * i + j] - sm[j]) * (x[2 * i + k] - sm[k]) / N;
  for (int j = 0; j < 2; j++) {
    ck_assert_msg(fabs(sm[j] - m[j]) < 5 * sqrt(cov[j][j] / N), "mean %d: %g vs %g", j, sm[j], m[j]);
    for (int k = 0; k < 2; k++) {
      const double se = sqrt((cov[j][j] * cov[k][k] + cov[j][k] * cov[j][k]) * 1.6 / N);
      ck_assert_msg(fabs(sc[j][k] - cov[j][k]) < 5 * se, "cov %d%d: %g vs %g", j, k, sc[j][k],
                    cov[j][k]);
    }
  }
  /* every mode is visited (nearest-mean counts; close means share samples in 2-D) */
  ck_assert_int_eq(tchi_gmm40_mode_counts(e, N, x, counts, &covered), TCH_OK);
  ck_assert_uint_eq(covered, 40);
  ck_assert(tchi_mode_entropy(40, counts) > 0.99);
  tch_env_free(e);

  /* 50-D: the means are far apart, so the nearest mean is the component: counts are
   * multinomial(N / 5, 1/40 each): chi-square (39 df) below 85 (p ~ 3e-5) */
  e = mk_gmm40(50);
  mu = tchi_gmm40_means(e, NULL);
  const size_t n50 = N / 5;
  ck_assert_int_eq(tch_env_sample_target(e, 9, n50, x), TCH_OK);
  ck_assert_int_eq(tchi_gmm40_mode_counts(e, n50, x, counts, &covered), TCH_OK);
  ck_assert_uint_eq(covered, 40);
  double chi2 = 0, expect = (double)n50 / 40;
  for (int c = 0; c < 40; c++) chi2 += (counts[c] - expect) * (counts[c] - expect) / expect;
  ck_assert_msg(chi2 < 85, "chi-square %g", chi2);
  /* residuals from the nearest mean are N(0, I): mean 0 and variance 1 per coordinate */
  double r1 = 0, r2 = 0;
  for (size_t i = 0; i < n50; i++) {
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 40; c++) {
      double d2 = 0;
      for (int j = 0; j < 50; j++) d2 += pow(x[i * 50 + j] - mu[c * 50 + j], 2);
      if (d2 < bd) bd = d2, best = c;
    }
    for (int j = 0; j < 50; j++) {
      const double r = x[i * 50 + j] - mu[best * 50 + j];
      r1 += r;
      r2 += r * r;
    }
  }
  const double cnt = (double)n50 * 50;
  ck_assert_msg(fabs(r1 / cnt) < 5 / sqrt(cnt), "residual mean %g", r1 / cnt);
  ck_assert_msg(fabs(r2 / cnt - 1) < 5 * sqrt(2 / cnt), "residual variance %g", r2 / cnt);
  tch_env_free(e);
  free(x);
  free(y);
}
END_TEST

START_TEST(funnel_exact_sampler)
{
  enum { N = 100000, D = 10 };
  double *x = malloc((size_t)N * D * sizeof *x);
  tch_env *e = mk_funnel(D);
  ck_assert_int_eq(tch_env_sample_target(e, 17, N, x), TCH_OK);
  /* x1 ~ N(0, 9): mean, variance (5 standard errors) */
  double m = 0, v = 0;
  for (int i = 0; i < N; i++) m += x[i * D] / N;
  for (int i = 0; i < N; i++) v += (x[i * D] - m) * (x[i * D] - m) / N;
  ck_assert_msg(fabs(m) < 5 * 3 / sqrt(N), "x1 mean %g", m);
  ck_assert_msg(fabs(v - 9) < 5 * 9 * sqrt(2.0 / N), "x1 variance %g", v);
  /* z_i = x_i e^{-x1/2} ~ N(0, 1), independent of x1: mean, variance, correlation with x1 */
  double zm = 0, zv = 0, zc = 0;
  const double cnt = (double)N * (D - 1);
  for (int i = 0; i < N; i++)
    for (int j = 1; j < D; j++) {
      const double z = x[i * D + j] * exp(-0.5 * x[i * D]);
      zm += z;
      zv += z * z;
      zc += z * x[i * D] / 3;
    }
  ck_assert_msg(fabs(zm / cnt) < 5 / sqrt(cnt), "z mean %g", zm / cnt);
  ck_assert_msg(fabs(zv / cnt - 1) < 5 * sqrt(2 / cnt), "z variance %g", zv / cnt);
  ck_assert_msg(fabs(zc / cnt) < 5 / sqrt(cnt), "z-x1 correlation %g", zc / cnt);
  /* the marginal of x2: P(|x2| <= 1) = E_x1[erf(e^{-x1/2} / sqrt 2)], by quadrature */
  double p = 0;
  const double h = 0.001;
  for (double t = -40; t <= 40; t += h)
    p += h * exp(-t * t / 18) / (3 * sqrt(2 * M_PI)) * erf(exp(-0.5 * t) / sqrt(2.0));
  double f = 0;
  for (int i = 0; i < N; i++) f += fabs(x[i * D + 1]) <= 1.0;
  f /= N;
  ck_assert_msg(fabs(f - p) < 5 * sqrt(p * (1 - p) / N), "P(|x2| <= 1) %g vs %g", f, p);
  tch_env_free(e);
  free(x);
}
END_TEST

/* ---- construction, config, mode helpers ------------------------------------------------ */

START_TEST(construction_and_config)
{
  tch_env *e = (tch_env *)1;
  ck_assert_int_eq(tch_env_create_gmm40(0, NULL, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);
  ck_assert_int_eq(tch_env_create_gmm40(100001, NULL, &e), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_gmm40(2, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_funnel(1, NULL, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);
  ck_assert_int_eq(tch_env_create_funnel(10, NULL, NULL), TCH_E_ARG);

  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  int64_t v;
  ck_assert_int_eq(tch_config_get_int(c, "env.gmm40.dim", &v), TCH_OK);
  ck_assert_int_eq(v, 2);
  ck_assert_int_eq(tch_config_get_int(c, "env.funnel.dim", &v), TCH_OK);
  ck_assert_int_eq(v, 10);
  ck_assert_int_eq(tch_config_set_int(c, "env.funnel.dim", 1), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_int(c, "env.gmm40.dim", 0), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_string(c, "env.name", "gmm40"), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.gmm40.dim", 50), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", 64), TCH_OK);
  ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_OK);
  uint32_t dim, steps;
  ck_assert_int_eq(tch_env_energy_dim(e, &dim), TCH_OK);
  ck_assert_uint_eq(dim, 50);
  ck_assert_int_eq(tch_env_diffusion_steps(e, &steps, NULL), TCH_OK);
  ck_assert_uint_eq(steps, 64);
  ck_assert_ptr_nonnull(tchi_gmm40_means(e, NULL));
  tch_env_free(e);
  ck_assert_int_eq(tch_config_set_string(c, "env.name", "funnel"), TCH_OK);
  ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_OK);
  ck_assert_int_eq(tch_env_energy_dim(e, &dim), TCH_OK);
  ck_assert_uint_eq(dim, 10);
  ck_assert_ptr_null(tchi_gmm40_means(e, NULL));   /* not a GMM40 */
  size_t counts[40];
  double x[10] = {0};
  ck_assert_int_eq(tchi_gmm40_mode_counts(e, 1, x, counts, NULL), TCH_E_ARG);
  tch_env_free(e);
  tch_config_free(c);
  ck_assert_ptr_null(tchi_gmm40_means(NULL, NULL));

  /* EMC */
  size_t even[4] = {5, 5, 5, 5}, one[4] = {0, 9, 0, 0}, half[4] = {3, 3, 0, 0}, none[4] = {0};
  ck_assert_double_eq_tol(tchi_mode_entropy(4, even), 1.0, 1e-15);
  ck_assert_double_eq_tol(tchi_mode_entropy(4, one), 0.0, 1e-15);
  ck_assert_double_eq_tol(tchi_mode_entropy(4, half), 0.5, 1e-15);
  ck_assert(isnan(tchi_mode_entropy(4, none)));

  /* allocation failure: every failing allocation is TCH_E_NOMEM with *out = NULL */
  int ok = 0;
  for (uint64_t k = 1; k < 20 && !ok; k++) {
    tchi_alloc_fail_at(k);
    tch_status st = tch_env_create_gmm40(5, NULL, &e);
    tchi_alloc_fail_at(0);
    if (st == TCH_OK) {
      ok = 1;
      tch_env_free(e);
    } else {
      ck_assert_int_eq(st, TCH_E_NOMEM);
      ck_assert_ptr_null(e);
    }
  }
  ck_assert(ok);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc_targets");
  TCase *tc = tcase_create("smc_targets");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, gmm40_2d_means_and_log_z);
  tcase_add_test(tc, gmm40_other_dimensions);
  tcase_add_test(tc, gradients_match_finite_differences);
  tcase_add_test(tc, funnel_log_z_and_values);
  tcase_add_test(tc, gmm40_exact_sampler);
  tcase_add_test(tc, funnel_exact_sampler);
  tcase_add_test(tc, construction_and_config);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
