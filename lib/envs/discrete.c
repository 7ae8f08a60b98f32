/* Discrete environments: the host-callback adaptor (descriptor copy and validation,
 * reference counting) and the checked wrappers through which the rest of the library calls
 * an env's callbacks. Everything the host returns is checked here before it is used. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "envs/env.h"

/* Bytes of the descriptor every caller must provide: everything up to and including
 * user_free (the fields of the first version of the struct). */
#define TCHI_DESC_MIN_SIZE \
  (offsetof(tch_discrete_env_desc, user_free) + sizeof(((tch_discrete_env_desc *)0)->user_free))

#define TCHI_ENV_KNOWN_FLAGS (TCH_ENV_REENTRANT)

/* ---- lifetime ------------------------------------------------------------------------ */

static void env_destroy(tch_env *e)
{
  if (e->d.user_free) e->d.user_free(e->d.user);
  if (e->en.user_free) e->en.user_free(e->en.user);   /* energy envs (energy.c) */
  if (e->builtin_free) e->builtin_free(e->builtin);
  if (e->ext_free) e->ext_free(e->ext);
  tchi_exact_target_free(e->exact);
  tchi_free(e->s0);
  tchi_free(e->vocab);
  tchi_free(e->vocab_off);
  tchi_free(e->scratch_mask);
  tchi_free(e);
}

tch_env *tch_env_retain(tch_env *e)
{
  if (e) tchi_ref_inc(&e->ref);
  return e;
}

void tch_env_free(tch_env *e)
{
  if (e && tchi_ref_dec(&e->ref)) env_destroy(e);
}

/* ---- creation ------------------------------------------------------------------------ */

static tch_status validate_desc(const tch_discrete_env_desc *d)
{
  if (d->state_dim < 1) return tchi_fail(TCH_E_ARG, "env: state_dim must be >= 1 (got 0)");
  if (d->n_actions < 2)
    return tchi_fail(TCH_E_ARG, "env: n_actions must be >= 2 (got %u): at least one action and EXIT",
                     (unsigned)d->n_actions);
  if (d->max_len < 1) return tchi_fail(TCH_E_ARG, "env: max_len must be >= 1 (got 0)");
  if (!d->s0) return tchi_fail(TCH_E_ARG, "env: s0 is NULL");
  if (!d->step) return tchi_fail(TCH_E_ARG, "env: step callback is NULL");
  if (!d->backward_step) return tchi_fail(TCH_E_ARG, "env: backward_step callback is NULL");
  if (!d->masks) return tchi_fail(TCH_E_ARG, "env: masks callback is NULL");
  if (!d->log_reward) return tchi_fail(TCH_E_ARG, "env: log_reward callback is NULL");
  if (d->flags & ~TCHI_ENV_KNOWN_FLAGS)
    return tchi_fail(TCH_E_ARG, "env: unknown flags 0x%x", (unsigned)(d->flags & ~TCHI_ENV_KNOWN_FLAGS));
  if (d->cond_dim != 0)
    return tchi_fail(TCH_E_ARG, "env: cond_dim must be 0 (conditional rewards are not supported; got %u)",
                     (unsigned)d->cond_dim);
  if (d->features) {
    if (d->feat_dim < 1) return tchi_fail(TCH_E_ARG, "env: feat_dim must be >= 1 when features is set");
  } else {
    if (!d->vocab)
      return tchi_fail(TCH_E_ARG, "env: features is NULL, so vocab is required (built-in one-hot)");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < d->state_dim; i++) {
      if (d->vocab[i] < 1) return tchi_fail(TCH_E_ARG, "env: vocab[%u] must be >= 1 (got 0)", (unsigned)i);
      sum += d->vocab[i];
    }
    if (sum > INT32_MAX)
      return tchi_fail(TCH_E_ARG, "env: one-hot width sum(vocab) = %llu is too large",
                       (unsigned long long)sum);
    for (uint32_t i = 0; i < d->state_dim; i++)
      if (d->s0[i] >= 0 && (uint32_t)d->s0[i] >= d->vocab[i])
        return tchi_fail(TCH_E_ARG, "env: s0[%u] = %d is out of range (vocab[%u] = %u)", (unsigned)i,
                         (int)d->s0[i], (unsigned)i, (unsigned)d->vocab[i]);
  }
  return TCH_OK;
}

tch_status tchi_env_create_discrete(const tch_discrete_env_desc *desc, tch_env **out)
{
  if (out) *out = NULL;
  if (!desc) return tchi_fail(TCH_E_ARG, "env: descriptor is NULL");
  if (!out) return tchi_fail(TCH_E_ARG, "env: out is NULL");
  uint32_t size = desc->struct_size;
  if (size < TCHI_DESC_MIN_SIZE)
    return tchi_fail(TCH_E_ARG,
                     "env: descriptor struct_size %u is smaller than the oldest supported (%zu); "
                     "call tch_discrete_env_desc_init()", (unsigned)size, (size_t)TCHI_DESC_MIN_SIZE);
  /* An older (shorter) struct: the fields it lacks read as zero. A newer (longer) one: the
   * tail is ignored. */
  tch_discrete_env_desc d;
  memset(&d, 0, sizeof d);
  memcpy(&d, desc, TCHI_MIN((size_t)size, sizeof d));
  d.struct_size = (uint32_t)sizeof d;

  tch_status st = validate_desc(&d);
  if (st != TCH_OK) return st;

  tch_env *e = tchi_calloc(1, sizeof *e);
  if (!e) return tchi_fail(TCH_E_NOMEM, "out of memory allocating env");
  e->kind = TCHI_ENV_DISCRETE;
  st = tchi_alloc_array(&e->s0, d.state_dim, sizeof *e->s0, 0, "env s0");
  if (st != TCH_OK) goto fail;
  memcpy(e->s0, d.s0, (size_t)d.state_dim * sizeof *e->s0);
  d.s0 = e->s0;
  if (d.features) {
    d.vocab = NULL;
    e->in_dim = d.feat_dim;
  } else {
    st = tchi_alloc_array(&e->vocab, d.state_dim, sizeof *e->vocab, 0, "env vocab");
    if (st != TCH_OK) goto fail;
    st = tchi_alloc_array(&e->vocab_off, d.state_dim, sizeof *e->vocab_off, 0, "env one-hot offsets");
    if (st != TCH_OK) goto fail;
    uint32_t off = 0;
    for (uint32_t i = 0; i < d.state_dim; i++) {
      e->vocab[i] = d.vocab[i];
      e->vocab_off[i] = off;
      off += d.vocab[i];   /* sum checked by validate_desc */
    }
    d.vocab = e->vocab;
    e->in_dim = off;
    d.feat_dim = off;
  }
  e->d = d;
  tchi_ref_init(&e->ref);
  *out = e;
  return TCH_OK;

fail:
  /* The host still owns user: do not call user_free. */
  tchi_free(e->s0);
  tchi_free(e->vocab);
  tchi_free(e->vocab_off);
  tchi_free(e);
  return st;
}

tch_status tchi_env_create_builtin_discrete(tch_discrete_env_desc *d, void *data,
                                            void (*data_free)(void *), tch_env **out)
{
  d->user = data;
  d->user_free = NULL;   /* data is the env's builtin data, freed by builtin_free */
  tch_status st = tchi_env_create_discrete(d, out);
  if (st != TCH_OK) {
    data_free(data);
    return st;
  }
  (*out)->builtin = data;
  (*out)->builtin_free = data_free;
  return TCH_OK;
}

tch_status tch_env_create_discrete(const tch_discrete_env_desc *d, tch_env **out)
{
  return tchi_env_create_discrete(d, out);
}


/* A built-in env's callbacks only fail on states or actions that are not part of the env
 * (the caller passed them in): report those as bad arguments, not as a host failure. */
static tch_status callback_failed(const tch_env *e, int rc, const char *what)
{
  tch_status s = tchi_callback_fail(rc, what);
  if (!e->builtin) return s;
  if (e->host_failed && *e->host_failed) return s;   /* the host code it called failed */
  return tchi_fail_prefix(TCH_E_ARG, "%s", "");
}

tch_status tch_env_dims(const tch_env *e, uint32_t *state_dim, uint32_t *n_actions, uint32_t *max_len)
{
  if (!e) return tchi_fail(TCH_E_ARG, "tch_env_dims: env is NULL");
  if (e->kind != TCHI_ENV_DISCRETE)
    return tchi_fail(TCH_E_ARG, "tch_env_dims: env is an energy env, not discrete "
                     "(use tch_env_energy_dim)");
  if (state_dim) *state_dim = e->d.state_dim;
  if (n_actions) *n_actions = e->d.n_actions;
  if (max_len) *max_len = e->d.max_len;
  return TCH_OK;
}

/* ---- checked wrappers ------------------------------------------------------------------ */

static tch_status check_actions(const tch_env *e, size_t n, const int32_t *a, const char *what)
{
  int32_t lim = (int32_t)(e->d.n_actions - 1);   /* EXIT is never stepped */
  for (size_t r = 0; r < n; r++)
    if (a[r] < 0 || a[r] >= lim)
      return tchi_fail(TCH_E_ARG, "%s: action %d of row %zu is out of range [0, %d)", what,
                       (int)a[r], r, (int)lim);
  return TCH_OK;
}

static tch_status do_step(tch_env *e, tch_step_fn fn, const char *what, size_t n, const int32_t *s,
                          const int32_t *a, int32_t *out)
{
  if (!e || ((!s || !a || !out) && n > 0)) return tchi_fail(TCH_E_ARG, "%s: NULL argument", what);
  if (n == 0) return TCH_OK;
  tch_status st = check_actions(e, n, a, what);
  if (st != TCH_OK) return st;
  tchi_callback_error_reset();
  int rc = fn(e->d.user, n, s, a, out);
  if (rc != 0) return callback_failed(e, rc, what);
  return TCH_OK;
}

tch_status tchi_env_step(tch_env *e, size_t n, const int32_t *s, const int32_t *a, int32_t *out)
{
  return do_step(e, e ? e->d.step : NULL, "step", n, s, a, out);
}

tch_status tchi_env_backward_step(tch_env *e, size_t n, const int32_t *s, const int32_t *a,
                                  int32_t *out)
{
  return do_step(e, e ? e->d.backward_step : NULL, "backward_step", n, s, a, out);
}

tch_status tchi_env_masks(tch_env *e, size_t n, const int32_t *s, uint8_t *fwd, uint8_t *bwd)
{
  if (!e || (!s && n > 0)) return tchi_fail(TCH_E_ARG, "masks: NULL argument");
  if (n == 0) return TCH_OK;
  const size_t na = e->d.n_actions, nb = na - 1;
  int ovf = 0;
  size_t fwd_bytes = tchi_mul_size(n, na, &ovf);
  size_t bwd_bytes = tchi_mul_size(n, nb, &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "masks: batch of %zu rows is too large", n);
  if (!fwd) {
    /* The host always writes the forward mask: give it scratch space. */
    if (e->scratch_cap < fwd_bytes) {
      uint8_t *p = tchi_realloc(e->scratch_mask, fwd_bytes);
      if (!p) return tchi_fail(TCH_E_NOMEM, "out of memory allocating mask scratch (%zu bytes)", fwd_bytes);
      e->scratch_mask = p;
      e->scratch_cap = fwd_bytes;
    }
    fwd = e->scratch_mask;
  }
  /* Rows the host forgets to write then fail the "at least one valid action" check. */
  memset(fwd, 0, fwd_bytes);
  if (bwd) memset(bwd, 0, bwd_bytes);
  tchi_callback_error_reset();
  int rc = e->d.masks(e->d.user, n, s, fwd, bwd);
  if (rc != 0) return callback_failed(e, rc, "masks");
  for (size_t r = 0; r < n; r++) {
    const uint8_t *row = fwd + r * na;
    size_t valid = 0;
    for (size_t j = 0; j < na; j++) {
      if (row[j] > 1)
        return tchi_fail(TCH_E_ARG, "masks callback returned value %u for row %zu action %zu",
                         (unsigned)row[j], r, j);
      valid += row[j];
    }
    if (valid == 0)
      return tchi_fail(TCH_E_ARG, "masks callback returned no valid forward action for row %zu", r);
    if (bwd) {
      const uint8_t *brow = bwd + r * nb;
      for (size_t j = 0; j < nb; j++)
        if (brow[j] > 1)
          return tchi_fail(TCH_E_ARG,
                           "masks callback returned value %u for row %zu backward action %zu",
                           (unsigned)brow[j], r, j);
    }
  }
  return TCH_OK;
}

tch_status tchi_env_log_reward(tch_env *e, size_t n, const int32_t *s, double clip_min, double *out)
{
  if (!e || ((!s || !out) && n > 0)) return tchi_fail(TCH_E_ARG, "log_reward: NULL argument");
  if (n == 0) return TCH_OK;
  for (size_t r = 0; r < n; r++) out[r] = NAN;   /* unwritten entries are caught below */
  tchi_callback_error_reset();
  if (e->host_failed) *e->host_failed = 0;
  int rc = e->d.log_reward(e->d.user, n, s, out);
  if (rc != 0) return callback_failed(e, rc, "log_reward");
  const int clip = isfinite(clip_min);
  for (size_t r = 0; r < n; r++) {
    double v = out[r];
    if (isnan(v)) {
      if (!clip) return tchi_fail(TCH_E_NUMERIC, "log_reward returned nan for row %zu", r);
      out[r] = clip_min;
    } else if (isinf(v) && v > 0) {
      return tchi_fail(TCH_E_NUMERIC, "log_reward returned +inf for row %zu", r);
    } else if (clip) {
      if (v < clip_min) out[r] = clip_min;
    } else if (isinf(v)) {
      return tchi_fail(TCH_E_NUMERIC, "log_reward returned -inf for row %zu", r);
    }
  }
  return TCH_OK;
}

tch_status tch_env_log_reward(tch_env *e, size_t n, const int32_t *states, double *out_log_r)
{
  if (!e) return tchi_fail(TCH_E_ARG, "tch_env_log_reward: env is NULL");
  if (e->kind != TCHI_ENV_DISCRETE)
    return tchi_fail(TCH_E_ARG, "tch_env_log_reward: env is an energy env, not discrete "
                     "(use tch_env_log_density)");
  if (n > 0 && (!states || !out_log_r))
    return tchi_fail(TCH_E_ARG, "tch_env_log_reward: %s is NULL", states ? "out_log_r" : "states");
  return tchi_env_log_reward(e, n, states, -INFINITY, out_log_r);
}

tch_status tchi_env_encode(tch_env *e, size_t n, const int32_t *s, float *feat, int32_t *idx,
                           int *use_onehot)
{
  if (!e) return tchi_fail(TCH_E_ARG, "encode: env is NULL");
  const int onehot = e->d.features == NULL;
  if (use_onehot) *use_onehot = onehot;
  if (n == 0) return TCH_OK;
  if (!s) return tchi_fail(TCH_E_ARG, "encode: states is NULL");
  const size_t sd = e->d.state_dim;
  if (!onehot) {
    if (!feat) return tchi_fail(TCH_E_ARG, "encode: feat is NULL (env has host features)");
    tchi_callback_error_reset();
    int rc = e->d.features(e->d.user, n, s, feat);
    if (rc != 0) return callback_failed(e, rc, "features");
    const size_t fd = e->d.feat_dim;
    for (size_t r = 0; r < n; r++)
      for (size_t j = 0; j < fd; j++)
        if (!isfinite(feat[r * fd + j]))
          return tchi_fail(TCH_E_NUMERIC, "features returned %s for row %zu column %zu",
                           isnan(feat[r * fd + j]) ? "nan" : "inf", r, j);
    return TCH_OK;
  }
  if (!idx) return tchi_fail(TCH_E_ARG, "encode: idx is NULL (env uses the built-in one-hot)");
  for (size_t r = 0; r < n; r++) {
    const int32_t *row = s + r * sd;
    int32_t *o = idx + r * sd;
    for (size_t i = 0; i < sd; i++) {
      int32_t v = row[i];
      if (v < 0) {
        o[i] = -1;
      } else if ((uint32_t)v >= e->vocab[i]) {
        return tchi_fail(TCH_E_ARG, "encode: state row %zu position %zu has value %d >= vocab %u",
                         r, i, (int)v, (unsigned)e->vocab[i]);
      } else {
        o[i] = (int32_t)(e->vocab_off[i] + (uint32_t)v);
      }
    }
  }
  return TCH_OK;
}

int tchi_env_is_s0(const tch_env *e, const int32_t *state)
{
  if (!e || !state) return 0;
  return memcmp(state, e->s0, (size_t)e->d.state_dim * sizeof *state) == 0;
}
