/* SMC sweep throughput of Reinforced SMC (spec: shared/spec/reinforced-smc.md §4, §9.1):
 * one tchi_smc_run = N particles propagated through T steps of the learnt OU-DDS proposal in
 * K chunks, a twist evaluation and an energy evaluation per particle at every chunk end,
 * ESS-triggered tempered resampling. Reported: wall and CPU seconds per run, particle-steps
 * per second (N T / s), energy evaluations, resamplings, and the gemm GFLOP/s.
 *
 * Sizes are the reference's for the targets without Langevin preconditioning (§9.1: N 2000,
 * T 64, K 16, policy width 256, flow width 64; init_std 20 for GMM40-2D, 1 for funnel-10D and
 * ManyWell-32D). The networks are untrained (the policy's last layer is given small random
 * weights instead of zero_init's zeros, so the drift is not identically zero): the cost of a
 * sweep does not depend on the weights, except through how often it resamples.
 *
 * Usage: bench_smc [runs per target (default 5)] [N (default 2000)]
 * A benchmark, not a test: numbers depend on the machine and its load. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <teacher.h>
#include "diffusion/diffusion.h"
#include "smc/smc.h"

static double clock_s(clockid_t id)
{
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(tch_status s, const char *what)
{
  fprintf(stderr, "bench_smc: %s: %s (%s)\n", what, tch_status_str(s), tch_last_error());
  exit(1);
}

typedef struct target {
  const char *name;
  uint32_t dim;
  double init_std;
  tch_status (*create)(uint32_t dim, tch_env **out);
} target;

static tch_status make_gmm40(uint32_t dim, tch_env **out) { return tch_env_create_gmm40(dim, NULL, out); }
static tch_status make_funnel(uint32_t dim, tch_env **out) { return tch_env_create_funnel(dim, NULL, out); }
static tch_status make_manywell(uint32_t dim, tch_env **out)
{
  (void)dim;
  return tch_env_create_manywell(NULL, out);
}

static void bench_target(const target *tg, int runs, size_t n)
{
  enum { T = 64, K = 16, H = 256, H_FLOW = 64 };
  tch_env *env;
  tch_status s = tg->create(tg->dim, &env);
  if (s) die(s, tg->name);

  tchi_dnet_spec spec;
  tchi_dnet_spec_default(&spec, tg->dim);
  spec.T = T;
  spec.t_emb_dim = spec.s_emb_dim = spec.hidden_dim = spec.harmonics_dim = H;
  tchi_dnet_spec_set_ou_dds(&spec, tg->init_std);
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, tchi_stream_id(TCHI_STREAM_INIT, 0));
  tchi_dnet *net;
  if ((s = tchi_dnet_create(&spec, &rng, &net))) die(s, "net");
  const tchi_dlinear *last = &net->joint.lin[net->joint.n - 1];
  for (size_t i = 0; i < (size_t)last->in * last->out; i++)
    net->params[last->w + i] = (float)(0.05 * (2 * tchi_rng_uniform(&rng) - 1));

  tchi_dflow_spec fspec;
  tchi_dflow_spec_default(&fspec, tg->dim, T);
  fspec.hidden = H_FLOW;
  tchi_dflow *flow;
  if ((s = tchi_dflow_create(&fspec, &rng, &flow))) die(s, "flow");

  tchi_smc_params p;
  tchi_smc_params_default(&p, n, K);
  tchi_smc_sampler smc;
  tchi_smc_sampler_init(&smc);
  tchi_rng_seed(&rng, 2, tchi_stream_id(TCHI_STREAM_USER, 0));
  if ((s = tchi_smc_run(net, flow, env, &p, &rng, &smc))) die(s, "warm-up run");

  double wall = 0, cpu = 0, best = 1e300;
  uint64_t flops = 0, evals = 0, resamples = 0;
  for (int r = 0; r < runs; r++) {
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    uint64_t f0 = tchi_gemm_flops();
    if ((s = tchi_smc_run(net, flow, env, &p, &rng, &smc))) die(s, "run");
    double dw = clock_s(CLOCK_MONOTONIC) - w0, dc = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    wall += dw;
    cpu += dc;
    if (dc < best) best = dc;
    flops += tchi_gemm_flops() - f0;
    evals += smc.n_energy_evals;
    resamples += smc.n_resamples;
  }
  const double steps = (double)n * T;
  printf("%-13s d %-3u N %zu T %d K %d | wall %.3f s  CPU %.3f s (best %.3f) per run | "
         "%.3g particle-steps/s (CPU) | %.1f GFLOP/s | %llu energy evals, %.1f resamplings "
         "per run | log Z %.3f\n",
         tg->name, tg->dim, n, T, K, wall / runs, cpu / runs, best, steps * runs / cpu,
         1e-9 * (double)flops / cpu, (unsigned long long)(evals / (uint64_t)runs),
         (double)resamples / runs, smc.log_z);
  tchi_smc_sampler_destroy(&smc);
  tchi_dflow_free(flow);
  tchi_dnet_free(net);
  tch_env_free(env);
}

int main(int argc, char **argv)
{
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  long n = argc > 2 ? atol(argv[2]) : 2000;
  if (runs < 1 || n < 1) {
    fprintf(stderr, "usage: bench_smc [runs >= 1] [N >= 1]\n");
    return 2;
  }
  static const target targets[] = {
    {"gmm40", 2, 20.0, make_gmm40},
    {"funnel", 10, 1.0, make_funnel},
    {"manywell", 32, 1.0, make_manywell},
  };
  printf("bench_smc: %d timed runs per target after one warm-up, 1 BLIS thread\n", runs);
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++)
    bench_target(&targets[i], runs, (size_t)n);
  return 0;
}
