/* Private to lib/config: the expanded parameter table, the config object's layout and the
 * helpers shared by config.c (values, validation), yaml_load.c and yaml_dump.c. */
#ifndef TCHI_CONFIG_IMPL_H
#define TCHI_CONFIG_IMPL_H
#include <stddef.h>
#include <stdint.h>
#include "config/config.h"

typedef struct tchi_param {
  const char *key;
  tch_param_type type;
  const char *def;      /* default, as text parsed by the type */
  double min, max;      /* inclusive bounds of INT and DOUBLE */
  const char *choices;  /* '|'-separated values of an ENUM, else "" */
  const char *doc;
} tchi_param;

/* Number of keys, counted at compile time from params.def. */
enum {
  TCHI_N_PARAMS = 0
#define TCH_PARAM(key, type, def, min, max, choices, doc) + 1
#include "params.def"
#undef TCH_PARAM
};

/* Longest key accepted anywhere (the table's keys are checked to be shorter by the tests). */
#define TCHI_KEY_MAX 128

extern const tchi_param tchi_params[TCHI_N_PARAMS];

typedef union tchi_value {
  int64_t i;   /* INT */
  double d;    /* DOUBLE */
  int b;       /* BOOL: 0 or 1 */
  char *s;     /* STRING, ENUM: owned copy */
} tchi_value;

struct tch_config {
  tchi_ref ref;
  tchi_value v[TCHI_N_PARAMS];   /* indexed by table position */
};

/* Index of key in the table, or -1. */
int tchi_param_find(const char *key);
/* 1 if some key starts with "prefix." (prefix of length n, no trailing dot). */
int tchi_param_is_section(const char *prefix, size_t n);
/* "int", "double", "bool", "string", "enum". */
const char *tchi_param_type_name(tch_param_type t);
/* What a value of the type is called in "expects ..." messages: "an integer", ... */
const char *tchi_param_type_noun(tch_param_type t);

/* TCH_E_CONFIG "unknown key 'k'" with a "did you mean" suggestion; section != 0 suggests
 * a section (a proper prefix of keys) instead of a key. */
tch_status tchi_config_unknown(const char *key, int section);

/* Parses text by the type of key idx, validates and stores it ("key 'k' expects ..."). */
tch_status tchi_config_set_text(tch_config *c, int idx, const char *text);

/* Exchanges every value of a and b. */
void tchi_config_swap_values(tch_config *a, tch_config *b);

/* Shortest "%.{15,16,17}g" text that reads back to exactly v, in the C locale whatever
 * the host's locale; "inf"/"-inf"/"nan" for non-finite values. */
void tchi_format_double(char *buf, size_t n, double v);

#endif /* TCHI_CONFIG_IMPL_H */
