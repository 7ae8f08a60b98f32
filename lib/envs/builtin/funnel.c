/* Built-in funnel (Neal's funnel as in Reinforced SMC, spec §9.1; references
 * nolerk/gfn-smc-jax targets/funnel.py, hyeok9855/gfn-smc-torch energies/funnel.py):
 *   x_1 ~ N(0, 3²),   x_i | x_1 ~ N(0, e^{x_1}) for i = 2..d,
 * normalised (log Z = 0); the paper uses d = 10.
 *
 * log p(x) = log N(x_1; 0, 9) + Σ_{i>=2} [ -log(2π)/2 - x_1/2 - x_i² e^{-x_1} / 2 ],
 * ∂/∂x_1 = -x_1/9 + Σ_{i>=2} (x_i² e^{-x_1} - 1)/2,   ∂/∂x_i = -x_i e^{-x_1}.
 * Where e^{-x_1} overflows (x_1 < -709) the products are formed in log space, so x_i = 0
 * stays exact and only a truly unrepresentable density becomes -inf (which the env's
 * checked wrapper reports).
 *
 * Exact sampler: x_1 = 3 z_1, x_i = e^{x_1/2} z_i, one Philox stream keyed by the seed,
 * row by row. Unlike the JAX reference's ground truth (clipped to [-30, 30]) the draws are
 * not clipped, as in the TORCH reference. */
#include <math.h>
#include "envs/env.h"

#define FUNNEL_SCALE 3.0
#define FUNNEL_MAX_DIM 100000u   /* = the bound of env.funnel.dim */
#define HALF_LOG_2PI 0.91893853320467274178

/* x² e^{-x1} and x e^{-x1}, exact where e^{-x1} is finite, in log space otherwise. */
static inline void scaled(double x, double x1, double inv_var, double *sq, double *lin)
{
  if (isfinite(inv_var)) {
    *lin = x * inv_var;
    *sq = x * *lin;
    return;
  }
  if (x == 0.0) {
    *sq = *lin = 0.0;
    return;
  }
  const double la = log(fabs(x)) - x1;
  *lin = copysign(exp(la), x);
  *sq = exp(la + log(fabs(x)));
}

int tchi_funnel_log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                            double *out_grad)
{
  (void)user;
  const double log_norm1 = -HALF_LOG_2PI - log(FUNNEL_SCALE);
  const double inv_s2 = 1.0 / (FUNNEL_SCALE * FUNNEL_SCALE);
  for (size_t i = 0; i < n; i++) {
    const double *xi = x + i * dim;
    const double x1 = xi[0], inv_var = exp(-x1);
    double quad = 0.0, g1 = -x1 * inv_s2;
    for (size_t j = 1; j < dim; j++) {
      double sq, lin;
      scaled(xi[j], x1, inv_var, &sq, &lin);
      quad += sq;
      if (out_grad) out_grad[i * dim + j] = -lin;
    }
    const double others = (double)(dim - 1);
    out_log_p[i] = log_norm1 - 0.5 * x1 * x1 * inv_s2 +
                   others * (-HALF_LOG_2PI - 0.5 * x1) - 0.5 * quad;
    if (out_grad) out_grad[i * dim] = g1 + 0.5 * (quad - others);
  }
  return 0;
}

static tch_status funnel_sample(const tch_env *e, uint64_t seed, size_t n, double *out_x)
{
  const size_t dim = e->en.dim;
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_EVAL, 0));
  for (size_t i = 0; i < n; i++) {
    double *xi = out_x + i * dim;
    xi[0] = FUNNEL_SCALE * tchi_rng_normal(&rng);
    const double sd = exp(0.5 * xi[0]);
    for (size_t j = 1; j < dim; j++) xi[j] = sd * tchi_rng_normal(&rng);
  }
  return TCH_OK;
}

tch_status tch_env_create_funnel(uint32_t dim, const tch_config *c, tch_env **out)
{
  if (out) *out = NULL;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_funnel: out is NULL");
  if (dim < 2 || dim > FUNNEL_MAX_DIM)
    return tchi_fail(TCH_E_ARG, "tch_env_create_funnel: dim = %u is outside [2, %u]",
                     (unsigned)dim, (unsigned)FUNNEL_MAX_DIM);
  /* normalised: log Z = 0 */
  return tchi_env_create_builtin_energy(dim, tchi_funnel_log_density, 0.0, NULL, funnel_sample,
                                        c, out);
}
