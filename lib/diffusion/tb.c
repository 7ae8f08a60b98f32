/* Trajectory balance for diffusion samplers (gflownet_losses.py fwd_tb / bwd_tb) with the
 * gradient computed block by block.
 *
 * The states of a batch do not depend on the parameters (sampling uses detached means and
 * variances), so d loss / d theta = sum_i c_i sum_steps d log P_F,i,step / d theta with
 * c_i = w_i r_i / n. The residuals r_i need every step's log P_F first; then each block of
 * time steps is evaluated once more with its activations kept and immediately
 * differentiated, so memory holds one block, never a whole trajectory. */
#include <math.h>
#include <string.h>
#include "diffusion/diffusion.h"

tch_status tchi_dtb_loss(tchi_dnet *net, const tchi_dtraj *t, const double *log_r,
                         const double *log_pf_known, const double *weight, uint32_t chunk,
                         int grad, double *delta, double *loss)
{
  if (loss) *loss = 0.0;
  tch_status s = tchi_dtraj_check(net, t, "dtb_loss");
  if (s != TCH_OK) return s;
  size_t n = t->n;
  if (n == 0) return TCH_OK;
  if (!log_r) return tchi_fail(TCH_E_ARG, "dtb_loss: NULL log-rewards");
  uint32_t k = tchi_dchunk(net, n, chunk);
  double *coef = tchi_dnet_scratch(net, n);
  if (!coef) return TCH_E_NOMEM;
  const double *pf = log_pf_known;
  if (!pf) {
    if ((s = tchi_dnet_log_pf(net, t, k, coef)) != TCH_OK) return s;
    pf = coef;
  }
  /* residuals; coef may alias pf (element i is read before it is written) */
  double sum = 0.0, log_z = net->log_z;
  for (size_t i = 0; i < n; i++) {
    double r = pf[i] + log_z - t->log_pb[i] - log_r[i];
    double w = weight ? weight[i] : 1.0;
    if (!isfinite(r) || !isfinite(w))
      return tchi_fail(TCH_E_NUMERIC, "dtb_loss: trajectory %zu has a non-finite residual "
                       "(log P_F %g, log P_B %g, log R %g, weight %g)", i, pf[i], t->log_pb[i],
                       log_r[i], w);
    sum += w * r * r;
    if (delta) delta[i] = -r;
    coef[i] = w * r / (double)n;
  }
  double mean_loss = 0.5 * sum / (double)n;
  if (!isfinite(mean_loss)) return tchi_fail(TCH_E_NUMERIC, "dtb_loss: the loss overflows");
  if (loss) *loss = mean_loss;
  if (!grad) return TCH_OK;

  if ((s = tchi_dnet_reserve(net, k, n, 1)) != TCH_OK) return s;
  if (net->spec.learn_log_z) {
    double gz = 0.0;
    for (size_t i = 0; i < n; i++) gz += coef[i];
    net->log_z_grad += gz;
  }
  return tchi_dnet_log_pf_backward(net, t, k, coef, 1);
}

tch_status tchi_dnet_log_pf_backward(tchi_dnet *net, const tchi_dtraj *t, uint32_t block,
                                     const double *coef, uint32_t n_coef)
{
  const uint32_t T = net->spec.T, D = net->spec.dim, L = T / n_coef;
  const size_t n = t->n;
  double *d_mean, *d_logvar;
  tchi_dnet_grad_in(net, &d_mean, &d_logvar);
  for (uint32_t i0 = 0; i0 < T; i0 += block) {
    uint32_t kk = TCHI_MIN(block, T - i0);
    size_t rows = (size_t)kk * n;
    tchi_dtraj_stage(net, t, i0, kk);
    const double *mean, *logvar;
    tchi_dnet_forward(net, i0, kk, n, 1, &mean, &logvar);
    memset(d_mean, 0, rows * D * sizeof(double));
    memset(d_logvar, 0, rows * D * sizeof(double));
    for (uint32_t j = 0; j < kk; j++) {
      /* the step's kernel: Brownian (tchi_dkernel_*) or OU-DDS (ou.c) */
      const uint32_t step = i0 + j, c = step / L;
      tchi_dstep st;
      tchi_dstep_at(&net->spec, step, &st);
      for (size_t r = 0; r < n; r++) {
        size_t row = (size_t)j * n + r;
        tchi_dstep_log_pf_grad(&st, D, tchi_dtraj_state(t, r, step),
                               tchi_dtraj_state(t, r, step + 1), mean + row * D,
                               logvar + row * D, coef[r * n_coef + c], d_mean + row * D,
                               d_logvar + row * D);
      }
    }
    tch_status s = tchi_dnet_backward(net);
    if (s != TCH_OK) return s;
  }
  return TCH_OK;
}
