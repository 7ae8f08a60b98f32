/* GFlowNet core: the policy network, padded trajectory batches, forward and backward
 * sampling, and the TB / DB objectives with analytic gradients.
 *
 * Trajectory convention (discrete): L actions a_0..a_{L-1}, the last one EXIT, and L states
 * s_0..s_{L-1} = x. P_F(a_t | s_t) is read at row s_t; P_B(s_t | s_{t+1}) at row s_{t+1}
 * with backward action a_t; the EXIT transition has P_B = 1. A state whose only valid
 * forward action is EXIT is "forced-terminal": P_F(EXIT) = 1 and, for DB, its flow is
 * its reward (as the reference ties F(x) = R(x) for edge-terminated x). */
#ifndef TCHI_GFN_H
#define TCHI_GFN_H
#include "core/core.h"
#include "nn/nn.h"
#include "envs/env.h"
#include "teacher/policy.h"

/* ---- policy ------------------------------------------------------------------------- */
/* Architectures of the discrete policy (nn.arch). */
typedef enum tchi_policy_arch {
  TCHI_ARCH_MLP = 0,       /* MLP [in -> hidden^n -> outputs] on the state (grid reference) */
  TCHI_ARCH_SSR = 1        /* state-state-reward encoder/scorer (discovery reference, ssr.c) */
} tchi_policy_arch;

struct tchi_ssr;

struct tch_policy {
  tchi_ref ref;
  uint32_t state_dim, n_actions, in_dim;
  int onehot;              /* input is the env's built-in one-hot code (nnz = state_dim) */
  int learn_pb;            /* outputs hold learned backward logits */
  int has_flow;            /* outputs hold log F(s) (DB) */
  size_t out_dim, off_pb, off_flow;
  /* MLP: the network. SSR: only the parameter store (params, grads, n_params, act; n_layers
   * is 0), so optimisers, checkpoints and gradient zeroing see one flat array either way. */
  tchi_mlp mlp;
  tchi_policy_arch arch;
  struct tchi_ssr *ssr;    /* SSR weights' views and workspaces (NULL for an MLP) */
  double log_z, log_z_grad;
  char kernel[32];         /* requested kernel name (kept for clones and files) */
  tchi_gemm gemm;
  tchi_mlp_ws ws;
  /* scratch reused across calls */
  float *feat; int32_t *idx; size_t enc_cap;
};

/* Architecture of a new policy. */
typedef struct tchi_policy_spec {
  uint32_t state_dim, n_actions, in_dim;
  int onehot, learn_pb, has_flow;
  size_t hidden_dim, n_hidden;
  tchi_act act;
  const char *kernel;
  int threads;
  double logz_init;
  /* arch = TCHI_ARCH_SSR (zero = MLP): encoder [in -> ssr_hidden -> ssr_embed], scorer
   * [2 ssr_embed -> ssr_hidden -> 1], LeakyReLU(0.01); scores clipped to +-ssr_logit_clip.
   * hidden_dim, n_hidden and act are then unused; learn_pb is not supported. */
  tchi_policy_arch arch;
  size_t ssr_hidden, ssr_embed;
  double ssr_logit_clip;
} tchi_policy_spec;

/* Weights from the init stream (seed, init_stream): Student 0, Teacher 1. */
tch_status tchi_policy_new(const tchi_policy_spec *spec, uint64_t seed, uint64_t init_stream,
                           tch_policy **out);
/* Spec from config keys nn.* (nn.arch, nn.ssr_*), student.* for env. */
tch_status tchi_policy_spec_from_config(const tch_config *c, const tch_env *env,
                                        tchi_policy_spec *spec);
tch_status tchi_policy_clone(const tch_policy *p, tch_policy **out);
void tchi_policy_release(tch_policy *p);
/* One forward over n states: *out = n x out_dim (owned by the policy's workspace, valid
 * until the next forward). */
tch_status tchi_policy_forward(tch_policy *p, tch_env *e, size_t n, const int32_t *states,
                               const float **out);
/* Backward of the last tchi_policy_forward: dout is n x out_dim (dLoss/d outputs; entries of
 * invalid actions are ignored by SSR). Accumulates into p->mlp.grads (callers zero them).
 * TCH_E_ARG if no forward precedes it. */
tch_status tchi_policy_backward(tch_policy *p, const float *dout);
tch_status tchi_policy_save(const tch_policy *p, const char *path);
tch_status tchi_policy_load(const char *path, tch_policy **out);
/* Serialisation body shared with checkpoints. */
struct tchi_writer;
struct tchi_reader;
void tchi_policy_write(const tch_policy *p, struct tchi_writer *w);
tch_status tchi_policy_read(struct tchi_reader *r, tch_policy **out);

/* ---- SSR architecture (ssr.c) ------------------------------------------------------------
 * The reference's discovery policy (discovery/gflownet/policy.py: BasePolicySSR, network.py:
 * make_mlp; spec §4.3). Encoder E = Linear(in, h) LeakyReLU Linear(h, e); scorer
 * S = Linear(2e, h) LeakyReLU Linear(h, 1). For a state s with valid forward actions
 * a_1..a_m (one unique child each, see envs/builtin/seqpa.h) and children c_j = step(s, a_j):
 * score_j = clip(S([E(s), E(c_j)]), -clip, clip), NaN -> 0 (torch.clip propagates NaN and
 * torch.nan_to_num maps it to 0), logit of a_j = score_j, so log P_F = score - logsumexp.
 * The EXIT child is the leaf with the same content; the reference's featurisation ignores
 * the leaf flag, so its encoding is E(s) itself (no env call). Invalid actions get the logit
 * -clip (callers mask them). With has_flow, log F(s) = logsumexp of the valid scores (the
 * reference's values_unique). The scorer's first layer is split as W_a E(s) + W_b E(c):
 * E(s) and W_a E(s) are computed once per state; every other product is one gemm over all
 * (state, child) pairs of the batch.
 *
 * Parameter store layout (p->mlp.params, same order in grads and files): the encoder as an
 * MLP [in, h, e] (W0 in x h, b0, W1 h x e, b1), then the scorer as an MLP [2e, h, 1] (W0 is
 * 2e x h: rows 0..e-1 are W_a, rows e..2e-1 W_b; b0; w1 h x 1; b1). */
#define TCHI_SSR_LOGIT_CLIP 50.0   /* clip_policy_logit_min/max of every discovery task */

typedef struct tchi_ssr {
  size_t hidden, embed;
  double logit_clip;
  tchi_mlp enc, sc;        /* views into the policy's store (never destroyed themselves) */
  tchi_mlp_ws enc_ws;
  /* last forward (valid until the next one) */
  size_t rows, pairs, children;   /* states n, (state, valid action) pairs m, non-EXIT pairs */
  int have_forward;
  const float *emb;        /* (n + children) x e encoder output (enc_ws) */
  /* workspaces, grown on demand */
  uint8_t *fwd;            /* n x n_actions */
  int32_t *pair_row, *pair_act, *pair_enc;   /* m: state row, action, encoder row */
  int32_t *enc_states;     /* (n + children) x state_dim: the states, then the children */
  int32_t *parents, *acts; /* children x state_dim, children: the step call's inputs */
  float *feat; int32_t *idx;                 /* encoder input of the n + children rows */
  float *a, *b, *hid;      /* n x h (W_a E(s) + b0), (n + children) x h, m x h (act in place) */
  float *raw, *dscore;     /* m: scorer outputs before the clip, dLoss/d score */
  float *demb;             /* (n + children) x e */
  float *out;              /* n x out_dim */
  double *lse;             /* n */
  size_t cap_rows, cap_pairs, cap_enc;
} tchi_ssr;

/* Internal to policy.c: allocates p->ssr and the parameter store (p->mlp), weights zero. */
tch_status tchi_ssr_create(tch_policy *p, const tchi_policy_spec *spec);
void tchi_ssr_destroy(tch_policy *p);
/* PyTorch nn.Linear default init of every layer, encoder first. */
void tchi_ssr_init_uniform(tch_policy *p, tchi_rng *rng);
tch_status tchi_ssr_forward(tch_policy *p, tch_env *e, size_t n, const int32_t *states,
                            const float **out);
tch_status tchi_ssr_backward(tch_policy *p, const float *dout);

/* ---- trajectory batches ----------------------------------------------------------------- */
typedef struct tchi_traj {
  size_t n, cap;
  size_t T;                /* max actions per trajectory = max_len + 1 */
  uint32_t state_dim, n_actions;
  int32_t *states;         /* cap x T x state_dim */
  int32_t *actions;        /* cap x T (-1 past len) */
  uint32_t *len;           /* cap */
  uint8_t *fwd;            /* cap x T x n_actions: forward mask at each state */
  uint8_t *bwd;            /* cap x T x (n_actions-1): backward mask at each state */
  double *log_r;           /* cap: log-reward of the terminal state (training scale) */
  /* scratch for batched env queries over all states (grown on demand, reused) */
  int32_t *scr_states; uint8_t *scr_fwd, *scr_bwd; size_t scr_cap;
} tchi_traj;

void tchi_traj_init(tchi_traj *t);
void tchi_traj_destroy(tchi_traj *t);
/* Ensures room for n trajectories of the env's shape and sets t->n = n. */
tch_status tchi_traj_reserve(tchi_traj *t, const tch_env *e, size_t n);
static inline int32_t *tchi_traj_state(const tchi_traj *t, size_t i, size_t k)
{ return t->states + (i * t->T + k) * t->state_dim; }
static inline const int32_t *tchi_traj_terminal(const tchi_traj *t, size_t i)
{ return tchi_traj_state(t, i, t->len[i] - 1); }
/* Queries the env for the masks of every state of the batch (one batched call). */
tch_status tchi_traj_fill_masks(tchi_traj *t, tch_env *e);
/* Copies terminal states (n x state_dim) into out. */
void tchi_traj_terminals(const tchi_traj *t, int32_t *out);
/* Copies trajectories from/to the public padded layout (see policy.h). */
tch_status tchi_traj_from_public(tchi_traj *t, tch_env *e, size_t n, const int32_t *states,
                                 const int32_t *actions, const uint32_t *len);

/* ---- sampling -------------------------------------------------------------------------- */
/* Forward sampling of n trajectories. Behaviour: (1-eps)*softmax(logits/temp) + eps*uniform
 * over valid actions; log_pf (may be NULL) is scored under the policy itself. */
tch_status tchi_sample_forward(tch_policy *p, tch_env *e, tchi_rng *rng, size_t n,
                               double eps, double temp, tchi_traj *out, double *log_pf);
/* Same, rolling out from given start states (n x state_dim) instead of s0. */
tch_status tchi_sample_forward_from(tch_policy *p, tch_env *e, tchi_rng *rng, size_t n,
                                    const int32_t *start, double eps, double temp,
                                    tchi_traj *out, double *log_pf);
/* A state whose only valid forward action is EXIT (its mask row). */
int tchi_forced_terminal(const uint8_t *fwd_mask, size_t n_actions);
/* Copies a batch into the public padded layout of policy.h (len may be NULL). */
void tchi_traj_to_public(const tchi_traj *t, int32_t *states, int32_t *actions, uint32_t *len);
/* Copies trajectory src_i of src into slot dst_i of dst (same env shape). */
void tchi_traj_copy_one(tchi_traj *dst, size_t dst_i, const tchi_traj *src, size_t src_i);
/* Backward re-sampling of trajectories ending in the terminal states x (n x state_dim):
 * parents uniformly among { backward_step(s, a) : bwd[s][a] and fwd[parent][a] }, or by the
 * learned P_B restricted to those parents when p != NULL && p->learn_pb. */
tch_status tchi_sample_backward(tch_policy *p, tch_env *e, tchi_rng *rng, size_t n,
                                const int32_t *x, tchi_traj *out);

/* ---- objectives ---------------------------------------------------------------------------- */
/* Network evaluation of every state of a batch, kept for the gradient. */
typedef struct tchi_eval {
  size_t rows;
  size_t *row0;            /* first row of trajectory i (n + 1 entries) */
  const float *out;        /* rows x out_dim (policy workspace) */
  float *dout;             /* rows x out_dim gradient scratch */
  double *log_pf, *log_pb; /* per trajectory */
  size_t cap_rows, cap_n;
  int32_t *rowstates;      /* rows x state_dim */
  size_t cap_rowstates;
  double *lp;              /* n_actions scratch */
  size_t cap_lp;
  uint8_t *fwd, *bwd;      /* masks of rowstates (transition batches) */
  size_t cap_fwd, cap_bwd;
} tchi_eval;

void tchi_eval_init(tchi_eval *ev);
void tchi_eval_destroy(tchi_eval *ev);
/* One forward over all states of t; fills log_pf / log_pb per trajectory. */
tch_status tchi_eval_traj(tch_policy *p, tch_env *e, const tchi_traj *t, tchi_eval *ev);

/* TB: delta_i = log_r_i + log_pb_i - log_z - log_pf_i; loss = mean delta^2.
 * With grad != 0, accumulates gradients of the loss into the policy (network and log Z),
 * scaling each trajectory by weight[i] if weight != NULL. delta (may be NULL) gets the
 * residuals computed with the pre-update parameters. */
tch_status tchi_tb_loss(tch_policy *p, tch_env *e, const tchi_traj *t, tchi_eval *ev,
                        const double *log_r, const double *weight, int grad, double *delta,
                        double *loss);
/* DB: per-transition d_t = log F(s_t) - log F(s_{t+1}) + log P_F - log P_B (terminal flow =
 * log R); loss = mean over trajectories of sum_t d_t^2. d (may be NULL) gets n x T
 * residuals (0 past each trajectory's transitions). */
tch_status tchi_db_loss(tch_policy *p, tch_env *e, const tchi_traj *t, tchi_eval *ev,
                        const double *log_r, int grad, double *d, double *loss);
/* ev: caller-owned evaluation scratch reused across steps (NULL = a temporary one). */

/* DB on replayed transitions (trainer_db.py learn_from_transition). A record is
 * s (state_dim), a, s' (state_dim), is_terminal: n x (2 state_dim + 2) int32. For terminal
 * transitions the target is log_r[i]; otherwise log F(s'). The EXIT transition has
 * P_B = 1. loss = mean d^2 over transitions; d (may be NULL) gets the residuals. */
tch_status tchi_db_transition_loss(tch_policy *p, tch_env *e, size_t n, const int32_t *records,
                                   const double *log_r, tchi_eval *ev, int grad, double *d,
                                   double *loss);
/* Record width of a transition of env e. */
static inline uint32_t tchi_transition_dim(const tch_env *e) { return 2 * e->d.state_dim + 2; }

/* Masked log-softmax of one row (invalid entries get -INFINITY); returns log-sum-exp. */
double tchi_masked_log_softmax(const float *logits, const uint8_t *mask, size_t k,
                               double *out_logp);

#endif /* TCHI_GFN_H */
