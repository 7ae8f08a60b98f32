/* The one stable log-sum-exp of the library (diffusion metrics and SMC weights use it). */
#include <math.h>
#include "core/core.h"

double tchi_log_sum_exp(size_t n, const double *a)
{
  double m = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i])) return NAN;
    if (a[i] > m) m = a[i];
  }
  if (isinf(m)) return m;   /* empty, all -inf, or some +inf */
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += exp(a[i] - m);   /* exp(-inf) = 0 */
  return m + log(s);
}
