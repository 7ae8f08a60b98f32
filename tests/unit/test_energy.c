/* Energy environments (continuous targets of diffusion samplers): the built-in GMM25 and
 * ManyWell (log Z by numerical integration, values against independent formulas, gradients
 * against finite differences, exact samplers against their target's statistics), the
 * host-callback adaptor (what callbacks return is checked; user_free; descriptor
 * validation and versions; allocation failure), the discretisation keys, and clean
 * failures of discrete-only calls on energy envs (and vice versa). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "envs/env.h"
#include "teacher.h"

#define MW_LOG_Z 164.69567532   /* diffusion/train.py's reference value */

/* log(sum exp(v_i)) accumulated in a streaming, overflow-free way. */
typedef struct lse_acc { double m, s; } lse_acc;
static void lse_init(lse_acc *a) { a->m = -INFINITY; a->s = 0.0; }
static void lse_add(lse_acc *a, double v)
{
  if (v <= a->m) {
    a->s += exp(v - a->m);
  } else {
    a->s = a->s * exp(a->m - v) + 1.0;
    a->m = v;
  }
}
static double lse_get(const lse_acc *a) { return a->m + log(a->s); }

/* Trapezoid weight (in log) of grid point i of 0..n-1. */
static double trap_log_w(size_t i, size_t n) { return (i == 0 || i + 1 == n) ? log(0.5) : 0.0; }

/* ---- GMM25 ----------------------------------------------------------------------------- */

/* The reference's formula, term by term: logsumexp over 25 components of
 * log N(x; mu_k, 0.3 I) minus log 25. */
static double gmm25_reference(const double *x)
{
  static const double m[5] = {-10, -5, 0, 5, 10};
  lse_acc a;
  lse_init(&a);
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 5; j++) {
      const double d0 = x[0] - m[i], d1 = x[1] - m[j];
      lse_add(&a, -(d0 * d0 + d1 * d1) / (2 * 0.3) - log(2 * M_PI * 0.3));
    }
  return lse_get(&a) - log(25.0);
}

START_TEST(gmm25_log_z_by_integration)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_gmm25(NULL, &e), TCH_OK);
  uint32_t dim;
  ck_assert_int_eq(tch_env_energy_dim(e, &dim), TCH_OK);
  ck_assert_uint_eq(dim, 2);
  double lz = NAN;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_OK);
  ck_assert(lz == 0.0);
  /* Trapezoid rule on [-14, 14]^2, h = 0.05: the Gaussians (sd 0.55) put < 1e-12 of their
   * mass outside, and the rule is spectrally accurate for them (error ~ exp(-2 pi^2 0.3 /
   * h^2)). Each grid row is one batched call. */
  const size_t n = 561;
  const double lo = -14.0, h = 28.0 / (double)(n - 1);
  double *x = malloc(n * 2 * sizeof *x), *lp = malloc(n * sizeof *lp);
  ck_assert(x && lp);
  lse_acc acc;
  lse_init(&acc);
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      x[2 * j] = lo + h * (double)i;
      x[2 * j + 1] = lo + h * (double)j;
    }
    ck_assert_int_eq(tch_env_log_density(e, n, x, lp, NULL), TCH_OK);
    for (size_t j = 0; j < n; j++) lse_add(&acc, lp[j] + trap_log_w(i, n) + trap_log_w(j, n));
  }
  const double log_integral = lse_get(&acc) + 2 * log(h);
  ck_assert_msg(fabs(log_integral) < 1e-6, "GMM25: log of the integral = %.3e, expected 0",
                log_integral);
  free(x);
  free(lp);
  tch_env_free(e);
}
END_TEST

START_TEST(gmm25_values_match_the_reference_formula)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_gmm25(NULL, &e), TCH_OK);
  /* Points at modes, between them, far outside, and pseudo-random ones. */
  enum { N = 40 };
  double x[2 * N], lp[N], lp2[N], g[2 * N];
  const double fixed[10] = {0, 0, 10, -10, 2.5, 2.5, -30, 40, 7.3, -1.2};
  memcpy(x, fixed, sizeof fixed);
  tchi_rng rng;
  tchi_rng_seed(&rng, 11, 0);
  for (int i = 10; i < 2 * N; i++) x[i] = -14.0 + 28.0 * tchi_rng_uniform(&rng);
  ck_assert_int_eq(tch_env_log_density(e, N, x, lp, NULL), TCH_OK);
  ck_assert_int_eq(tch_env_log_density(e, N, x, lp2, g), TCH_OK);
  for (int i = 0; i < N; i++) {
    const double ref = gmm25_reference(x + 2 * i);
    ck_assert_msg(fabs(lp[i] - ref) <= 1e-12 * (1.0 + fabs(ref)), "row %d: %.17g vs %.17g", i,
                  lp[i], ref);
    ck_assert(lp[i] == lp2[i]);   /* asking for the gradient does not change log p */
  }
  /* The density at a mode: the mode's own component dominates. */
  ck_assert_double_eq_tol(lp[0], -log(25.0) - log(2 * M_PI * 0.3), 1e-9);
  tch_env_free(e);
}
END_TEST

/* Central finite differences of an env's log density at n points (n x dim), compared with
 * its analytic gradient: |g - fd| <= tol (1 + |g|). */
static void check_gradient(tch_env *e, size_t n, size_t dim, double *x, double tol)
{
  double *g = malloc(n * dim * sizeof *g), *lp = malloc(n * sizeof *lp);
  double *lpp = malloc(n * sizeof *lpp), *lpm = malloc(n * sizeof *lpm);
  ck_assert(g && lp && lpp && lpm);
  ck_assert_int_eq(tch_env_log_density(e, n, x, lp, g), TCH_OK);
  const double h = 1e-5;
  for (size_t j = 0; j < dim; j++) {
    for (size_t i = 0; i < n; i++) x[i * dim + j] += h;
    ck_assert_int_eq(tch_env_log_density(e, n, x, lpp, NULL), TCH_OK);
    for (size_t i = 0; i < n; i++) x[i * dim + j] -= 2 * h;
    ck_assert_int_eq(tch_env_log_density(e, n, x, lpm, NULL), TCH_OK);
    for (size_t i = 0; i < n; i++) x[i * dim + j] += h;
    for (size_t i = 0; i < n; i++) {
      const double fd = (lpp[i] - lpm[i]) / (2 * h), an = g[i * dim + j];
      ck_assert_msg(fabs(an - fd) <= tol * (1.0 + fabs(an)),
                    "row %zu column %zu: gradient %.10g, finite difference %.10g", i, j, an, fd);
    }
  }
  free(g);
  free(lp);
  free(lpp);
  free(lpm);
}

START_TEST(gradients_match_finite_differences)
{
  tchi_rng rng;
  tchi_rng_seed(&rng, 5, 0);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_gmm25(NULL, &e), TCH_OK);
  ck_assert(tchi_env_has_grad(e));
  double xg[2 * 200];
  for (int i = 0; i < 2 * 200; i++) xg[i] = -13.0 + 26.0 * tchi_rng_uniform(&rng);
  check_gradient(e, 200, 2, xg, 1e-6);
  tch_env_free(e);

  ck_assert_int_eq(tch_env_create_manywell(NULL, &e), TCH_OK);
  ck_assert(tchi_env_has_grad(e));
  double xm[32 * 20];
  for (int i = 0; i < 32 * 20; i++) xm[i] = -2.5 + 5.0 * tchi_rng_uniform(&rng);
  check_gradient(e, 20, 32, xm, 1e-6);
  tch_env_free(e);
}
END_TEST

/* ---- ManyWell ---------------------------------------------------------------------------- */

START_TEST(manywell_values)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_manywell(NULL, &e), TCH_OK);
  uint32_t dim;
  ck_assert_int_eq(tch_env_energy_dim(e, &dim), TCH_OK);
  ck_assert_uint_eq(dim, 32);
  double lz;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_OK);
  ck_assert_double_eq_tol(lz, 16 * (log(11784.50927) + 0.5 * log(2 * M_PI)), 1e-12);
  ck_assert_double_eq_tol(lz, MW_LOG_Z, 1e-8);
  double x[2 * 32], lp[2], g[2 * 32];
  tchi_rng rng;
  tchi_rng_seed(&rng, 3, 0);
  for (int i = 0; i < 64; i++) x[i] = -3.0 + 6.0 * tchi_rng_uniform(&rng);
  ck_assert_int_eq(tch_env_log_density(e, 2, x, lp, g), TCH_OK);
  for (int r = 0; r < 2; r++) {
    double ref = 0.0;
    for (int k = 0; k < 16; k++) {
      const double a = x[r * 32 + 2 * k], b = x[r * 32 + 2 * k + 1];
      ref += -pow(a, 4) + 6 * a * a + 0.5 * a - 0.5 * b * b;
      ck_assert_double_eq_tol(g[r * 32 + 2 * k], -4 * pow(a, 3) + 12 * a + 0.5, 1e-12);
      ck_assert(g[r * 32 + 2 * k + 1] == -b);
    }
    ck_assert_double_eq_tol(lp[r], ref, 1e-11 * (1 + fabs(ref)));
  }
  tch_env_free(e);
}
END_TEST

/* log of the integral of exp(log p) over pair `pair`'s two coordinates, with every other
 * coordinate at 0 (where each other pair's log density is exactly 0). */
static double manywell_pair_log_integral(tch_env *e, size_t pair)
{
  /* x_even on [-3.5, 3.5] (exp(f) < 1e-32 of its maximum outside), x_odd on [-10, 10]
   * (exp(-50) outside); trapezoid, one batched call per x_even value. */
  const size_t na = 701, nb = 1001;
  const double ha = 7.0 / (double)(na - 1), hb = 20.0 / (double)(nb - 1);
  double *x = calloc(nb * 32, sizeof *x), *lp = malloc(nb * sizeof *lp);
  ck_assert(x && lp);
  lse_acc acc;
  lse_init(&acc);
  for (size_t i = 0; i < na; i++) {
    for (size_t j = 0; j < nb; j++) {
      x[j * 32 + 2 * pair] = -3.5 + ha * (double)i;
      x[j * 32 + 2 * pair + 1] = -10.0 + hb * (double)j;
    }
    ck_assert_int_eq(tch_env_log_density(e, nb, x, lp, NULL), TCH_OK);
    for (size_t j = 0; j < nb; j++) lse_add(&acc, lp[j] + trap_log_w(i, na) + trap_log_w(j, nb));
  }
  free(x);
  free(lp);
  return lse_get(&acc) + log(ha) + log(hb);
}

START_TEST(manywell_log_z_by_integration)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_manywell(NULL, &e), TCH_OK);
  /* The first and the last pair (catches an indexing error in either). */
  const size_t pairs[2] = {0, 15};
  for (int p = 0; p < 2; p++) {
    const double li = manywell_pair_log_integral(e, pairs[p]);
    ck_assert_msg(fabs(16 * li - MW_LOG_Z) < 1e-6, "pair %zu: 16 log integral = %.10f, expected %.8f",
                  pairs[p], 16 * li, MW_LOG_Z);
  }
  tch_env_free(e);
}
END_TEST

/* ---- exact samplers ------------------------------------------------------------------- */

static int nearest_mean_index(double v)
{
  int k = (int)lround(v / 5.0) + 2;
  return k < 0 ? 0 : k > 4 ? 4 : k;
}

START_TEST(gmm25_exact_sampler)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_gmm25(NULL, &e), TCH_OK);
  const size_t per = 400, rest = 13, n = 25 * per + rest;
  double *x = malloc(n * 2 * sizeof *x), *y = malloc(n * 2 * sizeof *y);
  ck_assert(x && y);
  ck_assert_int_eq(tch_env_sample_target(e, 42, n, x), TCH_OK);
  /* Reproducible per seed; another seed gives other samples. */
  ck_assert_int_eq(tch_env_sample_target(e, 42, n, y), TCH_OK);
  ck_assert(memcmp(x, y, n * 2 * sizeof *x) == 0);
  ck_assert_int_eq(tch_env_sample_target(e, 43, n, y), TCH_OK);
  ck_assert(memcmp(x, y, n * 2 * sizeof *x) != 0);

  /* Layout: rows [400k, 400k+400) come from component k = 5 i_a + i_b (a-major). A point
   * is assigned to its nearest mean; the boundary is 2.5 = 4.56 sd away, so a correct
   * sampler mislabels each point with probability ~1e-5: allow 2 in 10000. */
  size_t count[25] = {0}, mislabelled = 0;
  const double se_mean = sqrt(0.3 / (double)per), se_var = 0.3 * sqrt(2.0 / (double)(per - 1));
  double pooled = 0;   /* squared offsets from the component's mean, all blocks */
  for (size_t k = 0; k < 25; k++) {
    const double mu[2] = {-10.0 + 5.0 * (double)(k / 5), -10.0 + 5.0 * (double)(k % 5)};
    for (int c = 0; c < 2; c++) {
      double s = 0, s2 = 0;
      for (size_t i = k * per; i < (k + 1) * per; i++) {
        const double v = x[2 * i + c] - mu[c];
        s += v;
        s2 += v * v;
      }
      pooled += s2;
      const double mean = s / (double)per, var = (s2 - s * mean) / (double)(per - 1);
      /* 5 standard errors: a correct sampler fails one of these 100 checks w.p. ~6e-5 */
      ck_assert_msg(fabs(mean) < 5 * se_mean, "component %zu coord %d: mean offset %g", k, c, mean);
      ck_assert_msg(fabs(var - 0.3) < 5 * se_var, "component %zu coord %d: variance %g", k, c, var);
    }
    for (size_t i = k * per; i < (k + 1) * per; i++) {
      const size_t lab = (size_t)(5 * nearest_mean_index(x[2 * i]) + nearest_mean_index(x[2 * i + 1]));
      mislabelled += lab != k;
      count[lab]++;
    }
  }
  /* Pooled over the 50 blocks (20000 values) the variance is known to 5 sigma = 0.015. */
  const double pooled_var = pooled / (double)(25 * per * 2);
  ck_assert_msg(fabs(pooled_var - 0.3) < 5 * 0.3 * sqrt(2.0 / (double)(25 * per * 2)),
                "pooled within-component variance %g, expected 0.3", pooled_var);
  ck_assert_uint_le(mislabelled, 2);
  /* The 13 extra rows: 13 distinct components. */
  int seen[25] = {0};
  for (size_t i = 25 * per; i < n; i++) {
    const int lab = 5 * nearest_mean_index(x[2 * i]) + nearest_mean_index(x[2 * i + 1]);
    ck_assert_msg(!seen[lab], "extra row %zu repeats component %d", i, lab);
    seen[lab] = 1;
    count[lab]++;
  }
  size_t total = 0;
  for (int k = 0; k < 25; k++) {
    ck_assert_uint_ge(count[k] + 2, per);   /* the 2 mislabels allowed above */
    ck_assert_uint_le(count[k], per + 1 + 2);
    total += count[k];
  }
  ck_assert_uint_eq(total, n);
  /* First two moments of the whole sample: mean 0, E[x_c^2] = 0.3 + 50 (the stratified
   * layout makes the sampling error far smaller than these i.i.d. 5-sigma bounds). */
  for (int c = 0; c < 2; c++) {
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
      s += x[2 * i + c];
      s2 += x[2 * i + c] * x[2 * i + c];
    }
    ck_assert_double_eq_tol(s / (double)n, 0.0, 5 * sqrt(50.3 / (double)n));
    ck_assert_double_eq_tol(s2 / (double)n, 50.3, 5 * sqrt(1810.18 / (double)n));
  }
  /* Fewer rows than components: distinct components, n = 0 is a no-op. */
  ck_assert_int_eq(tch_env_sample_target(e, 1, 3, y), TCH_OK);
  int a = 5 * nearest_mean_index(y[0]) + nearest_mean_index(y[1]);
  int b = 5 * nearest_mean_index(y[2]) + nearest_mean_index(y[3]);
  int c = 5 * nearest_mean_index(y[4]) + nearest_mean_index(y[5]);
  ck_assert(a != b && b != c && a != c);
  ck_assert_int_eq(tch_env_sample_target(e, 1, 0, NULL), TCH_OK);
  ck_assert_int_eq(tch_env_sample_target(e, 1, 1, NULL), TCH_E_ARG);
  free(x);
  free(y);
  tch_env_free(e);
}
END_TEST

static int cmp_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

START_TEST(manywell_exact_sampler)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_manywell(NULL, &e), TCH_OK);
  const size_t n = 4000, pairs = 16, m = n * pairs;
  double *x = malloc(n * 32 * sizeof *x), *y = malloc(n * 32 * sizeof *y);
  double *even = malloc(m * sizeof *even);
  ck_assert(x && y && even);
  ck_assert_int_eq(tch_env_sample_target(e, 7, n, x), TCH_OK);
  ck_assert_int_eq(tch_env_sample_target(e, 7, n, y), TCH_OK);
  ck_assert(memcmp(x, y, n * 32 * sizeof *x) == 0);
  ck_assert_int_eq(tch_env_sample_target(e, 8, n, y), TCH_OK);
  ck_assert(memcmp(x, y, n * 32 * sizeof *x) != 0);

  /* Odd coordinates ~ N(0, 1), pooled over the 16 pairs: 5-sigma bounds on mean and
   * variance. */
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < pairs; k++) {
      const double v = x[i * 32 + 2 * k + 1];
      s += v;
      s2 += v * v;
      even[i * pairs + k] = x[i * 32 + 2 * k];
    }
  ck_assert_double_eq_tol(s / (double)m, 0.0, 5 / sqrt((double)m));
  ck_assert_double_eq_tol(s2 / (double)m, 1.0, 5 * sqrt(2.0 / (double)m));

  /* Even coordinates: the normalised double-well density exp(f)/Z_even, f(v) = -v^4 +
   * 6 v^2 + 0.5 v. Its CDF by the trapezoid rule on [-4, 4] (h = 1e-3, error far below the
   * KS bound), its moments likewise. */
  const size_t ng = 8001;
  const double glo = -4.0, gh = 8.0 / (double)(ng - 1);
  double *cdf = malloc(ng * sizeof *cdf);
  ck_assert(cdf);
  double z = 0, m1 = 0, m2 = 0, prev = 0;
  cdf[0] = 0;
  for (size_t i = 0; i < ng; i++) {
    const double v = glo + gh * (double)i, p = exp(-pow(v, 4) + 6 * v * v + 0.5 * v);
    if (i > 0) z += 0.5 * gh * (p + prev);
    cdf[i] = z;
    m1 += gh * v * p;   /* p vanishes at both ends: plain sums are trapezoid sums */
    m2 += gh * v * v * p;
    prev = p;
  }
  ck_assert_double_eq_tol(z, 11784.50927, 1e-3);
  m1 /= z;
  m2 /= z;
  for (size_t i = 0; i < ng; i++) cdf[i] /= z;
  double se = 0, se2 = 0;
  for (size_t i = 0; i < m; i++) {
    se += even[i];
    se2 += even[i] * even[i];
  }
  const double var1 = m2 - m1 * m1;
  ck_assert_double_eq_tol(se / (double)m, m1, 5 * sqrt(var1 / (double)m));
  /* Var(v^2) < E[v^4] <= 4^2 E[v^2] on [-4, 4]: a loose but valid 5-sigma bound. */
  ck_assert_double_eq_tol(se2 / (double)m, m2, 5 * sqrt(16 * m2 / (double)m));
  /* Kolmogorov-Smirnov against the numerical CDF (linear interpolation). With m = 64000
   * i.i.d. draws, P(D > 2.225 / sqrt(m)) ~ 1e-4 for a correct sampler; a wrong well weight
   * (the left well holds ~15% of the mass) or width moves the CDF by far more. */
  qsort(even, m, sizeof *even, cmp_double);
  double dmax = 0;
  for (size_t i = 0; i < m; i++) {
    const double v = even[i];
    double F;
    if (v <= glo) {
      F = 0;
    } else if (v >= glo + gh * (double)(ng - 1)) {
      F = 1;
    } else {
      const double t = (v - glo) / gh;
      const size_t k = (size_t)t;
      const double fr = t - (double)k;
      F = cdf[k] + fr * (cdf[k + 1 < ng ? k + 1 : k] - cdf[k]);
    }
    const double d1 = fabs((double)(i + 1) / (double)m - F), d2 = fabs(F - (double)i / (double)m);
    if (d1 > dmax) dmax = d1;
    if (d2 > dmax) dmax = d2;
  }
  ck_assert_msg(dmax < 2.225 / sqrt((double)m), "KS distance %.5f >= %.5f", dmax,
                2.225 / sqrt((double)m));
  /* Pairs are independent: correlation of x_0 with x_2 and of x_0 with x_1 within 5 / sqrt(n). */
  const int cols[2][2] = {{0, 2}, {0, 1}};
  for (int t = 0; t < 2; t++) {
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    for (size_t i = 0; i < n; i++) {
      const double a = x[i * 32 + cols[t][0]], b = x[i * 32 + cols[t][1]];
      sa += a;
      sb += b;
      saa += a * a;
      sbb += b * b;
      sab += a * b;
    }
    const double dn = (double)n;
    const double r = (sab / dn - sa / dn * sb / dn) /
                     sqrt((saa / dn - sa / dn * sa / dn) * (sbb / dn - sb / dn * sb / dn));
    ck_assert_msg(fabs(r) < 5 / sqrt(dn), "correlation of columns %d and %d is %g", cols[t][0],
                  cols[t][1], r);
  }
  free(cdf);
  free(even);
  free(x);
  free(y);
  tch_env_free(e);
}
END_TEST

/* ---- host energies ------------------------------------------------------------------------ */

/* A host target: isotropic Gaussian N(mu, 1) in dim 3 (log Z = 1.5 log 2 pi), whose
 * callbacks can be told to misbehave. */
typedef struct host {
  int fail_code;        /* non-zero: log_density returns it */
  int nan_row;          /* >= 0: that row's log p is NaN */
  int inf_row;          /* >= 0: that row's log p is +Inf */
  int grad_nan_col;     /* >= 0: row 0's gradient in that column is NaN */
  int skip_row;         /* >= 0: that row is left unwritten */
  int sample_fail;      /* non-zero: sample_reference returns it */
  int sample_nan;       /* non-zero: sample_reference writes a NaN */
  int calls, frees;
  uint64_t last_seed;
} host;

static const double host_mu[3] = {1.0, -2.0, 0.5};

static int host_log_density(void *user, size_t n, size_t dim, const double *x, double *lp,
                            double *grad)
{
  host *h = user;
  h->calls++;
  ck_assert_uint_eq(dim, 3);
  if (h->fail_code) {
    tch_set_callback_error("host energy is unavailable");
    return h->fail_code;
  }
  for (size_t i = 0; i < n; i++) {
    if ((int)i == h->skip_row) continue;
    double s = 0;
    for (size_t j = 0; j < dim; j++) {
      const double d = x[i * dim + j] - host_mu[j];
      s += d * d;
      if (grad) grad[i * dim + j] = -d;
    }
    lp[i] = -0.5 * s;
    if ((int)i == h->nan_row) lp[i] = NAN;
    if ((int)i == h->inf_row) lp[i] = INFINITY;
  }
  if (grad && h->grad_nan_col >= 0) grad[h->grad_nan_col] = NAN;
  return 0;
}

static int host_sample(void *user, uint64_t seed, size_t n, size_t dim, double *out)
{
  host *h = user;
  h->last_seed = seed;
  if (h->sample_fail) return h->sample_fail;
  tchi_rng r;
  tchi_rng_seed(&r, seed, 0);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < dim; j++) out[i * dim + j] = host_mu[j] + tchi_rng_normal(&r);
  if (h->sample_nan && n > 0) out[dim * n - 1] = NAN;
  return 0;
}

static void host_free(void *user) { ((host *)user)->frees++; }

static void host_init(host *h)
{
  memset(h, 0, sizeof *h);
  h->nan_row = h->inf_row = h->grad_nan_col = h->skip_row = -1;
}

static void host_desc(tch_energy_desc *d, host *h, uint32_t flags)
{
  tch_energy_desc_init(d);
  d->dim = 3;
  d->flags = flags;
  d->log_density = host_log_density;
  d->log_Z = 1.5 * log(2 * M_PI);
  d->sample_reference = host_sample;
  d->user = h;
  d->user_free = host_free;
}

START_TEST(host_energy_round_trip)
{
  host h;
  host_init(&h);
  tch_energy_desc d;
  host_desc(&d, &h, TCH_ENERGY_HAS_GRAD);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &e), TCH_OK);
  memset(&d, 0xff, sizeof d);   /* the env keeps its own copy */
  const double x[6] = {1, -2, 0.5, 0, 0, 0};
  double lp[2], g[6];
  ck_assert_int_eq(tch_env_log_density(e, 2, x, lp, g), TCH_OK);
  ck_assert(lp[0] == 0.0);
  ck_assert_double_eq_tol(lp[1], -0.5 * (1 + 4 + 0.25), 1e-15);
  ck_assert(g[3] == 1.0 && g[4] == -2.0 && g[5] == 0.5);
  ck_assert_int_eq(tchi_env_log_density(e, 2, x, lp, NULL), TCH_OK);
  ck_assert_int_eq(tch_env_log_density(e, 0, NULL, NULL, NULL), TCH_OK);
  double lz;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_OK);
  ck_assert(lz == 1.5 * log(2 * M_PI));
  double s[3 * 500];
  ck_assert_int_eq(tch_env_sample_target(e, 99, 500, s), TCH_OK);
  ck_assert(h.last_seed == 99);   /* the seed reaches the host unchanged */
  double mean = 0;
  for (int i = 0; i < 500; i++) mean += s[3 * i + 1];
  ck_assert_double_eq_tol(mean / 500, -2.0, 5 / sqrt(500.0));
  /* Reference counting: user_free runs once, with the last reference. */
  ck_assert_ptr_eq(tch_env_retain(e), e);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 0);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);
}
END_TEST

START_TEST(host_energy_errors)
{
  host h;
  host_init(&h);
  tch_energy_desc d;
  host_desc(&d, &h, TCH_ENERGY_HAS_GRAD);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &e), TCH_OK);
  const double x[9] = {0};
  double lp[3], g[9];
  /* callback failure: code and text reach the caller */
  h.fail_code = 7;
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, NULL), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 7);
  ck_assert_str_eq(tch_last_error(), "log_density callback returned 7: host energy is unavailable");
  h.fail_code = -3;
  ck_assert_int_eq(tchi_env_log_density(e, 3, x, lp, g), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), -3);
  h.fail_code = 0;
  /* non-finite values name the row (and column) */
  h.nan_row = 2;
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, NULL), TCH_E_NUMERIC);
  ck_assert_str_eq(tch_last_error(), "log_density returned nan for row 2");
  h.nan_row = -1;
  h.inf_row = 1;
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, NULL), TCH_E_NUMERIC);
  ck_assert_str_eq(tch_last_error(), "log_density returned +inf for row 1");
  h.inf_row = -1;
  h.skip_row = 0;   /* an unwritten entry is caught too */
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, NULL), TCH_E_NUMERIC);
  ck_assert_str_eq(tch_last_error(), "log_density returned nan for row 0");
  h.skip_row = -1;
  h.grad_nan_col = 2;
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, NULL), TCH_OK);   /* no gradient asked */
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, g), TCH_E_NUMERIC);
  ck_assert_str_eq(tch_last_error(), "log_density gradient returned nan for row 0 column 2");
  h.grad_nan_col = -1;
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, g), TCH_OK);
  /* NULL arguments */
  ck_assert_int_eq(tch_env_log_density(NULL, 3, x, lp, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_density(e, 3, NULL, lp, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_density(e, 3, x, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_env_log_density(e, 3, x, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_density(e, SIZE_MAX / 2, x, lp, NULL), TCH_E_ARG);
  /* sampler failures */
  double s[6];
  h.sample_fail = 4;
  ck_assert_int_eq(tch_env_sample_target(e, 1, 2, s), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 4);
  ck_assert_str_eq(tch_last_error(), "sample_reference callback returned 4");
  h.sample_fail = 0;
  h.sample_nan = 1;
  ck_assert_int_eq(tch_env_sample_target(e, 1, 2, s), TCH_E_NUMERIC);
  ck_assert_str_eq(tch_last_error(), "sample_reference returned nan for row 1 column 2");
  ck_assert_int_eq(tch_env_sample_target(e, 1, 2, NULL), TCH_E_ARG);
  uint32_t dim;
  ck_assert_int_eq(tch_env_energy_dim(e, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_energy_dim(NULL, &dim), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_Z(e, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_Z(NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_diffusion_steps(NULL, NULL, NULL), TCH_E_ARG);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);

  /* Without TCH_ENERGY_HAS_GRAD a gradient is TCH_E_STATE and the host is not called;
   * without log_Z or sampler those queries are TCH_E_STATE. */
  host_init(&h);
  host_desc(&d, &h, 0);
  d.log_Z = NAN;
  d.sample_reference = NULL;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &e), TCH_OK);
  ck_assert(!tchi_env_has_grad(e));
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, g), TCH_E_STATE);
  ck_assert_int_eq(tchi_env_log_density(e, 0, x, lp, g), TCH_E_STATE);
  ck_assert_int_eq(h.calls, 0);
  ck_assert_int_eq(tch_env_log_density(e, 3, x, lp, NULL), TCH_OK);
  ck_assert_int_eq(h.calls, 1);
  double lz = 5;
  ck_assert_int_eq(tch_env_log_Z(e, &lz), TCH_E_STATE);
  ck_assert(lz == 5);
  ck_assert_int_eq(tch_env_sample_target(e, 1, 2, s), TCH_E_STATE);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);
}
END_TEST

START_TEST(bad_descriptors)
{
  host h;
  host_init(&h);
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  ck_assert_uint_eq(d.struct_size, sizeof d);
  ck_assert(isnan(d.log_Z));
  ck_assert(d.dim == 0 && d.flags == 0 && !d.log_density && !d.sample_reference && !d.user &&
            !d.user_free);
  tch_env *e = (tch_env *)&h;
  ck_assert_int_eq(tch_env_create_energy(NULL, NULL, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);
  host_desc(&d, &h, TCH_ENERGY_HAS_GRAD);
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, NULL), TCH_E_ARG);
  tch_energy_desc cases[8];
  for (int i = 0; i < 8; i++) host_desc(&cases[i], &h, 0);
  cases[0].struct_size = 0;
  cases[1].struct_size = (uint32_t)offsetof(tch_energy_desc, user_free);   /* one field short */
  cases[2].dim = 0;
  cases[3].log_density = NULL;
  cases[4].flags = 0x2u;
  cases[5].flags = 0x80000001u;
  cases[6].log_Z = INFINITY;
  cases[7].log_Z = -INFINITY;
  static const char *const msgs[8] = {
    "struct_size 0", "struct_size", "dim must be >= 1", "log_density callback is NULL",
    "unknown flags 0x2", "unknown flags 0x80000000", "log_Z is +inf", "log_Z is -inf"};
  for (int i = 0; i < 8; i++) {
    e = (tch_env *)&h;
    ck_assert_int_eq(tch_env_create_energy(&cases[i], NULL, &e), TCH_E_ARG);
    ck_assert_ptr_null(e);
    ck_assert_msg(strstr(tch_last_error(), msgs[i]) != NULL, "case %d: '%s'", i, tch_last_error());
  }
  ck_assert_int_eq(h.frees, 0);   /* never called on failure */
  /* A newer, longer descriptor: the tail is ignored. */
  struct { tch_energy_desc d; uint64_t future[4]; } big;
  memset(&big, 0xab, sizeof big);
  host_desc(&big.d, &h, TCH_ENERGY_HAS_GRAD);
  big.d.struct_size = (uint32_t)sizeof big;
  ck_assert_int_eq(tch_env_create_energy(&big.d, NULL, &e), TCH_OK);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);
}
END_TEST

START_TEST(allocation_failure)
{
  host h;
  host_init(&h);
  tch_energy_desc d;
  host_desc(&d, &h, 0);
  int ok = 0;
  for (uint64_t n = 1; n < 10 && !ok; n++) {
    tch_env *e = (tch_env *)&h;
    tchi_alloc_fail_at(n);
    tch_status st = tch_env_create_energy(&d, NULL, &e);
    tchi_alloc_fail_at(0);
    if (st == TCH_OK) {
      ok = 1;
      tch_env_free(e);
    } else {
      ck_assert_int_eq(st, TCH_E_NOMEM);
      ck_assert_ptr_null(e);
      ck_assert_int_eq(h.frees, 0);
    }
  }
  ck_assert(ok);
  ck_assert_int_eq(h.frees, 1);
  tch_status (*const builtins[2])(const tch_config *, tch_env **) = {tch_env_create_gmm25,
                                                                     tch_env_create_manywell};
  for (int b = 0; b < 2; b++) {
    tch_env *e = (tch_env *)&h;
    tchi_alloc_fail_at(1);
    ck_assert_int_eq(builtins[b](NULL, &e), TCH_E_NOMEM);
    tchi_alloc_fail_at(0);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(builtins[b](NULL, NULL), TCH_E_ARG);
  }
  /* Evaluating and sampling the built-ins allocates nothing. */
  tch_env *e;
  ck_assert_int_eq(tch_env_create_manywell(NULL, &e), TCH_OK);
  double x[32 * 4] = {0}, lp[4], g[32 * 4];
  const uint64_t before = tchi_alloc_count();
  ck_assert_int_eq(tch_env_log_density(e, 4, x, lp, g), TCH_OK);
  ck_assert_int_eq(tch_env_sample_target(e, 1, 4, x), TCH_OK);
  ck_assert(tchi_alloc_count() == before);
  tch_env_free(e);
}
END_TEST

/* ---- configuration ------------------------------------------------------------------------ */

START_TEST(config_keys)
{
  tch_env *e;
  uint32_t steps = 0;
  double ts = 0;
  ck_assert_int_eq(tch_env_create_gmm25(NULL, &e), TCH_OK);
  ck_assert_int_eq(tch_env_diffusion_steps(e, &steps, &ts), TCH_OK);
  ck_assert_uint_eq(steps, 100);   /* the reference's T and t_scale */
  ck_assert(ts == 1.0);
  ck_assert_int_eq(tch_env_diffusion_steps(e, NULL, NULL), TCH_OK);
  tch_env_free(e);

  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", 250), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "env.diffusion.t_scale", 0.5), TCH_OK);
  /* out-of-range values are refused by the config itself */
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", 0), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", 100001), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "env.diffusion.t_scale", 0.0), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "env.diffusion.t_scale", 2e6), TCH_E_CONFIG);
  ck_assert_int_eq(tch_env_create_manywell(c, &e), TCH_OK);
  ck_assert_int_eq(tch_env_diffusion_steps(e, &steps, &ts), TCH_OK);
  ck_assert_uint_eq(steps, 250);
  ck_assert(ts == 0.5);
  tch_env_free(e);
  host h;
  host_init(&h);
  tch_energy_desc d;
  host_desc(&d, &h, 0);
  ck_assert_int_eq(tch_env_create_energy(&d, c, &e), TCH_OK);
  ck_assert_int_eq(tch_env_diffusion_steps(e, &steps, NULL), TCH_OK);
  ck_assert_uint_eq(steps, 250);
  tch_env_free(e);

  /* env.name selects the built-ins, which read env.diffusion.* from the same config. */
  static const struct { const char *name; uint32_t dim; } named[2] = {{"gmm25", 2}, {"manywell", 32}};
  for (int i = 0; i < 2; i++) {
    ck_assert_int_eq(tch_config_set_string(c, "env.name", named[i].name), TCH_OK);
    ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_OK);
    uint32_t dim = 0;
    ck_assert_int_eq(tch_env_energy_dim(e, &dim), TCH_OK);
    ck_assert_uint_eq(dim, named[i].dim);
    ck_assert_int_eq(tch_env_diffusion_steps(e, &steps, &ts), TCH_OK);
    ck_assert_uint_eq(steps, 250);
    ck_assert(ts == 0.5);
    tch_env_free(e);
  }
  ck_assert_int_eq(tch_config_set_string(c, "env.name", "many_well"), TCH_E_CONFIG);
  tch_config_free(c);
}
END_TEST

/* ---- discrete-only calls on energy envs, energy calls on discrete envs --------------------- */

START_TEST(wrong_kind_calls_fail_cleanly)
{
  tch_env *en, *grid;
  ck_assert_int_eq(tch_env_create_gmm25(NULL, &en), TCH_OK);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &grid), TCH_OK);
  uint32_t u;
  size_t z;
  double v;
  int32_t st[2] = {0, 0};
  ck_assert_int_eq(tch_env_dims(en, &u, &u, &u), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "energy env"));
  ck_assert_int_eq(tch_env_log_reward(en, 1, st, &v), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "energy env"));
  ck_assert_int_eq(tch_env_n_terminal(en, &z), TCH_E_STATE);
  ck_assert_int_eq(tch_env_n_modes(en, &z), TCH_E_STATE);
  ck_assert_int_eq(tch_env_enumerate_terminal(en, 1, st, &v), TCH_E_STATE);
  ck_assert_int_eq(tch_env_empirical_l1(en, 1, st, &v), TCH_E_STATE);
  ck_assert_int_eq(tch_env_count_modes(en, 1, st, &z), TCH_E_STATE);

  tch_policy *p = (tch_policy *)en;
  ck_assert_int_eq(tch_policy_create(en, NULL, 0, &p), TCH_E_ARG);
  ck_assert_ptr_null(p);
  /* An energy env gets a diffusion trainer (test_dtrainer.c), whose Student is no tch_policy. */
  tch_trainer *t = (tch_trainer *)en;
  ck_assert_int_eq(tch_trainer_create(en, NULL, &t), TCH_OK);
  ck_assert_int_eq(tch_trainer_get_student(t, &p), TCH_E_STATE);
  ck_assert_ptr_null(p);
  tch_trainer_free(t);
  t = (tch_trainer *)en;
  ck_assert_int_eq(tch_trainer_load(en, "/nonexistent.tchk", &t), TCH_E_IO);
  ck_assert_ptr_null(t);
  /* Calls that take a discrete policy and an env. */
  ck_assert_int_eq(tch_policy_create(grid, NULL, 0, &p), TCH_OK);
  int32_t acts[32];
  uint32_t len[1];
  ck_assert_int_eq(tch_policy_sample_discrete(p, en, 1, 1, st, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_policy_sample_trajectories(p, en, 1, 1, 0.0, 1.0, acts, acts, len, NULL, NULL),
                   TCH_E_ARG);
  ck_assert_int_eq(tch_policy_sample_backward(p, en, 1, 1, st, acts, acts, len), TCH_E_ARG);
  ck_assert_int_eq(tch_policy_score_discrete(p, en, 1, acts, acts, len, NULL, NULL), TCH_E_ARG);
  tch_buffer *b;
  ck_assert_int_eq(tch_buffer_create(2, 10, TCH_PRIORITY_NONE, 0.01, &b), TCH_OK);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, en, 1, 1, acts, acts, len, NULL), TCH_E_ARG);
  tch_mixer *m;
  ck_assert_int_eq(tch_mixer_create("student", &m), TCH_OK);
  ck_assert_int_eq(tch_mixer_set_policy(m, TCH_SOURCE_STUDENT, p), TCH_OK);
  ck_assert_int_eq(tch_mixer_draw_discrete(m, en, 1, 0, 1, acts, acts, len, NULL, NULL), TCH_E_ARG);
  tch_mixer_free(m);
  tch_buffer_free(b);
  tch_policy_free(p);

  /* Energy queries on a discrete env. */
  double x[2] = {0, 0}, lp;
  ck_assert_int_eq(tch_env_energy_dim(grid, &u), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "not an energy env"));
  ck_assert_int_eq(tch_env_log_density(grid, 1, x, &lp, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_env_log_density(grid, 1, x, &lp, NULL), TCH_E_ARG);
  ck_assert(!tchi_env_has_grad(grid));
  ck_assert(!tchi_env_has_grad(NULL));
  ck_assert_int_eq(tch_env_log_Z(grid, &v), TCH_E_ARG);
  ck_assert_int_eq(tch_env_sample_target(grid, 1, 1, x), TCH_E_ARG);
  ck_assert_int_eq(tch_env_diffusion_steps(grid, &u, &v), TCH_E_ARG);
  tch_env_free(grid);
  tch_env_free(en);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("energy");
  TCase *tc = tcase_create("energy");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, gmm25_log_z_by_integration);
  tcase_add_test(tc, gmm25_values_match_the_reference_formula);
  tcase_add_test(tc, gradients_match_finite_differences);
  tcase_add_test(tc, manywell_values);
  tcase_add_test(tc, manywell_log_z_by_integration);
  tcase_add_test(tc, gmm25_exact_sampler);
  tcase_add_test(tc, manywell_exact_sampler);
  tcase_add_test(tc, host_energy_round_trip);
  tcase_add_test(tc, host_energy_errors);
  tcase_add_test(tc, bad_descriptors);
  tcase_add_test(tc, allocation_failure);
  tcase_add_test(tc, config_keys);
  tcase_add_test(tc, wrong_kind_calls_fail_cleanly);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
