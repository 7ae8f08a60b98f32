/* Environments: the hypergrid (reward values and float asymmetry, terminal set, modes,
 * masks, parents, encoding), exact-target metrics, and the host-callback adaptor (checks
 * of what callbacks return, lifetimes, descriptor versions, NULL arguments, allocation
 * failure). */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "../tch_check.h"
#include "envs/env.h"

/* ---- hypergrid: reward ------------------------------------------------------------ */

START_TEST(hypergrid_reward_values)
{
  const int32_t center[2] = {7, 7}, low[2] = {0, 0}, mode[2] = {2, 12}, edge[2] = {15, 7};
  ck_assert_double_eq_tol(tchi_hypergrid_reward(2, 16, 1.0, center), 0.10001, 1e-15);
  ck_assert_double_eq_tol(tchi_hypergrid_reward(2, 16, 1.0, low), 1e-5, 1e-20);
  ck_assert_double_eq_tol(tchi_hypergrid_reward(2, 16, 1.0, mode), 2.00001, 1e-14);
  ck_assert_double_eq_tol(tchi_hypergrid_reward(2, 16, 1.0, edge), 0.10001, 1e-15);
  /* The low region is exactly 1e-5: -0.1 + 0 + 0.1 cancels exactly in double. */
  ck_assert(tchi_hypergrid_reward(2, 16, 1.0, low) == 1e-5);
  ck_assert_double_eq_tol(tchi_hypergrid_reward(2, 16, 2.0, center), 0.10001 * 0.10001, 1e-15);
  ck_assert(tchi_hypergrid_reward(2, 16, 0.0, mode) == 1.0);
  /* log_reward through the env is log(R), beta = 0 gives exactly 0 */
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 16, 0.0, &e), TCH_OK);
  double lr[3];
  const int32_t st[6] = {7, 7, 0, 0, 2, 12};
  ck_assert_int_eq(tch_env_log_reward(e, 3, st, lr), TCH_OK);
  for (int i = 0; i < 3; i++) ck_assert(lr[i] == 0.0);
  tch_env_free(e);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 16, 1.0, &e), TCH_OK);
  ck_assert_int_eq(tch_env_log_reward(e, 3, st, lr), TCH_OK);
  ck_assert_double_eq_tol(lr[0], log(0.10001), 1e-14);
  ck_assert_double_eq_tol(lr[1], log(1e-5), 1e-13);
  ck_assert_double_eq_tol(lr[2], log(2.00001), 1e-14);
  tch_env_free(e);
}
END_TEST

START_TEST(hypergrid_band_is_asymmetric)
{
  /* Spec 2.2 [computed]: coordinates with 0.6 < |u| < 0.8 in binary floating point. */
  static const struct { uint32_t H; int n; int32_t band[32]; } cases[] = {
    {8, 2, {1, 6}},
    {16, 3, {2, 12, 13}},
    {32, 6, {4, 5, 6, 25, 26, 27}},
    {64, 12, {7, 8, 9, 10, 11, 12, 51, 52, 53, 54, 55, 56}},
    {128, 26, {13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
               102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112, 113, 114}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int k = 0;
    for (int32_t i = 0; i < (int32_t)cases[c].H; i++) {
      double r = tchi_hypergrid_reward(1, cases[c].H, 1.0, &i);
      if (r > 1.0) {
        ck_assert_int_lt(k, cases[c].n);
        ck_assert_int_eq(i, cases[c].band[k]);
        k++;
      }
    }
    ck_assert_int_eq(k, cases[c].n);
  }
  /* H=16: i=3 gives |u| = 0.6 exactly (not in the band), i=12 gives 0.6000000000000001. */
  int32_t s3 = 3, s12 = 12;
  ck_assert(tchi_hypergrid_reward(1, 16, 1.0, &s3) == 1e-5);   /* |u| > 0.2, not in band */
  ck_assert_double_eq_tol(tchi_hypergrid_reward(1, 16, 1.0, &s12), 2.00001, 1e-14);
}
END_TEST

/* ---- hypergrid: exact target --------------------------------------------------------- */

START_TEST(hypergrid_terminal_set_and_modes)
{
  static const struct { uint32_t d, H; size_t nx, modes; } cases[] = {
    {2, 16, 255, 9}, {2, 64, 63 * 63 + 2 * 63, 144}, {4, 16, 64125, 81}, {4, 32, 1042685, 1296},
    {2, 8, 63, 4},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    tch_env *e;
    ck_assert_int_eq(tch_env_create_hypergrid(cases[c].d, cases[c].H, 1.0, &e), TCH_OK);
    size_t nx = 0, nm = 0;
    ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_OK);
    ck_assert_int_eq(tch_env_n_modes(e, &nm), TCH_OK);
    ck_assert_uint_eq(nx, cases[c].nx);
    ck_assert_uint_eq(nm, cases[c].modes);
    /* p sums to 1; modes carry the largest probability */
    double sum = 0, pmax = 0;
    for (size_t i = 0; i < e->exact->n; i++) {
      sum += e->exact->p[i];
      if (e->exact->p[i] > pmax) pmax = e->exact->p[i];
    }
    ck_assert_double_eq_tol(sum, 1.0, 1e-9);
    for (size_t i = 0; i < e->exact->n; i++)
      if (e->exact->is_mode[i]) ck_assert_double_eq_tol(e->exact->p[i], pmax, 1e-15);
    uint32_t sd, na, ml;
    ck_assert_int_eq(tch_env_dims(e, &sd, &na, &ml), TCH_OK);
    ck_assert_uint_eq(sd, cases[c].d);
    ck_assert_uint_eq(na, cases[c].d + 1);
    ck_assert_uint_eq(ml, cases[c].d * (cases[c].H - 1));
    ck_assert_uint_eq(e->in_dim, cases[c].d * cases[c].H);
    tch_env_free(e);
  }
}
END_TEST

START_TEST(hypergrid_enumeration_order)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 4, 1.0, &e), TCH_OK);
  size_t nx;
  ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_OK);
  ck_assert_uint_eq(nx, 15);   /* 16 cells minus (3,3) */
  int32_t st[32];
  double lr[16];
  ck_assert_int_eq(tch_env_enumerate_terminal(e, 16, st, lr), TCH_OK);
  /* mixed-radix order of the full grid, last coordinate fastest, (3,3) skipped */
  size_t k = 0;
  for (int32_t a = 0; a < 4; a++)
    for (int32_t b = 0; b < 4; b++) {
      if (a == 3 && b == 3) continue;
      ck_assert_int_eq(st[2 * k], a);
      ck_assert_int_eq(st[2 * k + 1], b);
      double want;
      ck_assert_int_eq(tch_env_log_reward(e, 1, st + 2 * k, &want), TCH_OK);
      ck_assert(lr[k] == want);
      k++;
    }
  /* cap smaller than |X|; either output may be NULL */
  int32_t two[4] = {-9, -9, -9, -9};
  ck_assert_int_eq(tch_env_enumerate_terminal(e, 1, two, NULL), TCH_OK);
  ck_assert_int_eq(two[0], 0);
  ck_assert_int_eq(two[1], 0);
  ck_assert_int_eq(two[2], -9);
  ck_assert_int_eq(tch_env_enumerate_terminal(e, 3, NULL, lr), TCH_OK);
  ck_assert_int_eq(tch_env_enumerate_terminal(e, 0, NULL, NULL), TCH_OK);
  tch_env_free(e);
}
END_TEST

START_TEST(hypergrid_masks_and_parents)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &e), TCH_OK);
  /* origin, interior, edge-terminated (coordinate 0 at H-1), other edge */
  const int32_t s[8] = {0, 0, 3, 5, 7, 3, 0, 7};
  uint8_t fwd[12], bwd[8];
  ck_assert_int_eq(tchi_env_masks(e, 4, s, fwd, bwd), TCH_OK);
  const uint8_t want_f[12] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 1};
  /* quirk: at (7,3) decrementing coordinate 1 is allowed although (7,2) is terminal */
  const uint8_t want_b[8] = {0, 0, 1, 1, 1, 1, 0, 1};
  ck_assert_mem_eq(fwd, want_f, 12);
  ck_assert_mem_eq(bwd, want_b, 8);
  ck_assert_int_eq(tchi_env_masks(e, 4, s, fwd, NULL), TCH_OK);
  ck_assert_mem_eq(fwd, want_f, 12);
  ck_assert_int_eq(tchi_env_masks(e, 4, s, NULL, bwd), TCH_OK);   /* scratch forward mask */
  ck_assert_mem_eq(bwd, want_b, 8);

  /* parents of (7,3): (6,3) via action 0 and (7,2) via action 1 */
  const int32_t x[4] = {7, 3, 7, 3}, acts[2] = {0, 1};
  int32_t par[4];
  ck_assert_int_eq(tchi_env_backward_step(e, 2, x, acts, par), TCH_OK);
  ck_assert_int_eq(par[0], 6);
  ck_assert_int_eq(par[1], 3);
  ck_assert_int_eq(par[2], 7);
  ck_assert_int_eq(par[3], 2);
  /* only (6,3) allows the forward action back to x (generate_backward's parent set) */
  uint8_t pf[6];
  ck_assert_int_eq(tchi_env_masks(e, 2, par, pf, NULL), TCH_OK);
  ck_assert_uint_eq(pf[0], 1);   /* (6,3), action 0 */
  ck_assert_uint_eq(pf[3 + 1], 0);   /* (7,2), action 1 */
  ck_assert_uint_eq(pf[3 + 2], 1);

  /* s0 */
  const int32_t z[2] = {0, 0};
  ck_assert(tchi_env_is_s0(e, z));
  ck_assert(!tchi_env_is_s0(e, s + 2));
  tch_env_free(e);
}
END_TEST

START_TEST(hypergrid_step_round_trip_and_errors)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(3, 8, 1.0, &e), TCH_OK);
  tchi_rng r;
  tchi_rng_seed(&r, 5, 0);
  enum { N = 200 };
  int32_t s[N * 3], a[N], c[N * 3], b[N * 3];
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < 3; j++) s[3 * i + j] = (int32_t)tchi_rng_below(&r, 7);   /* < H-1 */
    a[i] = (int32_t)tchi_rng_below(&r, 3);
  }
  ck_assert_int_eq(tchi_env_step(e, N, s, a, c), TCH_OK);
  for (int i = 0; i < N; i++)
    for (int j = 0; j < 3; j++) ck_assert_int_eq(c[3 * i + j], s[3 * i + j] + (j == a[i]));
  ck_assert_int_eq(tchi_env_backward_step(e, N, c, a, b), TCH_OK);
  ck_assert_mem_eq(b, s, sizeof s);
  /* in place */
  memcpy(b, s, sizeof s);
  ck_assert_int_eq(tchi_env_step(e, N, b, a, b), TCH_OK);
  ck_assert_mem_eq(b, c, sizeof c);
  ck_assert_int_eq(tchi_env_step(e, 0, NULL, NULL, NULL), TCH_OK);

  /* EXIT never reaches step: the wrapper rejects it; the callback itself also does */
  int32_t exit_a = 3, out[3];
  ck_assert_int_eq(tchi_env_step(e, 1, s, &exit_a, out), TCH_E_ARG);
  tch_set_callback_error("");
  ck_assert_int_ne(e->d.step(e->d.user, 1, s, &exit_a, out), 0);
  /* stepping out of a terminal state or below zero: the callback fails with text; a
   * built-in env reports states that are not part of it as bad arguments */
  const int32_t term[3] = {7, 0, 0}, zero[3] = {0, 0, 0};
  int32_t a1 = 1;
  ck_assert_int_eq(tchi_env_step(e, 1, term, &a1, out), TCH_E_ARG);
  ck_assert_int_eq(tch_last_callback_code(), 1);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "terminal"));
  ck_assert_int_eq(tchi_env_backward_step(e, 1, zero, &a1, out), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "backward_step callback returned 1"));
  const int32_t bad[3] = {0, 8, 0};
  double lr;
  ck_assert_int_eq(tch_env_log_reward(e, 1, bad, &lr), TCH_E_ARG);
  ck_assert_int_eq(tch_last_callback_code(), 2);
  tch_env_free(e);
}
END_TEST

START_TEST(hypergrid_encode_one_hot)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(3, 16, 1.0, &e), TCH_OK);
  const int32_t s[6] = {0, 5, 15, 14, 0, 3};
  int32_t idx[6];
  int onehot = -1;
  ck_assert_int_eq(tchi_env_encode(e, 2, s, NULL, idx, &onehot), TCH_OK);
  ck_assert_int_eq(onehot, 1);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < 3; i++) ck_assert_int_eq(idx[3 * r + i], i * 16 + s[3 * r + i]);
  const int32_t bad[3] = {0, 16, 0};
  ck_assert_int_eq(tchi_env_encode(e, 1, bad, NULL, idx, &onehot), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "row 0 position 1"));
  const int32_t pad[3] = {-1, 2, 3};
  ck_assert_int_eq(tchi_env_encode(e, 1, pad, NULL, idx, NULL), TCH_OK);
  ck_assert_int_eq(idx[0], -1);
  ck_assert_int_eq(idx[1], 18);
  ck_assert_int_eq(idx[2], 35);
  tch_env_free(e);
}
END_TEST

/* ---- exact-target metrics ------------------------------------------------------------- */

START_TEST(empirical_l1_hand_computed)
{
  /* d = 1, H = 3: X = {0, 1, 2}, R = {1e-5, 0.10001, 1e-5}. */
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(1, 3, 1.0, &e), TCH_OK);
  size_t nx;
  ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_OK);
  ck_assert_uint_eq(nx, 3);
  const double z = 1e-5 + 0.10001 + 1e-5;
  const double p[3] = {1e-5 / z, 0.10001 / z, 1e-5 / z};
  const int32_t smp[4] = {1, 1, 0, 2};
  double l1;
  ck_assert_int_eq(tch_env_empirical_l1(e, 4, smp, &l1), TCH_OK);
  double want = (fabs(0.25 - p[0]) + fabs(0.5 - p[1]) + fabs(0.25 - p[2])) / 3;
  ck_assert_double_eq_tol(l1, want, 1e-15);
  /* hand values: p = (9.997e-5, 0.99980006, 9.997e-5) */
  ck_assert_double_eq_tol(l1, (0.25 - 1e-5 / z) * 2 / 3 + (0.10001 / z - 0.5) / 3, 1e-15);
  ck_assert_double_eq_tol(l1, 0.3332, 1e-4);
  /* a state outside X is named */
  const int32_t outside[2] = {1, 3};
  ck_assert_int_eq(tch_env_empirical_l1(e, 2, outside, &l1), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "sample 1 (3)"));
  ck_assert_int_eq(tch_env_empirical_l1(e, 0, smp, &l1), TCH_E_ARG);
  tch_env_free(e);

  /* d = 2, H = 3: X = 8 states (all but (2,2)); samples (1,1) x2, (0,2) x2 */
  ck_assert_int_eq(tch_env_create_hypergrid(2, 3, 1.0, &e), TCH_OK);
  ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_OK);
  ck_assert_uint_eq(nx, 8);
  /* R: any coordinate equal to 1 (|u| = 0) -> 0.10001; else 1e-5 */
  double R[8], zz = 0;
  size_t k = 0;
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      if (a == 2 && b == 2) continue;
      R[k] = (a == 1 || b == 1) ? 0.10001 : 1e-5;
      zz += R[k++];
    }
  const int32_t s2[8] = {1, 1, 0, 2, 1, 1, 0, 2};
  ck_assert_int_eq(tch_env_empirical_l1(e, 4, s2, &l1), TCH_OK);
  /* X order: (0,0) (0,1) (0,2) (1,0) (1,1) (1,2) (2,0) (2,1) */
  const double phat[8] = {0, 0, 0.5, 0, 0.5, 0, 0, 0};
  want = 0;
  for (int i = 0; i < 8; i++) want += fabs(phat[i] - R[i] / zz);
  ck_assert_double_eq_tol(l1, want / 8, 1e-15);
  tch_env_free(e);
}
END_TEST

START_TEST(empirical_l1_of_exact_samples_is_small)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 16, 1.0, &e), TCH_OK);
  const tchi_exact_target *x = e->exact;
  enum { N = 100000 };
  int32_t *smp = tchi_malloc(sizeof(int32_t) * 2 * N);
  double *cdf = tchi_malloc(sizeof(double) * x->n);
  ck_assert_ptr_nonnull(smp);
  ck_assert_ptr_nonnull(cdf);
  double acc = 0;
  for (size_t i = 0; i < x->n; i++) cdf[i] = (acc += x->p[i]);
  tchi_rng r;
  tchi_rng_seed(&r, 12345, tchi_stream_id(TCHI_STREAM_EVAL, 0));
  for (int i = 0; i < N; i++) {
    double u = tchi_rng_uniform(&r) * acc;
    size_t lo = 0, hi = x->n - 1;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (cdf[mid] > u) hi = mid; else lo = mid + 1;
    }
    memcpy(smp + 2 * i, x->states + 2 * lo, 2 * sizeof(int32_t));
  }
  double l1;
  ck_assert_int_eq(tch_env_empirical_l1(e, N, smp, &l1), TCH_OK);
  /* E|p_hat - p| <= sqrt(p/N), so E[L1] <= sum_x sqrt(p_x/N) / |X| <= 1/sqrt(|X| N) = 1.98e-4 */
  ck_assert_double_lt(l1, 1.0 / sqrt((double)x->n * N));
  /* all samples at the origin: L1 = (|1 - p0| + sum_{x != 0} p_x) / |X| = 2 (1 - p0) / |X| */
  memset(smp, 0, sizeof(int32_t) * 2 * N);
  ck_assert_int_eq(tch_env_empirical_l1(e, N, smp, &l1), TCH_OK);
  ck_assert_double_eq_tol(l1, 2 * (1 - x->p[0]) / (double)x->n, 1e-15);
  tchi_free(smp);
  tchi_free(cdf);
  tch_env_free(e);
}
END_TEST

START_TEST(count_modes_distinct)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 16, 1.0, &e), TCH_OK);
  /* modes: band {2,12,13}^2 */
  const int32_t s[14] = {2, 2, 2, 2, 13, 12, 7, 7, 2, 2, 0, 0, 12, 13};
  size_t m = 99;
  ck_assert_int_eq(tch_env_count_modes(e, 7, s, &m), TCH_OK);
  ck_assert_uint_eq(m, 3);
  ck_assert_int_eq(tch_env_count_modes(e, 0, NULL, &m), TCH_OK);
  ck_assert_uint_eq(m, 0);
  const int32_t bad[2] = {15, 15};   /* not in X: two coordinates at H-1 */
  ck_assert_int_eq(tch_env_count_modes(e, 1, bad, &m), TCH_E_ARG);
  tch_env_free(e);
}
END_TEST

/* ---- host callbacks ---------------------------------------------------------------- */

/* A line of length 4 in 2 coordinates (state_dim 2, actions: inc 0, inc 1, EXIT), with
 * knobs to make each callback misbehave. */
typedef struct host {
  int fail_code;          /* returned by every callback when non-zero */
  int calls;
  int frees;
  int nan_row;            /* log_reward writes NaN here (-1: none) */
  double special;         /* value written at nan_row */
  int empty_mask_row;     /* forward mask row left all zero (-1: none) */
  int mask_value;         /* value written for valid actions (1 normally) */
  float feat_bad;         /* written into feature column 0 of row 0 */
} host;

static int h_step(void *u, size_t n, const int32_t *s, const int32_t *a, int32_t *o)
{
  host *h = u;
  h->calls++;
  if (h->fail_code) {
    tch_set_callback_error("host step failed on purpose");
    return h->fail_code;
  }
  for (size_t r = 0; r < n; r++) {
    o[2 * r] = s[2 * r] + (a[r] == 0);
    o[2 * r + 1] = s[2 * r + 1] + (a[r] == 1);
  }
  return 0;
}
static int h_back(void *u, size_t n, const int32_t *s, const int32_t *a, int32_t *o)
{
  host *h = u;
  h->calls++;
  for (size_t r = 0; r < n; r++) {
    o[2 * r] = s[2 * r] - (a[r] == 0);
    o[2 * r + 1] = s[2 * r + 1] - (a[r] == 1);
  }
  return 0;
}
static int h_masks(void *u, size_t n, const int32_t *s, uint8_t *f, uint8_t *b)
{
  host *h = u;
  h->calls++;
  if (h->fail_code) return h->fail_code;
  for (size_t r = 0; r < n; r++) {
    if ((int)r == h->empty_mask_row) continue;
    f[3 * r] = (uint8_t)(s[2 * r] < 3 ? h->mask_value : 0);
    f[3 * r + 1] = (uint8_t)(s[2 * r + 1] < 3 ? h->mask_value : 0);
    f[3 * r + 2] = 1;
    if (b) {
      b[2 * r] = s[2 * r] > 0;
      b[2 * r + 1] = s[2 * r + 1] > 0;
    }
  }
  return 0;
}
static int h_log_reward(void *u, size_t n, const int32_t *s, double *o)
{
  host *h = u;
  h->calls++;
  if (h->fail_code) {
    tch_set_callback_error("scorer crashed");
    return h->fail_code;
  }
  for (size_t r = 0; r < n; r++) o[r] = (int)r == h->nan_row ? h->special : (double)(s[2 * r] - s[2 * r + 1]);
  return 0;
}
static int h_features(void *u, size_t n, const int32_t *s, float *o)
{
  host *h = u;
  h->calls++;
  for (size_t r = 0; r < n; r++) {
    o[3 * r] = (float)s[2 * r];
    o[3 * r + 1] = (float)s[2 * r + 1];
    o[3 * r + 2] = 1.0f;
  }
  if (n) o[0] = h->feat_bad;
  return 0;
}
static void h_free(void *u) { ((host *)u)->frees++; }

static const int32_t h_s0[2] = {0, 0};
static const uint32_t h_vocab[2] = {4, 4};

static void host_init(host *h)
{
  memset(h, 0, sizeof *h);
  h->nan_row = -1;
  h->empty_mask_row = -1;
  h->mask_value = 1;
}

static void host_desc(tch_discrete_env_desc *d, host *h)
{
  tch_discrete_env_desc_init(d);
  d->state_dim = 2;
  d->n_actions = 3;
  d->max_len = 6;
  d->s0 = h_s0;
  d->step = h_step;
  d->backward_step = h_back;
  d->masks = h_masks;
  d->log_reward = h_log_reward;
  d->vocab = h_vocab;
  d->user = h;
  d->user_free = h_free;
}

START_TEST(callback_errors_are_reported)
{
  host h;
  host_init(&h);
  tch_discrete_env_desc d;
  host_desc(&d, &h);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_OK);
  ck_assert_uint_eq(e->in_dim, 8);
  const int32_t s[6] = {0, 0, 1, 2, 3, 0};
  const int32_t a[3] = {0, 1, 1};
  int32_t o[6];
  double lr[3];

  /* batched: one call per batch, none for n == 0 */
  ck_assert_int_eq(tchi_env_step(e, 3, s, a, o), TCH_OK);
  ck_assert_int_eq(h.calls, 1);
  ck_assert_int_eq(tchi_env_step(e, 0, s, a, o), TCH_OK);
  ck_assert_int_eq(tchi_env_masks(e, 0, s, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_env_log_reward(e, 0, s, lr), TCH_OK);
  ck_assert_int_eq(h.calls, 1);

  h.fail_code = 7;
  ck_assert_int_eq(tchi_env_step(e, 3, s, a, o), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 7);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "host step failed on purpose"));
  ck_assert_int_eq(tch_env_log_reward(e, 3, s, lr), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 7);
  ck_assert_str_eq(tch_last_error(), "log_reward callback returned 7: scorer crashed");
  /* masks sets no text: the previous text must not leak into this error */
  h.fail_code = -3;
  uint8_t f[9], b[6];
  ck_assert_int_eq(tchi_env_masks(e, 3, s, f, b), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), -3);
  ck_assert_str_eq(tch_last_error(), "masks callback returned -3");
  h.fail_code = 0;

  /* log-rewards: NaN/inf checked, clip */
  ck_assert_int_eq(tch_env_log_reward(e, 3, s, lr), TCH_OK);
  ck_assert(lr[0] == 0.0 && lr[1] == -1.0 && lr[2] == 3.0);
  h.nan_row = 2;
  h.special = NAN;
  ck_assert_int_eq(tch_env_log_reward(e, 3, s, lr), TCH_E_NUMERIC);
  ck_assert_str_eq(tch_last_error(), "log_reward returned nan for row 2");
  ck_assert_int_eq(tchi_env_log_reward(e, 3, s, -5.0, lr), TCH_OK);
  ck_assert(lr[2] == -5.0);
  ck_assert(lr[1] == -1.0);
  h.special = -INFINITY;
  ck_assert_int_eq(tch_env_log_reward(e, 3, s, lr), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_env_log_reward(e, 3, s, -5.0, lr), TCH_OK);
  ck_assert(lr[2] == -5.0);
  ck_assert_int_eq(tchi_env_log_reward(e, 3, s, 0.5, lr), TCH_OK);   /* below clip raised */
  ck_assert(lr[0] == 0.5 && lr[1] == 0.5 && lr[2] == 0.5);
  h.special = INFINITY;
  ck_assert_int_eq(tchi_env_log_reward(e, 3, s, -5.0, lr), TCH_E_NUMERIC);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "inf for row 2"));
  h.nan_row = -1;

  /* masks: a row with no valid action, a value that is not 0/1 */
  ck_assert_int_eq(tchi_env_masks(e, 3, s, f, b), TCH_OK);
  h.empty_mask_row = 1;
  ck_assert_int_eq(tchi_env_masks(e, 3, s, f, b), TCH_E_ARG);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "row 1"));
  h.empty_mask_row = -1;
  h.mask_value = 2;
  ck_assert_int_eq(tchi_env_masks(e, 3, s, f, NULL), TCH_E_ARG);
  ck_assert_str_eq(tch_last_error(), "masks callback returned value 2 for row 0 action 0");
  h.mask_value = 1;

  /* no exact target */
  size_t nx;
  double l1;
  ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_E_STATE);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "env cannot enumerate its terminal set"));
  ck_assert_int_eq(tch_env_n_modes(e, &nx), TCH_E_STATE);
  ck_assert_int_eq(tch_env_enumerate_terminal(e, 1, o, lr), TCH_E_STATE);
  ck_assert_int_eq(tch_env_empirical_l1(e, 1, s, &l1), TCH_E_STATE);
  ck_assert_int_eq(tch_env_count_modes(e, 1, s, &nx), TCH_E_STATE);

  /* encode: one-hot offsets 0 and 4 */
  int32_t idx[6];
  int oh;
  ck_assert_int_eq(tchi_env_encode(e, 3, s, NULL, idx, &oh), TCH_OK);
  ck_assert_int_eq(oh, 1);
  const int32_t want_idx[6] = {0, 4, 1, 6, 3, 4};
  ck_assert_mem_eq(idx, want_idx, sizeof idx);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);
}
END_TEST

START_TEST(user_free_exactly_once)
{
  host h;
  host_init(&h);
  tch_discrete_env_desc d;
  host_desc(&d, &h);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_OK);
  ck_assert_ptr_eq(tch_env_retain(e), e);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 0);
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);
  ck_assert_ptr_null(tch_env_retain(NULL));
  tch_env_free(NULL);

  /* failed creates: user_free not called, *out = NULL */
  host_init(&h);
  e = (tch_env *)&h;
  d.n_actions = 1;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);
  host_desc(&d, &h);
  d.flags = 0x80;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  d.cond_dim = 1;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  d.vocab = NULL;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  const uint32_t zero_vocab[2] = {4, 0};
  d.vocab = zero_vocab;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  d.features = h_features;   /* feat_dim 0 */
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  d.masks = NULL;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  d.state_dim = 0;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  d.max_len = 0;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  host_desc(&d, &h);
  const int32_t bad_s0[2] = {0, 4};
  d.s0 = bad_s0;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);
  /* allocation failure inside create */
  host_desc(&d, &h);
  for (uint64_t n = 1; n < 10; n++) {
    tchi_alloc_fail_at(n);
    tch_status st = tch_env_create_discrete(&d, &e);
    tchi_alloc_fail_at(0);
    if (st == TCH_OK) {
      tch_env_free(e);
      ck_assert_int_eq(h.frees, 1);
      break;
    }
    ck_assert_int_eq(st, TCH_E_NOMEM);
    ck_assert_ptr_null(e);
  }
  ck_assert_int_eq(h.frees, 1);
}
END_TEST

START_TEST(descriptor_versions)
{
  host h;
  host_init(&h);
  tch_discrete_env_desc d;
  host_desc(&d, &h);
  d.features = h_features;
  d.feat_dim = 3;
  /* an "old" struct that ends at user_free: vocab/flags/cond_dim read as zero. The
   * appended fields hold garbage to prove they are not read. */
  d.vocab = (const uint32_t *)(uintptr_t)0x1;
  d.flags = 0xdead;
  d.cond_dim = 99;
  d.struct_size = (uint32_t)offsetof(tch_discrete_env_desc, vocab);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_OK);
  ck_assert_ptr_null(e->vocab);
  ck_assert_uint_eq(e->in_dim, 3);
  ck_assert_uint_eq(e->d.flags, 0);
  /* host features: checked for finiteness */
  const int32_t s[4] = {1, 2, 3, 0};
  float feat[6];
  int oh = -1;
  h.feat_bad = 5.0f;
  ck_assert_int_eq(tchi_env_encode(e, 2, s, feat, NULL, &oh), TCH_OK);
  ck_assert_int_eq(oh, 0);
  ck_assert(feat[0] == 5.0f && feat[1] == 2.0f && feat[3] == 3.0f);
  h.feat_bad = NAN;
  ck_assert_int_eq(tchi_env_encode(e, 2, s, feat, NULL, &oh), TCH_E_NUMERIC);
  ck_assert_ptr_nonnull(strstr(tch_last_error(), "row 0 column 0"));
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 1);

  /* shorter than the first version: rejected */
  d.struct_size = (uint32_t)offsetof(tch_discrete_env_desc, user_free);
  e = (tch_env *)&h;
  ck_assert_int_eq(tch_env_create_discrete(&d, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);

  /* a newer, longer struct: the tail is ignored */
  union { tch_discrete_env_desc d; unsigned char bytes[sizeof(tch_discrete_env_desc) + 32]; } big;
  memset(&big, 0xff, sizeof big);
  host_desc(&big.d, &h);
  big.d.struct_size = (uint32_t)sizeof big;
  ck_assert_int_eq(tch_env_create_discrete(&big.d, &e), TCH_OK);
  ck_assert_uint_eq(e->d.struct_size, sizeof(tch_discrete_env_desc));
  tch_env_free(e);
  ck_assert_int_eq(h.frees, 2);
}
END_TEST

START_TEST(null_arguments)
{
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &e), TCH_OK);
  const int32_t s[2] = {0, 0};
  double v;
  size_t z;
  uint32_t u;
  tch_discrete_env_desc d;
  tch_discrete_env_desc_init(&d);
  tch_env *o = e;
  ck_assert_int_eq(tch_env_create_discrete(NULL, &o), TCH_E_ARG);
  ck_assert_ptr_null(o);
  ck_assert_int_eq(tch_env_create_discrete(&d, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_from_config(NULL, &o), TCH_E_ARG);
  ck_assert_int_eq(tch_env_dims(NULL, &u, &u, &u), TCH_E_ARG);
  ck_assert_int_eq(tch_env_dims(e, NULL, NULL, NULL), TCH_OK);
  ck_assert_int_eq(tch_env_log_reward(NULL, 1, s, &v), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_reward(e, 1, NULL, &v), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_reward(e, 1, s, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_n_terminal(NULL, &z), TCH_E_ARG);
  ck_assert_int_eq(tch_env_n_terminal(e, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_n_modes(NULL, &z), TCH_E_ARG);
  ck_assert_int_eq(tch_env_n_modes(e, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_enumerate_terminal(NULL, 1, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_empirical_l1(NULL, 1, s, &v), TCH_E_ARG);
  ck_assert_int_eq(tch_env_empirical_l1(e, 1, NULL, &v), TCH_E_ARG);
  ck_assert_int_eq(tch_env_empirical_l1(e, 1, s, NULL), TCH_E_ARG);
  ck_assert_int_eq(tch_env_count_modes(NULL, 1, s, &z), TCH_E_ARG);
  ck_assert_int_eq(tch_env_count_modes(e, 1, NULL, &z), TCH_E_ARG);
  ck_assert_int_eq(tch_env_count_modes(e, 1, s, NULL), TCH_E_ARG);
  /* bad hypergrid parameters */
  ck_assert_int_eq(tch_env_create_hypergrid(0, 8, 1.0, &o), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 1, 1.0, &o), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, NAN, &o), TCH_E_ARG);
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, -1.0, &o), TCH_E_ARG);
  ck_assert_ptr_null(o);
  /* internal wrappers are NULL-safe too */
  ck_assert_int_eq(tchi_env_step(NULL, 1, s, s, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_env_masks(NULL, 1, s, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_env_log_reward(e, 1, NULL, -INFINITY, &v), TCH_E_ARG);
  ck_assert_int_eq(tchi_env_encode(e, 1, s, NULL, NULL, NULL), TCH_E_ARG);
  ck_assert(!tchi_env_is_s0(NULL, s));
  tch_env_free(e);
}
END_TEST

START_TEST(hypergrid_allocation_failure)
{
  int ok = 0;
  for (uint64_t n = 1; n < 200 && !ok; n++) {
    tch_env *e = (tch_env *)&ok;
    tchi_alloc_fail_at(n);
    tch_status st = tch_env_create_hypergrid(4, 16, 1.0, &e);
    tchi_alloc_fail_at(0);
    if (st == TCH_OK) {
      ok = 1;
      size_t nx;
      ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_OK);
      ck_assert_uint_eq(nx, 64125);
      tch_env_free(e);
    } else {
      ck_assert_int_eq(st, TCH_E_NOMEM);
      ck_assert_ptr_null(e);
    }
  }
  ck_assert(ok);
  /* metrics under allocation failure */
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &e), TCH_OK);
  const int32_t s[2] = {1, 1};
  double l1;
  size_t m;
  uint8_t f[3];
  tchi_alloc_fail_at(1);
  ck_assert_int_eq(tch_env_empirical_l1(e, 1, s, &l1), TCH_E_NOMEM);
  tchi_alloc_fail_at(1);
  ck_assert_int_eq(tch_env_count_modes(e, 1, s, &m), TCH_E_NOMEM);
  tchi_alloc_fail_at(1);
  ck_assert_int_eq(tchi_env_masks(e, 1, s, NULL, f), TCH_E_NOMEM);
  tchi_alloc_fail_at(0);
  ck_assert_int_eq(tchi_env_masks(e, 1, s, NULL, f), TCH_OK);
  tch_env_free(e);
}
END_TEST

START_TEST(hypergrid_large_and_extreme)
{
  /* beyond 2^24 cells the exact target is not built: env works, metrics say so */
  tch_env *e;
  ck_assert_int_eq(tch_env_create_hypergrid(8, 16, 1.0, &e), TCH_OK);
  size_t nx;
  ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_E_STATE);
  const int32_t s[8] = {2, 2, 2, 2, 13, 13, 12, 12};
  double lr;
  ck_assert_int_eq(tch_env_log_reward(e, 1, s, &lr), TCH_OK);
  ck_assert_double_eq_tol(lr, log(2.00001), 1e-14);
  tch_env_free(e);
  /* R^beta overflows double: the exact target cannot be built */
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 2000.0, &e), TCH_E_NUMERIC);
  ck_assert_ptr_null(e);
  /* R^beta underflows to 0 in the low region: log R = -inf, an error unless clipped */
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 100.0, &e), TCH_OK);
  const int32_t low[2] = {0, 0};
  ck_assert_int_eq(tch_env_log_reward(e, 1, low, &lr), TCH_E_NUMERIC);
  ck_assert_int_eq(tchi_env_log_reward(e, 1, low, -1000.0, &lr), TCH_OK);
  ck_assert(lr == -1000.0);
  tch_env_free(e);
}
END_TEST

START_TEST(create_from_config)
{
  tch_config *c;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  ck_assert_int_eq(tch_config_set_string(c, "env.name", "hypergrid"), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.hypergrid.ndim", 3), TCH_OK);
  ck_assert_int_eq(tch_config_set_int(c, "env.hypergrid.horizon", 5), TCH_OK);
  ck_assert_int_eq(tch_config_set_double(c, "env.hypergrid.beta", 2.0), TCH_OK);
  tch_env *e;
  ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_OK);
  uint32_t sd, na, ml;
  ck_assert_int_eq(tch_env_dims(e, &sd, &na, &ml), TCH_OK);
  ck_assert_uint_eq(sd, 3);
  ck_assert_uint_eq(na, 4);
  ck_assert_uint_eq(ml, 12);
  size_t nx;
  ck_assert_int_eq(tch_env_n_terminal(e, &nx), TCH_OK);
  ck_assert_uint_eq(nx, 4 * 4 * 4 + 3 * 4 * 4);
  const int32_t mid[3] = {2, 0, 0};
  double lr;
  ck_assert_int_eq(tch_env_log_reward(e, 1, mid, &lr), TCH_OK);
  ck_assert_double_eq_tol(lr, log(pow(0.10001, 2.0)), 1e-14);
  tch_env_free(e);
  ck_assert_int_eq(tch_config_set_string(c, "env.name", "custom"), TCH_OK);
  e = (tch_env *)c;
  ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_E_CONFIG);
  ck_assert_ptr_null(e);
  ck_assert_str_eq(tch_last_error(), "env.name is 'custom': create the env with tch_env_create_discrete");
  ck_assert_int_eq(tch_env_create_from_config(c, NULL), TCH_E_ARG);
  tch_config_free(c);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("env");
  TCase *tc = tcase_create("env");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, hypergrid_reward_values);
  tcase_add_test(tc, hypergrid_band_is_asymmetric);
  tcase_add_test(tc, hypergrid_terminal_set_and_modes);
  tcase_add_test(tc, hypergrid_enumeration_order);
  tcase_add_test(tc, hypergrid_masks_and_parents);
  tcase_add_test(tc, hypergrid_step_round_trip_and_errors);
  tcase_add_test(tc, hypergrid_encode_one_hot);
  tcase_add_test(tc, empirical_l1_hand_computed);
  tcase_add_test(tc, empirical_l1_of_exact_samples_is_small);
  tcase_add_test(tc, count_modes_distinct);
  tcase_add_test(tc, callback_errors_are_reported);
  tcase_add_test(tc, user_free_exactly_once);
  tcase_add_test(tc, descriptor_versions);
  tcase_add_test(tc, null_arguments);
  tcase_add_test(tc, hypergrid_allocation_failure);
  tcase_add_test(tc, hypergrid_large_and_extreme);
  tcase_add_test(tc, create_from_config);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
