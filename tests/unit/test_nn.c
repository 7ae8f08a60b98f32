/* nn: BLIS gemm against the reference for every runnable kernel, MLP gradients against
 * double-precision finite differences (dense and one-hot inputs), workspace reuse, Adam
 * against torch's update rule, gradient clipping, initialisation, allocation failures. */
#include <math.h>
#include <string.h>
#include "../tch_check.h"
#include "nn/nn.h"

static void fill_uniform(tchi_rng *r, float *x, size_t n, double lo, double hi)
{
  for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * tchi_rng_uniform(r));
}

/* ---- gemm ---------------------------------------------------------------------------- */
static const char *const kernel_names[] = {
  "auto", "native", "generic", "skx", "knl", "haswell", "sandybridge", "penryn", "zen3",
  "zen2", "zen", "excavator", "steamroller", "piledriver", "bulldozer"};
#define N_KERNEL_NAMES (sizeof kernel_names / sizeof kernel_names[0])

static int cpu_has_avx512(void)
{
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}

static int cpu_has_avx2_fma(void)
{
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return 0;
#endif
}

/* scale[i][j] = |alpha| sum_p |a_ip b_pj| + |beta c0_ij|: the float error bound's scale */
static void gemm_scale(int ta, int tb, size_t m, size_t n, size_t k, float alpha,
                       const float *a, size_t lda, const float *b, size_t ldb, float beta,
                       const float *c0, double *scale, size_t ldc)
{
  for (size_t i = 0; i < m; i++)
    for (size_t j = 0; j < n; j++) {
      double s = 0.0;
      for (size_t p = 0; p < k; p++) {
        double av = ta ? a[p * lda + i] : a[i * lda + p];
        double bv = tb ? b[j * ldb + p] : b[p * ldb + j];
        s += fabs(av * bv);
      }
      double sc = fabs(alpha) * s + (beta != 0.0f ? fabs(beta * c0[i * ldc + j]) : 0.0);
      scale[i * ldc + j] = sc > 0 ? sc : 1.0;
    }
}

START_TEST(gemm_kernels_match_reference)
{
  tchi_gemm gs[N_KERNEL_NAMES];
  const char *names[N_KERNEL_NAMES];
  size_t ng = 0;
  int explicit_cntx = 0;
  for (size_t i = 0; i < N_KERNEL_NAMES; i++) {
    tchi_gemm g;
    tch_status s = tchi_gemm_init(&g, kernel_names[i], 1);
    if (i < 2) ck_assert_msg(s == TCH_OK, "%s: %s", kernel_names[i], tch_last_error());
    if (s != TCH_OK) {
      ck_assert_int_eq(s, TCH_E_ARG);
      ck_assert(strlen(tch_last_error()) > 0);
      if (strcmp(kernel_names[i], "generic") == 0)   /* shared BLIS: only auto/native */
        ck_assert_ptr_nonnull(strstr(tch_last_error(), "static"));
      continue;
    }
    if (strcmp(kernel_names[i], "generic") == 0) explicit_cntx = 1;
    ck_assert(strlen(g.name) > 0);
    gs[ng] = g;
    names[ng++] = kernel_names[i];
  }
  if (explicit_cntx) {   /* CPU gating agrees with the CPU's features */
    tchi_gemm g;
    ck_assert_int_eq(tchi_gemm_init(&g, "skx", 1) == TCH_OK, cpu_has_avx512() && cpu_has_avx2_fma());
    ck_assert_int_eq(tchi_gemm_init(&g, "haswell", 1) == TCH_OK, cpu_has_avx2_fma());
    ck_assert_int_eq(tchi_gemm_init(&g, "zen3", 1) == TCH_OK, cpu_has_avx2_fma());
    ck_assert_int_eq(tchi_gemm_init(&g, "auto", 1), TCH_OK);
    if (cpu_has_avx512() && cpu_has_avx2_fma())
      ck_assert_ptr_nonnull(strstr(g.name, "+skx"));
    else if (cpu_has_avx2_fma())
      ck_assert(strcmp(g.name, "zen3") == 0 || strcmp(g.name, "haswell") == 0);
  }
  /* two threads on a product large enough to be split */
  {
    tchi_gemm g2;
    ck_assert_int_eq(tchi_gemm_init(&g2, "auto", 2), TCH_OK);
    const size_t m = 160, n = 200, k = 300;
    float *a = malloc(m * k * sizeof *a), *b = malloc(k * n * sizeof *b);
    float *c1 = malloc(m * n * sizeof *c1), *c2 = malloc(m * n * sizeof *c2);
    tchi_rng r;
    tchi_rng_seed(&r, 12, 0);
    fill_uniform(&r, a, m * k, -1, 1);
    fill_uniform(&r, b, k * n, -1, 1);
    tchi_sgemm(&gs[0], 0, 0, m, n, k, 1, a, k, b, n, 0, c1, n);
    tchi_sgemm(&g2, 0, 0, m, n, k, 1, a, k, b, n, 0, c2, n);
    ck_assert_int_eq(memcmp(c1, c2, m * n * sizeof *c1), 0);   /* same bits */
    tchi_gemm_ref(0, 0, m, n, k, 1, a, k, b, n, 0, c1, n);
    double e = 0;
    for (size_t i = 0; i < m * n; i++) e = fmax(e, fabs(c1[i] - c2[i]));
    ck_assert_double_lt(e, 1e-4);
    free(a); free(b); free(c1); free(c2);
  }

  static const size_t sz[] = {1, 3, 17, 64, 130};
  enum { NS = sizeof sz / sizeof sz[0], MAXD = 130, PAD = 3 };
  size_t cap = (MAXD + PAD) * (MAXD + PAD);
  float *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b), *c0 = malloc(cap * sizeof *c0);
  float *c = malloc(cap * sizeof *c), *ref = malloc(cap * sizeof *ref);
  double *scale = malloc(cap * sizeof *scale);
  tchi_rng r;
  tchi_rng_seed(&r, 11, 0);
  fill_uniform(&r, a, cap, -1, 1);
  fill_uniform(&r, b, cap, -1, 1);
  fill_uniform(&r, c0, cap, -1, 1);
  int variant = 0;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++)
      for (size_t im = 0; im < NS; im++)
        for (size_t in = 0; in < NS; in++)
          for (size_t ik = 0; ik < NS; ik++) {
            size_t m = sz[im], n = sz[in], k = sz[ik];
            int v = variant++ % 3;   /* 0: tight, beta 0; 1: padded, beta 0.5; 2: tight, beta 1 */
            size_t pad = v == 1 ? PAD : 0;
            size_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
            float alpha = v == 1 ? -0.75f : 1.0f, beta = v == 0 ? 0.0f : v == 1 ? 0.5f : 1.0f;
            memcpy(ref, c0, cap * sizeof *ref);
            tchi_gemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ref, ldc);
            gemm_scale(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, scale, ldc);
            for (size_t q = 0; q < ng; q++) {
              memcpy(c, c0, cap * sizeof *c);
              if (beta == 0.0f)   /* beta 0 must overwrite, even NaN */
                for (size_t i = 0; i < m; i++) c[i * ldc] = NAN;
              tchi_sgemm(&gs[q], ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
              double e = 0.0;
              size_t outside = 0;   /* entries outside the m x n block must be untouched */
              for (size_t i = 0; i < m; i++) {
                for (size_t j = 0; j < n; j++) {
                  double d = fabs((double)c[i * ldc + j] - ref[i * ldc + j]) / scale[i * ldc + j];
                  if (!(d <= e)) e = d;   /* NaN sticks */
                }
                for (size_t j = n; j < ldc; j++) outside += c[i * ldc + j] != c0[i * ldc + j];
              }
              for (size_t t = m * ldc; t < cap; t++) outside += c[t] != c0[t];
              if (!(e <= 1e-5) || outside)
                ck_abort_msg("%s (%s) ta=%d tb=%d m=%zu n=%zu k=%zu: rel err %g, %zu touched",
                             names[q], gs[q].name, ta, tb, m, n, k, e, outside);
            }
          }
  free(a); free(b); free(c0); free(c); free(ref); free(scale);
}
END_TEST

START_TEST(gemm_edge_cases_and_errors)
{
  tchi_gemm g;
  ck_assert_int_eq(tchi_gemm_init(&g, "no-such-kernel", 1), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "no-such-kernel"));
  ck_assert_int_eq(tchi_gemm_init(&g, "auto", 0), TCH_E_ARG);
  ck_assert_int_eq(tchi_gemm_init(NULL, "auto", 1), TCH_E_ARG);
  ck_assert_int_eq(tchi_gemm_init(&g, "auto", 1), TCH_OK);

  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, -1, 2, 0.5f, 3}, c[4] = {1, 2, 3, 4};
  uint64_t f0 = tchi_gemm_flops();
  tchi_sgemm(&g, 0, 0, 0, 2, 3, 1, a, 3, b, 2, 0, c, 2);   /* m = 0: no-op */
  tchi_sgemm(&g, 0, 0, 2, 0, 3, 1, a, 3, b, 2, 0, c, 2);   /* n = 0: no-op */
  ck_assert(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
  tchi_sgemm(&g, 0, 0, 2, 2, 0, 1, a, 3, b, 2, 2.0f, c, 2);   /* k = 0: C = beta C */
  ck_assert(c[0] == 2 && c[1] == 4 && c[2] == 6 && c[3] == 8);
  c[1] = NAN;
  tchi_sgemm(&g, 0, 0, 2, 2, 0, 1, a, 3, b, 2, 0.0f, c, 2);   /* k = 0, beta 0: zeros */
  ck_assert(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
  ck_assert_uint_eq(tchi_gemm_flops() - f0, 0);
  tchi_sgemm(&g, 0, 0, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2);      /* 2x3 * 3x2 */
  ck_assert_uint_eq(tchi_gemm_flops() - f0, 2 * 2 * 2 * 3);
  float ref[4];
  tchi_gemm_ref(0, 0, 2, 2, 3, 1, a, 3, b, 2, 0, ref, 2);
  for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(c[i], ref[i], 1e-6);
  ck_assert_float_eq_tol(ref[0], 1 * 1 + 2 * -1 + 3 * 0.5f, 1e-6);
  /* NULL handle = native context; a broadcast row (lda 0) goes through the safe path */
  tchi_sgemm(NULL, 0, 0, 2, 2, 3, 1, a, 0, b, 2, 0, c, 2);
  tchi_gemm_ref(0, 0, 2, 2, 3, 1, a, 0, b, 2, 0, ref, 2);
  for (int i = 0; i < 4; i++) ck_assert_float_eq_tol(c[i], ref[i], 1e-6);
  ck_assert(c[0] == c[2] && c[1] == c[3]);
}
END_TEST

/* ---- MLP: double-precision reference ---------------------------------------------------- */
static double act_d(tchi_act a, double x)
{
  switch (a) {
  case TCHI_ACT_LEAKY_RELU: return x > 0 ? x : 0.01 * x;
  case TCHI_ACT_RELU: return x > 0 ? x : 0.0;
  case TCHI_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case TCHI_ACT_SILU: return x / (1.0 + exp(-x));
  case TCHI_ACT_TANH: return tanh(x);
  default: return x;
  }
}

#define REF_MAXD 16
#define REF_MAXR 8
/* y (rows x dims[L]) from double params in the tchi_mlp layout. */
static void ref_forward(const tchi_mlp *m, const double *p, size_t rows, const double *x,
                        double *y)
{
  double h[2][REF_MAXR * REF_MAXD];
  const double *in = x;
  for (size_t l = 0; l < m->n_layers; l++) {
    size_t din = m->dims[l], dout = m->dims[l + 1];
    int last = l + 1 == m->n_layers;
    double *o = last ? y : h[l & 1];
    for (size_t r = 0; r < rows; r++)
      for (size_t j = 0; j < dout; j++) {
        double s = p[m->b_off[l] + j];
        for (size_t i = 0; i < din; i++) s += in[r * din + i] * p[m->w_off[l] + i * dout + j];
        o[r * dout + j] = last ? s : act_d(m->act, s);
      }
    in = o;
  }
}

static double ref_loss(const tchi_mlp *m, const double *p, size_t rows, const double *x,
                       const float *c)
{
  double y[REF_MAXR * REF_MAXD], s = 0.0;
  ref_forward(m, p, rows, x, y);
  for (size_t i = 0; i < rows * m->dims[m->n_layers]; i++) s += (double)c[i] * y[i];
  return s;
}

static void assert_grad_close(double analytic, double numeric, const char *what, size_t i)
{
  double d = fabs(analytic - numeric);
  ck_assert_msg(d <= 1e-4 || d <= 1e-3 * fmax(fabs(analytic), fabs(numeric)),
                "%s[%zu]: analytic %.9g vs finite difference %.9g", what, i, analytic, numeric);
}

static void make_net(tchi_mlp *m, size_t n_layers, const size_t *dims, tchi_act act,
                     uint64_t seed)
{
  ck_assert_int_eq(tchi_mlp_init(m, n_layers, dims, act), TCH_OK);
  tchi_rng r;
  tchi_rng_seed(&r, seed, tchi_stream_id(TCHI_STREAM_INIT, 0));
  tchi_mlp_init_uniform(m, &r);
  for (size_t i = 0; i < m->n_params; i++) m->params[i] *= 2.5f;   /* reach the nonlinearity */
}

START_TEST(mlp_gradients_match_double_finite_differences)
{
  static const tchi_act acts[] = {TCHI_ACT_LEAKY_RELU, TCHI_ACT_RELU, TCHI_ACT_GELU,
                                  TCHI_ACT_SILU, TCHI_ACT_TANH, TCHI_ACT_NONE};
  const size_t dims[] = {5, 7, 6, 3}, rows = 4;
  tchi_gemm g;
  ck_assert_int_eq(tchi_gemm_init(&g, "auto", 1), TCH_OK);
  for (size_t ai = 0; ai < sizeof acts / sizeof acts[0]; ai++) {
    tchi_mlp m;
    make_net(&m, 3, dims, acts[ai], 100 + ai);
    tchi_rng r;
    tchi_rng_seed(&r, 200 + ai, 0);
    float x[4 * 5], c[4 * 3], d_in[4 * 5];
    fill_uniform(&r, x, 20, -1.5, 1.5);
    fill_uniform(&r, c, 12, -1, 1);
    tchi_mlp_ws ws;
    tchi_mlp_ws_init(&ws);
    const float *out;
    ck_assert_int_eq(tchi_mlp_forward(&m, &g, &ws, rows, x, &out), TCH_OK);
    double xd[20], yd[12];
    for (int i = 0; i < 20; i++) xd[i] = x[i];
    double *pd = malloc(m.n_params * sizeof *pd);
    for (size_t i = 0; i < m.n_params; i++) pd[i] = m.params[i];
    ref_forward(&m, pd, rows, xd, yd);
    for (int i = 0; i < 12; i++) ck_assert_double_lt(fabs(out[i] - yd[i]), 1e-5 * (1 + fabs(yd[i])));
    tchi_mlp_zero_grad(&m);
    ck_assert_int_eq(tchi_mlp_backward(&m, &g, &ws, c, d_in), TCH_OK);
    const double h = 1e-6;
    for (size_t i = 0; i < m.n_params; i++) {
      double p0 = pd[i];
      pd[i] = p0 + h;
      double lp = ref_loss(&m, pd, rows, xd, c);
      pd[i] = p0 - h;
      double lm = ref_loss(&m, pd, rows, xd, c);
      pd[i] = p0;
      assert_grad_close(m.grads[i], (lp - lm) / (2 * h), tchi_act_name(acts[ai]), i);
    }
    for (size_t i = 0; i < 20; i++) {   /* dL/dx of the dense path */
      double x0 = xd[i];
      xd[i] = x0 + h;
      double lp = ref_loss(&m, pd, rows, xd, c);
      xd[i] = x0 - h;
      double lm = ref_loss(&m, pd, rows, xd, c);
      xd[i] = x0;
      assert_grad_close(d_in[i], (lp - lm) / (2 * h), "d_in", i);
    }
    /* gradients accumulate: a second backward doubles them */
    float *g1 = malloc(m.n_params * sizeof *g1);
    memcpy(g1, m.grads, m.n_params * sizeof *g1);
    ck_assert_int_eq(tchi_mlp_backward(&m, &g, &ws, c, NULL), TCH_OK);
    for (size_t i = 0; i < m.n_params; i++)
      ck_assert_float_eq_tol(m.grads[i], 2 * g1[i], 1e-6 * (1 + fabs(g1[i])));
    free(g1);
    free(pd);
    tchi_mlp_ws_destroy(&ws);
    tchi_mlp_destroy(&m);
  }
}
END_TEST

static void onehot_vs_dense(size_t n_layers, const size_t *dims, tchi_act act)
{
  enum { ROWS = 5, NNZ = 3 };
  const size_t d0 = dims[0], dl = dims[n_layers];
  tchi_gemm g;
  ck_assert_int_eq(tchi_gemm_init(&g, "auto", 1), TCH_OK);
  tchi_mlp a, b;
  make_net(&a, n_layers, dims, act, 7);
  ck_assert_int_eq(tchi_mlp_copy(&b, &a), TCH_OK);
  /* -1 entries are skipped; a repeated index counts twice */
  const int32_t idx[ROWS * NNZ] = {0, 3, 5, 1, -1, 2, 4, 4, 0, -1, -1, -1, 5, 2, 1};
  float x[ROWS * 16] = {0};
  ck_assert_uint_le(d0, 16);
  for (size_t r = 0; r < ROWS; r++)
    for (size_t j = 0; j < NNZ; j++)
      if (idx[r * NNZ + j] >= 0) x[r * d0 + (size_t)idx[r * NNZ + j]] += 1.0f;
  tchi_mlp_ws wa, wb;
  tchi_mlp_ws_init(&wa);
  tchi_mlp_ws_init(&wb);
  const float *oa, *ob;
  ck_assert_int_eq(tchi_mlp_forward_onehot(&a, &g, &wa, ROWS, NNZ, idx, &oa), TCH_OK);
  ck_assert_int_eq(tchi_mlp_forward(&b, &g, &wb, ROWS, x, &ob), TCH_OK);
  for (size_t i = 0; i < ROWS * dl; i++)
    ck_assert_float_eq_tol(oa[i], ob[i], 1e-5 * (1 + fabs(ob[i])));
  float c[ROWS * 16], d_in[ROWS * 16];
  tchi_rng r;
  tchi_rng_seed(&r, 3, 0);
  fill_uniform(&r, c, ROWS * dl, -1, 1);
  ck_assert_int_eq(tchi_mlp_backward(&a, &g, &wa, c, d_in), TCH_OK);   /* d_in ignored */
  ck_assert_int_eq(tchi_mlp_backward(&b, &g, &wb, c, NULL), TCH_OK);
  for (size_t i = 0; i < a.n_params; i++)
    ck_assert_msg(fabs(a.grads[i] - b.grads[i]) <= 1e-5 * (1 + fabs(b.grads[i])),
                  "grad %zu: one-hot %g dense %g", i, a.grads[i], b.grads[i]);
  /* rows of W0 never referenced get no gradient */
  for (size_t j = 0; j < dims[1]; j++) ck_assert(a.grads[a.w_off[0] + 6 * dims[1] + j] == 0.0f);
  tchi_mlp_ws_destroy(&wa);
  tchi_mlp_ws_destroy(&wb);
  tchi_mlp_destroy(&a);
  tchi_mlp_destroy(&b);
}

START_TEST(mlp_onehot_matches_dense)
{
  const size_t d3[] = {8, 7, 5, 2};
  onehot_vs_dense(3, d3, TCHI_ACT_GELU);
  onehot_vs_dense(3, d3, TCHI_ACT_LEAKY_RELU);
  const size_t d1[] = {8, 4};
  onehot_vs_dense(1, d1, TCHI_ACT_RELU);   /* the single layer is the gather itself */

  tchi_mlp m;
  make_net(&m, 1, d1, TCHI_ACT_RELU, 1);
  tchi_mlp_ws ws;
  tchi_mlp_ws_init(&ws);
  const float *out;
  const int32_t bad[2] = {0, 8};
  ck_assert_int_eq(tchi_mlp_forward_onehot(&m, NULL, &ws, 1, 2, bad, &out), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_forward_onehot(&m, NULL, &ws, 1, 2, NULL, &out), TCH_E_ARG);
  /* nnz 0: output is the bias */
  ck_assert_int_eq(tchi_mlp_forward_onehot(&m, NULL, &ws, 2, 0, NULL, &out), TCH_OK);
  for (size_t j = 0; j < 4; j++) ck_assert(out[4 + j] == m.params[m.b_off[0] + j]);
  float d[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  tchi_mlp_zero_grad(&m);
  ck_assert_int_eq(tchi_mlp_backward(&m, NULL, &ws, d, NULL), TCH_OK);
  for (size_t j = 0; j < 4; j++) ck_assert(m.grads[m.b_off[0] + j] == 2.0f);
  tchi_mlp_ws_destroy(&ws);
  tchi_mlp_destroy(&m);
}
END_TEST

START_TEST(mlp_argument_errors)
{
  tchi_mlp m;
  const size_t dims[] = {3, 4, 2}, zero[] = {3, 0, 2};
  size_t many[TCHI_MLP_MAX_LAYERS + 2];
  for (size_t i = 0; i < TCHI_MLP_MAX_LAYERS + 2; i++) many[i] = 2;
  ck_assert_int_eq(tchi_mlp_init(NULL, 2, dims, TCHI_ACT_RELU), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_init(&m, 2, NULL, TCHI_ACT_RELU), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_init(&m, 0, dims, TCHI_ACT_RELU), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_init(&m, TCHI_MLP_MAX_LAYERS + 1, many, TCHI_ACT_RELU), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_init(&m, 2, zero, TCHI_ACT_RELU), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_init(&m, 2, dims, (tchi_act)42), TCH_E_ARG);
  tchi_mlp_destroy(&m);   /* safe after a failed init */
  ck_assert_int_eq(tchi_mlp_init(&m, TCHI_MLP_MAX_LAYERS, many, TCHI_ACT_RELU), TCH_OK);
  tchi_mlp_destroy(&m);
  ck_assert_int_eq(tchi_mlp_init(&m, 2, dims, TCHI_ACT_TANH), TCH_OK);
  ck_assert_uint_eq(m.n_params, 3 * 4 + 4 + 4 * 2 + 2);
  ck_assert_uint_eq(m.w_off[1], 16);
  ck_assert_uint_eq(m.b_off[1], 24);
  tchi_mlp_ws ws;
  tchi_mlp_ws_init(&ws);
  const float *out;
  float x[3] = {1, 2, 3}, d[2] = {1, 1};
  ck_assert_int_eq(tchi_mlp_forward(NULL, NULL, &ws, 1, x, &out), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_forward(&m, NULL, NULL, 1, x, &out), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_forward(&m, NULL, &ws, 1, NULL, &out), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_forward(&m, NULL, &ws, 1, x, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_backward(&m, NULL, &ws, d, NULL), TCH_OK);   /* nothing to do */
  ck_assert_int_eq(tchi_mlp_forward(&m, NULL, &ws, 0, NULL, &out), TCH_OK);   /* rows 0 */
  ck_assert_ptr_nonnull(out);
  ck_assert_int_eq(tchi_mlp_backward(&m, NULL, &ws, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tchi_mlp_forward(&m, NULL, &ws, 1, x, &out), TCH_OK);
  ck_assert_int_eq(tchi_mlp_backward(&m, NULL, &ws, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_backward(NULL, NULL, &ws, d, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_mlp_backward(&m, NULL, NULL, d, NULL), TCH_E_ARG);
  tchi_mlp_ws_destroy(&ws);
  tchi_mlp_destroy(&m);
  ck_assert_int_eq(tchi_mlp_forward(&m, NULL, &ws, 1, x, &out), TCH_E_ARG);   /* destroyed */

  ck_assert_int_eq(tchi_act_from_name("leaky_relu"), TCHI_ACT_LEAKY_RELU);
  ck_assert_int_eq(tchi_act_from_name("relu"), TCHI_ACT_RELU);
  ck_assert_int_eq(tchi_act_from_name("gelu"), TCHI_ACT_GELU);
  ck_assert_int_eq(tchi_act_from_name("silu"), TCHI_ACT_SILU);
  ck_assert_int_eq(tchi_act_from_name("tanh"), TCHI_ACT_TANH);
  ck_assert_int_eq(tchi_act_from_name("sigmoid"), -1);
  ck_assert_int_eq(tchi_act_from_name(NULL), -1);
  for (int a = 1; a <= 5; a++) ck_assert_int_eq(tchi_act_from_name(tchi_act_name((tchi_act)a)), a);
}
END_TEST

START_TEST(mlp_workspace_reused_without_allocation)
{
  const size_t big[] = {6, 16, 16, 16, 3}, small[] = {6, 5, 3}, wide[] = {6, 40, 3};
  tchi_gemm g;
  ck_assert_int_eq(tchi_gemm_init(&g, "auto", 1), TCH_OK);
  tchi_mlp mb, ms, mw;
  make_net(&mb, 4, big, TCHI_ACT_SILU, 1);
  make_net(&ms, 2, small, TCHI_ACT_SILU, 2);
  make_net(&mw, 2, wide, TCHI_ACT_SILU, 3);
  float x[20 * 6], d[20 * 3];
  tchi_rng r;
  tchi_rng_seed(&r, 5, 0);
  fill_uniform(&r, x, 120, -1, 1);
  fill_uniform(&r, d, 60, -1, 1);
  tchi_mlp_ws ws;
  tchi_mlp_ws_init(&ws);
  const float *out;
  ck_assert_int_eq(tchi_mlp_forward(&mb, &g, &ws, 10, x, &out), TCH_OK);
  ck_assert_int_eq(tchi_mlp_backward(&mb, &g, &ws, d, NULL), TCH_OK);
  tchi_alloc_fail_at(0);   /* resets the allocation counter */
  for (int it = 0; it < 3; it++) {
    ck_assert_int_eq(tchi_mlp_forward(&mb, &g, &ws, 10 - it, x, &out), TCH_OK);
    ck_assert_int_eq(tchi_mlp_backward(&mb, &g, &ws, d, NULL), TCH_OK);
    ck_assert_int_eq(tchi_mlp_forward(&ms, &g, &ws, 10, x, &out), TCH_OK);   /* shallower */
    ck_assert_int_eq(tchi_mlp_backward(&ms, &g, &ws, d, NULL), TCH_OK);
  }
  ck_assert_uint_eq(tchi_alloc_count(), 0);
  /* the same workspace serves shallower, deeper and wider nets: results match a fresh one */
  const tchi_mlp *nets[] = {&ms, &mb, &mw, &ms, &mb};
  size_t rows[] = {20, 7, 20, 3, 20};
  for (int q = 0; q < 5; q++) {
    tchi_mlp_ws fresh;
    tchi_mlp_ws_init(&fresh);
    const float *o1, *o2;
    ck_assert_int_eq(tchi_mlp_forward(nets[q], &g, &ws, rows[q], x, &o1), TCH_OK);
    ck_assert_int_eq(tchi_mlp_forward(nets[q], &g, &fresh, rows[q], x, &o2), TCH_OK);
    ck_assert_int_eq(memcmp(o1, o2, rows[q] * 3 * sizeof(float)), 0);
    size_t last = nets[q]->n_layers - 1;
    ck_assert_int_eq(memcmp(ws.pre[last], ws.post[last], rows[q] * 3 * sizeof(float)), 0);
    tchi_mlp_ws_destroy(&fresh);
  }
  tchi_mlp_ws_destroy(&ws);
  tchi_mlp_ws_destroy(&ws);   /* idempotent */
  tchi_mlp_destroy(&mb);
  tchi_mlp_destroy(&ms);
  tchi_mlp_destroy(&mw);
}
END_TEST

START_TEST(mlp_init_uniform_bounds_and_reproducible)
{
  const size_t dims[] = {5, 30, 4};
  tchi_mlp a, b, c;
  ck_assert_int_eq(tchi_mlp_init(&a, 2, dims, TCHI_ACT_GELU), TCH_OK);
  ck_assert_int_eq(tchi_mlp_init(&b, 2, dims, TCHI_ACT_GELU), TCH_OK);
  ck_assert_int_eq(tchi_mlp_init(&c, 2, dims, TCHI_ACT_GELU), TCH_OK);
  for (size_t i = 0; i < a.n_params; i++) ck_assert(a.params[i] == 0.0f && a.grads[i] == 0.0f);
  tchi_rng ra, rb, rc;
  tchi_rng_seed(&ra, 9, 1);
  tchi_rng_seed(&rb, 9, 1);
  tchi_rng_seed(&rc, 10, 1);
  tchi_mlp_init_uniform(&a, &ra);
  tchi_mlp_init_uniform(&b, &rb);
  tchi_mlp_init_uniform(&c, &rc);
  ck_assert_int_eq(memcmp(a.params, b.params, a.n_params * sizeof(float)), 0);
  ck_assert_int_ne(memcmp(a.params, c.params, a.n_params * sizeof(float)), 0);
  for (size_t l = 0; l < 2; l++) {
    double bound = 1.0 / sqrt((double)dims[l]), mx = 0, sum = 0;
    size_t n = dims[l] * dims[l + 1] + dims[l + 1];   /* W then b, contiguous */
    for (size_t i = 0; i < n; i++) {
      double v = a.params[a.w_off[l] + i];
      ck_assert_double_le(fabs(v), bound);
      mx = fmax(mx, fabs(v));
      sum += v;
    }
    ck_assert_double_gt(mx, 0.9 * bound);
    ck_assert_double_lt(fabs(sum / n), 0.5 * bound);
  }
  /* the order of draws is W0 row-major, b0, W1, b1 */
  tchi_rng_seed(&ra, 9, 1);
  ck_assert(a.params[0] == (float)((2.0 * tchi_rng_uniform(&ra) - 1.0) / sqrt(5.0)));
  ck_assert(a.params[1] == (float)((2.0 * tchi_rng_uniform(&ra) - 1.0) / sqrt(5.0)));
  tchi_mlp_zero_last(&a);
  for (size_t i = a.w_off[1]; i < a.n_params; i++) ck_assert(a.params[i] == 0.0f);
  ck_assert(a.params[0] == b.params[0]);
  tchi_mlp_destroy(&a);
  tchi_mlp_destroy(&b);
  tchi_mlp_destroy(&c);
}
END_TEST

/* ---- Adam ------------------------------------------------------------------------------ */
START_TEST(adam_converges_on_quadratic)
{
  enum { N = 12 };
  float p[N], gr[N];
  double pd[3], gd[3], a[N + 3], c[N + 3];
  tchi_rng r;
  tchi_rng_seed(&r, 4, 0);
  for (int i = 0; i < N + 3; i++) {
    a[i] = 0.5 + 4.5 * tchi_rng_uniform(&r);
    c[i] = -2 + 4 * tchi_rng_uniform(&r);
  }
  for (int i = 0; i < N; i++) p[i] = 0;
  for (int i = 0; i < 3; i++) pd[i] = 0;
  tchi_param_group groups[2] = {
    {.p = p, .g = gr, .n = N, .lr = 0.05},
    {.pd = pd, .gd = gd, .n = 3, .lr = 0.05},
  };
  tchi_adam opt;
  ck_assert_int_eq(tchi_adam_init(&opt, 2, groups), TCH_OK);
  int step;
  for (step = 0; step < 5000; step++) {
    double worst = 0;
    for (int i = 0; i < N; i++) {
      gr[i] = (float)(a[i] * (p[i] - c[i]));
      worst = fmax(worst, fabs(p[i] - c[i]));
    }
    for (int i = 0; i < 3; i++) {
      gd[i] = a[N + i] * (pd[i] - c[N + i]);
      worst = fmax(worst, fabs(pd[i] - c[N + i]));
    }
    if (worst < 1e-4) break;
    tchi_adam_step(&opt);
  }
  ck_assert_msg(step < 5000, "Adam did not reach 1e-4 in 5000 steps");
  ck_assert_uint_eq(opt.t, (uint64_t)step);
  tchi_adam_destroy(&opt);
}
END_TEST

START_TEST(adam_matches_torch_update)
{
  /* first step: p - lr * g / (|g| + eps) */
  float p[4] = {1.0f, -0.5f, 0.25f, 2.0f}, g[4] = {0.3f, -2.0f, 1e-3f, -0.05f}, p0[4];
  memcpy(p0, p, sizeof p);
  tchi_param_group grp = {.p = p, .g = g, .n = 4, .lr = 0.01};
  tchi_adam opt;
  ck_assert_int_eq(tchi_adam_init(&opt, 1, &grp), TCH_OK);
  tchi_adam_step(&opt);
  for (int i = 0; i < 4; i++) {
    double expect = p0[i] - 0.01 * (g[i] > 0 ? 1 : -1);
    ck_assert_double_lt(fabs(p[i] - expect), 1e-6);
  }
  tchi_adam_destroy(&opt);

  /* several steps with weight decay against torch's formulas, written out here */
  double q[3] = {0.5, -1.0, 2.0}, gq[3], rq[3] = {0.5, -1.0, 2.0}, m[3] = {0}, v[3] = {0};
  tchi_param_group gd = {.pd = q, .gd = gq, .n = 3, .lr = 0.003, .weight_decay = 0.1};
  ck_assert_int_eq(tchi_adam_init(&opt, 1, &gd), TCH_OK);
  for (int t = 1; t <= 20; t++) {
    for (int i = 0; i < 3; i++) gq[i] = sin(t + i) * (i + 1);
    tchi_adam_step(&opt);
    for (int i = 0; i < 3; i++) {
      double gg = sin(t + i) * (i + 1) + 0.1 * rq[i];
      m[i] = 0.9 * m[i] + 0.1 * gg;
      v[i] = 0.999 * v[i] + 0.001 * gg * gg;
      double denom = sqrt(v[i]) / sqrt(1 - pow(0.999, t)) + 1e-8;
      rq[i] -= 0.003 / (1 - pow(0.9, t)) * m[i] / denom;
      ck_assert_double_lt(fabs(q[i] - rq[i]), 1e-12);
    }
  }
  tchi_adam_destroy(&opt);

  tchi_param_group bad = {.p = p, .n = 4, .lr = 0.01};   /* no gradient */
  ck_assert_int_eq(tchi_adam_init(&opt, 1, &bad), TCH_E_ARG);
  bad.g = g;
  bad.lr = -1;
  ck_assert_int_eq(tchi_adam_init(&opt, 1, &bad), TCH_E_ARG);
  ck_assert_int_eq(tchi_adam_init(&opt, 0, &grp), TCH_E_ARG);
  ck_assert_int_eq(tchi_adam_init(&opt, TCHI_ADAM_MAX_GROUPS + 1, &grp), TCH_E_ARG);
  tchi_adam_destroy(&opt);
}
END_TEST

START_TEST(clip_grad_norm_scales_to_max)
{
  float g1[3] = {3, 0, 4};
  double g2[2] = {0, 12};
  tchi_param_group groups[2] = {{.g = g1, .n = 3}, {.gd = g2, .n = 2}};
  ck_assert_double_eq_tol(tchi_grad_norm(groups, 2), 13.0, 1e-12);
  ck_assert_double_eq_tol(tchi_clip_grad_norm(groups, 2, 0.0), 13.0, 1e-12);   /* no clip */
  ck_assert(g1[0] == 3 && g2[1] == 12);
  ck_assert_double_eq_tol(tchi_clip_grad_norm(groups, 2, 100.0), 13.0, 1e-12);
  ck_assert(g1[0] == 3 && g2[1] == 12);
  ck_assert_double_eq_tol(tchi_clip_grad_norm(groups, 2, 1.3), 13.0, 1e-12);
  double coef = 1.3 / (13.0 + 1e-6);
  ck_assert_double_eq_tol(g1[0], 3 * coef, 1e-7);
  ck_assert_double_eq_tol(g2[1], 12 * coef, 1e-15);
  ck_assert_double_eq_tol(tchi_grad_norm(groups, 2), 1.3, 1e-6);
  g1[1] = NAN;
  ck_assert(isnan(tchi_clip_grad_norm(groups, 2, 1.0)));
}
END_TEST

/* ---- allocation failures ---------------------------------------------------------------- */
static tch_status mlp_session(int onehot)
{
  const size_t dims[] = {6, 9, 9, 2};
  float x[3 * 6] = {0.5f, -1, 2}, d[3 * 2] = {1, -1, 0.5f, 2, 0, 1};
  const int32_t idx[3 * 2] = {0, 5, 1, -1, 3, 3};
  tchi_mlp m, cp;
  tchi_mlp_ws ws;
  tchi_mlp_ws_init(&ws);
  tch_status s = tchi_mlp_init(&m, 3, dims, TCHI_ACT_TANH);
  if (s == TCH_OK) {
    const float *out;
    s = onehot ? tchi_mlp_forward_onehot(&m, NULL, &ws, 3, 2, idx, &out)
               : tchi_mlp_forward(&m, NULL, &ws, 3, x, &out);
    if (s == TCH_OK) s = tchi_mlp_backward(&m, NULL, &ws, d, NULL);
    if (s == TCH_OK) {
      s = tchi_mlp_copy(&cp, &m);
      if (s == TCH_OK) tchi_mlp_destroy(&cp);
    }
    if (s == TCH_OK) {
      tchi_param_group grp = {.p = m.params, .g = m.grads, .n = m.n_params, .lr = 1e-3};
      tchi_adam opt;
      s = tchi_adam_init(&opt, 1, &grp);
      if (s == TCH_OK) tchi_adam_step(&opt);
      tchi_adam_destroy(&opt);
    }
  }
  tchi_mlp_ws_destroy(&ws);
  tchi_mlp_destroy(&m);
  return s;
}

START_TEST(allocation_failures_are_clean)
{
  for (int onehot = 0; onehot < 2; onehot++) {
    tchi_alloc_fail_at(0);
    ck_assert_int_eq(mlp_session(onehot), TCH_OK);
    uint64_t n = tchi_alloc_count();
    ck_assert_uint_ge(n, 6);
    for (uint64_t k = 1; k <= n + 1; k++) {
      tchi_alloc_fail_at(k);
      tch_status s = mlp_session(onehot);
      ck_assert_msg(k <= n ? s == TCH_E_NOMEM : s == TCH_OK, "fail at %llu -> %d",
                    (unsigned long long)k, (int)s);
    }
    tchi_alloc_fail_at(0);
  }
}
END_TEST

int main(void)
{
  Suite *s = suite_create("nn");
  TCase *tc = tcase_create("nn");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, gemm_kernels_match_reference);
  tcase_add_test(tc, gemm_edge_cases_and_errors);
  tcase_add_test(tc, mlp_gradients_match_double_finite_differences);
  tcase_add_test(tc, mlp_onehot_matches_dense);
  tcase_add_test(tc, mlp_argument_errors);
  tcase_add_test(tc, mlp_workspace_reused_without_allocation);
  tcase_add_test(tc, mlp_init_uniform_bounds_and_reproducible);
  tcase_add_test(tc, adam_converges_on_quadratic);
  tcase_add_test(tc, adam_matches_torch_update);
  tcase_add_test(tc, clip_grad_norm_scales_to_max);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  int rc = tch_run_suite(s);
  tchi_gemm_finalize_blis();   /* so valgrind sees BLIS's pools freed */
  return rc;
}
