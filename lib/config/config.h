/* Configuration, internal view: typed access with defaults guaranteed by the table. */
#ifndef TCHI_CONFIG_H
#define TCHI_CONFIG_H
#include "core/core.h"
#include "teacher/config.h"

/* Getters for library code: the key must be in params.def (else TCH_E_INTERNAL is what the
 * public getter would say; these return the default and log). c == NULL -> defaults. */
int64_t tchi_cfg_int(const tch_config *c, const char *key);
double tchi_cfg_double(const tch_config *c, const char *key);
int tchi_cfg_bool(const tch_config *c, const char *key);
const char *tchi_cfg_string(const tch_config *c, const char *key);   /* borrowed */

#endif /* TCHI_CONFIG_H */
