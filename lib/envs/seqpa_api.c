/* Public API of the sequence tasks (include/teacher/env.h): tasks whose raw score is a host
 * callback on the prepend/append sequence MDP (tch_env_create_seqpa), the built-in tasks'
 * constructors, raw scores, and the log Z of any env's target.
 *
 * A host task is an ordinary SeqPA env (builtin/seqpa.c) whose score is a wrapper around the
 * host's callback; the wrapper (its user, user_free, name and mode list) is attached to the
 * env as e->ext, so it dies with the env, and its `failed` flag tells the env adaptor that a
 * failure came from the host (TCH_E_CALLBACK) and not from a bad argument. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "envs/builtin/seqpa_tasks.h"

#define SEQPA_KNOWN_FLAGS (TCH_SEQPA_ENUMERATE | TCH_SEQPA_HAS_LOG_Z)
/* The first version of the descriptor is the whole current one. */
#define SEQPA_DESC_MIN_SIZE (offsetof(tch_seqpa_env_desc, n_modes) + sizeof(size_t))
/* Strings scored per host call while looking for the maximal score (r_max). */
#define SEQPA_SCAN_CHUNK 4096u

typedef struct host_task {
  tch_seqpa_score_fn score;
  void *user;
  void (*user_free)(void *);
  int owns_user;       /* 0 until creation succeeded: on failure the caller keeps user */
  int failed;          /* raised when score fails; the env's host_failed points here */
  char *name;
  uint32_t *modes;     /* sorted, distinct */
  size_t n_modes;
  double log_z;        /* NAN unless the descriptor gave it */
} host_task;

static void host_task_free(void *p)
{
  host_task *h = p;
  if (!h) return;
  if (h->owns_user && h->user_free) h->user_free(h->user);
  tchi_free(h->name);
  tchi_free(h->modes);
  tchi_free(h);
}

static int host_score(void *user, size_t n, const int32_t *strings, double *out_y)
{
  host_task *h = user;
  int rc = h->score(h->user, n, strings, out_y);
  if (rc != 0) h->failed = 1;
  return rc;
}

static const host_task *host_of(const tch_env *e)
{
  return e && e->ext_free == host_task_free ? e->ext : NULL;
}

static int cmp_u64(const void *a, const void *b)
{
  const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- tch_env_create_seqpa ------------------------------------------------------------- */

static tch_status check_desc(const tch_seqpa_env_desc *d, uint64_t *space)
{
  static const char fn[] = "tch_env_create_seqpa";
  if (d->flags & ~SEQPA_KNOWN_FLAGS)
    return tchi_fail(TCH_E_ARG, "%s: unknown flags 0x%x", fn, (unsigned)(d->flags & ~SEQPA_KNOWN_FLAGS));
  if (!d->score) return tchi_fail(TCH_E_ARG, "%s: score is NULL", fn);
  if (d->len < 1) return tchi_fail(TCH_E_ARG, "%s: len must be >= 1", fn);
  if (d->n_chars < 1 || d->n_chars > TCHI_SEQPA_MAX_CHARS)
    return tchi_fail(TCH_E_ARG, "%s: n_chars %u is not in [1, %u]", fn, (unsigned)d->n_chars,
                     (unsigned)TCHI_SEQPA_MAX_CHARS);
  if (!isfinite(d->beta) || d->beta < 0) return tchi_fail(TCH_E_ARG, "%s: beta must be finite and >= 0", fn);
  if (!isfinite(d->y_min) || !(d->y_min > 0)) return tchi_fail(TCH_E_ARG, "%s: y_min must be finite and > 0", fn);
  if (!isfinite(d->log_scale)) return tchi_fail(TCH_E_ARG, "%s: log_scale must be finite", fn);
  if (!isfinite(d->r_max) || d->r_max < 0) return tchi_fail(TCH_E_ARG, "%s: r_max must be finite and >= 0", fn);
  if (d->r_max > 0 && !(d->flags & TCH_SEQPA_ENUMERATE))
    return tchi_fail(TCH_E_ARG, "%s: r_max needs TCH_SEQPA_ENUMERATE (the scale is the maximum over "
                     "all strings); give log_scale instead", fn);
  if (!isfinite(d->add_floor) || d->add_floor < 0 || !isfinite(d->max_floor) || d->max_floor < 0)
    return tchi_fail(TCH_E_ARG, "%s: add_floor and max_floor must be finite and >= 0", fn);
  if ((d->flags & TCH_SEQPA_HAS_LOG_Z) && !isfinite(d->log_Z))
    return tchi_fail(TCH_E_ARG, "%s: TCH_SEQPA_HAS_LOG_Z with a log_Z that is not finite", fn);
  if (d->n_modes > 0 && !d->modes) return tchi_fail(TCH_E_ARG, "%s: %zu modes but modes is NULL", fn, d->n_modes);
  /* A^L, saturated above 2^40 (mode indices are stored as uint32: at most 2^32 strings). */
  uint64_t s = 1;
  for (uint32_t i = 0; i < d->len && s <= ((uint64_t)1 << 40); i++) s *= d->n_chars;
  *space = s;
  if ((d->flags & TCH_SEQPA_ENUMERATE) && s > TCHI_SEQPA_EXACT_MAX)
    return tchi_fail(TCH_E_ARG, "%s: %u^%u strings are too many to enumerate (at most %llu)", fn,
                     (unsigned)d->n_chars, (unsigned)d->len, (unsigned long long)TCHI_SEQPA_EXACT_MAX);
  if (d->n_modes > 0 && s > (uint64_t)UINT32_MAX + 1)
    return tchi_fail(TCH_E_ARG, "%s: mode lists need n_chars^len <= 2^32", fn);
  for (size_t i = 0; i < d->n_modes; i++)
    if (d->modes[i] >= s)
      return tchi_fail(TCH_E_ARG, "%s: modes[%zu] = %llu is not a string index (< %llu)", fn, i,
                       (unsigned long long)d->modes[i], (unsigned long long)s);
  return TCH_OK;
}

/* The reference's scale = r_max / max over X of max(y, y_min)^beta: one pass of the host's
 * score over all strings, in chunks. */
static tch_status scan_max(host_task *h, const tch_seqpa_env_desc *d, uint64_t space, double *y_max)
{
  const uint32_t L = d->len;
  const size_t chunk = space < SEQPA_SCAN_CHUNK ? (size_t)space : SEQPA_SCAN_CHUNK;
  int32_t *s = NULL;
  double *y = NULL;
  tch_status st = tchi_alloc_array(&s, chunk, (size_t)L * sizeof *s, 0, "seqpa scan strings");
  if (st == TCH_OK) st = tchi_alloc_array(&y, chunk, sizeof *y, 0, "seqpa scan scores");
  double m = d->y_min;
  for (uint64_t k0 = 0; st == TCH_OK && k0 < space; k0 += chunk) {
    const size_t n = (size_t)(space - k0 < chunk ? space - k0 : chunk);
    for (size_t r = 0; r < n; r++) tchi_seqpa_from_index(k0 + r, L, d->n_chars, s + r * L);
    tchi_callback_error_reset();
    int rc = h->score(h->user, n, s, y);
    if (rc != 0) {
      st = tchi_callback_fail(rc, "score");
      break;
    }
    for (size_t r = 0; r < n; r++) {
      if (isnan(y[r]) || (isinf(y[r]) && y[r] > 0)) {
        st = tchi_fail(TCH_E_NUMERIC, "tch_env_create_seqpa: score returned %g for string %llu",
                       y[r], (unsigned long long)(k0 + r));
        break;
      }
      if (y[r] > m) m = y[r];
    }
  }
  tchi_free(s);
  tchi_free(y);
  *y_max = m;
  return st;
}

/* Sorted, distinct uint32 copy of the mode list. */
static tch_status copy_modes(host_task *h, const tch_seqpa_env_desc *d)
{
  if (d->n_modes == 0) return TCH_OK;
  uint64_t *tmp = NULL;
  tch_status st = tchi_alloc_array(&tmp, d->n_modes, sizeof *tmp, 0, "seqpa mode list");
  if (st != TCH_OK) return st;
  memcpy(tmp, d->modes, d->n_modes * sizeof *tmp);
  qsort(tmp, d->n_modes, sizeof *tmp, cmp_u64);
  st = tchi_alloc_array(&h->modes, d->n_modes, sizeof *h->modes, 0, "seqpa mode list");
  if (st == TCH_OK) {
    for (size_t i = 0; i < d->n_modes; i++)
      if (i == 0 || tmp[i] != tmp[i - 1]) h->modes[h->n_modes++] = (uint32_t)tmp[i];
  }
  tchi_free(tmp);
  return st;
}

tch_status tch_env_create_seqpa(const tch_seqpa_env_desc *desc, tch_env **out)
{
  static const char fn[] = "tch_env_create_seqpa";
  if (out) *out = NULL;
  if (!desc || !out) return tchi_fail(TCH_E_ARG, "%s: %s is NULL", fn, desc ? "out" : "descriptor");
  if (desc->struct_size < SEQPA_DESC_MIN_SIZE)
    return tchi_fail(TCH_E_ARG, "%s: descriptor struct_size %u is smaller than the oldest supported "
                     "(%zu); call tch_seqpa_env_desc_init()", fn, (unsigned)desc->struct_size,
                     (size_t)SEQPA_DESC_MIN_SIZE);
  tch_seqpa_env_desc d;   /* a longer (newer) descriptor: the tail is ignored */
  memset(&d, 0, sizeof d);
  memcpy(&d, desc, TCHI_MIN((size_t)desc->struct_size, sizeof d));
  uint64_t space = 0;
  tch_status st = check_desc(&d, &space);
  if (st != TCH_OK) return st;

  host_task *h = tchi_calloc(1, sizeof *h);
  if (!h) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a sequence task");
  h->score = d.score;
  h->user = d.user;
  h->user_free = d.user_free;
  h->log_z = (d.flags & TCH_SEQPA_HAS_LOG_Z) ? d.log_Z : NAN;
  const char *name = d.name ? d.name : "seqpa";
  h->name = tchi_malloc(strlen(name) + 1);
  if (!h->name) st = tchi_fail(TCH_E_NOMEM, "out of memory copying the task name");
  else memcpy(h->name, name, strlen(name) + 1);
  if (st == TCH_OK) st = copy_modes(h, &d);
  double log_scale = d.log_scale;
  if (st == TCH_OK && d.r_max > 0) {
    double y_max;
    st = scan_max(h, &d, space, &y_max);
    log_scale = log(d.r_max) - d.beta * log(y_max);
    if (st == TCH_OK && !isfinite(log_scale))
      st = tchi_fail(TCH_E_NUMERIC, "%s: the scale r_max / max y^beta is not finite", fn);
  }
  if (st != TCH_OK) {
    host_task_free(h);   /* owns_user is 0: the caller keeps user */
    return st;
  }
  const tchi_seqpa_task task = {
    .name = h->name,
    .len = d.len,
    .n_chars = d.n_chars,
    .score = host_score,
    .score_user = h,
    .reward = {.y_min = d.y_min, .beta = d.beta, .log_scale = log_scale,
               .add_floor = d.add_floor, .max_floor = d.max_floor},
    .modes = h->modes,
    .n_modes = h->n_modes,
    .enumerate = (d.flags & TCH_SEQPA_ENUMERATE) != 0,
  };
  tch_env *e = NULL;
  st = tchi_env_create_seqpa(&task, &e);
  if (st != TCH_OK) {
    host_task_free(h);
    return st;
  }
  h->owns_user = 1;
  e->ext = h;
  e->ext_free = host_task_free;
  e->host_failed = &h->failed;
  *out = e;
  return TCH_OK;
}

/* ---- built-in tasks -------------------------------------------------------------------- */

tch_status tch_env_create_qm9str(tch_env **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_qm9str: out is NULL");
  return tchi_env_create_qm9str(out);
}

tch_status tch_env_create_sehstr(tch_env **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_sehstr: out is NULL");
  return tchi_env_create_sehstr(out);
}

tch_status tch_env_create_tfbind8(tch_env **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_tfbind8: out is NULL");
  return tchi_env_create_tfbind8(out);
}

tch_status tch_env_create_rna(uint32_t task, tch_env **out)
{
  if (out) *out = NULL;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_rna: out is NULL");
  return tchi_env_create_rna(task, out);
}

/* ---- queries ---------------------------------------------------------------------------- */

tch_status tch_env_raw_scores(tch_env *e, size_t n, const int32_t *states, double *out_y)
{
  static const char fn[] = "tch_env_raw_scores";
  if (!e) return tchi_fail(TCH_E_ARG, "%s: env is NULL", fn);
  if (e->kind != TCHI_ENV_DISCRETE) return tchi_fail(TCH_E_ARG, "%s: an energy env has no raw scores", fn);
  if (!tchi_seqpa_task_of(e))
    return tchi_fail(TCH_E_STATE, "%s: the env has no raw scores (only sequence tasks do); use "
                     "tch_env_log_reward", fn);
  if (n == 0) return TCH_OK;
  if (!states || !out_y) return tchi_fail(TCH_E_ARG, "%s: NULL argument", fn);
  tch_status st = tchi_seqpa_scores(e, n, states, out_y);
  if (e->host_failed) *e->host_failed = 0;
  if (st != TCH_OK) return tchi_fail_prefix(st, "%s: ", fn);
  for (size_t r = 0; r < n; r++)
    if (isnan(out_y[r]) || (isinf(out_y[r]) && out_y[r] > 0))
      return tchi_fail(TCH_E_NUMERIC, "%s: score returned %g for row %zu", fn, out_y[r], r);
  return TCH_OK;
}

tch_status tch_env_target_log_Z(const tch_env *e, double *out)
{
  static const char fn[] = "tch_env_target_log_Z";
  if (!e || !out) return tchi_fail(TCH_E_ARG, "%s: %s is NULL", fn, e ? "out" : "env");
  if (e->kind != TCHI_ENV_DISCRETE) return tch_env_log_Z(e, out);
  /* enumerated, or a built-in with a shipped constant (sehstr) */
  if (tchi_seqpa_task_of(e) && (e->exact || tchi_seqpa_task_of(e)->has_known_log_z))
    return tchi_seqpa_log_z(e, out);
  const host_task *h = host_of(e);
  if (h && !isnan(h->log_z)) {
    *out = h->log_z;
    return TCH_OK;
  }
  if (!e->exact)
    return tchi_fail(TCH_E_STATE, "%s: the env neither enumerates its terminal set nor knows its log Z", fn);
  /* log sum exp over the enumerated set, the sum compensated (Neumaier). */
  const tchi_exact_target *x = e->exact;
  double m = -INFINITY;
  for (size_t i = 0; i < x->n; i++) m = x->log_r[i] > m ? x->log_r[i] : m;
  double sum = 0.0, comp = 0.0;
  for (size_t i = 0; i < x->n; i++) {
    const double v = exp(x->log_r[i] - m), t = sum + v;
    comp += fabs(sum) >= v ? (sum - t) + v : (v - t) + sum;
    sum = t;
  }
  *out = m + log(sum + comp);
  return TCH_OK;
}
