/* tch_config: one typed value per key of the parameter table (params.def), validated on
 * every write; introspection for docs and tools; internal getters for library code. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config_impl.h"

const tchi_param tchi_params[TCHI_N_PARAMS] = {
#define TCH_PARAM(key, type, def, min, max, choices, doc) \
  {key, TCH_PARAM_##type, def, (double)(min), (double)(max), choices, doc},
#include "params.def"
#undef TCH_PARAM
};

/* ---- the C locale for number text (a host may have set LC_NUMERIC to "de_DE") ----- */

static locale_t c_loc;
static pthread_once_t c_loc_once = PTHREAD_ONCE_INIT;
static void c_loc_init(void) { c_loc = newlocale(LC_ALL_MASK, "C", (locale_t)0); }
static locale_t c_locale(void)
{
  pthread_once(&c_loc_once, c_loc_init);
  return c_loc;
}

static double strtod_c(const char *s, char **end)
{
  locale_t loc = c_locale();
  return loc ? strtod_l(s, end, loc) : strtod(s, end);
}

void tchi_format_double(char *buf, size_t n, double v)
{
  if (isnan(v)) { snprintf(buf, n, "nan"); return; }
  if (isinf(v)) { snprintf(buf, n, v < 0 ? "-inf" : "inf"); return; }
  locale_t loc = c_locale();
  locale_t old = loc ? uselocale(loc) : (locale_t)0;
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (strtod_c(buf, NULL) == v) break;
  }
  if (loc) uselocale(old);
}

/* ---- table lookup ------------------------------------------------------------------ */

int tchi_param_find(const char *key)
{
  if (!key) return -1;
  for (int i = 0; i < TCHI_N_PARAMS; i++)
    if (strcmp(tchi_params[i].key, key) == 0) return i;
  return -1;
}

int tchi_param_is_section(const char *prefix, size_t n)
{
  for (int i = 0; i < TCHI_N_PARAMS; i++) {
    const char *k = tchi_params[i].key;
    if (strncmp(k, prefix, n) == 0 && k[n] == '.') return 1;
  }
  return 0;
}

const char *tchi_param_type_name(tch_param_type t)
{
  switch (t) {
  case TCH_PARAM_INT: return "int";
  case TCH_PARAM_DOUBLE: return "double";
  case TCH_PARAM_BOOL: return "bool";
  case TCH_PARAM_STRING: return "string";
  case TCH_PARAM_ENUM: return "enum";
  }
  return "?";
}

const char *tchi_param_type_noun(tch_param_type t)
{
  switch (t) {
  case TCH_PARAM_INT: return "an integer";
  case TCH_PARAM_DOUBLE: return "a number";
  case TCH_PARAM_BOOL: return "a boolean (true/false)";
  case TCH_PARAM_STRING: return "a string";
  case TCH_PARAM_ENUM: return "a string";
  }
  return "a value";
}

/* ---- unknown keys: suggest the closest one ------------------------------------------ */

/* Optimal string alignment distance (Levenshtein plus adjacent transpositions). */
static size_t osa_distance(const char *a, size_t n, const char *b, size_t m)
{
  size_t rows[3][TCHI_KEY_MAX + 1];
  if (n > TCHI_KEY_MAX || m > TCHI_KEY_MAX) return SIZE_MAX;
  size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  for (size_t j = 0; j <= m; j++) prev[j] = j;
  for (size_t i = 1; i <= n; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t d = TCHI_MIN(prev[j] + 1, cur[j - 1] + 1);
      d = TCHI_MIN(d, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d = TCHI_MIN(d, prev2[j - 2] + 1);
      cur[j] = d;
    }
    size_t *t = prev2; prev2 = prev; prev = cur; cur = t;
  }
  return prev[m];
}

static const char *last_component(const char *s, size_t n, size_t *len)
{
  size_t i = n;
  while (i > 0 && s[i - 1] != '.') i--;
  *len = n - i;
  return s + i;
}

/* Score of candidate cand[0..m) for input key[0..n): the whole-key distance, or the
 * distance of the last components plus a penalty (1 within the same section, else 2), so
 * that 'teacher.alpah' finds 'teacher.reward.alpha'. */
static size_t suggestion_score(const char *key, size_t n, const char *cand, size_t m)
{
  size_t best = osa_distance(key, n, cand, m);
  size_t kl, cl;
  const char *kc = last_component(key, n, &kl), *cc = last_component(cand, m, &cl);
  size_t leaf = osa_distance(kc, kl, cc, cl);
  if (leaf != SIZE_MAX) {
    size_t ks = strcspn(key, "."), cs = strcspn(cand, ".");
    int same_section = ks < n && cs < m && ks == cs && memcmp(key, cand, ks) == 0;
    size_t s = leaf + (same_section ? 1 : 2);
    if (s < best) best = s;
  }
  return best;
}

tch_status tchi_config_unknown(const char *key, int section)
{
  size_t n = strlen(key);
  const char *best = NULL;
  size_t best_len = 0, best_score = SIZE_MAX;
  for (int i = 0; i < TCHI_N_PARAMS; i++) {
    const char *k = tchi_params[i].key;
    size_t kn = strlen(k);
    for (size_t m = 1; m <= kn; m++) {
      int is_key = m == kn, is_prefix = m < kn && k[m] == '.';
      if (!(section ? is_prefix : is_key)) continue;
      size_t s = suggestion_score(key, n, k, m);
      if (s < best_score) { best_score = s; best = k; best_len = m; }
    }
  }
  size_t limit = n / 3 + 1;   /* no far-fetched suggestions for short names */
  if (best && best_score <= limit && best_score > 0)
    return tchi_fail(TCH_E_CONFIG, "unknown key '%.200s' (did you mean '%.*s'?)", key,
                     (int)best_len, best);
  return tchi_fail(TCH_E_CONFIG, "unknown key '%.200s'", key);
}

static tch_status lookup(const char *key, int *idx)
{
  *idx = tchi_param_find(key);
  if (*idx < 0) return tchi_config_unknown(key, 0);
  return TCH_OK;
}

/* ---- validation ------------------------------------------------------------------ */

static int64_t int_min(const tchi_param *p)
{
  return p->min <= -9223372036854775808.0 ? INT64_MIN : (int64_t)ceil(p->min);
}
static int64_t int_max(const tchi_param *p)
{
  return p->max >= 9223372036854775808.0 ? INT64_MAX : (int64_t)floor(p->max);
}

static tch_status check_int(const tchi_param *p, int64_t v)
{
  int64_t lo = int_min(p), hi = int_max(p);
  if (v < lo)
    return tchi_fail(TCH_E_CONFIG, "key '%s': value %" PRId64 " is below the minimum %" PRId64,
                     p->key, v, lo);
  if (v > hi)
    return tchi_fail(TCH_E_CONFIG, "key '%s': value %" PRId64 " is above the maximum %" PRId64,
                     p->key, v, hi);
  return TCH_OK;
}

static tch_status check_double(const tchi_param *p, double v)
{
  char a[40], b[40];
  if (isnan(v)) return tchi_fail(TCH_E_CONFIG, "key '%s': NaN is not allowed", p->key);
  if (v < p->min) {
    tchi_format_double(a, sizeof a, v);
    tchi_format_double(b, sizeof b, p->min);
    return tchi_fail(TCH_E_CONFIG, "key '%s': value %s is below the minimum %s", p->key, a, b);
  }
  if (v > p->max) {
    tchi_format_double(a, sizeof a, v);
    tchi_format_double(b, sizeof b, p->max);
    return tchi_fail(TCH_E_CONFIG, "key '%s': value %s is above the maximum %s", p->key, a, b);
  }
  return TCH_OK;
}

/* A double for an INT key: exactly integral and representable, then the int bounds. */
static tch_status double_to_int(const tchi_param *p, double v, int64_t *out)
{
  char a[40];
  tchi_format_double(a, sizeof a, v);
  if (isnan(v) || isinf(v) || v != floor(v))
    return tchi_fail(TCH_E_CONFIG, "key '%s' expects an integer, got %s", p->key, a);
  if (v < -9223372036854775808.0)
    return tchi_fail(TCH_E_CONFIG, "key '%s': value %s is below the minimum %" PRId64, p->key, a,
                     int_min(p));
  if (v >= 9223372036854775808.0)
    return tchi_fail(TCH_E_CONFIG, "key '%s': value %s is above the maximum %" PRId64, p->key, a,
                     int_max(p));
  *out = (int64_t)v;
  return check_int(p, *out);
}

static int valid_utf8(const unsigned char *s)
{
  while (*s) {
    unsigned c = *s;
    size_t n;
    uint32_t cp;
    if (c < 0x80) { s++; continue; }
    if (c >= 0xC2 && c <= 0xDF) { n = 1; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 2; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 3; cp = c & 0x07; }
    else return 0;
    for (size_t k = 1; k <= n; k++) {
      if ((s[k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (s[k] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    s += n + 1;
  }
  return 1;
}

static int enum_has(const char *choices, const char *v)
{
  size_t n = strlen(v);
  const char *s = choices;
  for (;;) {
    size_t m = strcspn(s, "|");
    if (m == n && memcmp(s, v, n) == 0) return 1;
    if (!s[m]) return 0;
    s += m + 1;
  }
}

static tch_status check_string(const tchi_param *p, const char *v)
{
  if (!valid_utf8((const unsigned char *)v))
    return tchi_fail(TCH_E_CONFIG, "key '%s': value is not valid UTF-8", p->key);
  if (p->type == TCH_PARAM_ENUM && !enum_has(p->choices, v))
    return tchi_fail(TCH_E_CONFIG, "key '%s': '%.100s' is not one of %s", p->key, v, p->choices);
  return TCH_OK;
}

static tch_status store_string(tch_config *c, int idx, const char *v)
{
  tch_status st = check_string(&tchi_params[idx], v);
  if (st) return st;
  size_t n = strlen(v) + 1;
  char *copy = tchi_malloc(n);
  if (!copy) return tchi_fail(TCH_E_NOMEM, "out of memory setting key '%s'", tchi_params[idx].key);
  memcpy(copy, v, n);
  tchi_free(c->v[idx].s);
  c->v[idx].s = copy;
  return TCH_OK;
}

/* ---- text parsing (defaults, set_from_string, YAML scalars) ------------------------ */

static const char *skip_space(const char *s)
{
  while (*s == ' ' || *s == '\t') s++;
  return s;
}
static int only_space(const char *s) { return *skip_space(s) == '\0'; }

/* Integer text: "[+-]digits", with surrounding blanks. 1: ok, 0: syntax, -1: overflow. */
static int parse_int_text(const char *text, int64_t *out)
{
  const char *s = skip_space(text);
  const char *d = s + (*s == '+' || *s == '-');
  if (!isdigit((unsigned char)*d)) return 0;
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (!only_space(end)) return 0;
  if (errno == ERANGE) return -1;
  *out = (int64_t)v;
  return 1;
}

static int ieq(const char *a, const char *b)
{
  for (; *a && *b; a++, b++)
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
  return *a == *b;
}

/* Number text: C/strtod forms ("1e-3", "-inf") and YAML's ".inf", "-.inf", ".nan".
 * 1: ok, 0: syntax, -1: overflow. */
static int parse_double_text(const char *text, double *out)
{
  char buf[64];
  const char *s = skip_space(text);
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n == 0 || n >= sizeof buf) {
    if (n == 0) return 0;
    /* long text: only plain decimal notation can be that long; let strtod judge */
  } else {
    memcpy(buf, s, n);
    buf[n] = '\0';
    const char *b = buf + (buf[0] == '+' || buf[0] == '-');
    if (ieq(b, ".inf")) { *out = buf[0] == '-' ? -INFINITY : INFINITY; return 1; }
    if (b == buf && ieq(b, ".nan")) { *out = NAN; return 1; }
  }
  const char *first = s + (*s == '+' || *s == '-');
  if (!isdigit((unsigned char)*first) && *first != '.' && !isalpha((unsigned char)*first))
    return 0;
  char *end;
  errno = 0;
  double v = strtod_c(s, &end);
  if (end == s || !only_space(end)) return 0;
  if (errno == ERANGE && isinf(v)) return -1;
  *out = v;
  return 1;
}

/* 1: true, 0: false, -1: not a boolean. */
static int parse_bool_text(const char *text)
{
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  char buf[8];
  const char *s = skip_space(text);
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n >= sizeof buf) return -1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (ieq(buf, yes[i])) return 1;
    if (ieq(buf, no[i])) return 0;
  }
  return -1;
}

/* Parses text into *out for key idx (STRING/ENUM: borrowed pointer to text). */
static tch_status parse_value(int idx, const char *text, tchi_value *out)
{
  const tchi_param *p = &tchi_params[idx];
  switch (p->type) {
  case TCH_PARAM_INT: {
    int64_t v;
    int r = parse_int_text(text, &v);
    if (r < 0)
      return tchi_fail(TCH_E_CONFIG, "key '%s': value '%.64s' overflows a 64-bit integer", p->key, text);
    if (r == 0) {
      double d;
      if (parse_double_text(text, &d) != 1 || isnan(d) || isinf(d) || d != floor(d))
        return tchi_fail(TCH_E_CONFIG, "key '%s' expects an integer, got '%.64s'", p->key, text);
      tch_status st = double_to_int(p, d, &v);
      if (st) return st;
    }
    tch_status st = check_int(p, v);
    if (st) return st;
    out->i = v;
    return TCH_OK;
  }
  case TCH_PARAM_DOUBLE: {
    double d;
    int r = parse_double_text(text, &d);
    if (r < 0)
      return tchi_fail(TCH_E_CONFIG, "key '%s': value '%.64s' is out of the range of a double", p->key, text);
    if (r == 0)
      return tchi_fail(TCH_E_CONFIG, "key '%s' expects a number, got '%.64s'", p->key, text);
    tch_status st = check_double(p, d);
    if (st) return st;
    out->d = d;
    return TCH_OK;
  }
  case TCH_PARAM_BOOL: {
    int b = parse_bool_text(text);
    if (b < 0)
      return tchi_fail(TCH_E_CONFIG, "key '%s' expects a boolean (true/false, yes/no, on/off, 1/0), got '%.64s'",
                       p->key, text);
    out->b = b;
    return TCH_OK;
  }
  case TCH_PARAM_STRING:
  case TCH_PARAM_ENUM: {
    tch_status st = check_string(p, text);
    if (st) return st;
    out->s = (char *)text;
    return TCH_OK;
  }
  }
  return tchi_fail(TCH_E_INTERNAL, "key '%s' has an invalid type", p->key);
}

tch_status tchi_config_set_text(tch_config *c, int idx, const char *text)
{
  tchi_value v;
  tch_status st = parse_value(idx, text, &v);
  if (st) return st;
  tch_param_type t = tchi_params[idx].type;
  if (t == TCH_PARAM_STRING || t == TCH_PARAM_ENUM) return store_string(c, idx, text);
  c->v[idx] = v;
  return TCH_OK;
}

static int is_string_type(tch_param_type t) { return t == TCH_PARAM_STRING || t == TCH_PARAM_ENUM; }

/* ---- lifetime --------------------------------------------------------------------- */

static void free_values(tch_config *c)
{
  for (int i = 0; i < TCHI_N_PARAMS; i++)
    if (is_string_type(tchi_params[i].type)) {
      tchi_free(c->v[i].s);
      c->v[i].s = NULL;
    }
}

static void destroy(tch_config *c)
{
  free_values(c);
  tchi_free(c);
}

static tch_status alloc_config(tch_config **out)
{
  tch_config *c = tchi_calloc(1, sizeof *c);
  if (!c) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a config");
  tchi_ref_init(&c->ref);
  for (int i = 0; i < TCHI_N_PARAMS; i++) c->v[i].s = NULL;   /* strings: none yet */
  *out = c;
  return TCH_OK;
}

tch_status tch_config_create(tch_config **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "tch_config_create: out is NULL");
  *out = NULL;
  tch_config *c = NULL;
  tch_status st = alloc_config(&c);
  if (st) return st;
  for (int i = 0; i < TCHI_N_PARAMS; i++) {
    st = tchi_config_set_text(c, i, tchi_params[i].def);
    if (st) {
      destroy(c);
      if (st == TCH_E_CONFIG)
        return tchi_fail(TCH_E_INTERNAL, "invalid default of key '%s' in the parameter table",
                         tchi_params[i].key);
      return st;
    }
  }
  *out = c;
  return TCH_OK;
}

tch_status tch_config_clone(const tch_config *c, tch_config **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "tch_config_clone: out is NULL");
  *out = NULL;
  if (!c) return tchi_fail(TCH_E_ARG, "tch_config_clone: config is NULL");
  tch_config *d = NULL;
  tch_status st = alloc_config(&d);
  if (st) return st;
  for (int i = 0; i < TCHI_N_PARAMS; i++) {
    if (is_string_type(tchi_params[i].type)) {
      st = store_string(d, i, c->v[i].s);
      if (st) {
        destroy(d);
        return st;
      }
    } else {
      d->v[i] = c->v[i];
    }
  }
  *out = d;
  return TCH_OK;
}

tch_config *tch_config_retain(tch_config *c)
{
  if (c) tchi_ref_inc(&c->ref);
  return c;
}

void tch_config_free(tch_config *c)
{
  if (c && tchi_ref_dec(&c->ref)) destroy(c);
}

void tchi_config_swap_values(tch_config *a, tch_config *b)
{
  for (int i = 0; i < TCHI_N_PARAMS; i++) {
    tchi_value t = a->v[i];
    a->v[i] = b->v[i];
    b->v[i] = t;
  }
}

/* ---- typed access ------------------------------------------------------------------ */

static tch_status wrong_type(const tchi_param *p, const char *what)
{
  return tchi_fail(TCH_E_CONFIG, "key '%s' is of type %s; %s", p->key,
                   tchi_param_type_name(p->type), what);
}

#define CHECK_ARGS(fn)                                                           \
  do {                                                                           \
    if (!c) return tchi_fail(TCH_E_ARG, fn ": config is NULL");                 \
    if (!key) return tchi_fail(TCH_E_ARG, fn ": key is NULL");                  \
  } while (0)

tch_status tch_config_set_int(tch_config *c, const char *key, int64_t v)
{
  CHECK_ARGS("tch_config_set_int");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (p->type == TCH_PARAM_INT) {
    st = check_int(p, v);
    if (st) return st;
    c->v[idx].i = v;
    return TCH_OK;
  }
  if (p->type == TCH_PARAM_DOUBLE) {
    double d = (double)v;
    st = check_double(p, d);
    if (st) return st;
    c->v[idx].d = d;
    return TCH_OK;
  }
  return wrong_type(p, "it cannot be set from an integer");
}

tch_status tch_config_set_double(tch_config *c, const char *key, double v)
{
  CHECK_ARGS("tch_config_set_double");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (p->type == TCH_PARAM_DOUBLE) {
    st = check_double(p, v);
    if (st) return st;
    c->v[idx].d = v;
    return TCH_OK;
  }
  if (p->type == TCH_PARAM_INT) {
    int64_t i;
    st = double_to_int(p, v, &i);
    if (st) return st;
    c->v[idx].i = i;
    return TCH_OK;
  }
  return wrong_type(p, "it cannot be set from a double");
}

tch_status tch_config_set_bool(tch_config *c, const char *key, int v)
{
  CHECK_ARGS("tch_config_set_bool");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (p->type != TCH_PARAM_BOOL) return wrong_type(p, "it cannot be set from a bool");
  c->v[idx].b = v != 0;
  return TCH_OK;
}

tch_status tch_config_set_string(tch_config *c, const char *key, const char *v)
{
  CHECK_ARGS("tch_config_set_string");
  if (!v) return tchi_fail(TCH_E_ARG, "tch_config_set_string: value is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (!is_string_type(p->type))
    return wrong_type(p, "use tch_config_set_from_string to set it from text");
  return store_string(c, idx, v);
}

tch_status tch_config_set_from_string(tch_config *c, const char *key, const char *text)
{
  CHECK_ARGS("tch_config_set_from_string");
  if (!text) return tchi_fail(TCH_E_ARG, "tch_config_set_from_string: text is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  return tchi_config_set_text(c, idx, text);
}

tch_status tch_config_get_int(const tch_config *c, const char *key, int64_t *out)
{
  CHECK_ARGS("tch_config_get_int");
  if (!out) return tchi_fail(TCH_E_ARG, "tch_config_get_int: out is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (p->type != TCH_PARAM_INT) return wrong_type(p, "it cannot be read as an integer");
  *out = c->v[idx].i;
  return TCH_OK;
}

tch_status tch_config_get_double(const tch_config *c, const char *key, double *out)
{
  CHECK_ARGS("tch_config_get_double");
  if (!out) return tchi_fail(TCH_E_ARG, "tch_config_get_double: out is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (p->type == TCH_PARAM_DOUBLE) *out = c->v[idx].d;
  else if (p->type == TCH_PARAM_INT) *out = (double)c->v[idx].i;
  else return wrong_type(p, "it cannot be read as a double");
  return TCH_OK;
}

tch_status tch_config_get_bool(const tch_config *c, const char *key, int *out)
{
  CHECK_ARGS("tch_config_get_bool");
  if (!out) return tchi_fail(TCH_E_ARG, "tch_config_get_bool: out is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (p->type != TCH_PARAM_BOOL) return wrong_type(p, "it cannot be read as a bool");
  *out = c->v[idx].b;
  return TCH_OK;
}

tch_status tch_config_get_string(const tch_config *c, const char *key, const char **out)
{
  CHECK_ARGS("tch_config_get_string");
  if (!out) return tchi_fail(TCH_E_ARG, "tch_config_get_string: out is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (!is_string_type(p->type)) return wrong_type(p, "it cannot be read as a string");
  *out = c->v[idx].s;
  return TCH_OK;
}

/* ---- introspection ------------------------------------------------------------------ */

const char *tch_config_next_key(const char *prev)
{
  if (!prev) return tchi_params[0].key;
  int idx = tchi_param_find(prev);
  if (idx < 0 || idx + 1 >= TCHI_N_PARAMS) return NULL;
  return tchi_params[idx + 1].key;
}

tch_status tch_config_describe(const char *key, tch_param_type *type, const char **default_text,
                               double *min, double *max, const char **choices, const char **doc)
{
  if (!key) return tchi_fail(TCH_E_ARG, "tch_config_describe: key is NULL");
  int idx;
  tch_status st = lookup(key, &idx);
  if (st) return st;
  const tchi_param *p = &tchi_params[idx];
  if (type) *type = p->type;
  if (default_text) *default_text = p->def;
  if (min) *min = p->min;
  if (max) *max = p->max;
  if (choices) *choices = p->choices;
  if (doc) *doc = p->doc;
  return TCH_OK;
}

/* ---- internal getters ----------------------------------------------------------- */

/* Index of key if it has one of the types t1/t2, else -1 (logged: a programming error). */
static int internal_find(const char *key, tch_param_type t1, tch_param_type t2, const char *as)
{
  int idx = tchi_param_find(key);
  if (idx < 0) {
    tchi_log(0, "config: internal lookup of unknown key '%s'", key ? key : "(null)");
    return -1;
  }
  tch_param_type t = tchi_params[idx].type;
  if (t != t1 && t != t2) {
    tchi_log(0, "config: internal read of key '%s' (type %s) as %s", key, tchi_param_type_name(t), as);
    return -1;
  }
  return idx;
}

/* The default of a numeric/bool key (the table's defaults are checked by the tests). */
static tchi_value default_value(int idx)
{
  tchi_value v;
  v.i = 0;
  if (parse_value(idx, tchi_params[idx].def, &v) != TCH_OK) {
    tchi_log(0, "config: invalid default of key '%s'", tchi_params[idx].key);
    v.i = 0;
  }
  return v;
}

int64_t tchi_cfg_int(const tch_config *c, const char *key)
{
  int idx = internal_find(key, TCH_PARAM_INT, TCH_PARAM_INT, "int");
  if (idx < 0) return 0;
  return c ? c->v[idx].i : default_value(idx).i;
}

double tchi_cfg_double(const tch_config *c, const char *key)
{
  int idx = internal_find(key, TCH_PARAM_DOUBLE, TCH_PARAM_INT, "double");
  if (idx < 0) return 0.0;
  tchi_value v = c ? c->v[idx] : default_value(idx);
  return tchi_params[idx].type == TCH_PARAM_INT ? (double)v.i : v.d;
}

int tchi_cfg_bool(const tch_config *c, const char *key)
{
  int idx = internal_find(key, TCH_PARAM_BOOL, TCH_PARAM_BOOL, "bool");
  if (idx < 0) return 0;
  return c ? c->v[idx].b : default_value(idx).b;
}

const char *tchi_cfg_string(const tch_config *c, const char *key)
{
  int idx = internal_find(key, TCH_PARAM_STRING, TCH_PARAM_ENUM, "string");
  if (idx < 0) return "";
  return c ? c->v[idx].s : tchi_params[idx].def;
}
