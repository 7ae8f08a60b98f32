/* Serialisation of diffusion networks, for policy files and trainer checkpoints: a tag, a
 * format version, the architecture, the gemm kernel request, the weights and log Z.
 *
 * Format 2 appends the reference process (Reinforced SMC: reference, init_std, noise_scale)
 * after the format-1 scalars; format-1 records (written before the OU-DDS reference
 * existed) are still read, as Brownian nets. */
#include <math.h>
#include <string.h>
#include "diffusion/diffusion.h"
#include "io/io.h"

#define DNET_TAG "TDNT"
#define DNET_FORMAT 2u
#define DNET_FORMAT_BROWNIAN_ONLY 1u   /* no reference-process fields */

enum { N_U32 = 15, N_F64 = 6 };

void tchi_dnet_write(const tchi_dnet *net, tchi_writer *w)
{
  const tchi_dnet_spec *s = &net->spec;
  uint32_t u[N_U32] = {s->dim, s->T, s->hidden_dim, s->s_emb_dim, s->t_emb_dim, s->harmonics_dim,
                       (uint32_t)s->pis, s->joint_layers, s->lgv_layers,
                       (uint32_t)s->learned_variance, (uint32_t)s->langevin,
                       (uint32_t)s->langevin_per_dim, (uint32_t)s->clipping,
                       (uint32_t)s->learn_log_z, (uint32_t)s->threads};
  double f[N_F64] = {s->t_scale, s->log_var_range, s->lgv_clip, s->gfn_clip, s->log_z_init, net->log_z};
  tchi_put(w, DNET_TAG, 4);
  tchi_put_u32(w, DNET_FORMAT);
  for (int i = 0; i < N_U32; i++) tchi_put_u32(w, u[i]);
  for (int i = 0; i < N_F64; i++) tchi_put_f64(w, f[i]);
  tchi_put_u32(w, (uint32_t)s->reference);
  tchi_put_f64(w, s->init_std);
  tchi_put_f64(w, s->noise_scale);
  tchi_put(w, net->kernel, sizeof net->kernel);
  tchi_put_u64(w, net->n_params);
  tchi_put(w, net->params, net->n_params * sizeof(float));
}

static tch_status malformed(const tchi_reader *r, const char *what)
{
  return tchi_fail(TCH_E_IO, "'%s': malformed diffusion network (%s)", r->path ? r->path : "?", what);
}

tch_status tchi_dnet_read(tchi_reader *r, tchi_dnet **out)
{
  if (!out) return tchi_fail(TCH_E_ARG, "dnet_read: NULL output");
  *out = NULL;
  if (!r) return tchi_fail(TCH_E_ARG, "dnet_read: NULL reader");
  char tag[4];
  uint32_t format, u[N_U32];
  double f[N_F64];
  char kernel[32];
  uint64_t n_params;
  tch_status s;
  if ((s = tchi_get(r, tag, 4)) != TCH_OK) return s;
  if (memcmp(tag, DNET_TAG, 4) != 0) return malformed(r, "no diffusion network tag");
  if ((s = tchi_get_u32(r, &format)) != TCH_OK) return s;
  if (format != DNET_FORMAT && format != DNET_FORMAT_BROWNIAN_ONLY)
    return tchi_fail(TCH_E_VERSION, "'%s': diffusion network format %u; this library reads formats %u and %u",
                     r->path ? r->path : "?", format, DNET_FORMAT_BROWNIAN_ONLY, DNET_FORMAT);
  for (int i = 0; i < N_U32; i++)
    if ((s = tchi_get_u32(r, &u[i])) != TCH_OK) return s;
  for (int i = 0; i < N_F64; i++)
    if ((s = tchi_get_f64(r, &f[i])) != TCH_OK) return s;
  uint32_t reference = TCHI_DREF_BROWNIAN;
  double init_std = 0.0, noise_scale = 0.0;
  if (format >= 2 && ((s = tchi_get_u32(r, &reference)) != TCH_OK || (s = tchi_get_f64(r, &init_std)) != TCH_OK ||
                      (s = tchi_get_f64(r, &noise_scale)) != TCH_OK))
    return s;
  if (reference >= TCHI_DREF_COUNT) return malformed(r, "reference process");
  if ((s = tchi_get(r, kernel, sizeof kernel)) != TCH_OK || (s = tchi_get_u64(r, &n_params)) != TCH_OK)
    return s;
  kernel[sizeof kernel - 1] = '\0';
  for (int i = 6; i <= 13; i++)
    if (i != 7 && i != 8 && u[i] > 1) return malformed(r, "flag out of range");
  if (u[14] > 1024) return malformed(r, "thread count");
  if (!isfinite(f[5])) return malformed(r, "log Z");
  if (r->pos > r->len || n_params > (r->len - r->pos) / sizeof(float))
    return tchi_fail(TCH_E_IO, "'%s' is truncated (diffusion network weights)", r->path ? r->path : "?");
  tchi_dnet_spec spec = {
    .dim = u[0], .T = u[1], .hidden_dim = u[2], .s_emb_dim = u[3], .t_emb_dim = u[4],
    .harmonics_dim = u[5], .pis = (int)u[6], .joint_layers = u[7], .lgv_layers = u[8],
    .learned_variance = (int)u[9], .langevin = (int)u[10], .langevin_per_dim = (int)u[11],
    .clipping = (int)u[12], .learn_log_z = (int)u[13], .threads = (int)u[14],
    .reference = (int)reference, .init_std = init_std, .noise_scale = noise_scale,
    .t_scale = f[0], .log_var_range = f[1], .lgv_clip = f[2], .gfn_clip = f[3], .log_z_init = f[4],
    .kernel = kernel,
  };
  tchi_rng rng;   /* weights are overwritten below; the stream only satisfies create */
  tchi_rng_seed(&rng, 0, 0);
  tchi_dnet *net;
  s = tchi_dnet_create(&spec, &rng, &net);
  if (s == TCH_E_ARG) {   /* a kernel this CPU cannot run (file written elsewhere): auto */
    spec.kernel = "auto";
    s = tchi_dnet_create(&spec, &rng, &net);
    if (s == TCH_E_ARG) return malformed(r, "architecture");
  }
  if (s != TCH_OK) return s;
  if (n_params != net->n_params) {
    tchi_dnet_free(net);
    return malformed(r, "parameter count");
  }
  if ((s = tchi_get(r, net->params, net->n_params * sizeof(float))) != TCH_OK) {
    tchi_dnet_free(net);
    return s;
  }
  net->log_z = f[5];
  *out = net;
  return TCH_OK;
}
