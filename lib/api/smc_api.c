/* Public entry points of tch_smc: the twisted SMC sampler (lib/smc/sampler.c) bound to a
 * diffusion trainer's Student and, with smc.enabled and an SMC method, its learnt log-flow.
 *
 * The handle owns only its settings, a reference on the trainer and the sampler's
 * workspace. It borrows the trainer's networks for each run: their weights are read, and
 * their evaluation workspaces (scratch between the trainer's steps, grown on demand) are
 * used, so a run leaves the training state -- weights, optimisers, counters, metrics, RNG
 * streams, buffers -- exactly as it was, and the handle must not run while another thread
 * uses the trainer. */
#include <math.h>
#include <string.h>
#include "api/api.h"
#include "api/smc_handle.h"
#include "trainer/trainer.h"
#include "config/config.h"
#include "envs/env.h"
#include "teacher/smc.h"

/* The oldest descriptor the library accepts: the first version ends after `unbiased`. */
#define TCHI_SMC_DESC_MIN_SIZE (offsetof(tch_smc_desc, unbiased) + sizeof(int32_t))

/* Random stream of a run: the user's seed under a purpose of its own, so that a run never
 * replays a stream of the trainer (tch_trainer_sample_continuous uses USER index 0). */
#define SMC_API_STREAM_INDEX 1

struct tch_smc {
  tchi_ref ref;
  tch_trainer *tr;              /* retained */
  tchi_smc_params sp;           /* resolved settings */
  int learnt_twist;             /* the trainer has a log-flow (smc.enabled, SMC method) */
  tchi_smc_sampler sampler;     /* workspace and the last run's record */
  int have_run;                 /* the record holds a successful run */
  uint64_t runs;
  double ess, min_chunk_ess;    /* of the last successful run */
};

/* The trainer's learnt twist, or NULL (f = 0, linear schedule). Read at every run: the
 * pointer is the trainer's for its whole life, but reading it late costs nothing. */
static tchi_dflow *twist_of(const tch_trainer *t)
{
  return t->diff->smc ? t->diff->smc->flow : NULL;
}

/* Public resampler value -> internal one; 0 resolves through the trainer's config. */
static tch_status resolve_resampler(const tch_trainer *t, uint32_t v, tchi_resampler *out)
{
  switch (v) {
  case TCH_SMC_RESAMPLER_CONFIG:
    return tchi_resampler_from_name(tchi_cfg_string(t->cfg, "smc.resampler"), out);
  case TCH_SMC_RESAMPLER_SYSTEMATIC: *out = TCHI_RESAMPLER_SYSTEMATIC; return TCH_OK;
  case TCH_SMC_RESAMPLER_STRATIFIED: *out = TCHI_RESAMPLER_STRATIFIED; return TCH_OK;
  case TCH_SMC_RESAMPLER_MULTINOMIAL: *out = TCHI_RESAMPLER_MULTINOMIAL; return TCH_OK;
  default:
    return tchi_fail(TCH_E_ARG, "tch_smc_create: resampler %u is not a tch_smc_resampler "
                     "(0 config, 1 systematic, 2 stratified, 3 multinomial)", (unsigned)v);
  }
}

/* A fraction setting: 0 takes the config key, otherwise it must lie in (0, 1]. */
static tch_status resolve_fraction(const tch_trainer *t, double v, const char *field,
                                   const char *key, double *out)
{
  if (v == 0.0) {
    *out = tchi_cfg_double(t->cfg, key);
    return TCH_OK;
  }
  if (!(v > 0.0 && v <= 1.0))
    return tchi_fail(TCH_E_ARG, "tch_smc_create: %s = %g is outside (0, 1] (0 takes %s)", field,
                     v, key);
  *out = v;
  return TCH_OK;
}

static tch_status resolve(const tch_trainer *t, const tch_smc_desc *d, tchi_smc_params *p)
{
  const uint32_t T = t->diff->T;
  const uint64_t n = d->n_particles ? d->n_particles : (uint64_t)t->batch;
  if (n == 0 || n > UINT32_MAX)
    return tchi_fail(TCH_E_ARG, "tch_smc_create: %llu particles (train.batch_size) is outside "
                     "[1, 2^32 - 1]", (unsigned long long)n);
  int64_t K = d->n_chunks;
  const char *k_from = "n_chunks";
  if (K == 0) {
    K = tchi_cfg_int(t->cfg, "smc.n_chunks");
    k_from = "smc.n_chunks (n_chunks = 0)";
  }
  if (K < 1 || K > T || T % (uint64_t)K != 0)
    return tchi_fail(TCH_E_ARG, "tch_smc_create: %s = %lld does not divide the trainer's "
                     "env.diffusion.steps = %u", k_from, (long long)K, T);
  tchi_smc_params_default(p, (size_t)n, (uint32_t)K);
  tch_status s;
  if ((s = resolve_fraction(t, d->resample_threshold, "resample_threshold",
                            "smc.resample_threshold", &p->resample_threshold)) ||
      (s = resolve_fraction(t, d->target_ess, "target_ess", "smc.target_ess", &p->target_ess)) ||
      (s = resolve_resampler(t, d->resampler, &p->resampler)))
    return s;
  switch (d->unbiased) {
  case 0: p->unbiased_partial_resampling = tchi_cfg_bool(t->cfg, "smc.unbiased_partial_resampling"); break;
  case 1: p->unbiased_partial_resampling = 1; break;
  case -1: p->unbiased_partial_resampling = 0; break;
  default:
    return tchi_fail(TCH_E_ARG, "tch_smc_create: unbiased = %d (1 on, -1 off, 0 "
                     "smc.unbiased_partial_resampling)", (int)d->unbiased);
  }
  /* MALA rejuvenation (version-2 fields; a version-1 descriptor reads them as 0) */
  if (d->mala_steps == 0) p->mala_steps = (uint32_t)tchi_cfg_int(t->cfg, "smc.mala_steps");
  else if (d->mala_steps == -1) p->mala_steps = 0;
  else if (d->mala_steps > 0) p->mala_steps = (uint32_t)d->mala_steps;
  else return tchi_fail(TCH_E_ARG, "tch_smc_create: mala_steps = %d (> 0 moves, -1 none, 0 "
                        "smc.mala_steps)", (int)d->mala_steps);
  if (d->mala_step == 0.0) p->mala_step = tchi_cfg_double(t->cfg, "smc.mala_step");
  else if (d->mala_step > 0.0 && isfinite(d->mala_step)) p->mala_step = d->mala_step;
  else return tchi_fail(TCH_E_ARG, "tch_smc_create: mala_step = %g must be finite and > 0 (0 "
                        "takes smc.mala_step)", d->mala_step);
  if (p->mala_steps > 0 && !tchi_env_has_grad(t->env))
    return tchi_fail(TCH_E_CONFIG, "tch_smc_create: MALA rejuvenation (%u moves per chunk) needs "
                     "the gradient of the log density, and the env does not set "
                     "TCH_ENERGY_HAS_GRAD", (unsigned)p->mala_steps);
  return TCH_OK;
}

tch_status tch_smc_create(tch_trainer *tr, const tch_smc_desc *desc, tch_smc **out)
{
  CHECK_ARG(out, "tch_smc_create: out is NULL");
  *out = NULL;
  CHECK_ARG(tr, "tch_smc_create: trainer is NULL");
  if (tr->kind != TCHI_TRAINER_DIFFUSION)
    return tchi_fail(TCH_E_STATE, "tch_smc_create: SMC runs over diffusion trajectories and "
                     "needs a diffusion trainer (an energy env); this trainer is discrete");
  tch_smc_desc d;
  memset(&d, 0, sizeof d);
  if (desc) {
    CHECK_ARG(desc->struct_size >= TCHI_SMC_DESC_MIN_SIZE,
              "tch_smc_create: descriptor struct_size %u is smaller than the oldest supported "
              "(%zu); call tch_smc_desc_init()", (unsigned)desc->struct_size,
              (size_t)TCHI_SMC_DESC_MIN_SIZE);
    /* A newer (longer) descriptor: the tail is ignored. */
    memcpy(&d, desc, TCHI_MIN((size_t)desc->struct_size, sizeof d));
  }
  d.struct_size = (uint32_t)sizeof d;
  tchi_smc_params p;
  tch_status s = resolve(tr, &d, &p);
  if (s != TCH_OK) return s;
  tch_smc *h = tchi_calloc(1, sizeof *h);
  if (!h) return tchi_fail(TCH_E_NOMEM, "tch_smc_create: out of memory");
  tchi_ref_init(&h->ref);
  h->tr = tch_trainer_retain(tr);
  h->sp = p;
  h->learnt_twist = twist_of(tr) != NULL;
  tchi_smc_sampler_init(&h->sampler);
  h->ess = h->min_chunk_ess = NAN;
  *out = h;
  return TCH_OK;
}

tch_smc *tch_smc_retain(tch_smc *s)
{
  if (s) tchi_ref_inc(&s->ref);
  return s;
}

void tch_smc_free(tch_smc *s)
{
  if (!s || !tchi_ref_dec(&s->ref)) return;
  tchi_smc_sampler_destroy(&s->sampler);
  tch_trainer_free(s->tr);
  tchi_free(s);
}

const struct tch_env *tchi_smc_handle_env(const tch_smc *s) { return s->tr->env; }

tch_status tchi_smc_handle_run(tch_smc *s, tchi_rng *rng, size_t n, double *out_x,
                               double *out_log_w, double *out_log_z)
{
  CHECK_ARG(n == s->sp.n_particles, "tch_smc_run: n = %zu, but the sampler has %zu particles", n,
            s->sp.n_particles);
  tch_trainer *t = s->tr;
  tchi_smc_sampler *o = &s->sampler;
  s->have_run = 0;
  tch_status st = tchi_smc_run(t->diff->student.net, twist_of(t), t->env, &s->sp, rng, o);
  if (st != TCH_OK) return tchi_fail_prefix(st, "tch_smc_run: ");
  const size_t D = o->dim;
  if (out_x) memcpy(out_x, o->x, n * D * sizeof(double));
  if (out_log_w) memcpy(out_log_w, o->log_w, n * sizeof(double));
  if (out_log_z) *out_log_z = o->log_z;
  s->ess = tchi_smc_ess_normalised(n, o->log_w, 1.0);
  double m = INFINITY;
  for (uint32_t j = 0; j < o->K; j++) m = o->chunk_ess[j] < m ? o->chunk_ess[j] : m;
  s->min_chunk_ess = m;
  s->have_run = 1;
  s->runs++;
  return TCH_OK;
}

tch_status tch_smc_run(tch_smc *s, uint64_t seed, size_t n, double *out_x, double *out_log_w,
                       double *out_log_z)
{
  CHECK_ARG(s, "tch_smc_run: smc is NULL");
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_USER, SMC_API_STREAM_INDEX));
  return tchi_smc_handle_run(s, &rng, n, out_x, out_log_w, out_log_z);
}

static int32_t public_resampler(tchi_resampler r)
{
  return r == TCHI_RESAMPLER_STRATIFIED    ? TCH_SMC_RESAMPLER_STRATIFIED
         : r == TCHI_RESAMPLER_MULTINOMIAL ? TCH_SMC_RESAMPLER_MULTINOMIAL
                                           : TCH_SMC_RESAMPLER_SYSTEMATIC;
}

tch_status tch_smc_metric(const tch_smc *s, const char *name, double *out)
{
  CHECK_ARG(s && name && out, "tch_smc_metric: smc, name and out are required");
  const tchi_smc_sampler *o = &s->sampler;
  const double run = s->have_run ? 1.0 : NAN;   /* NaN-propagates the last-run values */
  if (!strcmp(name, "n_particles")) *out = (double)s->sp.n_particles;
  else if (!strcmp(name, "n_chunks")) *out = (double)s->sp.n_chunks;
  else if (!strcmp(name, "dim")) *out = (double)s->tr->diff->dim;
  else if (!strcmp(name, "resample_threshold")) *out = s->sp.resample_threshold;
  else if (!strcmp(name, "target_ess")) *out = s->sp.target_ess;
  else if (!strcmp(name, "resampler")) *out = (double)public_resampler(s->sp.resampler);
  else if (!strcmp(name, "unbiased")) *out = s->sp.unbiased_partial_resampling ? 1.0 : 0.0;
  else if (!strcmp(name, "learnt_twist")) *out = s->learnt_twist ? 1.0 : 0.0;
  else if (!strcmp(name, "runs")) *out = (double)s->runs;
  else if (!strcmp(name, "log_z")) *out = run * o->log_z;
  else if (!strcmp(name, "ess")) *out = run * s->ess;
  else if (!strcmp(name, "resamples")) *out = run * (double)o->n_resamples;
  else if (!strcmp(name, "energy_evals")) *out = run * (double)o->n_energy_evals;
  else if (!strcmp(name, "min_chunk_ess")) *out = run * s->min_chunk_ess;
  else if (!strcmp(name, "mala_steps")) *out = (double)s->sp.mala_steps;
  else if (!strcmp(name, "mala_step")) *out = s->sp.mala_step;
  else if (!strcmp(name, "mala_accept"))
    *out = run * (o->mala_proposals ? (double)o->mala_accepted / (double)o->mala_proposals : NAN);
  else return tchi_fail(TCH_E_ARG, "tch_smc_metric: unknown name '%s'", name);
  return TCH_OK;
}

tch_status tch_smc_chunk_stats(const tch_smc *s, size_t n_chunks, double *out_ess,
                               double *out_temperature, uint8_t *out_resampled)
{
  CHECK_ARG(s, "tch_smc_chunk_stats: smc is NULL");
  CHECK_ARG(n_chunks == s->sp.n_chunks, "tch_smc_chunk_stats: n_chunks = %zu, but the sampler "
            "has %u chunks", n_chunks, (unsigned)s->sp.n_chunks);
  if (!s->have_run)
    return tchi_fail(TCH_E_STATE, "tch_smc_chunk_stats: no successful tch_smc_run yet");
  const tchi_smc_sampler *o = &s->sampler;
  if (out_ess) memcpy(out_ess, o->chunk_ess, n_chunks * sizeof(double));
  if (out_temperature) memcpy(out_temperature, o->chunk_temperature, n_chunks * sizeof(double));
  if (out_resampled) memcpy(out_resampled, o->chunk_resampled, n_chunks);
  return TCH_OK;
}
