/* Metrics file of `teacher train`: CSV or JSON Lines, one record per log point, flushed
 * after every record. Resumed runs append to the same file after dropping any records
 * written past the checkpoint they resume from. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

struct tcli_metrics {
  FILE *f;
  tcli_metrics_format fmt;
  size_t n;              /* trainer metrics; the record has n + 2 fields */
  const char **names;    /* static strings of the library */
};

tcli_metrics_format tcli_metrics_format_of(const char *path)
{
  size_t len = strlen(path);
  if (len > 4 && strcmp(path + len - 4, ".csv") == 0) return TCLI_METRICS_CSV;
  if (len > 6 && strcmp(path + len - 6, ".jsonl") == 0) return TCLI_METRICS_JSONL;
  return TCLI_METRICS_UNKNOWN;
}

/* "step,loss.student,...,wall_s,final" (no newline); NULL when out of memory. */
static char *csv_header(const tcli_metrics *m)
{
  size_t len = sizeof "wall_s,final";
  for (size_t i = 0; i < m->n; i++) len += strlen(m->names[i]) + 1;
  char *h = malloc(len);
  if (!h) return NULL;
  h[0] = '\0';
  for (size_t i = 0; i < m->n; i++) {
    strcat(h, m->names[i]);
    strcat(h, ",");
  }
  strcat(h, "wall_s,final");
  return h;
}

/* Whole file into a NUL-terminated buffer; *buf = NULL if it does not exist. */
static int slurp(const char *path, char **buf, size_t *len, char *err, size_t err_len)
{
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return 0;
    snprintf(err, err_len, "cannot open metrics file '%s': %s", path, strerror(errno));
    return -1;
  }
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap);
  while (b) {
    n += fread(b + n, 1, cap - n - 1, f);
    if (n < cap - 1) break;
    char *nb = realloc(b, cap *= 2);
    if (!nb) { free(b); b = NULL; }
    else b = nb;
  }
  int bad = ferror(f);
  fclose(f);
  if (!b || bad) {
    free(b);
    snprintf(err, err_len, "cannot read metrics file '%s'%s", path, b ? "" : ": out of memory");
    return -1;
  }
  b[n] = '\0';
  *buf = b;
  *len = n;
  return 0;
}

/* Value of CSV field k of a line (NaN if missing). */
static double csv_field(const char *line, size_t k)
{
  for (size_t i = 0; i < k; i++) {
    line = strchr(line, ',');
    if (!line) return NAN;
    line++;
  }
  char *end;
  double v = strtod(line, &end);
  return end == line ? NAN : v;
}

/* Value of "key": in a JSON line written by this program (NaN if missing or null). */
static double json_field(const char *line, const char *key)
{
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = strstr(line, pat);
  if (!p) return NAN;
  p += strlen(pat);
  char *end;
  double v = strtod(p, &end);
  return end == p ? NAN : v;
}

static int write_all(const char *path, const char *a, size_t na, const char *b, size_t nb,
                     char *err, size_t err_len)
{
  size_t plen = strlen(path);
  char *tmp = malloc(plen + 16);
  if (!tmp) {
    snprintf(err, err_len, "out of memory");
    return -1;
  }
  snprintf(tmp, plen + 16, "%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(a, 1, na, f) == na && fwrite(b, 1, nb, f) == nb;
  if (f && fclose(f) != 0) ok = 0;
  if (ok && rename(tmp, path) != 0) ok = 0;
  if (!ok) {
    snprintf(err, err_len, "cannot rewrite metrics file '%s': %s", path, strerror(errno));
    remove(tmp);
  }
  free(tmp);
  return ok ? 0 : -1;
}

/* Keeps the header and the complete records with step <= keep_max. */
static int trim_for_resume(tcli_metrics *m, const char *path, double keep_max,
                           double *wall_offset, int *have_start, int *need_header,
                           char *err, size_t err_len)
{
  char *buf;
  size_t len;
  *need_header = 1;
  if (slurp(path, &buf, &len, err, err_len)) return -1;
  if (!buf) return 0;
  int rc = 0;
  char *header = NULL;
  const char *body = buf;
  if (m->fmt == TCLI_METRICS_CSV) {
    const char *nl = strchr(buf, '\n');
    if (!nl) {          /* empty, or only a partial header: start over */
      free(buf);
      return write_all(path, "", 0, "", 0, err, err_len);
    }
    header = csv_header(m);
    if (!header) {
      snprintf(err, err_len, "out of memory");
      free(buf);
      return -1;
    }
    if ((size_t)(nl - buf) != strlen(header) || strncmp(buf, header, (size_t)(nl - buf)) != 0) {
      snprintf(err, err_len, "metrics file '%s' has other columns than this run writes; "
               "give another --metrics path", path);
      rc = -1;
      goto done;
    }
    body = nl + 1;
    *need_header = 0;
  } else {
    *need_header = 0;
  }
  size_t step_col = 0;
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->names[i], "step") == 0) step_col = i;
  /* Complete lines only; stop at the first record past the checkpoint. */
  const char *p = body, *keep_end = body;
  while (*p) {
    const char *nl = strchr(p, '\n');
    if (!nl) break;
    char *line = strndup(p, (size_t)(nl - p));
    if (!line) {
      snprintf(err, err_len, "out of memory");
      rc = -1;
      goto done;
    }
    double step, wall;
    if (m->fmt == TCLI_METRICS_CSV) {
      step = csv_field(line, step_col);
      wall = csv_field(line, m->n);
    } else {
      step = json_field(line, "step");
      wall = json_field(line, "wall_s");
    }
    free(line);
    if (!(step <= keep_max)) break;
    *have_start = step == keep_max;
    if (isfinite(wall)) *wall_offset = wall;
    keep_end = nl + 1;
    p = nl + 1;
  }
  if ((size_t)(keep_end - buf) != len)
    rc = write_all(path, buf, (size_t)(keep_end - buf), "", 0, err, err_len);
done:
  free(header);
  free(buf);
  return rc;
}

int tcli_metrics_open(const char *path, const tch_trainer *tr, int resume, uint64_t start_step,
                      int keep_start, tcli_metrics **out, double *wall_offset, int *have_start, char *err,
                      size_t err_len)
{
  *out = NULL;
  *wall_offset = 0.0;
  *have_start = 0;
  tcli_metrics *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, err_len, "out of memory");
    return -1;
  }
  m->fmt = tcli_metrics_format_of(path);
  if (m->fmt == TCLI_METRICS_UNKNOWN) {
    snprintf(err, err_len, "metrics file '%s': unknown format (the name must end in .csv or .jsonl)",
             path);
    free(m);
    return -1;
  }
  for (const char *k = tch_trainer_next_metric(tr, NULL); k; k = tch_trainer_next_metric(tr, k))
    m->n++;
  m->names = calloc(m->n ? m->n : 1, sizeof *m->names);
  if (!m->names) {
    snprintf(err, err_len, "out of memory");
    free(m);
    return -1;
  }
  size_t i = 0;
  for (const char *k = tch_trainer_next_metric(tr, NULL); k && i < m->n;
       k = tch_trainer_next_metric(tr, k))
    m->names[i++] = k;

  int need_header = 1;
  double keep_max = keep_start ? (double)start_step : (double)start_step - 0.5;
  if (resume && trim_for_resume(m, path, keep_max, wall_offset, have_start, &need_header,
                                err, err_len))
    goto fail;
  m->f = fopen(path, resume ? "ab" : "wb");
  if (!m->f) {
    snprintf(err, err_len, "cannot open metrics file '%s': %s", path, strerror(errno));
    goto fail;
  }
  if (m->fmt == TCLI_METRICS_CSV && need_header) {
    char *h = csv_header(m);
    if (!h) {
      snprintf(err, err_len, "out of memory");
      goto fail;
    }
    fprintf(m->f, "%s\n", h);
    free(h);
    if (fflush(m->f) != 0) {
      snprintf(err, err_len, "cannot write metrics file '%s': %s", path, strerror(errno));
      goto fail;
    }
  }
  *out = m;
  return 0;
fail:
  if (m->f) fclose(m->f);
  free(m->names);
  free(m);
  return -1;
}

void tcli_put_value(FILE *f, double v, int json)
{
  if (isnan(v)) fputs(json ? "null" : "nan", f);
  else if (isinf(v)) fputs(json ? "null" : v > 0 ? "inf" : "-inf", f);
  else fprintf(f, "%.17g", v);
}

int tcli_metrics_write(tcli_metrics *m, const tch_trainer *tr, double wall_s, int final,
                       int with_eval, char *err, size_t err_len)
{
  const int json = m->fmt == TCLI_METRICS_JSONL;
  if (json) fputc('{', m->f);
  for (size_t i = 0; i < m->n; i++) {
    if (json) fprintf(m->f, "%s\"%s\":", i ? "," : "", m->names[i]);
    else if (i) fputc(',', m->f);
    /* eval.* hold the trainer's last evaluation, which may be many steps old: only the
     * records written right after one carry them. */
    const int stale = !with_eval && strncmp(m->names[i], "eval.", 5) == 0;
    tcli_put_value(m->f, stale ? NAN : tcli_metric(tr, m->names[i]), json);
  }
  if (json) fprintf(m->f, ",\"wall_s\":%.3f,\"final\":%d}\n", wall_s, final ? 1 : 0);
  else fprintf(m->f, "%s%.3f,%d\n", m->n ? "," : "", wall_s, final ? 1 : 0);
  if (fflush(m->f) != 0 || ferror(m->f)) {
    snprintf(err, err_len, "cannot write the metrics file: %s", strerror(errno));
    return -1;
  }
  return 0;
}

int tcli_metrics_close(tcli_metrics *m, char *err, size_t err_len)
{
  if (!m) return 0;
  int rc = 0;
  if (fclose(m->f) != 0) {
    snprintf(err, err_len, "cannot write the metrics file: %s", strerror(errno));
    rc = -1;
  }
  free(m->names);
  free(m);
  return rc;
}
