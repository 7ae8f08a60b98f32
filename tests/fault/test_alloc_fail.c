/* Fault injection (SQLite style): make the N-th allocation fail, for N = 1, 2, ... until a
 * whole scenario succeeds. Every public call on the way must return TCH_OK or TCH_E_NOMEM,
 * never crash, and leave nothing leaked (run under ASan and valgrind by scripts/test.sh). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "../tch_check.h"
#include "core/core.h"
#include "teacher.h"

/* The scenario: everything a host does in a short session. Returns the first failure. */
static tch_status scenario(const char *path)
{
  tch_env *env = NULL;
  tch_config *cfg = NULL;
  tch_trainer *tr = NULL;
  tch_policy *pol = NULL, *loaded = NULL, *clone = NULL;
  tch_status s;
  enum { N = 4, T = 11 };
  int32_t states[N * T * 2], actions[N * T], x[N * 2];
  uint32_t len[N];
  double lpf[N], lpb[N];
  if ((s = tch_env_create_hypergrid(2, 6, 1.0, &env))) goto out;
  if ((s = tch_config_create(&cfg))) goto out;
  if ((s = tch_config_set_int(cfg, "nn.hidden_dim", 16))) goto out;
  if ((s = tch_config_set_int(cfg, "train.batch_size", N))) goto out;
  if ((s = tch_config_set_string(cfg, "student.loss", "db"))) goto out;
  if ((s = tch_config_set_bool(cfg, "student.learn_pb", 1))) goto out;
  if ((s = tch_trainer_create(env, cfg, &tr))) goto out;
  if ((s = tch_trainer_step(tr, 3))) goto out;
  if ((s = tch_trainer_evaluate(tr, 20))) goto out;
  if ((s = tch_trainer_get_student(tr, &pol))) goto out;
  if ((s = tch_policy_sample_discrete(pol, env, 1, N, x, lpf))) goto out;
  if ((s = tch_policy_sample_trajectories(pol, env, 2, N, 0.1, 1.0, states, actions, len, lpf, lpb)))
    goto out;
  if ((s = tch_policy_score_discrete(pol, env, N, states, actions, len, lpf, lpb))) goto out;
  if ((s = tch_policy_sample_backward(pol, env, 3, N, x, states, actions, len))) goto out;
  if ((s = tch_policy_clone(pol, &clone))) goto out;
  if ((s = tch_policy_save(pol, path))) goto out;
  if ((s = tch_policy_load(path, &loaded))) goto out;
out:
  tch_policy_free(loaded);
  tch_policy_free(clone);
  tch_trainer_free(tr);
  tch_config_free(cfg);
  tch_env_free(env);
  return s;
}

START_TEST(every_allocation_failure_is_reported)
{
  char path[256];
  snprintf(path, sizeof path, "/tmp/tch_fault_%ld.tchp", (long)getpid());
  uint64_t n;
  int finished = 0;
  for (n = 1; n < 100000 && !finished; n++) {
    tchi_alloc_fail_at(n);
    tch_status s = scenario(path);
    uint64_t made = tchi_alloc_count();
    tchi_alloc_fail_at(0);
    if (s == TCH_OK) {
      ck_assert_msg(made < n, "allocation %llu failed but the scenario succeeded",
                    (unsigned long long)n);
      finished = 1;
    } else {
      ck_assert_msg(s == TCH_E_NOMEM, "allocation %llu failed: status %d (%s), expected TCH_E_NOMEM",
                    (unsigned long long)n, (int)s, tch_last_error());
      ck_assert_str_ne(tch_last_error(), "");
    }
  }
  ck_assert(finished);
  printf("fault injection: %llu allocation sites exercised\n", (unsigned long long)(n - 2));
  unlink(path);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("fault");
  TCase *tc = tcase_create("alloc");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, every_allocation_failure_is_reported);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
