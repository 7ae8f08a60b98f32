/* Public entry points of tch_policy: argument checks, then the gfn layer. */
#include <math.h>
#include <string.h>
#include "api/api.h"
#include "gfn/gfn.h"


static tch_status check_discrete(const tch_policy *p, const tch_env *e)
{
  CHECK_ARG(p, "policy is NULL");
  CHECK_ARG(e, "env is NULL");
  CHECK_ARG(e->kind == TCHI_ENV_DISCRETE, "env is not discrete");
  return TCH_OK;
}

tch_status tch_policy_create(tch_env *env, const tch_config *c, uint64_t seed, tch_policy **out)
{
  CHECK_ARG(out, "out is NULL");
  *out = NULL;
  CHECK_ARG(env, "env is NULL");
  tchi_policy_spec spec;
  tch_status s = tchi_policy_spec_from_config(c, env, &spec);
  if (s) return s;
  return tchi_policy_new(&spec, seed, 0, out);
}

tch_status tch_policy_clone(const tch_policy *p, tch_policy **out)
{
  CHECK_ARG(out, "out is NULL");
  *out = NULL;
  CHECK_ARG(p, "policy is NULL");
  return tchi_policy_clone(p, out);
}

tch_policy *tch_policy_retain(tch_policy *p)
{
  if (p) tchi_ref_inc(&p->ref);
  return p;
}

void tch_policy_free(tch_policy *p) { tchi_policy_release(p); }

tch_status tch_policy_sample_discrete(tch_policy *p, tch_env *env, uint64_t seed, size_t n,
                                      int32_t *out_states, double *out_log_pf)
{
  tch_status s = check_discrete(p, env);
  if (s) return s;
  if (n == 0) return TCH_OK;
  tchi_traj t;
  tchi_traj_init(&t);
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_USER, 0));
  s = tchi_sample_forward(p, env, &rng, n, 0.0, 1.0, &t, out_log_pf);
  if (s == TCH_OK && out_states) tchi_traj_terminals(&t, out_states);
  tchi_traj_destroy(&t);
  return s;
}

tch_status tch_policy_sample_trajectories(tch_policy *p, tch_env *env, uint64_t seed, size_t n,
                                          double epsilon, double temperature,
                                          int32_t *out_states, int32_t *out_actions,
                                          uint32_t *out_len, double *out_log_pf,
                                          double *out_log_pb)
{
  tch_status s = check_discrete(p, env);
  if (s) return s;
  CHECK_ARG(out_states && out_actions, "out_states and out_actions are required");
  CHECK_ARG(epsilon >= 0.0 && epsilon <= 1.0, "epsilon %g is outside [0, 1]", epsilon);
  CHECK_ARG(temperature > 0.0 && isfinite(temperature), "temperature %g must be positive",
            temperature);
  if (n == 0) return TCH_OK;
  tchi_traj t;
  tchi_eval ev;
  tchi_traj_init(&t);
  tchi_eval_init(&ev);
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_USER, 0));
  s = tchi_sample_forward(p, env, &rng, n, epsilon, temperature, &t, NULL);
  if (s == TCH_OK && (out_log_pf || out_log_pb)) s = tchi_eval_traj(p, env, &t, &ev);
  if (s == TCH_OK) {
    tchi_traj_to_public(&t, out_states, out_actions, out_len);
    if (out_log_pf) memcpy(out_log_pf, ev.log_pf, n * sizeof(double));
    if (out_log_pb) memcpy(out_log_pb, ev.log_pb, n * sizeof(double));
  }
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  return s;
}

tch_status tch_policy_sample_backward(tch_policy *p, tch_env *env, uint64_t seed, size_t n,
                                      const int32_t *terminal_states, int32_t *out_states,
                                      int32_t *out_actions, uint32_t *out_len)
{
  tch_status s = check_discrete(p, env);
  if (s) return s;
  CHECK_ARG(terminal_states && out_states && out_actions,
            "terminal_states, out_states and out_actions are required");
  if (n == 0) return TCH_OK;
  tchi_traj t;
  tchi_traj_init(&t);
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_USER, 1));
  s = tchi_sample_backward(p, env, &rng, n, terminal_states, &t);
  if (s == TCH_OK) tchi_traj_to_public(&t, out_states, out_actions, out_len);
  tchi_traj_destroy(&t);
  return s;
}

tch_status tch_policy_score_discrete(tch_policy *p, tch_env *env, size_t n,
                                     const int32_t *states, const int32_t *actions,
                                     const uint32_t *len, double *out_log_pf, double *out_log_pb)
{
  tch_status s = check_discrete(p, env);
  if (s) return s;
  CHECK_ARG(states && actions && len, "states, actions and len are required");
  if (n == 0) return TCH_OK;
  tchi_traj t;
  tchi_eval ev;
  tchi_traj_init(&t);
  tchi_eval_init(&ev);
  s = tchi_traj_from_public(&t, env, n, states, actions, len);
  if (s == TCH_OK) s = tchi_eval_traj(p, env, &t, &ev);
  if (s == TCH_OK) {
    if (out_log_pf) memcpy(out_log_pf, ev.log_pf, n * sizeof(double));
    if (out_log_pb) memcpy(out_log_pb, ev.log_pb, n * sizeof(double));
  }
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  return s;
}

tch_status tch_policy_log_z(const tch_policy *p, double *out)
{
  CHECK_ARG(p && out, "policy and out are required");
  *out = p->log_z;
  return TCH_OK;
}

tch_status tch_policy_n_params(const tch_policy *p, size_t *out)
{
  CHECK_ARG(p && out, "policy and out are required");
  *out = p->mlp.n_params + 1;
  return TCH_OK;
}

tch_status tch_policy_gemm_kernel(const tch_policy *p, const char **out)
{
  CHECK_ARG(p && out, "policy and out are required");
  *out = p->gemm.name;
  return TCH_OK;
}

tch_status tch_policy_save(const tch_policy *p, const char *path)
{
  CHECK_ARG(p && path, "policy and path are required");
  return tchi_policy_save(p, path);
}

tch_status tch_policy_load(const char *path, tch_policy **out)
{
  CHECK_ARG(out, "out is NULL");
  *out = NULL;
  CHECK_ARG(path, "path is NULL");
  return tchi_policy_load(path, out);
}
