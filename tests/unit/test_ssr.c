/* The SSR policy architecture (lib/gfn/ssr.c): forward log-probabilities against a naive
 * per-state computation in double, normalisation over valid actions, the EXIT child, the
 * logit clip, TB/DB gradients against finite differences, files and clones, a short TB run
 * that learns, selection by config (nn.arch) through tch_policy_create and the trainer with
 * a checkpoint round trip, bad arguments, callback failures and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../tch_check.h"
#include "gfn/gfn.h"
#include "envs/env.h"
#include "envs/builtin/seqpa.h"
#include "io/io.h"
#include "teacher/trainer.h"

/* ---- a host env with dense features where EXIT competes with other actions -------------
 * Binary strings of length 0..3 stored left-aligned (-1 padding). Actions: append 0, append
 * 1, EXIT; EXIT is valid from length 1 on and is the only action at length 3. Features:
 * one-hot per position (6) plus the length / 3 (a non-binary input). */
#define BL 3
typedef struct bits_user { int fail_step; } bits_user;

static uint32_t bits_len(const int32_t *s)
{
  uint32_t n = 0;
  while (n < BL && s[n] >= 0) n++;
  return n;
}

static int bits_step(void *user, size_t n, const int32_t *s, const int32_t *a, int32_t *out)
{
  bits_user *u = user;
  if (u->fail_step) return 42;
  for (size_t r = 0; r < n; r++) {
    memcpy(out + r * BL, s + r * BL, BL * sizeof(int32_t));
    out[r * BL + bits_len(s + r * BL)] = a[r];
  }
  return 0;
}

static int bits_back(void *user, size_t n, const int32_t *s, const int32_t *a, int32_t *out)
{
  (void)user; (void)a;
  for (size_t r = 0; r < n; r++) {
    memcpy(out + r * BL, s + r * BL, BL * sizeof(int32_t));
    out[r * BL + bits_len(s + r * BL) - 1] = -1;
  }
  return 0;
}

static int bits_masks(void *user, size_t n, const int32_t *s, uint8_t *fwd, uint8_t *bwd)
{
  (void)user;
  for (size_t r = 0; r < n; r++) {
    uint32_t L = bits_len(s + r * BL);
    fwd[r * 3 + 0] = fwd[r * 3 + 1] = L < BL;
    fwd[r * 3 + 2] = L >= 1;
    if (bwd) {
      bwd[r * 2 + 0] = L > 0 && s[r * BL + L - 1] == 0;
      bwd[r * 2 + 1] = L > 0 && s[r * BL + L - 1] == 1;
    }
  }
  return 0;
}

static int bits_reward(void *user, size_t n, const int32_t *s, double *out)
{
  (void)user;
  for (size_t r = 0; r < n; r++) {
    double v = 0.0;
    for (uint32_t i = 0; i < bits_len(s + r * BL); i++) v += s[r * BL + i] ? 1.0 : -0.5;
    out[r] = v;
  }
  return 0;
}

static int bits_features(void *user, size_t n, const int32_t *s, float *out)
{
  (void)user;
  for (size_t r = 0; r < n; r++) {
    float *f = out + r * (2 * BL + 1);
    memset(f, 0, (2 * BL + 1) * sizeof(float));
    uint32_t L = bits_len(s + r * BL);
    for (uint32_t i = 0; i < L; i++) f[2 * i + (uint32_t)s[r * BL + i]] = 1.0f;
    f[2 * BL] = (float)L / 3.0f;
  }
  return 0;
}

static bits_user g_bits;

static tch_env *mk_bits(void)
{
  static const int32_t s0[BL] = {-1, -1, -1};
  tch_discrete_env_desc d;
  tch_discrete_env_desc_init(&d);
  d.state_dim = BL;
  d.n_actions = 3;
  d.feat_dim = 2 * BL + 1;
  d.max_len = BL;
  d.s0 = s0;
  d.step = bits_step;
  d.backward_step = bits_back;
  d.masks = bits_masks;
  d.log_reward = bits_reward;
  d.features = bits_features;
  g_bits.fail_step = 0;
  d.user = &g_bits;
  tch_env *e = NULL;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_OK);
  return e;
}

/* ---- a small SeqPA task (built-in one-hot input, the discovery MDP) ----------------------- */
static int index_score(void *user, size_t n, const int32_t *states, double *out_y)
{
  const tchi_seqpa_task *t = user;
  for (size_t r = 0; r < n; r++)
    out_y[r] = 1.0 + (double)tchi_seqpa_index(states + r * t->len, t->len, t->n_chars);
  return 0;
}

static tchi_seqpa_task g_task;

static tch_env *mk_seqpa(uint32_t len, uint32_t n_chars, double beta)
{
  g_task = (tchi_seqpa_task){
    .name = "small", .len = len, .n_chars = n_chars, .score = index_score, .score_user = &g_task,
    .reward = {.y_min = 0.001, .beta = beta, .log_scale = 0.0}, .enumerate = 1,
  };
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_seqpa(&g_task, &e), TCH_OK);
  return e;
}

static tch_policy *mk_ssr(const tch_env *e, size_t h, size_t emb, int has_flow, uint64_t seed)
{
  tchi_policy_spec spec = {
    .state_dim = e->d.state_dim, .n_actions = e->d.n_actions, .in_dim = e->in_dim,
    .onehot = e->d.features == NULL, .has_flow = has_flow, .kernel = "auto", .threads = 1,
    .logz_init = 0.5, .arch = TCHI_ARCH_SSR, .ssr_hidden = h, .ssr_embed = emb,
  };
  tch_policy *p = NULL;
  ck_assert_int_eq(tchi_policy_new(&spec, seed, 0, &p), TCH_OK);
  ck_assert_int_eq(p->arch, TCHI_ARCH_SSR);
  ck_assert_double_eq(p->ssr->logit_clip, TCHI_SSR_LOGIT_CLIP);
  return p;
}

/* ---- a naive per-state reference in double ------------------------------------------------- */
static double leaky(double x) { return x > 0.0 ? x : 0.01 * x; }

/* y = W^T x + b of a row-major (din x dout) layer, then the activation unless last. */
static void layer(const float *W, const float *b, size_t din, size_t dout, const double *x,
                  double *y, int act)
{
  for (size_t j = 0; j < dout; j++) {
    double v = b[j];
    for (size_t i = 0; i < din; i++) v += x[i] * W[i * dout + j];
    y[j] = act ? leaky(v) : v;
  }
}

static void naive_embed(const tch_policy *p, tch_env *e, const int32_t *x, double *out)
{
  const tchi_mlp *m = &p->ssr->enc;
  size_t in = p->in_dim, h = m->dims[1], emb = m->dims[2];
  float feat[64];
  int32_t idx[16];
  int onehot = 0;
  ck_assert_int_eq(tchi_env_encode(e, 1, x, feat, idx, &onehot), TCH_OK);
  double f[64], hid[64];
  ck_assert_uint_le(in, 64);
  for (size_t i = 0; i < in; i++) f[i] = onehot ? 0.0 : feat[i];
  if (onehot)
    for (size_t i = 0; i < p->state_dim; i++)
      if (idx[i] >= 0) f[idx[i]] = 1.0;
  layer(m->params + m->w_off[0], m->params + m->b_off[0], in, h, f, hid, 1);
  layer(m->params + m->w_off[1], m->params + m->b_off[1], h, emb, hid, out, 0);
}

/* Naive log P_F of every action of state s (-inf where invalid); returns log F = lse. */
static double naive_logp(const tch_policy *p, tch_env *e, const int32_t *s, double *logp)
{
  const size_t na = p->n_actions, sd = p->state_dim;
  const tchi_mlp *m = &p->ssr->sc;
  const size_t emb = m->dims[0] / 2, h = m->dims[1];
  uint8_t fwd[64];
  ck_assert_int_eq(tchi_env_masks(e, 1, s, fwd, NULL), TCH_OK);
  double es[64], in[128], hid[64], score[64];
  naive_embed(p, e, s, es);
  double mx = -INFINITY;
  for (size_t a = 0; a < na; a++) {
    if (!fwd[a]) continue;
    int32_t child[16];
    if (a == na - 1) {
      memcpy(child, s, sd * sizeof(int32_t));
    } else {
      int32_t act = (int32_t)a;
      ck_assert_int_eq(tchi_env_step(e, 1, s, &act, child), TCH_OK);
    }
    memcpy(in, es, emb * sizeof(double));
    naive_embed(p, e, child, in + emb);
    layer(m->params + m->w_off[0], m->params + m->b_off[0], 2 * emb, h, in, hid, 1);
    double v;
    layer(m->params + m->w_off[1], m->params + m->b_off[1], h, 1, hid, &v, 0);
    double c = p->ssr->logit_clip;
    score[a] = isnan(v) ? 0.0 : v < -c ? -c : v > c ? c : v;
    if (score[a] > mx) mx = score[a];
  }
  double sum = 0.0;
  for (size_t a = 0; a < na; a++)
    if (fwd[a]) sum += exp(score[a] - mx);
  double lse = mx + log(sum);
  for (size_t a = 0; a < na; a++) logp[a] = fwd[a] ? score[a] - lse : -INFINITY;
  return lse;
}

/* n states visited by sampled trajectories (n x state_dim) */
static size_t visited_states(tch_policy *p, tch_env *e, size_t n_traj, int32_t *out, size_t cap)
{
  tchi_rng rng;
  tchi_rng_seed(&rng, 5, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n_traj, 0.3, 1.0, &t, NULL), TCH_OK);
  size_t k = 0, sd = e->d.state_dim;
  for (size_t i = 0; i < t.n; i++)
    for (size_t j = 0; j < t.len[i] && k < cap; j++, k++)
      memcpy(out + k * sd, tchi_traj_state(&t, i, j), sd * sizeof(int32_t));
  tchi_traj_destroy(&t);
  return k;
}

static void check_forward(tch_env *e, int has_flow)
{
  tch_policy *p = mk_ssr(e, 7, 5, has_flow, 3);
  enum { CAP = 200 };
  int32_t *st = malloc(CAP * 16 * sizeof(int32_t));
  size_t n = visited_states(p, e, 30, st, CAP);
  ck_assert_uint_ge(n, 30);
  const float *out;
  ck_assert_int_eq(tchi_policy_forward(p, e, n, st, &out), TCH_OK);
  const size_t na = p->n_actions;
  uint8_t *fwd = malloc(n * na);
  ck_assert_int_eq(tchi_env_masks(e, n, st, fwd, NULL), TCH_OK);
  size_t exits_with_others = 0;
  for (size_t r = 0; r < n; r++) {
    double lp[64], ref[64];
    double lse = tchi_masked_log_softmax(out + r * p->out_dim, fwd + r * na, na, lp);
    double ref_lse = naive_logp(p, e, st + r * e->d.state_dim, ref);
    double total = 0.0;
    size_t valid = 0;
    for (size_t a = 0; a < na; a++) {
      if (!fwd[r * na + a]) {
        ck_assert(isinf(ref[a]) && isinf(lp[a]));
        continue;
      }
      valid++;
      total += exp(lp[a]);
      ck_assert_msg(fabs(lp[a] - ref[a]) < 1e-4, "row %zu action %zu: %g vs naive %g", r, a,
                    lp[a], ref[a]);
    }
    exits_with_others += fwd[r * na + na - 1] && valid > 1;
    ck_assert_double_eq_tol(total, 1.0, 1e-9);
    ck_assert_double_eq_tol(lse, ref_lse, 1e-4);
    if (has_flow) ck_assert_double_eq_tol(out[r * p->out_dim + p->off_flow], ref_lse, 1e-4);
  }
  if (e->d.features) ck_assert_uint_gt(exits_with_others, 0);   /* the bits env exercises it */
  free(fwd);
  free(st);
  tch_policy_free(p);
}

START_TEST(forward_matches_naive_dense_features)
{
  tch_env *e = mk_bits();
  check_forward(e, 0);
  check_forward(e, 1);
  tch_env_free(e);
}
END_TEST

START_TEST(forward_matches_naive_seqpa)
{
  tch_env *e = mk_seqpa(3, 3, 1.0);
  check_forward(e, 0);
  check_forward(e, 1);
  tch_env_free(e);
}
END_TEST

/* The forward equals row-by-row forwards (batching does not mix states), and a forced-EXIT
 * state has P_F(EXIT) = 1. */
START_TEST(batched_forward_equals_single_rows)
{
  tch_env *e = mk_seqpa(3, 3, 1.0);
  tch_policy *p = mk_ssr(e, 6, 6, 1, 9);
  int32_t st[64 * 3];
  size_t n = visited_states(p, e, 12, st, 64);
  const float *out;
  ck_assert_int_eq(tchi_policy_forward(p, e, n, st, &out), TCH_OK);
  float *all = malloc(n * p->out_dim * sizeof(float));
  memcpy(all, out, n * p->out_dim * sizeof(float));
  int forced = 0;
  for (size_t r = 0; r < n; r++) {
    ck_assert_int_eq(tchi_policy_forward(p, e, 1, st + r * 3, &out), TCH_OK);
    for (size_t j = 0; j < p->out_dim; j++)
      ck_assert_msg(fabsf(out[j] - all[r * p->out_dim + j]) <= 1e-5f * (1.0f + fabsf(out[j])),
                    "row %zu output %zu", r, j);
    if (tchi_seqpa_length(st + r * 3, 3) == 3) {
      uint8_t fwd[7];
      double lp[7];
      ck_assert_int_eq(tchi_env_masks(e, 1, st + r * 3, fwd, NULL), TCH_OK);
      tchi_masked_log_softmax(out, fwd, 7, lp);
      ck_assert_double_eq(lp[6], 0.0);
      forced++;
    }
  }
  ck_assert_int_gt(forced, 0);
  /* n = 0 is a no-op whose backward is a no-op too. */
  ck_assert_int_eq(tchi_policy_forward(p, e, 0, st, &out), TCH_OK);
  ck_assert_int_eq(tchi_policy_backward(p, all), TCH_OK);
  free(all);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

/* ---- gradients ---------------------------------------------------------------------------- */
static double loss_of(tch_policy *p, tch_env *e, tchi_traj *t, const double *log_r, int kind,
                      int32_t *rec, size_t n_rec, int grad)
{
  double loss = NAN;
  tch_status s;
  if (kind == 0) s = tchi_tb_loss(p, e, t, NULL, log_r, NULL, grad, NULL, &loss);
  else if (kind == 1) s = tchi_db_loss(p, e, t, NULL, log_r, grad, NULL, &loss);
  else {
    tchi_eval ev;
    tchi_eval_init(&ev);
    s = tchi_db_transition_loss(p, e, n_rec, rec, log_r, &ev, grad, NULL, &loss);
    tchi_eval_destroy(&ev);
  }
  ck_assert_int_eq(s, TCH_OK);
  return loss;
}

/* kind: 0 TB, 1 DB on trajectories, 2 DB on transitions. */
static void check_grad(tch_env *e, int kind)
{
  tch_policy *p = mk_ssr(e, 6, 5, kind != 0, 7);
  tchi_rng rng;
  tchi_rng_seed(&rng, 3, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  const size_t n = 6, sd = e->d.state_dim;
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, n, 0.2, 1.0, &t, NULL), TCH_OK);
  double log_r[16];
  int32_t x[16 * 8];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, n, x, -INFINITY, log_r), TCH_OK);
  /* Transitions (s, a, s', terminal) of the first trajectory's steps. */
  int32_t rec[16 * 20];
  size_t n_rec = 0;
  double rec_r[16];
  const size_t w = 2 * sd + 2;
  for (size_t k = 0; k < t.len[0] && n_rec < 16; k++, n_rec++) {
    int32_t *r = rec + n_rec * w;
    int32_t a = t.actions[k];
    int term = (size_t)a == e->d.n_actions - 1;
    memcpy(r, tchi_traj_state(&t, 0, k), sd * sizeof(int32_t));
    r[sd] = a;
    memcpy(r + sd + 1, tchi_traj_state(&t, 0, term ? k : k + 1), sd * sizeof(int32_t));
    r[2 * sd + 1] = term;
    rec_r[n_rec] = log_r[0];
  }
  const double *lr = kind == 2 ? rec_r : log_r;
  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0.0;
  loss_of(p, e, &t, lr, kind, rec, n_rec, 1);
  const tchi_mlp *enc = &p->ssr->enc, *sc = &p->ssr->sc;
  const size_t so = (size_t)(sc->params - p->mlp.params), emb = p->ssr->embed;
  size_t probes[] = {
    enc->w_off[0] + 1, enc->w_off[0] + 4 * enc->dims[1] + 2, enc->b_off[0] + 3,
    enc->w_off[1] + 7, enc->w_off[1] + 20, enc->b_off[1] + 1,
    so + sc->w_off[0] + 2, so + sc->w_off[0] + 3 * sc->dims[1] + 1,          /* W_a */
    so + sc->w_off[0] + emb * sc->dims[1] + 4,                                   /* W_b */
    so + sc->w_off[0] + (emb + 2) * sc->dims[1],
    so + sc->b_off[0] + 2, so + sc->w_off[1] + 1, so + sc->w_off[1] + 5, so + sc->b_off[1],
  };
  /* Central differences in float32: h = 1e-3 keeps the rounding noise near 1e-4. A step
   * can carry some of the many (state, child) pairs across a LeakyReLU kink (a bias moves
   * all of them), which biases the difference: a mismatch is retried with h / 4 and the
   * gradient fails only if both disagree. */
  int checked = 0;
  for (size_t k = 0; k < sizeof probes / sizeof probes[0]; k++) {
    size_t j = probes[k];
    ck_assert_uint_lt(j, p->mlp.n_params);
    float keep = p->mlp.params[j];
    double an = p->mlp.grads[j], fd = NAN;
    int ok = 0;
    for (float h = 1e-3f; h > 2e-4f && !ok; h /= 4) {
      p->mlp.params[j] = keep + h;
      double lp = loss_of(p, e, &t, lr, kind, rec, n_rec, 0);
      p->mlp.params[j] = keep - h;
      double lm = loss_of(p, e, &t, lr, kind, rec, n_rec, 0);
      p->mlp.params[j] = keep;
      fd = (lp - lm) / (2.0 * (double)h);
      ok = fabs(fd - an) <= 2e-7 / h + 2e-2 * fabs(fd);
    }
    ck_assert_msg(ok, "kind %d param %zu: analytic %g vs finite difference %g", kind, j, an, fd);
    checked += fabs(an) > 1e-4;
  }
  ck_assert_int_ge(checked, 8);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
}

START_TEST(tb_gradient_matches_finite_differences)
{
  tch_env *e = mk_bits();
  check_grad(e, 0);
  tch_env_free(e);
  e = mk_seqpa(3, 3, 1.0);
  check_grad(e, 0);
  tch_env_free(e);
}
END_TEST

START_TEST(db_gradient_matches_finite_differences)
{
  tch_env *e = mk_bits();
  check_grad(e, 1);
  check_grad(e, 2);
  tch_env_free(e);
  e = mk_seqpa(3, 3, 1.0);
  check_grad(e, 1);
  tch_env_free(e);
}
END_TEST

/* ---- clip ------------------------------------------------------------------------------------ */
START_TEST(scores_are_clipped_and_clipped_scores_pass_no_gradient)
{
  tch_env *e = mk_bits();
  tch_policy *p = mk_ssr(e, 5, 4, 0, 11);
  float *b1 = p->ssr->sc.params + p->ssr->sc.b_off[1];
  int32_t st[64 * BL];
  size_t n = visited_states(p, e, 10, st, 64);
  uint8_t fwd[64 * 3];
  ck_assert_int_eq(tchi_env_masks(e, n, st, fwd, NULL), TCH_OK);
  const float cases[] = {1000.0f, -1000.0f, INFINITY, -INFINITY, NAN};
  const float want[] = {50.0f, -50.0f, 50.0f, -50.0f, 0.0f};
  for (size_t c = 0; c < 5; c++) {
    *b1 = cases[c];
    const float *out;
    ck_assert_int_eq(tchi_policy_forward(p, e, n, st, &out), TCH_OK);
    for (size_t r = 0; r < n; r++)
      for (size_t a = 0; a < 3; a++)
        if (fwd[r * 3 + a]) ck_assert_float_eq(out[r * 3 + a], want[c]);
  }
  /* All scores clipped: TB moves log Z only. */
  *b1 = 1000.0f;
  tchi_rng rng;
  tchi_rng_seed(&rng, 2, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_forward(p, e, &rng, 8, 0.0, 1.0, &t, NULL), TCH_OK);
  double log_r[8], loss;
  int32_t x[8 * BL];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 8, x, -INFINITY, log_r), TCH_OK);
  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0.0;
  ck_assert_int_eq(tchi_tb_loss(p, e, &t, NULL, log_r, NULL, 1, NULL, &loss), TCH_OK);
  for (size_t j = 0; j < p->mlp.n_params; j++) ck_assert_float_eq(p->mlp.grads[j], 0.0f);
  ck_assert(p->log_z_grad != 0.0);
  /* Uniform policy: the log-probability of each trajectory is the sum of -log(#valid). */
  double lpf = 0.0;
  for (size_t k = 0; k < t.len[0]; k++) {
    size_t valid = 0;
    for (size_t a = 0; a < 3; a++) valid += t.fwd[k * 3 + a];
    lpf -= log((double)valid);
  }
  tchi_eval ev;
  tchi_eval_init(&ev);
  ck_assert_int_eq(tchi_eval_traj(p, e, &t, &ev), TCH_OK);
  ck_assert_double_eq_tol(ev.log_pf[0], lpf, 1e-9);
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

/* ---- files and clones ------------------------------------------------------------------------ */
static void tmp_path(char *buf, size_t cap, const char *tag)
{
  snprintf(buf, cap, "/tmp/tch_ssr_%ld_%s.tchp", (long)getpid(), tag);
}

static uint32_t file_format(const char *path)
{
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  unsigned char h[8];
  ck_assert_uint_eq(fread(h, 1, 8, f), 8);
  fclose(f);
  uint32_t v;
  memcpy(&v, h + 4, 4);
  return v;
}

static void assert_same_policy(tch_policy *a, tch_policy *b, tch_env *e)
{
  ck_assert_int_eq(a->arch, b->arch);
  ck_assert_uint_eq(a->out_dim, b->out_dim);
  ck_assert_uint_eq(a->mlp.n_params, b->mlp.n_params);
  ck_assert_int_eq(memcmp(a->mlp.params, b->mlp.params, a->mlp.n_params * sizeof(float)), 0);
  ck_assert(a->log_z == b->log_z);
  if (a->ssr) {
    ck_assert_uint_eq(a->ssr->hidden, b->ssr->hidden);
    ck_assert_uint_eq(a->ssr->embed, b->ssr->embed);
    ck_assert(a->ssr->logit_clip == b->ssr->logit_clip);
  }
  int32_t st[32 * 8];
  size_t n = visited_states(a, e, 6, st, 32);
  const float *oa, *ob;
  ck_assert_int_eq(tchi_policy_forward(a, e, n, st, &oa), TCH_OK);
  float *keep = malloc(n * a->out_dim * sizeof(float));
  memcpy(keep, oa, n * a->out_dim * sizeof(float));
  ck_assert_int_eq(tchi_policy_forward(b, e, n, st, &ob), TCH_OK);
  ck_assert_int_eq(memcmp(keep, ob, n * a->out_dim * sizeof(float)), 0);
  free(keep);
}

START_TEST(save_load_clone_round_trip)
{
  tch_env *e = mk_seqpa(3, 3, 1.0);
  tch_policy *p = mk_ssr(e, 9, 4, 1, 21);
  p->ssr->logit_clip = 7.5;
  p->log_z = 5.0;
  char path[256];
  tmp_path(path, sizeof path, "ssr");
  ck_assert_int_eq(tch_policy_save(p, path), TCH_OK);
  ck_assert_uint_eq(file_format(path), 1);
  tch_policy *q = NULL;
  ck_assert_int_eq(tch_policy_load(path, &q), TCH_OK);
  assert_same_policy(p, q, e);
  tch_policy *c = NULL;
  ck_assert_int_eq(tch_policy_clone(p, &c), TCH_OK);
  assert_same_policy(p, c, e);
  size_t np;
  ck_assert_int_eq(tch_policy_n_params(q, &np), TCH_OK);
  ck_assert_uint_eq(np, 9 * 9 + 9 + 9 * 4 + 4 + 8 * 9 + 9 + 9 + 1 + 1);   /* in = 9, + log Z */
  /* Checkpoint path: the body alone through an in-memory writer and reader. */
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_policy_write(p, &w);
  ck_assert_int_eq(w.status, TCH_OK);
  tchi_reader r = {.buf = w.buf, .len = w.len, .pos = 0, .path = "memory"};
  tch_policy *m = NULL;
  ck_assert_int_eq(tchi_policy_read(&r, &m), TCH_OK);
  ck_assert_uint_eq(r.pos, r.len);
  assert_same_policy(p, m, e);
  tchi_writer_destroy(&w);
  tch_policy_free(m);
  tch_policy_free(c);
  tch_policy_free(q);
  tch_policy_free(p);
  unlink(path);

  /* An MLP policy is written and loads as before (format 1, no SSR block). */
  tchi_policy_spec spec = {
    .state_dim = 3, .n_actions = 7, .in_dim = 9, .onehot = 1, .hidden_dim = 8, .n_hidden = 2,
    .act = TCHI_ACT_LEAKY_RELU, .kernel = "auto", .threads = 1,
  };
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_OK);
  ck_assert_int_eq(p->arch, TCHI_ARCH_MLP);
  ck_assert_ptr_null(p->ssr);
  tmp_path(path, sizeof path, "mlp");
  ck_assert_int_eq(tch_policy_save(p, path), TCH_OK);
  ck_assert_uint_eq(file_format(path), 1);
  /* The pre-SSR layout, byte for byte in size: header 12, 8 u32, 4 u64 dims, threads,
   * kernel, log Z, n_params, the floats, CRC. */
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  ck_assert_int_eq(ftell(f), (long)(12 + 32 + 4 * 8 + 4 + 32 + 8 + 8 + 4 * p->mlp.n_params + 4));
  fclose(f);
  ck_assert_int_eq(tch_policy_load(path, &q), TCH_OK);
  assert_same_policy(p, q, e);
  tch_policy_free(q);
  tch_policy_free(p);
  unlink(path);
  tch_env_free(e);
}
END_TEST

/* Hand-written SSR files: the valid one, an SSR block of another version, a width of 0, a
 * format this library does not read. */
static tch_status load_crafted(uint32_t format, uint32_t version, uint64_t hidden)
{
  char path[256];
  tmp_path(path, sizeof path, "crafted");
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_put(&w, "TCHP", 4);
  tchi_put_u32(&w, format);
  tchi_put_u32(&w, TCHI_ENDIAN_TAG);
  const uint32_t head[8] = {3, 7, 9, 1, 0, 0, TCHI_ACT_LEAKY_RELU, 0};
  for (int i = 0; i < 8; i++) tchi_put_u32(&w, head[i]);
  tchi_put_u32(&w, version);
  tchi_put_u64(&w, hidden);
  tchi_put_u64(&w, 2);
  tchi_put_f64(&w, 50.0);
  tchi_put_u32(&w, 1);
  char kernel[32] = "auto";
  tchi_put(&w, kernel, sizeof kernel);
  tchi_put_f64(&w, 0.0);
  uint64_t np = 9 * hidden + hidden + hidden * 2 + 2 + 4 * hidden + 2 * hidden + 1;
  tchi_put_u64(&w, np);
  for (uint64_t i = 0; i < np; i++) tchi_put(&w, &(float){0.5f}, sizeof(float));
  ck_assert_int_eq(tchi_writer_commit(&w, path), TCH_OK);
  tchi_writer_destroy(&w);
  tch_policy *p = (tch_policy *)1;
  tch_status s = tch_policy_load(path, &p);
  if (s) ck_assert_ptr_null(p);
  else tch_policy_free(p);
  unlink(path);
  return s;
}

START_TEST(crafted_files_are_checked)
{
  ck_assert_int_eq(load_crafted(1, 1, 3), TCH_OK);
  ck_assert_int_eq(load_crafted(1, 2, 3), TCH_E_VERSION);
  ck_assert_int_eq(load_crafted(1, 1, 0), TCH_E_IO);
  ck_assert_int_eq(load_crafted(2, 1, 3), TCH_E_VERSION);
}
END_TEST

/* ---- learning ------------------------------------------------------------------------------ */
START_TEST(tb_training_reduces_the_loss)
{
  tch_env *e = mk_seqpa(3, 3, 2.0);
  tch_policy *p = mk_ssr(e, 32, 32, 0, 1);
  p->log_z = 0.0;
  tchi_param_group g[2] = {
    {.p = p->mlp.params, .g = p->mlp.grads, .n = p->mlp.n_params, .lr = 1e-3},
    {.pd = &p->log_z, .gd = &p->log_z_grad, .n = 1, .lr = 1e-1},
  };
  tchi_adam opt;
  ck_assert_int_eq(tchi_adam_init(&opt, 2, g), TCH_OK);
  tchi_traj t;
  tchi_eval ev;
  tchi_traj_init(&t);
  tchi_eval_init(&ev);
  enum { STEPS = 400, B = 16, W = 50 };
  double first = 0.0, last = 0.0;
  for (int it = 0; it < STEPS; it++) {
    tchi_rng rng;
    tchi_rng_seed(&rng, 77, (uint64_t)it);
    ck_assert_int_eq(tchi_sample_forward(p, e, &rng, B, 0.05, 1.0, &t, NULL), TCH_OK);
    int32_t x[B * 3];
    double log_r[B], loss;
    tchi_traj_terminals(&t, x);
    ck_assert_int_eq(tchi_env_log_reward(e, B, x, -INFINITY, log_r), TCH_OK);
    tchi_mlp_zero_grad(&p->mlp);
    p->log_z_grad = 0.0;
    ck_assert_int_eq(tchi_tb_loss(p, e, &t, &ev, log_r, NULL, 1, NULL, &loss), TCH_OK);
    tchi_clip_grad_norm(g, 2, 10.0);
    tchi_adam_step(&opt);
    if (it < W) first += loss / W;
    if (it >= STEPS - W) last += loss / W;
  }
  double log_z_true;
  ck_assert_int_eq(tchi_seqpa_log_z(e, &log_z_true), TCH_OK);
  ck_assert_msg(last < 0.2 * first, "TB loss %g -> %g", first, last);
  ck_assert_msg(fabs(p->log_z - log_z_true) < 0.5, "log Z %g vs %g", p->log_z, log_z_true);
  tchi_adam_destroy(&opt);
  tchi_eval_destroy(&ev);
  tchi_traj_destroy(&t);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

/* ---- config ------------------------------------------------------------------------------- */
START_TEST(config_selects_the_architecture)
{
  tch_env *e = mk_seqpa(3, 3, 1.0);
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  tch_policy *p = NULL;
  ck_assert_int_eq(tch_policy_create(e, c, 1, &p), TCH_OK);   /* default: the MLP */
  ck_assert_int_eq(p->arch, TCHI_ARCH_MLP);
  tch_policy_free(p);
  ck_assert_int_eq(tch_config_set_string(c, "nn.arch", "ssr"), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "nn.hidden_dim", 12), TCH_OK);
  ck_assert_int_eq(tch_policy_create(e, c, 1, &p), TCH_OK);
  ck_assert_int_eq(p->arch, TCHI_ARCH_SSR);
  ck_assert_uint_eq(p->ssr->hidden, 12);   /* -1 = nn.hidden_dim */
  ck_assert_uint_eq(p->ssr->embed, 12);    /* -1 = the hidden width */
  ck_assert(p->ssr->logit_clip == 50.0);
  tch_policy_free(p);
  ck_assert_int_eq(tch_config_set_int(c, "nn.ssr_hidden", 6), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "nn.ssr_embed", 4), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "nn.ssr_logit_clip", 20.0), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(c, "student.loss", "db"), TCH_OK);
  ck_assert_int_eq(tch_policy_create(e, c, 1, &p), TCH_OK);
  ck_assert_uint_eq(p->ssr->hidden, 6);
  ck_assert_uint_eq(p->ssr->embed, 4);
  ck_assert(p->ssr->logit_clip == 20.0);
  ck_assert(p->has_flow);
  tch_policy_free(p);
  ck_assert_int_ne(tch_config_set_string(c, "nn.arch", "gnn"), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "nn.ssr_hidden", 0), TCH_OK);
  p = (tch_policy *)1;
  ck_assert_int_eq(tch_policy_create(e, c, 1, &p), TCH_E_CONFIG);
  ck_assert_ptr_null(p);
  ck_assert_int_eq(tch_config_set_int(c, "nn.ssr_hidden", 6), TCH_OK);
  ck_assert_int_eq(tch_config_set_bool(c, "student.learn_pb", 1), TCH_OK);
  ck_assert_int_eq(tch_policy_create(e, c, 1, &p), TCH_E_CONFIG);
  ck_assert_ptr_null(p);
  tch_config_free(c);
  tch_env_free(e);
}
END_TEST

/* The trainer builds SSR Students and Teachers from the config, trains them and restores
 * them from a checkpoint. */
START_TEST(trainer_with_ssr_and_checkpoint)
{
  tch_env *e = mk_seqpa(3, 3, 1.0);
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(c, "nn.arch", "ssr"), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "nn.ssr_hidden", 16), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "train.batch_size", 8), TCH_OK);
  ck_assert_int_eq(tch_config_set_bool(c, "teacher.enabled", 1), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "mixer.epsilon", 0.05), TCH_OK);
  tch_trainer *tr = NULL;
  ck_assert_int_eq(tch_trainer_create(e, c, &tr), TCH_OK);
  tch_policy *s = NULL, *t = NULL;
  ck_assert_int_eq(tch_trainer_get_student(tr, &s), TCH_OK);
  ck_assert_int_eq(tch_trainer_get_teacher(tr, &t), TCH_OK);
  ck_assert_int_eq(s->arch, TCHI_ARCH_SSR);
  ck_assert_int_eq(t->arch, TCHI_ARCH_SSR);
  ck_assert_int_eq(tch_trainer_step(tr, 6), TCH_OK);
  double loss;
  ck_assert_int_eq(tch_trainer_metric(tr, "loss.student", &loss), TCH_OK);
  ck_assert(isfinite(loss));
  char path[256];
  tmp_path(path, sizeof path, "ckpt");
  ck_assert_int_eq(tch_trainer_save(tr, path), TCH_OK);
  tch_trainer *back = NULL;
  ck_assert_int_eq(tch_trainer_load(e, path, &back), TCH_OK);
  tch_policy *s2 = NULL;
  ck_assert_int_eq(tch_trainer_get_student(back, &s2), TCH_OK);
  ck_assert_int_eq(s2->arch, TCHI_ARCH_SSR);
  ck_assert_int_eq(memcmp(s->mlp.params, s2->mlp.params, s->mlp.n_params * sizeof(float)), 0);
  /* Resumed training matches continued training bit for bit. */
  ck_assert_int_eq(tch_trainer_step(tr, 2), TCH_OK);
  ck_assert_int_eq(tch_trainer_step(back, 2), TCH_OK);
  ck_assert_int_eq(memcmp(s->mlp.params, s2->mlp.params, s->mlp.n_params * sizeof(float)), 0);
  unlink(path);
  tch_trainer_free(back);
  tch_trainer_free(tr);
  tch_config_free(c);
  tch_env_free(e);
}
END_TEST

/* ---- bad arguments and failures --------------------------------------------------------- */
START_TEST(bad_arguments)
{
  tch_env *e = mk_bits();
  tchi_policy_spec spec = {
    .state_dim = BL, .n_actions = 3, .in_dim = 2 * BL + 1, .onehot = 0, .kernel = "auto",
    .threads = 1, .arch = TCHI_ARCH_SSR, .ssr_hidden = 4, .ssr_embed = 4,
  };
  tch_policy *p = NULL;
  spec.learn_pb = 1;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_E_ARG);
  ck_assert_ptr_null(p);
  spec.learn_pb = 0;
  spec.ssr_hidden = 0;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_E_ARG);
  spec.ssr_hidden = 70000;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_E_ARG);
  spec.ssr_hidden = 4;
  spec.ssr_logit_clip = -1.0;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_E_ARG);
  spec.ssr_logit_clip = INFINITY;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_E_ARG);
  spec.ssr_logit_clip = 0.0;
  spec.arch = (tchi_policy_arch)7;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_E_ARG);
  spec.arch = TCHI_ARCH_SSR;
  ck_assert_int_eq(tchi_policy_new(&spec, 1, 0, &p), TCH_OK);
  float dout[3 * 8] = {0};
  ck_assert_int_eq(tchi_policy_backward(p, dout), TCH_E_ARG);   /* no forward yet */
  const int32_t s0[BL] = {-1, -1, -1}, s1[BL] = {1, -1, -1};
  int32_t two[2 * BL];
  memcpy(two, s0, sizeof s0);
  memcpy(two + BL, s1, sizeof s1);
  const float *out;
  ck_assert_int_eq(tchi_policy_forward(p, e, 2, two, &out), TCH_OK);
  ck_assert_int_eq(tchi_policy_backward(p, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_policy_backward(p, dout), TCH_OK);
  ck_assert_int_eq(tchi_policy_backward(p, dout), TCH_E_ARG);   /* one backward per forward */
  /* A callback failure in the children's step call is reported, and no backward follows. */
  g_bits.fail_step = 1;
  ck_assert_int_eq(tchi_policy_forward(p, e, 2, two, &out), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 42);
  ck_assert_int_eq(tchi_policy_backward(p, dout), TCH_E_ARG);
  g_bits.fail_step = 0;
  /* An env of another shape. */
  tch_env *other = mk_seqpa(3, 3, 1.0);
  int32_t st[3] = {-1, -1, -1};
  ck_assert_int_eq(tchi_policy_forward(p, other, 1, st, &out), TCH_E_ARG);
  tch_env_free(other);
  tch_policy_free(p);
  tch_env_free(e);
}
END_TEST

/* Every allocation of construction, forward and backward may fail: the status is
 * TCH_E_NOMEM and a later call succeeds (the workspace stays consistent). */
START_TEST(allocation_failures)
{
  tch_env *e = mk_seqpa(3, 3, 1.0);
  tch_policy *ref = mk_ssr(e, 5, 3, 1, 4);
  tchi_rng rng;
  tchi_rng_seed(&rng, 8, 0);
  tchi_traj t;
  tchi_traj_init(&t);
  ck_assert_int_eq(tchi_sample_forward(ref, e, &rng, 6, 0.0, 1.0, &t, NULL), TCH_OK);
  double log_r[6], want, got;
  int32_t x[18];
  tchi_traj_terminals(&t, x);
  ck_assert_int_eq(tchi_env_log_reward(e, 6, x, -INFINITY, log_r), TCH_OK);
  tchi_mlp_zero_grad(&ref->mlp);
  ck_assert_int_eq(tchi_db_loss(ref, e, &t, NULL, log_r, 1, NULL, &want), TCH_OK);
  int failures = 0;
  for (uint64_t k = 1;; k++) {
    tch_policy *p = NULL;
    tchi_alloc_fail_at(k);
    tch_status s = tch_policy_clone(ref, &p);
    if (s == TCH_OK) s = tchi_db_loss(p, e, &t, NULL, log_r, 1, NULL, &got);
    tchi_alloc_fail_at(0);
    ck_assert_msg(s == TCH_OK || s == TCH_E_NOMEM, "k %llu: %d", (unsigned long long)k, (int)s);
    if (s != TCH_OK) {
      failures++;
      if (p) {
        tchi_mlp_zero_grad(&p->mlp);
        ck_assert_int_eq(tchi_db_loss(p, e, &t, NULL, log_r, 1, NULL, &got), TCH_OK);
      }
    }
    if (p) {
      ck_assert(got == want);
      ck_assert_int_eq(memcmp(p->mlp.grads, ref->mlp.grads, p->mlp.n_params * sizeof(float)), 0);
      tch_policy_free(p);
    }
    if (s == TCH_OK) break;
  }
  ck_assert_int_gt(failures, 10);
  tchi_traj_destroy(&t);
  tch_policy_free(ref);
  tch_env_free(e);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("ssr");
  TCase *tc = tcase_create("ssr");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, forward_matches_naive_dense_features);
  tcase_add_test(tc, forward_matches_naive_seqpa);
  tcase_add_test(tc, batched_forward_equals_single_rows);
  tcase_add_test(tc, tb_gradient_matches_finite_differences);
  tcase_add_test(tc, db_gradient_matches_finite_differences);
  tcase_add_test(tc, scores_are_clipped_and_clipped_scores_pass_no_gradient);
  tcase_add_test(tc, save_load_clone_round_trip);
  tcase_add_test(tc, crafted_files_are_checked);
  tcase_add_test(tc, tb_training_reduces_the_loss);
  tcase_add_test(tc, config_selects_the_architecture);
  tcase_add_test(tc, trainer_with_ssr_and_checkpoint);
  tcase_add_test(tc, bad_arguments);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
