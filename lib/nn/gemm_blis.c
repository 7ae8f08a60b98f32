/* Row-major sgemm on BLIS, with an explicit choice of kernel context.
 *
 * This is the only file of the project that includes blis.h. Every call builds its own
 * rntm_t (thread count) and passes a cntx_t chosen at tchi_gemm_init, so BLIS's global
 * state and environment are never touched.
 *
 * Kernel contexts: with the static BLIS archive (TCHI_BLIS_EXPLICIT_CNTX=1) every
 * configuration compiled into BLIS is reachable through bli_gks_lookup_id(); the shared
 * library hides that symbol, so then only BLIS's native context is available.
 * "auto" depends only on CPU features and the matrix shape (never on timings), so the
 * same machine always computes the same bits. Measured on Zen 5 (BLIS 0.9, 1 thread):
 * small m favours zen3/haswell (AVX2 kernels, ~100 GFLOP/s at 16x256x256 against 77 for
 * skx), large m favours skx (164 at 128x256x256 against 105). */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "nn/nn.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <blis.h>
#pragma GCC diagnostic pop

#if defined(__x86_64__) || defined(__i386__)
#  define TCHI_X86 1
#  include <cpuid.h>
#elif defined(__aarch64__)
#  include <sys/auxv.h>
#endif

#ifndef TCHI_BLIS_EXPLICIT_CNTX
#  define TCHI_BLIS_EXPLICIT_CNTX 0
#endif

/* Below this m, "auto" on AVX-512 machines uses the AVX2 context (see above). */
#define TCHI_GEMM_SMALL_M 64
/* Smaller products run on one thread whatever g->threads says: BLIS starts and joins its
 * threads on every call and synchronises them with spin barriers, which costs more than a
 * batch-16 layer (measured: 2 threads made 16x256x256 slower, and 10-1000x slower when the
 * cores are oversubscribed). BLIS splits only the m/n loops, so the result bits are the
 * same for any thread count. */
#define TCHI_GEMM_MT_MIN_FLOPS (UINT64_C(1) << 24)

static _Thread_local uint64_t gemm_flops;
static _Thread_local int gemm_timing;
static _Thread_local double gemm_seconds;

uint64_t tchi_gemm_flops(void) { return gemm_flops; }

void tchi_gemm_timing(int on) { gemm_timing = on; gemm_seconds = 0.0; }
double tchi_gemm_seconds(void) { return gemm_seconds; }

static double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tchi_gemm_finalize_blis(void) { bli_finalize(); }

/* ---- CPU features -------------------------------------------------------------------- */
enum {
  F_AVX = 1 << 0,
  F_AVX2 = 1 << 1,
  F_FMA = 1 << 2,
  F_FMA4 = 1 << 3,
  F_AVX512 = 1 << 4,   /* F, DQ, BW and VL */
  F_KNL = 1 << 5,      /* AVX-512 F, PF and ER (Xeon Phi) */
  F_SSSE3 = 1 << 6,
  F_NEON64 = 1 << 7,   /* AArch64 (NEON is baseline) */
  F_SVE = 1 << 8,
  F_ARM32 = 1 << 9,
  F_NEVER = 1 << 30    /* support cannot be checked: always refused */
};

static unsigned cpu_features(int *is_amd)
{
  unsigned f = 0;
  *is_amd = 0;
#if defined(TCHI_X86)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx")) f |= F_AVX;
  if (__builtin_cpu_supports("avx2")) f |= F_AVX2;
  if (__builtin_cpu_supports("fma")) f |= F_FMA;
  if (__builtin_cpu_supports("fma4")) f |= F_FMA4;
  if (__builtin_cpu_supports("ssse3")) f |= F_SSSE3;
  int avx512f = __builtin_cpu_supports("avx512f") != 0;
  if (avx512f && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    f |= F_AVX512;
  unsigned a = 0, b = 0, c = 0, d = 0;
  /* AVX512PF = leaf 7 EBX bit 26, AVX512ER = bit 27 (the OS side is covered by avx512f). */
  if (avx512f && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 26 & 1u) && (b >> 27 & 1u))
    f |= F_KNL;
  *is_amd = __builtin_cpu_is("amd") != 0;
#elif defined(__aarch64__)
  f |= F_NEON64;
#  ifdef HWCAP_SVE
  if (getauxval(AT_HWCAP) & HWCAP_SVE) f |= F_SVE;
#  endif
#elif defined(__arm__)
  f |= F_ARM32;
#endif
  return f;
}

/* ---- BLIS configurations ------------------------------------------------------------- */
typedef struct kernel_info {
  const char *name;
  arch_t id;
  unsigned need;
  const char *need_text;
} kernel_info;

static const kernel_info kernels[] = {
  {"skx", BLIS_ARCH_SKX, F_AVX | F_AVX2 | F_FMA | F_AVX512, "AVX-512 F/DQ/BW/VL"},
  {"knl", BLIS_ARCH_KNL, F_AVX | F_AVX2 | F_FMA | F_KNL, "AVX-512 F/PF/ER (Xeon Phi)"},
  {"knc", BLIS_ARCH_KNC, F_NEVER, "a Xeon Phi coprocessor"},
  {"haswell", BLIS_ARCH_HASWELL, F_AVX | F_AVX2 | F_FMA, "AVX2 and FMA"},
  {"sandybridge", BLIS_ARCH_SANDYBRIDGE, F_AVX, "AVX"},
  {"penryn", BLIS_ARCH_PENRYN, F_SSSE3, "SSSE3"},
  {"zen3", BLIS_ARCH_ZEN3, F_AVX | F_AVX2 | F_FMA, "AVX2 and FMA"},
  {"zen2", BLIS_ARCH_ZEN2, F_AVX | F_AVX2 | F_FMA, "AVX2 and FMA"},
  {"zen", BLIS_ARCH_ZEN, F_AVX | F_AVX2 | F_FMA, "AVX2 and FMA"},
  {"excavator", BLIS_ARCH_EXCAVATOR, F_AVX | F_FMA | F_FMA4, "AVX, FMA and FMA4"},
  {"steamroller", BLIS_ARCH_STEAMROLLER, F_AVX | F_FMA | F_FMA4, "AVX, FMA and FMA4"},
  {"piledriver", BLIS_ARCH_PILEDRIVER, F_AVX | F_FMA | F_FMA4, "AVX, FMA and FMA4"},
  {"bulldozer", BLIS_ARCH_BULLDOZER, F_AVX | F_FMA4, "AVX and FMA4"},
  {"armsve", BLIS_ARCH_ARMSVE, F_SVE, "AArch64 SVE"},
  {"a64fx", BLIS_ARCH_A64FX, F_SVE, "AArch64 SVE"},
  {"firestorm", BLIS_ARCH_FIRESTORM, F_NEON64, "AArch64"},
  {"thunderx2", BLIS_ARCH_THUNDERX2, F_NEON64, "AArch64"},
  {"cortexa57", BLIS_ARCH_CORTEXA57, F_NEON64, "AArch64"},
  {"cortexa53", BLIS_ARCH_CORTEXA53, F_NEON64, "AArch64"},
  {"cortexa15", BLIS_ARCH_CORTEXA15, F_ARM32, "32-bit ARM NEON"},
  {"cortexa9", BLIS_ARCH_CORTEXA9, F_ARM32, "32-bit ARM NEON"},
  {"power10", BLIS_ARCH_POWER10, F_NEVER, "a POWER10 CPU check libteacher cannot do"},
  {"power9", BLIS_ARCH_POWER9, F_NEVER, "a POWER9 CPU check libteacher cannot do"},
  {"power7", BLIS_ARCH_POWER7, F_NEVER, "a POWER7 CPU check libteacher cannot do"},
  {"bgq", BLIS_ARCH_BGQ, F_NEVER, "a Blue Gene/Q CPU check libteacher cannot do"},
  {"generic", BLIS_ARCH_GENERIC, 0, "nothing"},
};
#define N_KERNELS (sizeof kernels / sizeof kernels[0])

static const kernel_info *find_kernel(const char *name)
{
  for (size_t i = 0; i < N_KERNELS; i++)
    if (strcmp(kernels[i].name, name) == 0) return &kernels[i];
  return NULL;
}

#if TCHI_BLIS_EXPLICIT_CNTX
/* Native context of a configuration compiled into BLIS, or NULL. */
static const void *lookup_cntx(arch_t id)
{
  cntx_t **c = bli_gks_lookup_id(id);
  return c ? (const void *)c[BLIS_NAT] : NULL;
}
#endif

static void set_native(tchi_gemm *g)
{
  g->cntx_small = g->cntx_large = NULL;
  g->small_m = 0;
  snprintf(g->name, sizeof g->name, "native:%s", bli_arch_string(bli_arch_query_id()));
}

tch_status tchi_gemm_init(tchi_gemm *g, const char *kernel, int threads)
{
  if (!g) return tchi_fail(TCH_E_ARG, "gemm: NULL handle");
  memset(g, 0, sizeof *g);
  g->threads = 1;
  if (!kernel || !*kernel) kernel = "auto";
  if (threads < 1 || threads > 1024)
    return tchi_fail(TCH_E_ARG, "gemm: threads must be in [1, 1024], got %d", threads);
  bli_init();   /* idempotent, thread-safe; needed before bli_gks_lookup_id */
  g->threads = threads;

  if (strcmp(kernel, "native") == 0) {
    set_native(g);
    return TCH_OK;
  }
  if (strcmp(kernel, "auto") == 0) {
#if TCHI_BLIS_EXPLICIT_CNTX && defined(TCHI_X86)
    int amd;
    unsigned f = cpu_features(&amd);
    const unsigned avx2 = F_AVX | F_AVX2 | F_FMA;
    arch_t small_id = amd ? BLIS_ARCH_ZEN3 : BLIS_ARCH_HASWELL;
    const char *small_name = amd ? "zen3" : "haswell";
    const void *cs = (f & avx2) == avx2 ? lookup_cntx(small_id) : NULL;
    const void *cl = (f & F_AVX512) && cs ? lookup_cntx(BLIS_ARCH_SKX) : NULL;
    if (cs && cl) {
      g->cntx_small = cs;
      g->cntx_large = cl;
      g->small_m = TCHI_GEMM_SMALL_M;
      snprintf(g->name, sizeof g->name, "%s+skx (m>=%d)", small_name, TCHI_GEMM_SMALL_M);
      return TCH_OK;
    }
    if (cs) {
      g->cntx_small = g->cntx_large = cs;
      g->small_m = 0;
      snprintf(g->name, sizeof g->name, "%s", small_name);
      return TCH_OK;
    }
#endif
    set_native(g);
    return TCH_OK;
  }

  const kernel_info *ki = find_kernel(kernel);
  if (!ki)
    return tchi_fail(TCH_E_ARG,
                     "unknown gemm kernel '%s' (expected auto, native or a BLIS configuration: "
                     "skx, zen3, zen2, zen, haswell, sandybridge, penryn, generic, ...)", kernel);
#if TCHI_BLIS_EXPLICIT_CNTX
  int amd;
  unsigned f = cpu_features(&amd);
  if ((f & ki->need) != ki->need)
    return tchi_fail(TCH_E_ARG, "gemm kernel '%s' needs %s, which this CPU lacks",
                     kernel, ki->need_text);
  const void *c = lookup_cntx(ki->id);
  if (!c)
    return tchi_fail(TCH_E_ARG, "gemm kernel '%s' is not compiled into this BLIS", kernel);
  g->cntx_small = g->cntx_large = c;
  g->small_m = 0;
  snprintf(g->name, sizeof g->name, "%s", ki->name);
  return TCH_OK;
#else
  (void)cpu_features;
  return tchi_fail(TCH_E_ARG,
                   "gemm kernel '%s' needs libteacher linked against the static BLIS archive; "
                   "this build uses the shared BLIS and supports only 'auto' and 'native'",
                   kernel);
#endif
}

void tchi_sgemm(const tchi_gemm *g, int trans_a, int trans_b, size_t m, size_t n, size_t k,
               float alpha, const float *a, size_t lda, const float *b, size_t ldb,
               float beta, float *c, size_t ldc)
{
  if (m == 0 || n == 0) return;
  uint64_t flops = 2u * (uint64_t)m * n * k;
  gemm_flops += flops;
  if (k == 0) {   /* C = beta * C; beta == 0 overwrites (NaN-safe), as BLAS does */
    for (size_t i = 0; i < m; i++) {
      float *ci = c + i * ldc;
      if (beta == 0.0f)
        memset(ci, 0, n * sizeof *ci);
      else if (beta != 1.0f)
        for (size_t j = 0; j < n; j++) ci[j] *= beta;
    }
    return;
  }
  /* BLIS aborts on strides it considers invalid; a library must not, so anything that is
   * not a plain row-major layout goes through the reference loop instead. */
  size_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  if (lda < a_cols || ldb < b_cols || ldc < n || m > INT64_MAX || n > INT64_MAX ||
      k > INT64_MAX || lda > INT64_MAX || ldb > INT64_MAX || ldc > INT64_MAX) {
    tchi_gemm_ref(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const void *cx = NULL;
  int threads = 1;
  if (g) {
    cx = m < g->small_m ? g->cntx_small : g->cntx_large;
    threads = g->threads > 1 && flops >= TCHI_GEMM_MT_MIN_FLOPS ? g->threads : 1;
  }
  rntm_t rntm;
  bli_rntm_init(&rntm);
  bli_rntm_set_num_threads(threads, &rntm);
  float al = alpha, be = beta;
  double t0 = gemm_timing ? now_seconds() : 0.0;
  bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
               (dim_t)m, (dim_t)n, (dim_t)k, &al,
               (float *)a, (inc_t)lda, 1, (float *)b, (inc_t)ldb, 1,
               &be, c, (inc_t)ldc, 1, (cntx_t *)cx, &rntm);
  if (gemm_timing) gemm_seconds += now_seconds() - t0;
}
