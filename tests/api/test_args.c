/* Argument checking of every public function (public headers only, shared library):
 * NULL handles, NULL out-pointers and bad values return the documented status without
 * crashing, set tch_last_error(), and constructors set *out = NULL on failure.
 * *_free(NULL) and *_retain(NULL) are no-ops; status values are pinned. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <teacher.h>
#include "../tch_check.h"

/* ---- helpers ------------------------------------------------------------------------- */

/* Before each checked call, plant a known message so that we can tell whether the call
 * under test wrote its own (tch_last_error has no public "clear"). */
#define SENTINEL "zz.sentinel.key"
static void prime(void)
{
  ck_assert_int_eq(tch_config_describe(SENTINEL, NULL, NULL, NULL, NULL, NULL, NULL), TCH_E_CONFIG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), SENTINEL));
}

/* call must return `want`; a failure must leave fresh, non-empty error text. */
#define EXPECT(want, call)                                                                  \
  do {                                                                                      \
    prime();                                                                                \
    tch_status got_ = (call);                                                               \
    const char *err_ = tch_last_error();                                                    \
    ck_assert_msg(got_ == (want), "%s returned %d (%s), expected %d; last error: %s", #call, \
                  (int)got_, tch_status_str(got_), (int)(want), err_ ? err_ : "(null)");     \
    ck_assert_msg(err_ != NULL, "%s: tch_last_error() is NULL", #call);                      \
    if ((want) < 0)                                                                         \
      ck_assert_msg(err_[0] != '\0' && strstr(err_, SENTINEL) == NULL,                      \
                    "%s failed without setting tch_last_error() (still '%s')", #call, err_); \
  } while (0)

/* A constructor-style call that must fail with `want` and reset *out to NULL. */
#define EXPECT_NULL_OUT(want, out, call)                                                    \
  do {                                                                                      \
    (out) = (void *)&poison;                                                                \
    EXPECT(want, call);                                                                     \
    ck_assert_msg((out) == NULL, "%s failed but did not set *out = NULL", #call);           \
  } while (0)

static int poison;

static tch_status load_text(tch_config *c, const char *text)
{
  return tch_config_load_yaml_string(c, text, strlen(text));
}

#define OK_CALL(call)                                                                       \
  do {                                                                                      \
    tch_status st_ = (call);                                                                \
    ck_assert_msg(st_ == TCH_OK, "%s: %s (%s)", #call, tch_status_str(st_), tch_last_error()); \
  } while (0)

/* Fixture: the built-in 2-D hypergrid, a default config, a policy and a trainer. */
static tch_env *env;
static tch_env *env3;   /* a 3-D grid: a policy of `env` does not fit it */
static tch_config *cfg;
static tch_policy *pol;
static tch_trainer *tr;

static void setup(void)
{
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  OK_CALL(tch_env_create_hypergrid(3, 4, 1.0, &env3));
  OK_CALL(tch_config_create(&cfg));
  OK_CALL(tch_config_set_int(cfg, "nn.hidden_dim", 16));
  OK_CALL(tch_policy_create(env, cfg, 1, &pol));
  OK_CALL(tch_trainer_create(env, cfg, &tr));
}

static void teardown(void)
{
  tch_trainer_free(tr);
  tch_policy_free(pol);
  tch_config_free(cfg);
  tch_env_free(env3);
  tch_env_free(env);
  tr = NULL;
  pol = NULL;
  cfg = NULL;
  env = env3 = NULL;
}

/* A tiny custom env (no enumerable target): a counter 0..3 with the built-in one-hot. */
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
    fwd[2 * i] = s[i] < 3;
    fwd[2 * i + 1] = 1;
    if (bwd) bwd[i] = s[i] > 0;
  }
  return 0;
}
static int c_reward(void *u, size_t n, const int32_t *s, double *out)
{
  (void)u;
  for (size_t i = 0; i < n; i++) out[i] = (double)s[i];
  return 0;
}
static int c_features(void *u, size_t n, const int32_t *s, float *out)
{
  (void)u;
  for (size_t i = 0; i < n; i++) out[i] = (float)s[i];
  return 0;
}
static int user_freed;
static void c_user_free(void *u) { (void)u; user_freed++; }

static const int32_t c_s0[1] = {0};
static const uint32_t c_vocab[1] = {4};

static void counter_desc(tch_discrete_env_desc *d)
{
  tch_discrete_env_desc_init(d);
  d->state_dim = 1;
  d->n_actions = 2;
  d->max_len = 3;
  d->s0 = c_s0;
  d->step = c_step;
  d->backward_step = c_back;
  d->masks = c_masks;
  d->log_reward = c_reward;
  d->vocab = c_vocab;
  d->user = &user_freed;
  d->user_free = c_user_free;
}

/* ---- status.h ------------------------------------------------------------------------ */

START_TEST(status_values_pinned)
{
  ck_assert_int_eq(TCH_OK, 0);
  ck_assert_int_eq(TCH_STOPPED, 1);
  ck_assert_int_eq(TCH_E_ARG, -1);
  ck_assert_int_eq(TCH_E_NOMEM, -2);
  ck_assert_int_eq(TCH_E_STATE, -3);
  ck_assert_int_eq(TCH_E_CONFIG, -4);
  ck_assert_int_eq(TCH_E_CALLBACK, -5);
  ck_assert_int_eq(TCH_E_NUMERIC, -6);
  ck_assert_int_eq(TCH_E_IO, -7);
  ck_assert_int_eq(TCH_E_VERSION, -8);
  ck_assert_int_eq(TCH_E_INTERNAL, -9);
  ck_assert_uint_eq(sizeof(tch_status), sizeof(int));
  ck_assert_int_eq(TCH_PARAM_INT, 1);
  ck_assert_int_eq(TCH_PARAM_DOUBLE, 2);
  ck_assert_int_eq(TCH_PARAM_BOOL, 3);
  ck_assert_int_eq(TCH_PARAM_STRING, 4);
  ck_assert_int_eq(TCH_PARAM_ENUM, 5);
}
END_TEST

START_TEST(status_strings)
{
  const char *seen[11];
  for (int s = -9; s <= 1; s++) {
    const char *t = tch_status_str((tch_status)s);
    ck_assert_msg(t != NULL && t[0] != '\0', "tch_status_str(%d) is NULL or empty", s);
    for (int k = 0; k < s + 9; k++)
      ck_assert_msg(strcmp(seen[k], t) != 0, "tch_status_str(%d) repeats '%s'", s, t);
    seen[s + 9] = t;
  }
  const int unknown[] = {2, 42, -10, -100, 1000000, -2147483647 - 1};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
    ck_assert_ptr_nonnull(tch_status_str((tch_status)unknown[i]));
}
END_TEST

START_TEST(status_misc_entry_points)
{
  ck_assert_ptr_nonnull(tch_last_error());
  tch_set_callback_error(NULL);   /* no crash */
  tch_set_callback_error("text outside any callback");
  (void)tch_last_callback_code();
  tch_set_log_callback(NULL, NULL, 3);   /* off */
  ck_assert_ptr_nonnull(tch_version_string());
  ck_assert_uint_eq(tch_version_number(), TCH_VERSION_NUMBER);
  ck_assert_uint_eq(tch_abi_version(), TCH_ABI_VERSION);
}
END_TEST

/* ---- config.h ------------------------------------------------------------------------ */

START_TEST(config_null_and_bad_args)
{
  tch_config *c = NULL;
  int64_t i;
  double d;
  int b;
  const char *s;

  EXPECT(TCH_E_ARG, tch_config_create(NULL));
  EXPECT_NULL_OUT(TCH_E_ARG, c, tch_config_clone(NULL, &c));
  EXPECT(TCH_E_ARG, tch_config_clone(cfg, NULL));
  ck_assert_ptr_null(tch_config_retain(NULL));
  tch_config_free(NULL);

  EXPECT(TCH_E_ARG, tch_config_load_yaml(NULL, "x.yaml"));
  EXPECT(TCH_E_ARG, tch_config_load_yaml(cfg, NULL));
  EXPECT(TCH_E_IO, tch_config_load_yaml(cfg, "/nonexistent-dir/none.yaml"));
  EXPECT(TCH_E_ARG, tch_config_load_yaml_string(NULL, "seed: 1\n", 8));
  EXPECT(TCH_E_ARG, tch_config_load_yaml_string(cfg, NULL, 8));
  EXPECT(TCH_E_CONFIG, load_text(cfg, "seed: [1\n"));
  EXPECT(TCH_E_CONFIG, load_text(cfg, "teacher:\n  alpah: 1\n"));
  EXPECT(TCH_E_ARG, tch_config_dump_yaml(NULL, "x.yaml"));
  EXPECT(TCH_E_ARG, tch_config_dump_yaml(cfg, NULL));
  EXPECT(TCH_E_IO, tch_config_dump_yaml(cfg, "/nonexistent-dir/out.yaml"));

  EXPECT(TCH_E_ARG, tch_config_set_int(NULL, "seed", 1));
  EXPECT(TCH_E_ARG, tch_config_set_int(cfg, NULL, 1));
  EXPECT(TCH_E_CONFIG, tch_config_set_int(cfg, "no.such.key", 1));
  EXPECT(TCH_E_CONFIG, tch_config_set_int(cfg, "train.batch_size", -2));       /* below min */
  EXPECT(TCH_E_CONFIG, tch_config_set_int(cfg, "student.loss", 1));            /* enum */
  EXPECT(TCH_E_ARG, tch_config_set_double(NULL, "student.lr", 1e-3));
  EXPECT(TCH_E_ARG, tch_config_set_double(cfg, NULL, 1e-3));
  EXPECT(TCH_E_CONFIG, tch_config_set_double(cfg, "no.such.key", 1.0));
  EXPECT(TCH_E_CONFIG, tch_config_set_double(cfg, "student.lr", NAN));
  EXPECT(TCH_E_CONFIG, tch_config_set_double(cfg, "student.lr", -1.0));
  EXPECT(TCH_E_CONFIG, tch_config_set_double(cfg, "mixer.epsilon", 2.0));
  EXPECT(TCH_E_ARG, tch_config_set_bool(NULL, "student.learn_pb", 1));
  EXPECT(TCH_E_ARG, tch_config_set_bool(cfg, NULL, 1));
  EXPECT(TCH_E_CONFIG, tch_config_set_bool(cfg, "no.such.key", 1));
  EXPECT(TCH_E_CONFIG, tch_config_set_bool(cfg, "seed", 1));                   /* wrong type */
  EXPECT(TCH_E_ARG, tch_config_set_string(NULL, "student.loss", "tb"));
  EXPECT(TCH_E_ARG, tch_config_set_string(cfg, NULL, "tb"));
  EXPECT(TCH_E_ARG, tch_config_set_string(cfg, "student.loss", NULL));
  EXPECT(TCH_E_CONFIG, tch_config_set_string(cfg, "no.such.key", "tb"));
  EXPECT(TCH_E_CONFIG, tch_config_set_string(cfg, "student.loss", "no-such-loss"));
  EXPECT(TCH_E_CONFIG, tch_config_set_string(cfg, "seed", "1"));               /* wrong type */
  EXPECT(TCH_E_ARG, tch_config_set_from_string(NULL, "seed", "1"));
  EXPECT(TCH_E_ARG, tch_config_set_from_string(cfg, NULL, "1"));
  EXPECT(TCH_E_ARG, tch_config_set_from_string(cfg, "seed", NULL));
  EXPECT(TCH_E_CONFIG, tch_config_set_from_string(cfg, "no.such.key", "1"));
  EXPECT(TCH_E_CONFIG, tch_config_set_from_string(cfg, "seed", "abc"));
  EXPECT(TCH_E_CONFIG, tch_config_set_from_string(cfg, "student.lr", "fast"));
  EXPECT(TCH_E_CONFIG, tch_config_set_from_string(cfg, "student.learn_pb", "maybe"));

  EXPECT(TCH_E_ARG, tch_config_get_int(NULL, "seed", &i));
  EXPECT(TCH_E_ARG, tch_config_get_int(cfg, NULL, &i));
  EXPECT(TCH_E_ARG, tch_config_get_int(cfg, "seed", NULL));
  EXPECT(TCH_E_CONFIG, tch_config_get_int(cfg, "no.such.key", &i));
  EXPECT(TCH_E_ARG, tch_config_get_double(NULL, "student.lr", &d));
  EXPECT(TCH_E_ARG, tch_config_get_double(cfg, NULL, &d));
  EXPECT(TCH_E_ARG, tch_config_get_double(cfg, "student.lr", NULL));
  EXPECT(TCH_E_CONFIG, tch_config_get_double(cfg, "no.such.key", &d));
  EXPECT(TCH_E_ARG, tch_config_get_bool(NULL, "student.learn_pb", &b));
  EXPECT(TCH_E_ARG, tch_config_get_bool(cfg, NULL, &b));
  EXPECT(TCH_E_ARG, tch_config_get_bool(cfg, "student.learn_pb", NULL));
  EXPECT(TCH_E_CONFIG, tch_config_get_bool(cfg, "no.such.key", &b));
  EXPECT(TCH_E_CONFIG, tch_config_get_bool(cfg, "seed", &b));                  /* wrong type */
  EXPECT(TCH_E_ARG, tch_config_get_string(NULL, "student.loss", &s));
  EXPECT(TCH_E_ARG, tch_config_get_string(cfg, NULL, &s));
  EXPECT(TCH_E_ARG, tch_config_get_string(cfg, "student.loss", NULL));
  EXPECT(TCH_E_CONFIG, tch_config_get_string(cfg, "no.such.key", &s));
  EXPECT(TCH_E_CONFIG, tch_config_get_string(cfg, "seed", &s));                /* wrong type */

  EXPECT(TCH_E_ARG, tch_config_describe(NULL, NULL, NULL, NULL, NULL, NULL, NULL));
  EXPECT(TCH_E_CONFIG, tch_config_describe("no.such.key", NULL, NULL, NULL, NULL, NULL, NULL));
  EXPECT(TCH_OK, tch_config_describe("seed", NULL, NULL, NULL, NULL, NULL, NULL));
}
END_TEST

START_TEST(config_failed_set_leaves_value)
{
  int64_t i = 0;
  OK_CALL(tch_config_set_int(cfg, "train.batch_size", 8));
  EXPECT(TCH_E_CONFIG, tch_config_set_int(cfg, "train.batch_size", -5));
  EXPECT(TCH_E_CONFIG, tch_config_set_from_string(cfg, "train.batch_size", "12abc"));
  OK_CALL(tch_config_get_int(cfg, "train.batch_size", &i));
  ck_assert_int_eq(i, 8);
  const char *s = NULL;
  EXPECT(TCH_E_CONFIG, tch_config_set_string(cfg, "student.loss", "xx"));
  OK_CALL(tch_config_get_string(cfg, "student.loss", &s));
  ck_assert_str_eq(s, "tb");
  /* a YAML file with an error part-way leaves the config unchanged */
  EXPECT(TCH_E_CONFIG, load_text(cfg, "train:\n  batch_size: 4\n  bogus: 1\n"));
  OK_CALL(tch_config_get_int(cfg, "train.batch_size", &i));
  ck_assert_int_eq(i, 8);
}
END_TEST

START_TEST(config_key_iteration)
{
  size_t n = 0;
  int saw_seed = 0;
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) {
    ck_assert_uint_lt(++n, 100000);
    saw_seed |= strcmp(k, "seed") == 0;
    EXPECT(TCH_OK, tch_config_describe(k, NULL, NULL, NULL, NULL, NULL, NULL));
  }
  ck_assert_uint_gt(n, 0);
  ck_assert(saw_seed);
  (void)tch_config_next_key("no.such.key");   /* must not crash */
}
END_TEST

/* ---- env.h --------------------------------------------------------------------------- */

START_TEST(env_create_discrete_bad_desc)
{
  tch_env *e = NULL;
  tch_discrete_env_desc d;
  user_freed = 0;
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_discrete(NULL, &e));
  counter_desc(&d);
  EXPECT(TCH_E_ARG, tch_env_create_discrete(&d, NULL));

#define BAD_DESC(field_assignment)                                                          \
  do {                                                                                      \
    counter_desc(&d);                                                                       \
    field_assignment;                                                                       \
    EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_discrete(&d, &e));                         \
  } while (0)
  BAD_DESC(d.struct_size = 0);
  BAD_DESC(d.struct_size = 8);
  BAD_DESC(d.state_dim = 0);
  BAD_DESC(d.n_actions = 1);
  BAD_DESC(d.n_actions = 0);
  BAD_DESC(d.max_len = 0);
  BAD_DESC(d.s0 = NULL);
  BAD_DESC(d.step = NULL);
  BAD_DESC(d.backward_step = NULL);
  BAD_DESC(d.masks = NULL);
  BAD_DESC(d.log_reward = NULL);
  BAD_DESC(d.vocab = NULL);                                  /* no features, no vocab */
  static const uint32_t zero_vocab[1] = {0};
  BAD_DESC(d.vocab = zero_vocab);
  static const uint32_t small_vocab[1] = {1};
  static const int32_t s0_big[1] = {2};
  BAD_DESC((d.vocab = small_vocab, d.s0 = s0_big));          /* s0 outside vocab */
  BAD_DESC((d.features = c_features, d.feat_dim = 0));       /* host features need feat_dim */
  BAD_DESC(d.flags = 0x80000000u);                           /* unknown flag */
  BAD_DESC(d.cond_dim = 3);                                  /* reserved, must be 0 */
#undef BAD_DESC
  ck_assert_int_eq(user_freed, 0);   /* the caller still owns user on failure */

  counter_desc(&d);
  OK_CALL(tch_env_create_discrete(&d, &e));
  tch_env_free(e);
  ck_assert_int_eq(user_freed, 1);
}
END_TEST

START_TEST(env_builtin_constructors)
{
  tch_env *e = NULL;
  EXPECT(TCH_E_ARG, tch_env_create_hypergrid(2, 8, 1.0, NULL));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_hypergrid(0, 8, 1.0, &e));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_hypergrid(2, 1, 1.0, &e));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_hypergrid(2, 0, 1.0, &e));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_hypergrid(2, 8, NAN, &e));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_hypergrid(2, 8, -1.0, &e));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_hypergrid(2, 8, INFINITY, &e));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_env_create_from_config(NULL, &e));
  EXPECT(TCH_E_ARG, tch_env_create_from_config(cfg, NULL));
  OK_CALL(tch_config_set_string(cfg, "env.name", "custom"));
  EXPECT_NULL_OUT(TCH_E_CONFIG, e, tch_env_create_from_config(cfg, &e));
  OK_CALL(tch_config_set_string(cfg, "env.name", "hypergrid"));
  OK_CALL(tch_env_create_from_config(cfg, &e));
  tch_env_free(e);
  ck_assert_ptr_null(tch_env_retain(NULL));
  tch_env_free(NULL);
}
END_TEST

START_TEST(env_queries_bad_args)
{
  uint32_t sd;
  size_t n;
  double lr[2], l1;
  const int32_t xs[4] = {0, 0, 7, 7};
  const int32_t bad[2] = {99, 99};
  EXPECT(TCH_E_ARG, tch_env_dims(NULL, &sd, NULL, NULL));
  EXPECT(TCH_OK, tch_env_dims(env, NULL, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_env_log_reward(NULL, 2, xs, lr));
  EXPECT(TCH_E_ARG, tch_env_log_reward(env, 2, NULL, lr));
  EXPECT(TCH_E_ARG, tch_env_log_reward(env, 2, xs, NULL));
  EXPECT(TCH_OK, tch_env_log_reward(env, 0, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_env_n_terminal(NULL, &n));
  EXPECT(TCH_E_ARG, tch_env_n_terminal(env, NULL));
  EXPECT(TCH_E_ARG, tch_env_n_modes(NULL, &n));
  EXPECT(TCH_E_ARG, tch_env_n_modes(env, NULL));
  EXPECT(TCH_E_ARG, tch_env_enumerate_terminal(NULL, 4, NULL, NULL));
  EXPECT(TCH_OK, tch_env_enumerate_terminal(env, 0, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_env_empirical_l1(NULL, 2, xs, &l1));
  EXPECT(TCH_E_ARG, tch_env_empirical_l1(env, 2, NULL, &l1));
  EXPECT(TCH_E_ARG, tch_env_empirical_l1(env, 2, xs, NULL));
  EXPECT(TCH_E_ARG, tch_env_empirical_l1(env, 0, xs, &l1));
  EXPECT(TCH_E_ARG, tch_env_empirical_l1(env, 1, bad, &l1));
  EXPECT(TCH_E_ARG, tch_env_count_modes(NULL, 2, xs, &n));
  EXPECT(TCH_E_ARG, tch_env_count_modes(env, 2, NULL, &n));
  EXPECT(TCH_E_ARG, tch_env_count_modes(env, 2, xs, NULL));
  EXPECT(TCH_E_ARG, tch_env_count_modes(env, 1, bad, &n));
  EXPECT(TCH_OK, tch_env_count_modes(env, 0, NULL, &n));
  ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(env_exact_queries_need_enumerable_env)
{
  tch_discrete_env_desc d;
  tch_env *e = NULL;
  size_t n;
  double l1;
  const int32_t xs[1] = {2};
  counter_desc(&d);
  OK_CALL(tch_env_create_discrete(&d, &e));
  EXPECT(TCH_E_STATE, tch_env_n_terminal(e, &n));
  EXPECT(TCH_E_STATE, tch_env_n_modes(e, &n));
  EXPECT(TCH_E_STATE, tch_env_enumerate_terminal(e, 1, NULL, NULL));
  EXPECT(TCH_E_STATE, tch_env_empirical_l1(e, 1, xs, &l1));
  EXPECT(TCH_E_STATE, tch_env_count_modes(e, 1, xs, &n));
  tch_trainer *t = NULL;
  OK_CALL(tch_trainer_create(e, cfg, &t));
  EXPECT(TCH_E_STATE, tch_trainer_evaluate(t, 10));
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- policy.h ------------------------------------------------------------------------ */

START_TEST(policy_handles_bad_args)
{
  tch_policy *p = NULL;
  double v;
  size_t n;
  const char *k;
  EXPECT_NULL_OUT(TCH_E_ARG, p, tch_policy_create(NULL, cfg, 1, &p));
  EXPECT(TCH_E_ARG, tch_policy_create(env, cfg, 1, NULL));
  EXPECT_NULL_OUT(TCH_E_ARG, p, tch_policy_clone(NULL, &p));
  EXPECT(TCH_E_ARG, tch_policy_clone(pol, NULL));
  ck_assert_ptr_null(tch_policy_retain(NULL));
  tch_policy_free(NULL);
  EXPECT(TCH_E_ARG, tch_policy_log_z(NULL, &v));
  EXPECT(TCH_E_ARG, tch_policy_log_z(pol, NULL));
  EXPECT(TCH_E_ARG, tch_policy_n_params(NULL, &n));
  EXPECT(TCH_E_ARG, tch_policy_n_params(pol, NULL));
  EXPECT(TCH_E_ARG, tch_policy_gemm_kernel(NULL, &k));
  EXPECT(TCH_E_ARG, tch_policy_gemm_kernel(pol, NULL));
  EXPECT(TCH_OK, tch_policy_gemm_kernel(pol, &k));
  ck_assert_ptr_nonnull(k);
}
END_TEST

START_TEST(policy_sampling_bad_args)
{
  enum { N = 4, T = 15 };   /* 2-D grid of side 8: max_len 14 */
  int32_t x[N * 2], st[N * T * 2], ac[N * T];
  uint32_t len[N];
  double lpf[N], lpb[N];
  EXPECT(TCH_E_ARG, tch_policy_sample_discrete(NULL, env, 1, N, x, lpf));
  EXPECT(TCH_E_ARG, tch_policy_sample_discrete(pol, NULL, 1, N, x, lpf));
  EXPECT(TCH_E_ARG, tch_policy_sample_discrete(pol, env3, 1, N, x, lpf));   /* does not fit */
  EXPECT(TCH_OK, tch_policy_sample_discrete(pol, env, 1, N, NULL, NULL));   /* both optional */

  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(NULL, env, 1, N, 0.0, 1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, NULL, 1, N, 0.0, 1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env3, 1, N, 0.0, 1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, 1.0, NULL, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, 1.0, st, NULL, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 2.0, 1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, -0.1, 1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, NAN, 1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, 0.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, -1.0, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, NAN, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, INFINITY, st, ac, len, lpf, lpb));
  EXPECT(TCH_OK, tch_policy_sample_trajectories(pol, env, 1, N, 0.5, 2.0, st, ac, NULL, NULL, NULL));
  EXPECT(TCH_OK, tch_policy_sample_trajectories(pol, env, 1, N, 0.0, 1.0, st, ac, len, lpf, lpb));

  /* scoring what was just sampled works; each bad argument is rejected */
  EXPECT(TCH_OK, tch_policy_score_discrete(pol, env, N, st, ac, len, lpf, NULL));
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(NULL, env, N, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, NULL, N, st, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, env, N, NULL, ac, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, env, N, st, NULL, len, lpf, lpb));
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, env, N, st, ac, NULL, lpf, lpb));
  uint32_t bad_len[N];
  memcpy(bad_len, len, sizeof len);
  bad_len[1] = 0;
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, env, N, st, ac, bad_len, lpf, lpb));
  bad_len[1] = T + 1;
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, env, N, st, ac, bad_len, lpf, lpb));
  int32_t bad_ac[N * T];
  memcpy(bad_ac, ac, sizeof ac);
  bad_ac[len[0] - 1] = 7;   /* last action of trajectory 0 is not EXIT (and out of range) */
  EXPECT(TCH_E_ARG, tch_policy_score_discrete(pol, env, N, st, bad_ac, len, lpf, lpb));

  /* backward sampling */
  const int32_t term[N * 2] = {0, 0, 3, 4, 7, 2, 5, 0};
  const int32_t bad_term[N * 2] = {0, 0, 3, 4, 99, 99, 5, 0};
  EXPECT(TCH_OK, tch_policy_sample_backward(pol, env, 1, N, term, st, ac, len));
  EXPECT(TCH_E_ARG, tch_policy_sample_backward(NULL, env, 1, N, term, st, ac, len));
  EXPECT(TCH_E_ARG, tch_policy_sample_backward(pol, NULL, 1, N, term, st, ac, len));
  EXPECT(TCH_E_ARG, tch_policy_sample_backward(pol, env, 1, N, NULL, st, ac, len));
  EXPECT(TCH_E_ARG, tch_policy_sample_backward(pol, env, 1, N, term, NULL, ac, len));
  EXPECT(TCH_E_ARG, tch_policy_sample_backward(pol, env, 1, N, term, st, NULL, len));
  EXPECT(TCH_E_ARG, tch_policy_sample_backward(pol, env, 1, N, bad_term, st, ac, len));
}
END_TEST

START_TEST(policy_files_bad_args)
{
  char path[300];
  const char *base = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/tch_args_XXXXXX", base && *base ? base : "/tmp");
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  close(fd);
  tch_policy *p = NULL;
  EXPECT(TCH_E_ARG, tch_policy_save(NULL, path));
  EXPECT(TCH_E_ARG, tch_policy_save(pol, NULL));
  EXPECT(TCH_E_IO, tch_policy_save(pol, "/nonexistent-dir/p.tchp"));
  EXPECT_NULL_OUT(TCH_E_ARG, p, tch_policy_load(NULL, &p));
  EXPECT(TCH_E_ARG, tch_policy_load(path, NULL));
  EXPECT_NULL_OUT(TCH_E_IO, p, tch_policy_load("/nonexistent-dir/p.tchp", &p));
  EXPECT_NULL_OUT(TCH_E_IO, p, tch_policy_load(path, &p));   /* empty file */
  EXPECT_NULL_OUT(TCH_E_IO, p, tch_policy_load("/tmp", &p));  /* a directory */
  OK_CALL(tch_config_dump_yaml(cfg, path));                   /* a file that is not a policy */
  EXPECT_NULL_OUT(TCH_E_IO, p, tch_policy_load(path, &p));
  OK_CALL(tch_policy_save(pol, path));
  OK_CALL(tch_policy_load(path, &p));
  tch_policy_free(p);
  unlink(path);
}
END_TEST

/* ---- trainer.h ----------------------------------------------------------------------- */

static int progress_noop(void *u, const tch_trainer *t, uint64_t step)
{
  (void)u;
  (void)t;
  (void)step;
  return 0;
}

START_TEST(trainer_bad_args)
{
  tch_trainer *t = NULL;
  double v;
  tch_policy *p = NULL;
  tch_env *e = NULL;
  const tch_config *c = NULL;
  EXPECT_NULL_OUT(TCH_E_ARG, t, tch_trainer_create(NULL, cfg, &t));
  EXPECT(TCH_E_ARG, tch_trainer_create(env, cfg, NULL));
  ck_assert_ptr_null(tch_trainer_retain(NULL));
  tch_trainer_free(NULL);

  EXPECT(TCH_E_ARG, tch_trainer_set_progress(NULL, progress_noop, NULL, 1));
  EXPECT(TCH_E_ARG, tch_trainer_set_progress(tr, progress_noop, NULL, 0));
  EXPECT(TCH_OK, tch_trainer_set_progress(tr, NULL, NULL, 0));   /* removes the callback */
  EXPECT(TCH_E_ARG, tch_trainer_step(NULL, 1));
  EXPECT(TCH_OK, tch_trainer_step(tr, 0));
  EXPECT(TCH_E_ARG, tch_trainer_evaluate(NULL, 10));
  EXPECT(TCH_E_ARG, tch_trainer_evaluate(tr, 0));

  EXPECT(TCH_E_ARG, tch_trainer_metric(NULL, "step", &v));
  EXPECT(TCH_E_ARG, tch_trainer_metric(tr, NULL, &v));
  EXPECT(TCH_E_ARG, tch_trainer_metric(tr, "step", NULL));
  EXPECT(TCH_E_ARG, tch_trainer_metric(tr, "no.such.metric", &v));
  EXPECT(TCH_E_ARG, tch_trainer_metric(tr, "", &v));
  size_t n = 0;
  for (const char *m = tch_trainer_next_metric(tr, NULL); m; m = tch_trainer_next_metric(tr, m)) {
    ck_assert_uint_lt(++n, 10000);
    EXPECT(TCH_OK, tch_trainer_metric(tr, m, &v));
  }
  ck_assert_uint_gt(n, 0);
  (void)tch_trainer_next_metric(NULL, NULL);            /* must not crash */
  (void)tch_trainer_next_metric(tr, "no.such.metric");  /* must not crash */

  EXPECT_NULL_OUT(TCH_E_ARG, p, tch_trainer_get_student(NULL, &p));
  EXPECT(TCH_E_ARG, tch_trainer_get_student(tr, NULL));
  EXPECT_NULL_OUT(TCH_E_ARG, e, tch_trainer_get_env(NULL, &e));
  EXPECT(TCH_E_ARG, tch_trainer_get_env(tr, NULL));
  EXPECT_NULL_OUT(TCH_E_ARG, c, tch_trainer_get_config(NULL, &c));
  EXPECT(TCH_E_ARG, tch_trainer_get_config(tr, NULL));
  EXPECT(TCH_OK, tch_trainer_get_student(tr, &p));
  ck_assert_ptr_nonnull(p);
  EXPECT(TCH_OK, tch_trainer_get_env(tr, &e));
  ck_assert_ptr_eq(e, env);
  EXPECT(TCH_OK, tch_trainer_get_config(tr, &c));
  ck_assert_ptr_nonnull(c);
}
END_TEST

START_TEST(trainer_components_and_checkpoints_bad_args)
{
  tch_policy *p = NULL;
  tch_buffer *b = NULL;
  tch_mixer *m = NULL;
  tch_trainer *t = NULL;
  uint64_t steps;
  /* the default trainer has no Teacher and no buffer */
  EXPECT_NULL_OUT(TCH_E_ARG, p, tch_trainer_get_teacher(NULL, &p));
  EXPECT(TCH_E_ARG, tch_trainer_get_teacher(tr, NULL));
  EXPECT_NULL_OUT(TCH_E_STATE, p, tch_trainer_get_teacher(tr, &p));
  EXPECT_NULL_OUT(TCH_E_ARG, b, tch_trainer_get_buffer(NULL, &b));
  EXPECT(TCH_E_ARG, tch_trainer_get_buffer(tr, NULL));
  EXPECT_NULL_OUT(TCH_E_STATE, b, tch_trainer_get_buffer(tr, &b));
  EXPECT_NULL_OUT(TCH_E_ARG, m, tch_trainer_get_mixer(NULL, &m));
  EXPECT(TCH_E_ARG, tch_trainer_get_mixer(tr, NULL));
  EXPECT(TCH_OK, tch_trainer_get_mixer(tr, &m));
  ck_assert_ptr_nonnull(m);
  EXPECT(TCH_E_ARG, tch_trainer_planned_steps(NULL, &steps));
  EXPECT(TCH_E_ARG, tch_trainer_planned_steps(tr, NULL));
  EXPECT(TCH_OK, tch_trainer_planned_steps(tr, &steps));
  ck_assert_uint_eq(steps, 6000);   /* (2, 8) on-policy: 4000 x 1.5 */
  EXPECT(TCH_E_ARG, tch_trainer_save(NULL, "/tmp/x.tchk"));
  EXPECT(TCH_E_ARG, tch_trainer_save(tr, NULL));
  EXPECT(TCH_E_IO, tch_trainer_save(tr, "/nonexistent-dir/x.tchk"));
  EXPECT(TCH_E_ARG, tch_trainer_load(env, "/tmp/x.tchk", NULL));
  EXPECT_NULL_OUT(TCH_E_ARG, t, tch_trainer_load(NULL, "/tmp/x.tchk", &t));
  EXPECT_NULL_OUT(TCH_E_ARG, t, tch_trainer_load(env, NULL, &t));
  EXPECT_NULL_OUT(TCH_E_IO, t, tch_trainer_load(env, "/nonexistent-dir/x.tchk", &t));
  /* config combinations that cannot work are configuration errors */
  tch_config *c2;
  OK_CALL(tch_config_create(&c2));
  OK_CALL(tch_config_set_string(c2, "mixer.schedule", "student,teacher"));
  EXPECT_NULL_OUT(TCH_E_CONFIG, t, tch_trainer_create(env, c2, &t));
  OK_CALL(tch_config_set_string(c2, "mixer.schedule", "student,buffer"));
  EXPECT_NULL_OUT(TCH_E_CONFIG, t, tch_trainer_create(env, c2, &t));
  OK_CALL(tch_config_set_string(c2, "mixer.schedule", "studnt"));
  EXPECT_NULL_OUT(TCH_E_CONFIG, t, tch_trainer_create(env, c2, &t));
  OK_CALL(tch_config_set_string(c2, "mixer.schedule", "auto"));
  OK_CALL(tch_config_set_bool(c2, "gafn.enabled", 1));
  OK_CALL(tch_config_set_bool(c2, "teacher.enabled", 1));
  EXPECT_NULL_OUT(TCH_E_CONFIG, t, tch_trainer_create(env, c2, &t));
  tch_config_free(c2);
}
END_TEST

START_TEST(mixer_bad_args)
{
  tch_mixer *m = NULL;
  tch_source src;
  uint32_t flags;
  const char *text;
  double e, tmp;
  EXPECT_NULL_OUT(TCH_E_ARG, m, tch_mixer_create(NULL, &m));
  EXPECT(TCH_E_ARG, tch_mixer_create("student", NULL));
  EXPECT_NULL_OUT(TCH_E_CONFIG, m, tch_mixer_create("nobody", &m));
  ck_assert_ptr_null(tch_mixer_retain(NULL));
  tch_mixer_free(NULL);
  OK_CALL(tch_mixer_create("student,teacher", &m));
  EXPECT(TCH_E_ARG, tch_mixer_source(NULL, 0, 0, &src, &flags));
  EXPECT(TCH_E_ARG, tch_mixer_source(m, 0, 0, NULL, &flags));
  EXPECT(TCH_OK, tch_mixer_source(m, 0, 1, &src, NULL));
  ck_assert_int_eq(src, TCH_SOURCE_TEACHER);
  EXPECT(TCH_E_ARG, tch_mixer_schedule(NULL, &text));
  EXPECT(TCH_E_ARG, tch_mixer_schedule(m, NULL));
  EXPECT(TCH_E_ARG, tch_mixer_set_exploration(NULL, TCH_SOURCE_STUDENT, 0.1, 1.0));
  EXPECT(TCH_E_ARG, tch_mixer_set_exploration(m, TCH_SOURCE_STUDENT, -0.1, 1.0));
  EXPECT(TCH_E_ARG, tch_mixer_set_exploration(m, TCH_SOURCE_STUDENT, 0.1, 0.0));
  EXPECT(TCH_E_ARG, tch_mixer_set_exploration(m, (tch_source)7, 0.1, 1.0));
  EXPECT(TCH_E_ARG, tch_mixer_get_exploration(NULL, TCH_SOURCE_STUDENT, &e, &tmp));
  EXPECT(TCH_E_ARG, tch_mixer_get_exploration(m, TCH_SOURCE_BUFFER, &e, &tmp));
  EXPECT(TCH_E_ARG, tch_mixer_set_policy(NULL, TCH_SOURCE_STUDENT, pol));
  EXPECT(TCH_E_ARG, tch_mixer_set_policy(m, TCH_SOURCE_BUFFER, pol));
  EXPECT(TCH_E_ARG, tch_mixer_set_buffer(NULL, NULL));
  EXPECT(TCH_OK, tch_mixer_set_buffer(m, NULL));
  int32_t st[16 * 15 * 2], ac[16 * 15];
  uint32_t len[16];
  EXPECT(TCH_E_ARG, tch_mixer_draw_discrete(NULL, env, 0, 0, 1, st, ac, len, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_mixer_draw_discrete(m, NULL, 0, 0, 1, st, ac, len, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_mixer_draw_discrete(m, env, 0, 0, 1, NULL, ac, len, NULL, NULL));
  EXPECT(TCH_E_STATE, tch_mixer_draw_discrete(m, env, 0, 1, 1, st, ac, len, NULL, NULL));
  tch_mixer_free(m);
}
END_TEST

START_TEST(buffer_bad_args)
{
  tch_buffer *b = NULL;
  size_t n;
  uint32_t rd;
  EXPECT_NULL_OUT(TCH_E_ARG, b, tch_buffer_create(0, 10, TCH_PRIORITY_NONE, 0.01, &b));
  EXPECT_NULL_OUT(TCH_E_ARG, b, tch_buffer_create(2, 0, TCH_PRIORITY_NONE, 0.01, &b));
  EXPECT_NULL_OUT(TCH_E_ARG, b, tch_buffer_create(2, 10, (tch_priority)9, 0.01, &b));
  EXPECT_NULL_OUT(TCH_E_ARG, b, tch_buffer_create(2, 10, TCH_PRIORITY_REWARD, 0.0, &b));
  EXPECT(TCH_E_ARG, tch_buffer_create(2, 10, TCH_PRIORITY_NONE, 0.01, NULL));
  ck_assert_ptr_null(tch_buffer_retain(NULL));
  tch_buffer_free(NULL);
  OK_CALL(tch_buffer_create(2, 10, TCH_PRIORITY_REWARD, 0.01, &b));
  int32_t x[2] = {1, 1}, out[2];
  double lr = 0.0, nan_lr = NAN;
  EXPECT(TCH_E_ARG, tch_buffer_add(NULL, 1, x, &lr, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_add(b, 1, NULL, &lr, NULL));
  EXPECT(TCH_E_NUMERIC, tch_buffer_add(b, 1, x, &nan_lr, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_add_discrete(NULL, 1, x, &lr));
  EXPECT(TCH_E_STATE, tch_buffer_sample(b, 1, 1, out, NULL));
  EXPECT(TCH_OK, tch_buffer_add_discrete(b, 1, x, &lr));
  EXPECT(TCH_E_ARG, tch_buffer_sample(NULL, 1, 1, out, NULL));
  EXPECT(TCH_OK, tch_buffer_sample(b, 1, 1, out, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_size(NULL, &n));
  EXPECT(TCH_E_ARG, tch_buffer_size(b, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_capacity(b, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_record_dim(NULL, &rd));
  EXPECT(TCH_E_ARG, tch_buffer_get(b, 5, out, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_get(NULL, 0, out, NULL, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_clear(NULL));
  int32_t st[4 * 15 * 2], ac[4 * 15];
  uint32_t len[4];
  EXPECT(TCH_E_ARG, tch_buffer_sample_trajectories(NULL, pol, env, 1, 4, st, ac, len, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_sample_trajectories(b, NULL, env, 1, 4, st, ac, len, NULL));
  EXPECT(TCH_E_ARG, tch_buffer_sample_trajectories(b, pol, env3, 1, 4, st, ac, len, NULL));
  EXPECT(TCH_OK, tch_buffer_sample_trajectories(b, pol, env, 1, 4, st, ac, len, NULL));
  EXPECT(TCH_OK, tch_buffer_clear(b));
  tch_buffer_free(b);
}
END_TEST

START_TEST(trainer_step_then_metrics)
{
  double v;
  OK_CALL(tch_trainer_step(tr, 2));
  OK_CALL(tch_trainer_metric(tr, "step", &v));
  ck_assert_double_eq(v, 2.0);
  OK_CALL(tch_trainer_metric(tr, "loss.student", &v));
  ck_assert(isfinite(v));
  OK_CALL(tch_trainer_metric(tr, "logz.student", &v));
  ck_assert(isfinite(v));
  OK_CALL(tch_trainer_evaluate(tr, 64));
  OK_CALL(tch_trainer_metric(tr, "eval.l1", &v));
  ck_assert(isfinite(v));
}
END_TEST

int main(void)
{
  Suite *s = suite_create("args");
  TCase *tc;

  tc = tcase_create("status");
  tcase_add_test(tc, status_values_pinned);
  tcase_add_test(tc, status_strings);
  tcase_add_test(tc, status_misc_entry_points);
  suite_add_tcase(s, tc);

  tc = tcase_create("config");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, config_null_and_bad_args);
  tcase_add_test(tc, config_failed_set_leaves_value);
  tcase_add_test(tc, config_key_iteration);
  suite_add_tcase(s, tc);

  tc = tcase_create("env");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, env_create_discrete_bad_desc);
  tcase_add_test(tc, env_builtin_constructors);
  tcase_add_test(tc, env_queries_bad_args);
  tcase_add_test(tc, env_exact_queries_need_enumerable_env);
  suite_add_tcase(s, tc);

  tc = tcase_create("policy");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, policy_handles_bad_args);
  tcase_add_test(tc, policy_sampling_bad_args);
  tcase_add_test(tc, policy_files_bad_args);
  suite_add_tcase(s, tc);

  tc = tcase_create("trainer_more");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, trainer_components_and_checkpoints_bad_args);
  tcase_add_test(tc, mixer_bad_args);
  tcase_add_test(tc, buffer_bad_args);
  suite_add_tcase(s, tc);

  tc = tcase_create("trainer");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, trainer_bad_args);
  tcase_add_test(tc, trainer_step_then_metrics);
  suite_add_tcase(s, tc);

  return tch_run_suite(s);
}
