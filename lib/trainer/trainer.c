/* The Student training loop: sample a batch from the behaviour policy, score it, take one
 * optimiser step. A step either completes or leaves the trainer exactly as before it
 * (weights, optimiser moments, counters, visit statistics): every check that can fail
 * runs before the first mutation. */
#include <math.h>
#include <string.h>
#include "trainer.h"
#include "config/config.h"

static size_t default_window(const tch_env *e)
{
  return e->default_num_empirical ? e->default_num_empirical : 20000;
}

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

/* Looks up every terminal state first (the only step that can fail), then records. */
static tch_status visits_check(const tch_env *e, size_t n, const int32_t *x, int64_t *idx)
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

static double visits_l1(const tchi_visits *v, const tch_env *e)
{
  if (!e->exact || v->count == 0) return NAN;
  double sum = 0.0, inv = 1.0 / (double)v->count;
  for (size_t k = 0; k < e->exact->n; k++) sum += fabs(v->counts[k] * inv - e->exact->p[k]);
  return sum / (double)e->exact->n;
}

void tchi_trainer_release(tch_trainer *t)
{
  if (!t || !tchi_ref_dec(&t->ref)) return;
  tchi_adam_destroy(&t->opt);
  tchi_policy_release(t->student);
  tchi_traj_destroy(&t->traj);
  tchi_eval_destroy(&t->ev);
  tchi_free(t->log_r);
  tchi_free(t->delta);
  tchi_free(t->dres);
  tchi_free(t->terminals);
  visits_destroy(&t->visits);
  tch_config_free(t->cfg);
  tch_env_free(t->env);
  tchi_free(t);
}

tch_status tchi_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out)
{
  *out = NULL;
  if (env->kind != TCHI_ENV_DISCRETE)
    return tchi_fail(TCH_E_ARG, "this trainer needs a discrete env");
  tch_trainer *t = tchi_calloc(1, sizeof *t);
  if (!t) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a trainer");
  tchi_ref_init(&t->ref);
  tchi_traj_init(&t->traj);
  tchi_eval_init(&t->ev);
  t->env = tch_env_retain(env);
  t->eval_l1 = t->eval_modes = NAN;
  t->last_loss = t->last_grad_norm = NAN;
  tch_status s = c ? tch_config_clone(c, &t->cfg) : tch_config_create(&t->cfg);
  if (s) goto fail;

  const tch_config *cf = t->cfg;
  const char *loss = tchi_cfg_string(cf, "student.loss");
  t->loss_kind = strcmp(loss, "db") == 0 ? TCHI_LOSS_DB : TCHI_LOSS_TB;
  if (tchi_cfg_bool(cf, "teacher.enabled") || tchi_cfg_bool(cf, "buffer.enabled")) {
    s = tchi_fail(TCH_E_CONFIG, "teacher.enabled / buffer.enabled are not available in this "
                  "build yet (on-policy training only)");
    goto fail;
  }
  t->seed = (uint64_t)tchi_cfg_int(cf, "seed");
  t->batch = (size_t)tchi_cfg_int(cf, "train.batch_size");
  t->eps = tchi_cfg_double(cf, "mixer.epsilon");
  t->temp = tchi_cfg_double(cf, "mixer.temperature");
  t->reward_exponent = tchi_cfg_double(cf, "student.reward_exponent");
  t->clip_min = tchi_cfg_double(cf, "student.log_reward_clip_min");
  t->grad_clip = tchi_cfg_double(cf, "student.grad_clip");

  tchi_policy_spec spec;
  if ((s = tchi_policy_spec_from_config(cf, env, &spec))) goto fail;
  if ((s = tchi_policy_new(&spec, t->seed, &t->student))) goto fail;

  tchi_param_group groups[2] = {
    { .p = t->student->mlp.params, .g = t->student->mlp.grads, .n = t->student->mlp.n_params,
      .lr = tchi_cfg_double(cf, "student.lr"),
      .weight_decay = tchi_cfg_double(cf, "student.weight_decay") },
    { .pd = &t->student->log_z, .gd = &t->student->log_z_grad, .n = 1,
      .lr = tchi_cfg_double(cf, "student.lr_logz") },
  };
  if ((s = tchi_adam_init(&t->opt, 2, groups))) goto fail;

  size_t B = t->batch, T = (size_t)env->d.max_len + 1;
  if ((s = tchi_alloc_array(&t->log_r, B, sizeof(double), 0, "rewards")) ||
      (s = tchi_alloc_array(&t->delta, B, sizeof(double), 0, "residuals")) ||
      (s = tchi_alloc_array(&t->dres, B * T, sizeof(double), 0, "residuals")) ||
      (s = tchi_alloc_array(&t->terminals, B, env->d.state_dim * sizeof(int32_t), 0, "terminals")))
    goto fail;
  int64_t win = tchi_cfg_int(cf, "metrics.num_empirical");
  if ((s = visits_init(&t->visits, env, win < 0 ? default_window(env) : (size_t)win))) goto fail;
  if ((s = tchi_traj_reserve(&t->traj, env, B))) goto fail;
  *out = t;
  return TCH_OK;
fail:
  tchi_trainer_release(t);
  return s;
}

/* Log-rewards of the batch's terminal states on the training scale (R^beta). */
static tch_status batch_log_rewards(tch_trainer *t)
{
  tchi_traj_terminals(&t->traj, t->terminals);
  tch_status s = tchi_env_log_reward(t->env, t->traj.n, t->terminals, t->clip_min, t->log_r);
  if (s) return s;
  for (size_t i = 0; i < t->traj.n; i++) {
    t->log_r[i] *= t->reward_exponent;
    t->traj.log_r[i] = t->log_r[i];
  }
  return TCH_OK;
}

static tch_status one_step(tch_trainer *t)
{
  tch_policy *p = t->student;
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_STUDENT, t->step));
  tch_status s = tchi_sample_forward(p, t->env, &rng, t->batch, t->eps, t->temp, &t->traj, NULL);
  if (s) return s;
  if ((s = batch_log_rewards(t))) return s;

  int64_t idx_buf[256];
  int64_t *idx = t->batch <= 256 ? idx_buf : NULL;
  if (t->env->exact) {
    if (!idx && (s = tchi_alloc_array(&idx, t->batch, sizeof(int64_t), 0, "visit index"))) return s;
    if ((s = visits_check(t->env, t->batch, t->terminals, idx))) goto out;
  }

  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0.0;
  double loss;
  if (t->loss_kind == TCHI_LOSS_DB)
    s = tchi_db_loss(p, t->env, &t->traj, &t->ev, t->log_r, 1, t->dres, &loss);
  else
    s = tchi_tb_loss(p, t->env, &t->traj, &t->ev, t->log_r, NULL, 1, t->delta, &loss);
  if (s) goto out;
  double norm = tchi_clip_grad_norm(t->opt.grp, t->opt.n_groups, t->grad_clip);
  if (!isfinite(norm)) {
    s = tchi_fail(TCH_E_NUMERIC, "gradient norm is %g at step %llu", norm,
                  (unsigned long long)t->step);
    goto out;
  }
  /* From here on nothing can fail: commit. */
  tchi_adam_step(&t->opt);
  if (t->env->exact) visits_record(&t->visits, t->env, t->batch, idx);
  t->last_loss = loss;
  t->last_grad_norm = norm;
  t->reward_calls += t->batch;
  t->grad_steps++;
  t->step++;
out:
  if (idx != idx_buf) tchi_free(idx);
  return s;
}

tch_status tchi_trainer_step(tch_trainer *t, uint64_t n_steps)
{
  for (uint64_t k = 0; k < n_steps; k++) {
    tch_status s = one_step(t);
    if (s) return s;
    if (t->progress && t->progress_every && t->step % t->progress_every == 0) {
      tchi_callback_error_reset();
      int rc = t->progress(t->progress_user, t, t->step);
      if (rc) return tchi_fail(TCH_STOPPED, "stopped by the progress callback at step %llu",
                               (unsigned long long)t->step);
    }
  }
  return TCH_OK;
}

tch_status tchi_trainer_evaluate(tch_trainer *t, size_t n_samples)
{
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
    s = tchi_sample_forward(t->student, t->env, &rng, m, 0.0, 1.0, &traj, NULL);
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
  "step", "loss.student", "logz.student", "grad_norm.student", "l1", "modes",
  "modes.total", "reward_calls", "grad_steps", "visits", "eval.l1", "eval.modes",
};
#define N_METRICS (sizeof metric_names / sizeof metric_names[0])

const char *tchi_trainer_next_metric(const char *prev)
{
  if (!prev) return metric_names[0];
  for (size_t i = 0; i + 1 < N_METRICS; i++)
    if (strcmp(prev, metric_names[i]) == 0) return metric_names[i + 1];
  return NULL;
}

tch_status tchi_trainer_metric(const tch_trainer *t, const char *name, double *out)
{
  const tchi_exact_target *x = t->env->exact;
  if (!strcmp(name, "step")) *out = (double)t->step;
  else if (!strcmp(name, "loss.student")) *out = t->last_loss;
  else if (!strcmp(name, "logz.student")) *out = t->student->log_z;
  else if (!strcmp(name, "grad_norm.student")) *out = t->last_grad_norm;
  else if (!strcmp(name, "l1")) *out = visits_l1(&t->visits, t->env);
  else if (!strcmp(name, "modes")) *out = x ? (double)t->visits.modes_found : NAN;
  else if (!strcmp(name, "modes.total")) *out = x ? (double)x->n_modes : NAN;
  else if (!strcmp(name, "reward_calls")) *out = (double)t->reward_calls;
  else if (!strcmp(name, "grad_steps")) *out = (double)t->grad_steps;
  else if (!strcmp(name, "visits")) *out = (double)t->visits.total;
  else if (!strcmp(name, "eval.l1")) *out = t->eval_l1;
  else if (!strcmp(name, "eval.modes")) *out = t->eval_modes;
  else return tchi_fail(TCH_E_ARG, "unknown metric '%s'", name);
  return TCH_OK;
}
