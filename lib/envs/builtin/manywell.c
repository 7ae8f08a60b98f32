/* Built-in ManyWell (Adaptive Teacher, diffusion/energies/many_well.py) in 32-D, the
 * dimension the reference always uses (train.py never passes --dim): 16 independent
 * consecutive pairs (x_{2k}, x_{2k+1}) with
 *   log p(x) = sum_k [ -x_{2k}^4 + 6 x_{2k}^2 + 0.5 x_{2k} - 0.5 x_{2k+1}^2 ],
 * a double well in the even coordinate times a standard Gaussian in the odd one.
 * log Z = 16 (log Z_even + log(2 pi)/2) with the reference's Z_even = 11784.50927
 * (= 164.69567532, the constant train.py compares log Z estimates with).
 *
 * Exact sampler (the reference's sample_doublewell): x_{2k+1} ~ N(0, 1); x_{2k} by
 * rejection sampling from the proposal q = 0.2 N(-1.7, 0.5^2) + 0.8 N(1.7, 0.5^2) with the
 * envelope k q, k = 3 Z_even: z ~ q, u ~ U(0, k q(z)), accept if exp(f(z)) > u. The envelope
 * dominates exp(f) everywhere (max exp(f) / (k q) = 0.864), so the samples are exact; the
 * acceptance rate is 1/3. The reference draws proposals in blocks of 10 n and keeps the
 * first n accepted; drawing one proposal at a time until acceptance gives the same
 * distribution. */
#include <math.h>
#include <string.h>
#include "envs/env.h"

#define MW_DIM 32
#define MW_Z_EVEN 11784.50927               /* reference's integral of exp(f) over R */
#define MW_HALF_LOG_2PI 0.9189385332046727  /* log(2 pi) / 2 */
#define MW_ENVELOPE (3.0 * MW_Z_EVEN)
/* Proposal: weights, means and the common scale of the two normal components. */
#define MW_W_LEFT 0.2
#define MW_MEAN 1.7
#define MW_SCALE 0.5
#define MW_INV_SCALE_SQRT_2PI 0.7978845608028654   /* 1 / (0.5 sqrt(2 pi)) */

/* Unnormalised log density of the even (double-well) coordinate. */
static inline double mw_f(double v)
{
  const double v2 = v * v;
  return -v2 * v2 + 6.0 * v2 + 0.5 * v;
}

int tchi_manywell_log_density(void *user, size_t n, size_t dim, const double *x,
                              double *out_log_p, double *out_grad)
{
  (void)user;
  const size_t pairs = dim / 2;
  for (size_t i = 0; i < n; i++) {
    const double *xi = x + i * dim;
    double lp = 0.0;
    for (size_t k = 0; k < pairs; k++) {
      const double a = xi[2 * k], b = xi[2 * k + 1];
      lp += mw_f(a) - 0.5 * b * b;
    }
    out_log_p[i] = lp;
    if (out_grad) {
      double *gi = out_grad + i * dim;
      for (size_t k = 0; k < pairs; k++) {
        const double a = xi[2 * k], b = xi[2 * k + 1];
        gi[2 * k] = -4.0 * a * a * a + 12.0 * a + 0.5;
        gi[2 * k + 1] = -b;
      }
    }
  }
  return 0;
}

/* Proposal density q(z). */
static inline double mw_proposal_density(double z)
{
  const double tl = (z + MW_MEAN) / MW_SCALE, tr = (z - MW_MEAN) / MW_SCALE;
  return MW_INV_SCALE_SQRT_2PI *
         (MW_W_LEFT * exp(-0.5 * tl * tl) + (1.0 - MW_W_LEFT) * exp(-0.5 * tr * tr));
}

static double mw_sample_even(tchi_rng *rng)
{
  for (;;) {
    const double mean = tchi_rng_uniform(rng) < MW_W_LEFT ? -MW_MEAN : MW_MEAN;
    const double z = mean + MW_SCALE * tchi_rng_normal(rng);
    const double u = tchi_rng_uniform(rng) * MW_ENVELOPE * mw_proposal_density(z);
    if (exp(mw_f(z)) > u) return z;   /* exp(f) underflows to 0 far out: rejected */
  }
}

/* One Philox stream per pair (keyed by the seed), so each pair's columns do not depend on
 * how many other pairs there are. Rows in order; per row x_{2k} then x_{2k+1}. */
static tch_status manywell_sample(const tch_env *e, uint64_t seed, size_t n, double *out_x)
{
  const size_t dim = e->en.dim, pairs = dim / 2;
  for (size_t k = 0; k < pairs; k++) {
    tchi_rng rng;
    tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_EVAL, (uint64_t)k));
    for (size_t i = 0; i < n; i++) {
      out_x[i * dim + 2 * k] = mw_sample_even(&rng);
      out_x[i * dim + 2 * k + 1] = tchi_rng_normal(&rng);
    }
  }
  return TCH_OK;
}

tch_status tch_env_create_manywell(const tch_config *c, tch_env **out)
{
  if (out) *out = NULL;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_manywell: out is NULL");
  const double log_Z = (double)(MW_DIM / 2) * (log(MW_Z_EVEN) + MW_HALF_LOG_2PI);
  return tchi_env_create_builtin_energy(MW_DIM, tchi_manywell_log_density, log_Z, NULL,
                                        manywell_sample, c, out);
}
