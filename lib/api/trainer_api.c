/* Public entry points of tch_trainer: argument checks, then the trainer layer. */
#include "api/api.h"
#include "trainer/trainer.h"


tch_status tch_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out)
{
  CHECK_ARG(out, "out is NULL");
  *out = NULL;
  CHECK_ARG(env, "env is NULL");
  return tchi_trainer_create(env, c, out);
}

tch_trainer *tch_trainer_retain(tch_trainer *t)
{
  if (t) tchi_ref_inc(&t->ref);
  return t;
}

void tch_trainer_free(tch_trainer *t) { tchi_trainer_release(t); }

tch_status tch_trainer_set_progress(tch_trainer *t, tch_progress_fn fn, void *user,
                                    uint64_t every_n_steps)
{
  CHECK_ARG(t, "trainer is NULL");
  CHECK_ARG(!fn || every_n_steps > 0, "every_n_steps must be > 0");
  t->progress = fn;
  t->progress_user = user;
  t->progress_every = every_n_steps;
  return TCH_OK;
}

tch_status tch_trainer_step(tch_trainer *t, uint64_t n_steps)
{
  CHECK_ARG(t, "trainer is NULL");
  return tchi_trainer_step(t, n_steps);
}

tch_status tch_trainer_evaluate(tch_trainer *t, size_t n_samples)
{
  CHECK_ARG(t, "trainer is NULL");
  CHECK_ARG(n_samples > 0, "n_samples must be > 0");
  return tchi_trainer_evaluate(t, n_samples);
}

tch_status tch_trainer_metric(const tch_trainer *t, const char *name, double *out)
{
  CHECK_ARG(t && name && out, "trainer, name and out are required");
  return tchi_trainer_metric(t, name, out);
}

const char *tch_trainer_next_metric(const tch_trainer *t, const char *prev)
{
  return tchi_trainer_next_metric(t, prev);
}

tch_status tch_trainer_get_student(tch_trainer *t, tch_policy **borrowed)
{
  CHECK_ARG(borrowed, "out is NULL");
  *borrowed = NULL;
  CHECK_ARG(t, "trainer is NULL");
  if (t->kind == TCHI_TRAINER_DIFFUSION)
    return tchi_fail(TCH_E_STATE, "this trainer trains a diffusion sampler (energy env), which "
                     "is not a tch_policy; use tch_trainer_sample_continuous()");
  *borrowed = t->student.policy;
  return TCH_OK;
}

tch_status tch_trainer_get_env(tch_trainer *t, tch_env **borrowed)
{
  CHECK_ARG(borrowed, "out is NULL");
  *borrowed = NULL;
  CHECK_ARG(t, "trainer is NULL");
  *borrowed = t->env;
  return TCH_OK;
}

tch_status tch_trainer_get_config(tch_trainer *t, const tch_config **borrowed)
{
  CHECK_ARG(borrowed, "out is NULL");
  *borrowed = NULL;
  CHECK_ARG(t, "trainer is NULL");
  *borrowed = t->cfg;
  return TCH_OK;
}

tch_status tch_trainer_get_teacher(tch_trainer *t, tch_policy **borrowed)
{
  CHECK_ARG(borrowed, "out is NULL");
  *borrowed = NULL;
  CHECK_ARG(t, "trainer is NULL");
  if (t->kind == TCHI_TRAINER_DIFFUSION)
    return tchi_fail(TCH_E_STATE, "this trainer's Teacher is a diffusion sampler (energy env), "
                     "which is not a tch_policy");
  if (!t->teacher.policy) return tchi_fail(TCH_E_STATE, "this trainer has no Teacher (teacher.enabled is false)");
  *borrowed = t->teacher.policy;
  return TCH_OK;
}

tch_status tch_trainer_get_buffer(tch_trainer *t, tch_buffer **borrowed)
{
  CHECK_ARG(borrowed, "out is NULL");
  *borrowed = NULL;
  CHECK_ARG(t, "trainer is NULL");
  if (!t->buffer)
    return tchi_fail(TCH_E_STATE, "this trainer has no replay buffer handle (buffer.enabled is "
                     "false; the IW buffer of smc.enabled is internal)");
  *borrowed = t->buffer;
  return TCH_OK;
}

tch_status tch_trainer_get_mixer(tch_trainer *t, tch_mixer **borrowed)
{
  CHECK_ARG(borrowed, "out is NULL");
  *borrowed = NULL;
  CHECK_ARG(t, "trainer is NULL");
  if (!t->mixer)
    return tchi_fail(TCH_E_STATE, "this trainer has no behaviour mixer (a diffusion trainer "
                     "follows the reference's fixed iteration patterns)");
  *borrowed = t->mixer;
  return TCH_OK;
}

tch_status tch_trainer_planned_steps(const tch_trainer *t, uint64_t *out)
{
  CHECK_ARG(t && out, "trainer and out are required");
  return tchi_trainer_planned_steps(t, out);
}

tch_status tch_trainer_save(const tch_trainer *t, const char *path)
{
  CHECK_ARG(t && path, "trainer and path are required");
  return tchi_trainer_save(t, path);
}

tch_status tch_trainer_load(tch_env *env, const char *path, tch_trainer **out)
{
  CHECK_ARG(out, "out is NULL");
  *out = NULL;
  CHECK_ARG(env && path, "env and path are required");
  return tchi_trainer_load(env, path, out);
}

tch_status tch_trainer_sample_continuous(tch_trainer *t, uint64_t seed, size_t n, double *out_x,
                                         double *out_log_w)
{
  CHECK_ARG(t, "trainer is NULL");
  if (t->kind != TCHI_TRAINER_DIFFUSION)
    return tchi_fail(TCH_E_STATE, "tch_trainer_sample_continuous needs a diffusion trainer (an "
                     "energy env); sample a discrete trainer's Student with tch_policy_sample_discrete");
  CHECK_ARG(out_x || n == 0, "out_x is NULL");
  if (n == 0) return TCH_OK;
  int ovf = 0;
  (void)tchi_mul_size(tchi_mul_size(n, t->diff->dim, &ovf), sizeof(double), &ovf);
  CHECK_ARG(!ovf, "%zu samples are too many", n);
  return tchi_dtrainer_sample(t, seed, n, out_x, out_log_w);
}
