/* Resamplers (systematic, stratified, multinomial), the adaptive partial resampling of the
 * SMC sampler and its resampling rule (spec §4 step 2.4, §4.2).
 *
 * All three resamplers reduce to one merge: m ascending positions in (0, total) walked
 * against the running sum of the weights, which is O(n + m) and needs no memory. */
#include <math.h>
#include <string.h>
#include "smc/smc.h"

static const char *const resampler_names[TCHI_RESAMPLER_COUNT] = {
  "systematic", "stratified", "multinomial"
};

const char *tchi_resampler_name(tchi_resampler r)
{
  return (unsigned)r < TCHI_RESAMPLER_COUNT ? resampler_names[r] : NULL;
}

tch_status tchi_resampler_from_name(const char *name, tchi_resampler *out)
{
  for (unsigned i = 0; name && i < TCHI_RESAMPLER_COUNT; i++)
    if (strcmp(name, resampler_names[i]) == 0) {
      *out = (tchi_resampler)i;
      return TCH_OK;
    }
  return tchi_fail(TCH_E_ARG, "unknown resampler '%s' (systematic, stratified or multinomial)",
                   name ? name : "(null)");
}

/* Position k of m, scaled to the weights' total: u = (k + U) / m * total. */
static inline double position(size_t k, double u, size_t m, double total)
{
  return ((double)k + u) / (double)m * total;
}

/* Exponential variate for the spacings of sorted uniforms (never 0, never inf). */
static inline double exp_draw(tchi_rng *rng) { return -log(tchi_rng_uniform_pos(rng)); }

tch_status tchi_resample(tchi_resampler kind, size_t n, const double *w, size_t m,
                         tchi_rng *rng, uint32_t *out)
{
  if (!w || !rng || (m > 0 && !out)) return tchi_fail(TCH_E_ARG, "resample: NULL argument");
  if ((unsigned)kind >= TCHI_RESAMPLER_COUNT)
    return tchi_fail(TCH_E_ARG, "resample: unknown resampler %d", (int)kind);
  if (n == 0) return tchi_fail(TCH_E_ARG, "resample: no weights");
  if (n > UINT32_MAX || m > UINT32_MAX)
    return tchi_fail(TCH_E_ARG, "resample: %zu weights / %zu draws exceed 32-bit indices", n, m);
  double total = 0.0;
  size_t last = 0;   /* last index with a positive weight */
  for (size_t i = 0; i < n; i++) {
    if (!(w[i] >= 0.0) || w[i] == INFINITY)
      return tchi_fail(TCH_E_NUMERIC, "resample: weight %zu is %g", i, w[i]);
    if (w[i] > 0.0) last = i;
    total += w[i];
  }
  if (!(total > 0.0) || total == INFINITY)
    return tchi_fail(TCH_E_NUMERIC, "resample: the weights sum to %g", total);
  if (m == 0) return TCH_OK;

  /* Multinomial: the sorted uniforms are S_k / S_m with S_k the partial sums of m + 1
   * exponentials. The first pass sums them on a copy of the generator; the second draws
   * the same variates again, and the generator ends where the first pass left it. */
  tchi_rng replay = *rng;
  double spacing_scale = 0.0, spacing_sum = 0.0, u_sys = 0.0;
  if (kind == TCHI_RESAMPLER_MULTINOMIAL) {
    double s = 0.0;
    for (size_t k = 0; k <= m; k++) s += exp_draw(rng);
    spacing_scale = total / s;
  } else if (kind == TCHI_RESAMPLER_SYSTEMATIC) {
    u_sys = tchi_rng_uniform_pos(rng);
  }

  size_t i = 0;
  double cum = w[0];
  for (size_t k = 0; k < m; k++) {
    double u;
    switch (kind) {
    case TCHI_RESAMPLER_SYSTEMATIC: u = position(k, u_sys, m, total); break;
    case TCHI_RESAMPLER_STRATIFIED: u = position(k, tchi_rng_uniform_pos(rng), m, total); break;
    default:
      spacing_sum += exp_draw(&replay);
      u = spacing_sum * spacing_scale;
      break;
    }
    /* smallest i with cum_i >= u; a zero weight never satisfies it first, since u > 0 */
    while (cum < u && i < last) cum += w[++i];
    out[k] = (uint32_t)i;
  }
  return TCH_OK;
}

tch_status tchi_smc_resample_tempered(tchi_resampler kind, size_t n, double *lw, double rho,
                                      tchi_rng *rng, uint32_t *ancestors, double *scratch,
                                      tchi_smc_resample_info *info)
{
  if (!lw || !rng || !ancestors || !scratch)
    return tchi_fail(TCH_E_ARG, "partial resampling: NULL argument");
  double temperature, ess_t;
  tch_status st = tchi_smc_temperature(n, lw, rho, &temperature, &ess_t);
  if (st != TCH_OK) return st;
  const double alpha = 1.0 / temperature;   /* 0 for T* = +inf */
  if ((st = tchi_smc_normalised_weights(n, lw, alpha, scratch, NULL)) != TCH_OK) return st;
  if ((st = tchi_resample(kind, n, scratch, n, rng, ancestors)) != TCH_OK) return st;

  if (info) {
    info->temperature = temperature;
    info->ess_before = tchi_smc_ess_normalised(n, lw, 1.0);
    info->ess_tempered = ess_t;
    info->log_correction = 0.0;
    if (alpha < 1.0) {
      /* log S = log Σ_j W_j^alpha and the carried log Σ_i W_{A_i}^{1-alpha}, W = softmax(lw). */
      const double lse = tchi_smc_logsumexp(n, lw);
      double lse_alpha;
      if ((st = tchi_smc_normalised_weights(n, lw, alpha, scratch, &lse_alpha)) != TCH_OK)
        return st;
      const double log_s = lse_alpha - alpha * lse;
      for (size_t i = 0; i < n; i++) scratch[i] = (1.0 - alpha) * (lw[ancestors[i]] - lse);
      info->log_correction = log_s - log((double)n) + tchi_smc_logsumexp(n, scratch);
    }
  }
  /* The ancestors' log-weights are finite (a zero weight is never drawn), so the carry is
   * finite; with alpha = 1 it is exactly 0. */
  for (size_t i = 0; i < n; i++) scratch[i] = (1.0 - alpha) * lw[ancestors[i]];
  memcpy(lw, scratch, n * sizeof *lw);
  return TCH_OK;
}

void tchi_smc_gather(size_t n, size_t row_bytes, const uint32_t *anc, const void *src,
                     void *dst)
{
  const unsigned char *s = src;
  unsigned char *d = dst;
  for (size_t i = 0; i < n; i++) memcpy(d + i * row_bytes, s + (size_t)anc[i] * row_bytes, row_bytes);
}

int tchi_smc_should_resample(double ess_normalised, double threshold, double target_ess,
                             uint32_t chunk, uint32_t n_chunks)
{
  return target_ess < 1.0 && (uint64_t)chunk + 1 < (uint64_t)n_chunks &&
         ess_normalised < threshold;
}
