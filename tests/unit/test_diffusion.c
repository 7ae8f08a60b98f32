/* diffusion: the vectorised GELU against erf, the Gaussian kernels against direct formulas,
 * the Brownian bridge (values, exact marginals of backward-sampled trajectories), the
 * zero-initialised sampler as Brownian motion, TB gradients of every architecture variant
 * against central finite differences of an independent double-precision oracle, chunked
 * against per-step backward, determinism, parameter groups, serialisation, argument,
 * callback and allocation failures. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "../tch_check.h"
#include "diffusion/diffusion.h"
#include "io/io.h"

/* ---- helpers ---------------------------------------------------------------------------------- */
static tchi_dnet *make_net(const tchi_dnet_spec *spec, uint64_t seed, int randomise_last)
{
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_INIT, 0));
  tchi_dnet *net = NULL;
  tch_status s = tchi_dnet_create(spec, &rng, &net);
  ck_assert_msg(s == TCH_OK, "create: %s", tch_last_error());
  if (randomise_last) {   /* zero_init would make every upstream gradient 0 */
    const tchi_dchain *cs[2] = {&net->joint, &net->lgv};
    for (int c = 0; c < 2; c++) {
      if (!cs[c]->n) continue;
      const tchi_dlinear *L = &cs[c]->lin[cs[c]->n - 1];
      for (size_t i = 0; i < (size_t)L->in * L->out + L->out; i++)
        net->params[L->w + i] = (float)(0.6 * (2 * tchi_rng_uniform(&rng) - 1));
    }
    net->log_z = 0.7;
  }
  return net;
}

static void small_spec(tchi_dnet_spec *s, uint32_t dim, int pis)
{
  tchi_dnet_spec_default(s, dim);
  s->T = 5;
  s->hidden_dim = 16;
  s->s_emb_dim = pis ? 16 : 12;
  s->t_emb_dim = pis ? 16 : 10;
  s->harmonics_dim = 6;
  s->pis = pis;
}

typedef struct grad_ctx { int calls, fail_code, inject_bad; } grad_ctx;

/* log R(x) = -|x|^2/2 + sum sin(2 x); the test only needs its gradient to be varied. */
static int grad_fn(void *ctx, size_t n, size_t dim, const double *x, double *log_r, double *grad)
{
  grad_ctx *c = ctx;
  c->calls++;
  if (c->fail_code) return c->fail_code;
  for (size_t i = 0; i < n; i++) {
    log_r[i] = 0;
    for (size_t d = 0; d < dim; d++) {
      double v = x[i * dim + d];
      log_r[i] += -0.5 * v * v + sin(2 * v);
      grad[i * dim + d] = -0.3 * v + 1.5 * cos(2 * v);
    }
  }
  if (c->inject_bad && n >= 3 && dim >= 1) {
    grad[0] = NAN;
    grad[dim] = INFINITY;
    grad[2 * dim] = -INFINITY;
  }
  return 0;
}

/* ---- GELU ----------------------------------------------------------------------------------------- */
START_TEST(gelu_matches_erf)
{
  enum { N = 200001 };
  static float x[N], y[N], y2[N], d[N];
  for (int i = 0; i < N; i++) x[i] = (float)(-10.0 + 20.0 * i / (N - 1));
  memcpy(y, x, sizeof x);
  memcpy(y2, x, sizeof x);
  tchi_dgelu(N, y);
  tchi_dgelu_der(N, y2, d);
  double max_e = 0, max_de = 0;
  for (int i = 0; i < N; i++) {
    double v = x[i], cdf = 0.5 * (1 + erf(v / sqrt(2.0)));
    double g = v * cdf, dg = cdf + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
    ck_assert_msg(memcmp(&y[i], &y2[i], sizeof(float)) == 0, "gelu and gelu_der differ at %g", v);
    max_e = fmax(max_e, fabs(y[i] - g) / fmax(1.0, fabs(v)));
    max_de = fmax(max_de, fabs(d[i] - dg));
  }
  ck_assert_msg(max_e <= 4e-7, "GELU error %g", max_e);
  ck_assert_msg(max_de <= 4e-7, "GELU' error %g", max_de);
  /* the fused bias + GELU of the layers gives the same bits as add-then-GELU */
  static float yb[3 * 1000], yd[3 * 1000], db[3 * 1000], dd[3 * 1000], bias[1000];
  for (int j = 0; j < 1000; j++) bias[j] = (float)(0.37 * j / 1000.0 - 0.1);
  for (int i = 0; i < 3000; i++) yb[i] = yd[i] = x[(i * 67) % N];
  tchi_dbias_gelu(3, 1000, yb, bias, db);
  tchi_dadd_row(3, 1000, yd, bias);
  tchi_dgelu_der(3000, yd, dd);
  ck_assert(memcmp(yb, yd, sizeof yb) == 0 && memcmp(db, dd, sizeof db) == 0);
  for (int i = 0; i < 3000; i++) yd[i] = x[(i * 67) % N];
  tchi_dbias_gelu(3, 1000, yd, bias, NULL);
  ck_assert(memcmp(yb, yd, sizeof yb) == 0);
  float sp[4] = {0.0f, -0.0f, NAN, INFINITY}, der[4];
  tchi_dgelu_der(4, sp, der);
  ck_assert(sp[0] == 0.0f && sp[1] == 0.0f && fabsf(der[0] - 0.5f) < 1e-7f);
  ck_assert(isnan(sp[2]) && isnan(der[2]));
  ck_assert(sp[3] == INFINITY);
}
END_TEST

/* ---- Gaussian kernels ----------------------------------------------------------------------------- */
START_TEST(forward_kernel_matches_normal_density)
{
  const double dt = 0.01, s0[3] = {0.3, -1.2, 2.0}, s1[3] = {0.25, -1.0, 2.3};
  const double mean[3] = {-2.0, 5.0, 0.7}, logvar[3] = {0.0, -0.4, 1.1};
  double direct = 0;
  for (int d = 0; d < 3; d++) {
    double var = dt * exp(logvar[d]), m = s0[d] + dt * mean[d];
    direct += -0.5 * log(2 * M_PI * var) - (s1[d] - m) * (s1[d] - m) / (2 * var);
  }
  double lp = tchi_dkernel_log_pf(3, dt, s0, s1, mean, logvar);
  ck_assert_msg(fabs(lp - direct) < 1e-12 * fabs(direct), "%.17g vs %.17g", lp, direct);
  double dm[3] = {0}, dl[3] = {0};
  double lp2 = tchi_dkernel_log_pf_grad(3, dt, s0, s1, mean, logvar, 2.0, dm, dl);
  ck_assert(lp2 == lp);
  for (int d = 0; d < 3; d++) {
    double m2[3], l2[3], h = 1e-6;
    memcpy(m2, mean, sizeof m2);
    memcpy(l2, logvar, sizeof l2);
    m2[d] += h;
    double up = tchi_dkernel_log_pf(3, dt, s0, s1, m2, logvar);
    m2[d] -= 2 * h;
    double dn = tchi_dkernel_log_pf(3, dt, s0, s1, m2, logvar);
    ck_assert_msg(fabs(dm[d] - 2 * (up - dn) / (2 * h)) < 1e-5 * fmax(1, fabs(dm[d])), "d mean %d", d);
    l2[d] += h;
    up = tchi_dkernel_log_pf(3, dt, s0, s1, mean, l2);
    l2[d] -= 2 * h;
    dn = tchi_dkernel_log_pf(3, dt, s0, s1, mean, l2);
    ck_assert_msg(fabs(dl[d] - 2 * (up - dn) / (2 * h)) < 1e-5 * fmax(1, fabs(dl[d])), "d logvar %d", d);
  }
}
END_TEST

START_TEST(bridge_values)
{
  double f, v;
  tchi_dbridge(1, 0.01, 1.0, &f, &v);
  ck_assert(fabs(f - 0.5) < 1e-15 && fabs(v - 0.005) < 1e-15);
  tchi_dbridge(99, 0.01, 2.0, &f, &v);
  ck_assert(fabs(f - 0.99) < 1e-15 && fabs(v - 2.0 * 0.01 * 0.99) < 1e-15);
  tchi_dbridge(3, 0.25, 1.5, &f, &v);   /* T = 4: s_3 | s_4 */
  ck_assert(fabs(f - 0.75) < 1e-15 && fabs(v - 1.5 * 0.25 * 0.75) < 1e-15);
  const double si[2] = {0.4, -0.1}, sn[2] = {0.3, 0.5};
  ck_assert(tchi_dkernel_log_pb(2, 0, 0.1, 1.0, si, sn) == 0.0);
  double direct = 0;
  tchi_dbridge(4, 0.1, 1.3, &f, &v);
  for (int d = 0; d < 2; d++)
    direct += -0.5 * log(2 * M_PI * v) - (si[d] - f * sn[d]) * (si[d] - f * sn[d]) / (2 * v);
  ck_assert(fabs(tchi_dkernel_log_pb(2, 4, 0.1, 1.3, si, sn) - direct) < 1e-12 * fabs(direct));
}
END_TEST

/* Backward trajectories from a fixed x: s_0 = 0 and s_k ~ N(x k/T, t_scale k (T-k) / T^2)
 * exactly (Brownian bridge); 5-sigma bounds with a fixed seed (2.2% on the variance). */
START_TEST(backward_sampling_has_bridge_marginals)
{
  tchi_dnet_spec spec;
  tchi_dnet_spec_default(&spec, 2);
  spec.T = 10;
  spec.t_scale = 1.7;
  spec.hidden_dim = spec.s_emb_dim = spec.t_emb_dim = spec.harmonics_dim = 8;
  tchi_dnet *net = make_net(&spec, 3, 1);
  enum { N = 100000 };
  static double x[N * 2];
  for (int i = 0; i < N; i++) {
    x[2 * i] = 1.5;
    x[2 * i + 1] = -2.0;
  }
  tchi_rng rng;
  tchi_rng_seed(&rng, 11, 0);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  ck_assert_int_eq(tchi_dsample_backward(net, NULL, &rng, N, x, &t), TCH_OK);
  const uint32_t K[2] = {3, 5};
  for (int q = 0; q < 2; q++) {
    uint32_t k = K[q];
    for (int d = 0; d < 2; d++) {
      double m = 0, m2 = 0;
      for (int i = 0; i < N; i++) {
        double v = tchi_dtraj_state(&t, i, k)[d];
        m += v;
        m2 += v * v;
      }
      m /= N;
      double var = m2 / N - m * m;
      double want_m = x[d] * k / 10.0, want_v = spec.t_scale * k * (10.0 - k) / 100.0;
      ck_assert_msg(fabs(m - want_m) < 5 * sqrt(want_v / N), "mean step %u dim %d: %g vs %g", k, d, m, want_m);
      ck_assert_msg(fabs(var - want_v) < 5 * want_v * sqrt(2.0 / N), "var step %u dim %d: %g vs %g", k, d, var, want_v);
    }
  }
  static double pf[N];
  ck_assert_int_eq(tchi_dnet_log_pf(net, &t, 1, pf), TCH_OK);
  for (int i = 0; i < N; i++) {
    const double *s0 = tchi_dtraj_state(&t, i, 0), *sT = tchi_dtraj_state(&t, i, 10);
    ck_assert(s0[0] == 0.0 && s0[1] == 0.0 && sT[0] == 1.5 && sT[1] == -2.0);
    double pb = 0;
    for (uint32_t k = 0; k < 10; k++)
      pb += tchi_dkernel_log_pb(2, k, 0.1, spec.t_scale, tchi_dtraj_state(&t, i, k), tchi_dtraj_state(&t, i, k + 1));
    ck_assert(fabs(pb - t.log_pb[i]) < 1e-9 * (1 + fabs(pb)));
    ck_assert_msg(fabs(pf[i] - t.log_pf[i]) < 1e-4 * (1 + fabs(pf[i])), "%g vs %g", pf[i], t.log_pf[i]);
  }
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}
END_TEST

/* zero_init: the initial sampler is Brownian motion with diffusion t_scale, so x ~ N(0,
 * t_scale I), and P_F(tau)/P_B(tau | x) is exactly the density of x (the bridge is BM's
 * posterior). Exploration adds T expl^2 of terminal variance and leaves log P_F unexplored. */
START_TEST(zero_init_sampler_is_brownian_motion)
{
  tchi_dnet_spec spec;
  tchi_dnet_spec_default(&spec, 2);
  spec.T = 20;
  spec.t_scale = 2.0;
  spec.hidden_dim = spec.s_emb_dim = spec.t_emb_dim = spec.harmonics_dim = 8;
  tchi_dnet *net = make_net(&spec, 5, 0);
  enum { N = 20000 };
  tchi_rng rng;
  tchi_rng_seed(&rng, 12, 0);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  for (int expl = 0; expl < 2; expl++) {
    double e = expl ? 0.2 : 0.0, want_v = spec.t_scale + spec.T * e * e;
    ck_assert_int_eq(tchi_dsample_forward(net, NULL, &rng, N, e, &t), TCH_OK);
    for (int d = 0; d < 2; d++) {
      double m = 0, m2 = 0;
      for (int i = 0; i < N; i++) {
        double v = tchi_dtraj_state(&t, i, spec.T)[d];
        m += v;
        m2 += v * v;
      }
      m /= N;
      double var = m2 / N - m * m;
      ck_assert_msg(fabs(m) < 5 * sqrt(want_v / N), "mean %g", m);
      ck_assert_msg(fabs(var - want_v) < 5 * want_v * sqrt(2.0 / N), "var %g vs %g", var, want_v);
    }
    double max_err = 0;
    for (int i = 0; i < N; i++) {
      const double *x = tchi_dtraj_state(&t, i, spec.T);
      double lp = -log(2 * M_PI * spec.t_scale) - (x[0] * x[0] + x[1] * x[1]) / (2 * spec.t_scale);
      double pf_unexplored = 0;   /* log P_F under sigma^2 = t_scale, mean 0 */
      for (uint32_t k = 0; k < spec.T; k++) {
        const double *a = tchi_dtraj_state(&t, i, k), *b = tchi_dtraj_state(&t, i, k + 1);
        for (int d = 0; d < 2; d++)
          pf_unexplored += -0.5 * log(2 * M_PI * spec.t_scale / spec.T) -
                           (b[d] - a[d]) * (b[d] - a[d]) * spec.T / (2 * spec.t_scale);
      }
      ck_assert(fabs(pf_unexplored - t.log_pf[i]) < 1e-9 * (1 + fabs(pf_unexplored)));
      max_err = fmax(max_err, fabs(t.log_pf[i] - t.log_pb[i] - lp));
    }
    ck_assert_msg(max_err < 1e-8, "log P_F - log P_B - log N(x) up to %g", max_err);
  }
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}
END_TEST

/* ---- the double-precision oracle ----------------------------------------------------------------- */
/* An independent implementation of the reference architecture (gfn.py, architectures.py):
 * it reads only the layer offsets from the net and wires the modules itself. */
#define OW 128
static double gelu_d(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }

static void linear_d(const double *P, const tchi_dlinear *L, const double *v, size_t nv,
                     const double *tail, size_t ntail, double *y)
{
  ck_assert_uint_eq(nv + ntail, L->in);
  for (uint32_t o = 0; o < L->out; o++) {
    double a = P[L->b + o];
    for (size_t i = 0; i < nv; i++) a += v[i] * P[L->w + i * L->out + o];
    for (size_t i = 0; i < ntail; i++) a += tail[i] * P[L->w + (nv + i) * L->out + o];
    y[o] = a;
  }
}

/* Linear layers of chain c with GELU after layer l iff gelu_after[l], GELU on the input
 * first iff gelu_in; the first layer reads concat(in, tail). */
static void chain_d(const double *P, const tchi_dchain *c, int gelu_in, const int *gelu_after,
                    const double *in, size_t nin, const double *tail, size_t ntail, double *out)
{
  double a[OW], b[OW];
  for (size_t i = 0; i < nin; i++) a[i] = gelu_in ? gelu_d(in[i]) : in[i];
  size_t na = nin;
  for (uint32_t l = 0; l < c->n; l++) {
    linear_d(P, &c->lin[l], a, na, l == 0 ? tail : NULL, l == 0 ? ntail : 0, b);
    na = c->lin[l].out;
    for (size_t i = 0; i < na; i++) a[i] = gelu_after[l] ? gelu_d(b[i]) : b[i];
  }
  memcpy(out, a, na * sizeof *out);
}

static void features_d(uint32_t h, int pis, double t, const double *phase, double *f)
{
  float tf = (float)t;
  for (uint32_t i = 0; i < h; i++) {
    float pe;
    if (!pis) {
      pe = (float)(2 * (i + 1)) * (float)M_PI;
    } else {
      float step = (100.0f - 0.1f) / (float)(h - 1);
      pe = i < h / 2 ? 0.1f + step * (float)i : 100.0f - step * (float)(h - 1 - i);
    }
    double a = (double)(tf * pe) + (phase ? phase[i] : 0.0);
    f[i] = sin(a);
    f[h + i] = cos(a);
  }
}

static void oracle_step(const tchi_dnet *net, const double *P, uint32_t i, const double *x,
                        const double *g, double *mean, double *logvar)
{
  const tchi_dnet_spec *s = &net->spec;
  double t = i * (1.0 / s->T), feat[OW], temb[OW], semb[OW], out[OW], sc[OW];
  const int all[TCHI_DCHAIN_MAX] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  int last_off[TCHI_DCHAIN_MAX];
  ck_assert(2 * s->harmonics_dim <= OW && 2 * s->t_emb_dim <= OW);
  if (!s->pis) {
    const int two[2] = {1, 1}, head[3] = {1, 1, 0};
    features_d(s->harmonics_dim, 0, t, NULL, feat);
    chain_d(P, &net->time, 0, two, feat, 2 * s->harmonics_dim, NULL, 0, temb);
    chain_d(P, &net->state, 0, two, x, s->dim, NULL, 0, semb);
    chain_d(P, &net->joint, 0, head, semb, s->s_emb_dim, temb, s->t_emb_dim, out);
    if (s->langevin) chain_d(P, &net->lgv, 0, head, semb, s->s_emb_dim, temb, s->t_emb_dim, sc);
  } else {
    const int time_g[2] = {1, 0}, none[1] = {0};
    features_d(s->harmonics_dim, 1, t, P + net->phase, feat);
    chain_d(P, &net->time, 0, time_g, feat, 2 * s->harmonics_dim, NULL, 0, temb);
    chain_d(P, &net->state, 0, none, x, s->dim, NULL, 0, semb);
    double z[OW];
    for (uint32_t q = 0; q < s->hidden_dim; q++) z[q] = semb[q] + temb[q];
    memcpy(last_off, all, sizeof last_off);
    last_off[s->joint_layers] = 0;
    chain_d(P, &net->joint, 1, last_off, z, s->hidden_dim, NULL, 0, out);
    if (s->langevin) {
      double lf[OW];
      features_d(s->t_emb_dim, 1, t, P + net->lgv_phase, lf);
      memcpy(last_off, all, sizeof last_off);
      last_off[s->lgv_layers] = 0;
      chain_d(P, &net->lgv, 0, last_off, lf, 2 * s->t_emb_dim, NULL, 0, sc);
    }
  }
  for (uint32_t d = 0; d < s->dim; d++) {
    double v = out[d], raw = out[s->dim + d];
    if (s->langevin) v += sc[s->langevin_per_dim ? d : 0] * g[d];
    if (s->clipping) {
      v = fmax(-s->gfn_clip, fmin(s->gfn_clip, v));
      raw = fmax(-s->gfn_clip, fmin(s->gfn_clip, raw));
    }
    mean[d] = v;
    logvar[d] = (s->learned_variance ? tanh(raw) * s->log_var_range : 0.0) + log(s->t_scale);
  }
}

/* fwd_tb / bwd_tb loss in double on fixed trajectories. */
static double oracle_loss(const tchi_dnet *net, const double *P, double log_z, const tchi_dtraj *t,
                          const double *log_r, double *delta)
{
  const tchi_dnet_spec *s = &net->spec;
  double dt = 1.0 / s->T, loss = 0;
  for (size_t r = 0; r < t->n; r++) {
    double pf = 0;
    for (uint32_t i = 0; i < s->T; i++) {
      double mean[OW], lv[OW];
      const double *a = tchi_dtraj_state(t, r, i), *b = tchi_dtraj_state(t, r, i + 1);
      oracle_step(net, P, i, a, s->langevin ? t->grad + (r * s->T + i) * s->dim : NULL, mean, lv);
      for (uint32_t d = 0; d < s->dim; d++) {
        double var = dt * exp(lv[d]), e = b[d] - a[d] - dt * mean[d];
        pf += -0.5 * log(2 * M_PI * var) - e * e / (2 * var);
      }
    }
    double res = pf + log_z - t->log_pb[r] - log_r[r];
    if (delta) delta[r] = -res;
    loss += 0.5 * res * res;
  }
  return loss / t->n;
}

/* Parameter indices to check: a spread of W entries (both parts of split layers) and b
 * entries of every layer, and the PIS phases. */
static size_t pick_params(const tchi_dnet *net, size_t *idx, size_t cap)
{
  size_t k = 0;
  const tchi_dchain *cs[4] = {&net->time, &net->state, &net->joint, &net->lgv};
  for (int c = 0; c < 4; c++)
    for (uint32_t l = 0; l < cs[c]->n; l++) {
      const tchi_dlinear *L = &cs[c]->lin[l];
      size_t nw = (size_t)L->in * L->out, stride = nw / 23 + 1;
      for (size_t i = 0; i < nw && k < cap; i += stride) idx[k++] = L->w + i;
      if (l == 0 && cs[c]->split < L->in)
        for (size_t i = 0; i < 4 && k < cap; i++) idx[k++] = L->w + (size_t)cs[c]->split * L->out + i * 3;
      for (size_t i = 0; i < L->out && k < cap; i += L->out / 5 + 1) idx[k++] = L->b + i;
    }
  if (net->spec.pis) {
    for (uint32_t i = 0; i < net->spec.harmonics_dim && k < cap; i += 2) idx[k++] = net->phase + i;
    if (net->spec.langevin)
      for (uint32_t i = 0; i < net->spec.t_emb_dim && k < cap; i += 3) idx[k++] = net->lgv_phase + i;
  }
  return k;
}

typedef struct variant {
  const char *name;
  uint32_t dim;
  int pis, learned_variance, langevin, per_dim, clipping, backward;
  double expl;
} variant;

static void check_variant(const variant *v)
{
  tchi_dnet_spec spec;
  small_spec(&spec, v->dim, v->pis);
  spec.learned_variance = v->learned_variance;
  spec.langevin = v->langevin;
  spec.langevin_per_dim = v->per_dim;
  spec.clipping = v->clipping;
  if (v->clipping) {
    spec.gfn_clip = 0.45;
    spec.lgv_clip = 0.8;
  }
  spec.t_scale = 1.3;
  tchi_dnet *net = make_net(&spec, 21, 1);
  grad_ctx gc = {0, 0, 0};
  tchi_dreward rw = {grad_fn, &gc};
  enum { N = 6 };
  tchi_rng rng;
  tchi_rng_seed(&rng, 99, 1);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  if (v->backward) {
    double x[N * 4];
    for (size_t i = 0; i < N * v->dim; i++) x[i] = 2.5 * (2 * tchi_rng_uniform(&rng) - 1);
    ck_assert_int_eq(tchi_dsample_backward(net, &rw, &rng, N, x, &t), TCH_OK);
  } else {
    ck_assert_int_eq(tchi_dsample_forward(net, &rw, &rng, N, v->expl, &t), TCH_OK);
  }
  double log_r[N], delta[N], delta_o[N], loss;
  for (int i = 0; i < N; i++) log_r[i] = 3.0 * (2 * tchi_rng_uniform(&rng) - 1) + t.log_pf[i] - t.log_pb[i];

  size_t np = net->n_params;
  double *P = malloc(np * sizeof *P);
  float *g1 = malloc(np * sizeof *g1);
  for (size_t i = 0; i < np; i++) P[i] = net->params[i];
  double loss_o = oracle_loss(net, P, net->log_z, &t, log_r, delta_o);

  /* loss and residuals, and the log P_F stored at sampling time */
  tchi_dnet_zero_grad(net);
  ck_assert_int_eq(tchi_dtb_loss(net, &t, log_r, NULL, NULL, 2, 1, delta, &loss), TCH_OK);
  ck_assert_msg(fabs(loss - loss_o) < 1e-5 * (1 + loss_o), "%s: loss %.10g vs oracle %.10g", v->name, loss, loss_o);
  for (int i = 0; i < N; i++) ck_assert(fabs(delta[i] - delta_o[i]) < 1e-5 * (1 + fabs(delta_o[i])));
  memcpy(g1, net->grads, np * sizeof *g1);
  double gz1 = net->log_z_grad;

  /* analytic gradients against central differences of the oracle */
  size_t idx[600];
  size_t k = pick_params(net, idx, 600);
  double G = 0, h = 1e-5;
  double *fd = malloc(k * sizeof *fd);
  for (size_t q = 0; q < k; q++) {
    double p0 = P[idx[q]];
    P[idx[q]] = p0 + h;
    double up = oracle_loss(net, P, net->log_z, &t, log_r, NULL);
    P[idx[q]] = p0 - h;
    double dn = oracle_loss(net, P, net->log_z, &t, log_r, NULL);
    P[idx[q]] = p0;
    fd[q] = (up - dn) / (2 * h);
    G = fmax(G, fabs(fd[q]));
  }
  ck_assert_msg(G > 1e-3, "%s: degenerate gradients", v->name);
  size_t nonzero = 0;
  for (size_t q = 0; q < k; q++) {
    double a = g1[idx[q]];
    nonzero += fabs(fd[q]) > 1e-6 * G;
    ck_assert_msg(fabs(a - fd[q]) <= 2e-4 * fabs(fd[q]) + 2e-5 * G,
                  "%s: param %zu analytic %.8g vs finite difference %.8g (scale %g)", v->name,
                  idx[q], a, fd[q], G);
  }
  ck_assert_msg(nonzero > k / 2, "%s: only %zu of %zu checked gradients are non-zero", v->name, nonzero, k);
  double up = oracle_loss(net, P, net->log_z + h, &t, log_r, NULL);
  double dn = oracle_loss(net, P, net->log_z - h, &t, log_r, NULL);
  ck_assert(fabs(gz1 - (up - dn) / (2 * h)) < 1e-6 * (1 + fabs(gz1)));

  /* every chunk size, and known log P_F sums, give the same gradient */
  const uint32_t chunks[4] = {1, 3, 5, 0};
  double gmax = 0;
  for (size_t i = 0; i < np; i++) gmax = fmax(gmax, fabs(g1[i]));
  for (int c = 0; c < 5; c++) {
    tchi_dnet_zero_grad(net);
    const double *known = c == 4 ? t.log_pf : NULL;
    double l2;
    ck_assert_int_eq(tchi_dtb_loss(net, &t, log_r, known, NULL, c == 4 ? 1 : chunks[c], 1, NULL, &l2), TCH_OK);
    ck_assert(fabs(l2 - loss) < 1e-5 * (1 + loss));
    for (size_t i = 0; i < np; i++)
      ck_assert_msg(fabs(net->grads[i] - g1[i]) <= 1e-5 * gmax, "%s: chunk case %d param %zu: %g vs %g",
                    v->name, c, i, net->grads[i], g1[i]);
    ck_assert(fabs(net->log_z_grad - gz1) < 1e-6 * (1 + fabs(gz1)));
  }
  free(fd);
  free(P);
  free(g1);
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}

START_TEST(tb_gradients_match_finite_differences)
{
  static const variant vs[] = {
    {"default", 2, 0, 0, 0, 0, 0, 0, 0.0},
    {"default explored", 3, 0, 0, 0, 0, 0, 0, 0.3},
    {"learned variance", 2, 0, 1, 0, 0, 0, 0, 0.0},
    {"backward trajectories", 2, 0, 1, 0, 0, 0, 1, 0.0},
    {"langevin", 2, 0, 0, 1, 0, 0, 0, 0.0},
    {"langevin per dim + clipping", 3, 0, 1, 1, 1, 1, 0, 0.0},
    {"pis", 2, 1, 0, 0, 0, 0, 0, 0.0},
    {"pis learned variance + langevin", 2, 1, 1, 1, 0, 0, 1, 0.0},
    {"pis langevin per dim + clipping", 3, 1, 1, 1, 1, 1, 0, 0.0},
  };
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) check_variant(&vs[i]);
}
END_TEST

/* Clipping must be active in the clipping variants, else the test proves nothing there. */
START_TEST(clipping_variants_clip)
{
  tchi_dnet_spec spec;
  small_spec(&spec, 3, 0);
  spec.learned_variance = spec.langevin = spec.langevin_per_dim = spec.clipping = 1;
  spec.gfn_clip = 0.45;
  spec.lgv_clip = 0.8;
  tchi_dnet *net = make_net(&spec, 21, 1);
  grad_ctx gc = {0, 0, 1};
  tchi_dreward rw = {grad_fn, &gc};
  tchi_rng rng;
  tchi_rng_seed(&rng, 99, 1);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  ck_assert_int_eq(tchi_dsample_forward(net, &rw, &rng, 6, 0.0, &t), TCH_OK);
  ck_assert_int_eq(gc.calls, (int)spec.T);
  /* NaN -> 0, +-Inf -> +-FLT_MAX, then clipped to +-lgv_clip; others clipped too */
  ck_assert(t.grad[0] == 0.0 && t.grad[3 * 5] == 0.8 && t.grad[6 * 5] == -0.8);
  size_t clipped = 0;
  for (size_t i = 0; i < 6 * 5 * 3; i++) clipped += fabs(t.grad[i]) == 0.8;
  ck_assert(clipped > 3);
  ck_assert_int_eq(tchi_dnet_reserve(net, 1, 6, 0), TCH_OK);
  double *x, *g;
  tchi_dnet_stage(net, &x, &g);
  for (size_t r = 0; r < 6; r++) {
    memcpy(x + r * 3, tchi_dtraj_state(&t, r, 2), 3 * sizeof(double));
    memcpy(g + r * 3, t.grad + (r * 5 + 2) * 3, 3 * sizeof(double));
  }
  const double *mean, *lv;
  tchi_dnet_forward(net, 2, 1, 6, 0, &mean, &lv);
  size_t clipped_mean = 0;
  for (size_t i = 0; i < 18; i++) clipped_mean += fabs(mean[i]) == 0.45;
  ck_assert(clipped_mean > 3);
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}
END_TEST

/* ---- determinism ------------------------------------------------------------------------------------ */
static void run_once(uint64_t seed, double *states, double *pf, float *grads, size_t *np)
{
  tchi_dnet_spec spec;
  small_spec(&spec, 2, 0);
  spec.hidden_dim = 32;
  spec.T = 8;
  tchi_dnet *net = make_net(&spec, seed, 1);
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, 7);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  ck_assert_int_eq(tchi_dsample_forward(net, NULL, &rng, 70, 0.1, &t), TCH_OK);
  memcpy(states, t.states, 70 * 9 * 2 * sizeof(double));
  memcpy(pf, t.log_pf, 70 * sizeof(double));
  double log_r[70];
  for (int i = 0; i < 70; i++) log_r[i] = -0.1 * i;
  tchi_dnet_zero_grad(net);
  ck_assert_int_eq(tchi_dtb_loss(net, &t, log_r, t.log_pf, NULL, 0, 1, NULL, NULL), TCH_OK);
  *np = net->n_params;
  memcpy(grads, net->grads, net->n_params * sizeof(float));
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}

START_TEST(same_seed_same_bits)
{
  static double s1[70 * 18], s2[70 * 18], p1[70], p2[70];
  static float g1[20000], g2[20000];
  size_t n1, n2;
  run_once(4, s1, p1, g1, &n1);
  run_once(4, s2, p2, g2, &n2);
  ck_assert(n1 == n2 && n1 <= 20000);
  ck_assert(memcmp(s1, s2, sizeof s1) == 0);
  ck_assert(memcmp(p1, p2, sizeof p1) == 0);
  ck_assert(memcmp(g1, g2, n1 * sizeof(float)) == 0);
  run_once(5, s2, p2, g2, &n2);
  ck_assert(memcmp(s1, s2, sizeof s1) != 0);
}
END_TEST

/* ---- layout, groups, serialisation --------------------------------------------------------------------- */
START_TEST(layout_and_param_groups)
{
  tchi_dnet_spec spec;
  small_spec(&spec, 3, 0);
  tchi_dnet *net = make_net(&spec, 1, 0);
  size_t h = 6, H = 16, S = 12, Te = 10, D = 3;
  size_t time = 2 * h * H + H + H * Te + Te, state = D * H + H + H * S + S;
  size_t joint = (S + Te) * H + H + H * H + H + H * 2 * D + 2 * D;
  ck_assert_uint_eq(net->n_params, time + state + joint);
  ck_assert_uint_eq(net->group_off[1], time);
  ck_assert_uint_eq(net->group_off[2], time + state);
  /* zero_init of the last joint layer, PyTorch bounds elsewhere */
  const tchi_dlinear *last = &net->joint.lin[2];
  for (size_t i = 0; i < H * 2 * D + 2 * D; i++) ck_assert(net->params[last->w + i] == 0.0f);
  for (size_t i = 0; i < 2 * h * H; i++) ck_assert(fabsf(net->params[i]) <= 1.0f / sqrtf(12.0f));
  tchi_param_group g[TCHI_DNET_MAX_GROUPS];
  size_t k = tchi_dnet_param_groups(net, 1e-3, 1e-1, 1e-7, g);
  ck_assert_uint_eq(k, 4);
  ck_assert(g[0].p == net->params && g[0].n == time && g[0].lr == 1e-3 && g[0].weight_decay == 1e-7);
  ck_assert(g[1].n == state && g[2].n == joint);
  ck_assert(g[3].pd == &net->log_z && g[3].gd == &net->log_z_grad && g[3].lr == 1e-1 && g[3].n == 1);
  tchi_dnet_free(net);

  spec.langevin = 1;
  spec.learn_log_z = 0;
  net = make_net(&spec, 1, 0);
  k = tchi_dnet_param_groups(net, 5e-3, 1e-1, 0, g);
  ck_assert_uint_eq(k, 4);
  ck_assert(g[3].p == net->params + net->group_off[3] && g[3].n == (S + Te) * H + H + H * H + H + H + 1);
  const tchi_dlinear *ll = &net->lgv.lin[2];
  for (size_t i = 0; i < H; i++) ck_assert(net->params[ll->w + i] == 0.0f);
  ck_assert(net->params[ll->b] == 0.01f);
  /* frozen log Z gets no gradient */
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  grad_ctx gc = {0, 0, 0};
  tchi_dreward rw = {grad_fn, &gc};
  ck_assert_int_eq(tchi_dsample_forward(net, &rw, &rng, 5, 0, &t), TCH_OK);
  double lr[5] = {1, 2, 3, 4, 5};
  tchi_dnet_zero_grad(net);
  ck_assert_int_eq(tchi_dtb_loss(net, &t, lr, NULL, NULL, 0, 1, NULL, NULL), TCH_OK);
  ck_assert(net->log_z_grad == 0.0);
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);

  spec.pis = 1;
  spec.s_emb_dim = spec.t_emb_dim = spec.hidden_dim;
  net = make_net(&spec, 1, 0);
  ck_assert_uint_eq(net->phase, 0);
  ck_assert(net->lgv_phase == net->group_off[3]);
  tchi_dnet_free(net);
}
END_TEST

static void write_net(const tchi_dnet *net, tchi_writer *w)
{
  tchi_writer_init(w);
  tchi_dnet_write(net, w);
  ck_assert_int_eq(w->status, TCH_OK);
}

static tch_status read_bytes(const unsigned char *buf, size_t len, tchi_dnet **out)
{
  tchi_reader r;
  memset(&r, 0, sizeof r);
  r.buf = tchi_malloc(len ? len : 1);
  memcpy(r.buf, buf, len);
  r.len = len;
  r.path = "memory";
  tch_status s = tchi_dnet_read(&r, out);
  if (s == TCH_OK) ck_assert_uint_eq(r.pos, len);
  tchi_reader_close(&r);
  return s;
}

START_TEST(serialisation_round_trip_and_rejects)
{
  tchi_dnet_spec spec;
  small_spec(&spec, 2, 1);
  spec.langevin = spec.learned_variance = spec.clipping = 1;
  spec.gfn_clip = 7.5;
  spec.t_scale = 0.8;
  tchi_dnet *net = make_net(&spec, 8, 1);
  tchi_writer w;
  write_net(net, &w);
  tchi_dnet *back = NULL;
  ck_assert_int_eq(read_bytes(w.buf, w.len, &back), TCH_OK);
  ck_assert_uint_eq(back->n_params, net->n_params);
  ck_assert(memcmp(back->params, net->params, net->n_params * sizeof(float)) == 0);
  ck_assert(back->log_z == net->log_z && back->spec.t_scale == 0.8 && back->spec.gfn_clip == 7.5);
  ck_assert(back->spec.pis && back->spec.langevin && back->spec.learned_variance && back->spec.clipping);
  ck_assert_str_eq(back->kernel, net->kernel);
  /* the copy samples exactly like the original */
  grad_ctx gc = {0, 0, 0};
  tchi_dreward rw = {grad_fn, &gc};
  tchi_dtraj a, b;
  tchi_dtraj_init(&a);
  tchi_dtraj_init(&b);
  tchi_rng r1, r2;
  tchi_rng_seed(&r1, 3, 3);
  tchi_rng_seed(&r2, 3, 3);
  ck_assert_int_eq(tchi_dsample_forward(net, &rw, &r1, 9, 0, &a), TCH_OK);
  ck_assert_int_eq(tchi_dsample_forward(back, &rw, &r2, 9, 0, &b), TCH_OK);
  ck_assert(memcmp(a.states, b.states, 9 * 6 * 2 * sizeof(double)) == 0);
  tchi_dtraj_destroy(&a);
  tchi_dtraj_destroy(&b);
  tchi_dnet_free(back);

  for (size_t cut = 0; cut < w.len; cut += (cut < 200 ? 1 : 97)) {
    back = (tchi_dnet *)1;
    ck_assert_int_eq(read_bytes(w.buf, cut, &back), TCH_E_IO);
    ck_assert_ptr_null(back);
  }
  unsigned char *bad = malloc(w.len);
  memcpy(bad, w.buf, w.len);
  bad[4] = 3;   /* format version (2 is current: the OU-DDS fields) */
  ck_assert_int_eq(read_bytes(bad, w.len, &back), TCH_E_VERSION);
  memcpy(bad, w.buf, w.len);
  bad[0] = 'X';   /* tag */
  ck_assert_int_eq(read_bytes(bad, w.len, &back), TCH_E_IO);
  memcpy(bad, w.buf, w.len);
  bad[8] = 0;     /* dim = 0 */
  ck_assert_int_eq(read_bytes(bad, w.len, &back), TCH_E_IO);
  memcpy(bad, w.buf, w.len);
  bad[8 + 4 * 6] = 5;   /* pis flag = 5 */
  ck_assert_int_eq(read_bytes(bad, w.len, &back), TCH_E_IO);
  memcpy(bad, w.buf, w.len);
  bad[8 + 4 * 2] = 17;  /* hidden_dim 16 -> 17 breaks PIS's equal widths */
  ck_assert_int_eq(read_bytes(bad, w.len, &back), TCH_E_IO);
  free(bad);
  tchi_writer_destroy(&w);

  /* clone */
  tchi_dnet *c = NULL;
  ck_assert_int_eq(tchi_dnet_clone(net, &c), TCH_OK);
  ck_assert(memcmp(c->params, net->params, net->n_params * sizeof(float)) == 0 && c->log_z == net->log_z);
  tchi_dnet_free(c);
  tchi_dnet_free(net);
}
END_TEST

/* ---- errors ----------------------------------------------------------------------------------------------- */
START_TEST(argument_callback_and_numeric_errors)
{
  tchi_dnet_spec spec;
  small_spec(&spec, 2, 0);
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  tchi_dnet *net = (tchi_dnet *)1;
  spec.dim = 0;
  ck_assert_int_eq(tchi_dnet_create(&spec, &rng, &net), TCH_E_ARG);
  ck_assert_ptr_null(net);
  small_spec(&spec, 2, 1);
  spec.s_emb_dim = 8;
  ck_assert_int_eq(tchi_dnet_create(&spec, &rng, &net), TCH_E_ARG);
  small_spec(&spec, 2, 0);
  spec.kernel = "no-such-kernel";
  ck_assert_int_eq(tchi_dnet_create(&spec, &rng, &net), TCH_E_ARG);
  small_spec(&spec, 2, 0);
  spec.t_scale = 0;
  ck_assert_int_eq(tchi_dnet_create(&spec, &rng, &net), TCH_E_ARG);

  small_spec(&spec, 2, 0);
  spec.langevin = 1;
  net = make_net(&spec, 2, 1);
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  ck_assert_int_eq(tchi_dsample_forward(net, NULL, &rng, 4, 0, &t), TCH_E_ARG);
  grad_ctx gc = {0, 42, 0};
  tchi_dreward rw = {grad_fn, &gc};
  ck_assert_int_eq(tchi_dsample_forward(net, &rw, &rng, 4, 0, &t), TCH_E_CALLBACK);
  ck_assert_int_eq(tch_last_callback_code(), 42);
  gc.fail_code = 0;
  ck_assert_int_eq(tchi_dsample_forward(net, &rw, &rng, 4, -1.0, &t), TCH_E_ARG);
  double x[8] = {0, 1, 2, NAN, 0, 0, 0, 0};
  ck_assert_int_eq(tchi_dsample_backward(net, &rw, &rng, 4, x, &t), TCH_E_ARG);
  ck_assert_int_eq(tchi_dsample_forward(net, &rw, &rng, 4, 0, &t), TCH_OK);
  /* a non-finite log-reward: TCH_E_NUMERIC and no gradient */
  double lr[4] = {0, -INFINITY, 1, 2}, loss = 1;
  tchi_dnet_zero_grad(net);
  ck_assert_int_eq(tchi_dtb_loss(net, &t, lr, NULL, NULL, 0, 1, NULL, &loss), TCH_E_NUMERIC);
  for (size_t i = 0; i < net->n_params; i++) ck_assert(net->grads[i] == 0.0f);
  ck_assert(net->log_z_grad == 0.0);
  /* a batch of another shape, or without gradients of log R, is refused */
  tchi_dtraj u;
  tchi_dtraj_init(&u);
  ck_assert_int_eq(tchi_dtraj_reserve(&u, 7, 2, 3, 1), TCH_OK);
  ck_assert_int_eq(tchi_dtb_loss(net, &u, lr, NULL, NULL, 0, 1, NULL, NULL), TCH_E_ARG);
  ck_assert_int_eq(tchi_dtraj_reserve(&u, 5, 2, 3, 1), TCH_OK);
  ck_assert_int_eq(tchi_dtb_loss(net, &u, lr, NULL, NULL, 0, 1, NULL, NULL), TCH_E_ARG);
  /* compaction keeps trajectories in order */
  uint8_t keep[4] = {0, 1, 0, 1};
  double s3 = tchi_dtraj_state(&t, 3, 4)[1], pf1 = t.log_pf[1];
  tchi_dtraj_compact(&t, keep);
  ck_assert(t.n == 2 && t.log_pf[0] == pf1 && tchi_dtraj_state(&t, 1, 4)[1] == s3);
  double lr2[2] = {0, 0};
  ck_assert_int_eq(tchi_dtb_loss(net, &t, lr2, NULL, NULL, 0, 1, NULL, NULL), TCH_OK);
  tchi_dtraj_destroy(&u);
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
}
END_TEST

static tch_status alloc_session(void)
{
  tchi_dnet_spec spec;
  small_spec(&spec, 2, 0);
  spec.langevin = 1;
  tchi_rng rng;
  tchi_rng_seed(&rng, 1, 1);
  tchi_dnet *net = NULL;
  tchi_dtraj t;
  tchi_dtraj_init(&t);
  grad_ctx gc = {0, 0, 0};
  tchi_dreward rw = {grad_fn, &gc};
  double lr[4] = {0, 1, 2, 3}, x[8] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8};
  tch_status s = tchi_dnet_create(&spec, &rng, &net);
  if (s == TCH_OK) s = tchi_dsample_forward(net, &rw, &rng, 4, 0.1, &t);
  if (s == TCH_OK) s = tchi_dtb_loss(net, &t, lr, NULL, NULL, 2, 1, NULL, NULL);
  if (s == TCH_OK) s = tchi_dsample_backward(net, &rw, &rng, 4, x, &t);
  tchi_writer w;
  tchi_writer_init(&w);
  if (s == TCH_OK) {
    tchi_dnet_write(net, &w);
    s = w.status;
  }
  tchi_dnet *back = NULL;
  if (s == TCH_OK) {
    tchi_reader r;
    memset(&r, 0, sizeof r);
    r.buf = w.buf;
    r.len = w.len;
    r.path = "memory";
    s = tchi_dnet_read(&r, &back);
  }
  tchi_dnet *c = NULL;
  if (s == TCH_OK) s = tchi_dnet_clone(net, &c);
  tchi_dnet_free(c);
  tchi_dnet_free(back);
  tchi_writer_destroy(&w);
  tchi_dtraj_destroy(&t);
  tchi_dnet_free(net);
  return s;
}

START_TEST(allocation_failures_are_clean)
{
  tchi_alloc_fail_at(0);
  ck_assert_int_eq(alloc_session(), TCH_OK);
  uint64_t n = tchi_alloc_count();
  ck_assert_uint_ge(n, 10);
  for (uint64_t k = 1; k <= n + 1; k++) {
    tchi_alloc_fail_at(k);
    tch_status s = alloc_session();
    ck_assert_msg(k <= n ? s == TCH_E_NOMEM : s == TCH_OK, "fail at %llu -> %d",
                  (unsigned long long)k, (int)s);
  }
  tchi_alloc_fail_at(0);
}
END_TEST

int main(void)
{
  Suite *s = suite_create("diffusion");
  TCase *tc = tcase_create("diffusion");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, gelu_matches_erf);
  tcase_add_test(tc, forward_kernel_matches_normal_density);
  tcase_add_test(tc, bridge_values);
  tcase_add_test(tc, backward_sampling_has_bridge_marginals);
  tcase_add_test(tc, zero_init_sampler_is_brownian_motion);
  tcase_add_test(tc, tb_gradients_match_finite_differences);
  tcase_add_test(tc, clipping_variants_clip);
  tcase_add_test(tc, same_seed_same_bits);
  tcase_add_test(tc, layout_and_param_groups);
  tcase_add_test(tc, serialisation_round_trip_and_rejects);
  tcase_add_test(tc, argument_callback_and_numeric_errors);
  tcase_add_test(tc, allocation_failures_are_clean);
  suite_add_tcase(s, tc);
  int rc = tch_run_suite(s);
  tchi_gemm_finalize_blis();
  return rc;
}
