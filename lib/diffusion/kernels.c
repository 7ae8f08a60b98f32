/* Gaussian transition kernels of the discretised diffusion (gfn.py get_trajectory_fwd and
 * get_trajectory_bwd), in double precision. */
#include <math.h>
#include "diffusion/diffusion.h"

double tchi_dkernel_log_pf(uint32_t dim, double dt, const double *s0, const double *s1,
                           const double *mean, const double *logvar)
{
  double sq_dt = sqrt(dt), log_dt = log(dt), acc = 0.0;
  for (uint32_t d = 0; d < dim; d++) {
    double noise = ((s1[d] - s0[d]) - dt * mean[d]) / (sq_dt * exp(0.5 * logvar[d]));
    acc += noise * noise + TCHI_LOG_2PI + log_dt + logvar[d];
  }
  return -0.5 * acc;
}

/* d/d mean = noise sqrt(dt) / sigma, d/d logvar = (noise^2 - 1) / 2. */
double tchi_dkernel_log_pf_grad(uint32_t dim, double dt, const double *s0, const double *s1,
                                const double *mean, const double *logvar, double coef,
                                double *d_mean, double *d_logvar)
{
  double sq_dt = sqrt(dt), log_dt = log(dt), acc = 0.0;
  for (uint32_t d = 0; d < dim; d++) {
    double sigma = exp(0.5 * logvar[d]);
    double noise = ((s1[d] - s0[d]) - dt * mean[d]) / (sq_dt * sigma);
    acc += noise * noise + TCHI_LOG_2PI + log_dt + logvar[d];
    d_mean[d] += coef * noise * sq_dt / sigma;
    d_logvar[d] += coef * 0.5 * (noise * noise - 1.0);
  }
  return -0.5 * acc;
}

/* The reference writes the mean as s' - dt s' / t_{i+1} = s' (1 - 1/(i+1)). */
void tchi_dbridge(uint32_t i, double dt, double t_scale, double *factor, double *var)
{
  *factor = 1.0 - 1.0 / ((double)i + 1.0);
  *var = t_scale * dt * (double)i / ((double)i + 1.0);
}

double tchi_dkernel_log_pb(uint32_t dim, uint32_t i, double dt, double t_scale,
                           const double *s_i, const double *s_next)
{
  if (i == 0) return 0.0;
  double factor, var;
  tchi_dbridge(i, dt, t_scale, &factor, &var);
  double log_var = log(var), acc = 0.0;
  for (uint32_t d = 0; d < dim; d++) {
    double e = s_i[d] - factor * s_next[d];
    acc += e * e / var + TCHI_LOG_2PI + log_var;
  }
  return -0.5 * acc;
}
