/* Seconds per trajectory-balance iteration of the diffusion sampler at the reference's
 * default size (batch 500, T = 100, hidden 256, dims 2 and 32): forward sampling, the TB
 * loss with its gradient, and an Adam step, on one thread; and the TB pass for several
 * chunk sizes (time steps per backward block).
 * Usage: bench_diffusion [iterations (default 5)] [chunk sizes, comma-separated (default 1,2,4,8)]
 * Prints wall and CPU seconds (CPU time is the fairer number on a busy machine) and the
 * GFLOP/s of the gemms. A benchmark, not a test: numbers depend on the machine and its load. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "diffusion/diffusion.h"

static double clock_s(clockid_t id)
{
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct stamp { double wall, cpu; uint64_t flops; } stamp;

static stamp now(void)
{
  return (stamp){clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_THREAD_CPUTIME_ID), tchi_gemm_flops()};
}

static void die(tch_status s, const char *what)
{
  fprintf(stderr, "%s: %s (%s)\n", what, tch_status_str(s), tch_last_error());
  exit(1);
}

static void log_reward(const tchi_dtraj *t, double *log_r)
{
  for (size_t i = 0; i < t->n; i++) {
    const double *x = tchi_dtraj_state(t, i, t->T);
    double a = 0;
    for (uint32_t d = 0; d < t->dim; d++) a += x[d] * x[d];
    log_r[i] = -0.5 * a;
  }
}

static void bench_dim(uint32_t dim, int iters, const uint32_t *chunks, int n_chunks)
{
  enum { BATCH = 500 };
  tchi_dnet_spec spec;
  tchi_dnet_spec_default(&spec, dim);
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, tchi_stream_id(TCHI_STREAM_INIT, 0));
  tchi_dnet *net;
  tch_status s = tchi_dnet_create(&spec, &rng, &net);
  if (s) die(s, "create");
  /* a trained-looking last layer instead of zero_init's zeros (same cost, real values) */
  const tchi_dlinear *last = &net->joint.lin[net->joint.n - 1];
  for (size_t i = 0; i < (size_t)last->in * last->out; i++)
    net->params[last->w + i] = (float)(0.05 * (2 * tchi_rng_uniform(&rng) - 1));
  tchi_param_group groups[TCHI_DNET_MAX_GROUPS];
  size_t ng = tchi_dnet_param_groups(net, 1e-3, 1e-1, 1e-7, groups);
  tchi_adam adam;
  if ((s = tchi_adam_init(&adam, ng, groups))) die(s, "adam");
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  double log_r[BATCH], loss = 0;
  printf("dim %u, batch %d, T %u, hidden %u, kernel %s, %d iterations\n", dim, BATCH, spec.T,
         spec.hidden_dim, net->gemm.name, iters);

  /* full iterations with the default chunk; the first one warms up and is not counted */
  double sw = 0, sc = 0, tw = 0, tc = 0, aw = 0;
  uint64_t sf = 0, tf = 0;
  for (int it = 0; it <= iters; it++) {
    tchi_rng_seed(&rng, 2, (uint64_t)it);
    stamp a = now();
    if ((s = tchi_dsample_forward(net, NULL, &rng, BATCH, 0.0, &t))) die(s, "sample");
    stamp b = now();
    log_reward(&t, log_r);
    tchi_dnet_zero_grad(net);
    if ((s = tchi_dtb_loss(net, &t, log_r, t.log_pf, NULL, 0, 1, NULL, &loss))) die(s, "tb");
    stamp c = now();
    tchi_adam_step(&adam);
    stamp d = now();
    if (it == 0) continue;
    sw += b.wall - a.wall;
    sc += b.cpu - a.cpu;
    sf += b.flops - a.flops;
    tw += c.wall - b.wall;
    tc += c.cpu - b.cpu;
    tf += c.flops - b.flops;
    aw += d.wall - c.wall;
  }
  printf("  per iteration: sampling %.3f s wall / %.3f s CPU (%.1f GFLOP/s CPU), TB + gradient "
         "(chunk %d) %.3f / %.3f s (%.1f GFLOP/s), Adam %.4f s\n",
         sw / iters, sc / iters, (double)sf / sc * 1e-9, tchi_dchunk(net, BATCH, 0), tw / iters, tc / iters,
         (double)tf / tc * 1e-9, aw / iters);
  tchi_gemm_timing(1);
  tchi_rng_seed(&rng, 2, 0);
  stamp a = now();
  if ((s = tchi_dsample_forward(net, NULL, &rng, BATCH, 0.0, &t))) die(s, "sample");
  double g_samp = tchi_gemm_seconds();
  stamp b = now();
  if ((s = tchi_dtb_loss(net, &t, log_r, t.log_pf, NULL, 0, 1, NULL, &loss))) die(s, "tb");
  stamp c = now();
  printf("  inside gemm: sampling %.3f of %.3f s, TB %.3f of %.3f s (wall)\n", g_samp,
         b.wall - a.wall, tchi_gemm_seconds() - g_samp, c.wall - b.wall);
  tchi_gemm_timing(0);
  printf("  total %.3f s wall / %.3f s CPU per iteration, %.1f GFLOP per iteration (loss %.4g)\n",
         (sw + tw + aw) / iters, (sc + tc + aw) / iters, (double)(sf + tf) / iters * 1e-9, loss);

  /* the TB pass alone for each chunk size, on one fixed batch: chunk sizes interleaved
   * round by round, and the fastest round reported, so load changes hit all alike */
  tchi_rng_seed(&rng, 3, 0);
  if ((s = tchi_dsample_forward(net, NULL, &rng, BATCH, 0.0, &t))) die(s, "sample");
  log_reward(&t, log_r);
  double best_w[16], best_c[16], sum_c[16];
  uint64_t flops[16];
  for (int q = 0; q < n_chunks; q++) best_w[q] = best_c[q] = 1e30, sum_c[q] = 0;
  for (int it = 0; it <= iters; it++)
    for (int q = 0; q < n_chunks; q++) {
      tchi_dnet_zero_grad(net);
      stamp a = now();
      if ((s = tchi_dtb_loss(net, &t, log_r, t.log_pf, NULL, chunks[q], 1, NULL, NULL))) die(s, "tb");
      stamp b = now();
      if (it == 0) continue;
      best_w[q] = fmin(best_w[q], b.wall - a.wall);
      best_c[q] = fmin(best_c[q], b.cpu - a.cpu);
      sum_c[q] += b.cpu - a.cpu;
      flops[q] = b.flops - a.flops;
    }
  for (int q = 0; q < n_chunks; q++)
    printf("  TB + gradient, chunk %3u: best %.3f s wall / %.3f s CPU (%.1f GFLOP/s), mean %.3f s CPU\n",
           chunks[q], best_w[q], best_c[q], (double)flops[q] / best_c[q] * 1e-9, sum_c[q] / iters);
  tchi_adam_destroy(&adam);
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}

int main(int argc, char **argv)
{
  int iters = argc > 1 ? atoi(argv[1]) : 5;
  if (iters < 1) iters = 5;
  uint32_t chunks[16] = {1, 2, 4, 8};
  int n_chunks = 4;
  if (argc > 2) {
    n_chunks = 0;
    for (char *p = argv[2]; *p && n_chunks < 16;) {
      long v = strtol(p, &p, 10);
      if (v > 0) chunks[n_chunks++] = (uint32_t)v;
      if (*p == ',') p++;
      else if (*p) break;
    }
  }
  bench_dim(2, iters, chunks, n_chunks);
  bench_dim(32, iters, chunks, n_chunks);
  tchi_gemm_finalize_blis();
  return 0;
}
