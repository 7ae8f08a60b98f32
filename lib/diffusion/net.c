/* The diffusion policy network (gfn.py GFN with architectures.py's default or PIS modules):
 * layout of the flat parameter array, initialisation, evaluation of blocks of time steps
 * with one gemm per layer, and the backward pass.
 *
 * Speed: the time t is shared by every row of a time step, so the time encoder runs once
 * per step on one row, and the first layer of the joint policy (and of the default Langevin
 * model) is split: concat(s, t) W + b = s W_s + (t W_t + b), the bracket a per-step row
 * bias. A block of k steps is evaluated as k m rows with k such biases. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "diffusion/diffusion.h"

#define DNET_MAX_WIDTH 65536u

/* ---- workspace ------------------------------------------------------------------------------ */
typedef struct chain_ws {
  float *post[TCHI_DCHAIN_MAX];   /* output of layer l, after its GELU if it has one */
  float *der[TCHI_DCHAIN_MAX];    /* GELU'(pre-activation) of layer l (kept forwards only) */
  float *in_post, *in_der;        /* gelu_in: GELU(input) and its derivative */
} chain_ws;

struct tchi_dws {
  size_t cap_rows;                /* k m rows */
  uint32_t cap_k;                 /* time steps per block */
  int cap_keep;                   /* derivative buffers allocated */
  size_t rows, m;                 /* last forward */
  uint32_t k, i0;
  int kept;
  double *x, *g;                  /* staged states and grad log R (rows x dim) */
  double *mean, *logvar;          /* Gaussian parameters (rows x dim) */
  double *d_mean, *d_logvar;      /* their loss gradients (rows x dim) */
  float *xf;                      /* rows x dim network input */
  float *z;                       /* PIS: rows x hidden, state + time embedding */
  float *dsemb;                   /* rows x s_emb gradient of the state embedding (PIS: of z) */
  float *dout;                    /* rows x 2 dim gradient of the joint output */
  float *dlgv;                    /* rows x lgv_out gradient of the Langevin scale (default) */
  float *dy[2];                   /* rows x max width backward scratch */
  chain_ws state, joint, lgv;     /* chains over batch rows */
  /* per time step (k rows) */
  float *tfeat, *lfeat;           /* Fourier features of t (lfeat: PIS Langevin model) */
  chain_ws time, lgvt;            /* time encoder; PIS Langevin model */
  float *bias_j, *bias_l;         /* default: t W_t + b of the first joint / Langevin layer */
  float *dbias_j, *dbias_l;
  float *dtemb;                   /* k x t_emb */
  float *dtfeat, *dlfeat;         /* PIS: gradients of the features (for the phases) */
  float *dlgvk;                   /* PIS: k x lgv_out gradient of the per-step scale */
  float *dk[2];                   /* k x max width backward scratch */
  double *acc;                    /* 2 x max width column sums */
  double *nscr; size_t nscr_cap;  /* per-trajectory scratch (tchi_dnet_scratch) */
};

/* Every allocated buffer of a workspace, with its element count per row (batch rows or
 * block rows) and whether only kept forwards need it; one table drives allocation and
 * release so the two cannot disagree. */
typedef struct ws_buf {
  void **p;
  size_t per_row;
  int per_block;      /* rows = cap_k instead of cap_rows */
  int keep_only;
  int is_double;
} ws_buf;

#define WS_MAX_BUFS 128

static size_t net_max_width(const tchi_dnet *net)
{
  const tchi_dnet_spec *s = &net->spec;
  size_t w = TCHI_MAX(TCHI_MAX(s->hidden_dim, s->s_emb_dim), s->t_emb_dim);
  w = TCHI_MAX(w, 2 * (size_t)s->harmonics_dim);
  w = TCHI_MAX(w, 2 * (size_t)s->t_emb_dim);
  w = TCHI_MAX(w, 2 * (size_t)s->dim);
  return w;
}

static void chain_bufs(const tchi_dchain *c, chain_ws *cw, int per_block, ws_buf *t, size_t *n)
{
  for (uint32_t l = 0; l < c->n; l++) {
    t[(*n)++] = (ws_buf){(void **)&cw->post[l], c->lin[l].out, per_block, 0, 0};
    if (l + 1 < c->n || c->gelu_out)
      t[(*n)++] = (ws_buf){(void **)&cw->der[l], c->lin[l].out, per_block, 1, 0};
  }
  if (c->n && c->gelu_in) {
    t[(*n)++] = (ws_buf){(void **)&cw->in_post, c->lin[0].in, per_block, 0, 0};
    t[(*n)++] = (ws_buf){(void **)&cw->in_der, c->lin[0].in, per_block, 1, 0};
  }
}

static size_t ws_table(const tchi_dnet *net, struct tchi_dws *w, ws_buf *t)
{
  const tchi_dnet_spec *s = &net->spec;
  size_t n = 0, dim = s->dim, mw = net_max_width(net);
  int pis = s->pis, lgv = net->lgv.n > 0;
  t[n++] = (ws_buf){(void **)&w->x, dim, 0, 0, 1};
  if (s->langevin) t[n++] = (ws_buf){(void **)&w->g, dim, 0, 0, 1};
  t[n++] = (ws_buf){(void **)&w->mean, dim, 0, 0, 1};
  t[n++] = (ws_buf){(void **)&w->logvar, dim, 0, 0, 1};
  t[n++] = (ws_buf){(void **)&w->d_mean, dim, 0, 1, 1};
  t[n++] = (ws_buf){(void **)&w->d_logvar, dim, 0, 1, 1};
  t[n++] = (ws_buf){(void **)&w->xf, dim, 0, 0, 0};
  if (pis) t[n++] = (ws_buf){(void **)&w->z, s->hidden_dim, 0, 0, 0};
  t[n++] = (ws_buf){(void **)&w->dsemb, pis ? s->hidden_dim : s->s_emb_dim, 0, 1, 0};
  t[n++] = (ws_buf){(void **)&w->dout, 2 * dim, 0, 1, 0};
  if (lgv && !pis) t[n++] = (ws_buf){(void **)&w->dlgv, net->lgv_out, 0, 1, 0};
  t[n++] = (ws_buf){(void **)&w->dy[0], mw, 0, 1, 0};
  t[n++] = (ws_buf){(void **)&w->dy[1], mw, 0, 1, 0};
  chain_bufs(&net->state, &w->state, 0, t, &n);
  chain_bufs(&net->joint, &w->joint, 0, t, &n);
  if (lgv && !pis) chain_bufs(&net->lgv, &w->lgv, 0, t, &n);
  t[n++] = (ws_buf){(void **)&w->tfeat, 2 * (size_t)s->harmonics_dim, 1, 0, 0};
  chain_bufs(&net->time, &w->time, 1, t, &n);
  if (lgv && pis) {
    t[n++] = (ws_buf){(void **)&w->lfeat, 2 * (size_t)s->t_emb_dim, 1, 0, 0};
    chain_bufs(&net->lgv, &w->lgvt, 1, t, &n);
    t[n++] = (ws_buf){(void **)&w->dlfeat, 2 * (size_t)s->t_emb_dim, 1, 1, 0};
    t[n++] = (ws_buf){(void **)&w->dlgvk, net->lgv_out, 1, 1, 0};
  }
  if (!pis) {
    t[n++] = (ws_buf){(void **)&w->bias_j, s->hidden_dim, 1, 0, 0};
    t[n++] = (ws_buf){(void **)&w->dbias_j, s->hidden_dim, 1, 1, 0};
    if (lgv) {
      t[n++] = (ws_buf){(void **)&w->bias_l, s->hidden_dim, 1, 0, 0};
      t[n++] = (ws_buf){(void **)&w->dbias_l, s->hidden_dim, 1, 1, 0};
    }
  } else {
    t[n++] = (ws_buf){(void **)&w->dtfeat, 2 * (size_t)s->harmonics_dim, 1, 1, 0};
  }
  t[n++] = (ws_buf){(void **)&w->dtemb, s->t_emb_dim, 1, 1, 0};
  t[n++] = (ws_buf){(void **)&w->dk[0], mw, 1, 1, 0};
  t[n++] = (ws_buf){(void **)&w->dk[1], mw, 1, 1, 0};
  return n;
}

static void ws_release(const tchi_dnet *net, struct tchi_dws *w)
{
  ws_buf t[WS_MAX_BUFS];
  size_t n = ws_table(net, w, t);
  for (size_t i = 0; i < n; i++) {
    tchi_free(*t[i].p);
    *t[i].p = NULL;
  }
  tchi_free(w->acc);
  w->acc = NULL;
  w->cap_rows = 0;
  w->cap_k = 0;
  w->cap_keep = 0;
  w->rows = 0;
  w->kept = 0;
}

tch_status tchi_dnet_reserve(tchi_dnet *net, uint32_t k, size_t m, int keep)
{
  struct tchi_dws *w = net->ws;
  int ovf = 0;
  size_t rows = tchi_mul_size(k, m, &ovf);
  if (ovf || k == 0) return tchi_fail(TCH_E_ARG, "diffusion net: bad block of %u x %zu rows", k, m);
  keep = keep != 0;
  if (rows <= w->cap_rows && k <= w->cap_k && keep <= w->cap_keep) return TCH_OK;
  size_t cap_rows = TCHI_MAX(rows, w->cap_rows), cap_k = TCHI_MAX(k, w->cap_k);
  if (rows > w->cap_rows && cap_rows < SIZE_MAX / 3) cap_rows = TCHI_MAX(rows, w->cap_rows + w->cap_rows / 2);
  int cap_keep = keep || w->cap_keep;
  ws_release(net, w);
  ws_buf t[WS_MAX_BUFS];
  size_t nb = ws_table(net, w, t);
  tch_status s = TCH_OK;
  for (size_t i = 0; i < nb && s == TCH_OK; i++) {
    if (t[i].keep_only && !cap_keep) continue;
    size_t r = t[i].per_block ? cap_k : cap_rows;
    size_t cnt = tchi_mul_size(r, t[i].per_row, &ovf);
    if (ovf || cnt > SIZE_MAX / sizeof(double) - TCHI_GEMM_PAD) {
      s = tchi_fail(TCH_E_NOMEM, "diffusion workspace size overflows (%zu rows)", r);
      break;
    }
    s = tchi_alloc_array(t[i].p, cnt + TCHI_GEMM_PAD, t[i].is_double ? sizeof(double) : sizeof(float),
                         0, "diffusion workspace");
  }
  if (s == TCH_OK) s = tchi_alloc_array(&w->acc, 2 * net_max_width(net), sizeof(double), 0, "diffusion workspace");
  if (s != TCH_OK) {
    ws_release(net, w);
    return s;
  }
  w->cap_rows = cap_rows;
  w->cap_k = (uint32_t)cap_k;
  w->cap_keep = cap_keep;
  return TCH_OK;
}

void tchi_dnet_stage(tchi_dnet *net, double **x, double **g)
{
  *x = net->ws->x;
  if (g) *g = net->spec.langevin ? net->ws->g : NULL;
}

double *tchi_dnet_scratch(tchi_dnet *net, size_t n)
{
  struct tchi_dws *w = net->ws;
  if (n > w->nscr_cap || !w->nscr) {
    size_t cap = TCHI_MAX(n, w->nscr_cap + w->nscr_cap / 2);
    double *p = NULL;
    if (tchi_alloc_array(&p, TCHI_MAX(cap, (size_t)1), sizeof(double), 0, "diffusion scratch") != TCH_OK)
      return NULL;
    tchi_free(w->nscr);
    w->nscr = p;
    w->nscr_cap = TCHI_MAX(cap, (size_t)1);
  }
  return w->nscr;
}

void tchi_dnet_grad_in(tchi_dnet *net, double **d_mean, double **d_logvar)
{
  *d_mean = net->ws->d_mean;
  *d_logvar = net->ws->d_logvar;
}

/* ---- layout and initialisation ----------------------------------------------------------------- */
void tchi_dnet_spec_default(tchi_dnet_spec *s, uint32_t dim)
{
  memset(s, 0, sizeof *s);
  s->dim = dim;
  s->T = 100;
  s->t_scale = 1.0;
  s->hidden_dim = s->s_emb_dim = s->t_emb_dim = s->harmonics_dim = 256;
  s->joint_layers = 2;
  s->lgv_layers = 3;
  s->log_var_range = 4.0;
  s->lgv_clip = 1e2;
  s->gfn_clip = 1e4;
  s->learn_log_z = 1;
  s->kernel = "auto";
  s->threads = 1;
}

static void add_linear(tchi_dchain *c, uint32_t in, uint32_t out, uint64_t *off)
{
  tchi_dlinear *l = &c->lin[c->n++];
  l->in = in;
  l->out = out;
  l->w = (size_t)*off;
  *off += (uint64_t)in * out;
  l->b = (size_t)*off;
  *off += out;
}

static int width_ok(uint32_t v) { return v >= 1 && v <= DNET_MAX_WIDTH; }
static int finite_pos(double v) { return isfinite(v) && v > 0; }

static tch_status check_spec(const tchi_dnet_spec *s)
{
  if (!width_ok(s->dim)) return tchi_fail(TCH_E_ARG, "diffusion net: dim must be in [1, %u]", DNET_MAX_WIDTH);
  if (s->T < 1 || s->T > (1u << 20)) return tchi_fail(TCH_E_ARG, "diffusion net: T must be in [1, 2^20]");
  if (!finite_pos(s->t_scale)) return tchi_fail(TCH_E_ARG, "diffusion net: t_scale must be finite and > 0");
  if (!width_ok(s->hidden_dim) || !width_ok(s->s_emb_dim) || !width_ok(s->t_emb_dim) ||
      !width_ok(s->harmonics_dim))
    return tchi_fail(TCH_E_ARG, "diffusion net: layer widths must be in [1, %u]", DNET_MAX_WIDTH);
  if (s->pis) {
    if (s->s_emb_dim != s->hidden_dim || s->t_emb_dim != s->hidden_dim)
      return tchi_fail(TCH_E_ARG, "diffusion net: the PIS architecture needs s_emb_dim = t_emb_dim = hidden_dim");
    if (s->joint_layers > TCHI_DCHAIN_MAX - 1)
      return tchi_fail(TCH_E_ARG, "diffusion net: joint_layers must be <= %d", TCHI_DCHAIN_MAX - 1);
    if (s->lgv_layers < 1 || s->lgv_layers > TCHI_DCHAIN_MAX - 1)
      return tchi_fail(TCH_E_ARG, "diffusion net: lgv_layers must be in [1, %d]", TCHI_DCHAIN_MAX - 1);
  }
  if (!isfinite(s->log_var_range) || s->log_var_range < 0)
    return tchi_fail(TCH_E_ARG, "diffusion net: log_var_range must be finite and >= 0");
  if (!finite_pos(s->lgv_clip) || !finite_pos(s->gfn_clip))
    return tchi_fail(TCH_E_ARG, "diffusion net: lgv_clip and gfn_clip must be finite and > 0");
  if (!isfinite(s->log_z_init)) return tchi_fail(TCH_E_ARG, "diffusion net: log_z_init must be finite");
  if (s->threads < 0) return tchi_fail(TCH_E_ARG, "diffusion net: threads must be >= 0");
  if (s->kernel && strlen(s->kernel) >= 32) return tchi_fail(TCH_E_ARG, "diffusion net: kernel name too long");
  return tchi_dref_check_spec(s);   /* reference process fields (ou.c, Reinforced SMC) */
}

/* Parameter order = group order: [time | state | joint | Langevin]. */
static tch_status build_layout(tchi_dnet *net)
{
  const tchi_dnet_spec *s = &net->spec;
  uint32_t h = s->harmonics_dim, H = s->hidden_dim, S = s->s_emb_dim, Te = s->t_emb_dim, D = s->dim;
  uint64_t off = 0;
  net->group_off[TCHI_DGROUP_TIME] = 0;
  if (s->pis) {
    net->phase = 0;
    off += h;
  }
  add_linear(&net->time, 2 * h, H, &off);
  add_linear(&net->time, H, Te, &off);
  net->time.split = 2 * h;
  net->time.gelu_out = !s->pis;
  net->group_off[TCHI_DGROUP_STATE] = (size_t)off;
  if (s->pis) {
    add_linear(&net->state, D, S, &off);
  } else {
    add_linear(&net->state, D, H, &off);
    add_linear(&net->state, H, S, &off);
    net->state.gelu_out = 1;
  }
  net->state.split = D;
  net->group_off[TCHI_DGROUP_JOINT] = (size_t)off;
  if (s->pis) {
    net->joint.gelu_in = 1;
    for (uint32_t l = 0; l < s->joint_layers; l++) add_linear(&net->joint, H, H, &off);
    add_linear(&net->joint, H, 2 * D, &off);
    net->joint.split = H;
  } else {
    add_linear(&net->joint, S + Te, H, &off);
    add_linear(&net->joint, H, H, &off);
    add_linear(&net->joint, H, 2 * D, &off);
    net->joint.split = S;
  }
  net->group_off[TCHI_DGROUP_LANGEVIN] = (size_t)off;
  if (s->langevin) {
    net->lgv_out = s->langevin_per_dim ? D : 1;
    if (s->pis) {
      net->lgv_phase = (size_t)off;
      off += Te;
      add_linear(&net->lgv, 2 * Te, H, &off);
      for (uint32_t l = 1; l < s->lgv_layers; l++) add_linear(&net->lgv, H, H, &off);
      add_linear(&net->lgv, H, net->lgv_out, &off);
      net->lgv.split = 2 * Te;
    } else {
      add_linear(&net->lgv, S + Te, H, &off);
      add_linear(&net->lgv, H, H, &off);
      add_linear(&net->lgv, H, net->lgv_out, &off);
      net->lgv.split = S;
    }
  }
  net->group_off[TCHI_DGROUP_N] = (size_t)off;
  if (off > (uint64_t)(SIZE_MAX / sizeof(float)) - TCHI_GEMM_PAD)
    return tchi_fail(TCH_E_ARG, "diffusion net: parameter count overflows");
  net->n_params = (size_t)off;
  return TCH_OK;
}

/* Time frequencies exactly as the reference builds them in float32:
 * default pe_k = (2k) * pi (k = 1..h); PIS torch.linspace(0.1, 100, h). */
static void fill_linspace(float *pe, uint32_t h)
{
  if (h == 1) {
    pe[0] = 0.1f;
    return;
  }
  float start = 0.1f, end = 100.0f, step = (end - start) / (float)(h - 1);
  uint32_t half = h / 2;
  for (uint32_t i = 0; i < h; i++)
    pe[i] = i < half ? start + step * (float)i : end - step * (float)(h - 1 - i);
}

static tch_status net_alloc(const tchi_dnet_spec *spec, tchi_dnet **out)
{
  *out = NULL;
  tch_status s = check_spec(spec);
  if (s != TCH_OK) return s;
  tchi_dnet *net = tchi_calloc(1, sizeof *net);
  if (!net) return tchi_fail(TCH_E_NOMEM, "out of memory creating a diffusion net");
  net->spec = *spec;
  net->spec.learned_variance = spec->learned_variance != 0;
  net->spec.pis = spec->pis != 0;
  net->spec.langevin = spec->langevin != 0;
  net->spec.langevin_per_dim = spec->langevin_per_dim != 0;
  net->spec.clipping = spec->clipping != 0;
  net->spec.learn_log_z = spec->learn_log_z != 0;
  if (!net->spec.threads) net->spec.threads = 1;
  snprintf(net->kernel, sizeof net->kernel, "%s", spec->kernel ? spec->kernel : "auto");
  net->spec.kernel = net->kernel;
  if ((s = tchi_gemm_init(&net->gemm, net->kernel, net->spec.threads)) != TCH_OK ||
      (s = build_layout(net)) != TCH_OK) {
    tchi_free(net);
    return s;
  }
  uint32_t h = spec->harmonics_dim, te = spec->t_emb_dim;
  if ((s = tchi_alloc_array(&net->params, net->n_params + TCHI_GEMM_PAD, sizeof(float), 1,
                            "diffusion net parameters")) != TCH_OK ||
      (s = tchi_alloc_array(&net->grads, net->n_params + TCHI_GEMM_PAD, sizeof(float), 1,
                            "diffusion net gradients")) != TCH_OK ||
      (s = tchi_alloc_array(&net->pe, h, sizeof(float), 0, "diffusion net frequencies")) != TCH_OK ||
      (net->spec.pis && net->spec.langevin &&
       (s = tchi_alloc_array(&net->lgv_pe, te, sizeof(float), 0, "diffusion net frequencies")) != TCH_OK) ||
      (s = tchi_alloc_array(&net->ws, 1, sizeof *net->ws, 1, "diffusion workspace")) != TCH_OK) {
    tchi_dnet_free(net);
    return s;
  }
  if (net->spec.pis) {
    fill_linspace(net->pe, h);
    if (net->lgv_pe) fill_linspace(net->lgv_pe, te);
  } else {
    for (uint32_t k = 1; k <= h; k++) net->pe[k - 1] = (float)(2 * k) * (float)M_PI;
  }
  net->log_z = spec->log_z_init;
  *out = net;
  return TCH_OK;
}

static void init_chain(tchi_dnet *net, const tchi_dchain *c, tchi_rng *rng)
{
  for (uint32_t l = 0; l < c->n; l++) {
    const tchi_dlinear *L = &c->lin[l];
    double bound = 1.0 / sqrt((double)L->in);
    float *w = net->params + L->w, *b = net->params + L->b;
    for (size_t i = 0; i < (size_t)L->in * L->out; i++)
      w[i] = (float)((2.0 * tchi_rng_uniform(rng) - 1.0) * bound);
    for (size_t i = 0; i < L->out; i++) b[i] = (float)((2.0 * tchi_rng_uniform(rng) - 1.0) * bound);
  }
}

static void init_last(tchi_dnet *net, const tchi_dchain *c, float bias)
{
  const tchi_dlinear *L = &c->lin[c->n - 1];
  memset(net->params + L->w, 0, (size_t)L->in * L->out * sizeof(float));
  for (size_t i = 0; i < L->out; i++) net->params[L->b + i] = bias;
}

tch_status tchi_dnet_create(const tchi_dnet_spec *spec, tchi_rng *rng, tchi_dnet **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "dnet_create: NULL output");
  *out = NULL;
  if (!spec || !rng) return tchi_fail(TCH_E_ARG, "dnet_create: NULL %s", spec ? "rng" : "spec");
  tchi_dnet *net;
  tch_status s = net_alloc(spec, &net);
  if (s != TCH_OK) return s;
  /* In parameter order, so the stream fixes every weight. */
  if (net->spec.pis)
    for (uint32_t i = 0; i < spec->harmonics_dim; i++) net->params[net->phase + i] = (float)tchi_rng_normal(rng);
  init_chain(net, &net->time, rng);
  init_chain(net, &net->state, rng);
  init_chain(net, &net->joint, rng);
  if (net->lgv.n) {
    if (net->spec.pis)
      for (uint32_t i = 0; i < spec->t_emb_dim; i++) net->params[net->lgv_phase + i] = (float)tchi_rng_normal(rng);
    init_chain(net, &net->lgv, rng);
    init_last(net, &net->lgv, 0.01f);
  }
  init_last(net, &net->joint, 0.0f);
  *out = net;
  return TCH_OK;
}

tch_status tchi_dnet_clone(const tchi_dnet *src, tchi_dnet **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "dnet_clone: NULL output");
  *out = NULL;
  if (!src) return tchi_fail(TCH_E_ARG, "dnet_clone: NULL net");
  tchi_dnet *net;
  tch_status s = net_alloc(&src->spec, &net);
  if (s != TCH_OK) return s;
  memcpy(net->params, src->params, src->n_params * sizeof(float));
  memcpy(net->grads, src->grads, src->n_params * sizeof(float));
  net->log_z = src->log_z;
  net->log_z_grad = src->log_z_grad;
  *out = net;
  return TCH_OK;
}

void tchi_dnet_free(tchi_dnet *net)
{
  if (!net) return;
  if (net->ws) {
    ws_release(net, net->ws);
    tchi_free(net->ws->nscr);
    tchi_free(net->ws);
  }
  tchi_free(net->params);
  tchi_free(net->grads);
  tchi_free(net->pe);
  tchi_free(net->lgv_pe);
  tchi_free(net);
}

void tchi_dnet_zero_grad(tchi_dnet *net)
{
  if (!net) return;
  memset(net->grads, 0, net->n_params * sizeof(float));
  net->log_z_grad = 0.0;
}

size_t tchi_dnet_param_groups(tchi_dnet *net, double lr_policy, double lr_flow,
                              double weight_decay, tchi_param_group *out)
{
  size_t k = 0;
  for (int g = 0; g < TCHI_DGROUP_N; g++) {
    if (g == TCHI_DGROUP_LANGEVIN && !net->spec.langevin) continue;
    size_t a = net->group_off[g], b = net->group_off[g + 1];
    out[k++] = (tchi_param_group){.p = net->params + a, .g = net->grads + a, .n = b - a,
                                  .lr = lr_policy, .weight_decay = weight_decay};
  }
  if (net->spec.learn_log_z)
    out[k++] = (tchi_param_group){.pd = &net->log_z, .gd = &net->log_z_grad, .n = 1,
                                  .lr = lr_flow, .weight_decay = weight_decay};
  return k;
}

/* ---- chains: forward and backward ------------------------------------------------------------- */
static int has_gelu(const tchi_dchain *c, uint32_t l) { return l + 1 < c->n || c->gelu_out; }

static void bias_act(int act, size_t rows, size_t cols, float *y, const float *b, float *der)
{
  if (act) tchi_dbias_gelu(rows, cols, y, b, der);
  else tchi_dadd_row(rows, cols, y, b);
}

/* Forward of rows x (rows x split). block_bias (nblocks x out_0, includes b_0) replaces b_0,
 * block j covering rows [j block_rows, (j+1) block_rows). Returns the output. */
static const float *chain_fwd(tchi_dnet *net, const tchi_dchain *c, chain_ws *cw, size_t rows,
                              const float *x, const float *block_bias, size_t block_rows, int keep)
{
  const float *in = x;
  if (c->gelu_in) {
    size_t n = rows * c->split;
    memcpy(cw->in_post, x, n * sizeof(float));
    if (keep) tchi_dgelu_der(n, cw->in_post, cw->in_der);
    else tchi_dgelu(n, cw->in_post);
    in = cw->in_post;
  }
  for (uint32_t l = 0; l < c->n; l++) {
    const tchi_dlinear *L = &c->lin[l];
    size_t kin = l == 0 ? c->split : L->in;
    float *y = cw->post[l];
    tchi_sgemm(&net->gemm, 0, 0, rows, L->out, kin, 1.0f, in, kin, net->params + L->w, L->out,
               0.0f, y, L->out);
    int act = has_gelu(c, l);
    float *der = keep && act ? cw->der[l] : NULL;
    if (l == 0 && block_bias) {
      for (size_t j = 0, r0 = 0; r0 < rows; j++, r0 += block_rows)
        bias_act(act, TCHI_MIN(block_rows, rows - r0), L->out, y + r0 * L->out,
                 block_bias + j * L->out, der ? der + r0 * L->out : NULL);
    } else {
      bias_act(act, rows, L->out, y, net->params + L->b, der);
    }
    in = y;
  }
  return cw->post[c->n - 1];
}

/* acc (cols doubles) = column sums of rows of y; added to the float gradient b if b != NULL. */
static void colsum_into(size_t rows, size_t cols, const float *y, double *acc, float *b)
{
  memset(acc, 0, cols * sizeof *acc);
  tchi_dcolsum(rows, cols, y, acc);
  if (b)
    for (size_t j = 0; j < cols; j++) b[j] = (float)(b[j] + acc[j]);
}

/* Backward of the last kept chain_fwd. dy (rows x out_last) is consumed (scaled in place).
 * dx (rows x split, may be NULL) receives dL/dx (accumulate: added); dblock (nblocks x out_0,
 * may be NULL) the per-block sums of dL/d pre-activation of layer 0, i.e. the gradient of a
 * block bias. scr: two rows x max-width buffers distinct from dy and dx. */
static void chain_bwd(tchi_dnet *net, const tchi_dchain *c, chain_ws *cw, size_t rows,
                      const float *x, float *dy, float *const scr[2], float *dx, int accumulate,
                      float *dblock, size_t block_rows)
{
  double *acc = net->ws->acc, *acc2 = net->ws->acc + net_max_width(net);
  int nb = 0;
  if (c->gelu_out) tchi_dmul(rows * c->lin[c->n - 1].out, dy, cw->der[c->n - 1]);
  for (uint32_t l = c->n; l-- > 0;) {
    const tchi_dlinear *L = &c->lin[l];
    size_t kin = l == 0 ? c->split : L->in;
    const float *in = l > 0 ? cw->post[l - 1] : c->gelu_in ? cw->in_post : x;
    const float *W = net->params + L->w;
    tchi_sgemm(&net->gemm, 1, 0, kin, L->out, rows, 1.0f, in, kin, dy, L->out, 1.0f,
               net->grads + L->w, L->out);
    if (l == 0 && dblock) {
      memset(acc2, 0, L->out * sizeof *acc2);
      for (size_t j = 0, r0 = 0; r0 < rows; j++, r0 += block_rows) {
        size_t br = TCHI_MIN(block_rows, rows - r0);
        colsum_into(br, L->out, dy + r0 * L->out, acc, NULL);
        for (size_t q = 0; q < L->out; q++) {
          dblock[j * L->out + q] = (float)acc[q];
          acc2[q] += acc[q];
        }
      }
      float *b = net->grads + L->b;
      for (size_t q = 0; q < L->out; q++) b[q] = (float)(b[q] + acc2[q]);
    } else {
      colsum_into(rows, L->out, dy, acc, net->grads + L->b);
    }
    if (l > 0) {
      float *nd = scr[nb];
      nb ^= 1;
      tchi_sgemm(&net->gemm, 0, 1, rows, kin, L->out, 1.0f, dy, L->out, W, L->out, 0.0f, nd, kin);
      tchi_dmul(rows * kin, nd, cw->der[l - 1]);
      dy = nd;
    } else if (dx) {
      size_t n = rows * kin;
      if (c->gelu_in) {
        float *t = scr[nb];
        tchi_sgemm(&net->gemm, 0, 1, rows, kin, L->out, 1.0f, dy, L->out, W, L->out, 0.0f, t, kin);
        tchi_dmul(n, t, cw->in_der);
        if (accumulate)
          for (size_t i = 0; i < n; i++) dx[i] += t[i];
        else
          memcpy(dx, t, n * sizeof *dx);
      } else {
        tchi_sgemm(&net->gemm, 0, 1, rows, kin, L->out, 1.0f, dy, L->out, W, L->out,
                   accumulate ? 1.0f : 0.0f, dx, kin);
      }
    }
  }
}

/* ---- time features ------------------------------------------------------------------------------ */
/* [sin(t pe), cos(t pe)] (default) or [sin(t pe + phase), cos(t pe + phase)] (PIS), in
 * float32 as the reference: t is rounded to float, then t * pe (+ phase) in float. */
static void time_features(uint32_t h, const float *pe, const float *phase, float t, float *f)
{
  for (uint32_t i = 0; i < h; i++) {
    float a = t * pe[i];
    if (phase) a += phase[i];
    f[i] = sinf(a);
    f[h + i] = cosf(a);
  }
}

/* d/d phase of the features from their gradient df, with f holding [sin, cos]. */
static void phase_grad(uint32_t h, uint32_t k, const float *f, const float *df, float *gphase)
{
  for (uint32_t i = 0; i < h; i++) {
    double s = 0.0;
    for (uint32_t j = 0; j < k; j++) {
      const float *fj = f + (size_t)j * 2 * h, *dj = df + (size_t)j * 2 * h;
      s += (double)dj[i] * fj[h + i] - (double)dj[h + i] * fj[i];
    }
    gphase[i] = (float)(gphase[i] + s);
  }
}

/* ---- evaluation --------------------------------------------------------------------------------- */
static double clip_abs(double v, double c) { return v > c ? c : v < -c ? -c : v; }

/* Langevin scale of row r (in block j) for coordinate d. */
static inline double lgv_scale(const tchi_dnet *net, const float *sc, size_t r, size_t j, uint32_t d)
{
  uint32_t L = net->lgv_out;
  size_t row = net->spec.pis ? j : r;
  return sc[row * L + (L == 1 ? 0 : d)];
}

static const float *lgv_output(const tchi_dnet *net)
{
  const struct tchi_dws *w = net->ws;
  return net->spec.pis ? w->lgvt.post[net->lgv.n - 1] : w->lgv.post[net->lgv.n - 1];
}

void tchi_dnet_forward(tchi_dnet *net, uint32_t i0, uint32_t k, size_t m, int keep,
                       const double **mean, const double **logvar)
{
  struct tchi_dws *w = net->ws;
  const tchi_dnet_spec *s = &net->spec;
  size_t rows = (size_t)k * m, D = s->dim;
  double dt = 1.0 / s->T;
  keep = keep != 0;
  uint32_t h = s->harmonics_dim;
  const float *phase = s->pis ? net->params + net->phase : NULL;
  for (uint32_t j = 0; j < k; j++)
    time_features(h, net->pe, phase, (float)((i0 + j) * dt), w->tfeat + (size_t)j * 2 * h);
  const float *temb = chain_fwd(net, &net->time, &w->time, k, w->tfeat, NULL, 0, keep);
  size_t Te = s->t_emb_dim, H = s->hidden_dim, S = s->s_emb_dim;
  if (!s->pis) {
    /* per-step row bias t W_t + b of the first joint (and Langevin) layer */
    const tchi_dlinear *J0 = &net->joint.lin[0];
    for (uint32_t j = 0; j < k; j++) memcpy(w->bias_j + j * H, net->params + J0->b, H * sizeof(float));
    tchi_sgemm(&net->gemm, 0, 0, k, H, Te, 1.0f, temb, Te, net->params + J0->w + S * H, H, 1.0f,
               w->bias_j, H);
    if (net->lgv.n) {
      const tchi_dlinear *L0 = &net->lgv.lin[0];
      for (uint32_t j = 0; j < k; j++) memcpy(w->bias_l + j * H, net->params + L0->b, H * sizeof(float));
      tchi_sgemm(&net->gemm, 0, 0, k, H, Te, 1.0f, temb, Te, net->params + L0->w + S * H, H, 1.0f,
                 w->bias_l, H);
    }
  } else if (net->lgv.n) {
    for (uint32_t j = 0; j < k; j++)
      time_features(s->t_emb_dim, net->lgv_pe, net->params + net->lgv_phase, (float)((i0 + j) * dt),
                    w->lfeat + (size_t)j * 2 * Te);
    chain_fwd(net, &net->lgv, &w->lgvt, k, w->lfeat, NULL, 0, keep);
  }
  for (size_t i = 0; i < rows * D; i++) w->xf[i] = (float)w->x[i];
  const float *semb = chain_fwd(net, &net->state, &w->state, rows, w->xf, NULL, 0, keep);
  const float *out;
  if (!s->pis) {
    out = chain_fwd(net, &net->joint, &w->joint, rows, semb, w->bias_j, m, keep);
    if (net->lgv.n) chain_fwd(net, &net->lgv, &w->lgv, rows, semb, w->bias_l, m, keep);
  } else {
    for (size_t r = 0; r < rows; r++) {
      const float *sr = semb + r * H, *tr = temb + (r / m) * Te;
      float *zr = w->z + r * H;
      for (size_t q = 0; q < H; q++) zr[q] = sr[q] + tr[q];
    }
    out = chain_fwd(net, &net->joint, &w->joint, rows, w->z, NULL, 0, keep);
  }
  /* Gaussian head (gfn.py predict_next_state + split_params) */
  const float *sc = net->lgv.n ? lgv_output(net) : NULL;
  double log_ts = log(s->t_scale), range = s->log_var_range, clip = s->gfn_clip;
  for (size_t r = 0; r < rows; r++) {
    const float *o = out + r * 2 * D;
    for (uint32_t d = 0; d < D; d++) {
      double v = o[d];
      if (sc) v += lgv_scale(net, sc, r, r / m, d) * w->g[r * D + d];
      double raw = o[D + d];
      if (s->clipping) {
        v = clip_abs(v, clip);
        raw = clip_abs(raw, clip);
      }
      w->mean[r * D + d] = v;
      w->logvar[r * D + d] = s->learned_variance ? tanh(raw) * range + log_ts : log_ts;
    }
  }
  w->rows = rows;
  w->m = m;
  w->k = k;
  w->i0 = i0;
  w->kept = keep;
  *mean = w->mean;
  *logvar = w->logvar;
}

tch_status tchi_dnet_backward(tchi_dnet *net)
{
  struct tchi_dws *w = net->ws;
  const tchi_dnet_spec *s = &net->spec;
  size_t rows = w->rows, m = w->m, D = s->dim, H = s->hidden_dim, S = s->s_emb_dim, Te = s->t_emb_dim;
  uint32_t k = w->k, L = net->lgv_out;
  if (!w->kept) return tchi_fail(TCH_E_STATE, "diffusion net: backward without a kept forward");
  const float *out = w->joint.post[net->joint.n - 1];
  const float *sc = net->lgv.n ? lgv_output(net) : NULL;
  float *dsc = net->lgv.n ? (s->pis ? w->dlgvk : w->dlgv) : NULL;
  if (dsc) memset(dsc, 0, (s->pis ? k : rows) * L * sizeof(float));
  double range = s->log_var_range, clip = s->gfn_clip;
  /* head: dL/d joint output and dL/d Langevin scale */
  for (size_t r = 0; r < rows; r++) {
    const float *o = out + r * 2 * D;
    float *dout = w->dout + r * 2 * D;
    size_t j = r / m;
    for (uint32_t d = 0; d < D; d++) {
      double dm = w->d_mean[r * D + d], dlv = w->d_logvar[r * D + d];
      double gd = sc ? w->g[r * D + d] : 0.0;
      if (s->clipping) {
        double v = o[d] + (sc ? lgv_scale(net, sc, r, j, d) * gd : 0.0);
        if (fabs(v) > clip) dm = 0.0;
      }
      dout[d] = (float)dm;
      if (dsc) {
        size_t row = s->pis ? j : r;
        dsc[row * L + (L == 1 ? 0 : d)] += (float)(dm * gd);
      }
      double dr = 0.0;
      if (s->learned_variance) {
        double raw = o[D + d];
        if (!s->clipping || fabs(raw) <= clip) {
          double th = tanh(s->clipping ? clip_abs(raw, clip) : raw);
          dr = dlv * range * (1.0 - th * th);
        }
      }
      dout[D + d] = (float)dr;
    }
  }
  float *const scr[2] = {w->dy[0], w->dy[1]};
  float *const kscr[2] = {w->dk[0], w->dk[1]};
  const float *semb = w->state.post[net->state.n - 1];
  const float *temb = w->time.post[net->time.n - 1];
  if (!s->pis) {
    chain_bwd(net, &net->joint, &w->joint, rows, semb, w->dout, scr, w->dsemb, 0, w->dbias_j, m);
    if (net->lgv.n)
      chain_bwd(net, &net->lgv, &w->lgv, rows, semb, w->dlgv, scr, w->dsemb, 1, w->dbias_l, m);
    chain_bwd(net, &net->state, &w->state, rows, w->xf, w->dsemb, scr, NULL, 0, NULL, 0);
    /* time part of the split first layers: dW_t += temb^T dbias, dtemb = dbias W_t^T */
    const tchi_dlinear *J0 = &net->joint.lin[0];
    tchi_sgemm(&net->gemm, 1, 0, Te, H, k, 1.0f, temb, Te, w->dbias_j, H, 1.0f,
               net->grads + J0->w + S * H, H);
    tchi_sgemm(&net->gemm, 0, 1, k, Te, H, 1.0f, w->dbias_j, H, net->params + J0->w + S * H, H,
               0.0f, w->dtemb, Te);
    if (net->lgv.n) {
      const tchi_dlinear *L0 = &net->lgv.lin[0];
      tchi_sgemm(&net->gemm, 1, 0, Te, H, k, 1.0f, temb, Te, w->dbias_l, H, 1.0f,
                 net->grads + L0->w + S * H, H);
      tchi_sgemm(&net->gemm, 0, 1, k, Te, H, 1.0f, w->dbias_l, H, net->params + L0->w + S * H, H,
                 1.0f, w->dtemb, Te);
    }
    chain_bwd(net, &net->time, &w->time, k, w->tfeat, w->dtemb, kscr, NULL, 0, NULL, 0);
  } else {
    chain_bwd(net, &net->joint, &w->joint, rows, w->z, w->dout, scr, w->dsemb, 0, NULL, 0);
    /* z = semb + temb[block]: both get dz; temb's is summed over the block's rows */
    double *acc = w->acc;
    for (uint32_t j = 0; j < k; j++) {
      size_t r0 = (size_t)j * m;
      colsum_into(m, Te, w->dsemb + r0 * H, acc, NULL);
      for (size_t q = 0; q < Te; q++) w->dtemb[j * Te + q] = (float)acc[q];
    }
    chain_bwd(net, &net->state, &w->state, rows, w->xf, w->dsemb, scr, NULL, 0, NULL, 0);
    chain_bwd(net, &net->time, &w->time, k, w->tfeat, w->dtemb, kscr, w->dtfeat, 0, NULL, 0);
    phase_grad(s->harmonics_dim, k, w->tfeat, w->dtfeat, net->grads + net->phase);
    if (net->lgv.n) {
      chain_bwd(net, &net->lgv, &w->lgvt, k, w->lfeat, w->dlgvk, kscr, w->dlfeat, 0, NULL, 0);
      phase_grad(s->t_emb_dim, k, w->lfeat, w->dlfeat, net->grads + net->lgv_phase);
    }
  }
  w->kept = 0;
  return TCH_OK;
}
