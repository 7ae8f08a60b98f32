/* YAML input (libyaml document API). Nested mappings flatten to dotted keys (dotted names
 * are also accepted as mapping keys); each leaf is read by its key's type. Errors carry
 * "path:line:column: ". Loading is transactional: values go into a clone that replaces the
 * config's values only if the whole document is valid. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>
#include "config_impl.h"

/* Config files are small; refuse anything absurd instead of reading it all. */
#define MAX_FILE_BYTES ((size_t)64 << 20)

typedef struct load_ctx {
  const char *name;              /* path, or "<string>" */
  yaml_document_t *doc;
  tch_config *cfg;               /* the clone being filled */
  unsigned char seen[TCHI_N_PARAMS];
  yaml_mark_t first[TCHI_N_PARAMS];
} load_ctx;

static tch_status fail_at(const char *name, yaml_mark_t m, const char *fmt, ...) TCHI_PRINTF(3, 4);
static tch_status fail_at(const char *name, yaml_mark_t m, const char *fmt, ...)
{
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return tchi_fail(TCH_E_CONFIG, "%s:%zu:%zu: %s", name, m.line + 1, m.column + 1, msg);
}

/* Prefixes the current error text with the position (TCH_E_CONFIG only). */
static tch_status wrap(const char *name, yaml_mark_t m, tch_status st)
{
  if (st != TCH_E_CONFIG) return st;
  char msg[900];
  snprintf(msg, sizeof msg, "%s", tch_last_error());
  return fail_at(name, m, "%s", msg);
}

static const char *kind(const yaml_node_t *n)
{
  switch (n->type) {
  case YAML_MAPPING_NODE: return "a mapping";
  case YAML_SEQUENCE_NODE: return "a sequence";
  case YAML_SCALAR_NODE: return "a scalar";
  default: return "an empty node";
  }
}

/* Plain "", "~" or "null": YAML's null. */
static int is_null(const yaml_node_t *n)
{
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *s = (const char *)n->data.scalar.value;
  return n->data.scalar.length == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
         strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static tch_status set_leaf(load_ctx *x, int idx, const yaml_node_t *v)
{
  const tchi_param *p = &tchi_params[idx];
  if (v->type != YAML_SCALAR_NODE)
    return fail_at(x->name, v->start_mark, "key '%s' expects %s, got %s", p->key,
                   tchi_param_type_noun(p->type), kind(v));
  const char *text = (const char *)v->data.scalar.value;
  if (strlen(text) != v->data.scalar.length)
    return fail_at(x->name, v->start_mark, "key '%s': value contains a NUL character", p->key);
  if ((p->type == TCH_PARAM_STRING || p->type == TCH_PARAM_ENUM) && is_null(v))
    return fail_at(x->name, v->start_mark, "key '%s' expects a string, got null (write \"\" for an empty string)",
                   p->key);
  return wrap(x->name, v->start_mark, tchi_config_set_text(x->cfg, idx, text));
}

/* Walks mapping map whose keys extend path[0..plen) ("" at the top). The recursion only
 * follows known sections, so its depth is bounded by the table even for cyclic aliases. */
static tch_status walk(load_ctx *x, const yaml_node_t *map, const char *path, size_t plen)
{
  const yaml_node_pair_t *start = map->data.mapping.pairs.start, *top = map->data.mapping.pairs.top;
  for (const yaml_node_pair_t *pr = start; pr < top; pr++) {
    const yaml_node_t *k = yaml_document_get_node(x->doc, pr->key);
    const yaml_node_t *v = yaml_document_get_node(x->doc, pr->value);
    if (!k || !v) return fail_at(x->name, map->start_mark, "malformed mapping");
    if (k->type != YAML_SCALAR_NODE)
      return fail_at(x->name, k->start_mark, "mapping keys must be names, got %s", kind(k));
    const char *ks = (const char *)k->data.scalar.value;
    size_t kl = k->data.scalar.length;

    /* The name as shown in messages (truncated if absurdly long). */
    char full[TCHI_KEY_MAX + 1], shown[2 * TCHI_KEY_MAX + 8];
    snprintf(shown, sizeof shown, "%.*s%s%.*s", (int)plen, path, plen ? "." : "",
             (int)TCHI_MIN(kl, (size_t)TCHI_KEY_MAX), ks);
    if (kl > TCHI_KEY_MAX) strcat(shown, "...");

    for (const yaml_node_pair_t *q = start; q < pr; q++) {
      const yaml_node_t *kq = yaml_document_get_node(x->doc, q->key);
      if (kq && kq->type == YAML_SCALAR_NODE && kq->data.scalar.length == kl &&
          memcmp(kq->data.scalar.value, ks, kl) == 0)
        return fail_at(x->name, k->start_mark, "duplicate key '%s' (first at line %zu, column %zu)",
                       shown, kq->start_mark.line + 1, kq->start_mark.column + 1);
    }

    size_t fl = plen + (plen ? 1 : 0) + kl;
    if (kl == 0 || fl > TCHI_KEY_MAX || memchr(ks, '\0', kl))
      return fail_at(x->name, k->start_mark, "unknown key '%s'", shown);
    memcpy(full, path, plen);
    if (plen) full[plen] = '.';
    memcpy(full + fl - kl, ks, kl);
    full[fl] = '\0';

    int idx = tchi_param_find(full);
    if (idx >= 0) {
      if (x->seen[idx])
        return fail_at(x->name, k->start_mark, "duplicate key '%s' (first at line %zu, column %zu)",
                       full, x->first[idx].line + 1, x->first[idx].column + 1);
      tch_status st = set_leaf(x, idx, v);
      if (st) return st;
      x->seen[idx] = 1;
      x->first[idx] = k->start_mark;
    } else if (tchi_param_is_section(full, fl)) {
      if (is_null(v)) continue;   /* "teacher:" with every key commented out */
      if (v->type != YAML_MAPPING_NODE)
        return fail_at(x->name, v->start_mark, "'%s' is a section: expected a mapping of its keys, got %s",
                       full, kind(v));
      tch_status st = walk(x, v, full, fl);
      if (st) return st;
    } else {
      return wrap(x->name, k->start_mark, tchi_config_unknown(full, v->type == YAML_MAPPING_NODE));
    }
  }
  return TCH_OK;
}

static tch_status parser_error(const yaml_parser_t *p, const char *name, const char *text, size_t len)
{
  switch (p->error) {
  case YAML_MEMORY_ERROR:
    return tchi_fail(TCH_E_NOMEM, "%s: out of memory parsing YAML", name);
  case YAML_READER_ERROR: {
    size_t off = TCHI_MIN(p->problem_offset, len), line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
      if (text[i] == '\n') { line++; col = 1; }
      else if (((unsigned char)text[i] & 0xC0) != 0x80) col++;
    }
    if (p->problem_value != -1)
      return tchi_fail(TCH_E_CONFIG, "%s:%zu:%zu: invalid YAML input: %s (byte 0x%02X)", name, line,
                       col, p->problem ? p->problem : "?", (unsigned)p->problem_value);
    return tchi_fail(TCH_E_CONFIG, "%s:%zu:%zu: invalid YAML input: %s", name, line, col,
                     p->problem ? p->problem : "?");
  }
  case YAML_SCANNER_ERROR:
  case YAML_PARSER_ERROR:
  case YAML_COMPOSER_ERROR:
    if (p->context)
      return fail_at(name, p->problem_mark, "YAML syntax error: %s (%s at line %zu, column %zu)",
                     p->problem ? p->problem : "?", p->context, p->context_mark.line + 1,
                     p->context_mark.column + 1);
    return fail_at(name, p->problem_mark, "YAML syntax error: %s", p->problem ? p->problem : "?");
  default:
    return tchi_fail(TCH_E_CONFIG, "%s: YAML error: %s", name, p->problem ? p->problem : "?");
  }
}

static tch_status load_text(tch_config *c, const char *name, const char *text, size_t len)
{
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return tchi_fail(TCH_E_NOMEM, "%s: out of memory creating the YAML parser", name);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);

  tch_status st = TCH_OK;
  yaml_document_t doc, extra;
  if (!yaml_parser_load(&parser, &doc)) {
    st = parser_error(&parser, name, text, len);
    yaml_parser_delete(&parser);
    return st;
  }
  /* The stream must hold one document: load the next (also surfaces trailing errors). */
  if (!yaml_parser_load(&parser, &extra)) {
    st = parser_error(&parser, name, text, len);
  } else {
    yaml_node_t *r2 = yaml_document_get_root_node(&extra);
    if (r2) st = fail_at(name, r2->start_mark, "a config holds a single YAML document");
    yaml_document_delete(&extra);
  }

  yaml_node_t *root = st ? NULL : yaml_document_get_root_node(&doc);
  if (root && !is_null(root)) {
    if (root->type != YAML_MAPPING_NODE) {
      st = fail_at(name, root->start_mark, "the top level must be a mapping of keys, got %s", kind(root));
    } else {
      tch_config *tmp;
      st = tch_config_clone(c, &tmp);
      if (!st) {
        load_ctx x;
        memset(&x, 0, sizeof x);
        x.name = name;
        x.doc = &doc;
        x.cfg = tmp;
        st = walk(&x, root, "", 0);
        if (!st) tchi_config_swap_values(c, tmp);
        tch_config_free(tmp);
      }
    }
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  return st;
}

static tch_status read_file(const char *path, char **out, size_t *len)
{
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return tchi_fail(TCH_E_IO, "cannot open '%s': %s", path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  tch_status st = TCH_OK;
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_FILE_BYTES) {
        st = tchi_fail(TCH_E_IO, "cannot read '%s': larger than %zu bytes", path, MAX_FILE_BYTES);
        break;
      }
      size_t ncap = cap ? cap * 2 : 4096;
      char *nb = tchi_realloc(buf, ncap);
      if (!nb) {
        st = tchi_fail(TCH_E_NOMEM, "out of memory reading '%s'", path);
        break;
      }
      buf = nb;
      cap = ncap;
    }
    errno = 0;
    size_t r = fread(buf + n, 1, cap - n, f);
    int err = errno;
    n += r;
    if (r == 0) {
      if (ferror(f)) st = tchi_fail(TCH_E_IO, "cannot read '%s': %s", path, strerror(err ? err : EIO));
      break;
    }
  }
  fclose(f);
  if (st) {
    tchi_free(buf);
    return st;
  }
  *out = buf;
  *len = n;
  return TCH_OK;
}

tch_status tch_config_load_yaml(tch_config *c, const char *path)
{
  if (!c) return tchi_fail(TCH_E_ARG, "tch_config_load_yaml: config is NULL");
  if (!path) return tchi_fail(TCH_E_ARG, "tch_config_load_yaml: path is NULL");
  char *text;
  size_t len;
  tch_status st = read_file(path, &text, &len);
  if (st) return st;
  st = load_text(c, path, text, len);
  tchi_free(text);
  return st;
}

tch_status tch_config_load_yaml_string(tch_config *c, const char *text, size_t len)
{
  if (!c) return tchi_fail(TCH_E_ARG, "tch_config_load_yaml_string: config is NULL");
  if (!text) return tchi_fail(TCH_E_ARG, "tch_config_load_yaml_string: text is NULL");
  return load_text(c, "<string>", text, len);
}
