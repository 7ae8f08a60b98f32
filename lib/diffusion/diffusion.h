/* Diffusion samplers (continuous GFlowNets, spec adaptive-teacher.md §3.2-3.4, 3.6): the
 * reference's time-conditioned policy network, the Euler-Maruyama forward kernel with a
 * learned mean (optionally variance), the fixed Brownian-bridge backward kernel, trajectory
 * batches with forward and backward sampling, and trajectory balance with analytic
 * gradients. Depends on nn and core only: log-rewards reach this module as arrays, and the
 * gradient of log R (Langevin parameterisation) through a function pointer.
 *
 * Discretisation: T steps, dt = 1/T, t_i = i dt, s_0 = 0. Trajectories hold T+1 states
 * s_0..s_T = x. P_F(s_{i+1} | s_i) = N(s_i + dt mu(s_i, t_i), dt sigma^2(s_i, t_i));
 * P_B(s_i | s_{i+1}) = N(s_{i+1} i/(i+1), t_scale dt i/(i+1)) for i >= 1, P_B,0 = 1.
 *
 * Not implemented (TB only): the conditional flow model (log F(s, t) network) and partial
 * energy, which only DB/SubTB use; the learned backward policy (--learn_pb); DB, SubTB,
 * VarGrad and PIS losses. log Z is a single scalar parameter. */
#ifndef TCHI_DIFFUSION_H
#define TCHI_DIFFUSION_H
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "nn/nn.h"

struct tchi_writer;
struct tchi_reader;

/* ---- rewards ------------------------------------------------------------------------------ */
/* Batched target, the shape of the public tch_log_density_fn: for n points x (n x dim,
 * row-major) write log R(x) to log_r (n) and, when grad != NULL, grad_x log R to grad
 * (n x dim). Return 0, or any non-zero code to abort the operation (TCH_E_CALLBACK).
 * This module calls it only for the Langevin gradient, always with both buffers. */
typedef int (*tchi_dlogr_fn)(void *ctx, size_t n, size_t dim, const double *x,
                             double *log_r, double *grad);
typedef struct tchi_dreward {
  tchi_dlogr_fn fn;
  void *ctx;
} tchi_dreward;

/* ---- network ------------------------------------------------------------------------------ */
typedef struct tchi_dnet_spec {
  uint32_t dim;                 /* state dimension */
  uint32_t T;                   /* time steps (100) */
  double t_scale;               /* diffusion coefficient sigma^2 of the base process (1.0) */
  uint32_t hidden_dim, s_emb_dim, t_emb_dim, harmonics_dim;   /* 256 each */
  int pis;                      /* PIS architecture instead of the default one */
  uint32_t joint_layers;        /* PIS: hidden layers of the joint policy (2) */
  uint32_t lgv_layers;          /* PIS: layers of the Langevin scaling model (3) */
  int learned_variance;         /* log sigma^2 = tanh(raw) log_var_range + log t_scale */
  double log_var_range;         /* 4.0 */
  int langevin;                 /* mu += scale(s, t) * grad log R(s) */
  int langevin_per_dim;         /* scale has dim outputs instead of 1 */
  int clipping;                 /* clip grad log R to +-lgv_clip and outputs to +-gfn_clip */
  double lgv_clip, gfn_clip;    /* 1e2, 1e4 */
  int learn_log_z;              /* 1: log Z is trained; 0: frozen (no gradient, no group) */
  double log_z_init;            /* 0 */
  const char *kernel;           /* gemm kernel (nn.h), NULL = "auto" */
  int threads;                  /* BLIS threads (1) */
  /* Reference process (Reinforced SMC, spec reinforced-smc.md §2; ou.c). Appended fields:
   * tchi_dnet_spec_default leaves them 0 = TCHI_DREF_BROWNIAN, the pinned Brownian motion
   * described at the top of this file, so existing nets are unchanged. TCHI_DREF_OU_DDS
   * (tchi_dnet_spec_set_ou_dds) switches the kernels of traj.c to the OU-DDS process.
   * net_io.c stores them from format 2 on; format-1 records read back as Brownian. */
  int reference;                /* TCHI_DREF_* */
  double init_std;              /* OU-DDS: sigma of the prior N(0, sigma^2 I) and kernels */
  double noise_scale;           /* OU-DDS: nu, total of the step schedule (6) */
} tchi_dnet_spec;

/* The reference's defaults (diffusion/train.py) for a state of dimension dim. */
void tchi_dnet_spec_default(tchi_dnet_spec *s, uint32_t dim);

/* A run of Linear layers with GELU between them, on float parameters at fixed offsets.
 * Layer l computes y = x W_l + b_l with W_l (in x out, row-major) at params + w, b_l at
 * params + b. The first layer of the joint policy and of the default Langevin model reads
 * concat(state embedding, time embedding): its first `split` rows of W multiply the batch
 * input, the remaining rows the time embedding, which is shared by all rows of a time step
 * and so enters as a per-step row bias computed once. */
#define TCHI_DCHAIN_MAX 9
typedef struct tchi_dlinear {
  uint32_t in, out;
  size_t w, b;
} tchi_dlinear;
typedef struct tchi_dchain {
  uint32_t n;                   /* Linear layers (0 = chain absent) */
  uint32_t split;               /* rows of W_0 fed by the batch input */
  int gelu_in;                  /* GELU on the input first (PIS joint policy) */
  int gelu_out;                 /* GELU after the last layer too */
  tchi_dlinear lin[TCHI_DCHAIN_MAX];
} tchi_dchain;

/* Adam parameter groups in the reference's order (utils.get_gfn_optimizer). The Teacher
 * clips the gradient norm of group 0 only (spec §3.5 quirk), so it must stay the time
 * encoder. */
enum {
  TCHI_DGROUP_TIME = 0,         /* time encoder (PIS: with its learned phase) */
  TCHI_DGROUP_STATE = 1,        /* state encoder */
  TCHI_DGROUP_JOINT = 2,        /* joint policy */
  TCHI_DGROUP_LANGEVIN = 3,     /* Langevin scaling model (empty unless spec.langevin) */
  TCHI_DGROUP_N = 4
};
#define TCHI_DNET_MAX_GROUPS 5

struct tchi_dws;

typedef struct tchi_dnet {
  tchi_dnet_spec spec;          /* spec.kernel points to kernel[] */
  char kernel[32];
  size_t n_params;
  float *params, *grads;        /* one flat array each (+ TCHI_GEMM_PAD slack) */
  size_t group_off[TCHI_DGROUP_N + 1];   /* group g is [group_off[g], group_off[g + 1]) */
  tchi_dchain time, state, joint, lgv;   /* lgv.n == 0 without Langevin */
  size_t phase, lgv_phase;      /* PIS: offsets of the learned time phases */
  uint32_t lgv_out;             /* outputs of the Langevin model (1 or dim; 0 = none) */
  float *pe, *lgv_pe;           /* time frequencies, float32 as the reference computes them */
  double log_z, log_z_grad;
  tchi_gemm gemm;
  struct tchi_dws *ws;          /* evaluation workspace (grown on demand, reused) */
} tchi_dnet;

/* New network: weights from rng (PyTorch nn.Linear default U(-1/sqrt(fan_in), +) for every
 * layer in parameter order, W then b; PIS phases N(0, 1)), then the reference's zero_init:
 * the last layer of the joint policy W = 0, b = 0 (the initial sampler is Brownian motion),
 * of the Langevin model W = 0, b = 0.01. log Z = spec->log_z_init. */
tch_status tchi_dnet_create(const tchi_dnet_spec *spec, tchi_rng *rng, tchi_dnet **out);
tch_status tchi_dnet_clone(const tchi_dnet *src, tchi_dnet **out);   /* weights, log Z, grads */
void tchi_dnet_free(tchi_dnet *net);
void tchi_dnet_zero_grad(tchi_dnet *net);   /* network gradients and log_z_grad */

/* Fills out[0..k) (k returned, <= TCHI_DNET_MAX_GROUPS): time encoder, state encoder, joint
 * policy, Langevin model (only with spec.langevin), all at lr_policy, then log Z (double,
 * only with spec.learn_log_z) at lr_flow; weight_decay on every group as torch's Adam. */
size_t tchi_dnet_param_groups(tchi_dnet *net, double lr_policy, double lr_flow,
                              double weight_decay, tchi_param_group *out);

/* Serialisation: architecture, gemm kernel request, weights and log Z, behind a tag and a
 * format version. Truncated or malformed input is TCH_E_IO, another format version
 * TCH_E_VERSION; *out = NULL on failure. */
void tchi_dnet_write(const tchi_dnet *net, struct tchi_writer *w);
tch_status tchi_dnet_read(struct tchi_reader *r, tchi_dnet **out);

/* ---- network evaluation (module-internal) ------------------------------------------------ */
/* One evaluation covers k consecutive time steps i0..i0+k-1 of m rows each, rows ordered
 * step-major (row j m + r = row r at step i0 + j). The caller stages states (and for
 * Langevin nets the sanitised grad log R) in double in tchi_dnet_stage's buffers, then
 * tchi_dnet_forward writes the Gaussian parameters mean and log sigma^2 (k m x dim, double)
 * to the workspace. With keep != 0 it keeps what tchi_dnet_backward needs; the backward
 * takes dL/dmean and dL/dlogvar in the buffers tchi_dnet_grad_in returns and accumulates
 * into net->grads. */
tch_status tchi_dnet_reserve(tchi_dnet *net, uint32_t k, size_t m, int keep);
void tchi_dnet_stage(tchi_dnet *net, double **x, double **g);   /* (k m) x dim each; g NULL without Langevin */
void tchi_dnet_forward(tchi_dnet *net, uint32_t i0, uint32_t k, size_t m, int keep,
                       const double **mean, const double **logvar);
void tchi_dnet_grad_in(tchi_dnet *net, double **d_mean, double **d_logvar);
tch_status tchi_dnet_backward(tchi_dnet *net);   /* TCH_E_STATE without a kept forward */
/* n doubles of scratch owned by the workspace (valid until the next call); NULL with the
 * error recorded if it cannot grow. */
double *tchi_dnet_scratch(tchi_dnet *net, size_t n);

/* ---- elementwise kernels (gelu.c) ------------------------------------------------------------ */
void tchi_dgelu(size_t n, float *x);                         /* x <- x Phi(x) */
void tchi_dgelu_der(size_t n, float *x, float *der);         /* also der <- d/dx of it */
/* y[r] <- GELU(y[r] + b) for every row, der (may be NULL) <- its derivative. */
void tchi_dbias_gelu(size_t rows, size_t cols, float *y, const float *b, float *der);
void tchi_dmul(size_t n, float *y, const float *a);          /* y <- y * a */
void tchi_dadd_row(size_t rows, size_t cols, float *y, const float *b);   /* y[r] += b */
void tchi_dcolsum(size_t rows, size_t cols, const float *y, double *acc); /* acc += sum_r y[r] */

/* ---- Gaussian kernels (kernels.c) ------------------------------------------------------------ */
#define TCHI_LOG_2PI 1.83787706640934548356
/* log P_F of s1 given s0: -1/2 sum_d [ ((s1 - s0 - dt mean)/(sqrt(dt) sigma))^2 + log 2pi
 * + log dt + logvar ], sigma^2 = exp(logvar) (gfn.py get_trajectory_fwd). */
double tchi_dkernel_log_pf(uint32_t dim, double dt, const double *s0, const double *s1,
                           const double *mean, const double *logvar);
/* Same value; adds coef * d log P_F / d mean and / d logvar to d_mean, d_logvar. */
double tchi_dkernel_log_pf_grad(uint32_t dim, double dt, const double *s0, const double *s1,
                                const double *mean, const double *logvar, double coef,
                                double *d_mean, double *d_logvar);
/* Brownian bridge to 0 for step i (1 <= i < T): P_B(s_i | s_{i+1}) = N(factor s_{i+1}, var),
 * factor = i/(i+1), var = t_scale dt i/(i+1). */
void tchi_dbridge(uint32_t i, double dt, double t_scale, double *factor, double *var);
/* log P_B(s_i | s_{i+1}); 0 for i == 0 (s_0 = 0 is deterministic). */
double tchi_dkernel_log_pb(uint32_t dim, uint32_t i, double dt, double t_scale,
                           const double *s_i, const double *s_next);

/* ---- trajectory batches (traj.c) ------------------------------------------------------------- */
typedef struct tchi_dtraj {
  size_t n, cap;
  uint32_t T, dim;
  double *states;               /* cap x (T+1) x dim */
  double *log_pf;               /* cap: sum_i log P_F,i under the net that made the batch */
  double *log_pb;               /* cap: sum_i log P_B,i */
  double *grad;                 /* Langevin nets: cap x T x dim, sanitised grad log R(s_i),
                                   i < T (NULL otherwise) */
  int grad_valid;               /* grad holds the values for these states */
  double *scr; size_t scr_cap;  /* scratch for reward callbacks */
} tchi_dtraj;

void tchi_dtraj_init(tchi_dtraj *t);
void tchi_dtraj_destroy(tchi_dtraj *t);
/* Room for n trajectories of T steps in dimension dim (with_grad: the grad array too);
 * sets t->n = n. Growing keeps the contents; another T or dim discards them. */
tch_status tchi_dtraj_reserve(tchi_dtraj *t, uint32_t T, uint32_t dim, size_t n, int with_grad);
static inline double *tchi_dtraj_state(const tchi_dtraj *t, size_t i, uint32_t k)
{ return t->states + (i * ((size_t)t->T + 1) + k) * t->dim; }
/* Terminal states s_T of every trajectory into out (n x dim). */
void tchi_dtraj_terminals(const tchi_dtraj *t, double *out);
/* Keeps the trajectories with keep[i] != 0, in order; t->n becomes their count. */
void tchi_dtraj_compact(tchi_dtraj *t, const uint8_t *keep);

/* Forward sampling of n trajectories from s_0 = 0 (get_trajectory_fwd). expl_std > 0
 * samples with variance exp(logaddexp(log sigma^2, 2 log(expl_std / sqrt(dt)))) while log
 * P_F stays under the unexplored sigma. rw: the Langevin gradient (required iff
 * spec.langevin, else ignored). Fills states, log_pf, log_pb (and grad). */
tch_status tchi_dsample_forward(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng,
                                size_t n, double expl_std, tchi_dtraj *out);
/* Backward sampling from terminal points x (n x dim) through the bridge
 * (get_trajectory_bwd); log P_F of the observed steps under net, without gradient. */
tch_status tchi_dsample_backward(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng,
                                 size_t n, const double *x, tchi_dtraj *out);
/* n samples x (n x dim) from the sampler without exploration; scratch holds the
 * trajectories afterwards (gfn.py sample). */
tch_status tchi_dsample(tchi_dnet *net, const tchi_dreward *rw, tchi_rng *rng, size_t n,
                        tchi_dtraj *scratch, double *x);
/* chunk = 0 picks max(1, TCHI_DCHUNK_ROWS / n) time steps per block: bench_diffusion
 * measured 2 to 6 steps of 500 rows within 2% of each other (1 and 10 slower), and rows
 * bound the workspace for large batches. */
#define TCHI_DCHUNK_ROWS 2000
/* Sums of log P_F of t's trajectories under the current net (no gradient), chunk time steps
 * per evaluation (0 = automatic, see TCHI_DCHUNK_ROWS). Needs t->grad for Langevin nets. */
tch_status tchi_dnet_log_pf(tchi_dnet *net, const tchi_dtraj *t, uint32_t chunk,
                            double *log_pf);

/* Module-internal helpers: argument checks of a batch against a net (TCH_E_ARG), the
 * effective chunk size, and staging of steps i0..i0+k-1 of t for tchi_dnet_forward. */
tch_status tchi_dtraj_check(tchi_dnet *net, const tchi_dtraj *t, const char *fn);
uint32_t tchi_dchunk(const tchi_dnet *net, size_t n, uint32_t chunk);
void tchi_dtraj_stage(tchi_dnet *net, const tchi_dtraj *t, uint32_t i0, uint32_t k);

/* ---- trajectory balance (tb.c) ---------------------------------------------------------------- */
/* fwd_tb / bwd_tb on fixed trajectories: r_i = sum log P_F + log Z - sum log P_B - log R,
 * loss = mean_i w_i r_i^2 / 2 (w = 1 when weight == NULL), delta_i = -r_i
 * (= log R + sum log P_B - sum log P_F - log Z, pre-update). log_pf_known: the sums of
 * log P_F under the current net if the caller has them (t->log_pf right after sampling with
 * this net, unchanged since), or NULL to recompute them (one extra forward pass). With grad,
 * accumulates d loss / d parameters into net->grads and (if spec.learn_log_z) log_z_grad,
 * processing chunk time steps per block (rows = n chunk; 0 = automatic) with the forward
 * of each block kept only until its backward. Non-finite residuals are TCH_E_NUMERIC, and
 * then no gradient is accumulated. delta, loss may be NULL. */
tch_status tchi_dtb_loss(tchi_dnet *net, const tchi_dtraj *t, const double *log_r,
                         const double *log_pf_known, const double *weight, uint32_t chunk,
                         int grad, double *delta, double *loss);
/* The backward pass shared by the trajectory losses (tchi_dtb_loss, Reinforced SMC's
 * tchi_smc_joint_loss): accumulates into net->grads
 *   sum_i sum_k coef[i n_coef + k / (T / n_coef)] d log q(x_{k+1}^i | x_k^i) / d theta
 * over the n = t->n trajectories, re-evaluating block steps at a time (tchi_dchunk) with the
 * activations kept until that block's backward. n_coef (dividing T) coefficients per
 * trajectory, one per run of T / n_coef steps: 1 for TB, the chunk count for SubTB. The
 * caller has reserved net for block steps of n rows with backward (tchi_dnet_reserve). */
tch_status tchi_dnet_log_pf_backward(tchi_dnet *net, const tchi_dtraj *t, uint32_t block,
                                     const double *coef, uint32_t n_coef);

/* ==== Reinforced SMC additions (spec reinforced-smc.md §2-§3) ==================================== */

/* ---- reference processes (ou.c) --------------------------------------------------------------- */
/* tchi_dnet_spec.reference. The OU-DDS process of §2.1 (JAX algorithms/gfn_subtb/gfn_subtb_rnd.py
 * per_sample_rnd_ou_dds, algorithms/dds/dds_rnd.py cos_sq_fn_step_scheme; TORCH models/gfn.py "ou"):
 *   x_0 ~ p_0 = N(0, sigma^2 I), sigma = init_std;
 *   q(x_{k+1} | x_k)   = N(sqrt(1 - a_k) x_k + a_k u(x_k, t_k), a_k sigma^2 v I),
 *   p_B(x_k | x_{k+1}) = N(sqrt(1 - a_k) x_{k+1},           a_k sigma^2 I),
 * with u the net's mean output, t_k = k/T, v = exp(logvar - log t_scale) the net's learned
 * variance correction (v = 1 without spec.learned_variance: TORCH's exp(tanh(.) 4 / 2) std
 * factor when log_var_range = 4), and the cosine-squared step schedule
 *   c_k = cos^4(((k/T + s)/(1 + s)) pi/2), a_k = nu c_k / sum_{j=0}^{T} c_j   (k = 0..T)
 * in double, s = TCHI_OU_DDS_SHIFT, nu = spec.noise_scale, then clipped to [0, 1] (the
 * reference clips sqrt(a_k)). p_B leaves N(0, sigma^2 I) invariant, so with u = 0 the forward
 * process is the exact reversal of p_B and every x_k ~ N(0, sigma^2 I).
 * The Brownian reference (tchi_dkernel_*) keeps p_0 = delta_0, so log p_0 = 0.
 * Trajectory batches of an OU net fold log p_0(x_0) into log_pf (log_pf = log p_0(x_0) +
 * sum_k log q): the TB residual log_pf + log Z - log_pb - log R and the log-IW
 * log R + log_pb - log_pf then hold for both references unchanged. */
enum { TCHI_DREF_BROWNIAN = 0, TCHI_DREF_OU_DDS = 1 };
#define TCHI_DREF_COUNT 2
#define TCHI_OU_DDS_SHIFT 0.008          /* s of cos_sq_fn_step_scheme */
#define TCHI_OU_DDS_NOISE_SCALE 6.0      /* nu: configs/algorithm/gfn_subtb_smc.yaml noise_scale */
/* "brownian", "ou_dds"; NULL out of range. */
const char *tchi_dref_name(int reference);
tch_status tchi_dref_from_name(const char *name, int *out);   /* TCH_E_ARG naming the choices */
/* Sets reference = OU-DDS, init_std and noise_scale = TCHI_OU_DDS_NOISE_SCALE. */
void tchi_dnet_spec_set_ou_dds(tchi_dnet_spec *s, double init_std);
/* TCH_E_ARG unless the reference is known and (OU-DDS) init_std and noise_scale are finite
 * and > 0. Called by tchi_dnet_create. */
tch_status tchi_dref_check_spec(const tchi_dnet_spec *s);
/* a_k of the schedule for k = 0..T, unclipped (as cos_sq_fn_step_scheme returns it). O(T). */
double tchi_ou_dds_step(uint32_t T, double noise_scale, uint32_t k);

/* The reference kernels of one step k (0 <= k < T), computed once per step and shared by
 * every row. */
typedef struct tchi_dstep {
  int reference;
  uint32_t k;
  double dt, t_scale, log_t_scale;   /* Brownian: dt = 1/T; t_scale; also OU's v reference */
  double a;                          /* OU: a_k clipped to [0, 1] */
  double shrink;                     /* OU: sqrt(1 - a_k) */
  double var, log_var;               /* OU: a_k sigma^2 (the p_B variance) and its log */
} tchi_dstep;
void tchi_dstep_at(const tchi_dnet_spec *s, uint32_t k, tchi_dstep *out);
/* log q(s1 | s0) of one row from the net's outputs mean (u) and logvar (dim each). */
double tchi_dstep_log_pf(const tchi_dstep *st, uint32_t dim, const double *s0, const double *s1,
                         const double *mean, const double *logvar);
/* Same value; adds coef * d log q / d mean and / d logvar to d_mean, d_logvar. */
double tchi_dstep_log_pf_grad(const tchi_dstep *st, uint32_t dim, const double *s0,
                              const double *s1, const double *mean, const double *logvar,
                              double coef, double *d_mean, double *d_logvar);
/* log p_B(s_k | s_{k+1}) (Brownian: 0 at k = 0). */
double tchi_dstep_log_pb(const tchi_dstep *st, uint32_t dim, const double *s_k,
                         const double *s_next);
/* Draws s1 (dim) for one row, dim normals from rng in coordinate order, and returns
 * log q(s1 | s0) under the unexplored kernel. expl_std > 0 adds expl_std^2 to the sampling
 * variance (Brownian: exactly tchi_dsample_forward's logaddexp rule). */
double tchi_dstep_sample(const tchi_dstep *st, uint32_t dim, const double *s0,
                         const double *mean, const double *logvar, double expl_std,
                         tchi_rng *rng, double *s1);
/* log p_0(x) of one row: 0 (Brownian, x_0 = 0), log N(x; 0, sigma^2 I) (OU-DDS). */
double tchi_dref_log_p0(const tchi_dnet_spec *s, const double *x);
/* n initial states (n x dim): zeros (Brownian, no draws) or N(0, sigma^2 I) draws, row-major. */
void tchi_dref_sample_p0(const tchi_dnet_spec *s, tchi_rng *rng, size_t n, double *x);
/* The reference's marginal log density at step k, the "ref_log_prob" of the partial energy
 * (§3): OU-DDS log N(x; 0, sigma^2 I) at every k; Brownian log N(x; 0, t_scale (k/T) I) for
 * k >= 1 (valid for a constant sigma, as JAX's ref_log_prob_pinned_brownian) and 0 at k = 0. */
double tchi_dref_log_marginal(const tchi_dnet_spec *s, uint32_t k, const double *x);

/* ---- learnt log-flow twist (flow.c) ------------------------------------------------------------- */
/* The partial-energy log-flow of §3 (JAX get_log_f / get_flow_bias / get_beta_fn; TORCH
 * get_partial_energy), for 0 < k < T:
 *   log F_k(x) = f_phi(x, t_k) + (1 - beta_k) log p_ref,k(x) + beta_k log R(x),
 * with p_ref,k = tchi_dref_log_marginal and beta from the schedule:
 *   learnt:  beta_0 = 0, beta_k = sum_{j<k} softplus(b_j) / sum_{j<T} softplus(b_j), b in R^T
 *            initialised to 1 (so it starts linear);
 *   linear:  beta_k = k/T;
 *   cosine:  beta_k = prod_{j=k}^{T} (1 - a_j) (OU-DDS only; JAX 1 - lambda_fn).
 * SMC boundary conventions: log F_0 = log p_0(x), log F_T = log R(x).
 * f_phi is JAX PISGRADNet's flow branch (share_embeddings = False): Fourier features
 * [sin(c t + phase), cos(c t + phase)], c = linspace(0.1, 100, H), phase in R^H (init 0);
 * time MLP Dense(H) -> GELU -> Dense(H) = e_t; body concat(x, e_t) -> [Dense(H) -> GELU] x
 * layers -> Dense(1) with weights 1e-8 and bias 0 (f ~ 0 at initialisation). Hidden layers
 * use flax's default init (LeCun normal truncated at 2 sd, zero bias) from rng, and the
 * exact-erf GELU (flax uses the tanh approximation). Every evaluation is batched: one gemm
 * per layer over all rows; the time MLP runs once per distinct step. */
typedef enum tchi_beta_schedule {
  TCHI_BETA_LEARNT = 0,
  TCHI_BETA_LINEAR = 1,
  TCHI_BETA_COSINE = 2
} tchi_beta_schedule;
#define TCHI_BETA_SCHEDULE_COUNT 3
const char *tchi_beta_schedule_name(tchi_beta_schedule b);   /* "learnt", "linear", "cosine" */
tch_status tchi_beta_schedule_from_name(const char *name, tchi_beta_schedule *out);

typedef struct tchi_dflow_spec {
  uint32_t dim, T;              /* must match the policy net */
  uint32_t hidden;              /* H_f (64; 256 with Langevin preconditioning, spec §9) */
  uint32_t layers;              /* Dense+GELU layers of the body (2) */
  tchi_beta_schedule beta;      /* learnt */
  const char *kernel;           /* gemm kernel, NULL = "auto" */
  int threads;                  /* BLIS threads (1) */
} tchi_dflow_spec;
void tchi_dflow_spec_default(tchi_dflow_spec *s, uint32_t dim, uint32_t T);

struct tchi_dflow_ws;
typedef struct tchi_dflow {
  tchi_dflow_spec spec;         /* spec.kernel points to kernel[] */
  char kernel[32];
  tchi_gemm gemm;
  tchi_mlp time;                /* 2H -> H -> H */
  tchi_mlp body;                /* D + H -> H ... -> 1 */
  float *coeff;                 /* H Fourier frequencies */
  float *phase, *phase_grad;    /* H each (+ TCHI_GEMM_PAD) */
  double *beta_logit, *beta_grad;   /* T each: the learnt schedule's b and dL/db */
  struct tchi_dflow_ws *ws;
} tchi_dflow;

tch_status tchi_dflow_create(const tchi_dflow_spec *spec, tchi_rng *rng, tchi_dflow **out);
void tchi_dflow_free(tchi_dflow *f);   /* NULL is a no-op */
void tchi_dflow_zero_grad(tchi_dflow *f);
/* Adam groups (at most TCHI_DFLOW_MAX_GROUPS): flow time MLP + phase, body at lr_flow; the
 * beta logits (learnt schedule only) at lr_beta (spec §7: 1e-3 and 1e-1). */
#define TCHI_DFLOW_MAX_GROUPS 4
size_t tchi_dflow_param_groups(tchi_dflow *f, double lr_flow, double lr_beta,
                               double weight_decay, tchi_param_group *out);
/* beta_0..beta_T into beta (T + 1 doubles). ref: the policy's spec (cosine needs OU-DDS;
 * its T must equal spec.T). TCH_E_ARG otherwise. */
tch_status tchi_dflow_betas(const tchi_dflow *f, const tchi_dnet_spec *ref, double *beta);
/* Learnt schedule: beta_grad_j += sum_k d_beta[k] d beta_k / d b_j for the T + 1 adjoints
 * d_beta (k = 0..T). No-op for the fixed schedules. */
void tchi_dflow_beta_backward(tchi_dflow *f, const double *d_beta);

/* The raw network f_phi on nsteps blocks of m rows, step-major (row j m + r is at step
 * steps[j], 0 <= steps[j] <= T): x is (nsteps m) x dim; *out (nsteps m doubles) is owned
 * by the workspace and valid until the next call. keep: keep activations for
 * tchi_dflow_backward, which accumulates d_out (nsteps m) into the parameter gradients.
 * TCH_E_ARG, TCH_E_NOMEM; TCH_E_STATE for a backward without a kept forward. */
tch_status tchi_dflow_forward(tchi_dflow *f, uint32_t nsteps, const uint32_t *steps, size_t m,
                              const double *x, int keep, const double **out);
tch_status tchi_dflow_backward(tchi_dflow *f, const double *d_out);
/* The twist log F_k at n states x (n x dim) with their log R (n; unused at k = 0), SMC
 * conventions (k = 0: log p_0; k = T: log R; else partial energy). f may be NULL: f_phi = 0
 * with the linear schedule. TCH_E_NUMERIC if a value is not finite. */
tch_status tchi_dflow_log_f(tchi_dflow *f, const tchi_dnet_spec *ref, uint32_t k, size_t n,
                            const double *x, const double *log_r, double *out);

/* Rejuvenation (spec §4.3) needs grad_x log F_k. tchi_dflow_input_grad: after a forward with
 * keep, writes d_x (rows x dim) with row r = d_out[r] grad_x f_phi(x_r, t) (d_out NULL: 1
 * for every row), in float precision like the network; the parameter gradients and the kept
 * activations are left untouched. TCH_E_STATE without a kept forward.
 * tchi_dflow_log_f_grad: the twist of tchi_dflow_log_f (same conventions and value) and its
 * gradient grad (n x dim): grad f_phi + (1 - beta_k) grad log p_ref,k + beta_k grad_log_r at
 * 0 < k < T, grad_log_r at k = T, grad log p_0 at k = 0. grad_log_r (n x dim) is required
 * with log_r for k > 0; out (n) may be NULL. Leaves no kept forward behind.
 * TCH_E_NUMERIC if a value is not finite; TCH_E_ARG, TCH_E_NOMEM. */
tch_status tchi_dflow_input_grad(tchi_dflow *f, const double *d_out, double *d_x);
tch_status tchi_dflow_log_f_grad(tchi_dflow *f, const tchi_dnet_spec *ref, uint32_t k, size_t n,
                                 const double *x, const double *log_r, const double *grad_log_r,
                                 double *out, double *grad);

/* ---- flow serialisation and copies (flow_io.c) ------------------------------------------------- */
/* A tag, a format version, the architecture, the gemm kernel request, the weights, the phase and
 * the beta logits. Truncated or malformed input (also a non-finite weight) is TCH_E_IO, another
 * format version TCH_E_VERSION; *out = NULL on failure. Errors of write stick in w->status. */
void tchi_dflow_write(const tchi_dflow *f, struct tchi_writer *w);
tch_status tchi_dflow_read(struct tchi_reader *r, tchi_dflow **out);
/* A new flow with src's spec, weights, phase, beta logits and their gradients. */
tch_status tchi_dflow_clone(const tchi_dflow *src, tchi_dflow **out);

#endif /* TCHI_DIFFUSION_H */
