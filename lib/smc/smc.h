/* Sequential Monte Carlo primitives of Reinforced SMC (spec: shared/spec/reinforced-smc.md
 * §4, §6) and the importance-weighted replay buffer. Internal: tchi_ prefix.
 *
 * Everything here works on log-weights in double precision, always max-shifted before
 * exponentiating. A log-weight may be -inf (a weight of zero); NaN and +inf are errors
 * wherever a status is returned. Nothing allocates per call: the resamplers and the
 * tempering need no memory, the partial resampling takes caller scratch, and the buffer
 * keeps its own workspace, grown with its content.
 *
 * References (read, not copied): nolerk/gfn-smc-jax algorithms/gfn_tb/sampling_utils.py
 * (ess, binary_search_smoothing, systematic, stratified, multinomial),
 * algorithms/gfn_subtb_smc/gfn_subtb_smc_rnd.py (resampling, the chunk loop),
 * algorithms/gfn_tb/buffer.py (the terminal-state buffer); hyeok9855/gfn-smc-torch
 * utils/sampling_utils.py, utils/train_utils.py, buffers/buffers.py. */
#ifndef TCHI_SMC_H
#define TCHI_SMC_H
#include <stddef.h>
#include <stdint.h>
#include "core/core.h"
#include "io/io.h"

/* ---- log-weight utilities (weights.c) -------------------------------------------------- */

/* log Σ_i exp(lw_i), max-shifted. -inf when n == 0 or every entry is -inf; NaN if an entry
 * is NaN; +inf if an entry is +inf. */
double tchi_smc_logsumexp(size_t n, const double *lw);
/* log((1/n) Σ_i exp(lw_i)) (NaN for n == 0). */
double tchi_smc_log_mean_exp(size_t n, const double *lw);
/* Normalised weights of the tempered log-weights alpha lw (alpha in [0, 1]):
 * p_i = exp(alpha lw_i) / Σ_j exp(alpha lw_j); alpha = 0 gives equal weights over the
 * entries that are not -inf (and 0 for those). *out_lse (may be NULL) = log Σ_j exp(alpha lw_j).
 * TCH_E_NUMERIC if an entry is NaN or +inf or every entry is -inf (p is then unspecified);
 * TCH_E_ARG for n == 0 or alpha outside [0, 1]. */
tch_status tchi_smc_normalised_weights(size_t n, const double *lw, double alpha, double *p,
                                       double *out_lse);
/* In place lw_i <- lw_i - logsumexp(lw) (log-softmax); returns the logsumexp that was
 * subtracted (-inf / NaN as tchi_smc_logsumexp, in which case lw is left unchanged). */
double tchi_smc_log_normalise(size_t n, double *lw);
/* Kish effective sample size of the weights exp(alpha lw_i):
 * ESS = (Σ w)² / Σ w² in [1, n]; 0 when every entry is -inf (or n == 0); NaN if an entry is
 * NaN or +inf. tchi_smc_ess_normalised is ESS / n, the ESS_n of §4. Invariant under
 * lw -> lw + c. */
double tchi_smc_ess(size_t n, const double *lw, double alpha);
double tchi_smc_ess_normalised(size_t n, const double *lw, double alpha);
/* One SMC reweighting (§4 step 2.3): lw_i += log_g_i for every i, then returns
 * logsumexp_i(lw_i). When lw entered normalised (Σ exp = 1) this is log Σ_i W_i G_i, the
 * estimate of log(Z_e / Z_s) that the running log Ẑ accumulates. */
double tchi_smc_reweight(size_t n, double *lw, const double *log_g);
/* The sampler's output weights (§4 step 3): from normalised lw and the running log Ẑ,
 * out_i = lw_i + log Ẑ + log n, so that mean_i exp(out_i) = Ẑ: the scale of
 * single-trajectory log-IWs, which lets both share the IW buffer. out may alias lw. */
void tchi_smc_output_log_weights(size_t n, const double *lw, double log_z, double *out);

/* ---- adaptive weight tempering (§4.1; weights.c) --------------------------------------- */

/* Relative tolerance of the tempering solver: |ESS_n(lw / T*) - rho| <= rtol * rho. */
#define TCHI_SMC_TEMPER_RTOL 1e-3
/* The adaptive weight temperature T* = T*(lw; rho) >= 1 of §4.1:
 *   T* = 1 when ESS_n(lw) >= rho (so also for rho <= 0);
 *   otherwise the T > 1 with ESS_n(lw / T) = rho, within TCHI_SMC_TEMPER_RTOL, found by
 *   bisection on log T in double after bracketing by factors of 10 (the reference's
 *   bracket [1, 10] x 10^k);
 *   T* = +inf when even T -> inf (equal weights over the entries that are not -inf) gives
 *   ESS_n < rho, i.e. when fewer than rho n entries have a non-zero weight. The reference
 *   would loop forever there; +inf makes the resampling uniform over those entries.
 * ESS_n(lw / T) is non-increasing in 1/T, so the bisection is valid; T* does not change
 * under lw -> lw + c. *out_ess (may be NULL) = ESS_n(lw / T*).
 * TCH_E_ARG: n == 0, rho NaN or > 1. TCH_E_NUMERIC: an entry NaN or +inf, or all -inf. */
tch_status tchi_smc_temperature(size_t n, const double *lw, double rho, double *out_temperature,
                                double *out_ess);

/* ---- resampling (§4.2; resample.c) ----------------------------------------------------- */

typedef enum tchi_resampler {
  TCHI_RESAMPLER_SYSTEMATIC = 0,   /* default */
  TCHI_RESAMPLER_STRATIFIED = 1,
  TCHI_RESAMPLER_MULTINOMIAL = 2
} tchi_resampler;
#define TCHI_RESAMPLER_COUNT 3
/* "systematic", "stratified", "multinomial"; NULL for a value out of range. */
const char *tchi_resampler_name(tchi_resampler r);
/* Inverse of tchi_resampler_name; TCH_E_ARG (naming the choices) for an unknown name. */
tch_status tchi_resampler_from_name(const char *name, tchi_resampler *out);

/* Draws m ancestor indices, with replacement, from the non-negative weights w (n entries,
 * finite, positive sum; they need not be normalised), with the references' conventions:
 * positions u_k = (k + U_k) / m, k = 0..m-1, and A_k = the smallest i with C_i >= u_k,
 * where C is the normalised cumulative sum of w (searchsorted, side left), clamped to the
 * last i with w_i > 0 (so a zero weight is never drawn, even after rounding).
 *   systematic:  one U for every position;
 *   stratified:  an independent U_k per position;
 *   multinomial: the m positions are m sorted i.i.d. uniforms (exponential spacings), so
 *                the counts are those of m independent categorical draws.
 * Uniforms come from tchi_rng_uniform_pos (never 0): systematic uses 1, stratified m,
 * multinomial m + 1. O(n + m), no memory. The indices come out ascending for all three.
 * TCH_E_ARG: NULL pointers, n == 0, n or m > UINT32_MAX; TCH_E_NUMERIC: a weight negative,
 * NaN or infinite, or a zero (or overflowing) sum. Nothing is written on error. */
tch_status tchi_resample(tchi_resampler kind, size_t n, const double *w, size_t m,
                         tchi_rng *rng, uint32_t *out);

/* What one adaptive partial resampling did (tchi_smc_resample_tempered). */
typedef struct tchi_smc_resample_info {
  double temperature;    /* T* used (1: ordinary resampling; +inf: uniform, see above) */
  double ess_before;     /* ESS_n(lw) on entry */
  double ess_tempered;   /* ESS_n(lw / T*) */
  /* log((S / N) Σ_i W_{A_i}^{1 - 1/T*}) with W = softmax(lw), S = Σ_j W_j^{1/T*}: the
   * random factor (of expectation 1) that the paper's estimator drops when it renormalises
   * the carried weights. Adding it to log Ẑ gives the exactly unbiased variant
   * (unbiased_partial_resampling, §4 notes); 0 when T* = 1. */
  double log_correction;
} tchi_smc_resample_info;

/* Adaptive tempering + partial resampling of n particles (§4 step 2.4): T* = T*(lw; rho);
 * n ancestors drawn by `kind` from the weights exp(lw / T*); then, in place,
 * lw_i <- (1 - 1/T*) lw_{A_i} (the untempered remainder of the ancestor's log-weight; with
 * T* = 1 every particle restarts at 0). The caller moves the particles' states with
 * tchi_smc_gather and normalises lw afterwards (§4 step 2.5). scratch: n doubles. info may
 * be NULL. Errors as tchi_smc_temperature and tchi_resample; lw and ancestors are then
 * unspecified. */
tch_status tchi_smc_resample_tempered(tchi_resampler kind, size_t n, double *lw, double rho,
                                      tchi_rng *rng, uint32_t *ancestors, double *scratch,
                                      tchi_smc_resample_info *info);

/* dst row i = src row anc[i], rows of row_bytes bytes (n rows out). src and dst must not
 * overlap. */
void tchi_smc_gather(size_t n, size_t row_bytes, const uint32_t *anc, const void *src,
                     void *dst);

/* The resampling rule of §4 step 2.4: 1 iff resampling is on (target_ess < 1: the
 * reference's switch, target_ess = 1 turns it off), the chunk just propagated is not the
 * last (chunk + 1 < n_chunks) and ess_normalised < threshold (kappa, 0.2 by default). */
int tchi_smc_should_resample(double ess_normalised, double threshold, double target_ess,
                             uint32_t chunk, uint32_t n_chunks);

/* ---- importance-weighted replay buffer (§6; iwbuf.c) ------------------------------------ */

/* How an entry's sampling priority p (a log-weight) is set at insertion (§6.2). */
typedef enum tchi_iwbuf_priority {
  TCHI_IWBUF_PIW = 0,      /* p = raw log importance weight; tempered buffer-wide at sampling */
  TCHI_IWBUF_UIW = 1,      /* each inserted batch tempered to target_ess by itself, then
                              log-softmax normalised inside the batch */
  TCHI_IWBUF_REWARD = 2,   /* p = log R */
  TCHI_IWBUF_LOSS = 3,     /* p = log(loss) (per-sample TB loss) */
  TCHI_IWBUF_NONE = 4      /* p = 1: uniform */
} tchi_iwbuf_priority;
#define TCHI_IWBUF_PRIORITY_COUNT 5
/* "piw", "uiw", "reward", "loss", "none"; NULL out of range. */
const char *tchi_iwbuf_priority_name(tchi_iwbuf_priority p);
tch_status tchi_iwbuf_priority_from_name(const char *name, tchi_iwbuf_priority *out);

typedef struct tchi_iwbuf_params {
  uint32_t dim;                  /* doubles per sample x (>= 1) */
  size_t capacity;               /* entries kept (FIFO), 1..UINT32_MAX */
  tchi_iwbuf_priority priority;  /* default piw */
  double target_ess;             /* rho_buf in [0, 1], default 0.05: piw tempers the whole
                                    buffer to it at every draw, uiw each batch at insertion
                                    (0: no tempering) */
  tchi_resampler resampler;      /* how draws are made; default systematic */
  double log_r_min;              /* samples with log R <= this are dropped at insertion
                                    (TORCH's logr_lb); default -inf: keep every sample
                                    with log R > -inf */
} tchi_iwbuf_params;
void tchi_iwbuf_params_default(tchi_iwbuf_params *p, uint32_t dim, size_t capacity);

/* A FIFO ring of terminal samples. Entries live in slots 0..n-1; while the buffer is not
 * full, slot = insertion order and `head` = n; once full, the next insertion overwrites
 * slot `head` (the oldest) and head advances. Draws walk the slots in slot order, as the
 * reference's ring does, so a buffer read back from its serialisation draws identically. */
typedef struct tchi_iwbuf {
  tchi_iwbuf_params prm;
  size_t n;              /* live entries */
  size_t head;           /* slot of the next insertion */
  uint64_t n_added;      /* entries ever inserted (dropped ones excluded) */
  size_t alloc;          /* slots allocated (grows geometrically up to the capacity) */
  double *x;             /* alloc x dim */
  double *log_r;         /* alloc */
  double *log_iw;        /* alloc; NaN when the inserter gave none */
  double *prio;          /* alloc */
  double *scratch;       /* alloc: sampling probabilities */
  uint32_t *draw;        /* draw_cap: drawn slots when the caller does not want them */
  size_t draw_cap;
  /* The last draw: temperature T_buf (1 unless piw) and ESS_n of its probabilities. */
  double last_temperature, last_ess;
} tchi_iwbuf;

/* TCH_E_ARG for invalid parameters (the message names the field), TCH_E_NOMEM. Memory
 * grows with the content, not with the capacity. */
tch_status tchi_iwbuf_create(const tchi_iwbuf_params *p, tchi_iwbuf **out);
void tchi_iwbuf_free(tchi_iwbuf *b);   /* NULL is a no-op */
void tchi_iwbuf_clear(tchi_iwbuf *b);

/* Inserts a batch of n samples in order (oldest first): x (n x dim), log_r (n), and, as the
 * mode needs them, log_iw (n; required for piw and uiw, stored whenever given) and loss
 * (n, >= 0; required for loss). For piw the log-weights must be unnormalised log-IWs on a
 * common scale (log R + Σ log p_B - log p_0 - Σ log q, or SMC's log ŵ). Samples with
 * log_r <= log_r_min are skipped (uiw's batch normalisation still covers them, as TORCH).
 * A batch larger than the capacity keeps its last `capacity` samples.
 * The whole batch is validated and memory reserved first: on any error nothing changes.
 * TCH_E_ARG: NULL arrays the mode needs; TCH_E_NUMERIC: x not finite, log_r NaN or +inf,
 * log_iw NaN or +inf (piw/uiw), loss negative/NaN/+inf, or a uiw batch without a finite
 * log-weight. TCH_E_NOMEM. *out_added (may be NULL) = samples kept. */
tch_status tchi_iwbuf_add(tchi_iwbuf *b, size_t n, const double *x, const double *log_r,
                          const double *log_iw, const double *loss, size_t *out_added);

/* m draws with replacement (§6.3): probabilities softmax(p / T_buf) over every live entry,
 * in slot order, with T_buf = T*(p; target_ess) for piw and 1 otherwise; slots drawn by the
 * buffer's resampler with the caller's rng. Writes out_x (m x dim), out_log_r, out_log_iw
 * and out_slot (m each); any may be NULL. Records last_temperature and last_ess.
 * TCH_E_STATE: empty buffer and m > 0; TCH_E_NUMERIC: every priority is -inf;
 * TCH_E_NOMEM (first call needing a larger index workspace when out_slot is NULL). */
tch_status tchi_iwbuf_sample(tchi_iwbuf *b, tchi_rng *rng, size_t m, double *out_x,
                             double *out_log_r, double *out_log_iw, uint32_t *out_slot);

/* Slot of the i-th entry in FIFO order (0 = oldest), i < b->n. */
size_t tchi_iwbuf_slot(const tchi_iwbuf *b, size_t i);
/* Copies slot s's fields (s < b->n); any output may be NULL. */
void tchi_iwbuf_get(const tchi_iwbuf *b, size_t slot, double *x, double *log_r, double *log_iw,
                    double *priority);

/* Serialisation body for checkpoints: tag "TCIW", format, parameters, n, head, n_added and
 * the n slots in slot order. Errors stick in w->status. */
void tchi_iwbuf_write(const tchi_iwbuf *b, tchi_writer *w);
/* Reads a body written by tchi_iwbuf_write. Malformed or truncated input is TCH_E_IO
 * (naming r->path), another format TCH_E_VERSION; TCH_E_NOMEM. */
tch_status tchi_iwbuf_read(tchi_reader *r, tchi_iwbuf **out);

/* ---- the twisted SMC sampler (§4; sampler.c) ------------------------------------------------ */
/* N particles of a diffusion sampler (a tchi_dnet, either reference process of
 * diffusion.h) propagated by its forward policy in K chunks of L = T / K steps, weighted by
 * the log-flow twists of a tchi_dflow (partial energy, §3) and the fixed backward kernel,
 * with adaptive weight tempering and partial resampling between chunks. Energies come from
 * an energy env through tchi_env_log_density (callback errors are TCH_E_CALLBACK, NaN/Inf
 * TCH_E_NUMERIC). Nothing is differentiated here: the per-chunk record below is what the
 * chunked SubTB loss needs later.
 *
 * References (read, not copied): nolerk/gfn-smc-jax algorithms/gfn_subtb_smc/
 * gfn_subtb_smc_rnd.py (batch_simulate_fwd_subtrajectories, resampling);
 * hyeok9855/gfn-smc-torch models/gfn.py (get_trajectory_fwd_smc). */
struct tchi_dnet;
struct tchi_dnet_spec;
struct tchi_dflow;
struct tchi_mala_ws;
struct tch_env;

typedef struct tchi_smc_params {
  size_t n_particles;            /* N >= 1 */
  uint32_t n_chunks;             /* K >= 1, dividing the net's T */
  double resample_threshold;     /* kappa: resample when ESS_n < kappa (0.2) */
  double target_ess;             /* rho: tempering target (0.05); >= 1 turns resampling off */
  tchi_resampler resampler;      /* systematic */
  int unbiased_partial_resampling;  /* add info.log_correction to log Ẑ (§4 notes); 0 */
  int keep_paths;                /* also record every step's states (path, below); 0 */
  /* MALA rejuvenation (§4.3; appended): after each chunk's resampling and normalisation,
   * mala_steps Metropolis-adjusted Langevin moves of every particle with step mala_step on
   * the intermediate target of that chunk end (tchi_smc_rejuvenate). 0 = off (default). */
  uint32_t mala_steps;
  double mala_step;              /* eta > 0 (TCHI_SMC_MALA_STEP) */
} tchi_smc_params;
/* The reference's mcmc_step_size (0.2 in every target config of configs/target/). */
#define TCHI_SMC_MALA_STEP 0.2
/* The reference defaults (configs/algorithm/gfn_subtb_smc.yaml): kappa 0.2, rho 0.05,
 * systematic, the paper's (not exactly unbiased) partial resampling, no paths, no MALA
 * (mcmc.use: False) with step TCHI_SMC_MALA_STEP. */
void tchi_smc_params_default(tchi_smc_params *p, size_t n_particles, uint32_t n_chunks);

/* Workspace and result of tchi_smc_run; arrays are grown on demand and reused, so repeated
 * runs of the same size allocate nothing. Fields are valid after a successful run.
 *
 * With MALA rejuvenation (mala_steps > 0) the particles also move between chunks: chunk
 * j + 1 starts from the moved states, so chunk_x0[j+1, i] is chunk_x1[j, anc_j(i)] after the
 * moves and chunk_log_f0[j+1, i] the twist there (exactly the value the moves kept); x and
 * log_r are the final particles after the last chunk's moves on log R. The chunk sums no
 * longer telescope to one trajectory's weight (each chunk is still a valid SubTB
 * sub-trajectory), and the invariants below hold only without MALA.
 *
 * Per-chunk record (chunk j = 0..K-1 covers steps s = jL .. e = (j+1)L). "Particle i of
 * chunk j" is the i-th particle propagated in that chunk, i.e. after the resampling that
 * ended chunk j-1. Arrays are chunk-major: entry (j, i) is at j N + i, states at
 * (j N + i) dim.
 *   chunk_x0, chunk_x1   K N dim   x_s and x_e of particle i of chunk j (x_e before resampling)
 *   chunk_log_pf         K N       sum_{k=s}^{e-1} log q(x_{k+1} | x_k) (no log p_0)
 *   chunk_log_pb         K N       sum_{k=s}^{e-1} log p_B(x_k | x_{k+1})
 *   chunk_log_f0, _f1    K N       twists log F_s(x_s), log F_e(x_e) (SMC conventions:
 *                                  log F_0 = log p_0, log F_T = log R)
 *   chunk_log_r1         K N       log R(x_e) (energy constant of the partial energy)
 *   chunk_anc            K N       ancestors drawn after chunk j: particle i of chunk j + 1
 *                                  continues particle chunk_anc[j N + i] of chunk j (the
 *                                  identity when chunk j did not resample; always for j = K-1)
 *   log_p0               N         log p_0 of chunk 0's start states (= chunk_log_f0[0..N))
 *   chunk_log_g          K N       incremental log-weights f1 - f0 + log_pb - log_pf
 *   chunk_log_z_inc      K         log Σ_i W_i G_i added to log Ẑ
 *   chunk_ess            K         ESS_n after reweighting (what the rule compares to kappa)
 *   chunk_resampled      K         1 iff resampling happened after the chunk
 *   chunk_temperature    K         T* used (1 when not resampled)
 *   chunk_ess_tempered   K         ESS_n(lw / T*) (chunk_ess when not resampled)
 *   chunk_log_correction K         the unbiasedness factor of tchi_smc_resample_info (0 if none)
 *   path (keep_paths)    K N (L+1) dim   every state of particle i of chunk j, steps s..e
 * Invariants: chunk_x0[j+1, i] = chunk_x1[j, anc_j(i)], chunk_log_f0[j+1, i] =
 * chunk_log_f1[j, anc_j(i)]; without resampling the chunk sums telescope to the
 * single-trajectory log-IW log R + Σ log p_B - log p_0 - Σ log q. */
typedef struct tchi_smc_sampler {
  /* shape of the last run */
  size_t n;
  uint32_t dim, T, K, L;
  /* outputs */
  double *x;                     /* N x dim final particles x_T (never resampled) */
  double *log_w;                 /* N unnormalised log-weights: log-mean-exp = log Ẑ */
  double *log_r;                 /* N log R(x_T) */
  double log_z;                  /* running log Ẑ at the end */
  uint32_t n_resamples;          /* chunks after which resampling happened */
  uint64_t n_energy_evals;       /* points passed to the energy in the last run (with MALA:
                                    N K (1 + mala_steps), plus a Langevin net's N T) */
  /* per-chunk record (layout above) */
  double *chunk_x0, *chunk_x1, *chunk_log_pf, *chunk_log_pb, *chunk_log_f0, *chunk_log_f1;
  double *chunk_log_r1, *chunk_log_g, *log_p0, *path;
  uint32_t *chunk_anc;
  double *chunk_log_z_inc, *chunk_ess, *chunk_temperature, *chunk_ess_tempered;
  double *chunk_log_correction;
  uint8_t *chunk_resampled;
  /* workspace */
  double *lw, *scratch, *grad, *step_log_r;
  size_t cap_n, cap_nd, cap_nk, cap_nkd, cap_k, cap_path;   /* element counts allocated */
  /* MALA rejuvenation (appended). Last run: proposals and acceptances over all chunks, and
   * per chunk the acceptance rate (NaN without moves). Workspace: log R and its gradient at
   * the chunk-end states (gathered with them) and at the proposals, the twist gradient. */
  uint64_t mala_proposals, mala_accepted;
  double *chunk_mala_accept;     /* K */
  double *cur_log_r, *cur_grad_r, *prop_log_r, *prop_grad_r, *mala_grad;
  struct tchi_mala_ws *mala_ws;  /* proposal buffers, allocated at the first move */
  size_t cap_mn, cap_mnd;
} tchi_smc_sampler;

void tchi_smc_sampler_init(tchi_smc_sampler *s);
void tchi_smc_sampler_destroy(tchi_smc_sampler *s);

/* ---- MALA rejuvenation (§4.3; sampler.c) ---- */
/* mala_steps fixed-step MALA moves (lib/diffusion/mala.c's transition: proposal
 * x' = x + eta grad log pi(x) + sqrt(2 eta) xi, Metropolis-Hastings ratio with the forward
 * and the reverse proposal densities) of n particles x (n x dim, in place) on the twist of
 * step k, pi = F_k of tchi_dflow_log_f (k = T: log R; flow NULL: f = 0, linear beta) with
 * ref = the policy's spec. On entry log_f (n) holds log F_k(x) (the value the caller's
 * weights used) and log_r, grad_log_r (n, n x dim) log R and its gradient at x (unused at
 * k = 0); on return x and log_f are the moved particles and their twist. Each move evaluates
 * the energy with its gradient once at the n proposals (s->n_energy_evals += n) and the
 * flow once with its input gradient. The kernel leaves pi invariant, so weighted particles
 * that target pi still do afterwards and the caller's weights stay valid. *accepted (may be
 * NULL) is increased by the accepted proposals. Draws from rng: per move n dim normals, then
 * n uniforms. Uses s's MALA workspace (grown on demand). TCH_E_ARG (bad arguments, step not
 * finite and > 0), TCH_E_CONFIG (env without TCH_ENERGY_HAS_GRAD), TCH_E_CALLBACK,
 * TCH_E_NUMERIC (a non-finite energy, gradient or twist at a proposal), TCH_E_NOMEM; then x
 * and log_f are part-way.
 *
 * The reference (nolerk/gfn-smc-jax algorithms/gfn_subtb_smc/mcmcs.py and its call in
 * gfn_subtb_smc_rnd.py) gets this wrong in two ways, read not copied: (1) the call passes
 * get_log_f a keyword init_log_prob_fn= that the function does not take (its parameter is
 * ref_log_prob_fn), so mcmc.use = True fails as shipped; (2) fixed, the reference term of its
 * MALA target would be the initial distribution's log-density, which for the pinned-Brownian
 * process is 0 (initial_dist = None), while the twists in the weights use the step's marginal
 * N(0, sigma^2 t_k): the moves would target another distribution than the weights assume,
 * biasing every later estimate. (Its optional per-chain Robbins-Monro step adaptation during
 * burn-in is also not exactly invariant; here the step is fixed.) This function takes the
 * target from the one twist function the weights use. */
tch_status tchi_smc_rejuvenate(const struct tchi_dnet_spec *ref, struct tchi_dflow *flow,
                               struct tch_env *env, uint32_t k, size_t n, uint32_t mala_steps,
                               double mala_step, double *x, double *log_f,
                               const double *log_r, const double *grad_log_r, tchi_rng *rng,
                               tchi_smc_sampler *s, uint64_t *accepted);

/* One SMC run (§4): x_0 ~ p_0; for each chunk, L proposal steps of net (one batched network
 * evaluation per step), the twist at the chunk end (flow may be NULL: f = 0, linear beta;
 * log R from env at every chunk end, K N energy points in all, plus N per step for a
 * Langevin net's gradient), reweighting, log Ẑ += log Σ W G, and when
 * tchi_smc_should_resample(ESS_n, kappa, rho, j, K): tchi_smc_resample_tempered with the
 * particles and cached end twists gathered by ancestor; then log-normalisation; then, with
 * mala_steps > 0, tchi_smc_rejuvenate on the chunk end's twist (log R after the last chunk;
 * the chunk-end energy call then also returns the gradient, at no extra evaluation). The
 * output weights are tchi_smc_output_log_weights of the final normalised weights: the moves
 * never change a weight, so with the same rng state everything up to the first move is
 * bit-identical to a run without MALA (with K = 1: log Ẑ and every weight). rng is advanced.
 * TCH_E_ARG: NULL arguments, N = 0, K not dividing T, net/flow/env shapes disagreeing, a
 * Langevin net with an env without gradient, mala_step not finite and > 0 with
 * mala_steps > 0; TCH_E_CONFIG: mala_steps > 0 with an env without gradient;
 * TCH_E_CALLBACK, TCH_E_NUMERIC (non-finite energy, twist or incremental weight, naming
 * chunk and particle); TCH_E_NOMEM. On error the record is partial. */
tch_status tchi_smc_run(struct tchi_dnet *net, struct tchi_dflow *flow, struct tch_env *env,
                        const tchi_smc_params *p, tchi_rng *rng, tchi_smc_sampler *out);

/* ---- the training losses (§5; loss.c) ------------------------------------------------------ */
/* Losses on a batch of n detached trajectories x_0..x_T (a tchi_dtraj: on-policy samples,
 * SMC particles' paths, or backward re-sampled replays) with K chunks of L = T / K steps and
 * boundaries b_j = j L. With Δ_k = log q(x_{k+1} | x_k) - log p_B(x_k | x_{k+1}) under the
 * current net, lr = the floored log R(x_T) (below) and the loss conventions of §3:
 *   log F_0 = log Z + log p_0(x_0),   log F_K = β_inv lr,
 *   log F_j = f_phi(x_{jL}, t_{jL}) + (1 - beta_{jL}) log p_ref(x_{jL}) + beta_{jL} log R(x_{jL}),
 * (interior log R unfloored and untempered, as the references) the residuals are
 *   TB:  δ_i = log Z + log p_0(x_0) + Σ_k Δ_k - β_inv lr                        (§5.1)
 *   δ¹_ij = log F_j + Σ_{k in chunk j} Δ_k - log F_{j+1},                 j = 0..K-1
 *   δ²_ij = (log F_j + Σ_{k >= jL} Δ_k - log F_K) / (K - j)                (§5.2)
 * SubTB_i = Σ_j (δ¹_ij² + δ²_ij²) / (2K). The batch loss is mean_i L_i with, per type:
 *   tb_subtb (default, §5.3): L_i = δ_i² + w SubTB_i; the policy and log Z get gradients
 *            only from the TB term, f_phi and beta only from SubTB (JAX loss_fn_joint,
 *            TORCH tb_subtb_loss);
 *   subtb:   L_i = w SubTB_i, training everything (JAX loss_fn_subtb, which has no
 *            weight: w = 1 matches it);
 *   lv_subtb (§5.4): L_i = ρ_i² + w SubTB_i, ρ_i = ℓ_i - mean_i ℓ with ℓ_i = δ_i - log Z
 *            (the log-variance loss); the policy is trained by the LV term only, log Z
 *            (through log F_0), f_phi and beta by SubTB.
 * Log-reward floor (§5.4): lr = log R if log R > c, else c - log1p(c - log R), c = logr_clip:
 * continuous and C¹ at c where JAX's c - log(c - log R) is infinite (c = -inf: no floor). */
struct tchi_dtraj;
typedef enum tchi_smc_loss_type {
  TCHI_SMC_LOSS_TB_SUBTB = 0,
  TCHI_SMC_LOSS_SUBTB = 1,
  TCHI_SMC_LOSS_LV_SUBTB = 2
} tchi_smc_loss_type;
#define TCHI_SMC_LOSS_TYPE_COUNT 3
/* "tb_subtb", "subtb", "lv_subtb"; NULL out of range. */
const char *tchi_smc_loss_type_name(tchi_smc_loss_type t);
tch_status tchi_smc_loss_type_from_name(const char *name, tchi_smc_loss_type *out);

#define TCHI_SMC_LOGR_CLIP (-1e5)   /* logr_clip: configs/algorithm/gfn_subtb_smc.yaml, TORCH logr_lb */

typedef struct tchi_smc_loss_params {
  tchi_smc_loss_type type;       /* tb_subtb */
  uint32_t n_chunks;             /* K >= 1, dividing T */
  double subtb_weight;           /* w >= 0 (1) */
  double inv_temp;               /* β_inv, finite (1) */
  double logr_clip;              /* floor of log R(x_T) (TCHI_SMC_LOGR_CLIP; -inf: none) */
  uint32_t block;                /* time steps (and boundaries) per network evaluation in both
                                    passes; 0 = automatic (tchi_dchunk). Results do not depend
                                    on it. */
} tchi_smc_loss_params;
void tchi_smc_loss_params_default(tchi_smc_loss_params *p, uint32_t n_chunks);

typedef struct tchi_smc_loss_result {
  double loss;                   /* the batch loss mean_i L_i */
  double tb;                     /* mean_i δ_i² (lv_subtb: mean_i ρ_i²; subtb: a diagnostic
                                    not part of loss) */
  double subtb;                  /* mean_i SubTB_i, before the weight w */
} tchi_smc_loss_result;

/* Per-batch arrays of the loss, grown on demand and reused (no allocation once warm).
 * After a successful call: log_f (n x (K+1), row i = log F_0..log F_K of trajectory i),
 * chunk_delta (n x K, Σ_{k in chunk j} Δ_k), log_r_mid (K-1 boundary-major blocks of n: the
 * interior log R used), tb_res (n: δ_i, or ρ_i for lv_subtb). */
typedef struct tchi_smc_loss_ws {
  double *log_f, *chunk_delta, *log_r_mid, *tb_res, *log_p0;
  double *coef;                  /* n x K: dL / d(Σ_{k in chunk j} log q) */
  double *d_f;                   /* (K-1) x n: dL / d log F_j at interior boundaries */
  double *r_minus_ref;           /* (K-1) x n: log R - log p_ref there (d log F / d beta) */
  double *stage;                 /* a block of boundaries x n x dim staged states */
  double *beta, *d_beta;         /* T + 1 */
  uint32_t *steps;               /* K */
  size_t cap_n, cap_nk, cap_stage, cap_t;
} tchi_smc_loss_ws;
void tchi_smc_loss_ws_init(tchi_smc_loss_ws *w);
void tchi_smc_loss_ws_destroy(tchi_smc_loss_ws *w);

/* The loss of p->type on the trajectories t of net (dim, T, and Langevin gradients as
 * tchi_dtraj_check requires) with their terminal log R log_r (n) and interior boundary
 * log R log_r_mid ((K-1) x n boundary-major: entry (j-1) n + i is log R(x_{jL}) of trajectory
 * i, j = 1..K-1; the SMC record's chunk_log_r1 has this layout for unresampled particles),
 * or, when log_r_mid is NULL and K > 1, evaluated through env (tchi_env_log_density,
 * n (K-1) points). flow may be NULL: f_phi = 0 with the linear schedule, nothing trained.
 *
 * Two passes (§5.5): pass 1 evaluates, without keeping activations, the policy on blocks of
 * time steps and f_phi on blocks of boundaries, and forms every residual and adjoint; with
 * grad, pass 2 evaluates each block again, keeps its activations and back-propagates at
 * once, so memory holds one block, never a whole trajectory. Gradients are ADDED to
 * net->grads, net->log_z_grad (if spec.learn_log_z) and, with a flow, its parameter, phase
 * and beta-logit gradients: the caller zeroes them and steps the optimisers.
 * res (may be NULL) receives the batch loss and its parts, tb_residual (n, may be NULL) δ_i
 * (lv_subtb: ρ_i) for the IW buffer's loss priority and the Teacher's reward.
 * TCH_E_ARG: NULL net/t/log_r/p/ws, K not dividing T, flow or env shapes disagreeing, no
 * source for the interior log R, bad parameters; TCH_E_NUMERIC: a non-finite log R (given
 * or evaluated), twist or residual, naming the trajectory, and then nothing is accumulated;
 * TCH_E_CALLBACK from env; TCH_E_NOMEM. Everything that can allocate does so before the
 * first gradient is added. */
tch_status tchi_smc_joint_loss(struct tchi_dnet *net, struct tchi_dflow *flow,
                               struct tch_env *env, const struct tchi_dtraj *t,
                               const double *log_r, const double *log_r_mid,
                               const tchi_smc_loss_params *p, int grad, tchi_smc_loss_ws *ws,
                               tchi_smc_loss_result *res, double *tb_residual);

#endif /* TCHI_SMC_H */
