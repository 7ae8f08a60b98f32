/* The importance-weighted replay buffer of Reinforced SMC (spec §6): a FIFO ring of
 * terminal samples with their log R, raw log importance weight and sampling priority.
 * Draws are softmax(p / T_buf) over the whole buffer, T_buf the adaptive weight temperature
 * of §4.1 for the piw mode, made by a resampler (systematic by default) with replacement,
 * as the JAX reference's build_terminal_state_buffer does. Priorities are never refreshed. */
#include <math.h>
#include <string.h>
#include "smc/smc.h"

#define IWBUF_TAG 0x57494354u     /* "TCIW" little-endian */
#define IWBUF_FORMAT 1u
#define IWBUF_MIN_ALLOC 256       /* first growth step, in entries */

static const char *const priority_names[TCHI_IWBUF_PRIORITY_COUNT] = {
  "piw", "uiw", "reward", "loss", "none"
};

const char *tchi_iwbuf_priority_name(tchi_iwbuf_priority p)
{
  return (unsigned)p < TCHI_IWBUF_PRIORITY_COUNT ? priority_names[p] : NULL;
}

tch_status tchi_iwbuf_priority_from_name(const char *name, tchi_iwbuf_priority *out)
{
  for (unsigned i = 0; name && i < TCHI_IWBUF_PRIORITY_COUNT; i++)
    if (strcmp(name, priority_names[i]) == 0) {
      *out = (tchi_iwbuf_priority)i;
      return TCH_OK;
    }
  return tchi_fail(TCH_E_ARG, "unknown IW buffer priority '%s' (piw, uiw, reward, loss or none)",
                   name ? name : "(null)");
}

void tchi_iwbuf_params_default(tchi_iwbuf_params *p, uint32_t dim, size_t capacity)
{
  memset(p, 0, sizeof *p);
  p->dim = dim;
  p->capacity = capacity;
  p->priority = TCHI_IWBUF_PIW;
  p->target_ess = 0.05;
  p->resampler = TCHI_RESAMPLER_SYSTEMATIC;
  p->log_r_min = -INFINITY;
}

static tch_status check_params(const tchi_iwbuf_params *p)
{
  if (p->dim < 1) return tchi_fail(TCH_E_ARG, "IW buffer: dim must be >= 1");
  if (p->capacity < 1 || p->capacity > UINT32_MAX)
    return tchi_fail(TCH_E_ARG, "IW buffer: capacity %zu is outside [1, %u]", p->capacity,
                     (unsigned)UINT32_MAX);
  if ((unsigned)p->priority >= TCHI_IWBUF_PRIORITY_COUNT)
    return tchi_fail(TCH_E_ARG, "IW buffer: unknown priority mode %d", (int)p->priority);
  if (!(p->target_ess >= 0.0 && p->target_ess <= 1.0))
    return tchi_fail(TCH_E_ARG, "IW buffer: target_ess %g is outside [0, 1]", p->target_ess);
  if ((unsigned)p->resampler >= TCHI_RESAMPLER_COUNT)
    return tchi_fail(TCH_E_ARG, "IW buffer: unknown resampler %d", (int)p->resampler);
  if (isnan(p->log_r_min) || p->log_r_min == INFINITY)
    return tchi_fail(TCH_E_ARG, "IW buffer: log_r_min must be finite or -inf");
  int ovf = 0;
  (void)tchi_mul_size(tchi_mul_size(p->capacity, (size_t)p->dim + 4, &ovf), sizeof(double), &ovf);
  if (ovf) return tchi_fail(TCH_E_ARG, "IW buffer: capacity x dim is too large");
  return TCH_OK;
}

tch_status tchi_iwbuf_create(const tchi_iwbuf_params *p, tchi_iwbuf **out)
{
  if (out) *out = NULL;
  if (!p || !out) return tchi_fail(TCH_E_ARG, "IW buffer: NULL argument");
  tch_status st = check_params(p);
  if (st != TCH_OK) return st;
  tchi_iwbuf *b = tchi_calloc(1, sizeof *b);
  if (!b) return tchi_fail(TCH_E_NOMEM, "out of memory allocating the IW buffer");
  b->prm = *p;
  b->last_temperature = 1.0;
  b->last_ess = NAN;
  *out = b;
  return TCH_OK;
}

void tchi_iwbuf_free(tchi_iwbuf *b)
{
  if (!b) return;
  tchi_free(b->x);
  tchi_free(b->log_r);
  tchi_free(b->log_iw);
  tchi_free(b->prio);
  tchi_free(b->scratch);
  tchi_free(b->draw);
  tchi_free(b);
}

void tchi_iwbuf_clear(tchi_iwbuf *b)
{
  b->n = 0;
  b->head = 0;
  b->n_added = 0;
}

/* Grows every slot array to hold `need` (<= capacity) entries. An array that grew before a
 * later one failed stays larger than b->alloc, which is harmless. */
static tch_status reserve(tchi_iwbuf *b, size_t need)
{
  if (need <= b->alloc) return TCH_OK;
  size_t cap = b->alloc * 2;
  if (cap < IWBUF_MIN_ALLOC) cap = IWBUF_MIN_ALLOC;
  if (cap < need) cap = need;
  if (cap > b->prm.capacity) cap = b->prm.capacity;
  const size_t dim = b->prm.dim;
  double **arrays[] = {&b->log_r, &b->log_iw, &b->prio, &b->scratch};
  void *nx = tchi_realloc(b->x, cap * dim * sizeof(double));   /* checked at creation */
  if (!nx) return tchi_fail(TCH_E_NOMEM, "out of memory growing the IW buffer to %zu entries", cap);
  b->x = nx;
  for (size_t a = 0; a < sizeof arrays / sizeof arrays[0]; a++) {
    void *np = tchi_realloc(*arrays[a], cap * sizeof(double));
    if (!np)
      return tchi_fail(TCH_E_NOMEM, "out of memory growing the IW buffer to %zu entries", cap);
    *arrays[a] = np;
  }
  b->alloc = cap;
  return TCH_OK;
}

static int bad_log_value(double v) { return isnan(v) || v == INFINITY; }

tch_status tchi_iwbuf_add(tchi_iwbuf *b, size_t n, const double *x, const double *log_r,
                          const double *log_iw, const double *loss, size_t *out_added)
{
  if (out_added) *out_added = 0;
  if (!b) return tchi_fail(TCH_E_ARG, "IW buffer: NULL buffer");
  if (n == 0) return TCH_OK;
  const tchi_iwbuf_priority mode = b->prm.priority;
  const size_t dim = b->prm.dim;
  if (!x || !log_r) return tchi_fail(TCH_E_ARG, "IW buffer add: x and log_r are required");
  if ((mode == TCHI_IWBUF_PIW || mode == TCHI_IWBUF_UIW) && !log_iw)
    return tchi_fail(TCH_E_ARG, "IW buffer add: priority %s needs log importance weights",
                     priority_names[mode]);
  if (mode == TCHI_IWBUF_LOSS && !loss)
    return tchi_fail(TCH_E_ARG, "IW buffer add: priority loss needs the per-sample losses");

  /* Validate everything before touching the buffer. */
  size_t kept = 0;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < dim; j++)
      if (!isfinite(x[i * dim + j]))
        return tchi_fail(TCH_E_NUMERIC, "IW buffer add: x[%zu][%zu] is %g", i, j, x[i * dim + j]);
    if (bad_log_value(log_r[i]))
      return tchi_fail(TCH_E_NUMERIC, "IW buffer add: log_r[%zu] is %g", i, log_r[i]);
    if (log_iw && bad_log_value(log_iw[i]))
      return tchi_fail(TCH_E_NUMERIC, "IW buffer add: log_iw[%zu] is %g", i, log_iw[i]);
    if (mode == TCHI_IWBUF_LOSS && !(loss[i] >= 0.0 && loss[i] < INFINITY))
      return tchi_fail(TCH_E_NUMERIC, "IW buffer add: loss[%zu] is %g", i, loss[i]);
    if (log_r[i] > b->prm.log_r_min) kept++;
  }
  /* uiw: the batch tempered to the target ESS by itself, then normalised inside the batch
   * (over the whole batch, dropped samples included, as TORCH). */
  double uiw_alpha = 1.0, uiw_lse = 0.0;
  if (mode == TCHI_IWBUF_UIW) {
    double temperature = 1.0, m = -INFINITY, s = 0.0;
    tch_status st = tchi_smc_temperature(n, log_iw, b->prm.target_ess, &temperature, NULL);
    if (st != TCH_OK) return tchi_fail_prefix(st, "IW buffer add (uiw): ");
    uiw_alpha = 1.0 / temperature;
    for (size_t i = 0; i < n; i++)
      if (log_iw[i] > m) m = log_iw[i];   /* finite: the tempering found a finite entry */
    for (size_t i = 0; i < n; i++)
      if (log_iw[i] != -INFINITY) s += exp(uiw_alpha * (log_iw[i] - m));
    uiw_lse = uiw_alpha * m + log(s);   /* log Σ exp(alpha log_iw) over the batch */
  }
  if (kept == 0) return TCH_OK;
  const size_t cap = b->prm.capacity;
  const size_t skip = kept > cap ? kept - cap : 0;   /* only the last `cap` kept samples stay */
  const size_t new_n = TCHI_MIN(cap, b->n + (kept - skip));
  tch_status st = reserve(b, new_n);
  if (st != TCH_OK) return st;

  size_t seen = 0, added = 0;
  for (size_t i = 0; i < n; i++) {
    if (!(log_r[i] > b->prm.log_r_min)) continue;
    if (seen++ < skip) continue;
    const size_t s = b->head;
    memcpy(b->x + s * dim, x + i * dim, dim * sizeof(double));
    b->log_r[s] = log_r[i];
    b->log_iw[s] = log_iw ? log_iw[i] : NAN;
    double p;
    switch (mode) {
    case TCHI_IWBUF_PIW: p = log_iw[i]; break;
    case TCHI_IWBUF_UIW:
      p = log_iw[i] == -INFINITY ? -INFINITY : uiw_alpha * log_iw[i] - uiw_lse;
      break;
    case TCHI_IWBUF_REWARD: p = log_r[i]; break;
    case TCHI_IWBUF_LOSS: p = log(loss[i]); break;   /* log 0 = -inf: never drawn */
    default: p = 1.0; break;
    }
    b->prio[s] = p;
    b->head = s + 1 == cap ? 0 : s + 1;
    if (b->n < cap) b->n++;
    added++;
  }
  b->n_added += added;
  if (out_added) *out_added = added;
  return TCH_OK;
}

size_t tchi_iwbuf_slot(const tchi_iwbuf *b, size_t i)
{
  /* Not full: head == n and slot == i. Full: the oldest entry is at head. */
  const size_t cap = b->prm.capacity;
  return (b->head + (cap - b->n) + i) % cap;
}

void tchi_iwbuf_get(const tchi_iwbuf *b, size_t slot, double *x, double *log_r, double *log_iw,
                    double *priority)
{
  if (x) memcpy(x, b->x + slot * b->prm.dim, b->prm.dim * sizeof(double));
  if (log_r) *log_r = b->log_r[slot];
  if (log_iw) *log_iw = b->log_iw[slot];
  if (priority) *priority = b->prio[slot];
}

tch_status tchi_iwbuf_sample(tchi_iwbuf *b, tchi_rng *rng, size_t m, double *out_x,
                             double *out_log_r, double *out_log_iw, uint32_t *out_slot)
{
  if (!b || !rng) return tchi_fail(TCH_E_ARG, "IW buffer sample: NULL argument");
  if (m == 0) return TCH_OK;
  if (b->n == 0) return tchi_fail(TCH_E_STATE, "IW buffer sample: the buffer is empty");
  if (m > UINT32_MAX) return tchi_fail(TCH_E_ARG, "IW buffer sample: %zu draws are too many", m);
  uint32_t *slots = out_slot;
  if (!slots) {
    if (b->draw_cap < m) {
      size_t cap = TCHI_MAX(m, 2 * b->draw_cap);
      uint32_t *nd = tchi_realloc(b->draw, cap * sizeof *nd);
      if (!nd) return tchi_fail(TCH_E_NOMEM, "out of memory for %zu buffer draws", m);
      b->draw = nd;
      b->draw_cap = cap;
    }
    slots = b->draw;
  }
  const size_t n = b->n;
  double temperature = 1.0;
  tch_status st;
  if (b->prm.priority == TCHI_IWBUF_PIW) {
    st = tchi_smc_temperature(n, b->prio, b->prm.target_ess, &temperature, NULL);
    if (st != TCH_OK) return tchi_fail_prefix(st, "IW buffer sample: ");
  }
  const double alpha = 1.0 / temperature;
  st = tchi_smc_normalised_weights(n, b->prio, alpha, b->scratch, NULL);
  if (st != TCH_OK) return tchi_fail_prefix(st, "IW buffer sample: ");
  st = tchi_resample(b->prm.resampler, n, b->scratch, m, rng, slots);
  if (st != TCH_OK) return st;
  b->last_temperature = temperature;
  b->last_ess = tchi_smc_ess_normalised(n, b->prio, alpha);
  const size_t dim = b->prm.dim;
  for (size_t k = 0; k < m; k++) {
    const size_t s = slots[k];
    if (out_x) memcpy(out_x + k * dim, b->x + s * dim, dim * sizeof(double));
    if (out_log_r) out_log_r[k] = b->log_r[s];
    if (out_log_iw) out_log_iw[k] = b->log_iw[s];
  }
  return TCH_OK;
}

/* ---- serialisation ------------------------------------------------------------------------ */

void tchi_iwbuf_write(const tchi_iwbuf *b, tchi_writer *w)
{
  const tchi_iwbuf_params *p = &b->prm;
  tchi_put_u32(w, IWBUF_TAG);
  tchi_put_u32(w, IWBUF_FORMAT);
  tchi_put_u32(w, p->dim);
  tchi_put_u32(w, (uint32_t)p->priority);
  tchi_put_u32(w, (uint32_t)p->resampler);
  tchi_put_u32(w, 0u);   /* reserved */
  tchi_put_u64(w, (uint64_t)p->capacity);
  tchi_put_f64(w, p->target_ess);
  tchi_put_f64(w, p->log_r_min);
  tchi_put_u64(w, (uint64_t)b->n);
  tchi_put_u64(w, (uint64_t)b->head);
  tchi_put_u64(w, b->n_added);
  tchi_put_f64(w, b->last_temperature);
  tchi_put_f64(w, b->last_ess);
  for (size_t s = 0; s < b->n; s++) {
    tchi_put(w, b->x + s * p->dim, (size_t)p->dim * sizeof(double));
    tchi_put_f64(w, b->log_r[s]);
    tchi_put_f64(w, b->log_iw[s]);
    tchi_put_f64(w, b->prio[s]);
  }
}

tch_status tchi_iwbuf_read(tchi_reader *r, tchi_iwbuf **out)
{
  *out = NULL;
  const char *path = r->path ? r->path : "(memory)";
  uint32_t tag, format, dim, mode, resampler, reserved;
  uint64_t cap, n, head, n_added;
  double target_ess, log_r_min, last_t, last_ess;
  tch_status st;
  if ((st = tchi_get_u32(r, &tag)) || (st = tchi_get_u32(r, &format))) return st;
  if (tag != IWBUF_TAG) return tchi_fail(TCH_E_IO, "'%s': malformed IW buffer section", path);
  if (format != IWBUF_FORMAT)
    return tchi_fail(TCH_E_VERSION, "'%s': IW buffer format %u; this library reads format %u",
                     path, format, IWBUF_FORMAT);
  if ((st = tchi_get_u32(r, &dim)) || (st = tchi_get_u32(r, &mode)) ||
      (st = tchi_get_u32(r, &resampler)) || (st = tchi_get_u32(r, &reserved)) ||
      (st = tchi_get_u64(r, &cap)) || (st = tchi_get_f64(r, &target_ess)) ||
      (st = tchi_get_f64(r, &log_r_min)) || (st = tchi_get_u64(r, &n)) ||
      (st = tchi_get_u64(r, &head)) || (st = tchi_get_u64(r, &n_added)) ||
      (st = tchi_get_f64(r, &last_t)) || (st = tchi_get_f64(r, &last_ess)))
    return st;
  tchi_iwbuf_params p;
  tchi_iwbuf_params_default(&p, dim, (size_t)cap);
  p.priority = (tchi_iwbuf_priority)mode;
  p.resampler = (tchi_resampler)resampler;
  p.target_ess = target_ess;
  p.log_r_min = log_r_min;
  /* The header must describe a buffer tchi_iwbuf_create accepts, in a state add reaches. */
  if (mode >= TCHI_IWBUF_PRIORITY_COUNT || resampler >= TCHI_RESAMPLER_COUNT || reserved != 0 ||
      cap > UINT32_MAX || check_params(&p) != TCH_OK || n > cap || n_added < n ||
      (n < cap ? head != n : head >= cap) || !(last_t >= 1.0))
    return tchi_fail(TCH_E_IO, "'%s': malformed IW buffer header", path);
  const size_t item_bytes = ((size_t)dim + 3) * sizeof(double);
  if (n > (r->len - r->pos) / item_bytes)
    return tchi_fail(TCH_E_IO, "'%s': IW buffer section is truncated (%llu entries)", path,
                     (unsigned long long)n);
  tchi_iwbuf *b;
  if ((st = tchi_iwbuf_create(&p, &b)) != TCH_OK) return st;
  if ((st = reserve(b, (size_t)n)) != TCH_OK) goto fail;
  for (size_t s = 0; s < (size_t)n; s++) {
    double *xs = b->x + s * dim;
    if ((st = tchi_get(r, xs, (size_t)dim * sizeof(double))) ||
        (st = tchi_get_f64(r, &b->log_r[s])) || (st = tchi_get_f64(r, &b->log_iw[s])) ||
        (st = tchi_get_f64(r, &b->prio[s])))
      goto fail;
    int bad = bad_log_value(b->log_r[s]) || b->log_iw[s] == INFINITY || bad_log_value(b->prio[s]);
    for (uint32_t j = 0; j < dim && !bad; j++) bad = !isfinite(xs[j]);
    if (bad) {
      st = tchi_fail(TCH_E_IO, "'%s': malformed IW buffer entry %zu", path, s);
      goto fail;
    }
  }
  b->n = (size_t)n;
  b->head = (size_t)head;
  b->n_added = n_added;
  b->last_temperature = last_t;
  b->last_ess = last_ess;
  *out = b;
  return TCH_OK;
fail:
  tchi_iwbuf_free(b);
  return st;
}
