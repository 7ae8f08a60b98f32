/* The behaviour mixer: which source feeds each training step, and how each source explores. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "behaviour.h"

static const char *const source_names[TCHI_MIXER_SOURCES] = {"student", "teacher", "buffer", "smc"};

const char *tchi_mixer_auto_schedule(int teacher, int buffer, int local_search)
{
  /* grid/trainer.py: Teacher agent alternates Student (i mod 4 in {0,1}) and Teacher
   * ({2,3}); with a buffer every odd step replays. Local search runs on Teacher steps with
   * (i div 4) mod 4 == 3 (Teacher agent) or Student steps with (i div 2) mod 8 == 7. */
  if (teacher && buffer)
    return local_search ? "student,buffer,teacher,buffer,student,buffer,teacher,buffer,"
                          "student,buffer,teacher,buffer,student,buffer,teacher+ls,buffer"
                        : "student,buffer,teacher,buffer";
  if (teacher)
    return local_search ? "student,student,teacher,teacher,student,student,teacher,teacher,"
                          "student,student,teacher,teacher,student,student,teacher+ls,teacher+ls"
                        : "student,student,teacher,teacher";
  if (buffer)
    return local_search ? "student,buffer,student,buffer,student,buffer,student,buffer,"
                          "student,buffer,student,buffer,student,buffer,student+ls,buffer"
                        : "student,buffer";
  return local_search ? "student,student,student,student,student,student,student,student,"
                        "student,student,student,student,student,student,student+ls,student+ls"
                      : "student";
}

static int source_of(const char *name, size_t len)
{
  for (int s = 0; s < TCHI_MIXER_SOURCES; s++)
    if (strlen(source_names[s]) == len && strncmp(name, source_names[s], len) == 0) return s;
  return -1;
}

static tch_status parse_error(const char *schedule, const char *why)
{
  return tchi_fail(TCH_E_CONFIG, "mixer schedule '%s': %s (expected e.g. "
                   "\"student,buffer,teacher+ls,buffer\" or \"random:student=2,teacher=1\")",
                   schedule, why);
}

/* The smc source belongs to standalone mixers; a trainer's schedule cannot name it. */
static tch_status check_smc(const char *schedule, int src, int allow_smc)
{
  if (src != TCH_SOURCE_SMC || allow_smc) return TCH_OK;
  return tchi_fail(TCH_E_CONFIG, "mixer schedule '%s': the smc source is for standalone mixers "
                   "(tch_mixer_create, tch_mixer_set_smc, tch_mixer_draw_energy); a trainer "
                   "runs Reinforced SMC through smc.enabled", schedule);
}

static tch_status parse_cycle(tch_mixer *m, const char *s, int allow_smc)
{
  const char *p = s;
  while (*p) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *plus = memchr(p, '+', (size_t)(end - p));
    size_t name_len = (size_t)((plus ? plus : end) - p);
    int src = source_of(p, name_len);
    if (src < 0) return parse_error(s, "unknown source (use student, teacher, buffer or smc)");
    tch_status st = check_smc(s, src, allow_smc);
    if (st != TCH_OK) return st;
    uint32_t flags = 0;
    if (plus) {
      if ((size_t)(end - plus) != 3 || strncmp(plus, "+ls", 3) != 0)
        return parse_error(s, "the only modifier is +ls");
      if (src == TCH_SOURCE_BUFFER) return parse_error(s, "local search applies to sampled batches, not to buffer replay");
      if (src == TCH_SOURCE_SMC) return parse_error(s, "local search applies to policy batches, not to SMC particles");
      flags = TCH_MIXER_LOCAL_SEARCH;
    }
    if (m->n_tokens == TCHI_MIXER_MAX_TOKENS) return parse_error(s, "more than 64 tokens");
    m->src[m->n_tokens] = (tch_source)src;
    m->flags[m->n_tokens++] = flags;
    if (!*end) break;
    p = end + 1;
    if (!*p) return parse_error(s, "trailing comma");
  }
  if (m->n_tokens == 0) return parse_error(s, "empty");
  size_t off = 0;
  m->text[0] = '\0';
  for (size_t i = 0; i < m->n_tokens; i++)
    off += (size_t)snprintf(m->text + off, sizeof m->text - off, "%s%s%s", i ? "," : "",
                            source_names[m->src[i]],
                            m->flags[i] & TCH_MIXER_LOCAL_SEARCH ? "+ls" : "");
  return TCH_OK;
}

static tch_status parse_random(tch_mixer *m, const char *all, const char *s, int allow_smc)
{
  m->random = 1;
  const char *p = s;
  while (*p) {
    const char *eq = strchr(p, '=');
    if (!eq) return parse_error(all, "random: entries are source=weight");
    int src = source_of(p, (size_t)(eq - p));
    if (src < 0) return parse_error(all, "unknown source (use student, teacher, buffer or smc)");
    tch_status st = check_smc(all, src, allow_smc);
    if (st != TCH_OK) return st;
    char *end;
    double w = strtod(eq + 1, &end);
    if (end == eq + 1 || !(w >= 0.0) || !isfinite(w) || (*end && *end != ','))
      return parse_error(all, "weights must be finite numbers >= 0");
    m->weight[src] = w;
    if (!*end) break;
    p = end + 1;
  }
  double total = m->weight[0] + m->weight[1] + m->weight[2] + m->weight[3];
  if (!(total > 0.0)) return parse_error(all, "the weights sum to 0");
  int k = snprintf(m->text, sizeof m->text, "random:student=%.17g,teacher=%.17g,buffer=%.17g",
                   m->weight[0], m->weight[1], m->weight[2]);
  /* smc only when used, so the schedules of the first three sources read as before */
  if (m->weight[TCH_SOURCE_SMC] > 0.0 && k > 0 && (size_t)k < sizeof m->text)
    snprintf(m->text + k, sizeof m->text - (size_t)k, ",smc=%.17g", m->weight[TCH_SOURCE_SMC]);
  return TCH_OK;
}

tch_status tchi_mixer_create(const char *schedule, tch_mixer **out)
{
  return tchi_mixer_create_ex(schedule, 0, out);
}

tch_status tchi_mixer_create_ex(const char *schedule, int allow_smc, tch_mixer **out)
{
  *out = NULL;
  tch_mixer *m = tchi_calloc(1, sizeof *m);
  if (!m) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a mixer");
  tchi_ref_init(&m->ref);
  m->temp[0] = m->temp[1] = 1.0;
  /* spaces are ignored */
  char buf[512];
  size_t k = 0;
  for (const char *p = schedule; *p; p++)
    if (!isspace((unsigned char)*p)) {
      if (k + 1 == sizeof buf) {
        tchi_free(m);
        return parse_error("(too long)", "longer than 511 characters");
      }
      buf[k++] = *p;
    }
  buf[k] = '\0';
  tch_status s = strncmp(buf, "random:", 7) == 0 ? parse_random(m, schedule, buf + 7, allow_smc)
                                                 : parse_cycle(m, buf, allow_smc);
  if (s) {
    tchi_free(m);
    return s;
  }
  *out = m;
  return TCH_OK;
}

void tchi_mixer_release(tch_mixer *m)
{
  if (!m || !tchi_ref_dec(&m->ref)) return;
  tch_policy_free(m->policy[0]);
  tch_policy_free(m->policy[1]);
  tch_buffer_free(m->buffer);
  if (m->smc) m->smc_release(m->smc);
  tchi_free(m);
}

void tchi_mixer_source(const tch_mixer *m, uint64_t seed, uint64_t step, tch_source *src,
                       uint32_t *flags)
{
  if (!m->random) {
    size_t i = (size_t)(step % m->n_tokens);
    *src = m->src[i];
    *flags = m->flags[i];
    return;
  }
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_MIXER, step));
  /* With no smc weight the draw is the three-source one, bit for bit. */
  double total = m->weight[0] + m->weight[1] + m->weight[2] + m->weight[3];
  double u = tchi_rng_uniform(&rng) * total;
  int s = 0;
  while (s < TCHI_MIXER_SOURCES - 1 && (u >= m->weight[s] || m->weight[s] == 0.0)) {
    u -= m->weight[s];
    s++;
  }
  while (m->weight[s] == 0.0) s--;   /* rounding at the top end */
  *src = (tch_source)s;
  *flags = 0;
}
