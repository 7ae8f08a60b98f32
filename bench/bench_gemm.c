/* GFLOP/s of tchi_sgemm for the shapes the grid benchmark uses, per kernel context.
 * Usage: bench_gemm [seconds per cell (default 0.2)] [threads (default 1)]
 * A benchmark, not a test: numbers depend on the machine and its load. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "nn/nn.h"

typedef struct shape { size_t m, n, k; int ta, tb; const char *what; } shape;

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
  double secs = argc > 1 ? atof(argv[1]) : 0.2;
  int threads = argc > 2 ? atoi(argv[2]) : 1;
  if (!(secs > 0)) secs = 0.2;
  /* batch 16, hidden 256; hypergrid input 2d+1 for d = 2, 4, 8 */
  static const shape shapes[] = {
    {16, 256, 256, 0, 0, "fwd hidden"},
    {16, 256, 5, 0, 0, "fwd input d=2"},
    {16, 256, 9, 0, 0, "fwd input d=4"},
    {16, 256, 17, 0, 0, "fwd input d=8"},
    {16, 9, 256, 0, 0, "fwd output d=4"},
    {16, 256, 256, 0, 1, "bwd dX = dY W^T"},
    {256, 256, 16, 1, 0, "bwd dW = X^T dY"},
    {128, 256, 256, 0, 0, "fwd batch 128"},
  };
  enum { NSH = sizeof shapes / sizeof shapes[0] };
  static const char *const kernels[] = {"auto", "native", "generic", "skx", "knl", "haswell",
                                        "sandybridge", "penryn", "zen3", "zen2", "zen",
                                        "excavator", "steamroller", "piledriver", "bulldozer"};
  size_t cap = 256 * 256;
  float *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b), *c = malloc(cap * sizeof *c);
  if (!a || !b || !c) return 1;
  for (size_t i = 0; i < cap; i++) {
    a[i] = (float)((i * 7919 % 1000) / 1000.0 - 0.5);
    b[i] = (float)((i * 104729 % 1000) / 1000.0 - 0.5);
    c[i] = 0;
  }
  printf("GFLOP/s, %d thread(s), %.2f s per cell\n%-22s", threads, secs, "shape (m x n x k)");
  for (int s = 0; s < NSH; s++) {
    char lab[32];
    snprintf(lab, sizeof lab, "%zux%zux%zu%s", shapes[s].m, shapes[s].n, shapes[s].k,
             shapes[s].ta ? "(At)" : shapes[s].tb ? "(Bt)" : "");
    printf(" %14s", lab);
  }
  printf("\n");
  for (size_t q = 0; q < sizeof kernels / sizeof kernels[0]; q++) {
    tchi_gemm g;
    if (tchi_gemm_init(&g, kernels[q], threads) != TCH_OK) continue;
    char lab[80];
    snprintf(lab, sizeof lab, "%s [%s]", kernels[q], g.name);
    printf("%-22s", lab);
    for (int s = 0; s < NSH; s++) {
      const shape *sh = &shapes[s];
      size_t lda = sh->ta ? sh->m : sh->k, ldb = sh->tb ? sh->k : sh->n;
      for (int w = 0; w < 3; w++)   /* warm-up (packing buffers, caches) */
        tchi_sgemm(&g, sh->ta, sh->tb, sh->m, sh->n, sh->k, 1, a, lda, b, ldb, 0, c, sh->n);
      uint64_t f0 = tchi_gemm_flops();
      double t0 = now(), t;
      do {
        for (int r = 0; r < 16; r++)
          tchi_sgemm(&g, sh->ta, sh->tb, sh->m, sh->n, sh->k, 1, a, lda, b, ldb, 0, c, sh->n);
        t = now() - t0;
      } while (t < secs);
      printf(" %14.1f", (double)(tchi_gemm_flops() - f0) / t * 1e-9);
      fflush(stdout);
    }
    printf("\n");
  }
  free(a);
  free(b);
  free(c);
  return 0;
}
