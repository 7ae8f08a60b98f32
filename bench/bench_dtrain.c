/* Benchmark: seconds per training iteration of the diffusion trainer (public API only), at
 * the reference's sizes by default: 25GMM, batch 500, T = 100, 256-wide networks. A
 * benchmark, not a test: results go to docs/benchmarks.md with the machine and date.
 *
 *   bench_dtrain [--env gmm25|manywell] [--modes tb,per,teacher] [--iters 8] [--warmup 2]
 *                [--batch 500] [--T 100] [--hidden 256] [--threads 1] [--seed 0]
 *                [--set key=value]...
 *
 * Modes: tb (on-policy), per (buffer.enabled), per_ls (+ local_search.enabled), teacher
 * (teacher.enabled). Each mode gets a fresh trainer, --warmup iterations (the first one
 * also computes the reward threshold from extra Student samples), then --iters timed ones.
 * The patterns of diffusion/train.py make iterations differ in cost (per and teacher replay
 * the buffer at odd iterations; the Teacher samples at every fourth; MALA runs at every
 * 50th, so per_ls only shows it with enough iterations), so use a multiple of 4.
 * Printed per mode: mean wall and CPU seconds per iteration (process CPU time: the fairer
 * number on a busy machine; with --threads > 1 it sums the threads) and the fastest
 * 4-iteration block's wall time per iteration (the least disturbed by other load). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "teacher.h"

static double clock_s(clockid_t id)
{
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK(call)                                                                        \
  do {                                                                                     \
    tch_status s_ = (call);                                                                \
    if (s_ < 0) {                                                                          \
      fprintf(stderr, "%s: %s (%s)\n", #call, tch_status_str(s_), tch_last_error());      \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

typedef struct bench_opts {
  const char *env, *modes;
  long iters, warmup, batch, T, hidden, threads, seed;
  const char *sets[32];
  int n_sets;
} bench_opts;

static int apply_sets(tch_config *c, const bench_opts *o)
{
  for (int i = 0; i < o->n_sets; i++) {
    char key[128];
    const char *eq = strchr(o->sets[i], '=');
    if (!eq || (size_t)(eq - o->sets[i]) >= sizeof key) {
      fprintf(stderr, "bad --set '%s'\n", o->sets[i]);
      return 2;
    }
    memcpy(key, o->sets[i], (size_t)(eq - o->sets[i]));
    key[eq - o->sets[i]] = '\0';
    CHECK(tch_config_set_from_string(c, key, eq + 1));
  }
  return 0;
}

/* One mode: a fresh trainer, warm-up, then timed iterations one at a time. */
static int bench_mode(tch_env *env, const bench_opts *o, const char *mode)
{
  int per = !strcmp(mode, "per"), per_ls = !strcmp(mode, "per_ls");
  int teacher = !strcmp(mode, "teacher");
  if (!per && !per_ls && !teacher && strcmp(mode, "tb") != 0) {
    fprintf(stderr, "unknown mode '%s' (tb, per, per_ls, teacher)\n", mode);
    return 2;
  }
  tch_config *c;
  CHECK(tch_config_create(&c));
  CHECK(tch_config_set_int(c, "seed", o->seed));
  CHECK(tch_config_set_int(c, "train.batch_size", o->batch));
  CHECK(tch_config_set_int(c, "nn.hidden_dim", o->hidden));
  CHECK(tch_config_set_int(c, "nn.threads", o->threads));
  CHECK(tch_config_set_bool(c, "buffer.enabled", per || per_ls || teacher));
  CHECK(tch_config_set_bool(c, "local_search.enabled", per_ls));
  CHECK(tch_config_set_bool(c, "teacher.enabled", teacher));
  int rc = apply_sets(c, o);
  if (rc) return rc;
  tch_trainer *t;
  CHECK(tch_trainer_create(env, c, &t));
  if (o->warmup > 0) CHECK(tch_trainer_step(t, (uint64_t)o->warmup));

  double *wall = calloc((size_t)o->iters, sizeof *wall);
  if (!wall) return 1;
  double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
  for (long i = 0; i < o->iters; i++) {
    double a = clock_s(CLOCK_MONOTONIC);
    CHECK(tch_trainer_step(t, 1));
    wall[i] = clock_s(CLOCK_MONOTONIC) - a;
  }
  double w1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
  double best = INFINITY;
  for (long i = 0; i + 4 <= o->iters; i += 4) {
    double b = wall[i] + wall[i + 1] + wall[i + 2] + wall[i + 3];
    if (b < best) best = b;
  }
  double loss;
  CHECK(tch_trainer_metric(t, "loss.student", &loss));
  printf("%-8s %3ld iterations: %.4g s/iter wall, %.4g s/iter CPU", mode, o->iters,
         (w1 - w0) / (double)o->iters, (c1 - c0) / (double)o->iters);
  if (isfinite(best)) printf(", best 4-block %.4g s/iter", best / 4);
  printf(" (loss %.4g)\n", loss);
  fflush(stdout);
  free(wall);
  tch_trainer_free(t);
  tch_config_free(c);
  return 0;
}

int main(int argc, char **argv)
{
  bench_opts o = { .env = "gmm25", .modes = "tb,per,teacher", .iters = 8, .warmup = 2,
                   .batch = 500, .T = 100, .hidden = 256, .threads = 1, .seed = 0 };
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i];
    if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
      puts("bench_dtrain [--env gmm25|manywell] [--modes tb,per,per_ls,teacher] [--iters 8]\n"
           "             [--warmup 2] [--batch 500] [--T 100] [--hidden 256] [--threads 1]\n"
           "             [--seed 0] [--set key=value]...");
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "%s needs a value\n", k);
      return 2;
    }
    const char *v = argv[i + 1];
    if (!strcmp(k, "--env")) o.env = v;
    else if (!strcmp(k, "--modes")) o.modes = v;
    else if (!strcmp(k, "--iters")) o.iters = atol(v);
    else if (!strcmp(k, "--warmup")) o.warmup = atol(v);
    else if (!strcmp(k, "--batch")) o.batch = atol(v);
    else if (!strcmp(k, "--T")) o.T = atol(v);
    else if (!strcmp(k, "--hidden")) o.hidden = atol(v);
    else if (!strcmp(k, "--threads")) o.threads = atol(v);
    else if (!strcmp(k, "--seed")) o.seed = atol(v);
    else if (!strcmp(k, "--set") && o.n_sets < 32) o.sets[o.n_sets++] = v;
    else {
      fprintf(stderr, "unknown option %s\n", k);
      return 2;
    }
  }
  if (o.iters < 1 || o.warmup < 0 || o.batch < 1 || o.T < 1 || o.hidden < 1 || o.threads < 1) {
    fprintf(stderr, "--iters, --batch, --T, --hidden and --threads must be >= 1\n");
    return 2;
  }

  tch_config *ec;
  tch_env *env;
  CHECK(tch_config_create(&ec));
  CHECK(tch_config_set_int(ec, "env.diffusion.steps", o.T));
  if (!strcmp(o.env, "gmm25")) CHECK(tch_env_create_gmm25(ec, &env));
  else if (!strcmp(o.env, "manywell")) CHECK(tch_env_create_manywell(ec, &env));
  else {
    fprintf(stderr, "--env: '%s' is not gmm25 or manywell\n", o.env);
    return 2;
  }
  tch_config_free(ec);
  uint32_t dim = 0;
  CHECK(tch_env_energy_dim(env, &dim));
  printf("bench_dtrain: %s (dim %u), batch %ld, T %ld, hidden %ld, %ld thread(s), %ld warm-up "
         "iteration(s)\n", o.env, dim, o.batch, o.T, o.hidden, o.threads, o.warmup);
  fflush(stdout);

  char modes[256];
  snprintf(modes, sizeof modes, "%s", o.modes);
  int rc = 0;
  for (char *save = NULL, *m = strtok_r(modes, ",", &save); m && !rc; m = strtok_r(NULL, ",", &save))
    rc = bench_mode(env, &o, m);
  tch_env_free(env);
  return rc;
}
