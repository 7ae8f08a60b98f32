/* The diffusion-sampler training loop of energy envs (diffusion/train.py: train,
 * train_step, bwd_train_step, train_step_adv; spec adaptive-teacher.md §3.5-3.10), behind
 * the same tch_trainer handle as the discrete loop.
 *
 * Three modes, with the reference's fixed iteration patterns (it = the step number):
 *   on-policy  TB on B Student trajectories every iteration;
 *   per        even it: Student trajectories, terminal samples above the threshold go to
 *              the buffer (at it = 0 all of them); odd it: TB on backward trajectories of a
 *              buffer batch;
 *   teacher    even it: Student trajectories (all added to the buffer at it = 0); it = 1
 *              mod 2 adv_freq: Teacher samples above the threshold are added to the buffer
 *              with their Teacher reward; every odd it: TB on a buffer batch. The Teacher
 *              then trains every iteration on the Student batch's terminal samples.
 * Local search (per + local_search = --ls, teacher + local_search = --els): at even it with
 * it mod ls_every = 0, MALA from a buffer batch; its samples go to the buffer scored by
 * log R (the reference's unit mismatch, kept).
 *
 * The threshold is a quantile of log R of the initial Student's samples, computed at the
 * first step and never updated. The Teacher's pieces (its reward, the threshold, its
 * gradient and commit: tchi_dteacher_*) are shared with Reinforced SMC's loop (dsmc.c),
 * whose Teacher (smc.teacher_every) trains the same way. Empty or degenerate batches, on which the reference
 * crashes or steps Adam on a zero gradient, are skipped and counted (skipped.* metrics).
 *
 * A step either completes or leaves the trainer as it was: everything that can fail runs
 * before the commit (Adam steps, counters). Buffer insertions that a later draw of the same
 * step must see happen mid-step after a snapshot of the buffer, which a failure restores.
 * Random numbers come from streams keyed by (seed, purpose, sub-stream, step): no
 * generator state needs saving and a resumed run is bit-identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "trainer.h"
#include "buffers/buffer.h"
#include "config/config.h"
#include "envs/env.h"

/* The reference's defaults (diffusion/train.py, diffusion/gflownet_losses.py). */
#define DIFF_DEFAULT_STEPS 10001u        /* --epochs 10000: iterations 0..epochs */
#define DIFF_DEFAULT_CAPACITY 50000u     /* --buffer_size */
#define DIFF_MILESTONE_1 6000u           /* MultiStepLR at epochs - 6000, epochs - 2000 */
#define DIFF_MILESTONE_2 2000u
#define DIFF_GAMMA 0.1
#define DIFF_ADV_OFFSET 1.001            /* adv = log(1.001 + w L) */
#define DIFF_ADV_BELOW 1e-12             /* w L below the threshold */
#define EVAL_CHUNK 1000u                 /* trajectories per evaluation batch */

void tchi_dseed(tchi_rng *r, const tch_trainer *t, unsigned purpose, unsigned sub,
                uint64_t index)
{
  tchi_rng_seed(r, t->seed, tchi_stream_id(purpose, (uint64_t)sub << 40 | index));
}

void tchi_dpoint_to_record(uint32_t dim, const double *x, int32_t *rec)
{
  memcpy(rec, x, (size_t)dim * sizeof(double));
}

void tchi_drecord_to_point(uint32_t dim, const int32_t *rec, double *x)
{
  memcpy(x, rec, (size_t)dim * sizeof(double));
}

static void points_to_records(uint32_t dim, size_t n, const double *x, int32_t *rec)
{
  for (size_t i = 0; i < n; i++) tchi_dpoint_to_record(dim, x + i * dim, rec + i * 2 * (size_t)dim);
}

static void records_to_points(uint32_t dim, size_t n, const int32_t *rec, double *x)
{
  for (size_t i = 0; i < n; i++) tchi_drecord_to_point(dim, rec + i * 2 * (size_t)dim, x + i * dim);
}

/* ---- construction ------------------------------------------------------------------------ */
static void dlearner_destroy(tchi_dlearner *l)
{
  tchi_adam_destroy(&l->opt);
  tchi_dnet_free(l->net);
  memset(l, 0, sizeof *l);
}

static tch_status dlearner_init(tchi_dlearner *l, const tchi_dnet_spec *spec, tchi_rng *rng,
                                double lr, double lr_flow, double wd, double clip, int clip_all)
{
  memset(l, 0, sizeof *l);
  l->last_loss = l->last_grad_norm = NAN;
  tch_status s = tchi_dnet_create(spec, rng, &l->net);
  if (s) return tchi_fail_prefix(s, "diffusion network: ");
  tchi_param_group g[TCHI_DNET_MAX_GROUPS];
  size_t k = tchi_dnet_param_groups(l->net, lr, lr_flow, wd, g);
  for (size_t i = 0; i < k; i++) l->base_lr[i] = g[i].lr;
  l->grad_clip = clip;
  l->n_clip_groups = clip_all ? k : 1;   /* group 0 = the time encoder */
  return tchi_adam_init(&l->opt, k, g);
}

void tchi_dtrainer_destroy(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  if (!d) return;
  dlearner_destroy(&d->student);
  dlearner_destroy(&d->teacher);
  tchi_dtraj_destroy(&d->traj);
  tchi_dtraj_destroy(&d->ttraj);
  tchi_free(d->x); tchi_free(d->log_r); tchi_free(d->delta); tchi_free(d->adv); tchi_free(d->prio);
  tchi_free(d->tx); tchi_free(d->tlog_r); tchi_free(d->tdelta); tchi_free(d->tadv);
  tchi_free(d->tlrw); tchi_free(d->rec);
  tchi_mala_ws_destroy(&d->mala_ws);
  tchi_mala_result_destroy(&d->mala_out);
  tchi_free(d->ls_rec);
  tchi_free(d->snap_rec); tchi_free(d->snap_log_r); tchi_free(d->snap_prio);
  tchi_dsmc_destroy(d->smc);
  tchi_free(d);
  t->diff = NULL;
}

static tch_status reject(const char *key, const char *why)
{
  return tchi_fail(TCH_E_CONFIG, "key '%s': %s", key, why);
}

/* Keys of the discrete loop that have no meaning here: only their defaults are accepted,
 * so a grid setting is never silently ignored. */
static tch_status check_discrete_keys(const tch_config *c)
{
  static const char fixed[] = "energy envs train the diffusion sampler with the reference's fixed "
                              "settings";
  if (strcmp(tchi_cfg_string(c, "student.loss"), "tb") != 0)
    return reject("student.loss", "energy envs train trajectory balance (tb)");
  if (tchi_cfg_bool(c, "gafn.enabled")) return reject("gafn.enabled", "GAFN is a discrete baseline");
  if (tchi_cfg_bool(c, "student.learn_pb"))
    return reject("student.learn_pb", "the diffusion sampler's P_B is the fixed Brownian bridge");
  if (tchi_cfg_double(c, "student.reward_exponent") != 1.0) return reject("student.reward_exponent", fixed);
  if (isfinite(tchi_cfg_double(c, "student.log_reward_clip_min")))
    return reject("student.log_reward_clip_min", "energy envs fail on NaN/Inf log densities");
  if (strcmp(tchi_cfg_string(c, "mixer.schedule"), "auto") != 0)
    return reject("mixer.schedule", "energy envs follow diffusion/train.py's fixed patterns (auto)");
  if (tchi_cfg_double(c, "mixer.epsilon") != 0.0 || tchi_cfg_double(c, "mixer.teacher_epsilon") != -1.0)
    return reject(tchi_cfg_double(c, "mixer.epsilon") != 0.0 ? "mixer.epsilon" : "mixer.teacher_epsilon",
                  "discrete exploration; use diffusion.exploratory");
  if (tchi_cfg_double(c, "mixer.temperature") != 1.0 || tchi_cfg_double(c, "mixer.teacher_temperature") != -1.0)
    return reject(tchi_cfg_double(c, "mixer.temperature") != 1.0 ? "mixer.temperature"
                                                                 : "mixer.teacher_temperature",
                  "discrete exploration; use diffusion.exploratory");
  if (!tchi_cfg_bool(c, "teacher.reward.log"))
    return reject("teacher.reward.log", "the diffusion Teacher reward is log(1.001 + w L)");
  if (tchi_cfg_double(c, "teacher.reward.alpha") != 0.0)
    return reject("teacher.reward.alpha", "energy envs use diffusion.alpha_main");
  if (tchi_cfg_double(c, "teacher.reward_exponent") != 1.0) return reject("teacher.reward_exponent", fixed);
  return TCH_OK;
}

static uint32_t width(const tch_config *c, const char *key)
{
  int64_t v = tchi_cfg_int(c, key);
  return (uint32_t)(v < 0 ? tchi_cfg_int(c, "nn.hidden_dim") : v);
}

static tch_status spec_from_config(const tch_config *c, const tch_env *env, tchi_dnet_spec *spec)
{
  tchi_dnet_spec_default(spec, env->en.dim);
  spec->T = env->diffusion_steps;
  spec->t_scale = env->t_scale;
  spec->hidden_dim = width(c, "diffusion.hidden_dim");
  spec->s_emb_dim = width(c, "diffusion.s_emb_dim");
  spec->t_emb_dim = width(c, "diffusion.t_emb_dim");
  spec->harmonics_dim = width(c, "diffusion.harmonics_dim");
  spec->pis = strcmp(tchi_cfg_string(c, "diffusion.architecture"), "pis") == 0;
  spec->joint_layers = (uint32_t)tchi_cfg_int(c, "diffusion.joint_layers");
  spec->lgv_layers = (uint32_t)tchi_cfg_int(c, "diffusion.lgv_layers");
  spec->learned_variance = tchi_cfg_bool(c, "diffusion.learned_variance");
  spec->log_var_range = tchi_cfg_double(c, "diffusion.log_var_range");
  spec->langevin = tchi_cfg_bool(c, "diffusion.langevin");
  spec->langevin_per_dim = tchi_cfg_bool(c, "diffusion.langevin_per_dim");
  spec->clipping = tchi_cfg_bool(c, "diffusion.clipping");
  spec->lgv_clip = tchi_cfg_double(c, "diffusion.lgv_clip");
  spec->gfn_clip = tchi_cfg_double(c, "diffusion.gfn_clip");
  spec->learn_log_z = 1;
  spec->log_z_init = tchi_cfg_double(c, "student.logz_init");
  spec->kernel = tchi_cfg_string(c, "nn.kernel");
  spec->threads = (int)tchi_cfg_int(c, "nn.threads");
  if (spec->langevin && !tchi_env_has_grad(env))
    return reject("diffusion.langevin", "needs an env whose log density has a gradient "
                  "(TCH_ENERGY_HAS_GRAD)");
  return TCH_OK;
}

tch_status tchi_dtrainer_planned_steps(const tch_trainer *t, uint64_t *out)
{
  int64_t steps = tchi_cfg_int(t->cfg, "train.steps");
  *out = steps >= 0 ? (uint64_t)steps : DIFF_DEFAULT_STEPS;
  return TCH_OK;
}

static tch_priority dpriority(const char *name)
{
  if (!strcmp(name, "none")) return TCH_PRIORITY_NONE;
  if (!strcmp(name, "reward")) return TCH_PRIORITY_REWARD;
  if (!strcmp(name, "loss")) return TCH_PRIORITY_LOSS;
  return TCH_PRIORITY_TEACHER_REWARD;   /* teacher_reward, auto: --prioritized rank on adv */
}

tch_status tchi_dtrainer_create(tch_env *env, const tch_config *c, tch_trainer **out)
{
  *out = NULL;
  tch_trainer *t = tchi_calloc(1, sizeof *t);
  if (!t) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a trainer");
  tchi_ref_init(&t->ref);
  t->kind = TCHI_TRAINER_DIFFUSION;
  t->env = tch_env_retain(env);
  t->eval_l1 = t->eval_modes = NAN;
  t->last_source = -1;
  tchi_dtrainer *d = t->diff = tchi_calloc(1, sizeof *d);
  tch_status s = TCH_OK;
  if (!d) {
    s = tchi_fail(TCH_E_NOMEM, "out of memory allocating a trainer");
    goto fail;
  }
  tchi_dtraj_init(&d->traj);
  tchi_dtraj_init(&d->ttraj);
  tchi_mala_ws_init(&d->mala_ws);
  tchi_mala_result_init(&d->mala_out);
  d->student.last_loss = d->student.last_grad_norm = NAN;
  d->teacher.last_loss = d->teacher.last_grad_norm = NAN;
  d->threshold = NAN;
  d->last_kept = d->last_teacher_added = d->last_ls_added = d->last_ls_accept = NAN;
  d->ev = (tchi_deval)TCHI_DEVAL_NAN;
  if ((s = c ? tch_config_clone(c, &t->cfg) : tch_config_create(&t->cfg))) goto fail;
  if ((s = tchi_trainer_resolve_defaults(env, t->cfg))) goto fail;
  const tch_config *cf = t->cfg;
  if ((s = check_discrete_keys(cf))) goto fail;

  t->seed = (uint64_t)tchi_cfg_int(cf, "seed");
  t->batch = (size_t)tchi_cfg_int(cf, "train.batch_size");
  d->dim = env->en.dim;
  d->T = env->diffusion_steps;
  const int teacher_on = tchi_cfg_bool(cf, "teacher.enabled");
  const int buffer_on = tchi_cfg_bool(cf, "buffer.enabled");
  d->mode = teacher_on ? TCHI_DMODE_TEACHER : buffer_on ? TCHI_DMODE_PER : TCHI_DMODE_ON_POLICY;
  d->ls = tchi_cfg_bool(cf, "local_search.enabled");
  if (d->ls && d->mode == TCHI_DMODE_ON_POLICY) {
    s = reject("local_search.enabled", "energy envs run MALA local search into the replay buffer: "
               "enable buffer.enabled (--per --ls) or teacher.enabled (--teacher --els)");
    goto fail;
  }
  if (d->ls && !tchi_env_has_grad(env)) {
    s = reject("local_search.enabled", "MALA needs an env whose log density has a gradient "
               "(TCH_ENERGY_HAS_GRAD)");
    goto fail;
  }
  d->rw = (tchi_dreward){.fn = tchi_env_has_grad(env) ? env->en.log_density : NULL, .ctx = env->en.user};
  d->chunk = (uint32_t)tchi_cfg_int(cf, "diffusion.tb_chunk");
  d->expl_factor = tchi_cfg_bool(cf, "diffusion.exploratory") ? tchi_cfg_double(cf, "diffusion.exploration_factor") : 0.0;
  d->expl_decay = tchi_cfg_bool(cf, "diffusion.exploration_wd");
  d->expl_decay_steps = (uint64_t)tchi_cfg_int(cf, "diffusion.exploration_decay_steps");
  d->threshold_q = tchi_cfg_double(cf, "diffusion.threshold_quantile");
  int64_t tn = tchi_cfg_int(cf, "diffusion.threshold_samples");
  if (tn == 0) {
    s = reject("diffusion.threshold_samples", "0 is invalid (>= 1, or -1 for train.batch_size)");
    goto fail;
  }
  d->threshold_n = tn < 0 ? t->batch : (size_t)tn;
  d->alpha_main = tchi_cfg_double(cf, "diffusion.alpha_main");
  d->C = tchi_cfg_double(cf, "teacher.reward.C");
  d->adv_freq = (uint64_t)tchi_cfg_int(cf, "diffusion.adv_freq");
  d->ls_every = (uint64_t)tchi_cfg_int(cf, "diffusion.ls_every");
  d->mala = (tchi_mala_params){
    .max_iter = (size_t)tchi_cfg_int(cf, "diffusion.mala.max_iter"),
    .burn_in = (size_t)tchi_cfg_int(cf, "diffusion.mala.burn_in"),
    .step = tchi_cfg_double(cf, "diffusion.mala.step"),
    .target_accept = tchi_cfg_double(cf, "diffusion.mala.target_accept"),
    .adaptive = tchi_cfg_bool(cf, "diffusion.mala.adaptive"),
  };
  d->eval_distance_max = (size_t)tchi_cfg_int(cf, "diffusion.eval_distance_max");
  d->eval_ll_k = (size_t)tchi_cfg_int(cf, "diffusion.eval_ll_trajectories");

  /* Scheduler: milestones relative to the planned run; negative ones never fire. */
  d->gamma = DIFF_GAMMA;
  if (tchi_cfg_bool(cf, "diffusion.scheduler")) {
    uint64_t planned;
    tchi_dtrainer_planned_steps(t, &planned);
    uint64_t epochs = planned ? planned - 1 : 0;
    if (epochs >= DIFF_MILESTONE_1) d->milestones[d->n_milestones++] = epochs - DIFF_MILESTONE_1;
    if (epochs >= DIFF_MILESTONE_2) d->milestones[d->n_milestones++] = epochs - DIFF_MILESTONE_2;
  }

  /* Student, and the Teacher: same architecture, but never Langevin and always
   * log_var_range 4 (train.py builds gfn_adv with both hard-coded). */
  tchi_dnet_spec spec;
  if ((s = spec_from_config(cf, env, &spec))) goto fail;
  /* Reinforced SMC (dsmc.c): the Student becomes the OU-DDS PIS policy, trained without
   * weight decay and clipped jointly with the flow by dsmc.c. */
  const int smc_on = tchi_cfg_bool(cf, "smc.enabled");
  if (smc_on && (s = tchi_dsmc_configure(c, t->cfg, env, &spec))) goto fail;
  /* dsmc.c runs its own schedule and IW buffer; a Teacher there (smc.teacher_every) is the
   * same second net, trained by the functions below, without the tch_buffer of TEACHER mode */
  if (smc_on) d->mode = TCHI_DMODE_ON_POLICY;
  const double wd = smc_on ? 0.0 : tchi_cfg_double(cf, "student.weight_decay");
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_INIT, 0));
  if ((s = dlearner_init(&d->student, &spec, &rng, tchi_cfg_double(cf, "student.lr"),
                         tchi_cfg_double(cf, "student.lr_logz"), wd,
                         smc_on ? 0.0 : tchi_cfg_double(cf, "student.grad_clip"), 1)))
    goto fail;
  if (smc_on && (s = tchi_dsmc_create(t))) goto fail;
  if (teacher_on) {
    tchi_dnet_spec ts = spec;
    ts.langevin = 0;
    ts.langevin_per_dim = 0;
    ts.log_var_range = 4.0;
    tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_INIT, 1));
    if ((s = dlearner_init(&d->teacher, &ts, &rng, tchi_cfg_double(cf, "teacher.lr"),
                           tchi_cfg_double(cf, "teacher.lr_logz"), wd,
                           tchi_cfg_double(cf, "teacher.grad_clip"),
                           strcmp(tchi_cfg_string(cf, "diffusion.teacher_clip_groups"), "all") == 0)))
      goto fail;
  }

  /* Replay buffer of terminal samples (per and teacher modes), scored by adv. */
  t->priority = dpriority(tchi_cfg_string(cf, "buffer.priority"));
  if (d->mode != TCHI_DMODE_ON_POLICY) {
    int64_t cap = tchi_cfg_int(cf, "buffer.capacity");
    if (cap == 0) {
      s = reject("buffer.capacity", "0 is invalid (>= 1, or -1 for the env's default)");
      goto fail;
    }
    if ((s = tch_buffer_create(2 * d->dim, cap < 0 ? DIFF_DEFAULT_CAPACITY : (size_t)cap,
                               t->priority == TCH_PRIORITY_NONE ? TCH_PRIORITY_NONE
                                                                : TCH_PRIORITY_TEACHER_REWARD,
                               tchi_cfg_double(cf, "buffer.rank_k"), &t->buffer)))
      goto fail;
  }

  /* Scratch for one step. */
  const size_t D = d->dim;
  d->cap = TCHI_MAX(t->batch, d->threshold_n);
  if ((s = tchi_alloc_array(&d->x, d->cap, D * sizeof(double), 0, "diffusion batch")) ||
      (s = tchi_alloc_array(&d->tx, d->cap, D * sizeof(double), 0, "diffusion batch")) ||
      (s = tchi_alloc_array(&d->rec, d->cap, 2 * D * sizeof(int32_t), 0, "diffusion batch")))
    goto fail;
  double **arrays[] = {&d->log_r, &d->delta, &d->adv, &d->prio, &d->tlog_r, &d->tdelta, &d->tadv, &d->tlrw};
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
    if ((s = tchi_alloc_array(arrays[i], d->cap, sizeof(double), 0, "diffusion batch"))) goto fail;
  if ((s = tchi_dtraj_reserve(&d->traj, d->T, d->dim, t->batch, spec.langevin)) ||
      (s = tchi_dtraj_reserve(&d->ttraj, d->T, d->dim, d->cap, spec.langevin)))
    goto fail;
  /* Network workspaces for the largest evaluation a step makes (a TB block of k time steps
   * over n <= cap rows, kept for the backward; k grows as n shrinks when chunk is 0): no
   * step allocates once created. */
  tchi_dlearner *ls[2] = {&d->student, &d->teacher};
  for (int i = 0; i < 2; i++) {
    if (!ls[i]->net) continue;
    uint32_t kmax = tchi_dchunk(ls[i]->net, 1, d->chunk);
    size_t rows = d->chunk ? (size_t)kmax * d->cap : TCHI_MAX(d->cap, (size_t)TCHI_DCHUNK_ROWS);
    if ((s = tchi_dnet_reserve(ls[i]->net, kmax, (rows + kmax - 1) / kmax, 1))) goto fail;
    if (!tchi_dnet_scratch(ls[i]->net, d->cap)) {
      s = TCH_E_NOMEM;
      goto fail;
    }
  }
  *out = t;
  return TCH_OK;
fail:
  tchi_trainer_release(t);
  return s;
}

/* ---- pieces of a step ---------------------------------------------------------------------- */
static double exploration_std(const tchi_dtrainer *d, uint64_t it)
{
  if (!(d->expl_factor > 0.0)) return 0.0;
  if (!d->expl_decay) return d->expl_factor;
  double r = 1.0 - (double)it / (double)d->expl_decay_steps;
  return r > 0.0 ? d->expl_factor * r : 0.0;
}

static double lr_factor(const tchi_dtrainer *d, uint64_t it)
{
  double f = 1.0;
  for (int i = 0; i < d->n_milestones; i++)
    if (it >= d->milestones[i]) f *= d->gamma;
  return f;
}

static void set_lrs(tchi_dlearner *l, double factor)
{
  for (size_t g = 0; g < l->opt.n_groups; g++) l->opt.grp[g].lr = l->base_lr[g] * factor;
}

/* adv = log(1.001 + w L), L = delta^2 / 2, w = 1 + C if delta > 0 else 1; w L replaced by
 * 1e-12 when log R < threshold (fwd_tb / bwd_tb). */
double tchi_dteacher_adv(const tchi_dtrainer *d, double delta, double log_r, double thr)
{
  double loss = 0.5 * delta * delta;
  double wl = log_r < thr ? DIFF_ADV_BELOW : delta > 0.0 ? (1.0 + d->C) * loss : loss;
  return log(wl + DIFF_ADV_OFFSET);
}

static double priority_of(const tch_trainer *t, double adv, double delta, double log_r)
{
  switch (t->priority) {
  case TCH_PRIORITY_LOSS: return 0.5 * delta * delta;
  case TCH_PRIORITY_REWARD: return log_r;   /* rank-equivalent to R, cannot overflow */
  case TCH_PRIORITY_NONE: return 1.0;
  default: return adv;
  }
}

/* Gradient norm of l over all groups (the metric), then torch clip_grad_norm_ on the
 * covered groups. Non-finite norms are TCH_E_NUMERIC. */
static tch_status clip_and_norm(tchi_dlearner *l, const char *who, uint64_t it, double *norm)
{
  *norm = tchi_grad_norm(l->opt.grp, l->opt.n_groups);
  if (!isfinite(*norm))
    return tchi_fail(TCH_E_NUMERIC, "%s gradient norm is %g at step %llu", who, *norm,
                     (unsigned long long)it);
  if (l->grad_clip > 0.0) tchi_clip_grad_norm(l->opt.grp, l->n_clip_groups, l->grad_clip);
  return TCH_OK;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* torch.quantile(v, q), linear interpolation; sorts v in place. */
static double quantile(double *v, size_t n, double q)
{
  qsort(v, n, sizeof *v, cmp_double);
  double pos = q * (double)(n - 1);
  size_t lo = (size_t)floor(pos), hi = lo + 1 < n ? lo + 1 : lo;
  return v[lo] + (pos - (double)lo) * (v[hi] - v[lo]);
}

/* The fixed threshold: quantile of log R of threshold_n initial Student samples. */
tch_status tchi_dteacher_threshold(tch_trainer *t, double *thr, uint64_t *calls)
{
  tchi_dtrainer *d = t->diff;
  size_t n = d->threshold_n;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_THRESHOLD, 0);
  tch_status s = tchi_dsample(d->student.net, &d->rw, &rng, n, &d->ttraj, d->tx);
  if (s == TCH_OK) s = tchi_env_log_density(t->env, n, d->tx, d->tlog_r, NULL);
  if (s) return s;
  *calls += n;
  *thr = quantile(d->tlog_r, n, d->threshold_q);
  return TCH_OK;
}

/* Buffer snapshot: taken before the first insertion of a step that a later failure of the
 * same step could strand; restore() puts the items back in FIFO order with their
 * priorities (new seqs, same relative order: later draws are unchanged). */
static tch_status snapshot(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  if (d->snap_taken) return TCH_OK;
  tch_buffer *b = t->buffer;
  const size_t n = b->n, rd = b->record_dim;
  if (n > d->snap_cap) {
    size_t cap = TCHI_MAX(n, d->snap_cap + d->snap_cap / 2);
    cap = TCHI_MIN(cap, TCHI_MAX(b->capacity, n));
    int32_t *r = NULL;
    double *lr = NULL, *pr = NULL;
    tch_status s;
    if ((s = tchi_alloc_array(&r, cap, rd * sizeof(int32_t), 0, "buffer snapshot")) ||
        (s = tchi_alloc_array(&lr, cap, sizeof(double), 0, "buffer snapshot")) ||
        (s = tchi_alloc_array(&pr, cap, sizeof(double), 0, "buffer snapshot"))) {
      tchi_free(r);
      tchi_free(lr);
      return s;
    }
    tchi_free(d->snap_rec); tchi_free(d->snap_log_r); tchi_free(d->snap_prio);
    d->snap_rec = r;
    d->snap_log_r = lr;
    d->snap_prio = pr;
    d->snap_cap = cap;
  }
  for (size_t i = 0; i < n; i++)
    tchi_buffer_get(b, i, d->snap_rec + i * rd, d->snap_log_r + i, d->snap_prio + i);
  d->snap_n = n;
  d->snap_taken = 1;
  return TCH_OK;
}

static void restore(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  if (!d->snap_taken) return;
  tchi_buffer_clear(t->buffer);
  /* The slots already exist (the buffer held these items): this cannot fail. */
  (void)tchi_buffer_add(t->buffer, d->snap_n, d->snap_rec, d->snap_log_r, d->snap_prio);
  d->snap_taken = 0;
}

/* Inserts n records; unless it is the step's last fallible operation, after a snapshot. */
static tch_status buffer_add(tch_trainer *t, size_t n, const int32_t *rec, const double *log_r,
                             const double *prio, int last)
{
  if (n == 0) return TCH_OK;
  tch_status s;
  if (!last && (s = snapshot(t))) return s;
  return tchi_buffer_add(t->buffer, n, rec, log_r, prio);
}

/* Teacher sampling iteration (bwd_train_step with is_buffer False): B Teacher samples,
 * those above the threshold scored by the Student's pre-update bwd_tb and added. */
static tch_status teacher_samples(tch_trainer *t, uint64_t it, double thr, uint64_t *calls,
                                  size_t *added)
{
  tchi_dtrainer *d = t->diff;
  const size_t B = t->batch, D = d->dim;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_TEACHER, TCHI_DSUB_MAIN, it);
  tch_status s = tchi_dsample(d->teacher.net, &d->rw, &rng, B, &d->ttraj, d->tx);
  if (s == TCH_OK) s = tchi_env_log_density(t->env, B, d->tx, d->tlog_r, NULL);
  if (s) return s;
  *calls += B;
  size_t k = 0;
  for (size_t i = 0; i < B; i++) {
    if (!(d->tlog_r[i] > thr)) continue;
    if (k != i) memmove(d->tx + k * D, d->tx + i * D, D * sizeof(double));
    d->tlog_r[k++] = d->tlog_r[i];
  }
  *added = k;
  if (k == 0) return TCH_OK;
  tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_AUX, it);
  if ((s = tchi_dsample_backward(d->student.net, &d->rw, &rng, k, d->tx, &d->ttraj)) ||
      (s = tchi_dtb_loss(d->student.net, &d->ttraj, d->tlog_r, d->ttraj.log_pf, NULL, d->chunk,
                         0, d->tdelta, NULL)))
    return s;
  for (size_t i = 0; i < k; i++) {
    double adv = tchi_dteacher_adv(d, d->tdelta[i], d->tlog_r[i], thr);
    d->tadv[i] = priority_of(t, adv, d->tdelta[i], d->tlog_r[i]);
  }
  points_to_records(d->dim, k, d->tx, d->rec);
  return buffer_add(t, k, d->rec, d->tlog_r, d->tadv, 0);
}

static tch_status mala_logp(void *ctx, size_t n, const double *x, double *lp, double *grad)
{
  return tchi_env_log_density((tch_env *)ctx, n, x, lp, grad);
}

/* MALA from a buffer batch (langevin.py); the samples wait in mala_out / ls_rec. */
static tch_status local_search(tch_trainer *t, uint64_t it, uint64_t *calls)
{
  tchi_dtrainer *d = t->diff;
  const size_t B = t->batch;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_BUFFER, TCHI_DSUB_AUX, it);
  tch_status s = tchi_buffer_sample(t->buffer, &rng, B, d->rec, NULL);
  if (s) return s;
  records_to_points(d->dim, B, d->rec, d->tx);
  tchi_dseed(&rng, t, TCHI_STREAM_LOCAL_SEARCH, TCHI_DSUB_MAIN, it);
  if ((s = tchi_mala_run(&d->mala, mala_logp, t->env, B, d->dim, d->tx, &rng, &d->mala_ws,
                         &d->mala_out)))
    return s;
  *calls += (uint64_t)B * (d->mala.max_iter + 1);
  size_t n = d->mala_out.n, rd = 2 * (size_t)d->dim;
  if (n > d->ls_rec_cap) {
    /* room for the most a run can return, so later runs never reallocate */
    size_t post = d->mala.max_iter > d->mala.burn_in + 1 ? d->mala.max_iter - d->mala.burn_in - 1 : 0;
    size_t cap = TCHI_MAX(n, B * post);
    int32_t *r = NULL;
    if ((s = tchi_alloc_array(&r, cap, rd * sizeof(int32_t), 0, "local-search samples"))) return s;
    tchi_free(d->ls_rec);
    d->ls_rec = r;
    d->ls_rec_cap = cap;
  }
  points_to_records(d->dim, n, d->mala_out.x, d->ls_rec);
  return TCH_OK;
}

/* The Teacher's update (train_step_adv) on the Student batch's terminal samples above the
 * threshold: backward trajectories from its own P_B (the same bridge), log-reward
 * log(adv) + alpha_main log R. Sets *kept; 0 means no update. */
tch_status tchi_dteacher_grad(tch_trainer *t, uint64_t it, size_t n, const double *x,
                              const double *log_r, const double *adv, double thr, size_t *kept,
                              double *loss, double *norm)
{
  tchi_dtrainer *d = t->diff;
  const size_t D = d->dim;
  size_t k = 0;
  *loss = *norm = NAN;
  for (size_t i = 0; i < n; i++) {
    if (!(log_r[i] > thr)) continue;
    memcpy(d->tx + k * D, x + i * D, D * sizeof(double));
    d->tlrw[k++] = log(adv[i]) + d->alpha_main * log_r[i];
  }
  *kept = k;
  if (k == 0) return TCH_OK;
  tchi_dlearner *l = &d->teacher;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_TEACHER, TCHI_DSUB_AUX, it);
  tch_status s = tchi_dsample_backward(l->net, &d->rw, &rng, k, d->tx, &d->ttraj);
  if (s) return s;
  tchi_dnet_zero_grad(l->net);
  if ((s = tchi_dtb_loss(l->net, &d->ttraj, d->tlrw, d->ttraj.log_pf, NULL, d->chunk, 1, NULL,
                         loss)))
    return s;
  return clip_and_norm(l, "Teacher", it, norm);
}

void tchi_dteacher_commit(tch_trainer *t, uint64_t it, size_t kept, double loss, double norm)
{
  tchi_dtrainer *d = t->diff;
  tchi_dlearner *T = &d->teacher;
  if (kept) {
    set_lrs(T, lr_factor(d, it));
    tchi_adam_step(&T->opt);
  } else {
    d->skipped_teacher_update++;
  }
  T->last_loss = loss;
  T->last_grad_norm = norm;
  d->last_kept = (double)kept;
}

/* ---- one step -------------------------------------------------------------------------------- */
static tch_status dstep(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  const uint64_t it = t->step;
  const size_t B = t->batch, D = d->dim;
  tchi_dlearner *S = &d->student;
  uint64_t calls = 0;
  tch_status s;
  tchi_rng rng;

  double thr = d->threshold;
  if (!d->threshold_set && (s = tchi_dteacher_threshold(t, &thr, &calls))) return s;

  /* The Student's batch: its own trajectories, or backward trajectories of a buffer batch. */
  const int fwd = d->mode == TCHI_DMODE_ON_POLICY || it % 2 == 0;
  size_t n = 0, t_added = 0;
  int t_sampled = 0;
  if (fwd) {
    tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_MAIN, it);
    if ((s = tchi_dsample_forward(S->net, &d->rw, &rng, B, exploration_std(d, it), &d->traj)))
      return s;
    tchi_dtraj_terminals(&d->traj, d->x);
    if ((s = tchi_env_log_density(t->env, B, d->x, d->log_r, NULL))) return s;
    calls += B;
    n = B;
  } else {
    if (d->mode == TCHI_DMODE_TEACHER && it % (2 * d->adv_freq) == 1) {
      t_sampled = 1;
      if ((s = teacher_samples(t, it, thr, &calls, &t_added))) return s;
    }
    if (t->buffer->n > 0) {
      tchi_dseed(&rng, t, TCHI_STREAM_BUFFER, TCHI_DSUB_MAIN, it);
      if ((s = tchi_buffer_sample(t->buffer, &rng, B, d->rec, d->log_r))) return s;
      records_to_points(d->dim, B, d->rec, d->x);
      tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_MAIN, it);
      if ((s = tchi_dsample_backward(S->net, &d->rw, &rng, B, d->x, &d->traj))) return s;
      n = B;
    }
  }

  /* Student gradient, residuals from the pre-update parameters, Teacher rewards. */
  double loss = NAN, norm = NAN;
  tchi_dnet_zero_grad(S->net);
  if (n) {
    if ((s = tchi_dtb_loss(S->net, &d->traj, d->log_r, d->traj.log_pf, NULL, d->chunk, 1,
                           d->delta, &loss)) ||
        (s = clip_and_norm(S, "Student", it, &norm)))
      return s;
    for (size_t i = 0; i < n; i++) {
      d->adv[i] = tchi_dteacher_adv(d, d->delta[i], d->log_r[i], thr);
      d->prio[i] = priority_of(t, d->adv[i], d->delta[i], d->log_r[i]);
    }
  }

  /* Buffer insertions after a Student-sampled batch (per and teacher modes): all samples
   * at it = 0; then per: those above the threshold, or, on local-search iterations, the
   * MALA samples (the local search's batch must see the it = 0 insertion). */
  const int buffered = d->mode != TCHI_DMODE_ON_POLICY && fwd && n;
  const int ls_now = buffered && d->ls && it % d->ls_every == 0;
  int add_all = buffered && it == 0;
  const int add_filtered = buffered && d->mode == TCHI_DMODE_PER && !ls_now;
  if (ls_now) {
    if (add_all) {
      points_to_records(d->dim, n, d->x, d->rec);
      if ((s = buffer_add(t, n, d->rec, d->log_r, d->prio, 0))) return s;
      add_all = 0;
    }
    if (t->buffer->n > 0 && (s = local_search(t, it, &calls))) return s;
  }

  /* The Teacher's gradient, every iteration, on the Student batch. */
  size_t kept = 0;
  double tloss = NAN, tnorm = NAN;
  const int teacher = d->mode == TCHI_DMODE_TEACHER;
  if (teacher && n &&
      (s = tchi_dteacher_grad(t, it, n, d->x, d->log_r, d->adv, thr, &kept, &tloss, &tnorm)))
    return s;

  /* Commit: insertions first (each all-or-nothing; a snapshot covers a second one), then
   * what cannot fail. */
  const int ls_add = ls_now && t->buffer->n > 0;
  const int n_adds = add_all + add_filtered + ls_add;
  if (add_all) {
    points_to_records(d->dim, n, d->x, d->rec);
    if ((s = buffer_add(t, n, d->rec, d->log_r, d->prio, n_adds == 1))) return s;
  }
  if (add_filtered) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      if (!(d->log_r[i] > thr)) continue;
      tchi_dpoint_to_record(d->dim, d->x + i * D, d->rec + k * 2 * D);
      d->tlog_r[k] = d->log_r[i];
      d->tadv[k++] = d->prio[i];
    }
    if ((s = buffer_add(t, k, d->rec, d->tlog_r, d->tadv, !ls_add))) return s;
  }
  if (ls_add && (s = buffer_add(t, d->mala_out.n, d->ls_rec, d->mala_out.log_r,
                                d->mala_out.log_r, 1)))
    return s;

  const double f = lr_factor(d, it);
  if (n) {
    set_lrs(S, f);
    tchi_adam_step(&S->opt);
    t->grad_steps++;
  } else {
    d->skipped_student++;
  }
  S->last_loss = loss;
  S->last_grad_norm = norm;
  if (teacher) {
    tchi_dteacher_commit(t, it, kept, tloss, tnorm);
    if (t_sampled) {
      d->last_teacher_added = (double)t_added;
      if (t_added == 0) d->skipped_teacher_batch++;
    }
  }
  if (ls_add) {
    d->last_ls_added = (double)d->mala_out.n;
    d->last_ls_accept = d->mala_out.last_accept_rate;
  }
  d->threshold = thr;
  d->threshold_set = 1;
  t->reward_calls += calls;
  t->last_source = fwd ? (int)TCH_SOURCE_STUDENT : (int)TCH_SOURCE_BUFFER;
  t->step++;
  return TCH_OK;
}

tch_status tchi_dtrainer_one_step(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  if (d->smc) return tchi_dsmc_one_step(t);
  d->snap_taken = 0;
  tch_status s = dstep(t);
  if (s) restore(t);
  d->snap_taken = 0;
  return s;
}

/* ---- sampling and evaluation ------------------------------------------------------------- */
/* n Student samples in chunks (no exploration) with their log-weights. */
static tch_status sample_weighted(tch_trainer *t, tchi_rng *rng, size_t n, tchi_dtraj *tr,
                                  double *x, double *log_w)
{
  tchi_dtrainer *d = t->diff;
  const size_t D = d->dim;
  tch_status s = TCH_OK;
  for (size_t done = 0; done < n && s == TCH_OK; done += EVAL_CHUNK) {
    size_t m = TCHI_MIN((size_t)EVAL_CHUNK, n - done);
    if ((s = tchi_dsample_forward(d->student.net, &d->rw, rng, m, 0.0, tr))) break;
    tchi_dtraj_terminals(tr, x + done * D);
    if (!log_w) continue;
    if ((s = tchi_env_log_density(t->env, m, x + done * D, log_w + done, NULL))) break;
    for (size_t i = 0; i < m; i++) log_w[done + i] += tr->log_pb[i] - tr->log_pf[i];
  }
  return s;
}

tch_status tchi_dtrainer_sample(tch_trainer *t, uint64_t seed, size_t n, double *out_x,
                                double *out_log_w)
{
  tchi_dtraj tr;
  tchi_dtraj_init(&tr);
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_USER, 0));
  tch_status s = sample_weighted(t, &rng, n, &tr, out_x, out_log_w);
  tchi_dtraj_destroy(&tr);
  return s;
}

/* log w = log R + sum log P_B - sum log P_F (sign = 1) or sum log P_F - sum log P_B
 * (sign = -1, no log R) of backward trajectories of the n points x. */
static tch_status backward_weights(tch_trainer *t, tchi_rng *rng, size_t n, const double *x,
                                   const double *log_r, tchi_dtraj *tr, double *out)
{
  tchi_dtrainer *d = t->diff;
  tch_status s = TCH_OK;
  for (size_t done = 0; done < n && s == TCH_OK; done += EVAL_CHUNK) {
    size_t m = TCHI_MIN((size_t)EVAL_CHUNK, n - done);
    if ((s = tchi_dsample_backward(d->student.net, &d->rw, rng, m, x + done * d->dim, tr))) break;
    for (size_t i = 0; i < m; i++)
      out[done + i] = log_r ? log_r[done + i] + tr->log_pb[i] - tr->log_pf[i]
                            : tr->log_pf[i] - tr->log_pb[i];
  }
  return s;
}

/* eval_step: importance-weighted log Z, ELBO, ESS from n Student trajectories; with exact
 * target samples the EUBO, the mean log-likelihood bound and the sample distances. */
tch_status tchi_dtrainer_evaluate(tch_trainer *t, size_t n)
{
  tchi_dtrainer *d = t->diff;
  const size_t D = d->dim, K = d->eval_ll_k;
  tchi_deval ev = TCHI_DEVAL_NAN;
  const int has_gt = t->env->builtin_sample || t->env->en.sample_reference;
  double *mx = NULL, *lw = NULL, *gt = NULL, *glr = NULL, *gw = NULL, *rep = NULL, *llw = NULL;
  tchi_dtraj tr;
  tchi_dtraj_init(&tr);
  tch_status s;
  if ((s = tchi_alloc_array(&mx, n, D * sizeof(double), 0, "evaluation samples")) ||
      (s = tchi_alloc_array(&lw, n, sizeof(double), 0, "evaluation samples")))
    goto done;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_EVAL, TCHI_DSUB_MAIN, t->step);
  if ((s = sample_weighted(t, &rng, n, &tr, mx, lw))) goto done;
  ev.log_z = tchi_is_log_z(n, lw);
  ev.elbo = tchi_elbo(n, lw);
  tchi_ess(n, lw, &ev.ess, &ev.ess_fraction);
  if (!isnan(t->env->en.log_Z)) ev.delta_log_z = t->env->en.log_Z - ev.log_z;
  uint32_t n_comp = 0;
  if (tchi_gmm40_means(t->env, &n_comp)) {
    /* Mode coverage (spec §10): the nearest component of each sample. */
    size_t counts[TCHI_GMM40_NCOMP], covered = 0;
    if ((s = tchi_gmm40_mode_counts(t->env, n, mx, counts, &covered))) goto done;
    ev.modes = (double)covered;
    ev.emc = tchi_mode_entropy(n_comp, counts);
  }

  if (has_gt) {
    if ((s = tchi_alloc_array(&gt, n, D * sizeof(double), 0, "target samples")) ||
        (s = tchi_alloc_array(&glr, n, sizeof(double), 0, "target samples")) ||
        (s = tchi_alloc_array(&gw, n, sizeof(double), 0, "target samples")))
      goto done;
    tchi_dseed(&rng, t, TCHI_STREAM_EVAL, TCHI_DSUB_GT, t->step);
    if ((s = tch_env_sample_target(t->env, tchi_rng_u64(&rng), n, gt)) ||
        (s = tchi_env_log_density(t->env, n, gt, glr, NULL)))
      goto done;
    tchi_dseed(&rng, t, TCHI_STREAM_EVAL, TCHI_DSUB_EUBO, t->step);
    if ((s = backward_weights(t, &rng, n, gt, glr, &tr, gw))) goto done;
    ev.eubo = tchi_eubo(n, gw);
    if (K) {
      /* K backward trajectories per point, point-major (repeat / view in the reference). */
      size_t per = TCHI_MAX((size_t)1, (size_t)EVAL_CHUNK / K);
      if ((s = tchi_alloc_array(&rep, per * K, D * sizeof(double), 0, "evaluation samples")) ||
          (s = tchi_alloc_array(&llw, n, K * sizeof(double), 0, "evaluation samples")))
        goto done;
      tchi_dseed(&rng, t, TCHI_STREAM_EVAL, TCHI_DSUB_LL, t->step);
      for (size_t done = 0; done < n; done += per) {
        size_t m = TCHI_MIN(per, n - done);
        for (size_t i = 0; i < m; i++)
          for (size_t k = 0; k < K; k++)
            memcpy(rep + (i * K + k) * D, gt + (done + i) * D, D * sizeof(double));
        if ((s = backward_weights(t, &rng, m * K, rep, NULL, &tr, llw + done * K))) goto done;
      }
      ev.mean_log_likelihood = tchi_mean_log_likelihood(n, K, llw);
    }
    if (n <= d->eval_distance_max) {
      tchi_dist_metrics dm;
      if ((s = tchi_dist_metrics_compute(n, n, D, mx, gt, &dm))) goto done;
      ev.w1 = dm.w1;
      ev.w2 = dm.w2;
      ev.mmd = dm.rbf_mmd;
    }
  }
  d->ev = ev;
done:
  tchi_dtraj_destroy(&tr);
  tchi_free(mx); tchi_free(lw); tchi_free(gt); tchi_free(glr); tchi_free(gw);
  tchi_free(rep); tchi_free(llw);
  return s;
}

/* ---- metrics --------------------------------------------------------------------------- */
static const char *const dmetric_names[] = {
  "step", "loss.student", "logz.student", "grad_norm.student", "lr.student", "loss.teacher",
  "logz.teacher", "grad_norm.teacher", "reward_calls", "grad_steps", "buffer.size", "source",
  "threshold", "teacher.kept", "teacher.added", "ls.added", "ls.accept_rate", "skipped",
  "skipped.teacher_batch", "skipped.teacher_update", "skipped.student", "eval.log_z",
  "eval.elbo", "eval.eubo", "eval.ess", "eval.ess_fraction", "eval.delta_log_z",
  "eval.mean_log_likelihood", "eval.w1", "eval.w2", "eval.mmd",
  /* GMM40 targets only (NaN otherwise): components that are the nearest of at least one
   * evaluation sample, and the entropic mode coverage of those nearest-component counts */
  "eval.modes", "eval.emc",
  /* Reinforced SMC (dsmc.c; NaN otherwise): loss parts, the last SMC sweep's log Z-hat,
   * resampling events and output ESS_n, sweeps so far, the IW buffer's last draw */
  "smc.loss.tb", "smc.loss.subtb", "smc.log_z_hat", "smc.resamples", "smc.ess", "smc.sweeps",
  "smc.buffer.ess", "smc.buffer.temperature",
  /* its Teacher (smc.teacher_every; NaN otherwise): Teacher batches so far, mean and
   * log-mean-exp of the last Teacher batch's log-IWs under the Teacher's own q */
  "smc.teacher.batches", "smc.teacher.log_iw", "smc.teacher.log_z_hat",
  /* MALA rejuvenation inside the sweeps (smc.mala_steps > 0; NaN otherwise): acceptance rate
   * of the last sweep */
  "smc.mala_accept",
};
#define N_DMETRICS (sizeof dmetric_names / sizeof dmetric_names[0])

const char *tchi_dtrainer_next_metric(const char *prev)
{
  if (!prev) return dmetric_names[0];
  for (size_t i = 0; i + 1 < N_DMETRICS; i++)
    if (strcmp(prev, dmetric_names[i]) == 0) return dmetric_names[i + 1];
  return NULL;
}

tch_status tchi_dtrainer_metric(const tch_trainer *t, const char *name, double *out)
{
  const tchi_dtrainer *d = t->diff;
  const int teacher = d->teacher.net != NULL;
  const tchi_deval *e = &d->ev;
  if (tchi_dsmc_metric(t, name, out)) return TCH_OK;
  if (!strcmp(name, "step")) *out = (double)t->step;
  else if (!strcmp(name, "loss.student")) *out = d->student.last_loss;
  else if (!strcmp(name, "logz.student")) *out = d->student.net->log_z;
  else if (!strcmp(name, "grad_norm.student")) *out = d->student.last_grad_norm;
  else if (!strcmp(name, "lr.student")) *out = d->student.base_lr[0] * lr_factor(d, t->step);
  else if (!strcmp(name, "loss.teacher")) *out = teacher ? d->teacher.last_loss : NAN;
  else if (!strcmp(name, "logz.teacher")) *out = teacher ? d->teacher.net->log_z : NAN;
  else if (!strcmp(name, "grad_norm.teacher")) *out = teacher ? d->teacher.last_grad_norm : NAN;
  else if (!strcmp(name, "reward_calls")) *out = (double)t->reward_calls;
  else if (!strcmp(name, "grad_steps")) *out = (double)t->grad_steps;
  else if (!strcmp(name, "buffer.size")) *out = t->buffer ? (double)t->buffer->n : NAN;
  else if (!strcmp(name, "source")) *out = t->last_source < 0 ? NAN : (double)t->last_source;
  else if (!strcmp(name, "threshold")) *out = d->threshold_set ? d->threshold : NAN;
  else if (!strcmp(name, "teacher.kept")) *out = d->last_kept;
  else if (!strcmp(name, "teacher.added")) *out = d->last_teacher_added;
  else if (!strcmp(name, "ls.added")) *out = d->last_ls_added;
  else if (!strcmp(name, "ls.accept_rate")) *out = d->last_ls_accept;
  else if (!strcmp(name, "skipped"))
    *out = (double)(d->skipped_teacher_batch + d->skipped_teacher_update + d->skipped_student);
  else if (!strcmp(name, "skipped.teacher_batch")) *out = (double)d->skipped_teacher_batch;
  else if (!strcmp(name, "skipped.teacher_update")) *out = (double)d->skipped_teacher_update;
  else if (!strcmp(name, "skipped.student")) *out = (double)d->skipped_student;
  else if (!strcmp(name, "eval.log_z")) *out = e->log_z;
  else if (!strcmp(name, "eval.elbo")) *out = e->elbo;
  else if (!strcmp(name, "eval.eubo")) *out = e->eubo;
  else if (!strcmp(name, "eval.ess")) *out = e->ess;
  else if (!strcmp(name, "eval.ess_fraction")) *out = e->ess_fraction;
  else if (!strcmp(name, "eval.delta_log_z")) *out = e->delta_log_z;
  else if (!strcmp(name, "eval.mean_log_likelihood")) *out = e->mean_log_likelihood;
  else if (!strcmp(name, "eval.w1")) *out = e->w1;
  else if (!strcmp(name, "eval.w2")) *out = e->w2;
  else if (!strcmp(name, "eval.mmd")) *out = e->mmd;
  else if (!strcmp(name, "eval.modes")) *out = e->modes;
  else if (!strcmp(name, "eval.emc")) *out = e->emc;
  else return tchi_fail(TCH_E_ARG, "unknown metric '%s'", name);
  return TCH_OK;
}
