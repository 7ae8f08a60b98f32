/* Built-in 25-component Gaussian mixture in 2-D (Adaptive Teacher,
 * diffusion/energies/twenty_five_gmm.py): equal weights 1/25, means (a, b) for
 * a, b in {-10, -5, 0, 5, 10}, covariance 0.3 I. The density is normalised: log Z = 0.
 *
 * Because the means form a product grid with equal weights and the covariance is
 * isotropic, the mixture factorises over the two coordinates:
 *   p(x) = prod_j (1/5) sum_a N(x_j; a, 0.3),
 * so the log density is a sum of two 1-D log-sum-exps over 5 terms (10 exponentials per
 * point instead of 25) and the gradient is, per coordinate, the responsibility-weighted
 * mean of (a - x_j) / 0.3. This is the same function as the reference's 25-term
 * logsumexp, evaluated more cheaply and stably (each log-sum-exp subtracts its maximum). */
#include <math.h>
#include <string.h>
#include "envs/env.h"

#define GMM_DIM 2
#define GMM_SIDE 5        /* means per coordinate */
#define GMM_NCOMP 25
#define GMM_VAR 0.3
/* log(1/5) + log of N's normaliser (2 pi 0.3)^(-1/2), per coordinate. */
#define GMM_AXIS_LOG_NORM (-1.926390043475805)

static const double gmm_means[GMM_SIDE] = {-10.0, -5.0, 0.0, 5.0, 10.0};

/* 1-D log of (1/5) sum_a N(v; a, 0.3); *dlog = its derivative in v. */
static inline double gmm_axis(double v, double *dlog)
{
  const double inv2var = 1.0 / (2.0 * GMM_VAR);
  double e[GMM_SIDE], m = -INFINITY;
  for (int a = 0; a < GMM_SIDE; a++) {
    const double d = v - gmm_means[a];
    e[a] = -d * d * inv2var;
    if (e[a] > m) m = e[a];
  }
  double s = 0.0, sd = 0.0;
  for (int a = 0; a < GMM_SIDE; a++) {
    const double w = exp(e[a] - m);   /* the largest term is exactly 1 */
    s += w;
    sd += w * (gmm_means[a] - v);
  }
  *dlog = sd / (s * GMM_VAR);
  return m + log(s) + GMM_AXIS_LOG_NORM;
}

int tchi_gmm25_log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                           double *out_grad)
{
  (void)user;
  (void)dim;   /* always GMM_DIM: the env's descriptor fixes it */
  for (size_t i = 0; i < n; i++) {
    const double *xi = x + i * GMM_DIM;
    double g0, g1;
    out_log_p[i] = gmm_axis(xi[0], &g0) + gmm_axis(xi[1], &g1);
    if (out_grad) {
      out_grad[i * GMM_DIM] = g0;
      out_grad[i * GMM_DIM + 1] = g1;
    }
  }
  return 0;
}

/* Exact samples, following the reference's layout: n div 25 draws from each component,
 * concatenated in component order, a-major (component k has mean (a_{k div 5}, b_{k mod 5})).
 * The reference returns only 25 (n div 25) rows; the n mod 25 remaining rows come here from
 * as many distinct components, chosen uniformly at random (a partial Fisher-Yates shuffle),
 * so every component contributes n div 25 or n div 25 + 1 rows and each row is still a
 * draw from the mixture. One Philox stream keyed by the seed. */
static tch_status gmm25_sample(const tch_env *e, uint64_t seed, size_t n, double *out_x)
{
  (void)e;
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_EVAL, 0));
  const double sd = sqrt(GMM_VAR);
  const size_t per = n / GMM_NCOMP, rest = n % GMM_NCOMP;
  uint32_t comp[GMM_NCOMP];
  for (uint32_t k = 0; k < GMM_NCOMP; k++) comp[k] = k;
  for (size_t r = 0; r < rest; r++) {   /* comp[0..rest) becomes a random subset */
    const uint32_t j = (uint32_t)r + tchi_rng_below(&rng, (uint32_t)(GMM_NCOMP - r));
    const uint32_t t = comp[r];
    comp[r] = comp[j];
    comp[j] = t;
  }
  size_t row = 0;
  for (size_t k = 0; k < GMM_NCOMP + rest; k++) {
    const uint32_t c = k < GMM_NCOMP ? (uint32_t)k : comp[k - GMM_NCOMP];
    const size_t count = k < GMM_NCOMP ? per : 1;
    const double mu0 = gmm_means[c / GMM_SIDE], mu1 = gmm_means[c % GMM_SIDE];
    for (size_t j = 0; j < count; j++, row++) {
      out_x[row * GMM_DIM] = mu0 + sd * tchi_rng_normal(&rng);
      out_x[row * GMM_DIM + 1] = mu1 + sd * tchi_rng_normal(&rng);
    }
  }
  return TCH_OK;
}

tch_status tch_env_create_gmm25(const tch_config *c, tch_env **out)
{
  if (out) *out = NULL;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_gmm25: out is NULL");
  /* the mixture is normalised: log Z = 0 */
  return tchi_env_create_builtin_energy(GMM_DIM, tchi_gmm25_log_density, 0.0, NULL, gmm25_sample,
                                        c, out);
}
