/* Built-in deceptive hypergrid (Adaptive Teacher, grid/env.py: DeceptiveGridWorld).
 *
 * States {0..H-1}^d from 0; action i < d increments coordinate i, action d is EXIT; a state
 * with a coordinate at H-1 is terminal (forced EXIT). The env is the same C-callback
 * descriptor a host would write, plus the exact target: the terminal set
 * X = {s : #{i : s_i = H-1} < 2} enumerated in mixed-radix order of the full grid
 * (coordinate 0 most significant, as numpy's indices(...).reshape(d, -1).T), and a dense
 * H^d -> index table for O(1) lookups. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "config/config.h"
#include "envs/env.h"
#include "envs/builtin/seqpa.h"
#include "envs/builtin/seqpa_tasks.h"

/* Largest grid (H^d cells) whose exact target is built: 2^24 cells covers (4,64), (8,8) and
 * (2,4096); the table is 4 bytes per cell plus ~(4d + 17) bytes per terminal state. */
#define HG_EXACT_MAX_CELLS ((uint64_t)1 << 24)

/* Callback return codes (reported through TCH_E_CALLBACK / tch_last_callback_code()). */
enum { HG_BAD_ACTION = 1, HG_BAD_STATE = 2 };

typedef struct hypergrid {
  uint32_t ndim, horizon;
  double beta;
  int32_t *table;   /* H^d entries: index in X, or -1; NULL when the grid is too large */
} hypergrid;

static void hg_free(void *p)
{
  hypergrid *g = p;
  if (!g) return;
  tchi_free(g->table);
  tchi_free(g);
}

double tchi_hypergrid_reward(uint32_t ndim, uint32_t horizon, double beta, const int32_t *s)
{
  /* Same operations in the same order as the reference (numpy, float64):
   * u = s / (H-1) * 2 - 1; a = |u|;
   * R = ((([a > 0.2].prod * -0.1 + [0.6 < a < 0.8].prod * 2) + 0.1) + 1e-5) ** beta.
   * The band test is strict in binary floating point, hence asymmetric (H=16: {2,12,13}). */
  const double hm1 = (double)(horizon - 1);
  int all_gt = 1, all_band = 1;
  for (uint32_t i = 0; i < ndim; i++) {
    double q = (double)s[i] / hm1;   /* each operation rounded to double, in this order */
    double u = q * 2.0;
    double v = u - 1.0;
    double a = fabs(v);
    all_gt &= a > 0.2;
    all_band &= (a < 0.8) & (a > 0.6);
  }
  double t1 = (double)all_gt * -0.1;
  double t2 = (double)all_band * 2.0;
  double r = t1 + t2;
  r = r + 0.1;
  r = r + 1e-5;
  return pow(r, beta);
}

/* ---- callbacks (batched, no allocation) ---------------------------------------------- */

static int hg_error(int code, const char *fmt, ...) TCHI_PRINTF(2, 3);
static int hg_error(int code, const char *fmt, ...)
{
  char msg[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  tch_set_callback_error(msg);
  return code;
}

/* 0 if every coordinate of s is in [0, H); else sets the callback error. */
static int hg_check_state(const hypergrid *g, size_t row, const int32_t *s)
{
  for (uint32_t i = 0; i < g->ndim; i++)
    if (s[i] < 0 || (uint32_t)s[i] >= g->horizon)
      return hg_error(HG_BAD_STATE, "hypergrid: row %zu coordinate %u has value %d outside [0, %u)",
                      row, (unsigned)i, (int)s[i], (unsigned)g->horizon);
  return 0;
}

static int hg_forced_terminal(const hypergrid *g, const int32_t *s)
{
  for (uint32_t i = 0; i < g->ndim; i++)
    if ((uint32_t)s[i] >= g->horizon - 1) return 1;
  return 0;
}

static int hg_step(void *user, size_t n, const int32_t *states, const int32_t *actions,
                   int32_t *out)
{
  const hypergrid *g = user;
  const size_t d = g->ndim;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * d;
    int rc = hg_check_state(g, r, s);
    if (rc) return rc;
    const int32_t a = actions[r];
    if (a < 0 || (uint32_t)a >= g->ndim)
      return hg_error(HG_BAD_ACTION, "hypergrid: row %zu: action %d is not an increment (EXIT = %u)",
                      r, (int)a, (unsigned)g->ndim);
    if (hg_forced_terminal(g, s))
      return hg_error(HG_BAD_ACTION,
                      "hypergrid: row %zu: action %d from a terminal state (a coordinate is at H-1 = %u)",
                      r, (int)a, (unsigned)(g->horizon - 1));
    int32_t *o = out + r * d;
    for (size_t i = 0; i < d; i++) o[i] = s[i];   /* safe when out == states */
    o[a] += 1;
  }
  return 0;
}

static int hg_backward_step(void *user, size_t n, const int32_t *states, const int32_t *actions,
                            int32_t *out)
{
  const hypergrid *g = user;
  const size_t d = g->ndim;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * d;
    int rc = hg_check_state(g, r, s);
    if (rc) return rc;
    const int32_t a = actions[r];
    if (a < 0 || (uint32_t)a >= g->ndim)
      return hg_error(HG_BAD_ACTION, "hypergrid: row %zu: backward action %d out of range [0, %u)",
                      r, (int)a, (unsigned)g->ndim);
    if (s[a] == 0)
      return hg_error(HG_BAD_ACTION, "hypergrid: row %zu: cannot decrement coordinate %d (it is 0)",
                      r, (int)a);
    int32_t *o = out + r * d;
    for (size_t i = 0; i < d; i++) o[i] = s[i];
    o[a] -= 1;
  }
  return 0;
}

/* Forward: a state with a coordinate at H-1 may only EXIT; any other state may increment
 * every coordinate (each stays <= H-1) or EXIT. Backward (the loss's uniform P_B, reference
 * quirk): decrement i is valid iff s_i > 0, even when the parent would itself be terminal. */
static int hg_masks(void *user, size_t n, const int32_t *states, uint8_t *fwd, uint8_t *bwd)
{
  const hypergrid *g = user;
  const size_t d = g->ndim;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * d;
    int rc = hg_check_state(g, r, s);
    if (rc) return rc;
    uint8_t *f = fwd + r * (d + 1);
    const uint8_t inc = hg_forced_terminal(g, s) ? 0 : 1;
    for (size_t i = 0; i < d; i++) f[i] = inc;
    f[d] = 1;
    if (bwd) {
      uint8_t *b = bwd + r * d;
      for (size_t i = 0; i < d; i++) b[i] = s[i] > 0;
    }
  }
  return 0;
}

static int hg_log_reward(void *user, size_t n, const int32_t *states, double *out)
{
  const hypergrid *g = user;
  const size_t d = g->ndim;
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * d;
    int rc = hg_check_state(g, r, s);
    if (rc) return rc;
    out[r] = log(tchi_hypergrid_reward(g->ndim, g->horizon, g->beta, s));
  }
  return 0;
}

/* ---- exact target ------------------------------------------------------------------- */

static int64_t hg_index_of(const tch_env *e, const int32_t *s)
{
  const hypergrid *g = e->builtin;
  if (!g || !g->table) return -1;
  uint64_t k = 0;
  for (uint32_t i = 0; i < g->ndim; i++) {
    if (s[i] < 0 || (uint32_t)s[i] >= g->horizon) return -1;
    k = k * g->horizon + (uint32_t)s[i];
  }
  return g->table[k];
}

static tch_status hg_build_exact(tch_env *e, hypergrid *g, uint64_t cells)
{
  const uint32_t d = g->ndim, H = g->horizon;
  /* |X| = (H-1)^d + d (H-1)^(d-1); cells <= 2^24 bounds both terms. */
  uint64_t p = 1;
  for (uint32_t i = 0; i + 1 < d; i++) p *= (uint64_t)(H - 1);
  const size_t nx = (size_t)(p * (H - 1) + (uint64_t)d * p);

  int32_t *states = NULL, *s = NULL;
  double *log_r = NULL;
  tch_status st = tchi_alloc_array(&g->table, (size_t)cells, sizeof *g->table, 0, "hypergrid index table");
  if (st == TCH_OK) st = tchi_alloc_array(&states, nx, (size_t)d * sizeof *states, 0, "hypergrid terminal states");
  if (st == TCH_OK) st = tchi_alloc_array(&log_r, nx, sizeof *log_r, 0, "hypergrid terminal log-rewards");
  if (st == TCH_OK) st = tchi_alloc_array(&s, d, sizeof *s, 1, "hypergrid odometer");
  if (st != TCH_OK) {
    tchi_free(states);
    tchi_free(log_r);
    tchi_free(s);
    return st;   /* g->table (if any) is freed with g */
  }
  size_t k = 0;
  for (uint64_t c = 0; c < cells; c++) {
    uint32_t at_top = 0;
    for (uint32_t i = 0; i < d; i++) at_top += (uint32_t)s[i] == H - 1;
    if (at_top < 2 && k < nx) {
      g->table[c] = (int32_t)k;
      memcpy(states + k * d, s, (size_t)d * sizeof *s);
      log_r[k] = log(tchi_hypergrid_reward(d, H, g->beta, s));
      k++;
    } else {
      g->table[c] = -1;
    }
    /* odometer: the last coordinate runs fastest */
    for (uint32_t i = d; i-- > 0;) {
      if ((uint32_t)++s[i] < H) break;
      s[i] = 0;
    }
  }
  tchi_free(s);
  if (k != nx) {
    tchi_free(states);
    tchi_free(log_r);
    return tchi_fail(TCH_E_INTERNAL, "hypergrid: enumerated %zu terminal states, expected %zu", k, nx);
  }
  st = tchi_exact_target_create(nx, states, log_r, hg_index_of, &e->exact);
  if (st == TCH_E_NUMERIC)
    return tchi_fail(TCH_E_NUMERIC, "hypergrid: reward^beta is not finite for beta = %g "
                     "(pow overflows double)", g->beta);
  return st;
}

/* ---- constructors --------------------------------------------------------------------- */

tch_status tch_env_create_hypergrid(uint32_t ndim, uint32_t horizon, double beta, tch_env **out)
{
  if (out) *out = NULL;
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_hypergrid: out is NULL");
  if (ndim < 1) return tchi_fail(TCH_E_ARG, "hypergrid: ndim must be >= 1");
  if (horizon < 2) return tchi_fail(TCH_E_ARG, "hypergrid: horizon must be >= 2 (got %u)", (unsigned)horizon);
  if ((uint64_t)ndim * horizon > INT32_MAX || ndim >= INT32_MAX)
    return tchi_fail(TCH_E_ARG, "hypergrid: ndim * horizon = %llu is too large",
                     (unsigned long long)ndim * horizon);
  if (!isfinite(beta) || beta < 0)
    return tchi_fail(TCH_E_ARG, "hypergrid: beta must be finite and >= 0 (got %g)", beta);

  hypergrid *g = tchi_calloc(1, sizeof *g);
  if (!g) return tchi_fail(TCH_E_NOMEM, "out of memory allocating hypergrid");
  g->ndim = ndim;
  g->horizon = horizon;
  g->beta = beta;

  int32_t *s0 = NULL;
  uint32_t *vocab = NULL;
  tch_status st = tchi_alloc_array(&s0, ndim, sizeof *s0, 1, "hypergrid s0");
  if (st == TCH_OK) st = tchi_alloc_array(&vocab, ndim, sizeof *vocab, 0, "hypergrid vocab");
  tch_env *e = NULL;
  if (st == TCH_OK) {
    for (uint32_t i = 0; i < ndim; i++) vocab[i] = horizon;   /* one-hot width H*d */
    tch_discrete_env_desc d;
    tch_discrete_env_desc_init(&d);
    d.state_dim = ndim;
    d.n_actions = ndim + 1;
    d.max_len = ndim * (horizon - 1);   /* < ndim * horizon <= INT32_MAX */
    d.s0 = s0;
    d.step = hg_step;
    d.backward_step = hg_backward_step;
    d.masks = hg_masks;
    d.log_reward = hg_log_reward;
    d.features = NULL;
    d.vocab = vocab;
    st = tchi_env_create_builtin_discrete(&d, g, hg_free, &e);
  } else {
    hg_free(g);
  }
  tchi_free(s0);
  tchi_free(vocab);
  if (st != TCH_OK) return st;
  /* The reference's L1 window (grid/trainer.py num_empirical_loss = -1). */
  e->default_num_empirical = ndim == 2 ? (horizon <= 256 ? 10000 : 20000)
                           : ndim == 4 ? (horizon <= 16 ? 10000 : 20000) : 20000;
  /* grid/trainer.py: buffer_size -1 -> floor(0.1 (H-1+d) (H-1)^(d-1)); n_train_steps -1 ->
   * 4000 (8000 for d=2, H>256; 16000 for d=4, H>16), then x1.5 without LS, x2 with a buffer. */
  double cap = 0.1 * (double)(horizon - 1 + ndim);
  for (uint32_t i = 1; i < ndim; i++) cap *= (double)(horizon - 1);
  e->default_buffer_capacity = cap < 1.0 ? 1 : (size_t)cap;
  e->default_replay_factor = horizon / 2;   /* trainer_db.py: batch_size * (horizon // 2) */
  e->default_steps_base = ndim == 2 ? (horizon <= 256 ? 4000 : 8000)
                        : ndim == 4 ? (horizon <= 16 ? 4000 : 16000) : 4000;

  uint64_t cells = 1;
  for (uint32_t i = 0; i < ndim && cells <= HG_EXACT_MAX_CELLS; i++) cells *= horizon;
  if (cells <= HG_EXACT_MAX_CELLS) {
    st = hg_build_exact(e, g, cells);
    if (st != TCH_OK) {
      tch_env_free(e);
      return st;
    }
  }
  *out = e;
  return TCH_OK;
}

tch_status tch_env_create_from_config(const tch_config *c, tch_env **out)
{
  if (out) *out = NULL;
  if (!c) return tchi_fail(TCH_E_ARG, "tch_env_create_from_config: config is NULL");
  if (!out) return tchi_fail(TCH_E_ARG, "tch_env_create_from_config: out is NULL");
  const char *name = tchi_cfg_string(c, "env.name");
  if (!name) return tchi_fail(TCH_E_CONFIG, "env.name is not set");
  if (strcmp(name, "custom") == 0)
    return tchi_fail(TCH_E_CONFIG, "env.name is 'custom': create the env with tch_env_create_discrete");
  /* Energy envs (builtin/gmm25.c, builtin/manywell.c) read env.diffusion.* from c. */
  if (strcmp(name, "gmm25") == 0) return tch_env_create_gmm25(c, out);
  if (strcmp(name, "manywell") == 0) return tch_env_create_manywell(c, out);
  /* Reinforced SMC's targets (builtin/gmm40.c, builtin/funnel.c); the table bounds the dims. */
  if (strcmp(name, "gmm40") == 0)
    return tch_env_create_gmm40((uint32_t)tchi_cfg_int(c, "env.gmm40.dim"), c, out);
  if (strcmp(name, "funnel") == 0)
    return tch_env_create_funnel((uint32_t)tchi_cfg_int(c, "env.funnel.dim"), c, out);
  /* The discovery tasks (builtin/qm9str.c, builtin/sehstr.c): the reference's constants. */
  if (strcmp(name, "qm9str") == 0) return tchi_env_create_qm9str(out);
  if (strcmp(name, "sehstr") == 0) return tchi_env_create_sehstr(out);
  /* builtin/tfbind8.c, builtin/rna.c (envs/builtin/seqpa_tasks.h). */
  if (strcmp(name, "tfbind8") == 0) return tchi_env_create_tfbind8(out);
  if (strcmp(name, "rna") == 0) return tchi_env_create_rna((uint32_t)tchi_cfg_int(c, "env.rna.task"), out);
  if (strcmp(name, "hypergrid") != 0)
    return tchi_fail(TCH_E_CONFIG, "env.name '%s' is not a built-in env", name);
  int64_t ndim = tchi_cfg_int(c, "env.hypergrid.ndim");
  int64_t horizon = tchi_cfg_int(c, "env.hypergrid.horizon");
  double beta = tchi_cfg_double(c, "env.hypergrid.beta");
  if (ndim < 1 || ndim > INT32_MAX)
    return tchi_fail(TCH_E_CONFIG, "env.hypergrid.ndim = %lld is out of range", (long long)ndim);
  if (horizon < 2 || horizon > INT32_MAX)
    return tchi_fail(TCH_E_CONFIG, "env.hypergrid.horizon = %lld is out of range", (long long)horizon);
  tch_status st = tch_env_create_hypergrid((uint32_t)ndim, (uint32_t)horizon, beta, out);
  if (st == TCH_E_ARG) st = TCH_E_CONFIG;   /* the message names the offending parameter */
  return st;
}
