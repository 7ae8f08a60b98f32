/* Behaviour side of the Teacher method: the Teacher's reward, the behaviour mixer and the
 * back-and-forth local search. Internal. */
#ifndef TCHI_BEHAVIOUR_H
#define TCHI_BEHAVIOUR_H
#include <math.h>
#include "core/core.h"
#include "gfn/gfn.h"
#include "teacher/mixer.h"
#include "teacher/buffer.h"

/* ---- teacher reward (teacher_reward.c) ------------------------------------------------- */
/* R_T = f(w d^2) * R^alpha with w = 1 + C [d > 0] and f(y) = log(1 + 1e-3 + y) if use_log
 * else y (grid/models/teacher.py:get_teacher_reward). */
typedef struct tchi_teacher_reward {
  int use_log;
  double C, alpha;
  double exponent;   /* beta_T: the Teacher trains on beta_T * log(R_T + 1e-8) */
  /* Discovery variant (discovery/gflownet/GFNs/basegfn.py, teacher.py); 0 = the grid's. */
  double loss_clamp; /* > 0: the loss term is min(d^2, loss_clamp) (the reference: 5000) */
  int additive;      /* 1: the Teacher trains on beta_T (log f(w L) + alpha log R), no floor */
} tchi_teacher_reward;

double tchi_teacher_reward_value(const tchi_teacher_reward *tr, double delta, double log_r);
/* R_T of each trajectory of a TB batch from the Student's residuals delta. */
void tchi_teacher_rewards_tb(const tchi_teacher_reward *tr, const tchi_traj *t,
                             const double *delta, const double *log_r, double *out_rt);
/* R_T of each trajectory of a DB batch: the sum over its transitions of
 * f(w d_t^2) * r_t^alpha with r_t = 1, plus R on the last transition (trainer_db.py).
 * d is n x T as tchi_db_loss writes it. */
void tchi_teacher_rewards_db(const tchi_teacher_reward *tr, const tchi_traj *t, const double *d,
                             const double *log_r, double *out_rt);
/* The Teacher's training log-reward beta_T * log(R_T + 1e-8). */
static inline double tchi_teacher_log_reward(const tchi_teacher_reward *tr, double rt)
{ return tr->exponent * log(rt + 1e-8); }
/* The Teacher's training log-reward of one trajectory from the Student's residual delta and
 * log R: beta_T (log f(w L) + alpha log R) with the additive variant, else
 * tchi_teacher_log_reward of tchi_teacher_reward_value. */
double tchi_teacher_train_log_reward(const tchi_teacher_reward *tr, double delta, double log_r);

/* ---- mixer (mixer.c) ----------------------------------------------------------------- */
#define TCHI_MIXER_MAX_TOKENS 64
#define TCHI_MIXER_SOURCES 4             /* tch_source values: student, teacher, buffer, smc */
struct tch_mixer {
  tchi_ref ref;
  int random;                      /* 0: cycle of tokens; 1: weighted random draw */
  size_t n_tokens;
  tch_source src[TCHI_MIXER_MAX_TOKENS];
  uint32_t flags[TCHI_MIXER_MAX_TOKENS];
  double weight[TCHI_MIXER_SOURCES];   /* random mode: student, teacher, buffer, smc */
  double eps[2], temp[2];          /* per sampling source */
  tch_policy *policy[2];
  tch_buffer *buffer;
  char text[512];                  /* canonical schedule */
  /* The SMC source (standalone mixers): a tch_smc of the api layer, above this one, so the
   * api layer that attaches it also says how to release it. */
  struct tch_smc *smc;
  void (*smc_release)(struct tch_smc *);
};
/* Parses a schedule; allow_smc = 0 (a trainer's mixer.schedule) rejects the smc source,
 * which only standalone mixers draw (tch_mixer_draw_energy). TCH_E_CONFIG for a bad
 * schedule. */
tch_status tchi_mixer_create_ex(const char *schedule, int allow_smc, tch_mixer **out);
/* tchi_mixer_create_ex(schedule, 0, out): the trainer's mixer. */
tch_status tchi_mixer_create(const char *schedule, tch_mixer **out);
void tchi_mixer_release(tch_mixer *m);
void tchi_mixer_source(const tch_mixer *m, uint64_t seed, uint64_t step, tch_source *src,
                       uint32_t *flags);
/* The reference's alternation (grid/trainer.py) for a method. */
const char *tchi_mixer_auto_schedule(int teacher, int buffer, int local_search);

/* ---- local search (local_search.c) ----------------------------------------------------- */
/* Acceptance of a rebuilt trajectory: by the Student reward (strictly larger R), or by the
 * Teacher reward computed with the Student's residuals (teacher_ls). */
typedef struct tchi_ls_params {
  int iterations;
  double back_ratio;
  int teacher_ls;                  /* accept by Teacher reward */
  tch_policy *student;             /* scores residuals for teacher_ls */
  int student_db;                  /* student trained with DB: residuals per transition */
  const tchi_teacher_reward *tr;
  double reward_exponent, clip_min;
} tchi_ls_params;

/* Scratch reused across calls. */
typedef struct tchi_ls_ws {
  tchi_traj back, fwd, cand;
  tchi_eval ev;
  int32_t *mid, *x;
  double *log_r_new, *score_old, *score_new, *delta, *dres;
  size_t cap;
} tchi_ls_ws;
void tchi_ls_ws_init(tchi_ls_ws *w);
void tchi_ls_ws_destroy(tchi_ls_ws *w);
/* Refines batch t in place with policy p (which rolls forward); t->log_r must hold the
 * training-scale log-rewards; they are updated. Reward calls made: n * iterations. */
tch_status tchi_local_search(tch_policy *p, tch_env *e, tchi_rng *rng, const tchi_ls_params *lp,
                             tchi_traj *t, tchi_ls_ws *w);

/* ---- GAFN baseline (gafn.c) ------------------------------------------------------------ */
typedef struct tchi_rnd {
  tchi_mlp target, pred;           /* [in -> hidden -> hidden -> latent], LeakyReLU */
  tchi_mlp_ws ws_target, ws_pred;
  int32_t *idx; float *feat; double *dist; float *dpred;
  size_t cap;
} tchi_rnd;
typedef struct tchi_gafn_params {
  double ri_scale, ri_loss_weight;
  int edge_ri;
} tchi_gafn_params;
tch_status tchi_rnd_init(tchi_rnd *r, size_t in_dim, size_t hidden, size_t latent, uint64_t seed);
void tchi_rnd_destroy(tchi_rnd *r);
/* GAFN loss of a batch; with grad, accumulates into the policy (network, log Z) and the
 * RND predictor. ev: evaluation scratch. */
tch_status tchi_gafn_loss(tch_policy *p, tchi_rnd *rnd, tch_env *e, const tchi_traj *t,
                          tchi_eval *ev, const double *log_r, const tchi_gafn_params *gp,
                          int grad, double *loss);

#endif /* TCHI_BEHAVIOUR_H */
