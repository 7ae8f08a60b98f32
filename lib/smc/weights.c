/* Log-weight utilities of the SMC sampler and the IW buffer: normalised weights, the
 * effective sample size, the log Ẑ increment of one reweighting, and the adaptive weight
 * temperature (spec §4, §4.1). Every sum is max-shifted and accumulated in double. */
#include <math.h>
#include "smc/smc.h"

/* Scans lw once: *max = the largest entry, *n_finite = entries that are not -inf.
 * Returns 0, or -1 if an entry is NaN or +inf. */
static int scan_log_weights(size_t n, const double *lw, double *max, size_t *n_finite)
{
  double m = -INFINITY;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const double v = lw[i];
    if (isnan(v) || v == INFINITY) return -1;
    if (v == -INFINITY) continue;
    k++;
    if (v > m) m = v;
  }
  *max = m;
  *n_finite = k;
  return 0;
}

double tchi_smc_logsumexp(size_t n, const double *lw)
{
  return tchi_log_sum_exp(n, lw);
}

double tchi_smc_log_mean_exp(size_t n, const double *lw)
{
  if (n == 0) return NAN;
  return tchi_smc_logsumexp(n, lw) - log((double)n);
}

tch_status tchi_smc_normalised_weights(size_t n, const double *lw, double alpha, double *p,
                                       double *out_lse)
{
  if (n == 0 || !lw || !p) return tchi_fail(TCH_E_ARG, "normalised weights: empty or NULL input");
  if (!(alpha >= 0.0 && alpha <= 1.0))
    return tchi_fail(TCH_E_ARG, "normalised weights: alpha = %g is outside [0, 1]", alpha);
  double m;
  size_t k;
  if (scan_log_weights(n, lw, &m, &k) != 0)
    return tchi_fail(TCH_E_NUMERIC, "normalised weights: a log-weight is NaN or +inf");
  if (k == 0) return tchi_fail(TCH_E_NUMERIC, "normalised weights: every log-weight is -inf");
  double s = 0.0;
  for (size_t i = 0; i < n; i++) {
    /* Tested explicitly: alpha = 0 would turn 0 * (-inf) into NaN. */
    p[i] = lw[i] == -INFINITY ? 0.0 : exp(alpha * (lw[i] - m));
    s += p[i];
  }
  const double inv = 1.0 / s;   /* s >= 1: the largest entry contributes exactly 1 */
  for (size_t i = 0; i < n; i++) p[i] *= inv;
  if (out_lse) *out_lse = alpha * m + log(s);
  return TCH_OK;
}

double tchi_smc_log_normalise(size_t n, double *lw)
{
  const double lse = tchi_smc_logsumexp(n, lw);
  if (!isfinite(lse)) return lse;
  for (size_t i = 0; i < n; i++) lw[i] -= lse;
  return lse;
}

/* (Σ w)² / Σ w² of w_i = exp(alpha (lw_i - m)), given the scan's max m (finite). */
static double ess_shifted(size_t n, const double *lw, double alpha, double m)
{
  double s1 = 0.0, s2 = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (lw[i] == -INFINITY) continue;
    const double w = exp(alpha * (lw[i] - m));
    s1 += w;
    s2 += w * w;
  }
  return s1 * s1 / s2;   /* s2 >= 1 */
}

double tchi_smc_ess(size_t n, const double *lw, double alpha)
{
  double m;
  size_t k;
  if (scan_log_weights(n, lw, &m, &k) != 0 || isnan(alpha)) return NAN;
  if (k == 0) return 0.0;
  return ess_shifted(n, lw, alpha, m);
}

double tchi_smc_ess_normalised(size_t n, const double *lw, double alpha)
{
  if (n == 0) return 0.0;
  return tchi_smc_ess(n, lw, alpha) / (double)n;
}

double tchi_smc_reweight(size_t n, double *lw, const double *log_g)
{
  for (size_t i = 0; i < n; i++) lw[i] += log_g[i];
  return tchi_smc_logsumexp(n, lw);
}

void tchi_smc_output_log_weights(size_t n, const double *lw, double log_z, double *out)
{
  const double shift = log_z + log((double)n);
  for (size_t i = 0; i < n; i++) out[i] = lw[i] + shift;
}

/* ---- adaptive weight tempering ----------------------------------------------------------- */

/* Decades the bracket may grow by: alpha = 1/T goes down to 1e-330, below the smallest
 * double, so the loop always ends. */
#define TEMPER_MAX_DECADES 330
/* Bisection steps on log T: the bracket starts one decade wide (ln 10), so after 80 halvings
 * it is narrower than the spacing of doubles near any log T we can reach. */
#define TEMPER_MAX_BISECTIONS 80

tch_status tchi_smc_temperature(size_t n, const double *lw, double rho, double *out_temperature,
                                double *out_ess)
{
  if (n == 0 || !lw || !out_temperature)
    return tchi_fail(TCH_E_ARG, "weight tempering: empty or NULL input");
  if (isnan(rho) || rho > 1.0)
    return tchi_fail(TCH_E_ARG, "weight tempering: target ESS %g is not in [0, 1]", rho);
  double m;
  size_t k;
  if (scan_log_weights(n, lw, &m, &k) != 0)
    return tchi_fail(TCH_E_NUMERIC, "weight tempering: a log-weight is NaN or +inf");
  if (k == 0) return tchi_fail(TCH_E_NUMERIC, "weight tempering: every log-weight is -inf");
  const double dn = (double)n;
  const double ess1 = ess_shifted(n, lw, 1.0, m) / dn;
  if (ess1 >= rho) {   /* includes rho <= 0 */
    *out_temperature = 1.0;
    if (out_ess) *out_ess = ess1;
    return TCH_OK;
  }
  /* As T -> inf the weights become equal over the k non-zero entries: ESS_n -> k / n, the
   * supremum over T. If that does not reach rho, no finite T does. */
  const double ess_inf = (double)k / dn;
  if (ess_inf <= rho) {
    *out_temperature = INFINITY;
    if (out_ess) *out_ess = ess_inf;
    return TCH_OK;
  }
  const double tol = TCHI_SMC_TEMPER_RTOL * rho;
  /* Bracket [lo, hi] in log T with ESS_n(lo) < rho <= ESS_n(hi), grown by decades from the
   * reference's [1, 10]. */
  const double ln10 = 2.302585092994045684;
  double lo = 0.0, hi = ln10, ess_hi = ess_shifted(n, lw, exp(-hi), m) / dn;
  for (int d = 0; ess_hi < rho && d < TEMPER_MAX_DECADES; d++) {
    lo = hi;
    hi += ln10;
    ess_hi = ess_shifted(n, lw, exp(-hi), m) / dn;
  }
  if (ess_hi < rho) {   /* unreachable for finite weights (see TEMPER_MAX_DECADES) */
    *out_temperature = INFINITY;
    if (out_ess) *out_ess = ess_inf;
    return TCH_OK;
  }
  double best = hi, best_ess = ess_hi;
  for (int it = 0; it < TEMPER_MAX_BISECTIONS && fabs(best_ess - rho) > tol; it++) {
    const double mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;   /* the bracket cannot shrink any further */
    const double e = ess_shifted(n, lw, exp(-mid), m) / dn;
    if (fabs(e - rho) < fabs(best_ess - rho)) {
      best = mid;
      best_ess = e;
    }
    if (e > rho) hi = mid; else lo = mid;
  }
  *out_temperature = exp(best);
  if (out_ess) *out_ess = best_ess;
  return TCH_OK;
}
