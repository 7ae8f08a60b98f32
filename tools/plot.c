/* `teacher train --plot`: a PNG of a diffusion sampler's samples over its target's log
 * density, for energy envs of dimension >= 2 (public API only). The picture shows two
 * coordinates (i, j); when the target has more than two dimensions the background is the
 * slice of the log density through 0 in the other coordinates, as the reference's
 * viz_many_well draws it (for targets that factorise over those coordinates, such as
 * ManyWell, that slice is the marginal up to a constant). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "png.h"

/* Exact target samples used to choose the default plot range. */
#define RANGE_SAMPLES 10000u
/* The range covers these quantiles of each coordinate, widened by PAD of its width on
 * each side: quantiles rather than min/max so that a heavy tail (the funnel) does not
 * shrink the picture to a dot. */
#define RANGE_QUANTILE 0.005
#define RANGE_PAD 0.15

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* [lo, hi] of coordinate k of n points (row stride dim) as above; 0 if it has no finite
 * spread (then the caller falls back to another source). */
static int axis_range(const double *pts, size_t n, uint32_t dim, uint32_t k, double *lo,
                      double *hi)
{
  double *v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return 0;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (isfinite(pts[i * dim + k])) v[m++] = pts[i * dim + k];
  int ok = 0;
  if (m >= 2) {
    qsort(v, m, sizeof *v, cmp_double);
    size_t a = (size_t)(RANGE_QUANTILE * (double)(m - 1));
    double q0 = v[a], q1 = v[m - 1 - a];
    if (q1 > q0) {
      double pad = RANGE_PAD * (q1 - q0);
      *lo = q0 - pad;
      *hi = q1 + pad;
      ok = 1;
    }
  }
  free(v);
  return ok;
}

/* Log density over the grid of pixel centres, one row per library call (bounded memory
 * for high-dimensional targets). A row whose call fails (a NaN, an error of the host's
 * callback) is retried point by point; points that still fail are NaN (drawn grey). */
static int density_grid(tch_env *env, uint32_t dim, const tcli_plot_opts *o, double *grid,
                        char *err, size_t err_len)
{
  const int w = o->size, h = o->size;
  double *x = calloc((size_t)w * dim, sizeof *x);
  if (!x) {
    snprintf(err, err_len, "out of memory for the plot's density grid");
    return -1;
  }
  for (int row = 0; row < h; row++) {
    for (int col = 0; col < w; col++) {
      double px, py;
      tcli_png_grid_point(w, h, o->x_min, o->x_max, o->y_min, o->y_max, row, col, &px, &py);
      x[(size_t)col * dim + o->dim_x] = px;
      x[(size_t)col * dim + o->dim_y] = py;
    }
    double *out = grid + (size_t)row * w;
    if (tch_env_log_density(env, (size_t)w, x, out, NULL) != TCH_OK)
      for (int col = 0; col < w; col++)
        if (tch_env_log_density(env, 1, x + (size_t)col * dim, out + col, NULL) != TCH_OK)
          out[col] = NAN;
  }
  free(x);
  return 0;
}

int tcli_plot_diffusion(tch_trainer *t, const tcli_plot_opts *o, char *note, size_t note_len,
                        char *err, size_t err_len)
{
  tch_env *env = NULL;
  uint32_t dim = 0;
  if (tch_trainer_get_env(t, &env) != TCH_OK || tch_env_energy_dim(env, &dim) != TCH_OK) {
    snprintf(err, err_len, "--plot needs a diffusion trainer (an energy env)");
    return -1;
  }
  if (o->dim_x >= dim || o->dim_y >= dim || o->dim_x == o->dim_y) {
    snprintf(err, err_len, "--plot-dims %u,%u: not two different coordinates of the %u-D target",
             o->dim_x, o->dim_y, dim);
    return -1;
  }
  int rc = -1;
  size_t n = o->n_samples;
  double *samples = malloc((n ? n : 1) * dim * sizeof *samples);
  double *xy = malloc((n ? n : 1) * 2 * sizeof *xy);
  double *grid = malloc((size_t)o->size * o->size * sizeof *grid);
  double *ref = NULL;
  if (!samples || !xy || !grid) {
    snprintf(err, err_len, "out of memory for %zu plot samples", n);
    goto out;
  }
  tch_status s;
  if (n && (s = tch_trainer_sample_continuous(t, o->seed, n, samples, NULL)) != TCH_OK) {
    snprintf(err, err_len, "cannot sample the Student for the plot: %s", tch_last_error());
    goto out;
  }
  for (size_t i = 0; i < n; i++) {
    xy[2 * i] = samples[i * dim + o->dim_x];
    xy[2 * i + 1] = samples[i * dim + o->dim_y];
  }

  /* The range: given, else from exact target samples, else from the Student's. */
  tcli_plot_opts g = *o;
  const char *range_from = "--plot-range";
  if (!o->have_range) {
    int ok = 0;
    ref = malloc((size_t)RANGE_SAMPLES * dim * sizeof *ref);
    if (ref && tch_env_sample_target(env, 0, RANGE_SAMPLES, ref) == TCH_OK) {
      ok = axis_range(ref, RANGE_SAMPLES, dim, o->dim_x, &g.x_min, &g.x_max) &&
           axis_range(ref, RANGE_SAMPLES, dim, o->dim_y, &g.y_min, &g.y_max);
      range_from = "exact target samples";
    }
    if (!ok) {
      ok = axis_range(samples, n, dim, o->dim_x, &g.x_min, &g.x_max) &&
           axis_range(samples, n, dim, o->dim_y, &g.y_min, &g.y_max);
      range_from = "the Student's samples";
    }
    if (!ok) {
      snprintf(err, err_len, "cannot choose a plot range (the target has no exact sampler and "
               "the samples do not spread); give --plot-range");
      goto out;
    }
  }
  if (density_grid(env, dim, &g, grid, err, err_len)) goto out;
  if (tcli_png_plot_density(o->path, g.size, g.size, grid, g.x_min, g.x_max, g.y_min, g.y_max, n,
                            xy, err, err_len))
    goto out;
  snprintf(note, note_len, "%zu Student samples of coordinates (x%u, x%u) over [%.4g, %.4g] x "
           "[%.4g, %.4g] (range from %s)%s", n, o->dim_x, o->dim_y, g.x_min, g.x_max, g.y_min,
           g.y_max, range_from,
           dim > 2 ? "; background: the log density with the other coordinates at 0" : "");
  rc = 0;
out:
  free(samples);
  free(xy);
  free(grid);
  free(ref);
  return rc;
}
