/* Statistical check of the diffusion trainer on the built-in 25GMM (log Z = 0): a short
 * Teacher run, fixed seed, after which
 *   - the importance-weighted log Z estimate of 2000 fresh trajectories (eval.log_z) is
 *     within 0.25 of 0 (observed |log Z| <= 0.04 at seeds 0, 1, 2 on this machine: a margin
 *     of 6x; a sampler that misses k of the 25 equal-weight modes is off by about
 *     log(25 / (25 - k)), 0.26 for k = 5);
 *   - at least 20 of the 25 modes are covered: 20 or more of 5000 fresh samples lie within
 *     1.5 of the mode's mean (200 expected per mode for a perfect sampler; observed: all 25
 *     modes, the emptiest with >= 29 samples);
 *   - ELBO <= log Z estimate and the ELBO/EUBO bracket contains 0;
 * and on-policy TB, same settings and seed, covers at least 5 modes fewer (observed: 9 modes
 * after 1000 steps, down from 17 at step 250 — the mode collapse the Teacher avoids).
 *
 * Settings, chosen so that a run takes about a minute of CPU: batch 500 (the reference's),
 * T = 50, t_scale = 10 (the initial Brownian sampler already reaches every mode, so the
 * test is about keeping them, not discovering them), networks 64 wide, 1000 steps (no
 * learning-rate decay at this length), seed 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "../tch_check.h"
#include "teacher.h"

#define STEPS 1000
#define N_EVAL 2000
#define N_MODES_SAMPLES 5000

static void ok(tch_status s)
{
  ck_assert_msg(s == TCH_OK, "%s: %s", tch_status_str(s), tch_last_error());
}

static double metric(const tch_trainer *t, const char *name)
{
  double v;
  ok(tch_trainer_metric(t, name, &v));
  return v;
}

/* Trains one configuration; returns the number of covered modes, and the eval metrics. */
static int train(int teacher, double *log_z, double *elbo, double *eubo)
{
  tch_config *c;
  tch_env *e;
  tch_trainer *t;
  ok(tch_config_create(&c));
  ok(tch_config_set_int(c, "env.diffusion.steps", 50));
  ok(tch_config_set_double(c, "env.diffusion.t_scale", 10.0));
  ok(tch_env_create_gmm25(c, &e));
  ok(tch_config_set_int(c, "seed", 1));
  ok(tch_config_set_int(c, "nn.hidden_dim", 64));
  ok(tch_config_set_int(c, "train.steps", STEPS));
  ok(tch_config_set_bool(c, "teacher.enabled", teacher));
  ok(tch_trainer_create(e, c, &t));
  ok(tch_trainer_step(t, STEPS));
  ok(tch_trainer_evaluate(t, N_EVAL));
  *log_z = metric(t, "eval.log_z");
  *elbo = metric(t, "eval.elbo");
  *eubo = metric(t, "eval.eubo");
  double *x = malloc(2 * N_MODES_SAMPLES * sizeof *x);
  ck_assert_ptr_nonnull(x);
  ok(tch_trainer_sample_continuous(t, 99, N_MODES_SAMPLES, x, NULL));
  int count[25] = {0};
  for (int i = 0; i < N_MODES_SAMPLES; i++)
    for (int k = 0; k < 25; k++) {
      double dx = x[2 * i] - (-10.0 + 5.0 * (k / 5)), dy = x[2 * i + 1] - (-10.0 + 5.0 * (k % 5));
      if (dx * dx + dy * dy < 1.5 * 1.5) count[k]++;
    }
  int covered = 0, least = N_MODES_SAMPLES;
  for (int k = 0; k < 25; k++) {
    covered += count[k] >= 20;
    if (count[k] < least) least = count[k];
  }
  printf("%s: %d steps, eval.log_z %.4f, elbo %.4f, eubo %.4f, w2 %.3f, modes covered %d "
         "(emptiest %d of %d samples), skipped %g\n", teacher ? "Teacher" : "TB on-policy", STEPS,
         *log_z, *elbo, *eubo, metric(t, "eval.w2"), covered, least, N_MODES_SAMPLES,
         metric(t, "skipped"));
  fflush(stdout);
  free(x);
  tch_trainer_free(t);
  tch_env_free(e);
  tch_config_free(c);
  return covered;
}

START_TEST(teacher_covers_gmm25)
{
  double lz, elbo, eubo, lz_tb, elbo_tb, eubo_tb;
  int modes = train(1, &lz, &elbo, &eubo);
  ck_assert_msg(fabs(lz) < 0.25, "Teacher: IS log Z %g is not within 0.25 of 0", lz);
  ck_assert_msg(modes >= 20, "Teacher: only %d of 25 modes covered", modes);
  ck_assert(elbo <= lz);
  ck_assert_msg(elbo < 0.0 && eubo > 0.0, "ELBO %g / EUBO %g do not bracket log Z = 0", elbo, eubo);
  int modes_tb = train(0, &lz_tb, &elbo_tb, &eubo_tb);
  ck_assert_msg(modes_tb + 5 <= modes, "on-policy TB covers %d modes, the Teacher %d", modes_tb,
                modes);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("dgmm25");
  TCase *tc = tcase_create("dgmm25");
  tcase_set_timeout(tc, 3000);
  tcase_add_test(tc, teacher_covers_gmm25);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
