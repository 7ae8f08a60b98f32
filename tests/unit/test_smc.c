/* SMC primitives of Reinforced SMC (lib/smc): log-weight utilities and ESS, the adaptive
 * weight-tempering solver, the three resamplers (unbiased offspring counts, variance
 * ordering, the +-1 property of systematic counts), partial resampling and its unbiasedness
 * correction, the resampling rule, a running log Ẑ that is unbiased on a Gaussian
 * annealing sequence with known Z, and the importance-weighted replay buffer (FIFO,
 * validation, sampling frequencies against the softmax weights in every priority mode,
 * serialisation round trip, truncated and malformed input, allocation failure).
 * Statistical checks use fixed seeds and state their margins. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../tch_check.h"
#include "core/core.h"
#include "io/io.h"
#include "smc/smc.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* Reference ESS_n of exp(alpha lw) in long double, without max-shifting (inputs are small). */
static double naive_ess_n(size_t n, const double *lw, double alpha)
{
  long double s1 = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    if (lw[i] == -INFINITY) continue;
    long double w = expl((long double)alpha * lw[i]);
    s1 += w;
    s2 += w * w;
  }
  return (double)(s1 * s1 / (s2 * (long double)n));
}

static void normal_log_weights(tchi_rng *rng, size_t n, double scale, double *lw)
{
  for (size_t i = 0; i < n; i++) lw[i] = scale * tchi_rng_normal(rng);
}

/* ---- log-weight utilities ----------------------------------------------------------------- */

START_TEST(log_weight_utilities)
{
  const double lw[5] = {0.5, -1.0, 2.0, -INFINITY, 0.0};
  double naive = log(exp(0.5) + exp(-1.0) + exp(2.0) + 1.0);
  ck_assert_double_eq_tol(tchi_smc_logsumexp(5, lw), naive, 1e-14);
  ck_assert_double_eq_tol(tchi_smc_log_mean_exp(5, lw), naive - log(5.0), 1e-14);
  const double big[3] = {1000.0, 1000.0, -INFINITY};   /* no overflow */
  ck_assert_double_eq_tol(tchi_smc_logsumexp(3, big), 1000.0 + log(2.0), 1e-12);
  const double none[2] = {-INFINITY, -INFINITY};
  ck_assert(tchi_smc_logsumexp(2, none) == -INFINITY);
  ck_assert(tchi_smc_logsumexp(0, lw) == -INFINITY);
  const double bad[2] = {0.0, NAN};
  ck_assert(isnan(tchi_smc_logsumexp(2, bad)));

  /* normalised weights, tempered and not */
  double p[5], lse;
  ck_assert_int_eq(tchi_smc_normalised_weights(5, lw, 1.0, p, &lse), TCH_OK);
  ck_assert_double_eq_tol(lse, naive, 1e-14);
  double sum = 0;
  for (int i = 0; i < 5; i++) sum += p[i];
  ck_assert_double_eq_tol(sum, 1.0, 1e-15);
  ck_assert_double_eq_tol(p[2], exp(2.0 - naive), 1e-15);
  ck_assert(p[3] == 0.0);
  ck_assert_int_eq(tchi_smc_normalised_weights(5, lw, 0.0, p, &lse), TCH_OK);   /* uniform */
  for (int i = 0; i < 5; i++) ck_assert_double_eq_tol(p[i], i == 3 ? 0.0 : 0.25, 1e-15);
  ck_assert_double_eq_tol(lse, log(4.0), 1e-15);
  ck_assert_int_eq(tchi_smc_normalised_weights(5, lw, 0.5, p, &lse), TCH_OK);
  ck_assert_double_eq_tol(lse, log(exp(0.25) + exp(-0.5) + exp(1.0) + 1.0), 1e-14);
  ck_assert_int_eq(tchi_smc_normalised_weights(2, none, 1.0, p, NULL), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_smc_normalised_weights(2, bad, 1.0, p, NULL), TCH_E_NUMERIC);
  const double pinf[2] = {0.0, INFINITY};
  ck_assert_int_eq(tchi_smc_normalised_weights(2, pinf, 1.0, p, NULL), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_smc_normalised_weights(5, lw, 1.5, p, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_normalised_weights(0, lw, 1.0, p, NULL), TCH_E_ARG);

  /* ESS: equal weights n, one weight 1, k equal among zeros k; shift invariance */
  const double eq[4] = {3.0, 3.0, 3.0, 3.0};
  ck_assert_double_eq_tol(tchi_smc_ess(4, eq, 1.0), 4.0, 1e-13);
  ck_assert_double_eq_tol(tchi_smc_ess_normalised(4, eq, 1.0), 1.0, 1e-13);
  const double one[3] = {0.0, -INFINITY, -INFINITY};
  ck_assert_double_eq_tol(tchi_smc_ess(3, one, 1.0), 1.0, 1e-15);
  const double two[4] = {-7.0, -INFINITY, -7.0, -INFINITY};
  ck_assert_double_eq_tol(tchi_smc_ess(4, two, 1.0), 2.0, 1e-14);
  ck_assert(tchi_smc_ess(2, none, 1.0) == 0.0);
  ck_assert(isnan(tchi_smc_ess(2, bad, 1.0)));
  tchi_rng rng;
  tchi_rng_seed(&rng, 11, 0);
  double v[200], vs[200];
  normal_log_weights(&rng, 200, 2.0, v);
  for (int i = 0; i < 200; i++) vs[i] = v[i] + 700.0;
  for (double a = 0.0; a <= 1.0; a += 0.25) {
    const double e = tchi_smc_ess_normalised(200, v, a);
    ck_assert_double_eq_tol(e, naive_ess_n(200, v, a), 1e-12);
    ck_assert_double_eq_tol(tchi_smc_ess_normalised(200, vs, a), e, 1e-12);
  }
  /* ESS_n is non-increasing in alpha (what makes the bisection valid) */
  double prev = 2.0;
  for (int k = 0; k <= 100; k++) {
    const double e = tchi_smc_ess_normalised(200, v, k / 100.0);
    ck_assert(e <= prev + 1e-15);
    prev = e;
  }

  /* log-normalise and one reweighting step: the increment is log Σ W_i G_i */
  double l[4] = {0.1, 0.7, -0.3, 1.2};
  const double l0 = tchi_smc_log_normalise(4, l);
  ck_assert_double_eq_tol(l0, log(exp(0.1) + exp(0.7) + exp(-0.3) + exp(1.2)), 1e-14);
  ck_assert_double_eq_tol(tchi_smc_logsumexp(4, l), 0.0, 1e-15);
  const double g[4] = {0.5, -1.0, 0.0, 2.0};
  double expect = 0;
  for (int i = 0; i < 4; i++) expect += exp(l[i]) * exp(g[i]);
  ck_assert_double_eq_tol(tchi_smc_reweight(4, l, g), log(expect), 1e-14);
  /* output weights: mean exp = Ẑ whatever the normalised weights */
  tchi_smc_log_normalise(4, l);
  double out[4];
  tchi_smc_output_log_weights(4, l, -2.5, out);
  ck_assert_double_eq_tol(tchi_smc_log_mean_exp(4, out), -2.5, 1e-14);
  tchi_smc_output_log_weights(4, l, 3.0, l);   /* in place */
  ck_assert_double_eq_tol(tchi_smc_log_mean_exp(4, l), 3.0, 1e-14);
}
END_TEST

/* ---- tempering solver ---------------------------------------------------------------------- */

START_TEST(tempering_reaches_the_target_ess)
{
  const double rhos[] = {0.001, 0.01, 0.05, 0.2, 0.5, 0.9, 0.99};
  const double scales[] = {0.3, 1.0, 3.0, 10.0, 100.0};
  const size_t sizes[] = {2, 17, 1000, 20000};
  static double lw[20000], lws[20000];
  int tempered = 0, untempered = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
    for (size_t ci = 0; ci < sizeof scales / sizeof *scales; ci++) {
      const size_t n = sizes[si];
      tchi_rng rng;
      tchi_rng_seed(&rng, 100 + si, ci);
      normal_log_weights(&rng, n, scales[ci], lw);
      const double ess1 = naive_ess_n(n, lw, 1.0);
      for (size_t ri = 0; ri < sizeof rhos / sizeof *rhos; ri++) {
        const double rho = rhos[ri];
        double t, e;
        ck_assert_int_eq(tchi_smc_temperature(n, lw, rho, &t, &e), TCH_OK);
        if (ess1 >= rho) {   /* already above: T* = 1 */
          ck_assert_double_eq(t, 1.0);
          ck_assert_double_eq_tol(e, ess1, 1e-12);
          untempered++;
          continue;
        }
        /* every entry is finite, so rho (<= 1) is reachable: T* > 1 with
         * ESS_n(lw / T*) = rho +- 1e-3 rho, checked in long double independently */
        ck_assert_msg(t > 1.0 && isfinite(t), "n %zu scale %g rho %g: T %g", n, scales[ci],
                      rho, t);
        const double got = naive_ess_n(n, lw, 1.0 / t);
        ck_assert_msg(fabs(got - rho) <= TCHI_SMC_TEMPER_RTOL * rho * (1 + 1e-9),
                      "n %zu scale %g rho %g: ESS_n %.9g", n, scales[ci], rho, got);
        ck_assert_double_eq_tol(e, got, 1e-10);
        /* shift invariance: lw + c gives the same temperature */
        for (size_t i = 0; i < n; i++) lws[i] = lw[i] - 12345.0;
        double t2;
        ck_assert_int_eq(tchi_smc_temperature(n, lws, rho, &t2, NULL), TCH_OK);
        ck_assert_msg(fabs(t2 / t - 1) <= 1e-6, "shifted: T %.12g vs %.12g", t2, t);
        tempered++;
      }
    }
  ck_assert_int_gt(tempered, 40);
  ck_assert_int_gt(untempered, 20);

  /* Fewer than rho n non-zero weights: no finite temperature reaches rho -> +inf, which
   * makes the resampling uniform over the non-zero entries. */
  double sparse[100];
  for (int i = 0; i < 100; i++) sparse[i] = i < 3 ? (double)i * 5.0 : -INFINITY;
  double t, e;
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, 0.05, &t, &e), TCH_OK);
  ck_assert(t == INFINITY);
  ck_assert_double_eq_tol(e, 0.03, 1e-15);
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, 0.02, &t, &e), TCH_OK);   /* reachable */
  ck_assert(t > 1.0 && isfinite(t));
  ck_assert(fabs(naive_ess_n(100, sparse, 1.0 / t) - 0.02) <= 0.02 * TCHI_SMC_TEMPER_RTOL);
  /* rho <= 0 never tempers; bad input */
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, 0.0, &t, NULL), TCH_OK);
  ck_assert_double_eq(t, 1.0);
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, 1.5, &t, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, NAN, &t, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_temperature(0, sparse, 0.5, &t, NULL), TCH_E_ARG);
  sparse[7] = NAN;
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, 0.5, &t, NULL), TCH_E_NUMERIC);
  for (int i = 0; i < 100; i++) sparse[i] = -INFINITY;
  ck_assert_int_eq(tchi_smc_temperature(100, sparse, 0.5, &t, NULL), TCH_E_NUMERIC);
}
END_TEST

/* ---- resamplers ---------------------------------------------------------------------------- */

#define RS_N 12
#define RS_DRAWS 20000

/* Offspring counts of `draws` resamplings (m outputs from w): per-index mean and variance. */
static void offspring_stats(tchi_resampler kind, const double *w, size_t m, uint64_t seed,
                            double *mean, double *var)
{
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, (uint64_t)kind);
  double s1[RS_N] = {0}, s2[RS_N] = {0};
  uint32_t anc[64];
  int ok = 1;   /* (Check's assertions are system calls: none in the hot loop) */
  for (int r = 0; r < RS_DRAWS && ok; r++) {
    ok = tchi_resample(kind, RS_N, w, m, &rng, anc) == TCH_OK;
    int cnt[RS_N] = {0};
    for (size_t k = 0; k < m && ok; k++) {
      ok = anc[k] < RS_N && (k == 0 || anc[k] >= anc[k - 1]);   /* ascending */
      if (ok) cnt[anc[k]]++;
    }
    for (int i = 0; i < RS_N; i++) {
      s1[i] += cnt[i];
      s2[i] += (double)cnt[i] * cnt[i];
    }
  }
  ck_assert_msg(ok, "%s: failed, out of range or not ascending", tchi_resampler_name(kind));
  for (int i = 0; i < RS_N; i++) {
    mean[i] = s1[i] / RS_DRAWS;
    var[i] = s2[i] / RS_DRAWS - mean[i] * mean[i];
  }
}

START_TEST(resamplers_are_unbiased)
{
  /* unnormalised weights with a zero inside and at both ends' neighbours */
  const double w[RS_N] = {0.0, 3.0, 0.5, 0.01, 7.0, 0.0, 1.0, 2.5, 0.2, 4.0, 0.79, 0.0};
  double total = 0;
  for (int i = 0; i < RS_N; i++) total += w[i];
  const size_t ms[] = {12, 7, 40};
  for (size_t mi = 0; mi < 3; mi++) {
    const size_t m = ms[mi];
    double var_sum[TCHI_RESAMPLER_COUNT] = {0};
    for (int kind = 0; kind < TCHI_RESAMPLER_COUNT; kind++) {
      double mean[RS_N], var[RS_N];
      offspring_stats((tchi_resampler)kind, w, m, 1000 + m, mean, var);
      for (int i = 0; i < RS_N; i++) {
        const double p = w[i] / total, expect = (double)m * p;
        /* |mean - m p_i| <= 5 standard errors, with the multinomial variance m p (1 - p)
         * (the largest of the three) as the bound of every scheme */
        const double se = sqrt((double)m * p * (1 - p) / RS_DRAWS);
        ck_assert_msg(fabs(mean[i] - expect) <= 5 * se + 1e-12,
                      "%s m %zu index %d: mean %.5f expected %.5f (se %.5f)",
                      tchi_resampler_name((tchi_resampler)kind), m, i, mean[i], expect, se);
        if (w[i] == 0.0) ck_assert(mean[i] == 0.0);   /* zero weights never drawn */
        var_sum[kind] += var[i];
        if (kind == TCHI_RESAMPLER_MULTINOMIAL) {
          /* binomial counts: the sample variance within 5 of its standard errors,
           * sqrt((mu4 - sigma^4) / R) with mu4 = m p q (1 + 3 (m - 2) p q) */
          const double pq = p * (1 - p), s2 = (double)m * pq;
          const double mu4 = s2 * (1 + 3 * ((double)m - 2) * pq);
          ck_assert_msg(fabs(var[i] - s2) <= 5 * sqrt((mu4 - s2 * s2) / RS_DRAWS) + 1e-12,
                        "multinomial var %g vs %g", var[i], s2);
        }
        if (kind == TCHI_RESAMPLER_SYSTEMATIC)   /* counts are floor or ceil of m p_i */
          ck_assert(var[i] <= 0.25 + 1e-12);
      }
    }
    /* lower variance than multinomial: summed offspring variance at most 60% of it */
    ck_assert_msg(var_sum[TCHI_RESAMPLER_SYSTEMATIC] < 0.6 * var_sum[TCHI_RESAMPLER_MULTINOMIAL],
                  "m %zu: systematic %g multinomial %g", m, var_sum[TCHI_RESAMPLER_SYSTEMATIC],
                  var_sum[TCHI_RESAMPLER_MULTINOMIAL]);
    ck_assert_msg(var_sum[TCHI_RESAMPLER_STRATIFIED] < 0.6 * var_sum[TCHI_RESAMPLER_MULTINOMIAL],
                  "m %zu: stratified %g multinomial %g", m, var_sum[TCHI_RESAMPLER_STRATIFIED],
                  var_sum[TCHI_RESAMPLER_MULTINOMIAL]);
  }
}
END_TEST

START_TEST(systematic_counts_within_one)
{
  /* spec §13.4: systematic offspring counts are within +-1 of N p_i, for any weights */
  tchi_rng rng;
  tchi_rng_seed(&rng, 5, 5);
  static double w[5000];
  static uint32_t anc[5000];
  for (int rep = 0; rep < 50; rep++) {
    const size_t n = 1 + tchi_rng_below(&rng, 5000);
    double total = 0;
    for (size_t i = 0; i < n; i++) {
      w[i] = tchi_rng_uniform(&rng) < 0.2 ? 0.0 : exp(3 * tchi_rng_normal(&rng));
      total += w[i];
    }
    if (total == 0) continue;
    ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_SYSTEMATIC, n, w, n, &rng, anc), TCH_OK);
    size_t k = 0, bad = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
      size_t c = 0;
      while (k < n && anc[k] == i) c++, k++;
      if (!(fabs((double)c - (double)n * w[i] / total) < 1.0 + 1e-9) && bad == SIZE_MAX) bad = i;
    }
    ck_assert_msg(bad == SIZE_MAX, "n %zu: count of %zu is not within 1 of n p", n, bad);
    ck_assert_uint_eq(k, n);
  }
}
END_TEST

START_TEST(resampler_conventions_and_errors)
{
  /* Uniform consumption: systematic 1, stratified m, multinomial m + 1 draws. */
  const double w[4] = {1, 2, 3, 4};
  uint32_t anc[8];
  for (int kind = 0; kind < TCHI_RESAMPLER_COUNT; kind++) {
    tchi_rng a, b;
    tchi_rng_seed(&a, 3, 3);
    b = a;
    ck_assert_int_eq(tchi_resample((tchi_resampler)kind, 4, w, 8, &a, anc), TCH_OK);
    const int uses = kind == TCHI_RESAMPLER_SYSTEMATIC ? 1 : kind == TCHI_RESAMPLER_STRATIFIED ? 8 : 9;
    for (int i = 0; i < uses; i++) (void)tchi_rng_uniform_pos(&b);
    ck_assert_uint_eq(tchi_rng_u64(&a), tchi_rng_u64(&b));
  }
  /* systematic positions (k + U) / m against the CDF (searchsorted left): with U from the
   * same generator the ancestors follow from the formula */
  tchi_rng a, b;
  tchi_rng_seed(&a, 8, 1);
  b = a;
  ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_SYSTEMATIC, 4, w, 8, &a, anc), TCH_OK);
  const double u = tchi_rng_uniform_pos(&b), cdf[4] = {0.1, 0.3, 0.6, 1.0};
  for (int k = 0; k < 8; k++) {
    const double pos = (k + u) / 8;
    uint32_t i = 0;
    while (i < 3 && cdf[i] < pos) i++;
    ck_assert_uint_eq(anc[k], i);
  }
  ck_assert_str_eq(tchi_resampler_name(TCHI_RESAMPLER_STRATIFIED), "stratified");
  ck_assert_ptr_null(tchi_resampler_name((tchi_resampler)7));
  tchi_resampler r;
  ck_assert_int_eq(tchi_resampler_from_name("multinomial", &r), TCH_OK);
  ck_assert_int_eq(r, TCHI_RESAMPLER_MULTINOMIAL);
  ck_assert_int_eq(tchi_resampler_from_name("rank", &r), TCH_E_ARG);
  ck_assert_int_eq(tchi_resampler_from_name(NULL, &r), TCH_E_ARG);
  /* errors write nothing */
  const double neg[3] = {1, -1, 1}, zero[3] = {0, 0, 0}, nan3[3] = {1, NAN, 1};
  anc[0] = 77;
  ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_SYSTEMATIC, 3, neg, 2, &a, anc), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_SYSTEMATIC, 3, zero, 2, &a, anc), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_STRATIFIED, 3, nan3, 2, &a, anc), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_SYSTEMATIC, 0, w, 2, &a, anc), TCH_E_ARG);
  ck_assert_int_eq(tchi_resample((tchi_resampler)3, 4, w, 2, &a, anc), TCH_E_ARG);
  ck_assert_uint_eq(anc[0], 77);
  ck_assert_int_eq(tchi_resample(TCHI_RESAMPLER_MULTINOMIAL, 4, w, 0, &a, NULL), TCH_OK);
}
END_TEST

/* ---- partial resampling and the resampling rule ------------------------------------------- */

START_TEST(partial_resampling)
{
  enum { N = 400 };
  double lw[N], orig[N], scratch[N];
  uint32_t anc[N];
  tchi_rng rng;
  tchi_rng_seed(&rng, 21, 0);
  tchi_smc_resample_info info;

  /* ESS_n above the target: T* = 1, every weight restarts at 0 */
  normal_log_weights(&rng, N, 1.0, lw);
  ck_assert_int_eq(tchi_smc_resample_tempered(TCHI_RESAMPLER_SYSTEMATIC, N, lw, 0.05, &rng, anc,
                                              scratch, &info), TCH_OK);
  ck_assert_double_eq(info.temperature, 1.0);
  ck_assert_double_eq(info.log_correction, 0.0);
  ck_assert(info.ess_before >= 0.05 && info.ess_tempered == info.ess_before);
  for (int i = 0; i < N; i++) ck_assert(lw[i] == 0.0);

  /* heavy weights: tempered, and the carried weight is (1 - 1/T*) of the ancestor's */
  normal_log_weights(&rng, N, 8.0, lw);
  memcpy(orig, lw, sizeof lw);
  ck_assert_int_eq(tchi_smc_resample_tempered(TCHI_RESAMPLER_SYSTEMATIC, N, lw, 0.05, &rng, anc,
                                              scratch, &info), TCH_OK);
  ck_assert(info.temperature > 1.0 && isfinite(info.temperature));
  ck_assert(info.ess_before < 0.05);
  ck_assert(fabs(info.ess_tempered - 0.05) <= 0.05 * TCHI_SMC_TEMPER_RTOL);
  const double c = 1.0 - 1.0 / info.temperature;
  for (int i = 0; i < N; i++) ck_assert_double_eq_tol(lw[i], c * orig[anc[i]], 1e-12);
  /* the resampled particles keep more diversity than untempered resampling would */
  int distinct = 0;
  for (int i = 0; i < N; i++) distinct += i == 0 || anc[i] != anc[i - 1];
  ck_assert_int_ge(distinct, (int)(0.5 * 0.05 * N));

  /* The correction factor has expectation 1: mean of exp(log_correction) over many draws
   * (fixed weights, bound 5 standard errors). */
  enum { M = 40, REPS = 20000 };
  double base[M], l2[M], s2[M];
  uint32_t a2[M];
  normal_log_weights(&rng, M, 3.0, base);
  double s = 0, ss = 0;
  for (int r = 0; r < REPS; r++) {
    memcpy(l2, base, sizeof base);
    if (tchi_smc_resample_tempered(TCHI_RESAMPLER_MULTINOMIAL, M, l2, 0.3, &rng, a2, s2,
                                   &info) != TCH_OK || !(info.temperature > 1.0))
      ck_abort_msg("tempered resampling failed at repetition %d", r);
    const double f = exp(info.log_correction);
    s += f;
    ss += f * f;
  }
  const double mean = s / REPS, se = sqrt((ss / REPS - mean * mean) / REPS);
  ck_assert_msg(fabs(mean - 1.0) <= 5 * se, "E[correction] %.5f (se %.5f)", mean, se);

  /* the rule: resample iff rho < 1, not after the last chunk, and ESS_n < kappa */
  ck_assert(tchi_smc_should_resample(0.1, 0.2, 0.05, 0, 16));
  ck_assert(tchi_smc_should_resample(0.1, 0.2, 0.05, 14, 16));
  ck_assert(!tchi_smc_should_resample(0.1, 0.2, 0.05, 15, 16));   /* last chunk */
  ck_assert(!tchi_smc_should_resample(0.2, 0.2, 0.05, 3, 16));    /* not below */
  ck_assert(!tchi_smc_should_resample(0.1, 0.2, 1.0, 3, 16));     /* rho = 1: off */
  ck_assert(!tchi_smc_should_resample(0.0, 0.2, 0.05, 0, 1));
  ck_assert(!tchi_smc_should_resample(0.0, 0.2, 0.05, UINT32_MAX, UINT32_MAX));
}
END_TEST

/* ---- running log Ẑ on a Gaussian annealing sequence ------------------------------------- */

/* gamma_j(x) = pi0(x)^(1 - b_j) gamma_K(x)^b_j on R^2 with pi0 = N(0, I) and the target
 * gamma_K = Z N(mu, s^2 I), Z = e^1.3; b_j = j / K. Each pi_j is Gaussian (precision lam_j,
 * mean m_j), so the move is an exact pi_j-invariant AR(1) kernel. The SMC estimate of
 * Z_K / Z_0 = Z uses only the library's primitives. */
#define GS_D 2
#define GS_K 6
#define GS_N 32
static const double gs_mu[GS_D] = {2.0, -1.5};
static const double gs_s = 0.5, gs_log_z = 1.3;

static double gs_log_gamma(double beta, const double *x)
{
  double a = 0, b = 0;
  for (int j = 0; j < GS_D; j++) {
    a += -0.5 * x[j] * x[j];
    const double t = (x[j] - gs_mu[j]) / gs_s;
    b += -0.5 * t * t - log(gs_s);
  }
  return (1 - beta) * a + beta * (b + gs_log_z);   /* constants (2 pi) cancel in ratios */
}

typedef struct gs_result { double log_z; int resampled, tempered; } gs_result;

static gs_result gs_run(tchi_rng *rng, double kappa, double rho, int unbiased, double *wmean)
{
  double x[GS_N][GS_D], y[GS_N][GS_D], lw[GS_N], lg[GS_N], scratch[GS_N];
  uint32_t anc[GS_N];
  gs_result res = {0, 0, 0};
  for (int i = 0; i < GS_N; i++) {
    for (int j = 0; j < GS_D; j++) x[i][j] = tchi_rng_normal(rng);
    lw[i] = -log((double)GS_N);
  }
  for (int k = 0; k < GS_K; k++) {
    const double b0 = (double)k / GS_K, b1 = (double)(k + 1) / GS_K;
    for (int i = 0; i < GS_N; i++) lg[i] = gs_log_gamma(b1, x[i]) - gs_log_gamma(b0, x[i]);
    res.log_z += tchi_smc_reweight(GS_N, lw, lg);
    const double ess = tchi_smc_ess_normalised(GS_N, lw, 1.0);
    if (tchi_smc_should_resample(ess, kappa, rho, (uint32_t)k, GS_K)) {
      tchi_smc_resample_info info;
      if (tchi_smc_resample_tempered(TCHI_RESAMPLER_SYSTEMATIC, GS_N, lw, rho, rng, anc, scratch,
                                     &info) != TCH_OK) {
        res.log_z = NAN;
        return res;
      }
      tchi_smc_gather(GS_N, sizeof x[0], anc, x, y);
      memcpy(x, y, sizeof x);
      if (unbiased) res.log_z += info.log_correction;
      res.resampled++;
      res.tempered += info.temperature > 1.0;
    }
    tchi_smc_log_normalise(GS_N, lw);
    if (k + 1 == GS_K) break;   /* the final particles are not moved */
    /* pi_{k+1}-invariant AR(1) move with correlation 0.5 */
    const double lam = (1 - b1) + b1 / (gs_s * gs_s), sd = 1 / sqrt(lam);
    for (int i = 0; i < GS_N; i++)
      for (int j = 0; j < GS_D; j++) {
        const double m = b1 * gs_mu[j] / (gs_s * gs_s) / lam;
        x[i][j] = m + 0.5 * (x[i][j] - m) + sqrt(0.75) * sd * tchi_rng_normal(rng);
      }
  }
  if (wmean)
    for (int j = 0; j < GS_D; j++) {
      wmean[j] = 0;
      for (int i = 0; i < GS_N; i++) wmean[j] += exp(lw[i]) * x[i][j];
    }
  return res;
}

START_TEST(running_log_z_is_unbiased)
{
  /* (kappa, rho, exact correction): plain resampling, and tempered partial resampling with
   * the correction. Mean of Ẑ / Z over R runs within 4 standard errors of 1; every run
   * configuration must actually resample (and the second one temper). */
  const struct { double kappa, rho; int unbiased; } cfg[] = {{0.5, 0.0, 0}, {0.5, 0.45, 1}};
  enum { R = 6000 };
  for (int c = 0; c < 2; c++) {
    tchi_rng rng;
    tchi_rng_seed(&rng, 2024, (uint64_t)c);
    double s = 0, ss = 0, wm[GS_D], wm_sum[GS_D] = {0};
    long resampled = 0, tempered = 0;
    for (int r = 0; r < R; r++) {
      gs_result g = gs_run(&rng, cfg[c].kappa, cfg[c].rho, cfg[c].unbiased, wm);
      const double ratio = exp(g.log_z - gs_log_z);
      s += ratio;
      ss += ratio * ratio;
      resampled += g.resampled;
      tempered += g.tempered;
      for (int j = 0; j < GS_D; j++) wm_sum[j] += wm[j];
    }
    const double mean = s / R, se = sqrt((ss / R - mean * mean) / R);
    ck_assert_msg(fabs(mean - 1.0) <= 4 * se && se < 0.02, "config %d: E[Z^/Z] %.5f (se %.5f)",
                  c, mean, se);
    ck_assert_int_gt(resampled, R);
    if (cfg[c].rho > 0) ck_assert_int_gt(tempered, R / 10);
    /* the weighted final particles estimate the target's mean (loose: 0.05) */
    for (int j = 0; j < GS_D; j++)
      ck_assert_msg(fabs(wm_sum[j] / R - gs_mu[j]) < 0.05, "mean %g vs %g", wm_sum[j] / R,
                    gs_mu[j]);
  }
}
END_TEST

/* ---- IW replay buffer ------------------------------------------------------------------------ */

static tchi_iwbuf *mkbuf(uint32_t dim, size_t cap, tchi_iwbuf_priority mode, double rho)
{
  tchi_iwbuf_params p;
  tchi_iwbuf_params_default(&p, dim, cap);
  p.priority = mode;
  p.target_ess = rho;
  tchi_iwbuf *b = NULL;
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_OK);
  return b;
}

/* Adds samples first..first+n-1 with x = (id, -id), log R = -id / 10, log-IW = id / 100. */
static void add_ids(tchi_iwbuf *b, int first, int n)
{
  double x[64 * 2], lr[64], li[64], loss[64];
  for (int i = 0; i < n; i++) {
    const int id = first + i;
    x[2 * i] = id;
    x[2 * i + 1] = -id;
    lr[i] = -id / 10.0;
    li[i] = id / 100.0;
    loss[i] = 1.0 + id;
  }
  size_t added;
  ck_assert_int_eq(tchi_iwbuf_add(b, (size_t)n, x, lr, li, loss, &added), TCH_OK);
  ck_assert_uint_eq(added, TCHI_MIN((size_t)n, b->prm.capacity));
}

static int id_at(const tchi_iwbuf *b, size_t fifo_index)
{
  double x[2], lr, li, pr;
  tchi_iwbuf_get(b, tchi_iwbuf_slot(b, fifo_index), x, &lr, &li, &pr);
  const int id = (int)x[0];
  ck_assert_double_eq(x[1], -id);
  ck_assert_double_eq(lr, -id / 10.0);
  ck_assert_double_eq(li, id / 100.0);
  return id;
}

START_TEST(iwbuf_fifo_and_validation)
{
  tchi_iwbuf *b = mkbuf(2, 5, TCHI_IWBUF_PIW, 0.05);
  add_ids(b, 0, 3);
  ck_assert_uint_eq(b->n, 3);
  for (int i = 0; i < 3; i++) ck_assert_int_eq(id_at(b, (size_t)i), i);
  add_ids(b, 3, 3);   /* 0 is evicted */
  ck_assert_uint_eq(b->n, 5);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(id_at(b, (size_t)i), i + 1);
  add_ids(b, 6, 4);   /* 1..4 evicted, wraps */
  for (int i = 0; i < 5; i++) ck_assert_int_eq(id_at(b, (size_t)i), i + 5);
  add_ids(b, 10, 12);   /* larger than the capacity: its last 5 stay */
  for (int i = 0; i < 5; i++) ck_assert_int_eq(id_at(b, (size_t)i), i + 17);
  ck_assert_uint_eq(b->n_added, 3 + 3 + 4 + 5);
  double pr;
  tchi_iwbuf_get(b, tchi_iwbuf_slot(b, 0), NULL, NULL, NULL, &pr);
  ck_assert_double_eq(pr, 0.17);   /* piw: the raw log-IW */

  /* a bad row anywhere rejects the whole batch, and nothing changes */
  double x[3 * 2] = {1, 2, 3, 4, 5, 6}, lr[3] = {0, 0, 0}, li[3] = {0, 0, 0}, loss[3] = {1, 1, 1};
  const size_t head = b->head;
  x[3] = NAN;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, NULL, NULL), TCH_E_NUMERIC);
  x[3] = INFINITY;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, NULL, NULL), TCH_E_NUMERIC);
  x[3] = 4;
  lr[2] = NAN;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, NULL, NULL), TCH_E_NUMERIC);
  lr[2] = INFINITY;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, NULL, NULL), TCH_E_NUMERIC);
  lr[2] = 0;
  li[1] = NAN;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, NULL, NULL), TCH_E_NUMERIC);
  li[1] = 0;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, NULL, NULL, NULL), TCH_E_ARG);   /* piw needs it */
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, NULL, lr, li, NULL, NULL), TCH_E_ARG);
  ck_assert_uint_eq(b->head, head);
  for (int i = 0; i < 5; i++) ck_assert_int_eq(id_at(b, (size_t)i), i + 17);
  tchi_iwbuf_free(b);

  /* loss mode needs losses >= 0; reward mode stores log R; -inf log-IWs are accepted */
  b = mkbuf(2, 8, TCHI_IWBUF_LOSS, 0.05);
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, NULL, NULL), TCH_E_ARG);
  loss[0] = -1;
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, li, loss, NULL), TCH_E_NUMERIC);
  loss[0] = 0;   /* log 0 = -inf: stored, never drawn */
  ck_assert_int_eq(tchi_iwbuf_add(b, 3, x, lr, NULL, loss, NULL), TCH_OK);
  double liw;
  tchi_iwbuf_get(b, 0, NULL, NULL, &liw, &pr);
  ck_assert(pr == -INFINITY && isnan(liw));
  tchi_iwbuf_free(b);

  /* log_r_min drops samples at insertion */
  tchi_iwbuf_params p;
  tchi_iwbuf_params_default(&p, 2, 8);
  p.log_r_min = -1.05;   /* keeps ids 0..10 of add_ids's log R = -id/10 */
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_OK);
  double xx[20 * 2], lrr[20], lii[20];
  for (int i = 0; i < 20; i++) {
    xx[2 * i] = i;
    xx[2 * i + 1] = -i;
    lrr[i] = -i / 10.0;
    lii[i] = 0;
  }
  size_t added;
  ck_assert_int_eq(tchi_iwbuf_add(b, 20, xx, lrr, lii, NULL, &added), TCH_OK);
  ck_assert_uint_eq(added, 8);   /* 11 kept, the last 8 of them stay */
  for (size_t i = 0; i < 8; i++) {
    double xi[2];
    tchi_iwbuf_get(b, tchi_iwbuf_slot(b, i), xi, NULL, NULL, NULL);
    ck_assert_double_eq(xi[0], (double)(i + 3));
  }
  tchi_iwbuf_free(b);

  /* parameters */
  tchi_iwbuf_params_default(&p, 0, 8);
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_E_ARG);
  ck_assert_ptr_null(b);
  tchi_iwbuf_params_default(&p, 2, 0);
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_E_ARG);
  tchi_iwbuf_params_default(&p, 2, 8);
  p.target_ess = 1.5;
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_E_ARG);
  tchi_iwbuf_params_default(&p, 2, 8);
  p.log_r_min = NAN;
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_E_ARG);
  tchi_iwbuf_params_default(&p, 1u << 31, (size_t)UINT32_MAX);
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_E_ARG);
  tchi_iwbuf_priority mode;
  ck_assert_int_eq(tchi_iwbuf_priority_from_name("uiw", &mode), TCH_OK);
  ck_assert_int_eq(mode, TCHI_IWBUF_UIW);
  ck_assert_int_eq(tchi_iwbuf_priority_from_name("iw", &mode), TCH_E_ARG);
  ck_assert_str_eq(tchi_iwbuf_priority_name(TCHI_IWBUF_NONE), "none");

  /* sampling an empty buffer */
  b = mkbuf(2, 8, TCHI_IWBUF_PIW, 0.05);
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  double out[2];
  ck_assert_int_eq(tchi_iwbuf_sample(b, &rng, 1, out, NULL, NULL, NULL), TCH_E_STATE);
  ck_assert_int_eq(tchi_iwbuf_sample(b, &rng, 0, out, NULL, NULL, NULL), TCH_OK);
  tchi_iwbuf_free(b);
  tchi_iwbuf_free(NULL);
}
END_TEST

/* Draw frequencies of `rounds` x m draws against the probabilities p (n entries, in slot
 * order): every |f_i - p_i| within 5 binomial standard errors (a conservative bound for the
 * systematic draws). */
static void check_frequencies(tchi_iwbuf *b, tchi_rng *rng, size_t m, int rounds, const double *p)
{
  const size_t n = b->n;
  double *cnt = calloc(n, sizeof *cnt);
  uint32_t *slots = malloc(m * sizeof *slots);
  double *lr = malloc(m * sizeof *lr);
  int ok = 1;
  for (int r = 0; r < rounds && ok; r++) {
    ok = tchi_iwbuf_sample(b, rng, m, NULL, lr, NULL, slots) == TCH_OK;
    for (size_t k = 0; k < m && ok; k++) {
      ok = slots[k] < n && lr[k] == b->log_r[slots[k]];
      if (ok) cnt[slots[k]]++;
    }
  }
  ck_assert_msg(ok, "sampling failed or returned a wrong slot / log R");
  const double total = (double)m * rounds;
  for (size_t i = 0; i < n; i++) {
    const double f = cnt[i] / total, se = sqrt(p[i] * (1 - p[i]) / total);
    ck_assert_msg(fabs(f - p[i]) <= 5 * se + 1e-12, "%s slot %zu: f %.6f p %.6f",
                  tchi_iwbuf_priority_name(b->prm.priority), i, f, p[i]);
  }
  free(cnt);
  free(slots);
  free(lr);
}

START_TEST(iwbuf_sampling_frequencies)
{
  enum { N = 60, M = 500, ROUNDS = 400 };
  double x[N], lr[N], li[N], loss[N], p[N];
  tchi_rng rng;
  tchi_rng_seed(&rng, 31, 0);
  for (int i = 0; i < N; i++) {
    x[i] = i;
    lr[i] = 0.7 * tchi_rng_normal(&rng);
    li[i] = 4.0 * tchi_rng_normal(&rng);
    loss[i] = exp(tchi_rng_normal(&rng));
  }
  li[5] = -INFINITY;   /* a zero weight */
  for (int mode = 0; mode < TCHI_IWBUF_PRIORITY_COUNT; mode++) {
    const double rho = 0.2;
    tchi_iwbuf *b = mkbuf(1, 100, (tchi_iwbuf_priority)mode, rho);
    ck_assert_int_eq(tchi_iwbuf_add(b, N / 2, x, lr, li, loss, NULL), TCH_OK);
    ck_assert_int_eq(tchi_iwbuf_add(b, N / 2, x + N / 2, lr + N / 2, li + N / 2, loss + N / 2,
                                    NULL), TCH_OK);
    /* the expected probabilities, from the definitions of §6.2-6.3 */
    double t = 1.0;
    switch (mode) {
    case TCHI_IWBUF_PIW:
      ck_assert_int_eq(tchi_smc_temperature(N, li, rho, &t, NULL), TCH_OK);
      ck_assert(t > 1.0);   /* log-IWs of scale 4 are far below ESS_n 0.2 */
      ck_assert_int_eq(tchi_smc_normalised_weights(N, li, 1.0 / t, p, NULL), TCH_OK);
      ck_assert(fabs(naive_ess_n(N, li, 1.0 / t) - rho) <= rho * TCHI_SMC_TEMPER_RTOL);
      break;
    case TCHI_IWBUF_UIW:
      /* each half tempered to rho and normalised by itself: equal total mass */
      for (int h = 0; h < 2; h++) {
        double th;
        ck_assert_int_eq(tchi_smc_temperature(N / 2, li + h * N / 2, rho, &th, NULL), TCH_OK);
        ck_assert_int_eq(tchi_smc_normalised_weights(N / 2, li + h * N / 2, 1.0 / th,
                                                     p + h * N / 2, NULL), TCH_OK);
        for (int i = 0; i < N / 2; i++) p[h * N / 2 + i] *= 0.5;
      }
      break;
    case TCHI_IWBUF_REWARD:
      ck_assert_int_eq(tchi_smc_normalised_weights(N, lr, 1.0, p, NULL), TCH_OK);
      break;
    case TCHI_IWBUF_LOSS: {
      double s = 0;
      for (int i = 0; i < N; i++) s += loss[i];
      for (int i = 0; i < N; i++) p[i] = loss[i] / s;
      break;
    }
    default:
      for (int i = 0; i < N; i++) p[i] = 1.0 / N;
      break;
    }
    check_frequencies(b, &rng, M, ROUNDS, p);
    ck_assert_double_eq_tol(b->last_temperature, t, 1e-12 * t);
    double e_expect = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
      e_expect += p[i];
      s2 += p[i] * p[i];
    }
    ck_assert_double_eq_tol(b->last_ess, e_expect * e_expect / s2 / N, 1e-9);
    if (mode == TCHI_IWBUF_PIW || mode == TCHI_IWBUF_UIW) {
      double pr;
      tchi_iwbuf_get(b, 5, NULL, NULL, NULL, &pr);
      ck_assert(pr == -INFINITY);   /* never drawn (checked by the frequencies too) */
    }
    /* out_x rows follow the slots */
    double ox[8];
    uint32_t os[8];
    ck_assert_int_eq(tchi_iwbuf_sample(b, &rng, 8, ox, NULL, NULL, os), TCH_OK);
    for (int k = 0; k < 8; k++) ck_assert_double_eq(ox[k], x[os[k]]);
    tchi_iwbuf_free(b);
  }

  /* every priority -inf: nothing can be drawn */
  tchi_iwbuf *b = mkbuf(1, 10, TCHI_IWBUF_PIW, 0.05);
  const double ninf[2] = {-INFINITY, -INFINITY}, xs[2] = {0, 1}, lrs[2] = {0, 0};
  ck_assert_int_eq(tchi_iwbuf_add(b, 2, xs, lrs, ninf, NULL, NULL), TCH_OK);
  double o;
  ck_assert_int_eq(tchi_iwbuf_sample(b, &rng, 1, &o, NULL, NULL, NULL), TCH_E_NUMERIC);
  tchi_iwbuf_free(b);
  /* uiw rejects a batch without a finite log-weight */
  b = mkbuf(1, 10, TCHI_IWBUF_UIW, 0.05);
  ck_assert_int_eq(tchi_iwbuf_add(b, 2, xs, lrs, ninf, NULL, NULL), TCH_E_NUMERIC);
  ck_assert_uint_eq(b->n, 0);
  tchi_iwbuf_free(b);
}
END_TEST

static tchi_reader mem_reader(const tchi_writer *w, size_t len)
{
  tchi_reader r = {.buf = w->buf, .len = len, .pos = 0, .path = "memory", .failed = 0};
  return r;
}

static tchi_iwbuf *filled_buffer(tchi_iwbuf_priority mode)
{
  tchi_iwbuf_params p;
  tchi_iwbuf_params_default(&p, 3, 50);
  p.priority = mode;
  p.target_ess = 0.1;
  p.resampler = TCHI_RESAMPLER_STRATIFIED;
  p.log_r_min = -3.0;
  tchi_iwbuf *b;
  ck_assert_int_eq(tchi_iwbuf_create(&p, &b), TCH_OK);
  tchi_rng rng;
  tchi_rng_seed(&rng, 77, mode);
  for (int batch = 0; batch < 7; batch++) {   /* 7 x 11 > 50: wraps */
    double x[11 * 3], lr[11], li[11], loss[11];
    for (int i = 0; i < 11; i++) {
      for (int j = 0; j < 3; j++) x[3 * i + j] = tchi_rng_normal(&rng);
      lr[i] = -fabs(tchi_rng_normal(&rng));
      li[i] = 3 * tchi_rng_normal(&rng);
      loss[i] = tchi_rng_uniform(&rng);
    }
    ck_assert_int_eq(tchi_iwbuf_add(b, 11, x, lr, li, loss, NULL), TCH_OK);
  }
  double o[3];
  ck_assert_int_eq(tchi_iwbuf_sample(b, &rng, 1, o, NULL, NULL, NULL), TCH_OK);
  return b;
}

START_TEST(iwbuf_serialisation)
{
  for (int mode = 0; mode < TCHI_IWBUF_PRIORITY_COUNT; mode++) {
    tchi_iwbuf *b = filled_buffer((tchi_iwbuf_priority)mode);
    ck_assert_uint_eq(b->n, 50);
    tchi_writer w;
    tchi_writer_init(&w);
    tchi_iwbuf_write(b, &w);
    ck_assert_int_eq(w.status, TCH_OK);
    tchi_reader r = mem_reader(&w, w.len);
    tchi_iwbuf *c = NULL;
    ck_assert_int_eq(tchi_iwbuf_read(&r, &c), TCH_OK);
    ck_assert_uint_eq(r.pos, r.len);
    ck_assert_mem_eq(&c->prm, &b->prm, sizeof b->prm);
    ck_assert_uint_eq(c->n, b->n);
    ck_assert_uint_eq(c->head, b->head);
    ck_assert_uint_eq(c->n_added, b->n_added);
    ck_assert_double_eq(c->last_temperature, b->last_temperature);
    for (size_t s = 0; s < b->n; s++) {
      double x1[3], x2[3], a1, a2, l1, l2, p1, p2;
      tchi_iwbuf_get(b, s, x1, &a1, &l1, &p1);
      tchi_iwbuf_get(c, s, x2, &a2, &l2, &p2);
      ck_assert_mem_eq(x1, x2, sizeof x1);
      ck_assert_double_eq(a1, a2);
      ck_assert(l1 == l2 || (isnan(l1) && isnan(l2)));
      ck_assert_double_eq(p1, p2);
    }
    /* the same generator gives the same draws, before and after the same further adds */
    for (int round = 0; round < 2; round++) {
      tchi_rng s1, s2;
      tchi_rng_seed(&s1, 9 + round, 1);
      s2 = s1;
      double o1[3 * 200], o2[3 * 200];
      uint32_t k1[200], k2[200];
      ck_assert_int_eq(tchi_iwbuf_sample(b, &s1, 200, o1, NULL, NULL, k1), TCH_OK);
      ck_assert_int_eq(tchi_iwbuf_sample(c, &s2, 200, o2, NULL, NULL, k2), TCH_OK);
      ck_assert_mem_eq(o1, o2, sizeof o1);
      ck_assert_mem_eq(k1, k2, sizeof k1);
      double x[3] = {1, 2, 3}, lr = -0.5, li = 0.25, loss = 0.5;
      ck_assert_int_eq(tchi_iwbuf_add(b, 1, x, &lr, &li, &loss, NULL), TCH_OK);
      ck_assert_int_eq(tchi_iwbuf_add(c, 1, x, &lr, &li, &loss, NULL), TCH_OK);
    }
    /* every truncation fails cleanly with TCH_E_IO */
    for (size_t len = 0; len < w.len; len += (len < 128 ? 1 : 13)) {
      tchi_reader t = mem_reader(&w, len);
      tchi_iwbuf *d = (tchi_iwbuf *)&t;
      ck_assert_int_eq(tchi_iwbuf_read(&t, &d), TCH_E_IO);
      ck_assert_ptr_null(d);
    }
    tchi_writer_destroy(&w);
    tchi_iwbuf_free(c);
    tchi_iwbuf_free(b);
  }
}
END_TEST

START_TEST(iwbuf_file_round_trip_and_malformed_input)
{
  tchi_iwbuf *b = filled_buffer(TCHI_IWBUF_PIW);
  char dir[] = "/tmp/tch_smc_XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/iwbuf.bin", dir);
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_iwbuf_write(b, &w);
  ck_assert_int_eq(tchi_writer_commit(&w, path), TCH_OK);
  tchi_writer_destroy(&w);
  tchi_reader r;
  ck_assert_int_eq(tchi_reader_open(&r, path), TCH_OK);
  tchi_iwbuf *c;
  ck_assert_int_eq(tchi_iwbuf_read(&r, &c), TCH_OK);
  ck_assert_uint_eq(c->n, b->n);
  ck_assert_mem_eq(c->x, b->x, b->n * 3 * sizeof(double));
  tchi_reader_close(&r);
  tchi_iwbuf_free(c);
  unlink(path);
  rmdir(dir);

  /* header layout: tag 0, format 4, dim 8, mode 12, resampler 16, reserved 20, cap 24,
   * rho 32, log_r_min 40, n 48, head 56, n_added 64, last T 72, last ESS 80; entries at 88
   * (x 24 bytes, log_r, log_iw, prio) */
  const uint64_t n = b->n, head = b->head;
  struct { size_t off; int size; uint64_t val; tch_status want; } cases[] = {
    {0, 4, 0x12345678, TCH_E_IO},   /* tag */
    {4, 4, 2, TCH_E_VERSION},       /* format */
    {8, 4, 0, TCH_E_IO},            /* dim 0 */
    {12, 4, 9, TCH_E_IO},           /* priority mode */
    {16, 4, 3, TCH_E_IO},           /* resampler */
    {20, 4, 1, TCH_E_IO},           /* reserved */
    {24, 8, 0, TCH_E_IO},           /* capacity 0 */
    {24, 8, 10, TCH_E_IO},          /* n > capacity */
    {48, 8, 1000, TCH_E_IO},        /* n beyond the data */
    {56, 8, 50, TCH_E_IO},          /* full buffer, head out of range */
    {64, 8, 3, TCH_E_IO},           /* n_added < n */
    {72, 8, 0, TCH_E_IO},           /* last temperature 0 (bits of +0.0) */
    {88 + 8, 8, 0x7ff8000000000000ull, TCH_E_IO},   /* x NaN */
    {88 + 24, 8, 0x7ff0000000000000ull, TCH_E_IO},  /* log_r +inf */
    {88 + 40, 8, 0x7ff8000000000000ull, TCH_E_IO},  /* priority NaN */
  };
  (void)n;
  (void)head;
  tchi_writer_init(&w);
  tchi_iwbuf_write(b, &w);
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    unsigned char save[8];
    memcpy(save, w.buf + cases[i].off, 8);
    if (cases[i].size == 4) {
      uint32_t v = (uint32_t)cases[i].val;
      memcpy(w.buf + cases[i].off, &v, 4);
    } else {
      memcpy(w.buf + cases[i].off, &cases[i].val, 8);
    }
    tchi_reader t = mem_reader(&w, w.len);
    tchi_iwbuf *d = NULL;
    ck_assert_msg(tchi_iwbuf_read(&t, &d) == cases[i].want, "case %zu", i);
    ck_assert_ptr_null(d);
    memcpy(w.buf + cases[i].off, save, 8);
  }
  tchi_reader t = mem_reader(&w, w.len);   /* intact again */
  ck_assert_int_eq(tchi_iwbuf_read(&t, &c), TCH_OK);
  tchi_iwbuf_free(c);
  tchi_writer_destroy(&w);
  tchi_iwbuf_free(b);
}
END_TEST

/* The k-th allocation fails, for every k: each call reports TCH_E_NOMEM and leaves the
 * buffer usable and unchanged. */
START_TEST(iwbuf_allocation_failure)
{
  double x[300], lr[300], li[300];
  for (int i = 0; i < 300; i++) {
    x[i] = i;
    lr[i] = 0;
    li[i] = i % 7;
  }
  for (uint64_t k = 1; k < 40; k++) {
    tchi_iwbuf_params p;
    tchi_iwbuf_params_default(&p, 1, 1000);
    tchi_iwbuf *b = NULL;
    tchi_alloc_fail_at(k);
    tch_status st = tchi_iwbuf_create(&p, &b);
    if (st == TCH_OK) {
      st = tchi_iwbuf_add(b, 200, x, lr, li, NULL, NULL);
      if (st != TCH_OK) ck_assert_uint_eq(b->n, 0);
    }
    if (st == TCH_OK) {
      const size_t n0 = b->n;
      st = tchi_iwbuf_add(b, 300, x, lr, li, NULL, NULL);   /* grows */
      if (st != TCH_OK) ck_assert_uint_eq(b->n, n0);
    }
    if (st == TCH_OK) {
      tchi_rng rng;
      tchi_rng_seed(&rng, 1, 1);
      double o[10];
      st = tchi_iwbuf_sample(b, &rng, 10, o, NULL, NULL, NULL);   /* index workspace */
    }
    tchi_alloc_fail_at(0);
    ck_assert_msg(st == TCH_OK || st == TCH_E_NOMEM, "k %llu: status %d",
                  (unsigned long long)k, (int)st);
    if (b) {   /* still usable */
      ck_assert_int_eq(tchi_iwbuf_add(b, 10, x, lr, li, NULL, NULL), TCH_OK);
      tchi_rng rng;
      tchi_rng_seed(&rng, 1, 1);
      double o[10];
      ck_assert_int_eq(tchi_iwbuf_sample(b, &rng, 10, o, NULL, NULL, NULL), TCH_OK);
    }
    tchi_iwbuf_free(b);
  }
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc");
  TCase *tc = tcase_create("smc");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, log_weight_utilities);
  tcase_add_test(tc, tempering_reaches_the_target_ess);
  tcase_add_test(tc, resamplers_are_unbiased);
  tcase_add_test(tc, systematic_counts_within_one);
  tcase_add_test(tc, resampler_conventions_and_errors);
  tcase_add_test(tc, partial_resampling);
  tcase_add_test(tc, running_log_z_is_unbiased);
  tcase_add_test(tc, iwbuf_fifo_and_validation);
  tcase_add_test(tc, iwbuf_sampling_frequencies);
  tcase_add_test(tc, iwbuf_serialisation);
  tcase_add_test(tc, iwbuf_file_round_trip_and_malformed_input);
  tcase_add_test(tc, iwbuf_allocation_failure);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
