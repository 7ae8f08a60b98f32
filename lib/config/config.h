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
/* (A key of another type than the getter's is also logged; the getters then return 0,
 * 0.0, 0 or "". tchi_cfg_double accepts INT keys.) */

/* The effective config as YAML text (what tch_config_dump_yaml writes), NUL-terminated;
 * *len (may be NULL) excludes the NUL. The caller frees *out with tchi_free. */
tch_status tchi_config_dump_yaml_string(const tch_config *c, char **out, size_t *len);

#endif /* TCHI_CONFIG_H */
