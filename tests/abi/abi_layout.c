/* Prints the C layout of the public descriptor structs and the pinned enum values, one
 * "name value" line each, for cffi_check.py to compare with what cffi parsed. */
#include <stddef.h>
#include <stdio.h>
#include <teacher.h>

#define FIELD(T, f) printf("offsetof %s.%s %zu\n", #T, #f, offsetof(T, f))
#define CONST(c) printf("const %s %lld\n", #c, (long long)(c))

int main(void)
{
  printf("sizeof tch_discrete_env_desc %zu\n", sizeof(tch_discrete_env_desc));
  FIELD(tch_discrete_env_desc, struct_size);
  FIELD(tch_discrete_env_desc, state_dim);
  FIELD(tch_discrete_env_desc, n_actions);
  FIELD(tch_discrete_env_desc, feat_dim);
  FIELD(tch_discrete_env_desc, max_len);
  FIELD(tch_discrete_env_desc, s0);
  FIELD(tch_discrete_env_desc, step);
  FIELD(tch_discrete_env_desc, backward_step);
  FIELD(tch_discrete_env_desc, masks);
  FIELD(tch_discrete_env_desc, log_reward);
  FIELD(tch_discrete_env_desc, features);
  FIELD(tch_discrete_env_desc, user);
  FIELD(tch_discrete_env_desc, user_free);
  FIELD(tch_discrete_env_desc, vocab);
  FIELD(tch_discrete_env_desc, flags);
  FIELD(tch_discrete_env_desc, cond_dim);
  printf("sizeof tch_energy_desc %zu\n", sizeof(tch_energy_desc));
  FIELD(tch_energy_desc, struct_size);
  FIELD(tch_energy_desc, dim);
  FIELD(tch_energy_desc, flags);
  FIELD(tch_energy_desc, log_density);
  FIELD(tch_energy_desc, log_Z);
  FIELD(tch_energy_desc, sample_reference);
  FIELD(tch_energy_desc, user);
  FIELD(tch_energy_desc, user_free);
  printf("sizeof tch_smc_desc %zu\n", sizeof(tch_smc_desc));
  FIELD(tch_smc_desc, struct_size);
  FIELD(tch_smc_desc, n_particles);
  FIELD(tch_smc_desc, n_chunks);
  FIELD(tch_smc_desc, resampler);
  FIELD(tch_smc_desc, resample_threshold);
  FIELD(tch_smc_desc, target_ess);
  FIELD(tch_smc_desc, unbiased);
  FIELD(tch_smc_desc, mala_step);
  FIELD(tch_smc_desc, mala_steps);
  printf("sizeof tch_seqpa_env_desc %zu\n", sizeof(tch_seqpa_env_desc));
  FIELD(tch_seqpa_env_desc, struct_size);
  FIELD(tch_seqpa_env_desc, len);
  FIELD(tch_seqpa_env_desc, n_chars);
  FIELD(tch_seqpa_env_desc, flags);
  FIELD(tch_seqpa_env_desc, score);
  FIELD(tch_seqpa_env_desc, user);
  FIELD(tch_seqpa_env_desc, user_free);
  FIELD(tch_seqpa_env_desc, name);
  FIELD(tch_seqpa_env_desc, beta);
  FIELD(tch_seqpa_env_desc, y_min);
  FIELD(tch_seqpa_env_desc, log_scale);
  FIELD(tch_seqpa_env_desc, r_max);
  FIELD(tch_seqpa_env_desc, add_floor);
  FIELD(tch_seqpa_env_desc, max_floor);
  FIELD(tch_seqpa_env_desc, log_Z);
  FIELD(tch_seqpa_env_desc, modes);
  FIELD(tch_seqpa_env_desc, n_modes);
  printf("sizeof tch_status %zu\n", sizeof(tch_status));
  CONST(TCH_OK);
  CONST(TCH_STOPPED);
  CONST(TCH_E_ARG);
  CONST(TCH_E_NOMEM);
  CONST(TCH_E_STATE);
  CONST(TCH_E_CONFIG);
  CONST(TCH_E_CALLBACK);
  CONST(TCH_E_NUMERIC);
  CONST(TCH_E_IO);
  CONST(TCH_E_VERSION);
  CONST(TCH_E_INTERNAL);
  CONST(TCH_PARAM_INT);
  CONST(TCH_PARAM_DOUBLE);
  CONST(TCH_PARAM_BOOL);
  CONST(TCH_PARAM_STRING);
  CONST(TCH_PARAM_ENUM);
  CONST(TCH_SMC_RESAMPLER_CONFIG);
  CONST(TCH_SMC_RESAMPLER_SYSTEMATIC);
  CONST(TCH_SMC_RESAMPLER_STRATIFIED);
  CONST(TCH_SMC_RESAMPLER_MULTINOMIAL);
  CONST(TCH_SOURCE_STUDENT);
  CONST(TCH_SOURCE_TEACHER);
  CONST(TCH_SOURCE_BUFFER);
  CONST(TCH_SOURCE_SMC);
  return 0;
}
