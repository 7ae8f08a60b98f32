/* The policy network: construction, batched evaluation, cloning and its file format. Two
 * architectures sit behind the same outputs (n x out_dim logits, learned-P_B logits, log F):
 * the MLP on the state, and the reference's discovery encoder/scorer pair (ssr.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "gfn.h"
#include "config/config.h"
#include "io/io.h"

#define POLICY_MAGIC "TCHP"
/* Format 1 holds both architectures: the body marks an SSR policy with n_layers = 0 (an
 * MLP has at least one layer), which libraries older than SSR reject as a malformed header.
 * MLP files and the policy bodies inside checkpoints are byte-identical to those written
 * before SSR existed, so every old file still loads and old libraries read new MLP files. */
#define POLICY_FORMAT 1u
/* Version of the SSR block inside the body (bumped if the block ever changes). */
#define SSR_BODY_VERSION 1u

static void layout_outputs(tch_policy *p)
{
  p->out_dim = p->n_actions;
  p->off_pb = p->out_dim;
  if (p->learn_pb) p->out_dim += p->n_actions - 1;
  p->off_flow = p->out_dim;
  if (p->has_flow) p->out_dim += 1;
}

/* Allocates everything but the weights' values; p->mlp dims come from spec. */
static tch_status policy_alloc(const tchi_policy_spec *spec, tch_policy **out)
{
  *out = NULL;
  if (spec->arch != TCHI_ARCH_MLP && spec->arch != TCHI_ARCH_SSR)
    return tchi_fail(TCH_E_ARG, "unknown policy architecture %d", (int)spec->arch);
  if (spec->arch == TCHI_ARCH_MLP && spec->n_hidden + 1 > TCHI_MLP_MAX_LAYERS)
    return tchi_fail(TCH_E_ARG, "too many layers (%zu hidden, at most %d)", spec->n_hidden,
                     TCHI_MLP_MAX_LAYERS - 1);
  tch_policy *p = tchi_calloc(1, sizeof *p);
  if (!p) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a policy");
  tchi_ref_init(&p->ref);
  p->state_dim = spec->state_dim;
  p->n_actions = spec->n_actions;
  p->in_dim = spec->in_dim;
  p->onehot = spec->onehot;
  p->learn_pb = spec->learn_pb;
  p->has_flow = spec->has_flow;
  p->arch = spec->arch;
  p->log_z = spec->logz_init;
  layout_outputs(p);
  snprintf(p->kernel, sizeof p->kernel, "%s", spec->kernel ? spec->kernel : "auto");
  tchi_mlp_ws_init(&p->ws);
  tch_status s = tchi_gemm_init(&p->gemm, p->kernel, spec->threads);
  if (s) { tchi_free(p); return s; }
  if (p->arch == TCHI_ARCH_SSR) {
    if ((s = tchi_ssr_create(p, spec))) { tchi_free(p); return s; }
    *out = p;
    return TCH_OK;
  }
  size_t dims[TCHI_MLP_MAX_LAYERS + 1];
  dims[0] = spec->in_dim;
  for (size_t l = 1; l <= spec->n_hidden; l++) dims[l] = spec->hidden_dim;
  dims[spec->n_hidden + 1] = p->out_dim;
  s = tchi_mlp_init(&p->mlp, spec->n_hidden + 1, dims, spec->act);
  if (s) { tchi_free(p); return s; }
  *out = p;
  return TCH_OK;
}

tch_status tchi_policy_new(const tchi_policy_spec *spec, uint64_t seed, uint64_t init_stream,
                           tch_policy **out)
{
  tch_status s = policy_alloc(spec, out);
  if (s) return s;
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_INIT, init_stream));
  if ((*out)->arch == TCHI_ARCH_SSR) tchi_ssr_init_uniform(*out, &rng);
  else tchi_mlp_init_uniform(&(*out)->mlp, &rng);
  return TCH_OK;
}

tch_status tchi_policy_spec_from_config(const tch_config *c, const tch_env *env,
                                        tchi_policy_spec *spec)
{
  memset(spec, 0, sizeof *spec);
  if (env->kind != TCHI_ENV_DISCRETE)
    return tchi_fail(TCH_E_ARG, "discrete policies need a discrete env");
  spec->state_dim = env->d.state_dim;
  spec->n_actions = env->d.n_actions;
  spec->in_dim = env->in_dim;
  spec->onehot = env->d.features == NULL;
  spec->learn_pb = tchi_cfg_bool(c, "student.learn_pb");
  spec->has_flow = strcmp(tchi_cfg_string(c, "student.loss"), "db") == 0;
  spec->hidden_dim = (size_t)tchi_cfg_int(c, "nn.hidden_dim");
  spec->n_hidden = (size_t)tchi_cfg_int(c, "nn.n_layers");
  int act = tchi_act_from_name(tchi_cfg_string(c, "nn.activation"));
  if (act < 0) return tchi_fail(TCH_E_CONFIG, "unknown nn.activation");
  spec->act = (tchi_act)act;
  spec->kernel = tchi_cfg_string(c, "nn.kernel");
  spec->threads = (int)tchi_cfg_int(c, "nn.threads");
  spec->logz_init = tchi_cfg_double(c, "student.logz_init");
  if (strcmp(tchi_cfg_string(c, "nn.arch"), "ssr") == 0) {
    int64_t h = tchi_cfg_int(c, "nn.ssr_hidden"), e = tchi_cfg_int(c, "nn.ssr_embed");
    if (h == 0 || e == 0)
      return tchi_fail(TCH_E_CONFIG, "nn.ssr_%s must be -1 or a width >= 1",
                       h == 0 ? "hidden" : "embed");
    if (spec->learn_pb)
      return tchi_fail(TCH_E_CONFIG, "nn.arch ssr has no learned P_B: set student.learn_pb false "
                       "(the reference's P_B is uniform over parents)");
    spec->arch = TCHI_ARCH_SSR;
    spec->ssr_hidden = h < 0 ? spec->hidden_dim : (size_t)h;
    spec->ssr_embed = e < 0 ? spec->ssr_hidden : (size_t)e;
    spec->ssr_logit_clip = tchi_cfg_double(c, "nn.ssr_logit_clip");
  }
  return TCH_OK;
}

void tchi_policy_release(tch_policy *p)
{
  if (!p || !tchi_ref_dec(&p->ref)) return;
  tchi_ssr_destroy(p);
  tchi_mlp_destroy(&p->mlp);
  tchi_mlp_ws_destroy(&p->ws);
  tchi_free(p->feat);
  tchi_free(p->idx);
  tchi_free(p);
}

static void spec_of(const tch_policy *p, tchi_policy_spec *spec)
{
  memset(spec, 0, sizeof *spec);
  spec->state_dim = p->state_dim;
  spec->n_actions = p->n_actions;
  spec->in_dim = p->in_dim;
  spec->onehot = p->onehot;
  spec->learn_pb = p->learn_pb;
  spec->has_flow = p->has_flow;
  spec->hidden_dim = p->mlp.n_layers > 1 ? p->mlp.dims[1] : 0;
  spec->n_hidden = p->mlp.n_layers - 1;
  spec->act = p->mlp.act;
  spec->kernel = p->kernel;
  spec->threads = p->gemm.threads;
  spec->logz_init = p->log_z;
  spec->arch = p->arch;
  if (p->ssr) {
    spec->hidden_dim = spec->n_hidden = 0;
    spec->ssr_hidden = p->ssr->hidden;
    spec->ssr_embed = p->ssr->embed;
    spec->ssr_logit_clip = p->ssr->logit_clip;
  }
}

tch_status tchi_policy_clone(const tch_policy *p, tch_policy **out)
{
  tchi_policy_spec spec;
  spec_of(p, &spec);
  tch_status s = policy_alloc(&spec, out);
  if (s) return s;
  memcpy((*out)->mlp.params, p->mlp.params, p->mlp.n_params * sizeof(float));
  return TCH_OK;
}

static tch_status grow_encoding(tch_policy *p, size_t n)
{
  if (n <= p->enc_cap) return TCH_OK;
  size_t cap = n > 2 * p->enc_cap ? n : 2 * p->enc_cap;
  float *feat = NULL;
  int32_t *idx = NULL;
  tch_status s;
  if (p->onehot) s = tchi_alloc_array(&idx, cap, p->state_dim * sizeof(int32_t), 0, "one-hot codes");
  else s = tchi_alloc_array(&feat, cap * p->in_dim + TCHI_GEMM_PAD, sizeof(float), 0, "features");
  if (s) return s;
  tchi_free(p->feat);
  tchi_free(p->idx);
  p->feat = feat;
  p->idx = idx;
  p->enc_cap = cap;
  return TCH_OK;
}

tch_status tchi_policy_forward(tch_policy *p, tch_env *e, size_t n, const int32_t *states,
                               const float **out)
{
  if (e->d.state_dim != p->state_dim || e->d.n_actions != p->n_actions ||
      e->in_dim != p->in_dim || (e->d.features == NULL) != p->onehot)
    return tchi_fail(TCH_E_ARG, "policy (state_dim %u, %u actions, input %u) does not fit the "
                     "env (state_dim %u, %u actions, input %u)", p->state_dim, p->n_actions,
                     p->in_dim, e->d.state_dim, e->d.n_actions, e->in_dim);
  if (p->arch == TCHI_ARCH_SSR) return tchi_ssr_forward(p, e, n, states, out);
  tch_status s = grow_encoding(p, n);
  if (s) return s;
  int use_onehot = 0;
  s = tchi_env_encode(e, n, states, p->feat, p->idx, &use_onehot);
  if (s) return s;
  if (use_onehot)
    return tchi_mlp_forward_onehot(&p->mlp, &p->gemm, &p->ws, n, p->state_dim, p->idx, out);
  return tchi_mlp_forward(&p->mlp, &p->gemm, &p->ws, n, p->feat, out);
}

tch_status tchi_policy_backward(tch_policy *p, const float *dout)
{
  if (p->arch == TCHI_ARCH_SSR) return tchi_ssr_backward(p, dout);
  return tchi_mlp_backward(&p->mlp, &p->gemm, &p->ws, dout, NULL);
}

/* ---- file format -------------------------------------------------------------------
 * "TCHP" u32 format, u32 endian tag, then the body below, then CRC-32 of all before it.
 * Body: u32 state_dim, n_actions, in_dim, onehot, learn_pb, has_flow, act, n_layers; then
 * for an MLP (n_layers >= 1) u64 dims[0..n_layers], for SSR (n_layers = 0) u32 SSR block
 * version (1), u64 hidden, u64 embed, f64 logit clip; then u32 threads, char kernel[32],
 * f64 log Z, u64 n_params, n_params floats. */
void tchi_policy_write(const tch_policy *p, tchi_writer *w)
{
  tchi_put_u32(w, p->state_dim);
  tchi_put_u32(w, p->n_actions);
  tchi_put_u32(w, p->in_dim);
  tchi_put_u32(w, (uint32_t)p->onehot);
  tchi_put_u32(w, (uint32_t)p->learn_pb);
  tchi_put_u32(w, (uint32_t)p->has_flow);
  tchi_put_u32(w, (uint32_t)p->mlp.act);
  tchi_put_u32(w, (uint32_t)p->mlp.n_layers);
  if (p->arch == TCHI_ARCH_SSR) {
    tchi_put_u32(w, SSR_BODY_VERSION);
    tchi_put_u64(w, p->ssr->hidden);
    tchi_put_u64(w, p->ssr->embed);
    tchi_put_f64(w, p->ssr->logit_clip);
  } else {
    for (size_t l = 0; l <= p->mlp.n_layers; l++) tchi_put_u64(w, p->mlp.dims[l]);
  }
  tchi_put_u32(w, (uint32_t)p->gemm.threads);
  tchi_put(w, p->kernel, sizeof p->kernel);
  tchi_put_f64(w, p->log_z);
  tchi_put_u64(w, p->mlp.n_params);
  tchi_put(w, p->mlp.params, p->mlp.n_params * sizeof(float));
}

tch_status tchi_policy_read(tchi_reader *r, tch_policy **out)
{
  *out = NULL;
  uint32_t u[8];
  tch_status s;
  for (int i = 0; i < 8; i++)
    if ((s = tchi_get_u32(r, &u[i]))) return s;
  uint32_t n_layers = u[7];
  const int ssr = n_layers == 0;
  if (n_layers > TCHI_MLP_MAX_LAYERS || u[6] > TCHI_ACT_TANH || u[1] < 2 || u[0] < 1 || u[2] < 1 ||
      (ssr && (u[4] != 0 || u[6] != TCHI_ACT_LEAKY_RELU)))
    return tchi_fail(TCH_E_IO, "'%s': malformed policy header", r->path);
  uint64_t dims[TCHI_MLP_MAX_LAYERS + 1] = {0};
  uint32_t ssr_version = 0;
  uint64_t ssr_hidden = 0, ssr_embed = 0;
  double ssr_clip = 0.0;
  if (ssr) {
    if ((s = tchi_get_u32(r, &ssr_version)) || (s = tchi_get_u64(r, &ssr_hidden)) ||
        (s = tchi_get_u64(r, &ssr_embed)) || (s = tchi_get_f64(r, &ssr_clip)))
      return s;
    if (ssr_version != SSR_BODY_VERSION)
      return tchi_fail(TCH_E_VERSION, "'%s' has SSR policy block version %u; this library reads "
                       "version %u", r->path, ssr_version, SSR_BODY_VERSION);
    if (ssr_hidden < 1 || ssr_hidden > 65536 || ssr_embed < 1 || ssr_embed > 65536 ||
        !(ssr_clip > 0.0) || !isfinite(ssr_clip))
      return tchi_fail(TCH_E_IO, "'%s': malformed policy header (SSR widths)", r->path);
  } else {
    for (uint32_t l = 0; l <= n_layers; l++)
      if ((s = tchi_get_u64(r, &dims[l]))) return s;
  }
  uint32_t threads;
  char kernel[32];
  double log_z;
  uint64_t n_params;
  if ((s = tchi_get_u32(r, &threads)) || (s = tchi_get(r, kernel, sizeof kernel)) ||
      (s = tchi_get_f64(r, &log_z)) || (s = tchi_get_u64(r, &n_params)))
    return s;
  kernel[sizeof kernel - 1] = '\0';
  tchi_policy_spec spec = {
    .state_dim = u[0], .n_actions = u[1], .in_dim = u[2], .onehot = (int)u[3],
    .learn_pb = (int)u[4], .has_flow = (int)u[5], .act = (tchi_act)u[6],
    .hidden_dim = n_layers > 1 ? (size_t)dims[1] : 0, .n_hidden = ssr ? 0 : n_layers - 1,
    .kernel = kernel, .threads = threads ? (int)threads : 1, .logz_init = log_z,
    .arch = ssr ? TCHI_ARCH_SSR : TCHI_ARCH_MLP, .ssr_hidden = (size_t)ssr_hidden,
    .ssr_embed = (size_t)ssr_embed, .ssr_logit_clip = ssr_clip,
  };
  if (!ssr && dims[0] != u[2])
    return tchi_fail(TCH_E_IO, "'%s': malformed policy header (input width)", r->path);
  for (uint32_t l = 1; l < n_layers; l++)
    if (dims[l] != dims[1] || dims[l] == 0 || dims[l] > 65536)
      return tchi_fail(TCH_E_IO, "'%s': malformed policy header (layer widths)", r->path);
  tch_policy *p;
  /* A kernel this CPU cannot run (file written elsewhere) falls back to auto. */
  s = policy_alloc(&spec, &p);
  if (s == TCH_E_ARG) {
    spec.kernel = "auto";
    s = policy_alloc(&spec, &p);
  }
  if (s) return s;
  if ((!ssr && p->mlp.dims[n_layers] != dims[n_layers]) || p->mlp.n_params != n_params) {
    tchi_policy_release(p);
    return tchi_fail(TCH_E_IO, "'%s': malformed policy header (output width)", r->path);
  }
  if ((s = tchi_get(r, p->mlp.params, n_params * sizeof(float)))) {
    tchi_policy_release(p);
    return s;
  }
  *out = p;
  return TCH_OK;
}

tch_status tchi_policy_save(const tch_policy *p, const char *path)
{
  tchi_writer w;
  tchi_writer_init(&w);
  tchi_put(&w, POLICY_MAGIC, 4);
  tchi_put_u32(&w, POLICY_FORMAT);
  tchi_put_u32(&w, TCHI_ENDIAN_TAG);
  tchi_policy_write(p, &w);
  tch_status s = tchi_writer_commit(&w, path);
  tchi_writer_destroy(&w);
  return s;
}

tch_status tchi_policy_load(const char *path, tch_policy **out)
{
  *out = NULL;
  tchi_reader r;
  tch_status s = tchi_reader_open(&r, path);
  if (s) return s;
  char magic[4];
  uint32_t format, endian;
  if ((s = tchi_get(&r, magic, 4)) || (s = tchi_get_u32(&r, &format)) ||
      (s = tchi_get_u32(&r, &endian)))
    goto done;
  if (memcmp(magic, POLICY_MAGIC, 4) != 0) {
    s = tchi_fail(TCH_E_IO, "'%s' is not a libteacher policy file", path);
    goto done;
  }
  if (endian != TCHI_ENDIAN_TAG) {
    s = tchi_fail(TCH_E_VERSION, "'%s' was written on a machine of other endianness", path);
    goto done;
  }
  if (format != POLICY_FORMAT) {
    s = tchi_fail(TCH_E_VERSION, "'%s' has policy format %u; this library reads format %u",
                  path, format, POLICY_FORMAT);
    goto done;
  }
  s = tchi_policy_read(&r, out);
  if (s == TCH_OK && r.pos != r.len) {
    tchi_policy_release(*out);
    *out = NULL;
    s = tchi_fail(TCH_E_IO, "'%s' has %zu unexpected trailing bytes", path, r.len - r.pos);
  }
done:
  tchi_reader_close(&r);
  return s;
}
