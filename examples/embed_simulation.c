/* embed_simulation.c -- libteacher inside a host that owns the main loop.
 *
 * A host program (here a toy simulation code) keeps control of its own time loop and
 * drives training a few steps at a time between its own work:
 *
 *   for each round:
 *     advance the simulation (a 1-D heat equation on a rod, explicit Euler steps)
 *     tch_trainer_step(tr, k)                     -- k gradient steps, then control returns
 *     every few rounds:
 *       propose candidate designs with the host's own search, score them with the host's
 *       own evaluator (standing in for an expensive simulator) and feed them into the
 *       trainer's replay buffer (tch_buffer_add_discrete on the borrowed buffer)
 *       sample designs from the Student (tch_policy_sample_discrete) and score them
 *       read the trainer's metrics (tch_trainer_metric) and print a status line
 *
 * The designs are the cells of the built-in deceptive hypergrid (tch_env_create_hypergrid),
 * whose exact target lets the program report the L1 distance and the modes found. The
 * host's evaluator re-implements the grid's reward on its own; the program checks once that
 * it agrees with the library's (tch_env_log_reward), because objects fed into a buffer must
 * carry the same log-reward the env would give them.
 *
 *   embed_simulation [--steps N] [--chunk K] [--seed S] [--horizon H]
 *
 * --steps is the total number of training steps (default 3000), --chunk the steps per round
 * (default 10). Exit status 0 on success, 1 on any library error (printed with
 * tch_last_error()), 2 on a bad command line. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <teacher.h>

#define NDIM 2
#define ROD_CELLS 64
#define SIM_STEPS_PER_ROUND 50
#define ROUNDS_PER_FEED 5      /* the host scores and feeds candidates every 5 rounds */
#define N_CANDIDATES 32        /* candidates the host's own search scores per feed */
#define N_STUDENT 256          /* Student samples scored per status line */

/* Prints the failing call, its status and the library's detail text, then fails. */
#define CHECK(call)                                                                      \
  do {                                                                                   \
    tch_status st_ = (call);                                                             \
    if (st_ != TCH_OK) {                                                                 \
      fprintf(stderr, "embed_simulation: %s failed: %s: %s\n", #call, tch_status_str(st_), \
              tch_last_error());                                                         \
      goto done;                                                                         \
    }                                                                                    \
  } while (0)

/* ---- the host's own simulation ---------------------------------------------------------- */
/* A rod with a heater that switches on and off; the host's "real work" between training
 * chunks. Nothing here touches libteacher. */
typedef struct rod {
  double u[ROD_CELLS], tmp[ROD_CELLS];
  double t;
  uint64_t n_steps;
} rod;

static void rod_init(rod *r)
{
  memset(r, 0, sizeof *r);
}

static void rod_advance(rod *r, int n_steps)
{
  const double dt = 0.2, kappa = 1.0;   /* kappa dt / dx^2 = 0.2 < 0.5: stable */
  for (int s = 0; s < n_steps; s++) {
    const double heater = fmod(r->t, 40.0) < 20.0 ? 1.0 : 0.0;
    for (int i = 0; i < ROD_CELLS; i++) {
      double left = i > 0 ? r->u[i - 1] : r->u[i];                 /* insulated end */
      double right = i + 1 < ROD_CELLS ? r->u[i + 1] : 0.0;        /* cold end */
      double src = (i >= 10 && i < 14) ? heater : 0.0;
      r->tmp[i] = r->u[i] + dt * (kappa * (left - 2.0 * r->u[i] + right) + src);
    }
    memcpy(r->u, r->tmp, sizeof r->u);
    r->t += dt;
    r->n_steps++;
  }
}

static double rod_mean(const rod *r)
{
  double s = 0.0;
  for (int i = 0; i < ROD_CELLS; i++) s += r->u[i];
  return s / ROD_CELLS;
}

/* ---- the host's own evaluator and search ------------------------------------------------ */
/* The host's scoring function, standing in for an expensive simulator: the deceptive grid
 * reward, written independently of the library (same operations, same order). */
static double host_log_score(const int32_t *x, uint32_t horizon)
{
  const double hm1 = (double)(horizon - 1);
  int all_gt = 1, all_band = 1;
  for (int i = 0; i < NDIM; i++) {
    double a = fabs((double)x[i] / hm1 * 2.0 - 1.0);
    all_gt &= a > 0.2;
    all_band &= (a < 0.8) & (a > 0.6);
  }
  double r = (double)all_gt * -0.1 + (double)all_band * 2.0;
  return log(r + 0.1 + 1e-5);
}

/* The host's own random number generator (xorshift64*), for its candidate search. */
static uint64_t host_rand(uint64_t *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

int main(int argc, char **argv)
{
  unsigned long long total_steps = 3000, chunk = 10, seed = 0, horizon = 16;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    unsigned long long *dst = NULL;
    if (!strcmp(a, "--steps")) dst = &total_steps;
    else if (!strcmp(a, "--chunk")) dst = &chunk;
    else if (!strcmp(a, "--seed")) dst = &seed;
    else if (!strcmp(a, "--horizon")) dst = &horizon;
    char *end = NULL;
    if (!dst || i + 1 >= argc || (*dst = strtoull(argv[++i], &end, 10), *end != '\0') ||
        chunk == 0 || horizon < 2 || horizon > 4096) {
      fprintf(stderr, "usage: %s [--steps N] [--chunk K>0] [--seed S] [--horizon 2..4096]\n",
              argv[0]);
      return 2;
    }
  }
  if (tch_version_number() < TCH_VERSION_NUMBER) {   /* runtime older than our headers */
    fprintf(stderr, "embed_simulation: libteacher %s is older than the headers (%s)\n",
            tch_version_string(), TCH_VERSION_STRING);
    return 1;
  }

  int rc = 1;
  tch_env *env = NULL;
  tch_config *cfg = NULL;
  tch_trainer *tr = NULL;
  tch_buffer *buf = NULL;        /* borrowed from the trainer: never freed here */
  tch_policy *student = NULL;    /* borrowed from the trainer: never freed here */
  int32_t *x = NULL;
  double *log_r = NULL;
  rod sim;
  rod_init(&sim);
  uint64_t rng = 0x9e3779b97f4a7c15ull ^ (seed + 1);

  /* 1. The env and a config: a Teacher, and a replay buffer (needed to feed objects in). */
  CHECK(tch_env_create_hypergrid(NDIM, (uint32_t)horizon, 1.0, &env));
  CHECK(tch_config_create(&cfg));
  CHECK(tch_config_set_int(cfg, "seed", (int64_t)seed));
  CHECK(tch_config_set_int(cfg, "nn.hidden_dim", 64));
  CHECK(tch_config_set_bool(cfg, "teacher.enabled", 1));
  CHECK(tch_config_set_bool(cfg, "buffer.enabled", 1));
  CHECK(tch_config_set_string(cfg, "buffer.priority", "teacher_reward"));
  CHECK(tch_config_set_int(cfg, "buffer.capacity", 1000));
  CHECK(tch_trainer_create(env, cfg, &tr));

  /* 2. Borrowed handles: valid while the trainer lives (no retain needed here). */
  CHECK(tch_trainer_get_buffer(tr, &buf));
  CHECK(tch_trainer_get_student(tr, &student));
  uint32_t state_dim = 0, record_dim = 0;
  CHECK(tch_env_dims(env, &state_dim, NULL, NULL));
  CHECK(tch_buffer_record_dim(buf, &record_dim));
  if (record_dim != state_dim || state_dim != NDIM) {
    /* A buffer of DB transitions (student.loss db) holds other records. */
    fprintf(stderr, "embed_simulation: buffer records have %u values, states %u\n",
            (unsigned)record_dim, (unsigned)state_dim);
    goto done;
  }
  size_t n_modes_total = 0;
  CHECK(tch_env_n_modes(env, &n_modes_total));

  const size_t cap = N_STUDENT > N_CANDIDATES ? N_STUDENT : N_CANDIDATES;
  x = malloc(cap * NDIM * sizeof *x);
  log_r = malloc(cap * sizeof *log_r);
  if (!x || !log_r) {
    fprintf(stderr, "embed_simulation: out of memory\n");
    goto done;
  }

  /* 3. The host's evaluator must agree with the env's reward on the objects it feeds. */
  for (size_t i = 0; i < N_CANDIDATES; i++)
    for (int j = 0; j < NDIM; j++) x[i * NDIM + j] = (int32_t)(host_rand(&rng) % horizon);
  CHECK(tch_env_log_reward(env, N_CANDIDATES, x, log_r));
  for (size_t i = 0; i < N_CANDIDATES; i++) {
    double h = host_log_score(x + i * NDIM, (uint32_t)horizon);
    if (fabs(h - log_r[i]) > 1e-12) {
      fprintf(stderr, "embed_simulation: host score %.17g != env log-reward %.17g\n", h, log_r[i]);
      goto done;
    }
  }

  printf("libteacher %s: host-driven training on the deceptive grid (%d x %llu), "
         "%llu steps in chunks of %llu\n", tch_version_string(), NDIM, horizon, total_steps, chunk);
  uint64_t done_steps = 0, round = 0, fed = 0;
  while (done_steps < total_steps) {
    /* The host's own work. */
    rod_advance(&sim, SIM_STEPS_PER_ROUND);

    /* A few training steps; then control is back in the host's loop. */
    uint64_t k = total_steps - done_steps < chunk ? total_steps - done_steps : chunk;
    CHECK(tch_trainer_step(tr, k));
    done_steps += k;
    round++;
    if (round % ROUNDS_PER_FEED != 0 && done_steps < total_steps) continue;

    /* The host's search: random designs, scored by its own evaluator; it keeps the
     * high-reward ones (R > 1: the modes) and feeds them to the trainer. Without priorities, each
     * gets the buffer's highest current priority (teacher_reward mode), so they are
     * replayed at least as often as the best-ranked trajectory. */
    size_t n_keep = 0;
    for (size_t i = 0; i < N_CANDIDATES; i++) {
      int32_t c[NDIM];
      for (int j = 0; j < NDIM; j++) c[j] = (int32_t)(host_rand(&rng) % horizon);
      double s = host_log_score(c, (uint32_t)horizon);
      if (s > 0.0) {   /* R is 1e-5 or 0.1 outside the modes, 2.1 in them */
        memcpy(x + n_keep * NDIM, c, sizeof c);
        log_r[n_keep++] = s;
      }
    }
    CHECK(tch_buffer_add_discrete(buf, n_keep, x, log_r));
    fed += n_keep;

    /* Sample designs from the Student (no exploration) and score them on the host. */
    CHECK(tch_policy_sample_discrete(student, env, seed * 1000003u + round, N_STUDENT, x, NULL));
    size_t n_high = 0;
    for (size_t i = 0; i < N_STUDENT; i++)
      n_high += host_log_score(x + i * NDIM, (uint32_t)horizon) > 0.0;

    /* Metrics by name; NaN until defined. */
    double step = NAN, loss = NAN, modes = NAN, l1 = NAN, bsize = NAN;
    CHECK(tch_trainer_metric(tr, "step", &step));
    CHECK(tch_trainer_metric(tr, "loss.student", &loss));
    CHECK(tch_trainer_metric(tr, "modes", &modes));
    CHECK(tch_trainer_metric(tr, "l1", &l1));
    CHECK(tch_trainer_metric(tr, "buffer.size", &bsize));
    if (round % (ROUNDS_PER_FEED * 10) == 0 || done_steps == total_steps)
      printf("sim t %7.1f  rod mean T %.4f | step %5.0f  loss %8.4f  modes %3.0f/%zu  "
             "L1 %.2e  buffer %4.0f (host fed %" PRIu64 ")  student in modes %5.1f%%\n",
             sim.t, rod_mean(&sim), step, loss, modes, n_modes_total, l1, bsize, fed,
             100.0 * (double)n_high / N_STUDENT);
  }

  /* 4. Final evaluation and every metric by name. */
  CHECK(tch_trainer_evaluate(tr, 20000));
  printf("final metrics after %" PRIu64 " simulation steps:\n", sim.n_steps);
  for (const char *name = tch_trainer_next_metric(tr, NULL); name;
       name = tch_trainer_next_metric(tr, name)) {
    double v;
    CHECK(tch_trainer_metric(tr, name, &v));
    printf("  %-18s %.6g\n", name, v);
  }
  rc = 0;

done:
  free(x);
  free(log_r);
  tch_trainer_free(tr);   /* also releases the borrowed buffer and student */
  tch_config_free(cfg);
  tch_env_free(env);
  return rc;
}
