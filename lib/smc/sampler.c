/* The twisted SMC sampler of Reinforced SMC (spec reinforced-smc.md §4): particles moved by
 * the learnt forward policy chunk by chunk, reweighted by the learnt log-flow twists and the
 * fixed backward kernel, tempered and partially resampled when the ESS collapses.
 *
 * Cost per run: N T proposal steps (one batched network evaluation per step), N (K-1) flow
 * evaluations (one batched evaluation per interior chunk end) and N K energy evaluations
 * (chunk ends, the last one being the terminal reward), as TORCH computes only boundary
 * flows (§3). The start-of-chunk twist is the previous end-of-chunk twist at the same state,
 * so it is carried (gathered by ancestor) instead of recomputed.
 *
 * References (read, not copied): nolerk/gfn-smc-jax algorithms/gfn_subtb_smc/
 * gfn_subtb_smc_rnd.py (batch_simulate_fwd_subtrajectories, resampling);
 * hyeok9855/gfn-smc-torch models/gfn.py (get_trajectory_fwd_smc). */
#include <math.h>
#include <string.h>
#include "smc/smc.h"
#include "diffusion/diffusion.h"
#include "diffusion/dmetrics.h"
#include "envs/env.h"

void tchi_smc_params_default(tchi_smc_params *p, size_t n_particles, uint32_t n_chunks)
{
  memset(p, 0, sizeof *p);
  p->n_particles = n_particles;
  p->n_chunks = n_chunks;
  p->resample_threshold = 0.2;   /* smc.resample_threshold */
  p->target_ess = 0.05;          /* smc.target_ess */
  p->resampler = TCHI_RESAMPLER_SYSTEMATIC;
  p->mala_step = TCHI_SMC_MALA_STEP;   /* used only with mala_steps > 0 */
}

void tchi_smc_sampler_init(tchi_smc_sampler *s)
{
  memset(s, 0, sizeof *s);
}

/* Every array of the sampler with the count it needs; one table drives growth and release. */
enum { CAT_N, CAT_ND, CAT_NK, CAT_NKD, CAT_K, CAT_PATH, CAT_MN, CAT_MND, CAT_COUNT };
/* CAT_MN, CAT_MND: N and N x dim arrays that only MALA rejuvenation needs (0 without it). */
typedef struct arr { void **p; int cat; size_t size; } arr;

static size_t arrays(tchi_smc_sampler *s, arr *t)
{
  size_t n = 0, d = sizeof(double);
  t[n++] = (arr){(void **)&s->x, CAT_ND, d};
  t[n++] = (arr){(void **)&s->grad, CAT_ND, d};
  t[n++] = (arr){(void **)&s->log_w, CAT_N, d};
  t[n++] = (arr){(void **)&s->log_r, CAT_N, d};
  t[n++] = (arr){(void **)&s->log_p0, CAT_N, d};
  t[n++] = (arr){(void **)&s->lw, CAT_N, d};
  t[n++] = (arr){(void **)&s->scratch, CAT_N, d};
  t[n++] = (arr){(void **)&s->step_log_r, CAT_N, d};
  t[n++] = (arr){(void **)&s->chunk_x0, CAT_NKD, d};
  t[n++] = (arr){(void **)&s->chunk_x1, CAT_NKD, d};
  t[n++] = (arr){(void **)&s->chunk_log_pf, CAT_NK, d};
  t[n++] = (arr){(void **)&s->chunk_log_pb, CAT_NK, d};
  t[n++] = (arr){(void **)&s->chunk_log_f0, CAT_NK, d};
  t[n++] = (arr){(void **)&s->chunk_log_f1, CAT_NK, d};
  t[n++] = (arr){(void **)&s->chunk_log_r1, CAT_NK, d};
  t[n++] = (arr){(void **)&s->chunk_log_g, CAT_NK, d};
  t[n++] = (arr){(void **)&s->chunk_anc, CAT_NK, sizeof(uint32_t)};
  t[n++] = (arr){(void **)&s->chunk_log_z_inc, CAT_K, d};
  t[n++] = (arr){(void **)&s->chunk_ess, CAT_K, d};
  t[n++] = (arr){(void **)&s->chunk_temperature, CAT_K, d};
  t[n++] = (arr){(void **)&s->chunk_ess_tempered, CAT_K, d};
  t[n++] = (arr){(void **)&s->chunk_log_correction, CAT_K, d};
  t[n++] = (arr){(void **)&s->chunk_resampled, CAT_K, 1};
  t[n++] = (arr){(void **)&s->path, CAT_PATH, d};
  t[n++] = (arr){(void **)&s->chunk_mala_accept, CAT_K, d};
  t[n++] = (arr){(void **)&s->cur_log_r, CAT_MN, d};
  t[n++] = (arr){(void **)&s->prop_log_r, CAT_MN, d};
  t[n++] = (arr){(void **)&s->cur_grad_r, CAT_MND, d};
  t[n++] = (arr){(void **)&s->prop_grad_r, CAT_MND, d};
  t[n++] = (arr){(void **)&s->mala_grad, CAT_MND, d};
  return n;
}
#define SMC_MAX_ARRAYS 40

static size_t *cap_of(tchi_smc_sampler *s, int cat)
{
  switch (cat) {
  case CAT_N: return &s->cap_n;
  case CAT_ND: return &s->cap_nd;
  case CAT_NK: return &s->cap_nk;
  case CAT_NKD: return &s->cap_nkd;
  case CAT_K: return &s->cap_k;
  case CAT_MN: return &s->cap_mn;
  case CAT_MND: return &s->cap_mnd;
  default: return &s->cap_path;
  }
}

void tchi_smc_sampler_destroy(tchi_smc_sampler *s)
{
  if (!s) return;
  arr t[SMC_MAX_ARRAYS];
  size_t n = arrays(s, t);
  for (size_t i = 0; i < n; i++) tchi_free(*t[i].p);
  if (s->mala_ws) tchi_mala_ws_destroy(s->mala_ws);
  tchi_free(s->mala_ws);
  memset(s, 0, sizeof *s);
}

/* Grows each category to need[cat] elements (never shrinks). A category's capacity is
 * recorded only once all its arrays have grown, so a failure leaves a consistent state. */
static tch_status reserve(tchi_smc_sampler *s, const size_t need[CAT_COUNT])
{
  arr t[SMC_MAX_ARRAYS];
  size_t n = arrays(s, t);
  for (int c = 0; c < CAT_COUNT; c++) {
    size_t *cap = cap_of(s, c);
    if (need[c] <= *cap) continue;
    *cap = 0;
    for (size_t i = 0; i < n; i++) {
      if (t[i].cat != c) continue;
      if (need[c] > SIZE_MAX / t[i].size) return tchi_fail(TCH_E_NOMEM, "smc: workspace size overflows");
      void *q = tchi_realloc(*t[i].p, need[c] * t[i].size);
      if (!q) return tchi_fail(TCH_E_NOMEM, "out of memory growing the SMC workspace (%zu entries)", need[c]);
      *t[i].p = q;
    }
    *cap = need[c];
  }
  return TCH_OK;
}

static tch_status check_args(tchi_dnet *net, tchi_dflow *flow, tch_env *env,
                             const tchi_smc_params *p, tchi_rng *rng, tchi_smc_sampler *out)
{
  if (!net || !env || !p || !rng || !out)
    return tchi_fail(TCH_E_ARG, "smc_run: NULL %s", !net ? "net" : !env ? "env" : !p ? "parameters" : !rng ? "rng" : "sampler");
  uint32_t T = net->spec.T, D = net->spec.dim, env_dim = 0;
  tch_status s = tch_env_energy_dim(env, &env_dim);
  if (s != TCH_OK) return s;
  if (env_dim != D) return tchi_fail(TCH_E_ARG, "smc_run: the env has dimension %u, the net %u", env_dim, D);
  if (p->n_particles == 0 || p->n_particles > UINT32_MAX)
    return tchi_fail(TCH_E_ARG, "smc_run: n_particles must be in [1, 2^32 - 1]");
  if (p->n_chunks == 0 || T % p->n_chunks != 0)
    return tchi_fail(TCH_E_ARG, "smc_run: n_chunks = %u must divide T = %u", p->n_chunks, T);
  if (isnan(p->resample_threshold) || isnan(p->target_ess))
    return tchi_fail(TCH_E_ARG, "smc_run: resample_threshold and target_ess must not be NaN");
  if (!tchi_resampler_name(p->resampler)) return tchi_fail(TCH_E_ARG, "smc_run: unknown resampler");
  if (flow && (flow->spec.dim != D || flow->spec.T != T))
    return tchi_fail(TCH_E_ARG, "smc_run: flow dim %u, T %u; net dim %u, T %u", flow->spec.dim,
                     flow->spec.T, D, T);
  if (net->spec.langevin && !tchi_env_has_grad(env))
    return tchi_fail(TCH_E_ARG, "smc_run: a Langevin net needs an env with TCH_ENERGY_HAS_GRAD");
  if (p->mala_steps > 0) {
    if (!(p->mala_step > 0.0) || !isfinite(p->mala_step))
      return tchi_fail(TCH_E_ARG, "smc_run: the MALA step %g must be finite and > 0", p->mala_step);
    if (!tchi_env_has_grad(env))
      return tchi_fail(TCH_E_CONFIG, "smc_run: MALA rejuvenation (smc.mala_steps = %u) needs the "
                       "gradient of the log density, and the env does not set TCH_ENERGY_HAS_GRAD",
                       (unsigned)p->mala_steps);
  }
  return TCH_OK;
}

/* grad log R at the staged states for a Langevin net, clipped as traj.c does (the checked
 * energy already rejected non-finite values). */
static tch_status stage_langevin(tchi_dnet *net, tch_env *env, tchi_smc_sampler *o,
                                 const double *x, double *g)
{
  size_t n = o->n, D = o->dim;
  tch_status s = tchi_env_log_density(env, n, x, o->step_log_r, g);
  if (s != TCH_OK) return s;
  o->n_energy_evals += n;
  if (net->spec.clipping) {
    double c = net->spec.lgv_clip;
    for (size_t q = 0; q < n * D; q++) g[q] = g[q] > c ? c : g[q] < -c ? -c : g[q];
  }
  return TCH_OK;
}

/* L proposal steps of chunk j from o->x (in place), summing log q and log p_B. */
static tch_status propagate(tchi_dnet *net, tch_env *env, const tchi_smc_params *p,
                            tchi_rng *rng, tchi_smc_sampler *o, uint32_t j)
{
  size_t n = o->n, D = o->dim, L = o->L;
  double *pf = o->chunk_log_pf + j * n, *pb = o->chunk_log_pb + j * n;
  for (size_t i = 0; i < n; i++) pf[i] = pb[i] = 0.0;
  double *xs, *g;
  tchi_dnet_stage(net, &xs, &g);
  for (uint32_t l = 0; l < L; l++) {
    uint32_t k = j * o->L + l;
    memcpy(xs, o->x, n * D * sizeof(double));   /* staged copy = x_k; o->x becomes x_{k+1} */
    if (net->spec.langevin) {
      tch_status s = stage_langevin(net, env, o, xs, g);
      if (s != TCH_OK) return s;
    }
    const double *mean, *logvar;
    tchi_dnet_forward(net, k, 1, n, 0, &mean, &logvar);
    tchi_dstep st;
    tchi_dstep_at(&net->spec, k, &st);
    for (size_t i = 0; i < n; i++) {
      const double *s0 = xs + i * D;
      double *s1 = o->x + i * D;
      pf[i] += tchi_dstep_sample(&st, (uint32_t)D, s0, mean + i * D, logvar + i * D, 0.0, rng, s1);
      pb[i] += tchi_dstep_log_pb(&st, (uint32_t)D, s0, s1);
    }
    if (p->keep_paths)
      for (size_t i = 0; i < n; i++) {
        double *path = o->path + ((j * n + i) * (L + 1) + l) * D;
        memcpy(path, xs + i * D, D * sizeof(double));
        if (l + 1 == L) memcpy(path + D, o->x + i * D, D * sizeof(double));
      }
  }
  return TCH_OK;
}

/* ---- MALA rejuvenation (§4.3) ---------------------------------------------------------------- */

/* The target of the moves: the twist of step k at a batch of proposals, with its gradient. */
typedef struct mala_target {
  const tchi_dnet_spec *ref;
  tchi_dflow *flow;
  tch_env *env;
  uint32_t k;
  tchi_smc_sampler *s;
} mala_target;

static tch_status twist_at(void *ctx, size_t n, const double *x, double *log_f, double *grad)
{
  mala_target *t = ctx;
  tchi_smc_sampler *s = t->s;
  tch_status st = tchi_env_log_density(t->env, n, x, s->prop_log_r, s->prop_grad_r);
  if (st != TCH_OK) return st;
  s->n_energy_evals += n;
  return tchi_dflow_log_f_grad(t->flow, t->ref, t->k, n, x, s->prop_log_r, s->prop_grad_r,
                               log_f, grad);
}

tch_status tchi_smc_rejuvenate(const tchi_dnet_spec *ref, tchi_dflow *flow, tch_env *env,
                               uint32_t k, size_t n, uint32_t mala_steps, double mala_step,
                               double *x, double *log_f, const double *log_r,
                               const double *grad_log_r, tchi_rng *rng, tchi_smc_sampler *s,
                               uint64_t *accepted)
{
  if (!ref || !env || !x || !log_f || !rng || !s)
    return tchi_fail(TCH_E_ARG, "smc rejuvenation: NULL argument");
  if (k > ref->T) return tchi_fail(TCH_E_ARG, "smc rejuvenation: step %u > T = %u", k, ref->T);
  if (k > 0 && (!log_r || !grad_log_r))
    return tchi_fail(TCH_E_ARG, "smc rejuvenation: NULL log-rewards or their gradient");
  if (!(mala_step > 0.0) || !isfinite(mala_step))
    return tchi_fail(TCH_E_ARG, "smc rejuvenation: the MALA step %g must be finite and > 0", mala_step);
  if (!tchi_env_has_grad(env))
    return tchi_fail(TCH_E_CONFIG, "smc rejuvenation: MALA needs the gradient of the log density, "
                     "and the env does not set TCH_ENERGY_HAS_GRAD");
  uint32_t env_dim = 0;
  tch_status st = tch_env_energy_dim(env, &env_dim);
  if (st != TCH_OK) return st;
  if (env_dim != ref->dim)
    return tchi_fail(TCH_E_ARG, "smc rejuvenation: the env has dimension %u, the policy %u", env_dim, ref->dim);
  if (n == 0 || mala_steps == 0) return TCH_OK;
  int ovf = 0;
  const size_t nd = tchi_mul_size(n, ref->dim, &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "smc rejuvenation: %zu particles overflow", n);
  const size_t need[CAT_COUNT] = {[CAT_MN] = n, [CAT_MND] = nd};
  if ((st = reserve(s, need)) != TCH_OK) return st;
  if (!s->mala_ws) {
    if (!(s->mala_ws = tchi_calloc(1, sizeof *s->mala_ws)))
      return tchi_fail(TCH_E_NOMEM, "out of memory allocating the SMC MALA workspace");
    tchi_mala_ws_init(s->mala_ws);
  }
  /* the gradient at the start; the value stays the caller's, the one its weights used */
  if ((st = tchi_dflow_log_f_grad(flow, ref, k, n, x, log_r, grad_log_r, NULL, s->mala_grad)) != TCH_OK)
    return st;
  mala_target t = {ref, flow, env, k, s};
  return tchi_mala_chains(twist_at, &t, n, ref->dim, mala_step, mala_steps, x, log_f,
                          s->mala_grad, rng, s->mala_ws, accepted);
}

/* ---- the run ---------------------------------------------------------------------------------- */

tch_status tchi_smc_run(tchi_dnet *net, tchi_dflow *flow, tch_env *env,
                        const tchi_smc_params *p, tchi_rng *rng, tchi_smc_sampler *o)
{
  tch_status s = check_args(net, flow, env, p, rng, o);
  if (s != TCH_OK) return s;
  size_t n = p->n_particles;
  uint32_t D = net->spec.dim, T = net->spec.T, K = p->n_chunks, L = T / K;
  int ovf = 0;
  size_t nd = tchi_mul_size(n, D, &ovf), nk = tchi_mul_size(n, K, &ovf);
  size_t nkd = tchi_mul_size(nk, D, &ovf);
  size_t npath = p->keep_paths ? tchi_mul_size(nkd, (size_t)L + 1, &ovf) : 0;
  if (ovf) return tchi_fail(TCH_E_ARG, "smc_run: %zu particles x %u chunks overflow", n, K);
  const int mala = p->mala_steps > 0;
  const size_t need[CAT_COUNT] = {[CAT_N] = n, [CAT_ND] = nd, [CAT_NK] = nk, [CAT_NKD] = nkd,
                                  [CAT_K] = K, [CAT_PATH] = npath, [CAT_MN] = mala ? n : 0,
                                  [CAT_MND] = mala ? nd : 0};
  if ((s = reserve(o, need)) != TCH_OK) return s;
  if ((s = tchi_dnet_reserve(net, 1, n, 0)) != TCH_OK) return s;
  o->n = n;
  o->dim = D;
  o->T = T;
  o->K = K;
  o->L = L;
  o->log_z = 0.0;
  o->n_resamples = 0;
  o->n_energy_evals = 0;
  o->mala_proposals = o->mala_accepted = 0;

  /* 1. x_0 ~ p_0, uniform normalised weights, log F_0 = log p_0 */
  tchi_dref_sample_p0(&net->spec, rng, n, o->x);
  for (size_t i = 0; i < n; i++) {
    o->log_p0[i] = tchi_dref_log_p0(&net->spec, o->x + i * D);
    o->chunk_log_f0[i] = o->log_p0[i];
    o->lw[i] = -log((double)n);
  }
  double log_z = 0.0;
  for (uint32_t j = 0; j < K; j++) {
    size_t off = (size_t)j * n;
    uint32_t e = (j + 1) * L;
    double *f0 = o->chunk_log_f0 + off, *f1 = o->chunk_log_f1 + off, *r1 = o->chunk_log_r1 + off;
    double *lg = o->chunk_log_g + off, *x1 = o->chunk_x1 + off * D;
    uint32_t *anc = o->chunk_anc + off;
    memcpy(o->chunk_x0 + off * D, o->x, nd * sizeof(double));
    /* 2.1 propagate; the twist at the chunk end (log R there for the partial energy) */
    if ((s = propagate(net, env, p, rng, o, j)) != TCH_OK) return tchi_fail_prefix(s, "smc chunk %u: ", j);
    memcpy(x1, o->x, nd * sizeof(double));
    /* with MALA the same call returns the gradient the first move starts from */
    if ((s = tchi_env_log_density(env, n, x1, r1, mala ? o->prop_grad_r : NULL)) != TCH_OK)
      return tchi_fail_prefix(s, "smc chunk %u: ", j);
    o->n_energy_evals += n;
    if ((s = tchi_dflow_log_f(flow, &net->spec, e, n, x1, r1, f1)) != TCH_OK)
      return tchi_fail_prefix(s, "smc chunk %u: ", j);
    /* 2.2-2.3 incremental weights, reweighting, log Ẑ */
    const double *pf = o->chunk_log_pf + off, *pb = o->chunk_log_pb + off;
    for (size_t i = 0; i < n; i++) {
      lg[i] = f1[i] - f0[i] + pb[i] - pf[i];
      if (!isfinite(lg[i]))
        return tchi_fail(TCH_E_NUMERIC, "smc chunk %u: particle %zu has incremental log-weight %g "
                         "(log F %g -> %g, log p_B %g, log q %g)", j, i, lg[i], f0[i], f1[i], pb[i], pf[i]);
    }
    double inc = tchi_smc_reweight(n, o->lw, lg);
    if (!isfinite(inc)) return tchi_fail(TCH_E_NUMERIC, "smc chunk %u: log Ẑ increment is %g", j, inc);
    log_z += inc;
    o->chunk_log_z_inc[j] = inc;
    double ess = tchi_smc_ess_normalised(n, o->lw, 1.0);
    o->chunk_ess[j] = ess;
    o->chunk_temperature[j] = 1.0;
    o->chunk_ess_tempered[j] = ess;
    o->chunk_log_correction[j] = 0.0;
    o->chunk_resampled[j] = 0;
    /* 2.4 adaptive tempering and partial resampling, never after the last chunk */
    if (tchi_smc_should_resample(ess, p->resample_threshold, p->target_ess, j, K)) {
      tchi_smc_resample_info info;
      if ((s = tchi_smc_resample_tempered(p->resampler, n, o->lw, p->target_ess, rng, anc,
                                          o->scratch, &info)) != TCH_OK)
        return tchi_fail_prefix(s, "smc chunk %u: ", j);
      o->chunk_resampled[j] = 1;
      o->chunk_temperature[j] = info.temperature;
      o->chunk_ess_tempered[j] = info.ess_tempered;
      o->chunk_log_correction[j] = info.log_correction;
      if (p->unbiased_partial_resampling) log_z += info.log_correction;
      o->n_resamples++;
      tchi_smc_gather(n, D * sizeof(double), anc, x1, o->x);
      tchi_smc_gather(n, sizeof(double), anc, f1, f0 + n);   /* j + 1 < K here */
      if (mala) {
        tchi_smc_gather(n, sizeof(double), anc, r1, o->cur_log_r);
        tchi_smc_gather(n, D * sizeof(double), anc, o->prop_grad_r, o->cur_grad_r);
      }
    } else {
      for (size_t i = 0; i < n; i++) anc[i] = (uint32_t)i;
      if (j + 1 < K) memcpy(f0 + n, f1, n * sizeof(double));
      if (mala) {
        memcpy(o->cur_log_r, r1, n * sizeof(double));
        memcpy(o->cur_grad_r, o->prop_grad_r, nd * sizeof(double));
      }
    }
    /* 2.5 normalise */
    tchi_smc_log_normalise(n, o->lw);
    /* after the last chunk the particles are x_T (never resampled) with their log R */
    if (j + 1 == K) memcpy(o->log_r, r1, n * sizeof(double));
    /* 2.6 rejuvenation on the chunk end's twist, whose value at each particle is the start
     * twist of the next chunk (f0 of chunk j + 1) or, after the last, log R: the moves keep
     * it up to date, and no weight changes. */
    o->chunk_mala_accept[j] = NAN;
    if (mala) {
      uint64_t acc = 0;
      double *lf = j + 1 < K ? f0 + n : o->log_r;
      if ((s = tchi_smc_rejuvenate(&net->spec, flow, env, e, n, p->mala_steps, p->mala_step,
                                   o->x, lf, o->cur_log_r, o->cur_grad_r, rng, o, &acc)) != TCH_OK)
        return tchi_fail_prefix(s, "smc chunk %u: MALA rejuvenation: ", j);
      const uint64_t props = (uint64_t)n * p->mala_steps;
      o->mala_proposals += props;
      o->mala_accepted += acc;
      o->chunk_mala_accept[j] = (double)acc / (double)props;
    }
  }
  /* 3. output: final particles (o->x), their log R, weights on the single-trajectory log-IW
   * scale */
  o->log_z = log_z;
  tchi_smc_output_log_weights(n, o->lw, log_z, o->log_w);
  return TCH_OK;
}
