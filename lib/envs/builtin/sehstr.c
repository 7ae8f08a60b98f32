/* sehstr: the reference's sEH fragment-string task (discovery/exps/sehstr/sehstr.py,
 * settings.yaml, datasets/sehstr/gbr_proxy.py) on the SeqPA MDP (seqpa.h): strings of 6
 * blocks out of 18, scored by the gradient-boosted regression proxy (sklearn
 * HistGradientBoostingRegressor, sehstr_gbtr.pkl) whose 100 trees data/sehstr/gbr_trees.txt
 * compiles into the library (discovery_data.h). 18^6 = 34 012 224 strings: not enumerated;
 * the 129 modes are the reference's list (data/sehstr/modes.txt,
 * modes_tanimoto_div0.4_percentile_0.0001.pkl). */
#include <math.h>
#include "envs/builtin/discovery_data.h"
#include "envs/builtin/seqpa.h"

/* exps/sehstr/settings.yaml: beta, scale_reward_min, scale_reward_max, replay_buffer_size. */
#define SEHSTR_BETA 6.0
#define SEHSTR_Y_MIN 0.001
#define SEHSTR_R_MAX 10.0
#define SEHSTR_BUFFER 1000
/* sehstr.py reward(): "r = np.maximum(r * self.scale, 1e-32)". */
#define SEHSTR_MAX_FLOOR 1e-32
/* log sum over X of R (R = the transformed reward above), see tchi_env_create_sehstr */
#define SEHSTR_LOG_Z 17.552393997
/* sehstr.py takes scale from the maximum of the proxy's predictions over all 18^6 strings
 * (sehstr_gbtr_allpreds.pkl, not in the reference repository): 7.0332530647 at 'ag550c',
 * by enumeration over the shipped trees (data/README.md; spec section 5.3). */
#define SEHSTR_PRED_MAX 7.0332530647

/* One tree's leaf value for the one-hot features of s: x[pos * 18 + block] = [s[pos] == block]. */
static double tree_value(const tchi_gbr_node *t, const int32_t *s)
{
  const tchi_gbr_node *nd = t;
  while (!nd->is_leaf) {
    const uint32_t f = nd->feature;
    const double x = s[f / TCHI_SEHSTR_CHARS] == (int32_t)(f % TCHI_SEHSTR_CHARS) ? 1.0 : 0.0;
    nd = t + (x <= nd->threshold ? nd->left : nd->right);
  }
  return nd->value;
}

void tchi_sehstr_predict(size_t n, const int32_t *states, double *out_y)
{
  for (size_t r = 0; r < n; r++) {
    const int32_t *s = states + r * TCHI_SEHSTR_LEN;
    /* Trees added one by one onto the baseline, in order, as sklearn's _raw_predict. */
    double y = tchi_sehstr_baseline;
    for (int k = 0; k < TCHI_SEHSTR_N_TREES; k++)
      y += tree_value(tchi_sehstr_nodes + tchi_sehstr_tree_start[k], s);
    out_y[r] = y;
  }
}

static int sehstr_score(void *user, size_t n, const int32_t *states, double *out_y)
{
  (void)user;
  tchi_sehstr_predict(n, states, out_y);
  return 0;
}

tch_status tchi_env_create_sehstr(tch_env **out)
{
  const tchi_seqpa_task task = {
    .name = "sehstr",
    .len = TCHI_SEHSTR_LEN,
    .n_chars = TCHI_SEHSTR_CHARS,
    .score = sehstr_score,
    .reward = {.y_min = SEHSTR_Y_MIN, .beta = SEHSTR_BETA,
               .log_scale = log(SEHSTR_R_MAX) - SEHSTR_BETA * log(SEHSTR_PRED_MAX),
               .add_floor = 0.0, .max_floor = SEHSTR_MAX_FLOOR},
    .modes = tchi_sehstr_modes,
    .n_modes = TCHI_SEHSTR_N_MODES,
    .enumerate = 0,
    .buffer_capacity = SEHSTR_BUFFER,
    /* log sum over all 18^6 strings of R, by enumeration: `tools/seqpa_log_z sehstr`
     * (build/tools/seqpa_log_z; 34 012 224 rewards, about a minute of CPU). The unscaled
     * log sum of max(y, 0.001)^6 is 26.953705 (the reference's mdp.logZ). */
    .has_known_log_z = 1,
    .known_log_z = SEHSTR_LOG_Z,
  };
  return tchi_env_create_seqpa(&task, out);
}
