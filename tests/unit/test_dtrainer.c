/* The diffusion trainer (lib/trainer/dtrainer.c): the three modes and local search learn,
 * host callback failures stop a step and roll it back, empty and degenerate batches are
 * skipped and counted, checkpoints resume bit-identically, runs are deterministic, the -1
 * config defaults resolve per domain, and a warm iteration does not allocate. Small sizes
 * (hidden 32, T 10, batch 64) keep it to seconds. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "../tch_check.h"
#include "core/core.h"
#include "envs/env.h"
#include "trainer/trainer.h"
#include "buffers/buffer.h"
#include "teacher.h"
#include "trainer_fixtures.h"

/* ---- helpers --------------------------------------------------------------------------- */
static tch_env *gmm_env(uint32_t steps)
{
  tch_config *c;
  tch_env *e;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", steps), TCH_OK);
  ck_assert_int_eq(tch_env_create_gmm25(c, &e), TCH_OK);
  tch_config_free(c);
  return e;
}

/* Small sampler, then key/value pairs (NULL-terminated). */
static tch_config *small_cfg(const char *const *sets)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  static const char *const base[] = {"seed", "7", "nn.hidden_dim", "32", "train.batch_size", "64",
                                     "train.steps", "200", NULL};
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

static int same_net(const tchi_dnet *a, const tchi_dnet *b)
{
  return a->n_params == b->n_params &&
         memcmp(a->params, b->params, a->n_params * sizeof(float)) == 0 &&
         memcmp(&a->log_z, &b->log_z, sizeof a->log_z) == 0;
}

/* Whole training state equal bit for bit: nets, moments, buffer, counters. */
static void assert_same_state(const tch_trainer *a, const tch_trainer *b)
{
  const tchi_dtrainer *x = a->diff, *y = b->diff;
  ck_assert(same_net(x->student.net, y->student.net));
  ck_assert(same_adam(&x->student.opt, &y->student.opt));
  ck_assert_int_eq(x->teacher.net != NULL, y->teacher.net != NULL);
  if (x->teacher.net) {
    ck_assert(same_net(x->teacher.net, y->teacher.net));
    ck_assert(same_adam(&x->teacher.opt, &y->teacher.opt));
  }
  ck_assert_uint_eq(a->step, b->step);
  ck_assert_uint_eq(a->reward_calls, b->reward_calls);
  ck_assert_uint_eq(a->grad_steps, b->grad_steps);
  ck_assert(memcmp(&x->threshold, &y->threshold, sizeof(double)) == 0);
  ck_assert_int_eq(a->buffer != NULL, b->buffer != NULL);
  if (a->buffer) {
    ck_assert_uint_eq(a->buffer->n, b->buffer->n);
    const size_t rd = a->buffer->record_dim;
    int32_t *ra = malloc(rd * sizeof(int32_t)), *rb = malloc(rd * sizeof(int32_t));
    for (size_t i = 0; i < a->buffer->n; i++) {
      double la, lb, pa, pb;
      tchi_buffer_get(a->buffer, i, ra, &la, &pa);
      tchi_buffer_get(b->buffer, i, rb, &lb, &pb);
      ck_assert(memcmp(ra, rb, rd * sizeof(int32_t)) == 0 && la == lb && pa == pb);
    }
    free(ra);
    free(rb);
  }
  const char *m[] = {"loss.student", "loss.teacher", "skipped", "teacher.kept", "ls.added", NULL};
  for (int i = 0; m[i]; i++) {
    double va = metric(a, m[i]), vb = metric(b, m[i]);
    ck_assert_msg(memcmp(&va, &vb, sizeof va) == 0, "%s: %g vs %g", m[i], va, vb);
  }
}

static double mean_loss(tch_trainer *t, int steps, int only_even)
{
  double sum = 0.0;
  int n = 0;
  for (int i = 0; i < steps; i++) {
    int even = metric(t, "step") == floor(metric(t, "step") / 2) * 2;
    run(t, 1);
    if (only_even && !even) continue;
    sum += metric(t, "loss.student");
    n++;
  }
  return sum / n;
}


/* ---- the modes learn --------------------------------------------------------------------- */
static void check_learns(const char *const *sets, int only_even)
{
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, sets);
  double first = mean_loss(t, 10, only_even);
  run(t, 40);
  double last = mean_loss(t, 10, only_even);
  ck_assert_msg(isfinite(first) && isfinite(last) && last < 0.5 * first,
                "loss %g -> %g did not halve", first, last);
  ck_assert(isfinite(metric(t, "threshold")));
  ck_assert(metric(t, "logz.student") != 0.0);
  tch_trainer_free(t);
  tch_env_free(e);
}

START_TEST(on_policy_learns)
{
  check_learns(NULL, 0);
}
END_TEST

START_TEST(per_learns)
{
  static const char *const s[] = {"buffer.enabled", "true", NULL};
  check_learns(s, 1);
}
END_TEST

START_TEST(per_ls_learns)
{
  static const char *const s[] = {"buffer.enabled", "true", "local_search.enabled", "true",
                                  "diffusion.ls_every", "10", "diffusion.mala.max_iter", "20",
                                  "diffusion.mala.burn_in", "10", NULL};
  check_learns(s, 1);
  /* local search ran and fed the buffer, scored by log R */
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s);
  run(t, 1);
  ck_assert_double_gt(metric(t, "ls.added"), 0);
  ck_assert_double_eq(metric(t, "buffer.size"), 64 + metric(t, "ls.added"));
  ck_assert(metric(t, "ls.accept_rate") >= 0 && metric(t, "ls.accept_rate") <= 1);
  /* 64 on-policy calls + 64 chains x (20 + 1) + the threshold's 64 samples */
  ck_assert_double_eq(metric(t, "reward_calls"), 64 + 64 * 21 + 64);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

START_TEST(teacher_learns)
{
  static const char *const s[] = {"teacher.enabled", "true", NULL};
  check_learns(s, 1);
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s);
  run(t, 8);
  ck_assert(isfinite(metric(t, "loss.teacher")));
  ck_assert(metric(t, "logz.teacher") != 0.0);
  ck_assert(isfinite(metric(t, "teacher.added")));
  ck_assert_double_eq(metric(t, "grad_steps"), 8);
  ck_assert_double_eq(metric(t, "skipped"), 0);
  /* it = 0: 64 samples (+ 64 for the threshold); it = 1, 5: 64 Teacher samples; the
   * buffer replays need no call. */
  ck_assert_double_eq(metric(t, "reward_calls"), 64 + 4 * 64 + 2 * 64);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

START_TEST(teacher_els_runs)
{
  static const char *const s[] = {"teacher.enabled", "true", "local_search.enabled", "true",
                                  "diffusion.ls_every", "4", "diffusion.mala.max_iter", "20",
                                  "diffusion.mala.burn_in", "10", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s);
  run(t, 9);
  ck_assert_double_gt(metric(t, "ls.added"), 0);
  ck_assert(isfinite(metric(t, "loss.teacher")));
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- host callbacks that fail ----------------------------------------------------------- */
typedef struct host {
  int mode;          /* 0 ok, 1 NaN, 2 return code 7 */
  long calls;
  long grad_ok;      /* >= 0: calls with a gradient that succeed before one returns 9 */
} host;

static int host_density(void *user, size_t n, size_t dim, const double *x, double *lp, double *g)
{
  host *h = user;
  h->calls++;
  if (g && h->grad_ok >= 0 && h->grad_ok-- == 0) return 9;
  int rc = tchi_gmm25_log_density(NULL, n, dim, x, lp, g);
  if (h->mode == 1) lp[n / 2] = NAN;
  if (h->mode == 2) {
    tch_set_callback_error("host says no");
    return 7;
  }
  return rc;
}

static tch_env *host_env(host *h)
{
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = 2;
  d.flags = TCH_ENERGY_HAS_GRAD;
  d.log_density = host_density;
  d.log_Z = 0.0;
  d.user = h;
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.diffusion.steps", 10), TCH_OK);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_energy(&d, c, &e), TCH_OK);
  tch_config_free(c);
  return e;
}

START_TEST(callback_failures_stop_and_roll_back)
{
  static const char *const s[] = {"teacher.enabled", "true", NULL};
  host h = {0, 0, -1};
  tch_env *e = host_env(&h), *e2 = gmm_env(10);
  tch_trainer *t = make(e, s), *ref = make(e2, s);
  run(t, 5);   /* next: it = 5, a Teacher-sampling iteration */
  run(ref, 5);
  assert_same_state(t, ref);   /* the host density is the built-in's */

  for (h.mode = 1; h.mode <= 2; h.mode++) {
    tch_status st = tch_trainer_step(t, 1);
    ck_assert_int_eq(st, h.mode == 1 ? TCH_E_NUMERIC : TCH_E_CALLBACK);
    if (h.mode == 2) {
      ck_assert_int_eq(tch_last_callback_code(), 7);
      ck_assert_ptr_nonnull(strstr(tch_last_error(), "host says no"));
    } else {
      ck_assert_ptr_nonnull(strstr(tch_last_error(), "nan"));
    }
    assert_same_state(t, ref);   /* rolled back */
  }
  h.mode = 0;
  run(t, 3);
  run(ref, 3);
  assert_same_state(t, ref);   /* and the run continues as if nothing happened */

  /* evaluation and sampling report the failure too; the trainer stays usable */
  h.mode = 1;
  ck_assert_int_eq(tch_trainer_evaluate(t, 50), TCH_E_NUMERIC);
  double x[20], lw[10];
  ck_assert_int_eq(tch_trainer_sample_continuous(t, 1, 10, x, lw), TCH_E_NUMERIC);
  ck_assert_int_eq(tch_trainer_sample_continuous(t, 1, 10, x, NULL), TCH_OK);
  h.mode = 0;
  ck_assert_int_eq(tch_trainer_evaluate(t, 50), TCH_OK);
  tch_trainer_free(t);
  tch_trainer_free(ref);
  tch_env_free(e);
  tch_env_free(e2);
}
END_TEST

/* A failure after a mid-step buffer insertion (the Student's Langevin gradient on the
 * buffer batch of a Teacher-sampling iteration, after the Teacher's samples went in):
 * the buffer is restored. */
START_TEST(failure_after_insertion_restores_buffer)
{
  static const char *const s[] = {"teacher.enabled", "true", "diffusion.langevin", "true", NULL};
  host h = {0, 0, -1};
  tch_env *e = host_env(&h), *e2 = gmm_env(10);
  tch_trainer *t = make(e, s), *ref = make(e2, s);
  run(t, 5);
  run(ref, 5);
  assert_same_state(t, ref);
  size_t n0 = t->buffer->n;
  /* it = 5: the Student's backward pass over the kept Teacher samples makes 10 gradient
   * calls (T = 10), then the samples are inserted, then the buffer batch's fails */
  h.grad_ok = 10;
  ck_assert_int_eq(tch_trainer_step(t, 1), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 9);
  ck_assert_int_eq(h.grad_ok, -1);
  ck_assert_uint_eq(t->buffer->n, n0);
  assert_same_state(t, ref);
  h.grad_ok = -1;
  run(t, 3);
  run(ref, 3);
  assert_same_state(t, ref);
  ck_assert_double_gt(metric(t, "teacher.added"), 0);   /* the insertion did happen */
  tch_trainer_free(t);
  tch_trainer_free(ref);
  tch_env_free(e);
  tch_env_free(e2);
}
END_TEST

/* Every allocation of four steps (teacher mode with local search: mid-step buffer
 * insertions) fails in turn: each failing step returns TCH_E_NOMEM, leaves the state as
 * before it, and the run then continues bit-identically. */
START_TEST(allocation_failures_roll_back)
{
  static const char *const s[] = {"teacher.enabled", "true", "local_search.enabled", "true",
                                  "diffusion.ls_every", "4", "diffusion.mala.max_iter", "12",
                                  "diffusion.mala.burn_in", "4", "train.batch_size", "16",
                                  "nn.hidden_dim", "16", NULL};
  tch_env *e = gmm_env(4);
  tch_trainer *ref = make(e, s);
  run(ref, 6);
  int failures = 0;
  for (uint64_t k = 1; k < 100000; k++) {
    tch_trainer *t = make(e, s);
    tchi_alloc_fail_at(k);   /* the k-th allocation of steps 0..5 fails */
    tch_status st = tch_trainer_step(t, 6);
    tchi_alloc_fail_at(0);
    int done = st == TCH_OK;
    if (!done) {
      ck_assert_msg(st == TCH_E_NOMEM, "k %llu: %s", (unsigned long long)k, tch_last_error());
      failures++;
      run(t, 6 - t->step);
    }
    assert_same_state(t, ref);
    tch_trainer_free(t);
    if (done) break;
  }
  ck_assert_int_ge(failures, 3);
  tch_trainer_free(ref);
  tch_env_free(e);
}
END_TEST

/* ---- empty and degenerate batches -------------------------------------------------------- */
START_TEST(empty_teacher_batches_are_skipped)
{
  static const char *const s[] = {"teacher.enabled", "true", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s);
  run(t, 1);
  tchi_dtrainer *d = t->diff;
  d->threshold = 1e9;   /* above every sample: Teacher batches and updates come out empty */
  tchi_dnet *teacher_before;
  ck_assert_int_eq(tchi_dnet_clone(d->teacher.net, &teacher_before), TCH_OK);
  uint64_t adam_t = d->teacher.opt.t;
  run(t, 8);   /* it = 1..8: Teacher sampling at 1 and 5 */
  ck_assert_double_eq(metric(t, "skipped.teacher_batch"), 2);
  ck_assert_double_eq(metric(t, "skipped.teacher_update"), 8);
  ck_assert_double_eq(metric(t, "teacher.kept"), 0);
  ck_assert_double_eq(metric(t, "teacher.added"), 0);
  ck_assert_double_eq(metric(t, "skipped"), 10);
  ck_assert(isnan(metric(t, "loss.teacher")));
  ck_assert(same_net(d->teacher.net, teacher_before));   /* no Adam step on nothing */
  ck_assert_uint_eq(d->teacher.opt.t, adam_t);
  ck_assert_double_eq(metric(t, "grad_steps"), 9);       /* the Student keeps training */
  ck_assert(isfinite(metric(t, "loss.student")));
  tchi_dnet_free(teacher_before);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

START_TEST(teacher_batch_of_one)
{
  static const char *const s[] = {"teacher.enabled", "true", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *a = make(e, s), *b = make(e, s);
  run(a, 2);
  run(b, 2);
  run(a, 1);   /* it = 2: a Student batch; threshold just below its best sample */
  double *lr = a->diff->log_r, top = -INFINITY, second = -INFINITY;
  for (size_t i = 0; i < 64; i++) {
    if (lr[i] > top) { second = top; top = lr[i]; }
    else if (lr[i] > second) second = lr[i];
  }
  ck_assert(second < top);
  b->diff->threshold = second;
  tchi_dnet *before;
  ck_assert_int_eq(tchi_dnet_clone(b->diff->teacher.net, &before), TCH_OK);
  run(b, 1);
  ck_assert_double_eq(metric(b, "teacher.kept"), 1);
  ck_assert(isfinite(metric(b, "loss.teacher")));
  ck_assert(!same_net(b->diff->teacher.net, before));   /* a real update on one sample */
  ck_assert_double_eq(metric(b, "skipped"), 0);
  tchi_dnet_free(before);
  tch_trainer_free(a);
  tch_trainer_free(b);
  tch_env_free(e);
}
END_TEST

START_TEST(empty_buffer_is_skipped)
{
  static const char *const s[] = {"buffer.enabled", "true", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s);
  run(t, 1);
  tchi_buffer_clear(t->buffer);   /* as if nothing had been stored */
  run(t, 1);                      /* a replay iteration */
  ck_assert_double_eq(metric(t, "skipped.student"), 1);
  ck_assert_double_eq(metric(t, "grad_steps"), 1);
  ck_assert(isnan(metric(t, "loss.student")));
  run(t, 2);
  ck_assert_double_eq(metric(t, "grad_steps"), 3);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- checkpoints and determinism --------------------------------------------------------- */
static char dir[256];

static void mk_dir(void)
{
  snprintf(dir, sizeof dir, "/tmp/tch_dtrainer_%ld", (long)getpid());
  char cmd[300];
  snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}

static void rm_dir(void)
{
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq(system(cmd), 0);
}

static void check_resume(const char *const *sets)
{
  mk_dir();
  char path[320];
  snprintf(path, sizeof path, "%s/run.tchk", dir);
  tch_env *e = gmm_env(10);
  tch_trainer *a = make(e, sets), *b = make(e, sets), *c;
  run(a, 10);
  run(b, 5);
  ck_assert_int_eq(tch_trainer_save(b, path), TCH_OK);
  ck_assert_int_eq(tch_trainer_load(e, path, &c), TCH_OK);
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
  rm_dir();
}

START_TEST(resume_is_bit_identical)
{
  static const char *const on[] = {NULL};
  static const char *const per[] = {"buffer.enabled", "true", "local_search.enabled", "true",
                                    "diffusion.ls_every", "4", "diffusion.mala.max_iter", "20",
                                    "diffusion.mala.burn_in", "10", NULL};
  static const char *const tea[] = {"teacher.enabled", "true", "local_search.enabled", "true",
                                    "diffusion.ls_every", "6", "diffusion.mala.max_iter", "20",
                                    "diffusion.mala.burn_in", "10", "diffusion.exploratory", "true",
                                    "diffusion.exploration_wd", "true",
                                    "diffusion.exploration_decay_steps", "7",
                                    "diffusion.learned_variance", "true", NULL};
  check_resume(on);
  check_resume(per);
  check_resume(tea);
}
END_TEST

START_TEST(damaged_checkpoints)
{
  mk_dir();
  char path[320], bad[320];
  snprintf(path, sizeof path, "%s/run.tchk", dir);
  snprintf(bad, sizeof bad, "%s/bad.tchk", dir);
  static const char *const s[] = {"teacher.enabled", "true", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s), *u = (tch_trainer *)e;
  run(t, 3);
  ck_assert_int_eq(tch_trainer_save(t, path), TCH_OK);
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  size_t n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc(n);
  ck_assert_uint_eq(fread(buf, 1, n, f), n);
  fclose(f);
  /* truncated */
  f = fopen(bad, "wb");
  fwrite(buf, 1, n / 2, f);
  fclose(f);
  ck_assert_int_eq(tch_trainer_load(e, bad, &u), TCH_E_IO);
  ck_assert_ptr_null(u);
  /* one flipped byte in the weights */
  buf[n - 100] ^= 0x40;
  f = fopen(bad, "wb");
  fwrite(buf, 1, n, f);
  fclose(f);
  ck_assert_int_eq(tch_trainer_load(e, bad, &u), TCH_E_IO);
  buf[n - 100] ^= 0x40;
  /* another format version, with a valid checksum */
  uint32_t v = 99, crc;
  memcpy(buf + 4, &v, 4);
  crc = tchi_crc32(0, buf, n - 4);
  memcpy(buf + n - 4, &crc, 4);
  f = fopen(bad, "wb");
  fwrite(buf, 1, n, f);
  fclose(f);
  ck_assert_int_eq(tch_trainer_load(e, bad, &u), TCH_E_VERSION);
  /* an env of another shape, and a discrete env */
  tch_env *mw, *grid;
  ck_assert_int_eq(tch_env_create_manywell(NULL, &mw), TCH_OK);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &grid), TCH_OK);
  ck_assert_int_eq(tch_trainer_load(mw, path, &u), TCH_E_ARG);
  ck_assert_int_eq(tch_trainer_load(grid, path, &u), TCH_E_ARG);
  ck_assert_int_eq(tch_trainer_load(e, path, &u), TCH_OK);
  tch_trainer_free(u);
  free(buf);
  tch_env_free(mw);
  tch_env_free(grid);
  tch_trainer_free(t);
  tch_env_free(e);
  rm_dir();
}
END_TEST

START_TEST(determinism)
{
  static const char *const s[] = {"buffer.enabled", "true", NULL};
  static const char *const s2[] = {"buffer.enabled", "true", "seed", "8", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *a = make(e, s), *b = make(e, s), *c = make(e, s2);
  run(a, 6);
  run(b, 6);
  run(c, 6);
  assert_same_state(a, b);
  ck_assert(!same_net(a->diff->student.net, c->diff->student.net));
  double xa[40], xb[40], wa[20], wb[20];
  ck_assert_int_eq(tch_trainer_sample_continuous(a, 5, 20, xa, wa), TCH_OK);
  ck_assert_int_eq(tch_trainer_sample_continuous(b, 5, 20, xb, wb), TCH_OK);
  ck_assert(memcmp(xa, xb, sizeof xa) == 0 && memcmp(wa, wb, sizeof wa) == 0);
  ck_assert_int_eq(tch_trainer_sample_continuous(b, 6, 20, xb, NULL), TCH_OK);
  ck_assert(memcmp(xa, xb, sizeof xa) != 0);
  tch_trainer_free(a);
  tch_trainer_free(b);
  tch_trainer_free(c);
  tch_env_free(e);
}
END_TEST

/* ---- configuration ----------------------------------------------------------------------- */
static double cfg_double(const tch_trainer *t, const char *key)
{
  const tch_config *c;
  double v;
  ck_assert_int_eq(tch_trainer_get_config((tch_trainer *)t, &c), TCH_OK);
  ck_assert_int_eq(tch_config_get_double(c, key, &v), TCH_OK);
  return v;
}

START_TEST(config_defaults_per_domain)
{
  tch_env *e = gmm_env(10), *grid;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &grid), TCH_OK);
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_bool(c, "teacher.enabled", 1), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "nn.hidden_dim", 16), TCH_OK);
  tch_trainer *t, *g;
  ck_assert_int_eq(tch_trainer_create(e, c, &t), TCH_OK);
  ck_assert_int_eq(tch_trainer_create(grid, c, &g), TCH_OK);
  /* energy envs: diffusion/train.py */
  ck_assert_double_eq(cfg_double(t, "train.batch_size"), 500);
  ck_assert_double_eq(cfg_double(t, "train.eval_samples"), 2000);
  ck_assert_double_eq(cfg_double(t, "student.weight_decay"), 1e-7);
  ck_assert_double_eq(cfg_double(t, "student.grad_clip"), 0);
  ck_assert_double_eq(cfg_double(t, "teacher.lr"), 5e-3);
  ck_assert_double_eq(cfg_double(t, "teacher.grad_clip"), 0.1);
  uint64_t steps;
  ck_assert_int_eq(tch_trainer_planned_steps(t, &steps), TCH_OK);
  ck_assert_uint_eq(steps, 10001);
  size_t cap;
  tch_buffer *b;
  ck_assert_int_eq(tch_trainer_get_buffer(t, &b), TCH_OK);
  ck_assert_int_eq(tch_buffer_capacity(b, &cap), TCH_OK);
  ck_assert_uint_eq(cap, 50000);
  const tchi_dtrainer *d = t->diff;
  ck_assert_uint_eq(d->threshold_n, 500);
  ck_assert_int_eq(d->n_milestones, 2);
  ck_assert_uint_eq(d->milestones[0], 4000);
  ck_assert_uint_eq(d->milestones[1], 8000);
  ck_assert_uint_eq(d->teacher.n_clip_groups, 1);   /* the time encoder only */
  ck_assert_double_eq(d->teacher.grad_clip, 0.1);
  ck_assert_double_eq(d->student.opt.grp[0].weight_decay, 1e-7);
  ck_assert_double_eq(d->teacher.base_lr[0], 5e-3);
  ck_assert_double_eq(d->teacher.base_lr[d->teacher.opt.n_groups - 1], 0.1);   /* log Z */
  ck_assert_double_eq(d->teacher.net->spec.log_var_range, 4.0);
  ck_assert_uint_eq(d->student.net->spec.hidden_dim, 16);
  ck_assert_int_eq(t->priority, TCH_PRIORITY_TEACHER_REWARD);
  ck_assert_double_eq(metric(t, "lr.student"), 1e-3);
  t->step = 4000;
  ck_assert_double_eq_tol(metric(t, "lr.student"), 1e-4, 1e-18);
  t->step = 8000;
  ck_assert_double_eq_tol(metric(t, "lr.student"), 1e-5, 1e-18);
  t->step = 0;
  /* the hypergrid: grid/trainer.py, unchanged */
  ck_assert_double_eq(cfg_double(g, "train.batch_size"), 16);
  ck_assert_double_eq(cfg_double(g, "train.eval_samples"), 100000);
  ck_assert_double_eq(cfg_double(g, "student.weight_decay"), 0);
  ck_assert_double_eq(cfg_double(g, "student.grad_clip"), 1.0);
  ck_assert_double_eq(cfg_double(g, "teacher.lr"), 1e-3);
  ck_assert_double_eq(cfg_double(g, "teacher.grad_clip"), 1.0);
  ck_assert_uint_eq(g->batch, 16);
  ck_assert_double_eq(g->student.grad_clip, 1.0);
  ck_assert_double_eq(g->teacher.opt.grp[0].lr, 1e-3);
  ck_assert_int_eq(g->priority, TCH_PRIORITY_NONE);
  /* ...and the -1 defaults train the grid exactly as the old explicit defaults did */
  tch_config *old;
  ck_assert_int_eq(tch_config_clone(c, &old), TCH_OK);
  static const char *const old_defaults[] = {
    "train.batch_size", "16", "train.eval_samples", "100000", "student.weight_decay", "0",
    "student.grad_clip", "1.0", "teacher.lr", "1e-3", "teacher.grad_clip", "1.0",
    "buffer.priority", "none", NULL};
  for (const char *const *k = old_defaults; *k; k += 2)
    ck_assert_int_eq(tch_config_set_from_string(old, k[0], k[1]), TCH_OK);
  tch_trainer *g2;
  ck_assert_int_eq(tch_trainer_create(grid, old, &g2), TCH_OK);
  run(g, 5);
  run(g2, 5);
  ck_assert(memcmp(g->student.policy->mlp.params, g2->student.policy->mlp.params,
                   g->student.policy->mlp.n_params * sizeof(float)) == 0);
  ck_assert(memcmp(g->teacher.policy->mlp.params, g2->teacher.policy->mlp.params,
                   g->teacher.policy->mlp.n_params * sizeof(float)) == 0);
  uint64_t steps2;
  ck_assert_int_eq(tch_trainer_planned_steps(g, &steps), TCH_OK);
  ck_assert_int_eq(tch_trainer_planned_steps(g2, &steps2), TCH_OK);
  ck_assert_uint_eq(steps, steps2);
  tch_trainer_free(g2);
  tch_config_free(old);
  /* explicit values are kept */
  tch_trainer_free(t);
  ck_assert_int_eq(tch_config_set_int(c, "train.batch_size", 32), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "teacher.lr", 2e-3), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "train.steps", 5000), TCH_OK);
  ck_assert_int_eq(tch_trainer_create(e, c, &t), TCH_OK);
  ck_assert_uint_eq(t->batch, 32);
  ck_assert_double_eq(t->diff->teacher.base_lr[0], 2e-3);
  ck_assert_int_eq(t->diff->n_milestones, 1);   /* epochs 4999: -1001 never fires, 2999 */
  ck_assert_uint_eq(t->diff->milestones[0], 2999);
  tch_trainer_free(t);
  tch_trainer_free(g);
  tch_config_free(c);
  tch_env_free(e);
  tch_env_free(grid);
}
END_TEST

START_TEST(config_errors)
{
  tch_env *e = gmm_env(10);
  static const char *const bad[][2] = {
    {"mixer.schedule", "student,teacher"}, {"mixer.epsilon", "0.1"}, {"student.loss", "db"},
    {"gafn.enabled", "true"}, {"student.learn_pb", "true"}, {"teacher.reward.alpha", "0.5"},
    {"local_search.enabled", "true"}, {"teacher.lr", "-0.5"}, {"train.batch_size", "0"},
    {"diffusion.threshold_samples", "0"}, {"student.grad_clip", "-2e-1"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    tch_config *c = small_cfg(NULL);
    ck_assert_int_eq(tch_config_set_from_string(c, bad[i][0], bad[i][1]), TCH_OK);
    tch_trainer *t = (tch_trainer *)e;
    ck_assert_msg(tch_trainer_create(e, c, &t) == TCH_E_CONFIG, "%s", bad[i][0]);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(tch_last_error(), bad[i][0]));
    tch_config_free(c);
  }
  /* a host env without gradient: no MALA, no Langevin parameterisation */
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = 2;
  d.log_density = tchi_gmm25_log_density;
  tch_env *ng;
  ck_assert_int_eq(tch_env_create_energy(&d, NULL, &ng), TCH_OK);
  static const char *const ls[] = {"buffer.enabled", "true", "local_search.enabled", "true", NULL};
  static const char *const lgv[] = {"diffusion.langevin", "true", NULL};
  tch_config *c = small_cfg(ls);
  tch_trainer *t;
  ck_assert_int_eq(tch_trainer_create(ng, c, &t), TCH_E_CONFIG);
  tch_config_free(c);
  c = small_cfg(lgv);
  ck_assert_int_eq(tch_trainer_create(ng, c, &t), TCH_E_CONFIG);
  ck_assert_int_eq(tch_trainer_create(e, c, &t), TCH_OK);   /* the built-in has a gradient */
  run(t, 2);
  tch_trainer_free(t);
  tch_config_free(c);
  tch_env_free(ng);
  tch_env_free(e);
}
END_TEST

/* ---- public surface ------------------------------------------------------------------------ */
START_TEST(public_calls)
{
  static const char *const s[] = {"teacher.enabled", "true", NULL};
  tch_env *e = gmm_env(10), *grid;
  tch_trainer *t = make(e, s), *g;
  tch_policy *p = (tch_policy *)e;
  tch_mixer *m = (tch_mixer *)e;
  ck_assert_int_eq(tch_trainer_get_student(t, &p), TCH_E_STATE);
  ck_assert_ptr_null(p);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "diffusion"));
  ck_assert_int_eq(tch_trainer_get_teacher(t, &p), TCH_E_STATE);
  ck_assert_int_eq(tch_trainer_get_mixer(t, &m), TCH_E_STATE);
  tch_buffer *b;
  ck_assert_int_eq(tch_trainer_get_buffer(t, &b), TCH_OK);
  uint32_t rd;
  ck_assert_int_eq(tch_buffer_record_dim(b, &rd), TCH_OK);
  ck_assert_uint_eq(rd, 4);   /* two doubles as four int32 words */
  /* metric names: the diffusion list; the discrete ones read NaN, unknown ones fail */
  int n = 0, has_eubo = 0;
  for (const char *k = tch_trainer_next_metric(t, NULL); k; k = tch_trainer_next_metric(t, k)) {
    n++;
    has_eubo |= !strcmp(k, "eval.eubo");
    double v;
    ck_assert_int_eq(tch_trainer_metric(t, k, &v), TCH_OK);
  }
  ck_assert(n > 20 && has_eubo);
  ck_assert(isnan(metric(t, "l1")) && isnan(metric(t, "eval.l1")));
  double v;
  ck_assert_int_eq(tch_trainer_metric(t, "no.such", &v), TCH_E_ARG);
  run(t, 3);
  /* evaluation */
  ck_assert_int_eq(tch_trainer_evaluate(t, 300), TCH_OK);
  double lz = metric(t, "eval.log_z"), elbo = metric(t, "eval.elbo"), eubo = metric(t, "eval.eubo");
  ck_assert(isfinite(lz) && isfinite(elbo) && isfinite(eubo));
  ck_assert(elbo <= lz);   /* mean <= logmeanexp */
  ck_assert(eubo > elbo);
  ck_assert_double_eq(metric(t, "eval.delta_log_z"), 0.0 - lz);
  ck_assert(metric(t, "eval.ess") >= 1 && metric(t, "eval.ess") <= 300);
  ck_assert(isfinite(metric(t, "eval.mean_log_likelihood")));
  ck_assert(metric(t, "eval.w2") > 0 && metric(t, "eval.w1") > 0 && isfinite(metric(t, "eval.mmd")));
  /* sampling */
  double x[2 * 30], lw[30];
  ck_assert_int_eq(tch_trainer_sample_continuous(t, 3, 30, x, lw), TCH_OK);
  for (int i = 0; i < 30; i++) ck_assert(isfinite(lw[i]) && isfinite(x[2 * i]));
  ck_assert_int_eq(tch_trainer_sample_continuous(NULL, 3, 30, x, lw), TCH_E_ARG);
  ck_assert_int_eq(tch_trainer_sample_continuous(t, 3, 30, NULL, lw), TCH_E_ARG);
  ck_assert_int_eq(tch_trainer_sample_continuous(t, 3, 0, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &grid), TCH_OK);
  ck_assert_int_eq(tch_trainer_create(grid, NULL, &g), TCH_OK);
  ck_assert_int_eq(tch_trainer_sample_continuous(g, 3, 30, x, lw), TCH_E_STATE);
  ck_assert(isnan(metric(g, "eval.log_z")));
  tch_trainer_free(g);
  tch_env_free(grid);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* Once warm (buffer at capacity, workspaces grown), an iteration allocates nothing. */
START_TEST(warm_iterations_do_not_allocate)
{
  static const char *const s[] = {"teacher.enabled", "true", "buffer.capacity", "48",
                                  "local_search.enabled", "true", "diffusion.ls_every", "4",
                                  "diffusion.mala.max_iter", "12", "diffusion.mala.burn_in", "4",
                                  "train.batch_size", "32", NULL};
  tch_env *e = gmm_env(10);
  tch_trainer *t = make(e, s);
  run(t, 12);
  uint64_t before = tchi_alloc_count();
  run(t, 12);
  ck_assert_uint_eq(tchi_alloc_count(), before);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("dtrainer");
  TCase *tc = tcase_create("dtrainer");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, on_policy_learns);
  tcase_add_test(tc, per_learns);
  tcase_add_test(tc, per_ls_learns);
  tcase_add_test(tc, teacher_learns);
  tcase_add_test(tc, teacher_els_runs);
  tcase_add_test(tc, callback_failures_stop_and_roll_back);
  tcase_add_test(tc, failure_after_insertion_restores_buffer);
  tcase_add_test(tc, allocation_failures_roll_back);
  tcase_add_test(tc, empty_teacher_batches_are_skipped);
  tcase_add_test(tc, teacher_batch_of_one);
  tcase_add_test(tc, empty_buffer_is_skipped);
  tcase_add_test(tc, resume_is_bit_identical);
  tcase_add_test(tc, damaged_checkpoints);
  tcase_add_test(tc, determinism);
  tcase_add_test(tc, config_defaults_per_domain);
  tcase_add_test(tc, config_errors);
  tcase_add_test(tc, public_calls);
  tcase_add_test(tc, warm_iterations_do_not_allocate);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
