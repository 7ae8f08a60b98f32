/* Trains a Student sampler with on-policy trajectory balance on the built-in deceptive
 * hypergrid and prints progress, the exact-target L1 and the modes found.
 *
 *   train_grid [--ndim D] [--horizon H] [--steps N] [--seed S] [--loss tb|db]
 *              [--set key=value]...
 *
 * --set takes any configuration key (docs/config.md), e.g. --set teacher.enabled=true.
 * Defaults are the reference's (ndim 2, horizon 64, batch 16, 2 x 256 MLP, and its step
 * count for the grid and method: 6000 for on-policy TB). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <teacher.h>

#define CHECK(call)                                                              \
  do {                                                                           \
    tch_status s_ = (call);                                                      \
    if (s_ < 0) {                                                                \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, tch_status_str(s_),         \
              tch_last_error());                                                 \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Called by the trainer every N steps: print a progress line. */
static int progress(void *user, const tch_trainer *t, uint64_t step)
{
  double t0 = *(double *)user, loss, logz, l1, modes, total;
  tch_trainer_metric(t, "loss.student", &loss);
  tch_trainer_metric(t, "logz.student", &logz);
  tch_trainer_metric(t, "l1", &l1);
  tch_trainer_metric(t, "modes", &modes);
  tch_trainer_metric(t, "modes.total", &total);
  double calls;
  tch_trainer_metric(t, "reward_calls", &calls);
  printf("step %6llu  loss %9.4f  log Z %8.4f  L1(train) %.3e  modes %4.0f/%-4.0f  "
         "reward calls %7.0f  %6.1f s\n",
         (unsigned long long)step, loss, logz, l1, modes, total, calls, now() - t0);
  fflush(stdout);
  return 0;   /* non-zero would stop training */
}

int main(int argc, char **argv)
{
  long ndim = 2, horizon = 64, steps = -1, seed = 0;
  const char *loss = "tb";
  const char *sets[64];
  int n_sets = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--ndim")) ndim = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--horizon")) horizon = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--steps")) steps = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed")) seed = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--loss")) loss = argv[i + 1];
    else if (!strcmp(argv[i], "--set") && n_sets < 64) sets[n_sets++] = argv[i + 1];
    else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
  }

  tch_env *env = NULL;
  tch_config *cfg = NULL;
  tch_trainer *tr = NULL;
  tch_policy *student = NULL;
  const char *kernel = "";
  CHECK(tch_env_create_hypergrid((uint32_t)ndim, (uint32_t)horizon, 1.0, &env));
  CHECK(tch_config_create(&cfg));
  CHECK(tch_config_set_int(cfg, "seed", seed));
  CHECK(tch_config_set_string(cfg, "student.loss", loss));
  for (int i = 0; i < n_sets; i++) {
    char key[128];
    const char *eq = strchr(sets[i], '=');
    if (!eq || (size_t)(eq - sets[i]) >= sizeof key) {
      fprintf(stderr, "--set takes key=value, got '%s'\n", sets[i]);
      return 2;
    }
    memcpy(key, sets[i], (size_t)(eq - sets[i]));
    key[eq - sets[i]] = '\0';
    CHECK(tch_config_set_from_string(cfg, key, eq + 1));
  }
  CHECK(tch_trainer_create(env, cfg, &tr));
  if (steps < 0) {
    uint64_t planned;
    CHECK(tch_trainer_planned_steps(tr, &planned));
    steps = (long)planned;
  }
  CHECK(tch_trainer_get_student(tr, &student));
  CHECK(tch_policy_gemm_kernel(student, &kernel));
  tch_mixer *mixer = NULL;
  const char *schedule = "";
  CHECK(tch_trainer_get_mixer(tr, &mixer));
  CHECK(tch_mixer_schedule(mixer, &schedule));
  printf("libteacher %s: deceptive hypergrid ndim %ld horizon %ld, %s, %ld steps, seed %ld, "
         "BLIS kernel %s\nbehaviour schedule: %s\n", tch_version_string(), ndim, horizon, loss,
         steps, seed, kernel, schedule);

  double t0 = now();
  CHECK(tch_trainer_set_progress(tr, progress, &t0, steps >= 5 ? (uint64_t)steps / 5 : 1));
  CHECK(tch_trainer_step(tr, (uint64_t)steps));
  double train_s = now() - t0;

  double l1, modes, total;
  CHECK(tch_trainer_evaluate(tr, 100000));
  CHECK(tch_trainer_metric(tr, "eval.l1", &l1));
  CHECK(tch_trainer_metric(tr, "modes", &modes));
  CHECK(tch_trainer_metric(tr, "modes.total", &total));
  printf("done: %.1f it/s; modes found during training %.0f/%.0f; "
         "L1 of 100000 fresh samples %.3e\n", steps / train_s, modes, total, l1);

  tch_trainer_free(tr);
  tch_config_free(cfg);
  tch_env_free(env);
  return 0;
}
