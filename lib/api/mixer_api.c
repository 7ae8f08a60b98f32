/* Public entry points of tch_mixer. */
#include <math.h>
#include <string.h>
#include "api/api.h"
#include "api/smc_handle.h"
#include "teacher/behaviour.h"
#include "teacher/smc.h"
#include "buffers/buffer.h"
#include "envs/env.h"


tch_status tch_mixer_create(const char *schedule, tch_mixer **out)
{
  CHECK_ARG(out, "out is NULL");
  *out = NULL;
  CHECK_ARG(schedule, "schedule is NULL");
  return tchi_mixer_create_ex(schedule, 1, out);
}

tch_mixer *tch_mixer_retain(tch_mixer *m)
{
  if (m) tchi_ref_inc(&m->ref);
  return m;
}

void tch_mixer_free(tch_mixer *m) { tchi_mixer_release(m); }

tch_status tch_mixer_source(const tch_mixer *m, uint64_t seed, uint64_t step,
                            tch_source *out_source, uint32_t *out_flags)
{
  CHECK_ARG(m && out_source, "mixer and out_source are required");
  uint32_t flags;
  tchi_mixer_source(m, seed, step, out_source, &flags);
  if (out_flags) *out_flags = flags;
  return TCH_OK;
}

tch_status tch_mixer_schedule(const tch_mixer *m, const char **out)
{
  CHECK_ARG(m && out, "mixer and out are required");
  *out = m->text;
  return TCH_OK;
}

tch_status tch_mixer_set_exploration(tch_mixer *m, tch_source src, double epsilon,
                                     double temperature)
{
  CHECK_ARG(m, "mixer is NULL");
  CHECK_ARG(src == TCH_SOURCE_STUDENT || src == TCH_SOURCE_TEACHER,
            "exploration applies to the student and teacher sources");
  CHECK_ARG(epsilon >= 0.0 && epsilon <= 1.0, "epsilon %g is outside [0, 1]", epsilon);
  CHECK_ARG(temperature > 0.0 && isfinite(temperature), "temperature %g must be positive",
            temperature);
  m->eps[src] = epsilon;
  m->temp[src] = temperature;
  return TCH_OK;
}

tch_status tch_mixer_get_exploration(const tch_mixer *m, tch_source src, double *epsilon,
                                     double *temperature)
{
  CHECK_ARG(m, "mixer is NULL");
  CHECK_ARG(src == TCH_SOURCE_STUDENT || src == TCH_SOURCE_TEACHER,
            "exploration applies to the student and teacher sources");
  if (epsilon) *epsilon = m->eps[src];
  if (temperature) *temperature = m->temp[src];
  return TCH_OK;
}

tch_status tch_mixer_set_policy(tch_mixer *m, tch_source src, tch_policy *p)
{
  CHECK_ARG(m, "mixer is NULL");
  CHECK_ARG(src == TCH_SOURCE_STUDENT || src == TCH_SOURCE_TEACHER,
            "policies attach to the student and teacher sources");
  tch_policy *old = m->policy[src];
  m->policy[src] = tch_policy_retain(p);
  tch_policy_free(old);
  return TCH_OK;
}

tch_status tch_mixer_set_buffer(tch_mixer *m, tch_buffer *b)
{
  CHECK_ARG(m, "mixer is NULL");
  tch_buffer *old = m->buffer;
  m->buffer = tch_buffer_retain(b);
  tch_buffer_free(old);
  return TCH_OK;
}

tch_status tch_mixer_draw_discrete(tch_mixer *m, tch_env *env, uint64_t seed, uint64_t step,
                                   size_t n, int32_t *out_states, int32_t *out_actions,
                                   uint32_t *out_len, tch_source *out_source, uint32_t *out_flags)
{
  CHECK_ARG(m && env && out_states && out_actions, "mixer, env, out_states and out_actions are required");
  CHECK_ARG(env->kind == TCHI_ENV_DISCRETE, "env is not discrete");
  tch_source src;
  uint32_t flags;
  tchi_mixer_source(m, seed, step, &src, &flags);
  if (out_source) *out_source = src;
  if (out_flags) *out_flags = flags;
  if (n == 0) return TCH_OK;
  if (src == TCH_SOURCE_SMC)
    return tchi_fail(TCH_E_STATE, "step %llu draws from the smc source, whose particles are "
                     "continuous: use tch_mixer_draw_energy", (unsigned long long)step);
  tch_policy *p = m->policy[src == TCH_SOURCE_TEACHER ? TCH_SOURCE_TEACHER : TCH_SOURCE_STUDENT];
  if (!p)
    return tchi_fail(TCH_E_STATE, "step %llu needs the %s policy (buffer replay rebuilds "
                     "trajectories with the Student's P_B): attach it with tch_mixer_set_policy",
                     (unsigned long long)step, src == TCH_SOURCE_TEACHER ? "teacher" : "student");
  if (src == TCH_SOURCE_BUFFER && !m->buffer)
    return tchi_fail(TCH_E_STATE, "step %llu replays the buffer, but no buffer is attached",
                     (unsigned long long)step);
  /* The same streams a trainer uses for this step. */
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(src == TCH_SOURCE_BUFFER ? TCHI_STREAM_BUFFER
                                           : src == TCH_SOURCE_TEACHER ? TCHI_STREAM_TEACHER
                                           : TCHI_STREAM_STUDENT, step));
  tchi_traj t;
  tchi_traj_init(&t);
  tch_status s;
  if (src == TCH_SOURCE_BUFFER) {
    int32_t *x = NULL;
    s = tchi_alloc_array(&x, n, env->d.state_dim * sizeof(int32_t), 0, "replayed states");
    if (s == TCH_OK && m->buffer->record_dim != env->d.state_dim)
      s = tchi_fail(TCH_E_ARG, "buffer records (%u values) are not states of this env (%u)",
                    (unsigned)m->buffer->record_dim, env->d.state_dim);
    if (s == TCH_OK) s = tchi_buffer_sample(m->buffer, &rng, n, x, NULL);
    if (s == TCH_OK) s = tchi_sample_backward(p, env, &rng, n, x, &t);
    tchi_free(x);
  } else {
    s = tchi_sample_forward(p, env, &rng, n, m->eps[src], m->temp[src], &t, NULL);
  }
  if (s == TCH_OK) tchi_traj_to_public(&t, out_states, out_actions, out_len);
  tchi_traj_destroy(&t);
  return s;
}

/* ---- the SMC source (energy envs) ---------------------------------------------------------- */

tch_status tch_mixer_set_smc(tch_mixer *m, tch_smc *s)
{
  CHECK_ARG(m, "mixer is NULL");
  tch_smc *old = m->smc;
  m->smc = tch_smc_retain(s);
  m->smc_release = tch_smc_free;   /* teacher/mixer.c releases through it (layering) */
  tch_smc_free(old);
  return TCH_OK;
}

tch_status tch_mixer_draw_energy(tch_mixer *m, tch_env *env, uint64_t seed, uint64_t step,
                                 size_t n, double *out_x, double *out_log_w,
                                 tch_source *out_source, uint32_t *out_flags)
{
  CHECK_ARG(m && env && out_x, "mixer, env and out_x are required");
  CHECK_ARG(env->kind == TCHI_ENV_ENERGY, "env is not an energy env");
  tch_source src;
  uint32_t flags;
  tchi_mixer_source(m, seed, step, &src, &flags);
  if (out_source) *out_source = src;
  if (out_flags) *out_flags = flags;
  if (n == 0) return TCH_OK;
  if (src != TCH_SOURCE_SMC)
    return tchi_fail(TCH_E_STATE, "step %llu draws from the %s source, which energy envs do not "
                     "have standalone: tch_mixer_draw_energy draws the smc source only",
                     (unsigned long long)step, src == TCH_SOURCE_TEACHER ? "teacher"
                     : src == TCH_SOURCE_BUFFER ? "buffer" : "student");
  if (!m->smc)
    return tchi_fail(TCH_E_STATE, "step %llu draws from the smc source, but no sampler is "
                     "attached: tch_mixer_set_smc", (unsigned long long)step);
  CHECK_ARG(tchi_smc_handle_env(m->smc) == env,
            "env is not the env of the attached sampler's trainer");
  /* The SMC purpose of (seed, step), as a trainer keys its sweeps; distinct from the stream
   * of tch_smc_run(seed). */
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_SMC, step));
  return tchi_smc_handle_run(m->smc, &rng, n, out_x, out_log_w, NULL);
}
