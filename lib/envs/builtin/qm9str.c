/* qm9str: the reference's QM9 fragment-string task (discovery/exps/qm9str/qm9str.py,
 * settings.yaml) on the SeqPA MDP (seqpa.h): strings of 5 blocks out of 11, scored by the
 * exhaustive proxy table data/qm9str/proxy_scores.tsv compiled into the library
 * (discovery_data.h). The whole space (11^5 = 161 051 strings) is enumerated at creation:
 * exact target, exact log Z, and the reference's 805 modes (data/qm9str/modes.txt,
 * modes_percentile_0.005.pkl). */
#include <math.h>
#include "envs/builtin/discovery_data.h"
#include "envs/builtin/seqpa.h"

/* exps/qm9str/settings.yaml: beta, scale_reward_min, scale_reward_max, replay_buffer_size. */
#define QM9STR_BETA 20.0
#define QM9STR_Y_MIN 0.001
#define QM9STR_R_MAX 100.0
#define QM9STR_BUFFER 1000
/* qm9str.py: "py = py * self.scale + 1e-12". */
#define QM9STR_ADD_FLOOR 1e-12

void tchi_qm9str_score(size_t n, const int32_t *states, double *out_y)
{
  for (size_t r = 0; r < n; r++)
    out_y[r] = (double)tchi_qm9str_scores[tchi_seqpa_index(states + r * TCHI_QM9STR_LEN,
                                                           TCHI_QM9STR_LEN, TCHI_QM9STR_CHARS)];
}

static int qm9str_score(void *user, size_t n, const int32_t *states, double *out_y)
{
  (void)user;
  tchi_qm9str_score(n, states, out_y);
  return 0;
}

tch_status tchi_env_create_qm9str(tch_env **out)
{
  /* scale = R_max / max over X of max(y, y_min)^beta, from the table as qm9str.py does. */
  double y_max = QM9STR_Y_MIN;
  for (size_t i = 0; i < TCHI_QM9STR_N; i++)
    if ((double)tchi_qm9str_scores[i] > y_max) y_max = (double)tchi_qm9str_scores[i];
  const tchi_seqpa_task task = {
    .name = "qm9str",
    .len = TCHI_QM9STR_LEN,
    .n_chars = TCHI_QM9STR_CHARS,
    .score = qm9str_score,
    .reward = {.y_min = QM9STR_Y_MIN, .beta = QM9STR_BETA,
               .log_scale = log(QM9STR_R_MAX) - QM9STR_BETA * log(y_max),
               .add_floor = QM9STR_ADD_FLOOR, .max_floor = 0.0},
    .modes = tchi_qm9str_modes,
    .n_modes = TCHI_QM9STR_N_MODES,
    .enumerate = 1,
    .buffer_capacity = QM9STR_BUFFER,
  };
  return tchi_env_create_seqpa(&task, out);
}
