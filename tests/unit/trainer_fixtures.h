/* Helpers shared by the diffusion / Reinforced SMC trainer tests (test_dtrainer.c,
 * test_smc_trainer.c, test_smc_teacher.c): read a metric, run steps, compare Adam states.
 * Header-only (static inline); include after tch_check.h and trainer/trainer.h. */
#ifndef TCH_TEST_TRAINER_FIXTURES_H
#define TCH_TEST_TRAINER_FIXTURES_H

static inline double metric(const tch_trainer *t, const char *name)
{
  double v;
  ck_assert_msg(tch_trainer_metric(t, name, &v) == TCH_OK, "%s: %s", name, tch_last_error());
  return v;
}

static inline void run(tch_trainer *t, uint64_t n)
{
  ck_assert_msg(tch_trainer_step(t, n) == TCH_OK, "%s", tch_last_error());
}

static inline int same_adam(const tchi_adam *a, const tchi_adam *b)
{
  if (a->t != b->t || a->n_groups != b->n_groups) return 0;
  for (size_t g = 0; g < a->n_groups; g++)
    if (memcmp(a->m[g], b->m[g], a->grp[g].n * sizeof(double)) ||
        memcmp(a->v[g], b->v[g], a->grp[g].n * sizeof(double)))
      return 0;
  return 1;
}

#endif
