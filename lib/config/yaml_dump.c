/* YAML output of a config: every key, nested by dotted prefix in table order, with values
 * that read back exactly (shortest round-trip doubles, .inf, quoted strings when needed).
 * Files are replaced atomically: temp file, fsync, rename. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "config_impl.h"

typedef struct sbuf {
  char *p;
  size_t n, cap;
  int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = tchi_realloc(b->p, cap);
    if (!p) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) TCHI_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...)
{
  char tmp[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Plain (unquoted) only for identifier-like text that every YAML 1.1/1.2 reader takes as
 * that string: starts with a letter, no indicators, and not a bool/null word. */
static int plain_ok(const char *s, size_t n)
{
  static const char *const reserved[] = {"y", "n", "yes", "no", "true", "false", "on", "off",
                                         "null"};
  if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-' || ch == '.' || ch == '/' || ch == '+' || ch == ',';
    if (!ok) return 0;
  }
  if (n <= 5) {
    char low[6];
    for (size_t i = 0; i < n; i++) low[i] = (char)(s[i] | 0x20);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
      if (strcmp(low, reserved[i]) == 0) return 0;
  }
  return 1;
}

/* Double-quoted scalar; control characters and every non-ASCII code point are escaped so
 * the output is plain ASCII (the text was checked to be valid UTF-8 when it was set). */
static void put_quoted(sbuf *b, const char *s, size_t n)
{
  sb_put(b, "\"", 1);
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    unsigned c = u[i];
    if (c == '"') { sb_put(b, "\\\"", 2); i++; }
    else if (c == '\\') { sb_put(b, "\\\\", 2); i++; }
    else if (c == '\n') { sb_put(b, "\\n", 2); i++; }
    else if (c == '\t') { sb_put(b, "\\t", 2); i++; }
    else if (c < 0x20 || c == 0x7f) { sb_printf(b, "\\x%02X", c); i++; }
    else if (c < 0x80) { sb_put(b, s + i, 1); i++; }
    else {
      size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      uint32_t cp = c & (len == 4 ? 0x07 : len == 3 ? 0x0F : 0x1F);
      for (size_t k = 1; k < len && i + k < n; k++) cp = cp << 6 | (u[i + k] & 0x3F);
      if (cp > 0xFFFF) sb_printf(b, "\\U%08" PRIX32, cp);
      else sb_printf(b, "\\u%04" PRIX32, cp);
      i += len;
    }
  }
  sb_put(b, "\"", 1);
}

static void put_string(sbuf *b, const char *s, size_t n)
{
  if (plain_ok(s, n)) sb_put(b, s, n);
  else put_quoted(b, s, n);
}

/* YAML float text: ".inf"/"-.inf", otherwise the shortest exact decimal with a '.' so
 * YAML 1.1 readers also see a float ("19.0", "1.0e-05"). */
static void put_double(sbuf *b, double v)
{
  if (isinf(v)) {
    sb_str(b, v < 0 ? "-.inf" : ".inf");
    return;
  }
  char t[48], out[56];
  tchi_format_double(t, sizeof t, v);
  if (strchr(t, '.') || strchr(t, 'n')) {
    sb_str(b, t);
    return;
  }
  char *e = strchr(t, 'e');
  if (e) snprintf(out, sizeof out, "%.*s.0%s", (int)(e - t), t, e);
  else snprintf(out, sizeof out, "%s.0", t);
  sb_str(b, out);
}

static void put_value(sbuf *b, const tch_config *c, int i)
{
  const tchi_value *v = &c->v[i];
  switch (tchi_params[i].type) {
  case TCH_PARAM_INT: sb_printf(b, "%" PRId64, v->i); break;
  case TCH_PARAM_DOUBLE: put_double(b, v->d); break;
  case TCH_PARAM_BOOL: sb_str(b, v->b ? "true" : "false"); break;
  case TCH_PARAM_STRING:
  case TCH_PARAM_ENUM: put_string(b, v->s, strlen(v->s)); break;
  }
}

/* Emits the keys starting with prefix (plen bytes, "" or ending in '.') at this depth: each
 * distinct next component once, at the position of its first key in the table. */
static void emit(sbuf *b, const tch_config *c, const char *prefix, size_t plen, int depth)
{
  for (int i = 0; i < TCHI_N_PARAMS; i++) {
    const char *k = tchi_params[i].key;
    if (strncmp(k, prefix, plen) != 0) continue;
    const char *rest = k + plen;
    size_t clen = strcspn(rest, ".");
    int seen = 0;
    for (int j = 0; j < i && !seen; j++) {
      const char *kj = tchi_params[j].key;
      seen = strncmp(kj, prefix, plen) == 0 && strncmp(kj + plen, rest, clen) == 0 &&
             (kj[plen + clen] == '.' || kj[plen + clen] == '\0');
    }
    if (seen) continue;
    for (int d = 0; d < depth; d++) sb_put(b, "  ", 2);
    put_string(b, rest, clen);
    sb_put(b, ":", 1);
    if (rest[clen] == '\0') {
      sb_put(b, " ", 1);
      put_value(b, c, i);
      sb_put(b, "\n", 1);
    } else {
      sb_put(b, "\n", 1);
      emit(b, c, k, plen + clen + 1, depth + 1);
    }
  }
}

tch_status tchi_config_dump_yaml_string(const tch_config *c, char **out, size_t *len)
{
  if (!out) return tchi_fail(TCH_E_ARG, "tchi_config_dump_yaml_string: out is NULL");
  *out = NULL;
  if (len) *len = 0;
  if (!c) return tchi_fail(TCH_E_ARG, "tchi_config_dump_yaml_string: config is NULL");
  sbuf b = {0};
  sb_str(&b, "# libteacher configuration: every key (see docs/config.md)\n");
  emit(&b, c, "", 0, 0);
  if (b.oom) {
    tchi_free(b.p);
    return tchi_fail(TCH_E_NOMEM, "out of memory writing the config as YAML");
  }
  *out = b.p;
  if (len) *len = b.n;
  return TCH_OK;
}

static int write_all(int fd, const char *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (w == 0) {
      errno = EIO;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

tch_status tch_config_dump_yaml(const tch_config *c, const char *path)
{
  if (!c) return tchi_fail(TCH_E_ARG, "tch_config_dump_yaml: config is NULL");
  if (!path) return tchi_fail(TCH_E_ARG, "tch_config_dump_yaml: path is NULL");
  char *text;
  size_t len;
  tch_status st = tchi_config_dump_yaml_string(c, &text, &len);
  if (st) return st;
  size_t tlen = strlen(path) + 32;
  char *tmp = tchi_malloc(tlen);
  if (!tmp) {
    tchi_free(text);
    return tchi_fail(TCH_E_NOMEM, "out of memory writing '%s'", path);
  }
  snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    st = tchi_fail(TCH_E_IO, "cannot create '%s': %s", tmp, strerror(errno));
    goto done;
  }
  if (write_all(fd, text, len) != 0) {
    st = tchi_fail(TCH_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    goto done;
  }
  if (fsync(fd) != 0) {
    st = tchi_fail(TCH_E_IO, "cannot sync '%s': %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    goto done;
  }
  if (close(fd) != 0) {
    st = tchi_fail(TCH_E_IO, "cannot close '%s': %s", tmp, strerror(errno));
    unlink(tmp);
    goto done;
  }
  if (rename(tmp, path) != 0) {
    st = tchi_fail(TCH_E_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    unlink(tmp);
    goto done;
  }
  /* Make the rename itself durable (best effort: the data is already on disk). */
  {
    const char *slash = strrchr(path, '/');
    int dfd = -1;
    if (!slash) dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    else if (slash == path) dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    else {
      size_t dl = (size_t)(slash - path);
      memcpy(tmp, path, dl);   /* tmp is longer than path */
      tmp[dl] = '\0';
      dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd >= 0) {
      (void)fsync(dfd);
      close(dfd);
    }
  }
done:
  tchi_free(tmp);
  tchi_free(text);
  return st;
}
