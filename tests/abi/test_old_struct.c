/* ABI: a descriptor from an older header (struct_size covering only the first-version
 * fields, up to user_free) is accepted, the fields it lacks read as zero, and the runtime
 * version matches the header. Public API only (links the shared library). */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <teacher.h>
#include "../tch_check.h"

/* A counter 0..3: action 0 increments, action 1 is EXIT (valid everywhere). Host
 * features (one-hot of the value), as a pre-vocab caller had to provide. */
#define MAXV 3

static int c_step(void *u, size_t n, const int32_t *s, const int32_t *a, int32_t *o)
{
  (void)u;
  (void)a;
  for (size_t i = 0; i < n; i++) o[i] = s[i] + 1;
  return 0;
}

static int c_back(void *u, size_t n, const int32_t *s, const int32_t *a, int32_t *o)
{
  (void)u;
  (void)a;
  for (size_t i = 0; i < n; i++) o[i] = s[i] - 1;
  return 0;
}

static int c_masks(void *u, size_t n, const int32_t *s, uint8_t *fwd, uint8_t *bwd)
{
  (void)u;
  for (size_t i = 0; i < n; i++) {
    fwd[2 * i] = s[i] < MAXV;
    fwd[2 * i + 1] = 1;
    if (bwd) bwd[i] = s[i] > 0;
  }
  return 0;
}

static int c_reward(void *u, size_t n, const int32_t *s, double *out)
{
  (void)u;
  for (size_t i = 0; i < n; i++) out[i] = 0.5 * s[i];
  return 0;
}

static int c_features(void *u, size_t n, const int32_t *s, float *out)
{
  (void)u;
  for (size_t i = 0; i < n; i++)
    for (int j = 0; j <= MAXV; j++) out[i * (MAXV + 1) + (size_t)j] = (float)(s[i] == j);
  return 0;
}

static int freed;
static void c_free(void *u) { (void)u; freed++; }

static const int32_t s0[1] = {0};

static void fill_v1(tch_discrete_env_desc *d)
{
  memset(d, 0, sizeof *d);
  d->struct_size = (uint32_t)offsetof(tch_discrete_env_desc, vocab);   /* the old size */
  d->state_dim = 1;
  d->n_actions = 2;
  d->feat_dim = MAXV + 1;
  d->max_len = MAXV;
  d->s0 = s0;
  d->step = c_step;
  d->backward_step = c_back;
  d->masks = c_masks;
  d->log_reward = c_reward;
  d->features = c_features;
  d->user = &freed;
  d->user_free = c_free;
}

/* Samples a few objects with a fresh policy: the env built from the old desc works. */
static void use_env(tch_env *env)
{
  uint32_t sd = 0, na = 0, ml = 0;
  ck_assert_int_eq(tch_env_dims(env, &sd, &na, &ml), TCH_OK);
  ck_assert_uint_eq(sd, 1);
  ck_assert_uint_eq(na, 2);
  ck_assert_uint_eq(ml, MAXV);
  double lr[2];
  const int32_t xs[2] = {0, 3};
  ck_assert_int_eq(tch_env_log_reward(env, 2, xs, lr), TCH_OK);
  ck_assert_double_eq(lr[1], 1.5);
  tch_policy *p = NULL;
  tch_status s = tch_policy_create(env, NULL, 1, &p);
  ck_assert_msg(s == TCH_OK, "tch_policy_create: %s", tch_last_error());
  int32_t x[64];
  double lpf[64];
  s = tch_policy_sample_discrete(p, env, 7, 64, x, lpf);
  ck_assert_msg(s == TCH_OK, "tch_policy_sample_discrete: %s", tch_last_error());
  for (int i = 0; i < 64; i++) {
    ck_assert_int_ge(x[i], 0);
    ck_assert_int_le(x[i], MAXV);
    ck_assert(lpf[i] <= 0.0);
  }
  tch_policy_free(p);
}

START_TEST(old_struct_size_accepted)
{
  /* Allocate exactly the old size so that a read past it is a heap overflow (ASan). */
  tch_discrete_env_desc full;
  fill_v1(&full);
  size_t old = offsetof(tch_discrete_env_desc, vocab);
  ck_assert_uint_lt(old, sizeof full);
  void *mem = malloc(old);
  ck_assert_ptr_nonnull(mem);
  memcpy(mem, &full, old);
  freed = 0;
  tch_env *env = NULL;
  tch_status s = tch_env_create_discrete((const tch_discrete_env_desc *)mem, &env);
  ck_assert_msg(s == TCH_OK, "old descriptor rejected: %s", tch_last_error());
  ck_assert_ptr_nonnull(env);
  free(mem);   /* the descriptor is copied at create time */
  use_env(env);
  ck_assert_int_eq(freed, 0);
  tch_env_free(env);
  ck_assert_int_eq(freed, 1);
}
END_TEST

START_TEST(old_struct_ignores_fields_past_size)
{
  /* Garbage in the appended fields must not be read: an old caller's struct ends earlier,
   * so these bytes belong to something else. */
  tch_discrete_env_desc d;
  fill_v1(&d);
  static const uint32_t bogus_vocab[1] = {0};   /* invalid if read */
  d.vocab = bogus_vocab;
  d.flags = 0xdeadbeefu;                          /* unknown flags if read */
  d.cond_dim = 7;                                 /* unsupported if read */
  tch_env *env = NULL;
  tch_status s = tch_env_create_discrete(&d, &env);
  ck_assert_msg(s == TCH_OK, "fields past struct_size were read: %s", tch_last_error());
  use_env(env);
  tch_env_free(env);
}
END_TEST

START_TEST(current_struct_size_checks_appended_fields)
{
  /* With the full size the same garbage is seen and rejected. */
  tch_discrete_env_desc d;
  fill_v1(&d);
  d.struct_size = (uint32_t)sizeof d;
  d.cond_dim = 7;
  tch_env *env = (tch_env *)&d;   /* must be reset to NULL */
  ck_assert_int_eq(tch_env_create_discrete(&d, &env), TCH_E_ARG);
  ck_assert_ptr_null(env);
  ck_assert_str_ne(tch_last_error(), "");
  d.cond_dim = 0;
  d.flags = 0x80000000u;
  ck_assert_int_eq(tch_env_create_discrete(&d, &env), TCH_E_ARG);
  ck_assert_ptr_null(env);
  d.flags = 0;
  ck_assert_int_eq(tch_env_create_discrete(&d, &env), TCH_OK);
  tch_env_free(env);
}
END_TEST

START_TEST(too_small_struct_size_rejected)
{
  tch_discrete_env_desc d;
  fill_v1(&d);
  d.struct_size = (uint32_t)offsetof(tch_discrete_env_desc, user_free);   /* lacks user_free */
  tch_env *env = (tch_env *)&d;
  freed = 0;
  ck_assert_int_eq(tch_env_create_discrete(&d, &env), TCH_E_ARG);
  ck_assert_ptr_null(env);
  ck_assert_str_ne(tch_last_error(), "");
  d.struct_size = 0;
  ck_assert_int_eq(tch_env_create_discrete(&d, &env), TCH_E_ARG);
  ck_assert_int_eq(freed, 0);   /* on failure the caller keeps `user` */
}
END_TEST

START_TEST(newer_struct_size_accepted)
{
  /* A caller compiled against a newer header (one more appended field, zero). */
  struct {
    tch_discrete_env_desc d;
    uint64_t appended;
  } big;
  memset(&big, 0, sizeof big);
  fill_v1(&big.d);
  big.d.struct_size = (uint32_t)sizeof big;
  tch_env *env = NULL;
  tch_status s = tch_env_create_discrete(&big.d, &env);
  ck_assert_msg(s == TCH_OK, "newer (longer) descriptor rejected: %s", tch_last_error());
  tch_env_free(env);
}
END_TEST

START_TEST(init_helper_sets_current_size)
{
  tch_discrete_env_desc d;
  memset(&d, 0xff, sizeof d);
  tch_discrete_env_desc_init(&d);
  ck_assert_uint_eq(d.struct_size, sizeof d);
  ck_assert_ptr_null(d.vocab);
  ck_assert_uint_eq(d.flags, 0);
  ck_assert_uint_eq(d.cond_dim, 0);
}
END_TEST

START_TEST(runtime_version_matches_header)
{
  ck_assert_uint_eq(tch_version_number(), TCH_VERSION_NUMBER);
  ck_assert_uint_eq(tch_abi_version(), TCH_ABI_VERSION);
  ck_assert_ptr_nonnull(tch_version_string());
  ck_assert_str_eq(tch_version_string(), TCH_VERSION_STRING);
  ck_assert_uint_eq(TCH_VERSION_NUMBER,
                    TCH_VERSION_MAJOR * 10000 + TCH_VERSION_MINOR * 100 + TCH_VERSION_PATCH);
  char buf[64];
  snprintf(buf, sizeof buf, "%d.%d.%d", TCH_VERSION_MAJOR, TCH_VERSION_MINOR, TCH_VERSION_PATCH);
  ck_assert_str_eq(tch_version_string(), buf);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("abi");
  TCase *tc = tcase_create("struct_size");
  tcase_add_test(tc, old_struct_size_accepted);
  tcase_add_test(tc, old_struct_ignores_fields_past_size);
  tcase_add_test(tc, current_struct_size_checks_appended_fields);
  tcase_add_test(tc, too_small_struct_size_rejected);
  tcase_add_test(tc, newer_struct_size_accepted);
  tcase_add_test(tc, init_helper_sets_current_size);
  suite_add_tcase(s, tc);
  TCase *tv = tcase_create("version");
  tcase_add_test(tv, runtime_version_matches_header);
  suite_add_tcase(s, tv);
  return tch_run_suite(s);
}
