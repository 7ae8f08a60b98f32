/** @file teacher/config.h
 * @brief tch_config: typed values under dotted keys identical to YAML paths
 * ("teacher.reward.C").
 *
 * Every key is declared, with type, default and bounds, in one
 * parameter table (docs/config.md lists them). Unknown keys and out-of-range values are
 * TCH_E_CONFIG with a message naming the key (and file:line:column for YAML).
 * Guide: docs/api/config.md. */
#ifndef TEACHER_CONFIG_H
#define TEACHER_CONFIG_H
#include <stddef.h>
#include <stdint.h>
#include "teacher/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Opaque, reference-counted configuration: every key of the parameter table with a value. */
typedef struct tch_config tch_config;

/** Parameter types (pinned). Enumerations are strings restricted to a fixed set. */
typedef enum tch_param_type {
  TCH_PARAM_INT = 1,      /**< 64-bit integer */
  TCH_PARAM_DOUBLE = 2,   /**< double (never NaN) */
  TCH_PARAM_BOOL = 3,     /**< 0 or 1 */
  TCH_PARAM_STRING = 4,   /**< free text */
  TCH_PARAM_ENUM = 5      /**< one string of a fixed set */
} tch_param_type;

/** A new config holding every key at its default. */
TCH_API tch_status tch_config_create(tch_config **out);
/** A new, independent config with the same values as c (reference count 1). */
TCH_API tch_status tch_config_clone(const tch_config *c, tch_config **out);
/** Adds a reference and returns c (NULL-tolerant). */
TCH_API tch_config *tch_config_retain(tch_config *c);
/** Drops a reference; the config is destroyed with the last one. NULL is a no-op. */
TCH_API void tch_config_free(tch_config *c);           /* NULL is a no-op */

/** Loads a YAML file: nested mappings whose leaves are the keys' values. Keys not in the
 * file keep their current value. On error the config is left unchanged. */
TCH_API tch_status tch_config_load_yaml(tch_config *c, const char *path);
/** As tch_config_load_yaml(), from len bytes of YAML text in memory. */
TCH_API tch_status tch_config_load_yaml_string(tch_config *c, const char *text, size_t len);
/** Writes the effective config (every key) as YAML; atomic (temp file + rename). */
TCH_API tch_status tch_config_dump_yaml(const tch_config *c, const char *path);

/** Sets an INT (or DOUBLE) key. Typed setters validate the value against the key's type
 * and bounds; set_int is accepted for double keys. */
TCH_API tch_status tch_config_set_int(tch_config *c, const char *key, int64_t v);
/** Sets a DOUBLE key (or an INT key, if v is a whole number in range). */
TCH_API tch_status tch_config_set_double(tch_config *c, const char *key, double v);
/** Sets a BOOL key: 0 is false, any other value true. */
TCH_API tch_status tch_config_set_bool(tch_config *c, const char *key, int v);
/** Sets a STRING or ENUM key (the text is copied). Enumerations use set_string. */
TCH_API tch_status tch_config_set_string(tch_config *c, const char *key, const char *v);
/** Parses text as the key's type ("1e-3", "true", "tb"): what a command line passes. */
TCH_API tch_status tch_config_set_from_string(tch_config *c, const char *key, const char *text);

/** Reads an INT key. */
TCH_API tch_status tch_config_get_int(const tch_config *c, const char *key, int64_t *out);
/** Reads a DOUBLE key (an INT key is converted). */
TCH_API tch_status tch_config_get_double(const tch_config *c, const char *key, double *out);
/** Reads a BOOL key as 0 or 1. */
TCH_API tch_status tch_config_get_bool(const tch_config *c, const char *key, int *out);
/** Reads a STRING or ENUM key. *out is borrowed: valid until the key is set again or the config is freed. */
TCH_API tch_status tch_config_get_string(const tch_config *c, const char *key, const char **out);

/** Introspection (no config needed). tch_config_next_key(NULL) is the first key;
 * returns NULL after the last (and for a name that is not a key). */
TCH_API const char *tch_config_next_key(const char *prev);
/** Describes a key of the parameter table. Any out pointer may be NULL. min/max are meaningful for INT and DOUBLE;
 * choices is a '|'-separated list for ENUM (else ""). Strings are static. */
TCH_API tch_status tch_config_describe(const char *key, tch_param_type *type,
                                       const char **default_text, double *min, double *max,
                                       const char **choices, const char **doc);

#ifdef __cplusplus
}
#endif
#endif /* TEACHER_CONFIG_H */
