/* Diffusion evaluation metrics and MALA local search: log-weight summaries on hand-computed
 * arrays, ESS extremes, the exact assignment solver against brute force, closed forms and
 * its dual certificate, the MMDs and mean/median distances against hand-computed values and
 * a direct kernel-matrix implementation, MALA on a Gaussian (moments, step adaptation,
 * draw order, sample bookkeeping), failing targets and allocation failures. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "diffusion/dmetrics.h"

#define EPS 1e-12

static void fill_normal(tchi_rng *r, size_t n, double *a, double scale, double shift)
{
  for (size_t i = 0; i < n; i++) a[i] = shift + scale * tchi_rng_normal(r);
}

/* ---- log-weight summaries ------------------------------------------------------------------ */

START_TEST(logmeanexp_hand_values)
{
  double a[2] = {0.0, log(3.0)};
  ck_assert_double_eq_tol(tchi_logmeanexp(2, a), log(2.0), EPS);
  ck_assert_double_eq_tol(tchi_logsumexp(2, a), log(4.0), EPS);
  double big[3] = {1000.0, 1000.0, 1000.0};   /* would overflow without the shift */
  ck_assert_double_eq_tol(tchi_logmeanexp(3, big), 1000.0, EPS);
  double small[2] = {-2000.0, -2000.0 + log(3.0)};
  ck_assert_double_eq_tol(tchi_logmeanexp(2, small), -2000.0 + log(2.0), 1e-9);
  double ninf[2] = {-INFINITY, -INFINITY};
  ck_assert(tchi_logmeanexp(2, ninf) == -INFINITY);
  double mixed[2] = {-INFINITY, 0.0};
  ck_assert_double_eq_tol(tchi_logmeanexp(2, mixed), -log(2.0), EPS);
  double pinf[2] = {INFINITY, 0.0};
  ck_assert(tchi_logmeanexp(2, pinf) == INFINITY);
  double withnan[2] = {0.0, NAN};
  ck_assert(isnan(tchi_logmeanexp(2, withnan)));
  ck_assert(isnan(tchi_logmeanexp(0, a)));
}
END_TEST

START_TEST(log_z_estimators_hand_values)
{
  /* w = 1, 2, 3, 6: mean 3, so IS log Z = log 3; ELBO = mean log w = log(36) / 4. */
  double lw[4] = {0.0, log(2.0), log(3.0), log(6.0)};
  ck_assert_double_eq_tol(tchi_is_log_z(4, lw), log(3.0), EPS);
  ck_assert_double_eq_tol(tchi_elbo(4, lw), log(36.0) / 4.0, EPS);
  ck_assert_double_eq_tol(tchi_eubo(4, lw), log(36.0) / 4.0, EPS);
  /* Jensen: ELBO <= IS estimate. */
  ck_assert(tchi_elbo(4, lw) <= tchi_is_log_z(4, lw));
  double gt[3] = {-1.0, 2.0, 5.5};
  ck_assert_double_eq_tol(tchi_eubo(3, gt), 6.5 / 3.0, EPS);
  ck_assert(isnan(tchi_elbo(0, gt)));
  ck_assert(isnan(tchi_eubo(0, gt)));
  /* Two points with K = 2 trajectories each: logmeanexp of {log 1, log 3} = log 2 and of
   * {log 4, log 4} = log 4; the mean is log(8) / 2. */
  double ll[4] = {0.0, log(3.0), log(4.0), log(4.0)};
  ck_assert_double_eq_tol(tchi_mean_log_likelihood(2, 2, ll), log(8.0) / 2.0, EPS);
  ck_assert(isnan(tchi_mean_log_likelihood(2, 0, ll)));
}
END_TEST

START_TEST(ess_extremes)
{
  double ess, frac;
  double eq[5] = {-3.0, -3.0, -3.0, -3.0, -3.0};
  tchi_ess(5, eq, &ess, &frac);
  ck_assert_double_eq_tol(ess, 5.0, EPS);
  ck_assert_double_eq_tol(frac, 1.0, EPS);
  double one[4] = {-INFINITY, 2.0, -INFINITY, -INFINITY};
  tchi_ess(4, one, &ess, &frac);
  ck_assert_double_eq_tol(ess, 1.0, EPS);
  ck_assert_double_eq_tol(frac, 0.25, EPS);
  /* A dominant weight: 1 vs e^-800 leaves ESS = 1 up to rounding. */
  double dom[3] = {800.0, 0.0, 0.0};
  tchi_ess(3, dom, &ess, &frac);
  ck_assert_double_eq_tol(ess, 1.0, EPS);
  /* w = 1, 1, 2: (4)^2 / 6; invariant under a common shift of the log-weights. */
  double w[3] = {0.0, 0.0, log(2.0)}, ws[3] = {700.0, 700.0, 700.0 + log(2.0)};
  tchi_ess(3, w, &ess, &frac);
  ck_assert_double_eq_tol(ess, 16.0 / 6.0, EPS);
  ck_assert_double_eq_tol(frac, 16.0 / 18.0, EPS);
  tchi_ess(3, ws, &ess, &frac);
  ck_assert_double_eq_tol(ess, 16.0 / 6.0, 1e-9);
  double none[2] = {-INFINITY, -INFINITY};
  tchi_ess(2, none, &ess, &frac);
  ck_assert(ess == 0.0 && frac == 0.0);
  double infs[3] = {INFINITY, 1.0, INFINITY};
  tchi_ess(3, infs, &ess, &frac);
  ck_assert(ess == 2.0);
  double nan[2] = {0.0, NAN};
  tchi_ess(2, nan, &ess, &frac);
  ck_assert(isnan(ess) && isnan(frac));
  tchi_ess(0, nan, &ess, &frac);
  ck_assert(isnan(ess) && isnan(frac));
}
END_TEST

/* ---- exact assignment -------------------------------------------------------------------- */

/* Minimum of Σ_i c[i][σ(i)] over all permutations, by enumeration (n <= 8). */
static void brute_rec(size_t n, const double *c, size_t i, int *used, double acc, double *best)
{
  if (i == n) {
    if (acc < *best) *best = acc;
    return;
  }
  for (size_t j = 0; j < n; j++)
    if (!used[j]) {
      used[j] = 1;
      brute_rec(n, c, i + 1, used, acc + c[i * n + j], best);
      used[j] = 0;
    }
}

static double brute_min(size_t n, const double *c)
{
  int used[8] = {0};
  double best = INFINITY;
  brute_rec(n, c, 0, used, 0.0, &best);
  return best;
}

static double euclid_cost(size_t d, const double *a, const double *b, int power)
{
  double s = 0.0;
  for (size_t k = 0; k < d; k++) s += (a[k] - b[k]) * (a[k] - b[k]);
  return power == 2 ? s : sqrt(s);
}

/* rowsol is a permutation; the prices certify optimality: c(i, j) − v_j >= u_i where
 * u_i = c(i, σ(i)) − v_σ(i), up to tol; and the reported cost is Σ c(i, σ(i)). */
static void check_certificate(size_t n, const double *c, const size_t *rowsol, const double *v,
                              double total, double tol)
{
  char *seen = calloc(n, 1);
  ck_assert_ptr_nonnull(seen);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    ck_assert_uint_lt(rowsol[i], n);
    ck_assert_int_eq(seen[rowsol[i]], 0);
    seen[rowsol[i]] = 1;
    sum += c[i * n + rowsol[i]];
    double u = c[i * n + rowsol[i]] - v[rowsol[i]];
    for (size_t j = 0; j < n; j++) ck_assert(c[i * n + j] - v[j] - u >= -tol);
  }
  ck_assert_double_eq_tol(sum, total, tol * (double)n);
  free(seen);
}

START_TEST(assignment_matches_brute_force_euclid)
{
  tchi_rng r;
  tchi_rng_seed(&r, 11, 0);
  double x[7 * 3], y[7 * 3], c[49], v[7];
  size_t sol[7];
  for (int trial = 0; trial < 300; trial++) {
    size_t n = 1 + (size_t)(trial % 7), d = 1 + (size_t)(trial / 7 % 3);
    int power = 1 + trial % 2;
    fill_normal(&r, n * d, x, 1.0, 0.0);
    fill_normal(&r, n * d, y, 1.5, 0.3);
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < n; j++) c[i * n + j] = euclid_cost(d, x + i * d, y + j * d, power);
    double mean;
    ck_assert_int_eq(tchi_assignment_euclid(n, d, x, y, power, &mean, sol, v), TCH_OK);
    double best = brute_min(n, c);
    ck_assert_double_eq_tol(mean, best / (double)n, 1e-12);
    check_certificate(n, c, sol, v, mean * (double)n, 1e-9);
    double w;
    ck_assert_int_eq(tchi_wasserstein(n, n, d, x, y, power, &w), TCH_OK);
    ck_assert_double_eq_tol(w, power == 2 ? sqrt(best / (double)n) : best / (double)n, 1e-12);
  }
}
END_TEST

/* Small integer costs make many ties, which exercise the tie branch and the evictions of the
 * augmenting row reduction. */
START_TEST(assignment_matches_brute_force_ties)
{
  tchi_rng r;
  tchi_rng_seed(&r, 12, 0);
  double c[64], v[8], total;
  size_t sol[8];
  for (int trial = 0; trial < 2000; trial++) {
    size_t n = 1 + (size_t)(trial % 8);
    uint32_t range = 1 + (uint32_t)(trial % 5);
    for (size_t k = 0; k < n * n; k++) c[k] = (double)tchi_rng_below(&r, range) - 1.0;
    ck_assert_int_eq(tchi_assignment_matrix(n, c, &total, sol, v), TCH_OK);
    ck_assert_double_eq_tol(total, brute_min(n, c), 1e-12);
    check_certificate(n, c, sol, v, total, 1e-9);
  }
  /* Optional outputs may be omitted. */
  double c2[4] = {4.0, 1.0, 2.0, 8.0};
  ck_assert_int_eq(tchi_assignment_matrix(2, c2, &total, NULL, NULL), TCH_OK);
  ck_assert_double_eq_tol(total, 3.0, EPS);
}
END_TEST

START_TEST(assignment_arguments)
{
  double x[2] = {0.0, 1.0}, y[2] = {0.5, 2.0}, m;
  ck_assert_int_eq(tchi_assignment_euclid(0, 1, x, y, 2, &m, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_assignment_euclid(2, 0, x, y, 2, &m, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_assignment_euclid(2, 1, x, y, 3, &m, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_assignment_euclid(2, 1, NULL, y, 2, &m, NULL, NULL), TCH_E_ARG);
  y[1] = NAN;
  ck_assert_int_eq(tchi_assignment_euclid(2, 1, x, y, 2, &m, NULL, NULL), TCH_E_NUMERIC);
  y[1] = 1e200;
  ck_assert_int_eq(tchi_assignment_euclid(2, 1, x, y, 2, &m, NULL, NULL), TCH_E_NUMERIC);
  double c[4] = {0.0, INFINITY, 1.0, 1.0};
  ck_assert_int_eq(tchi_assignment_matrix(2, c, &m, NULL, NULL), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_assignment_matrix(0, c, &m, NULL, NULL), TCH_E_ARG);
}
END_TEST

static int cmp_double(const void *a, const void *b)
{
  double u = *(const double *)a, v = *(const double *)b;
  return (u > v) - (u < v);
}

/* In one dimension the optimal coupling of two equal-size sets matches them in sorted
 * order, for both costs (convex in |x − y|). */
START_TEST(wasserstein_1d_sorted_matching)
{
  enum { N = 400 };
  static double x[N], y[N], xs[N], ys[N];
  tchi_rng r;
  tchi_rng_seed(&r, 13, 0);
  fill_normal(&r, N, x, 1.0, 0.0);
  for (size_t i = 0; i < N; i++) y[i] = i % 3 ? 2.0 * tchi_rng_normal(&r) : 3.0 + tchi_rng_normal(&r);
  memcpy(xs, x, sizeof x);
  memcpy(ys, y, sizeof y);
  qsort(xs, N, sizeof(double), cmp_double);
  qsort(ys, N, sizeof(double), cmp_double);
  double s1 = 0.0, s2 = 0.0;
  for (size_t i = 0; i < N; i++) {
    s1 += fabs(xs[i] - ys[i]);
    s2 += (xs[i] - ys[i]) * (xs[i] - ys[i]);
  }
  double w1, w2;
  ck_assert_int_eq(tchi_wasserstein(N, N, 1, x, y, 1, &w1), TCH_OK);
  ck_assert_int_eq(tchi_wasserstein(N, N, 1, x, y, 2, &w2), TCH_OK);
  ck_assert_double_eq_tol(w1, s1 / N, 1e-10);
  ck_assert_double_eq_tol(w2, sqrt(s2 / N), 1e-10);
}
END_TEST

/* Y = X + s: for W2, Σ‖x_i − x_σ(i) − s‖² = Σ‖x_i − x_σ(i)‖² + n‖s‖² (the cross term sums
 * to zero), so W2 = ‖s‖; W1 <= W2 and W1 >= ‖mean(X) − mean(Y)‖ = ‖s‖ give W1 = ‖s‖. The
 * n = 2000, d = 2 case is the size of the reference's periodic evaluation. */
START_TEST(wasserstein_shift_closed_form_n2000)
{
  enum { N = 2000, D = 2 };
  static double x[N * D], y[N * D];
  tchi_rng r;
  tchi_rng_seed(&r, 14, 0);
  fill_normal(&r, N * D, x, 3.0, 0.0);
  const double s[D] = {0.3, -0.4};
  for (size_t i = 0; i < N; i++)
    for (size_t k = 0; k < D; k++) y[i * D + k] = x[i * D + k] + s[k];
  /* Shuffle Y so that the identity is not the initial guess. */
  for (size_t i = N - 1; i > 0; i--) {
    size_t j = tchi_rng_below(&r, (uint32_t)(i + 1));
    for (size_t k = 0; k < D; k++) {
      double t = y[i * D + k];
      y[i * D + k] = y[j * D + k];
      y[j * D + k] = t;
    }
  }
  double w1, w2;
  ck_assert_int_eq(tchi_wasserstein(N, N, D, x, y, 2, &w2), TCH_OK);
  ck_assert_double_eq_tol(w2, 0.5, 1e-9);
  ck_assert_int_eq(tchi_wasserstein(N, N, D, x, y, 1, &w1), TCH_OK);
  ck_assert_double_eq_tol(w1, 0.5, 1e-9);
}
END_TEST

/* A generic n = 2000, d = 2 problem (25-mode mixture vs a Gaussian), certified by the final
 * prices over all n² pairs; W1 <= W2 (Jensen) and W2 >= ‖mean difference‖. */
START_TEST(assignment_certificate_n2000)
{
  enum { N = 2000, D = 2 };
  static double x[N * D], y[N * D], v[N];
  static size_t sol[N];
  tchi_rng r;
  tchi_rng_seed(&r, 15, 0);
  for (size_t i = 0; i < N; i++) {
    uint32_t m = tchi_rng_below(&r, 25);
    x[i * D] = 5.0 * ((double)(m % 5) - 2.0) + 0.5 * tchi_rng_normal(&r);
    x[i * D + 1] = 5.0 * ((double)(m / 5) - 2.0) + 0.5 * tchi_rng_normal(&r);
  }
  fill_normal(&r, N * D, y, 6.0, 0.5);
  double mean2, mean1;
  ck_assert_int_eq(tchi_assignment_euclid(N, D, x, y, 2, &mean2, sol, v), TCH_OK);
  /* u_i + v_j <= c(i, j) for all pairs; checked without storing the matrix. */
  double sum = 0.0;
  char *seen = calloc(N, 1);
  ck_assert_ptr_nonnull(seen);
  double worst = 0.0;
  for (size_t i = 0; i < N; i++) {
    ck_assert_int_eq(seen[sol[i]], 0);
    seen[sol[i]] = 1;
    double ci = euclid_cost(D, x + i * D, y + sol[i] * D, 2);
    sum += ci;
    double u = ci - v[sol[i]];
    for (size_t j = 0; j < N; j++) {
      double slack = euclid_cost(D, x + i * D, y + j * D, 2) - v[j] - u;
      if (slack < worst) worst = slack;
    }
  }
  free(seen);
  ck_assert(worst >= -1e-8);
  ck_assert_double_eq_tol(sum / N, mean2, 1e-9);
  ck_assert_int_eq(tchi_assignment_euclid(N, D, x, y, 1, &mean1, NULL, NULL), TCH_OK);
  ck_assert(mean1 <= sqrt(mean2) + 1e-12);
  double mx[D], my[D];
  tchi_coord_mean(N, D, x, mx);
  tchi_coord_mean(N, D, y, my);
  ck_assert(sqrt(mean2) >= hypot(mx[0] - my[0], mx[1] - my[1]) - 1e-12);
}
END_TEST

/* ---- MMDs and mean/median distances ---------------------------------------------------- */

START_TEST(mmd_hand_values)
{
  /* X = 1, 2, 3; Y = 0, 0, 0 (d = 1). Linear: deltas 1, 2, 3 -> (1·2 + 2·3) / 2 = 4.
   * Poly (α 1, c 2, deg 2): XX (2+2)², (6+2)² -> 40; YY 4; XY 4; YX 4 -> 36. */
  double x[3] = {1.0, 2.0, 3.0}, y[3] = {0.0, 0.0, 0.0};
  ck_assert_double_eq_tol(tchi_linear_mmd(3, 1, x, y), 4.0, EPS);
  ck_assert_double_eq_tol(tchi_poly_mmd(3, 1, x, y, 2, 1.0, 2.0), 36.0, EPS);
  ck_assert(isnan(tchi_linear_mmd(1, 1, x, y)));
  ck_assert(isnan(tchi_poly_mmd(1, 1, x, y, 2, 1.0, 2.0)));
  /* d = 2, two points: deltas (1, 0), (0.5, 2) -> 0.5. */
  double x2[4] = {1.0, 1.0, 0.5, 2.0}, y2[4] = {0.0, 1.0, 0.0, 0.0};
  ck_assert_double_eq_tol(tchi_linear_mmd(2, 2, x2, y2), 0.5, EPS);
  /* Poly, d = 2: X0·X1 = 2.5, Y0·Y1 = 0, X0·Y1 = 0, Y0·X1 = 2 -> 4.5² + 2² − 2² − 4² = 4.25. */
  ck_assert_double_eq_tol(tchi_poly_mmd(2, 2, x2, y2, 2, 1.0, 2.0), 4.25, EPS);
  /* RBF, one point each at distance 1: 5 + 5 − 2 Σ_s exp(−1 / (2σ²)). */
  double a = 0.0, b = 1.0, k = 0.0;
  for (int s = 0; s < TCHI_RBF_N_SIGMAS; s++)
    k += exp(-1.0 / (2.0 * TCHI_RBF_SIGMAS[s] * TCHI_RBF_SIGMAS[s]));
  ck_assert_double_eq_tol(tchi_rbf_mmd(1, 1, &a, &b, TCHI_RBF_N_SIGMAS, TCHI_RBF_SIGMAS),
                          10.0 - 2.0 * k, EPS);
  ck_assert_double_eq(TCHI_RBF_SIGMAS[0], 0.01);
  ck_assert_double_eq(TCHI_RBF_SIGMAS[4], 100.0);
  /* Identical sets: 0. */
  ck_assert_double_eq_tol(tchi_rbf_mmd(3, 1, x, x, TCHI_RBF_N_SIGMAS, TCHI_RBF_SIGMAS), 0.0, EPS);
}
END_TEST

/* The reference's _mix_rbf_kernel + _mmd2(biased): full kernel matrices of Z = [X; Y] from
 * ‖z_i‖² − 2 z_i·z_j + ‖z_j‖², then (ΣK_XX + ΣK_YY − 2ΣK_XY) / m². */
START_TEST(rbf_mmd_matches_kernel_matrices)
{
  enum { N = 60, D = 3 };
  double x[N * D], y[N * D], z[2 * N * D];
  tchi_rng r;
  tchi_rng_seed(&r, 16, 0);
  fill_normal(&r, N * D, x, 0.2, 0.0);
  fill_normal(&r, N * D, y, 0.3, 0.05);
  memcpy(z, x, sizeof x);
  memcpy(z + N * D, y, sizeof y);
  double kxx = 0.0, kyy = 0.0, kxy = 0.0;
  for (size_t i = 0; i < 2 * N; i++)
    for (size_t j = 0; j < 2 * N; j++) {
      double zi = 0.0, zj = 0.0, zz = 0.0;
      for (size_t k = 0; k < D; k++) {
        zi += z[i * D + k] * z[i * D + k];
        zj += z[j * D + k] * z[j * D + k];
        zz += z[i * D + k] * z[j * D + k];
      }
      double e = zi - 2.0 * zz + zj, kv = 0.0;
      for (int s = 0; s < TCHI_RBF_N_SIGMAS; s++)
        kv += exp(-e / (2.0 * TCHI_RBF_SIGMAS[s] * TCHI_RBF_SIGMAS[s]));
      if (i < N && j < N) kxx += kv;
      else if (i >= N && j >= N) kyy += kv;
      else if (i < N && j >= N) kxy += kv;
    }
  double want = kxx / (N * N) + kyy / (N * N) - 2.0 * kxy / (N * N);
  double got = tchi_rbf_mmd(N, D, x, y, TCHI_RBF_N_SIGMAS, TCHI_RBF_SIGMAS);
  ck_assert_double_eq_tol(got, want, 1e-9);
  ck_assert(got > 0.0);
}
END_TEST

START_TEST(mean_median_distances)
{
  /* Columns {1, 3, 2, 4} and {10, 20, 40, 30}: means 2.5, 25; lower medians 2, 20. */
  double x[8] = {1.0, 10.0, 3.0, 20.0, 2.0, 40.0, 4.0, 30.0}, y[8] = {0};
  double m[2], med[2], work[4], mse, l2, l1;
  tchi_coord_mean(4, 2, x, m);
  ck_assert_double_eq_tol(m[0], 2.5, EPS);
  ck_assert_double_eq_tol(m[1], 25.0, EPS);
  tchi_coord_median(4, 2, x, work, med);
  ck_assert_double_eq(med[0], 2.0);
  ck_assert_double_eq(med[1], 20.0);
  tchi_coord_median(3, 2, x, work, med);   /* odd: {1, 3, 2} -> 2, {10, 20, 40} -> 20 */
  ck_assert_double_eq(med[0], 2.0);
  ck_assert_double_eq(med[1], 20.0);
  double zero[2] = {0.0, 0.0};
  tchi_vec_distances(2, m, zero, &mse, &l2, &l1);
  ck_assert_double_eq_tol(mse, (6.25 + 625.0) / 2.0, EPS);
  ck_assert_double_eq_tol(l2, sqrt((6.25 + 625.0) / 2.0), EPS);
  ck_assert_double_eq_tol(l1, 27.5 / 2.0, EPS);

  tchi_dist_metrics dm;
  ck_assert_int_eq(tchi_dist_metrics_compute(4, 4, 2, x, y, &dm), TCH_OK);
  ck_assert_double_eq_tol(dm.mean_mse, (6.25 + 625.0) / 2.0, EPS);
  ck_assert_double_eq_tol(dm.median_mse, (4.0 + 400.0) / 2.0, EPS);
  ck_assert_double_eq_tol(dm.median_l2, sqrt(202.0), EPS);
  ck_assert_double_eq_tol(dm.median_l1, 11.0, EPS);
}
END_TEST

/* The selection behind the median against sorting, with many duplicates. */
START_TEST(median_matches_sort)
{
  tchi_rng r;
  tchi_rng_seed(&r, 17, 0);
  double a[101], s[101], work[101], med;
  for (int trial = 0; trial < 500; trial++) {
    size_t n = 1 + (size_t)(trial % 101);
    uint32_t range = trial % 3 == 0 ? 3 : 1000;
    for (size_t i = 0; i < n; i++) a[i] = (double)tchi_rng_below(&r, range);
    memcpy(s, a, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    tchi_coord_median(n, 1, a, work, &med);
    ck_assert_double_eq(med, s[(n - 1) / 2]);
  }
}
END_TEST

START_TEST(dist_metrics_all_fields)
{
  enum { N = 50, D = 2 };
  double x[N * D], y[N * D];
  tchi_rng r;
  tchi_rng_seed(&r, 18, 0);
  fill_normal(&r, N * D, x, 1.0, 0.0);
  fill_normal(&r, N * D, y, 1.0, 0.5);
  tchi_dist_metrics dm;
  ck_assert_int_eq(tchi_dist_metrics_compute(N, N, D, x, y, &dm), TCH_OK);
  double w1, w2, ma[D], mb[D], mse, l2, l1;
  ck_assert_int_eq(tchi_wasserstein(N, N, D, x, y, 1, &w1), TCH_OK);
  ck_assert_int_eq(tchi_wasserstein(N, N, D, x, y, 2, &w2), TCH_OK);
  ck_assert_double_eq(dm.w1, w1);
  ck_assert_double_eq(dm.w2, w2);
  ck_assert_double_eq(dm.linear_mmd, tchi_linear_mmd(N, D, x, y));
  ck_assert_double_eq(dm.poly_mmd, tchi_poly_mmd(N, D, x, y, 2, 1.0, 2.0));
  ck_assert_double_eq(dm.rbf_mmd, tchi_rbf_mmd(N, D, x, y, TCHI_RBF_N_SIGMAS, TCHI_RBF_SIGMAS));
  tchi_coord_mean(N, D, x, ma);
  tchi_coord_mean(N, D, y, mb);
  tchi_vec_distances(D, ma, mb, &mse, &l2, &l1);
  ck_assert_double_eq(dm.mean_mse, mse);
  ck_assert_double_eq(dm.mean_l2, l2);
  ck_assert_double_eq(dm.mean_l1, l1);
  ck_assert(dm.w1 <= dm.w2 + 1e-12 && dm.w2 > 0.0 && dm.median_l2 > 0.0);

  ck_assert_int_eq(tchi_dist_metrics_compute(0, 0, D, x, y, &dm), TCH_E_ARG);
  ck_assert_int_eq(tchi_dist_metrics_compute(N, N, 0, x, y, &dm), TCH_E_ARG);
  ck_assert_int_eq(tchi_dist_metrics_compute(N, N, D, x, NULL, &dm), TCH_E_ARG);
  /* Unequal sizes: the transport LP is not implemented. */
  ck_assert_int_eq(tchi_dist_metrics_compute(N, N - 1, D, x, y, &dm), TCH_E_ARG);
  ck_assert_int_eq(tchi_wasserstein(N - 1, N, D, x, y, 2, &w2), TCH_E_ARG);
  x[7] = INFINITY;
  ck_assert_int_eq(tchi_dist_metrics_compute(N, N, D, x, y, &dm), TCH_E_NUMERIC);
}
END_TEST

/* ---- MALA ----------------------------------------------------------------------------------- */

typedef struct gauss_ctx {
  size_t dim;
  size_t calls;
  size_t fail_at;       /* 1-based call that fails; 0 never */
  tch_status fail_with;
  int flat;             /* log R = 0 everywhere */
} gauss_ctx;

/* Standard normal log density (unnormalised) and its gradient −x. */
static tch_status gauss_logp(void *vctx, size_t n, const double *x, double *lp, double *grad)
{
  gauss_ctx *c = vctx;
  c->calls++;
  if (c->fail_at && c->calls == c->fail_at) return tchi_fail(c->fail_with, "target failed");
  for (size_t i = 0; i < n; i++) {
    double s = 0.0;
    for (size_t k = 0; k < c->dim; k++) {
      double v = x[i * c->dim + k];
      s += v * v;
      grad[i * c->dim + k] = c->flat ? 0.0 : -v;
    }
    lp[i] = c->flat ? 0.0 : -0.5 * s;
  }
  return TCH_OK;
}

static tchi_mala_params params(size_t iters, size_t burn, double step, int adaptive)
{
  tchi_mala_params p;
  tchi_mala_params_default(&p);
  p.max_iter = iters;
  p.burn_in = burn;
  p.step = step;
  p.adaptive = adaptive;
  return p;
}

START_TEST(mala_defaults)
{
  tchi_mala_params p;
  tchi_mala_params_default(&p);
  ck_assert_uint_eq(p.max_iter, 200);
  ck_assert_uint_eq(p.burn_in, 100);
  ck_assert_double_eq(p.step, 0.001);
  ck_assert_double_eq(p.target_accept, 0.574);
  ck_assert_int_eq(p.adaptive, 1);
}
END_TEST

/* Moments of the returned samples (accepted proposals after burn-in, as the reference
 * returns them) over all chains. */
static void sample_moments(const tchi_mala_result *out, size_t k, double *mean, double *var)
{
  const size_t D = out->dim;
  double m = 0.0, v = 0.0;
  for (size_t i = 0; i < out->n; i++) m += out->x[i * D + k];
  m /= (double)out->n;
  for (size_t i = 0; i < out->n; i++) v += (out->x[i * D + k] - m) * (out->x[i * D + k] - m);
  *mean = m;
  *var = v / (double)out->n;
}

/* 200 chains started far from the mode, all at (3, -3), on a 2-D standard normal.
 * Accepted proposals are distributed as π(x')·a(x'), a(x') the probability of accepting a
 * move from x' (detailed balance), not as π: for a fixed step η = 0.5 a Monte Carlo
 * integral (2e6 draws, error ~0.002) gives variance 1.0454 and acceptance 0.8758; at
 * η ≈ 1.2 (acceptance ≈ 0.574) variance ≈ 1.206. Margins: ~3 standard errors of the
 * autocorrelated estimates (seed fixed; five other seeds stayed within half of them). */
START_TEST(mala_gaussian_moments)
{
  enum { N = 200, D = 2 };
  double x0[N * D];
  for (size_t i = 0; i < N; i++) {
    x0[i * D] = 3.0;
    x0[i * D + 1] = -3.0;
  }
  gauss_ctx ctx = {.dim = D};
  tchi_rng r;
  tchi_rng_seed(&r, 21, tchi_stream_id(TCHI_STREAM_LOCAL_SEARCH, 0));
  tchi_mala_ws w;
  tchi_mala_result out;
  tchi_mala_ws_init(&w);
  tchi_mala_result_init(&out);

  tchi_mala_params p = params(800, 300, 0.5, 0);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), TCH_OK);
  ck_assert_uint_eq(ctx.calls, 1 + p.max_iter);
  ck_assert_uint_eq(out.dim, D);
  ck_assert_uint_eq(out.n_proposals, N * p.max_iter);
  const size_t post = N * (p.max_iter - p.burn_in - 1);
  double acc = (double)out.n / (double)post;
  ck_assert_msg(fabs(acc - 0.8758) < 0.01, "acceptance %g", acc);
  for (size_t k = 0; k < D; k++) {
    double m, v;
    sample_moments(&out, k, &m, &v);
    ck_assert_msg(fabs(m) < 0.04, "coordinate %zu mean %g", k, m);
    ck_assert_msg(fabs(v - 1.0454) < 0.03, "coordinate %zu variance %g", k, v);
  }
  for (size_t i = 0; i < out.n; i++) {
    double s = out.x[i * D] * out.x[i * D] + out.x[i * D + 1] * out.x[i * D + 1];
    ck_assert_double_eq_tol(out.log_r[i], -0.5 * s, 1e-12);
  }

  /* Adaptive from η0 = 0.05, where almost every proposal is accepted: η grows until the
   * measured acceptance hovers around the target. */
  ctx.calls = 0;
  p = params(800, 300, 0.05, 1);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), TCH_OK);
  ck_assert_msg(out.final_step > 0.9 && out.final_step < 1.6, "step %g", out.final_step);
  ck_assert_msg(fabs(out.last_accept_rate - p.target_accept) < 0.1, "rate %g",
                out.last_accept_rate);
  acc = (double)out.n / (double)post;
  ck_assert_msg(fabs(acc - p.target_accept) < 0.05, "acceptance %g", acc);
  for (size_t k = 0; k < D; k++) {
    double m, v;
    sample_moments(&out, k, &m, &v);
    ck_assert_msg(fabs(m) < 0.05, "coordinate %zu mean %g", k, m);
    ck_assert_msg(fabs(v - 1.206) < 0.04, "coordinate %zu variance %g", k, v);
  }
  tchi_mala_result_destroy(&out);
  tchi_mala_ws_destroy(&w);
}
END_TEST

/* The step follows η ← η ± 0.01 η from η0, in the reference's order: up while the measured
 * acceptance is above the target (tiny steps), down while below (huge steps). */
START_TEST(mala_step_schedule)
{
  enum { N = 50, D = 2 };
  double x0[N * D];
  tchi_rng r;
  tchi_rng_seed(&r, 22, 0);
  fill_normal(&r, N * D, x0, 1.0, 0.0);
  gauss_ctx ctx = {.dim = D};
  tchi_mala_ws w;
  tchi_mala_result out;
  tchi_mala_ws_init(&w);
  tchi_mala_result_init(&out);

  tchi_mala_params p = params(200, 100, 0.001, 1);   /* the reference's defaults */
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), TCH_OK);
  double up = 0.001;
  for (int i = 1; i < 200; i++) up = up + 0.01 * up;
  ck_assert_double_eq(out.final_step, up);
  ck_assert(out.last_accept_rate > 0.95);

  p = params(200, 100, 50.0, 1);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), TCH_OK);
  double down = 50.0;
  for (int i = 1; i < 200; i++) down = down - 0.01 * down;
  ck_assert_double_eq(out.final_step, down);
  ck_assert(out.last_accept_rate < 0.574);

  p = params(200, 100, 0.3, 0);   /* no schedule: fixed step */
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), TCH_OK);
  ck_assert_double_eq(out.final_step, 0.3);
  tchi_mala_result_destroy(&out);
  tchi_mala_ws_destroy(&w);
}
END_TEST

/* A flat target accepts every proposal (symmetric proposal, log α = 0): exactly
 * n·(max_iter − burn_in − 1) samples, iteration-major; the values replay the RNG: the
 * iteration's n x dim normals, then n uniforms; η grows after iteration 0 (rate 1). */
START_TEST(mala_bookkeeping_and_draw_order)
{
  enum { N = 3, D = 2 };
  double x0[N * D] = {0.0, 1.0, 2.0, 3.0, 4.0, 5.0};
  gauss_ctx ctx = {.dim = D, .flat = 1};
  tchi_mala_params p = params(6, 3, 0.01, 1);
  tchi_rng r, replay;
  tchi_rng_seed(&r, 23, 5);
  tchi_rng_seed(&replay, 23, 5);
  tchi_mala_ws w;
  tchi_mala_result out;
  tchi_mala_ws_init(&w);
  tchi_mala_result_init(&out);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), TCH_OK);
  ck_assert_uint_eq(out.n, N * 2);   /* iterations 4 and 5 */
  ck_assert_uint_eq(out.n_accepted, N * 6);
  double x[N * D], step = 0.01;
  memcpy(x, x0, sizeof x);
  size_t k = 0;
  for (int it = 0; it < 6; it++) {
    if (it > 0) step += 0.01 * step;
    for (size_t j = 0; j < N * D; j++) x[j] += sqrt(2.0 * step) * tchi_rng_normal(&replay);
    for (size_t c = 0; c < N; c++) (void)tchi_rng_uniform(&replay);
    if (it > 3)
      for (size_t c = 0; c < N; c++, k++)
        for (size_t j = 0; j < D; j++) ck_assert_double_eq_tol(out.x[k * D + j], x[c * D + j], 1e-14);
  }
  ck_assert_double_eq(out.final_step, step);
  /* Same seed, same result; the result and workspace are reused. */
  tchi_mala_result again;
  tchi_mala_result_init(&again);
  tchi_rng_seed(&r, 23, 5);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &again), TCH_OK);
  ck_assert_uint_eq(again.n, out.n);
  ck_assert_mem_eq(again.x, out.x, out.n * D * sizeof(double));
  /* burn_in >= max_iter - 1: nothing returned. */
  p = params(6, 5, 0.01, 1);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &again), TCH_OK);
  ck_assert_uint_eq(again.n, 0);
  tchi_mala_result_destroy(&again);
  tchi_mala_result_destroy(&out);
  tchi_mala_ws_destroy(&w);
}
END_TEST

/* A proposal whose log R is NaN or -inf is rejected. */
static tch_status half_nan_logp(void *vctx, size_t n, const double *x, double *lp, double *grad)
{
  (void)vctx;
  for (size_t i = 0; i < n; i++) {
    grad[i] = 0.0;
    lp[i] = x[i] > 0.0 ? (i % 2 ? NAN : -INFINITY) : 0.0;
  }
  return TCH_OK;
}

START_TEST(mala_rejects_non_finite)
{
  enum { N = 40 };
  double x0[N];
  for (size_t i = 0; i < N; i++) x0[i] = -5.0;
  tchi_mala_params p = params(60, 0, 1.0, 0);
  tchi_rng r;
  tchi_rng_seed(&r, 24, 0);
  tchi_mala_ws w;
  tchi_mala_result out;
  tchi_mala_ws_init(&w);
  tchi_mala_result_init(&out);
  ck_assert_int_eq(tchi_mala_run(&p, half_nan_logp, NULL, N, 1, x0, &r, &w, &out), TCH_OK);
  ck_assert_uint_gt(out.n, 0);
  for (size_t i = 0; i < out.n; i++) {
    ck_assert(out.x[i] <= 0.0);
    ck_assert(out.log_r[i] == 0.0);
  }
  tchi_mala_result_destroy(&out);
  tchi_mala_ws_destroy(&w);
}
END_TEST

START_TEST(mala_failing_target_propagates)
{
  enum { N = 4, D = 2 };
  double x0[N * D] = {0};
  tchi_mala_params p = params(20, 5, 0.01, 1);
  tchi_rng r;
  tchi_rng_seed(&r, 25, 0);
  tchi_mala_ws w;
  tchi_mala_result out;
  tchi_mala_ws_init(&w);
  tchi_mala_result_init(&out);
  const size_t fail_at[3] = {1, 2, 15};
  const tch_status codes[3] = {TCH_E_CALLBACK, TCH_E_NUMERIC, TCH_E_CALLBACK};
  for (int t = 0; t < 3; t++) {
    gauss_ctx ctx = {.dim = D, .fail_at = fail_at[t], .fail_with = codes[t]};
    ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ctx, N, D, x0, &r, &w, &out), codes[t]);
    ck_assert_uint_eq(ctx.calls, fail_at[t]);
    ck_assert_uint_eq(out.n, 0);
    ck_assert_str_eq(tch_last_error(), "MALA local search: target failed");
  }
  /* Still usable afterwards. */
  gauss_ctx ok = {.dim = D};
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ok, N, D, x0, &r, &w, &out), TCH_OK);
  ck_assert_uint_gt(out.n, 0);

  tchi_mala_params bad = p;
  bad.step = 0.0;
  ck_assert_int_eq(tchi_mala_run(&bad, gauss_logp, &ok, N, D, x0, &r, &w, &out), TCH_E_ARG);
  ck_assert_int_eq(tchi_mala_run(&p, NULL, &ok, N, D, x0, &r, &w, &out), TCH_E_ARG);
  ck_assert_int_eq(tchi_mala_run(&p, gauss_logp, &ok, 0, D, x0, &r, &w, &out), TCH_E_ARG);
  tchi_mala_result_destroy(&out);
  tchi_mala_ws_destroy(&w);
}
END_TEST

/* Every allocation of a MALA run and of the distance computation may fail: TCH_E_NOMEM,
 * nothing leaked (checked under AddressSanitizer), and the next call works. */
START_TEST(allocation_failures)
{
  enum { N = 6, D = 2 };
  double x[N * D], y[N * D];
  tchi_rng r;
  tchi_rng_seed(&r, 26, 0);
  fill_normal(&r, N * D, x, 1.0, 0.0);
  fill_normal(&r, N * D, y, 1.0, 1.0);
  int ok_seen = 0;
  for (uint64_t k = 1; k < 40 && !ok_seen; k++) {
    tchi_dist_metrics dm;
    tchi_alloc_fail_at(k);
    tch_status s = tchi_dist_metrics_compute(N, N, D, x, y, &dm);
    tchi_alloc_fail_at(0);
    ck_assert(s == TCH_OK || s == TCH_E_NOMEM);
    ok_seen = s == TCH_OK;
  }
  ck_assert(ok_seen);
  ok_seen = 0;
  tchi_mala_params p = params(10, 2, 0.01, 1);
  gauss_ctx ctx = {.dim = D};
  for (uint64_t k = 1; k < 40 && !ok_seen; k++) {
    tchi_mala_ws w;
    tchi_mala_result out;
    tchi_mala_ws_init(&w);
    tchi_mala_result_init(&out);
    tchi_alloc_fail_at(k);
    tch_status s = tchi_mala_run(&p, gauss_logp, &ctx, N, D, x, &r, &w, &out);
    tchi_alloc_fail_at(0);
    ck_assert(s == TCH_OK || s == TCH_E_NOMEM);
    ok_seen = s == TCH_OK;
    tchi_mala_result_destroy(&out);
    tchi_mala_ws_destroy(&w);
  }
  ck_assert(ok_seen);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("dmetrics");
  TCase *tc = tcase_create("dmetrics");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, logmeanexp_hand_values);
  tcase_add_test(tc, log_z_estimators_hand_values);
  tcase_add_test(tc, ess_extremes);
  tcase_add_test(tc, assignment_matches_brute_force_euclid);
  tcase_add_test(tc, assignment_matches_brute_force_ties);
  tcase_add_test(tc, assignment_arguments);
  tcase_add_test(tc, wasserstein_1d_sorted_matching);
  tcase_add_test(tc, wasserstein_shift_closed_form_n2000);
  tcase_add_test(tc, assignment_certificate_n2000);
  tcase_add_test(tc, mmd_hand_values);
  tcase_add_test(tc, rbf_mmd_matches_kernel_matrices);
  tcase_add_test(tc, mean_median_distances);
  tcase_add_test(tc, median_matches_sort);
  tcase_add_test(tc, dist_metrics_all_fields);
  tcase_add_test(tc, mala_defaults);
  tcase_add_test(tc, mala_gaussian_moments);
  tcase_add_test(tc, mala_step_schedule);
  tcase_add_test(tc, mala_bookkeeping_and_draw_order);
  tcase_add_test(tc, mala_rejects_non_finite);
  tcase_add_test(tc, mala_failing_target_propagates);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
