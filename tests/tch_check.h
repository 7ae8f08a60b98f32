/* Shared helpers for the Check suites. */
#ifndef TCH_CHECK_H
#define TCH_CHECK_H
#include <check.h>
#include <stdlib.h>

/* Runs one suite; exit status = number of failures (0 = success). */
static inline int tch_run_suite(Suite *s)
{
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
#endif
