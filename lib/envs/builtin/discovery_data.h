/* Reward data of the discovery tasks, compiled into the library.
 *
 * The definitions are generated at build time by tools/gen_discovery_data.c from the plain-text
 * files under data/ (lib/envs/meson.build); the generator checks every count below against
 * the files, so a changed data file that no longer fits fails the build, not a run. */
#ifndef TCHI_DISCOVERY_DATA_H
#define TCHI_DISCOVERY_DATA_H
#include <stdint.h>

/* ---- qm9str (data/qm9str/) ----------------------------------------------------------- */
#define TCHI_QM9STR_LEN 5
#define TCHI_QM9STR_CHARS 11
#define TCHI_QM9STR_N 161051u        /* 11^5: every string of the task */
#define TCHI_QM9STR_N_MODES 805u

/* Proxy score of every string, indexed by its base-11 value (position 0 most significant):
 * proxy_scores.tsv in file order, float32 as the reference's table. */
extern const float tchi_qm9str_scores[TCHI_QM9STR_N];
/* Base-11 indices of the mode strings (modes.txt), strictly increasing. */
extern const uint32_t tchi_qm9str_modes[TCHI_QM9STR_N_MODES];

/* ---- sehstr (data/sehstr/) ----------------------------------------------------------- */
#define TCHI_SEHSTR_LEN 6
#define TCHI_SEHSTR_CHARS 18
#define TCHI_SEHSTR_N_FEATURES 108     /* 6 positions x 18 one-hot, index pos * 18 + block */
#define TCHI_SEHSTR_N_TREES 100
#define TCHI_SEHSTR_N_MODES 129u

/* One node of a regression tree of the gradient-boosted sEH proxy. */
typedef struct tchi_gbr_node {
  double value;          /* leaf: added to the prediction */
  double threshold;      /* split: go to left iff x[feature] <= threshold */
  uint16_t feature;      /* split: feature index < TCHI_SEHSTR_N_FEATURES */
  uint16_t left, right;  /* split: node indices within the tree, both > this node's */
  uint8_t missing_left;  /* split: a missing feature goes left (never happens here) */
  uint8_t is_leaf;
} tchi_gbr_node;

extern const double tchi_sehstr_baseline;   /* prediction = baseline + sum of leaf values */
/* Tree t is tchi_sehstr_nodes[tree_start[t] .. tree_start[t+1]), its root first. */
extern const uint32_t tchi_sehstr_tree_start[TCHI_SEHSTR_N_TREES + 1];
extern const tchi_gbr_node tchi_sehstr_nodes[];
/* Base-18 indices of the mode strings (modes.txt), strictly increasing. */
extern const uint32_t tchi_sehstr_modes[TCHI_SEHSTR_N_MODES];

#endif /* TCHI_DISCOVERY_DATA_H */
