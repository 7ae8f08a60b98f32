/* What the mixer's SMC source (lib/api/mixer_api.c) needs of a tch_smc handle
 * (lib/api/smc_api.c), whose struct stays private to smc_api.c. */
#ifndef TCHI_SMC_HANDLE_H
#define TCHI_SMC_HANDLE_H
#include <stddef.h>
#include "core/core.h"

struct tch_smc;
struct tch_env;

/* The env the sampler runs on: its trainer's. */
const struct tch_env *tchi_smc_handle_env(const struct tch_smc *s);
/* tch_smc_run from the caller's random stream instead of a seed's: the same checks (n must
 * be the sampler's n_particles), outputs, metrics and guarantees. */
tch_status tchi_smc_handle_run(struct tch_smc *s, tchi_rng *rng, size_t n, double *out_x,
                               double *out_log_w, double *out_log_z);

#endif /* TCHI_SMC_HANDLE_H */
