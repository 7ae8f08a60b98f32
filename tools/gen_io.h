/* Input handling shared by the build-time data generators (tools/gen_discovery_data.c,
 * tools/gen_tfbind8.c): a failure prints "PROGRAM: FILE:LINE: message", removes the partial
 * output (so it cannot look built) and exits with status 1, which fails the build. Each
 * generator sets gen_prog first and gen_out_path once it opens its output. Header-only: one
 * program includes it once. */
#ifndef TCH_TOOLS_GEN_IO_H
#define TCH_TOOLS_GEN_IO_H
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *gen_prog = "gen";
static const char *g_path = "";
static long g_line = 0;
static const char *gen_out_path;   /* removed on failure: a partial output must not look built */

static void die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: %s:%ld: ", gen_prog, g_path, g_line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (gen_out_path) remove(gen_out_path);
  exit(1);
}

static FILE *open_in(const char *path)
{
  g_path = path;
  g_line = 0;
  FILE *f = fopen(path, "r");
  if (!f) die("cannot open: %s", strerror(errno));
  return f;
}

/* Next line without its newline (or CR LF) into buf; 0 at end of file. */
static int next_line(FILE *f, char *buf, size_t cap)
{
  if (!fgets(buf, (int)cap, f)) return 0;
  g_line++;
  size_t n = strlen(buf);
  if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
  else if (!feof(f)) die("line longer than %zu bytes", cap - 1);
  if (n > 0 && buf[n - 1] == '\r') buf[--n] = '\0';
  return 1;
}
#endif
