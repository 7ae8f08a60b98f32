/* seqpa_log_z: exact log Z = log sum over all A^L strings of R(x) of a built-in SeqPA task,
 * by enumeration on several threads (public API only). It produced the constant that
 * lib/envs/builtin/sehstr.c ships (sehstr: 18^6 = 34 012 224 strings, too many to enumerate
 * each time an env is created); qm9str and tfbind8 enumerate themselves, so for them it is a
 * cross-check against tch_env_target_log_Z.
 *
 *   seqpa_log_z TASK [THREADS]      TASK: qm9str | sehstr | tfbind8; THREADS default 2
 *
 * Prints log Z with 9 decimals. Each thread owns its env (envs are not shared across
 * threads) and sums its contiguous range of string indices with a running maximum and a
 * compensated (Neumaier) sum; the partial sums are combined in thread order, so the result
 * does not depend on scheduling. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <teacher.h>

#define BATCH 4096

typedef struct part {
  const char *task;
  uint32_t len, chars;
  uint64_t begin, end;
  double max, sum, comp;   /* log Z of the range = max + log(sum + comp) */
  tch_status status;
  char error[256];
} part;

static tch_status create(const char *task, tch_env **e)
{
  if (!strcmp(task, "qm9str")) return tch_env_create_qm9str(e);
  if (!strcmp(task, "sehstr")) return tch_env_create_sehstr(e);
  if (!strcmp(task, "tfbind8")) return tch_env_create_tfbind8(e);
  return TCH_E_ARG;
}

/* Adds exp(v - max) to the compensated sum, rescaling it when v raises the maximum. */
static void add(part *p, double v)
{
  if (v > p->max) {
    const double f = exp(p->max - v);
    p->sum *= f;
    p->comp *= f;
    p->max = v;
  }
  const double x = exp(v - p->max), t = p->sum + x;
  p->comp += fabs(p->sum) >= x ? (p->sum - t) + x : (x - t) + p->sum;
  p->sum = t;
}

static void *run(void *arg)
{
  part *p = arg;
  tch_env *e = NULL;
  int32_t *states = malloc((size_t)BATCH * p->len * sizeof *states);
  double *log_r = malloc(BATCH * sizeof *log_r);
  p->max = -INFINITY;
  p->sum = p->comp = 0.0;
  if (!states || !log_r) {
    p->status = TCH_E_NOMEM;
    snprintf(p->error, sizeof p->error, "out of memory");
    goto done;
  }
  if ((p->status = create(p->task, &e)) != TCH_OK) {
    snprintf(p->error, sizeof p->error, "%s", tch_last_error());
    goto done;
  }
  for (uint64_t k0 = p->begin; k0 < p->end; k0 += BATCH) {
    const size_t n = (size_t)(p->end - k0 < BATCH ? p->end - k0 : BATCH);
    for (size_t i = 0; i < n; i++) {   /* base-A digits, position 0 most significant */
      uint64_t k = k0 + i;
      for (uint32_t j = p->len; j-- > 0;) {
        states[i * p->len + j] = (int32_t)(k % p->chars);
        k /= p->chars;
      }
    }
    if ((p->status = tch_env_log_reward(e, n, states, log_r)) != TCH_OK) {
      snprintf(p->error, sizeof p->error, "%s", tch_last_error());
      goto done;
    }
    for (size_t i = 0; i < n; i++) add(p, log_r[i]);
  }
done:
  tch_env_free(e);
  free(states);
  free(log_r);
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: seqpa_log_z qm9str|sehstr|tfbind8 [THREADS]\n");
    return 2;
  }
  const long threads = argc == 3 ? strtol(argv[2], NULL, 10) : 2;
  if (threads < 1 || threads > 256) {
    fprintf(stderr, "seqpa_log_z: THREADS must be 1..256\n");
    return 2;
  }
  tch_env *e = NULL;
  if (create(argv[1], &e) != TCH_OK) {
    fprintf(stderr, "seqpa_log_z: unknown task '%s' (%s)\n", argv[1], tch_last_error());
    return 2;
  }
  uint32_t state_dim = 0, n_actions = 0;
  if (tch_env_dims(e, &state_dim, &n_actions, NULL) != TCH_OK) {
    fprintf(stderr, "seqpa_log_z: %s\n", tch_last_error());
    tch_env_free(e);
    return 1;
  }
  double known = NAN;
  if (tch_env_target_log_Z(e, &known) != TCH_OK) known = NAN;
  tch_env_free(e);
  /* SeqPA: state_dim = L, n_actions = 2A + 1 (prepend A, append A, EXIT) */
  const uint32_t L = state_dim, A = (n_actions - 1) / 2;
  uint64_t total = 1;
  for (uint32_t j = 0; j < L; j++) total *= A;

  part *parts = calloc((size_t)threads, sizeof *parts);
  pthread_t *tid = calloc((size_t)threads, sizeof *tid);
  if (!parts || !tid) {
    fprintf(stderr, "seqpa_log_z: out of memory\n");
    return 1;
  }
  for (long i = 0; i < threads; i++) {
    parts[i] = (part){.task = argv[1], .len = L, .chars = A,
                      .begin = total * (uint64_t)i / (uint64_t)threads,
                      .end = total * (uint64_t)(i + 1) / (uint64_t)threads};
    if (pthread_create(&tid[i], NULL, run, &parts[i])) {
      fprintf(stderr, "seqpa_log_z: cannot start a thread\n");
      return 1;
    }
  }
  for (long i = 0; i < threads; i++) pthread_join(tid[i], NULL);
  part all = {.max = -INFINITY};
  for (long i = 0; i < threads; i++) {
    if (parts[i].status != TCH_OK) {
      fprintf(stderr, "seqpa_log_z: %s\n", parts[i].error);
      return 1;
    }
    if (parts[i].sum + parts[i].comp > 0) add(&all, parts[i].max + log(parts[i].sum + parts[i].comp));
  }
  printf("%s: %llu strings, log Z = %.9f", argv[1], (unsigned long long)total,
         all.max + log(all.sum + all.comp));
  if (!isnan(known)) printf(" (the env's own: %.9f)", known);
  printf("\n");
  free(parts);
  free(tid);
  return 0;
}
