/* Activations: names, and forward/backward on float arrays (PyTorch semantics). */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "nn/nn.h"

static const char *const act_names[] = {"none", "leaky_relu", "relu", "gelu", "silu", "tanh"};
#define N_ACT ((int)(sizeof act_names / sizeof act_names[0]))

int tchi_act_from_name(const char *name)
{
  if (!name) return -1;
  for (int i = 1; i < N_ACT; i++)   /* "none" is not a valid hidden activation name */
    if (strcmp(name, act_names[i]) == 0) return i;
  return -1;
}

const char *tchi_act_name(tchi_act a)
{
  return (int)a >= 0 && (int)a < N_ACT ? act_names[a] : "unknown";
}

#define LEAKY_SLOPE 0.01f
#define LEAKY_SLOPE_BITS 0x3c23d70au   /* bit pattern of 0.01f */
#define ONE_BITS 0x3f800000u           /* bit pattern of 1.0f */

/* 1.0f for non-negative x (sign bit clear), else the float with bit pattern neg_bits. */
static inline float sign_select(float x, uint32_t neg_bits)
{
  uint32_t b;
  memcpy(&b, &x, sizeof b);
  uint32_t neg = 0u - (b >> 31);
  uint32_t f = ONE_BITS ^ ((ONE_BITS ^ neg_bits) & neg);
  float out;
  memcpy(&out, &f, sizeof out);
  return out;
}
#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

void tchi_act_forward(tchi_act a, size_t n, const float *x, float *y)
{
  switch (a) {
  case TCHI_ACT_LEAKY_RELU:
    /* y = x * (x < 0 ? 0.01f : 1), selecting the factor from the sign bit with integer
     * ops: branch-free (signs are random) and vectorisable, bit-identical to torch's
     * 0.01f * x, and NaN stays NaN. */
    for (size_t i = 0; i < n; i++) y[i] = x[i] * sign_select(x[i], LEAKY_SLOPE_BITS);
    break;
  case TCHI_ACT_RELU:
    for (size_t i = 0; i < n; i++) {
      float v = x[i];
      y[i] = (v > 0.0f || v != v) ? v : 0.0f;
    }
    break;
  case TCHI_ACT_GELU:
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
    break;
  case TCHI_ACT_SILU:
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
    break;
  case TCHI_ACT_TANH:
    for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
    break;
  case TCHI_ACT_NONE:
  default:
    if (y != x) memmove(y, x, n * sizeof *y);
    break;
  }
}

void tchi_act_backward(tchi_act a, size_t n, const float *pre, const float *post,
                       const float *dy, float *dx)
{
  switch (a) {
  case TCHI_ACT_LEAKY_RELU:   /* torch: slope where x <= 0 */
    for (size_t i = 0; i < n; i++) {
      /* slope where pre <= 0 (torch): +0 takes the slope too */
      float p = pre[i] > 0.0f ? 1.0f : -1.0f;
      dx[i] = dy[i] * sign_select(p, LEAKY_SLOPE_BITS);
    }
    break;
  case TCHI_ACT_RELU:         /* torch: gradient passes where the output is > 0 */
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (float)(pre[i] > 0.0f);
    break;
  case TCHI_ACT_GELU:         /* Phi(x) + x phi(x) */
    for (size_t i = 0; i < n; i++) {
      float x = pre[i];
      float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
      float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
      dx[i] = dy[i] * (cdf + x * pdf);
    }
    break;
  case TCHI_ACT_SILU:         /* s (1 + x (1 - s)) */
    for (size_t i = 0; i < n; i++) {
      float x = pre[i];
      float s = 1.0f / (1.0f + expf(-x));
      dx[i] = dy[i] * s * (1.0f + x * (1.0f - s));
    }
    break;
  case TCHI_ACT_TANH:         /* 1 - y^2 from the output, as torch */
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - post[i] * post[i]);
    break;
  case TCHI_ACT_NONE:
  default:
    if (dx != dy) memmove(dx, dy, n * sizeof *dx);
    break;
  }
}
