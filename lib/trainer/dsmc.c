/* Reinforced SMC's training loop (spec reinforced-smc.md §4-§7, §9.1) inside the diffusion
 * trainer: dtrainer.c hands a step here when smc.enabled. The Student is the OU-DDS policy
 * (PIS architecture) and log Z; this file adds the log-flow twist and its learnt beta
 * schedule, the importance-weighted replay buffer and the SMC sampler, and runs the
 * reference's schedule (JAX algorithms/gfn_subtb_smc/gfn_subtb_smc_trainer.py,
 * gfn_subtb_smc_nobuffer_trainer.py, algorithms/gfn_tb/gfn_tb_trainer.py; read, not
 * copied):
 *
 *   prefill (buffer methods, before the first step): smc.prefill_batches SMC sweeps
 *            (smc_buffer) or on-policy batches (tb_buffer) go to the buffer with their
 *            log importance weights;
 *   it mod (r+1) == 0, and every step of `tb`: on-policy trajectories, the loss, then
 *            their terminals into the buffer with log w = log R + log p_B - log p_0 - log q;
 *   otherwise: smc_buffer: one SMC sweep into the buffer (log w-hat), N buffer draws,
 *            fresh backward trajectories, the loss on the stored log R;
 *            smc: one SMC sweep, backward trajectories of its final particles;
 *            tb_buffer: N buffer draws and backward trajectories.
 *   Teacher iterations (teacher.enabled, smc.teacher_every = k): replay iterations q = 0, k,
 *            2k, ... (counted from 0) draw B trajectories from the Teacher instead (no SMC
 *            sweep, no buffer draw); the Student trains on fresh backward trajectories of
 *            their terminals, which then join the buffer with log w = log R + log p_B -
 *            log p_0 - log q_T under the Teacher's own q (spec §12).
 * The Teacher is a second OU-DDS PIS net (dtrainer.c's d->teacher) trained every iteration,
 * on whatever batch the Student trained on, as diffusion/train.py's train_step_adv: reward
 * log(1.001 + w delta^2 / 2) from the Student's pre-update TB residuals, only on samples
 * above the fixed threshold, its own Adam (teacher.lr), clip and the same LR schedule; the
 * pieces are dtrainer.c's tchi_dteacher_*.
 * smc.init_log_z elbo / iw_elbo: at step 0, before the prefill, B on-policy trajectories set
 * the Student's log Z to the mean / log-mean-exp of their log-IWs (TORCH init_log_Z).
 * Losses: TB + chunked SubTB (smc.loss) for the SMC methods, plain TB (one chunk, no flow)
 * for the TB methods. One Adam step per iteration over the policy, log Z, the flow and beta,
 * after a global-norm clip over all of them jointly; every learning rate x smc.lr_decay at
 * smc.lr_milestones.
 *
 * Energy evaluations (reward_calls) are counted exactly: N per on-policy batch (terminals),
 * N K per SMC sweep (every chunk end), and N (K-1) per loss of the SMC methods (log R at the
 * interior chunk boundaries of the partial-energy twists), N per Teacher batch, N per
 * smc.init_log_z batch and diffusion.threshold_samples once for the Teacher's threshold. The
 * Langevin gradient of a Langevin net is not counted.
 *
 * A step either completes or leaves the trainer unchanged: gradients and workspaces are
 * scratch, buffer insertions that a later failure of the same step could strand are undone
 * from a log of the slots they overwrote, and the optimisers, counters and metrics change
 * only at the commit. Random numbers come from streams keyed by (seed, purpose, sub, step),
 * so a resumed run is bit-identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "trainer.h"
#include "config/config.h"
#include "envs/env.h"

static tch_status reject(const char *key, const char *why)
{
  return tchi_fail(TCH_E_CONFIG, "key '%s': %s", key, why);
}

static const char *const method_names[] = {"smc_buffer", "smc", "tb_buffer", "tb"};

static int method_of(const char *name)
{
  for (int i = 0; i < 4; i++)
    if (strcmp(name, method_names[i]) == 0) return i;
  return -1;
}

static int uses_smc(tchi_smc_method m)
{
  return m == TCHI_SMC_METHOD_SMC_BUFFER || m == TCHI_SMC_METHOD_SMC;
}

static int uses_buffer(tchi_smc_method m)
{
  return m == TCHI_SMC_METHOD_SMC_BUFFER || m == TCHI_SMC_METHOD_TB_BUFFER;
}

/* smc.init_log_z */
enum { INIT_LOG_Z_FLOAT = 0, INIT_LOG_Z_ELBO = 1, INIT_LOG_Z_IW_ELBO = 2 };
static const char *const init_log_z_names[] = {"float", "elbo", "iw_elbo"};

static int init_log_z_of(const char *name)
{
  for (int i = 0; i < 3; i++)
    if (strcmp(name, init_log_z_names[i]) == 0) return i;
  return -1;
}

double tchi_dsmc_default_init_std(const tch_env *env)
{
  /* spec §9.1: GMM40 sigma 20 (2-D, 5-D), 40 with the 50-D setting; funnel and many-well 1 */
  if (env->en.log_density == tchi_gmm40_log_density) return env->en.dim >= 50 ? 40.0 : 20.0;
  return 1.0;
}

/* smc.lr_milestones: up to 4 comma-separated fractions in [0, 1]. */
static tch_status parse_milestones(const char *text, double *frac, int *n)
{
  *n = 0;
  const char *p = text;
  while (*p == ' ') p++;
  if (*p == '\0') return TCH_OK;
  for (;;) {
    char *end;
    double v = strtod(p, &end);
    if (end == p || !(v >= 0.0 && v <= 1.0))
      return reject("smc.lr_milestones", "expected comma-separated fractions in [0, 1]");
    if (*n == 4) return reject("smc.lr_milestones", "at most 4 milestones");
    frac[(*n)++] = v;
    p = end;
    while (*p == ' ') p++;
    if (*p == '\0') return TCH_OK;
    if (*p != ',') return reject("smc.lr_milestones", "expected comma-separated fractions in [0, 1]");
    p++;
  }
}

tch_status tchi_dsmc_configure(const tch_config *orig, tch_config *c, const tch_env *env,
                               tchi_dnet_spec *spec)
{
  static const char *const off[][2] = {
    {"buffer.enabled", "Reinforced SMC keeps its own IW buffer (smc.method *_buffer, smc.buffer_*)"},
    {"local_search.enabled", "Reinforced SMC has no MALA local search"},
    {"diffusion.exploratory", "Reinforced SMC samples on-policy without extra exploration noise"},
  };
  for (size_t i = 0; i < sizeof off / sizeof off[0]; i++)
    if (tchi_cfg_bool(c, off[i][0])) return reject(off[i][0], off[i][1]);
  /* The reference's optimiser (§7): no weight decay, its own joint clip. The resolved copy
   * holds the energy-env defaults, so look at what the host set, then record the effective
   * 0 in the copy (a checkpoint's config then reads back the same way). */
  static const char *const unused[][2] = {
    {"student.weight_decay", "Reinforced SMC's Adam has no weight decay (leave -1 or 0)"},
    {"student.grad_clip", "with smc.enabled the joint clip is smc.grad_clip (leave -1 or 0)"},
  };
  for (int i = 0; i < 2; i++) {
    double v = orig ? tchi_cfg_double(orig, unused[i][0]) : -1.0;
    if (v != -1.0 && v != 0.0) return reject(unused[i][0], unused[i][1]);
    tch_status st = tch_config_set_double(c, unused[i][0], 0.0);
    if (st) return st;
  }
  const int method = method_of(tchi_cfg_string(c, "smc.method"));
  if (method < 0) return reject("smc.method", "unknown method");
  if (tchi_cfg_int(c, "smc.mala_steps") > 0 && !tchi_env_has_grad(env))
    return reject("smc.mala_steps", "MALA rejuvenation needs the log density's gradient "
                  "(TCH_ENERGY_HAS_GRAD)");
  /* The Teacher: a schedule for its batches, and replay iterations to put them in. */
  const int teacher = tchi_cfg_bool(c, "teacher.enabled");
  const int64_t every = tchi_cfg_int(c, "smc.teacher_every");
  if (teacher && every == 0)
    return reject("teacher.enabled", "with smc.enabled the Teacher needs smc.teacher_every >= 1 "
                  "(every k-th replay iteration takes its batch from the Teacher)");
  if (!teacher && every != 0)
    return reject("smc.teacher_every", "needs teacher.enabled (the Teacher whose batches it schedules)");
  if (teacher && method == TCHI_SMC_METHOD_TB)
    return reject("smc.method", "tb has no replay iterations for the Teacher's batches (every iteration "
                  "is on-policy): use smc_buffer, smc or tb_buffer with teacher.enabled");
  if (teacher && tchi_cfg_int(c, "diffusion.adv_freq") != 2)
    return reject("diffusion.adv_freq", "with smc.enabled the Teacher's batches follow smc.teacher_every");
  if (init_log_z_of(tchi_cfg_string(c, "smc.init_log_z")) < 0)
    return reject("smc.init_log_z", "expected float, elbo or iw_elbo");
  if (init_log_z_of(tchi_cfg_string(c, "smc.init_log_z")) != INIT_LOG_Z_FLOAT &&
      tchi_cfg_double(c, "student.logz_init") != 0.0)
    return reject("student.logz_init", "smc.init_log_z elbo / iw_elbo sets the Student's log Z from "
                  "its first batch (leave student.logz_init 0, or use smc.init_log_z float)");
  const uint32_t T = env->diffusion_steps;
  const int64_t K = tchi_cfg_int(c, "smc.n_chunks");
  if (uses_smc((tchi_smc_method)method) && (K < 1 || T % (uint64_t)K != 0))
    return tchi_fail(TCH_E_CONFIG, "key 'smc.n_chunks': %lld does not divide env.diffusion.steps = %u",
                     (long long)K, T);
  const char *loss = tchi_cfg_string(c, "smc.loss");
  if (!uses_smc((tchi_smc_method)method) && strcmp(loss, "subtb") == 0)
    return reject("smc.loss", "the TB methods have no flow for SubTB to train (tb_subtb or lv_subtb)");
  const char *prio = tchi_cfg_string(c, "smc.buffer_priority");
  if (method == TCHI_SMC_METHOD_SMC_BUFFER && strcmp(prio, "loss") == 0)
    return reject("smc.buffer_priority", "SMC particles have no training loss to prioritise by "
                  "(loss is for tb_buffer)");
  const double init_std = tchi_cfg_double(c, "smc.init_std");
  if (init_std != -1.0 && !(init_std > 0.0))
    return reject("smc.init_std", "must be > 0, or -1 for the target's default");
  double frac[4];
  int nm;
  tch_status s = parse_milestones(tchi_cfg_string(c, "smc.lr_milestones"), frac, &nm);
  if (s) return s;
  if (tchi_cfg_int(c, "train.batch_size") > UINT32_MAX)
    return reject("train.batch_size", "SMC particle counts are 32-bit");
  /* The OU-DDS policy of §2.1 on the PIS network of §8. */
  spec->pis = 1;
  tchi_dnet_spec_set_ou_dds(spec, init_std > 0.0 ? init_std : tchi_dsmc_default_init_std(env));
  spec->noise_scale = tchi_cfg_double(c, "smc.noise_scale");
  return tchi_dref_check_spec(spec) ? tchi_fail_prefix(TCH_E_CONFIG, "key 'smc.init_std': ") : TCH_OK;
}

/* ---- construction --------------------------------------------------------------------------- */
void tchi_dsmc_destroy(tchi_dsmc *m)
{
  if (!m) return;
  tchi_adam_destroy(&m->flow_opt);
  tchi_dflow_free(m->flow);
  tchi_iwbuf_free(m->buf);
  tchi_smc_sampler_destroy(&m->sampler);
  tchi_smc_loss_ws_destroy(&m->lws);
  tchi_free(m->x); tchi_free(m->log_r); tchi_free(m->log_iw); tchi_free(m->res);
  tchi_free(m->u_slot); tchi_free(m->u_x); tchi_free(m->u_log_r); tchi_free(m->u_log_iw);
  tchi_free(m->u_prio);
  tchi_free(m);
}

tch_status tchi_dsmc_create(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  const tch_config *c = t->cfg;
  tchi_dsmc *m = tchi_calloc(1, sizeof *m);
  if (!m) return tchi_fail(TCH_E_NOMEM, "out of memory allocating the SMC trainer");
  d->smc = m;
  tchi_smc_sampler_init(&m->sampler);
  tchi_smc_loss_ws_init(&m->lws);
  m->last_tb = m->last_subtb = m->last_log_z_hat = m->last_resamples = m->last_ess = NAN;
  m->last_mala_accept = NAN;
  m->last_teacher_log_iw = m->last_teacher_log_z_hat = NAN;
  m->teacher_every = (uint64_t)tchi_cfg_int(c, "smc.teacher_every");
  m->init_log_z = init_log_z_of(tchi_cfg_string(c, "smc.init_log_z"));
  m->method = (tchi_smc_method)method_of(tchi_cfg_string(c, "smc.method"));
  m->replay_ratio = (uint64_t)tchi_cfg_int(c, "smc.replay_ratio");
  m->prefill_batches = (size_t)tchi_cfg_int(c, "smc.prefill_batches");
  m->grad_clip = tchi_cfg_double(c, "smc.grad_clip");
  const size_t B = t->batch, D = d->dim;
  const int smc = uses_smc(m->method);
  const uint32_t K = smc ? (uint32_t)tchi_cfg_int(c, "smc.n_chunks") : 1;
  tch_status s;

  tchi_smc_params_default(&m->sp, B, K);
  m->sp.resample_threshold = tchi_cfg_double(c, "smc.resample_threshold");
  m->sp.target_ess = tchi_cfg_double(c, "smc.target_ess");
  m->sp.unbiased_partial_resampling = tchi_cfg_bool(c, "smc.unbiased_partial_resampling");
  tchi_resampler rs;
  if ((s = tchi_resampler_from_name(tchi_cfg_string(c, "smc.resampler"), &rs))) return s;
  m->sp.resampler = rs;
  m->sp.mala_steps = uses_smc(m->method) ? (uint32_t)tchi_cfg_int(c, "smc.mala_steps") : 0;
  m->sp.mala_step = tchi_cfg_double(c, "smc.mala_step");

  tchi_smc_loss_params_default(&m->lp, K);
  if ((s = tchi_smc_loss_type_from_name(tchi_cfg_string(c, "smc.loss"), &m->lp.type))) return s;
  m->lp.subtb_weight = smc ? tchi_cfg_double(c, "smc.subtb_weight") : 0.0;
  m->lp.block = d->chunk;

  /* The learning-rate schedule of §7 replaces the Teacher paper's (dtrainer.c applies it to
   * the Student; the flow's groups follow the same factor). */
  double frac[4];
  int nm;
  if ((s = parse_milestones(tchi_cfg_string(c, "smc.lr_milestones"), frac, &nm))) return s;
  uint64_t planned;
  tchi_dtrainer_planned_steps(t, &planned);
  d->n_milestones = nm;
  for (int i = 0; i < nm; i++) d->milestones[i] = (uint64_t)(frac[i] * (double)planned);
  d->gamma = tchi_cfg_double(c, "smc.lr_decay");

  if (smc) {
    tchi_dflow_spec fs;
    tchi_dflow_spec_default(&fs, d->dim, d->T);
    fs.hidden = (uint32_t)tchi_cfg_int(c, "smc.flow_hidden");
    fs.layers = (uint32_t)tchi_cfg_int(c, "smc.flow_layers");
    if ((s = tchi_beta_schedule_from_name(tchi_cfg_string(c, "smc.beta_schedule"), &fs.beta))) return s;
    fs.kernel = tchi_cfg_string(c, "nn.kernel");
    fs.threads = (int)tchi_cfg_int(c, "nn.threads");
    tchi_rng rng;
    tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_INIT, 2));
    if ((s = tchi_dflow_create(&fs, &rng, &m->flow))) return tchi_fail_prefix(s, "SMC log-flow: ");
    tchi_param_group g[TCHI_DFLOW_MAX_GROUPS];
    size_t k = tchi_dflow_param_groups(m->flow, tchi_cfg_double(c, "smc.lr_flow"),
                                       tchi_cfg_double(c, "smc.lr_beta"), 0.0, g);
    for (size_t i = 0; i < k; i++) m->flow_base_lr[i] = g[i].lr;
    if ((s = tchi_adam_init(&m->flow_opt, k, g))) return s;
  }
  if (uses_buffer(m->method)) {
    tchi_iwbuf_params bp;
    int ovf = 0;
    size_t cap = tchi_mul_size((size_t)tchi_cfg_int(c, "smc.buffer_batches"), B, &ovf);
    if (ovf || cap > UINT32_MAX) return reject("smc.buffer_batches", "capacity overflows 2^32 - 1");
    tchi_iwbuf_params_default(&bp, d->dim, cap);
    if ((s = tchi_iwbuf_priority_from_name(tchi_cfg_string(c, "smc.buffer_priority"), &bp.priority)))
      return s;
    bp.target_ess = tchi_cfg_double(c, "smc.buffer_target_ess");
    bp.resampler = rs;
    bp.log_r_min = TCHI_SMC_LOGR_CLIP;   /* TORCH logr_lb: never replay a floored reward */
    if ((s = tchi_iwbuf_create(&bp, &m->buf))) return s;
  }
  if ((s = tchi_alloc_array(&m->x, B, D * sizeof(double), 0, "SMC batch")) ||
      (s = tchi_alloc_array(&m->log_r, B, sizeof(double), 0, "SMC batch")) ||
      (s = tchi_alloc_array(&m->log_iw, B, sizeof(double), 0, "SMC batch")) ||
      (s = tchi_alloc_array(&m->res, B, sizeof(double), 0, "SMC batch")))
    return s;
  if (m->buf) {
    /* one step inserts at most B entries into a non-empty buffer (the prefill only into an
     * empty one), so B saved slots cover any undo */
    m->u_cap = B;
    if ((s = tchi_alloc_array(&m->u_slot, B, sizeof(size_t), 0, "SMC buffer undo")) ||
        (s = tchi_alloc_array(&m->u_x, B, D * sizeof(double), 0, "SMC buffer undo")) ||
        (s = tchi_alloc_array(&m->u_log_r, B, sizeof(double), 0, "SMC buffer undo")) ||
        (s = tchi_alloc_array(&m->u_log_iw, B, sizeof(double), 0, "SMC buffer undo")) ||
        (s = tchi_alloc_array(&m->u_prio, B, sizeof(double), 0, "SMC buffer undo")))
      return s;
  }
  return TCH_OK;
}

/* ---- the buffer's undo log -------------------------------------------------------------------- */
static void undo_begin(tchi_dsmc *m)
{
  tchi_iwbuf *b = m->buf;
  m->u_n = b->n;
  m->u_head = b->head;
  m->u_added = b->n_added;
  m->u_temp = b->last_temperature;
  m->u_ess = b->last_ess;
  m->u_saved = 0;
  m->u_taken = 1;
}

/* Inserts n samples after saving the live slots the insertion may overwrite: the FIFO
 * writes slots head, head+1, ... (mod capacity), and only those below the step's starting
 * size held entries before the step. */
static tch_status buffer_insert(tchi_dsmc *m, size_t n, const double *x, const double *log_r,
                                const double *log_iw, const double *loss, size_t *added)
{
  tchi_iwbuf *b = m->buf;
  const size_t cap = b->prm.capacity, D = b->prm.dim;
  if (m->u_n > 0) {
    for (size_t i = 0; i < TCHI_MIN(n, cap); i++) {
      size_t slot = (b->head + i) % cap;
      if (slot >= m->u_n) continue;
      if (m->u_saved == m->u_cap)
        return tchi_fail(TCH_E_INTERNAL, "SMC buffer undo log full (%zu slots)", m->u_cap);
      size_t q = m->u_saved++;
      m->u_slot[q] = slot;
      tchi_iwbuf_get(b, slot, m->u_x + q * D, m->u_log_r + q, m->u_log_iw + q, m->u_prio + q);
    }
  }
  return tchi_iwbuf_add(b, n, x, log_r, log_iw, loss, added);
}

static void undo_restore(tchi_dsmc *m)
{
  if (!m->u_taken) return;
  tchi_iwbuf *b = m->buf;
  const size_t D = b->prm.dim;
  for (size_t q = m->u_saved; q-- > 0;) {
    size_t s = m->u_slot[q];
    memcpy(b->x + s * D, m->u_x + q * D, D * sizeof(double));
    b->log_r[s] = m->u_log_r[q];
    b->log_iw[s] = m->u_log_iw[q];
    b->prio[s] = m->u_prio[q];
  }
  b->n = m->u_n;
  b->head = m->u_head;
  b->n_added = m->u_added;
  b->last_temperature = m->u_temp;
  b->last_ess = m->u_ess;
  m->u_taken = 0;
}

/* ---- pieces of a step --------------------------------------------------------------------------- */
/* What one step computed, committed only at its end. */
typedef struct step_out {
  uint64_t calls, sweeps;
  int sweep_done;
  double log_z_hat, resamples, ess, mala_accept;
  tchi_smc_loss_result loss;
  /* smc.init_log_z at step 0: the Student's log Z before it was set, restored on failure */
  int log_z_set;
  double old_log_z;
  /* the Teacher: threshold in use, its gradient's batch size and results, and the Teacher
   * batch of a Teacher iteration (mean and log-mean-exp of its log-IWs, entries the buffer
   * kept) */
  double thr;
  size_t kept;
  double tloss, tnorm;
  int teacher_batch;
  double t_log_iw, t_log_z_hat;
  size_t t_added;
} step_out;

/* What an iteration trains the Student on. */
typedef enum iter_kind { ITER_ON_POLICY, ITER_REPLAY, ITER_TEACHER } iter_kind;

static iter_kind iteration_kind(const tchi_dsmc *m, uint64_t it)
{
  const uint64_t r1 = m->replay_ratio + 1;
  if (m->method == TCHI_SMC_METHOD_TB || it % r1 == 0) return ITER_ON_POLICY;
  /* replay iterations before this one: it - (on-policy iterations 0, r+1, ... up to it) */
  const uint64_t q = it - it / r1 - 1;
  return m->teacher_every && q % m->teacher_every == 0 ? ITER_TEACHER : ITER_REPLAY;
}

static double mean_of(size_t n, const double *v)
{
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) sum += v[i];
  return sum / (double)n;
}

static void note_sweep(const tchi_smc_sampler *sm, step_out *o)
{
  o->calls += sm->n_energy_evals;
  o->sweeps++;
  o->sweep_done = 1;
  o->log_z_hat = sm->log_z;
  o->resamples = (double)sm->n_resamples;
  o->ess = tchi_smc_ess_normalised(sm->n, sm->log_w, 1.0);
  o->mala_accept = sm->mala_proposals ? (double)sm->mala_accepted / (double)sm->mala_proposals
                                      : NAN;
}

/* n on-policy trajectories into d->traj, their terminals into m->x, log R into m->log_r and
 * log w = log R + log p_B - log p_0 - log q into m->log_iw. */
static tch_status on_policy_batch(tch_trainer *t, tchi_rng *rng, step_out *o)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  const size_t B = t->batch;
  tch_status s = tchi_dsample_forward(d->student.net, &d->rw, rng, B, 0.0, &d->traj);
  if (s) return s;
  tchi_dtraj_terminals(&d->traj, m->x);
  if ((s = tchi_env_log_density(t->env, B, m->x, m->log_r, NULL))) return s;
  o->calls += B;
  /* traj.c folds log p_0(x_0) into log_pf for OU nets */
  for (size_t i = 0; i < B; i++) m->log_iw[i] = m->log_r[i] + d->traj.log_pb[i] - d->traj.log_pf[i];
  return TCH_OK;
}

/* The loss (gradients accumulated into the Student and the flow) on d->traj with terminal
 * log R m->log_r; per-sample residuals into m->res. */
static tch_status loss_on_batch(tch_trainer *t, int grad, step_out *o)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  tch_status s = tchi_smc_joint_loss(d->student.net, m->flow, t->env, &d->traj, m->log_r, NULL,
                                     &m->lp, grad, &m->lws, &o->loss, m->res);
  if (s) return s;
  if (m->lp.n_chunks > 1) o->calls += (uint64_t)d->traj.n * (m->lp.n_chunks - 1);
  return TCH_OK;
}

/* smc.init_log_z elbo / iw_elbo (spec §7; TORCH initialize_log_Z): B on-policy trajectories
 * of the initial Student on their own stream set its log Z to the mean / log-mean-exp of
 * their log-IWs. They do not enter the buffer (TORCH's extra batch for SMC methods does). */
static tch_status init_log_z(tch_trainer *t, step_out *o)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  const size_t B = t->batch;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_INIT_LOG_Z, 0);
  tch_status s = on_policy_batch(t, &rng, o);
  if (s) return tchi_fail_prefix(s, "smc.init_log_z batch: ");
  const double v = m->init_log_z == INIT_LOG_Z_ELBO ? mean_of(B, m->log_iw)
                                                     : tchi_smc_log_mean_exp(B, m->log_iw);
  if (!isfinite(v))
    return tchi_fail(TCH_E_NUMERIC, "smc.init_log_z %s: the first batch gives log Z = %g",
                     init_log_z_names[m->init_log_z], v);
  o->log_z_set = 1;
  o->old_log_z = d->student.net->log_z;
  d->student.net->log_z = v;
  return TCH_OK;
}

/* A Teacher iteration's batch: B Teacher trajectories (no exploration) into d->ttraj, their
 * terminals into m->x, log R into m->log_r and log w = log R + log p_B - log p_0 - log q_T
 * into m->log_iw: the single-trajectory log-IW under the Teacher's own q (traj.c folds
 * log p_0 into log_pf), so that its samples share the buffer's scale (spec §12). */
static tch_status teacher_batch(tch_trainer *t, uint64_t it, step_out *o)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  const size_t B = t->batch;
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_TEACHER, TCHI_DSUB_MAIN, it);
  tch_status s = tchi_dsample_forward(d->teacher.net, &d->rw, &rng, B, 0.0, &d->ttraj);
  if (s) return tchi_fail_prefix(s, "Teacher batch: ");
  tchi_dtraj_terminals(&d->ttraj, m->x);
  if ((s = tchi_env_log_density(t->env, B, m->x, m->log_r, NULL)))
    return tchi_fail_prefix(s, "Teacher batch: ");
  o->calls += B;
  for (size_t i = 0; i < B; i++) m->log_iw[i] = m->log_r[i] + d->ttraj.log_pb[i] - d->ttraj.log_pf[i];
  o->teacher_batch = 1;
  o->t_log_iw = mean_of(B, m->log_iw);
  o->t_log_z_hat = tchi_smc_log_mean_exp(B, m->log_iw);
  return TCH_OK;
}

/* The Teacher's gradient on the Student's batch: terminals x, log R m->log_r and the
 * Student's pre-update TB residuals m->res (the loss's sign: log Z + log P_F - log P_B -
 * log R, so delta = -res). */
static tch_status teacher_on_batch(tch_trainer *t, uint64_t it, const double *x, step_out *o)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  const size_t n = d->traj.n;
  for (size_t i = 0; i < n; i++) d->adv[i] = tchi_dteacher_adv(d, -m->res[i], m->log_r[i], o->thr);
  return tchi_dteacher_grad(t, it, n, x, m->log_r, d->adv, o->thr, &o->kept, &o->tloss, &o->tnorm);
}

/* Per-sample TB losses for the loss priority (squared residuals). */
static const double *sample_losses(tchi_dsmc *m, size_t n)
{
  if (m->buf->prm.priority != TCHI_IWBUF_LOSS) return NULL;
  for (size_t i = 0; i < n; i++) m->res[i] *= m->res[i];
  return m->res;
}

/* The prefill of §7 into the (empty) buffer. */
static tch_status prefill(tch_trainer *t, step_out *o)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  const size_t B = t->batch;
  tchi_rng rng;
  tch_status s;
  for (size_t b = 0; b < m->prefill_batches; b++) {
    if (m->method == TCHI_SMC_METHOD_SMC_BUFFER) {
      tchi_dseed(&rng, t, TCHI_STREAM_SMC, TCHI_DSUB_PREFILL, b);
      if ((s = tchi_smc_run(d->student.net, m->flow, t->env, &m->sp, &rng, &m->sampler)))
        return tchi_fail_prefix(s, "SMC prefill sweep %zu: ", b);
      note_sweep(&m->sampler, o);
      if ((s = buffer_insert(m, B, m->sampler.x, m->sampler.log_r, m->sampler.log_w, NULL, NULL)))
        return s;
    } else {
      tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_PREFILL, b);
      if ((s = on_policy_batch(t, &rng, o))) return tchi_fail_prefix(s, "SMC prefill batch %zu: ", b);
      const double *loss = NULL;
      if (m->buf->prm.priority == TCHI_IWBUF_LOSS) {
        step_out tmp = {0};
        if ((s = loss_on_batch(t, 0, &tmp))) return s;
        o->calls += tmp.calls;
        loss = sample_losses(m, B);
      }
      if ((s = buffer_insert(m, B, m->x, m->log_r, m->log_iw, loss, NULL))) return s;
    }
  }
  return TCH_OK;
}

static double lr_factor(const tchi_dtrainer *d, uint64_t it)
{
  double f = 1.0;
  for (int i = 0; i < d->n_milestones; i++)
    if (it >= d->milestones[i]) f *= d->gamma;
  return f;
}

/* Global gradient norm over the Student's and the flow's groups (the metric), then the
 * joint clip of §7. Non-finite norms are TCH_E_NUMERIC. */
static tch_status clip_joint(tchi_dtrainer *d, uint64_t it, double *norm)
{
  tchi_dsmc *m = d->smc;
  tchi_param_group all[2 * TCHI_ADAM_MAX_GROUPS];
  size_t n = 0;
  for (size_t g = 0; g < d->student.opt.n_groups; g++) all[n++] = d->student.opt.grp[g];
  if (m->flow)
    for (size_t g = 0; g < m->flow_opt.n_groups; g++) all[n++] = m->flow_opt.grp[g];
  *norm = tchi_grad_norm(all, n);
  if (!isfinite(*norm))
    return tchi_fail(TCH_E_NUMERIC, "SMC gradient norm is %g at step %llu", *norm, (unsigned long long)it);
  if (m->grad_clip > 0.0) tchi_clip_grad_norm(all, n, m->grad_clip);
  return TCH_OK;
}

static tch_status smc_step(tch_trainer *t, step_out *o, iter_kind *kind)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  tchi_dlearner *S = &d->student;
  const uint64_t it = t->step;
  const size_t B = t->batch;
  tch_status s;
  tchi_rng rng;

  if (m->buf) undo_begin(m);
  if (it == 0 && m->init_log_z != INIT_LOG_Z_FLOAT && (s = init_log_z(t, o))) return s;
  o->thr = d->threshold;
  if (d->teacher.net && !d->threshold_set && (s = tchi_dteacher_threshold(t, &o->thr, &o->calls)))
    return tchi_fail_prefix(s, "Teacher threshold: ");
  if (m->buf && !m->prefilled && (s = prefill(t, o))) return s;

  tchi_dnet_zero_grad(S->net);
  if (m->flow) tchi_dflow_zero_grad(m->flow);
  *kind = iteration_kind(m, it);
  const double *src = m->x;   /* the terminals the Student trains on */
  if (*kind == ITER_ON_POLICY) {
    tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_MAIN, it);
    if ((s = on_policy_batch(t, &rng, o)) || (s = loss_on_batch(t, 1, o))) return s;
  } else {
    if (*kind == ITER_TEACHER) {
      if ((s = teacher_batch(t, it, o))) return s;
    } else if (uses_smc(m->method)) {
      tchi_dseed(&rng, t, TCHI_STREAM_SMC, TCHI_DSUB_MAIN, it);
      if ((s = tchi_smc_run(S->net, m->flow, t->env, &m->sp, &rng, &m->sampler))) return s;
      note_sweep(&m->sampler, o);
      if (m->buf) {
        if ((s = buffer_insert(m, B, m->sampler.x, m->sampler.log_r, m->sampler.log_w, NULL, NULL)))
          return s;
      } else {
        /* smc: the final particles themselves, weights ignored (nobuffer trainer) */
        src = m->sampler.x;
        memcpy(m->log_r, m->sampler.log_r, B * sizeof(double));
      }
    }
    if (*kind == ITER_REPLAY && m->buf) {
      tchi_dseed(&rng, t, TCHI_STREAM_BUFFER, TCHI_DSUB_MAIN, it);
      if ((s = tchi_iwbuf_sample(m->buf, &rng, B, m->x, m->log_r, NULL, NULL))) return s;
    }
    tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_AUX, it);
    if ((s = tchi_dsample_backward(S->net, &d->rw, &rng, B, src, &d->traj)) ||
        (s = loss_on_batch(t, 1, o)))
      return s;
  }
  /* the Teacher trains on every Student batch, from the Student's pre-update residuals */
  if (d->teacher.net && (s = teacher_on_batch(t, it, src, o))) return s;
  double norm;
  if ((s = clip_joint(d, it, &norm))) return s;
  /* on-policy terminals join the buffer weighted by the pre-update policy, Teacher samples
   * by the Teacher that drew them */
  if (*kind != ITER_REPLAY && m->buf &&
      (s = buffer_insert(m, B, m->x, m->log_r, m->log_iw, sample_losses(m, B),
                         *kind == ITER_TEACHER ? &o->t_added : NULL)))
    return s;

  /* commit: nothing below fails */
  const double f = lr_factor(d, it);
  for (size_t g = 0; g < S->opt.n_groups; g++) S->opt.grp[g].lr = S->base_lr[g] * f;
  tchi_adam_step(&S->opt);
  if (m->flow) {
    for (size_t g = 0; g < m->flow_opt.n_groups; g++) m->flow_opt.grp[g].lr = m->flow_base_lr[g] * f;
    tchi_adam_step(&m->flow_opt);
  }
  if (d->teacher.net) tchi_dteacher_commit(t, it, o->kept, o->tloss, o->tnorm);
  S->last_loss = o->loss.loss;
  S->last_grad_norm = norm;
  return TCH_OK;
}

tch_status tchi_dsmc_one_step(tch_trainer *t)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  step_out o;
  memset(&o, 0, sizeof o);
  iter_kind kind = ITER_ON_POLICY;
  m->u_taken = 0;
  tch_status s = smc_step(t, &o, &kind);
  if (s) {
    if (m->buf) undo_restore(m);
    if (o.log_z_set) d->student.net->log_z = o.old_log_z;
    return s;
  }
  m->u_taken = 0;
  if (m->buf) m->prefilled = 1;
  m->sweeps += o.sweeps;
  if (o.sweep_done) {
    m->last_log_z_hat = o.log_z_hat;
    m->last_resamples = o.resamples;
    m->last_mala_accept = o.mala_accept;
    m->last_ess = o.ess;
  }
  m->last_tb = o.loss.tb;
  m->last_subtb = uses_smc(m->method) ? o.loss.subtb : NAN;
  if (d->teacher.net) {
    d->threshold = o.thr;
    d->threshold_set = 1;
  }
  if (o.teacher_batch) {
    m->teacher_batches++;
    m->last_teacher_log_iw = o.t_log_iw;
    m->last_teacher_log_z_hat = o.t_log_z_hat;
    if (m->buf) {
      /* a batch the buffer dropped entirely (log R at or below its floor) */
      d->last_teacher_added = (double)o.t_added;
      if (o.t_added == 0) d->skipped_teacher_batch++;
    }
  }
  t->reward_calls += o.calls;
  t->grad_steps++;
  t->last_source = kind == ITER_ON_POLICY ? (int)TCH_SOURCE_STUDENT
                   : kind == ITER_TEACHER ? (int)TCH_SOURCE_TEACHER : (int)TCH_SOURCE_BUFFER;
  t->step++;
  return TCH_OK;
}

/* ---- metrics ------------------------------------------------------------------------------------ */
int tchi_dsmc_metric(const tch_trainer *t, const char *name, double *out)
{
  const tchi_dsmc *m = t->diff->smc;
  if (!strcmp(name, "buffer.size")) {
    if (!m) return 0;
    *out = m->buf ? (double)m->buf->n : NAN;
    return 1;
  }
  if (strncmp(name, "smc.", 4) != 0) return 0;
  const char *k = name + 4;
  if (!strcmp(k, "loss.tb")) *out = m ? m->last_tb : NAN;
  else if (!strcmp(k, "loss.subtb")) *out = m ? m->last_subtb : NAN;
  else if (!strcmp(k, "log_z_hat")) *out = m ? m->last_log_z_hat : NAN;
  else if (!strcmp(k, "resamples")) *out = m ? m->last_resamples : NAN;
  else if (!strcmp(k, "mala_accept")) *out = m ? m->last_mala_accept : NAN;
  else if (!strcmp(k, "ess")) *out = m ? m->last_ess : NAN;
  else if (!strcmp(k, "sweeps")) *out = m ? (double)m->sweeps : NAN;
  else if (!strcmp(k, "buffer.ess")) *out = m && m->buf && m->buf->n ? m->buf->last_ess : NAN;
  else if (!strcmp(k, "buffer.temperature"))
    *out = m && m->buf && m->buf->n ? m->buf->last_temperature : NAN;
  else if (!strcmp(k, "teacher.batches")) *out = m && m->teacher_every ? (double)m->teacher_batches : NAN;
  else if (!strcmp(k, "teacher.log_iw")) *out = m ? m->last_teacher_log_iw : NAN;
  else if (!strcmp(k, "teacher.log_z_hat")) *out = m ? m->last_teacher_log_z_hat : NAN;
  else return 0;
  return 1;
}
