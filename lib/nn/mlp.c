/* Batched float32 MLP: one gemm per layer per batch, one-hot input as a row gather. */
#include <math.h>
#include <string.h>
#include "nn/nn.h"

static const float empty_out[1];
static const int32_t empty_idx[1];

static tch_status check_mlp(const tchi_mlp *m, const char *fn)
{
  if (!m) return tchi_fail(TCH_E_ARG, "%s: NULL mlp", fn);
  if (m->n_layers < 1 || m->n_layers > TCHI_MLP_MAX_LAYERS || !m->params || !m->grads)
    return tchi_fail(TCH_E_ARG, "%s: mlp is not initialised", fn);
  return TCH_OK;
}

static size_t mlp_max_dim(const tchi_mlp *m)
{
  size_t md = 0;
  for (size_t l = 0; l <= m->n_layers; l++) md = TCHI_MAX(md, m->dims[l]);
  return md;
}

/* ---- parameters ---------------------------------------------------------------------- */
tch_status tchi_mlp_init(tchi_mlp *m, size_t n_layers, const size_t *dims, tchi_act act)
{
  if (!m) return tchi_fail(TCH_E_ARG, "mlp_init: NULL mlp");
  memset(m, 0, sizeof *m);
  if (!dims) return tchi_fail(TCH_E_ARG, "mlp_init: NULL dims");
  if (n_layers < 1 || n_layers > TCHI_MLP_MAX_LAYERS)
    return tchi_fail(TCH_E_ARG, "mlp_init: n_layers must be in [1, %d], got %zu",
                     TCHI_MLP_MAX_LAYERS, n_layers);
  if ((int)act < (int)TCHI_ACT_NONE || (int)act > (int)TCHI_ACT_TANH)
    return tchi_fail(TCH_E_ARG, "mlp_init: unknown activation %d", (int)act);
  size_t off = 0;
  for (size_t l = 0; l < n_layers; l++) {
    if (dims[l] == 0 || dims[l + 1] == 0)
      return tchi_fail(TCH_E_ARG, "mlp_init: dims[%zu] is 0", dims[l] == 0 ? l : l + 1);
    int ovf = 0;
    size_t w = tchi_mul_size(dims[l], dims[l + 1], &ovf);
    if (ovf || w > SIZE_MAX - off || dims[l + 1] > SIZE_MAX - off - w)
      return tchi_fail(TCH_E_ARG, "mlp_init: parameter count overflows");
    m->w_off[l] = off;
    m->b_off[l] = off + w;
    off += w + dims[l + 1];
  }
  for (size_t l = 0; l <= n_layers; l++) m->dims[l] = dims[l];
  m->n_layers = n_layers;
  m->n_params = off;
  m->act = act;
  tch_status s = tchi_alloc_array(&m->params, off + TCHI_GEMM_PAD, sizeof(float), 1, "mlp parameters");
  if (s == TCH_OK) s = tchi_alloc_array(&m->grads, off + TCHI_GEMM_PAD, sizeof(float), 1, "mlp gradients");
  if (s != TCH_OK) tchi_mlp_destroy(m);
  return s;
}

void tchi_mlp_destroy(tchi_mlp *m)
{
  if (!m) return;
  tchi_free(m->params);
  tchi_free(m->grads);
  memset(m, 0, sizeof *m);
}

tch_status tchi_mlp_copy(tchi_mlp *dst, const tchi_mlp *src)
{
  if (!dst) return tchi_fail(TCH_E_ARG, "mlp_copy: NULL destination");
  memset(dst, 0, sizeof *dst);
  tch_status s = check_mlp(src, "mlp_copy");
  if (s != TCH_OK) return s;
  *dst = *src;
  dst->params = dst->grads = NULL;
  s = tchi_alloc_array(&dst->params, src->n_params + TCHI_GEMM_PAD, sizeof(float), 1, "mlp parameters");
  if (s == TCH_OK) s = tchi_alloc_array(&dst->grads, src->n_params + TCHI_GEMM_PAD, sizeof(float), 1, "mlp gradients");
  if (s != TCH_OK) {
    tchi_mlp_destroy(dst);
    return s;
  }
  memcpy(dst->params, src->params, src->n_params * sizeof(float));
  memcpy(dst->grads, src->grads, src->n_params * sizeof(float));
  return TCH_OK;
}

void tchi_mlp_init_uniform(tchi_mlp *m, tchi_rng *rng)
{
  if (!m || !m->params || !rng) return;
  for (size_t l = 0; l < m->n_layers; l++) {
    double bound = 1.0 / sqrt((double)m->dims[l]);
    size_t nw = m->dims[l] * m->dims[l + 1];
    float *w = m->params + m->w_off[l], *b = m->params + m->b_off[l];
    for (size_t i = 0; i < nw; i++) w[i] = (float)((2.0 * tchi_rng_uniform(rng) - 1.0) * bound);
    for (size_t i = 0; i < m->dims[l + 1]; i++)
      b[i] = (float)((2.0 * tchi_rng_uniform(rng) - 1.0) * bound);
  }
}

void tchi_mlp_zero_last(tchi_mlp *m)
{
  if (!m || !m->params || m->n_layers < 1) return;
  size_t l = m->n_layers - 1;
  memset(m->params + m->w_off[l], 0,
         (m->dims[l] * m->dims[l + 1] + m->dims[l + 1]) * sizeof(float));
}

void tchi_mlp_zero_grad(tchi_mlp *m)
{
  if (m && m->grads) memset(m->grads, 0, m->n_params * sizeof(float));
}

/* ---- workspace ----------------------------------------------------------------------- */
/* Invariant: every buffer that is not NULL holds cap_rows * max_dim floats. Buffers are
 * never aliased, so one workspace can alternate between nets of different depths without
 * reallocating (pre[last] and post[last] hold the same values: no output activation). */
void tchi_mlp_ws_init(tchi_mlp_ws *ws)
{
  if (ws) memset(ws, 0, sizeof *ws);
}

static void ws_free_buffers(tchi_mlp_ws *ws)
{
  for (size_t l = 0; l < TCHI_MLP_MAX_LAYERS; l++) {
    tchi_free(ws->pre[l]);
    tchi_free(ws->post[l]);
    ws->pre[l] = ws->post[l] = NULL;
  }
  tchi_free(ws->dbuf[0]);
  tchi_free(ws->dbuf[1]);
  ws->dbuf[0] = ws->dbuf[1] = NULL;
}

void tchi_mlp_ws_destroy(tchi_mlp_ws *ws)
{
  if (!ws) return;
  ws_free_buffers(ws);
  memset(ws, 0, sizeof *ws);
}

static tch_status ws_alloc(float **p, size_t count)
{
  if (*p) return TCH_OK;
  return tchi_alloc_array(p, count + TCHI_GEMM_PAD, sizeof(float), 0, "mlp workspace");
}

static tch_status ws_reserve(tchi_mlp_ws *ws, const tchi_mlp *m, size_t rows)
{
  size_t L = m->n_layers, md = mlp_max_dim(m);
  if (rows > ws->cap_rows || md > ws->max_dim) {
    size_t cap = ws->cap_rows;
    if (rows > cap) cap = TCHI_MAX(rows, cap + cap / 2);
    size_t mdim = TCHI_MAX(md, ws->max_dim);
    int ovf = 0;
    tchi_mul_size(tchi_mul_size(cap, mdim, &ovf), sizeof(float), &ovf);
    if (ovf) {
      cap = rows;
      ovf = 0;
      tchi_mul_size(tchi_mul_size(cap, mdim, &ovf), sizeof(float), &ovf);
      if (ovf) return tchi_fail(TCH_E_NOMEM, "mlp workspace size overflows (%zu rows)", rows);
    }
    ws_free_buffers(ws);
    ws->cap_rows = cap;
    ws->max_dim = mdim;
  }
  size_t cnt = ws->cap_rows * ws->max_dim;
  tch_status s = TCH_OK;
  for (size_t l = 0; l < L && s == TCH_OK; l++) {
    s = ws_alloc(&ws->pre[l], cnt);
    if (s == TCH_OK) s = ws_alloc(&ws->post[l], cnt);
  }
  if (L >= 2) {
    if (s == TCH_OK) s = ws_alloc(&ws->dbuf[0], cnt);
    if (s == TCH_OK) s = ws_alloc(&ws->dbuf[1], cnt);
  }
  return s;
}

/* ---- forward ------------------------------------------------------------------------- */
static void add_bias(float *y, const float *b, size_t rows, size_t n)
{
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * n;
    for (size_t j = 0; j < n; j++) yr[j] += b[j];
  }
}

/* Layers [start, L): input of layer l is x (l == 0) or post[l - 1]. */
static void forward_layers(const tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws, size_t rows,
                           const float *x, size_t start)
{
  size_t L = m->n_layers;
  for (size_t l = start; l < L; l++) {
    size_t din = m->dims[l], dout = m->dims[l + 1];
    const float *in = l == 0 ? x : ws->post[l - 1];
    tchi_sgemm(g, 0, 0, rows, dout, din, 1.0f, in, din, m->params + m->w_off[l], dout, 0.0f,
              ws->pre[l], dout);
    add_bias(ws->pre[l], m->params + m->b_off[l], rows, dout);
    tchi_act_forward(l + 1 < L ? m->act : TCHI_ACT_NONE, rows * dout, ws->pre[l], ws->post[l]);
  }
}

static tch_status forward_begin(const tchi_mlp *m, tchi_mlp_ws *ws, const float **out,
                                const char *fn)
{
  if (out) *out = NULL;
  tch_status s = check_mlp(m, fn);
  if (s != TCH_OK) return s;
  if (!ws) return tchi_fail(TCH_E_ARG, "%s: NULL workspace", fn);
  if (!out) return tchi_fail(TCH_E_ARG, "%s: NULL output pointer", fn);
  ws->rows = 0;
  ws->x = NULL;
  ws->onehot = NULL;
  ws->onehot_nnz = 0;
  return TCH_OK;
}

static const float *output_of(const tchi_mlp *m, const tchi_mlp_ws *ws)
{
  const float *o = ws->post[m->n_layers - 1];
  return o ? o : empty_out;
}

tch_status tchi_mlp_forward(const tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws,
                            size_t rows, const float *x, const float **out)
{
  tch_status s = forward_begin(m, ws, out, "mlp_forward");
  if (s != TCH_OK) return s;
  if (rows == 0) {
    ws->x = x;
    *out = output_of(m, ws);
    return TCH_OK;
  }
  if (!x) return tchi_fail(TCH_E_ARG, "mlp_forward: NULL input");
  s = ws_reserve(ws, m, rows);
  if (s != TCH_OK) return s;
  forward_layers(m, g, ws, rows, x, 0);
  ws->rows = rows;
  ws->x = x;
  *out = output_of(m, ws);
  return TCH_OK;
}

tch_status tchi_mlp_forward_onehot(const tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws,
                                   size_t rows, size_t nnz, const int32_t *idx,
                                   const float **out)
{
  tch_status s = forward_begin(m, ws, out, "mlp_forward_onehot");
  if (s != TCH_OK) return s;
  if (rows == 0) {
    ws->onehot = idx;
    ws->onehot_nnz = nnz;
    *out = output_of(m, ws);
    return TCH_OK;
  }
  if (nnz > 0 && !idx) return tchi_fail(TCH_E_ARG, "mlp_forward_onehot: NULL indices");
  int ovf = 0;
  size_t total = tchi_mul_size(rows, nnz, &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "mlp_forward_onehot: rows x nnz overflows");
  size_t d0 = m->dims[0], d1 = m->dims[1];
  for (size_t i = 0; i < total; i++)
    if (idx[i] >= 0 && (size_t)idx[i] >= d0)
      return tchi_fail(TCH_E_ARG, "mlp_forward_onehot: index %ld (entry %zu) out of range [0, %zu)",
                       (long)idx[i], i, d0);
  s = ws_reserve(ws, m, rows);
  if (s != TCH_OK) return s;
  const float *W = m->params + m->w_off[0], *b = m->params + m->b_off[0];
  float *y = ws->pre[0];
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * d1;
    memcpy(yr, b, d1 * sizeof *yr);
    for (size_t j = 0; j < nnz; j++) {
      int32_t k = idx[r * nnz + j];
      if (k < 0) continue;
      const float *wr = W + (size_t)k * d1;
      for (size_t c = 0; c < d1; c++) yr[c] += wr[c];
    }
  }
  tchi_act_forward(m->n_layers > 1 ? m->act : TCHI_ACT_NONE, rows * d1, ws->pre[0], ws->post[0]);
  forward_layers(m, g, ws, rows, NULL, 1);
  ws->rows = rows;
  ws->onehot = nnz > 0 ? idx : NULL;
  ws->onehot_nnz = nnz;
  if (!ws->onehot) ws->onehot = empty_idx;   /* nnz == 0: still marks a one-hot forward */
  *out = output_of(m, ws);
  return TCH_OK;
}

/* ---- backward ------------------------------------------------------------------------ */
/* db[j] += sum_r dy[r][j], accumulated in double over column blocks. */
static void add_col_sums(float *db, const float *dy, size_t rows, size_t n)
{
  enum { BLK = 64 };
  double acc[BLK];
  for (size_t j0 = 0; j0 < n; j0 += BLK) {
    size_t nb = TCHI_MIN((size_t)BLK, n - j0);
    for (size_t j = 0; j < nb; j++) acc[j] = 0.0;
    for (size_t r = 0; r < rows; r++) {
      const float *row = dy + r * n + j0;
      for (size_t j = 0; j < nb; j++) acc[j] += row[j];
    }
    for (size_t j = 0; j < nb; j++) db[j0 + j] = (float)(db[j0 + j] + acc[j]);
  }
}

tch_status tchi_mlp_backward(tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws,
                             const float *d_out, float *d_in)
{
  tch_status s = check_mlp(m, "mlp_backward");
  if (s != TCH_OK) return s;
  if (!ws) return tchi_fail(TCH_E_ARG, "mlp_backward: NULL workspace");
  size_t rows = ws->rows, L = m->n_layers;
  if (rows == 0) return TCH_OK;
  if (!d_out) return tchi_fail(TCH_E_ARG, "mlp_backward: NULL output gradient");
  if (!ws->x && !ws->onehot)
    return tchi_fail(TCH_E_ARG, "mlp_backward: no forward to differentiate");
  if (rows > ws->cap_rows || mlp_max_dim(m) > ws->max_dim || !ws->post[L - 1] ||
      (L >= 2 && (!ws->pre[L - 2] || !ws->dbuf[0] || !ws->dbuf[1])))
    return tchi_fail(TCH_E_ARG, "mlp_backward: workspace does not match this mlp");
  const float *dy = d_out;
  int nb = 0;
  for (size_t l = L; l-- > 0;) {
    size_t din = m->dims[l], dout = m->dims[l + 1];
    const float *W = m->params + m->w_off[l];
    float *dW = m->grads + m->w_off[l];
    if (l == 0 && !ws->x) {   /* one-hot input: scatter-add dY rows into rows of dW0 */
      size_t nnz = ws->onehot_nnz;
      for (size_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * dout;
        for (size_t j = 0; j < nnz; j++) {
          int32_t k = ws->onehot[r * nnz + j];
          if (k < 0 || (size_t)k >= din) continue;
          float *dwr = dW + (size_t)k * dout;
          for (size_t c = 0; c < dout; c++) dwr[c] += dyr[c];
        }
      }
    } else {
      const float *X = l == 0 ? ws->x : ws->post[l - 1];
      tchi_sgemm(g, 1, 0, din, dout, rows, 1.0f, X, din, dy, dout, 1.0f, dW, dout);
    }
    add_col_sums(m->grads + m->b_off[l], dy, rows, dout);
    if (l > 0) {
      float *buf = ws->dbuf[nb];
      nb ^= 1;
      tchi_sgemm(g, 0, 1, rows, din, dout, 1.0f, dy, dout, W, dout, 0.0f, buf, din);
      tchi_act_backward(m->act, rows * din, ws->pre[l - 1], ws->post[l - 1], buf, buf);
      dy = buf;
    } else if (d_in && ws->x) {
      tchi_sgemm(g, 0, 1, rows, din, dout, 1.0f, dy, dout, W, dout, 0.0f, d_in, din);
    }
  }
  return TCH_OK;
}
