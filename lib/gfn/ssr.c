/* The SSR ("state-state-reward") policy of the reference's discovery tasks: an encoder of
 * states and a scorer of (state, child) embedding pairs, softmax over the valid children
 * (see gfn.h for the architecture and the parameter layout).
 *
 * One forward over n states: one masks call, one step call for every (state, non-EXIT valid
 * action) pair, one encode call and one encoder pass over the n + children rows, then per
 * scorer layer one gemm over all pairs. The backward reverses it with analytic gradients.
 * Workspaces grow to the largest batch seen and are reused: no allocation once warm. */
#include <math.h>
#include <string.h>
#include "gfn.h"

static const float empty_out[1];

/* A tchi_mlp describing a 2-layer MLP whose parameters live at params/grads (not owned). The
 * offsets follow tchi_mlp_init's layout so tchi_mlp_forward/backward work on the view. */
static void mlp_view(tchi_mlp *v, size_t d0, size_t d1, size_t d2, float *params, float *grads)
{
  memset(v, 0, sizeof *v);
  v->n_layers = 2;
  v->dims[0] = d0;
  v->dims[1] = d1;
  v->dims[2] = d2;
  v->w_off[0] = 0;
  v->b_off[0] = d0 * d1;
  v->w_off[1] = d0 * d1 + d1;
  v->b_off[1] = v->w_off[1] + d1 * d2;
  v->n_params = v->b_off[1] + d2;
  v->act = TCHI_ACT_LEAKY_RELU;
  v->params = params;
  v->grads = grads;
}

tch_status tchi_ssr_create(tch_policy *p, const tchi_policy_spec *spec)
{
  const size_t in = spec->in_dim, h = spec->ssr_hidden, e = spec->ssr_embed;
  const double clip = spec->ssr_logit_clip == 0.0 ? TCHI_SSR_LOGIT_CLIP : spec->ssr_logit_clip;
  if (spec->learn_pb)
    return tchi_fail(TCH_E_ARG, "the SSR policy has no learned P_B (the reference's is uniform)");
  if (in < 1 || h < 1 || h > 65536 || e < 1 || e > 65536)
    return tchi_fail(TCH_E_ARG, "SSR widths must be >= 1 and <= 65536 (input %zu, hidden %zu, "
                     "embed %zu)", in, h, e);
  if (!(clip > 0.0) || !isfinite(clip))
    return tchi_fail(TCH_E_ARG, "SSR logit clip must be positive and finite, got %g", clip);
  int ovf = 0;
  size_t n_enc = tchi_mul_size(in + e + 1, h, &ovf) + e;   /* in h + h + h e + e */
  size_t n_sc = tchi_mul_size(2 * e + 2, h, &ovf) + 1;             /* 2e h + h + h + 1 */
  if (ovf || n_enc > SIZE_MAX / 2 - n_sc - TCHI_GEMM_PAD)
    return tchi_fail(TCH_E_ARG, "SSR parameter count overflows");
  tchi_ssr *s = tchi_calloc(1, sizeof *s);
  if (!s) return tchi_fail(TCH_E_NOMEM, "out of memory allocating an SSR policy");
  memset(&p->mlp, 0, sizeof p->mlp);
  p->mlp.n_params = n_enc + n_sc;
  p->mlp.act = TCHI_ACT_LEAKY_RELU;
  tch_status st = tchi_alloc_array(&p->mlp.params, p->mlp.n_params + TCHI_GEMM_PAD, sizeof(float),
                                   1, "SSR parameters");
  if (st == TCH_OK)
    st = tchi_alloc_array(&p->mlp.grads, p->mlp.n_params + TCHI_GEMM_PAD, sizeof(float), 1,
                          "SSR gradients");
  if (st != TCH_OK) {
    tchi_mlp_destroy(&p->mlp);
    tchi_free(s);
    return st;
  }
  s->hidden = h;
  s->embed = e;
  s->logit_clip = clip;
  mlp_view(&s->enc, in, h, e, p->mlp.params, p->mlp.grads);
  mlp_view(&s->sc, 2 * e, h, 1, p->mlp.params + n_enc, p->mlp.grads + n_enc);
  tchi_mlp_ws_init(&s->enc_ws);
  p->ssr = s;
  return TCH_OK;
}

void tchi_ssr_destroy(tch_policy *p)
{
  tchi_ssr *s = p->ssr;
  if (!s) return;
  tchi_mlp_ws_destroy(&s->enc_ws);
  tchi_free(s->fwd);
  tchi_free(s->pair_row); tchi_free(s->pair_act); tchi_free(s->pair_enc);
  tchi_free(s->enc_states); tchi_free(s->parents); tchi_free(s->acts);
  tchi_free(s->feat); tchi_free(s->idx);
  tchi_free(s->a); tchi_free(s->b); tchi_free(s->hid);
  tchi_free(s->raw); tchi_free(s->dscore); tchi_free(s->demb);
  tchi_free(s->out); tchi_free(s->lse);
  tchi_free(s);
  p->ssr = NULL;
}

void tchi_ssr_init_uniform(tch_policy *p, tchi_rng *rng)
{
  tchi_mlp_init_uniform(&p->ssr->enc, rng);
  tchi_mlp_init_uniform(&p->ssr->sc, rng);
}

/* ---- workspaces ---------------------------------------------------------------------------
 * Buffers of one group share a row capacity; a group grows all-or-nothing (new buffers
 * first, old ones freed only once all succeeded), so a failed allocation leaves the
 * workspace as it was. Contents are not kept. */
typedef struct ws_buf {
  void **ptr;
  size_t per_row;          /* elements per row */
  size_t elem;             /* bytes per element */
} ws_buf;

#define WS_MAX_BUFS 10

static tch_status grow_group(const ws_buf *bufs, size_t k, size_t *cap, size_t need)
{
  if (need <= *cap) return TCH_OK;
  size_t rows = TCHI_MAX(need, *cap + *cap / 2);
  void *fresh[WS_MAX_BUFS] = {0};
  for (size_t i = 0; i < k; i++) {
    int ovf = 0;
    size_t count = tchi_mul_size(rows, bufs[i].per_row, &ovf);
    if (ovf || count > SIZE_MAX - TCHI_GEMM_PAD) {
      for (size_t j = 0; j < i; j++) tchi_free(fresh[j]);
      return tchi_fail(TCH_E_NOMEM, "SSR workspace size overflows (%zu rows)", rows);
    }
    /* TCHI_GEMM_PAD slack after every buffer: some of them are handed to BLIS. */
    tch_status s = tchi_alloc_array(&fresh[i], count + TCHI_GEMM_PAD, bufs[i].elem, 0,
                                    "SSR workspace");
    if (s) {
      for (size_t j = 0; j < i; j++) tchi_free(fresh[j]);
      return s;
    }
  }
  for (size_t i = 0; i < k; i++) {
    tchi_free(*bufs[i].ptr);
    *bufs[i].ptr = fresh[i];
  }
  *cap = rows;
  return TCH_OK;
}

static tch_status reserve(tch_policy *p, size_t n, size_t m, size_t ne)
{
  tchi_ssr *s = p->ssr;
  const size_t sd = p->state_dim, h = s->hidden, e = s->embed;
  const ws_buf rows[] = {
    {(void **)&s->fwd, p->n_actions, 1}, {(void **)&s->a, h, sizeof(float)},
    {(void **)&s->out, p->out_dim, sizeof(float)}, {(void **)&s->lse, 1, sizeof(double)},
  };
  const ws_buf pairs[] = {
    {(void **)&s->pair_row, 1, sizeof(int32_t)}, {(void **)&s->pair_act, 1, sizeof(int32_t)},
    {(void **)&s->pair_enc, 1, sizeof(int32_t)}, {(void **)&s->raw, 1, sizeof(float)},
    {(void **)&s->dscore, 1, sizeof(float)},
  };
  /* hid holds m x h activations in the forward and (n + children) x h gradients in the
   * backward; b holds (n + children) x h products, then m x h gradients (m <= n + children). */
  ws_buf enc[WS_MAX_BUFS] = {
    {(void **)&s->enc_states, sd, sizeof(int32_t)}, {(void **)&s->parents, sd, sizeof(int32_t)},
    {(void **)&s->acts, 1, sizeof(int32_t)}, {(void **)&s->b, h, sizeof(float)},
    {(void **)&s->hid, h, sizeof(float)}, {(void **)&s->demb, e, sizeof(float)},
  };
  size_t n_enc = 6;
  if (p->onehot) enc[n_enc++] = (ws_buf){(void **)&s->idx, sd, sizeof(int32_t)};
  else enc[n_enc++] = (ws_buf){(void **)&s->feat, p->in_dim, sizeof(float)};
  tch_status st;
  if ((st = grow_group(rows, sizeof rows / sizeof rows[0], &s->cap_rows, n)) ||
      (st = grow_group(pairs, sizeof pairs / sizeof pairs[0], &s->cap_pairs, m)) ||
      (st = grow_group(enc, n_enc, &s->cap_enc, ne)))
    return st;
  return TCH_OK;
}

/* db[j] += sum over rows of dy[r][j], accumulated in double. */
static void add_col_sums(float *db, const float *dy, size_t rows, size_t n)
{
  enum { BLK = 64 };
  double acc[BLK];
  for (size_t j0 = 0; j0 < n; j0 += BLK) {
    size_t nb = TCHI_MIN((size_t)BLK, n - j0);
    for (size_t j = 0; j < nb; j++) acc[j] = 0.0;
    for (size_t r = 0; r < rows; r++)
      for (size_t j = 0; j < nb; j++) acc[j] += dy[r * n + j0 + j];
    for (size_t j = 0; j < nb; j++) db[j0 + j] = (float)(db[j0 + j] + acc[j]);
  }
}

/* torch.clip(x, -c, c) then torch.nan_to_num(neginf=-c): NaN becomes 0. */
static float clip_score(float x, double c)
{
  if (x != x) return 0.0f;
  if (x < -c) return (float)-c;
  if (x > c) return (float)c;
  return x;
}

/* ---- forward ------------------------------------------------------------------------------- */
tch_status tchi_ssr_forward(tch_policy *p, tch_env *env, size_t n, const int32_t *states,
                            const float **out)
{
  tchi_ssr *s = p->ssr;
  s->have_forward = 0;
  *out = empty_out;
  if (n == 0) {
    s->rows = s->pairs = s->children = 0;
    s->have_forward = 1;
    return TCH_OK;
  }
  const size_t na = p->n_actions, sd = p->state_dim, h = s->hidden, e = s->embed;
  const size_t od = p->out_dim, exit_a = na - 1;
  tch_status st = reserve(p, n, 0, 0);
  if (st) return st;
  if ((st = tchi_env_masks(env, n, states, s->fwd, NULL))) return st;
  size_t m = 0, mc = 0;
  for (size_t r = 0; r < n; r++)
    for (size_t a = 0; a < na; a++)
      if (s->fwd[r * na + a]) {
        m++;
        mc += a != exit_a;
      }
  const size_t ne = n + mc;
  if (m > INT32_MAX || ne > INT32_MAX)
    return tchi_fail(TCH_E_ARG, "SSR batch of %zu (state, action) pairs is too large", m);
  if ((st = reserve(p, n, m, ne))) return st;

  /* Pairs in row-major action order; child c of the batch is encoder row n + c. */
  memcpy(s->enc_states, states, n * sd * sizeof(int32_t));
  size_t k = 0, c = 0;
  for (size_t r = 0; r < n; r++)
    for (size_t a = 0; a < na; a++) {
      if (!s->fwd[r * na + a]) continue;
      s->pair_row[k] = (int32_t)r;
      s->pair_act[k] = (int32_t)a;
      if (a == exit_a) {
        s->pair_enc[k] = (int32_t)r;   /* the leaf's features are the state's own */
      } else {
        s->pair_enc[k] = (int32_t)(n + c);
        memcpy(s->parents + c * sd, states + r * sd, sd * sizeof(int32_t));
        s->acts[c] = (int32_t)a;
        c++;
      }
      k++;
    }
  if (mc > 0 && (st = tchi_env_step(env, mc, s->parents, s->acts, s->enc_states + n * sd)))
    return st;
  int onehot = 0;
  if ((st = tchi_env_encode(env, ne, s->enc_states, s->feat, s->idx, &onehot))) return st;
  if (onehot) st = tchi_mlp_forward_onehot(&s->enc, &p->gemm, &s->enc_ws, ne, sd, s->idx, &s->emb);
  else st = tchi_mlp_forward(&s->enc, &p->gemm, &s->enc_ws, ne, s->feat, &s->emb);
  if (st) return st;

  /* Scorer layer 0: a = E(s) W_a + b0 per state, b = E(x) W_b per encoder row, then
   * hid[k] = LeakyReLU(a[row k] + b[enc k]) per pair. */
  const tchi_mlp *sc = &s->sc;
  const float *W0 = sc->params + sc->w_off[0], *b0 = sc->params + sc->b_off[0];
  const float *w1 = sc->params + sc->w_off[1], b1 = sc->params[sc->b_off[1]];
  tchi_sgemm(&p->gemm, 0, 0, n, h, e, 1.0f, s->emb, e, W0, h, 0.0f, s->a, h);
  for (size_t r = 0; r < n; r++)
    for (size_t j = 0; j < h; j++) s->a[r * h + j] += b0[j];
  tchi_sgemm(&p->gemm, 0, 0, ne, h, e, 1.0f, s->emb, e, W0 + e * h, h, 0.0f, s->b, h);
  for (k = 0; k < m; k++) {
    const float *ar = s->a + (size_t)s->pair_row[k] * h, *br = s->b + (size_t)s->pair_enc[k] * h;
    float *hr = s->hid + k * h;
    for (size_t j = 0; j < h; j++) hr[j] = ar[j] + br[j];
  }
  /* In place: LeakyReLU keeps the sign (x > 0 iff act(x) > 0), so the backward can take
   * the slope from the output. */
  tchi_act_forward(TCHI_ACT_LEAKY_RELU, m * h, s->hid, s->hid);
  tchi_sgemm(&p->gemm, 0, 0, m, 1, h, 1.0f, s->hid, h, w1, 1, 0.0f, s->raw, 1);
  for (k = 0; k < m; k++) s->raw[k] += b1;

  /* Logits: clipped scores at valid actions, -clip elsewhere (masked by every caller). */
  const float fill = (float)-s->logit_clip;
  for (size_t r = 0; r < n; r++)
    for (size_t a = 0; a < na; a++) s->out[r * od + a] = fill;
  for (k = 0; k < m; k++)
    s->out[(size_t)s->pair_row[k] * od + (size_t)s->pair_act[k]] =
      clip_score(s->raw[k], s->logit_clip);
  for (size_t r = 0, k0 = 0; r < n; r++) {
    size_t k1 = k0;
    double mx = -INFINITY, sum = 0.0;
    while (k1 < m && (size_t)s->pair_row[k1] == r) {
      double v = s->out[r * od + (size_t)s->pair_act[k1]];
      if (v > mx) mx = v;
      k1++;
    }
    for (size_t q = k0; q < k1; q++)
      sum += exp((double)s->out[r * od + (size_t)s->pair_act[q]] - mx);
    s->lse[r] = mx + log(sum);
    if (p->has_flow) s->out[r * od + p->off_flow] = (float)s->lse[r];
    k0 = k1;
  }
  s->rows = n;
  s->pairs = m;
  s->children = mc;
  s->have_forward = 1;
  *out = s->out;
  return TCH_OK;
}

/* ---- backward ------------------------------------------------------------------------------ */
tch_status tchi_ssr_backward(tch_policy *p, const float *dout)
{
  tchi_ssr *s = p->ssr;
  if (!s->have_forward)
    return tchi_fail(TCH_E_ARG, "SSR backward without a forward to differentiate");
  const size_t n = s->rows, m = s->pairs, ne = n + s->children;
  if (n == 0) return TCH_OK;
  if (!dout) return tchi_fail(TCH_E_ARG, "SSR backward: NULL output gradient");
  /* The backward reuses the forward's buffers as scratch: one backward per forward. */
  s->have_forward = 0;
  const size_t od = p->out_dim, h = s->hidden, e = s->embed;
  const double c = s->logit_clip;
  tchi_mlp *sc = &s->sc;
  const float *W0 = sc->params + sc->w_off[0], *w1 = sc->params + sc->w_off[1];
  float *dW0 = sc->grads + sc->w_off[0], *db0 = sc->grads + sc->b_off[0];
  float *dw1 = sc->grads + sc->w_off[1], *db1 = sc->grads + sc->b_off[1];

  /* dLoss/d raw score: the logit's gradient plus, through log F = logsumexp, the flow's
   * times softmax; zero where the clip is active (torch.clip passes gradient on [-c, c]). */
  double bsum = 0.0;
  for (size_t k = 0; k < m; k++) {
    size_t r = (size_t)s->pair_row[k], a = (size_t)s->pair_act[k];
    float x = s->raw[k];
    double g = 0.0;
    if (x >= -c && x <= c) {
      g = dout[r * od + a];
      if (p->has_flow)
        g += dout[r * od + p->off_flow] * exp((double)s->out[r * od + a] - s->lse[r]);
    }
    s->dscore[k] = (float)g;
    bsum += s->dscore[k];
  }
  tchi_sgemm(&p->gemm, 1, 0, h, 1, m, 1.0f, s->hid, h, s->dscore, 1, 1.0f, dw1, 1);
  db1[0] = (float)(db1[0] + bsum);
  /* G = dLoss/d(pre-activation of scorer layer 0), pair rows, into b. */
  for (size_t k = 0; k < m; k++) {
    float g = s->dscore[k], *br = s->b + k * h;
    for (size_t j = 0; j < h; j++) br[j] = g * w1[j];
  }
  tchi_act_backward(TCHI_ACT_LEAKY_RELU, m * h, s->hid, s->hid, s->b, s->b);
  /* Gs (per state, into a) = sum of its pairs' G; Gb (per encoder row, into hid) = G of the
   * child's pair, or for a state row the G of its EXIT pair. */
  memset(s->a, 0, n * h * sizeof(float));
  memset(s->hid, 0, n * h * sizeof(float));
  for (size_t k = 0; k < m; k++) {
    const float *g = s->b + k * h;
    float *gs = s->a + (size_t)s->pair_row[k] * h, *gb = s->hid + (size_t)s->pair_enc[k] * h;
    for (size_t j = 0; j < h; j++) gs[j] += g[j];
    if ((size_t)s->pair_enc[k] >= n) memcpy(gb, g, h * sizeof(float));
    else for (size_t j = 0; j < h; j++) gb[j] += g[j];
  }
  add_col_sums(db0, s->a, n, h);
  tchi_sgemm(&p->gemm, 1, 0, e, h, n, 1.0f, s->emb, e, s->a, h, 1.0f, dW0, h);
  tchi_sgemm(&p->gemm, 1, 0, e, h, ne, 1.0f, s->emb, e, s->hid, h, 1.0f, dW0 + e * h, h);
  /* dE = Gb W_b^T on every encoder row, plus Gs W_a^T on the state rows. */
  tchi_sgemm(&p->gemm, 0, 1, ne, e, h, 1.0f, s->hid, h, W0 + e * h, h, 0.0f, s->demb, e);
  tchi_sgemm(&p->gemm, 0, 1, n, e, h, 1.0f, s->a, h, W0, h, 1.0f, s->demb, e);
  return tchi_mlp_backward(&s->enc, &p->gemm, &s->enc_ws, s->demb, NULL);
}
