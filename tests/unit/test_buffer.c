/* Replay buffer: FIFO eviction, de-duplication with refresh, rank-based and uniform draws,
 * the digamma inversion, serialisation, backward-rebuilt trajectories, argument checks
 * and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../tch_check.h"
#include "buffers/buffer.h"
#include "envs/env.h"
#include "gfn/gfn.h"
#include "io/io.h"

static tch_buffer *mk(uint32_t rd, size_t cap, tch_priority mode, double k)
{
  tch_buffer *b = NULL;
  ck_assert_int_eq(tch_buffer_create(rd, cap, mode, k, &b), TCH_OK);
  ck_assert_ptr_nonnull(b);
  return b;
}

/* Adds the 2-wide record (v, -v) with log_r = lr and priority pr (NaN: default). */
static void add1(tch_buffer *b, int32_t v, double lr, double pr)
{
  int32_t rec[2] = {v, -v};
  ck_assert_int_eq(tch_buffer_add(b, 1, rec, &lr, isnan(pr) ? NULL : &pr), TCH_OK);
}

static size_t size_of(const tch_buffer *b)
{
  size_t n;
  ck_assert_int_eq(tch_buffer_size(b, &n), TCH_OK);
  return n;
}

/* Checks the FIFO contents: values v[0..n-1] (records (v, -v)) oldest first. */
static void expect_fifo(const tch_buffer *b, const int32_t *v, size_t n)
{
  ck_assert_uint_eq(size_of(b), n);
  for (size_t i = 0; i < n; i++) {
    int32_t rec[2];
    ck_assert_int_eq(tch_buffer_get(b, i, rec, NULL, NULL), TCH_OK);
    ck_assert_int_eq(rec[0], v[i]);
    ck_assert_int_eq(rec[1], -v[i]);
  }
  ck_assert_int_eq(tch_buffer_get(b, n, NULL, NULL, NULL), TCH_E_ARG);
}

START_TEST(fifo_eviction_order)
{
  tch_buffer *b = mk(2, 3, TCH_PRIORITY_NONE, 0.01);
  size_t cap;
  uint32_t rd;
  ck_assert_int_eq(tch_buffer_capacity(b, &cap), TCH_OK);
  ck_assert_int_eq(tch_buffer_record_dim(b, &rd), TCH_OK);
  ck_assert_uint_eq(cap, 3);
  ck_assert_uint_eq(rd, 2);
  ck_assert_uint_eq(size_of(b), 0);
  for (int32_t v = 1; v <= 2; v++) add1(b, v, -v, NAN);
  expect_fifo(b, (int32_t[]){1, 2}, 2);
  for (int32_t v = 3; v <= 5; v++) add1(b, v, -v, NAN);
  expect_fifo(b, (int32_t[]){3, 4, 5}, 3);
  double lr;
  ck_assert_int_eq(tch_buffer_get(b, 0, NULL, &lr, NULL), TCH_OK);
  ck_assert_double_eq(lr, -3.0);
  /* one batch larger than the capacity keeps its last three */
  int32_t recs[10];
  double lrs[5];
  for (int i = 0; i < 5; i++) { recs[2 * i] = 10 + i; recs[2 * i + 1] = -(10 + i); lrs[i] = i; }
  ck_assert_int_eq(tch_buffer_add(b, 5, recs, lrs, NULL), TCH_OK);
  expect_fifo(b, (int32_t[]){12, 13, 14}, 3);
  ck_assert_int_eq(tch_buffer_clear(b), TCH_OK);
  ck_assert_uint_eq(size_of(b), 0);
  add1(b, 7, 0, NAN);
  expect_fifo(b, (int32_t[]){7}, 1);
  tch_buffer_free(b);
}
END_TEST

START_TEST(dedup_refresh_and_eviction_after_refresh)
{
  tch_buffer *b = mk(2, 3, TCH_PRIORITY_TEACHER_REWARD, 0.01);
  add1(b, 1, -1, 10);
  add1(b, 2, -2, 20);
  add1(b, 3, -3, 30);
  add1(b, 1, -1.5, 5);   /* refresh: becomes newest with the new values, size unchanged */
  expect_fifo(b, (int32_t[]){2, 3, 1}, 3);
  double lr, pr;
  ck_assert_int_eq(tch_buffer_get(b, 2, NULL, &lr, &pr), TCH_OK);
  ck_assert_double_eq(lr, -1.5);
  ck_assert_double_eq(pr, 5);
  add1(b, 4, -4, 40);    /* full: evicts 2, the oldest after the refresh */
  expect_fifo(b, (int32_t[]){3, 1, 4}, 3);
  add1(b, 3, -3, 1);     /* refresh the oldest, then evict */
  add1(b, 5, -5, 1);
  expect_fifo(b, (int32_t[]){4, 3, 5}, 3);
  /* a later duplicate in the same call wins */
  int32_t recs[] = {6, -6, 7, -7, 6, -6};
  double lrs[] = {1, 2, 3}, prs[] = {11, 12, 13};
  ck_assert_int_eq(tch_buffer_add(b, 3, recs, lrs, prs), TCH_OK);
  expect_fifo(b, (int32_t[]){5, 7, 6}, 3);
  ck_assert_int_eq(tch_buffer_get(b, 2, NULL, &lr, &pr), TCH_OK);
  ck_assert_double_eq(lr, 3);
  ck_assert_double_eq(pr, 13);
  ck_assert_double_eq(tchi_buffer_max_priority(b), 13);
  tch_buffer_free(b);
}
END_TEST

START_TEST(capacity_one)
{
  tch_buffer *b = mk(2, 1, TCH_PRIORITY_REWARD, 0.01);
  add1(b, 1, 0, NAN);
  add1(b, 2, -1, NAN);
  expect_fifo(b, (int32_t[]){2}, 1);
  add1(b, 2, -3, NAN);
  expect_fifo(b, (int32_t[]){2}, 1);
  int32_t out[8];
  double lr[4];
  ck_assert_int_eq(tch_buffer_sample(b, 1, 4, out, lr), TCH_OK);
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(out[2 * i], 2);
    ck_assert_double_eq(lr[i], -3);
  }
  tch_buffer_free(b);
  b = mk(1, 1, TCH_PRIORITY_NONE, 0.01);
  int32_t v = 4;
  double l = 0;
  ck_assert_int_eq(tch_buffer_add(b, 1, &v, &l, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_sample(b, 1, 3, out, NULL), TCH_OK);
  ck_assert_int_eq(out[2], 4);
  tch_buffer_free(b);
}
END_TEST

/* Draw frequencies of a 5-item buffer match w_r = 1/(kN + r) normalised. Counts are
 * binomial: each is checked within 5 standard errors sqrt(n p (1 - p)) of n p (a false
 * alarm has probability < 3e-6 per rank). Ties are ranked by age (older first). */
static void check_rank_freqs(double k)
{
  tch_buffer *b = mk(2, 8, TCH_PRIORITY_TEACHER_REWARD, k);
  /* insertion order 1..5; priorities 3, 1, 3, 2, 1 -> ranks: 1:0, 3:1, 4:2, 2:3, 5:4 */
  const double pr[] = {3, 1, 3, 2, 1};
  const size_t rank_of[] = {0, 3, 1, 2, 4};
  for (int v = 1; v <= 5; v++) add1(b, v, -v, pr[v - 1]);
  const size_t n = 200000;
  int32_t *out = malloc(n * 2 * sizeof *out);
  double *lr = malloc(n * sizeof *lr);
  ck_assert_int_eq(tch_buffer_sample(b, 42, n, out, lr), TCH_OK);
  size_t cnt[5] = {0};
  for (size_t i = 0; i < n; i++) {
    int32_t v = out[2 * i];
    ck_assert(v >= 1 && v <= 5);
    ck_assert_double_eq(lr[i], -v);
    cnt[rank_of[v - 1]]++;
  }
  double w[5], tot = 0;
  for (int r = 0; r < 5; r++) tot += w[r] = 1.0 / (k * 5 + r);
  for (int r = 0; r < 5; r++) {
    double p = w[r] / tot, se = sqrt(n * p * (1 - p));
    ck_assert_msg(fabs(cnt[r] - n * p) <= 5 * se, "k %g rank %d: %zu draws, expected %.1f +- %.1f",
                  k, r, cnt[r], n * p, se);
  }
  /* same seed, same draws */
  int32_t again[20];
  ck_assert_int_eq(tch_buffer_sample(b, 42, 10, again, NULL), TCH_OK);
  ck_assert_mem_eq(again, out, sizeof again);
  free(out);
  free(lr);
  tch_buffer_free(b);
}

START_TEST(priority_sampling_frequencies)
{
  check_rank_freqs(1.0);
  check_rank_freqs(0.01);
  check_rank_freqs(0.3);
}
END_TEST

START_TEST(uniform_sampling_frequencies)
{
  tch_buffer *b = mk(2, 5, TCH_PRIORITY_NONE, 0.01);
  for (int v = 0; v < 7; v++) add1(b, v, 0, v == 3 ? 100.0 : NAN);   /* priorities ignored */
  const size_t n = 200000;
  int32_t *out = malloc(n * 2 * sizeof *out);
  ck_assert_int_eq(tch_buffer_sample(b, 7, n, out, NULL), TCH_OK);
  size_t cnt[7] = {0};
  for (size_t i = 0; i < n; i++) cnt[out[2 * i]]++;
  ck_assert_uint_eq(cnt[0] + cnt[1], 0);
  double p = 0.2, se = sqrt(n * p * (1 - p));   /* 5 standard errors, as above */
  for (int v = 2; v < 7; v++) ck_assert(fabs(cnt[v] - n * p) <= 5 * se);
  free(out);
  tch_buffer_free(b);
}
END_TEST

START_TEST(digamma_matches_direct_sums)
{
  const double gamma = 0.57721566490153286061;
  ck_assert_double_eq_tol(tchi_digamma(1.0), -gamma, 1e-15);
  ck_assert_double_eq_tol(tchi_digamma(0.5), -gamma - 2 * log(2.0), 1e-14);
  ck_assert_double_eq_tol(tchi_digamma(2.0), 1 - gamma, 1e-15);
  const double xs[] = {1e-6, 0.001, 0.05, 0.7, 1.4616321449683622, 3.3, 5.999, 6, 9.99, 10,
                       10.5, 123.4, 5e4, 1e6, 1e9};
  const size_t ns[] = {1, 2, 7, 100, 3000};
  for (size_t i = 0; i < sizeof xs / sizeof *xs; i++)
    for (size_t j = 0; j < sizeof ns / sizeof *ns; j++) {
      double x = xs[i], sum = 0, c = 0;   /* Kahan-compensated sum of 1/(x + m) */
      for (size_t m = ns[j]; m-- > 0;) {
        double y = 1.0 / (x + (double)m) - c, t = sum + y;
        c = (t - sum) - y;
        sum = t;
      }
      double d = tchi_digamma(x + (double)ns[j]) - tchi_digamma(x);
      double scale = fabs(tchi_digamma(x)) + fabs(tchi_digamma(x + (double)ns[j]));
      ck_assert_msg(fabs(d - sum) <= 1e-13 * fmax(1.0, scale),
                    "x %g n %zu: psi difference %.17g, direct sum %.17g", x, ns[j], d, sum);
    }
  /* psi(x + 1) = psi(x) + 1/x, across the recurrence threshold */
  for (double x = 0.25; x < 40; x += 0.37)
    ck_assert_double_eq_tol(tchi_digamma(x + 1), tchi_digamma(x) + 1 / x,
                            1e-14 * fmax(1, fabs(tchi_digamma(x))));
}
END_TEST

START_TEST(rank_inversion_matches_brute_force)
{
  const double as[] = {1e-4, 0.05, 0.5, 1, 7.5, 40};
  const size_t ns[] = {1, 2, 5, 37, 1000};
  tchi_rng rng;
  tchi_rng_seed(&rng, 5, 0);
  double *cum = malloc(1000 * sizeof *cum);
  size_t near_boundary = 0, checked = 0;
  for (size_t i = 0; i < sizeof as / sizeof *as; i++)
    for (size_t j = 0; j < sizeof ns / sizeof *ns; j++) {
      size_t n = ns[j];
      double a = as[i], s = 0;
      for (size_t r = 0; r < n; r++) cum[r] = s += 1.0 / (a + (double)r);
      for (int t = 0; t < 4000; t++) {
        double u = t == 0 ? 0.0 : t == 1 ? 1.0 - 0x1p-53 : tchi_rng_uniform(&rng);
        size_t want = 0;
        while (want + 1 < n && !(cum[want] > u * s)) want++;
        size_t got = tchi_buffer_rank_from_u(a, n, u);
        ck_assert_uint_lt(got, n);
        checked++;
        if (got != want) {
          /* only where u * total lies within rounding of a CDF step */
          size_t lo = got < want ? got : want;
          ck_assert_msg(fabs(cum[lo] - u * s) <= 1e-12 * s,
                        "a %g n %zu u %.17g: rank %zu, brute force %zu", a, n, u, got, want);
          near_boundary++;
        }
      }
    }
  ck_assert_uint_le(near_boundary, checked / 1000);
  free(cum);
  /* the guessed-and-galloping search equals plain bisection on the same predicate */
  const double big_a[] = {1e-300, 0.01, 3, 50, 1e4, 4e7};
  const size_t big_n[] = {2, 5, 5000, 1000000, 1000000, 4000000000u};
  for (size_t i = 0; i < sizeof big_a / sizeof *big_a; i++) {
    double a = big_a[i], pa = tchi_digamma(a);
    size_t n = big_n[i];
    double tot = tchi_digamma(a + (double)n) - pa;
    for (int t = 0; t < 3000; t++) {
      double u = t == 0 ? 0.0 : t == 1 ? 1.0 - 0x1p-53 : tchi_rng_uniform(&rng);
      size_t lo = 0, hi = n - 1;
      while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tchi_digamma(a + (double)mid + 1) - pa > u * tot) hi = mid;
        else lo = mid + 1;
      }
      ck_assert_uint_eq(tchi_buffer_rank_from_u(a, n, u), lo);
    }
    if (a < 1e-100) ck_assert_uint_eq(tchi_buffer_rank_from_u(a, n, 0.999), 0);
  }
}
END_TEST

/* Reference model: a plain array in FIFO order. */
typedef struct ref_item { int32_t v; double lr, pr; uint64_t seq; } ref_item;

static int ref_rank_cmp(const void *x, const void *y)
{
  const ref_item *a = x, *b = y;
  if (a->pr != b->pr) return a->pr > b->pr ? -1 : 1;
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

START_TEST(matches_reference_model)
{
  for (int mode = 0; mode <= 3; mode++) {
    const size_t cap = 40;
    tch_buffer *b = mk(2, cap, (tch_priority)mode, 0.05);
    ref_item ref[64], sorted[64];
    size_t m = 0;
    uint64_t seq = 1;
    tchi_rng rng, draw, mirror;
    tchi_rng_seed(&rng, 100 + mode, 0);
    tchi_rng_seed(&draw, 200 + mode, 0);
    for (int step = 0; step < 3000; step++) {
      size_t nb = 1 + tchi_rng_below(&rng, 4);
      int32_t recs[8];
      double lrs[4], prs[4];
      for (size_t i = 0; i < nb; i++) {
        int32_t v = (int32_t)tchi_rng_below(&rng, 70);
        recs[2 * i] = v;
        recs[2 * i + 1] = -v;
        lrs[i] = -(double)tchi_rng_below(&rng, 9);
        prs[i] = (double)tchi_rng_below(&rng, 6);   /* many ties */
      }
      int with_pr = tchi_rng_below(&rng, 3) != 0;
      double def = mode == 2 || mode == 3 ? (m ? -INFINITY : 1.0) : 1.0;
      if ((mode == 2 || mode == 3) && m)
        for (size_t i = 0; i < m; i++) def = fmax(def, ref[i].pr);
      ck_assert_int_eq(tch_buffer_add(b, nb, recs, lrs, with_pr ? prs : NULL), TCH_OK);
      for (size_t i = 0; i < nb; i++) {
        double pr = with_pr ? prs[i] : mode == 1 ? exp(lrs[i]) : def;
        size_t j = 0;
        while (j < m && ref[j].v != recs[2 * i]) j++;
        if (j < m) memmove(ref + j, ref + j + 1, (--m - j) * sizeof *ref);
        else if (m == cap) memmove(ref, ref + 1, (--m) * sizeof *ref);
        ref[m++] = (ref_item){recs[2 * i], lrs[i], pr, seq++};
      }
      ck_assert_uint_eq(size_of(b), m);
      if (step % 97 == 0 || step > 2990)
        for (size_t i = 0; i < m; i++) {
          int32_t rec[2];
          double lr, pr;
          ck_assert_int_eq(tch_buffer_get(b, i, rec, &lr, &pr), TCH_OK);
          ck_assert_int_eq(rec[0], ref[i].v);
          ck_assert_double_eq(lr, ref[i].lr);
          ck_assert_double_eq(pr, ref[i].pr);
        }
      /* draws: replay the rng to predict the item from the model */
      mirror = draw;
      int32_t out[6];
      double olr[3];
      ck_assert_int_eq(tchi_buffer_sample(b, &draw, 3, out, olr), TCH_OK);
      memcpy(sorted, ref, m * sizeof *ref);
      qsort(sorted, m, sizeof *sorted, ref_rank_cmp);
      for (int d = 0; d < 3; d++) {
        const ref_item *it;
        if (mode == 0) {
          it = &ref[tchi_rng_below(&mirror, (uint32_t)m)];
        } else {
          double u = tchi_rng_uniform(&mirror);
          it = &sorted[tchi_buffer_rank_from_u(0.05 * (double)m, m, u)];
        }
        ck_assert_int_eq(out[2 * d], it->v);
        ck_assert_double_eq(olr[d], it->lr);
      }
      if (m) ck_assert_double_eq(tchi_buffer_max_priority(b), sorted[0].pr);
    }
    tch_buffer_free(b);
  }
}
END_TEST

/* An in-memory reader over a writer's bytes (not closed: the writer owns them). */
static tchi_reader mem_reader(const tchi_writer *w, size_t len)
{
  tchi_reader r = {.buf = w->buf, .len = len, .pos = 0, .path = "memory", .failed = 0};
  return r;
}

START_TEST(serialise_roundtrip_samples_identically)
{
  for (int mode = 0; mode <= 3; mode++) {
    tch_buffer *b = mk(3, 50, (tch_priority)mode, 0.02);
    tchi_rng rng;
    tchi_rng_seed(&rng, 77, 0);
    for (int i = 0; i < 400; i++) {   /* churn: refreshes, evictions, freed slots */
      int32_t rec[3] = {(int32_t)tchi_rng_below(&rng, 90), 1, -2};
      double lr = -tchi_rng_uniform(&rng), pr = tchi_rng_below(&rng, 4);
      ck_assert_int_eq(tch_buffer_add(b, 1, rec, &lr, &pr), TCH_OK);
    }
    tchi_writer w;
    tchi_writer_init(&w);
    tchi_buffer_write(b, &w);
    ck_assert_int_eq(w.status, TCH_OK);
    tchi_reader r = mem_reader(&w, w.len);
    tch_buffer *c = NULL;
    ck_assert_int_eq(tchi_buffer_read(&r, &c), TCH_OK);
    ck_assert_uint_eq(r.pos, r.len);
    ck_assert_uint_eq(size_of(c), size_of(b));
    ck_assert_int_eq(c->priority, mode);
    ck_assert_uint_eq(c->capacity, 50);
    ck_assert_double_eq(c->rank_k, 0.02);
    for (size_t i = 0; i < size_of(b); i++) {
      int32_t r1[3], r2[3];
      double l1, l2, p1, p2;
      ck_assert_int_eq(tch_buffer_get(b, i, r1, &l1, &p1), TCH_OK);
      ck_assert_int_eq(tch_buffer_get(c, i, r2, &l2, &p2), TCH_OK);
      ck_assert_mem_eq(r1, r2, sizeof r1);
      ck_assert_double_eq(l1, l2);
      ck_assert_double_eq(p1, p2);
    }
    /* same rng -> same draws; then the same further adds keep them in step */
    for (int round = 0; round < 2; round++) {
      tchi_rng s1, s2;
      tchi_rng_seed(&s1, 9 + round, 1);
      s2 = s1;
      int32_t o1[3 * 500], o2[3 * 500];
      double l1[500], l2[500];
      ck_assert_int_eq(tchi_buffer_sample(b, &s1, 500, o1, l1), TCH_OK);
      ck_assert_int_eq(tchi_buffer_sample(c, &s2, 500, o2, l2), TCH_OK);
      ck_assert_mem_eq(o1, o2, sizeof o1);
      ck_assert_mem_eq(l1, l2, sizeof l1);
      int32_t rec[3] = {5, 1, -2};
      double lr = 0.5;
      ck_assert_int_eq(tch_buffer_add(b, 1, rec, &lr, NULL), TCH_OK);
      ck_assert_int_eq(tch_buffer_add(c, 1, rec, &lr, NULL), TCH_OK);
    }
    /* every truncation fails cleanly with TCH_E_IO */
    for (size_t len = 0; len < w.len; len += (len < 64 ? 1 : 7)) {
      tchi_reader t = mem_reader(&w, len);
      tch_buffer *d = (tch_buffer *)&t;
      ck_assert_int_eq(tchi_buffer_read(&t, &d), TCH_E_IO);
      ck_assert_ptr_null(d);
    }
    tchi_writer_destroy(&w);
    tch_buffer_free(c);
    tch_buffer_free(b);
  }
}
END_TEST

START_TEST(read_rejects_malformed_sections)
{
  tch_buffer *b = mk(2, 4, TCH_PRIORITY_REWARD, 0.01);
  add1(b, 1, 0, NAN);
  add1(b, 2, -1, NAN);
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_buffer_write(b, &w);
  ck_assert_int_eq(w.status, TCH_OK);
  /* header: tag 0, format 4, rd 8, mode 12, cap 16, k 24, n 32, next 40; items at 48
   * (seq 0, log_r 8, prio 16, record 24; 32 bytes each) */
  struct { size_t off; int size; uint64_t val; tch_status want; } cases[] = {
    {0, 4, 0x12345678, TCH_E_IO},          /* tag */
    {4, 4, 2, TCH_E_VERSION},              /* format */
    {8, 4, 0, TCH_E_IO},                   /* record_dim 0 */
    {12, 4, 9, TCH_E_IO},                  /* priority mode */
    {16, 8, 0, TCH_E_IO},                  /* capacity 0 */
    {16, 8, 1, TCH_E_IO},                  /* n > capacity */
    {32, 8, 1000, TCH_E_IO},               /* n beyond the data */
    {40, 8, 2, TCH_E_IO},                  /* next seq <= last seq */
    {48 + 32, 8, 1, TCH_E_IO},             /* seqs not increasing */
    {48 + 32 + 24, 4, 1, TCH_E_IO},        /* duplicate record (1, -1)... */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    unsigned char save[8];
    memcpy(save, w.buf + cases[i].off, 8);
    if (cases[i].size == 4) {
      uint32_t v = (uint32_t)cases[i].val;
      memcpy(w.buf + cases[i].off, &v, 4);
    } else {
      memcpy(w.buf + cases[i].off, &cases[i].val, 8);
    }
    if (i + 1 == sizeof cases / sizeof *cases) {   /* ... needs both coordinates */
      int32_t m1 = -1;
      memcpy(w.buf + cases[i].off + 4, &m1, 4);
    }
    tchi_reader r = mem_reader(&w, w.len);
    tch_buffer *c = NULL;
    ck_assert_msg(tchi_buffer_read(&r, &c) == cases[i].want, "case %zu", i);
    ck_assert_ptr_null(c);
    memcpy(w.buf + cases[i].off, save, 8);
  }
  double bad[] = {NAN, INFINITY};
  for (int j = 0; j < 2; j++) {   /* NaN log_r, infinite priority */
    size_t off = 48 + 8 + 8 * (size_t)j;
    unsigned char save[8];
    memcpy(save, w.buf + off, 8);
    memcpy(w.buf + off, &bad[j], 8);
    tchi_reader r = mem_reader(&w, w.len);
    tch_buffer *c = NULL;
    ck_assert_int_eq(tchi_buffer_read(&r, &c), TCH_E_IO);
    memcpy(w.buf + off, save, 8);
  }
  tchi_reader r = mem_reader(&w, w.len);
  tch_buffer *c = NULL;
  ck_assert_int_eq(tchi_buffer_read(&r, &c), TCH_OK);
  expect_fifo(c, (int32_t[]){1, 2}, 2);
  tch_buffer_free(c);
  tchi_writer_destroy(&w);
  tch_buffer_free(b);
}
END_TEST

START_TEST(nan_rejection_leaves_buffer_unchanged)
{
  tch_buffer *b = mk(2, 4, TCH_PRIORITY_LOSS, 0.01);
  add1(b, 1, -1, 3);
  add1(b, 2, -2, 4);
  int32_t recs[] = {1, -1, 3, -3, 4, -4};   /* would refresh 1 and add 3, 4 */
  double lr_ok[] = {0, 0, 0}, lr_nan[] = {0, NAN, 0}, lr_inf[] = {0, 0, INFINITY};
  double pr_nan[] = {1, 1, NAN}, pr_inf[] = {-INFINITY, 1, 1}, pr_ok[] = {1, 2, 3};
  ck_assert_int_eq(tch_buffer_add(b, 3, recs, lr_nan, pr_ok), TCH_E_NUMERIC);
  ck_assert_int_eq(tch_buffer_add(b, 3, recs, lr_inf, pr_ok), TCH_E_NUMERIC);
  ck_assert_int_eq(tch_buffer_add(b, 3, recs, lr_ok, pr_nan), TCH_E_NUMERIC);
  ck_assert_int_eq(tch_buffer_add(b, 3, recs, lr_ok, pr_inf), TCH_E_NUMERIC);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 3, recs, lr_nan), TCH_E_NUMERIC);
  expect_fifo(b, (int32_t[]){1, 2}, 2);
  double lr, pr;
  ck_assert_int_eq(tch_buffer_get(b, 0, NULL, &lr, &pr), TCH_OK);
  ck_assert_double_eq(lr, -1);
  ck_assert_double_eq(pr, 3);
  /* log_r = -inf is a reward of 0: allowed */
  double lr_m[] = {-INFINITY};
  ck_assert_int_eq(tch_buffer_add(b, 1, recs + 4, lr_m, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_get(b, 2, NULL, &lr, NULL), TCH_OK);
  ck_assert(isinf(lr) && lr < 0);
  tch_buffer_free(b);
  /* REWARD default priority exp(log_r) must be finite */
  b = mk(2, 4, TCH_PRIORITY_REWARD, 0.01);
  double big[] = {800};
  ck_assert_int_eq(tch_buffer_add_discrete(b, 1, recs, big), TCH_E_NUMERIC);
  ck_assert_uint_eq(size_of(b), 0);
  tch_buffer_free(b);
}
END_TEST

START_TEST(add_discrete_priority_defaults)
{
  int32_t recs[] = {1, -1, 2, -2, 3, -3};
  double lrs[] = {log(2.0), log(0.5), 0.0};
  tch_buffer *b = mk(2, 8, TCH_PRIORITY_REWARD, 0.01);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 3, recs, lrs), TCH_OK);
  for (size_t i = 0; i < 3; i++) {
    double pr;
    ck_assert_int_eq(tch_buffer_get(b, i, NULL, NULL, &pr), TCH_OK);
    ck_assert_double_eq_tol(pr, exp(lrs[i]), 1e-15);
  }
  tch_buffer_free(b);
  for (int mode = 2; mode <= 3; mode++) {
    b = mk(2, 8, (tch_priority)mode, 0.01);
    ck_assert_double_eq(tchi_buffer_max_priority(b), 1.0);
    ck_assert_int_eq(tch_buffer_add_discrete(b, 2, recs, lrs), TCH_OK);   /* empty: 1.0 */
    double pr;
    for (size_t i = 0; i < 2; i++) {
      ck_assert_int_eq(tch_buffer_get(b, i, NULL, NULL, &pr), TCH_OK);
      ck_assert_double_eq(pr, 1.0);
    }
    int32_t r4[] = {4, -4}, r5[] = {5, -5};
    double p4 = 7.5, p5 = 0.25, l0 = 0;
    ck_assert_int_eq(tch_buffer_add(b, 1, r4, &l0, &p4), TCH_OK);
    ck_assert_int_eq(tch_buffer_add(b, 1, r5, &l0, &p5), TCH_OK);
    ck_assert_int_eq(tch_buffer_add_discrete(b, 1, recs + 4, lrs + 2), TCH_OK);
    ck_assert_int_eq(tch_buffer_get(b, 4, NULL, NULL, &pr), TCH_OK);
    ck_assert_double_eq(pr, 7.5);
    tch_buffer_free(b);
  }
  b = mk(2, 8, TCH_PRIORITY_NONE, 0.01);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 1, recs, lrs), TCH_OK);
  double pr;
  ck_assert_int_eq(tch_buffer_get(b, 0, NULL, NULL, &pr), TCH_OK);
  ck_assert_double_eq(pr, 1.0);
  tch_buffer_free(b);
}
END_TEST

START_TEST(sample_trajectories_on_hypergrid)
{
  tch_env *env;
  tch_policy *p;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 6, 1.0, &env), TCH_OK);
  ck_assert_int_eq(tch_policy_create(env, NULL, 1, &p), TCH_OK);
  tch_buffer *b = mk(2, 16, TCH_PRIORITY_REWARD, 0.5);
  const int32_t x[] = {2, 3, 5, 2, 0, 0, 1, 5, 4, 4};
  double lr[5];
  ck_assert_int_eq(tchi_env_log_reward(env, 5, x, -INFINITY, lr), TCH_OK);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 5, x, lr), TCH_OK);
  const size_t n = 300, T = 11;   /* max_len = 2 * (6 - 1) = 10 */
  ck_assert_uint_eq(env->d.max_len + 1, T);
  int32_t *st = malloc(n * T * 2 * sizeof *st), *ac = malloc(n * T * sizeof *ac);
  uint32_t *len = malloc(n * sizeof *len);
  double *olr = malloc(n * sizeof *olr);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, env, 3, n, st, ac, len, olr), TCH_OK);
  size_t seen[5] = {0};
  for (size_t i = 0; i < n; i++) {
    size_t L = len[i];
    const int32_t *xi = st + (i * T + L - 1) * 2;
    int which = -1;
    for (int j = 0; j < 5; j++)
      if (xi[0] == x[2 * j] && xi[1] == x[2 * j + 1]) which = j;
    ck_assert_int_ge(which, 0);
    seen[which]++;
    ck_assert_double_eq(olr[i], lr[which]);
    ck_assert_uint_eq(L, (size_t)(xi[0] + xi[1]) + 1);
    ck_assert_int_eq(st[i * T * 2], 0);
    ck_assert_int_eq(st[i * T * 2 + 1], 0);
    ck_assert_int_eq(ac[i * T + L - 1], 2);   /* EXIT */
    for (size_t k = 0; k + 1 < L; k++) {
      int32_t s[2] = {st[(i * T + k) * 2], st[(i * T + k) * 2 + 1]};
      int32_t a = ac[i * T + k];
      ck_assert(a == 0 || a == 1);
      s[a]++;
      ck_assert_int_eq(s[0], st[(i * T + k + 1) * 2]);
      ck_assert_int_eq(s[1], st[(i * T + k + 1) * 2 + 1]);
    }
    for (size_t k = L; k < T; k++) {
      ck_assert_int_eq(ac[i * T + k], -1);
      ck_assert_int_eq(st[(i * T + k) * 2], 0);
      ck_assert_int_eq(st[(i * T + k) * 2 + 1], 0);
    }
  }
  for (int j = 0; j < 5; j++) ck_assert_uint_gt(seen[j], 0);   /* k = 0.5: all ranks drawn */
  /* the same seed replays; out_log_r may be NULL */
  int32_t *st2 = malloc(n * T * 2 * sizeof *st2);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, env, 3, n, st2, ac, len, NULL), TCH_OK);
  ck_assert_mem_eq(st, st2, n * T * 2 * sizeof *st);
  /* record_dim must match; empty buffer is a state error */
  tch_buffer *b3 = mk(3, 4, TCH_PRIORITY_NONE, 0.01), *e2 = mk(2, 4, TCH_PRIORITY_NONE, 0.01);
  int32_t r3[] = {1, 1, 1};
  double z = 0;
  ck_assert_int_eq(tch_buffer_add(b3, 1, r3, &z, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b3, p, env, 3, 1, st, ac, len, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(e2, p, env, 3, 1, st, ac, len, NULL), TCH_E_STATE);
  tch_buffer_free(b3);
  tch_buffer_free(e2);
  free(st); free(st2); free(ac); free(len); free(olr);
  tch_buffer_free(b);
  tch_policy_free(p);
  tch_env_free(env);
}
END_TEST

START_TEST(public_functions_reject_null_and_bad_args)
{
  tch_buffer *b = NULL;
  ck_assert_int_eq(tch_buffer_create(2, 4, TCH_PRIORITY_NONE, 0.01, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(0, 4, TCH_PRIORITY_NONE, 0.01, &b), TCH_E_ARG);
  ck_assert_ptr_null(b);
  ck_assert_int_eq(tch_buffer_create(2, 0, TCH_PRIORITY_NONE, 0.01, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(2, 4, (tch_priority)4, 0.01, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(2, 4, (tch_priority)-1, 0.01, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(2, 4, TCH_PRIORITY_NONE, 0.0, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(2, 4, TCH_PRIORITY_NONE, -1.0, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(2, 4, TCH_PRIORITY_NONE, NAN, &b), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_create(2, 4, TCH_PRIORITY_NONE, INFINITY, &b), TCH_E_ARG);
  ck_assert_ptr_null(b);
  b = mk(2, 4, TCH_PRIORITY_REWARD, 0.01);
  ck_assert_ptr_eq(tch_buffer_retain(b), b);
  tch_buffer_free(b);               /* the retained reference keeps it alive */
  ck_assert_ptr_null(tch_buffer_retain(NULL));
  tch_buffer_free(NULL);
  int32_t rec[2] = {1, 2};
  double lr = 0, pr = 1;
  size_t sz;
  uint32_t rd;
  ck_assert_int_eq(tch_buffer_add(NULL, 1, rec, &lr, &pr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_add(b, 1, NULL, &lr, &pr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_add(b, 1, rec, NULL, &pr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_add(b, 0, NULL, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_add_discrete(NULL, 1, rec, &lr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 1, NULL, &lr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_add_discrete(b, 1, rec, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample(NULL, 1, 1, rec, &lr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample(b, 1, 1, rec, &lr), TCH_E_STATE);   /* empty */
  ck_assert_int_eq(tch_buffer_sample(b, 1, 0, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_size(NULL, &sz), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_size(b, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_capacity(NULL, &sz), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_capacity(b, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_record_dim(NULL, &rd), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_record_dim(b, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_get(NULL, 0, rec, &lr, &pr), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_get(b, 0, rec, &lr, &pr), TCH_E_ARG);   /* index >= size */
  ck_assert_int_eq(tch_buffer_clear(NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_add(b, 1, rec, &lr, &pr), TCH_OK);
  ck_assert_int_eq(tch_buffer_sample(b, 1, 1, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_get(b, 0, NULL, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_buffer_get(b, 1, NULL, NULL, NULL), TCH_E_ARG);

  tch_env *env;
  tch_policy *p;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &env), TCH_OK);
  ck_assert_int_eq(tch_policy_create(env, NULL, 1, &p), TCH_OK);
  int32_t st[2 * 7], ac[7];
  uint32_t len[1];
  ck_assert_int_eq(tch_buffer_sample_trajectories(NULL, p, env, 1, 1, st, ac, len, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, NULL, env, 1, 1, st, ac, len, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, NULL, 1, 1, st, ac, len, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, env, 1, 1, NULL, ac, len, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, env, 1, 1, st, NULL, len, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, env, 1, 1, st, ac, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_buffer_sample_trajectories(b, p, env, 1, 1, st, ac, len, NULL), TCH_OK);
  ck_assert_uint_eq(len[0], 4);   /* (1, 2) */
  tch_policy_free(p);
  tch_env_free(env);
  tch_buffer_free(b);
}
END_TEST

/* The fault_n-th library allocation of the sequence fails: arm() before each call under
 * test, disarm() after it (test-side allocations never fail). */
static uint64_t fault_n, fault_used;
static void arm(void) { tchi_alloc_fail_at(fault_n > fault_used ? fault_n - fault_used : UINT64_MAX); }
static void disarm(void)
{
  fault_used += tchi_alloc_count();
  tchi_alloc_fail_at(0);
}

static int ok_or_nomem(tch_status s)
{
  ck_assert_msg(s == TCH_OK || s == TCH_E_NOMEM, "status %d", (int)s);
  return s == TCH_OK;
}

START_TEST(allocation_failures)
{
  int32_t recs[2 * 60];
  double lrs[60], prs[60];
  for (int i = 0; i < 60; i++) {
    recs[2 * i] = i % 45;
    recs[2 * i + 1] = 3;
    lrs[i] = -i * 0.1;
    prs[i] = i % 7;
  }
  int failures = 0;
  for (fault_n = 1;; fault_n++) {
    ck_assert_uint_lt(fault_n, 10000);
    fault_used = 0;
    tch_buffer *b = NULL, *c = NULL;
    int all_ok = 1;
    arm();
    tch_status s = tch_buffer_create(2, 40, TCH_PRIORITY_TEACHER_REWARD, 0.01, &b);
    disarm();
    if (!ok_or_nomem(s)) { all_ok = 0; ck_assert_ptr_null(b); goto next; }
    arm();
    s = tch_buffer_add(b, 10, recs, lrs, prs);
    disarm();
    if (!ok_or_nomem(s)) { all_ok = 0; ck_assert_uint_eq(size_of(b), 0); goto next; }
    arm();
    s = tch_buffer_add(b, 50, recs + 20, lrs + 10, NULL);   /* grows past 16, evicts */
    disarm();
    if (!ok_or_nomem(s)) {
      all_ok = 0;
      ck_assert_uint_eq(size_of(b), 10);   /* unchanged */
      double lr;
      ck_assert_int_eq(tch_buffer_get(b, 9, NULL, &lr, NULL), TCH_OK);
      ck_assert_double_eq(lr, lrs[9]);
      goto next;
    }
    ck_assert_uint_eq(size_of(b), 40);
    int32_t out[20];
    arm();
    s = tch_buffer_sample(b, 3, 10, out, NULL);
    disarm();
    if (!ok_or_nomem(s)) { all_ok = 0; goto next; }
    tchi_writer w;
    tchi_writer_init(&w);
    arm();
    tchi_buffer_write(b, &w);
    disarm();
    if (!ok_or_nomem(w.status)) { all_ok = 0; tchi_writer_destroy(&w); goto next; }
    tchi_reader r = mem_reader(&w, w.len);
    arm();
    s = tchi_buffer_read(&r, &c);
    disarm();
    tchi_writer_destroy(&w);
    if (!ok_or_nomem(s)) { all_ok = 0; ck_assert_ptr_null(c); goto next; }
    arm();
    s = tch_buffer_add(c, 5, recs, lrs, prs);
    disarm();
    if (!ok_or_nomem(s)) { all_ok = 0; goto next; }
  next:
    if (!all_ok) failures++;
    tch_buffer_free(c);
    tch_buffer_free(b);
    if (all_ok) break;
  }
  ck_assert_int_gt(failures, 5);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("buffer");
  TCase *tc = tcase_create("buffer");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, fifo_eviction_order);
  tcase_add_test(tc, dedup_refresh_and_eviction_after_refresh);
  tcase_add_test(tc, capacity_one);
  tcase_add_test(tc, priority_sampling_frequencies);
  tcase_add_test(tc, uniform_sampling_frequencies);
  tcase_add_test(tc, digamma_matches_direct_sums);
  tcase_add_test(tc, rank_inversion_matches_brute_force);
  tcase_add_test(tc, matches_reference_model);
  tcase_add_test(tc, serialise_roundtrip_samples_identically);
  tcase_add_test(tc, read_rejects_malformed_sections);
  tcase_add_test(tc, nan_rejection_leaves_buffer_unchanged);
  tcase_add_test(tc, add_discrete_priority_defaults);
  tcase_add_test(tc, sample_trajectories_on_hypergrid);
  tcase_add_test(tc, public_functions_reject_null_and_bad_args);
  tcase_add_test(tc, allocation_failures);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
