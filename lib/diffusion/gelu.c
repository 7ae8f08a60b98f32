/* Elementwise float kernels of the diffusion networks: exact-form GELU x*Phi(x) with its
 * derivative, and the small row/column helpers around each gemm.
 *
 * Why not tchi_act_forward: these loops run on every activation of every time step
 * (~150 million GELUs per TB iteration at batch 500 x 100 steps), and libm's scalar erff
 * and expf made them a quarter of the iteration. Here erf is a rational approximation and
 * exp a short polynomial, both branch-free so the compiler vectorises them; on x86-64 with
 * GCC each hot loop is also compiled for AVX2 and AVX-512 and picked at load time
 * (target_clones). The arithmetic is the same IEEE operations in the same order on every
 * path (ISO C: no FMA contraction), so all paths give bit-identical results.
 *
 * Accuracy (tested in test_diffusion): |Phi error| <= 3e-7 and |GELU'(x) error| <= 3e-7
 * against double-precision erf/exp, comparable to PyTorch's own vectorised CPU erf
 * (Abramowitz-Stegun 7.1.26, 1.5e-7) plus float rounding. */
#include <stdint.h>
#include <string.h>
#include "diffusion/diffusion.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#  define TCHI_DVEC __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#  define TCHI_DVEC
#endif

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }

/* erf(a) for 0 <= a <= 3.925 as a*P(a^2)/Q(a^2): degree (5, 5) in a^2, fitted offline by
 * iteratively reweighted least squares (Lawson) to the minimax error 1.7e-8 on [0, 3.925];
 * erf(3.925) = 1 - 2.8e-8 rounds to 1.0f, so larger arguments are clamped there. */
#define ERF_P0 1.1283790202028656f
#define ERF_P1 0.19297034874454788f
#define ERF_P2 0.05308393065485656f
#define ERF_P3 0.003876194989113359f
#define ERF_P4 0.00028748248014368125f
#define ERF_P5 2.0307981387253032e-06f
#define ERF_Q1 0.504347159864183f
#define ERF_Q2 0.1151664269569777f
#define ERF_Q3 0.015188100152743033f
#define ERF_Q4 0.0011897053535882723f
#define ERF_Q5 3.803020524574077e-05f
#define GELU_ERF_CLAMP 5.5507882f     /* 3.925 * sqrt(2): clamp on |x| before x / sqrt(2) */
#define GELU_EXP_CLAMP 13.0f          /* exp(-x^2/2) stays a normal float */
#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

static inline float erf_pos(float a)
{
  float z = a * a;
  float p = ((((ERF_P5 * z + ERF_P4) * z + ERF_P3) * z + ERF_P2) * z + ERF_P1) * z + ERF_P0;
  float q = ((((ERF_Q5 * z + ERF_Q4) * z + ERF_Q3) * z + ERF_Q2) * z + ERF_Q1) * z + 1.0f;
  return a * p / q;
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2, written as PyTorch's GELU writes it. The clamp works
 * on the bits of |x| (ordered like the floats for non-negative values), which keeps the
 * loop free of floating-point branches the compiler would not if-convert; NaN clamps too,
 * but x * Phi(x) stays NaN. */
static inline float phi_cdf(uint32_t abs_bits, uint32_t sign)
{
  uint32_t a = abs_bits < f2u(GELU_ERF_CLAMP) ? abs_bits : f2u(GELU_ERF_CLAMP);
  float e = erf_pos(u2f(a) * INV_SQRT2);
  return 0.5f * (1.0f + u2f(f2u(e) | sign));
}

/* exp(-a^2/2) for 0 <= a <= 13: Cody-Waite reduction y = n ln2 + r, |r| <= ln2/2, Taylor
 * polynomial of degree 7 (relative error 1e-7), 2^n from the exponent bits. */
static inline float exp_neg_half_sq(float a)
{
  float y = -0.5f * a * a;
  float shifted = y * 1.44269504088896341f + 12582912.0f;   /* 1.5 * 2^23: round to integer */
  float n = shifted - 12582912.0f;
  float r = (y - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = (((((r * (1.0f / 5040.0f) + (1.0f / 720.0f)) * r + (1.0f / 120.0f)) * r +
               (1.0f / 24.0f)) * r + (1.0f / 6.0f)) * r + 0.5f) * r;
  p = (p + 1.0f) * r + 1.0f;
  float scale = u2f((uint32_t)((int32_t)n + 127) << 23);
  return p * scale;
}

TCHI_DVEC void tchi_dgelu(size_t n, float *x)
{
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    uint32_t b = f2u(v);
    x[i] = v * phi_cdf(b & 0x7fffffffu, b & 0x80000000u);
  }
}

TCHI_DVEC void tchi_dgelu_der(size_t n, float *x, float *der)
{
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    uint32_t b = f2u(v), ab = b & 0x7fffffffu;
    float cdf = phi_cdf(ab, b & 0x80000000u);
    uint32_t ae = ab < f2u(GELU_EXP_CLAMP) ? ab : f2u(GELU_EXP_CLAMP);
    x[i] = v * cdf;
    der[i] = cdf + v * (INV_SQRT_2PI * exp_neg_half_sq(u2f(ae)));
  }
}

/* One pass instead of two (bias, then GELU) over each layer's output. */
TCHI_DVEC void tchi_dbias_gelu(size_t rows, size_t cols, float *y, const float *b, float *der)
{
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * cols, *dr = der ? der + r * cols : NULL;
    if (dr) {
      for (size_t j = 0; j < cols; j++) {
        float v = yr[j] + b[j];
        uint32_t bits = f2u(v), ab = bits & 0x7fffffffu;
        float cdf = phi_cdf(ab, bits & 0x80000000u);
        uint32_t ae = ab < f2u(GELU_EXP_CLAMP) ? ab : f2u(GELU_EXP_CLAMP);
        yr[j] = v * cdf;
        dr[j] = cdf + v * (INV_SQRT_2PI * exp_neg_half_sq(u2f(ae)));
      }
    } else {
      for (size_t j = 0; j < cols; j++) {
        float v = yr[j] + b[j];
        uint32_t bits = f2u(v);
        yr[j] = v * phi_cdf(bits & 0x7fffffffu, bits & 0x80000000u);
      }
    }
  }
}

TCHI_DVEC void tchi_dmul(size_t n, float *y, const float *a)
{
  for (size_t i = 0; i < n; i++) y[i] *= a[i];
}

TCHI_DVEC void tchi_dadd_row(size_t rows, size_t cols, float *y, const float *b)
{
  for (size_t r = 0; r < rows; r++) {
    float *yr = y + r * cols;
    for (size_t j = 0; j < cols; j++) yr[j] += b[j];
  }
}

TCHI_DVEC void tchi_dcolsum(size_t rows, size_t cols, const float *y, double *acc)
{
  for (size_t r = 0; r < rows; r++) {
    const float *yr = y + r * cols;
    for (size_t j = 0; j < cols; j++) acc[j] += yr[j];
  }
}
