/* Evaluation metrics and MALA local search of the continuous (diffusion) samplers: plain
 * arrays in, numbers out, double precision. Internal: tchi_ prefix.
 *
 * Anchors: diffusion/evaluations.py, diffusion/sample_metrics.py, diffusion/train.py
 * (eval_step) and diffusion/langevin.py of the reference (spec §3.8, §3.9). */
#ifndef TCHI_DMETRICS_H
#define TCHI_DMETRICS_H
#include <stddef.h>
#include "core/core.h"

/* ---- log-weight summaries (metrics.c) ---------------------------------------------------
 * A log-weight is log w = log R(x) + ΣPB − ΣPF of one trajectory. All functions return NaN
 * for n == 0 or when an input is NaN; -inf entries are weights of zero. */

/* log Σ exp(a_i), max-shifted; -inf when every a_i is -inf; +inf when some a_i is +inf. */
double tchi_logsumexp(size_t n, const double *a);
/* log((1/n) Σ exp(a_i)). */
double tchi_logmeanexp(size_t n, const double *a);
/* Importance-weighted log Z estimate: logmeanexp(log w) (eval "log_Z"). */
double tchi_is_log_z(size_t n, const double *log_w);
/* Evidence lower bound: mean log w over forward trajectories (eval "log_Z_lb"). */
double tchi_elbo(size_t n, const double *log_w);
/* Evidence upper bound: mean log w over one backward trajectory per ground-truth sample
 * (eval "log_Z_ub"); the caller computes those log-weights. */
double tchi_eubo(size_t n, const double *gt_log_w);
/* Effective sample size of the importance weights w_i = exp(log_w_i) (Kish):
 * ESS = (Σ w)² / Σ w², in [1, n] when some weight is positive; *fraction = ESS / n in
 * [1/n, 1]. All weights zero (every log_w = -inf): both 0. Entries equal to +inf count as
 * equal, dominant weights (ESS = their number). NaN anywhere: both NaN. */
void tchi_ess(size_t n, const double *log_w, double *ess, double *fraction);
/* Mean over n_points of logmeanexp over the K log-weights of that point, log_w being
 * n_points x K row-major (point-major, as the reference's repeat/view) with entries
 * ΣPF − ΣPB of K backward trajectories: a lower bound of the mean log-likelihood
 * (eval "mean_log_likelihood", K = 10). */
double tchi_mean_log_likelihood(size_t n_points, size_t k, const double *log_w);

/* ---- sample-quality distances (metrics.c) ---------------------------------------------
 * X (model samples, n x d) and Y (ground truth, m x d), row-major. Only n == m is
 * supported (TCH_E_ARG otherwise): the reference's MMDs pair X_i with Y_i, and POT's exact
 * EMD with uniform weights on equal sizes is an assignment problem (a permutation is an
 * optimal vertex of the transport polytope); the general transport LP is not implemented. */

/* Exact optimal assignment (Jonker–Volgenant shortest augmenting paths, dense; costs
 * computed on the fly, O(n d) memory, O(n³) worst-case time) for c(i, j) = ‖x_i − y_j‖^power,
 * power 1 or 2. *mean_cost = (1/n) min_σ Σ_i c(i, σ(i)), the exact EMD with uniform weights.
 * row_to_col (n entries) and col_price (n entries, the dual prices v_j; u_i = c(i,σ(i)) − v_σ(i)
 * then satisfies c(i, j) − u_i − v_j >= 0 up to rounding: an optimality certificate) are
 * optional. Coordinates must be finite with |v| <= 1e150, else TCH_E_NUMERIC. */
tch_status tchi_assignment_euclid(size_t n, size_t d, const double *x, const double *y, int power,
                                  double *mean_cost, size_t *row_to_col, double *col_price);
/* The same solver on an explicit n x n cost matrix (row-major, finite): *total_cost =
 * min_σ Σ_i cost[i][σ(i)]. For tests and small problems. */
tch_status tchi_assignment_matrix(size_t n, const double *cost, double *total_cost,
                                  size_t *row_to_col, double *col_price);
/* W_1 = EMD with cost ‖x − y‖; W_2 = sqrt(EMD with cost ‖x − y‖²) (POT emd2, uniform
 * weights), power 1 or 2. n != m: TCH_E_ARG. */
tch_status tchi_wasserstein(size_t n, size_t m, size_t d, const double *x, const double *y,
                            int power, double *out);

/* Linear-time MMDs over the n − 1 consecutive pairs (i, i+1) (n >= 2, else NaN):
 * linear: mean_i (X_i − Y_i)·(X_{i+1} − Y_{i+1});
 * poly:   mean (α X_i·X_{i+1} + c)^deg + mean (α Y_i·Y_{i+1} + c)^deg
 *         − mean (α X_i·Y_{i+1} + c)^deg − mean (α Y_i·X_{i+1} + c)^deg   (deg 2, α 1, c 2). */
double tchi_linear_mmd(size_t n, size_t d, const double *x, const double *y);
double tchi_poly_mmd(size_t n, size_t d, const double *x, const double *y, int degree,
                     double alpha, double c);
/* Biased squared MMD with the sum of RBF kernels Σ_s exp(−‖a − b‖² / (2 σ_s²)) (diagonals
 * included): (Σ K_XX + Σ K_YY − 2 Σ K_XY) / n². The reference uses σ ∈ {0.01, 0.1, 1, 10, 100}
 * (TCHI_RBF_SIGMAS). O(n² d) time, O(1) memory. */
#define TCHI_RBF_N_SIGMAS 5
extern const double TCHI_RBF_SIGMAS[TCHI_RBF_N_SIGMAS];
double tchi_rbf_mmd(size_t n, size_t d, const double *x, const double *y, size_t n_sigmas,
                    const double *sigmas);

/* Distances between two d-vectors a (model) and b (truth), as the reference's
 * compute_distances: mse = mean_k (a_k − b_k)², l2 = sqrt(mse), l1 = mean_k |a_k − b_k|. */
void tchi_vec_distances(size_t d, const double *a, const double *b, double *mse, double *l2,
                        double *l1);
/* Coordinate-wise mean (out: d) of n x d rows (NaN for n == 0). */
void tchi_coord_mean(size_t n, size_t d, const double *x, double *out);
/* Coordinate-wise median (out: d) as torch.median: the lower middle element, index
 * (n − 1) / 2 of the sorted column (NaN for n == 0; finite inputs). work: n doubles. */
void tchi_coord_median(size_t n, size_t d, const double *x, double *work, double *out);

/* Everything compute_distribution_distances reports for one time point. */
typedef struct tchi_dist_metrics {
  double w1;          /* "1-Wasserstein" */
  double w2;          /* "2-Wasserstein" */
  double linear_mmd;  /* "Linear_MMD" */
  double poly_mmd;    /* "Poly_MMD" (degree 2, alpha 1, c 2) */
  double rbf_mmd;     /* "RBF_MMD" (biased, sigmas 0.01..100) */
  double mean_mse, mean_l2, mean_l1;        /* "Mean_MSE", "Mean_L2", "Mean_L1" */
  double median_mse, median_l2, median_l1;  /* "Median_MSE", "Median_L2", "Median_L1" */
} tchi_dist_metrics;

/* All of the above between X (n x d) and Y (m x d). n != m, n == 0 or d == 0: TCH_E_ARG;
 * non-finite coordinates (or |v| > 1e150): TCH_E_NUMERIC. Allocates O(n d) scratch once per
 * call. Cost: two assignment problems (O(n³) worst case; measured for n = 2000, d = 2 on
 * 25-mode mixture data: 0.2–0.8 s for W2 and 0.3–1.2 s for W1, CPU time on a loaded
 * machine) and O(n² d) for the RBF MMD (about 0.1 s). */
tch_status tchi_dist_metrics_compute(size_t n, size_t m, size_t d, const double *x,
                                     const double *y, tchi_dist_metrics *out);

/* ---- MALA local search (mala.c) --------------------------------------------------------- */

/* Batched target: log R and its gradient at the n rows of x (n x dim; dim is known to ctx).
 * Returns TCH_OK or a failure status (with its message already recorded). */
typedef tch_status (*tchi_logp_fn)(void *ctx, size_t n, const double *x, double *out_logp,
                                   double *out_grad /* n x dim */);

typedef struct tchi_mala_params {
  size_t max_iter;        /* iterations per chain (--max_iter_ls, 200) */
  size_t burn_in;         /* samples are returned from iterations i > burn_in (100) */
  double step;            /* initial step η0 (--ld_step, 0.001) */
  double target_accept;   /* target acceptance rate (0.574) */
  int adaptive;           /* --ld_schedule (1): η ← η(1 ± 0.01) each iteration */
} tchi_mala_params;

/* The reference's defaults (above). */
void tchi_mala_params_default(tchi_mala_params *p);

/* Output: every accepted proposal of iterations i > burn_in, in order of iteration then
 * chain, with its log R. Reusable across runs: buffers grow on demand, never shrink. */
typedef struct tchi_mala_result {
  size_t n, dim;          /* accepted samples stored */
  double *x;              /* n x dim */
  double *log_r;          /* n */
  size_t cap;             /* capacity (samples) */
  double final_step;      /* η used at the last iteration */
  double last_accept_rate;/* the last measured acceptance rate (pooled over chains) */
  size_t n_proposals;     /* over all iterations and chains */
  size_t n_accepted;      /* over all iterations (burn-in included) */
} tchi_mala_result;

void tchi_mala_result_init(tchi_mala_result *r);
void tchi_mala_result_destroy(tchi_mala_result *r);

/* Scratch of a run (current and proposed states, their log R and gradients). */
typedef struct tchi_mala_ws {
  size_t cap, dim;              /* chains and dimension the buffers hold */
  double *x, *lp, *grad;        /* current: n x dim, n, n x dim */
  double *xp, *lpp, *gradp;     /* proposal */
  double *mean_fwd;             /* x + η ∇log R(x): n x dim */
} tchi_mala_ws;

void tchi_mala_ws_init(tchi_mala_ws *w);
void tchi_mala_ws_destroy(tchi_mala_ws *w);

/* Runs n chains from x0 (n x dim) for p->max_iter iterations; one logp call at x0, then one
 * per iteration on the n proposals. The step size and acceptance rate are shared by all
 * chains, as in the reference (a scalar η, pooled counts). A proposal is accepted when
 * u < exp(min(0, log α)), u ~ U[0, 1), drawn after the n x dim normals of the iteration;
 * NaN log α rejects, and so does a proposal with non-finite log R or gradient (the reference
 * would keep a +inf one). Results replace out's contents. A failing logp aborts the run
 * with its status (out->n = 0, nothing leaked; out and w stay reusable). */
tch_status tchi_mala_run(const tchi_mala_params *p, tchi_logp_fn logp, void *ctx, size_t n,
                         size_t dim, const double *x0, tchi_rng *rng, tchi_mala_ws *w,
                         tchi_mala_result *out);

/* ---- the MALA transition (mala.c), shared by the local search above and the SMC sampler's
 * rejuvenation (lib/smc/sampler.c). With step η and gradient g = ∇log π:
 *   proposal      x' = x + η g(x) + sqrt(2η) ξ,  ξ ~ N(0, I)
 *   log α         = log π(x') − log π(x) + log q(x | x') − log q(x' | x),
 *                   log q(b | a) = −‖b − a − η g(a)‖² / (4η) + const (the constants cancel)
 *   accept        u < exp(min(0, log α)), u ~ U[0, 1), and log π(x'), g(x') finite.
 * With a fixed η this kernel leaves π invariant (Metropolis–Hastings with the exact forward
 * and reverse proposal densities). */

/* mean_fwd = x + η grad and xp = mean_fwd + sqrt(2η) ξ over nd = n x dim entries, the normals
 * drawn in entry order. */
void tchi_mala_propose(size_t nd, double step, const double *x, const double *grad,
                       tchi_rng *rng, double *mean_fwd, double *xp);
/* log α of one chain (dim entries): x, its log π lp; the proposal xp with its forward mean
 * mean_fwd (= x + η ∇log π(x)), log π(xp) = lpp and ∇log π(xp) = gradp. */
double tchi_mala_log_alpha(size_t dim, double step, const double *x, double lp,
                           const double *mean_fwd, const double *xp, double lpp,
                           const double *gradp);
/* 1 iff the proposal is accepted: u < exp(min(0, log α)) (NaN rejects), lpp finite and
 * gradp (dim) finite. */
int tchi_mala_accept(double log_alpha, double u, double lpp, size_t dim, const double *gradp);
/* steps fixed-step MALA transitions of n chains in place: x (n x dim) with their log π (lp, n)
 * and ∇log π (grad, n x dim) on entry, all three updated to the chains' states on return.
 * One logp call per transition on the n proposals; per transition the n x dim normals, then
 * one uniform per chain in chain order (tchi_mala_run's order). *n_accepted (may be NULL) is
 * increased by the accepted proposals. Uses w's proposal buffers (grown on demand).
 * TCH_E_ARG for bad arguments; a failing logp returns its status with the chains part-way
 * (the caller discards them). No adaptation: the step is the caller's, so the kernel stays
 * exactly π-invariant. */
tch_status tchi_mala_chains(tchi_logp_fn logp, void *ctx, size_t n, size_t dim, double step,
                            size_t steps, double *x, double *lp, double *grad, tchi_rng *rng,
                            tchi_mala_ws *w, uint64_t *n_accepted);

#endif /* TCHI_DMETRICS_H */
