/* tch_smc (include/teacher/smc.h) through the public API and the shared library: argument
 * errors, discrete trainers rejected, output log-weights consistent with log Z-hat,
 * determinism by seed, the trainer's training untouched by runs in between, and any free
 * order (the handle keeps its trainer alive). Both kinds of diffusion trainer are covered:
 * Reinforced SMC's (smc.enabled: OU-DDS Student, learnt log-flow twists) and the Teacher
 * paper's Brownian sampler (f = 0 twists). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <teacher.h>
#include "../tch_check.h"

#define TS 16    /* diffusion steps: small, divisible by the chunk counts below */
#define NB 32    /* train.batch_size */

#define OK_CALL(call)                                                                       \
  do {                                                                                      \
    tch_status st_ = (call);                                                                \
    ck_assert_msg(st_ == TCH_OK, "%s: %s (%s)", #call, tch_status_str(st_), tch_last_error()); \
  } while (0)

/* call must fail with `want` and leave error text. */
#define EXPECT_FAIL(want, call)                                                             \
  do {                                                                                      \
    tch_status got_ = (call);                                                               \
    ck_assert_msg(got_ == (want), "%s returned %d (%s), expected %d; last error: %s", #call, \
                  (int)got_, tch_status_str(got_), (int)(want), tch_last_error());          \
    ck_assert_msg(tch_last_error() && tch_last_error()[0], "%s: no error text", #call);      \
  } while (0)

/* ---- fixtures --------------------------------------------------------------------------- */
static tch_env *gmm40_env(void)
{
  tch_config *c;
  tch_env *e;
  OK_CALL(tch_config_create(&c));
  OK_CALL(tch_config_set_int(c, "env.diffusion.steps", TS));
  OK_CALL(tch_env_create_gmm40(2, c, &e));
  tch_config_free(c);
  return e;
}

static tch_env *gmm25_env(void)
{
  tch_config *c;
  tch_env *e;
  OK_CALL(tch_config_create(&c));
  OK_CALL(tch_config_set_int(c, "env.diffusion.steps", TS));
  OK_CALL(tch_env_create_gmm25(c, &e));
  tch_config_free(c);
  return e;
}

/* Reinforced SMC (smc_buffer: the learnt twist) on GMM40-2D, tiny. */
static tch_trainer *rsmc_trainer(tch_env *e)
{
  static const char *const kv[] = {"seed", "3", "nn.hidden_dim", "32", "train.batch_size", "32",
                                    "train.steps", "40", "smc.enabled", "true", "smc.n_chunks", "4",
                                    "smc.prefill_batches", "2", "smc.buffer_batches", "4",
                                    "smc.flow_hidden", "16", "smc.init_std", "20",
                                    "smc.replay_ratio", "1", NULL};
  tch_config *c;
  OK_CALL(tch_config_create(&c));
  for (const char *const *s = kv; *s; s += 2) OK_CALL(tch_config_set_from_string(c, s[0], s[1]));
  tch_trainer *t;
  OK_CALL(tch_trainer_create(e, c, &t));
  tch_config_free(c);
  return t;
}

/* The Teacher paper's diffusion sampler (Brownian reference, no twist network) on GMM25. */
static tch_trainer *brownian_trainer(tch_env *e)
{
  static const char *const kv[] = {"seed", "5", "nn.hidden_dim", "32", "train.batch_size", "32",
                                    "train.steps", "40", NULL};
  tch_config *c;
  OK_CALL(tch_config_create(&c));
  for (const char *const *s = kv; *s; s += 2) OK_CALL(tch_config_set_from_string(c, s[0], s[1]));
  tch_trainer *t;
  OK_CALL(tch_trainer_create(e, c, &t));
  tch_config_free(c);
  return t;
}

static tch_smc *make_smc(tch_trainer *t, uint32_t n, uint32_t k)
{
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = n;
  d.n_chunks = k;
  tch_smc *s;
  OK_CALL(tch_smc_create(t, &d, &s));
  return s;
}

static double smc_metric(const tch_smc *s, const char *name)
{
  double v;
  OK_CALL(tch_smc_metric(s, name, &v));
  return v;
}

static double log_mean_exp(size_t n, const double *lw)
{
  double m = -INFINITY, acc = 0.0;
  for (size_t i = 0; i < n; i++) m = lw[i] > m ? lw[i] : m;
  for (size_t i = 0; i < n; i++) acc += exp(lw[i] - m);
  return m + log(acc / (double)n);
}

/* ---- argument errors -------------------------------------------------------------------- */
START_TEST(test_arguments)
{
  tch_env *e = gmm40_env();
  tch_trainer *t = rsmc_trainer(e);
  tch_smc *s = (tch_smc *)&s, *ok;
  tch_smc_desc d;

  EXPECT_FAIL(TCH_E_ARG, tch_smc_create(t, NULL, NULL));
  EXPECT_FAIL(TCH_E_ARG, tch_smc_create(NULL, NULL, &s));
  ck_assert_ptr_null(s);

  /* a descriptor shorter than the first version */
  tch_smc_desc_init(&d);
  d.struct_size = 8;
  s = (tch_smc *)&s;
  EXPECT_FAIL(TCH_E_ARG, tch_smc_create(t, &d, &s));
  ck_assert_ptr_null(s);

  /* values out of range, each alone */
  size_t nb = 0;
#define BAD(label, stmt)                                        \
  do {                                                          \
    tch_smc_desc_init(&d);                                      \
    stmt;                                                       \
    s = (tch_smc *)&s;                                          \
    tch_status got = tch_smc_create(t, &d, &s);                 \
    ck_assert_msg(got == TCH_E_ARG, "%s: %d (%s)", label, (int)got, tch_last_error()); \
    ck_assert_ptr_null(s);                                      \
    nb++;                                                       \
  } while (0)
  BAD("n_chunks 3 does not divide 16", d.n_chunks = 3);
  BAD("n_chunks 32 > T", d.n_chunks = 32);
  BAD("threshold 1.5", d.resample_threshold = 1.5);
  BAD("threshold negative", d.resample_threshold = -0.1);
  BAD("target_ess NaN", d.target_ess = NAN);
  BAD("resampler 4", d.resampler = 4);
  BAD("unbiased 2", d.unbiased = 2);
  ck_assert_uint_eq(nb, 7);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "unbiased"));   /* the message names the field */

  /* NULL descriptor: the trainer's settings */
  OK_CALL(tch_smc_create(t, NULL, &ok));
  ck_assert_double_eq(smc_metric(ok, "n_particles"), 32.0);
  ck_assert_double_eq(smc_metric(ok, "n_chunks"), 4.0);
  ck_assert_double_eq(smc_metric(ok, "resample_threshold"), 0.2);
  ck_assert_double_eq(smc_metric(ok, "target_ess"), 0.05);
  ck_assert_double_eq(smc_metric(ok, "resampler"), TCH_SMC_RESAMPLER_SYSTEMATIC);
  ck_assert_double_eq(smc_metric(ok, "unbiased"), 0.0);
  ck_assert_double_eq(smc_metric(ok, "learnt_twist"), 1.0);
  ck_assert_double_eq(smc_metric(ok, "dim"), 2.0);
  ck_assert_double_eq(smc_metric(ok, "runs"), 0.0);
  ck_assert(isnan(smc_metric(ok, "log_z")) && isnan(smc_metric(ok, "ess")));
  double v;
  EXPECT_FAIL(TCH_E_ARG, tch_smc_metric(ok, "no.such", &v));
  EXPECT_FAIL(TCH_E_ARG, tch_smc_metric(ok, NULL, &v));
  EXPECT_FAIL(TCH_E_ARG, tch_smc_metric(NULL, "log_z", &v));
  EXPECT_FAIL(TCH_E_ARG, tch_smc_metric(ok, "log_z", NULL));

  /* runs: NULL handle, wrong n; chunk stats before a run and with the wrong K */
  double x[2 * 32], lw[32], lz;
  EXPECT_FAIL(TCH_E_ARG, tch_smc_run(NULL, 1, 32, x, lw, &lz));
  EXPECT_FAIL(TCH_E_ARG, tch_smc_run(ok, 1, 31, x, lw, &lz));
  double ce[4];
  EXPECT_FAIL(TCH_E_STATE, tch_smc_chunk_stats(ok, 4, ce, NULL, NULL));
  EXPECT_FAIL(TCH_E_ARG, tch_smc_chunk_stats(NULL, 4, ce, NULL, NULL));
  OK_CALL(tch_smc_run(ok, 1, 32, NULL, NULL, NULL));   /* every output is optional */
  EXPECT_FAIL(TCH_E_ARG, tch_smc_chunk_stats(ok, 3, ce, NULL, NULL));
  OK_CALL(tch_smc_chunk_stats(ok, 4, NULL, NULL, NULL));

  /* explicit settings are reported back */
  tch_smc_desc_init(&d);
  d.resampler = TCH_SMC_RESAMPLER_MULTINOMIAL;
  d.unbiased = 1;
  d.target_ess = 1.0;
  d.resample_threshold = 0.5;
  d.n_chunks = 8;
  d.n_particles = 10;
  OK_CALL(tch_smc_create(t, &d, &s));
  ck_assert_double_eq(smc_metric(s, "resampler"), TCH_SMC_RESAMPLER_MULTINOMIAL);
  ck_assert_double_eq(smc_metric(s, "unbiased"), 1.0);
  ck_assert_double_eq(smc_metric(s, "target_ess"), 1.0);
  ck_assert_double_eq(smc_metric(s, "resample_threshold"), 0.5);
  ck_assert_double_eq(smc_metric(s, "n_chunks"), 8.0);
  ck_assert_double_eq(smc_metric(s, "n_particles"), 10.0);
  /* target_ess = 1 turns resampling off */
  OK_CALL(tch_smc_run(s, 2, 10, NULL, NULL, NULL));
  ck_assert_double_eq(smc_metric(s, "resamples"), 0.0);
  tch_smc_free(s);

  /* NULL-tolerant free and retain */
  tch_smc_free(NULL);
  ck_assert_ptr_null(tch_smc_retain(NULL));
  tch_smc_free(ok);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

START_TEST(test_discrete_rejected)
{
  tch_env *e;
  OK_CALL(tch_env_create_hypergrid(2, 4, 1.0, &e));
  tch_trainer *t;
  OK_CALL(tch_trainer_create(e, NULL, &t));
  tch_smc *s = (tch_smc *)&s;
  EXPECT_FAIL(TCH_E_STATE, tch_smc_create(t, NULL, &s));
  ck_assert_ptr_null(s);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "diffusion"));
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* The Brownian trainer's default smc.n_chunks (16) divides T = 16 here; with T = 10 it
 * does not, and n_chunks = 0 must say so. */
START_TEST(test_default_chunks_must_divide)
{
  tch_config *c;
  tch_env *e;
  OK_CALL(tch_config_create(&c));
  OK_CALL(tch_config_set_int(c, "env.diffusion.steps", 10));
  OK_CALL(tch_env_create_gmm25(c, &e));
  tch_config_free(c);
  tch_trainer *t = brownian_trainer(e);
  tch_smc *s;
  EXPECT_FAIL(TCH_E_ARG, tch_smc_create(t, NULL, &s));
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "smc.n_chunks"));
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_chunks = 5;
  OK_CALL(tch_smc_create(t, &d, &s));
  ck_assert_double_eq(smc_metric(s, "learnt_twist"), 0.0);
  OK_CALL(tch_smc_run(s, 9, NB, NULL, NULL, NULL));
  tch_smc_free(s);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- outputs ---------------------------------------------------------------------------- */
/* log Z-hat == log-mean-exp of the output log-weights; metrics and chunk stats agree. */
static void check_consistency(tch_trainer *t, uint32_t n, uint32_t k, int unbiased)
{
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = n;
  d.n_chunks = k;
  d.unbiased = unbiased;
  d.target_ess = 0.3;         /* resample often on these short runs */
  d.resample_threshold = 0.9;
  tch_smc *s;
  OK_CALL(tch_smc_create(t, &d, &s));
  double *x = malloc(n * 2 * sizeof(double)), *lw = malloc(n * sizeof(double)), lz = NAN;
  ck_assert(x && lw);
  for (uint64_t seed = 1; seed <= 3; seed++) {
    OK_CALL(tch_smc_run(s, seed, n, x, lw, &lz));
    ck_assert(isfinite(lz));
    double lme = log_mean_exp(n, lw);
    ck_assert_msg(fabs(lme - lz) <= 1e-9 * (1.0 + fabs(lz)), "log-mean-exp %.17g vs log Z-hat %.17g", lme, lz);
    for (size_t i = 0; i < 2 * (size_t)n; i++) ck_assert(isfinite(x[i]));
    ck_assert_double_eq(smc_metric(s, "log_z"), lz);
    double ess = smc_metric(s, "ess");
    ck_assert(ess > 0.0 && ess <= 1.0 + 1e-12);
    ck_assert_double_eq(smc_metric(s, "energy_evals"), (double)n * k);   /* not Langevin */
    double *ce = malloc(k * sizeof(double)), *ct = malloc(k * sizeof(double));
    uint8_t *cr = malloc(k);
    ck_assert(ce && ct && cr);
    OK_CALL(tch_smc_chunk_stats(s, k, ce, ct, cr));
    double resamples = 0, mn = INFINITY;
    for (uint32_t j = 0; j < k; j++) {
      ck_assert(ce[j] > 0.0 && ce[j] <= 1.0 + 1e-12);
      ck_assert(ct[j] >= 1.0);
      ck_assert(cr[j] == 0 || cr[j] == 1);
      resamples += cr[j];
      mn = ce[j] < mn ? ce[j] : mn;
    }
    ck_assert_int_eq(cr[k - 1], 0);   /* never after the last chunk */
    ck_assert_double_eq(smc_metric(s, "resamples"), resamples);
    ck_assert_double_eq(smc_metric(s, "min_chunk_ess"), mn);
    free(ce);
    free(ct);
    free(cr);
  }
  ck_assert_double_eq(smc_metric(s, "runs"), 3.0);
  free(x);
  free(lw);
  tch_smc_free(s);
}

START_TEST(test_log_weights_match_log_z)
{
  tch_env *e = gmm40_env(), *b = gmm25_env();
  tch_trainer *t = rsmc_trainer(e), *u = brownian_trainer(b);
  OK_CALL(tch_trainer_step(t, 3));   /* a trained (non-initial) twist */
  OK_CALL(tch_trainer_step(u, 3));
  check_consistency(t, 64, 4, -1);
  check_consistency(t, 64, 4, 1);
  check_consistency(t, 20, 1, 0);    /* K = 1: plain importance sampling */
  check_consistency(u, 64, 8, -1);
  check_consistency(u, 64, 16, 1);
  tch_trainer_free(t);
  tch_trainer_free(u);
  tch_env_free(e);
  tch_env_free(b);
}
END_TEST

/* The run has resampled at least once in this setting, so its stats are not trivial. */
START_TEST(test_resampling_happens)
{
  tch_env *b = gmm25_env();
  tch_trainer *u = brownian_trainer(b);
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = 64;
  d.n_chunks = 8;
  d.resample_threshold = 1.0;   /* ESS/N < 1 after nearly every chunk */
  d.target_ess = 0.5;
  tch_smc *s;
  OK_CALL(tch_smc_create(u, &d, &s));
  OK_CALL(tch_smc_run(s, 4, 64, NULL, NULL, NULL));
  ck_assert_double_ge(smc_metric(s, "resamples"), 1.0);
  tch_smc_free(s);
  tch_trainer_free(u);
  tch_env_free(b);
}
END_TEST

static int same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

START_TEST(test_determinism)
{
  tch_env *e = gmm40_env();
  tch_trainer *t = rsmc_trainer(e);
  OK_CALL(tch_trainer_step(t, 2));
  enum { N = 48 };
  tch_smc *s = make_smc(t, N, 4), *s2 = make_smc(t, N, 4);
  double x1[2 * N], x2[2 * N], x3[2 * N], w1[N], w2[N], w3[N], z1, z2, z3;
  OK_CALL(tch_smc_run(s, 11, N, x1, w1, &z1));
  OK_CALL(tch_smc_run(s, 12, N, x3, w3, &z3));   /* another seed in between */
  OK_CALL(tch_smc_run(s2, 11, N, x2, w2, &z2));  /* another handle, same seed */
  ck_assert(same_bits(x1, x2, sizeof x1) && same_bits(w1, w2, sizeof w1) && same_bits(&z1, &z2, sizeof z1));
  ck_assert(!same_bits(x1, x3, sizeof x1));
  OK_CALL(tch_smc_run(s, 11, N, x3, w3, &z3));   /* the same handle again */
  ck_assert(same_bits(x1, x3, sizeof x1) && same_bits(w1, w3, sizeof w1) && same_bits(&z1, &z3, sizeof z1));
  /* the correction changes log Z-hat only, never the particles */
  tch_smc_desc d;
  tch_smc_desc_init(&d);
  d.n_particles = N;
  d.n_chunks = 4;
  d.unbiased = 1;
  tch_smc *su;
  OK_CALL(tch_smc_create(t, &d, &su));
  OK_CALL(tch_smc_run(su, 11, N, x3, NULL, NULL));
  ck_assert(same_bits(x1, x3, sizeof x1));
  /* the handle follows the trainer: after a step the same seed gives other particles */
  OK_CALL(tch_trainer_step(t, 1));
  OK_CALL(tch_smc_run(s, 11, N, x3, NULL, NULL));
  ck_assert(!same_bits(x1, x3, sizeof x1));
  tch_smc_free(su);
  tch_smc_free(s);
  tch_smc_free(s2);
  tch_trainer_free(t);
  tch_env_free(e);
}
END_TEST

/* ---- the trainer is not perturbed ------------------------------------------------------- */
/* Every metric of a and b bit-identical (NaN == NaN), and a fresh sample too (weights). */
static void assert_same_trainers(tch_trainer *a, tch_trainer *b)
{
  for (const char *n = tch_trainer_next_metric(a, NULL); n; n = tch_trainer_next_metric(a, n)) {
    double va, vb;
    OK_CALL(tch_trainer_metric(a, n, &va));
    OK_CALL(tch_trainer_metric(b, n, &vb));
    ck_assert_msg((isnan(va) && isnan(vb)) || same_bits(&va, &vb, sizeof va), "metric %s: %.17g vs %.17g", n, va, vb);
  }
  enum { M = 16 };
  double xa[2 * M], xb[2 * M], wa[M], wb[M];
  OK_CALL(tch_trainer_sample_continuous(a, 77, M, xa, wa));
  OK_CALL(tch_trainer_sample_continuous(b, 77, M, xb, wb));
  ck_assert(same_bits(xa, xb, sizeof xa) && same_bits(wa, wb, sizeof wa));
}

static long file_bytes(const char *path, char **out)
{
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *out = malloc((size_t)n + 1);
  ck_assert(*out && fread(*out, 1, (size_t)n, f) == (size_t)n);
  fclose(f);
  return n;
}

/* Checkpoints of a and b are byte-identical: everything a resume reads is unperturbed. */
static void assert_same_checkpoints(const tch_trainer *a, const tch_trainer *b)
{
  char pa[64], pb[64];
  snprintf(pa, sizeof pa, "/tmp/tch_smc_api_%ld_a.tchk", (long)getpid());
  snprintf(pb, sizeof pb, "/tmp/tch_smc_api_%ld_b.tchk", (long)getpid());
  OK_CALL(tch_trainer_save(a, pa));
  OK_CALL(tch_trainer_save(b, pb));
  char *ba, *bb;
  long na = file_bytes(pa, &ba), nb = file_bytes(pb, &bb);
  ck_assert_int_eq(na, nb);
  ck_assert_msg(memcmp(ba, bb, (size_t)na) == 0, "checkpoints differ");
  free(ba);
  free(bb);
  unlink(pa);
  unlink(pb);
}

/* A progress callback may run SMC between steps (monitoring log Z-hat during training). */
static int progress_runs_smc(void *user, const tch_trainer *t, uint64_t step)
{
  (void)t;
  double lz;
  return tch_smc_run(user, step, 7, NULL, NULL, &lz) != TCH_OK || !isfinite(lz);
}

static void training_unaffected(tch_env *e, tch_trainer *(*make)(tch_env *), uint32_t k)
{
  tch_trainer *a = make(e), *b = make(e), *c = make(e);
  tch_smc *sc = make_smc(c, 7, k);
  OK_CALL(tch_trainer_set_progress(c, progress_runs_smc, sc, 1));
  /* more particles than the batch: the Student's evaluation workspace grows mid-training */
  tch_smc *s = make_smc(a, 3 * NB, k), *s2 = make_smc(a, 5, k);
  for (int round = 0; round < 3; round++) {
    OK_CALL(tch_smc_run(s, 100 + (uint64_t)round, 3 * NB, NULL, NULL, NULL));
    OK_CALL(tch_trainer_step(a, 2));
    OK_CALL(tch_smc_run(s2, 200 + (uint64_t)round, 5, NULL, NULL, NULL));
    OK_CALL(tch_trainer_step(b, 2));
    OK_CALL(tch_trainer_step(c, 2));
    assert_same_trainers(a, b);
    assert_same_trainers(c, b);
  }
  ck_assert_double_eq(smc_metric(sc, "runs"), 6.0);
  assert_same_checkpoints(a, b);
  tch_smc_free(s);
  tch_smc_free(s2);
  tch_smc_free(sc);   /* after this, c is freed by its last reference below */
  tch_trainer_free(a);
  tch_trainer_free(b);
  tch_trainer_free(c);
}

START_TEST(test_training_unaffected_rsmc)
{
  tch_env *e = gmm40_env();
  training_unaffected(e, rsmc_trainer, 4);
  tch_env_free(e);
}
END_TEST

START_TEST(test_training_unaffected_brownian)
{
  tch_env *e = gmm25_env();
  training_unaffected(e, brownian_trainer, 8);
  tch_env_free(e);
}
END_TEST

/* ---- lifetime --------------------------------------------------------------------------- */
START_TEST(test_free_any_order)
{
  tch_env *e = gmm40_env();
  tch_trainer *t = rsmc_trainer(e);
  tch_smc *s = make_smc(t, 16, 4);
  tch_smc *r = tch_smc_retain(s);
  ck_assert_ptr_eq(r, s);
  double x[2 * 16], lz1, lz2;
  OK_CALL(tch_smc_run(s, 5, 16, x, NULL, &lz1));
  /* the host drops the trainer and the env first: the handle keeps them alive */
  tch_trainer_free(t);
  tch_env_free(e);
  tch_smc_free(s);                  /* one of two references */
  OK_CALL(tch_smc_run(r, 5, 16, x, NULL, &lz2));
  ck_assert(same_bits(&lz1, &lz2, sizeof lz1));
  tch_smc_free(r);                  /* the last: releases trainer and env (ASan checks) */
}
END_TEST

/* ---- callback errors -------------------------------------------------------------------- */
typedef struct host { tch_env *gmm; int fail; } host;

static int host_density(void *user, size_t n, size_t dim, const double *x, double *lp, double *g)
{
  host *h = user;
  (void)g;
  if (h->fail) {
    tch_set_callback_error("host energy refused");
    return 42;
  }
  return tch_env_log_density(h->gmm, n, x, lp, NULL) == TCH_OK && dim == 2 ? 0 : 1;
}

START_TEST(test_callback_error)
{
  host h = {gmm25_env(), 0};
  tch_config *c;
  OK_CALL(tch_config_create(&c));
  OK_CALL(tch_config_set_int(c, "env.diffusion.steps", TS));
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = 2;
  d.log_density = host_density;
  d.user = &h;
  tch_env *e;
  OK_CALL(tch_env_create_energy(&d, c, &e));
  tch_config_free(c);
  tch_trainer *t = brownian_trainer(e);
  tch_smc *s = make_smc(t, 16, 4);
  OK_CALL(tch_smc_run(s, 1, 16, NULL, NULL, NULL));
  h.fail = 1;
  EXPECT_FAIL(TCH_E_CALLBACK, tch_smc_run(s, 1, 16, NULL, NULL, NULL));
  ck_assert_int_eq(tch_last_callback_code(), 42);
  ck_assert(isnan(smc_metric(s, "log_z")));
  double ce[4];
  EXPECT_FAIL(TCH_E_STATE, tch_smc_chunk_stats(s, 4, ce, NULL, NULL));
  h.fail = 0;
  OK_CALL(tch_smc_run(s, 1, 16, NULL, NULL, NULL));
  ck_assert_double_eq(smc_metric(s, "runs"), 2.0);
  tch_smc_free(s);
  tch_trainer_free(t);
  tch_env_free(e);
  tch_env_free(h.gmm);
}
END_TEST

static Suite *suite(void)
{
  Suite *s = suite_create("smc_api");
  TCase *tc = tcase_create("smc_api");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_arguments);
  tcase_add_test(tc, test_discrete_rejected);
  tcase_add_test(tc, test_default_chunks_must_divide);
  tcase_add_test(tc, test_log_weights_match_log_z);
  tcase_add_test(tc, test_resampling_happens);
  tcase_add_test(tc, test_determinism);
  tcase_add_test(tc, test_training_unaffected_rsmc);
  tcase_add_test(tc, test_training_unaffected_brownian);
  tcase_add_test(tc, test_free_any_order);
  tcase_add_test(tc, test_callback_error);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) { return tch_run_suite(suite()); }
