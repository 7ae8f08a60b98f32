/* Reference gemm: naive triple loop with double accumulation (tests and odd strides). */
#include "nn/nn.h"

void tchi_gemm_ref(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha,
                   const float *a, size_t lda, const float *b, size_t ldb, float beta,
                   float *c, size_t ldc)
{
  for (size_t i = 0; i < m; i++) {
    for (size_t j = 0; j < n; j++) {
      double s = 0.0;
      for (size_t p = 0; p < k; p++) {
        double av = trans_a ? a[p * lda + i] : a[i * lda + p];
        double bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
      }
      double r = (double)alpha * s;
      if (beta != 0.0f) r += (double)beta * c[i * ldc + j];   /* beta == 0 overwrites */
      c[i * ldc + j] = (float)r;
    }
  }
}
