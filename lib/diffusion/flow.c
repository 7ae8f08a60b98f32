/* The learnt log-flow twist of Reinforced SMC (spec reinforced-smc.md §3, §8.1): the flow
 * network f_phi(x, t), the annealing schedule beta_k (learnt, linear or cosine) and the
 * partial-energy log F_k(x) = f_phi(x, t_k) + (1 - beta_k) log p_ref,k(x) + beta_k log R(x).
 *
 * f_phi is a separate object from the policy net (JAX PISGRADNet's flow branch has its own
 * time embedding when share_embeddings = False, the reference configuration), built from two
 * tchi_mlp: the time MLP on Fourier features, evaluated once per block of rows at one step,
 * and the body on concat(x, e_t). Every evaluation is one gemm per layer over all rows.
 *
 * References (read, not copied): nolerk/gfn-smc-jax algorithms/common/models/pisgrad_net.py
 * (flow_timestep_phase, flow_time_coder_state, flow_state_time_net),
 * algorithms/gfn_subtb/gfn_subtb_rnd.py (get_beta_fn, get_flow_bias),
 * algorithms/gfn_subtb_smc/gfn_subtb_smc_rnd.py (get_log_f); hyeok9855/gfn-smc-torch
 * models/gfn.py (get_partial_energy, beta_model). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "diffusion/diffusion.h"

#define DFLOW_MAX_WIDTH 65536u
#define DFLOW_LAST_WEIGHT 1e-8f      /* pisgrad_net.py: Dense(1, kernel_init=constant(1e-8)) */
#define DFLOW_BETA_INIT 1.0          /* gfn.py: beta_model = ones(num_steps) */
/* flax's variance_scaling(1, fan_in, truncated_normal): the sd of N(0, 1) truncated to
 * [-2, 2] is 0.8796256610342398, divided out so the weights have variance 1 / fan_in. */
#define DFLOW_TRUNC_SD 0.87962566103423978

struct tchi_dflow_ws {
  size_t cap_rows;
  uint32_t cap_steps;
  float *feat;                  /* cap_steps x 2H Fourier features */
  float *in;                    /* cap_rows x (D + H) body input */
  float *d_in;                  /* cap_rows x (D + H) its gradient */
  float *d_out;                 /* cap_rows */
  float *dtemb;                 /* cap_steps x H */
  float *dfeat;                 /* cap_steps x 2H */
  double *out;                  /* cap_rows */
  double *beta;                 /* T + 1 */
  tchi_mlp_ws tws, bws;
  size_t rows, m;
  uint32_t nsteps;
  int kept;
};

/* ---- names ------------------------------------------------------------------------------------ */
static const char *const beta_names[TCHI_BETA_SCHEDULE_COUNT] = {"learnt", "linear", "cosine"};

const char *tchi_beta_schedule_name(tchi_beta_schedule b)
{
  return (int)b >= 0 && (int)b < TCHI_BETA_SCHEDULE_COUNT ? beta_names[b] : NULL;
}

tch_status tchi_beta_schedule_from_name(const char *name, tchi_beta_schedule *out)
{
  if (!name || !out) return tchi_fail(TCH_E_ARG, "beta schedule: NULL argument");
  for (int i = 0; i < TCHI_BETA_SCHEDULE_COUNT; i++)
    if (strcmp(name, beta_names[i]) == 0) {
      *out = (tchi_beta_schedule)i;
      return TCH_OK;
    }
  return tchi_fail(TCH_E_ARG, "beta schedule '%s' is unknown (choices: learnt, linear, cosine)", name);
}

/* ---- construction ------------------------------------------------------------------------------ */
void tchi_dflow_spec_default(tchi_dflow_spec *s, uint32_t dim, uint32_t T)
{
  memset(s, 0, sizeof *s);
  s->dim = dim;
  s->T = T;
  s->hidden = 64;
  s->layers = 2;
  s->beta = TCHI_BETA_LEARNT;
  s->kernel = "auto";
  s->threads = 1;
}

static tch_status check_spec(const tchi_dflow_spec *s)
{
  if (s->dim < 1 || s->dim > DFLOW_MAX_WIDTH || s->hidden < 1 || s->hidden > DFLOW_MAX_WIDTH)
    return tchi_fail(TCH_E_ARG, "flow net: dim and hidden must be in [1, %u]", DFLOW_MAX_WIDTH);
  if (s->T < 1 || s->T > (1u << 20)) return tchi_fail(TCH_E_ARG, "flow net: T must be in [1, 2^20]");
  if (s->layers < 1 || s->layers > TCHI_MLP_MAX_LAYERS - 1)
    return tchi_fail(TCH_E_ARG, "flow net: layers must be in [1, %d]", TCHI_MLP_MAX_LAYERS - 1);
  if ((int)s->beta < 0 || (int)s->beta >= TCHI_BETA_SCHEDULE_COUNT)
    return tchi_fail(TCH_E_ARG, "flow net: unknown beta schedule %d", (int)s->beta);
  if (s->threads < 0) return tchi_fail(TCH_E_ARG, "flow net: threads must be >= 0");
  if (s->kernel && strlen(s->kernel) >= 32) return tchi_fail(TCH_E_ARG, "flow net: kernel name too long");
  return TCH_OK;
}

static double truncated_normal(tchi_rng *rng)
{
  for (;;) {
    double z = tchi_rng_normal(rng);
    if (fabs(z) <= 2.0) return z;
  }
}

static void init_lecun(tchi_mlp *m, tchi_rng *rng)
{
  for (size_t l = 0; l < m->n_layers; l++) {
    double sd = sqrt(1.0 / (double)m->dims[l]) / DFLOW_TRUNC_SD;
    float *w = m->params + m->w_off[l];
    for (size_t i = 0; i < m->dims[l] * m->dims[l + 1]; i++) w[i] = (float)(sd * truncated_normal(rng));
    memset(m->params + m->b_off[l], 0, m->dims[l + 1] * sizeof(float));
  }
}

/* linspace(0.1, 100, h) in float, as jnp.linspace (start + i step). */
static void fill_coeff(float *c, uint32_t h)
{
  if (h == 1) {
    c[0] = 0.1f;
    return;
  }
  for (uint32_t i = 0; i < h; i++) c[i] = (float)(0.1 + (100.0 - 0.1) * (double)i / (double)(h - 1));
}

tch_status tchi_dflow_create(const tchi_dflow_spec *spec, tchi_rng *rng, tchi_dflow **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "dflow_create: NULL output");
  *out = NULL;
  if (!spec || !rng) return tchi_fail(TCH_E_ARG, "dflow_create: NULL %s", spec ? "rng" : "spec");
  tch_status s = check_spec(spec);
  if (s != TCH_OK) return s;
  tchi_dflow *f = tchi_calloc(1, sizeof *f);
  if (!f) return tchi_fail(TCH_E_NOMEM, "out of memory creating a flow net");
  f->spec = *spec;
  if (!f->spec.threads) f->spec.threads = 1;
  snprintf(f->kernel, sizeof f->kernel, "%s", spec->kernel ? spec->kernel : "auto");
  f->spec.kernel = f->kernel;
  size_t H = spec->hidden, D = spec->dim;
  size_t tdims[3] = {2 * H, H, H};
  size_t bdims[TCHI_MLP_MAX_LAYERS + 1];
  bdims[0] = D + H;
  for (uint32_t l = 1; l <= spec->layers; l++) bdims[l] = H;
  bdims[spec->layers + 1] = 1;
  if ((s = tchi_gemm_init(&f->gemm, f->kernel, f->spec.threads)) != TCH_OK ||
      (s = tchi_alloc_array(&f->ws, 1, sizeof *f->ws, 1, "flow workspace")) != TCH_OK ||
      (s = tchi_mlp_init(&f->time, 2, tdims, TCHI_ACT_GELU)) != TCH_OK ||
      (s = tchi_mlp_init(&f->body, spec->layers + 1, bdims, TCHI_ACT_GELU)) != TCH_OK ||
      (s = tchi_alloc_array(&f->coeff, H, sizeof(float), 0, "flow frequencies")) != TCH_OK ||
      (s = tchi_alloc_array(&f->phase, H + TCHI_GEMM_PAD, sizeof(float), 1, "flow phase")) != TCH_OK ||
      (s = tchi_alloc_array(&f->phase_grad, H + TCHI_GEMM_PAD, sizeof(float), 1, "flow phase")) != TCH_OK ||
      (s = tchi_alloc_array(&f->beta_logit, spec->T, sizeof(double), 0, "beta schedule")) != TCH_OK ||
      (s = tchi_alloc_array(&f->beta_grad, spec->T, sizeof(double), 1, "beta schedule")) != TCH_OK ||
      (s = tchi_alloc_array(&f->ws->beta, (size_t)spec->T + 1, sizeof(double), 0, "beta schedule")) != TCH_OK) {
    tchi_dflow_free(f);
    return s;
  }
  fill_coeff(f->coeff, spec->hidden);
  for (uint32_t j = 0; j < spec->T; j++) f->beta_logit[j] = DFLOW_BETA_INIT;
  /* parameter order: time MLP, body (the phase starts at 0, drawing nothing) */
  init_lecun(&f->time, rng);
  init_lecun(&f->body, rng);
  size_t last = f->body.n_layers - 1;
  float *w = f->body.params + f->body.w_off[last];
  for (size_t i = 0; i < f->body.dims[last]; i++) w[i] = DFLOW_LAST_WEIGHT;
  *out = f;
  return TCH_OK;
}

static void ws_free(struct tchi_dflow_ws *w)
{
  tchi_free(w->feat);
  tchi_free(w->in);
  tchi_free(w->d_in);
  tchi_free(w->d_out);
  tchi_free(w->dtemb);
  tchi_free(w->dfeat);
  tchi_free(w->out);
  w->feat = w->in = w->d_in = w->d_out = w->dtemb = w->dfeat = NULL;
  w->out = NULL;
  w->cap_rows = 0;
  w->cap_steps = 0;
}

void tchi_dflow_free(tchi_dflow *f)
{
  if (!f) return;
  if (f->ws) {
    ws_free(f->ws);
    tchi_free(f->ws->beta);
    tchi_mlp_ws_destroy(&f->ws->tws);
    tchi_mlp_ws_destroy(&f->ws->bws);
    tchi_free(f->ws);
  }
  tchi_mlp_destroy(&f->time);
  tchi_mlp_destroy(&f->body);
  tchi_free(f->coeff);
  tchi_free(f->phase);
  tchi_free(f->phase_grad);
  tchi_free(f->beta_logit);
  tchi_free(f->beta_grad);
  tchi_free(f);
}

void tchi_dflow_zero_grad(tchi_dflow *f)
{
  if (!f) return;
  tchi_mlp_zero_grad(&f->time);
  tchi_mlp_zero_grad(&f->body);
  memset(f->phase_grad, 0, f->spec.hidden * sizeof(float));
  memset(f->beta_grad, 0, f->spec.T * sizeof(double));
}

size_t tchi_dflow_param_groups(tchi_dflow *f, double lr_flow, double lr_beta,
                               double weight_decay, tchi_param_group *out)
{
  size_t k = 0;
  out[k++] = (tchi_param_group){.p = f->time.params, .g = f->time.grads, .n = f->time.n_params,
                                .lr = lr_flow, .weight_decay = weight_decay};
  out[k++] = (tchi_param_group){.p = f->phase, .g = f->phase_grad, .n = f->spec.hidden,
                                .lr = lr_flow, .weight_decay = weight_decay};
  out[k++] = (tchi_param_group){.p = f->body.params, .g = f->body.grads, .n = f->body.n_params,
                                .lr = lr_flow, .weight_decay = weight_decay};
  if (f->spec.beta == TCHI_BETA_LEARNT)
    out[k++] = (tchi_param_group){.pd = f->beta_logit, .gd = f->beta_grad, .n = f->spec.T,
                                  .lr = lr_beta, .weight_decay = weight_decay};
  return k;
}

/* ---- the beta schedule ----------------------------------------------------------------------- */
static double softplus(double b) { return b > 0 ? b + log1p(exp(-b)) : log1p(exp(b)); }
static double sigmoid(double b) { return b >= 0 ? 1.0 / (1.0 + exp(-b)) : exp(b) / (1.0 + exp(b)); }

tch_status tchi_dflow_betas(const tchi_dflow *f, const tchi_dnet_spec *ref, double *beta)
{
  if (!f || !ref || !beta) return tchi_fail(TCH_E_ARG, "dflow_betas: NULL argument");
  uint32_t T = f->spec.T;
  if (ref->T != T) return tchi_fail(TCH_E_ARG, "dflow_betas: flow T = %u, policy T = %u", T, ref->T);
  switch (f->spec.beta) {
  case TCHI_BETA_LEARNT: {
    double acc = 0.0;
    beta[0] = 0.0;
    for (uint32_t j = 0; j < T; j++) {
      acc += softplus(f->beta_logit[j]);
      beta[j + 1] = acc;
    }
    for (uint32_t k = 1; k <= T; k++) beta[k] /= acc;   /* beta_T = acc / acc = 1 exactly */
    return TCH_OK;
  }
  case TCHI_BETA_LINEAR:
    for (uint32_t k = 0; k <= T; k++) beta[k] = (double)k / (double)T;
    return TCH_OK;
  case TCHI_BETA_COSINE: {
    if (ref->reference != TCHI_DREF_OU_DDS)
      return tchi_fail(TCH_E_ARG, "dflow_betas: the cosine schedule needs the OU-DDS reference");
    double prod = 1.0;
    for (uint32_t k = T + 1; k-- > 0;) {   /* prod_{j=k}^{T} (1 - a_j), a clipped as the kernels */
      double a = tchi_ou_dds_step(T, ref->noise_scale, k);
      prod *= 1.0 - (a < 0.0 ? 0.0 : a > 1.0 ? 1.0 : a);
      beta[k] = prod;
    }
    return TCH_OK;
  }
  }
  return tchi_fail(TCH_E_ARG, "dflow_betas: unknown schedule");
}

/* beta_k = C_k / S with C_k = sum_{i<k} sp_i, S = C_T: d beta_k / d b_j = sigma(b_j)
 * ([j < k] / S - C_k / S^2). */
void tchi_dflow_beta_backward(tchi_dflow *f, const double *d_beta)
{
  if (!f || !d_beta || f->spec.beta != TCHI_BETA_LEARNT) return;
  uint32_t T = f->spec.T;
  double S = 0.0;
  for (uint32_t j = 0; j < T; j++) S += softplus(f->beta_logit[j]);
  double weighted = 0.0, c = 0.0;   /* sum_k d_beta_k C_k */
  for (uint32_t k = 0; k <= T; k++) {
    weighted += d_beta[k] * c;
    if (k < T) c += softplus(f->beta_logit[k]);
  }
  double tail = 0.0;   /* sum_{k > j} d_beta_k */
  for (uint32_t j = T; j-- > 0;) {
    tail += d_beta[j + 1];
    f->beta_grad[j] += sigmoid(f->beta_logit[j]) * (tail / S - weighted / (S * S));
  }
}

/* ---- the network ------------------------------------------------------------------------------ */
static tch_status grow_f(float **p, size_t n)
{
  tchi_free(*p);
  *p = NULL;
  return tchi_alloc_array(p, n + TCHI_GEMM_PAD, sizeof(float), 0, "flow workspace");
}

static tch_status ws_reserve(tchi_dflow *f, uint32_t nsteps, size_t rows)
{
  struct tchi_dflow_ws *w = f->ws;
  size_t H = f->spec.hidden, in = f->spec.dim + H;
  tch_status s = TCH_OK;
  if (nsteps > w->cap_steps) {
    uint32_t cap = TCHI_MAX(nsteps, w->cap_steps + w->cap_steps / 2);
    w->cap_steps = 0;
    if ((s = grow_f(&w->feat, (size_t)cap * 2 * H)) != TCH_OK ||
        (s = grow_f(&w->dfeat, (size_t)cap * 2 * H)) != TCH_OK ||
        (s = grow_f(&w->dtemb, (size_t)cap * H)) != TCH_OK)
      return s;
    w->cap_steps = cap;
  }
  if (rows > w->cap_rows) {
    size_t cap = TCHI_MAX(rows, w->cap_rows + w->cap_rows / 2);
    int ovf = 0;
    size_t cnt = tchi_mul_size(cap, in, &ovf);
    if (ovf || cnt > SIZE_MAX / sizeof(double) - TCHI_GEMM_PAD)
      return tchi_fail(TCH_E_NOMEM, "flow workspace size overflows (%zu rows)", rows);
    w->cap_rows = 0;
    tchi_free(w->out);
    w->out = NULL;
    if ((s = grow_f(&w->in, cnt)) != TCH_OK || (s = grow_f(&w->d_in, cnt)) != TCH_OK ||
        (s = grow_f(&w->d_out, cap)) != TCH_OK ||
        (s = tchi_alloc_array(&w->out, cap, sizeof(double), 0, "flow workspace")) != TCH_OK)
      return s;
    w->cap_rows = cap;
  }
  return TCH_OK;
}

tch_status tchi_dflow_forward(tchi_dflow *f, uint32_t nsteps, const uint32_t *steps, size_t m,
                              const double *x, int keep, const double **out)
{
  if (!f || !out) return tchi_fail(TCH_E_ARG, "dflow_forward: NULL %s", f ? "output" : "flow");
  *out = NULL;
  struct tchi_dflow_ws *w = f->ws;
  w->kept = 0;
  int ovf = 0;
  size_t rows = tchi_mul_size(nsteps, m, &ovf);
  if (ovf || nsteps == 0 || m == 0) return tchi_fail(TCH_E_ARG, "dflow_forward: bad block of %u x %zu rows", nsteps, m);
  if (!steps || !x) return tchi_fail(TCH_E_ARG, "dflow_forward: NULL %s", steps ? "states" : "steps");
  uint32_t T = f->spec.T, H = f->spec.hidden, D = f->spec.dim;
  for (uint32_t j = 0; j < nsteps; j++)
    if (steps[j] > T) return tchi_fail(TCH_E_ARG, "dflow_forward: step %u > T = %u", steps[j], T);
  tch_status s = ws_reserve(f, nsteps, rows);
  if (s != TCH_OK) return s;
  /* time embedding once per block: features in float, t = k / T */
  for (uint32_t j = 0; j < nsteps; j++) {
    float t = (float)((double)steps[j] / (double)T), *fj = w->feat + (size_t)j * 2 * H;
    for (uint32_t i = 0; i < H; i++) {
      float a = f->coeff[i] * t + f->phase[i];
      fj[i] = sinf(a);
      fj[H + i] = cosf(a);
    }
  }
  const float *temb, *o;
  if ((s = tchi_mlp_forward(&f->time, &f->gemm, &w->tws, nsteps, w->feat, &temb)) != TCH_OK) return s;
  size_t in = (size_t)D + H;
  for (size_t r = 0; r < rows; r++) {
    float *row = w->in + r * in;
    const double *xr = x + r * D;
    for (uint32_t d = 0; d < D; d++) row[d] = (float)xr[d];
    memcpy(row + D, temb + (r / m) * H, H * sizeof(float));
  }
  if ((s = tchi_mlp_forward(&f->body, &f->gemm, &w->bws, rows, w->in, &o)) != TCH_OK) return s;
  for (size_t r = 0; r < rows; r++) w->out[r] = o[r];
  w->rows = rows;
  w->m = m;
  w->nsteps = nsteps;
  w->kept = keep != 0;
  *out = w->out;
  return TCH_OK;
}

tch_status tchi_dflow_backward(tchi_dflow *f, const double *d_out)
{
  if (!f || !d_out) return tchi_fail(TCH_E_ARG, "dflow_backward: NULL %s", f ? "gradient" : "flow");
  struct tchi_dflow_ws *w = f->ws;
  if (!w->kept) return tchi_fail(TCH_E_STATE, "flow net: backward without a kept forward");
  size_t rows = w->rows, m = w->m, H = f->spec.hidden, D = f->spec.dim, in = D + H;
  uint32_t k = w->nsteps;
  for (size_t r = 0; r < rows; r++) w->d_out[r] = (float)d_out[r];
  tch_status s = tchi_mlp_backward(&f->body, &f->gemm, &w->bws, w->d_out, w->d_in);
  if (s != TCH_OK) return s;
  /* e_t is shared by the m rows of a block: its gradient is their sum */
  for (uint32_t j = 0; j < k; j++) {
    float *dt = w->dtemb + (size_t)j * H;
    for (size_t i = 0; i < H; i++) {
      double acc = 0.0;
      for (size_t r = (size_t)j * m; r < (size_t)(j + 1) * m; r++) acc += w->d_in[r * in + D + i];
      dt[i] = (float)acc;
    }
  }
  if ((s = tchi_mlp_backward(&f->time, &f->gemm, &w->tws, w->dtemb, w->dfeat)) != TCH_OK) return s;
  /* features [sin a, cos a] with a = c t + phase: d/dphase = df_sin cos a - df_cos sin a */
  for (size_t i = 0; i < H; i++) {
    double acc = 0.0;
    for (uint32_t j = 0; j < k; j++) {
      const float *fj = w->feat + (size_t)j * 2 * H, *dj = w->dfeat + (size_t)j * 2 * H;
      acc += (double)dj[i] * fj[H + i] - (double)dj[H + i] * fj[i];
    }
    f->phase_grad[i] = (float)(f->phase_grad[i] + acc);
  }
  w->kept = 0;
  return TCH_OK;
}

/* ---- the twist --------------------------------------------------------------------------------- */
tch_status tchi_dflow_log_f(tchi_dflow *f, const tchi_dnet_spec *ref, uint32_t k, size_t n,
                            const double *x, const double *log_r, double *out)
{
  if (!ref || (n && (!x || !out))) return tchi_fail(TCH_E_ARG, "dflow_log_f: NULL argument");
  uint32_t T = ref->T, D = ref->dim;
  if (k > T) return tchi_fail(TCH_E_ARG, "dflow_log_f: step %u > T = %u", k, T);
  if (f && (f->spec.dim != D || f->spec.T != T))
    return tchi_fail(TCH_E_ARG, "dflow_log_f: flow dim %u, T %u; policy dim %u, T %u", f->spec.dim,
                     f->spec.T, D, T);
  if (n == 0) return TCH_OK;
  if (k > 0 && !log_r) return tchi_fail(TCH_E_ARG, "dflow_log_f: NULL log-rewards");
  if (k == 0) {
    for (size_t i = 0; i < n; i++) out[i] = tchi_dref_log_p0(ref, x + i * D);
  } else if (k == T) {
    memcpy(out, log_r, n * sizeof *out);
  } else {
    double beta = (double)k / (double)T;
    const double *fphi = NULL;
    tch_status s;
    if (f) {
      if ((s = tchi_dflow_betas(f, ref, f->ws->beta)) != TCH_OK) return s;
      beta = f->ws->beta[k];
      if ((s = tchi_dflow_forward(f, 1, &k, n, x, 0, &fphi)) != TCH_OK) return s;
    }
    for (size_t i = 0; i < n; i++) {
      double lref = tchi_dref_log_marginal(ref, k, x + i * D);
      out[i] = (fphi ? fphi[i] : 0.0) + (1.0 - beta) * lref + beta * log_r[i];
    }
  }
  for (size_t i = 0; i < n; i++)
    if (!isfinite(out[i]))
      return tchi_fail(TCH_E_NUMERIC, "log-flow at step %u is %g for row %zu", k, out[i], i);
  return TCH_OK;
}

/* ---- input gradients (SMC rejuvenation, spec §4.3) ------------------------------------------- */
/* The body's backward without its parameter gradients: dy W_l^T through the kept activations,
 * layer by layer, into the workspace's d_in; the x columns of it are the answer (the time
 * embedding is shared per step and not differentiated). */
tch_status tchi_dflow_input_grad(tchi_dflow *f, const double *d_out, double *d_x)
{
  if (!f || !d_x) return tchi_fail(TCH_E_ARG, "dflow_input_grad: NULL %s", f ? "output" : "flow");
  struct tchi_dflow_ws *w = f->ws;
  if (!w->kept) return tchi_fail(TCH_E_STATE, "flow net: input gradient without a kept forward");
  const tchi_mlp *m = &f->body;
  tchi_mlp_ws *bw = &w->bws;
  const size_t rows = w->rows, D = f->spec.dim, in = D + f->spec.hidden;
  for (size_t r = 0; r < rows; r++) w->d_out[r] = d_out ? (float)d_out[r] : 1.0f;
  const float *dy = w->d_out;
  int nb = 0;
  for (size_t l = m->n_layers; l-- > 0;) {
    const size_t din = m->dims[l], dout = m->dims[l + 1];
    float *buf = l > 0 ? bw->dbuf[nb] : w->d_in;
    nb ^= 1;
    tchi_sgemm(&f->gemm, 0, 1, rows, din, dout, 1.0f, dy, dout, m->params + m->w_off[l], dout,
               0.0f, buf, din);
    if (l > 0) tchi_act_backward(m->act, rows * din, bw->pre[l - 1], bw->post[l - 1], buf, buf);
    dy = buf;
  }
  for (size_t r = 0; r < rows; r++)
    for (size_t d = 0; d < D; d++) d_x[r * D + d] = w->d_in[r * in + d];
  return TCH_OK;
}

/* Variance of the Gaussian behind the twist's reference term at step k in the SMC
 * conventions (k = 0: p_0; 0 < k < T: tchi_dref_log_marginal), or 0 where that term is a
 * constant (Brownian p_0 = delta_0 and its k = 0 marginal). */
static double ref_var(const tchi_dnet_spec *ref, uint32_t k)
{
  if (ref->reference == TCHI_DREF_OU_DDS) return ref->init_std * ref->init_std;
  return k == 0 ? 0.0 : ref->t_scale * ((double)k / (double)ref->T);
}

tch_status tchi_dflow_log_f_grad(tchi_dflow *f, const tchi_dnet_spec *ref, uint32_t k, size_t n,
                                 const double *x, const double *log_r, const double *grad_log_r,
                                 double *out, double *grad)
{
  if (!ref || (n && (!x || !grad))) return tchi_fail(TCH_E_ARG, "dflow_log_f_grad: NULL argument");
  const uint32_t T = ref->T, D = ref->dim;
  if (k > T) return tchi_fail(TCH_E_ARG, "dflow_log_f_grad: step %u > T = %u", k, T);
  if (f && (f->spec.dim != D || f->spec.T != T))
    return tchi_fail(TCH_E_ARG, "dflow_log_f_grad: flow dim %u, T %u; policy dim %u, T %u",
                     f->spec.dim, f->spec.T, D, T);
  if (n == 0) return TCH_OK;
  if (k > 0 && (!log_r || !grad_log_r))
    return tchi_fail(TCH_E_ARG, "dflow_log_f_grad: NULL log-rewards or their gradient");
  const size_t nd = n * D;
  const double var = ref_var(ref, k);
  if (k == T) {
    if (out) memcpy(out, log_r, n * sizeof *out);
    memcpy(grad, grad_log_r, nd * sizeof *grad);
  } else if (k == 0) {
    for (size_t i = 0; i < n; i++) {
      if (out) out[i] = tchi_dref_log_p0(ref, x + i * D);
      for (uint32_t d = 0; d < D; d++) grad[i * D + d] = var > 0.0 ? -x[i * D + d] / var : 0.0;
    }
  } else {
    /* the same expression as tchi_dflow_log_f, and its gradient:
     * grad f_phi + (1 - beta) grad log p_ref,k + beta grad log R */
    double beta = (double)k / (double)T;
    const double *fphi = NULL;
    tch_status s;
    if (f) {
      if ((s = tchi_dflow_betas(f, ref, f->ws->beta)) != TCH_OK) return s;
      beta = f->ws->beta[k];
      if ((s = tchi_dflow_forward(f, 1, &k, n, x, 1, &fphi)) != TCH_OK ||
          (s = tchi_dflow_input_grad(f, NULL, grad)) != TCH_OK)
        return s;
      f->ws->kept = 0;   /* nothing here is for the parameter backward */
    } else {
      memset(grad, 0, nd * sizeof *grad);
    }
    for (size_t i = 0; i < n; i++) {
      const double *xi = x + i * D;
      if (out) {
        double lref = tchi_dref_log_marginal(ref, k, xi);
        out[i] = (fphi ? fphi[i] : 0.0) + (1.0 - beta) * lref + beta * log_r[i];
      }
      for (uint32_t d = 0; d < D; d++)
        grad[i * D + d] += (1.0 - beta) * (-xi[d] / var) + beta * grad_log_r[i * D + d];
    }
  }
  if (out)
    for (size_t i = 0; i < n; i++)
      if (!isfinite(out[i]))
        return tchi_fail(TCH_E_NUMERIC, "log-flow at step %u is %g for row %zu", k, out[i], i);
  return TCH_OK;
}
