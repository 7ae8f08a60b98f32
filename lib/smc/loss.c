/* The training losses of Reinforced SMC (spec reinforced-smc.md §5): trajectory balance
 * jointly with chunked sub-trajectory balance on detached trajectories, with the
 * stop-gradients that keep the policy and log Z trained by TB alone and the twists by SubTB
 * alone, and the two-pass gradient recipe of §5.5.
 *
 * The trajectories are constants, so the loss depends on the parameters only through the
 * per-chunk sums of log q (the policy), log Z, and the K-1 interior boundary flows (f_phi
 * and beta). Pass 1 evaluates those once without keeping activations and turns the residuals
 * into adjoints dL/d(chunk sum of log q), dL/d log Z and dL/d log F_j; pass 2 evaluates each
 * block once more, keeps it and back-propagates the adjoint at once (as tb.c does for TB).
 *
 * References (read, not copied): nolerk/gfn-smc-jax algorithms/gfn_subtb/gfn_subtb_rnd.py
 * (loss_fn_joint, loss_fn_subtb: the residuals, the 1/(K - j) scaling, logr_clip);
 * hyeok9855/gfn-smc-torch losses.py (tb_subtb_loss, subtb_chunk_loss, logvar_loss). */
#include <math.h>
#include <string.h>
#include "smc/smc.h"
#include "diffusion/diffusion.h"
#include "envs/env.h"

/* ---- names and parameters -------------------------------------------------------------------- */
static const char *const loss_names[TCHI_SMC_LOSS_TYPE_COUNT] = {"tb_subtb", "subtb", "lv_subtb"};

const char *tchi_smc_loss_type_name(tchi_smc_loss_type t)
{
  return (int)t >= 0 && (int)t < TCHI_SMC_LOSS_TYPE_COUNT ? loss_names[t] : NULL;
}

tch_status tchi_smc_loss_type_from_name(const char *name, tchi_smc_loss_type *out)
{
  if (!name || !out) return tchi_fail(TCH_E_ARG, "smc loss type: NULL argument");
  for (int i = 0; i < TCHI_SMC_LOSS_TYPE_COUNT; i++)
    if (strcmp(name, loss_names[i]) == 0) {
      *out = (tchi_smc_loss_type)i;
      return TCH_OK;
    }
  return tchi_fail(TCH_E_ARG, "smc loss type '%s' is unknown (choices: tb_subtb, subtb, lv_subtb)", name);
}

void tchi_smc_loss_params_default(tchi_smc_loss_params *p, uint32_t n_chunks)
{
  memset(p, 0, sizeof *p);
  p->type = TCHI_SMC_LOSS_TB_SUBTB;   /* gfn_subtb_smc.yaml loss_type */
  p->n_chunks = n_chunks;
  p->subtb_weight = 1.0;              /* subtb_weight */
  p->inv_temp = 1.0;                  /* init_invtemp (annealing off) */
  p->logr_clip = TCHI_SMC_LOGR_CLIP;
  p->block = 0;
}

/* ---- workspace ----------------------------------------------------------------------------------- */
void tchi_smc_loss_ws_init(tchi_smc_loss_ws *w)
{
  memset(w, 0, sizeof *w);
}


/* Every array with its size class; one table drives growth and release. */
enum { CLS_N, CLS_NK, CLS_STAGE, CLS_T, CLS_COUNT };
typedef struct ws_arr { void **p; int cls; size_t elem; } ws_arr;

static size_t ws_table(tchi_smc_loss_ws *w, ws_arr *t)
{
  size_t k = 0, d = sizeof(double);
  t[k++] = (ws_arr){(void **)&w->tb_res, CLS_N, d};
  t[k++] = (ws_arr){(void **)&w->log_p0, CLS_N, d};
  t[k++] = (ws_arr){(void **)&w->log_f, CLS_NK, d};
  t[k++] = (ws_arr){(void **)&w->chunk_delta, CLS_NK, d};
  t[k++] = (ws_arr){(void **)&w->log_r_mid, CLS_NK, d};
  t[k++] = (ws_arr){(void **)&w->coef, CLS_NK, d};
  t[k++] = (ws_arr){(void **)&w->d_f, CLS_NK, d};
  t[k++] = (ws_arr){(void **)&w->r_minus_ref, CLS_NK, d};
  t[k++] = (ws_arr){(void **)&w->stage, CLS_STAGE, d};
  t[k++] = (ws_arr){(void **)&w->beta, CLS_T, d};
  t[k++] = (ws_arr){(void **)&w->d_beta, CLS_T, d};
  t[k++] = (ws_arr){(void **)&w->steps, CLS_T, sizeof(uint32_t)};
  return k;
}
#define WS_MAX_ARRAYS 16

void tchi_smc_loss_ws_destroy(tchi_smc_loss_ws *w)
{
  if (!w) return;
  ws_arr t[WS_MAX_ARRAYS];
  size_t k = ws_table(w, t);
  for (size_t i = 0; i < k; i++) tchi_free(*t[i].p);
  memset(w, 0, sizeof *w);
}

/* Grows each class to its need (never shrinks). A class's capacity is recorded only once
 * all its arrays have grown, so a failure leaves a consistent workspace. */
static tch_status ws_reserve(tchi_smc_loss_ws *w, size_t n, uint32_t K, uint32_t T, size_t stage_rows,
                             uint32_t dim)
{
  int ovf = 0;
  size_t need[CLS_COUNT] = {TCHI_MAX(n, (size_t)1), tchi_mul_size(n, (size_t)K + 1, &ovf),
                            tchi_mul_size(TCHI_MAX(stage_rows, (size_t)1), dim, &ovf), (size_t)T + 1};
  if (ovf) return tchi_fail(TCH_E_ARG, "smc loss: batch of %zu x %u chunks overflows", n, K);
  size_t *cap[CLS_COUNT] = {&w->cap_n, &w->cap_nk, &w->cap_stage, &w->cap_t};
  ws_arr t[WS_MAX_ARRAYS];
  size_t k = ws_table(w, t);
  for (int c = 0; c < CLS_COUNT; c++) {
    if (need[c] <= *cap[c]) continue;
    *cap[c] = 0;
    for (size_t i = 0; i < k; i++) {
      if (t[i].cls != c) continue;
      if (need[c] > SIZE_MAX / t[i].elem) return tchi_fail(TCH_E_NOMEM, "smc loss: workspace size overflows");
      void *q = tchi_realloc(*t[i].p, need[c] * t[i].elem);
      if (!q) return tchi_fail(TCH_E_NOMEM, "out of memory growing the SMC loss workspace (%zu entries)", need[c]);
      *t[i].p = q;
    }
    *cap[c] = need[c];
  }
  return TCH_OK;
}

/* ---- helpers ------------------------------------------------------------------------------------- */
/* The soft floor of §5.4 (see smc.h): identity above c, c - log1p(c - x) below. */
static double floor_log_r(double x, double c)
{
  return x > c ? x : c - log1p(c - x);
}

static tch_status check_args(tchi_dnet *net, tchi_dflow *flow, tch_env *env, const tchi_dtraj *t,
                             const double *log_r, const double *log_r_mid,
                             const tchi_smc_loss_params *p, tchi_smc_loss_ws *ws)
{
  if (!p || !ws) return tchi_fail(TCH_E_ARG, "smc_joint_loss: NULL %s", p ? "workspace" : "parameters");
  tch_status s = tchi_dtraj_check(net, t, "smc_joint_loss");
  if (s != TCH_OK) return s;
  if (t->n && !log_r) return tchi_fail(TCH_E_ARG, "smc_joint_loss: NULL log-rewards");
  uint32_t T = net->spec.T, D = net->spec.dim, K = p->n_chunks;
  if (!tchi_smc_loss_type_name(p->type)) return tchi_fail(TCH_E_ARG, "smc_joint_loss: unknown loss type %d", (int)p->type);
  if (K == 0 || T % K != 0) return tchi_fail(TCH_E_ARG, "smc_joint_loss: n_chunks = %u must divide T = %u", K, T);
  if (!isfinite(p->subtb_weight) || p->subtb_weight < 0)
    return tchi_fail(TCH_E_ARG, "smc_joint_loss: subtb_weight must be finite and >= 0");
  if (!isfinite(p->inv_temp)) return tchi_fail(TCH_E_ARG, "smc_joint_loss: inv_temp must be finite");
  if (isnan(p->logr_clip) || p->logr_clip == INFINITY)
    return tchi_fail(TCH_E_ARG, "smc_joint_loss: logr_clip must be finite or -inf");
  if (flow && (flow->spec.dim != D || flow->spec.T != T))
    return tchi_fail(TCH_E_ARG, "smc_joint_loss: flow dim %u, T %u; net dim %u, T %u", flow->spec.dim,
                     flow->spec.T, D, T);
  if (K > 1 && !log_r_mid) {
    if (!env) return tchi_fail(TCH_E_ARG, "smc_joint_loss: %u chunks need the interior log R or an env", K);
    uint32_t env_dim = 0;
    if ((s = tch_env_energy_dim(env, &env_dim)) != TCH_OK) return s;
    if (env_dim != D) return tchi_fail(TCH_E_ARG, "smc_joint_loss: the env has dimension %u, the net %u", env_dim, D);
  }
  return TCH_OK;
}

/* Stages the states at boundaries j0..j0+nb-1 (of L steps each) of every trajectory,
 * boundary-major, into stage and their step indices into steps. */
static void stage_boundaries(const tchi_dtraj *t, uint32_t L, uint32_t j0, uint32_t nb, double *stage,
                             uint32_t *steps)
{
  size_t n = t->n, D = t->dim;
  for (uint32_t b = 0; b < nb; b++) {
    steps[b] = (j0 + b) * L;
    for (size_t i = 0; i < n; i++)
      memcpy(stage + ((size_t)b * n + i) * D, tchi_dtraj_state(t, i, steps[b]), D * sizeof(double));
  }
}

/* ---- pass 1 ------------------------------------------------------------------------------------ */
/* chunk_delta (n x K) = per-chunk sums of log q - log p_B under the current net; log_p0. */
static void policy_pass1(tchi_dnet *net, const tchi_dtraj *t, uint32_t K, uint32_t k, tchi_smc_loss_ws *w)
{
  size_t n = t->n;
  uint32_t T = net->spec.T, D = net->spec.dim, L = T / K;
  memset(w->chunk_delta, 0, n * K * sizeof(double));
  for (size_t i = 0; i < n; i++) w->log_p0[i] = tchi_dref_log_p0(&net->spec, tchi_dtraj_state(t, i, 0));
  for (uint32_t i0 = 0; i0 < T; i0 += k) {
    uint32_t kk = TCHI_MIN(k, T - i0);
    tchi_dtraj_stage(net, t, i0, kk);
    const double *mean, *logvar;
    tchi_dnet_forward(net, i0, kk, n, 0, &mean, &logvar);
    for (uint32_t j = 0; j < kk; j++) {
      uint32_t step = i0 + j, c = step / L;
      tchi_dstep st;
      tchi_dstep_at(&net->spec, step, &st);
      for (size_t r = 0; r < n; r++) {
        size_t row = (size_t)j * n + r;
        const double *s0 = tchi_dtraj_state(t, r, step), *s1 = tchi_dtraj_state(t, r, step + 1);
        double lq = tchi_dstep_log_pf(&st, D, s0, s1, mean + row * D, logvar + row * D);
        w->chunk_delta[r * K + c] += lq - tchi_dstep_log_pb(&st, D, s0, s1);
      }
    }
  }
}

/* Interior log R into w->log_r_mid: copied and checked, or evaluated through env. */
static tch_status interior_log_r(tch_env *env, const tchi_dtraj *t, uint32_t K, uint32_t L,
                                 const double *log_r_mid, tchi_smc_loss_ws *w)
{
  size_t n = t->n, m = (size_t)(K - 1) * n;
  if (log_r_mid) {
    for (size_t q = 0; q < m; q++)
      if (!isfinite(log_r_mid[q]))
        return tchi_fail(TCH_E_NUMERIC, "smc_joint_loss: log R at boundary %zu of trajectory %zu is %g",
                         q / n + 1, q % n, log_r_mid[q]);
    memcpy(w->log_r_mid, log_r_mid, m * sizeof(double));
    return TCH_OK;
  }
  for (uint32_t j = 1; j < K; j++) {
    stage_boundaries(t, L, j, 1, w->stage, w->steps);
    tch_status s = tchi_env_log_density(env, n, w->stage, w->log_r_mid + (size_t)(j - 1) * n, NULL);
    if (s != TCH_OK) return tchi_fail_prefix(s, "smc_joint_loss: log R at boundary %u: ", j);
  }
  return TCH_OK;
}

/* Interior flows log F_j (j = 1..K-1) into log_f and their beta sensitivities, f_phi
 * evaluated on blocks of nb boundaries (f_phi = 0, linear beta without a flow). */
static tch_status flow_pass1(tchi_dflow *flow, const tchi_dnet_spec *spec, const tchi_dtraj *t,
                             uint32_t K, uint32_t nb, tchi_smc_loss_ws *w)
{
  size_t n = t->n;
  uint32_t T = spec->T, D = spec->dim, L = T / K;
  tch_status s;
  if (flow) {
    if ((s = tchi_dflow_betas(flow, spec, w->beta)) != TCH_OK) return s;
  } else {
    for (uint32_t k = 0; k <= T; k++) w->beta[k] = (double)k / (double)T;
  }
  for (uint32_t j0 = 1; j0 < K; j0 += nb) {
    uint32_t bb = TCHI_MIN(nb, K - j0);
    stage_boundaries(t, L, j0, bb, w->stage, w->steps);
    const double *f = NULL;
    if (flow && (s = tchi_dflow_forward(flow, bb, w->steps, n, w->stage, 0, &f)) != TCH_OK) return s;
    for (uint32_t b = 0; b < bb; b++) {
      uint32_t j = j0 + b, k = j * L;
      double beta = w->beta[k];
      for (size_t i = 0; i < n; i++) {
        size_t q = (size_t)(j - 1) * n + i;
        double lref = tchi_dref_log_marginal(spec, k, w->stage + ((size_t)b * n + i) * D);
        double lr = w->log_r_mid[q], fi = f ? f[(size_t)b * n + i] : 0.0;
        double v = fi + (1.0 - beta) * lref + beta * lr;
        if (!isfinite(v))
          return tchi_fail(TCH_E_NUMERIC, "smc_joint_loss: log-flow at boundary %u of trajectory %zu is %g "
                           "(f %g, log p_ref %g, log R %g)", j, i, v, fi, lref, lr);
        w->log_f[i * (K + 1) + j] = v;
        w->r_minus_ref[q] = lr - lref;
      }
    }
  }
  return TCH_OK;
}

/* ---- the loss ----------------------------------------------------------------------------------- */
tch_status tchi_smc_joint_loss(tchi_dnet *net, tchi_dflow *flow, tch_env *env, const tchi_dtraj *t,
                               const double *log_r, const double *log_r_mid,
                               const tchi_smc_loss_params *p, int grad, tchi_smc_loss_ws *ws,
                               tchi_smc_loss_result *res, double *tb_residual)
{
  if (res) memset(res, 0, sizeof *res);
  tch_status s = check_args(net, flow, env, t, log_r, log_r_mid, p, ws);
  if (s != TCH_OK) return s;
  size_t n = t->n;
  if (n == 0) return TCH_OK;
  uint32_t T = net->spec.T, D = net->spec.dim, K = p->n_chunks, L = T / K;
  uint32_t k = tchi_dchunk(net, n, p->block);            /* time steps per policy block */
  uint32_t nb = K > 1 ? TCHI_MIN(k, K - 1) : 1;          /* boundaries per flow block */
  /* everything that allocates happens here, before any gradient is added: the loss
   * workspace, the net's kept-activation workspace, and (in pass 1, on the same row count
   * as pass 2) the flow's */
  if ((s = ws_reserve(ws, n, K, T, (size_t)nb * n, D)) != TCH_OK) return s;
  if ((s = tchi_dnet_reserve(net, k, n, grad != 0)) != TCH_OK) return s;
  for (size_t i = 0; i < n; i++)
    if (!isfinite(log_r[i]))
      return tchi_fail(TCH_E_NUMERIC, "smc_joint_loss: log R(x_T) of trajectory %zu is %g", i, log_r[i]);

  /* pass 1: chunk sums, interior log R and flows */
  policy_pass1(net, t, K, k, ws);
  if (K > 1) {
    if ((s = interior_log_r(env, t, K, L, log_r_mid, ws)) != TCH_OK) return s;
    if ((s = flow_pass1(flow, &net->spec, t, K, nb, ws)) != TCH_OK) return s;
  }

  /* residuals and adjoints */
  const tchi_smc_loss_type type = p->type;
  const double B = (double)n, wsub = p->subtb_weight, log_z = net->log_z;
  const double sub_scale = wsub / (B * 2.0 * K);   /* d(w SubTB_i / B) / d(δ²) */
  double sum_tb = 0.0, sum_sub = 0.0, g_log_z = 0.0, mean_lv = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double *cd = ws->chunk_delta + i * K;
    double tot = 0.0;
    for (uint32_t j = 0; j < K; j++) tot += cd[j];
    double lr = floor_log_r(log_r[i], p->logr_clip);
    /* TB residual δ_i; for lv_subtb first ℓ_i = δ_i - log Z, centred below */
    double d = log_z + ws->log_p0[i] + tot - p->inv_temp * lr;
    ws->tb_res[i] = type == TCHI_SMC_LOSS_LV_SUBTB ? d - log_z : d;
    mean_lv += ws->tb_res[i];
    double *F = ws->log_f + i * (K + 1);
    F[0] = log_z + ws->log_p0[i];
    F[K] = p->inv_temp * lr;
    if (!isfinite(d) || !isfinite(F[K]))
      return tchi_fail(TCH_E_NUMERIC, "smc_joint_loss: trajectory %zu has a non-finite TB residual "
                       "(log Z %g, log p_0 %g, sum log q/p_B %g, log R %g)", i, log_z, ws->log_p0[i], tot, log_r[i]);
  }
  mean_lv /= B;
  for (size_t i = 0; i < n; i++) {
    if (type == TCHI_SMC_LOSS_LV_SUBTB) ws->tb_res[i] -= mean_lv;
    double d = ws->tb_res[i];
    sum_tb += d * d;
    const double *cd = ws->chunk_delta + i * K, *F = ws->log_f + i * (K + 1);
    double *coef = ws->coef + i * K;
    /* SubTB: δ¹_j, δ²_j and their adjoints. tail = Σ_{c >= j} chunk sums. */
    double tail = 0.0;
    for (uint32_t j = 0; j < K; j++) tail += cd[j];
    double sub = 0.0, prev_d1 = 0.0, acc_d2 = 0.0;
    for (uint32_t j = 0; j < K; j++) {
      double d1 = F[j] + cd[j] - F[j + 1];
      double d2 = (F[j] + tail - F[K]) / (double)(K - j);
      tail -= cd[j];
      sub += d1 * d1 + d2 * d2;
      /* dL/dF_j: δ¹_j has +F_j, δ¹_{j-1} has -F_j, δ²_j has F_j / (K - j) */
      double dF = sub_scale * (2.0 * d1 - (j > 0 ? 2.0 * prev_d1 : 0.0) + 2.0 * d2 / (double)(K - j));
      if (j > 0) ws->d_f[(size_t)(j - 1) * n + i] = dF;
      else if (type != TCHI_SMC_LOSS_TB_SUBTB) g_log_z += dF;   /* log F_0 = log Z + log p_0 */
      /* chunk c's Δ enters δ¹_c and every δ²_j with j <= c */
      acc_d2 += 2.0 * d2 / (double)(K - j);
      coef[j] = type == TCHI_SMC_LOSS_SUBTB ? sub_scale * (2.0 * d1 + acc_d2) : 2.0 * d / B;
      prev_d1 = d1;
    }
    sub /= 2.0 * K;
    if (!isfinite(sub))
      return tchi_fail(TCH_E_NUMERIC, "smc_joint_loss: trajectory %zu has a non-finite SubTB loss", i);
    sum_sub += sub;
    if (type == TCHI_SMC_LOSS_TB_SUBTB) g_log_z += 2.0 * d / B;
  }
  double tb = sum_tb / B, subtb = sum_sub / B;
  double loss = (type == TCHI_SMC_LOSS_SUBTB ? 0.0 : tb) + wsub * subtb;
  if (!isfinite(loss)) return tchi_fail(TCH_E_NUMERIC, "smc_joint_loss: the loss overflows");
  if (res) {
    res->loss = loss;
    res->tb = tb;
    res->subtb = subtb;
  }
  if (tb_residual) memcpy(tb_residual, ws->tb_res, n * sizeof(double));
  if (!grad) return TCH_OK;

  /* pass 2: log Z, then the policy block by block, then the flows boundary block by block */
  if (net->spec.learn_log_z) net->log_z_grad += g_log_z;
  if ((s = tchi_dnet_log_pf_backward(net, t, k, ws->coef, K)) != TCH_OK) return s;
  if (!flow || K == 1) return TCH_OK;
  for (uint32_t j0 = 1; j0 < K; j0 += nb) {
    uint32_t bb = TCHI_MIN(nb, K - j0);
    stage_boundaries(t, L, j0, bb, ws->stage, ws->steps);
    const double *f;
    if ((s = tchi_dflow_forward(flow, bb, ws->steps, n, ws->stage, 1, &f)) != TCH_OK) return s;
    if ((s = tchi_dflow_backward(flow, ws->d_f + (size_t)(j0 - 1) * n)) != TCH_OK) return s;
  }
  /* beta: d log F_j / d beta_{jL} = log R - log p_ref; beta_0 and beta_T are not used */
  memset(ws->d_beta, 0, ((size_t)T + 1) * sizeof(double));
  for (uint32_t j = 1; j < K; j++) {
    double acc = 0.0;
    const double *dF = ws->d_f + (size_t)(j - 1) * n, *rr = ws->r_minus_ref + (size_t)(j - 1) * n;
    for (size_t i = 0; i < n; i++) acc += dF[i] * rr[i];
    ws->d_beta[j * L] = acc;
  }
  tchi_dflow_beta_backward(flow, ws->d_beta);
  return TCH_OK;
}
