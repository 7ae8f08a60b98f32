/* Reinforced SMC's training losses (lib/smc/loss.c) and the checkpoint records they need:
 * the joint TB + chunked SubTB loss (and the subtb / lv_subtb variants) against a direct
 * evaluation of the spec's formulas (reinforced-smc.md §5) from per-step log-probabilities,
 * every gradient (policy weights, log Z, flow weights, beta logits) against central finite
 * differences of the term that trains it, for the Brownian and the OU-DDS reference, the
 * stop-gradient structure (policy and log Z from TB only, as tchi_dtb_loss; twists from SubTB
 * only), independence of the pass-2 block size, the interior log R taken from an SMC record,
 * the log-reward floor and error paths, flow and OU-net serialisation (round trips,
 * format-1 nets, truncated and corrupted records), and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"
#include "diffusion/diffusion.h"
#include "envs/env.h"
#include "io/io.h"
#include "smc/smc.h"
#include "teacher.h"

enum { D = 2, T = 8, K = 4, L = T / K, N = 6 };
#define OU_STD 1.5
#define T_SCALE 1.3

/* ---- fixtures --------------------------------------------------------------------------------- */

/* Host target: log R(x) = -|x - 0.4|^2 / 4 + 0.3 sin(x_0 + x_1); can fail at a given call. */
typedef struct target { int calls, fail_at; } target;

static double target_log_r(const double *x)
{
  double sq = 0;
  for (int d = 0; d < D; d++) sq += (x[d] - 0.4) * (x[d] - 0.4);
  return -0.25 * sq + 0.3 * sin(x[0] + x[1]);
}

static int target_density(void *user, size_t n, size_t dim, const double *x, double *lp, double *grad)
{
  target *tg = user;
  (void)dim;
  (void)grad;
  tg->calls++;
  if (tg->fail_at == tg->calls) return 9;
  for (size_t i = 0; i < n; i++) lp[i] = target_log_r(x + i * D);
  return 0;
}

typedef struct fixture {
  tchi_dnet *net;
  tchi_dflow *flow;
  tchi_dtraj t;
  double log_r[N], log_r_mid[(K - 1) * N];
  target tg;
  tch_env *env;
} fixture;

static void tiny_spec(tchi_dnet_spec *s, int ou, int learned_variance)
{
  tchi_dnet_spec_default(s, D);
  s->T = T;
  s->hidden_dim = s->s_emb_dim = s->t_emb_dim = 8;
  s->harmonics_dim = 4;
  s->t_scale = T_SCALE;
  s->learned_variance = learned_variance;
  if (ou) tchi_dnet_spec_set_ou_dds(s, OU_STD);
}

/* A policy with a random last layer (zero init would make every upstream gradient 0), a flow
 * with a random last layer, phase and beta logits, N trajectories (forward-sampled, or
 * backward from random terminal points: replays), terminal log R a little off the log-IW so
 * the TB residuals are O(1), and the interior log R of the target. */
static void fx_init(fixture *f, int ou, int learned_variance, int backward, uint64_t seed)
{
  memset(f, 0, sizeof *f);
  tchi_dnet_spec spec;
  tiny_spec(&spec, ou, learned_variance);
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_INIT, 0));
  ck_assert_int_eq(tchi_dnet_create(&spec, &rng, &f->net), TCH_OK);
  const tchi_dlinear *last = &f->net->joint.lin[f->net->joint.n - 1];
  for (size_t i = 0; i < (size_t)last->in * last->out + last->out; i++)
    f->net->params[last->w + i] = (float)(0.4 * (2.0 * tchi_rng_uniform(&rng) - 1.0));
  f->net->log_z = 0.4;
  tchi_dflow_spec fs;
  tchi_dflow_spec_default(&fs, D, T);
  fs.hidden = 8;
  ck_assert_int_eq(tchi_dflow_create(&fs, &rng, &f->flow), TCH_OK);
  tchi_mlp *b = &f->flow->body;
  float *w = b->params + b->w_off[b->n_layers - 1];
  for (size_t i = 0; i < b->dims[b->n_layers - 1] + 1; i++) w[i] = (float)(0.5 * (2.0 * tchi_rng_uniform(&rng) - 1.0));
  for (uint32_t i = 0; i < fs.hidden; i++) f->flow->phase[i] = (float)(0.1 * i);
  for (uint32_t j = 0; j < T; j++) f->flow->beta_logit[j] = 1.0 + 0.8 * (2.0 * tchi_rng_uniform(&rng) - 1.0);
  tchi_dtraj_init(&f->t);
  if (backward) {
    double x[N * D];
    for (size_t q = 0; q < N * D; q++) x[q] = 1.5 * tchi_rng_normal(&rng);
    ck_assert_int_eq(tchi_dsample_backward(f->net, NULL, &rng, N, x, &f->t), TCH_OK);
  } else {
    ck_assert_int_eq(tchi_dsample_forward(f->net, NULL, &rng, N, 0.0, &f->t), TCH_OK);
  }
  for (size_t i = 0; i < N; i++) {
    f->log_r[i] = f->t.log_pf[i] - f->t.log_pb[i] + 1.5 * (2.0 * tchi_rng_uniform(&rng) - 1.0);
    for (uint32_t j = 1; j < K; j++) f->log_r_mid[(j - 1) * N + i] = target_log_r(tchi_dtraj_state(&f->t, i, j * L));
  }
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = D;
  d.log_density = target_density;
  d.user = &f->tg;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &f->env), TCH_OK);
}

static void fx_free(fixture *f)
{
  tchi_dnet_free(f->net);
  tchi_dflow_free(f->flow);
  tchi_dtraj_destroy(&f->t);
  tch_env_free(f->env);
}

static void zero_grads(fixture *f)
{
  tchi_dnet_zero_grad(f->net);
  tchi_dflow_zero_grad(f->flow);
}

static tchi_smc_loss_params params_of(tchi_smc_loss_type type, uint32_t block)
{
  tchi_smc_loss_params p;
  tchi_smc_loss_params_default(&p, K);
  p.type = type;
  p.block = block;
  return p;
}

/* One call with a fresh workspace; mid: given interior log R (else the env). */
static tch_status run_loss(fixture *f, const tchi_smc_loss_params *p, int grad, int mid,
                           tchi_smc_loss_result *res, double *tb_res)
{
  tchi_smc_loss_ws ws;
  tchi_smc_loss_ws_init(&ws);
  tch_status s = tchi_smc_joint_loss(f->net, f->flow, f->env, &f->t, f->log_r, mid ? f->log_r_mid : NULL,
                                     p, grad, &ws, res, tb_res);
  tchi_smc_loss_ws_destroy(&ws);
  return s;
}

/* ---- the direct evaluation ---------------------------------------------------------------------- */

static double log_normal(const double *x, const double *mu, const double *var)
{
  double acc = 0;
  for (int d = 0; d < D; d++) {
    double e = x[d] - (mu ? mu[d] : 0.0);
    acc += e * e / var[d] + log(2 * M_PI * var[d]);
  }
  return -0.5 * acc;
}

/* a_k of the cosine-squared schedule, clipped to [0, 1] (spec §2.1), in long double. */
static double ou_a(uint32_t k)
{
  long double c[T + 1], sum = 0;
  for (uint32_t j = 0; j <= T; j++) {
    long double ph = (((long double)j / T + 0.008L) / 1.008L) * 3.14159265358979323846L * 0.5L;
    long double cc = cosl(ph);
    c[j] = cc * cc * cc * cc;
    sum += c[j];
  }
  double a = (double)(6.0L * c[k] / sum);
  return a < 0 ? 0 : a > 1 ? 1 : a;
}

/* Per-step Δ_k = log q - log p_B (n x T) and log p_0 from the net's per-step outputs and
 * closed-form kernels. */
static void direct_steps(fixture *f, double delta[N][T], double p0[N])
{
  tchi_dnet *net = f->net;
  int ou = net->spec.reference == TCHI_DREF_OU_DDS;
  double dt = 1.0 / T, s2 = OU_STD * OU_STD;
  ck_assert_int_eq(tchi_dnet_reserve(net, 1, N, 0), TCH_OK);
  for (uint32_t k = 0; k < T; k++) {
    tchi_dtraj_stage(net, &f->t, k, 1);
    const double *mean, *logvar;
    tchi_dnet_forward(net, k, 1, N, 0, &mean, &logvar);
    double a = ou ? ou_a(k) : 0;
    for (size_t i = 0; i < N; i++) {
      const double *x0 = tchi_dtraj_state(&f->t, i, k), *x1 = tchi_dtraj_state(&f->t, i, k + 1);
      double mu[D], var[D], mb[D], vb[D];
      for (int d = 0; d < D; d++) {
        double u = mean[i * D + d], lv = logvar[i * D + d];
        if (ou) {
          mu[d] = sqrt(1 - a) * x0[d] + a * u;
          var[d] = a * s2 * exp(lv - log(T_SCALE));
          mb[d] = sqrt(1 - a) * x1[d];
          vb[d] = a * s2;
        } else {
          mu[d] = x0[d] + dt * u;
          var[d] = dt * exp(lv);
          mb[d] = (double)k / (k + 1) * x1[d];
          vb[d] = T_SCALE * dt * k / (k + 1);
        }
      }
      double lb = (!ou && k == 0) ? 0.0 : log_normal(x0, mb, vb);
      delta[i][k] = log_normal(x1, mu, var) - lb;
    }
  }
  for (size_t i = 0; i < N; i++) {
    double v[D] = {s2, s2};
    p0[i] = ou ? log_normal(tchi_dtraj_state(&f->t, i, 0), NULL, v) : 0.0;
  }
}

/* The spec's formulas written out: loss, TB part, SubTB part and TB residuals. */
static void direct_loss(fixture *f, const tchi_smc_loss_params *p, double out[3], double tb_res[N])
{
  double delta[N][T], p0[N];
  direct_steps(f, delta, p0);
  int ou = f->net->spec.reference == TCHI_DREF_OU_DDS;
  /* beta: softplus-cumsum-normalise */
  double sp[T], tot = 0, beta[T + 1];
  for (uint32_t j = 0; j < T; j++) tot += sp[j] = log1p(exp(f->flow->beta_logit[j]));
  beta[0] = 0;
  for (uint32_t k = 1; k <= T; k++) beta[k] = beta[k - 1] + sp[k - 1] / tot;
  double F[N][K + 1], lr[N], ell[N];
  for (uint32_t j = 1; j < K; j++) {
    double x[N * D];
    uint32_t step = j * L;
    for (size_t i = 0; i < N; i++) memcpy(x + i * D, tchi_dtraj_state(&f->t, i, step), sizeof(double) * D);
    const double *o;
    ck_assert_int_eq(tchi_dflow_forward(f->flow, 1, &step, N, x, 0, &o), TCH_OK);
    for (size_t i = 0; i < N; i++) {
      double v = ou ? OU_STD * OU_STD : T_SCALE * step / T, vv[D] = {v, v};
      double lref = log_normal(x + i * D, NULL, vv);
      F[i][j] = o[i] + (1 - beta[step]) * lref + beta[step] * target_log_r(x + i * D);
    }
  }
  double c = p->logr_clip, mean_ell = 0;
  for (size_t i = 0; i < N; i++) {
    lr[i] = f->log_r[i] > c ? f->log_r[i] : c - log(1 + (c - f->log_r[i]));
    F[i][0] = f->net->log_z + p0[i];
    F[i][K] = p->inv_temp * lr[i];
    double s = 0;
    for (uint32_t k = 0; k < T; k++) s += delta[i][k];
    ell[i] = p0[i] + s - p->inv_temp * lr[i];
    mean_ell += ell[i] / N;
  }
  double tb = 0, sub = 0;
  for (size_t i = 0; i < N; i++) {
    tb_res[i] = p->type == TCHI_SMC_LOSS_LV_SUBTB ? ell[i] - mean_ell : f->net->log_z + ell[i];
    tb += tb_res[i] * tb_res[i] / N;
    double si = 0;
    for (uint32_t j = 0; j < K; j++) {
      double chunk = 0, rest = 0;
      for (uint32_t k = j * L; k < (j + 1) * L; k++) chunk += delta[i][k];
      for (uint32_t k = j * L; k < T; k++) rest += delta[i][k];
      double d1 = F[i][j] + chunk - F[i][j + 1], d2 = (F[i][j] + rest - F[i][K]) / (K - j);
      si += (d1 * d1 + d2 * d2) / (2 * K);
    }
    sub += si / N;
  }
  out[0] = (p->type == TCHI_SMC_LOSS_SUBTB ? 0 : tb) + p->subtb_weight * sub;
  out[1] = tb;
  out[2] = sub;
}

static void assert_close(double a, double b, double rel, const char *what)
{
  ck_assert_msg(fabs(a - b) <= rel * (1 + fabs(b)), "%s: %.15g vs %.15g", what, a, b);
}

START_TEST(loss_matches_direct_evaluation)
{
  for (int ou = 0; ou < 2; ou++)
    for (int type = 0; type < TCHI_SMC_LOSS_TYPE_COUNT; type++) {
      fixture f;
      fx_init(&f, ou, ou, ou, 11 + ou);
      tchi_smc_loss_params p = params_of((tchi_smc_loss_type)type, 0);
      p.inv_temp = 0.7;
      p.subtb_weight = 1.3;
      /* a floor between the terminal log R values: some are softly raised */
      double lo = f.log_r[0], hi = f.log_r[0];
      for (int i = 1; i < N; i++) lo = fmin(lo, f.log_r[i]), hi = fmax(hi, f.log_r[i]);
      p.logr_clip = 0.5 * (lo + hi);
      double want[3], want_res[N], res_given[N], res_env[N];
      direct_loss(&f, &p, want, want_res);
      tchi_smc_loss_result r, r2;
      ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r, res_given), TCH_OK);
      char what[64];
      snprintf(what, sizeof what, "ref %d type %d loss", ou, type);
      assert_close(r.loss, want[0], 1e-10, what);
      assert_close(r.tb, want[1], 1e-10, what);
      assert_close(r.subtb, want[2], 1e-10, what);
      for (int i = 0; i < N; i++) assert_close(res_given[i], want_res[i], 1e-10, what);
      ck_assert(want[1] > 1e-2 && want[2] > 1e-2);
      /* the interior log R through the env: the same bits, K - 1 batches of N points */
      int calls = f.tg.calls;
      ck_assert_int_eq(run_loss(&f, &p, 0, 0, &r2, res_env), TCH_OK);
      ck_assert_int_eq(f.tg.calls - calls, K - 1);
      ck_assert(r2.loss == r.loss && r2.tb == r.tb && r2.subtb == r.subtb);
      ck_assert(memcmp(res_env, res_given, sizeof res_env) == 0);
      fx_free(&f);
    }
}
END_TEST

START_TEST(single_chunk_subtb_is_tb)
{
  /* K = 1: δ¹_0 = δ²_0 = δ, so SubTB = δ² and tb_subtb = 2 TB; no interior log R needed */
  fixture f;
  fx_init(&f, 1, 0, 0, 5);
  tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, 0);
  p.n_chunks = 1;
  tchi_smc_loss_ws ws;
  tchi_smc_loss_ws_init(&ws);
  tchi_smc_loss_result r;
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, NULL, &f.t, f.log_r, NULL, &p, 1, &ws, &r, NULL), TCH_OK);
  assert_close(r.subtb, r.tb, 1e-12, "K = 1");
  assert_close(r.loss, 2 * r.tb, 1e-12, "K = 1");
  for (size_t i = 0; i < f.flow->body.n_params; i++) ck_assert(f.flow->body.grads[i] == 0.0f);
  tchi_smc_loss_ws_destroy(&ws);
  fx_free(&f);
}
END_TEST

/* ---- gradients ------------------------------------------------------------------------------------ */

typedef enum part { PART_TB, PART_SUB, PART_ALL } part;

static double eval_part(fixture *f, const tchi_smc_loss_params *p, part which)
{
  tchi_smc_loss_result r;
  ck_assert_int_eq(run_loss(f, p, 0, 1, &r, NULL), TCH_OK);
  return which == PART_TB ? r.tb : which == PART_SUB ? p->subtb_weight * r.subtb : r.loss;
}

/* Central differences of `which` over the float parameters par[idx[c]] (h = 1e-2: the net
 * runs in float) against the analytic gradients g; returns the largest analytic gradient. */
static double check_float_fd_at(fixture *f, const tchi_smc_loss_params *p, part which, float *par,
                                const float *g, const size_t *idx, size_t count, const char *what)
{
  double largest = 0;
  size_t nonzero = 0;
  for (size_t c = 0; c < count; c++) {
    size_t i = idx[c];
    float save = par[i];
    const float h = 1e-2f;
    par[i] = save + h;
    double up = eval_part(f, p, which);
    par[i] = save - h;
    double dn = eval_part(f, p, which);
    par[i] = save;
    double fd = (up - dn) / (2.0 * h), an = g[i];
    ck_assert_msg(fabs(fd - an) <= 1e-2 * fabs(an) + 2e-3 * fmax(1.0, largest) + 2e-4,
                  "%s: param %zu analytic %.8g, finite difference %.8g", what, i, an, fd);
    largest = fmax(largest, fabs(an));
    nonzero += fabs(an) > 1e-6;
  }
  ck_assert_msg(nonzero > count / 2, "%s: only %zu of %zu gradients are non-zero", what, nonzero, count);
  return largest;
}

/* The same at count random indices below n. */
static double check_float_fd(fixture *f, const tchi_smc_loss_params *p, part which, float *par,
                             const float *g, size_t n, size_t count, tchi_rng *rng, const char *what)
{
  size_t idx[32];
  ck_assert(count <= 32);
  for (size_t c = 0; c < count; c++) idx[c] = tchi_rng_below(rng, (uint32_t)n);
  return check_float_fd_at(f, p, which, par, g, idx, count, what);
}

static void check_double_fd(fixture *f, const tchi_smc_loss_params *p, part which, double *par, double an,
                            const char *what)
{
  double save = *par, h = 1e-5;
  *par = save + h;
  double up = eval_part(f, p, which);
  *par = save - h;
  double dn = eval_part(f, p, which);
  *par = save;
  double fd = (up - dn) / (2 * h);
  ck_assert_msg(fabs(fd - an) <= 1e-6 * (1 + fabs(an)), "%s: analytic %.12g, finite difference %.12g", what, an, fd);
}

static void check_gradients(int ou, tchi_smc_loss_type type)
{
  fixture f;
  fx_init(&f, ou, ou, ou, 30 + ou);
  tchi_smc_loss_params p = params_of(type, 3);
  p.subtb_weight = 0.8;
  /* which term trains what (spec §5.3-5.4): the stop-gradients make the analytic gradient
   * the derivative of that term alone */
  part policy = type == TCHI_SMC_LOSS_SUBTB ? PART_ALL : PART_TB;
  part log_z = type == TCHI_SMC_LOSS_TB_SUBTB ? PART_TB : type == TCHI_SMC_LOSS_SUBTB ? PART_ALL : PART_SUB;
  part twist = type == TCHI_SMC_LOSS_SUBTB ? PART_ALL : PART_SUB;
  zero_grads(&f);
  ck_assert_int_eq(run_loss(&f, &p, 1, 1, NULL, NULL), TCH_OK);
  /* copies: the finite differences run the loss again (without gradients) */
  size_t np = f.net->n_params;
  float *gnet = malloc(np * sizeof *gnet), *gtime = malloc(f.flow->time.n_params * sizeof(float));
  float *gbody = malloc(f.flow->body.n_params * sizeof(float)), gphase[8];
  memcpy(gnet, f.net->grads, np * sizeof *gnet);
  memcpy(gtime, f.flow->time.grads, f.flow->time.n_params * sizeof(float));
  memcpy(gbody, f.flow->body.grads, f.flow->body.n_params * sizeof(float));
  memcpy(gphase, f.flow->phase_grad, sizeof gphase);
  double gz = f.net->log_z_grad, gbeta[T];
  memcpy(gbeta, f.flow->beta_grad, sizeof gbeta);
  char what[96];
  tchi_rng rng;
  tchi_rng_seed(&rng, 77, 1);
  snprintf(what, sizeof what, "ref %d %s policy", ou, tchi_smc_loss_type_name(type));
  ck_assert(check_float_fd(&f, &p, policy, f.net->params, gnet, np, 24, &rng, what) > 1e-2);
  /* the last layer of the joint policy: weights and biases of the mean outputs (its first D
   * columns; the log-variance columns are used only with learned variance) */
  const tchi_dlinear *last = &f.net->joint.lin[f.net->joint.n - 1];
  size_t idx[8];
  for (size_t c = 0; c < 6; c++) idx[c] = last->w + (c / D) * last->out + c % D;
  idx[6] = last->b;
  idx[7] = last->b + 1;
  check_float_fd_at(&f, &p, policy, f.net->params, gnet, idx, 8, what);
  snprintf(what, sizeof what, "ref %d %s flow time", ou, tchi_smc_loss_type_name(type));
  ck_assert(check_float_fd(&f, &p, twist, f.flow->time.params, gtime, f.flow->time.n_params, 12, &rng, what) > 1e-3);
  snprintf(what, sizeof what, "ref %d %s flow body", ou, tchi_smc_loss_type_name(type));
  ck_assert(check_float_fd(&f, &p, twist, f.flow->body.params, gbody, f.flow->body.n_params, 16, &rng, what) > 1e-2);
  snprintf(what, sizeof what, "ref %d %s flow phase", ou, tchi_smc_loss_type_name(type));
  check_float_fd(&f, &p, twist, f.flow->phase, gphase, 8, 4, &rng, what);
  snprintf(what, sizeof what, "ref %d %s log Z", ou, tchi_smc_loss_type_name(type));
  check_double_fd(&f, &p, log_z, &f.net->log_z, gz, what);
  ck_assert(fabs(gz) > 1e-3);
  double bmax = 0;
  for (uint32_t j = 0; j < T; j++) {
    snprintf(what, sizeof what, "ref %d %s beta logit %u", ou, tchi_smc_loss_type_name(type), j);
    check_double_fd(&f, &p, twist, &f.flow->beta_logit[j], gbeta[j], what);
    bmax = fmax(bmax, fabs(gbeta[j]));
  }
  ck_assert(bmax > 1e-3);
  free(gnet);
  free(gtime);
  free(gbody);
  fx_free(&f);
}

START_TEST(gradients_match_finite_differences_brownian)
{
  for (int type = 0; type < TCHI_SMC_LOSS_TYPE_COUNT; type++) check_gradients(0, (tchi_smc_loss_type)type);
}
END_TEST

START_TEST(gradients_match_finite_differences_ou_dds)
{
  /* OU-DDS with learned variance, on backward-sampled (replay) trajectories */
  for (int type = 0; type < TCHI_SMC_LOSS_TYPE_COUNT; type++) check_gradients(1, (tchi_smc_loss_type)type);
}
END_TEST

START_TEST(stop_gradient_structure)
{
  for (int ou = 0; ou < 2; ou++) {
    fixture f;
    fx_init(&f, ou, 0, 0, 40 + ou);
    tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, 2);
    size_t np = f.net->n_params;
    /* policy and log Z: exactly TB's gradients. tchi_dtb_loss is mean r²/2, ours mean δ². */
    zero_grads(&f);
    double delta[N], tb_res[N], dtb_loss;
    ck_assert_int_eq(tchi_dtb_loss(f.net, &f.t, f.log_r, NULL, NULL, 2, 1, delta, &dtb_loss), TCH_OK);
    float *g_tb = malloc(np * sizeof *g_tb);
    for (size_t i = 0; i < np; i++) g_tb[i] = 2.0f * f.net->grads[i];
    double gz_tb = 2 * f.net->log_z_grad, gmax = 0;
    for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g_tb[i]));
    ck_assert(gmax > 1e-2);
    zero_grads(&f);
    tchi_smc_loss_result r;
    ck_assert_int_eq(run_loss(&f, &p, 1, 1, &r, tb_res), TCH_OK);
    assert_close(r.tb, 2 * dtb_loss, 1e-12, "TB part = tchi_dtb_loss");
    for (int i = 0; i < N; i++) assert_close(tb_res[i], -delta[i], 1e-12, "TB residual");
    for (size_t i = 0; i < np; i++)
      ck_assert_msg(fabs(f.net->grads[i] - g_tb[i]) <= 1e-6 * gmax, "ref %d param %zu: %g vs TB %g", ou, i,
                    f.net->grads[i], g_tb[i]);
    assert_close(f.net->log_z_grad, gz_tb, 1e-12, "log Z gradient = TB's");
    /* twists: exactly SubTB's, i.e. those of the subtb loss (which trains everything) */
    size_t nb = f.flow->body.n_params, nt = f.flow->time.n_params;
    float *gb = malloc(nb * sizeof *gb), *gt = malloc(nt * sizeof *gt);
    double gbeta[T];
    memcpy(gb, f.flow->body.grads, nb * sizeof *gb);
    memcpy(gt, f.flow->time.grads, nt * sizeof *gt);
    memcpy(gbeta, f.flow->beta_grad, sizeof gbeta);
    float *gnet = malloc(np * sizeof *gnet);
    memcpy(gnet, f.net->grads, np * sizeof *gnet);
    zero_grads(&f);
    tchi_smc_loss_params ps = params_of(TCHI_SMC_LOSS_SUBTB, 2);
    ck_assert_int_eq(run_loss(&f, &ps, 1, 1, NULL, NULL), TCH_OK);
    ck_assert(memcmp(gb, f.flow->body.grads, nb * sizeof *gb) == 0);
    ck_assert(memcmp(gt, f.flow->time.grads, nt * sizeof *gt) == 0);
    ck_assert(memcmp(gbeta, f.flow->beta_grad, sizeof gbeta) == 0);
    /* ... and the policy gradients of subtb differ from TB's (the stop-gradient matters) */
    double diff = 0;
    for (size_t i = 0; i < np; i++) diff = fmax(diff, fabs(f.net->grads[i] - g_tb[i]));
    ck_assert(diff > 1e-3 * gmax);
    /* w = 0: no twist gradients, the same policy gradients */
    zero_grads(&f);
    p.subtb_weight = 0;
    ck_assert_int_eq(run_loss(&f, &p, 1, 1, NULL, NULL), TCH_OK);
    ck_assert(memcmp(gnet, f.net->grads, np * sizeof *gnet) == 0);
    for (size_t i = 0; i < nb; i++) ck_assert(f.flow->body.grads[i] == 0.0f);
    for (uint32_t j = 0; j < T; j++) ck_assert(f.flow->beta_grad[j] == 0.0);
    /* gradients accumulate: a second call doubles them */
    zero_grads(&f);
    p.subtb_weight = 1;
    ck_assert_int_eq(run_loss(&f, &p, 1, 1, NULL, NULL), TCH_OK);
    ck_assert_int_eq(run_loss(&f, &p, 1, 1, NULL, NULL), TCH_OK);
    for (size_t i = 0; i < np; i++) ck_assert(fabs(f.net->grads[i] - 2 * gnet[i]) <= 1e-6 * gmax);
    for (uint32_t j = 0; j < T; j++) assert_close(f.flow->beta_grad[j], 2 * gbeta[j], 1e-12, "accumulated beta");
    free(g_tb);
    free(gb);
    free(gt);
    free(gnet);
    fx_free(&f);
  }
}
END_TEST

START_TEST(block_size_does_not_change_the_result)
{
  for (int ou = 0; ou < 2; ou++) {
    fixture f;
    fx_init(&f, ou, 1, 0, 50 + ou);
    const uint32_t blocks[] = {1, 2, 3, 5, 8, 100, 0};
    size_t np = f.net->n_params, nb = f.flow->body.n_params;
    float *g0 = malloc(np * sizeof *g0), *b0 = malloc(nb * sizeof *b0);
    double beta0[T], gz0 = 0, gmax = 0, bmax = 0;
    tchi_smc_loss_result r0 = {0, 0, 0};
    for (size_t c = 0; c < sizeof blocks / sizeof *blocks; c++) {
      tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, blocks[c]);
      tchi_smc_loss_result r;
      zero_grads(&f);
      ck_assert_int_eq(run_loss(&f, &p, 1, 0, &r, NULL), TCH_OK);
      if (c == 0) {
        r0 = r;
        memcpy(g0, f.net->grads, np * sizeof *g0);
        memcpy(b0, f.flow->body.grads, nb * sizeof *b0);
        memcpy(beta0, f.flow->beta_grad, sizeof beta0);
        gz0 = f.net->log_z_grad;
        for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g0[i]));
        for (size_t i = 0; i < nb; i++) bmax = fmax(bmax, fabs(b0[i]));
        continue;
      }
      /* doubles: within 1e-12; float parameter gradients are summed over rows in another
       * order by each block size, so within float rounding */
      assert_close(r.loss, r0.loss, 1e-12, "block loss");
      assert_close(r.subtb, r0.subtb, 1e-12, "block subtb");
      assert_close(f.net->log_z_grad, gz0, 1e-12, "block log Z gradient");
      for (uint32_t j = 0; j < T; j++) assert_close(f.flow->beta_grad[j], beta0[j], 1e-12, "block beta gradient");
      for (size_t i = 0; i < np; i++)
        ck_assert_msg(fabs(f.net->grads[i] - g0[i]) <= 1e-5 * gmax, "block %u param %zu", blocks[c], i);
      for (size_t i = 0; i < nb; i++)
        ck_assert_msg(fabs(f.flow->body.grads[i] - b0[i]) <= 1e-5 * bmax, "block %u flow param %zu", blocks[c], i);
    }
    free(g0);
    free(b0);
    fx_free(&f);
  }
}
END_TEST

/* ---- SMC particles' paths ----------------------------------------------------------------------- */

START_TEST(smc_record_supplies_the_interior_log_r)
{
  /* Without resampling, particle i's chunk paths form one trajectory; the record's end-of-chunk
   * log R are the interior log R the loss needs, and the TB residual is log Z minus the
   * particle's output log-weight (a single-trajectory log-IW). */
  fixture f;
  fx_init(&f, 1, 0, 0, 60);
  tchi_smc_params sp;
  tchi_smc_params_default(&sp, N, K);
  sp.target_ess = 1.0;   /* resampling off */
  sp.keep_paths = 1;
  tchi_smc_sampler o;
  tchi_smc_sampler_init(&o);
  tchi_rng rng;
  tchi_rng_seed(&rng, 3, tchi_stream_id(TCHI_STREAM_SMC, 0));
  ck_assert_int_eq(tchi_smc_run(f.net, f.flow, f.env, &sp, &rng, &o), TCH_OK);
  ck_assert_uint_eq(o.n_resamples, 0);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  ck_assert_int_eq(tchi_dtraj_reserve(&t, T, D, N, 0), TCH_OK);
  for (size_t i = 0; i < N; i++)
    for (uint32_t j = 0; j < K; j++)
      for (uint32_t l = 0; l <= L; l++)
        memcpy(tchi_dtraj_state(&t, i, j * L + l), o.path + ((j * N + i) * (L + 1) + l) * D, D * sizeof(double));
  tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, 0);
  tchi_smc_loss_ws ws;
  tchi_smc_loss_ws_init(&ws);
  tchi_smc_loss_result ra, rb;
  double res_a[N], res_b[N];
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, NULL, &t, o.log_r, o.chunk_log_r1, &p, 0, &ws, &ra, res_a), TCH_OK);
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &t, o.log_r, NULL, &p, 0, &ws, &rb, res_b), TCH_OK);
  ck_assert(ra.loss == rb.loss && memcmp(res_a, res_b, sizeof res_a) == 0);
  for (size_t i = 0; i < N; i++) assert_close(res_a[i], f.net->log_z - o.log_w[i], 1e-9, "SMC log-IW");
  /* the loss's flows at the boundaries are the SMC twists plus nothing (same partial energy) */
  for (size_t i = 0; i < N; i++)
    for (uint32_t j = 1; j < K; j++)
      assert_close(ws.log_f[i * (K + 1) + j], o.chunk_log_f1[(j - 1) * N + i], 1e-12, "twist");
  tchi_smc_loss_ws_destroy(&ws);
  tchi_dtraj_destroy(&t);
  tchi_smc_sampler_destroy(&o);
  fx_free(&f);
}
END_TEST

/* ---- floor, numeric and argument errors -------------------------------------------------------- */

static int grads_are_zero(const fixture *f)
{
  for (size_t i = 0; i < f->net->n_params; i++)
    if (f->net->grads[i] != 0.0f) return 0;
  for (size_t i = 0; i < f->flow->body.n_params; i++)
    if (f->flow->body.grads[i] != 0.0f) return 0;
  for (uint32_t j = 0; j < T; j++)
    if (f->flow->beta_grad[j] != 0.0) return 0;
  return f->net->log_z_grad == 0.0;
}

START_TEST(floor_and_errors)
{
  fixture f;
  fx_init(&f, 0, 0, 0, 70);
  tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, 0);
  double res[N], res2[N];
  tchi_smc_loss_result r;
  /* the soft floor: continuous at c, c - log1p(c - log R) below; JAX's form is infinite at c */
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r, res), TCH_OK);
  p.logr_clip = f.log_r[2];
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r, res2), TCH_OK);
  ck_assert(res2[2] == res[2]);
  p.logr_clip = f.log_r[2] + 4;
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r, res2), TCH_OK);
  assert_close(res2[2] - res[2], -(f.log_r[2] + 4 - log1p(4.0) - f.log_r[2]), 1e-12, "floored residual");
  /* far below the default floor -1e5: softly raised; without a floor (-inf) taken as is */
  double orig = f.log_r[3];
  f.log_r[3] = -1e9;
  p.logr_clip = TCHI_SMC_LOGR_CLIP;
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r, res2), TCH_OK);
  double floored = -1e5 - log1p(-1e5 + 1e9);
  assert_close(res2[3] - res[3], orig - floored, 1e-12, "floored at -1e5");
  ck_assert(res2[3] < 1e5 + 30);
  p.logr_clip = -INFINITY;
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r, res2), TCH_OK);
  assert_close(res2[3] - res[3], orig + 1e9, 1e-12, "no floor");
  f.log_r[3] = orig;
  p.logr_clip = TCHI_SMC_LOGR_CLIP;
  /* non-finite log R, given or from the env: TCH_E_NUMERIC and nothing accumulated */
  zero_grads(&f);
  f.log_r[3] = NAN;
  ck_assert_int_eq(run_loss(&f, &p, 1, 1, &r, NULL), TCH_E_NUMERIC);
  f.log_r[3] = -INFINITY;
  ck_assert_int_eq(run_loss(&f, &p, 1, 1, &r, NULL), TCH_E_NUMERIC);
  f.log_r[3] = 0.5;
  f.log_r_mid[N + 1] = INFINITY;
  ck_assert_int_eq(run_loss(&f, &p, 1, 1, &r, NULL), TCH_E_NUMERIC);
  f.log_r_mid[N + 1] = 0.0;
  f.net->log_z = NAN;
  ck_assert_int_eq(run_loss(&f, &p, 1, 1, &r, NULL), TCH_E_NUMERIC);
  f.net->log_z = 0.4;
  ck_assert(grads_are_zero(&f));
  /* env callback failure */
  f.tg.fail_at = f.tg.calls + 2;
  ck_assert_int_eq(run_loss(&f, &p, 1, 0, &r, NULL), TCH_E_CALLBACK);
  ck_assert(grads_are_zero(&f));
  /* arguments */
  tchi_smc_loss_ws ws;
  tchi_smc_loss_ws_init(&ws);
  tchi_smc_loss_params q = p;
  q.n_chunks = 3;
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &f.t, f.log_r, NULL, &q, 1, &ws, &r, NULL), TCH_E_ARG);
  q = p;
  q.type = (tchi_smc_loss_type)7;
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &f.t, f.log_r, NULL, &q, 1, &ws, &r, NULL), TCH_E_ARG);
  q = p;
  q.subtb_weight = -1;
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &f.t, f.log_r, NULL, &q, 1, &ws, &r, NULL), TCH_E_ARG);
  q = p;
  q.logr_clip = NAN;
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &f.t, f.log_r, NULL, &q, 1, &ws, &r, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, NULL, &f.t, f.log_r, NULL, &p, 1, &ws, &r, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &f.t, NULL, NULL, &p, 1, &ws, &r, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_joint_loss(NULL, f.flow, f.env, &f.t, f.log_r, NULL, &p, 1, &ws, &r, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, f.flow, f.env, &f.t, f.log_r, NULL, &p, 1, NULL, &r, NULL), TCH_E_ARG);
  tchi_dflow_spec fs;
  tchi_dflow_spec_default(&fs, D, 2 * T);
  fs.hidden = 4;
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  tchi_dflow *other;
  ck_assert_int_eq(tchi_dflow_create(&fs, &rng, &other), TCH_OK);
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, other, f.env, &f.t, f.log_r, NULL, &p, 1, &ws, &r, NULL), TCH_E_ARG);
  tchi_dflow_free(other);
  ck_assert(grads_are_zero(&f));
  /* names */
  tchi_smc_loss_type ty;
  for (int i = 0; i < TCHI_SMC_LOSS_TYPE_COUNT; i++) {
    ck_assert_int_eq(tchi_smc_loss_type_from_name(tchi_smc_loss_type_name((tchi_smc_loss_type)i), &ty), TCH_OK);
    ck_assert_int_eq((int)ty, i);
  }
  ck_assert_int_eq(tchi_smc_loss_type_from_name("tb", &ty), TCH_E_ARG);
  ck_assert_ptr_null(tchi_smc_loss_type_name((tchi_smc_loss_type)3));
  /* a flow-less loss: f = 0 and linear beta, still a loss, nothing to train but the policy */
  ck_assert_int_eq(tchi_smc_joint_loss(f.net, NULL, f.env, &f.t, f.log_r, f.log_r_mid, &p, 1, &ws, &r, NULL), TCH_OK);
  ck_assert(r.subtb > 0);
  tchi_smc_loss_ws_destroy(&ws);
  fx_free(&f);
}
END_TEST

/* ---- serialisation ---------------------------------------------------------------------------- */

static tch_status read_flow(const unsigned char *buf, size_t len, tchi_dflow **out)
{
  tchi_reader r;
  memset(&r, 0, sizeof r);
  r.buf = (unsigned char *)buf;
  r.len = len;
  r.path = "memory";
  return tchi_dflow_read(&r, out);
}

static tch_status read_net(const unsigned char *buf, size_t len, tchi_dnet **out)
{
  tchi_reader r;
  memset(&r, 0, sizeof r);
  r.buf = (unsigned char *)buf;
  r.len = len;
  r.path = "memory";
  return tchi_dnet_read(&r, out);
}

/* Flow outputs at every step and the beta schedule must agree bit for bit. */
static void assert_same_flow(tchi_dflow *a, tchi_dflow *b, const tchi_dnet_spec *ref)
{
  double x[5 * D], oa[5], ba[T + 1], bb[T + 1];
  for (int i = 0; i < 5 * D; i++) x[i] = 0.3 * i - 1.1;
  for (uint32_t k = 0; k <= T; k++) {
    const double *o;
    ck_assert_int_eq(tchi_dflow_forward(a, 1, &k, 5, x, 0, &o), TCH_OK);
    memcpy(oa, o, sizeof oa);
    ck_assert_int_eq(tchi_dflow_forward(b, 1, &k, 5, x, 0, &o), TCH_OK);
    ck_assert(memcmp(oa, o, sizeof oa) == 0);
  }
  ck_assert_int_eq(tchi_dflow_betas(a, ref, ba), TCH_OK);
  ck_assert_int_eq(tchi_dflow_betas(b, ref, bb), TCH_OK);
  ck_assert(memcmp(ba, bb, sizeof ba) == 0);
}

START_TEST(flow_round_trip_and_rejects)
{
  fixture f;
  fx_init(&f, 1, 0, 0, 80);
  f.flow->time.grads[3] = 0.25f;
  f.flow->beta_grad[2] = -1.5;
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_dflow_write(f.flow, &w);
  ck_assert_int_eq(w.status, TCH_OK);
  tchi_dflow *back = NULL;
  ck_assert_int_eq(read_flow(w.buf, w.len, &back), TCH_OK);
  ck_assert(back->spec.dim == D && back->spec.T == T && back->spec.hidden == 8 && back->spec.layers == 2 &&
            back->spec.beta == TCHI_BETA_LEARNT);
  ck_assert_str_eq(back->kernel, f.flow->kernel);
  assert_same_flow(f.flow, back, &f.net->spec);
  ck_assert(memcmp(back->beta_logit, f.flow->beta_logit, T * sizeof(double)) == 0);
  /* the loss of a read-back flow is the same */
  tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, 0);
  tchi_smc_loss_result r1, r2;
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r1, NULL), TCH_OK);
  tchi_dflow *orig = f.flow;
  f.flow = back;
  ck_assert_int_eq(run_loss(&f, &p, 0, 1, &r2, NULL), TCH_OK);
  f.flow = orig;
  ck_assert(r1.loss == r2.loss);
  tchi_dflow_free(back);
  /* clone: weights and gradients */
  tchi_dflow *c = NULL;
  ck_assert_int_eq(tchi_dflow_clone(f.flow, &c), TCH_OK);
  assert_same_flow(f.flow, c, &f.net->spec);
  ck_assert(c->time.grads[3] == 0.25f && c->beta_grad[2] == -1.5);
  tchi_dflow_free(c);
  /* every truncation is TCH_E_IO with *out = NULL */
  for (size_t cut = 0; cut < w.len; cut += (cut < 120 ? 1 : 37)) {
    back = (tchi_dflow *)1;
    ck_assert_int_eq(read_flow(w.buf, cut, &back), TCH_E_IO);
    ck_assert_ptr_null(back);
  }
  unsigned char *bad = malloc(w.len);
  struct { size_t off; unsigned char v; tch_status want; } cases[] = {
    {0, 'X', TCH_E_IO},          /* tag */
    {4, 2, TCH_E_VERSION},       /* format */
    {8, 0, TCH_E_IO},            /* dim 0 */
    {16, 9, TCH_E_IO},           /* hidden 8 -> 9: counts disagree */
    {19, 0x7f, TCH_E_IO},        /* hidden huge: rejected before any allocation */
    {20, 0, TCH_E_IO},           /* layers 0 */
    {24, 5, TCH_E_IO},           /* beta schedule */
    {12, 0, TCH_E_IO},           /* T 0 */
  };
  for (size_t q = 0; q < sizeof cases / sizeof *cases; q++) {
    memcpy(bad, w.buf, w.len);
    bad[cases[q].off] = cases[q].v;
    back = (tchi_dflow *)1;
    ck_assert_msg(read_flow(bad, w.len, &back) == cases[q].want, "case %zu", q);
    ck_assert_ptr_null(back);
  }
  /* a non-finite beta logit (the last T doubles) */
  memcpy(bad, w.buf, w.len);
  double nan = NAN;
  memcpy(bad + w.len - sizeof(double), &nan, sizeof nan);
  ck_assert_int_eq(read_flow(bad, w.len, &back), TCH_E_IO);
  free(bad);
  tchi_writer_destroy(&w);
  fx_free(&f);
}
END_TEST

/* Samples of two nets from the same stream must be equal bit for bit. */
static void assert_same_sampler(tchi_dnet *a, tchi_dnet *b)
{
  tchi_dtraj ta, tb;
  tchi_dtraj_init(&ta);
  tchi_dtraj_init(&tb);
  tchi_rng r1, r2;
  tchi_rng_seed(&r1, 5, 5);
  tchi_rng_seed(&r2, 5, 5);
  ck_assert_int_eq(tchi_dsample_forward(a, NULL, &r1, 7, 0, &ta), TCH_OK);
  ck_assert_int_eq(tchi_dsample_forward(b, NULL, &r2, 7, 0, &tb), TCH_OK);
  ck_assert(memcmp(ta.states, tb.states, 7 * (T + 1) * D * sizeof(double)) == 0);
  ck_assert(memcmp(ta.log_pf, tb.log_pf, 7 * sizeof(double)) == 0);
  tchi_dtraj_destroy(&ta);
  tchi_dtraj_destroy(&tb);
}

START_TEST(ou_net_round_trip_and_format_1)
{
  fixture f;
  fx_init(&f, 1, 1, 0, 90);
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_dnet_write(f.net, &w);
  ck_assert_int_eq(w.status, TCH_OK);
  tchi_dnet *back = NULL;
  ck_assert_int_eq(read_net(w.buf, w.len, &back), TCH_OK);
  ck_assert_int_eq(back->spec.reference, TCHI_DREF_OU_DDS);
  ck_assert(back->spec.init_std == OU_STD && back->spec.noise_scale == TCHI_OU_DDS_NOISE_SCALE);
  ck_assert(back->log_z == f.net->log_z && back->spec.learned_variance);
  assert_same_sampler(f.net, back);
  tchi_dnet_free(back);
  for (size_t cut = 0; cut < w.len; cut += (cut < 180 ? 1 : 53)) {
    back = (tchi_dnet *)1;
    ck_assert_int_eq(read_net(w.buf, cut, &back), TCH_E_IO);
    ck_assert_ptr_null(back);
  }
  /* format 2 layout: tag, format, 15 u32, 6 f64, then reference (u32), init_std, noise_scale */
  const size_t ref_off = 8 + 15 * 4 + 6 * 8;
  unsigned char *bad = malloc(w.len);
  memcpy(bad, w.buf, w.len);
  bad[ref_off] = 7;   /* unknown reference process */
  ck_assert_int_eq(read_net(bad, w.len, &back), TCH_E_IO);
  memcpy(bad, w.buf, w.len);
  double v = -1.0;    /* init_std must be > 0 */
  memcpy(bad + ref_off + 4, &v, sizeof v);
  ck_assert_int_eq(read_net(bad, w.len, &back), TCH_E_IO);
  memcpy(bad, w.buf, w.len);
  bad[4] = 3;         /* a format from the future */
  ck_assert_int_eq(read_net(bad, w.len, &back), TCH_E_VERSION);
  ck_assert_ptr_null(back);
  free(bad);
  tchi_writer_destroy(&w);

  /* a format-1 record (no reference fields) reads as the Brownian net it was */
  fixture g;
  fx_init(&g, 0, 0, 0, 91);
  tchi_writer_init(&w);
  tchi_dnet_write(g.net, &w);
  ck_assert_int_eq(w.status, TCH_OK);
  size_t extra = 4 + 2 * 8, len1 = w.len - extra;
  unsigned char *v1 = malloc(w.len);
  memcpy(v1, w.buf, ref_off);
  memcpy(v1 + ref_off, w.buf + ref_off + extra, w.len - ref_off - extra);
  uint32_t one = 1;
  memcpy(v1 + 4, &one, 4);
  ck_assert_int_eq(read_net(v1, len1, &back), TCH_OK);
  ck_assert_int_eq(back->spec.reference, TCHI_DREF_BROWNIAN);
  assert_same_sampler(g.net, back);
  tchi_dnet_free(back);
  for (size_t cut = 0; cut < len1; cut += (cut < 180 ? 1 : 53)) {
    ck_assert_int_eq(read_net(v1, cut, &back), TCH_E_IO);
    ck_assert_ptr_null(back);
  }
  free(v1);
  tchi_writer_destroy(&w);
  fx_free(&g);
  fx_free(&f);
}
END_TEST

/* ---- allocation failures ------------------------------------------------------------------------- */

START_TEST(allocation_failures)
{
  /* Every allocation of a first call (loss workspace, net and flow workspaces) may fail: the
   * status is TCH_E_NOMEM, no gradient has been added, nothing leaks (ASan), and the next
   * call gives the reference result. Then the same for reading a flow record. */
  fixture f;
  fx_init(&f, 1, 0, 0, 100);
  tchi_smc_loss_params p = params_of(TCHI_SMC_LOSS_TB_SUBTB, 3);
  tchi_smc_loss_result want;
  ck_assert_int_eq(run_loss(&f, &p, 1, 0, &want, NULL), TCH_OK);
  int failures = 0;
  for (uint64_t k = 1;; k++) {
    tchi_dnet *net;
    tchi_dflow *flow;
    ck_assert_int_eq(tchi_dnet_clone(f.net, &net), TCH_OK);
    ck_assert_int_eq(tchi_dflow_clone(f.flow, &flow), TCH_OK);
    tchi_dnet_zero_grad(net);
    tchi_dflow_zero_grad(flow);
    tchi_smc_loss_ws ws;
    tchi_smc_loss_ws_init(&ws);
    tchi_smc_loss_result r;
    tchi_alloc_fail_at(k);
    tch_status st = tchi_smc_joint_loss(net, flow, f.env, &f.t, f.log_r, NULL, &p, 1, &ws, &r, NULL);
    tchi_alloc_fail_at(0);
    ck_assert_msg(st == TCH_OK || st == TCH_E_NOMEM, "k %llu: %d", (unsigned long long)k, (int)st);
    if (st != TCH_OK) {
      failures++;
      for (size_t i = 0; i < net->n_params; i++) ck_assert(net->grads[i] == 0.0f);
      ck_assert(net->log_z_grad == 0.0);
      for (uint32_t j = 0; j < T; j++) ck_assert(flow->beta_grad[j] == 0.0);
      ck_assert_int_eq(tchi_smc_joint_loss(net, flow, f.env, &f.t, f.log_r, NULL, &p, 1, &ws, &r, NULL), TCH_OK);
    }
    ck_assert(r.loss == want.loss);
    tchi_smc_loss_ws_destroy(&ws);
    tchi_dflow_free(flow);
    tchi_dnet_free(net);
    if (st == TCH_OK) break;
  }
  ck_assert(failures > 5);
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_dflow_write(f.flow, &w);
  failures = 0;
  for (uint64_t k = 1;; k++) {
    tchi_dflow *back = (tchi_dflow *)1;
    tchi_alloc_fail_at(k);
    tch_status st = read_flow(w.buf, w.len, &back);
    tchi_alloc_fail_at(0);
    ck_assert(st == TCH_OK || st == TCH_E_NOMEM);
    if (st != TCH_OK) {
      ck_assert_ptr_null(back);
      failures++;
      continue;
    }
    tchi_dflow_free(back);
    break;
  }
  ck_assert(failures > 3);
  tchi_writer_destroy(&w);
  fx_free(&f);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc_loss");
  TCase *tc = tcase_create("smc_loss");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, loss_matches_direct_evaluation);
  tcase_add_test(tc, single_chunk_subtb_is_tb);
  tcase_add_test(tc, gradients_match_finite_differences_brownian);
  tcase_add_test(tc, gradients_match_finite_differences_ou_dds);
  tcase_add_test(tc, stop_gradient_structure);
  tcase_add_test(tc, block_size_does_not_change_the_result);
  tcase_add_test(tc, smc_record_supplies_the_interior_log_r);
  tcase_add_test(tc, floor_and_errors);
  tcase_add_test(tc, flow_round_trip_and_rejects);
  tcase_add_test(tc, ou_net_round_trip_and_format_1);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  int rc = tch_run_suite(s);
  tchi_gemm_finalize_blis();
  return rc;
}
