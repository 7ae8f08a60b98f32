/* Neural-network layer: batched float32 MLPs on BLIS sgemm, Adam, gradient clipping.
 * Every batch goes through one gemm per layer (never one per row); an input layer fed
 * one-hot codes is a row gather (forward) and a scatter-add (backward) instead of a gemm.
 * Only this folder includes blis.h (gemm_blis.c). */
#ifndef TCHI_NN_H
#define TCHI_NN_H
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"

/* ---- gemm (gemm_blis.c, gemm_ref.c) ------------------------------------------------ */
/* tchi_sgemm: row-major C (m x n) = alpha * op(A) * op(B) + beta * C, op = transpose if trans_* != 0.
 * lda/ldb/ldc are row strides of the stored matrices. */
typedef struct tchi_gemm {
  const void *cntx_small;   /* BLIS cntx_t* for m < small_m (NULL = BLIS default) */
  const void *cntx_large;   /* BLIS cntx_t* otherwise */
  size_t small_m;
  int threads;
  char name[48];            /* human-readable kernel choice, e.g. "zen3+skx" */
} tchi_gemm;

/* kernel: "auto" (fastest context this CPU supports), "native" (BLIS's own choice) or a
 * BLIS configuration name ("skx", "zen3", "zen2", "zen", "haswell", "generic"...).
 * TCH_E_ARG (with a message) if the name is unknown or the CPU lacks its instructions. */
tch_status tchi_gemm_init(tchi_gemm *g, const char *kernel, int threads);
void tchi_sgemm(const tchi_gemm *g, int trans_a, int trans_b, size_t m, size_t n, size_t k,
               float alpha, const float *a, size_t lda, const float *b, size_t ldb,
               float beta, float *c, size_t ldc);
/* Naive triple loop with double accumulation: reference for tests only. */
void tchi_gemm_ref(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                   const float *a, size_t lda, const float *b, size_t ldb, float beta,
                   float *c, size_t ldc);
/* Floating-point operations counted by tchi_gemm on this thread (for benchmarks). */
uint64_t tchi_gemm_flops(void);
/* Slack (floats) to allocate after every matrix handed to BLIS: Debian's BLIS 0.9 sup
 * kernels read up to one element past the end of A when k is not a multiple of 8
 * (flame/blis#821, fixed upstream by PR #824). */
#define TCHI_GEMM_PAD 16
/* Benchmarks: time spent inside BLIS gemm calls on this thread (timing off by default;
 * turning it on or off resets the total). */
void tchi_gemm_timing(int on);
double tchi_gemm_seconds(void);
/* Test teardown only: bli_finalize(), which frees BLIS's packing pools (valgrind otherwise
 * reports them as "possibly lost") and invalidates every tchi_gemm. Never call while any
 * thread may use BLIS; a later tchi_gemm_init re-initialises BLIS. */
void tchi_gemm_finalize_blis(void);

/* ---- activations ------------------------------------------------------------------- */
typedef enum tchi_act {
  TCHI_ACT_NONE = 0,
  TCHI_ACT_LEAKY_RELU = 1,  /* slope 0.01 (PyTorch default) */
  TCHI_ACT_RELU = 2,
  TCHI_ACT_GELU = 3,        /* exact erf form (PyTorch default) */
  TCHI_ACT_SILU = 4,
  TCHI_ACT_TANH = 5
} tchi_act;
/* "leaky_relu" | "relu" | "gelu" | "silu" | "tanh" -> act; -1 if unknown. */
int tchi_act_from_name(const char *name);
const char *tchi_act_name(tchi_act a);
/* y = act(x) elementwise over n floats (y == x allowed). */
void tchi_act_forward(tchi_act a, size_t n, const float *x, float *y);
/* dx = dy * act'(pre) elementwise (tanh uses post = act(pre)); dx == dy allowed. */
void tchi_act_backward(tchi_act a, size_t n, const float *pre, const float *post,
                       const float *dy, float *dx);

/* ---- MLP (mlp.c) ------------------------------------------------------------------- */
/* Linear -> act -> ... -> Linear (no activation after the last layer).
 * Parameters live in one flat float array: for layer l, W_l (dims[l] x dims[l+1], row-major,
 * so y = x W + b) then b_l (dims[l+1]). grads has the same layout. */
#define TCHI_MLP_MAX_LAYERS 16
typedef struct tchi_mlp {
  size_t n_layers;                        /* number of Linear layers (>= 1) */
  size_t dims[TCHI_MLP_MAX_LAYERS + 1];
  size_t w_off[TCHI_MLP_MAX_LAYERS], b_off[TCHI_MLP_MAX_LAYERS];
  size_t n_params;
  tchi_act act;
  float *params;
  float *grads;
} tchi_mlp;

/* Activations kept for the backward pass; grows on demand, reused across calls (no
 * per-call allocation once warm). */
typedef struct tchi_mlp_ws {
  size_t cap_rows;
  size_t rows;               /* rows of the last forward */
  float *pre[TCHI_MLP_MAX_LAYERS];   /* pre-activation of layer l (rows x dims[l+1]) */
  float *post[TCHI_MLP_MAX_LAYERS];  /* activation output (rows x dims[l+1]); post[last] = output */
  float *dbuf[2];            /* scratch for backward (rows x max dim) */
  const float *x;            /* dense input of the last forward (not owned), or NULL */
  const int32_t *onehot;     /* one-hot indices of the last forward (not owned), or NULL */
  size_t onehot_nnz;
  size_t max_dim;
} tchi_mlp_ws;

tch_status tchi_mlp_init(tchi_mlp *m, size_t n_layers, const size_t *dims, tchi_act act);
void tchi_mlp_destroy(tchi_mlp *m);
tch_status tchi_mlp_copy(tchi_mlp *dst, const tchi_mlp *src);   /* dst uninitialised */
/* PyTorch nn.Linear default: W, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void tchi_mlp_init_uniform(tchi_mlp *m, tchi_rng *rng);
/* Zero W and b of the last layer (diffusion samplers start as pure Brownian motion). */
void tchi_mlp_zero_last(tchi_mlp *m);
void tchi_mlp_zero_grad(tchi_mlp *m);

void tchi_mlp_ws_init(tchi_mlp_ws *ws);
void tchi_mlp_ws_destroy(tchi_mlp_ws *ws);

/* Forward on rows of dense input x (rows x dims[0]); *out = rows x dims[last], owned by ws.
 * x must stay valid until the matching backward. */
tch_status tchi_mlp_forward(const tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws,
                            size_t rows, const float *x, const float **out);
/* Forward on one-hot input: row r has active inputs idx[r*nnz + j] (value 1; entries < 0
 * are skipped). The first layer is a gather of rows of W_0. */
tch_status tchi_mlp_forward_onehot(const tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws,
                                   size_t rows, size_t nnz, const int32_t *idx,
                                   const float **out);
/* Backward of the last forward: d_out is rows x dims[last] (dL/d output). Accumulates into
 * m->grads (callers zero them). If d_in != NULL and the input was dense, writes dL/dx. */
tch_status tchi_mlp_backward(tchi_mlp *m, const tchi_gemm *g, tchi_mlp_ws *ws,
                             const float *d_out, float *d_in);

/* ---- optimisation (adam.c) ------------------------------------------------------------ */
/* A parameter group: a contiguous float range of some tensor, or a double scalar array. */
typedef struct tchi_param_group {
  float *p; float *g;        /* float params/grads (or NULL) */
  double *pd; double *gd;    /* double params/grads (or NULL) */
  size_t n;
  double lr;
  double weight_decay;       /* L2 added to the gradient (torch Adam, not AdamW) */
} tchi_param_group;

#define TCHI_ADAM_MAX_GROUPS 8
typedef struct tchi_adam {
  size_t n_groups;
  tchi_param_group grp[TCHI_ADAM_MAX_GROUPS];
  double *m[TCHI_ADAM_MAX_GROUPS], *v[TCHI_ADAM_MAX_GROUPS];  /* moments in double */
  double beta1, beta2, eps;
  uint64_t t;
} tchi_adam;

/* Groups are copied; moments allocated zeroed. beta (0.9, 0.999), eps 1e-8 (torch). */
tch_status tchi_adam_init(tchi_adam *a, size_t n_groups, const tchi_param_group *groups);
void tchi_adam_destroy(tchi_adam *a);
/* One torch.optim.Adam step over every group. */
void tchi_adam_step(tchi_adam *a);
/* Global L2 norm of every group's gradient (in double). */
double tchi_grad_norm(const tchi_param_group *groups, size_t n_groups);
/* torch clip_grad_norm_: if norm > max_norm, scale grads by max_norm/(norm + 1e-6).
 * Returns the norm before clipping (NaN/Inf propagates so the caller can report it). */
double tchi_clip_grad_norm(tchi_param_group *groups, size_t n_groups, double max_norm);

#endif /* TCHI_NN_H */
