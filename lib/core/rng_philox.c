/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 * Counter-based: the output is a pure function of (counter, key), so streams are
 * independent by construction and the state is a few words that checkpoints copy. */
#include <math.h>
#include "core.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo)
{
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

void tchi_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(PHILOX_M0, c0, &hi0, &lo0);
    mulhilo(PHILOX_M1, c2, &hi1, &lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

uint64_t tchi_stream_id(unsigned purpose, uint64_t index)
{
  return ((uint64_t)purpose << 48) | (index & 0xFFFFFFFFFFFFull);
}

void tchi_rng_seed(tchi_rng *r, uint64_t seed, uint64_t stream)
{
  r->key[0] = (uint32_t)seed;
  r->key[1] = (uint32_t)(seed >> 32);
  r->ctr[0] = 0;
  r->ctr[1] = 0;
  r->ctr[2] = (uint32_t)stream;
  r->ctr[3] = (uint32_t)(stream >> 32);
  r->avail = 0;
  r->pad_ = 0;
  r->spare_normal = 0.0;
  r->has_spare = 0;
  r->pad2_ = 0;
}

uint32_t tchi_rng_u32(tchi_rng *r)
{
  if (r->avail == 0) {
    tchi_philox4x32_10(r->ctr, r->key, r->out);
    if (++r->ctr[0] == 0) ++r->ctr[1];
    r->avail = 4;
  }
  return r->out[4 - r->avail--];
}

uint64_t tchi_rng_u64(tchi_rng *r)
{
  uint64_t hi = tchi_rng_u32(r);
  return (hi << 32) | tchi_rng_u32(r);
}

double tchi_rng_uniform(tchi_rng *r)
{
  return (double)(tchi_rng_u64(r) >> 11) * 0x1.0p-53;
}

double tchi_rng_uniform_pos(tchi_rng *r)
{
  return ((double)(tchi_rng_u64(r) >> 11) + 0.5) * 0x1.0p-53;
}

double tchi_rng_normal(tchi_rng *r)
{
  if (r->has_spare) {
    r->has_spare = 0;
    return r->spare_normal;
  }
  double u1 = tchi_rng_uniform_pos(r), u2 = tchi_rng_uniform(r);
  double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586476925 * u2;
  r->spare_normal = rad * sin(th);
  r->has_spare = 1;
  return rad * cos(th);
}

uint32_t tchi_rng_below(tchi_rng *r, uint32_t n)
{
  /* Lemire's multiply-shift with rejection: unbiased. */
  uint64_t m = (uint64_t)tchi_rng_u32(r) * n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    uint32_t thresh = (uint32_t)(-n) % n;
    while (low < thresh) {
      m = (uint64_t)tchi_rng_u32(r) * n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}
