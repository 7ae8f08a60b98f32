/* Exact target of envs that can enumerate their terminal set X: p*(x), modes, and the
 * metrics the reference computes from samples (empirical L1, distinct modes found). All
 * metrics are O(|X| + n) through the env's index map. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "envs/env.h"

#define TCHI_MODE_TOL 1e-12

void tchi_exact_target_free(tchi_exact_target *x)
{
  if (!x) return;
  tchi_free(x->states);
  tchi_free(x->log_r);
  tchi_free(x->p);
  tchi_free(x->is_mode);
  tchi_free(x);
}

/* Neumaier-compensated running sum. */
typedef struct ksum { double s, c; } ksum;
static void ksum_add(ksum *k, double v)
{
  double t = k->s + v;
  if (fabs(k->s) >= fabs(v)) k->c += (k->s - t) + v;
  else k->c += (v - t) + k->s;
  k->s = t;
}
static double ksum_get(const ksum *k) { return k->s + k->c; }

tch_status tchi_exact_target_create(size_t n, int32_t *states, double *log_r,
                                    int64_t (*index_of)(const struct tch_env *e,
                                                        const int32_t *state),
                                    tchi_exact_target **out)
{
  tch_status st = TCH_OK;
  tchi_exact_target *x = NULL;
  *out = NULL;
  if (n == 0 || !states || !log_r || !index_of) {
    st = tchi_fail(TCH_E_INTERNAL, "exact target: empty terminal set or missing index map");
    goto fail;
  }
  double m = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double v = log_r[i];
    if (isnan(v) || (isinf(v) && v > 0)) {
      st = tchi_fail(TCH_E_NUMERIC, "exact target: log-reward of terminal state %zu is %s", i,
                     isnan(v) ? "nan" : "+inf");
      goto fail;
    }
    if (v > m) m = v;
  }
  if (isinf(m)) {
    st = tchi_fail(TCH_E_NUMERIC, "exact target: every terminal state has log-reward -inf");
    goto fail;
  }
  x = tchi_calloc(1, sizeof *x);
  if (!x) {
    st = tchi_fail(TCH_E_NOMEM, "out of memory allocating exact target");
    goto fail;
  }
  x->n = n;
  x->states = states;
  x->log_r = log_r;
  x->index_of = index_of;
  states = NULL;
  log_r = NULL;
  st = tchi_alloc_array(&x->p, n, sizeof *x->p, 0, "exact target p");
  if (st != TCH_OK) goto fail;
  st = tchi_alloc_array(&x->is_mode, n, sizeof *x->is_mode, 1, "exact target modes");
  if (st != TCH_OK) goto fail;
  ksum z = {0, 0};
  for (size_t i = 0; i < n; i++) {
    x->p[i] = exp(x->log_r[i] - m);
    ksum_add(&z, x->p[i]);
  }
  const double zs = ksum_get(&z);   /* >= 1: the maximum contributes exp(0) */
  for (size_t i = 0; i < n; i++) {
    x->p[i] /= zs;
    if (x->log_r[i] >= m - TCHI_MODE_TOL) {
      x->is_mode[i] = 1;
      x->n_modes++;
    }
  }
  *out = x;
  return TCH_OK;

fail:
  tchi_free(states);
  tchi_free(log_r);
  tchi_exact_target_free(x);
  return st;
}

/* ---- public queries --------------------------------------------------------------- */

static tch_status need_exact(const tch_env *e, const char *fn)
{
  if (!e) return tchi_fail(TCH_E_ARG, "%s: env is NULL", fn);
  if (!e->exact) return tchi_fail(TCH_E_STATE, "%s: env cannot enumerate its terminal set", fn);
  return TCH_OK;
}

/* "(3, 0, 15)" with at most 8 values shown. */
static void format_state(char *buf, size_t cap, const int32_t *s, uint32_t dim)
{
  size_t len = 0;
  int w = snprintf(buf, cap, "(");
  if (w > 0) len = (size_t)w;
  uint32_t shown = dim < 8 ? dim : 8;
  for (uint32_t i = 0; i < shown && len < cap; i++) {
    w = snprintf(buf + len, cap - len, "%s%d", i ? ", " : "", (int)s[i]);
    if (w > 0) len += (size_t)w;
  }
  if (len < cap) snprintf(buf + len, cap - len, "%s)", shown < dim ? ", ..." : "");
}

/* Index in X of every sample, or TCH_E_ARG naming the first that is not in X. */
static tch_status sample_index(const tch_env *e, size_t r, const int32_t *s, const char *fn,
                               size_t *out)
{
  int64_t k = e->exact->index_of(e, s);
  if (k < 0 || (uint64_t)k >= (uint64_t)e->exact->n) {
    char buf[128];
    format_state(buf, sizeof buf, s, e->d.state_dim);
    return tchi_fail(TCH_E_ARG, "%s: sample %zu %s is not in the env's terminal set", fn, r, buf);
  }
  *out = (size_t)k;
  return TCH_OK;
}

tch_status tch_env_n_terminal(const tch_env *e, size_t *out)
{
  tch_status st = need_exact(e, "tch_env_n_terminal");
  if (st != TCH_OK) return st;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_n_terminal: out is NULL");
  *out = e->exact->n;
  return TCH_OK;
}

tch_status tch_env_n_modes(const tch_env *e, size_t *out)
{
  tch_status st = need_exact(e, "tch_env_n_modes");
  if (st != TCH_OK) return st;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_n_modes: out is NULL");
  *out = e->exact->n_modes;
  return TCH_OK;
}

tch_status tch_env_enumerate_terminal(const tch_env *e, size_t cap, int32_t *states, double *log_r)
{
  tch_status st = need_exact(e, "tch_env_enumerate_terminal");
  if (st != TCH_OK) return st;
  const size_t k = TCHI_MIN(cap, e->exact->n);
  if (states) memcpy(states, e->exact->states, k * (size_t)e->d.state_dim * sizeof *states);
  if (log_r) memcpy(log_r, e->exact->log_r, k * sizeof *log_r);
  return TCH_OK;
}

tch_status tch_env_empirical_l1(const tch_env *e, size_t n, const int32_t *states, double *out_l1)
{
  static const char fn[] = "tch_env_empirical_l1";
  tch_status st = need_exact(e, fn);
  if (st != TCH_OK) return st;
  if (!states || !out_l1) return tchi_fail(TCH_E_ARG, "%s: %s is NULL", fn, states ? "out_l1" : "states");
  if (n == 0) return tchi_fail(TCH_E_ARG, "%s: no samples (n = 0)", fn);
  const tchi_exact_target *x = e->exact;
  size_t *count;
  st = tchi_alloc_array(&count, x->n, sizeof *count, 1, "empirical counts");
  if (st != TCH_OK) return st;
  const size_t sd = e->d.state_dim;
  for (size_t r = 0; r < n; r++) {
    size_t k;
    st = sample_index(e, r, states + r * sd, fn, &k);
    if (st != TCH_OK) {
      tchi_free(count);
      return st;
    }
    count[k]++;
  }
  ksum acc = {0, 0};
  const double dn = (double)n;
  for (size_t i = 0; i < x->n; i++) ksum_add(&acc, fabs((double)count[i] / dn - x->p[i]));
  tchi_free(count);
  *out_l1 = ksum_get(&acc) / (double)x->n;
  return TCH_OK;
}

tch_status tch_env_count_modes(const tch_env *e, size_t n, const int32_t *states, size_t *out)
{
  static const char fn[] = "tch_env_count_modes";
  tch_status st = need_exact(e, fn);
  if (st != TCH_OK) return st;
  if (!out) return tchi_fail(TCH_E_ARG, "%s: out is NULL", fn);
  if (n > 0 && !states) return tchi_fail(TCH_E_ARG, "%s: states is NULL", fn);
  const tchi_exact_target *x = e->exact;
  size_t found = 0;
  if (n > 0) {
    uint8_t *seen;
    st = tchi_alloc_array(&seen, x->n, 1, 1, "mode flags");
    if (st != TCH_OK) return st;
    const size_t sd = e->d.state_dim;
    for (size_t r = 0; r < n; r++) {
      size_t k;
      st = sample_index(e, r, states + r * sd, fn, &k);
      if (st != TCH_OK) {
        tchi_free(seen);
        return st;
      }
      if (x->is_mode[k] && !seen[k]) {
        seen[k] = 1;
        found++;
      }
    }
    tchi_free(seen);
  }
  *out = found;
  return TCH_OK;
}
