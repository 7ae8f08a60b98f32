/* Lifecycle through the public API: reference counting in every free order, user_free
 * timing, policy save/load round trip and corrupt-file handling, atomic saves, and
 * bit-for-bit determinism of training. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <teacher.h>
#include "../tch_check.h"

#define OK_CALL(call)                                                                       \
  do {                                                                                      \
    tch_status st_ = (call);                                                                \
    ck_assert_msg(st_ == TCH_OK, "%s: %s (%s)", #call, tch_status_str(st_), tch_last_error()); \
  } while (0)

/* ---- a custom env that records its lifetime ------------------------------------------ */
/* Bit strings of length 3 built left to right (-1 = unset): actions 0/1 set the next bit,
 * action 2 is EXIT, valid only when full. */
#define L 3
typedef struct life {
  int freed;               /* user_free calls */
  int calls_after_free;    /* callbacks run after user_free: must stay 0 */
} life;

static int next_pos(const int32_t *s)
{
  int k = 0;
  while (k < L && s[k] >= 0) k++;
  return k;
}

static int b_step(void *u, size_t n, const int32_t *s, const int32_t *a, int32_t *o)
{
  life *lf = u;
  if (lf->freed) lf->calls_after_free++;
  for (size_t i = 0; i < n; i++) {
    memcpy(o + i * L, s + i * L, L * sizeof *o);
    o[i * L + next_pos(s + i * L)] = a[i];
  }
  return 0;
}

static int b_back(void *u, size_t n, const int32_t *s, const int32_t *a, int32_t *o)
{
  life *lf = u;
  if (lf->freed) lf->calls_after_free++;
  (void)a;
  for (size_t i = 0; i < n; i++) {
    memcpy(o + i * L, s + i * L, L * sizeof *o);
    o[i * L + next_pos(s + i * L) - 1] = -1;
  }
  return 0;
}

static int b_masks(void *u, size_t n, const int32_t *s, uint8_t *fwd, uint8_t *bwd)
{
  life *lf = u;
  if (lf->freed) lf->calls_after_free++;
  for (size_t i = 0; i < n; i++) {
    int k = next_pos(s + i * L);
    fwd[3 * i] = fwd[3 * i + 1] = k < L;
    fwd[3 * i + 2] = k == L;
    if (bwd) {
      bwd[2 * i] = k > 0 && s[i * L + k - 1] == 0;
      bwd[2 * i + 1] = k > 0 && s[i * L + k - 1] == 1;
    }
  }
  return 0;
}

static int b_reward(void *u, size_t n, const int32_t *s, double *out)
{
  life *lf = u;
  if (lf->freed) lf->calls_after_free++;
  for (size_t i = 0; i < n; i++) out[i] = 0.5 * (s[i * L] + s[i * L + 1] + s[i * L + 2]);
  return 0;
}

static void b_free(void *u) { ((life *)u)->freed++; }

static tch_env *make_bits_env(life *lf)
{
  static const int32_t s0[L] = {-1, -1, -1};
  static const uint32_t vocab[L] = {2, 2, 2};
  tch_discrete_env_desc d;
  tch_discrete_env_desc_init(&d);
  d.state_dim = L;
  d.n_actions = 3;
  d.max_len = L;
  d.s0 = s0;
  d.step = b_step;
  d.backward_step = b_back;
  d.masks = b_masks;
  d.log_reward = b_reward;
  d.vocab = vocab;
  d.user = lf;
  d.user_free = b_free;
  tch_env *e = NULL;
  OK_CALL(tch_env_create_discrete(&d, &e));
  return e;
}

static tch_config *small_config(uint64_t seed)
{
  tch_config *c = NULL;
  OK_CALL(tch_config_create(&c));
  OK_CALL(tch_config_set_int(c, "seed", (int64_t)seed));
  OK_CALL(tch_config_set_int(c, "nn.hidden_dim", 32));
  OK_CALL(tch_config_set_int(c, "train.batch_size", 8));
  return c;
}

/* ---- reference counting -------------------------------------------------------------- */

START_TEST(free_trainer_before_env)
{
  tch_env *env = NULL;
  tch_trainer *t = NULL;
  tch_config *c = small_config(1);
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  OK_CALL(tch_trainer_create(env, c, &t));
  OK_CALL(tch_trainer_step(t, 2));
  tch_trainer_free(t);
  /* env still ours and usable */
  const int32_t x[2] = {3, 4};
  double lr;
  OK_CALL(tch_env_log_reward(env, 1, x, &lr));
  tch_policy *p = NULL;
  OK_CALL(tch_policy_create(env, c, 3, &p));
  OK_CALL(tch_policy_sample_discrete(p, env, 1, 8, NULL, NULL));
  tch_policy_free(p);
  tch_env_free(env);
  tch_config_free(c);
}
END_TEST

START_TEST(free_env_and_config_before_trainer)
{
  tch_env *env = NULL;
  tch_trainer *t = NULL;
  tch_config *c = small_config(1);
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  OK_CALL(tch_trainer_create(env, c, &t));
  tch_env_free(env);    /* the trainer holds its own reference */
  tch_config_free(c);   /* the trainer copied the config */
  OK_CALL(tch_trainer_step(t, 3));
  tch_env *borrowed = NULL;
  OK_CALL(tch_trainer_get_env(t, &borrowed));
  uint32_t sd = 0;
  OK_CALL(tch_env_dims(borrowed, &sd, NULL, NULL));
  ck_assert_uint_eq(sd, 2);
  const tch_config *bc = NULL;
  int64_t bs = 0;
  OK_CALL(tch_trainer_get_config(t, &bc));
  OK_CALL(tch_config_get_int(bc, "train.batch_size", &bs));
  ck_assert_int_eq(bs, 8);
  OK_CALL(tch_trainer_evaluate(t, 100));
  tch_trainer_free(t);
}
END_TEST

START_TEST(policy_outlives_trainer)
{
  tch_env *env = NULL;
  tch_trainer *t = NULL;
  tch_config *c = small_config(5);
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  OK_CALL(tch_trainer_create(env, c, &t));
  tch_config_free(c);
  OK_CALL(tch_trainer_step(t, 5));
  tch_policy *borrowed = NULL;
  OK_CALL(tch_trainer_get_student(t, &borrowed));
  tch_policy *p = tch_policy_retain(borrowed);
  ck_assert_ptr_eq(p, borrowed);
  double lz_before, lz_after;
  OK_CALL(tch_policy_log_z(p, &lz_before));
  int32_t a[32 * 2], b[32 * 2];
  double la[32], lb[32];
  OK_CALL(tch_policy_sample_discrete(p, env, 11, 32, a, la));
  tch_env *env2 = tch_env_retain(env);   /* a second holder of the env */
  tch_env_free(env);
  tch_trainer_free(t);
  /* the policy and env are still alive and give the same samples */
  OK_CALL(tch_policy_log_z(p, &lz_after));
  ck_assert(memcmp(&lz_before, &lz_after, sizeof lz_before) == 0);
  OK_CALL(tch_policy_sample_discrete(p, env2, 11, 32, b, lb));
  ck_assert(memcmp(a, b, sizeof a) == 0);
  ck_assert(memcmp(la, lb, sizeof la) == 0);
  tch_policy_free(p);
  tch_env_free(env2);
}
END_TEST

START_TEST(policy_clone_independent)
{
  tch_env *env = NULL;
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  tch_config *c = small_config(0);
  tch_policy *p = NULL, *q = NULL;
  OK_CALL(tch_policy_create(env, c, 9, &p));
  OK_CALL(tch_policy_clone(p, &q));
  ck_assert_ptr_ne(p, q);
  tch_policy_free(p);
  int32_t x[16];
  OK_CALL(tch_policy_sample_discrete(q, env, 1, 8, x, NULL));
  tch_policy_free(q);
  tch_config_free(c);
  tch_env_free(env);
}
END_TEST

START_TEST(user_free_runs_once_after_last_holder)
{
  life lf = {0, 0};
  tch_env *env = make_bits_env(&lf);
  tch_config *c = small_config(2);
  tch_trainer *t1 = NULL, *t2 = NULL;
  OK_CALL(tch_trainer_create(env, c, &t1));
  OK_CALL(tch_trainer_create(env, c, &t2));
  tch_env *extra = tch_env_retain(env);
  ck_assert_ptr_eq(extra, env);
  tch_trainer *t1b = tch_trainer_retain(t1);
  ck_assert_ptr_eq(t1b, t1);

  tch_env_free(env);            /* holders left: extra, t1 (x2), t2 */
  ck_assert_int_eq(lf.freed, 0);
  OK_CALL(tch_trainer_step(t1, 2));
  tch_trainer_free(t1);
  ck_assert_int_eq(lf.freed, 0);
  OK_CALL(tch_trainer_step(t1b, 1));   /* still alive through the second reference */
  tch_trainer_free(t1b);
  ck_assert_int_eq(lf.freed, 0);
  tch_env_free(extra);          /* holders left: t2 */
  ck_assert_int_eq(lf.freed, 0);
  OK_CALL(tch_trainer_step(t2, 2));
  tch_policy *p = NULL;
  OK_CALL(tch_trainer_get_student(t2, &p));
  p = tch_policy_retain(p);     /* a policy does not keep the env alive */
  tch_trainer_free(t2);         /* last holder */
  ck_assert_int_eq(lf.freed, 1);
  ck_assert_int_eq(lf.calls_after_free, 0);
  double lz;
  OK_CALL(tch_policy_log_z(p, &lz));
  tch_policy_free(p);
  tch_config_free(c);
  ck_assert_int_eq(lf.freed, 1);
  ck_assert_int_eq(lf.calls_after_free, 0);
}
END_TEST

START_TEST(user_free_with_env_alone)
{
  life lf = {0, 0};
  tch_env *env = make_bits_env(&lf);
  tch_env_free(tch_env_retain(env));
  ck_assert_int_eq(lf.freed, 0);
  tch_env_free(env);
  ck_assert_int_eq(lf.freed, 1);
}
END_TEST

/* ---- files --------------------------------------------------------------------------- */

static char tmpdir[256];

static void files_setup(void)
{
  const char *base = getenv("TMPDIR");
  snprintf(tmpdir, sizeof tmpdir, "%s/tch_life_XXXXXX", base && *base ? base : "/tmp");
  ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tree(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  char p[512];
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
      rm_tree(p);
    } else {
      unlink(p);
    }
  }
  closedir(d);
  rmdir(dir);
}

static void files_teardown(void) { rm_tree(tmpdir); }

static int count_entries(const char *dir)
{
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)))
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
  closedir(d);
  return n;
}

static unsigned char *read_all(const char *path, size_t *len)
{
  FILE *f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  ck_assert_int_gt(n, 0);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)n);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void write_all(const char *path, const unsigned char *b, size_t n)
{
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

/* zlib's crc32 (IEEE 802.3, reflected, init and final xor 0xffffffff). */
static uint32_t crc32_zlib(const unsigned char *p, size_t n)
{
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

static void put_le32(unsigned char *p, uint32_t v)
{
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void fix_crc(unsigned char *b, size_t n) { put_le32(b + n - 4, crc32_zlib(b, n - 4)); }

/* A trainer (caller frees) on a fresh 2-D grid (*env, caller frees) after `steps` steps. */
static tch_trainer *trained(tch_env **env, uint64_t seed, uint64_t steps)
{
  tch_config *c = small_config(seed);
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, env));
  tch_trainer *t = NULL;
  OK_CALL(tch_trainer_create(*env, c, &t));
  tch_config_free(c);
  OK_CALL(tch_trainer_step(t, steps));
  return t;
}

static void expect_load_fails(const char *path, tch_status want, const char *what)
{
  tch_policy *q = (tch_policy *)&tmpdir;
  tch_status s = tch_policy_load(path, &q);
  ck_assert_msg(s == want, "load of %s: got %d (%s: %s), expected %d", what, (int)s,
                tch_status_str(s), tch_last_error(), (int)want);
  ck_assert_msg(q == NULL, "load of %s failed but *out != NULL", what);
  ck_assert_msg(tch_last_error()[0] != '\0', "load of %s: no error text", what);
}

START_TEST(save_load_round_trip)
{
  tch_env *env = NULL;
  tch_trainer *t = trained(&env, 3, 10);
  tch_policy *p = NULL, *q = NULL;
  OK_CALL(tch_trainer_get_student(t, &p));
  char path[320];
  snprintf(path, sizeof path, "%s/student.tchp", tmpdir);
  OK_CALL(tch_policy_save(p, path));
  ck_assert_int_eq(count_entries(tmpdir), 1);   /* no temp file left */
  OK_CALL(tch_policy_load(path, &q));
  ck_assert_ptr_nonnull(q);

  enum { N = 200 };
  int32_t xa[N * 2], xb[N * 2];
  double la[N], lb[N];
  OK_CALL(tch_policy_sample_discrete(p, env, 1234, N, xa, la));
  tch_trainer_free(t);   /* the loaded policy does not depend on the trainer */
  OK_CALL(tch_policy_sample_discrete(q, env, 1234, N, xb, lb));
  ck_assert(memcmp(xa, xb, sizeof xa) == 0);
  ck_assert(memcmp(la, lb, sizeof la) == 0);

  double za = 0, zb = 1;
  size_t na = 0, nb = 1;
  /* re-save the loaded copy: identical bytes */
  char path2[320];
  snprintf(path2, sizeof path2, "%s/again.tchp", tmpdir);
  OK_CALL(tch_policy_save(q, path2));
  size_t n1, n2;
  unsigned char *b1 = read_all(path, &n1), *b2 = read_all(path2, &n2);
  ck_assert_uint_eq(n1, n2);
  ck_assert(memcmp(b1, b2, n1) == 0);
  ck_assert(memcmp(b1, "TCHP", 4) == 0);
  ck_assert_uint_eq(get_le32(b1 + n1 - 4), crc32_zlib(b1, n1 - 4));   /* documented trailer */
  free(b1);
  free(b2);
  OK_CALL(tch_policy_log_z(q, &zb));
  OK_CALL(tch_policy_n_params(q, &nb));
  tch_policy *r = NULL;
  OK_CALL(tch_policy_load(path2, &r));
  OK_CALL(tch_policy_log_z(r, &za));
  OK_CALL(tch_policy_n_params(r, &na));
  ck_assert(memcmp(&za, &zb, sizeof za) == 0);
  ck_assert_uint_eq(na, nb);
  tch_policy_free(r);
  tch_policy_free(q);
  tch_env_free(env);
}
END_TEST

START_TEST(load_rejects_damaged_files)
{
  tch_env *env = NULL;
  tch_trainer *t = trained(&env, 4, 3);
  tch_policy *p = NULL;
  OK_CALL(tch_trainer_get_student(t, &p));
  char path[320], bad[320];
  snprintf(path, sizeof path, "%s/good.tchp", tmpdir);
  snprintf(bad, sizeof bad, "%s/bad.tchp", tmpdir);
  OK_CALL(tch_policy_save(p, path));
  size_t n;
  unsigned char *b = read_all(path, &n);
  unsigned char *m = malloc(n + 16);
  ck_assert_ptr_nonnull(m);
  ck_assert_uint_gt(n, 64);

  /* truncated copies, at the header, in the middle and one byte short */
  const size_t cuts[] = {0, 3, 4, 8, 12, 16, n / 2, n - 5, n - 4, n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    write_all(bad, b, cuts[i]);
    char what[64];
    snprintf(what, sizeof what, "a copy truncated to %zu of %zu bytes", cuts[i], n);
    expect_load_fails(bad, TCH_E_IO, what);
  }
  /* truncated, with a valid CRC over what is left: still malformed */
  memcpy(m, b, n / 2);
  fix_crc(m, n / 2);
  write_all(bad, m, n / 2);
  expect_load_fails(bad, TCH_E_IO, "a truncated copy with a recomputed CRC");

  /* one flipped byte: header, weights, CRC */
  const size_t flips[] = {0, 5, 9, n / 2, n - 8, n - 1};
  for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
    memcpy(m, b, n);
    m[flips[i]] ^= 0x10;
    write_all(bad, m, n);
    char what[64];
    snprintf(what, sizeof what, "a copy with byte %zu flipped", flips[i]);
    expect_load_fails(bad, TCH_E_IO, what);
  }
  /* trailing garbage */
  memcpy(m, b, n);
  memset(m + n, 0, 16);
  write_all(bad, m, n + 16);
  expect_load_fails(bad, TCH_E_IO, "a copy with 16 bytes appended");

  /* format version (bytes 4..7) bumped, CRC left stale: checksum failure */
  memcpy(m, b, n);
  put_le32(m + 4, get_le32(b + 4) + 1);
  write_all(bad, m, n);
  expect_load_fails(bad, TCH_E_IO, "a bumped format version with a stale CRC");
  /* ... and with the CRC fixed: a version this library does not read */
  fix_crc(m, n);
  write_all(bad, m, n);
  expect_load_fails(bad, TCH_E_VERSION, "a bumped format version with a valid CRC");
  put_le32(m + 4, 0xffffffffu);
  fix_crc(m, n);
  write_all(bad, m, n);
  expect_load_fails(bad, TCH_E_VERSION, "format version 0xffffffff with a valid CRC");

  /* wrong magic with a valid CRC: not a policy file */
  memcpy(m, b, n);
  memcpy(m, "TCHK", 4);
  fix_crc(m, n);
  write_all(bad, m, n);
  expect_load_fails(bad, TCH_E_IO, "a file with magic TCHK");

  /* the original still loads */
  tch_policy *q = NULL;
  OK_CALL(tch_policy_load(path, &q));
  tch_policy_free(q);
  free(m);
  free(b);
  tch_trainer_free(t);
  tch_env_free(env);
}
END_TEST

START_TEST(failed_save_leaves_nothing)
{
  tch_env *env = NULL;
  tch_config *c = small_config(0);
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  tch_policy *p = NULL;
  OK_CALL(tch_policy_create(env, c, 1, &p));
  char path[320], sub[300];

  /* into a missing directory */
  snprintf(path, sizeof path, "%s/missing/p.tchp", tmpdir);
  tch_status s = tch_policy_save(p, path);
  ck_assert_msg(s == TCH_E_IO, "save into a missing directory: %d (%s)", (int)s, tch_last_error());
  ck_assert_str_ne(tch_last_error(), "");
  ck_assert_int_eq(count_entries(tmpdir), 0);

  /* onto an existing directory: the rename fails after the data was written; the temporary
   * file must be removed and the directory left as it was */
  snprintf(sub, sizeof sub, "%s/target", tmpdir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  s = tch_policy_save(p, sub);
  ck_assert_msg(s == TCH_E_IO, "save onto a directory: %d (%s)", (int)s, tch_last_error());
  ck_assert_int_eq(count_entries(tmpdir), 1);
  ck_assert_int_eq(count_entries(sub), 0);

  /* a failed save does not damage an existing file */
  snprintf(path, sizeof path, "%s/keep.tchp", tmpdir);
  OK_CALL(tch_policy_save(p, path));
  size_t n0, n1;
  unsigned char *b0 = read_all(path, &n0);
  ck_assert_int_eq(chmod(tmpdir, 0555), 0);
  if (access(tmpdir, W_OK) != 0) {   /* not root: the directory is read-only now */
    s = tch_policy_save(p, path);
    ck_assert_int_eq(s, TCH_E_IO);
  }
  ck_assert_int_eq(chmod(tmpdir, 0755), 0);
  unsigned char *b1 = read_all(path, &n1);
  ck_assert_uint_eq(n0, n1);
  ck_assert(memcmp(b0, b1, n0) == 0);
  ck_assert_int_eq(count_entries(tmpdir), 2);
  free(b0);
  free(b1);
  tch_policy_free(p);
  tch_config_free(c);
  tch_env_free(env);
}
END_TEST

/* ---- determinism --------------------------------------------------------------------- */

typedef struct run {
  double loss[20], logz[20];
  unsigned char *file;
  size_t file_len;
} run;

static void run_trainer(uint64_t seed, const char *path, run *r)
{
  tch_env *env = NULL;
  tch_config *c = NULL;
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  OK_CALL(tch_config_create(&c));
  OK_CALL(tch_config_set_int(c, "seed", (int64_t)seed));
  tch_trainer *t = NULL;
  OK_CALL(tch_trainer_create(env, c, &t));
  for (int k = 0; k < 20; k++) {
    OK_CALL(tch_trainer_step(t, 1));
    OK_CALL(tch_trainer_metric(t, "loss.student", &r->loss[k]));
    OK_CALL(tch_trainer_metric(t, "logz.student", &r->logz[k]));
    ck_assert(isfinite(r->loss[k]) && isfinite(r->logz[k]));
  }
  tch_policy *p = NULL;
  OK_CALL(tch_trainer_get_student(t, &p));
  OK_CALL(tch_policy_save(p, path));
  r->file = read_all(path, &r->file_len);
  tch_trainer_free(t);
  tch_config_free(c);
  tch_env_free(env);
}

START_TEST(same_seed_bit_identical)
{
  char pa[320], pb[320], pc[320];
  snprintf(pa, sizeof pa, "%s/a.tchp", tmpdir);
  snprintf(pb, sizeof pb, "%s/b.tchp", tmpdir);
  snprintf(pc, sizeof pc, "%s/c.tchp", tmpdir);
  run a, b, c;
  run_trainer(17, pa, &a);
  run_trainer(17, pb, &b);
  run_trainer(18, pc, &c);
  for (int k = 0; k < 20; k++) {
    ck_assert_msg(memcmp(&a.loss[k], &b.loss[k], sizeof(double)) == 0,
                  "step %d: loss.student %.17g vs %.17g", k + 1, a.loss[k], b.loss[k]);
    ck_assert_msg(memcmp(&a.logz[k], &b.logz[k], sizeof(double)) == 0,
                  "step %d: logz.student %.17g vs %.17g", k + 1, a.logz[k], b.logz[k]);
  }
  ck_assert_uint_eq(a.file_len, b.file_len);
  ck_assert_msg(memcmp(a.file, b.file, a.file_len) == 0, "same seed: policy files differ");
  /* a different seed gives a different run */
  ck_assert_msg(memcmp(a.loss, c.loss, sizeof a.loss) != 0, "seeds 17 and 18: same losses");
  ck_assert_msg(a.file_len != c.file_len || memcmp(a.file, c.file, a.file_len) != 0,
                "seeds 17 and 18: identical policy files");
  free(a.file);
  free(b.file);
  free(c.file);
}
END_TEST

START_TEST(standalone_policy_seeded)
{
  tch_env *env = NULL;
  OK_CALL(tch_env_create_hypergrid(2, 8, 1.0, &env));
  tch_policy *p = NULL, *q = NULL, *r = NULL;
  OK_CALL(tch_policy_create(env, NULL, 5, &p));
  OK_CALL(tch_policy_create(env, NULL, 5, &q));
  OK_CALL(tch_policy_create(env, NULL, 6, &r));
  int32_t a[64 * 2], b[64 * 2], c[64 * 2];
  double la[64], lb[64], lc[64];
  OK_CALL(tch_policy_sample_discrete(p, env, 1, 64, a, la));
  OK_CALL(tch_policy_sample_discrete(q, env, 1, 64, b, lb));
  OK_CALL(tch_policy_sample_discrete(r, env, 1, 64, c, lc));
  ck_assert(memcmp(a, b, sizeof a) == 0 && memcmp(la, lb, sizeof la) == 0);
  ck_assert(memcmp(la, lc, sizeof la) != 0);   /* other init seed: other weights */
  OK_CALL(tch_policy_sample_discrete(p, env, 2, 64, b, lb));
  ck_assert(memcmp(la, lb, sizeof la) != 0);   /* other sampling seed: other draws */
  tch_policy_free(p);
  tch_policy_free(q);
  tch_policy_free(r);
  tch_env_free(env);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("lifecycle");
  TCase *tc = tcase_create("refcount");
  tcase_add_test(tc, free_trainer_before_env);
  tcase_add_test(tc, free_env_and_config_before_trainer);
  tcase_add_test(tc, policy_outlives_trainer);
  tcase_add_test(tc, policy_clone_independent);
  tcase_add_test(tc, user_free_runs_once_after_last_holder);
  tcase_add_test(tc, user_free_with_env_alone);
  suite_add_tcase(s, tc);

  tc = tcase_create("files");
  tcase_add_checked_fixture(tc, files_setup, files_teardown);
  tcase_add_test(tc, save_load_round_trip);
  tcase_add_test(tc, load_rejects_damaged_files);
  tcase_add_test(tc, failed_save_leaves_nothing);
  suite_add_tcase(s, tc);

  tc = tcase_create("determinism");
  tcase_add_checked_fixture(tc, files_setup, files_teardown);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, same_seed_bit_identical);
  tcase_add_test(tc, standalone_policy_seeded);
  suite_add_tcase(s, tc);
  return tch_run_suite(s);
}
