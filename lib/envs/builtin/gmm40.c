/* Built-in 40-component Gaussian mixture of Reinforced SMC (spec §9.1, §9.4; references
 * nolerk/gfn-smc-jax targets/gmm40.py, hyeok9855/gfn-smc-torch energies/gmm40.py):
 *   p(x) = (1/40) Σ_m N(x; μ_m, I),   log Z = 0,
 * equal weights and unit scales in every dimension.
 *
 * Means: in 2-D the reference's file energies/data/gmm40-2d_locs.npy (float32 in [-1, 1])
 * times 40 in float32, exactly the values the TORCH reference evaluates (§9.4 lists them
 * rounded). In any other dimension the reference draws U[-1, 1)^d x 40 from JAX's PRNG,
 * which C cannot reproduce; here the means are 40 (2u - 1) with u drawn row-major
 * (component-major) by tchi_rng_uniform from the Philox stream keyed by GMM40_MEANS_SEED,
 * stream tchi_stream_id(TCHI_STREAM_INIT, GMM40_MEANS_STREAM): fixed, seed-independent.
 *
 * log p(x) = logsumexp_m(-|x - μ_m|² / 2) - log 40 - (d/2) log 2π, and
 * ∇ log p(x) = Σ_m r_m(x) (μ_m - x) with r the responsibilities (softmax of the terms). */
#include <math.h>
#include <string.h>
#include "envs/env.h"

#define GMM40_NCOMP TCHI_GMM40_NCOMP
#define GMM40_LOC_SCALE 40.0
#define GMM40_MEANS_SEED 0u
#define GMM40_MEANS_STREAM 40u
#define GMM40_MAX_DIM 100000u   /* = the bound of env.gmm40.dim */
#define HALF_LOG_2PI 0.91893853320467274178

/* The TORCH reference's float32 means (file values x 40 in float32), component-major. */
static const float gmm40_means_2d[GMM40_NCOMP][2] = {
  {-0.299472809f, 21.4577446f},  {-32.9218063f, -29.437561f},  {-15.4061747f, 10.7262945f},
  {-0.792527199f, 31.71558f},    {-3.54976177f, 10.5845022f},  {-12.0885229f, -7.86261559f},
  {-38.2139397f, -26.4912834f},  {-16.488924f, 1.48174286f},   {15.8134079f, 24.0009117f},
  {-27.1176434f, -17.4185143f},  {14.5286846f, 33.215519f},    {-8.23200703f, 29.9324703f},
  {-6.44733429f, 4.23256397f},   {36.2190475f, -37.1068153f},  {-25.1815186f, -10.1266098f},
  {-15.5919981f, 34.5600319f},   {-25.9271851f, -18.4133148f}, {-27.9456177f, -37.4624405f},
  {-23.3496189f, 34.3839226f},   {17.8487358f, 19.3869019f},   {2.10366249f, -20.5073395f},
  {6.76738739f, -37.3477898f},   {-28.9026489f, -20.6212006f}, {25.2375183f, 23.4528503f},
  {-17.7398014f, -1.44329548f},  {25.582428f, 39.7653236f},    {15.8752871f, 5.40371418f},
  {26.8194542f, -23.5520935f},   {7.4537611f, -31.0122204f},   {-27.7234459f, -20.6633415f},
  {18.0989227f, 16.0864162f},    {-23.6940994f, 12.0842838f},  {21.9588814f, -5.04869461f},
  {1.52726173f, 9.26818848f},    {24.8150635f, 38.4077644f},   {-30.8249435f, -14.6587896f},
  {15.720396f, 33.1419754f},     {34.8082924f, 35.2942696f},   {7.96058178f, -34.7833061f},
  {3.6796999f, -25.0242138f},
};

/* The env's own data: d.user of the log density and e->builtin. */
typedef struct gmm40 {
  uint32_t dim;
  double log_norm;   /* -log 40 - (d/2) log 2π */
  double means[];    /* GMM40_NCOMP x dim */
} gmm40;

/* Per-component log terms -|x - μ_m|² / 2 into e[]; returns their maximum. */
static inline double gmm40_terms(const gmm40 *g, const double *x, double *e)
{
  const uint32_t d = g->dim;
  double m = -INFINITY;
  for (int c = 0; c < GMM40_NCOMP; c++) {
    const double *mu = g->means + (size_t)c * d;
    double s = 0.0;
    for (uint32_t j = 0; j < d; j++) {
      const double t = x[j] - mu[j];
      s += t * t;
    }
    e[c] = -0.5 * s;
    if (e[c] > m) m = e[c];
  }
  return m;
}

int tchi_gmm40_log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                           double *out_grad)
{
  const gmm40 *g = user;
  (void)dim;   /* = g->dim: the descriptor fixes it */
  const uint32_t d = g->dim;
  double e[GMM40_NCOMP];
  for (size_t i = 0; i < n; i++) {
    const double *xi = x + i * d;
    const double m = gmm40_terms(g, xi, e);
    double s = 0.0;
    for (int c = 0; c < GMM40_NCOMP; c++) {
      e[c] = exp(e[c] - m);   /* the largest is exactly 1, so s >= 1 */
      s += e[c];
    }
    out_log_p[i] = m + log(s) + g->log_norm;
    if (out_grad) {
      double *gi = out_grad + i * d;
      const double inv = 1.0 / s;
      for (uint32_t j = 0; j < d; j++) gi[j] = -xi[j];   /* Σ r = 1 */
      for (int c = 0; c < GMM40_NCOMP; c++) {
        const double r = e[c] * inv;
        if (r == 0.0) continue;
        const double *mu = g->means + (size_t)c * d;
        for (uint32_t j = 0; j < d; j++) gi[j] += r * mu[j];
      }
    }
  }
  return 0;
}

/* n i.i.d. draws: component uniform (tchi_rng_below), then μ + N(0, I); one Philox stream
 * keyed by the seed, row by row. */
static tch_status gmm40_sample(const tch_env *e, uint64_t seed, size_t n, double *out_x)
{
  const gmm40 *g = e->builtin;
  const uint32_t d = g->dim;
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_EVAL, 0));
  for (size_t i = 0; i < n; i++) {
    const double *mu = g->means + (size_t)tchi_rng_below(&rng, GMM40_NCOMP) * d;
    for (uint32_t j = 0; j < d; j++) out_x[i * d + j] = mu[j] + tchi_rng_normal(&rng);
  }
  return TCH_OK;
}

const double *tchi_gmm40_means(const tch_env *e, uint32_t *n_components)
{
  if (!e || e->kind != TCHI_ENV_ENERGY || e->en.log_density != tchi_gmm40_log_density)
    return NULL;
  if (n_components) *n_components = GMM40_NCOMP;
  return ((const gmm40 *)e->builtin)->means;
}

tch_status tchi_gmm40_mode_counts(const tch_env *e, size_t n, const double *x, size_t *counts,
                                  size_t *out_covered)
{
  const double *means = tchi_gmm40_means(e, NULL);
  if (!means) return tchi_fail(TCH_E_ARG, "GMM40 mode counts: the env is not a GMM40");
  if ((n > 0 && !x) || !counts) return tchi_fail(TCH_E_ARG, "GMM40 mode counts: NULL argument");
  const gmm40 *g = e->builtin;
  double t[GMM40_NCOMP];
  memset(counts, 0, GMM40_NCOMP * sizeof *counts);
  for (size_t i = 0; i < n; i++) {
    (void)gmm40_terms(g, x + i * g->dim, t);
    int best = 0;   /* first maximum, as argmax */
    for (int c = 1; c < GMM40_NCOMP; c++)
      if (t[c] > t[best]) best = c;
    counts[best]++;
  }
  if (out_covered) {
    size_t k = 0;
    for (int c = 0; c < GMM40_NCOMP; c++) k += counts[c] > 0;
    *out_covered = k;
  }
  return TCH_OK;
}

double tchi_mode_entropy(size_t k, const size_t *counts)
{
  size_t total = 0;
  for (size_t c = 0; c < k; c++) total += counts[c];
  if (total == 0 || k < 2) return NAN;
  double h = 0.0;
  for (size_t c = 0; c < k; c++)
    if (counts[c] > 0) {
      const double f = (double)counts[c] / (double)total;
      h -= f * log(f);
    }
  return h / log((double)k);
}

tch_status tch_env_create_gmm40(uint32_t dim, const tch_config *c, tch_env **out)
{
  if (out) *out = NULL;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_gmm40: out is NULL");
  if (dim < 1 || dim > GMM40_MAX_DIM)
    return tchi_fail(TCH_E_ARG, "tch_env_create_gmm40: dim = %u is outside [1, %u]",
                     (unsigned)dim, (unsigned)GMM40_MAX_DIM);
  const size_t n_means = (size_t)GMM40_NCOMP * dim;
  gmm40 *g = tchi_malloc(sizeof *g + n_means * sizeof(double));
  if (!g) return tchi_fail(TCH_E_NOMEM, "out of memory allocating the GMM40 means");
  g->dim = dim;
  g->log_norm = -log((double)GMM40_NCOMP) - (double)dim * HALF_LOG_2PI;
  if (dim == 2) {
    for (int k = 0; k < GMM40_NCOMP; k++) {
      g->means[2 * k] = (double)gmm40_means_2d[k][0];
      g->means[2 * k + 1] = (double)gmm40_means_2d[k][1];
    }
  } else {
    tchi_rng rng;
    tchi_rng_seed(&rng, GMM40_MEANS_SEED, tchi_stream_id(TCHI_STREAM_INIT, GMM40_MEANS_STREAM));
    for (size_t k = 0; k < n_means; k++)
      g->means[k] = GMM40_LOC_SCALE * (2.0 * tchi_rng_uniform(&rng) - 1.0);
  }
  /* the mixture is normalised (log Z = 0); g is freed through builtin_free, not user_free */
  tch_status st = tchi_env_create_builtin_energy(dim, tchi_gmm40_log_density, 0.0, g,
                                                 gmm40_sample, c, out);
  if (st != TCH_OK) {
    tchi_free(g);
    return st;
  }
  (*out)->builtin = g;
  (*out)->builtin_free = tchi_free;
  return TCH_OK;
}
