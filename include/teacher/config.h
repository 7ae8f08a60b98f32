/* tch_config: typed values under dotted keys identical to YAML paths
 * ("teacher.reward.C"). Every key is declared, with type, default and bounds, in one
 * parameter table (docs/config.md lists them). Unknown keys and out-of-range values are
 * TCH_E_CONFIG with a message naming the key (and file:line:column for YAML). */
#ifndef TEACHER_CONFIG_H
#define TEACHER_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tch_config tch_config;

/* Parameter types (pinned). Enumerations are strings restricted to a fixed set. */
typedef enum tch_param_type {
  TCH_PARAM_INT = 1,
  TCH_PARAM_DOUBLE = 2,
  TCH_PARAM_BOOL = 3,
  TCH_PARAM_STRING = 4,
  TCH_PARAM_ENUM = 5
} tch_param_type;

/* A new config holding every key at its default. */
TCH_API tch_status tch_config_create(tch_config **out);
TCH_API tch_status tch_config_clone(const tch_config *c, tch_config **out);
TCH_API tch_config *tch_config_retain(tch_config *c);
TCH_API void tch_config_free(tch_config *c);           /* NULL is a no-op */

/* YAML: nested mappings whose leaves are the keys' values. Keys not in the file keep
 * their current value. On error the config is left unchanged. */
TCH_API tch_status tch_config_load_yaml(tch_config *c, const char *path);
TCH_API tch_status tch_config_load_yaml_string(tch_config *c, const char *text, size_t len);
/* Writes the effective config (every key) as YAML; atomic (temp file + rename). */
TCH_API tch_status tch_config_dump_yaml(const tch_config *c, const char *path);

/* Typed setters: the value is validated against the key's type and bounds.
 * set_int is accepted for double keys; bools are 0/1. Enumerations use set_string. */
TCH_API tch_status tch_config_set_int(tch_config *c, const char *key, int64_t v);
TCH_API tch_status tch_config_set_double(tch_config *c, const char *key, double v);
TCH_API tch_status tch_config_set_bool(tch_config *c, const char *key, int v);
TCH_API tch_status tch_config_set_string(tch_config *c, const char *key, const char *v);
/* Parses text as the key's type ("1e-3", "true", "tb"): what a command line passes. */
TCH_API tch_status tch_config_set_from_string(tch_config *c, const char *key, const char *text);

TCH_API tch_status tch_config_get_int(const tch_config *c, const char *key, int64_t *out);
TCH_API tch_status tch_config_get_double(const tch_config *c, const char *key, double *out);
TCH_API tch_status tch_config_get_bool(const tch_config *c, const char *key, int *out);
/* *out is borrowed: valid until the key is set again or the config is freed. */
TCH_API tch_status tch_config_get_string(const tch_config *c, const char *key, const char **out);

/* Introspection (no config needed). tch_config_next_key(NULL) is the first key;
 * returns NULL after the last. */
TCH_API const char *tch_config_next_key(const char *prev);
/* Any out pointer may be NULL. min/max are meaningful for INT and DOUBLE;
 * choices is a '|'-separated list for ENUM (else ""). Strings are static. */
TCH_API tch_status tch_config_describe(const char *key, tch_param_type *type,
                                       const char **default_text, double *min, double *max,
                                       const char **choices, const char **doc);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_CONFIG_H */
