/* Teacher and SMC together (lib/trainer/dsmc.c with teacher.enabled and smc.teacher_every):
 * config validation, the schedule (on-policy / Teacher / SMC + buffer) with exact energy
 * counts against a counting host density, the Teacher samples' log importance weights
 * against independent computations, smc.init_log_z, bit-identical resume, callback errors
 * and NaN energies during Teacher iterations leaving the trainer unchanged, degenerate
 * Teacher batches, allocation failures, no allocation once warm, checkpoint versions, and an
 * end-to-end run. Tiny size: GMM40-2D, N 64, T 16, K 4, width 32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../tch_check.h"
#include "core/core.h"
#include "envs/env.h"
#include "trainer/trainer.h"
#include "teacher.h"
#include "trainer_fixtures.h"

#define NP 64
#define TS 16
#define KC 4
#define SIGMA 20.0

/* ---- a counting host density wrapping GMM40-2D ------------------------------------------------
 * Calls are numbered from 0. fail_at >= 0: the call that reaches that many points returns
 * code 7 (TCH_E_CALLBACK); nan_at likewise writes a NaN. shift_call: that call's log R are
 * shifted by shift (a Teacher batch far below the buffer's floor, an unreachable threshold). */
typedef struct host {
  tch_env *gmm;
  uint64_t points, calls;
  int64_t fail_at, nan_at, shift_call;
  double shift;
} host;

static int host_density(void *user, size_t n, size_t dim, const double *x, double *lp, double *g)
{
  host *h = user;
  int rc = tchi_gmm40_log_density(h->gmm->en.user, n, dim, x, lp, g);
  const int64_t call = (int64_t)h->calls++;
  if (h->shift_call == call)
    for (size_t i = 0; i < n; i++) lp[i] += h->shift;
  int hit_fail = h->fail_at >= 0 && h->points + n > (uint64_t)h->fail_at;
  if (h->nan_at >= 0 && h->points + n > (uint64_t)h->nan_at) lp[0] = NAN;
  h->points += n;
  return hit_fail ? 7 : rc;
}

static tch_config *env_cfg(void)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", TS), TCH_OK);
  return c;
}

static tch_env *gmm40_env(void)
{
  tch_config *c = env_cfg();
  tch_env *e;
  ck_assert_int_eq(tch_env_create_gmm40(2, c, &e), TCH_OK);
  tch_config_free(c);
  return e;
}

static tch_env *host_env(host *h)
{
  memset(h, 0, sizeof *h);
  h->gmm = gmm40_env();
  h->fail_at = h->nan_at = h->shift_call = -1;
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = 2;
  d.flags = TCH_ENERGY_HAS_GRAD;
  d.log_density = host_density;
  d.log_Z = 0.0;
  d.user = h;
  tch_config *c = env_cfg();
  tch_env *e;
  ck_assert_int_eq(tch_env_create_energy(&d, c, &e), TCH_OK);
  tch_config_free(c);
  return e;
}

static void host_free(host *h, tch_env *e)
{
  tch_env_free(e);
  tch_env_free(h->gmm);
}

/* Tiny Teacher + RSMC settings (smc_buffer, r = 2, Teacher every other replay iteration:
 * on-policy, Teacher, SMC + buffer, ...), then key/value pairs (NULL-terminated). */
static tch_config *small_cfg(const char *const *sets)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  static const char *const base[] = {
    "seed", "3", "nn.hidden_dim", "32", "train.batch_size", "64", "train.steps", "40",
    "smc.enabled", "true", "smc.method", "smc_buffer", "smc.n_chunks", "4",
    "smc.prefill_batches", "3", "smc.buffer_batches", "5", "smc.flow_hidden", "32",
    "smc.init_std", "20", "teacher.enabled", "true", "smc.teacher_every", "2", NULL};
  for (const char *const *s = base; *s; s += 2)
    ck_assert_int_eq(tch_config_set_from_string(c, s[0], s[1]), TCH_OK);
  for (; sets && *sets; sets += 2)
    ck_assert_msg(tch_config_set_from_string(c, sets[0], sets[1]) == TCH_OK, "%s=%s: %s", sets[0],
                  sets[1], tch_last_error());
  return c;
}

static tch_trainer *make(tch_env *e, const char *const *sets)
{
  tch_config *c = small_cfg(sets);
  tch_trainer *t;
  ck_assert_msg(tch_trainer_create(e, c, &t) == TCH_OK, "%s", tch_last_error());
  tch_config_free(c);
  return t;
}

/* ---- whole-state comparison ---------------------------------------------------------------- */
static void assert_same_net(const tchi_dlearner *x, const tchi_dlearner *y)
{
  const tchi_dnet *p = x->net, *q = y->net;
  ck_assert(p->n_params == q->n_params && memcmp(p->params, q->params, p->n_params * sizeof(float)) == 0);
  ck_assert(memcmp(&p->log_z, &q->log_z, sizeof(double)) == 0);
  ck_assert(same_adam(&x->opt, &y->opt));
}

static void assert_same_state(const tch_trainer *a, const tch_trainer *b)
{
  const tchi_dtrainer *x = a->diff, *y = b->diff;
  assert_same_net(&x->student, &y->student);
  assert_same_net(&x->teacher, &y->teacher);
  ck_assert_int_eq(x->threshold_set, y->threshold_set);
  ck_assert(memcmp(&x->threshold, &y->threshold, sizeof(double)) == 0);
  ck_assert_uint_eq(x->skipped_teacher_batch, y->skipped_teacher_batch);
  ck_assert_uint_eq(x->skipped_teacher_update, y->skipped_teacher_update);
  const tchi_dsmc *m = x->smc, *n = y->smc;
  ck_assert_int_eq(m->flow != NULL, n->flow != NULL);
  if (m->flow) {
    const tchi_dflow *f = m->flow, *g = n->flow;
    ck_assert(memcmp(f->time.params, g->time.params, f->time.n_params * sizeof(float)) == 0);
    ck_assert(memcmp(f->body.params, g->body.params, f->body.n_params * sizeof(float)) == 0);
    ck_assert(memcmp(f->beta_logit, g->beta_logit, f->spec.T * sizeof(double)) == 0);
    ck_assert(same_adam(&m->flow_opt, &n->flow_opt));
  }
  ck_assert_int_eq(m->buf != NULL, n->buf != NULL);
  if (m->buf) {
    const tchi_iwbuf *u = m->buf, *v = n->buf;
    ck_assert_uint_eq(u->n, v->n);
    ck_assert_uint_eq(u->head, v->head);
    ck_assert_uint_eq(u->n_added, v->n_added);
    ck_assert(memcmp(u->x, v->x, u->n * u->prm.dim * sizeof(double)) == 0);
    ck_assert(memcmp(u->log_r, v->log_r, u->n * sizeof(double)) == 0);
    ck_assert(memcmp(u->log_iw, v->log_iw, u->n * sizeof(double)) == 0);
    ck_assert(memcmp(u->prio, v->prio, u->n * sizeof(double)) == 0);
  }
  ck_assert_int_eq(m->prefilled, n->prefilled);
  ck_assert_uint_eq(m->sweeps, n->sweeps);
  ck_assert_uint_eq(m->teacher_batches, n->teacher_batches);
  ck_assert_uint_eq(a->step, b->step);
  ck_assert_uint_eq(a->reward_calls, b->reward_calls);
  ck_assert_uint_eq(a->grad_steps, b->grad_steps);
  const char *names[] = {"loss.student", "grad_norm.student", "loss.teacher", "logz.teacher",
                         "grad_norm.teacher", "teacher.kept", "teacher.added", "threshold",
                         "smc.loss.tb", "smc.loss.subtb", "smc.log_z_hat", "smc.ess",
                         "smc.teacher.batches", "smc.teacher.log_iw", "smc.teacher.log_z_hat",
                         "smc.buffer.ess", "buffer.size", "source", "skipped", NULL};
  for (int i = 0; names[i]; i++) {
    double va = metric(a, names[i]), vb = metric(b, names[i]);
    ck_assert_msg(memcmp(&va, &vb, sizeof va) == 0, "%s: %g vs %g", names[i], va, vb);
  }
}

/* ---- config validation ------------------------------------------------------------------------ */
static void expect_reject(tch_env *e, const char *const *sets, const char *key)
{
  tch_config *c = small_cfg(sets);
  tch_trainer *t = (tch_trainer *)c;
  ck_assert_int_eq(tch_trainer_create(e, c, &t), TCH_E_CONFIG);
  ck_assert_ptr_null(t);
  ck_assert_msg(strstr(tch_last_error(), key) != NULL, "expected '%s' in: %s", key, tch_last_error());
  tch_config_free(c);
}

START_TEST(config_errors)
{
  tch_env *e = gmm40_env();
  static const char *const a[] = {"smc.teacher_every", "0", NULL};
  static const char *const b[] = {"teacher.enabled", "false", NULL};
  static const char *const c[] = {"smc.method", "tb", NULL};
  static const char *const d[] = {"diffusion.adv_freq", "3", NULL};
  static const char *const f[] = {"smc.init_log_z", "iw_elbo", "student.logz_init", "1", NULL};
  static const char *const g[] = {"smc.init_log_z", "upper", NULL};
  expect_reject(e, a, "teacher.enabled");
  expect_reject(e, b, "smc.teacher_every");
  expect_reject(e, c, "smc.method");
  expect_reject(e, d, "diffusion.adv_freq");
  expect_reject(e, f, "student.logz_init");
  /* an unknown choice of an ENUM key fails in the config already */
  tch_config *cf;
  ck_assert_int_eq(tch_config_create(&cf), TCH_OK);
  ck_assert_int_ne(tch_config_set_from_string(cf, g[0], g[1]), TCH_OK);
  tch_config_free(cf);
  /* the accepted combinations: the Teacher is a second OU-DDS PIS net of the Student's
   * shape, and there is no Teacher-paper buffer beside the IW buffer */
  static const char *const ok[][5] = {{"smc.method", "smc_buffer", NULL},
                                      {"smc.method", "smc", NULL},
                                      {"smc.method", "tb_buffer", "smc.teacher_every", "1", NULL}};
  for (int i = 0; i < 3; i++) {
    tch_trainer *t = make(e, ok[i]);
    const tchi_dnet *s = t->diff->student.net, *tn = t->diff->teacher.net;
    ck_assert_ptr_nonnull(tn);
    ck_assert_int_eq(tn->spec.reference, TCHI_DREF_OU_DDS);
    ck_assert_int_eq(tn->spec.pis, 1);
    ck_assert_double_eq(tn->spec.init_std, SIGMA);
    ck_assert_uint_eq(tn->n_params, s->n_params);
    ck_assert_ptr_null(t->buffer);
    ck_assert(isnan(metric(t, "smc.teacher.log_iw")));
    ck_assert_double_eq(metric(t, "smc.teacher.batches"), 0.0);
    tch_trainer_free(t);
  }
  /* without a Teacher its metrics are NaN */
  static const char *const none[] = {"teacher.enabled", "false", "smc.teacher_every", "0", NULL};
  tch_trainer *t = make(e, none);
  ck_assert(isnan(metric(t, "smc.teacher.batches")) && isnan(metric(t, "loss.teacher")));
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- the schedule and the energy counts ---------------------------------------------------------- */
/* Runs 10 steps and checks, step by step, the source, the points the host evaluated against
 * reward_calls, the buffer size, the SMC sweep and Teacher batch counts and the Teacher's
 * updates. every: smc.teacher_every (r = 2). */
static void check_schedule(const char *method, const char *every)
{
  host h;
  tch_env *e = host_env(&h);
  const char *sets[] = {"smc.method", method, "smc.teacher_every", every, NULL};
  tch_trainer *t = make(e, sets);
  const int smc = !strncmp(method, "smc", 3), buffered = strstr(method, "buffer") != NULL;
  const uint64_t k = (uint64_t)atoi(every), cap = 5 * NP, prefill = 3;
  uint64_t expect_calls = 0, expect_buf = 0, sweeps = buffered && smc ? prefill : 0, tb = 0, q = 0;
  for (uint64_t it = 0; it < 10; it++) {
    uint64_t before = h.points;
    run(t, 1);
    const int on = it % 3 == 0, teach = !on && q % k == 0;
    if (!on) q++;
    uint64_t calls = 0;
    if (it == 0) {
      calls += NP;   /* the Teacher's threshold: diffusion.threshold_samples = batch */
      if (buffered) {
        calls += prefill * (smc ? (uint64_t)NP * KC : NP);
        expect_buf += prefill * NP;
      }
    }
    const uint64_t interior = smc ? (uint64_t)NP * (KC - 1) : 0;
    if (on || teach) {
      calls += NP + interior;            /* terminals (Student's or Teacher's) + loss */
      if (buffered) expect_buf += NP;
    } else if (smc) {
      calls += (uint64_t)NP * KC + interior;   /* sweep + loss */
      sweeps++;
      if (buffered) expect_buf += NP;
    }
    if (teach) tb++;
    if (expect_buf > cap) expect_buf = cap;
    expect_calls += calls;
    ck_assert_msg(h.points - before == calls, "%s/%s it %llu: host saw %llu points, expected %llu",
                  method, every, (unsigned long long)it, (unsigned long long)(h.points - before),
                  (unsigned long long)calls);
    ck_assert_uint_eq(t->reward_calls, expect_calls);
    ck_assert_double_eq(metric(t, "source"), on ? 0.0 : teach ? 1.0 : 2.0);
    ck_assert_double_eq(metric(t, "smc.teacher.batches"), (double)tb);
    ck_assert_uint_eq(t->diff->smc->sweeps, sweeps);
    if (buffered) ck_assert_double_eq(metric(t, "buffer.size"), (double)expect_buf);
    ck_assert(isfinite(metric(t, "loss.student")) && isfinite(metric(t, "smc.loss.tb")));
    ck_assert(isfinite(metric(t, "threshold")));
    /* the Teacher trains on every batch with a sample above the threshold */
    double kept = metric(t, "teacher.kept");
    ck_assert(kept >= 0.0 && kept <= NP);
    ck_assert_int_eq(isfinite(metric(t, "loss.teacher")), kept > 0.0);
    if (tb) {
      double mean = metric(t, "smc.teacher.log_iw"), lme = metric(t, "smc.teacher.log_z_hat");
      ck_assert(isfinite(mean) && isfinite(lme) && mean <= lme + 1e-12);
    } else {
      ck_assert(isnan(metric(t, "smc.teacher.log_iw")));
    }
  }
  ck_assert_uint_eq(t->diff->teacher.opt.t, 10 - t->diff->skipped_teacher_update);
  ck_assert_uint_gt(t->diff->teacher.opt.t, 0);
  tch_trainer_free(t);
  host_free(&h, e);
}

START_TEST(schedule_smc_buffer) { check_schedule("smc_buffer", "2"); }
END_TEST
START_TEST(schedule_others)
{
  check_schedule("smc_buffer", "1");   /* every replay iteration from the Teacher: no sweeps */
  check_schedule("smc", "2");
  check_schedule("tb_buffer", "1");
}
END_TEST

/* ---- the Teacher samples' log importance weights ------------------------------------------------ */
static double log_normal(const double *x, double sigma)
{
  double q = 0.0;
  for (int j = 0; j < 2; j++) q += x[j] * x[j];
  return -0.5 * q / (sigma * sigma) - 2.0 * log(sigma) - 0.5 * 2.0 * TCHI_LOG_2PI;
}

/* The newest n buffer entries (FIFO order) into x, log_r, log_iw. */
static void newest(const tchi_iwbuf *b, size_t n, double *x, double *log_r, double *log_iw)
{
  for (size_t i = 0; i < n; i++)
    tchi_iwbuf_get(b, tchi_iwbuf_slot(b, b->n - n + i), x + 2 * i, log_r + i, log_iw + i, NULL);
}

static double lme(size_t n, const double *v)
{
  double m = -INFINITY, s = 0.0;
  for (size_t i = 0; i < n; i++) m = v[i] > m ? v[i] : m;
  for (size_t i = 0; i < n; i++) s += exp(v[i] - m);
  return m + log(s / (double)n);
}

/* A Teacher that never moves (learning rates 0) is the initial OU-DDS process, with drift
 * u = 0 (zero-initialised last layer): its forward process is the exact time reversal of
 * p_B, so along every path log p_B - log p_0 - log q = -log N(x_T; 0, sigma^2 I), and the
 * log-IW of a Teacher sample is log R(x) - log N(x; 0, sigma^2 I) whatever the path. At
 * step 1 (a Teacher iteration) the buffer's newest NP entries are the Teacher's samples. */
START_TEST(teacher_log_iw_at_initialisation)
{
  tch_env *e = gmm40_env();
  static const char *const s[] = {"teacher.lr", "0", "teacher.lr_logz", "0", NULL};
  tch_trainer *t = make(e, s);
  run(t, 2);
  ck_assert_double_eq(metric(t, "source"), 1.0);
  double x[NP * 2], lr[NP], lw[NP], expect[NP], ref_lr[NP];
  newest(t->diff->smc->buf, NP, x, lr, lw);
  ck_assert_int_eq(tchi_gmm40_log_density(e->en.user, NP, 2, x, ref_lr, NULL), 0);
  double sum = 0.0;
  for (int i = 0; i < NP; i++) {
    ck_assert(memcmp(&lr[i], &ref_lr[i], sizeof(double)) == 0);
    expect[i] = ref_lr[i] - log_normal(x + 2 * i, SIGMA);
    ck_assert_msg(fabs(lw[i] - expect[i]) < 1e-9 * (1.0 + fabs(expect[i])), "sample %d: %.15g vs %.15g",
                  i, lw[i], expect[i]);
    sum += expect[i];
  }
  ck_assert_double_eq_tol(metric(t, "smc.teacher.log_iw"), sum / NP, 1e-9);
  ck_assert_double_eq_tol(metric(t, "smc.teacher.log_z_hat"), lme(NP, expect), 1e-9);
  /* the scale: an importance-sampling estimate of log Z = 0 from 64 draws of the broad
   * prior N(0, 20^2 I) over the 40 modes, and the ELBO below it */
  ck_assert_msg(fabs(metric(t, "smc.teacher.log_z_hat")) < 2.0, "log Z-hat %g",
                metric(t, "smc.teacher.log_z_hat"));
  ck_assert(metric(t, "smc.teacher.log_iw") < metric(t, "smc.teacher.log_z_hat"));
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* A trained Teacher: before a Teacher iteration, a clone of its net redraws the batch from
 * the same stream; log p_0 + sum log q is rescored by the net (tchi_dnet_log_pf, batched, not
 * the sampler's running sum), log p_B by the OU-DDS formula written out here, log R by the
 * built-in density. The buffer's newest entries must carry log R + log p_B - log p_0 - log q. */
START_TEST(teacher_log_iw_independent)
{
  tch_env *e = gmm40_env();
  tch_trainer *t = make(e, NULL);
  run(t, 7);                   /* steps 0..6; step 7 (q = 4) is a Teacher iteration */
  ck_assert_double_eq(metric(t, "smc.teacher.batches"), 2.0);
  tchi_dnet *clone;
  ck_assert_int_eq(tchi_dnet_clone(t->diff->teacher.net, &clone), TCH_OK);
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_TEACHER, TCHI_DSUB_MAIN, 7);
  tchi_dtraj tr;
  tchi_dtraj_init(&tr);
  ck_assert_int_eq(tchi_dsample_forward(clone, NULL, &rng, NP, 0.0, &tr), TCH_OK);
  double lpf[NP], xt[NP * 2], lr[NP], expect[NP];
  ck_assert_int_eq(tchi_dnet_log_pf(clone, &tr, 3, lpf), TCH_OK);
  tchi_dtraj_terminals(&tr, xt);
  ck_assert_int_eq(tchi_gmm40_log_density(e->en.user, NP, 2, xt, lr, NULL), 0);
  double c[TS + 1], csum = 0.0;
  for (int k = 0; k <= TS; k++) {
    double y = cos(((double)k / TS + 0.008) / 1.008 * 3.14159265358979323846 / 2.0);
    c[k] = y * y * y * y;
    csum += c[k];
  }
  for (int i = 0; i < NP; i++) {
    double lpb = 0.0;
    for (int k = 0; k < TS; k++) {
      double a = fmin(1.0, fmax(0.0, 6.0 * c[k] / csum)), sh = sqrt(1.0 - a), var = a * SIGMA * SIGMA;
      const double *sk = tchi_dtraj_state(&tr, i, k), *sn = tchi_dtraj_state(&tr, i, k + 1);
      for (int j = 0; j < 2; j++) {
        double dlt = sk[j] - sh * sn[j];
        lpb += -0.5 * dlt * dlt / var - 0.5 * log(var) - 0.5 * TCHI_LOG_2PI;
      }
    }
    /* float32 networks evaluated on other row blocks: agreement to float rounding */
    ck_assert_double_eq_tol(lpf[i], tr.log_pf[i], 1e-6 * (1.0 + fabs(lpf[i])));
    expect[i] = lr[i] + lpb - lpf[i];
  }
  run(t, 1);
  ck_assert_double_eq(metric(t, "source"), 1.0);
  double x[NP * 2], blr[NP], lw[NP];
  newest(t->diff->smc->buf, NP, x, blr, lw);
  double sum = 0.0;
  for (int i = 0; i < NP; i++) {
    ck_assert(memcmp(x + 2 * i, xt + 2 * i, 2 * sizeof(double)) == 0);
    ck_assert_msg(fabs(lw[i] - expect[i]) < 1e-6 * (1.0 + fabs(expect[i])), "sample %d: %.15g vs %.15g",
                  i, lw[i], expect[i]);
    sum += lw[i];
  }
  ck_assert_double_eq_tol(metric(t, "smc.teacher.log_iw"), sum / NP, 1e-12 * (1.0 + fabs(sum)));
  tchi_dtraj_destroy(&tr);
  tchi_dnet_free(clone);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- smc.init_log_z ----------------------------------------------------------------------------- */
/* With student.lr_logz 0 the log Z set at step 0 stays: it must be the mean / log-mean-exp
 * of the log-IWs of the initial Student's batch on the stream STUDENT / INIT_LOG_Z / 0. */
static void check_init_log_z(const char *mode)
{
  host h;
  tch_env *e = host_env(&h);
  const char *s[] = {"smc.init_log_z", mode, "student.lr_logz", "0", NULL};
  tch_trainer *t = make(e, s);
  tchi_dnet *clone;
  ck_assert_int_eq(tchi_dnet_clone(t->diff->student.net, &clone), TCH_OK);
  tchi_rng rng;
  tchi_dseed(&rng, t, TCHI_STREAM_STUDENT, TCHI_DSUB_INIT_LOG_Z, 0);
  tchi_dtraj tr;
  tchi_dtraj_init(&tr);
  ck_assert_int_eq(tchi_dsample_forward(clone, NULL, &rng, NP, 0.0, &tr), TCH_OK);
  double xt[NP * 2], lw[NP], sum = 0.0;
  tchi_dtraj_terminals(&tr, xt);
  ck_assert_int_eq(tchi_gmm40_log_density(h.gmm->en.user, NP, 2, xt, lw, NULL), 0);
  for (int i = 0; i < NP; i++) {
    lw[i] += tr.log_pb[i] - tr.log_pf[i];
    sum += lw[i];
  }
  const double expect = !strcmp(mode, "elbo") ? sum / NP : lme(NP, lw);
  run(t, 1);
  ck_assert_double_eq_tol(metric(t, "logz.student"), expect, 1e-9);
  if (!strcmp(mode, "elbo")) ck_assert(expect < lme(NP, lw));   /* below the IS estimate */
  else ck_assert_msg(fabs(expect) < 3.0, "iw_elbo %g", expect);  /* near log Z = 0 */
  /* NP more energy points than the same run with float */
  ck_assert_uint_eq(t->reward_calls, h.points);
  host h2;
  tch_env *e2 = host_env(&h2);
  const char *s2[] = {"student.lr_logz", "0", NULL};
  tch_trainer *f = make(e2, s2);
  run(f, 1);
  ck_assert_uint_eq(t->reward_calls, f->reward_calls + NP);
  ck_assert_double_eq(metric(f, "logz.student"), 0.0);
  /* later steps do not set it again */
  run(t, 2);
  ck_assert_double_eq_tol(metric(t, "logz.student"), expect, 1e-9);
  tch_trainer_free(f);
  host_free(&h2, e2);
  tchi_dtraj_destroy(&tr);
  tchi_dnet_free(clone);
  tch_trainer_free(t);
  host_free(&h, e);
}

START_TEST(init_log_z)
{
  check_init_log_z("elbo");
  check_init_log_z("iw_elbo");
}
END_TEST

/* ---- resume ------------------------------------------------------------------------------------- */
static void check_resume(const char *const *sets)
{
  char dir[256], cmd[300], path[320];
  snprintf(dir, sizeof dir, "/tmp/tch_smc_teacher_%ld", (long)getpid());
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(path, sizeof path, "%s/run.tchk", dir);
  tch_env *e = gmm40_env();
  tch_trainer *a = make(e, sets), *b = make(e, sets), *c;
  run(a, 10);
  run(b, 5);
  ck_assert_msg(tch_trainer_save(b, path) == TCH_OK, "%s", tch_last_error());
  ck_assert_msg(tch_trainer_load(e, path, &c) == TCH_OK, "%s", tch_last_error());
  assert_same_state(b, c);
  run(c, 5);
  assert_same_state(a, c);
  /* evaluation does not perturb training */
  ck_assert_int_eq(tch_trainer_evaluate(b, 100), TCH_OK);
  run(b, 5);
  assert_same_state(a, b);
  tch_trainer_free(a);
  tch_trainer_free(b);
  tch_trainer_free(c);
  tch_env_free(e);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}

START_TEST(resume_is_bit_identical)
{
  static const char *const iw[] = {"smc.init_log_z", "iw_elbo", NULL};
  static const char *const loss[] = {"smc.method", "tb_buffer", "smc.buffer_priority", "loss",
                                     "smc.teacher_every", "1", NULL};
  static const char *const nobuf[] = {"smc.method", "smc", "smc.replay_ratio", "1", NULL};
  check_resume(iw);
  check_resume(loss);
  check_resume(nobuf);
}
END_TEST

/* A checkpoint whose Teacher block has another format is TCH_E_VERSION with a clear
 * message; a Teacher-less SMC checkpoint has no such block (the earlier layout). */
/* The last occurrence (the DSMC section, and its Teacher block, come last). */
static size_t find_tag(const unsigned char *b, size_t n, const char *tag)
{
  for (size_t i = n - 4; i-- > 0;)
    if (memcmp(b + i, tag, 4) == 0) return i;
  return (size_t)-1;
}

static unsigned char *slurp(const char *path, size_t *n)
{
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n);
  ck_assert_uint_eq(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

START_TEST(checkpoint_versions)
{
  char path[128];
  snprintf(path, sizeof path, "/tmp/tch_smc_teacher_v_%ld.tchk", (long)getpid());
  tch_env *e = gmm40_env();
  tch_trainer *a = make(e, NULL), *c = NULL;
  run(a, 2);
  ck_assert_int_eq(tch_trainer_save(a, path), TCH_OK);
  size_t n;
  unsigned char *b = slurp(path, &n);
  size_t at = find_tag(b, n, "DSMT");
  ck_assert_uint_ne(at, (size_t)-1);
  uint32_t fmt = 2, crc;
  memcpy(b + at + 4, &fmt, 4);
  crc = tchi_crc32(0, b, n - 4);
  memcpy(b + n - 4, &crc, 4);
  FILE *f = fopen(path, "wb");
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  fclose(f);
  free(b);
  c = (tch_trainer *)e;
  ck_assert_int_eq(tch_trainer_load(e, path, &c), TCH_E_VERSION);
  ck_assert_ptr_null(c);
  ck_assert_msg(strstr(tch_last_error(), "Teacher") && strstr(tch_last_error(), "format 2"), "%s",
                tch_last_error());
  /* without a Teacher: no block */
  static const char *const none[] = {"teacher.enabled", "false", "smc.teacher_every", "0", NULL};
  tch_trainer *p = make(e, none);
  run(p, 2);
  ck_assert_int_eq(tch_trainer_save(p, path), TCH_OK);
  b = slurp(path, &n);
  ck_assert_uint_eq(find_tag(b, n, "DSMT"), (size_t)-1);
  free(b);
  ck_assert_int_eq(tch_trainer_load(e, path, &c), TCH_OK);
  tch_trainer_free(c);
  tch_trainer_free(p);
  tch_trainer_free(a);
  unlink(path);
  tch_env_free(e);
}
END_TEST

/* ---- failures during Teacher iterations leave the trainer unchanged ------------------------------ */
/* At steps 0..4 (on-policy with the threshold and prefill; Teacher; SMC + buffer; on-policy;
 * Teacher), fail the host at a spread of points inside the step, as a callback error
 * (TCH_E_CALLBACK) or a NaN (TCH_E_NUMERIC): the trainer stays as it was, and the run then
 * continues exactly as one without the failures. */
static void check_failures(int callback)
{
  host h, hr;
  tch_env *e = host_env(&h), *er = host_env(&hr);
  static const char *const s[] = {"smc.init_log_z", "elbo", NULL};
  tch_trainer *t = make(e, s), *ref = make(er, s);
  for (uint64_t it = 0; it < 5; it++) {
    uint64_t before = hr.points;
    run(ref, 1);
    uint64_t pts = hr.points - before, stride = pts > 24 ? pts / 24 : 1;
    for (uint64_t k = 0; k < pts; k += stride) {
      if (callback) h.fail_at = (int64_t)(h.points + k);
      else h.nan_at = (int64_t)(h.points + k);
      tch_status st = tch_trainer_step(t, 1);
      h.fail_at = h.nan_at = -1;
      ck_assert_msg(st == (callback ? TCH_E_CALLBACK : TCH_E_NUMERIC), "it %llu k %llu: %d %s",
                    (unsigned long long)it, (unsigned long long)k, st, tch_last_error());
      if (callback) ck_assert_int_eq(tch_last_callback_code(), 7);
      ck_assert_uint_eq(t->step, it);
    }
    run(t, 1);
    assert_same_state(t, ref);
  }
  tch_trainer_free(t);
  tch_trainer_free(ref);
  host_free(&h, e);
  host_free(&hr, er);
}

START_TEST(callback_errors_roll_back) { check_failures(1); }
END_TEST
START_TEST(nan_energies_roll_back) { check_failures(0); }
END_TEST

/* ---- degenerate Teacher batches --------------------------------------------------------------------- */
START_TEST(degenerate_teacher_batches)
{
  /* (a) a Teacher batch the buffer drops entirely (log R 1e6 below the floor of -1e5): no
   * entry added, teacher.added 0, skipped.teacher_batch 1; no Teacher update on it (all
   * below the threshold); the Student still trains, and the run goes on. */
  host h;
  tch_env *e = host_env(&h);
  tch_trainer *t = make(e, NULL);
  run(t, 1);
  const double size = metric(t, "buffer.size");
  const tchi_adam teacher_before = t->diff->teacher.opt;
  h.shift_call = (int64_t)h.calls;   /* the Teacher batch is step 1's first energy call */
  h.shift = -1e6;
  run(t, 1);
  ck_assert_double_eq(metric(t, "source"), 1.0);
  ck_assert_double_eq(metric(t, "buffer.size"), size);
  ck_assert_double_eq(metric(t, "teacher.added"), 0.0);
  ck_assert_double_eq(metric(t, "skipped.teacher_batch"), 1.0);
  ck_assert_double_eq(metric(t, "teacher.kept"), 0.0);
  ck_assert_uint_eq(t->diff->teacher.opt.t, teacher_before.t);
  ck_assert_double_eq(metric(t, "skipped.teacher_update"), 1.0);
  ck_assert(isnan(metric(t, "loss.teacher")));
  ck_assert(isfinite(metric(t, "loss.student")));
  ck_assert(metric(t, "smc.teacher.log_iw") < -9e5);
  run(t, 4);
  ck_assert_double_eq(metric(t, "skipped.teacher_batch"), 1.0);
  ck_assert(isfinite(metric(t, "smc.teacher.log_iw")) && metric(t, "smc.teacher.log_iw") > -1e3);
  tch_trainer_free(t);
  host_free(&h, e);

  /* (b) an unreachable threshold (the threshold's samples shifted up by 1e4): the Teacher
   * never updates (its weights stay the initial ones, every update counted as skipped), its
   * batches still come on the schedule and still feed the Student and the buffer. */
  e = host_env(&h);
  h.shift_call = 0;   /* step 0's first call: the threshold's batch */
  h.shift = 1e4;
  t = make(e, NULL);
  tch_trainer *fresh = make(e, NULL);
  run(t, 9);
  ck_assert(metric(t, "threshold") > 9e3);
  ck_assert_double_eq(metric(t, "skipped.teacher_update"), 9.0);
  ck_assert_uint_eq(t->diff->teacher.opt.t, 0);
  ck_assert(memcmp(t->diff->teacher.net->params, fresh->diff->teacher.net->params,
                   fresh->diff->teacher.net->n_params * sizeof(float)) == 0);
  ck_assert_double_eq(metric(t, "smc.teacher.batches"), 3.0);
  ck_assert_double_eq(metric(t, "skipped.teacher_batch"), 0.0);
  ck_assert_uint_eq(t->diff->student.opt.t, 9);
  tch_trainer_free(fresh);
  tch_trainer_free(t);
  host_free(&h, e);
}
END_TEST

/* ---- allocation failures and warm iterations ------------------------------------------------------ */
START_TEST(allocation_failures_roll_back)
{
  static const char *const s[] = {"smc.prefill_batches", "2", "train.batch_size", "16",
                                  "smc.init_log_z", "iw_elbo", NULL};
  tch_env *e = gmm40_env();
  tch_trainer *ref = make(e, s);
  run(ref, 3);   /* on-policy, Teacher, SMC + buffer */
  int failures = 0;
  for (uint64_t k = 1; k < 100000; k++) {
    tch_trainer *t = make(e, s);
    tchi_alloc_fail_at(k);
    tch_status st = tch_trainer_step(t, 3);
    tchi_alloc_fail_at(0);
    int done = st == TCH_OK;
    if (!done) {
      ck_assert_msg(st == TCH_E_NOMEM, "k %llu: %s", (unsigned long long)k, tch_last_error());
      failures++;
      run(t, 3 - t->step);
    }
    assert_same_state(t, ref);
    tch_trainer_free(t);
    if (done) break;
  }
  ck_assert_int_ge(failures, 3);
  tch_trainer_free(ref);
  tch_config *c = small_cfg(s);
  for (uint64_t k = 1; k < 100000; k++) {
    tch_trainer *t = NULL;
    tchi_alloc_fail_at(k);
    tch_status st = tch_trainer_create(e, c, &t);
    tchi_alloc_fail_at(0);
    if (st == TCH_OK) {
      tch_trainer_free(t);
      break;
    }
    ck_assert_int_eq(st, TCH_E_NOMEM);
    ck_assert_ptr_null(t);
  }
  tch_config_free(c);
  tch_env_free(e);
}
END_TEST

START_TEST(warm_iterations_do_not_allocate)
{
  static const char *const m[][5] = {{"smc.method", "smc_buffer", NULL},
                                     {"smc.method", "tb_buffer", "smc.teacher_every", "1", NULL},
                                     {"smc.method", "smc", NULL}};
  tch_env *e = gmm40_env();
  for (int i = 0; i < 3; i++) {
    tch_trainer *t = make(e, m[i]);
    run(t, 6);
    uint64_t before = tchi_alloc_count();
    run(t, 6);
    ck_assert_msg(tchi_alloc_count() == before, "%s allocated %llu times", m[i][1],
                  (unsigned long long)(tchi_alloc_count() - before));
    tch_trainer_free(t);
  }
  tch_env_free(e);
}
END_TEST

/* ---- end to end -------------------------------------------------------------------------------------- */
/* 60 iterations of Teacher + SMC + IW buffer on GMM40-2D: the losses stay finite, the
 * Teacher trained on most iterations, its batches kept coming with finite weights, and the
 * evaluation (IS log Z, ELBO <= IS log Z, EUBO, W2) works and does not count as training. */
START_TEST(end_to_end)
{
  tch_env *e = gmm40_env();
  static const char *const s[] = {"smc.init_log_z", "iw_elbo", "smc.buffer_batches", "20", NULL};
  tch_trainer *t = make(e, s);
  for (int i = 0; i < 60; i++) {
    run(t, 1);
    ck_assert(isfinite(metric(t, "loss.student")) && isfinite(metric(t, "logz.student")));
    ck_assert(isfinite(metric(t, "logz.teacher")));
  }
  ck_assert_double_eq(metric(t, "smc.teacher.batches"), 20.0);
  ck_assert_uint_ge(t->diff->teacher.opt.t, 30);
  ck_assert(isfinite(metric(t, "smc.teacher.log_iw")));
  uint64_t calls = t->reward_calls;
  ck_assert_msg(tch_trainer_evaluate(t, 500) == TCH_OK, "%s", tch_last_error());
  ck_assert(isfinite(metric(t, "eval.log_z")) && metric(t, "eval.elbo") <= metric(t, "eval.log_z") + 1e-9);
  ck_assert(isfinite(metric(t, "eval.eubo")) && isfinite(metric(t, "eval.w2")));
  ck_assert_uint_eq(t->reward_calls, calls);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("smc_teacher");
  TCase *tc = tcase_create("smc_teacher");
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, config_errors);
  tcase_add_test(tc, schedule_smc_buffer);
  tcase_add_test(tc, schedule_others);
  tcase_add_test(tc, teacher_log_iw_at_initialisation);
  tcase_add_test(tc, teacher_log_iw_independent);
  tcase_add_test(tc, init_log_z);
  tcase_add_test(tc, resume_is_bit_identical);
  tcase_add_test(tc, checkpoint_versions);
  tcase_add_test(tc, callback_errors_roll_back);
  tcase_add_test(tc, nan_energies_roll_back);
  tcase_add_test(tc, degenerate_teacher_batches);
  tcase_add_test(tc, allocation_failures_roll_back);
  tcase_add_test(tc, warm_iterations_do_not_allocate);
  tcase_add_test(tc, end_to_end);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
