/* Padded trajectory batches. Storage grows to the largest batch seen and is reused. */
#include <string.h>
#include "gfn.h"

void tchi_traj_init(tchi_traj *t) { memset(t, 0, sizeof *t); }

void tchi_traj_destroy(tchi_traj *t)
{
  tchi_free(t->states);
  tchi_free(t->actions);
  tchi_free(t->len);
  tchi_free(t->fwd);
  tchi_free(t->bwd);
  tchi_free(t->log_r);
  tchi_free(t->scr_states);
  tchi_free(t->scr_fwd);
  tchi_free(t->scr_bwd);
  memset(t, 0, sizeof *t);
}

tch_status tchi_traj_reserve(tchi_traj *t, const tch_env *e, size_t n)
{
  size_t T = (size_t)e->d.max_len + 1;
  uint32_t sd = e->d.state_dim, na = e->d.n_actions;
  int same_shape = t->T == T && t->state_dim == sd && t->n_actions == na;
  if (!same_shape || n > t->cap) {
    size_t cap = same_shape && t->cap ? t->cap : 0;
    if (cap < n) cap = n;
    tchi_traj fresh;
    tchi_traj_init(&fresh);
    tch_status s;
    if ((s = tchi_alloc_array(&fresh.states, cap * T, sd * sizeof(int32_t), 0, "trajectory states")) ||
        (s = tchi_alloc_array(&fresh.actions, cap * T, sizeof(int32_t), 0, "trajectory actions")) ||
        (s = tchi_alloc_array(&fresh.len, cap, sizeof(uint32_t), 1, "trajectory lengths")) ||
        (s = tchi_alloc_array(&fresh.fwd, cap * T, na, 0, "forward masks")) ||
        (s = tchi_alloc_array(&fresh.bwd, cap * T, na - 1, 0, "backward masks")) ||
        (s = tchi_alloc_array(&fresh.log_r, cap, sizeof(double), 1, "log-rewards"))) {
      tchi_traj_destroy(&fresh);
      return s;
    }
    tchi_traj_destroy(t);
    *t = fresh;
    t->cap = cap;
    t->T = T;
    t->state_dim = sd;
    t->n_actions = na;
  }
  t->n = n;
  return TCH_OK;
}

static tch_status grow_scratch(tchi_traj *t, size_t rows)
{
  if (rows <= t->scr_cap) return TCH_OK;
  size_t cap = rows > 2 * t->scr_cap ? rows : 2 * t->scr_cap;
  int32_t *st;
  uint8_t *f, *b;
  tch_status s = tchi_alloc_array(&st, cap, t->state_dim * sizeof(int32_t), 0, "mask batch");
  if (s) return s;
  if ((s = tchi_alloc_array(&f, cap, t->n_actions, 0, "mask batch"))) { tchi_free(st); return s; }
  if ((s = tchi_alloc_array(&b, cap, t->n_actions - 1, 0, "mask batch"))) {
    tchi_free(st); tchi_free(f); return s;
  }
  tchi_free(t->scr_states); tchi_free(t->scr_fwd); tchi_free(t->scr_bwd);
  t->scr_states = st; t->scr_fwd = f; t->scr_bwd = b; t->scr_cap = cap;
  return TCH_OK;
}

tch_status tchi_traj_fill_masks(tchi_traj *t, tch_env *e)
{
  /* One batched masks call over every state of every trajectory. */
  size_t rows = 0, sd = t->state_dim, na = t->n_actions;
  for (size_t i = 0; i < t->n; i++) rows += t->len[i];
  if (rows == 0) return TCH_OK;
  tch_status s = grow_scratch(t, rows);
  if (s) return s;
  size_t r = 0;
  for (size_t i = 0; i < t->n; i++)
    for (size_t k = 0; k < t->len[i]; k++, r++)
      memcpy(t->scr_states + r * sd, tchi_traj_state(t, i, k), sd * sizeof(int32_t));
  s = tchi_env_masks(e, rows, t->scr_states, t->scr_fwd, t->scr_bwd);
  if (s) return s;
  r = 0;
  for (size_t i = 0; i < t->n; i++)
    for (size_t k = 0; k < t->len[i]; k++, r++) {
      memcpy(t->fwd + (i * t->T + k) * na, t->scr_fwd + r * na, na);
      memcpy(t->bwd + (i * t->T + k) * (na - 1), t->scr_bwd + r * (na - 1), na - 1);
    }
  return TCH_OK;
}

void tchi_traj_terminals(const tchi_traj *t, int32_t *out)
{
  for (size_t i = 0; i < t->n; i++)
    memcpy(out + i * t->state_dim, tchi_traj_terminal(t, i), t->state_dim * sizeof(int32_t));
}

tch_status tchi_traj_from_public(tchi_traj *t, tch_env *e, size_t n, const int32_t *states,
                                 const int32_t *actions, const uint32_t *len)
{
  tch_status s = tchi_traj_reserve(t, e, n);
  if (s) return s;
  size_t T = t->T, sd = t->state_dim;
  int32_t exit_a = (int32_t)t->n_actions - 1;
  for (size_t i = 0; i < n; i++) {
    if (len[i] < 1 || len[i] > T)
      return tchi_fail(TCH_E_ARG, "trajectory %zu has length %u (must be 1..%zu)", i, len[i], T);
    for (size_t k = 0; k < len[i]; k++) {
      int32_t a = actions[i * T + k];
      if (a < 0 || a > exit_a || (k + 1 == len[i]) != (a == exit_a))
        return tchi_fail(TCH_E_ARG, "trajectory %zu: action %d at position %zu is invalid "
                         "(actions are 0..%d and only the last one is EXIT = %d)",
                         i, a, k, exit_a, exit_a);
    }
    t->len[i] = len[i];
    memcpy(t->states + i * T * sd, states + i * T * sd, len[i] * sd * sizeof(int32_t));
    memcpy(t->actions + i * T, actions + i * T, len[i] * sizeof(int32_t));
    for (size_t k = len[i]; k < T; k++) t->actions[i * T + k] = -1;
  }
  return tchi_traj_fill_masks(t, e);
}

void tchi_traj_copy_one(tchi_traj *dst, size_t di, const tchi_traj *src, size_t si)
{
  size_t T = src->T, sd = src->state_dim, na = src->n_actions, L = src->len[si];
  memcpy(dst->states + di * T * sd, src->states + si * T * sd, L * sd * sizeof(int32_t));
  memcpy(dst->actions + di * T, src->actions + si * T, T * sizeof(int32_t));
  memcpy(dst->fwd + di * T * na, src->fwd + si * T * na, L * na);
  memcpy(dst->bwd + di * T * (na - 1), src->bwd + si * T * (na - 1), L * (na - 1));
  dst->len[di] = (uint32_t)L;
  dst->log_r[di] = src->log_r[si];
}

void tchi_traj_to_public(const tchi_traj *t, int32_t *states, int32_t *actions, uint32_t *len)
{
  size_t cells = t->n * t->T;
  memcpy(states, t->states, cells * t->state_dim * sizeof(int32_t));
  memcpy(actions, t->actions, cells * sizeof(int32_t));
  if (len) memcpy(len, t->len, t->n * sizeof(uint32_t));
  /* rows past each length are unspecified by contract; zero them for tidiness */
  for (size_t i = 0; i < t->n; i++)
    memset(states + (i * t->T + t->len[i]) * t->state_dim, 0,
           (t->T - t->len[i]) * t->state_dim * sizeof(int32_t));
}
