/* Fault injection for tch_smc (include/teacher/smc.h): the N-th allocation of create + first
 * run fails, for N = 1, 2, ... until the pair succeeds. Every failure must be TCH_E_NOMEM
 * with a message, leak nothing (ASan), and leave the trainer exactly as an untouched twin
 * (the run may fail while growing the Student's evaluation workspace). Once warm, a run
 * allocates nothing. */
#include <stdio.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "teacher.h"

enum { TS = 8, N = 40 };

static tch_trainer *rsmc_trainer(tch_env *e)
{
  static const char *const kv[] = {"seed", "3", "nn.hidden_dim", "16", "train.batch_size", "16",
                                    "smc.enabled", "true", "smc.n_chunks", "4",
                                    "smc.prefill_batches", "1", "smc.buffer_batches", "2",
                                    "smc.flow_hidden", "16", "smc.init_std", "20", NULL};
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  for (const char *const *s = kv; *s; s += 2)
    ck_assert_int_eq(tch_config_set_from_string(c, s[0], s[1]), TCH_OK);
  tch_trainer *t;
  ck_assert_msg(tch_trainer_create(e, c, &t) == TCH_OK, "%s", tch_last_error());
  tch_config_free(c);
  return t;
}

static tch_status scenario(tch_trainer *t, double *x, double *lw, double *lz)
{
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = N;   /* more than the batch: the Student's workspace must grow */
  tch_smc *s = NULL;
  tch_status st = tch_smc_create(t, &d, &s);
  if (st == TCH_OK) st = tch_smc_run(s, 9, N, x, lw, lz);
  tch_smc_free(s);
  return st;
}

START_TEST(every_allocation_failure_is_reported)
{
  tch_config *c;
  tch_env *e;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", TS), TCH_OK);
  ck_assert_int_eq(tch_env_create_gmm40(2, c, &e), TCH_OK);
  tch_config_free(c);
  tch_trainer *a = rsmc_trainer(e), *b = rsmc_trainer(e);
  ck_assert_int_eq(tch_trainer_step(a, 1), TCH_OK);
  ck_assert_int_eq(tch_trainer_step(b, 1), TCH_OK);

  static double x[N * 2], lw[N], x2[N * 2], lw2[N];
  double lz = 0, lz2 = 0;
  uint64_t n;
  int finished = 0;
  for (n = 1; n < 10000 && !finished; n++) {
    tchi_alloc_fail_at(n);
    tch_status s = scenario(a, x, lw, &lz);
    uint64_t made = tchi_alloc_count();
    tchi_alloc_fail_at(0);
    if (s == TCH_OK) {
      ck_assert_msg(made < n, "allocation %llu failed but the run succeeded", (unsigned long long)n);
      finished = 1;
    } else {
      ck_assert_msg(s == TCH_E_NOMEM, "allocation %llu failed: status %d (%s)", (unsigned long long)n,
                    (int)s, tch_last_error());
      ck_assert_str_ne(tch_last_error(), "");
    }
  }
  ck_assert(finished);
  printf("smc fault injection: %llu allocation sites exercised\n", (unsigned long long)(n - 2));

  /* the same run on the untouched twin gives the same result */
  ck_assert_int_eq(scenario(b, x2, lw2, &lz2), TCH_OK);
  ck_assert(memcmp(x, x2, sizeof x) == 0 && memcmp(lw, lw2, sizeof lw) == 0 && lz == lz2);

  /* warm: a second run allocates nothing */
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = N;
  tch_smc *s;
  ck_assert_int_eq(tch_smc_create(a, &d, &s), TCH_OK);
  ck_assert_int_eq(tch_smc_run(s, 1, N, x, lw, &lz), TCH_OK);
  tchi_alloc_fail_at(1);
  tch_status st = tch_smc_run(s, 2, N, x, lw, &lz);
  uint64_t made = tchi_alloc_count();
  tchi_alloc_fail_at(0);
  ck_assert_msg(st == TCH_OK && made == 0, "a warm run allocated %llu times (%s)",
                (unsigned long long)made, tch_last_error());
  tch_smc_free(s);

  /* training continues identically after the failed runs */
  ck_assert_int_eq(tch_trainer_step(a, 2), TCH_OK);
  ck_assert_int_eq(tch_trainer_step(b, 2), TCH_OK);
  double la, lb;
  ck_assert_int_eq(tch_trainer_metric(a, "loss.student", &la), TCH_OK);
  ck_assert_int_eq(tch_trainer_metric(b, "loss.student", &lb), TCH_OK);
  ck_assert(memcmp(&la, &lb, sizeof la) == 0);
  ck_assert_int_eq(tch_trainer_sample_continuous(a, 4, N, x, lw), TCH_OK);
  ck_assert_int_eq(tch_trainer_sample_continuous(b, 4, N, x2, lw2), TCH_OK);
  ck_assert(memcmp(x, x2, sizeof x) == 0 && memcmp(lw, lw2, sizeof lw) == 0);
  tch_trainer_free(a);
  tch_trainer_free(b);
  tch_env_free(e);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc_fault");
  TCase *tc = tcase_create("alloc");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, every_allocation_failure_is_reported);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
