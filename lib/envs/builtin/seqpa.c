/* Prepend/append sequence MDP (SeqPA) as a built-in discrete env; the MDP, its action
 * numbering and its unique-children masks are described in seqpa.h. A task supplies the
 * batched raw score and the reference's reward transform; tasks small enough are enumerated
 * into an exact target (lib/envs/exact.c) with their own mode list. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "envs/builtin/seqpa.h"

/* Callback return codes (reported through TCH_E_CALLBACK / tch_last_callback_code()). */
enum { SP_BAD_ACTION = 1, SP_BAD_STATE = 2 };

typedef struct seqpa {
  tchi_seqpa_task task;
  double log_z;          /* exact log sum R over X; NAN unless enumerated */
} seqpa;

static void sp_free(void *p) { tchi_free(p); }

/* ---- string helpers ----------------------------------------------------------------- */

uint32_t tchi_seqpa_length(const int32_t *s, uint32_t len)
{
  uint32_t n = 0;
  while (n < len && s[n] >= 0) n++;
  return n;
}

int tchi_seqpa_valid(const int32_t *s, uint32_t len, uint32_t n_chars)
{
  uint32_t n = tchi_seqpa_length(s, len);
  for (uint32_t i = 0; i < n; i++)
    if ((uint32_t)s[i] >= n_chars) return 0;
  for (uint32_t i = n; i < len; i++)
    if (s[i] != -1) return 0;
  return 1;
}

uint64_t tchi_seqpa_index(const int32_t *s, uint32_t len, uint32_t n_chars)
{
  uint64_t k = 0;
  for (uint32_t i = 0; i < len; i++) k = k * n_chars + (uint64_t)s[i];
  return k;
}

void tchi_seqpa_from_index(uint64_t k, uint32_t len, uint32_t n_chars, int32_t *out)
{
  for (uint32_t i = len; i-- > 0;) {
    out[i] = (int32_t)(k % n_chars);
    k /= n_chars;
  }
}

int tchi_seqpa_parse(const char *text, uint32_t len, uint32_t n_chars, int32_t *out)
{
  size_t n = strlen(text);
  if (n > len || n_chars > TCHI_SEQPA_MAX_CHARS) return -1;
  for (size_t i = 0; i < n; i++) {
    const char *p = strchr(TCHI_SEQPA_SYMBOLS, text[i]);
    if (!p || (uint32_t)(p - TCHI_SEQPA_SYMBOLS) >= n_chars) return -1;
    out[i] = (int32_t)(p - TCHI_SEQPA_SYMBOLS);
  }
  for (size_t i = n; i < len; i++) out[i] = -1;
  return 0;
}

void tchi_seqpa_format(const int32_t *s, uint32_t len, char *buf)
{
  uint32_t n = tchi_seqpa_length(s, len), i;
  for (i = 0; i < n; i++)
    buf[i] = (uint32_t)s[i] < TCHI_SEQPA_MAX_CHARS ? TCHI_SEQPA_SYMBOLS[s[i]] : '?';
  buf[i] = '\0';
}

/* 1 if the string s[0..n) is empty or one repeated character: the strings from which
 * prepend c and append c give the same child. */
static int sp_constant(const int32_t *s, uint32_t n)
{
  for (uint32_t i = 1; i < n; i++)
    if (s[i] != s[0]) return 0;
  return 1;
}

double tchi_reward_transform_log(const tchi_reward_transform *t, double y)
{
  if (isnan(y)) return y;   /* np.maximum keeps NaN; the env's checks then report it */
  const double yp = y > t->y_min ? y : t->y_min;
  double lr = t->beta * log(yp) + t->log_scale;
  if (t->add_floor > 0) {   /* log(exp(lr) + add_floor), without overflow or underflow */
    const double lf = log(t->add_floor);
    lr = lr > lf ? lr + log1p(exp(lf - lr)) : lf + log1p(exp(lr - lf));
  }
  if (t->max_floor > 0 && lr < log(t->max_floor)) lr = log(t->max_floor);
  return lr;
}

/* ---- callbacks (batched, no allocation) ---------------------------------------------- */

static int sp_error(int code, const char *fmt, ...) TCHI_PRINTF(2, 3);
static int sp_error(int code, const char *fmt, ...)
{
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tch_set_callback_error(msg);
  return code;
}

/* Length of row r's state, or -1 after setting the callback error. */
static int64_t sp_checked_length(const seqpa *p, size_t r, const int32_t *s)
{
  const uint32_t L = p->task.len;
  if (!tchi_seqpa_valid(s, L, p->task.n_chars)) {
    sp_error(SP_BAD_STATE, "%s: row %zu is not a string of characters in [0, %u) padded with -1",
             p->task.name, r, (unsigned)p->task.n_chars);
    return -1;
  }
  return (int64_t)tchi_seqpa_length(s, L);
}

static int sp_step(void *user, size_t n, const int32_t *states, const int32_t *actions, int32_t *out)
{
  const seqpa *p = user;
  const uint32_t L = p->task.len, A = p->task.n_chars;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * L;
    int32_t *o = out + r * L;
    const int64_t m = sp_checked_length(p, r, s);
    if (m < 0) return SP_BAD_STATE;
    const int32_t a = actions[r];
    if (a < 0 || (uint32_t)a >= 2 * A)
      return sp_error(SP_BAD_ACTION, "%s: row %zu: action %d is not a prepend/append (EXIT = %u)",
                      p->task.name, r, (int)a, (unsigned)(2 * A));
    if (m == L)
      return sp_error(SP_BAD_ACTION, "%s: row %zu: action %d from a full string (only EXIT)",
                      p->task.name, r, (int)a);
    const uint32_t k = (uint32_t)m;
    /* Written from the end so that out == states works. */
    for (uint32_t i = L; i-- > k + 1;) o[i] = -1;
    if ((uint32_t)a < A) {
      for (uint32_t i = k; i > 0; i--) o[i] = s[i - 1];
      o[0] = a;
    } else {
      o[k] = a - (int32_t)A;
      for (uint32_t i = k; i-- > 0;) o[i] = s[i];
    }
  }
  return 0;
}

static int sp_backward_step(void *user, size_t n, const int32_t *states, const int32_t *actions,
                            int32_t *out)
{
  const seqpa *p = user;
  const uint32_t L = p->task.len, A = p->task.n_chars;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * L;
    int32_t *o = out + r * L;
    const int64_t m = sp_checked_length(p, r, s);
    if (m < 0) return SP_BAD_STATE;
    const int32_t a = actions[r];
    if (a < 0 || (uint32_t)a >= 2 * A)
      return sp_error(SP_BAD_ACTION, "%s: row %zu: backward action %d out of range [0, %u)",
                      p->task.name, r, (int)a, (unsigned)(2 * A));
    const uint32_t k = (uint32_t)m;
    const int first = (uint32_t)a < A;
    const int32_t c = first ? a : a - (int32_t)A;
    if (k == 0 || (first ? s[0] : s[k - 1]) != c)
      return sp_error(SP_BAD_ACTION, "%s: row %zu: backward action %d deletes a '%c' the string "
                      "does not %s with", p->task.name, r, (int)a, TCHI_SEQPA_SYMBOLS[c],
                      first ? "start" : "end");
    /* Written from the front so that out == states works. */
    if (first)
      for (uint32_t i = 0; i + 1 < k; i++) o[i] = s[i + 1];
    else
      for (uint32_t i = 0; i + 1 < k; i++) o[i] = s[i];
    for (uint32_t i = k - 1; i < L; i++) o[i] = -1;
  }
  return 0;
}

/* Forward: a full string may only EXIT; otherwise every prepend and append, except "append
 * c" from the empty string or a constant string of c (a duplicate of "prepend c", see
 * seqpa.h). Backward: "delete first" always (length >= 1); "delete last" unless the string is
 * constant (then both deletions give the same parent). */
static int sp_masks(void *user, size_t n, const int32_t *states, uint8_t *fwd, uint8_t *bwd)
{
  const seqpa *p = user;
  const uint32_t L = p->task.len, A = p->task.n_chars, na = 2 * A + 1;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * L;
    const int64_t m = sp_checked_length(p, r, s);
    if (m < 0) return SP_BAD_STATE;
    const uint32_t k = (uint32_t)m;
    const int constant = sp_constant(s, k);
    uint8_t *f = fwd + r * na;
    if (k == L) {
      memset(f, 0, 2 * A);
      f[2 * A] = 1;
    } else {
      memset(f, 1, 2 * A);
      f[2 * A] = 0;
      if (k == 0) memset(f + A, 0, A);
      else if (constant) f[A + (uint32_t)s[0]] = 0;
    }
    if (bwd) {
      uint8_t *b = bwd + r * (na - 1);
      memset(b, 0, 2 * A);
      if (k > 0) {
        b[s[0]] = 1;
        if (!constant) b[A + (uint32_t)s[k - 1]] = 1;
      }
    }
  }
  return 0;
}

static int sp_log_reward(void *user, size_t n, const int32_t *states, double *out)
{
  const seqpa *p = user;
  const uint32_t L = p->task.len;
  for (size_t r = 0; r < n; r++) {
    const int64_t m = sp_checked_length(p, r, states + r * L);
    if (m < 0) return SP_BAD_STATE;
    if (m != L)
      return sp_error(SP_BAD_STATE, "%s: row %zu has %u characters: only strings of length %u are "
                      "terminal", p->task.name, r, (unsigned)m, (unsigned)L);
  }
  int rc = p->task.score(p->task.score_user, n, states, out);
  if (rc) return rc;
  for (size_t r = 0; r < n; r++) out[r] = tchi_reward_transform_log(&p->task.reward, out[r]);
  return 0;
}

/* ---- queries -------------------------------------------------------------------------- */

const tchi_seqpa_task *tchi_seqpa_task_of(const tch_env *e)
{
  if (!e || e->kind != TCHI_ENV_DISCRETE || e->builtin_free != sp_free || !e->builtin) return NULL;
  return &((const seqpa *)e->builtin)->task;
}

static const seqpa *sp_of(const tch_env *e) { return tchi_seqpa_task_of(e) ? e->builtin : NULL; }

tch_status tchi_seqpa_log_z(const tch_env *e, double *out)
{
  const seqpa *p = sp_of(e);
  if (!p || !out) return tchi_fail(TCH_E_ARG, "seqpa log Z: %s", p ? "out is NULL" : "not a SeqPA env");
  if (isnan(p->log_z))
    return tchi_fail(TCH_E_STATE, "%s: log Z is unknown (the env does not enumerate its %u^%u strings)",
                     p->task.name, (unsigned)p->task.n_chars, (unsigned)p->task.len);
  *out = p->log_z;
  return TCH_OK;
}

tch_status tchi_seqpa_scores(tch_env *e, size_t n, const int32_t *states, double *out_y)
{
  const seqpa *p = sp_of(e);
  if (!p) return tchi_fail(TCH_E_ARG, "seqpa scores: not a SeqPA env");
  if (n == 0) return TCH_OK;
  if (!states || !out_y) return tchi_fail(TCH_E_ARG, "seqpa scores: NULL argument");
  const uint32_t L = p->task.len;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * L;
    if (!tchi_seqpa_valid(s, L, p->task.n_chars) || tchi_seqpa_length(s, L) != L)
      return tchi_fail(TCH_E_ARG, "%s scores: row %zu is not a string of %u characters in [0, %u)",
                       p->task.name, r, (unsigned)L, (unsigned)p->task.n_chars);
  }
  tchi_callback_error_reset();
  int rc = p->task.score(p->task.score_user, n, states, out_y);
  if (rc) return tchi_callback_fail(rc, "score");
  return TCH_OK;
}

int64_t tchi_seqpa_mode_id(const tch_env *e, const int32_t *state)
{
  const seqpa *p = sp_of(e);
  if (!p || !state || !p->task.modes) return -1;
  const uint32_t L = p->task.len, A = p->task.n_chars;
  if (!tchi_seqpa_valid(state, L, A) || tchi_seqpa_length(state, L) != L) return -1;
  const uint64_t k = tchi_seqpa_index(state, L, A);
  size_t lo = 0, hi = p->task.n_modes;   /* binary search in [lo, hi) */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (p->task.modes[mid] < k) lo = mid + 1;
    else hi = mid;
  }
  return lo < p->task.n_modes && p->task.modes[lo] == k ? (int64_t)lo : -1;
}

tch_status tchi_seqpa_count_modes(const tch_env *e, size_t n, const int32_t *states, size_t *out)
{
  const seqpa *p = sp_of(e);
  if (!p || !out || (n > 0 && !states))
    return tchi_fail(TCH_E_ARG, "seqpa count modes: %s", p ? "NULL argument" : "not a SeqPA env");
  *out = 0;
  if (n == 0 || p->task.n_modes == 0) return TCH_OK;
  uint8_t *seen;
  tch_status st = tchi_alloc_array(&seen, p->task.n_modes, 1, 1, "mode flags");
  if (st != TCH_OK) return st;
  size_t found = 0;
  for (size_t r = 0; r < n; r++) {
    int64_t id = tchi_seqpa_mode_id(e, states + r * p->task.len);
    if (id >= 0 && !seen[id]) {
      seen[id] = 1;
      found++;
    }
  }
  tchi_free(seen);
  *out = found;
  return TCH_OK;
}

/* ---- exact target --------------------------------------------------------------------- */

static int64_t sp_index_of(const tch_env *e, const int32_t *s)
{
  const seqpa *p = sp_of(e);
  if (!p || !e->exact) return -1;
  const uint32_t L = p->task.len, A = p->task.n_chars;
  if (!tchi_seqpa_valid(s, L, A) || tchi_seqpa_length(s, L) != L) return -1;
  return (int64_t)tchi_seqpa_index(s, L, A);
}

/* All A^L strings in base-A order, their log-rewards, the task's modes, and log Z. */
static tch_status sp_build_exact(tch_env *e, seqpa *p)
{
  const uint32_t L = p->task.len, A = p->task.n_chars;
  uint64_t nx64 = 1;
  for (uint32_t i = 0; i < L; i++) nx64 *= A;   /* <= TCHI_SEQPA_EXACT_MAX, checked by the caller */
  const size_t nx = (size_t)nx64;
  int32_t *states = NULL;
  double *log_r = NULL;
  tch_status st = tchi_alloc_array(&states, nx, (size_t)L * sizeof *states, 0, "seqpa terminal states");
  if (st == TCH_OK) st = tchi_alloc_array(&log_r, nx, sizeof *log_r, 0, "seqpa terminal log-rewards");
  if (st != TCH_OK) {
    tchi_free(states);
    tchi_free(log_r);
    return st;
  }
  for (size_t k = 0; k < nx; k++) tchi_seqpa_from_index(k, L, A, states + k * L);
  tchi_callback_error_reset();
  int rc = sp_log_reward(p, nx, states, log_r);
  if (rc) {
    tchi_free(states);
    tchi_free(log_r);
    return tchi_callback_fail(rc, "score");
  }
  st = tchi_exact_target_create(nx, states, log_r, sp_index_of, &e->exact);
  if (st != TCH_OK) return st;   /* states and log_r are freed by it */
  tchi_exact_target *x = e->exact;
  if (p->task.modes) {   /* the reference's mode set, not only the maximal-reward strings */
    memset(x->is_mode, 0, nx);
    for (size_t i = 0; i < p->task.n_modes; i++) x->is_mode[p->task.modes[i]] = 1;
    x->n_modes = p->task.n_modes;
  }
  /* log Z = m + log sum exp(log_r - m), the sum compensated (Neumaier). */
  double m = -INFINITY;
  for (size_t i = 0; i < nx; i++) m = x->log_r[i] > m ? x->log_r[i] : m;
  double sum = 0.0, comp = 0.0;
  for (size_t i = 0; i < nx; i++) {
    double v = exp(x->log_r[i] - m), t = sum + v;
    comp += fabs(sum) >= v ? (sum - t) + v : (v - t) + sum;
    sum = t;
  }
  p->log_z = m + log(sum + comp);
  return TCH_OK;
}

/* ---- constructor ---------------------------------------------------------------------- */

static tch_status check_task(const tchi_seqpa_task *t)
{
  const char *name = t->name ? t->name : "seqpa";
  if (t->len < 1 || t->len > INT32_MAX / 2)
    return tchi_fail(TCH_E_ARG, "%s: string length %u is out of range", name, (unsigned)t->len);
  if (t->n_chars < 1 || t->n_chars > TCHI_SEQPA_MAX_CHARS)
    return tchi_fail(TCH_E_ARG, "%s: alphabet size %u is not in [1, %u]", name,
                     (unsigned)t->n_chars, (unsigned)TCHI_SEQPA_MAX_CHARS);
  if (!t->score) return tchi_fail(TCH_E_ARG, "%s: score function is NULL", name);
  const tchi_reward_transform *r = &t->reward;
  if (!isfinite(r->beta) || r->beta < 0 || !isfinite(r->log_scale) || !(r->y_min > 0) ||
      !isfinite(r->y_min) || !(r->add_floor >= 0) || !(r->max_floor >= 0) ||
      !isfinite(r->add_floor) || !isfinite(r->max_floor))
    return tchi_fail(TCH_E_ARG, "%s: reward transform needs finite beta >= 0, log_scale, y_min > 0 "
                     "and floors >= 0", name);
  if (t->n_modes > 0 && !t->modes) return tchi_fail(TCH_E_ARG, "%s: %zu modes but no mode list", name, t->n_modes);
  uint64_t space = 1;
  for (uint32_t i = 0; i < t->len && space <= ((uint64_t)1 << 40); i++) space *= t->n_chars;
  for (size_t i = 0; i < t->n_modes; i++)
    if ((uint64_t)t->modes[i] >= space || (i > 0 && t->modes[i] <= t->modes[i - 1]))
      return tchi_fail(TCH_E_ARG, "%s: mode list must be strictly increasing string indices "
                       "(entry %zu)", name, i);
  if (t->enumerate && space > TCHI_SEQPA_EXACT_MAX)
    return tchi_fail(TCH_E_ARG, "%s: %u^%u strings are too many to enumerate", name,
                     (unsigned)t->n_chars, (unsigned)t->len);
  return TCH_OK;
}

tch_status tchi_env_create_seqpa(const tchi_seqpa_task *task, tch_env **out)
{
  if (out) *out = NULL;
  if (!task || !out) return tchi_fail(TCH_E_ARG, "seqpa: %s is NULL", task ? "out" : "task");
  tch_status st = check_task(task);
  if (st != TCH_OK) return st;
  seqpa *p = tchi_calloc(1, sizeof *p);
  if (!p) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a SeqPA env");
  p->task = *task;
  if (!p->task.name) p->task.name = "seqpa";
  p->log_z = task->has_known_log_z && !task->enumerate ? task->known_log_z : NAN;
  const uint32_t L = task->len, A = task->n_chars;

  int32_t *s0 = NULL;
  uint32_t *vocab = NULL;
  tch_env *e = NULL;
  st = tchi_alloc_array(&s0, L, sizeof *s0, 0, "seqpa s0");
  if (st == TCH_OK) st = tchi_alloc_array(&vocab, L, sizeof *vocab, 0, "seqpa vocab");
  if (st == TCH_OK) {
    for (uint32_t i = 0; i < L; i++) {
      s0[i] = -1;       /* the empty string */
      vocab[i] = A;     /* one-hot width L * A, padding encodes as zeros */
    }
    tch_discrete_env_desc d;
    tch_discrete_env_desc_init(&d);
    d.state_dim = L;
    d.n_actions = 2 * A + 1;
    d.max_len = L;
    d.s0 = s0;
    d.step = sp_step;
    d.backward_step = sp_backward_step;
    d.masks = sp_masks;
    d.log_reward = sp_log_reward;
    d.vocab = vocab;
    st = tchi_env_create_builtin_discrete(&d, p, sp_free, &e);
  } else {
    sp_free(p);
  }
  tchi_free(s0);
  tchi_free(vocab);
  if (st != TCH_OK) return st;
  e->default_buffer_capacity = task->buffer_capacity;
  if (task->enumerate) {
    st = sp_build_exact(e, p);
    if (st != TCH_OK) {
      tch_env_free(e);
      return st;
    }
  }
  *out = e;
  return TCH_OK;
}
