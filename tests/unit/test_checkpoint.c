/* Checkpoints: bit-identical resume for every component, and damaged files rejected. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/stat.h>
#include "../tch_check.h"
#include "core/core.h"
#include "teacher.h"

static char dir[256];

static void setup(void)
{
  snprintf(dir, sizeof dir, "/tmp/tch_ckpt_%ld", (long)getpid());
  ck_assert_int_eq(mkdir(dir, 0755) == 0 || access(dir, F_OK) == 0, 1);
}

static void teardown(void)
{
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}

static char *path_of(const char *name)
{
  static char buf[4][320];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static unsigned char *slurp(const char *path, size_t *n)
{
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n);
  ck_assert_uint_eq(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
}

static tch_config *small_config(const char *const *sets)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "nn.hidden_dim", 32), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "train.batch_size", 8), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "seed", 3), TCH_OK);
  for (; sets && *sets; sets += 2)
    ck_assert_msg(tch_config_set_from_string(c, sets[0], sets[1]) == TCH_OK, "%s", tch_last_error());
  return c;
}

static const char *const metric_list[] = {"loss.student", "logz.student", "loss.teacher",
  "logz.teacher", "l1", "modes", "reward_calls", "grad_steps", "buffer.size", "step", NULL};

/* 40 steps straight vs 20 + save + load + 20: identical metrics bits and policy files. */
static void check_resume(const char *const *sets)
{
  tch_env *env;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &env), TCH_OK);
  tch_config *c = small_config(sets);
  tch_trainer *a, *b, *b2;
  ck_assert_int_eq(tch_trainer_create(env, c, &a), TCH_OK);
  ck_assert_int_eq(tch_trainer_step(a, 40), TCH_OK);

  ck_assert_int_eq(tch_trainer_create(env, c, &b), TCH_OK);
  ck_assert_int_eq(tch_trainer_step(b, 20), TCH_OK);
  ck_assert_int_eq(tch_trainer_save(b, path_of("run.tchk")), TCH_OK);
  tch_trainer_free(b);
  tch_env *env2;   /* a fresh env, as a restarted host would have */
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &env2), TCH_OK);
  ck_assert_msg(tch_trainer_load(env2, path_of("run.tchk"), &b2) == TCH_OK, "%s", tch_last_error());
  ck_assert_int_eq(tch_trainer_step(b2, 20), TCH_OK);

  for (const char *const *m = metric_list; *m; m++) {
    double x, y;
    ck_assert_int_eq(tch_trainer_metric(a, *m, &x), TCH_OK);
    ck_assert_int_eq(tch_trainer_metric(b2, *m, &y), TCH_OK);
    ck_assert_msg((isnan(x) && isnan(y)) || memcmp(&x, &y, sizeof x) == 0,
                  "metric %s differs after resume: %.17g vs %.17g", *m, x, y);
  }
  tch_policy *pa, *pb;
  ck_assert_int_eq(tch_trainer_get_student(a, &pa), TCH_OK);
  ck_assert_int_eq(tch_trainer_get_student(b2, &pb), TCH_OK);
  ck_assert_int_eq(tch_policy_save(pa, path_of("a.tchp")), TCH_OK);
  ck_assert_int_eq(tch_policy_save(pb, path_of("b.tchp")), TCH_OK);
  size_t na, nb;
  unsigned char *fa = slurp(path_of("a.tchp"), &na), *fb = slurp(path_of("b.tchp"), &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_int_eq(memcmp(fa, fb, na), 0);
  free(fa);
  free(fb);
  /* and the checkpoints of both runs are byte-identical too */
  ck_assert_int_eq(tch_trainer_save(a, path_of("a.tchk")), TCH_OK);
  ck_assert_int_eq(tch_trainer_save(b2, path_of("b.tchk")), TCH_OK);
  fa = slurp(path_of("a.tchk"), &na);
  fb = slurp(path_of("b.tchk"), &nb);
  ck_assert_uint_eq(na, nb);
  ck_assert_int_eq(memcmp(fa, fb, na), 0);
  free(fa);
  free(fb);
  tch_trainer_free(a);
  tch_trainer_free(b2);
  tch_config_free(c);
  tch_env_free(env);
  tch_env_free(env2);
}

START_TEST(resume_on_policy_tb) { check_resume(NULL); }
END_TEST

START_TEST(resume_teacher_buffer_local_search)
{
  static const char *const sets[] = {"teacher.enabled", "true", "buffer.enabled", "true",
    "buffer.priority", "teacher_reward", "local_search.enabled", "true",
    "mixer.schedule", "student,buffer,teacher+ls,buffer", NULL};
  check_resume(sets);
}
END_TEST

START_TEST(resume_db_teacher_learned_pb)
{
  static const char *const sets[] = {"teacher.enabled", "true", "student.loss", "db",
    "student.learn_pb", "true", "buffer.enabled", "true", "buffer.priority", "loss",
    "mixer.epsilon", "0.05", NULL};
  check_resume(sets);
}
END_TEST

START_TEST(resume_gafn)
{
  static const char *const sets[] = {"gafn.enabled", "true", "gafn.ri_scale", "0.1", NULL};
  check_resume(sets);
}
END_TEST

START_TEST(damaged_checkpoints_rejected)
{
  tch_env *env;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &env), TCH_OK);
  static const char *const sets[] = {"teacher.enabled", "true", "buffer.enabled", "true", NULL};
  tch_config *c = small_config(sets);
  tch_trainer *t, *u;
  ck_assert_int_eq(tch_trainer_create(env, c, &t), TCH_OK);
  ck_assert_int_eq(tch_trainer_step(t, 6), TCH_OK);
  char good[320];
  snprintf(good, sizeof good, "%s", path_of("good.tchk"));
  ck_assert_int_eq(tch_trainer_save(t, good), TCH_OK);
  size_t n;
  unsigned char *b = slurp(good, &n);

  /* every truncation length is rejected as corrupt */
  for (size_t k = 0; k < n; k += (k < 64 ? 1 : 97)) {
    spit(path_of("bad.tchk"), b, k);
    ck_assert_int_eq(tch_trainer_load(env, path_of("bad.tchk"), &u), TCH_E_IO);
    ck_assert_ptr_null(u);
  }
  /* flipped bytes anywhere */
  for (size_t k = 0; k < n; k += 61) {
    b[k] ^= 0x20;
    spit(path_of("bad.tchk"), b, n);
    ck_assert_int_eq(tch_trainer_load(env, path_of("bad.tchk"), &u), TCH_E_IO);
    b[k] ^= 0x20;
  }
  /* a newer format version (with a valid checksum) is TCH_E_VERSION */
  uint32_t fmt = 2;
  memcpy(b + 4, &fmt, 4);
  uint32_t crc = tchi_crc32(0, b, n - 4);
  memcpy(b + n - 4, &crc, 4);
  spit(path_of("bad.tchk"), b, n);
  ck_assert_int_eq(tch_trainer_load(env, path_of("bad.tchk"), &u), TCH_E_VERSION);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "format 2"));
  free(b);
  /* a policy file is not a checkpoint */
  tch_policy *p;
  ck_assert_int_eq(tch_trainer_get_student(t, &p), TCH_OK);
  ck_assert_int_eq(tch_policy_save(p, path_of("p.tchp")), TCH_OK);
  ck_assert_int_eq(tch_trainer_load(env, path_of("p.tchp"), &u), TCH_E_IO);
  /* an env of another shape */
  tch_env *other;
  ck_assert_int_eq(tch_env_create_hypergrid(3, 6, 1.0, &other), TCH_OK);
  ck_assert_int_eq(tch_trainer_load(other, good, &u), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "state_dim 2"));
  ck_assert_ptr_null(u);
  tch_env_free(other);
  /* a failed save leaves the previous checkpoint intact and no temp file behind */
  ck_assert_int_eq(tch_trainer_save(t, path_of("missing/dir/x.tchk")), TCH_E_IO);
  ck_assert_int_eq(tch_trainer_load(env, good, &u), TCH_OK);
  tch_trainer_free(u);
  DIR *d = opendir(dir);
  struct dirent *de;
  while ((de = readdir(d)))
    ck_assert_msg(strstr(de->d_name, ".tmp.") == NULL, "temp file left: %s", de->d_name);
  closedir(d);
  tch_trainer_free(t);
  tch_config_free(c);
  tch_env_free(env);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("checkpoint");
  TCase *tc = tcase_create("checkpoint");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, resume_on_policy_tb);
  tcase_add_test(tc, resume_teacher_buffer_local_search);
  tcase_add_test(tc, resume_db_teacher_learned_pb);
  tcase_add_test(tc, resume_gafn);
  tcase_add_test(tc, damaged_checkpoints_rejected);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
