/* Serialisation and copies of the learnt log-flow twist (flow.c), for trainer checkpoints:
 * a tag, a format version, the architecture, the gemm kernel request, the weights of the
 * time MLP, the Fourier phase, the body weights and the beta logits (written for every
 * schedule, so a record is self-contained).
 *
 * The architecture is checked, and the weights it implies are checked against the bytes
 * left in the record, before anything is allocated: a corrupted header cannot ask for more
 * memory than the record holds. */
#include <math.h>
#include <string.h>
#include "diffusion/diffusion.h"
#include "io/io.h"

#define DFLOW_TAG "TDFL"
#define DFLOW_FORMAT 1u
#define DFLOW_IO_MAX_WIDTH 65536u     /* flow.c's DFLOW_MAX_WIDTH */
#define DFLOW_IO_MAX_THREADS 1024u

enum { N_U32 = 6 };   /* dim, T, hidden, layers, beta schedule, threads */

/* Parameter counts of the time MLP (2H -> H -> H) and the body (D + H -> H x layers -> 1),
 * weights and biases, as flow.c builds them; the reader compares them with the created net. */
static void param_counts(uint64_t D, uint64_t H, uint64_t layers, uint64_t *n_time, uint64_t *n_body)
{
  *n_time = 2 * H * H + H + H * H + H;
  *n_body = (D + H) * H + H + (layers - 1) * (H * H + H) + H + 1;
}

void tchi_dflow_write(const tchi_dflow *f, tchi_writer *w)
{
  const tchi_dflow_spec *s = &f->spec;
  uint32_t u[N_U32] = {s->dim, s->T, s->hidden, s->layers, (uint32_t)s->beta, (uint32_t)s->threads};
  tchi_put(w, DFLOW_TAG, 4);
  tchi_put_u32(w, DFLOW_FORMAT);
  for (int i = 0; i < N_U32; i++) tchi_put_u32(w, u[i]);
  tchi_put(w, f->kernel, sizeof f->kernel);
  tchi_put_u64(w, f->time.n_params);
  tchi_put_u64(w, f->body.n_params);
  tchi_put(w, f->time.params, f->time.n_params * sizeof(float));
  tchi_put(w, f->phase, s->hidden * sizeof(float));
  tchi_put(w, f->body.params, f->body.n_params * sizeof(float));
  tchi_put(w, f->beta_logit, s->T * sizeof(double));
}

static tch_status malformed(const tchi_reader *r, const char *what)
{
  return tchi_fail(TCH_E_IO, "'%s': malformed flow network (%s)", r->path ? r->path : "?", what);
}

static int floats_finite(const float *x, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

tch_status tchi_dflow_read(tchi_reader *r, tchi_dflow **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "dflow_read: NULL output");
  *out = NULL;
  if (!r) return tchi_fail(TCH_E_ARG, "dflow_read: NULL reader");
  char tag[4], kernel[32];
  uint32_t format, u[N_U32];
  uint64_t n_time, n_body;
  tch_status s;
  if ((s = tchi_get(r, tag, 4)) != TCH_OK) return s;
  if (memcmp(tag, DFLOW_TAG, 4) != 0) return malformed(r, "no flow network tag");
  if ((s = tchi_get_u32(r, &format)) != TCH_OK) return s;
  if (format != DFLOW_FORMAT)
    return tchi_fail(TCH_E_VERSION, "'%s': flow network format %u; this library reads format %u",
                     r->path ? r->path : "?", format, DFLOW_FORMAT);
  for (int i = 0; i < N_U32; i++)
    if ((s = tchi_get_u32(r, &u[i])) != TCH_OK) return s;
  if ((s = tchi_get(r, kernel, sizeof kernel)) != TCH_OK || (s = tchi_get_u64(r, &n_time)) != TCH_OK ||
      (s = tchi_get_u64(r, &n_body)) != TCH_OK)
    return s;
  kernel[sizeof kernel - 1] = '\0';
  uint32_t D = u[0], T = u[1], H = u[2], layers = u[3];
  if (D < 1 || D > DFLOW_IO_MAX_WIDTH || H < 1 || H > DFLOW_IO_MAX_WIDTH || T < 1 || T > (1u << 20) ||
      layers < 1 || layers > TCHI_MLP_MAX_LAYERS - 1 || u[4] >= TCHI_BETA_SCHEDULE_COUNT ||
      u[5] > DFLOW_IO_MAX_THREADS)
    return malformed(r, "architecture");
  uint64_t want_time, want_body;
  param_counts(D, H, layers, &want_time, &want_body);
  if (n_time != want_time || n_body != want_body) return malformed(r, "parameter count");
  /* every count is < 2^40 here, so the byte total cannot overflow */
  uint64_t bytes = (n_time + H + n_body) * sizeof(float) + (uint64_t)T * sizeof(double);
  if (r->pos > r->len || bytes > r->len - r->pos)
    return tchi_fail(TCH_E_IO, "'%s' is truncated (flow network weights)", r->path ? r->path : "?");
  tchi_dflow_spec spec;
  tchi_dflow_spec_default(&spec, D, T);
  spec.hidden = H;
  spec.layers = layers;
  spec.beta = (tchi_beta_schedule)u[4];
  spec.threads = (int)u[5];
  spec.kernel = kernel;
  tchi_rng rng;   /* weights are overwritten below; the stream only satisfies create */
  tchi_rng_seed(&rng, 0, 0);
  tchi_dflow *f;
  s = tchi_dflow_create(&spec, &rng, &f);
  if (s == TCH_E_ARG) {   /* a kernel this CPU cannot run (file written elsewhere): auto */
    spec.kernel = "auto";
    s = tchi_dflow_create(&spec, &rng, &f);
    if (s == TCH_E_ARG) return malformed(r, "architecture");
  }
  if (s != TCH_OK) return s;
  if (f->time.n_params != n_time || f->body.n_params != n_body) {
    tchi_dflow_free(f);
    return malformed(r, "parameter layout");
  }
  if ((s = tchi_get(r, f->time.params, n_time * sizeof(float))) != TCH_OK ||
      (s = tchi_get(r, f->phase, (size_t)H * sizeof(float))) != TCH_OK ||
      (s = tchi_get(r, f->body.params, n_body * sizeof(float))) != TCH_OK ||
      (s = tchi_get(r, f->beta_logit, (size_t)T * sizeof(double))) != TCH_OK) {
    tchi_dflow_free(f);
    return s;
  }
  int ok = floats_finite(f->time.params, n_time) && floats_finite(f->phase, H) &&
           floats_finite(f->body.params, n_body);
  for (uint32_t j = 0; j < T && ok; j++) ok = isfinite(f->beta_logit[j]);
  if (!ok) {
    tchi_dflow_free(f);
    return malformed(r, "non-finite weight");
  }
  *out = f;
  return TCH_OK;
}

tch_status tchi_dflow_clone(const tchi_dflow *src, tchi_dflow **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "dflow_clone: NULL output");
  *out = NULL;
  if (!src) return tchi_fail(TCH_E_ARG, "dflow_clone: NULL flow");
  tchi_rng rng;   /* overwritten below, as in tchi_dflow_read */
  tchi_rng_seed(&rng, 0, 0);
  tchi_dflow *f;
  tch_status s = tchi_dflow_create(&src->spec, &rng, &f);
  if (s != TCH_OK) return s;
  size_t H = src->spec.hidden, T = src->spec.T;
  memcpy(f->time.params, src->time.params, src->time.n_params * sizeof(float));
  memcpy(f->time.grads, src->time.grads, src->time.n_params * sizeof(float));
  memcpy(f->body.params, src->body.params, src->body.n_params * sizeof(float));
  memcpy(f->body.grads, src->body.grads, src->body.n_params * sizeof(float));
  memcpy(f->phase, src->phase, H * sizeof(float));
  memcpy(f->phase_grad, src->phase_grad, H * sizeof(float));
  memcpy(f->beta_logit, src->beta_logit, T * sizeof(double));
  memcpy(f->beta_grad, src->beta_grad, T * sizeof(double));
  *out = f;
  return TCH_OK;
}
