/* Energy environments: the adaptor around a continuous target's log density (descriptor
 * copy and validation, the forward SDE's discretisation from the config) and the checked
 * wrappers through which the library evaluates and samples the target. Everything the host
 * returns is checked here before it is used. Lifetime (retain/free) is shared with the
 * discrete envs (discrete.c). */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "config/config.h"
#include "envs/env.h"

/* Bytes of the descriptor every caller must provide: the whole first version of the
 * struct, up to and including user_free. */
#define TCHI_ENERGY_DESC_MIN_SIZE \
  (offsetof(tch_energy_desc, user_free) + sizeof(((tch_energy_desc *)0)->user_free))

#define TCHI_ENERGY_KNOWN_FLAGS (TCH_ENERGY_HAS_GRAD)

/* ---- creation ------------------------------------------------------------------------ */

static tch_status validate_energy_desc(const tch_energy_desc *d)
{
  if (d->dim < 1) return tchi_fail(TCH_E_ARG, "energy env: dim must be >= 1 (got 0)");
  if (!d->log_density) return tchi_fail(TCH_E_ARG, "energy env: log_density callback is NULL");
  if (d->flags & ~TCHI_ENERGY_KNOWN_FLAGS)
    return tchi_fail(TCH_E_ARG, "energy env: unknown flags 0x%x",
                     (unsigned)(d->flags & ~TCHI_ENERGY_KNOWN_FLAGS));
  if (isinf(d->log_Z))
    return tchi_fail(TCH_E_ARG, "energy env: log_Z is %s (use NAN when it is unknown)",
                     d->log_Z > 0 ? "+inf" : "-inf");
  return TCH_OK;
}

tch_status tchi_env_create_energy(const tch_energy_desc *desc, const tch_config *c, tch_env **out)
{
  if (out) *out = NULL;
  if (!desc) return tchi_fail(TCH_E_ARG, "energy env: descriptor is NULL");
  if (!out) return tchi_fail(TCH_E_ARG, "energy env: out is NULL");
  const uint32_t size = desc->struct_size;
  if (size < TCHI_ENERGY_DESC_MIN_SIZE)
    return tchi_fail(TCH_E_ARG,
                     "energy env: descriptor struct_size %u is smaller than the oldest supported "
                     "(%zu); call tch_energy_desc_init()", (unsigned)size,
                     (size_t)TCHI_ENERGY_DESC_MIN_SIZE);
  /* A newer (longer) struct: the tail is ignored. */
  tch_energy_desc d;
  memset(&d, 0, sizeof d);
  memcpy(&d, desc, TCHI_MIN((size_t)size, sizeof d));
  d.struct_size = (uint32_t)sizeof d;
  tch_status st = validate_energy_desc(&d);
  if (st != TCH_OK) return st;

  /* The table bounds these (1..100000 and (0, 1e6]); re-checked because a config is not
   * the only way to reach here in the future. */
  const int64_t steps = tchi_cfg_int(c, "env.diffusion.steps");
  const double t_scale = tchi_cfg_double(c, "env.diffusion.t_scale");
  if (steps < 1 || steps > 100000)
    return tchi_fail(TCH_E_CONFIG, "env.diffusion.steps = %lld is out of range [1, 100000]",
                     (long long)steps);
  if (!(t_scale > 0.0) || !isfinite(t_scale))
    return tchi_fail(TCH_E_CONFIG, "env.diffusion.t_scale = %g must be positive and finite",
                     t_scale);

  tch_env *e = tchi_calloc(1, sizeof *e);
  if (!e) return tchi_fail(TCH_E_NOMEM, "out of memory allocating env");
  e->kind = TCHI_ENV_ENERGY;
  e->en = d;
  e->diffusion_steps = (uint32_t)steps;
  e->t_scale = t_scale;
  tchi_ref_init(&e->ref);
  *out = e;
  return TCH_OK;
}

tch_status tchi_env_create_builtin_energy(uint32_t dim, tch_log_density_fn log_density,
                                          double log_Z, void *user, tchi_energy_sampler sample,
                                          const tch_config *c, tch_env **out)
{
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = dim;
  d.flags = TCH_ENERGY_HAS_GRAD;
  d.log_density = log_density;
  d.log_Z = log_Z;
  d.user = user;
  tch_status st = tchi_env_create_energy(&d, c, out);
  if (st != TCH_OK) return st;
  (*out)->builtin_sample = sample;
  return TCH_OK;
}

tch_status tch_env_create_energy(const tch_energy_desc *d, const tch_config *c, tch_env **out)
{
  return tchi_env_create_energy(d, c, out);
}

/* ---- checked wrappers ------------------------------------------------------------------ */

static tch_status need_energy(const tch_env *e, const char *fn)
{
  if (!e) return tchi_fail(TCH_E_ARG, "%s: env is NULL", fn);
  if (e->kind != TCHI_ENV_ENERGY)
    return tchi_fail(TCH_E_ARG, "%s: env is discrete, not an energy env", fn);
  return TCH_OK;
}

int tchi_env_has_grad(const tch_env *e)
{
  return e && e->kind == TCHI_ENV_ENERGY && (e->en.flags & TCH_ENERGY_HAS_GRAD) != 0;
}

/* TCH_E_NUMERIC naming the first non-finite entry of an n x dim block, or TCH_OK. */
static tch_status check_finite_rows(const double *v, size_t n, size_t dim, const char *what)
{
  const size_t total = n * dim;   /* the caller checked the product */
  for (size_t i = 0; i < total; i++)
    if (!isfinite(v[i])) {
      const char *bad = isnan(v[i]) ? "nan" : v[i] > 0 ? "+inf" : "-inf";
      if (dim == 1) return tchi_fail(TCH_E_NUMERIC, "%s returned %s for row %zu", what, bad, i);
      return tchi_fail(TCH_E_NUMERIC, "%s returned %s for row %zu column %zu", what, bad,
                       i / dim, i % dim);
    }
  return TCH_OK;
}

tch_status tchi_env_log_density(tch_env *e, size_t n, const double *x, double *out_log_p,
                                double *out_grad)
{
  static const char fn[] = "log_density";
  tch_status st = need_energy(e, fn);
  if (st != TCH_OK) return st;
  if (out_grad && !(e->en.flags & TCH_ENERGY_HAS_GRAD))
    return tchi_fail(TCH_E_STATE, "%s: gradient requested, but the env does not set "
                     "TCH_ENERGY_HAS_GRAD", fn);
  if (n == 0) return TCH_OK;
  if (!x || !out_log_p)
    return tchi_fail(TCH_E_ARG, "%s: %s is NULL", fn, x ? "out_log_p" : "x");
  const size_t dim = e->en.dim;
  int ovf = 0;
  (void)tchi_mul_size(tchi_mul_size(n, dim, &ovf), sizeof(double), &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "%s: batch of %zu points is too large", fn, n);
  /* Entries the host forgets to write are caught by the finiteness checks below. */
  for (size_t i = 0; i < n; i++) out_log_p[i] = NAN;
  if (out_grad)
    for (size_t i = 0; i < n * dim; i++) out_grad[i] = NAN;
  tchi_callback_error_reset();
  const int rc = e->en.log_density(e->en.user, n, dim, x, out_log_p, out_grad);
  if (rc != 0) return tchi_callback_fail(rc, fn);
  st = check_finite_rows(out_log_p, n, 1, fn);
  if (st == TCH_OK && out_grad) st = check_finite_rows(out_grad, n, dim, "log_density gradient");
  return st;
}

/* ---- public queries ------------------------------------------------------------------- */

tch_status tch_env_energy_dim(const tch_env *e, uint32_t *dim)
{
  tch_status st = need_energy(e, "tch_env_energy_dim");
  if (st != TCH_OK) return st;
  if (!dim) return tchi_fail(TCH_E_ARG, "tch_env_energy_dim: dim is NULL");
  *dim = e->en.dim;
  return TCH_OK;
}

tch_status tch_env_log_density(tch_env *e, size_t n, const double *x, double *out_log_p,
                               double *out_grad)
{
  tch_status st = need_energy(e, "tch_env_log_density");
  if (st != TCH_OK) return st;
  if (n > 0 && (!x || !out_log_p))
    return tchi_fail(TCH_E_ARG, "tch_env_log_density: %s is NULL", x ? "out_log_p" : "x");
  return tchi_env_log_density(e, n, x, out_log_p, out_grad);
}

tch_status tch_env_log_Z(const tch_env *e, double *out)
{
  tch_status st = need_energy(e, "tch_env_log_Z");
  if (st != TCH_OK) return st;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_log_Z: out is NULL");
  if (isnan(e->en.log_Z)) return tchi_fail(TCH_E_STATE, "tch_env_log_Z: the env's log Z is unknown");
  *out = e->en.log_Z;
  return TCH_OK;
}

tch_status tch_env_sample_target(tch_env *e, uint64_t seed, size_t n, double *out_x)
{
  static const char fn[] = "tch_env_sample_target";
  tch_status st = need_energy(e, fn);
  if (st != TCH_OK) return st;
  if (!e->builtin_sample && !e->en.sample_reference)
    return tchi_fail(TCH_E_STATE, "%s: the env has no exact sampler (sample_reference is NULL)", fn);
  if (n == 0) return TCH_OK;
  if (!out_x) return tchi_fail(TCH_E_ARG, "%s: out_x is NULL", fn);
  const size_t dim = e->en.dim;
  int ovf = 0;
  (void)tchi_mul_size(tchi_mul_size(n, dim, &ovf), sizeof(double), &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "%s: %zu samples are too many", fn, n);
  if (e->builtin_sample) return e->builtin_sample(e, seed, n, out_x);
  for (size_t i = 0; i < n * dim; i++) out_x[i] = NAN;
  tchi_callback_error_reset();
  const int rc = e->en.sample_reference(e->en.user, seed, n, dim, out_x);
  if (rc != 0) return tchi_callback_fail(rc, "sample_reference");
  return check_finite_rows(out_x, n, dim, "sample_reference");
}

tch_status tch_env_diffusion_steps(const tch_env *e, uint32_t *steps, double *t_scale)
{
  tch_status st = need_energy(e, "tch_env_diffusion_steps");
  if (st != TCH_OK) return st;
  if (steps) *steps = e->diffusion_steps;
  if (t_scale) *t_scale = e->t_scale;
  return TCH_OK;
}
