/* Statistical test (fixed seed): on-policy TB on a small deceptive hypergrid learns the
 * target. Short enough for the default suite.
 *
 * Thresholds: the exact-target L1 of 20 000 fresh Student samples must fall below
 * L1_MAX, and below a third of the untrained policy's L1 measured the same way. A sampler
 * that ignores the reward (uniform over trajectories) or a broken gradient stays near the
 * untrained value; see the comments at the asserts for the measured numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "../tch_check.h"
#include "teacher.h"

#define NDIM 2
#define HORIZON 8
#define STEPS 2000
#define EVAL_N 20000

static double eval_l1(tch_trainer *t)
{
  double l1 = NAN;
  ck_assert_int_eq(tch_trainer_evaluate(t, EVAL_N), TCH_OK);
  ck_assert_int_eq(tch_trainer_metric(t, "eval.l1", &l1), TCH_OK);
  return l1;
}

static void run(const char *loss, double l1_max, int check_logz)
{
  tch_env *env;
  tch_config *cfg;
  tch_trainer *t;
  ck_assert_int_eq(tch_env_create_hypergrid(NDIM, HORIZON, 1.0, &env), TCH_OK);
  ck_assert_int_eq(tch_config_create(&cfg), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(cfg, "seed", 1), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(cfg, "student.loss", loss), TCH_OK);
  ck_assert_int_eq(tch_trainer_create(env, cfg, &t), TCH_OK);
  double l1_0 = eval_l1(t);
  ck_assert_int_eq(tch_trainer_step(t, STEPS), TCH_OK);
  double l1 = eval_l1(t), modes = 0, total = 0, logz = 0;
  ck_assert_int_eq(tch_trainer_metric(t, "modes", &modes), TCH_OK);
  ck_assert_int_eq(tch_trainer_metric(t, "modes.total", &total), TCH_OK);
  ck_assert_int_eq(tch_trainer_metric(t, "logz.student", &logz), TCH_OK);
  printf("%s: L1 untrained %.3e, after %d steps %.3e; modes %.0f/%.0f; log Z %.4f\n", loss,
         l1_0, STEPS, l1, modes, total, logz);
  /* exact log Z = log sum_x R(x) over the enumerated terminal set */
  size_t nx = 0;
  ck_assert_int_eq(tch_env_n_terminal(env, &nx), TCH_OK);
  double *lr = malloc(nx * sizeof *lr), mx = -INFINITY, sum = 0.0;
  ck_assert_int_eq(tch_env_enumerate_terminal(env, nx, NULL, lr), TCH_OK);
  for (size_t i = 0; i < nx; i++) mx = fmax(mx, lr[i]);
  for (size_t i = 0; i < nx; i++) sum += exp(lr[i] - mx);
  double exact = mx + log(sum);
  free(lr);
  printf("%s: exact log Z %.4f\n", loss, exact);
  if (check_logz) ck_assert_double_lt(fabs(logz - exact), 0.1);
  ck_assert_double_lt(l1, l1_max);
  ck_assert_double_lt(l1, l1_0 / 3);
  ck_assert_double_eq(modes, total);
  tch_trainer_free(t);
  tch_config_free(cfg);
  tch_env_free(env);
}

/* Measured (seed 1): TB L1 2.5e-2 -> 1.0e-3, DB 2.5e-2 -> 9.7e-4; the sampling noise floor of
 * the L1 of 20 000 exact samples over 63 states is ~7e-4. TB's log Z must be within 0.1 of
 * the exact log Z (DB has no log Z). */
START_TEST(tb_learns_small_grid) { run("tb", 2.0e-3, 1); }
END_TEST
START_TEST(db_learns_small_grid) { run("db", 2.0e-3, 0); }
END_TEST

int main(void)
{
  Suite *s = suite_create("grid_tb");
  TCase *tc = tcase_create("grid_tb");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, tb_learns_small_grid);
  tcase_add_test(tc, db_learns_small_grid);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
