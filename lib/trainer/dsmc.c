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
 * Losses: TB + chunked SubTB (smc.loss) for the SMC methods, plain TB (one chunk, no flow)
 * for the TB methods. One Adam step per iteration over the policy, log Z, the flow and beta,
 * after a global-norm clip over all of them jointly; every learning rate x smc.lr_decay at
 * smc.lr_milestones.
 *
 * Energy evaluations (reward_calls) are counted exactly: N per on-policy batch (terminals),
 * N K per SMC sweep (every chunk end), and N (K-1) per loss of the SMC methods (log R at the
 * interior chunk boundaries of the partial-energy twists). The Langevin gradient of a
 * Langevin net is not counted.
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
    {"teacher.enabled", "Reinforced SMC has no Teacher (smc.enabled excludes it)"},
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
                                const double *log_iw, const double *loss)
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
  return tchi_iwbuf_add(b, n, x, log_r, log_iw, loss, NULL);
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
  double log_z_hat, resamples, ess;
  tchi_smc_loss_result loss;
} step_out;

static void note_sweep(const tchi_smc_sampler *sm, step_out *o)
{
  o->calls += sm->n_energy_evals;
  o->sweeps++;
  o->sweep_done = 1;
  o->log_z_hat = sm->log_z;
  o->resamples = (double)sm->n_resamples;
  o->ess = tchi_smc_ess_normalised(sm->n, sm->log_w, 1.0);
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
      if ((s = buffer_insert(m, B, m->sampler.x, m->sampler.log_r, m->sampler.log_w, NULL))) return s;
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
      if ((s = buffer_insert(m, B, m->x, m->log_r, m->log_iw, loss))) return s;
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

static tch_status smc_step(tch_trainer *t, step_out *o, int *replay)
{
  tchi_dtrainer *d = t->diff;
  tchi_dsmc *m = d->smc;
  tchi_dlearner *S = &d->student;
  const uint64_t it = t->step;
  const size_t B = t->batch;
  tch_status s;
  tchi_rng rng;

  if (m->buf) undo_begin(m);
  if (m->buf && !m->prefilled && (s = prefill(t, o))) return s;

  tchi_dnet_zero_grad(S->net);
  if (m->flow) tchi_dflow_zero_grad(m->flow);
  const int on_policy = m->method == TCHI_SMC_METHOD_TB || it % (m->replay_ratio + 1) == 0;
  *replay = !on_policy;
  if (on_policy) {
    tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_MAIN, it);
    if ((s = on_policy_batch(t, &rng, o)) || (s = loss_on_batch(t, 1, o))) return s;
  } else {
    const double *src = m->x;
    if (uses_smc(m->method)) {
      tchi_dseed(&rng, t, TCHI_STREAM_SMC, TCHI_DSUB_MAIN, it);
      if ((s = tchi_smc_run(S->net, m->flow, t->env, &m->sp, &rng, &m->sampler))) return s;
      note_sweep(&m->sampler, o);
      if (m->buf) {
        if ((s = buffer_insert(m, B, m->sampler.x, m->sampler.log_r, m->sampler.log_w, NULL)))
          return s;
      } else {
        /* smc: the final particles themselves, weights ignored (nobuffer trainer) */
        src = m->sampler.x;
        memcpy(m->log_r, m->sampler.log_r, B * sizeof(double));
      }
    }
    if (m->buf) {
      tchi_dseed(&rng, t, TCHI_STREAM_BUFFER, TCHI_DSUB_MAIN, it);
      if ((s = tchi_iwbuf_sample(m->buf, &rng, B, m->x, m->log_r, NULL, NULL))) return s;
    }
    tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_AUX, it);
    if ((s = tchi_dsample_backward(S->net, &d->rw, &rng, B, src, &d->traj)) ||
        (s = loss_on_batch(t, 1, o)))
      return s;
  }
  double norm;
  if ((s = clip_joint(d, it, &norm))) return s;
  /* the on-policy terminals join the buffer, weighted by the pre-update policy */
  if (on_policy && m->buf &&
      (s = buffer_insert(m, B, m->x, m->log_r, m->log_iw, sample_losses(m, B))))
    return s;

  /* commit: nothing below fails */
  const double f = lr_factor(d, it);
  for (size_t g = 0; g < S->opt.n_groups; g++) S->opt.grp[g].lr = S->base_lr[g] * f;
  tchi_adam_step(&S->opt);
  if (m->flow) {
    for (size_t g = 0; g < m->flow_opt.n_groups; g++) m->flow_opt.grp[g].lr = m->flow_base_lr[g] * f;
    tchi_adam_step(&m->flow_opt);
  }
  S->last_loss = o->loss.loss;
  S->last_grad_norm = norm;
  return TCH_OK;
}

tch_status tchi_dsmc_one_step(tch_trainer *t)
{
  tchi_dsmc *m = t->diff->smc;
  step_out o;
  memset(&o, 0, sizeof o);
  int replay = 0;
  m->u_taken = 0;
  tch_status s = smc_step(t, &o, &replay);
  if (s) {
    if (m->buf) undo_restore(m);
    return s;
  }
  m->u_taken = 0;
  if (m->buf) m->prefilled = 1;
  m->sweeps += o.sweeps;
  if (o.sweep_done) {
    m->last_log_z_hat = o.log_z_hat;
    m->last_resamples = o.resamples;
    m->last_ess = o.ess;
  }
  m->last_tb = o.loss.tb;
  m->last_subtb = uses_smc(m->method) ? o.loss.subtb : NAN;
  t->reward_calls += o.calls;
  t->grad_steps++;
  t->last_source = replay ? (int)TCH_SOURCE_BUFFER : (int)TCH_SOURCE_STUDENT;
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
  else if (!strcmp(k, "ess")) *out = m ? m->last_ess : NAN;
  else if (!strcmp(k, "sweeps")) *out = m ? (double)m->sweeps : NAN;
  else if (!strcmp(k, "buffer.ess")) *out = m && m->buf && m->buf->n ? m->buf->last_ess : NAN;
  else if (!strcmp(k, "buffer.temperature"))
    *out = m && m->buf && m->buf->n ? m->buf->last_temperature : NAN;
  else return 0;
  return 1;
}
