/* The Teacher-Student training loop.
 *
 * Each step takes a batch from the source the mixer names (Student, Teacher or buffer
 * replay, optionally refined by local search), takes one Student step on it, derives the
 * Teacher's rewards from the Student's pre-update residuals, takes one Teacher step on the
 * same batch, and stores sampled objects in the replay buffer (grid/trainer.py).
 *
 * A step either completes or leaves the trainer exactly as before it (weights, optimiser
 * moments, buffer, counters, visit statistics): everything that can fail runs before the
 * first mutation. Random numbers come from streams keyed by (seed, purpose, step), so no
 * generator state needs saving and a resumed run is bit-identical. */
#include <math.h>
#include <string.h>
#include "trainer.h"
#include "buffers/buffer.h"
#include "config/config.h"

/* ---- exact-target visit statistics --------------------------------------------------- */
static void visits_destroy(tchi_visits *v)
{
  tchi_free(v->ring);
  tchi_free(v->counts);
  tchi_free(v->seen_mode);
  memset(v, 0, sizeof *v);
}

static tch_status visits_init(tchi_visits *v, const tch_env *e, size_t window)
{
  memset(v, 0, sizeof *v);
  if (!e->exact) return TCH_OK;
  v->window = window;
  tch_status s;
  if ((s = tchi_alloc_array(&v->ring, window ? window : 1, sizeof(int64_t), 0, "visit ring")) ||
      (s = tchi_alloc_array(&v->counts, e->exact->n, sizeof(uint32_t), 1, "visit counts")) ||
      (s = tchi_alloc_array(&v->seen_mode, e->exact->n, 1, 1, "mode flags")))
    visits_destroy(v);
  return s;
}

/* Looks up every terminal state first (the only part that can fail), then records. */
static tch_status visits_lookup(const tch_env *e, size_t n, const int32_t *x, int64_t *idx)
{
  for (size_t i = 0; i < n; i++) {
    idx[i] = e->exact->index_of(e, x + i * e->d.state_dim);
    if (idx[i] < 0)
      return tchi_fail(TCH_E_CALLBACK, "sampled terminal state %zu is not in the env's "
                       "enumerated terminal set", i);
  }
  return TCH_OK;
}

static void visits_record(tchi_visits *v, const tch_env *e, size_t n, const int64_t *idx)
{
  for (size_t i = 0; i < n; i++) {
    int64_t k = idx[i];
    if (v->window) {
      if (v->count == v->window) v->counts[v->ring[v->head]]--;
      else v->count++;
      v->ring[v->head] = k;
      v->counts[k]++;
      v->head = (v->head + 1) % v->window;
    }
    if (e->exact->is_mode[k] && !v->seen_mode[k]) {
      v->seen_mode[k] = 1;
      v->modes_found++;
    }
    v->total++;
  }
}

void tchi_visits_rebuild_counts(tchi_visits *v, const tch_env *e)
{
  memset(v->counts, 0, e->exact->n * sizeof(uint32_t));
  for (size_t i = 0; i < v->count; i++) v->counts[v->ring[i]]++;
}

static double visits_l1(const tchi_visits *v, const tch_env *e)
{
  if (!e->exact || v->count == 0) return NAN;
  double sum = 0.0, inv = 1.0 / (double)v->count;
  for (size_t k = 0; k < e->exact->n; k++) sum += fabs(v->counts[k] * inv - e->exact->p[k]);
  return sum / (double)e->exact->n;
}

/* ---- construction ----------------------------------------------------------------------- */
static void learner_destroy(tchi_learner *l)
{
  tchi_adam_destroy(&l->opt);
  tchi_eval_destroy(&l->ev);
  tchi_policy_release(l->policy);
  memset(l, 0, sizeof *l);
}

/* Policy from spec, Adam with the network and log Z as two parameter groups. */
static tch_status learner_init(tchi_learner *l, const tchi_policy_spec *spec, uint64_t seed,
                               uint64_t init_stream, double lr, double lr_logz, double wd,
                               double clip)
{
  memset(l, 0, sizeof *l);
  tchi_eval_init(&l->ev);
  l->grad_clip = clip;
  l->n_clip_groups = 2;
  l->last_loss = l->last_grad_norm = NAN;
  tch_status s = tchi_policy_new(spec, seed, init_stream, &l->policy);
  if (s) return s;
  tchi_param_group groups[2] = {
    { .p = l->policy->mlp.params, .g = l->policy->mlp.grads, .n = l->policy->mlp.n_params,
      .lr = lr, .weight_decay = wd },
    { .pd = &l->policy->log_z, .gd = &l->policy->log_z_grad, .n = 1, .lr = lr_logz },
  };
  return tchi_adam_init(&l->opt, 2, groups);
}

void tchi_trainer_release(tch_trainer *t)
{
  if (!t || !tchi_ref_dec(&t->ref)) return;
  if (t->kind == TCHI_TRAINER_DIFFUSION) {
    tchi_dtrainer_destroy(t);
    tch_buffer_free(t->buffer);
    tch_config_free(t->cfg);
    tch_env_free(t->env);
    tchi_free(t);
    return;
  }
  learner_destroy(&t->student);
  learner_destroy(&t->teacher);
  if (t->gafn) tchi_rnd_destroy(&t->rnd);
  tch_buffer_free(t->buffer);
  tchi_mixer_release(t->mixer);
  tchi_ls_ws_destroy(&t->ls_ws);
  tchi_traj_destroy(&t->traj);
  tchi_free(t->delta); tchi_free(t->dres); tchi_free(t->rt); tchi_free(t->t_log_r);
  tchi_free(t->prio); tchi_free(t->terminals); tchi_free(t->visit_idx);
  tchi_free(t->tr_rec); tchi_free(t->tr_log_r); tchi_free(t->tr_prio); tchi_free(t->tr_d);
  tchi_free(t->tr_tlog);
  visits_destroy(&t->visits);
  tch_config_free(t->cfg);
  tch_env_free(t->env);
  tchi_free(t);
}

static tch_priority priority_of(const char *name)
{
  if (!strcmp(name, "reward")) return TCH_PRIORITY_REWARD;
  if (!strcmp(name, "loss")) return TCH_PRIORITY_LOSS;
  if (!strcmp(name, "teacher_reward")) return TCH_PRIORITY_TEACHER_REWARD;
  return TCH_PRIORITY_NONE;
}

/* ---- defaults that differ between the domains -------------------------------------------- */
typedef struct domain_default {
  const char *key;
  int is_int;
  double grid, energy;     /* energy < 0: computed below */
} domain_default;

static const domain_default domain_defaults[] = {
  { "train.batch_size", 1, 16, 500 },              /* grid/trainer.py, diffusion/train.py */
  { "train.eval_samples", 1, 100000, 2000 },       /* exact-target L1 window; eval_step */
  { "student.weight_decay", 0, 0.0, 1e-7 },        /* diffusion --weight_decay */
  { "student.grad_clip", 0, 1.0, 0.0 },            /* the diffusion Student is not clipped */
  { "teacher.lr", 0, 1e-3, -1.0 },                 /* diffusion: 5 x lr_policy */
  { "teacher.grad_clip", 0, 1.0, 0.1 },            /* diffusion: on param_groups[0] */
};

tch_status tchi_trainer_resolve_defaults(const tch_env *env, tch_config *c)
{
  const int energy = env->kind == TCHI_ENV_ENERGY;
  for (size_t i = 0; i < sizeof domain_defaults / sizeof domain_defaults[0]; i++) {
    const domain_default *d = &domain_defaults[i];
    double v = tchi_cfg_double(c, d->key);
    if (v != -1.0) {
      if (d->is_int && v == 0.0 && strcmp(d->key, "train.batch_size") == 0)
        return tchi_fail(TCH_E_CONFIG, "key 'train.batch_size': 0 is invalid (>= 1, or -1 for "
                         "the env's default)");
      if (v < 0.0)
        return tchi_fail(TCH_E_CONFIG, "key '%s': %g is invalid (>= 0, or -1 for the env's "
                         "default)", d->key, v);
      continue;
    }
    double r = energy ? d->energy : d->grid;
    if (energy && r < 0.0) r = 5.0 * tchi_cfg_double(c, "student.lr");
    tch_status s = d->is_int ? tch_config_set_int(c, d->key, (int64_t)r)
                             : tch_config_set_double(c, d->key, r);
    if (s) return s;
  }
  return TCH_OK;
}

tch_status tchi_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out)
{
  *out = NULL;
  if (env->kind == TCHI_ENV_ENERGY) return tchi_dtrainer_create(env, c, out);
  if (env->kind != TCHI_ENV_DISCRETE)
    return tchi_fail(TCH_E_ARG, "this trainer needs a discrete env");
  tch_trainer *t = tchi_calloc(1, sizeof *t);
  if (!t) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a trainer");
  tchi_ref_init(&t->ref);
  tchi_traj_init(&t->traj);
  tchi_ls_ws_init(&t->ls_ws);
  t->env = tch_env_retain(env);
  t->eval_l1 = t->eval_modes = NAN;
  t->last_source = -1;
  tch_status s = c ? tch_config_clone(c, &t->cfg) : tch_config_create(&t->cfg);
  if (s) goto fail;
  if ((s = tchi_trainer_resolve_defaults(env, t->cfg))) goto fail;

  const tch_config *cf = t->cfg;
  t->loss_kind = strcmp(tchi_cfg_string(cf, "student.loss"), "db") == 0 ? TCHI_LOSS_DB : TCHI_LOSS_TB;
  t->gafn = tchi_cfg_bool(cf, "gafn.enabled");
  if (t->gafn && (t->loss_kind != TCHI_LOSS_TB || tchi_cfg_bool(cf, "teacher.enabled") ||
                  tchi_cfg_bool(cf, "buffer.enabled") || tchi_cfg_bool(cf, "local_search.enabled"))) {
    s = tchi_fail(TCH_E_CONFIG, "gafn.enabled: the GAFN baseline trains TB on-policy (as the "
                  "reference's gafntb agent); it cannot be combined with student.loss db, the "
                  "Teacher, a buffer or local search");
    goto fail;
  }
  t->seed = (uint64_t)tchi_cfg_int(cf, "seed");
  t->batch = (size_t)tchi_cfg_int(cf, "train.batch_size");
  t->reward_exponent = tchi_cfg_double(cf, "student.reward_exponent");
  t->clip_min = tchi_cfg_double(cf, "student.log_reward_clip_min");
  t->treward = (tchi_teacher_reward){
    .use_log = tchi_cfg_bool(cf, "teacher.reward.log"),
    .C = tchi_cfg_double(cf, "teacher.reward.C"),
    .alpha = tchi_cfg_double(cf, "teacher.reward.alpha"),
    .exponent = tchi_cfg_double(cf, "teacher.reward_exponent"),
  };

  /* Student, and the Teacher with the same architecture (the reference's agents). */
  tchi_policy_spec spec;
  if ((s = tchi_policy_spec_from_config(cf, env, &spec))) goto fail;
  spec.has_flow |= t->gafn;   /* GAFN's state flow F(s) weighs the edge rewards */
  if ((s = learner_init(&t->student, &spec, t->seed, 0, tchi_cfg_double(cf, "student.lr"),
                        tchi_cfg_double(cf, "student.lr_logz"),
                        tchi_cfg_double(cf, "student.weight_decay"),
                        tchi_cfg_double(cf, "student.grad_clip"))))
    goto fail;
  if (t->gafn) {
    /* RND networks, and the predictor as a third optimiser group outside the clip. */
    t->gafn_params = (tchi_gafn_params){
      .ri_scale = tchi_cfg_double(cf, "gafn.ri_scale"),
      .ri_loss_weight = tchi_cfg_double(cf, "gafn.ri_loss_weight"),
      .edge_ri = tchi_cfg_bool(cf, "gafn.edge_ri"),
    };
    if ((s = tchi_rnd_init(&t->rnd, env->in_dim, (size_t)tchi_cfg_int(cf, "gafn.rnd_hidden_dim"),
                           (size_t)tchi_cfg_int(cf, "gafn.rnd_latent_dim"), t->seed)))
      goto fail;
    tchi_param_group groups[3] = {
      t->student.opt.grp[0], t->student.opt.grp[1],
      { .p = t->rnd.pred.params, .g = t->rnd.pred.grads, .n = t->rnd.pred.n_params,
        .lr = tchi_cfg_double(cf, "student.lr") },
    };
    tchi_adam_destroy(&t->student.opt);
    if ((s = tchi_adam_init(&t->student.opt, 3, groups))) goto fail;
  }
  int teacher_on = tchi_cfg_bool(cf, "teacher.enabled");
  if (teacher_on) {
    /* Its own initialisation stream (index 1), independent of the Student's. */
    if ((s = learner_init(&t->teacher, &spec, t->seed, 1,
                          tchi_cfg_double(cf, "teacher.lr"), tchi_cfg_double(cf, "teacher.lr_logz"),
                          tchi_cfg_double(cf, "student.weight_decay"),
                          tchi_cfg_double(cf, "teacher.grad_clip"))))
      goto fail;
  }

  /* Replay buffer. */
  int buffer_on = tchi_cfg_bool(cf, "buffer.enabled");
  t->priority = priority_of(tchi_cfg_string(cf, "buffer.priority"));
  t->transitions = buffer_on && t->loss_kind == TCHI_LOSS_DB;
  if (buffer_on) {
    int64_t cap = tchi_cfg_int(cf, "buffer.capacity");
    if (cap < 0 && t->transitions) cap = 1000;   /* trainer_db.py --buffer_size */
    if (cap < 0) {
      if (!env->default_buffer_capacity) {
        s = tchi_fail(TCH_E_CONFIG, "buffer.capacity is -1 (the env's default) but this env has "
                      "no default: set buffer.capacity");
        goto fail;
      }
      cap = (int64_t)env->default_buffer_capacity;
    }
    if (t->transitions) {
      int64_t rn = tchi_cfg_int(cf, "buffer.replay_transitions");
      if (rn < 0 && !env->default_replay_factor) {
        s = tchi_fail(TCH_E_CONFIG, "buffer.replay_transitions is -1 but this env has no default: set it");
        goto fail;
      }
      t->replay_n = rn >= 0 ? (size_t)rn : t->batch * env->default_replay_factor;
      if (t->replay_n == 0) t->replay_n = 1;
      size_t T = (size_t)env->d.max_len + 1;
      t->tr_cap = TCHI_MAX(t->replay_n, t->batch * T);
      if ((s = tchi_alloc_array(&t->tr_rec, t->tr_cap, tchi_transition_dim(env) * sizeof(int32_t), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_log_r, t->tr_cap, sizeof(double), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_prio, t->tr_cap, sizeof(double), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_d, t->tr_cap, sizeof(double), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_tlog, t->tr_cap, sizeof(double), 0, "transitions")))
        goto fail;
    }
    if ((s = tch_buffer_create(t->transitions ? tchi_transition_dim(env) : env->d.state_dim,
                               (size_t)cap, t->priority,
                               tchi_cfg_double(cf, "buffer.rank_k"), &t->buffer)))
      goto fail;
  }

  /* Local search and the behaviour mixer. */
  int ls_on = tchi_cfg_bool(cf, "local_search.enabled");
  t->ls = (tchi_ls_params){
    .iterations = (int)tchi_cfg_int(cf, "local_search.iterations"),
    .back_ratio = tchi_cfg_double(cf, "local_search.back_ratio"),
    .student = t->student.policy, .student_db = t->loss_kind == TCHI_LOSS_DB,
    .tr = &t->treward, .reward_exponent = t->reward_exponent, .clip_min = t->clip_min,
  };
  const char *sched = tchi_cfg_string(cf, "mixer.schedule");
  if (!strcmp(sched, "auto")) sched = tchi_mixer_auto_schedule(teacher_on, buffer_on, ls_on);
  if ((s = tchi_mixer_create(sched, &t->mixer))) goto fail;
  for (size_t i = 0; i < t->mixer->n_tokens; i++) {
    if (t->mixer->src[i] == TCH_SOURCE_TEACHER && !teacher_on) {
      s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s' samples from the teacher but teacher.enabled is false", sched);
      goto fail;
    }
    if (t->mixer->src[i] == TCH_SOURCE_BUFFER && !buffer_on) {
      s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s' replays the buffer but buffer.enabled is false", sched);
      goto fail;
    }
  }
  if ((t->mixer->random && t->mixer->weight[TCH_SOURCE_TEACHER] > 0 && !teacher_on) ||
      (t->mixer->random && t->mixer->weight[TCH_SOURCE_BUFFER] > 0 && !buffer_on)) {
    s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s' uses a source that is not enabled", sched);
    goto fail;
  }
  double eps = tchi_cfg_double(cf, "mixer.epsilon"), temp = tchi_cfg_double(cf, "mixer.temperature");
  double teps = tchi_cfg_double(cf, "mixer.teacher_epsilon");
  double ttemp = tchi_cfg_double(cf, "mixer.teacher_temperature");
  if ((s = tch_mixer_set_exploration(t->mixer, TCH_SOURCE_STUDENT, eps, temp)) ||
      (s = tch_mixer_set_exploration(t->mixer, TCH_SOURCE_TEACHER, teps < 0 ? eps : teps,
                                     ttemp < 0 ? temp : ttemp)))
    goto fail;

  size_t B = t->batch, T = (size_t)env->d.max_len + 1;
  if ((s = tchi_alloc_array(&t->delta, B, sizeof(double), 0, "residuals")) ||
      (s = tchi_alloc_array(&t->dres, B * T, sizeof(double), 0, "residuals")) ||
      (s = tchi_alloc_array(&t->rt, B, sizeof(double), 0, "teacher rewards")) ||
      (s = tchi_alloc_array(&t->t_log_r, B, sizeof(double), 0, "teacher rewards")) ||
      (s = tchi_alloc_array(&t->prio, B, sizeof(double), 0, "priorities")) ||
      (s = tchi_alloc_array(&t->visit_idx, B, sizeof(int64_t), 0, "visit index")) ||
      (s = tchi_alloc_array(&t->terminals, B, env->d.state_dim * sizeof(int32_t), 0, "terminals")))
    goto fail;
  int64_t win = tchi_cfg_int(cf, "metrics.num_empirical");
  size_t window = win >= 0 ? (size_t)win : env->default_num_empirical ? env->default_num_empirical : 20000;
  if ((s = visits_init(&t->visits, env, window))) goto fail;
  if ((s = tchi_traj_reserve(&t->traj, env, B))) goto fail;
  *out = t;
  return TCH_OK;
fail:
  tchi_trainer_release(t);
  return s;
}

tch_status tchi_trainer_planned_steps(const tch_trainer *t, uint64_t *out)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) return tchi_dtrainer_planned_steps(t, out);
  int64_t steps = tchi_cfg_int(t->cfg, "train.steps");
  if (steps >= 0) {
    *out = (uint64_t)steps;
    return TCH_OK;
  }
  if (!t->env->default_steps_base)
    return tchi_fail(TCH_E_CONFIG, "train.steps is -1 (the env's default) but this env has no "
                     "default: set train.steps");
  /* grid/trainer.py: x1.5 unless local search, x2 with a buffer (integer truncation). */
  uint64_t n = t->env->default_steps_base;
  if (!tchi_cfg_bool(t->cfg, "local_search.enabled")) n = n * 3 / 2;
  if (t->buffer) n *= 2;
  *out = n;
  return TCH_OK;
}

/* ---- one step --------------------------------------------------------------------------- */
/* Gradient of one learner on the batch; the update itself is applied at commit. */
static tch_status learner_grad(tch_trainer *t, tchi_learner *l, const double *log_r, double *delta,
                               double *dres, double *loss, double *norm)
{
  tch_policy *p = l->policy;
  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0.0;
  tch_status s;
  if (t->gafn && l == &t->student) {
    tchi_mlp_zero_grad(&t->rnd.pred);
    s = tchi_gafn_loss(p, &t->rnd, t->env, &t->traj, &l->ev, log_r, &t->gafn_params, 1, loss);
  } else if (t->loss_kind == TCHI_LOSS_DB) {
    s = tchi_db_loss(p, t->env, &t->traj, &l->ev, log_r, 1, dres, loss);
  } else {
    s = tchi_tb_loss(p, t->env, &t->traj, &l->ev, log_r, NULL, 1, delta, loss);
  }
  if (s) return s;
  /* The reference clips the sampler's network and log Z only (not the RND predictor). */
  *norm = tchi_clip_grad_norm(l->opt.grp, l->n_clip_groups, l->grad_clip);
  if (!isfinite(*norm))
    return tchi_fail(TCH_E_NUMERIC, "%s gradient norm is %g at step %llu",
                     l == &t->student ? "Student" : "Teacher", *norm, (unsigned long long)t->step);
  return TCH_OK;
}

/* Fills t->traj (and its log_r, training scale) from the step's source. */
static tch_status behaviour_batch(tch_trainer *t, tch_source src, uint32_t flags, uint64_t *calls)
{
  const size_t B = t->batch;
  tchi_rng rng;
  tch_status s;
  if (src == TCH_SOURCE_BUFFER) {
    tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_BUFFER, t->step));
    if ((s = tchi_buffer_sample(t->buffer, &rng, B, t->terminals, t->traj.log_r))) return s;
    double keep[256];
    double *lr = B <= 256 ? keep : t->t_log_r;   /* t_log_r is free scratch at this point */
    memcpy(lr, t->traj.log_r, B * sizeof(double));
    /* Rebuilt with the Student's P_B: uniform over valid parents unless it learns P_B,
     * which is the reference's generate_backward. */
    if ((s = tchi_sample_backward(t->student.policy, t->env, &rng, B, t->terminals, &t->traj)))
      return s;
    memcpy(t->traj.log_r, lr, B * sizeof(double));
    return TCH_OK;
  }
  tchi_learner *l = src == TCH_SOURCE_TEACHER ? &t->teacher : &t->student;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(src == TCH_SOURCE_TEACHER ? TCHI_STREAM_TEACHER
                                                                        : TCHI_STREAM_STUDENT, t->step));
  if ((s = tchi_sample_forward(l->policy, t->env, &rng, B, t->mixer->eps[src], t->mixer->temp[src],
                               &t->traj, NULL)))
    return s;
  tchi_traj_terminals(&t->traj, t->terminals);
  if ((s = tchi_env_log_reward(t->env, B, t->terminals, t->clip_min, t->traj.log_r))) return s;
  for (size_t i = 0; i < B; i++) t->traj.log_r[i] *= t->reward_exponent;
  *calls += B;
  if (flags & TCH_MIXER_LOCAL_SEARCH) {
    tchi_ls_params lp = t->ls;
    lp.teacher_ls = src == TCH_SOURCE_TEACHER;
    tchi_rng lrng;
    tchi_rng_seed(&lrng, t->seed, tchi_stream_id(TCHI_STREAM_LOCAL_SEARCH, t->step));
    if ((s = tchi_local_search(l->policy, t->env, &lrng, &lp, &t->traj, &t->ls_ws))) return s;
    *calls += B * (uint64_t)lp.iterations;
    tchi_traj_terminals(&t->traj, t->terminals);
  }
  return TCH_OK;
}

/* One replay step of DB on transitions (trainer_db.py learn_from_transition), Student then
 * Teacher; no buffer insertion and no visits. */
static tch_status transition_step(tch_trainer *t)
{
  const size_t R = t->replay_n;
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_BUFFER, t->step));
  tch_status s = tchi_buffer_sample(t->buffer, &rng, R, t->tr_rec, t->tr_log_r);
  if (s) return s;
  double loss, norm, tloss = NAN, tnorm = NAN;
  tchi_learner *l = &t->student;
  tchi_mlp_zero_grad(&l->policy->mlp);
  l->policy->log_z_grad = 0.0;
  if ((s = tchi_db_transition_loss(l->policy, t->env, R, t->tr_rec, t->tr_log_r, &l->ev, 1,
                                   t->tr_d, &loss)))
    return s;
  norm = tchi_clip_grad_norm(l->opt.grp, l->n_clip_groups, l->grad_clip);
  if (!isfinite(norm)) return tchi_fail(TCH_E_NUMERIC, "Student gradient norm is %g", norm);
  if (t->teacher.policy) {
    /* R_T = f(w d^2) (1 + r)^alpha per transition (r: the stored reward, 0 unless
     * terminal); the Teacher's target on terminal transitions is beta_T log(R_T + 1e-8). */
    const tchi_teacher_reward *tr = &t->treward;
    for (size_t i = 0; i < R; i++) {
      double rt = tchi_teacher_reward_value(tr, t->tr_d[i], log1p(exp(t->tr_log_r[i])));
      t->tr_tlog[i] = tchi_teacher_log_reward(tr, rt);
    }
    tchi_learner *tl = &t->teacher;
    tchi_mlp_zero_grad(&tl->policy->mlp);
    tl->policy->log_z_grad = 0.0;
    if ((s = tchi_db_transition_loss(tl->policy, t->env, R, t->tr_rec, t->tr_tlog, &tl->ev, 1,
                                     NULL, &tloss)))
      return s;
    tnorm = tchi_clip_grad_norm(tl->opt.grp, tl->n_clip_groups, tl->grad_clip);
    if (!isfinite(tnorm)) return tchi_fail(TCH_E_NUMERIC, "Teacher gradient norm is %g", tnorm);
  }
  tchi_adam_step(&l->opt);
  l->last_loss = loss;
  l->last_grad_norm = norm;
  if (t->teacher.policy) {
    tchi_adam_step(&t->teacher.opt);
    t->teacher.last_loss = tloss;
    t->teacher.last_grad_norm = tnorm;
  }
  t->grad_steps++;
  t->last_source = (int)TCH_SOURCE_BUFFER;
  t->step++;
  return TCH_OK;
}

/* The transitions of a sampled DB batch, with the reference's priorities (trainer_db.py):
 * teacher_reward -> per-transition R_T (r = 1, plus R on the last), loss -> d_t^2, else 1. */
static size_t batch_transitions(tch_trainer *t)
{
  const tchi_traj *tr = &t->traj;
  const size_t T = tr->T, sd = tr->state_dim, na = tr->n_actions, w = 2 * sd + 2;
  const tchi_teacher_reward *R_T = &t->treward;
  size_t m = 0;
  for (size_t i = 0; i < tr->n; i++) {
    size_t L = tr->len[i];
    size_t n_tr = L - (size_t)tchi_forced_terminal(tr->fwd + (i * T + L - 1) * na, na);
    for (size_t k = 0; k < n_tr; k++, m++) {
      int32_t *r = t->tr_rec + m * w;
      int32_t a = tr->actions[i * T + k];
      int term = k + 1 == n_tr, is_exit = (size_t)a == na - 1;
      memcpy(r, tchi_traj_state(tr, i, k), sd * sizeof(int32_t));
      r[sd] = a;
      memcpy(r + sd + 1, tchi_traj_state(tr, i, is_exit ? k : k + 1), sd * sizeof(int32_t));
      r[2 * sd + 1] = term;
      t->tr_log_r[m] = term ? tr->log_r[i] : -INFINITY;
      double d = t->dres[i * T + k];
      if (t->priority == TCH_PRIORITY_TEACHER_REWARD) {
        /* r = 1, plus R on the terminal transition: R^alpha with log R = log(r) */
        double log_rv = term ? log1p(exp(tr->log_r[i])) : 0.0;
        t->tr_prio[m] = tchi_teacher_reward_value(R_T, d, log_rv);
      } else if (t->priority == TCH_PRIORITY_LOSS) {
        t->tr_prio[m] = d * d;
      } else {
        t->tr_prio[m] = 1.0;
      }
    }
  }
  return m;
}

static tch_status one_step(tch_trainer *t)
{
  const size_t B = t->batch;
  tch_source src;
  uint32_t flags;
  tchi_mixer_source(t->mixer, t->seed, t->step, &src, &flags);
  if (src == TCH_SOURCE_BUFFER && t->transitions) return transition_step(t);
  uint64_t calls = 0;
  tch_status s = behaviour_batch(t, src, flags, &calls);
  if (s) return s;
  const int sampled = src != TCH_SOURCE_BUFFER;
  const double *log_r = t->traj.log_r;
  if (sampled && t->env->exact && (s = visits_lookup(t->env, B, t->terminals, t->visit_idx)))
    return s;

  /* Student gradient; residuals from the pre-update parameters. */
  double loss, norm, tloss = NAN, tnorm = NAN;
  if ((s = learner_grad(t, &t->student, log_r, t->delta, t->dres, &loss, &norm))) return s;

  /* Teacher rewards from the Student's residuals (also the PER priority). */
  int need_rt = t->teacher.policy || (t->buffer && t->priority == TCH_PRIORITY_TEACHER_REWARD);
  if (need_rt) {
    if (t->loss_kind == TCHI_LOSS_DB) tchi_teacher_rewards_db(&t->treward, &t->traj, t->dres, log_r, t->rt);
    else tchi_teacher_rewards_tb(&t->treward, &t->traj, t->delta, log_r, t->rt);
  }
  if (t->teacher.policy) {
    for (size_t i = 0; i < B; i++) t->t_log_r[i] = tchi_teacher_log_reward(&t->treward, t->rt[i]);
    /* Teacher residuals are not kept: the Student's stay in delta/dres for the priorities. */
    if ((s = learner_grad(t, &t->teacher, t->t_log_r, NULL, NULL, &tloss, &tnorm))) return s;
  }

  /* Commit. The buffer goes first: its insertion is all-or-nothing; the rest cannot fail. */
  if (sampled && t->transitions) {
    size_t m = batch_transitions(t);
    if ((s = tchi_buffer_add(t->buffer, m, t->tr_rec, t->tr_log_r, t->tr_prio))) return s;
  } else if (sampled && t->buffer) {
    const size_t T = t->traj.T;
    for (size_t i = 0; i < B; i++) {
      switch (t->priority) {
      case TCH_PRIORITY_REWARD: t->prio[i] = exp(log_r[i]); break;
      case TCH_PRIORITY_TEACHER_REWARD: t->prio[i] = t->rt[i]; break;
      case TCH_PRIORITY_LOSS:
        if (t->loss_kind == TCHI_LOSS_DB) {
          double sum = 0.0;
          for (size_t k = 0; k < T; k++) sum += t->dres[i * T + k] * t->dres[i * T + k];
          t->prio[i] = sum;
        } else {
          t->prio[i] = t->delta[i] * t->delta[i];
        }
        break;
      default: t->prio[i] = 1.0;
      }
    }
    if ((s = tchi_buffer_add(t->buffer, B, t->terminals, log_r, t->prio))) return s;
  }
  tchi_adam_step(&t->student.opt);
  t->student.last_loss = loss;
  t->student.last_grad_norm = norm;
  if (t->teacher.policy) {
    tchi_adam_step(&t->teacher.opt);
    t->teacher.last_loss = tloss;
    t->teacher.last_grad_norm = tnorm;
  }
  if (sampled && t->env->exact) visits_record(&t->visits, t->env, B, t->visit_idx);
  t->reward_calls += calls;
  t->grad_steps++;
  t->last_source = (int)src;
  t->step++;
  return TCH_OK;
}

tch_status tchi_trainer_step(tch_trainer *t, uint64_t n_steps)
{
  for (uint64_t k = 0; k < n_steps; k++) {
    tch_status s = t->kind == TCHI_TRAINER_DIFFUSION ? tchi_dtrainer_one_step(t) : one_step(t);
    if (s) return s;
    if (t->progress && t->progress_every && t->step % t->progress_every == 0) {
      tchi_callback_error_reset();
      if (t->progress(t->progress_user, t, t->step))
        return tchi_fail(TCH_STOPPED, "stopped by the progress callback at step %llu",
                         (unsigned long long)t->step);
    }
  }
  return TCH_OK;
}

tch_status tchi_trainer_evaluate(tch_trainer *t, size_t n_samples)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) return tchi_dtrainer_evaluate(t, n_samples);
  if (!t->env->exact)
    return tchi_fail(TCH_E_STATE, "evaluation needs an env that enumerates its terminal set");
  const size_t chunk = 1000, sd = t->env->d.state_dim;
  int32_t *all;
  tch_status s = tchi_alloc_array(&all, n_samples, sd * sizeof(int32_t), 0, "evaluation samples");
  if (s) return s;
  tchi_traj traj;
  tchi_traj_init(&traj);
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_EVAL, t->step));
  for (size_t done = 0; done < n_samples && s == TCH_OK; done += chunk) {
    size_t m = TCHI_MIN(chunk, n_samples - done);
    s = tchi_sample_forward(t->student.policy, t->env, &rng, m, 0.0, 1.0, &traj, NULL);
    if (s == TCH_OK) tchi_traj_terminals(&traj, all + done * sd);
  }
  size_t modes = 0;
  double l1 = NAN;
  if (s == TCH_OK) s = tch_env_empirical_l1(t->env, n_samples, all, &l1);
  if (s == TCH_OK) s = tch_env_count_modes(t->env, n_samples, all, &modes);
  if (s == TCH_OK) {
    t->eval_l1 = l1;
    t->eval_modes = (double)modes;
  }
  tchi_traj_destroy(&traj);
  tchi_free(all);
  return s;
}

/* ---- metrics ------------------------------------------------------------------------ */
static const char *const metric_names[] = {
  "step", "loss.student", "logz.student", "grad_norm.student", "loss.teacher", "logz.teacher",
  "grad_norm.teacher", "l1", "modes", "modes.total", "reward_calls", "grad_steps", "visits",
  "buffer.size", "source", "eval.l1", "eval.modes",
};
#define N_METRICS (sizeof metric_names / sizeof metric_names[0])

const char *tchi_trainer_next_metric(const tch_trainer *t, const char *prev)
{
  if (t && t->kind == TCHI_TRAINER_DIFFUSION) return tchi_dtrainer_next_metric(prev);
  if (!prev) return metric_names[0];
  for (size_t i = 0; i + 1 < N_METRICS; i++)
    if (strcmp(prev, metric_names[i]) == 0) return metric_names[i + 1];
  return NULL;
}

/* A name of the other kind's list: defined, but NaN for this trainer. */
static int other_kind_metric(const tch_trainer *t, const char *name)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) {
    for (size_t i = 0; i < N_METRICS; i++)
      if (!strcmp(name, metric_names[i])) return 1;
    return 0;
  }
  for (const char *k = tchi_dtrainer_next_metric(NULL); k; k = tchi_dtrainer_next_metric(k))
    if (!strcmp(name, k)) return 1;
  return 0;
}

tch_status tchi_trainer_metric(const tch_trainer *t, const char *name, double *out)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) {
    tch_status s = tchi_dtrainer_metric(t, name, out);
    if (s == TCH_E_ARG && other_kind_metric(t, name)) {
      tchi_clear_error();
      *out = NAN;
      return TCH_OK;
    }
    return s;
  }
  const tchi_exact_target *x = t->env->exact;
  const tch_policy *tp = t->teacher.policy;
  size_t bsize = 0;
  if (t->buffer) tch_buffer_size(t->buffer, &bsize);
  if (!strcmp(name, "step")) *out = (double)t->step;
  else if (!strcmp(name, "loss.student")) *out = t->student.last_loss;
  else if (!strcmp(name, "logz.student")) *out = t->student.policy->log_z;
  else if (!strcmp(name, "grad_norm.student")) *out = t->student.last_grad_norm;
  else if (!strcmp(name, "loss.teacher")) *out = tp ? t->teacher.last_loss : NAN;
  else if (!strcmp(name, "logz.teacher")) *out = tp ? tp->log_z : NAN;
  else if (!strcmp(name, "grad_norm.teacher")) *out = tp ? t->teacher.last_grad_norm : NAN;
  else if (!strcmp(name, "l1")) *out = visits_l1(&t->visits, t->env);
  else if (!strcmp(name, "modes")) *out = x ? (double)t->visits.modes_found : NAN;
  else if (!strcmp(name, "modes.total")) *out = x ? (double)x->n_modes : NAN;
  else if (!strcmp(name, "reward_calls")) *out = (double)t->reward_calls;
  else if (!strcmp(name, "grad_steps")) *out = (double)t->grad_steps;
  else if (!strcmp(name, "visits")) *out = (double)t->visits.total;
  else if (!strcmp(name, "buffer.size")) *out = t->buffer ? (double)bsize : NAN;
  else if (!strcmp(name, "source")) *out = t->last_source < 0 ? NAN : (double)t->last_source;
  else if (!strcmp(name, "eval.l1")) *out = t->eval_l1;
  else if (!strcmp(name, "eval.modes")) *out = t->eval_modes;
  else if (other_kind_metric(t, name)) *out = NAN;
  else return tchi_fail(TCH_E_ARG, "unknown metric '%s'", name);
  return TCH_OK;
}
