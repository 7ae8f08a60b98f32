/* Discovery tasks on the prepend/append sequence MDP (lib/envs/builtin/seqpa.c, qm9str.c,
 * sehstr.c): the MDP's transitions, masks and parents against the reference's unique
 * children/parents (seqpamdp.py), reachability, the number of trajectories to a string,
 * the sEH proxy against the data README's test vectors, the QM9 table, exact target and log Z,
 * the reward transforms, mode counting, creation by name and a short training smoke run. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../tch_check.h"
#include "envs/builtin/discovery_data.h"
#include "envs/builtin/seqpa.h"
#include "teacher/trainer.h"

#define MAXL 8
#define MAXA 18

/* Check records every assertion's location through a write(): in the loops over whole state
 * spaces, test plainly and call Check only on failure. */
#define REQUIRE(c) do { if (!(c)) ck_abort_msg("failed: %s", #c); } while (0)

/* ---- helpers -------------------------------------------------------------------------- */

/* A score for small test tasks: the base-A index of the string. */
static int index_score(void *user, size_t n, const int32_t *states, double *out_y)
{
  const tchi_seqpa_task *t = user;
  for (size_t r = 0; r < n; r++)
    out_y[r] = 1.0 + (double)tchi_seqpa_index(states + r * t->len, t->len, t->n_chars);
  return 0;
}

static tchi_seqpa_task small_task(uint32_t len, uint32_t n_chars, int enumerate)
{
  static tchi_seqpa_task t;   /* score_user points here: lives as long as the test */
  t = (tchi_seqpa_task){
    .name = "small", .len = len, .n_chars = n_chars, .score = index_score, .score_user = &t,
    .reward = {.y_min = 0.001, .beta = 1.0, .log_scale = 0.0}, .enumerate = enumerate,
  };
  return t;
}

static tch_env *mk_small(uint32_t len, uint32_t n_chars)
{
  tchi_seqpa_task t = small_task(len, n_chars, 1);
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_OK);
  return e;
}

static void parse(const char *text, uint32_t len, uint32_t n_chars, int32_t *out)
{
  ck_assert_msg(tchi_seqpa_parse(text, len, n_chars, out) == 0, "cannot parse '%s'", text);
}

/* Dense id of a state of any length: strings of length n after all shorter ones. */
static uint64_t state_id(const int32_t *s, uint32_t L, uint32_t A)
{
  uint32_t n = tchi_seqpa_length(s, L);
  uint64_t off = 0, p = 1, k = 0;
  for (uint32_t m = 0; m < n; m++) {
    off += p;
    p *= A;
  }
  for (uint32_t i = 0; i < n; i++) k = k * A + (uint64_t)s[i];
  return off + k;
}

static uint64_t n_states(uint32_t L, uint32_t A)
{
  uint64_t tot = 0, p = 1;
  for (uint32_t m = 0; m <= L; m++) {
    tot += p;
    p *= A;
  }
  return tot;
}

/* Every child of s under prepend/append (length < L), duplicates removed, as sorted ids. */
static size_t all_children(const int32_t *s, uint32_t L, uint32_t A, uint64_t *ids)
{
  size_t n = 0;
  uint32_t k = tchi_seqpa_length(s, L);
  for (uint32_t a = 0; a < 2 * A; a++) {
    int32_t c[MAXL];
    for (uint32_t i = 0; i < L; i++) c[i] = -1;
    if (a < A) {
      c[0] = (int32_t)a;
      for (uint32_t i = 0; i < k; i++) c[i + 1] = s[i];
    } else {
      for (uint32_t i = 0; i < k; i++) c[i] = s[i];
      c[k] = (int32_t)(a - A);
    }
    uint64_t id = state_id(c, L, A);
    int dup = 0;
    for (size_t j = 0; j < n; j++) dup |= ids[j] == id;
    if (!dup) ids[n++] = id;
  }
  return n;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* ---- string helpers -------------------------------------------------------------------- */

START_TEST(seqpa_string_helpers)
{
  int32_t s[6];
  char buf[7];
  parse("ag550c", 6, 18, s);
  ck_assert_int_eq(s[0], 10);
  ck_assert_int_eq(s[1], 16);
  ck_assert_int_eq(s[5], 12);
  tchi_seqpa_format(s, 6, buf);
  ck_assert_str_eq(buf, "ag550c");
  uint64_t k = tchi_seqpa_index(s, 6, 18);
  int32_t t[6];
  tchi_seqpa_from_index(k, 6, 18, t);
  ck_assert_mem_eq(s, t, sizeof s);
  parse("a3", 6, 18, s);
  ck_assert_int_eq(tchi_seqpa_length(s, 6), 2);
  ck_assert_int_eq(s[2], -1);
  ck_assert(tchi_seqpa_valid(s, 6, 18));
  tchi_seqpa_format(s, 6, buf);
  ck_assert_str_eq(buf, "a3");
  ck_assert_int_eq(tchi_seqpa_parse("h", 6, 17, s), -1);       /* 'h' is block 17 */
  ck_assert_int_eq(tchi_seqpa_parse("0123456", 6, 18, s), -1); /* too long */
  ck_assert_int_eq(tchi_seqpa_parse("0-", 6, 18, s), -1);
  const int32_t hole[4] = {1, -1, 2, -1}, big[4] = {1, 11, -1, -1}, neg[4] = {1, -2, -1, -1};
  ck_assert(!tchi_seqpa_valid(hole, 4, 11));
  ck_assert(!tchi_seqpa_valid(big, 4, 11));
  ck_assert(!tchi_seqpa_valid(neg, 4, 11));
  /* base-11 order of the QM9 table: '0000a' = 10, '00010' = 11, 'aaaaa' = 11^5 - 1 */
  parse("00010", 5, 11, s);
  ck_assert_uint_eq(tchi_seqpa_index(s, 5, 11), 11);
  parse("aaaaa", 5, 11, s);
  ck_assert_uint_eq(tchi_seqpa_index(s, 5, 11), TCHI_QM9STR_N - 1);
}
END_TEST

/* ---- MDP: masks, transitions, parents, reachability ---------------------------------- */

/* Walks every state reachable from s0 by valid forward actions and checks, at each state:
 * valid forward actions give exactly the unique children (no duplicate, none missing), each
 * undone by the same backward action; valid backward actions give exactly the unique
 * parents {s[1:], s[:-1]}, each redone by the same forward action; full strings may only
 * EXIT. Returns the number of reachable states and terminal strings. */
static void walk_mdp(tch_env *e, uint32_t L, uint32_t A, uint64_t *out_states, uint64_t *out_terminal)
{
  const uint64_t total = n_states(L, A);
  const uint32_t na = 2 * A + 1;
  uint8_t *seen = calloc(total, 1);
  int32_t *stack = malloc(total * L * sizeof *stack);
  REQUIRE(seen && stack);
  memcpy(stack, e->s0, L * sizeof *stack);
  seen[state_id(stack, L, A)] = 1;
  size_t top = 1;
  uint64_t reached = 1, terminal = 0;
  while (top > 0) {
    int32_t s[MAXL];
    memcpy(s, stack + --top * L, L * sizeof *s);
    const uint32_t k = tchi_seqpa_length(s, L);
    uint8_t fwd[2 * MAXA + 1], bwd[2 * MAXA];
    REQUIRE(tchi_env_masks(e, 1, s, fwd, bwd) == TCH_OK);
    if (k == L) {
      terminal++;
      for (uint32_t a = 0; a + 1 < na; a++) REQUIRE(!fwd[a]);
      REQUIRE(fwd[na - 1]);
    } else {
      REQUIRE(!fwd[na - 1]);
      uint64_t want[2 * MAXA], got[2 * MAXA];
      size_t nw = all_children(s, L, A, want), ng = 0;
      for (uint32_t a = 0; a + 1 < na; a++) {
        if (!fwd[a]) continue;
        int32_t c[MAXL], back[MAXL];
        int32_t act = (int32_t)a;
        REQUIRE(tchi_env_step(e, 1, s, &act, c) == TCH_OK);
        REQUIRE(tchi_env_backward_step(e, 1, c, &act, back) == TCH_OK);
        REQUIRE(!memcmp(back, s, L * sizeof *s));
        uint8_t cf[2 * MAXA + 1], cb[2 * MAXA];
        REQUIRE(tchi_env_masks(e, 1, c, cf, cb) == TCH_OK);
        REQUIRE(cb[a]);
        got[ng++] = state_id(c, L, A);
        uint64_t id = state_id(c, L, A);
        if (!seen[id]) {
          seen[id] = 1;
          reached++;
          memcpy(stack + top++ * L, c, L * sizeof *c);
        }
      }
      REQUIRE(ng == nw);
      qsort(want, nw, sizeof *want, cmp_u64);
      qsort(got, ng, sizeof *got, cmp_u64);
      REQUIRE(!memcmp(want, got, nw * sizeof *want));   /* distinct and complete */
    }
    /* Parents: the unique strings among s[1:] and s[:-1]. */
    size_t np = 0;
    uint64_t pid[2];
    int constant = 1;
    for (uint32_t i = 1; i < k; i++) constant &= s[i] == s[0];
    for (uint32_t a = 0; a + 1 < na; a++) {
      if (!bwd[a]) continue;
      int32_t p[MAXL], again[MAXL];
      int32_t act = (int32_t)a;
      REQUIRE(tchi_env_backward_step(e, 1, s, &act, p) == TCH_OK);
      REQUIRE(tchi_env_step(e, 1, p, &act, again) == TCH_OK);
      REQUIRE(!memcmp(again, s, L * sizeof *s));
      uint8_t pf[2 * MAXA + 1];
      REQUIRE(tchi_env_masks(e, 1, p, pf, NULL) == TCH_OK);
      REQUIRE(pf[a]);
      REQUIRE(np < 2);
      pid[np++] = state_id(p, L, A);
    }
    /* The reference: "" has no parent, a constant string one, any other string two. */
    REQUIRE(np == (size_t)(k == 0 ? 0 : constant ? 1 : 2));
    if (np == 2) REQUIRE(pid[0] != pid[1]);
  }
  free(seen);
  free(stack);
  *out_states = reached;
  *out_terminal = terminal;
}

START_TEST(seqpa_mdp_small)
{
  static const uint32_t shapes[][2] = {{1, 1}, {3, 1}, {1, 4}, {4, 3}, {5, 2}, {3, 5}};
  for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
    const uint32_t L = shapes[c][0], A = shapes[c][1];
    tch_env *e = mk_small(L, A);
    uint32_t sd, na, ml;
    ck_assert_int_eq(tch_env_dims(e, &sd, &na, &ml), TCH_OK);
    ck_assert_uint_eq(sd, L);
    ck_assert_uint_eq(na, 2 * A + 1);
    ck_assert_uint_eq(ml, L);
    uint64_t reached, terminal;
    walk_mdp(e, L, A, &reached, &terminal);
    ck_assert_uint_eq(reached, n_states(L, A));
    uint64_t nx = 1;
    for (uint32_t i = 0; i < L; i++) nx *= A;
    ck_assert_uint_eq(terminal, nx);
    size_t n_term;
    ck_assert_int_eq(tch_env_n_terminal(e, &n_term), TCH_OK);
    ck_assert_uint_eq(n_term, nx);
    tch_env_free(e);
  }
}
END_TEST

START_TEST(seqpa_mdp_qm9str_reachable)
{
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_qm9str(&e), TCH_OK);
  uint64_t reached, terminal;
  walk_mdp(e, 5, 11, &reached, &terminal);
  ck_assert_uint_eq(reached, n_states(5, 11));   /* 177 156 strings of length 0..5 */
  ck_assert_uint_eq(terminal, TCHI_QM9STR_N);
  tch_env_free(e);
}
END_TEST

START_TEST(seqpa_masks_by_hand)
{
  /* L = 4, A = 3 ("012"); actions: prepend 0..2 = 0..2, append 0..2 = 3..5, EXIT = 6. */
  tch_env *e = mk_small(4, 3);
  struct { const char *s; uint8_t fwd[7], bwd[6]; } cases[] = {
    {"", {1, 1, 1, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0}},       /* append c = prepend c: masked */
    {"1", {1, 1, 1, 1, 0, 1, 0}, {0, 1, 0, 0, 0, 0}},      /* constant: append 1 masked */
    {"11", {1, 1, 1, 1, 0, 1, 0}, {0, 1, 0, 0, 0, 0}},
    {"12", {1, 1, 1, 1, 1, 1, 0}, {0, 1, 0, 0, 0, 1}},     /* delete first 1, delete last 2 */
    {"212", {1, 1, 1, 1, 1, 1, 0}, {0, 0, 1, 0, 0, 1}},
    {"0120", {0, 0, 0, 0, 0, 0, 1}, {1, 0, 0, 1, 0, 0}},   /* full: only EXIT */
    {"2222", {0, 0, 0, 0, 0, 0, 1}, {0, 0, 1, 0, 0, 0}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int32_t s[4];
    parse(cases[c].s, 4, 3, s);
    uint8_t f[7], b[6];
    ck_assert_int_eq(tchi_env_masks(e, 1, s, f, b), TCH_OK);
    ck_assert_msg(!memcmp(f, cases[c].fwd, 7), "forward mask of '%s'", cases[c].s);
    ck_assert_msg(!memcmp(b, cases[c].bwd, 6), "backward mask of '%s'", cases[c].s);
  }
  /* Transitions on a batch, in place. */
  int32_t s[3 * 4], want[3 * 4];
  parse("12", 4, 3, s);
  parse("", 4, 3, s + 4);
  parse("021", 4, 3, s + 8);
  const int32_t act[3] = {0, 2, 5};   /* prepend 0, prepend 2, append 2 */
  ck_assert_int_eq(tchi_env_step(e, 3, s, act, s), TCH_OK);
  parse("012", 4, 3, want);
  parse("2", 4, 3, want + 4);
  parse("0212", 4, 3, want + 8);
  ck_assert_mem_eq(s, want, sizeof s);
  const int32_t back[3] = {0, 2, 5};
  ck_assert_int_eq(tchi_env_backward_step(e, 3, s, back, s), TCH_OK);
  parse("12", 4, 3, want);
  parse("", 4, 3, want + 4);
  parse("021", 4, 3, want + 8);
  ck_assert_mem_eq(s, want, sizeof s);
  /* Errors: a step from a full string, a deletion of a character that is not there, a
   * malformed state, a reward of a non-terminal string (built-in: TCH_E_ARG). */
  int32_t full[4], out[4];
  parse("0120", 4, 3, full);
  int32_t a = 1;
  ck_assert_int_eq(tchi_env_step(e, 1, full, &a, out), TCH_E_ARG);
  a = 1;   /* delete first '1' from "0120" */
  ck_assert_int_eq(tchi_env_backward_step(e, 1, full, &a, out), TCH_E_ARG);
  a = 4;   /* delete last '1' */
  ck_assert_int_eq(tchi_env_backward_step(e, 1, full, &a, out), TCH_E_ARG);
  const int32_t bad[4] = {0, -1, 1, -1};
  uint8_t f[7];
  ck_assert_int_eq(tchi_env_masks(e, 1, bad, f, NULL), TCH_E_ARG);
  double lr;
  parse("012", 4, 3, s);
  ck_assert_int_eq(tch_env_log_reward(e, 1, s, &lr), TCH_E_ARG);
  ck_assert_int_eq(tch_env_log_reward(e, 1, full, &lr), TCH_OK);
  ck_assert_double_eq_tol(lr, log(1.0 + 0 * 27 + 1 * 9 + 2 * 3 + 0), 1e-15);
  tch_env_free(e);
}
END_TEST

/* Built-in one-hot = the reference's featurisation (seqpamdp.py featurize): one-hot of
 * each character, zero-padded to L * A ("" -> zeros). */
START_TEST(seqpa_encoding)
{
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_qm9str(&e), TCH_OK);
  int32_t s[2 * 5], idx[2 * 5];
  parse("a3", 5, 11, s);
  parse("", 5, 11, s + 5);
  int onehot = 0;
  ck_assert_int_eq(tchi_env_encode(e, 2, s, NULL, idx, &onehot), TCH_OK);
  ck_assert(onehot);
  ck_assert_uint_eq(e->in_dim, 55);
  const int32_t want[10] = {10, 11 + 3, -1, -1, -1, -1, -1, -1, -1, -1};
  ck_assert_mem_eq(idx, want, sizeof want);
  tch_env_free(e);
}
END_TEST

/* ---- trajectories --------------------------------------------------------------------- */

/* Distinct state sequences from "" to x, as the reference's trajectories over unique
 * children: each of the 2^L prepend/append orders (characters forced by x) gives the state
 * sequence of substrings x[i..j); count the distinct sequences. */
static uint64_t brute_trajectories(const int32_t *x, uint32_t L)
{
  uint64_t n_orders = (uint64_t)1 << L;
  uint64_t *keys = malloc(n_orders * sizeof *keys * 2);
  ck_assert_ptr_nonnull(keys);
  size_t nk = 0;
  for (uint64_t ord = 0; ord < n_orders; ord++) {
    /* bit t of ord: step t prepends (1) or appends (0); the first character placed is
     * x[#prepends after it]. */
    uint32_t pre = 0;
    for (uint32_t t = 1; t < L; t++) pre += (uint32_t)(ord >> t) & 1;
    uint32_t lo = pre, hi = pre + 1;   /* substring x[lo..hi) after each step */
    /* Encode the state sequence as a hash of the contents of every intermediate string. */
    uint64_t h = 1469598103934665603ull, h2 = 0;
    for (uint32_t t = 0; t < L; t++) {
      if (t > 0) {
        if ((ord >> t) & 1) lo--;
        else hi++;
      }
      for (uint32_t i = lo; i < hi; i++) {
        h = (h ^ (uint64_t)(x[i] + 1)) * 1099511628211ull;
        h2 = h2 * 31 + (uint64_t)(x[i] + 7);
      }
      h = (h ^ 0xff) * 1099511628211ull;   /* end of one state */
      h2 = h2 * 131 + 3;
    }
    int dup = 0;
    for (size_t j = 0; j < nk && !dup; j++) dup = keys[2 * j] == h && keys[2 * j + 1] == h2;
    if (!dup) {
      keys[2 * nk] = h;
      keys[2 * nk + 1] = h2;
      nk++;
    }
  }
  free(keys);
  return nk;
}

/* Through the env: N(s) = sum over valid backward actions of N(parent), N("") = 1; and the
 * probability mass of uniform P_B over all trajectories into s (must be 1). */
static void env_trajectories(tch_env *e, const int32_t *s, uint32_t L, uint64_t *n, double *mass)
{
  if (tchi_seqpa_length(s, L) == 0) {
    *n = 1;
    *mass = 1.0;
    return;
  }
  uint8_t f[2 * MAXA + 1], b[2 * MAXA];
  REQUIRE(tchi_env_masks(e, 1, s, f, b) == TCH_OK);
  const uint32_t nb = e->d.n_actions - 1;
  uint32_t np = 0;
  for (uint32_t a = 0; a < nb; a++) np += b[a];
  uint64_t tot = 0;
  double m = 0.0;
  for (uint32_t a = 0; a < nb; a++) {
    if (!b[a]) continue;
    int32_t p[MAXL];
    int32_t act = (int32_t)a;
    REQUIRE(tchi_env_backward_step(e, 1, s, &act, p) == TCH_OK);
    uint64_t pn;
    double pm;
    env_trajectories(e, p, L, &pn, &pm);
    tot += pn;
    m += pm / np;
  }
  *n = tot;
  *mass = m;
}

START_TEST(seqpa_trajectory_counts)
{
  /* Every string of L = 5 over 3 characters. */
  const uint32_t L = 5, A = 3;
  tch_env *e = mk_small(L, A);
  for (uint64_t k = 0; k < 243; k++) {
    int32_t x[5];
    tchi_seqpa_from_index(k, L, A, x);
    uint64_t n;
    double mass;
    env_trajectories(e, x, L, &n, &mass);
    REQUIRE(n == brute_trajectories(x, L));
    ck_assert_double_eq_tol(mass, 1.0, 1e-12);
  }
  tch_env_free(e);
  /* By hand (N(s) = N(s[1:]) + N(s[:-1]), or N(s[1:]) alone for a constant s): 2^(n-1) when
   * no two neighbours are equal, 1 for a constant string, fewer with a constant run. */
  static const struct { const char *x; uint64_t n; } known[] = {
    {"0", 1}, {"01", 2}, {"001", 3}, {"010", 4}, {"0011", 6}, {"0123", 8}, {"3333", 1},
    {"00000", 1}, {"01230", 16}, {"01010", 16}, {"01102", 13},
  };
  for (size_t c = 0; c < sizeof known / sizeof known[0]; c++) {
    const uint32_t l = (uint32_t)strlen(known[c].x);
    tch_env *s = mk_small(l, 4);
    int32_t x[MAXL];
    parse(known[c].x, l, 4, x);
    uint64_t n;
    double mass;
    env_trajectories(s, x, l, &n, &mass);
    ck_assert_msg(n == known[c].n, "'%s': %llu trajectories, expected %llu", known[c].x,
                  (unsigned long long)n, (unsigned long long)known[c].n);
    ck_assert_uint_eq(n, brute_trajectories(x, l));
    tch_env_free(s);
  }
}
END_TEST

/* ---- sEH ------------------------------------------------------------------------------- */

START_TEST(sehstr_test_vectors)
{
  /* data/README.md (from the reference's sklearn model, sehstr_gbtr.pkl). */
  static const struct { const char *x; double pred; } v[] = {
    {"012345", 4.5417976755}, {"000000", 3.4989959574}, {"c004fc", 6.7186963589},
    {"a3345c", 6.8529402858}, {"hhhhhh", 6.1040470930}, {"ag550c", 7.0332530647},
  };
  const size_t nv = sizeof v / sizeof v[0];
  int32_t s[6 * 6];
  double y[6], lr[6];
  for (size_t i = 0; i < nv; i++) parse(v[i].x, 6, 18, s + 6 * i);
  tchi_sehstr_predict(nv, s, y);
  for (size_t i = 0; i < nv; i++)
    ck_assert_msg(fabs(y[i] - v[i].pred) < 1e-9, "'%s': %.12f, expected %.10f", v[i].x, y[i], v[i].pred);
  /* Through the env: log R = 6 log(max(pred, 0.001)) + log(10 / 7.0332530647^6). */
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_sehstr(&e), TCH_OK);
  ck_assert_int_eq(tch_env_log_reward(e, nv, s, lr), TCH_OK);
  for (size_t i = 0; i < nv; i++)
    ck_assert_double_eq_tol(lr[i], 6.0 * log(v[i].pred) + log(10.0) - 6.0 * log(7.0332530647), 1e-8);
  ck_assert_double_eq_tol(lr[nv - 1], log(10.0), 1e-9);   /* the maximum has R = scale_reward_max */
  double yy[6];
  ck_assert_int_eq(tchi_seqpa_scores(e, nv, s, yy), TCH_OK);
  ck_assert_mem_eq(yy, y, nv * sizeof *y);
  size_t n;
  ck_assert_int_eq(tch_env_n_terminal(e, &n), TCH_E_STATE);   /* 18^6: not enumerated */
  double lz;
  ck_assert_int_eq(tchi_seqpa_log_z(e, &lz), TCH_OK);   /* the shipped constant */
  ck_assert_double_eq_tol(lz, 17.552393997, 1e-9);
  uint32_t sd, na, ml;
  ck_assert_int_eq(tch_env_dims(e, &sd, &na, &ml), TCH_OK);
  ck_assert_uint_eq(sd, 6);
  ck_assert_uint_eq(na, 37);
  ck_assert_uint_eq(ml, 6);
  ck_assert_uint_eq(e->in_dim, 108);
  tch_env_free(e);
}
END_TEST

START_TEST(sehstr_modes)
{
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_sehstr(&e), TCH_OK);
  /* All 129 modes: strictly increasing indices, each a mode of the env, each at or above
   * the 99.99th percentile of the predictions (6.81830168, spec 5.3 [computed]). */
  int32_t s[TCHI_SEHSTR_N_MODES * 6];
  for (size_t i = 0; i < TCHI_SEHSTR_N_MODES; i++) {
    tchi_seqpa_from_index(tchi_sehstr_modes[i], 6, 18, s + 6 * i);
    ck_assert_int_eq(tchi_seqpa_mode_id(e, s + 6 * i), (int64_t)i);
    if (i > 0) ck_assert_uint_gt(tchi_sehstr_modes[i], tchi_sehstr_modes[i - 1]);
  }
  double y[TCHI_SEHSTR_N_MODES];
  tchi_sehstr_predict(TCHI_SEHSTR_N_MODES, s, y);
  for (size_t i = 0; i < TCHI_SEHSTR_N_MODES; i++) ck_assert(y[i] >= 6.8183016);
  /* First and last lines of data/sehstr/modes.txt. */
  int32_t m[6];
  parse("a050c0", 6, 18, m);
  ck_assert_int_eq(tchi_seqpa_mode_id(e, m), 0);
  /* Counting: duplicates, non-modes and the empty sample set. */
  int32_t batch[5 * 6];
  memcpy(batch, s, 6 * sizeof *s);
  memcpy(batch + 6, s + 6 * 7, 6 * sizeof *s);
  memcpy(batch + 12, s, 6 * sizeof *s);
  parse("000000", 6, 18, batch + 18);
  parse("ag550c", 6, 18, batch + 24);   /* the maximum: not in the Tanimoto-thinned list */
  ck_assert_int_eq(tchi_seqpa_mode_id(e, batch + 18), -1);
  size_t found = 99;
  ck_assert_int_eq(tchi_seqpa_count_modes(e, 5, batch, &found), TCH_OK);
  ck_assert_uint_eq(found, 2);
  ck_assert_int_eq(tchi_seqpa_count_modes(e, 0, NULL, &found), TCH_OK);
  ck_assert_uint_eq(found, 0);
  ck_assert_int_eq(tchi_seqpa_count_modes(e, TCHI_SEHSTR_N_MODES, s, &found), TCH_OK);
  ck_assert_uint_eq(found, TCHI_SEHSTR_N_MODES);
  int32_t part[6];
  parse("a050c", 6, 18, part);   /* a prefix of a mode is not a mode */
  ck_assert_int_eq(tchi_seqpa_mode_id(e, part), -1);
  tch_env_free(e);
}
END_TEST

/* ---- QM9 ------------------------------------------------------------------------------- */

START_TEST(qm9str_table_and_exact_target)
{
  static const struct { const char *x; float y; } v[] = {
    {"00000", 8.5926f}, {"12345", 4.05092f}, {"aaaaa", 8.52907f}, {"11111", 17.3748f},
  };
  int32_t s[4 * 5];
  double y[4];
  for (size_t i = 0; i < 4; i++) parse(v[i].x, 5, 11, s + 5 * i);
  tchi_qm9str_score(4, s, y);
  for (size_t i = 0; i < 4; i++) {   /* the README rounds to 6 significant digits */
    const double half_unit = (double)v[i].y >= 10.0 ? 5e-5 : 5e-6;
    ck_assert_msg(fabs(y[i] - (double)v[i].y) <= half_unit + 1e-7, "'%s': %.9g", v[i].x, y[i]);
  }
  /* The maximum is at '11111'; 609 scores are below y_min (spec 5.2 [computed]); log Z of
   * the unscaled reward max(y, 0.001)^20 = 57.2439 (data/README.md). */
  size_t argmax = 0, below = 0;
  double m = -INFINITY;
  for (size_t i = 0; i < TCHI_QM9STR_N; i++) {
    double yi = (double)tchi_qm9str_scores[i];
    if (yi > m) {
      m = yi;
      argmax = i;
    }
    below += yi < 0.001;
  }
  ck_assert_uint_eq(argmax, tchi_seqpa_index(s + 15, 5, 11));
  ck_assert_uint_eq(below, 609);
  double z = 0.0;
  for (size_t i = 0; i < TCHI_QM9STR_N; i++) {
    double yi = fmax((double)tchi_qm9str_scores[i], 0.001);
    z += exp(20.0 * (log(yi) - log(m)));
  }
  const double log_z_unscaled = 20.0 * log(m) + log(z);
  ck_assert_double_eq_tol(log_z_unscaled, 57.2439, 1e-4);

  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_qm9str(&e), TCH_OK);
  size_t n, nm;
  ck_assert_int_eq(tch_env_n_terminal(e, &n), TCH_OK);
  ck_assert_uint_eq(n, TCHI_QM9STR_N);
  ck_assert_int_eq(tch_env_n_modes(e, &nm), TCH_OK);
  ck_assert_uint_eq(nm, 805);
  /* Exact log Z of the env's reward R = y+^20 * 100 / max^20 + 1e-12: the unscaled one
   * shifted by log(100) - 20 log(max), plus 161 051e-12 (spec: logZ_scaled 4.74865). */
  double lz;
  ck_assert_int_eq(tchi_seqpa_log_z(e, &lz), TCH_OK);
  const double want = log(exp(log_z_unscaled + log(100.0) - 20.0 * log(m)) + 161051e-12);
  ck_assert_double_eq_tol(lz, want, 1e-10);
  ck_assert_double_eq_tol(lz, 4.74865, 1e-4);
  /* The enumeration: base-11 order, log-rewards as the env computes them, p sums to 1. */
  const tchi_exact_target *x = e->exact;
  double lr[4], psum = 0.0;
  ck_assert_int_eq(tch_env_log_reward(e, 4, s, lr), TCH_OK);
  for (size_t i = 0; i < 4; i++) {
    uint64_t k = tchi_seqpa_index(s + 5 * i, 5, 11);
    ck_assert_mem_eq(x->states + k * 5, s + 5 * i, 5 * sizeof *s);
    ck_assert(x->log_r[k] == lr[i]);
    ck_assert_int_eq(x->index_of(e, s + 5 * i), (int64_t)k);
  }
  ck_assert_double_eq_tol(lr[3], log(100.0 + 1e-12), 1e-12);
  ck_assert_double_eq_tol(lr[0], 20.0 * log(8.5926 / 17.3748) + log(100.0), 1e-4);
  for (size_t i = 0; i < n; i++) psum += x->p[i];
  ck_assert_double_eq_tol(psum, 1.0, 1e-12);
  ck_assert_double_eq_tol(x->p[argmax], exp(lr[3] - lz), 1e-15);
  /* A string with y < 0.001 has R = 0.001^20 scale + 1e-12 = 1e-12 (to 1e-50). */
  for (size_t i = 0; i < n; i++)
    if (tchi_qm9str_scores[i] < 0.001f) {
      ck_assert_double_eq_tol(x->log_r[i], log(1e-12), 1e-9);
      break;
    }
  /* Modes = the 805 best scores (threshold metric, top 0.5%): every mode scores at least
   * 9.1303 and at least every non-mode. */
  double min_mode = INFINITY, max_other = -INFINITY;
  size_t n_flag = 0;
  for (size_t i = 0; i < n; i++) {
    double yi = (double)tchi_qm9str_scores[i];
    if (x->is_mode[i]) {
      n_flag++;
      min_mode = fmin(min_mode, yi);
    } else {
      max_other = fmax(max_other, yi);
    }
  }
  ck_assert_uint_eq(n_flag, 805);
  ck_assert_double_ge(min_mode, max_other);
  ck_assert_double_eq_tol(min_mode, 9.1303, 1e-4);
  tch_env_free(e);
}
END_TEST

START_TEST(qm9str_mode_counting)
{
  tch_env *e = NULL;
  ck_assert_int_eq(tchi_env_create_qm9str(&e), TCH_OK);
  int32_t batch[6 * 5];
  parse("00011", 5, 11, batch);        /* first line of modes.txt */
  parse("00110", 5, 11, batch + 5);
  parse("00011", 5, 11, batch + 10);   /* duplicate */
  parse("00000", 5, 11, batch + 15);   /* not a mode */
  parse("11111", 5, 11, batch + 20);
  parse("12345", 5, 11, batch + 25);
  size_t a = 0, b = 0;
  ck_assert_int_eq(tch_env_count_modes(e, 6, batch, &a), TCH_OK);
  ck_assert_int_eq(tchi_seqpa_count_modes(e, 6, batch, &b), TCH_OK);
  ck_assert_uint_eq(a, 3);
  ck_assert_uint_eq(b, 3);
  ck_assert_int_eq(tchi_seqpa_mode_id(e, batch), 0);
  ck_assert_int_eq(tchi_seqpa_mode_id(e, batch + 15), -1);
  /* Every mode through the public count. */
  int32_t *all = malloc(TCHI_QM9STR_N_MODES * 5 * sizeof *all);
  ck_assert_ptr_nonnull(all);
  for (size_t i = 0; i < TCHI_QM9STR_N_MODES; i++) tchi_seqpa_from_index(tchi_qm9str_modes[i], 5, 11, all + 5 * i);
  ck_assert_int_eq(tch_env_count_modes(e, TCHI_QM9STR_N_MODES, all, &a), TCH_OK);
  ck_assert_uint_eq(a, 805);
  free(all);
  /* A non-terminal sample is an error for the exact-target count. */
  int32_t part[5];
  parse("0001", 5, 11, part);
  ck_assert_int_eq(tch_env_count_modes(e, 1, part, &a), TCH_E_ARG);
  tch_env_free(e);
}
END_TEST

/* ---- reward transform, task checks, creation by name, training smoke run -------------- */

START_TEST(reward_transform)
{
  const tchi_reward_transform q = {.y_min = 0.001, .beta = 20, .log_scale = log(2.0), .add_floor = 1e-12};
  ck_assert_double_eq_tol(tchi_reward_transform_log(&q, 2.0), log(pow(2.0, 20) * 2.0 + 1e-12), 1e-12);
  ck_assert_double_eq_tol(tchi_reward_transform_log(&q, -3.0), log(pow(0.001, 20) * 2.0 + 1e-12), 1e-12);
  ck_assert(isnan(tchi_reward_transform_log(&q, NAN)));
  const tchi_reward_transform s = {.y_min = 0.001, .beta = 6, .log_scale = log(1e-20), .max_floor = 1e-32};
  ck_assert_double_eq_tol(tchi_reward_transform_log(&s, 0.5), 6 * log(0.5) + log(1e-20), 1e-12);
  ck_assert_double_eq_tol(tchi_reward_transform_log(&s, 0.0), log(1e-32), 1e-12);   /* 1e-38 -> floor */
}
END_TEST

START_TEST(seqpa_task_checks)
{
  tch_env *e = (tch_env *)&e;
  tchi_seqpa_task t = small_task(3, 2, 1);
  t.len = 0;
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  ck_assert_ptr_null(e);
  t = small_task(3, 37, 0);
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  t = small_task(3, 2, 0);
  t.score = NULL;
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  static const uint32_t unsorted[2] = {3, 1}, outside[1] = {8};
  t = small_task(3, 2, 1);
  t.modes = unsorted;
  t.n_modes = 2;
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  t.modes = outside;
  t.n_modes = 1;
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  t = small_task(25, 2, 1);   /* 2^25 strings: too many to enumerate */
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  t = small_task(3, 2, 0);
  t.reward.beta = NAN;
  ck_assert_int_eq(tchi_env_create_seqpa(&t, &e), TCH_E_ARG);
  ck_assert_int_eq(tchi_env_create_seqpa(NULL, &e), TCH_E_ARG);
  t = small_task(3, 2, 0);
  ck_assert_int_eq(tchi_env_create_seqpa(&t, NULL), TCH_E_ARG);
  /* Not a SeqPA env. */
  ck_assert_int_eq(tch_env_create_hypergrid(2, 8, 1.0, &e), TCH_OK);
  ck_assert_ptr_null(tchi_seqpa_task_of(e));
  double lz;
  ck_assert_int_eq(tchi_seqpa_log_z(e, &lz), TCH_E_ARG);
  const int32_t st[2] = {0, 0};
  ck_assert_int_eq(tchi_seqpa_mode_id(e, st), -1);
  size_t c;
  ck_assert_int_eq(tchi_seqpa_count_modes(e, 1, st, &c), TCH_E_ARG);
  tch_env_free(e);
}
END_TEST

START_TEST(create_by_name)
{
  tch_config *c = NULL;
  ck_assert_int_eq(tch_config_create(&c), TCH_OK);
  static const struct { const char *name; uint32_t sd, na; } v[] = {{"qm9str", 5, 23}, {"sehstr", 6, 37}};
  for (size_t i = 0; i < 2; i++) {
    ck_assert_int_eq(tch_config_set_string(c, "env.name", v[i].name), TCH_OK);
    tch_env *e = NULL;
    ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_OK);
    const tchi_seqpa_task *t = tchi_seqpa_task_of(e);
    ck_assert_ptr_nonnull(t);
    ck_assert_str_eq(t->name, v[i].name);
    uint32_t sd, na;
    ck_assert_int_eq(tch_env_dims(e, &sd, &na, NULL), TCH_OK);
    ck_assert_uint_eq(sd, v[i].sd);
    ck_assert_uint_eq(na, v[i].na);
    ck_assert_uint_eq(e->default_buffer_capacity, 1000);
    tch_env_free(e);
  }
  tch_config_free(c);
}
END_TEST

/* The existing trainer runs on the new envs (the reference's own policy network and
 * schedule for these tasks are not part of this test). */
START_TEST(trainer_smoke)
{
  static const char *names[] = {"qm9str", "sehstr"};
  for (size_t i = 0; i < 2; i++) {
    tch_config *c = NULL;
    ck_assert_int_eq(tch_config_create(&c), TCH_OK);
    ck_assert_int_eq(tch_config_set_string(c, "env.name", names[i]), TCH_OK);
    ck_assert_int_eq(tch_config_set_int(c, "train.batch_size", 32), TCH_OK);
    ck_assert_int_eq(tch_config_set_int(c, "nn.hidden_dim", 64), TCH_OK);
    tch_env *e = NULL;
    ck_assert_int_eq(tch_env_create_from_config(c, &e), TCH_OK);
    tch_trainer *tr = NULL;
    tch_status st = tch_trainer_create(e, c, &tr);
    ck_assert_msg(st == TCH_OK, "%s: %s", names[i], tch_last_error());
    st = tch_trainer_step(tr, 3);
    ck_assert_msg(st == TCH_OK, "%s: %s", names[i], tch_last_error());
    double loss, modes, total, calls;
    ck_assert_int_eq(tch_trainer_metric(tr, "loss.student", &loss), TCH_OK);
    ck_assert(isfinite(loss));
    ck_assert_int_eq(tch_trainer_metric(tr, "reward_calls", &calls), TCH_OK);
    ck_assert_double_eq(calls, 3 * 32);
    ck_assert_int_eq(tch_trainer_metric(tr, "modes", &modes), TCH_OK);
    ck_assert_int_eq(tch_trainer_metric(tr, "modes.total", &total), TCH_OK);
    if (i == 0) {   /* qm9str: exact target with the reference's 805 modes */
      ck_assert_double_eq(total, 805);
      ck_assert(modes >= 0 && modes <= 96);
    } else {        /* sehstr: no exact target; the modes of the reference's list of 129 */
      ck_assert_double_eq(total, 129);
      ck_assert(modes >= 0 && modes <= 96);
    }
    tch_trainer_free(tr);
    tch_env_free(e);
    tch_config_free(c);
  }
}
END_TEST

int main(void)
{
  Suite *s = suite_create("discovery");
  TCase *tc = tcase_create("discovery");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, seqpa_string_helpers);
  tcase_add_test(tc, seqpa_mdp_small);
  tcase_add_test(tc, seqpa_mdp_qm9str_reachable);
  tcase_add_test(tc, seqpa_masks_by_hand);
  tcase_add_test(tc, seqpa_encoding);
  tcase_add_test(tc, seqpa_trajectory_counts);
  tcase_add_test(tc, sehstr_test_vectors);
  tcase_add_test(tc, sehstr_modes);
  tcase_add_test(tc, qm9str_table_and_exact_target);
  tcase_add_test(tc, qm9str_mode_counting);
  tcase_add_test(tc, reward_transform);
  tcase_add_test(tc, seqpa_task_checks);
  tcase_add_test(tc, create_by_name);
  tcase_add_test(tc, trainer_smoke);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
