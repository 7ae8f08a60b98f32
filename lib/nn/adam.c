/* torch.optim.Adam (L2 weight decay, no amsgrad) and torch clip_grad_norm_. */
#include <math.h>
#include <string.h>
#include "nn/nn.h"

void tchi_adam_destroy(tchi_adam *a)
{
  if (!a) return;
  for (size_t i = 0; i < TCHI_ADAM_MAX_GROUPS; i++) {
    tchi_free(a->m[i]);
    tchi_free(a->v[i]);
  }
  memset(a, 0, sizeof *a);
}

tch_status tchi_adam_init(tchi_adam *a, size_t n_groups, const tchi_param_group *groups)
{
  if (!a) return tchi_fail(TCH_E_ARG, "adam_init: NULL optimiser");
  memset(a, 0, sizeof *a);
  if (n_groups < 1 || n_groups > TCHI_ADAM_MAX_GROUPS)
    return tchi_fail(TCH_E_ARG, "adam_init: n_groups must be in [1, %d], got %zu",
                     TCHI_ADAM_MAX_GROUPS, n_groups);
  if (!groups) return tchi_fail(TCH_E_ARG, "adam_init: NULL groups");
  for (size_t i = 0; i < n_groups; i++) {
    const tchi_param_group *gr = &groups[i];
    int is_f = gr->p != NULL || gr->g != NULL, is_d = gr->pd != NULL || gr->gd != NULL;
    if (gr->n > 0 && (is_f == is_d || (is_f && (!gr->p || !gr->g)) || (is_d && (!gr->pd || !gr->gd))))
      return tchi_fail(TCH_E_ARG, "adam_init: group %zu needs either float p/g or double pd/gd", i);
    if (!(gr->lr >= 0.0) || !isfinite(gr->lr))
      return tchi_fail(TCH_E_ARG, "adam_init: group %zu has invalid lr %g", i, gr->lr);
    if (!(gr->weight_decay >= 0.0) || !isfinite(gr->weight_decay))
      return tchi_fail(TCH_E_ARG, "adam_init: group %zu has invalid weight_decay %g", i,
                       gr->weight_decay);
  }
  for (size_t i = 0; i < n_groups; i++) {
    tch_status s = tchi_alloc_array(&a->m[i], groups[i].n, sizeof(double), 1, "adam moments");
    if (s == TCH_OK) s = tchi_alloc_array(&a->v[i], groups[i].n, sizeof(double), 1, "adam moments");
    if (s != TCH_OK) {
      tchi_adam_destroy(a);
      return s;
    }
    a->grp[i] = groups[i];
  }
  a->n_groups = n_groups;
  a->beta1 = 0.9;
  a->beta2 = 0.999;
  a->eps = 1e-8;
  a->t = 0;
  return TCH_OK;
}

/* One group of float parameters: branch-free and alias-free so the compiler vectorises it
 * (this loop touches every parameter every step). */
static void adam_float(float *restrict p, float *restrict g_in, double *restrict m,
                       double *restrict v, size_t n, double b1, double b2, double step,
                       double bc2_sqrt, double eps, double wd)
{
  const double inv_bc2 = 1.0 / bc2_sqrt;
  for (size_t j = 0; j < n; j++) {
    double pj = (double)p[j];
    double g = (double)g_in[j] + wd * pj;
    double mj = b1 * m[j] + (1.0 - b1) * g;
    double vj = b2 * v[j] + (1.0 - b2) * g * g;
    m[j] = mj;
    v[j] = vj;
    p[j] = (float)(pj - step * mj / (sqrt(vj) * inv_bc2 + eps));
  }
}

void tchi_adam_step(tchi_adam *a)
{
  if (!a || a->n_groups == 0) return;
  a->t++;
  const double b1 = a->beta1, b2 = a->beta2, eps = a->eps;
  const double bc1 = 1.0 - pow(b1, (double)a->t);
  const double bc2_sqrt = sqrt(1.0 - pow(b2, (double)a->t));
  for (size_t i = 0; i < a->n_groups; i++) {
    const tchi_param_group *gr = &a->grp[i];
    double *m = a->m[i], *v = a->v[i];
    const double step = gr->lr / bc1, wd = gr->weight_decay;
    if (gr->p) {
      adam_float(gr->p, gr->g, m, v, gr->n, b1, b2, step, bc2_sqrt, eps, wd);
      continue;
    }
    for (size_t j = 0; j < gr->n; j++) {
      double p = gr->pd[j];
      double g = gr->gd[j] + wd * p;
      m[j] = b1 * m[j] + (1.0 - b1) * g;
      v[j] = b2 * v[j] + (1.0 - b2) * g * g;
      gr->pd[j] = p - step * m[j] / (sqrt(v[j]) / bc2_sqrt + eps);
    }
  }
}

double tchi_grad_norm(const tchi_param_group *groups, size_t n_groups)
{
  double s = 0.0;
  if (!groups) return 0.0;
  for (size_t i = 0; i < n_groups; i++) {
    const tchi_param_group *gr = &groups[i];
    if (gr->g) {
      /* four partial sums: a fixed order (deterministic) that pipelines */
      double s4[4] = {0.0, 0.0, 0.0, 0.0};
      size_t j = 0;
      for (; j + 4 <= gr->n; j += 4)
        for (int k = 0; k < 4; k++) s4[k] += (double)gr->g[j + k] * gr->g[j + k];
      for (; j < gr->n; j++) s4[0] += (double)gr->g[j] * gr->g[j];
      s += (s4[0] + s4[1]) + (s4[2] + s4[3]);
    }
    else if (gr->gd)
      for (size_t j = 0; j < gr->n; j++) s += gr->gd[j] * gr->gd[j];
  }
  return sqrt(s);
}

double tchi_clip_grad_norm(tchi_param_group *groups, size_t n_groups, double max_norm)
{
  double norm = tchi_grad_norm(groups, n_groups);
  if (!(max_norm > 0.0) || !groups) return norm;
  /* torch: grads *= clamp(max_norm / (norm + 1e-6), max = 1) */
  double coef = max_norm / (norm + 1e-6);
  if (!(coef < 1.0)) return norm;   /* also leaves grads alone when the norm is NaN */
  for (size_t i = 0; i < n_groups; i++) {
    tchi_param_group *gr = &groups[i];
    if (gr->g)
      for (size_t j = 0; j < gr->n; j++) gr->g[j] = (float)(gr->g[j] * coef);
    else if (gr->gd)
      for (size_t j = 0; j < gr->n; j++) gr->gd[j] *= coef;
  }
  return norm;
}
