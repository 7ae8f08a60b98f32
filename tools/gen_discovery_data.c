/* Build-time generator (a native program, not part of the library): turns the plain-text
 * reward data of a discovery task under data/ into a C source of const arrays that is
 * compiled into the library, so no data file is needed at run time.
 *
 *   gen_discovery_data qm9str proxy_scores.tsv modes.txt out.c
 *   gen_discovery_data sehstr gbr_trees.txt modes.txt out.c
 *
 * Everything is checked against the sizes in discovery_data.h (string count and order, tree
 * shape, mode count); any mismatch prints a message and exits with status 1, which fails the
 * build. Floats are written with 9 significant digits and an f suffix (float32 round trip),
 * doubles with 17 (double round trip). */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "gen_io.h"
#include "envs/builtin/discovery_data.h"

/* The reference's block symbols (molstrmdp.py): block i is written as SYMBOLS[i]. */
static const char SYMBOLS[] = "0123456789abcdefghijklmnopqrstuvwxyz";

/* The path from its data/ folder on, for comments in the output (build paths vary). */
static const char *shown(const char *path)
{
  const char *p = strstr(path, "data/"), *q;
  while (p && (q = strstr(p + 1, "data/"))) p = q;
  return p ? p : path;
}

/* Base-n_chars value of a string of exactly len symbols (position 0 most significant). */
static uint32_t string_index(const char *s, size_t len, uint32_t n_chars)
{
  if (strlen(s) != len) die("'%s' is not a string of %zu blocks", s, len);
  uint32_t k = 0;
  for (size_t i = 0; i < len; i++) {
    const char *p = strchr(SYMBOLS, s[i]);
    if (!p || s[i] == '\0' || (uint32_t)(p - SYMBOLS) >= n_chars)
      die("'%s': '%c' is not one of the first %u block symbols", s, s[i], (unsigned)n_chars);
    k = k * n_chars + (uint32_t)(p - SYMBOLS);
  }
  return k;
}

/* modes.txt: one string per line; written as their sorted indices. */
static void write_modes(FILE *out, const char *path, const char *name, size_t len,
                        uint32_t n_chars, size_t expected)
{
  FILE *f = open_in(path);
  char buf[256];
  uint32_t prev = 0;
  size_t n = 0;
  fprintf(out, "\n/* %s */\nconst uint32_t %s[%zu] = {\n", shown(path), name, expected);
  while (next_line(f, buf, sizeof buf)) {
    if (buf[0] == '\0') continue;
    uint32_t k = string_index(buf, len, n_chars);
    if (n > 0 && k <= prev) die("mode strings must be sorted and distinct ('%s')", buf);
    if (n >= expected) die("more than %zu mode strings", expected);
    fprintf(out, "  %luu,%s", (unsigned long)k, n % 8 == 7 ? "\n" : "");
    prev = k;
    n++;
  }
  fclose(f);
  if (n != expected) die("%zu mode strings, expected %zu", n, expected);
  fprintf(out, "\n};\n");
}

static double parse_double(const char *tok, const char *what)
{
  char *end;
  errno = 0;
  double v = strtod(tok, &end);
  if (end == tok || *end != '\0' || errno == ERANGE) die("bad %s '%s'", what, tok);
  return v;
}

static long parse_long(const char *tok, const char *what, long lo, long hi)
{
  char *end;
  errno = 0;
  long v = strtol(tok, &end, 10);
  if (end == tok || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    die("bad %s '%s' (expected an integer in [%ld, %ld])", what, tok, lo, hi);
  return v;
}

/* ---- qm9str ------------------------------------------------------------------------- */

static void gen_qm9str(const char *scores, const char *modes, FILE *out)
{
  FILE *f = open_in(scores);
  char buf[256];
  char key[TCHI_QM9STR_LEN + 1];
  uint32_t n = 0;
  fprintf(out, "\n/* %s: base-11 order */\nconst float tchi_qm9str_scores[%u] = {\n", shown(scores),
          (unsigned)TCHI_QM9STR_N);
  while (next_line(f, buf, sizeof buf)) {
    char *tab = strchr(buf, '\t');
    if (!tab) die("expected 'string<TAB>score'");
    *tab = '\0';
    if (n >= TCHI_QM9STR_N) die("more than %u strings", (unsigned)TCHI_QM9STR_N);
    if (string_index(buf, TCHI_QM9STR_LEN, TCHI_QM9STR_CHARS) != n)
      die("'%s' is out of base-11 order (row %u)", buf, (unsigned)n);
    memcpy(key, buf, sizeof key);
    char *end;
    errno = 0;
    float y = strtof(tab + 1, &end);
    if (end == tab + 1 || *end != '\0' || errno == ERANGE) die("bad score '%s' of '%s'", tab + 1, key);
    fprintf(out, "  %.8ef,%s", (double)y, n % 6 == 5 ? "\n" : "");
    n++;
  }
  fclose(f);
  if (n != TCHI_QM9STR_N) die("%u strings, expected %u", (unsigned)n, (unsigned)TCHI_QM9STR_N);
  fprintf(out, "\n};\n");
  write_modes(out, modes, "tchi_qm9str_modes", TCHI_QM9STR_LEN, TCHI_QM9STR_CHARS,
              TCHI_QM9STR_N_MODES);
}

/* ---- sehstr ------------------------------------------------------------------------- */

typedef struct tree_node {
  double value, threshold;
  long feature, missing_left, left, right, is_leaf;
} tree_node;

/* Splits buf on blanks into at most cap tokens; returns the count. */
static size_t tokens(char *buf, char **tok, size_t cap)
{
  size_t n = 0;
  for (char *p = strtok(buf, " \t"); p; p = strtok(NULL, " \t")) {
    if (n == cap) die("too many fields");
    tok[n++] = p;
  }
  return n;
}

static void gen_sehstr(const char *trees, const char *modes, FILE *out)
{
  FILE *f = open_in(trees);
  char buf[512];
  char *tok[8];
  if (!next_line(f, buf, sizeof buf) || tokens(buf, tok, 8) != 2) die("expected 'baseline n_trees'");
  const double baseline = parse_double(tok[0], "baseline");
  parse_long(tok[1], "tree count", TCHI_SEHSTR_N_TREES, TCHI_SEHSTR_N_TREES);

  tree_node *nodes = NULL;
  size_t n_nodes = 0, cap = 0;
  uint32_t start[TCHI_SEHSTR_N_TREES + 1];
  for (int t = 0; t < TCHI_SEHSTR_N_TREES; t++) {
    start[t] = (uint32_t)n_nodes;
    if (!next_line(f, buf, sizeof buf) || tokens(buf, tok, 8) != 1) die("expected the node count of tree %d", t);
    const long tn = parse_long(tok[0], "node count", 1, UINT16_MAX);
    if (n_nodes + (size_t)tn > cap) {
      cap = 2 * (n_nodes + (size_t)tn);
      tree_node *p = realloc(nodes, cap * sizeof *nodes);
      if (!p) die("out of memory");
      nodes = p;
    }
    for (long i = 0; i < tn; i++) {
      if (!next_line(f, buf, sizeof buf) || tokens(buf, tok, 8) != 7)
        die("expected 'value feature threshold missing_left left right is_leaf'");
      tree_node *nd = &nodes[n_nodes + (size_t)i];
      nd->value = parse_double(tok[0], "value");
      nd->feature = parse_long(tok[1], "feature", 0, TCHI_SEHSTR_N_FEATURES - 1);
      nd->threshold = parse_double(tok[2], "threshold");
      nd->missing_left = parse_long(tok[3], "missing_left", 0, 1);
      nd->left = parse_long(tok[4], "left", 0, tn - 1);
      nd->right = parse_long(tok[5], "right", 0, tn - 1);
      nd->is_leaf = parse_long(tok[6], "is_leaf", 0, 1);
      /* Children after their parent: every walk from the root ends at a leaf. */
      if (!nd->is_leaf && (nd->left <= i || nd->right <= i))
        die("split node %ld of tree %d has a child at or before itself", i, t);
      if (i == tn - 1 && !nd->is_leaf) die("last node of tree %d is not a leaf", t);
    }
    n_nodes += (size_t)tn;
  }
  start[TCHI_SEHSTR_N_TREES] = (uint32_t)n_nodes;
  if (next_line(f, buf, sizeof buf) && buf[0] != '\0') die("unexpected data after the last tree");
  fclose(f);

  fprintf(out, "\n/* %s */\nconst double tchi_sehstr_baseline = %.17g;\n", shown(trees), baseline);
  fprintf(out, "\nconst uint32_t tchi_sehstr_tree_start[%d] = {\n", TCHI_SEHSTR_N_TREES + 1);
  for (int t = 0; t <= TCHI_SEHSTR_N_TREES; t++)
    fprintf(out, "  %luu,%s", (unsigned long)start[t], t % 10 == 9 ? "\n" : "");
  fprintf(out, "\n};\n\n/* value, threshold, feature, left, right, missing_left, is_leaf */\n"
          "const tchi_gbr_node tchi_sehstr_nodes[%zu] = {\n", n_nodes);
  for (size_t i = 0; i < n_nodes; i++) {
    const tree_node *nd = &nodes[i];
    fprintf(out, "  {%.17g, %.17g, %ld, %ld, %ld, %ld, %ld},\n", nd->value, nd->threshold,
            nd->feature, nd->left, nd->right, nd->missing_left, nd->is_leaf);
  }
  fprintf(out, "};\n");
  free(nodes);
  write_modes(out, modes, "tchi_sehstr_modes", TCHI_SEHSTR_LEN, TCHI_SEHSTR_CHARS,
              TCHI_SEHSTR_N_MODES);
}

int main(int argc, char **argv)
{
  gen_prog = "gen_discovery_data";
  if (argc != 5 || (strcmp(argv[1], "qm9str") && strcmp(argv[1], "sehstr"))) {
    fprintf(stderr, "usage: gen_discovery_data qm9str|sehstr DATA MODES OUT.c\n");
    return 2;
  }
  FILE *out = fopen(argv[4], "w");
  if (!out) {
    fprintf(stderr, "gen_discovery_data: cannot write %s: %s\n", argv[4], strerror(errno));
    return 1;
  }
  gen_out_path = argv[4];
  fprintf(out, "/* Generated by tools/gen_discovery_data.c from data/%s/; do not edit. */\n"
          "#include \"envs/builtin/discovery_data.h\"\n", argv[1]);
  if (!strcmp(argv[1], "qm9str")) gen_qm9str(argv[2], argv[3], out);
  else gen_sehstr(argv[2], argv[3], out);
  if (fclose(out) != 0) {
    fprintf(stderr, "gen_discovery_data: error writing %s\n", argv[4]);
    remove(argv[4]);
    return 1;
  }
  return 0;
}
