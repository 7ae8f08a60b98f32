/* custom_env.c -- define your own environment with callbacks and train a sampler on it.
 *
 * Objects: bit strings of length 6, built left to right. Reward R(x) = exp(#ones / 2), so
 * the exact target is p(x) = R(x) / Z with log Z = 6 log(1 + e^0.5). After training we
 * compare the learned log Z with the exact one and the sampler's empirical distribution
 * with p.
 *
 *   custom_env [--steps N] [--seed S] [--samples M]
 *
 * Exit status 0 on success. With the default (full) number of steps the program also
 * fails if |learned log Z - exact log Z| > 0.5 (a generous bound: training lands well within it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <teacher.h>

#define NBITS 6
#define EXIT_ACTION 2          /* actions: 0 = append bit 0, 1 = append bit 1, 2 = EXIT */
#define DEFAULT_STEPS 2000
#define LOGZ_TOLERANCE 0.5

/* A state is NBITS int32 values: 0/1 for set bits, -1 for not yet set. */
static int n_set(const int32_t *s)
{
  int k = 0;
  while (k < NBITS && s[k] >= 0) k++;
  return k;
}

/* Forward: write the action (0 or 1) into the first unset position. */
static int step(void *user, size_t n, const int32_t *states, const int32_t *actions,
                int32_t *out)
{
  (void)user;
  for (size_t i = 0; i < n; i++) {
    const int32_t *s = states + i * NBITS;
    memcpy(out + i * NBITS, s, NBITS * sizeof *s);
    out[i * NBITS + n_set(s)] = actions[i];
  }
  return 0;
}

/* Backward action a undoes forward action a: clear the last set bit (which equals a). */
static int backward_step(void *user, size_t n, const int32_t *states, const int32_t *actions,
                         int32_t *out)
{
  (void)user;
  (void)actions;
  for (size_t i = 0; i < n; i++) {
    const int32_t *s = states + i * NBITS;
    memcpy(out + i * NBITS, s, NBITS * sizeof *s);
    out[i * NBITS + n_set(s) - 1] = -1;
  }
  return 0;
}

/* Forward: a bit can be appended until the string is full; then only EXIT (forced stop).
 * Backward: the only parent undoes the last bit, so exactly one backward action is valid. */
static int masks(void *user, size_t n, const int32_t *states, uint8_t *fwd, uint8_t *bwd)
{
  (void)user;
  for (size_t i = 0; i < n; i++) {
    const int32_t *s = states + i * NBITS;
    int k = n_set(s);
    fwd[3 * i + 0] = fwd[3 * i + 1] = k < NBITS;
    fwd[3 * i + EXIT_ACTION] = k == NBITS;
    if (bwd) {
      bwd[2 * i + 0] = k > 0 && s[k - 1] == 0;
      bwd[2 * i + 1] = k > 0 && s[k - 1] == 1;
    }
  }
  return 0;
}

static int count_ones(const int32_t *s)
{
  int c = 0;
  for (int j = 0; j < NBITS; j++) c += s[j] == 1;
  return c;
}

/* log R(x) = #ones / 2, for complete strings only. */
static int log_reward(void *user, size_t n, const int32_t *states, double *out)
{
  (void)user;
  for (size_t i = 0; i < n; i++) {
    if (n_set(states + i * NBITS) != NBITS) {
      tch_set_callback_error("log_reward called on an incomplete string");
      return 1;
    }
    out[i] = 0.5 * count_ones(states + i * NBITS);
  }
  return 0;
}

/* Progress callback: called every N steps; returning non-zero would stop training. */
static int progress(void *user, const tch_trainer *t, uint64_t step_no)
{
  (void)user;
  double loss = NAN, logz = NAN;
  if (tch_trainer_metric(t, "loss.student", &loss) != TCH_OK ||
      tch_trainer_metric(t, "logz.student", &logz) != TCH_OK)
    return 1;
  printf("step %6llu  loss %10.5f  log Z %8.4f\n", (unsigned long long)step_no, loss, logz);
  return 0;
}

/* Prints the failing call with the library's detail text. */
#define CHECK(call)                                                                    \
  do {                                                                                 \
    tch_status st_ = (call);                                                           \
    if (st_ != TCH_OK) {                                                               \
      fprintf(stderr, "custom_env: %s failed: %s (%s)\n", #call, tch_status_str(st_),  \
              tch_last_error());                                                       \
      goto done;                                                                       \
    }                                                                                  \
  } while (0)

int main(int argc, char **argv)
{
  unsigned long long steps = DEFAULT_STEPS, seed = 1, n_samples = 20000;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = strtoull(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--samples")) n_samples = strtoull(argv[++i], NULL, 10);
    else { fprintf(stderr, "usage: %s [--steps N] [--seed S] [--samples M]\n", argv[0]); return 2; }
  }
  if (n_samples == 0) n_samples = 1;
  if (TCH_VERSION_NUMBER > tch_version_number()) {   /* runtime older than our header */
    fprintf(stderr, "custom_env: libteacher %s is older than the headers (%s)\n",
            tch_version_string(), TCH_VERSION_STRING);
    return 1;
  }

  int rc = 1;
  tch_env *env = NULL;
  tch_config *cfg = NULL;
  tch_trainer *tr = NULL;
  int32_t *x = NULL;

  /* 1. The environment: describe it with a descriptor of callbacks. */
  static const int32_t s0[NBITS] = {-1, -1, -1, -1, -1, -1};
  static const uint32_t vocab[NBITS] = {2, 2, 2, 2, 2, 2};   /* built-in one-hot: 2 values each */
  tch_discrete_env_desc d;
  tch_discrete_env_desc_init(&d);   /* zeroes it and sets struct_size */
  d.state_dim = NBITS;
  d.n_actions = 3;                  /* two bits + EXIT (always the last action) */
  d.max_len = NBITS;                /* every trajectory has exactly NBITS non-EXIT steps */
  d.s0 = s0;
  d.step = step;
  d.backward_step = backward_step;
  d.masks = masks;
  d.log_reward = log_reward;
  d.features = NULL;                /* use the one-hot of each position (needs vocab) */
  d.vocab = vocab;
  CHECK(tch_env_create_discrete(&d, &env));

  /* 2. A config: every key has a default; set a few explicitly. */
  CHECK(tch_config_create(&cfg));
  CHECK(tch_config_set_int(cfg, "seed", (int64_t)seed));
  CHECK(tch_config_set_int(cfg, "nn.hidden_dim", 64));
  CHECK(tch_config_set_string(cfg, "student.loss", "tb"));
  CHECK(tch_config_set_double(cfg, "student.lr", 1e-3));
  CHECK(tch_config_set_double(cfg, "student.lr_logz", 0.1));

  /* 3. Train, printing progress ten times. */
  CHECK(tch_trainer_create(env, cfg, &tr));
  CHECK(tch_trainer_set_progress(tr, progress, NULL, steps >= 10 ? steps / 10 : 1));
  CHECK(tch_trainer_step(tr, steps));

  /* 4. Compare with the exact answer. */
  const double exact_logz = NBITS * log1p(exp(0.5));
  double logz = NAN;
  CHECK(tch_trainer_metric(tr, "logz.student", &logz));
  tch_policy *student = NULL;        /* borrowed: valid while the trainer lives */
  CHECK(tch_trainer_get_student(tr, &student));
  x = malloc(n_samples * NBITS * sizeof *x);
  if (!x) { fprintf(stderr, "custom_env: out of memory\n"); goto done; }
  CHECK(tch_policy_sample_discrete(student, env, seed + 1, n_samples, x, NULL));
  double count[1 << NBITS] = {0}, mean_ones = 0.0;
  for (size_t i = 0; i < n_samples; i++) {
    int code = 0;
    for (int j = 0; j < NBITS; j++) code |= (x[i * NBITS + j] & 1) << j;
    count[code] += 1.0;
    mean_ones += count_ones(x + i * NBITS);
  }
  double tv = 0.0, tv_noise = 0.0;   /* total variation distance, 0..1; its size from */
  const double pi = 3.14159265358979323846; /* sampling noise alone (normal approximation) */
  for (int code = 0; code < (1 << NBITS); code++) {
    int ones = 0;
    for (int j = 0; j < NBITS; j++) ones += (code >> j) & 1;
    double p = exp(0.5 * ones - exact_logz);
    tv += 0.5 * fabs(count[code] / (double)n_samples - p);
    tv_noise += 0.5 * sqrt(2.0 * p * (1.0 - p) / (pi * (double)n_samples));
  }
  mean_ones /= (double)n_samples;
  printf("log Z: learned %.4f, exact %.4f (error %.4f)\n", logz, exact_logz, logz - exact_logz);
  printf("total variation to the exact distribution over %d strings: %.4f "
         "(%llu samples; sampling noise alone gives ~%.4f)\n", 1 << NBITS, tv, n_samples, tv_noise);
  printf("mean number of ones: %.3f, exact %.3f\n", mean_ones,
         NBITS * exp(0.5) / (1.0 + exp(0.5)));
  rc = 0;
  if (steps >= DEFAULT_STEPS && !(fabs(logz - exact_logz) <= LOGZ_TOLERANCE)) {
    fprintf(stderr, "custom_env: log Z is off by more than %.2f after %llu steps\n",
            LOGZ_TOLERANCE, steps);
    rc = 1;
  }

done:
  free(x);
  tch_trainer_free(tr);   /* handles are reference counted: any free order works */
  tch_config_free(cfg);
  tch_env_free(env);
  return rc;
}
