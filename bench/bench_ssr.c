/* Benchmark: one TB step of the SSR policy (lib/gfn/ssr.c) on a discovery task, split into
 * forward sampling, loss + analytic gradient, and the Adam update, with the GFLOP/s of its
 * gemms. A benchmark, not a test: results go to docs/benchmarks.md with the machine and
 * date.
 *
 *   bench_ssr [--env qm9str|sehstr] [--batch 32] [--hidden 1024] [--embed 1024]
 *             [--steps 10] [--threads 1] [--kernel auto] [--seed 0]
 *
 * The default is the reference's qm9str setup (settings.yaml: 32 samples per batch,
 * ssr_encoder_hid_dim = ssr_embed_dim = ssr_scorer_hid_dim = 1024, explore_epsilon 0.01).
 * A discovery round of the reference's Teacher method costs one sampling batch and four
 * TB steps (Student and Teacher on the online and the offline batch; the offline batch is
 * re-sampled backward under the uniform P_B, without the network): the estimate printed
 * last is that sum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "gfn/gfn.h"
#include "envs/builtin/seqpa.h"

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* CPU time of this process: on a loaded machine the wall time overstates the cost. */
static double cpu_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define CHECK(call)                                                                        \
  do {                                                                                     \
    tch_status s_ = (call);                                                                \
    if (s_ < 0) {                                                                          \
      fprintf(stderr, "%s: %s\n", #call, tch_last_error());                                \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

int main(int argc, char **argv)
{
  long batch = 32, hidden = 1024, embed = 1024, steps = 10, threads = 1, seed = 0;
  const char *env_name = "qm9str", *kernel = "auto";
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i];
    if (i + 1 >= argc) { fprintf(stderr, "%s needs a value\n", k); return 2; }
    const char *v = argv[i + 1];
    if (!strcmp(k, "--env")) env_name = v;
    else if (!strcmp(k, "--batch")) batch = atol(v);
    else if (!strcmp(k, "--hidden")) hidden = atol(v);
    else if (!strcmp(k, "--embed")) embed = atol(v);
    else if (!strcmp(k, "--steps")) steps = atol(v);
    else if (!strcmp(k, "--threads")) threads = atol(v);
    else if (!strcmp(k, "--seed")) seed = atol(v);
    else if (!strcmp(k, "--kernel")) kernel = v;
    else { fprintf(stderr, "unknown option %s\n", k); return 2; }
  }
  if (batch < 1 || hidden < 1 || embed < 1 || steps < 1 || threads < 1) {
    fprintf(stderr, "sizes must be positive\n");
    return 2;
  }
  tch_env *env = NULL;
  if (!strcmp(env_name, "qm9str")) CHECK(tchi_env_create_qm9str(&env));
  else if (!strcmp(env_name, "sehstr")) CHECK(tchi_env_create_sehstr(&env));
  else { fprintf(stderr, "unknown env %s\n", env_name); return 2; }

  tchi_policy_spec spec = {
    .state_dim = env->d.state_dim, .n_actions = env->d.n_actions, .in_dim = env->in_dim,
    .onehot = env->d.features == NULL, .kernel = kernel, .threads = (int)threads,
    .logz_init = 5.0, .arch = TCHI_ARCH_SSR, .ssr_hidden = (size_t)hidden,
    .ssr_embed = (size_t)embed,
  };
  tch_policy *p;
  CHECK(tchi_policy_new(&spec, (uint64_t)seed, 0, &p));
  tchi_param_group g[2] = {
    {.p = p->mlp.params, .g = p->mlp.grads, .n = p->mlp.n_params, .lr = 1e-4},
    {.pd = &p->log_z, .gd = &p->log_z_grad, .n = 1, .lr = 1e-2},
  };
  tchi_adam opt;
  CHECK(tchi_adam_init(&opt, 2, g));
  tchi_traj t;
  tchi_eval ev;
  tchi_traj_init(&t);
  tchi_eval_init(&ev);
  const size_t B = (size_t)batch, sd = env->d.state_dim;
  int32_t *x = malloc(B * sd * sizeof *x);
  double *log_r = malloc(B * sizeof *log_r);
  if (!x || !log_r) { fprintf(stderr, "out of memory\n"); return 1; }

  printf("env %s, batch %ld, SSR h %ld e %ld (%zu parameters), kernel %s, %ld thread(s)\n",
         env_name, batch, hidden, embed, p->mlp.n_params, p->gemm.name, threads);
  double t_sample = 0, t_loss = 0, t_adam = 0, gemm_s = 0, loss = 0, cpu = 0;
  uint64_t flops = 0;
  size_t pairs = 0, rows = 0;
  for (long it = 0; it <= steps; it++) {   /* iteration 0 warms the workspaces up */
    tchi_rng rng;
    tchi_rng_seed(&rng, (uint64_t)seed, tchi_stream_id(TCHI_STREAM_STUDENT, (uint64_t)it));
    tchi_gemm_timing(1);
    uint64_t f0 = tchi_gemm_flops();
    double c0 = cpu_now(), t0 = now();
    CHECK(tchi_sample_forward(p, env, &rng, B, 0.01, 1.0, &t, NULL));
    tchi_traj_terminals(&t, x);
    CHECK(tchi_env_log_reward(env, B, x, -INFINITY, log_r));
    double t1 = now();
    tchi_mlp_zero_grad(&p->mlp);
    p->log_z_grad = 0.0;
    CHECK(tchi_tb_loss(p, env, &t, &ev, log_r, NULL, 1, NULL, &loss));
    double t2 = now();
    tchi_clip_grad_norm(g, 1, 10.0);
    tchi_adam_step(&opt);
    if (p->log_z < 0.0) p->log_z = 0.0;   /* the reference's logZ_lower */
    double t3 = now(), c3 = cpu_now();
    if (it == 0) continue;
    cpu += c3 - c0;
    t_sample += t1 - t0;
    t_loss += t2 - t1;
    t_adam += t3 - t2;
    gemm_s += tchi_gemm_seconds();
    flops += tchi_gemm_flops() - f0;
    pairs += p->ssr->pairs;
    rows += p->ssr->rows;
  }
  double n = (double)steps, step = (t_sample + t_loss + t_adam) / n;
  printf("per step: sample %.4f s, TB loss + gradient %.4f s (%.0f states, %.0f pairs), "
         "Adam %.4f s; total %.4f s\n", t_sample / n, t_loss / n, (double)rows / n,
         (double)pairs / n, t_adam / n, step);
  printf("CPU time per step %.4f s (wall %.4f s)\n", cpu / n, step);
  printf("gemm: %.2f s of %.2f s, %.1f GFLOP/s, %.1f GFLOP per step; last TB loss %.3f\n",
         gemm_s, t_sample + t_loss + t_adam, (double)flops / 1e9 / (gemm_s > 0 ? gemm_s : 1),
         (double)flops / 1e9 / n, loss);
  printf("discovery round estimate (1 sampling batch + 4 TB steps): %.3f s\n",
         (t_sample + 4.0 * (t_loss + t_adam)) / n);
  free(x);
  free(log_r);
  tchi_adam_destroy(&opt);
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(env);
  return 0;
}
