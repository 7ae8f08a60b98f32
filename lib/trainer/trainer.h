/* The training loop, internal view. */
#ifndef TCHI_TRAINER_H
#define TCHI_TRAINER_H
#include "core/core.h"
#include "gfn/gfn.h"
#include "nn/nn.h"
#include "diffusion/diffusion.h"
#include "diffusion/dmetrics.h"
#include "teacher/behaviour.h"
#include "teacher/trainer.h"
#include "smc/smc.h"

/* Exact-target statistics of the visited terminal states (training visits). */
typedef struct tchi_visits {
  size_t window;           /* last N visits used for the empirical L1 */
  int64_t *ring;           /* window entries: index in X */
  size_t head, count;
  uint32_t *counts;        /* |X| counts of the ring's content */
  uint8_t *seen_mode;      /* |X|: mode visited at least once */
  size_t modes_found;
  uint64_t total;
} tchi_visits;

typedef enum tchi_loss_kind { TCHI_LOSS_TB = 0, TCHI_LOSS_DB = 1 } tchi_loss_kind;

/* One trained sampler and its optimiser. */
typedef struct tchi_learner {
  tch_policy *policy;
  tchi_adam opt;
  tchi_eval ev;
  double grad_clip;
  size_t n_clip_groups;      /* leading optimiser groups covered by the norm clip */
  double last_loss, last_grad_norm;
  double logz_min;           /* log Z clamped to >= this after each update (-inf: off) */
  double loss_clamp;         /* TB loss per trajectory min(d^2, this) (0: off) */
  double *clamp_d, *clamp_w; /* batch-sized scratch of the clamp (NULL when off) */
} tchi_learner;

/* Which loop a trainer runs: the discrete Teacher-Student loop (trainer.c, grid/trainer.py)
 * or the diffusion-sampler loop of energy envs (dtrainer.c, diffusion/train.py). */
typedef enum tchi_trainer_kind {
  TCHI_TRAINER_DISCRETE = 0,
  TCHI_TRAINER_DIFFUSION = 1
} tchi_trainer_kind;

typedef struct tchi_dtrainer tchi_dtrainer;

struct tch_trainer {
  tchi_ref ref;
  tchi_trainer_kind kind;
  struct tchi_dtrainer *diff; /* the diffusion loop's state (kind DIFFUSION), else NULL.
                                 Shared fields below used by both kinds: env, cfg, seed,
                                 batch, buffer, step, reward_calls, grad_steps, progress */
  tch_env *env;
  tch_config *cfg;
  tchi_loss_kind loss_kind;
  uint64_t seed;
  size_t batch;
  double reward_exponent, clip_min;
  tchi_learner student;
  tchi_learner teacher;      /* policy == NULL when the Teacher is off */
  tchi_teacher_reward treward;
  tch_buffer *buffer;        /* NULL when off */
  tch_priority priority;
  int transitions;           /* DB with a buffer: the buffer holds transitions (trainer_db.py) */
  size_t replay_n;           /* transitions per replay step */
  int32_t *tr_rec;           /* transition records of a batch, or a replayed sample */
  double *tr_log_r, *tr_prio, *tr_d, *tr_tlog;
  size_t tr_cap;
  tch_mixer *mixer;
  int gafn;                  /* GAFN baseline: Student trained with RND intrinsic rewards */
  tchi_rnd rnd;
  tchi_gafn_params gafn_params;
  tchi_ls_params ls;
  tchi_ls_ws ls_ws;
  /* per-step scratch */
  tchi_traj traj;
  double *delta, *dres, *rt, *t_log_r, *prio;
  int32_t *terminals;
  int64_t *visit_idx;
  /* counters and metrics */
  uint64_t step, reward_calls, grad_steps;
  int last_source;
  double eval_l1, eval_modes;
  tchi_visits visits;
  /* progress */
  tch_progress_fn progress;
  void *progress_user;
  uint64_t progress_every;
  struct tchi_disc *disc;    /* train.schedule discovery: its state (trainer.c), else NULL */
};

tch_status tchi_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out);
void tchi_trainer_release(tch_trainer *t);
tch_status tchi_trainer_step(tch_trainer *t, uint64_t n_steps);
tch_status tchi_trainer_evaluate(tch_trainer *t, size_t n_samples);
tch_status tchi_trainer_metric(const tch_trainer *t, const char *name, double *out);
/* Metric names of t's kind (t NULL: the discrete ones). */
const char *tchi_trainer_next_metric(const tch_trainer *t, const char *prev);
tch_status tchi_trainer_planned_steps(const tch_trainer *t, uint64_t *out);

/* Replaces -1 ("the env's default") in the keys whose reference defaults differ between
 * the discrete and the diffusion domain (train.batch_size, train.eval_samples,
 * student.weight_decay, student.grad_clip, teacher.lr, teacher.grad_clip) by the env's
 * value, in the trainer's own copy c; TCH_E_CONFIG for other invalid values (batch 0, a
 * negative rate other than -1). */
tch_status tchi_trainer_resolve_defaults(const tch_env *env, tch_config *c);

/* ---- the diffusion loop (dtrainer.c): energy envs ------------------------------------- */
typedef enum tchi_dmode {
  TCHI_DMODE_ON_POLICY = 0,   /* TB on Student trajectories every iteration */
  TCHI_DMODE_PER = 1,         /* --per: Student on even, buffer replay on odd iterations */
  TCHI_DMODE_TEACHER = 2      /* --teacher: Student / Teacher samples through the buffer */
} tchi_dmode;

/* One diffusion sampler and its optimiser. Groups in tchi_dnet_param_groups order. */
typedef struct tchi_dlearner {
  tchi_dnet *net;
  tchi_adam opt;
  double base_lr[TCHI_ADAM_MAX_GROUPS];   /* before the scheduler */
  double grad_clip;                       /* 0 = off */
  size_t n_clip_groups;                   /* leading groups the clip covers */
  double last_loss, last_grad_norm;
} tchi_dlearner;

/* Evaluation results (tch_trainer_evaluate): NaN until computed / when not available.
 * Checkpoints store them as a counted array of doubles in this order; fields are only ever
 * appended (older checkpoints hold a prefix: TCHI_DEVAL_N_V1 of them). */
typedef struct tchi_deval {
  double log_z, elbo, eubo, ess, ess_fraction, delta_log_z, mean_log_likelihood;
  double w1, w2, mmd;
  double modes, emc;   /* GMM40 only: components holding a sample, entropic mode coverage */
} tchi_deval;
#define TCHI_DEVAL_N_V1 10   /* the fields before modes and emc */
#define TCHI_DEVAL_NAN {NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN}

struct tchi_dtrainer {
  tchi_dmode mode;
  int ls;                       /* MALA local search (--per --ls, --teacher --els) */
  uint32_t dim, T;
  uint32_t chunk;               /* TB time steps per backward block (0 = default) */
  uint64_t milestones[4];       /* scheduler steps (x gamma each), only if >= 0 (Teacher
                                   paper: 2; Reinforced SMC: smc.lr_milestones, up to 4) */
  int n_milestones;
  double gamma;
  double expl_factor;           /* exploration std (0 = off) */
  int expl_decay;
  uint64_t expl_decay_steps;
  double threshold_q;
  size_t threshold_n;
  double alpha_main, C;
  uint64_t adv_freq, ls_every;
  tchi_mala_params mala;
  size_t eval_distance_max, eval_ll_k;
  tchi_dreward rw;              /* raw host log density, for the Langevin gradient */
  tchi_dlearner student, teacher;   /* teacher.net == NULL outside TEACHER mode */
  /* state saved in checkpoints */
  int threshold_set;
  double threshold;             /* fixed once computed (first step) */
  uint64_t skipped_teacher_batch;   /* Teacher samples all at or below the threshold */
  uint64_t skipped_teacher_update;  /* no Student-batch sample above the threshold */
  uint64_t skipped_student;         /* empty buffer at a replay iteration */
  double last_kept;             /* Teacher update batch after the threshold filter */
  double last_teacher_added;    /* Teacher samples added at the last Teacher-sampling step */
  double last_ls_added;         /* samples the last local search added */
  double last_ls_accept;        /* its last measured acceptance rate */
  tchi_deval ev;
  /* per-step scratch (sized at creation, reused; no allocation once warm) */
  size_t cap;                   /* rows of the arrays below: max(batch, threshold_n) */
  tchi_dtraj traj, ttraj;       /* the Student's batch; Teacher samples / backward batches */
  double *x, *log_r, *delta, *adv, *prio;     /* the Student's batch */
  double *tx, *tlog_r, *tdelta, *tadv, *tlrw; /* Teacher samples and the Teacher's batch
                                               (tlrw: its log-rewards); also scratch for
                                               the threshold and filtered insertions */
  int32_t *rec;                 /* buffer records (2 dim int32 words: the doubles' bits) */
  tchi_mala_ws mala_ws;
  tchi_mala_result mala_out;
  int32_t *ls_rec;              /* records of the local search's samples */
  size_t ls_rec_cap;
  /* buffer snapshot: restores it when a step fails after a mid-step insertion */
  int32_t *snap_rec;
  double *snap_log_r, *snap_prio;
  size_t snap_n, snap_cap;
  int snap_taken;
  struct tchi_dsmc *smc;        /* Reinforced SMC's loop (smc.enabled, dsmc.c), else NULL */
};

/* Random streams of the diffusion loops (dtrainer.c, dsmc.c): a draw of purpose P
 * (TCHI_STREAM_*) in sub-stream S at step (or prefill batch) i is keyed by
 * (seed, P, S << 40 | i). One list, so that no two uses collide. */
enum {
  TCHI_DSUB_MAIN = 0,       /* STUDENT: the batch (dsmc: on-policy batch); TEACHER: its samples;
                               BUFFER: the replay batch; SMC: the sweep */
  TCHI_DSUB_AUX = 1,        /* STUDENT: backward of Teacher samples (dsmc: of replayed points);
                               TEACHER: its backward batch; BUFFER: the local-search batch */
  TCHI_DSUB_THRESHOLD = 2,  /* STUDENT: the threshold's samples */
  TCHI_DSUB_GT = 3, TCHI_DSUB_EUBO = 4, TCHI_DSUB_LL = 5,   /* EVAL */
  TCHI_DSUB_PREFILL = 6,    /* dsmc, SMC / STUDENT: prefill batch b (index = b) */
  TCHI_DSUB_INIT_LOG_Z = 7  /* dsmc, STUDENT: the batch of smc.init_log_z elbo / iw_elbo (index 0) */
};
void tchi_dseed(tchi_rng *r, const tch_trainer *t, unsigned purpose, unsigned sub,
                uint64_t index);

tch_status tchi_dtrainer_create(tch_env *env, const tch_config *c, tch_trainer **out);
void tchi_dtrainer_destroy(tch_trainer *t);          /* the diffusion part only */
tch_status tchi_dtrainer_one_step(tch_trainer *t);
tch_status tchi_dtrainer_evaluate(tch_trainer *t, size_t n_samples);
tch_status tchi_dtrainer_metric(const tch_trainer *t, const char *name, double *out);
const char *tchi_dtrainer_next_metric(const char *prev);
tch_status tchi_dtrainer_planned_steps(const tch_trainer *t, uint64_t *out);
/* n fresh Student samples (no exploration) into out_x (n x dim) and, if out_log_w is not
 * NULL, their log-weights log R + sum log P_B - sum log P_F; streams keyed by seed. */
tch_status tchi_dtrainer_sample(tch_trainer *t, uint64_t seed, size_t n, double *out_x,
                                double *out_log_w);
/* Buffer records <-> points: a record holds a point's doubles bit for bit. */
void tchi_dpoint_to_record(uint32_t dim, const double *x, int32_t *rec);
void tchi_drecord_to_point(uint32_t dim, const int32_t *rec, double *x);

/* The diffusion Teacher (train_step_adv), shared by dtrainer.c's TEACHER mode and dsmc.c's
 * Teacher (smc.teacher_every). Its net and Adam are d->teacher; nothing here commits.
 * tchi_dteacher_adv: the Teacher reward adv = log(1.001 + w delta^2 / 2), w = 1 + C
 * [delta > 0], with w delta^2 / 2 replaced by 1e-12 when log R < thr; delta = log R +
 * sum log P_B - sum log P_F - log Z of the Student (pre-update).
 * tchi_dteacher_threshold: the fixed threshold, the diffusion.threshold_quantile of log R of
 * threshold_n initial Student samples (stream STUDENT / TCHI_DSUB_THRESHOLD / 0, d->ttraj and
 * d->tx as scratch); *calls += threshold_n.
 * tchi_dteacher_grad: the Teacher's gradient (zeroed first) and clip on the n Student-batch
 * points x (n x dim) with log R log_r and reward adv that lie above thr: backward
 * trajectories from the Teacher's P_B (stream TEACHER / TCHI_DSUB_AUX / it), TB with
 * log-reward log(adv) + alpha_main log R. *kept = how many (0: no gradient, *loss and *norm
 * NaN). x must not alias d->tx.
 * tchi_dteacher_commit: the Teacher's Adam step at the scheduled learning rate if kept > 0,
 * else skipped.teacher_update + 1; records loss, norm and kept as the last metrics. */
double tchi_dteacher_adv(const tchi_dtrainer *d, double delta, double log_r, double thr);
tch_status tchi_dteacher_threshold(tch_trainer *t, double *thr, uint64_t *calls);
tch_status tchi_dteacher_grad(tch_trainer *t, uint64_t it, size_t n, const double *x,
                              const double *log_r, const double *adv, double thr, size_t *kept,
                              double *loss, double *norm);
void tchi_dteacher_commit(tch_trainer *t, uint64_t it, size_t kept, double loss, double norm);

/* ---- Reinforced SMC's loop (dsmc.c; spec reinforced-smc.md §4-§7) ------------------------
 * With smc.enabled the diffusion trainer's Student is an OU-DDS net (PIS architecture), so
 * sampling, evaluation and the DSTU checkpoint section work unchanged; this part adds the
 * log-flow twist, the IW replay buffer, the SMC sampler and the schedule of §7. */
typedef enum tchi_smc_method {
  TCHI_SMC_METHOD_SMC_BUFFER = 0,   /* SMC + IW buffer (the paper's method) */
  TCHI_SMC_METHOD_SMC = 1,          /* SMC, replay steps train on its particles */
  TCHI_SMC_METHOD_TB_BUFFER = 2,    /* TB + IW buffer, no SMC, no flow */
  TCHI_SMC_METHOD_TB = 3            /* on-policy TB */
} tchi_smc_method;

typedef struct tchi_dsmc {
  tchi_smc_method method;
  uint64_t replay_ratio;           /* r: on-policy iff it mod (r+1) == 0 */
  size_t prefill_batches;
  tchi_smc_params sp;              /* sampler settings (N = train.batch_size) */
  tchi_smc_loss_params lp;         /* TB methods: 1 chunk, SubTB weight 0 */
  double grad_clip;                /* joint over policy, log Z, flow, beta (0 = off) */
  tchi_dflow *flow;                /* SMC methods only, else NULL */
  tchi_adam flow_opt;              /* its groups (tchi_dflow_param_groups order) */
  double flow_base_lr[TCHI_ADAM_MAX_GROUPS];
  tchi_iwbuf *buf;                 /* buffer methods only, else NULL */
  /* state saved in checkpoints (section DSMC) */
  int prefilled;                   /* the prefill ran (buffer methods) */
  uint64_t sweeps;                 /* SMC runs so far, prefill included */
  double last_tb, last_subtb;      /* loss parts of the last step */
  double last_log_z_hat;           /* log Z-hat of the last SMC sweep */
  double last_resamples;           /* resampling events of the last sweep */
  double last_mala_accept;         /* MALA rejuvenation acceptance of the last sweep (NaN: off;
                                    * not checkpointed: NaN after a resume until the next sweep) */
  double last_ess;                 /* ESS_n of the last sweep's output weights */
  /* the Teacher (teacher.enabled with smc.teacher_every = k >= 1): replay iteration q
   * (counted from 0) is a Teacher iteration iff q mod k == 0. Its net, Adam state,
   * threshold and skip counters are the dtrainer's (d->teacher, d->threshold, ...). */
  uint64_t teacher_every;          /* k; 0 = no Teacher */
  int init_log_z;                  /* smc.init_log_z: 0 float, 1 elbo, 2 iw_elbo */
  uint64_t teacher_batches;        /* Teacher iterations so far (saved) */
  double last_teacher_log_iw;      /* mean log-IW (under the Teacher's q) of the last Teacher
                                      batch (saved) */
  double last_teacher_log_z_hat;   /* their log-mean-exp (saved) */
  /* per-step scratch (no allocation once warm) */
  tchi_smc_sampler sampler;
  tchi_smc_loss_ws lws;
  double *x, *log_r, *log_iw, *res;   /* batch x dim, batch, batch, batch */
  /* buffer undo log: the step's insertions are undone if the step fails */
  size_t u_n, u_head, u_saved, u_cap;
  uint64_t u_added;
  double u_temp, u_ess;
  size_t *u_slot;
  double *u_x, *u_log_r, *u_log_iw, *u_prio;
  int u_taken;
} tchi_dsmc;

/* With smc.enabled: checks the keys against each other and the env (orig: the config as the
 * host gave it, before tchi_trainer_resolve_defaults; may be NULL) and turns spec into the
 * OU-DDS PIS net; sets student.weight_decay and student.grad_clip to the effective 0 in
 * the trainer's copy c. TCH_E_CONFIG naming the key. */
tch_status tchi_dsmc_configure(const tch_config *orig, tch_config *c, const tch_env *env,
                               tchi_dnet_spec *spec);
/* After the Student exists: the flow, its optimiser, the IW buffer, the scheduler. */
tch_status tchi_dsmc_create(tch_trainer *t);
void tchi_dsmc_destroy(tchi_dsmc *m);   /* NULL is a no-op; frees m */
/* One iteration of §7; on failure the trainer is as before the call. */
tch_status tchi_dsmc_one_step(tch_trainer *t);
/* 1 and *out set if name is one of the smc.* metrics or buffer.size, else 0. */
int tchi_dsmc_metric(const tch_trainer *t, const char *name, double *out);
/* Identifies the built-in target for smc.init_std = -1 (spec §9.1). */
double tchi_dsmc_default_init_std(const tch_env *env);

/* checkpoint.c */
tch_status tchi_trainer_save(const tch_trainer *t, const char *path);
tch_status tchi_trainer_load(tch_env *env, const char *path, tch_trainer **out);

/* shared with checkpoint.c */
void tchi_visits_rebuild_counts(tchi_visits *v, const tch_env *e);

/* ---- the discovery schedule (trainer.c; train.schedule: discovery) -----------------------
 * discovery/gflownet/trainers.py (spec adaptive-teacher.md §4.4-§4.7): a round is an online
 * step (step 2r: the mixer's Student or Teacher batch) and, with buffer.enabled, an offline
 * step (step 2r+1) that replays objects of a FIFO of first-time x with fresh backward
 * trajectories. Objects are keyed by their index (the base-A value of a SeqPA string, or the
 * exact target's index), so the set of every object ever sampled is a hash set of integers. */
typedef enum tchi_offline_select {
  TCHI_OFFLINE_PRT = 0,      /* buffer.priority reward: percentile split on log R */
  TCHI_OFFLINE_PER = 1,      /* teacher_reward: the same split on the adv scores */
  TCHI_OFFLINE_RANDOM = 2    /* none: uniform with replacement */
} tchi_offline_select;

typedef struct tchi_disc {
  tchi_offline_select select;
  const struct tchi_seqpa_task *task;  /* SeqPA env (keys = base-A indices), else NULL (exact index) */
  /* every unique object sampled so far (the reference's allXtoR), entries in first-seen
   * order; ids index the per-entry arrays */
  size_t n_seen, cap_seen;
  uint64_t *key;
  double *log_r;                /* training-scale log R (replays reuse it) */
  double *real;                 /* raw reward: SeqPA max(y, y_min), else R */
  double *adv;                  /* PER: the last adv score (allXtoL), NaN if none */
  uint8_t *in_l;                /* PER: in the adv FIFO */
  uint32_t *table;              /* open addressing on hash(key): entry id or UINT32_MAX */
  size_t table_mask;
  /* FIFOs of entry ids, capacity buffer.capacity: first-time x (allXtoR_buffer) and, with
   * PER, x by latest adv score (allXtoL_buffer: a re-set key keeps its place) */
  size_t fifo_cap;
  uint32_t *rfifo, *lfifo;
  size_t r_head, r_n, l_head, l_n;
  /* top-k unique objects by raw reward: a min-heap of entry ids */
  size_t top_k, heap_n;
  uint32_t *heap;
  /* scratch (sized at creation; no allocation per step once the seen set has room) */
  double *vals;                 /* fifo_cap: values for the percentile */
  uint32_t *hi_ids, *lo_ids;    /* fifo_cap: the two sides of the split */
  uint32_t *pick;               /* batch: entries of the offline batch */
  int32_t *xs;                  /* batch x state_dim: their states */
  uint64_t *bkeys;              /* batch: keys of an online batch */
  double *y, *adv_b, *tdelta;   /* batch: raw rewards, adv scores, Teacher residuals */
  int32_t *div_states;          /* top_k x L: decoded strings for the diversity */
  size_t *lev;                  /* 2 (L + 1): Levenshtein rows */
  double log_z_true;            /* log sum exp(beta log R) over an exact target, else NaN */
  uint64_t skipped;             /* offline steps without an update (< 10 objects) */
  /* last evaluation (NaN until computed / when unavailable) */
  double ev_log_z, ev_elbo, ev_eubo, ev_pearson, ev_expected_reward;
} tchi_disc;

/* Checkpoint section body of the discovery state (the seen set with its rewards and adv
 * scores, both FIFOs, the skip counter, the last evaluation), and of the mode flags of a
 * SeqPA env without exact target (sehstr), which VIST does not cover. Write when
 * tchi_trainer_has_discovery_state(t); read into a trainer just created from the same config
 * (TCH_E_IO if malformed or inconsistent with it; the trainer is then to be discarded, as
 * tchi_trainer_load does on any error). */
int tchi_trainer_has_discovery_state(const tch_trainer *t);
void tchi_trainer_write_discovery(const tch_trainer *t, struct tchi_writer *w);
tch_status tchi_trainer_read_discovery(struct tchi_reader *r, tch_trainer *t);
/* Exposed for tests: np.percentile(v, 100 q) with linear interpolation (numpy's _lerp) of
 * n >= 1 values, which it sorts in place; the Levenshtein distance of two strings of n
 * symbols (row: 2 (n + 1) scratch). */
double tchi_percentile_linear(double *v, size_t n, double q);
size_t tchi_levenshtein(const int32_t *a, const int32_t *b, size_t n, size_t *row);

#endif /* TCHI_TRAINER_H */
