/* gmm_diffusion.c -- train a diffusion sampler with the adaptive Teacher on a continuous
 * target that the host program computes itself.
 *
 * The target: an unnormalised mixture of four Gaussians in 2-D, means (+-2.5, +-2.5),
 * standard deviation 0.5, equal weights, scaled by e^3, so that log Z = 3 exactly:
 *   log p(x) = 3 + logsumexp_k [log N(x; mu_k, 0.25 I)] - log 4.
 * The host supplies the log density with its gradient (batched), log Z and an exact
 * sampler (for the EUBO and the sample distance); the library owns the diffusion: the
 * time discretisation, the Brownian backward process, the Student and the Teacher.
 * After training we estimate log Z by importance sampling from the Student's samples
 * (logmeanexp of their log-weights, computed here from tch_trainer_sample_continuous) and
 * count the modes its samples cover.
 *
 *   gmm_diffusion [--steps N] [--seed S] [--samples M]
 *
 * Exit status 0 on success. With the default (full) number of steps the program also fails
 * unless the IS estimate is within 0.5 of log Z and every mode is covered. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <teacher.h>

#define PI 3.14159265358979323846
#define N_MODES 4
#define MODE_OFFSET 2.5
#define MODE_STD 0.5
#define LOG_SCALE 3.0            /* log Z of the unnormalised density */
#define DEFAULT_STEPS 600
#define LOGZ_TOLERANCE 0.5

static const double means[N_MODES][2] = {
  { -MODE_OFFSET, -MODE_OFFSET }, { -MODE_OFFSET, MODE_OFFSET },
  { MODE_OFFSET, -MODE_OFFSET }, { MODE_OFFSET, MODE_OFFSET },
};

/* The log-density callback: n points x (n x 2) -> log p, and d log p / dx when the library
 * asks for it (out_grad != NULL; it does only for features that need it, e.g. MALA). */
static int log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                       double *out_grad)
{
  (void)user;
  if (dim != 2) return 1;   /* any non-zero return stops training with TCH_E_CALLBACK */
  const double var = MODE_STD * MODE_STD;
  const double log_norm = -log(2 * PI * var) - log((double)N_MODES);
  for (size_t i = 0; i < n; i++) {
    const double *p = x + 2 * i;
    double lk[N_MODES], top = -INFINITY;
    for (int k = 0; k < N_MODES; k++) {
      double dx = p[0] - means[k][0], dy = p[1] - means[k][1];
      lk[k] = log_norm - 0.5 * (dx * dx + dy * dy) / var;
      if (lk[k] > top) top = lk[k];
    }
    double sum = 0;
    for (int k = 0; k < N_MODES; k++) sum += exp(lk[k] - top);
    out_log_p[i] = LOG_SCALE + top + log(sum);
    if (out_grad) {   /* sum_k r_k (mu_k - x) / var, r_k the responsibilities */
      double gx = 0, gy = 0;
      for (int k = 0; k < N_MODES; k++) {
        double r = exp(lk[k] - top) / sum;
        gx += r * (means[k][0] - p[0]) / var;
        gy += r * (means[k][1] - p[1]) / var;
      }
      out_grad[2 * i] = gx;
      out_grad[2 * i + 1] = gy;
    }
  }
  return 0;
}

/* A small host RNG for the exact sampler (splitmix64 and Box-Muller): the callback must be
 * reproducible for a given seed, which is all the library asks of it. */
static uint64_t splitmix64(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return ((double)(splitmix64(s) >> 11) + 0.5) * 0x1p-53; }

static int sample_reference(void *user, uint64_t seed, size_t n, size_t dim, double *out_x)
{
  (void)user;
  if (dim != 2) return 1;
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) {
    int k = (int)(splitmix64(&s) % N_MODES);
    double r = sqrt(-2 * log(uniform01(&s))), a = 2 * PI * uniform01(&s);
    out_x[2 * i] = means[k][0] + MODE_STD * r * cos(a);
    out_x[2 * i + 1] = means[k][1] + MODE_STD * r * sin(a);
  }
  return 0;
}

static int report(void *user, const tch_trainer *t, uint64_t step)
{
  (void)user;
  double loss = NAN, log_z = NAN, tloss = NAN;
  tch_trainer_metric(t, "loss.student", &loss);
  tch_trainer_metric(t, "logz.student", &log_z);
  tch_trainer_metric(t, "loss.teacher", &tloss);
  printf("step %5llu  loss %9.4f  learned log Z %8.4f  teacher loss %9.4f\n",
         (unsigned long long)step, loss, log_z, tloss);
  return 0;
}

#define CHECK(call)                                                                        \
  do {                                                                                     \
    tch_status s_ = (call);                                                                \
    if (s_ != TCH_OK) {                                                                    \
      fprintf(stderr, "%s failed: %s (%s)\n", #call, tch_status_str(s_), tch_last_error()); \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

int main(int argc, char **argv)
{
  uint64_t steps = DEFAULT_STEPS, seed = 0, n_samples = 5000;
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && !strcmp(argv[i], "--steps")) steps = strtoull(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
    else if (i + 1 < argc && !strcmp(argv[i], "--samples")) n_samples = strtoull(argv[++i], NULL, 10);
    else { fprintf(stderr, "usage: %s [--steps N] [--seed S] [--samples M]\n", argv[0]); return 2; }
  }
  if (n_samples == 0) n_samples = 1;

  /* The env: the host's density, and the library's discretisation of the diffusion (50
   * time steps here; the reference uses 100 for its 2-D mixture). */
  tch_config *cfg;
  CHECK(tch_config_create(&cfg));
  CHECK(tch_config_set_int(cfg, "env.diffusion.steps", 50));
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = 2;
  d.flags = TCH_ENERGY_HAS_GRAD;
  d.log_density = log_density;
  d.log_Z = LOG_SCALE;
  d.sample_reference = sample_reference;
  tch_env *env;
  CHECK(tch_env_create_energy(&d, cfg, &env));

  /* The trainer: Student + adaptive Teacher (teacher.enabled), smaller than the
   * reference's networks and batch so that the example runs in seconds. */
  CHECK(tch_config_set_int(cfg, "seed", (int64_t)seed));
  CHECK(tch_config_set_bool(cfg, "teacher.enabled", 1));
  CHECK(tch_config_set_int(cfg, "train.batch_size", 200));
  CHECK(tch_config_set_int(cfg, "train.steps", (int64_t)steps));
  CHECK(tch_config_set_int(cfg, "nn.hidden_dim", 64));
  tch_trainer *tr;
  CHECK(tch_trainer_create(env, cfg, &tr));
  CHECK(tch_trainer_set_progress(tr, report, NULL, steps >= 5 ? steps / 5 : 1));
  CHECK(tch_trainer_step(tr, steps));

  /* Importance-sampled log Z from fresh Student samples: logmeanexp of the log-weights
   * log p(x) + sum log P_B - sum log P_F. And the modes the samples reach (within 3 std). */
  double *x = malloc(n_samples * 2 * sizeof *x), *log_w = malloc(n_samples * sizeof *log_w);
  if (!x || !log_w) { fprintf(stderr, "out of memory\n"); return 1; }
  CHECK(tch_trainer_sample_continuous(tr, seed + 1, n_samples, x, log_w));
  double top = -INFINITY, sum = 0;
  for (size_t i = 0; i < n_samples; i++) if (log_w[i] > top) top = log_w[i];
  for (size_t i = 0; i < n_samples; i++) sum += exp(log_w[i] - top);
  double is_log_z = top + log(sum / (double)n_samples);
  size_t per_mode[N_MODES] = { 0 };
  for (size_t i = 0; i < n_samples; i++)
    for (int k = 0; k < N_MODES; k++)
      if (hypot(x[2 * i] - means[k][0], x[2 * i + 1] - means[k][1]) < 3 * MODE_STD) per_mode[k]++;
  int covered = 0;
  for (int k = 0; k < N_MODES; k++) covered += per_mode[k] > 0;

  /* The library's own evaluation: ELBO, EUBO (uses the exact sampler), ESS. */
  double elbo, eubo, ess;
  CHECK(tch_trainer_evaluate(tr, n_samples < 2000 ? n_samples : 2000));
  CHECK(tch_trainer_metric(tr, "eval.elbo", &elbo));
  CHECK(tch_trainer_metric(tr, "eval.eubo", &eubo));
  CHECK(tch_trainer_metric(tr, "eval.ess_fraction", &ess));

  double err = is_log_z - LOG_SCALE;
  printf("IS log Z estimate %.4f (%zu samples; exact %.4f, error %+.4f)\n", is_log_z,
         (size_t)n_samples, LOG_SCALE, err);
  printf("ELBO %.4f  EUBO %.4f  ESS %.1f%%  modes covered %d/%d (samples per mode:", elbo, eubo,
         100 * ess, covered, N_MODES);
  for (int k = 0; k < N_MODES; k++) printf(" %zu", per_mode[k]);
  printf(")\n");

  int rc = 0;
  if (!isfinite(is_log_z)) rc = 1;
  if (steps == DEFAULT_STEPS && (fabs(err) > LOGZ_TOLERANCE || covered < N_MODES)) {
    fprintf(stderr, "gmm_diffusion: the full run should estimate log Z within %.1f and cover "
            "every mode\n", LOGZ_TOLERANCE);
    rc = 1;
  }
  free(x);
  free(log_w);
  tch_trainer_free(tr);
  tch_env_free(env);
  tch_config_free(cfg);
  return rc;
}
