/* Config: the parameter table, typed set/get with validation, set_from_string, YAML load
 * (positions of errors, transactional), YAML dump (round trip of every key, atomic file
 * replacement) and allocation failures. Fixtures: $TCH_TEST_DATA/config_*.yaml. */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "../tch_check.h"
#include "config/config.h"

/* ---- helpers ---------------------------------------------------------------------- */

static const char *data_dir(void)
{
  const char *d = getenv("TCH_TEST_DATA");
  return d && *d ? d : "tests/data";
}

static void data_path(char *buf, size_t n, const char *name)
{
  snprintf(buf, n, "%s/%s", data_dir(), name);
}

static int n_keys(void)
{
  int n = 0;
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) n++;
  return n;
}

static tch_param_type type_of(const char *key)
{
  tch_param_type t = 0;
  ck_assert_int_eq(tch_config_describe(key, &t, NULL, NULL, NULL, NULL, NULL), TCH_OK);
  return t;
}

static int same_double(double a, double b)
{
  return memcmp(&a, &b, sizeof a) == 0;
}

/* 1 if key has the same value in a and b. */
static int key_equal(const tch_config *a, const tch_config *b, const char *key)
{
  switch (type_of(key)) {
  case TCH_PARAM_INT: {
    int64_t x, y;
    ck_assert_int_eq(tch_config_get_int(a, key, &x), TCH_OK);
    ck_assert_int_eq(tch_config_get_int(b, key, &y), TCH_OK);
    return x == y;
  }
  case TCH_PARAM_DOUBLE: {
    double x, y;
    ck_assert_int_eq(tch_config_get_double(a, key, &x), TCH_OK);
    ck_assert_int_eq(tch_config_get_double(b, key, &y), TCH_OK);
    return same_double(x, y);
  }
  case TCH_PARAM_BOOL: {
    int x, y;
    ck_assert_int_eq(tch_config_get_bool(a, key, &x), TCH_OK);
    ck_assert_int_eq(tch_config_get_bool(b, key, &y), TCH_OK);
    return x == y;
  }
  case TCH_PARAM_STRING:
  case TCH_PARAM_ENUM: {
    const char *x, *y;
    ck_assert_int_eq(tch_config_get_string(a, key, &x), TCH_OK);
    ck_assert_int_eq(tch_config_get_string(b, key, &y), TCH_OK);
    return strcmp(x, y) == 0;
  }
  }
  return 0;
}

/* Name of the first key whose values differ, or NULL. */
static const char *first_difference(const tch_config *a, const tch_config *b)
{
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k))
    if (!key_equal(a, b, k)) return k;
  return NULL;
}

static void assert_configs_equal(const tch_config *a, const tch_config *b)
{
  const char *k = first_difference(a, b);
  ck_assert_msg(k == NULL, "configs differ at key '%s'", k ? k : "");
}

static void assert_error_has(const char *needle)
{
  ck_assert_msg(strstr(tch_last_error(), needle) != NULL, "error text '%s' lacks '%s'",
                tch_last_error(), needle);
}

static int64_t int_bound(double b)
{
  if (b <= -9223372036854775808.0) return INT64_MIN;
  if (b >= 9223372036854775808.0) return INT64_MAX;
  return (int64_t)b;
}

static const char *const string_variants[] = {
  "with spaces: \"quotes\", back\\slash #hash\n\ttab \x01 caf\xc3\xa9 \xe2\x88\x9e \xf0\x9f\x99\x82",
  "yes",
  "",
  "1e-3",
};
#define N_VARIANTS 4

/* Sets key to a valid non-default value; variant picks bounds, neighbours of the default,
 * awkward doubles and strings that need quoting. */
static void set_variant(tch_config *c, const char *key, int variant)
{
  tch_param_type t;
  const char *def, *choices;
  double lo, hi;
  ck_assert_int_eq(tch_config_describe(key, &t, &def, &lo, &hi, &choices, NULL), TCH_OK);
  tch_status st = TCH_E_INTERNAL;
  switch (t) {
  case TCH_PARAM_INT: {
    int64_t d, a = int_bound(lo), b = int_bound(hi), v;
    ck_assert_int_eq(tch_config_get_int(c, key, &d), TCH_OK);
    if (variant == 0) v = b != d ? b : a;
    else if (variant == 1) v = d < b ? d + 1 : d - 1;
    else if (variant == 2) v = a + (b / 3 - a / 3);
    else v = a != d ? a : b;
    if (v == d) v = d < b ? d + 1 : d - 1;
    st = tch_config_set_int(c, key, v);
    int64_t got;
    ck_assert_int_eq(tch_config_get_int(c, key, &got), TCH_OK);
    ck_assert_int_eq(got, v);
    break;
  }
  case TCH_PARAM_DOUBLE: {
    double d, v;
    ck_assert_int_eq(tch_config_get_double(c, key, &d), TCH_OK);
    if (variant == 0) v = hi != d ? hi : lo;
    else if (variant == 1) v = nextafter(d, INFINITY) <= hi ? nextafter(d, INFINITY) : nextafter(d, -INFINITY);
    else if (variant == 2) {
      double a = fmax(lo, -1e6), b = fmin(hi, 1e6);
      v = a + (b - a) * 0.31830988618379067;
    } else v = lo != d ? lo : hi;
    if (v == d) v = nextafter(d, INFINITY) <= hi ? nextafter(d, INFINITY) : nextafter(d, -INFINITY);
    st = tch_config_set_double(c, key, v);
    double got;
    ck_assert_int_eq(tch_config_get_double(c, key, &got), TCH_OK);
    ck_assert(same_double(got, v));
    break;
  }
  case TCH_PARAM_BOOL: {
    int d;
    ck_assert_int_eq(tch_config_get_bool(c, key, &d), TCH_OK);
    st = tch_config_set_bool(c, key, !d);
    int got;
    ck_assert_int_eq(tch_config_get_bool(c, key, &got), TCH_OK);
    ck_assert_int_eq(got, !d);
    break;
  }
  case TCH_PARAM_ENUM: {
    /* choice number (variant + 1) mod count, skipping the default */
    char opts[16][64];
    int n = 0;
    for (const char *s = choices; n < 16;) {
      size_t m = strcspn(s, "|");
      ck_assert_uint_lt(m, 64);
      memcpy(opts[n], s, m);
      opts[n++][m] = '\0';
      if (!s[m]) break;
      s += m + 1;
    }
    ck_assert_int_ge(n, 2);
    int k = (variant + 1) % n;
    if (strcmp(opts[k], def) == 0) k = (k + 1) % n;
    st = tch_config_set_string(c, key, opts[k]);
    const char *got;
    ck_assert_int_eq(tch_config_get_string(c, key, &got), TCH_OK);
    ck_assert_str_eq(got, opts[k]);
    break;
  }
  case TCH_PARAM_STRING: {
    st = tch_config_set_string(c, key, string_variants[variant]);
    const char *got;
    ck_assert_int_eq(tch_config_get_string(c, key, &got), TCH_OK);
    ck_assert_str_eq(got, string_variants[variant]);
    break;
  }
  }
  ck_assert_msg(st == TCH_OK, "setting '%s' (variant %d): %s", key, variant, tch_last_error());
}

/* The value of key as text that set_from_string reads back exactly. */
static void value_text(const tch_config *c, const char *key, char *buf, size_t n)
{
  switch (type_of(key)) {
  case TCH_PARAM_INT: {
    int64_t v;
    tch_config_get_int(c, key, &v);
    snprintf(buf, n, "%" PRId64, v);
    break;
  }
  case TCH_PARAM_DOUBLE: {
    double v;
    tch_config_get_double(c, key, &v);
    snprintf(buf, n, "%.17g", v);
    break;
  }
  case TCH_PARAM_BOOL: {
    int v;
    tch_config_get_bool(c, key, &v);
    snprintf(buf, n, "%s", v ? "true" : "false");
    break;
  }
  default: {
    const char *v;
    tch_config_get_string(c, key, &v);
    snprintf(buf, n, "%s", v);
  }
  }
}

static char tmpdir[256];

static void make_tmpdir(void)
{
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/tch_config_XXXXXX", base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Number of entries in tmpdir (besides . and ..); removes them if clean != 0. */
static int tmpdir_entries(int clean)
{
  DIR *d = opendir(tmpdir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    n++;
    if (clean) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      remove(p);
    }
  }
  closedir(d);
  return n;
}

static void remove_tmpdir(void)
{
  tmpdir_entries(1);
  rmdir(tmpdir);
}

/* ---- the table ---------------------------------------------------------------------- */

START_TEST(table_is_sane)
{
  int n = n_keys();
  ck_assert_int_gt(n, 10);
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) {
    size_t len = strlen(k);
    ck_assert_uint_gt(len, 0);
    ck_assert_uint_lt(len, 128);
    ck_assert_msg(k[0] != '.' && k[len - 1] != '.' && !strstr(k, ".."), "bad key '%s'", k);
    for (size_t i = 0; i < len; i++) {
      char ch = k[i];
      ck_assert_msg((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '_' || ch == '.', "bad character in key '%s'", k);
    }
    tch_param_type t;
    const char *def, *choices, *doc;
    double lo, hi;
    ck_assert_int_eq(tch_config_describe(k, &t, &def, &lo, &hi, &choices, &doc), TCH_OK);
    ck_assert(t >= TCH_PARAM_INT && t <= TCH_PARAM_ENUM);
    ck_assert_ptr_nonnull(def);
    ck_assert_msg(doc && *doc, "key '%s' has no doc", k);
    ck_assert_msg((t == TCH_PARAM_ENUM) == (*choices != '\0'), "choices of '%s'", k);
    if (t == TCH_PARAM_INT || t == TCH_PARAM_DOUBLE) ck_assert_msg(lo <= hi, "bounds of '%s'", k);
    /* unique, and no key is also a section ("a.b" and "a.b.c" cannot both be YAML) */
    for (const char *j = tch_config_next_key(NULL); j; j = tch_config_next_key(j)) {
      if (j == k) continue;
      ck_assert_str_ne(j, k);
      ck_assert_msg(!(strncmp(j, k, len) == 0 && j[len] == '.'), "'%s' is both a key and a section of '%s'", k, j);
    }
  }
  ck_assert_ptr_null(tch_config_next_key("no.such.key"));
  const char *last = NULL;
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) last = k;
  ck_assert_ptr_null(tch_config_next_key(last));
  ck_assert_int_eq(tch_config_describe("teacher.alpah", NULL, NULL, NULL, NULL, NULL, NULL), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_describe(NULL, NULL, NULL, NULL, NULL, NULL, NULL), TCH_E_ARG);
  tch_param_type t;
  const char *choices;
  ck_assert_int_eq(tch_config_describe("student.loss", &t, NULL, NULL, NULL, &choices, NULL), TCH_OK);
  ck_assert_int_eq(t, TCH_PARAM_ENUM);
  ck_assert_str_eq(choices, "tb|db");
}
END_TEST

START_TEST(defaults_parse_and_match)
{
  tch_config *c, *d;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_create(&d), TCH_OK);
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) {
    const char *def;
    ck_assert_int_eq(tch_config_describe(k, NULL, &def, NULL, NULL, NULL, NULL), TCH_OK);
    set_variant(d, k, 0);
    ck_assert(!key_equal(c, d, k));
    ck_assert_msg(tch_config_set_from_string(d, k, def) == TCH_OK, "default of '%s': %s", k, tch_last_error());
    ck_assert_msg(key_equal(c, d, k), "default of '%s' differs from the created value", k);
    /* the internal getters read the defaults when given no config */
    switch (type_of(k)) {
    case TCH_PARAM_INT: {
      int64_t v;
      tch_config_get_int(c, k, &v);
      ck_assert_int_eq(tchi_cfg_int(NULL, k), v);
      ck_assert_int_eq(tchi_cfg_int(c, k), v);
      ck_assert(tchi_cfg_double(NULL, k) == (double)v);
      break;
    }
    case TCH_PARAM_DOUBLE: {
      double v;
      tch_config_get_double(c, k, &v);
      ck_assert(same_double(tchi_cfg_double(NULL, k), v));
      ck_assert(same_double(tchi_cfg_double(c, k), v));
      break;
    }
    case TCH_PARAM_BOOL: {
      int v;
      tch_config_get_bool(c, k, &v);
      ck_assert_int_eq(tchi_cfg_bool(NULL, k), v);
      ck_assert_int_eq(tchi_cfg_bool(c, k), v);
      break;
    }
    default: {
      const char *v;
      tch_config_get_string(c, k, &v);
      ck_assert_str_eq(tchi_cfg_string(NULL, k), v);
      ck_assert_str_eq(tchi_cfg_string(c, k), v);
    }
    }
  }
  assert_configs_equal(c, d);
  tch_config_free(c);
  tch_config_free(d);
}
END_TEST

/* ---- the internal getters ------------------------------------------------------- */

static int log_calls, log_level_seen;
static void count_log(void *user, int level, const char *msg)
{
  (void)user;
  (void)msg;
  log_calls++;
  log_level_seen = level;
}

START_TEST(internal_getters)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "train.batch_size", 33), TCH_OK);
  ck_assert_int_eq(tchi_cfg_int(c, "train.batch_size"), 33);
  ck_assert(tchi_cfg_double(c, "train.batch_size") == 33.0);
  ck_assert(tchi_cfg_double(NULL, "teacher.reward.C") == 19.0);
  ck_assert(isinf(tchi_cfg_double(NULL, "student.log_reward_clip_min")));
  ck_assert_str_eq(tchi_cfg_string(NULL, "student.loss"), "tb");
  ck_assert_int_eq(tchi_cfg_bool(NULL, "teacher.reward.log"), 1);

  tch_set_log_callback(count_log, NULL, 3);
  log_calls = 0;
  log_level_seen = -1;
  ck_assert_int_eq(tchi_cfg_int(c, "teacher.alpah"), 0);
  ck_assert_int_eq(log_calls, 1);
  ck_assert_int_eq(log_level_seen, 0);
  ck_assert(tchi_cfg_double(c, "no.such") == 0.0);
  ck_assert_int_eq(tchi_cfg_bool(c, "no.such"), 0);
  ck_assert_str_eq(tchi_cfg_string(c, "no.such"), "");
  ck_assert_int_eq(tchi_cfg_int(c, "student.lr"), 0);          /* wrong type */
  ck_assert_str_eq(tchi_cfg_string(c, "seed"), "");
  ck_assert_int_eq(log_calls, 6);
  tch_set_log_callback(NULL, NULL, 0);
  tch_config_free(c);
}
END_TEST

/* ---- set/get ----------------------------------------------------------------------- */

START_TEST(refcount_and_clone)
{
  tch_config *c, *d;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_ptr_eq(tch_config_retain(c), c);
  ck_assert_ptr_null(tch_config_retain(NULL));
  tch_config_free(c);                                       /* one reference left */
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", "zen3"), TCH_OK);
  ck_assert_int_eq(tch_config_clone(c, &d), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", "skx"), TCH_OK);
  const char *s;
  ck_assert_int_eq(tch_config_get_string(d, "nn.kernel", &s), TCH_OK);
  ck_assert_str_eq(s, "zen3");                              /* deep copy */
  tch_config_free(c);
  tch_config_free(d);
  tch_config_free(NULL);
  ck_assert_int_eq(tch_config_create(NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_config_clone(NULL, &d), TCH_E_ARG);
  ck_assert_ptr_null(d);
}
END_TEST

START_TEST(set_get_every_key)
{
  for (int variant = 0; variant < N_VARIANTS; variant++) {
    tch_config *c, *d;
    ck_assert_int_eq(tch_config_create(&c), TCH_OK);
    ck_assert_int_eq(tch_config_create(&d), TCH_OK);
    for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) {
      set_variant(c, k, variant);
      /* the command-line path reads the same value back from its text */
      char text[512];
      value_text(c, k, text, sizeof text);
      ck_assert_msg(tch_config_set_from_string(d, k, text) == TCH_OK, "'%s' = '%s': %s", k, text,
                    tch_last_error());
      ck_assert_msg(key_equal(c, d, k), "'%s' from text '%s'", k, text);
    }
    tch_config *e;
    ck_assert_int_eq(tch_config_clone(c, &e), TCH_OK);
    assert_configs_equal(c, e);
    tch_config_free(c);
    tch_config_free(d);
    tch_config_free(e);
  }
}
END_TEST

START_TEST(bounds_and_types)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  double d;
  int64_t i;
  int b;
  const char *s;

  ck_assert_int_eq(tch_config_set_double(c, "student.lr", 20), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'student.lr': value 20 is above the maximum 10");
  ck_assert_int_eq(tch_config_set_double(c, "student.lr", -0.5), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'student.lr': value -0.5 is below the minimum 0");
  ck_assert_int_eq(tch_config_set_double(c, "student.lr", NAN), TCH_E_CONFIG);
  assert_error_has("NaN");
  ck_assert_int_eq(tch_config_set_double(c, "student.lr", INFINITY), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "student.log_reward_clip_min", -INFINITY), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "student.log_reward_clip_min", NAN), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_get_double(c, "student.lr", &d), TCH_OK);
  ck_assert(d == 1e-3);                                     /* unchanged by the failures */

  ck_assert_int_eq(tch_config_set_int(c, "train.batch_size", -2), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'train.batch_size': value -2 is below the minimum -1");
  ck_assert_int_eq(tch_config_set_int(c, "nn.n_layers", 16), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'nn.n_layers': value 16 is above the maximum 15");
  ck_assert_int_eq(tch_config_set_int(c, "seed", INT64_MAX), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_int(c, "seed", 9200000000000000000), TCH_OK);

  /* set_int on a double key; integral set_double on an int key */
  ck_assert_int_eq(tch_config_set_int(c, "teacher.reward.C", 7), TCH_OK);
  ck_assert_int_eq(tch_config_get_double(c, "teacher.reward.C", &d), TCH_OK);
  ck_assert(d == 7.0);
  ck_assert_int_eq(tch_config_set_int(c, "student.lr", 11), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "train.batch_size", 32.0), TCH_OK);
  ck_assert_int_eq(tch_config_get_int(c, "train.batch_size", &i), TCH_OK);
  ck_assert_int_eq(i, 32);
  ck_assert_int_eq(tch_config_set_double(c, "train.batch_size", 32.5), TCH_E_CONFIG);
  assert_error_has("expects an integer");
  ck_assert_int_eq(tch_config_set_double(c, "train.batch_size", 1e300), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "train.batch_size", NAN), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "train.batch_size", 2e6), TCH_E_CONFIG);
  assert_error_has("above the maximum 1000000");

  /* wrong types */
  ck_assert_int_eq(tch_config_set_double(c, "nn.activation", 1.0), TCH_E_CONFIG);
  assert_error_has("'nn.activation'");
  ck_assert_int_eq(tch_config_set_double(c, "nn.kernel", 1.0), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_double(c, "teacher.enabled", 1.0), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_int(c, "teacher.enabled", 1), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_bool(c, "seed", 1), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_string(c, "seed", "3"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_get_int(c, "student.lr", &i), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_get_double(c, "train.steps", &d), TCH_OK);
  ck_assert(d == -1.0);
  ck_assert_int_eq(tch_config_get_double(c, "student.loss", &d), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_get_bool(c, "seed", &b), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_get_string(c, "seed", &s), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_get_int(c, "teacher.enabled", &i), TCH_E_CONFIG);

  /* bools are 0/1 */
  ck_assert_int_eq(tch_config_set_bool(c, "teacher.enabled", 5), TCH_OK);
  ck_assert_int_eq(tch_config_get_bool(c, "teacher.enabled", &b), TCH_OK);
  ck_assert_int_eq(b, 1);

  /* enumerations and strings */
  ck_assert_int_eq(tch_config_set_string(c, "nn.activation", "swish"), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'nn.activation': 'swish' is not one of leaky_relu|relu|gelu|silu|tanh");
  ck_assert_int_eq(tch_config_set_string(c, "nn.activation", "gel"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_string(c, "nn.activation", "gelu"), TCH_OK);
  ck_assert_int_eq(tch_config_get_string(c, "nn.activation", &s), TCH_OK);
  ck_assert_str_eq(s, "gelu");
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", "bad \xff utf8"), TCH_E_CONFIG);
  assert_error_has("UTF-8");
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", "\xed\xa0\x80"), TCH_E_CONFIG); /* surrogate */
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", "\xc0\xaf"), TCH_E_CONFIG);     /* overlong */
  ck_assert_int_eq(tch_config_get_string(c, "nn.kernel", &s), TCH_OK);
  ck_assert_str_eq(s, "auto");
  tch_config_free(c);
}
END_TEST

START_TEST(unknown_keys_and_null_arguments)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "teacher.alpah", 0.5), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "unknown key 'teacher.alpah' (did you mean 'teacher.reward.alpha'?)");
  ck_assert_int_eq(tch_config_set_int(c, "train.batchsize", 3), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "unknown key 'train.batchsize' (did you mean 'train.batch_size'?)");
  ck_assert_int_eq(tch_config_set_int(c, "zzzzzzzzzzzz", 3), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "unknown key 'zzzzzzzzzzzz'");
  ck_assert_int_eq(tch_config_set_from_string(c, "", "3"), TCH_E_CONFIG);
  int64_t i;
  ck_assert_int_eq(tch_config_get_int(c, "sed", &i), TCH_E_CONFIG);
  assert_error_has("did you mean 'seed'?");
  char longkey[400];
  memset(longkey, 'a', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  ck_assert_int_eq(tch_config_set_int(c, longkey, 3), TCH_E_CONFIG);

  double d;
  int b;
  const char *s;
  ck_assert_int_eq(tch_config_set_int(NULL, "seed", 1), TCH_E_ARG);
  ck_assert_int_eq(tch_config_set_int(c, NULL, 1), TCH_E_ARG);
  ck_assert_int_eq(tch_config_set_double(NULL, "student.lr", 1), TCH_E_ARG);
  ck_assert_int_eq(tch_config_set_bool(c, NULL, 1), TCH_E_ARG);
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_config_get_int(c, "seed", NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_config_get_double(NULL, "seed", &d), TCH_E_ARG);
  ck_assert_int_eq(tch_config_get_bool(c, NULL, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_config_get_string(c, "nn.kernel", NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_config_get_string(NULL, "nn.kernel", &s), TCH_E_ARG);
  ck_assert_int_eq(tch_config_load_yaml(NULL, "x.yaml"), TCH_E_ARG);
  ck_assert_int_eq(tch_config_load_yaml(c, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_config_load_yaml_string(c, NULL, 0), TCH_E_ARG);
  ck_assert_int_eq(tch_config_load_yaml_string(NULL, "", 0), TCH_E_ARG);
  ck_assert_int_eq(tch_config_dump_yaml(NULL, "x.yaml"), TCH_E_ARG);
  ck_assert_int_eq(tch_config_dump_yaml(c, NULL), TCH_E_ARG);
  char *out;
  ck_assert_int_eq(tchi_config_dump_yaml_string(NULL, &out, NULL), TCH_E_ARG);
  tch_config_free(c);
}
END_TEST

START_TEST(set_from_string_forms)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  double d;
  int64_t i;
  int b;
  const char *s;

  ck_assert_int_eq(tch_config_set_from_string(c, "student.lr", "1e-4"), TCH_OK);
  ck_assert_int_eq(tch_config_get_double(c, "student.lr", &d), TCH_OK);
  ck_assert(d == 1e-4);
  ck_assert_int_eq(tch_config_set_from_string(c, "student.lr", " 0.25 "), TCH_OK);
  ck_assert_int_eq(tch_config_get_double(c, "student.lr", &d), TCH_OK);
  ck_assert(d == 0.25);
  ck_assert_int_eq(tch_config_set_from_string(c, "student.lr", "fast"), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'student.lr' expects a number, got 'fast'");
  ck_assert_int_eq(tch_config_set_from_string(c, "student.lr", "0.1x"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "student.lr", ""), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "student.lr", "nan"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "student.logz_init", "1e999"), TCH_E_CONFIG);
  static const char *const ninf[] = {"-inf", "-.inf", "-Infinity", "-.INF"};
  for (int k = 0; k < 4; k++) {
    ck_assert_int_eq(tch_config_set_from_string(c, "student.log_reward_clip_min", "0"), TCH_OK);
    ck_assert_int_eq(tch_config_set_from_string(c, "student.log_reward_clip_min", ninf[k]), TCH_OK);
    ck_assert_int_eq(tch_config_get_double(c, "student.log_reward_clip_min", &d), TCH_OK);
    ck_assert(isinf(d) && d < 0);
  }
  ck_assert_int_eq(tch_config_set_from_string(c, "teacher.reward.C", "3"), TCH_OK);
  ck_assert_int_eq(tch_config_get_double(c, "teacher.reward.C", &d), TCH_OK);
  ck_assert(d == 3.0);

  ck_assert_int_eq(tch_config_set_from_string(c, "train.steps", "+1500"), TCH_OK);
  ck_assert_int_eq(tch_config_get_int(c, "train.steps", &i), TCH_OK);
  ck_assert_int_eq(i, 1500);
  ck_assert_int_eq(tch_config_set_from_string(c, "train.steps", "2e3"), TCH_OK);  /* integral */
  ck_assert_int_eq(tch_config_get_int(c, "train.steps", &i), TCH_OK);
  ck_assert_int_eq(i, 2000);
  ck_assert_int_eq(tch_config_set_from_string(c, "train.steps", "1.5"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "train.batch_size", "abc"), TCH_E_CONFIG);
  ck_assert_str_eq(tch_last_error(), "key 'train.batch_size' expects an integer, got 'abc'");
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "99999999999999999999"), TCH_E_CONFIG);
  assert_error_has("overflows");
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "-99999999999999999999"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "9200000000000000001"), TCH_E_CONFIG);
  assert_error_has("above the maximum 9200000000000000000");
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "9200000000000000000"), TCH_OK);
  ck_assert_int_eq(tch_config_get_int(c, "seed", &i), TCH_OK);
  ck_assert_int_eq(i, 9200000000000000000);
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "12 3"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "0x10"), TCH_OK);   /* YAML 1.1 hex */
  ck_assert_int_eq(tch_config_get_int(c, "seed", &i), TCH_OK);
  ck_assert_int_eq(i, 16);
  ck_assert_int_eq(tch_config_set_from_string(c, "seed", "1_000"), TCH_E_CONFIG);

  static const char *const yes[] = {"true", "TRUE", "yes", "Yes", "on", "ON", "1"};
  static const char *const no[] = {"false", "False", "no", "NO", "off", "Off", "0"};
  for (int k = 0; k < 7; k++) {
    ck_assert_int_eq(tch_config_set_from_string(c, "teacher.enabled", yes[k]), TCH_OK);
    ck_assert_int_eq(tch_config_get_bool(c, "teacher.enabled", &b), TCH_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(tch_config_set_from_string(c, "teacher.enabled", no[k]), TCH_OK);
    ck_assert_int_eq(tch_config_get_bool(c, "teacher.enabled", &b), TCH_OK);
    ck_assert_int_eq(b, 0);
  }
  ck_assert_int_eq(tch_config_set_from_string(c, "teacher.enabled", "maybe"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "teacher.enabled", "2"), TCH_E_CONFIG);

  ck_assert_int_eq(tch_config_set_from_string(c, "student.loss", "db"), TCH_OK);
  ck_assert_int_eq(tch_config_get_string(c, "student.loss", &s), TCH_OK);
  ck_assert_str_eq(s, "db");
  ck_assert_int_eq(tch_config_set_from_string(c, "student.loss", "DB"), TCH_E_CONFIG);
  ck_assert_int_eq(tch_config_set_from_string(c, "mixer.schedule", "student,teacher,buffer"), TCH_OK);
  ck_assert_int_eq(tch_config_get_string(c, "mixer.schedule", &s), TCH_OK);
  ck_assert_str_eq(s, "student,teacher,buffer");
  ck_assert_int_eq(tch_config_set_from_string(c, "teacher.alpah", "1"), TCH_E_CONFIG);
  assert_error_has("did you mean 'teacher.reward.alpha'?");
  tch_config_free(c);
}
END_TEST

/* ---- YAML -------------------------------------------------------------------------- */

START_TEST(yaml_round_trip_every_key)
{
  make_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/cfg.yaml", tmpdir);
  for (int variant = 0; variant < N_VARIANTS; variant++) {
    tch_config *c, *d, *e;
    ck_assert_int_eq(tch_config_create(&c), TCH_OK);
    for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) set_variant(c, k, variant);

    char *text, *text2;
    size_t len, len2;
    ck_assert_int_eq(tchi_config_dump_yaml_string(c, &text, &len), TCH_OK);
    ck_assert_uint_eq(strlen(text), len);
    ck_assert_int_eq(tch_config_create(&d), TCH_OK);
    ck_assert_msg(tch_config_load_yaml_string(d, text, len) == TCH_OK, "variant %d: %s\n%s", variant,
                  tch_last_error(), text);
    assert_configs_equal(c, d);
    /* dumping the loaded config gives the same text */
    ck_assert_int_eq(tchi_config_dump_yaml_string(d, &text2, &len2), TCH_OK);
    ck_assert_str_eq(text, text2);

    /* and through a file */
    ck_assert_int_eq(tch_config_dump_yaml(c, path), TCH_OK);
    ck_assert_int_eq(tch_config_create(&e), TCH_OK);
    ck_assert_msg(tch_config_load_yaml(e, path) == TCH_OK, "%s", tch_last_error());
    assert_configs_equal(c, e);
    ck_assert_int_eq(tmpdir_entries(0), 1);                 /* no temp file left behind */

    tchi_free(text);
    tchi_free(text2);
    tch_config_free(c);
    tch_config_free(d);
    tch_config_free(e);
  }
  remove_tmpdir();
}
END_TEST

START_TEST(yaml_dump_layout)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "teacher.reward.C", 5e-6), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(c, "nn.kernel", "on"), TCH_OK);
  char *text;
  ck_assert_int_eq(tchi_config_dump_yaml_string(c, &text, NULL), TCH_OK);
  ck_assert_ptr_nonnull(strstr(text, "\nteacher:\n  enabled: false\n"));
  ck_assert_ptr_nonnull(strstr(text, "\n  reward:\n    log: true\n    C: 5.0e-06\n    alpha: 0.0\n"));
  ck_assert_ptr_nonnull(strstr(text, "\n  log_reward_clip_min: -.inf\n"));
  ck_assert_ptr_nonnull(strstr(text, "\n  kernel: \"on\"\n"));  /* would be a bool in YAML 1.1 */
  ck_assert_ptr_nonnull(strstr(text, "\n  activation: leaky_relu\n"));
  ck_assert_ptr_nonnull(strstr(text, "\nseed: 0\n"));
  /* each section appears once */
  const char *t = strstr(text, "\nteacher:\n");
  ck_assert_ptr_null(strstr(t + 1, "\nteacher:\n"));
  tchi_free(text);
  tch_config_free(c);
}
END_TEST

START_TEST(yaml_valid_fixture)
{
  char path[512];
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  data_path(path, sizeof path, "config_valid.yaml");
  ck_assert_msg(tch_config_load_yaml(c, path) == TCH_OK, "%s", tch_last_error());
  int64_t i;
  double d;
  int b;
  const char *s;
  tch_config_get_int(c, "seed", &i);              ck_assert_int_eq(i, 42);
  tch_config_get_int(c, "train.steps", &i);       ck_assert_int_eq(i, 1000);
  tch_config_get_int(c, "train.batch_size", &i);  ck_assert_int_eq(i, 64);
  tch_config_get_int(c, "train.log_every", &i);   ck_assert_int_eq(i, -1);   /* untouched */
  tch_config_get_int(c, "nn.hidden_dim", &i);     ck_assert_int_eq(i, 128);
  tch_config_get_string(c, "nn.activation", &s);  ck_assert_str_eq(s, "gelu");
  tch_config_get_string(c, "student.loss", &s);   ck_assert_str_eq(s, "db");
  tch_config_get_double(c, "student.lr", &d);     ck_assert(d == 1e-4);
  tch_config_get_double(c, "student.lr_logz", &d); ck_assert(d == 0.05);
  tch_config_get_double(c, "student.log_reward_clip_min", &d); ck_assert(isinf(d) && d < 0);
  tch_config_get_bool(c, "student.learn_pb", &b); ck_assert_int_eq(b, 1);
  tch_config_get_bool(c, "teacher.enabled", &b);  ck_assert_int_eq(b, 1);
  tch_config_get_double(c, "teacher.grad_clip", &d); ck_assert(d == 250.0);
  tch_config_get_double(c, "teacher.reward.C", &d); ck_assert(d == 9.0);
  tch_config_get_double(c, "teacher.reward.alpha", &d); ck_assert(d == 0.5);
  tch_config_get_bool(c, "teacher.reward.log", &b); ck_assert_int_eq(b, 0);
  tch_config_get_string(c, "mixer.schedule", &s); ck_assert_str_eq(s, "student,teacher");
  tch_config_get_int(c, "env.hypergrid.ndim", &i); ck_assert_int_eq(i, 4);
  tch_config_get_int(c, "env.hypergrid.horizon", &i); ck_assert_int_eq(i, 20);

  /* empty and comment-only documents change nothing */
  tch_config *before;
  ck_assert_int_eq(tch_config_clone(c, &before), TCH_OK);
  static const char *const empties[] = {"config_empty.yaml", "config_comments.yaml"};
  for (int k = 0; k < 2; k++) {
    data_path(path, sizeof path, empties[k]);
    ck_assert_msg(tch_config_load_yaml(c, path) == TCH_OK, "%s: %s", empties[k], tch_last_error());
    assert_configs_equal(c, before);
  }
  static const char *const texts[] = {"", "---\n", "~\n", "# nothing\n", "{}\n", "---\n...\n"};
  for (int k = 0; k < 6; k++) {
    ck_assert_msg(tch_config_load_yaml_string(c, texts[k], strlen(texts[k])) == TCH_OK, "'%s': %s",
                  texts[k], tch_last_error());
    assert_configs_equal(c, before);
  }
  /* the length bounds the text; quoted numbers are read by the key's type */
  const char *t = "seed: 77\nseed: 78\n";
  ck_assert_int_eq(tch_config_load_yaml_string(c, t, 9), TCH_OK);
  tch_config_get_int(c, "seed", &i);
  ck_assert_int_eq(i, 77);
  t = "train: {batch_size: \"12\"}\nnn.kernel: '1e-3'\n";
  ck_assert_msg(tch_config_load_yaml_string(c, t, strlen(t)) == TCH_OK, "%s", tch_last_error());
  tch_config_get_int(c, "train.batch_size", &i);
  ck_assert_int_eq(i, 12);
  tch_config_get_string(c, "nn.kernel", &s);
  ck_assert_str_eq(s, "1e-3");
  tch_config_free(before);
  tch_config_free(c);
}
END_TEST

typedef struct bad_case {
  const char *file;
  const char *expect;   /* text following the path */
} bad_case;

static const bad_case bad_cases[] = {
  {"config_unknown_key.yaml", ":3:3: unknown key 'teacher.alpah' (did you mean 'teacher.reward.alpha'?)"},
  {"config_bad_int.yaml", ":3:15: key 'train.batch_size' expects an integer, got 'abc'"},
  {"config_bad_bool.yaml", ":2:12: key 'teacher.enabled' expects a boolean"},
  {"config_syntax.yaml", ":4:9: YAML syntax error: mapping values are not allowed in this context"},
  {"config_sequence.yaml", ":2:15: key 'nn.hidden_dim' expects an integer, got a sequence"},
  {"config_root_sequence.yaml", ":2:1: the top level must be a mapping of keys, got a sequence"},
  {"config_root_scalar.yaml", ":1:1: the top level must be a mapping of keys, got a scalar"},
  {"config_duplicate.yaml", ":4:3: duplicate key 'student.lr' (first at line 3, column 3)"},
  {"config_duplicate_dotted.yaml", ":4:1: duplicate key 'teacher.reward.C' (first at line 3, column 5)"},
  {"config_out_of_range.yaml", ":5:7: key 'student.lr': value 20 is above the maximum 10"},
  {"config_bad_enum.yaml", ":2:9: key 'student.loss': 'tbb' is not one of tb|db"},
  {"config_section_scalar.yaml", ":1:10: 'teacher' is a section: expected a mapping of its keys, got a scalar"},
  {"config_multi_doc.yaml", ":3:1: a config holds a single YAML document"},
  {"config_alias_cycle.yaml", ":1:14: unknown key 'teacher.reward.reward'"},
  {"config_double_overflow.yaml", ":2:7: key 'student.lr': value '1e999' is out of the range of a double"},
  {"config_null_string.yaml", ":2:11: key 'nn.kernel' expects a string, got null"},
};

START_TEST(yaml_errors_have_positions)
{
  size_t k = (size_t)_i;
  char path[512], want[1024];
  data_path(path, sizeof path, bad_cases[k].file);
  tch_config *c, *before;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "seed", 3), TCH_OK);
  ck_assert_int_eq(tch_config_clone(c, &before), TCH_OK);
  ck_assert_int_eq(tch_config_load_yaml(c, path), TCH_E_CONFIG);
  snprintf(want, sizeof want, "%s%s", path, bad_cases[k].expect);
  ck_assert_msg(strncmp(tch_last_error(), want, strlen(want)) == 0, "%s:\n got  '%s'\n want '%s'",
                bad_cases[k].file, tch_last_error(), want);
  assert_configs_equal(c, before);                          /* transactional */
  tch_config_free(before);
  tch_config_free(c);
}
END_TEST

START_TEST(yaml_string_errors)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  static const bad_case cases[] = {
    {"seed: 1\n\tx: 2\n", ":2:1: YAML syntax error: found a tab character that violates indentation"},
    {"nn: {hidden_dim: 3\n", ":2:1: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 1, column 5)"},
    {"seed: \"\\x01\"\xff\n", ":1:13: invalid YAML input: invalid leading UTF-8 octet"},
    {"seed: *nope\n", ":1:7: YAML syntax error: found undefined alias"},
    {"? [a, b]\n: 1\n", ":1:3: mapping keys must be names, got a sequence"},
    {"teachr:\n  lr: 1\n", ":1:1: unknown key 'teachr' (did you mean 'teacher'?)"},
    {"nn:\n  kernel: [a]\n", ":2:11: key 'nn.kernel' expects a string, got a sequence"},
    {"teacher:\n  lr: {x: 1}\n", ":2:7: key 'teacher.lr' expects a number, got a mapping"},
    {"nn:\n  kernel: \"a\\0b\"\n", ":2:11: key 'nn.kernel': value contains a NUL character"},
    {"seed: 1.5\n", ":1:7: key 'seed' expects an integer, got '1.5'"},
    {"student: {lr: .nan}\n", ":1:15: key 'student.lr': NaN is not allowed"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    ck_assert_int_eq(tch_config_load_yaml_string(c, cases[k].file, strlen(cases[k].file)), TCH_E_CONFIG);
    char want[512];
    snprintf(want, sizeof want, "<string>%s", cases[k].expect);
    ck_assert_msg(strncmp(tch_last_error(), want, strlen(want)) == 0, "case %zu:\n got  '%s'\n want '%s'", k,
                  tch_last_error(), want);
  }
  int64_t i;
  tch_config_get_int(c, "seed", &i);
  ck_assert_int_eq(i, 0);
  tch_config_free(c);
}
END_TEST

START_TEST(yaml_missing_file)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  char path[512];
  data_path(path, sizeof path, "config_does_not_exist.yaml");
  ck_assert_int_eq(tch_config_load_yaml(c, path), TCH_E_IO);
  assert_error_has(path);
  assert_error_has(strerror(ENOENT));
  ck_assert_int_eq(tch_config_load_yaml(c, data_dir()), TCH_E_IO);   /* a directory */
  assert_error_has(data_dir());
  tch_config_free(c);
}
END_TEST

START_TEST(dump_is_atomic)
{
  make_tmpdir();
  tch_config *c, *d;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_create(&d), TCH_OK);
  char path[512], sub[512];

  /* a folder that does not exist: TCH_E_IO, nothing created */
  snprintf(sub, sizeof sub, "%s/missing", tmpdir);
  snprintf(path, sizeof path, "%s/missing/cfg.yaml", tmpdir);
  ck_assert_int_eq(tch_config_dump_yaml(c, path), TCH_E_IO);
  assert_error_has(path);
  ck_assert_int_eq(access(sub, F_OK), -1);
  ck_assert_int_eq(tmpdir_entries(0), 0);

  /* replacing an existing file */
  snprintf(path, sizeof path, "%s/cfg.yaml", tmpdir);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("old: contents\n", f);
  fclose(f);
  ck_assert_int_eq(tch_config_set_int(c, "seed", 12345), TCH_OK);
  ck_assert_int_eq(tch_config_dump_yaml(c, path), TCH_OK);
  ck_assert_int_eq(tch_config_load_yaml(d, path), TCH_OK);
  assert_configs_equal(c, d);
  ck_assert_int_eq(tmpdir_entries(0), 1);

  /* the target is a directory: rename fails, the temp file is removed */
  snprintf(sub, sizeof sub, "%s/adir", tmpdir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  ck_assert_int_eq(tch_config_dump_yaml(c, sub), TCH_E_IO);
  ck_assert_int_eq(tmpdir_entries(0), 2);                   /* cfg.yaml and adir only */
  rmdir(sub);

  /* a relative path (no folder part) */
  char cwd[512];
  ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
  ck_assert_int_eq(chdir(tmpdir), 0);
  ck_assert_int_eq(tch_config_dump_yaml(c, "rel.yaml"), TCH_OK);
  ck_assert_int_eq(chdir(cwd), 0);
  ck_assert_int_eq(tmpdir_entries(0), 2);

  tch_config_free(c);
  tch_config_free(d);
  remove_tmpdir();
}
END_TEST

/* ---- allocation failures -------------------------------------------------------- */

static const char *const fault_yaml =
  "seed: 9\nnn: {kernel: zen3, activation: relu}\nmixer:\n  schedule: \"student,buffer\"\n";

/* The fault_n-th library allocation of a sequence of calls fails: arm() before each call
 * under test, disarm() after it (so test-side copies are never the ones to fail). */
static uint64_t fault_n, fault_used;
static void arm(void) { tchi_alloc_fail_at(fault_n > fault_used ? fault_n - fault_used : UINT64_MAX); }
static void disarm(void)
{
  fault_used += tchi_alloc_count();
  tchi_alloc_fail_at(0);
}

START_TEST(allocation_failures)
{
  make_tmpdir();
  char path[512];
  snprintf(path, sizeof path, "%s/fault.yaml", tmpdir);
  int failures = 0;
  for (fault_n = 1;; fault_n++) {
    ck_assert_uint_lt(fault_n, 100000);
    fault_used = 0;
    tch_config *c = NULL, *d = NULL, *snap = NULL;
    char *text = NULL;
    tch_status st;
    arm();
    st = tch_config_create(&c);
    disarm();
    if (st == TCH_OK) {
      arm();
      st = tch_config_set_string(c, "nn.kernel", "haswell");
      disarm();
    }
    if (st == TCH_OK) {
      ck_assert_int_eq(tch_config_clone(c, &snap), TCH_OK);
      arm();
      st = tch_config_load_yaml_string(c, fault_yaml, strlen(fault_yaml));
      disarm();
      if (st) assert_configs_equal(c, snap);               /* transactional */
    }
    if (st == TCH_OK) {
      arm();
      st = tchi_config_dump_yaml_string(c, &text, NULL);
      disarm();
    }
    if (st == TCH_OK) {
      arm();
      st = tch_config_dump_yaml(c, path);
      disarm();
    }
    if (st == TCH_OK) {
      tch_config_free(snap);
      ck_assert_int_eq(tch_config_clone(c, &snap), TCH_OK);
      ck_assert_int_eq(tch_config_set_int(c, "seed", 1), TCH_OK);
      arm();
      st = tch_config_load_yaml(c, path);
      disarm();
      if (st) ck_assert(!key_equal(c, snap, "seed"));   /* unchanged: still 1 */
    }
    if (st == TCH_OK) {
      assert_configs_equal(c, snap);
      arm();
      st = tch_config_clone(c, &d);
      disarm();
      if (st == TCH_OK) assert_configs_equal(c, d);
      else ck_assert_ptr_null(d);
    }
    ck_assert_msg(st == TCH_OK || st == TCH_E_NOMEM, "allocation %" PRIu64 ": status %d (%s)", fault_n, st,
                  tch_last_error());
    tchi_free(text);
    tch_config_free(snap);
    tch_config_free(c);
    tch_config_free(d);
    ck_assert_int_le(tmpdir_entries(0), 1);                /* never a temp file left */
    if (st == TCH_OK) break;
    failures++;
  }
  ck_assert_int_gt(failures, 5);
  remove_tmpdir();
}
END_TEST

int main(void)
{
  Suite *s = suite_create("config");
  TCase *tc = tcase_create("config");
  tcase_add_test(tc, table_is_sane);
  tcase_add_test(tc, defaults_parse_and_match);
  tcase_add_test(tc, internal_getters);
  tcase_add_test(tc, refcount_and_clone);
  tcase_add_test(tc, set_get_every_key);
  tcase_add_test(tc, bounds_and_types);
  tcase_add_test(tc, unknown_keys_and_null_arguments);
  tcase_add_test(tc, set_from_string_forms);
  tcase_add_test(tc, yaml_round_trip_every_key);
  tcase_add_test(tc, yaml_dump_layout);
  tcase_add_test(tc, yaml_valid_fixture);
  tcase_add_loop_test(tc, yaml_errors_have_positions, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
  tcase_add_test(tc, yaml_string_errors);
  tcase_add_test(tc, yaml_missing_file);
  tcase_add_test(tc, dump_is_atomic);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
