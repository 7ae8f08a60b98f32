/* TFBind8 task of the discovery experiments (reference exps/tfbind8/tfbind8_oracle.py): all
 * 4^8 = 65 536 DNA 8-mers over 0123 (= A, C, G, T) on the SeqPA MDP (seqpa.h), scored by the
 * SIX6_REF_R1 binding table of Design-Bench (TFBind8-Exact-v0). Internal API.
 *
 * Only the public training half of that table ships with the project (data/tfbind8/, the
 * 32 768 strings whose score is at most the median), so by default the score is a STAND-IN
 * (docs/api/env.md, "tfbind8"): the true score on the public half, and elsewhere a value
 * placed by a ridge model fitted to the public half (features below). The table is built at
 * build time by tools/gen_tfbind8.c. Built with -Dtfbind8_table=<SIX6_REF_R1 8-mer file> it
 * is the exact table instead (tchi_tfbind8_exact = 1). */
#ifndef TCHI_TFBIND8_H
#define TCHI_TFBIND8_H
#include <stddef.h>
#include <stdint.h>

#define TCHI_TFBIND8_LEN 8
#define TCHI_TFBIND8_CHARS 4
#define TCHI_TFBIND8_N 65536u        /* 4^8: every string of the task */
#define TCHI_TFBIND8_N_MODES 328u
/* Model features: 1 (intercept), then the counts of every 2-, 3- and 4-mer in x plus those in
 * its reverse complement (index: the k-mer's base-4 value, offsets 1, 17, 81). */
#define TCHI_TFBIND8_N_FEATURES 337
#define TCHI_TFBIND8_RIDGE_LAMBDA 10.0   /* penalty on every coefficient but the intercept */

/* Score of every string, indexed by its base-4 value (position 0 most significant). */
extern const float tchi_tfbind8_scores[TCHI_TFBIND8_N];
/* Base-4 indices of the mode strings (data/tfbind8/modes.txt), strictly increasing. */
extern const uint32_t tchi_tfbind8_modes[TCHI_TFBIND8_N_MODES];
/* Bit k (byte k / 8, bit k % 8) is set when string k is in the public training half. */
extern const uint8_t tchi_tfbind8_public[TCHI_TFBIND8_N / 8];
/* 1: tchi_tfbind8_scores is the exact table; 0: the stand-in. */
extern const int tchi_tfbind8_exact;
/* The ridge model fitted to the public half and its accuracy there (5-fold cross-validation
 * over reverse-complement classes; extrapolation: fitted to the strings below the public
 * half's median, Spearman correlation on those above). */
extern const double tchi_tfbind8_coef[TCHI_TFBIND8_N_FEATURES];
extern const double tchi_tfbind8_cv_pearson, tchi_tfbind8_cv_spearman, tchi_tfbind8_extrap_spearman;
/* Largest score in the public half, the table's median: every other string scores at least
 * this much in the true table (the stand-in places them strictly above it). */
extern const double tchi_tfbind8_public_max;

/* Base-4 index of the reverse complement of string k (complement c -> 3 - c, reversed). */
static inline uint32_t tchi_tfbind8_revcomp(uint32_t k)
{
  uint32_t r = 0;
  for (int i = 0; i < TCHI_TFBIND8_LEN; i++, k >>= 2) r = (r << 2) | (3u - (k & 3u));
  return r;
}

/* The model's features of string k (TCHI_TFBIND8_N_FEATURES doubles; x and its reverse
 * complement get identical vectors, so the model is exactly strand-symmetric like the
 * table). */
static inline void tchi_tfbind8_features(uint32_t k, double *f)
{
  static const int offset[5] = {0, 0, 1, 17, 81};
  for (int j = 0; j < TCHI_TFBIND8_N_FEATURES; j++) f[j] = 0.0;
  f[0] = 1.0;
  const uint32_t strands[2] = {k, tchi_tfbind8_revcomp(k)};
  for (int s = 0; s < 2; s++) {
    int c[TCHI_TFBIND8_LEN];
    for (int i = TCHI_TFBIND8_LEN - 1, v = (int)strands[s]; i >= 0; i--, v >>= 2) c[i] = v & 3;
    for (int len = 2; len <= 4; len++)
      for (int p = 0; p + len <= TCHI_TFBIND8_LEN; p++) {
        int idx = 0;
        for (int q = 0; q < len; q++) idx = idx * 4 + c[p + q];
        f[offset[len] + idx] += 1.0;
      }
  }
}

#endif /* TCHI_TFBIND8_H */
