/* Benchmark: training iterations per second of on-policy TB (or DB) on the deceptive grid,
 * and the GFLOP/s its gemms achieve. A benchmark, not a test: results go to
 * docs/benchmarks.md with the machine and date.
 *
 *   bench_grid [--ndim 2] [--horizon 64] [--batch 16] [--hidden 256] [--layers 2]
 *              [--steps 200] [--loss tb|db] [--kernel auto] [--threads 1] [--seed 0]
 *              [--teacher] [--set key=value]...
 *
 * The default is the reference's timing setup (first 200 iterations of ndim 2, horizon 64,
 * batch 16, 2 x 256 MLP); the per-step cost grows as trajectories lengthen with training,
 * so the same number of steps must be compared. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "nn/nn.h"
#include "teacher.h"

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
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
  long ndim = 2, horizon = 64, batch = 16, hidden = 256, layers = 2, steps = 200, threads = 1;
  long seed = 0;
  const char *loss = "tb", *kernel = "auto";
  const char *sets[32];
  int n_sets = 0, teacher = 0;
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i];
    if (!strcmp(k, "--teacher")) { teacher = 1; i--; continue; }
    if (i + 1 >= argc) { fprintf(stderr, "%s needs a value\n", k); return 2; }
    const char *v = argv[i + 1];
    if (!strcmp(k, "--ndim")) ndim = atol(v);
    else if (!strcmp(k, "--horizon")) horizon = atol(v);
    else if (!strcmp(k, "--batch")) batch = atol(v);
    else if (!strcmp(k, "--hidden")) hidden = atol(v);
    else if (!strcmp(k, "--layers")) layers = atol(v);
    else if (!strcmp(k, "--steps")) steps = atol(v);
    else if (!strcmp(k, "--threads")) threads = atol(v);
    else if (!strcmp(k, "--seed")) seed = atol(v);
    else if (!strcmp(k, "--loss")) loss = v;
    else if (!strcmp(k, "--kernel")) kernel = v;
    else if (!strcmp(k, "--set") && n_sets < 32) sets[n_sets++] = v;
    else { fprintf(stderr, "unknown option %s\n", k); return 2; }
  }
  tch_env *env;
  tch_config *cfg;
  tch_trainer *tr;
  tch_policy *student;
  const char *kname;
  CHECK(tch_env_create_hypergrid((uint32_t)ndim, (uint32_t)horizon, 1.0, &env));
  CHECK(tch_config_create(&cfg));
  CHECK(tch_config_set_int(cfg, "seed", seed));
  CHECK(tch_config_set_int(cfg, "train.batch_size", batch));
  CHECK(tch_config_set_int(cfg, "nn.hidden_dim", hidden));
  CHECK(tch_config_set_int(cfg, "nn.n_layers", layers));
  CHECK(tch_config_set_int(cfg, "nn.threads", threads));
  CHECK(tch_config_set_string(cfg, "nn.kernel", kernel));
  CHECK(tch_config_set_string(cfg, "student.loss", loss));
  CHECK(tch_config_set_bool(cfg, "teacher.enabled", teacher));
  for (int i = 0; i < n_sets; i++) {
    char key[128];
    const char *eq = strchr(sets[i], '=');
    if (!eq || (size_t)(eq - sets[i]) >= sizeof key) { fprintf(stderr, "bad --set\n"); return 2; }
    memcpy(key, sets[i], (size_t)(eq - sets[i]));
    key[eq - sets[i]] = '\0';
    CHECK(tch_config_set_from_string(cfg, key, eq + 1));
  }
  CHECK(tch_trainer_create(env, cfg, &tr));
  CHECK(tch_trainer_get_student(tr, &student));
  CHECK(tch_policy_gemm_kernel(student, &kname));

  uint64_t f0 = tchi_gemm_flops();
  tchi_gemm_timing(1);
  double t0 = now();
  CHECK(tch_trainer_step(tr, (uint64_t)steps));
  double dt = now() - t0, gemm_s = tchi_gemm_seconds();
  uint64_t flops = tchi_gemm_flops() - f0;
  tchi_gemm_timing(0);
  double loss_v, modes;
  CHECK(tch_trainer_metric(tr, "loss.student", &loss_v));
  CHECK(tch_trainer_metric(tr, "modes", &modes));

  printf("bench_grid: %s%s, ndim %ld horizon %ld batch %ld MLP %ldx%ld, %ld steps, "
         "kernel %s, %ld thread(s)\n", teacher ? "Teacher + " : "", loss, ndim, horizon, batch,
         layers, hidden, steps, kname, threads);
  printf("  %.1f it/s  (%.2f ms/it)\n", steps / dt, 1e3 * dt / steps);
  printf("  gemm: %.2f GFLOP in %.3f s = %.1f GFLOP/s; %.0f%% of the step time\n",
         flops * 1e-9, gemm_s, gemm_s > 0 ? flops * 1e-9 / gemm_s : 0.0, 100.0 * gemm_s / dt);
  printf("  whole step: %.1f GFLOP/s of gemm work per wall second\n", flops * 1e-9 / dt);
  printf("  (last loss %.4f, modes found %.0f)\n", loss_v, modes);
  tch_trainer_free(tr);
  tch_config_free(cfg);
  tch_env_free(env);
  return 0;
}
