/* Core: Philox known answers, RNG distributions, error text, allocation hook, CRC-32. */
#include <math.h>
#include <string.h>
#include "../tch_check.h"
#include "core/core.h"

/* Random123 kat_vectors, philox4x32 with 10 rounds: counter[4] key[2] -> output[4]. */
START_TEST(philox_known_answers)
{
  static const uint32_t v[3][10] = {
    {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
     0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
     0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
     0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
  };
  for (int i = 0; i < 3; i++) {
    uint32_t out[4];
    tchi_philox4x32_10(&v[i][0], &v[i][4], out);
    for (int j = 0; j < 4; j++) ck_assert_uint_eq(out[j], v[i][6 + j]);
  }
}
END_TEST

START_TEST(rng_streams_independent_and_reproducible)
{
  tchi_rng a, b, c;
  tchi_rng_seed(&a, 42, tchi_stream_id(TCHI_STREAM_STUDENT, 7));
  tchi_rng_seed(&b, 42, tchi_stream_id(TCHI_STREAM_STUDENT, 7));
  tchi_rng_seed(&c, 42, tchi_stream_id(TCHI_STREAM_TEACHER, 7));
  int same_ac = 0;
  for (int i = 0; i < 1000; i++) {
    uint32_t x = tchi_rng_u32(&a), y = tchi_rng_u32(&b), z = tchi_rng_u32(&c);
    ck_assert_uint_eq(x, y);
    same_ac += x == z;
  }
  ck_assert_int_lt(same_ac, 3);
}
END_TEST

START_TEST(rng_moments)
{
  /* Fixed seed; thresholds are > 5 standard errors of the mean/variance estimates. */
  tchi_rng r;
  tchi_rng_seed(&r, 1, 0);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; i++) {
    double u = tchi_rng_uniform(&r);
    ck_assert(u >= 0.0 && u < 1.0);
    su += u;
    double z = tchi_rng_normal(&r);
    sn += z;
    sn2 += z * z;
  }
  ck_assert_double_lt(fabs(su / n - 0.5), 5 * sqrt(1.0 / 12 / n));
  ck_assert_double_lt(fabs(sn / n), 5 * sqrt(1.0 / n));
  ck_assert_double_lt(fabs(sn2 / n - 1.0), 5 * sqrt(2.0 / n));
  uint32_t counts[7] = {0};
  for (int i = 0; i < 70000; i++) counts[tchi_rng_below(&r, 7)]++;
  for (int k = 0; k < 7; k++) ck_assert_uint_lt((uint32_t)abs((int)counts[k] - 10000), 500);
}
END_TEST

START_TEST(error_text_thread_local_and_formatted)
{
  tchi_clear_error();
  ck_assert_str_eq(tch_last_error(), "");
  ck_assert_int_eq(tchi_fail(TCH_E_ARG, "bad %s %d", "thing", 3), TCH_E_ARG);
  ck_assert_str_eq(tch_last_error(), "bad thing 3");
  tchi_callback_error_reset();
  tch_set_callback_error("host said no");
  ck_assert_int_eq(tchi_callback_fail(7, "log_reward"), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 7);
  ck_assert_str_eq(tch_last_error(), "log_reward callback returned 7: host said no");
  for (int s = -9; s <= 1; s++) ck_assert_ptr_nonnull(tch_status_str((tch_status)s));
  ck_assert_str_eq(tch_status_str(TCH_E_NOMEM), "out of memory");
  ck_assert_uint_eq(tch_version_number(), TCH_VERSION_NUMBER);
}
END_TEST

START_TEST(alloc_hook_fails_nth)
{
  tchi_alloc_fail_at(3);
  void *a = tchi_malloc(8), *b = tchi_malloc(8), *c = tchi_malloc(8), *d = tchi_malloc(8);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_ptr_null(c);
  ck_assert_ptr_nonnull(d);
  tchi_free(a); tchi_free(b); tchi_free(d);
  tchi_alloc_fail_at(0);
  void *p;
  ck_assert_int_eq(tchi_alloc_array(&p, SIZE_MAX / 2, 4, 0, "huge"), TCH_E_NOMEM);
  ck_assert_ptr_null(p);
}
END_TEST

START_TEST(crc32_matches_zlib)
{
  ck_assert_uint_eq(tchi_crc32(0, "123456789", 9), 0xCBF43926u);
  ck_assert_uint_eq(tchi_crc32(0, "", 0), 0u);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, philox_known_answers);
  tcase_add_test(tc, rng_streams_independent_and_reproducible);
  tcase_add_test(tc, rng_moments);
  tcase_add_test(tc, error_text_thread_local_and_formatted);
  tcase_add_test(tc, alloc_hook_fails_nth);
  tcase_add_test(tc, crc32_matches_zlib);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
