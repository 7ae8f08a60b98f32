/* Checkpoints: the whole state of a trainer in one versioned, checksummed file, written
 * atomically (temp file + fsync + rename), so a crash mid-write never destroys the previous
 * checkpoint.
 *
 * Layout: "TCHK", u32 format, u32 endianness tag, then tagged sections
 * (u32 tag, u64 byte length, payload) in any order, then CRC-32 of everything before it.
 * Readers skip sections they do not know. Sections:
 *   CONF  the effective config as YAML (a trainer is rebuilt from it)
 *   STAT  counters and last metrics
 *   STUD  Student policy + Adam state        TEAC  Teacher policy + Adam state
 *   BUFF  replay buffer                      VIST  exact-target visit statistics
 *   GAFN  RND target and predictor weights (their Adam state is in STUD)
 *   DISC  train.schedule discovery: objects seen so far with their rewards and adv scores,
 *         the FIFOs, the skip counter, the last evaluation, sehstr's mode flags
 * Diffusion trainers (energy envs) write CONF, STAT and BUFF as above, and
 *   DSTU  Student diffusion network + Adam state    DTEA  Teacher network + Adam state
 *   DIFF  threshold, skip counters, last metrics, evaluation results
 *   DSMC  Reinforced SMC (smc.enabled): method, prefill flag, sweep count, last metrics,
 *         the log-flow twist + its Adam state, the IW replay buffer, and with a Teacher
 *         (smc.teacher_every) a trailing block "DSMT", format, Teacher batches, last
 *         Teacher log-IW statistics; the Teacher's net + Adam state are DTEA, its threshold
 *         and skip counters DIFF, as in the Teacher paper's loop. Without a Teacher the
 *         block is absent, so such checkpoints keep the layout of earlier versions.
 * Random numbers need no section: every stream is keyed by (seed, purpose, step); nor does
 * the learning-rate schedule, a function of the step. */
#include <math.h>
#include <string.h>
#include "trainer.h"
#include "buffers/buffer.h"
#include "config/config.h"
#include "io/io.h"

#define CKPT_MAGIC "TCHK"
#define CKPT_FORMAT 1u
#define TAG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define TAG_CONF TAG('C', 'O', 'N', 'F')
#define TAG_STAT TAG('S', 'T', 'A', 'T')
#define TAG_STUD TAG('S', 'T', 'U', 'D')
#define TAG_TEAC TAG('T', 'E', 'A', 'C')
#define TAG_BUFF TAG('B', 'U', 'F', 'F')
#define TAG_VIST TAG('V', 'I', 'S', 'T')
#define TAG_GAFN TAG('G', 'A', 'F', 'N')
#define TAG_DISC TAG('D', 'I', 'S', 'C')
#define TAG_DSTU TAG('D', 'S', 'T', 'U')
#define TAG_DTEA TAG('D', 'T', 'E', 'A')
#define TAG_DIFF TAG('D', 'I', 'F', 'F')
#define TAG_DSMC TAG('D', 'S', 'M', 'C')
#define TAG_DSMT TAG('D', 'S', 'M', 'T')   /* block inside DSMC: its Teacher's counters */
#define DSMT_FORMAT 1u

/* ---- writing ---------------------------------------------------------------------------- */
static size_t section_begin(tchi_writer *w, uint32_t tag)
{
  tchi_put_u32(w, tag);
  size_t at = w->len;
  tchi_put_u64(w, 0);
  return at;
}

static void section_end(tchi_writer *w, size_t at)
{
  if (w->status != TCH_OK) return;
  uint64_t len = (uint64_t)(w->len - at - sizeof(uint64_t));
  memcpy(w->buf + at, &len, sizeof len);
}

static void write_adam(tchi_writer *w, const tchi_adam *a)
{
  tchi_put_u64(w, a->t);
  tchi_put_u64(w, a->n_groups);
  for (size_t g = 0; g < a->n_groups; g++) {
    tchi_put_u64(w, a->grp[g].n);
    tchi_put(w, a->m[g], a->grp[g].n * sizeof(double));
    tchi_put(w, a->v[g], a->grp[g].n * sizeof(double));
  }
}

static void write_learner(tchi_writer *w, uint32_t tag, const tchi_learner *l)
{
  size_t at = section_begin(w, tag);
  tchi_policy_write(l->policy, w);
  write_adam(w, &l->opt);
  tchi_put_f64(w, l->last_loss);
  tchi_put_f64(w, l->last_grad_norm);
  section_end(w, at);
}

static void write_dlearner(tchi_writer *w, uint32_t tag, const tchi_dlearner *l)
{
  size_t at = section_begin(w, tag);
  tchi_dnet_write(l->net, w);
  write_adam(w, &l->opt);
  tchi_put_f64(w, l->last_loss);
  tchi_put_f64(w, l->last_grad_norm);
  section_end(w, at);
}

#define DEVAL_N (sizeof(tchi_deval) / sizeof(double))

static void write_diffusion(tchi_writer *w, const tch_trainer *t)
{
  const tchi_dtrainer *d = t->diff;
  write_dlearner(w, TAG_DSTU, &d->student);
  if (d->teacher.net) write_dlearner(w, TAG_DTEA, &d->teacher);
  size_t at = section_begin(w, TAG_DIFF);
  tchi_put_u32(w, (uint32_t)d->threshold_set);
  tchi_put_f64(w, d->threshold);
  tchi_put_u64(w, d->skipped_teacher_batch);
  tchi_put_u64(w, d->skipped_teacher_update);
  tchi_put_u64(w, d->skipped_student);
  tchi_put_f64(w, d->last_kept);
  tchi_put_f64(w, d->last_teacher_added);
  tchi_put_f64(w, d->last_ls_added);
  tchi_put_f64(w, d->last_ls_accept);
  const double *ev = (const double *)&d->ev;
  tchi_put_u64(w, DEVAL_N);
  for (size_t i = 0; i < DEVAL_N; i++) tchi_put_f64(w, ev[i]);
  section_end(w, at);
  const tchi_dsmc *m = d->smc;
  if (!m) return;
  at = section_begin(w, TAG_DSMC);
  tchi_put_u32(w, (uint32_t)m->method);
  tchi_put_u32(w, (uint32_t)m->prefilled);
  tchi_put_u64(w, m->sweeps);
  tchi_put_f64(w, m->last_tb);
  tchi_put_f64(w, m->last_subtb);
  tchi_put_f64(w, m->last_log_z_hat);
  tchi_put_f64(w, m->last_resamples);
  tchi_put_f64(w, m->last_ess);
  tchi_put_u32(w, m->flow != NULL);
  if (m->flow) {
    tchi_dflow_write(m->flow, w);
    write_adam(w, &m->flow_opt);
  }
  tchi_put_u32(w, m->buf != NULL);
  if (m->buf) {
    tchi_iwbuf_write(m->buf, w);
    /* the last draw's tempering (metrics smc.buffer.*), not part of the buffer's record */
    tchi_put_f64(w, m->buf->last_temperature);
    tchi_put_f64(w, m->buf->last_ess);
  }
  if (m->teacher_every) {
    tchi_put_u32(w, TAG_DSMT);
    tchi_put_u32(w, DSMT_FORMAT);
    tchi_put_u64(w, m->teacher_batches);
    tchi_put_f64(w, m->last_teacher_log_iw);
    tchi_put_f64(w, m->last_teacher_log_z_hat);
  }
  section_end(w, at);
}

tch_status tchi_trainer_save(const tch_trainer *t, const char *path)
{
  char *yaml = NULL;
  size_t yaml_len = 0;
  tch_status s = tchi_config_dump_yaml_string(t->cfg, &yaml, &yaml_len);
  if (s) return s;
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_put(&w, CKPT_MAGIC, 4);
  tchi_put_u32(&w, CKPT_FORMAT);
  tchi_put_u32(&w, TCHI_ENDIAN_TAG);

  size_t at = section_begin(&w, TAG_CONF);
  tchi_put(&w, yaml, yaml_len);
  section_end(&w, at);
  tchi_free(yaml);

  at = section_begin(&w, TAG_STAT);
  tchi_put_u64(&w, t->step);
  tchi_put_u64(&w, t->reward_calls);
  tchi_put_u64(&w, t->grad_steps);
  tchi_put_u32(&w, (uint32_t)(int32_t)t->last_source);
  tchi_put_f64(&w, t->eval_l1);
  tchi_put_f64(&w, t->eval_modes);
  section_end(&w, at);

  if (t->kind == TCHI_TRAINER_DIFFUSION) write_diffusion(&w, t);
  else write_learner(&w, TAG_STUD, &t->student);
  if (t->teacher.policy) write_learner(&w, TAG_TEAC, &t->teacher);
  if (t->gafn) {
    at = section_begin(&w, TAG_GAFN);
    tchi_put_u64(&w, t->rnd.pred.n_params);
    tchi_put(&w, t->rnd.target.params, t->rnd.target.n_params * sizeof(float));
    tchi_put(&w, t->rnd.pred.params, t->rnd.pred.n_params * sizeof(float));
    section_end(&w, at);
  }
  if (t->buffer) {
    at = section_begin(&w, TAG_BUFF);
    tchi_buffer_write(t->buffer, &w);
    section_end(&w, at);
  }
  if (tchi_trainer_has_discovery_state(t)) {
    at = section_begin(&w, TAG_DISC);
    tchi_trainer_write_discovery(t, &w);
    section_end(&w, at);
  }
  if (t->env->exact) {
    const tchi_visits *v = &t->visits;
    at = section_begin(&w, TAG_VIST);
    tchi_put_u64(&w, t->env->exact->n);
    tchi_put_u64(&w, v->window);
    tchi_put_u64(&w, v->head);
    tchi_put_u64(&w, v->count);
    tchi_put_u64(&w, v->total);
    tchi_put(&w, v->ring, v->count * sizeof(int64_t));
    tchi_put_u64(&w, v->modes_found);
    for (size_t k = 0; k < t->env->exact->n; k++)
      if (v->seen_mode[k]) tchi_put_u64(&w, k);
    section_end(&w, at);
  }
  s = tchi_writer_commit(&w, path);
  tchi_writer_destroy(&w);
  return s;
}

/* ---- reading ----------------------------------------------------------------------------- */
static tch_status malformed(const tchi_reader *r, const char *what)
{
  return tchi_fail(TCH_E_IO, "'%s': malformed checkpoint (%s)", r->path, what);
}

static tch_status read_adam(tchi_reader *r, tchi_adam *a)
{
  uint64_t t, ng, n;
  tch_status s;
  if ((s = tchi_get_u64(r, &t)) || (s = tchi_get_u64(r, &ng))) return s;
  if (ng != a->n_groups) return malformed(r, "optimiser groups");
  for (size_t g = 0; g < a->n_groups; g++) {
    if ((s = tchi_get_u64(r, &n))) return s;
    if (n != a->grp[g].n) return malformed(r, "optimiser group size");
    if ((s = tchi_get(r, a->m[g], n * sizeof(double))) || (s = tchi_get(r, a->v[g], n * sizeof(double))))
      return s;
  }
  a->t = t;
  return TCH_OK;
}

static tch_status read_learner(tchi_reader *r, tchi_learner *l)
{
  tch_policy *p;
  tch_status s = tchi_policy_read(r, &p);
  if (s) return s;
  tch_policy *q = l->policy;
  if (p->state_dim != q->state_dim || p->n_actions != q->n_actions || p->in_dim != q->in_dim) {
    tch_status e = tchi_fail(TCH_E_ARG, "'%s' was saved for an env with state_dim %u, %u actions "
                             "and input width %u; the env given has %u, %u and %u", r->path,
                             p->state_dim, p->n_actions, p->in_dim, q->state_dim, q->n_actions,
                             q->in_dim);
    tchi_policy_release(p);
    return e;
  }
  if (p->out_dim != q->out_dim || p->mlp.n_params != q->mlp.n_params || p->mlp.act != q->mlp.act) {
    tchi_policy_release(p);
    return malformed(r, "policy does not match its config or the env");
  }
  /* Copy into the existing policy: the optimiser's parameter groups point at it. */
  memcpy(q->mlp.params, p->mlp.params, q->mlp.n_params * sizeof(float));
  q->log_z = p->log_z;
  tchi_policy_release(p);
  if ((s = read_adam(r, &l->opt))) return s;
  if ((s = tchi_get_f64(r, &l->last_loss)) || (s = tchi_get_f64(r, &l->last_grad_norm))) return s;
  return TCH_OK;
}

static tch_status read_dlearner(tchi_reader *r, tchi_dlearner *l)
{
  tchi_dnet *p;
  tch_status s = tchi_dnet_read(r, &p);
  if (s) return s;
  tchi_dnet *q = l->net;
  if (p->spec.dim != q->spec.dim || p->spec.T != q->spec.T) {
    tch_status e = tchi_fail(TCH_E_ARG, "'%s' was saved for an energy env of dimension %u with "
                             "%u steps; the env given has %u and %u", r->path, p->spec.dim,
                             p->spec.T, q->spec.dim, q->spec.T);
    tchi_dnet_free(p);
    return e;
  }
  if (p->n_params != q->n_params || p->spec.pis != q->spec.pis || p->spec.langevin != q->spec.langevin ||
      p->spec.learned_variance != q->spec.learned_variance || p->spec.t_scale != q->spec.t_scale) {
    tchi_dnet_free(p);
    return malformed(r, "diffusion network does not match its config or the env");
  }
  /* Copy into the existing net: the optimiser's parameter groups point at it. */
  memcpy(q->params, p->params, q->n_params * sizeof(float));
  q->log_z = p->log_z;
  tchi_dnet_free(p);
  if ((s = read_adam(r, &l->opt))) return s;
  if ((s = tchi_get_f64(r, &l->last_loss)) || (s = tchi_get_f64(r, &l->last_grad_norm))) return s;
  return TCH_OK;
}

static tch_status read_diff(tchi_reader *r, tchi_dtrainer *d)
{
  uint32_t set;
  uint64_t n_ev;
  tch_status s;
  if ((s = tchi_get_u32(r, &set)) || (s = tchi_get_f64(r, &d->threshold)) ||
      (s = tchi_get_u64(r, &d->skipped_teacher_batch)) ||
      (s = tchi_get_u64(r, &d->skipped_teacher_update)) ||
      (s = tchi_get_u64(r, &d->skipped_student)) || (s = tchi_get_f64(r, &d->last_kept)) ||
      (s = tchi_get_f64(r, &d->last_teacher_added)) || (s = tchi_get_f64(r, &d->last_ls_added)) ||
      (s = tchi_get_f64(r, &d->last_ls_accept)) || (s = tchi_get_u64(r, &n_ev)))
    return s;
  if (set > 1 || (set && isnan(d->threshold))) return malformed(r, "threshold");
  /* Checkpoints written before eval.modes and eval.emc existed hold the first fields only. */
  if (n_ev != DEVAL_N && n_ev != TCHI_DEVAL_N_V1) return malformed(r, "evaluation results");
  d->ev = (tchi_deval)TCHI_DEVAL_NAN;
  double *ev = (double *)&d->ev;
  for (size_t i = 0; i < n_ev; i++)
    if ((s = tchi_get_f64(r, &ev[i]))) return s;
  d->threshold_set = (int)set;
  return TCH_OK;
}

/* Reinforced SMC's state into the trainer built from the same config: the flow's weights
 * are copied into the existing flow (its optimiser points at it), the buffer replaced. The
 * section ends at byte end (the Teacher's block, if any, is last). */
static tch_status read_dsmc(tchi_reader *r, tchi_dsmc *m, size_t end)
{
  uint32_t method, prefilled, has_flow, has_buf;
  tch_status s;
  if ((s = tchi_get_u32(r, &method)) || (s = tchi_get_u32(r, &prefilled))) return s;
  if (method != (uint32_t)m->method || prefilled > 1) return malformed(r, "SMC method");
  uint64_t sweeps;
  double last[5];
  if ((s = tchi_get_u64(r, &sweeps))) return s;
  for (int i = 0; i < 5; i++)
    if ((s = tchi_get_f64(r, &last[i]))) return s;
  if ((s = tchi_get_u32(r, &has_flow))) return s;
  if (has_flow != (m->flow != NULL)) return malformed(r, "SMC log-flow presence");
  if (m->flow) {
    tchi_dflow *f;
    if ((s = tchi_dflow_read(r, &f))) return s;
    tchi_dflow *q = m->flow;
    if (f->spec.dim != q->spec.dim || f->spec.T != q->spec.T || f->spec.hidden != q->spec.hidden ||
        f->spec.layers != q->spec.layers || f->spec.beta != q->spec.beta ||
        f->time.n_params != q->time.n_params || f->body.n_params != q->body.n_params) {
      tchi_dflow_free(f);
      return malformed(r, "SMC log-flow does not match its config or the env");
    }
    memcpy(q->time.params, f->time.params, q->time.n_params * sizeof(float));
    memcpy(q->body.params, f->body.params, q->body.n_params * sizeof(float));
    memcpy(q->phase, f->phase, q->spec.hidden * sizeof(float));
    memcpy(q->beta_logit, f->beta_logit, q->spec.T * sizeof(double));
    tchi_dflow_free(f);
    if ((s = read_adam(r, &m->flow_opt))) return s;
  }
  if ((s = tchi_get_u32(r, &has_buf))) return s;
  if (has_buf != (m->buf != NULL)) return malformed(r, "SMC buffer presence");
  if (m->buf) {
    tchi_iwbuf *b;
    if ((s = tchi_iwbuf_read(r, &b))) return s;
    if ((s = tchi_get_f64(r, &b->last_temperature)) || (s = tchi_get_f64(r, &b->last_ess))) {
      tchi_iwbuf_free(b);
      return s;
    }
    const tchi_iwbuf_params *x = &b->prm, *y = &m->buf->prm;
    if (x->dim != y->dim || x->capacity != y->capacity || x->priority != y->priority ||
        x->resampler != y->resampler || memcmp(&x->target_ess, &y->target_ess, sizeof(double)) != 0) {
      tchi_iwbuf_free(b);
      return malformed(r, "SMC buffer does not match its config or the env");
    }
    tchi_iwbuf_free(m->buf);
    m->buf = b;
  }
  uint64_t t_batches = 0;
  double t_last[2] = {NAN, NAN};
  if (r->pos < end) {
    uint32_t tag, format;
    if ((s = tchi_get_u32(r, &tag)) || (s = tchi_get_u32(r, &format))) return s;
    if (tag != TAG_DSMT) return malformed(r, "unknown data after the SMC buffer");
    if (format != DSMT_FORMAT)
      return tchi_fail(TCH_E_VERSION, "'%s': its Reinforced SMC Teacher state has format %u; this "
                       "library reads format %u (a newer libteacher wrote it)", r->path, format,
                       DSMT_FORMAT);
    if (!m->teacher_every) return malformed(r, "SMC Teacher state but smc.teacher_every is 0");
    if ((s = tchi_get_u64(r, &t_batches)) || (s = tchi_get_f64(r, &t_last[0])) ||
        (s = tchi_get_f64(r, &t_last[1])))
      return s;
  } else if (m->teacher_every) {
    return malformed(r, "smc.teacher_every is set but the SMC section has no Teacher state");
  }
  m->teacher_batches = t_batches;
  m->last_teacher_log_iw = t_last[0];
  m->last_teacher_log_z_hat = t_last[1];
  m->prefilled = (int)prefilled;
  m->sweeps = sweeps;
  m->last_tb = last[0];
  m->last_subtb = last[1];
  m->last_log_z_hat = last[2];
  m->last_resamples = last[3];
  m->last_ess = last[4];
  return TCH_OK;
}

static tch_status read_visits(tchi_reader *r, tch_trainer *t)
{
  tchi_visits *v = &t->visits;
  uint64_t nx, window, head, count, total, modes;
  tch_status s;
  if ((s = tchi_get_u64(r, &nx)) || (s = tchi_get_u64(r, &window)) || (s = tchi_get_u64(r, &head)) ||
      (s = tchi_get_u64(r, &count)) || (s = tchi_get_u64(r, &total)))
    return s;
  if (!t->env->exact || nx != t->env->exact->n) return malformed(r, "the env's terminal set differs");
  if (window != v->window || count > window || (window && head >= window) || (!window && count))
    return malformed(r, "visit window");
  if ((s = tchi_get(r, v->ring, count * sizeof(int64_t)))) return s;
  for (size_t i = 0; i < count; i++)
    if (v->ring[i] < 0 || (uint64_t)v->ring[i] >= nx) return malformed(r, "visit index");
  if ((s = tchi_get_u64(r, &modes))) return s;
  memset(v->seen_mode, 0, nx);
  for (uint64_t i = 0; i < modes; i++) {
    uint64_t k;
    if ((s = tchi_get_u64(r, &k))) return s;
    if (k >= nx || !t->env->exact->is_mode[k]) return malformed(r, "mode index");
    v->seen_mode[k] = 1;
  }
  v->head = head;
  v->count = count;
  v->total = total;
  v->modes_found = modes;
  tchi_visits_rebuild_counts(v, t->env);
  return TCH_OK;
}

tch_status tchi_trainer_load(tch_env *env, const char *path, tch_trainer **out)
{
  *out = NULL;
  tchi_reader r;
  tch_status s = tchi_reader_open(&r, path);
  if (s) return s;
  tch_config *cfg = NULL;
  tch_trainer *t = NULL;
  char magic[4];
  uint32_t format, endian;
  if ((s = tchi_get(&r, magic, 4)) || (s = tchi_get_u32(&r, &format)) || (s = tchi_get_u32(&r, &endian)))
    goto done;
  if (memcmp(magic, CKPT_MAGIC, 4) != 0) {
    s = tchi_fail(TCH_E_IO, "'%s' is not a libteacher checkpoint", path);
    goto done;
  }
  if (endian != TCHI_ENDIAN_TAG) {
    s = tchi_fail(TCH_E_VERSION, "'%s' was written on a machine of other endianness", path);
    goto done;
  }
  if (format != CKPT_FORMAT) {
    s = tchi_fail(TCH_E_VERSION, "'%s' has checkpoint format %u; this library reads format %u",
                  path, format, CKPT_FORMAT);
    goto done;
  }
  int seen_stat = 0, seen_stud = 0, seen_teac = 0, seen_buff = 0, seen_vist = 0, seen_gafn = 0;
  int seen_dstu = 0, seen_dtea = 0, seen_diff = 0, seen_dsmc = 0, seen_disc = 0;
  while (r.pos < r.len) {
    uint32_t tag;
    uint64_t len;
    if ((s = tchi_get_u32(&r, &tag)) || (s = tchi_get_u64(&r, &len))) goto done;
    if (len > r.len - r.pos) {
      s = malformed(&r, "section longer than the file");
      goto done;
    }
    size_t end = r.pos + (size_t)len;
    if (tag == TAG_CONF) {
      if (cfg) { s = malformed(&r, "two config sections"); goto done; }
      if ((s = tch_config_create(&cfg))) goto done;
      if ((s = tch_config_load_yaml_string(cfg, (const char *)r.buf + r.pos, (size_t)len))) {
        s = tchi_fail_prefix(s, "'%s': checkpoint config: ", path);
        goto done;
      }
      if ((s = tchi_trainer_create(env, cfg, &t))) goto done;
    } else if (tag == TAG_STAT || tag == TAG_STUD || tag == TAG_TEAC || tag == TAG_BUFF ||
               tag == TAG_VIST || tag == TAG_GAFN || tag == TAG_DSTU || tag == TAG_DTEA ||
               tag == TAG_DIFF || tag == TAG_DSMC || tag == TAG_DISC) {
      if (!t) { s = malformed(&r, "state before the config section"); goto done; }
      const int diffusion_tag = tag == TAG_DSTU || tag == TAG_DTEA || tag == TAG_DIFF || tag == TAG_DSMC;
      const int discrete_tag = tag == TAG_STUD || tag == TAG_TEAC || tag == TAG_VIST || tag == TAG_GAFN ||
                               tag == TAG_DISC;
      if ((t->kind == TCHI_TRAINER_DIFFUSION && discrete_tag) ||
          (t->kind == TCHI_TRAINER_DISCRETE && diffusion_tag)) {
        s = tchi_fail(TCH_E_ARG, "'%s' was saved by a %s trainer; the env given is %s", path,
                      diffusion_tag ? "diffusion" : "discrete",
                      diffusion_tag ? "discrete" : "an energy env");
        goto done;
      }
      if (tag == TAG_DSTU) {
        if ((s = read_dlearner(&r, &t->diff->student))) goto done;
        seen_dstu = 1;
      } else if (tag == TAG_DTEA) {
        if (!t->diff->teacher.net) { s = malformed(&r, "Teacher state but teacher.enabled is false"); goto done; }
        if ((s = read_dlearner(&r, &t->diff->teacher))) goto done;
        seen_dtea = 1;
      } else if (tag == TAG_DSMC) {
        if (!t->diff->smc) { s = malformed(&r, "SMC state but smc.enabled is false"); goto done; }
        if ((s = read_dsmc(&r, t->diff->smc, end))) goto done;
        seen_dsmc = 1;
      } else if (tag == TAG_DIFF) {
        if ((s = read_diff(&r, t->diff))) goto done;
        seen_diff = 1;
      } else if (tag == TAG_STAT) {
        uint32_t src;
        if ((s = tchi_get_u64(&r, &t->step)) || (s = tchi_get_u64(&r, &t->reward_calls)) ||
            (s = tchi_get_u64(&r, &t->grad_steps)) || (s = tchi_get_u32(&r, &src)) ||
            (s = tchi_get_f64(&r, &t->eval_l1)) || (s = tchi_get_f64(&r, &t->eval_modes)))
          goto done;
        t->last_source = (int)(int32_t)src;
        seen_stat = 1;
      } else if (tag == TAG_STUD) {
        if ((s = read_learner(&r, &t->student))) goto done;
        seen_stud = 1;
      } else if (tag == TAG_TEAC) {
        if (!t->teacher.policy) { s = malformed(&r, "Teacher state but teacher.enabled is false"); goto done; }
        if ((s = read_learner(&r, &t->teacher))) goto done;
        seen_teac = 1;
      } else if (tag == TAG_GAFN) {
        uint64_t np;
        if (!t->gafn) { s = malformed(&r, "GAFN state but gafn.enabled is false"); goto done; }
        if ((s = tchi_get_u64(&r, &np))) goto done;
        if (np != t->rnd.pred.n_params) { s = malformed(&r, "RND network size"); goto done; }
        if ((s = tchi_get(&r, t->rnd.target.params, np * sizeof(float))) ||
            (s = tchi_get(&r, t->rnd.pred.params, np * sizeof(float))))
          goto done;
        seen_gafn = 1;
      } else if (tag == TAG_DISC) {
        if (!tchi_trainer_has_discovery_state(t)) {
          s = malformed(&r, "discovery state but this trainer keeps none");
          goto done;
        }
        if ((s = tchi_trainer_read_discovery(&r, t))) goto done;
        seen_disc = 1;
      } else if (tag == TAG_BUFF) {
        if (!t->buffer) { s = malformed(&r, "buffer state but buffer.enabled is false"); goto done; }
        tch_buffer *b;
        if ((s = tchi_buffer_read(&r, &b))) goto done;
        if (b->record_dim != t->buffer->record_dim) {
          tch_buffer_free(b);
          s = malformed(&r, "replay buffer records do not match the env");
          goto done;
        }
        tch_buffer_free(t->buffer);
        t->buffer = b;
        seen_buff = 1;
      } else {
        if ((s = read_visits(&r, t))) goto done;
        seen_vist = 1;
      }
      if (r.pos != end) { s = malformed(&r, "section length"); goto done; }
    }
    r.pos = end;   /* unknown sections are skipped */
  }
  int complete = t && seen_stat && (!t->buffer || seen_buff);
  if (complete && t->kind == TCHI_TRAINER_DIFFUSION)
    complete = seen_dstu && seen_diff && (!t->diff->teacher.net || seen_dtea) &&
               (!t->diff->smc || seen_dsmc);
  else if (complete)
    complete = seen_stud && (!t->teacher.policy || seen_teac) && (!t->env->exact || seen_vist) &&
               (!t->gafn || seen_gafn) && (!tchi_trainer_has_discovery_state(t) || seen_disc);
  if (!complete) {
    s = malformed(&r, "a required section is missing");
    goto done;
  }
  *out = t;
  t = NULL;
done:
  tchi_trainer_release(t);
  tch_config_free(cfg);
  tchi_reader_close(&r);
  return s;
}
