/* Reference processes of the diffusion sampler, one step at a time: the OU-DDS process of
 * Reinforced SMC (spec reinforced-smc.md §2.1) beside the pinned Brownian motion of
 * kernels.c, behind one per-step description (tchi_dstep) so that samplers need not know
 * which reference a net uses.
 *
 * References (read, not copied): nolerk/gfn-smc-jax algorithms/dds/dds_rnd.py
 * (cos_sq_fn_step_scheme), algorithms/gfn_subtb/gfn_subtb_rnd.py (per_sample_rnd_ou_dds,
 * get_flow_bias, ref_log_prob_pinned_brownian), algorithms/gfn_tb/gfn_tb_rnd.py
 * (sample_kernel, log_prob_kernel); hyeok9855/gfn-smc-torch models/gfn.py (forward_step,
 * backward_step with reference_process "ou").
 *
 * Differences from the references, on purpose: the schedule is computed in double (the
 * references use float32); the proposal noise is not clipped to +-4 (JAX clips it but
 * scores the unclipped density; TORCH does not clip). */
#include <math.h>
#include <string.h>
#include "diffusion/diffusion.h"

static const char *const dref_names[TCHI_DREF_COUNT] = {"brownian", "ou_dds"};

const char *tchi_dref_name(int reference)
{
  return reference >= 0 && reference < TCHI_DREF_COUNT ? dref_names[reference] : NULL;
}

tch_status tchi_dref_from_name(const char *name, int *out)
{
  if (!name || !out) return tchi_fail(TCH_E_ARG, "reference process: NULL argument");
  for (int i = 0; i < TCHI_DREF_COUNT; i++)
    if (strcmp(name, dref_names[i]) == 0) {
      *out = i;
      return TCH_OK;
    }
  return tchi_fail(TCH_E_ARG, "reference process '%s' is unknown (choices: brownian, ou_dds)", name);
}

void tchi_dnet_spec_set_ou_dds(tchi_dnet_spec *s, double init_std)
{
  s->reference = TCHI_DREF_OU_DDS;
  s->init_std = init_std;
  s->noise_scale = TCHI_OU_DDS_NOISE_SCALE;
}

tch_status tchi_dref_check_spec(const tchi_dnet_spec *s)
{
  if (s->reference == TCHI_DREF_BROWNIAN) return TCH_OK;
  if (s->reference != TCHI_DREF_OU_DDS)
    return tchi_fail(TCH_E_ARG, "diffusion net: unknown reference process %d", s->reference);
  if (!isfinite(s->init_std) || !(s->init_std > 0))
    return tchi_fail(TCH_E_ARG, "diffusion net: OU-DDS init_std must be finite and > 0");
  if (!isfinite(s->noise_scale) || !(s->noise_scale > 0))
    return tchi_fail(TCH_E_ARG, "diffusion net: OU-DDS noise_scale must be finite and > 0");
  return TCH_OK;
}

/* ---- the cosine-squared step schedule ----------------------------------------------------- */
static double cos4_phase(uint32_t T, uint32_t k)
{
  double phase = (((double)k / (double)T + TCHI_OU_DDS_SHIFT) / (1.0 + TCHI_OU_DDS_SHIFT)) * M_PI * 0.5;
  double c = cos(phase);
  return (c * c) * (c * c);
}

double tchi_ou_dds_step(uint32_t T, double noise_scale, uint32_t k)
{
  double sum = 0.0;
  for (uint32_t j = 0; j <= T; j++) sum += cos4_phase(T, j);
  return noise_scale * cos4_phase(T, k) / sum;
}

/* ---- one step ------------------------------------------------------------------------------- */
void tchi_dstep_at(const tchi_dnet_spec *s, uint32_t k, tchi_dstep *out)
{
  memset(out, 0, sizeof *out);
  out->reference = s->reference;
  out->k = k;
  out->dt = 1.0 / s->T;
  out->t_scale = s->t_scale;
  out->log_t_scale = log(s->t_scale);
  if (s->reference == TCHI_DREF_OU_DDS) {
    double a = tchi_ou_dds_step(s->T, s->noise_scale, k);
    /* the reference clips sqrt(a) to [0, 1]; the mean uses the clipped value squared */
    a = a < 0.0 ? 0.0 : a > 1.0 ? 1.0 : a;
    out->a = a;
    out->shrink = sqrt(1.0 - a);
    out->var = a * s->init_std * s->init_std;
    out->log_var = log(out->var);
  }
}

/* OU forward kernel of one coordinate: mean and log variance. */
static inline void ou_fwd(const tchi_dstep *st, double x0, double u, const double *logvar,
                          uint32_t d, double *mu, double *lv)
{
  *mu = st->shrink * x0 + st->a * u;
  *lv = st->log_var + (logvar ? logvar[d] - st->log_t_scale : 0.0);
}

double tchi_dstep_log_pf(const tchi_dstep *st, uint32_t dim, const double *s0, const double *s1,
                         const double *mean, const double *logvar)
{
  if (st->reference != TCHI_DREF_OU_DDS)
    return tchi_dkernel_log_pf(dim, st->dt, s0, s1, mean, logvar);
  double acc = 0.0;
  for (uint32_t d = 0; d < dim; d++) {
    double mu, lv;
    ou_fwd(st, s0[d], mean[d], logvar, d, &mu, &lv);
    double e = s1[d] - mu;
    acc += e * e * exp(-lv) + TCHI_LOG_2PI + lv;
  }
  return -0.5 * acc;
}

/* OU: d/du = a (s1 - mu) / var, d/d logvar = ((s1 - mu)^2 / var - 1) / 2. */
double tchi_dstep_log_pf_grad(const tchi_dstep *st, uint32_t dim, const double *s0,
                              const double *s1, const double *mean, const double *logvar,
                              double coef, double *d_mean, double *d_logvar)
{
  if (st->reference != TCHI_DREF_OU_DDS)
    return tchi_dkernel_log_pf_grad(dim, st->dt, s0, s1, mean, logvar, coef, d_mean, d_logvar);
  double acc = 0.0;
  for (uint32_t d = 0; d < dim; d++) {
    double mu, lv;
    ou_fwd(st, s0[d], mean[d], logvar, d, &mu, &lv);
    double e = s1[d] - mu, iv = exp(-lv), z2 = e * e * iv;
    acc += z2 + TCHI_LOG_2PI + lv;
    d_mean[d] += coef * st->a * e * iv;
    d_logvar[d] += coef * 0.5 * (z2 - 1.0);
  }
  return -0.5 * acc;
}

double tchi_dstep_log_pb(const tchi_dstep *st, uint32_t dim, const double *s_k,
                         const double *s_next)
{
  if (st->reference != TCHI_DREF_OU_DDS)
    return tchi_dkernel_log_pb(dim, st->k, st->dt, st->t_scale, s_k, s_next);
  double acc = 0.0, iv = 1.0 / st->var;
  for (uint32_t d = 0; d < dim; d++) {
    double e = s_k[d] - st->shrink * s_next[d];
    acc += e * e * iv;
  }
  return -0.5 * (acc + (double)dim * (TCHI_LOG_2PI + st->log_var));
}

double tchi_dstep_sample(const tchi_dstep *st, uint32_t dim, const double *s0,
                         const double *mean, const double *logvar, double expl_std,
                         tchi_rng *rng, double *s1)
{
  if (st->reference != TCHI_DREF_OU_DDS) {
    /* the arithmetic of tchi_dsample_forward, so both give the same states for one stream */
    double sq_dt = sqrt(st->dt);
    double add_lv = expl_std > 0 ? 2.0 * log(expl_std / sq_dt) : 0.0;
    for (uint32_t d = 0; d < dim; d++) {
      double lv = logvar[d];
      if (expl_std > 0) {
        double hi = lv > add_lv ? lv : add_lv, lo = lv > add_lv ? add_lv : lv;
        lv = hi + log1p(exp(lo - hi));
      }
      s1[d] = s0[d] + st->dt * mean[d] + sq_dt * exp(0.5 * lv) * tchi_rng_normal(rng);
    }
    return tchi_dkernel_log_pf(dim, st->dt, s0, s1, mean, logvar);
  }
  double ex2 = expl_std > 0 ? expl_std * expl_std : 0.0;
  for (uint32_t d = 0; d < dim; d++) {
    double mu, lv;
    ou_fwd(st, s0[d], mean[d], logvar, d, &mu, &lv);
    double sd = ex2 > 0 ? sqrt(exp(lv) + ex2) : exp(0.5 * lv);
    s1[d] = mu + sd * tchi_rng_normal(rng);
  }
  return tchi_dstep_log_pf(st, dim, s0, s1, mean, logvar);
}

/* ---- initial and marginal densities --------------------------------------------------------- */
/* log N(x; 0, var I) over dim coordinates. */
static double log_normal0(uint32_t dim, double var, const double *x)
{
  double sq = 0.0;
  for (uint32_t d = 0; d < dim; d++) sq += x[d] * x[d];
  return -0.5 * (sq / var + (double)dim * (TCHI_LOG_2PI + log(var)));
}

double tchi_dref_log_p0(const tchi_dnet_spec *s, const double *x)
{
  if (s->reference != TCHI_DREF_OU_DDS) return 0.0;
  return log_normal0(s->dim, s->init_std * s->init_std, x);
}

void tchi_dref_sample_p0(const tchi_dnet_spec *s, tchi_rng *rng, size_t n, double *x)
{
  size_t total = n * s->dim;
  if (s->reference != TCHI_DREF_OU_DDS) {
    memset(x, 0, total * sizeof *x);
    return;
  }
  for (size_t i = 0; i < total; i++) x[i] = s->init_std * tchi_rng_normal(rng);
}

double tchi_dref_log_marginal(const tchi_dnet_spec *s, uint32_t k, const double *x)
{
  if (s->reference == TCHI_DREF_OU_DDS) return log_normal0(s->dim, s->init_std * s->init_std, x);
  if (k == 0) return 0.0;
  return log_normal0(s->dim, s->t_scale * ((double)k / (double)s->T), x);
}
