/* Evaluation metrics of the diffusion samplers (spec §3.9): log Z estimators and bounds from
 * trajectory log-weights, and the sample-quality distances of the reference's
 * compute_distribution_distances (exact W1/W2, linear/polynomial/RBF MMD, mean and median
 * distances). Everything is in double precision, so values can differ from the reference's
 * float32 torch results at the 1e-6 relative level. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "dmetrics.h"

/* ---- log-weight summaries -------------------------------------------------------------- */

/* Largest entry; NaN if any entry is NaN. n >= 1. */
static double max_or_nan(size_t n, const double *a)
{
  double m = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    if (isnan(a[i])) return NAN;
    if (a[i] > m) m = a[i];
  }
  return m;
}

double tchi_logsumexp(size_t n, const double *a)
{
  if (n == 0) return NAN;   /* the metrics report an empty sample as NaN */
  return tchi_log_sum_exp(n, a);
}

double tchi_logmeanexp(size_t n, const double *a)
{
  if (n == 0) return NAN;
  return tchi_logsumexp(n, a) - log((double)n);
}

double tchi_is_log_z(size_t n, const double *log_w) { return tchi_logmeanexp(n, log_w); }

static double mean_of(size_t n, const double *a)
{
  if (n == 0) return NAN;
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += a[i];
  return s / (double)n;
}

double tchi_elbo(size_t n, const double *log_w) { return mean_of(n, log_w); }

double tchi_eubo(size_t n, const double *gt_log_w) { return mean_of(n, gt_log_w); }

void tchi_ess(size_t n, const double *log_w, double *ess, double *fraction)
{
  double e = NAN;
  if (n > 0) {
    double m = max_or_nan(n, log_w);
    if (isnan(m)) {
      e = NAN;
    } else if (m == -INFINITY) {
      e = 0.0;
    } else if (m == INFINITY) {
      size_t k = 0;
      for (size_t i = 0; i < n; i++) k += log_w[i] == INFINITY;
      e = (double)k;
    } else {
      /* Shifting by the maximum leaves the ratio unchanged and keeps every term <= 1. */
      double s1 = 0.0, s2 = 0.0;
      for (size_t i = 0; i < n; i++) {
        double w = exp(log_w[i] - m);
        s1 += w;
        s2 += w * w;
      }
      e = s1 * s1 / s2;
    }
  }
  *ess = e;
  *fraction = n > 0 ? e / (double)n : NAN;
}

double tchi_mean_log_likelihood(size_t n_points, size_t k, const double *log_w)
{
  if (n_points == 0 || k == 0) return NAN;
  double s = 0.0;
  for (size_t i = 0; i < n_points; i++) s += tchi_logmeanexp(k, log_w + i * k);
  return s / (double)n_points;
}

/* ---- exact assignment (Jonker–Volgenant) ------------------------------------------------
 * Rows are X's points, columns Y's. The costs are never stored: a 2000 x 2000 problem needs
 * O(n d) memory instead of a 32 MB matrix. The solver keeps column prices v and the
 * invariant that every assigned row holds a column of minimal reduced cost c(i, j) − v_j;
 * with that, the shortest augmenting path phase is Dijkstra on non-negative reduced costs,
 * and the final prices certify optimality.
 *
 * Columns are addressed by *position*. The augmenting phase keeps its column list
 * (scanned | at the current minimum | the rest) physically in that order, moving a column's
 * point, price, distance, predecessor and owner when it changes group, so that its hot loop
 * reads contiguous memory instead of going through an index list. */

enum lap_kind { LAP_MATRIX, LAP_SQEUCLID, LAP_EUCLID };

#define LAP_NONE SIZE_MAX
/* Inputs are bounded so that costs and price differences stay far from overflow. */
#define LAP_MAX_ABS 1e150

typedef struct lap {
  enum lap_kind kind;
  size_t n, d;
  const double *cost;   /* LAP_MATRIX: n x n, by original column */
  const double *x;      /* rows' points, n x d */
  double *py;           /* columns' points by position, n x d (not for LAP_MATRIX) */
  size_t *orig;         /* original column at each position */
  double *v;            /* price by position */
  double *dist;         /* shortest-path distance by position */
  size_t *pred;         /* predecessor row by position */
  size_t *colsol;       /* owner row by position, LAP_NONE if free */
  size_t *rowsol;       /* position held by each row, LAP_NONE if free */
  size_t *freerows;     /* rows without a column */
  size_t *matches;      /* columns each row won in the column reduction */
  double *tmp;          /* one row or column of (reduced) costs */
} lap;

static inline double lap_cost(const lap *L, size_t i, size_t k)
{
  if (L->kind == LAP_MATRIX) return L->cost[i * L->n + L->orig[k]];
  const double *a = L->x + i * L->d, *b = L->py + k * L->d;
  double s;
  if (L->d == 2) {
    double t0 = a[0] - b[0], t1 = a[1] - b[1];
    s = t0 * t0 + t1 * t1;
  } else {
    s = 0.0;
    for (size_t t = 0; t < L->d; t++) {
      double u = a[t] - b[t];
      s += u * u;
    }
  }
  return L->kind == LAP_SQEUCLID ? s : sqrt(s);
}

/* out[k] = c(i, k) − v_k − h (the reduced cost shifted by h) for positions k in [from, n).
 * Branch-free loops per kind so that the compiler vectorises them; the callers then make
 * their data-dependent decisions in a second, cheap pass. */
static void lap_row_reduced(const lap *L, size_t i, size_t from, double h, double *out)
{
  const size_t n = L->n;
  const double *v = L->v;
  if (L->kind == LAP_MATRIX) {
    const double *c = L->cost + i * n;
    for (size_t k = from; k < n; k++) out[k] = c[L->orig[k]] - v[k] - h;
  } else if (L->d == 2) {
    const double a0 = L->x[2 * i], a1 = L->x[2 * i + 1], *b = L->py;
    if (L->kind == LAP_SQEUCLID)
      for (size_t k = from; k < n; k++) {
        double t0 = a0 - b[2 * k], t1 = a1 - b[2 * k + 1];
        out[k] = (t0 * t0 + t1 * t1) - v[k] - h;
      }
    else
      for (size_t k = from; k < n; k++) {
        double t0 = a0 - b[2 * k], t1 = a1 - b[2 * k + 1];
        out[k] = sqrt(t0 * t0 + t1 * t1) - v[k] - h;
      }
  } else {
    for (size_t k = from; k < n; k++) out[k] = lap_cost(L, i, k) - v[k] - h;
  }
}

/* out[i] = c(i, k) for every row i. */
static void lap_col_costs(const lap *L, size_t k, double *out)
{
  const size_t n = L->n;
  if (L->kind != LAP_MATRIX && L->d == 2) {
    const double b0 = L->py[2 * k], b1 = L->py[2 * k + 1], *a = L->x;
    if (L->kind == LAP_SQEUCLID)
      for (size_t i = 0; i < n; i++) {
        double t0 = a[2 * i] - b0, t1 = a[2 * i + 1] - b1;
        out[i] = t0 * t0 + t1 * t1;
      }
    else
      for (size_t i = 0; i < n; i++) {
        double t0 = a[2 * i] - b0, t1 = a[2 * i + 1] - b1;
        out[i] = sqrt(t0 * t0 + t1 * t1);
      }
  } else {
    for (size_t i = 0; i < n; i++) out[i] = lap_cost(L, i, k);
  }
}

/* Exchanges the columns at positions a and b with everything attached to them. */
static void lap_swap(lap *L, size_t a, size_t b)
{
  if (a == b) return;
#define LAP_SWAP(T, arr) do { T t_ = (arr)[a]; (arr)[a] = (arr)[b]; (arr)[b] = t_; } while (0)
  LAP_SWAP(size_t, L->orig);
  LAP_SWAP(double, L->v);
  LAP_SWAP(double, L->dist);
  LAP_SWAP(size_t, L->pred);
  LAP_SWAP(size_t, L->colsol);
#undef LAP_SWAP
  if (L->py)
    for (size_t t = 0; t < L->d; t++) {
      double u = L->py[a * L->d + t];
      L->py[a * L->d + t] = L->py[b * L->d + t];
      L->py[b * L->d + t] = u;
    }
  if (L->colsol[a] != LAP_NONE) L->rowsol[L->colsol[a]] = a;
  if (L->colsol[b] != LAP_NONE) L->rowsol[L->colsol[b]] = b;
}

/* Column reduction and reduction transfer: v_j = min_i c(i, j); each column goes to its
 * cheapest row if that row is still unassigned. Rows that got exactly one column then lower
 * that column's price by their second-best reduced cost. Returns the number of free rows. */
static size_t lap_init(lap *L)
{
  const size_t n = L->n;
  double *c = L->tmp;
  for (size_t j = n; j-- > 0;) {
    lap_col_costs(L, j, c);
    double mn = c[0];
    size_t imin = 0;
    for (size_t i = 1; i < n; i++)
      if (c[i] < mn) { mn = c[i]; imin = i; }
    L->v[j] = mn;
    if (++L->matches[imin] == 1) {
      L->rowsol[imin] = j;
      L->colsol[j] = imin;
    } else {
      L->colsol[j] = LAP_NONE;
    }
  }
  size_t nfree = 0;
  for (size_t i = 0; i < n; i++) {
    if (L->matches[i] == 0) {
      L->freerows[nfree++] = i;
    } else if (L->matches[i] == 1) {
      size_t j1 = L->rowsol[i];
      lap_row_reduced(L, i, 0, 0.0, c);
      double mn = INFINITY;
      for (size_t j = 0; j < n; j++)
        if (j != j1 && c[j] < mn) mn = c[j];
      L->v[j1] -= mn;
    }
  }
  return nfree;
}

/* Augmenting row reduction, two passes: a free row takes its cheapest column, lowering that
 * column's price to its second-best reduced cost, and evicts the column's owner, which is
 * processed next. With floating-point costs the decreases can be tiny and a pass can run
 * for very long (it does on clustered 2-D sets), so each pass is capped at 4n + 64 steps;
 * the rows left over go to the augmenting-path phase, which is exact on its own. */
static size_t lap_arr(lap *L, size_t nfree)
{
  const size_t n = L->n;
  size_t *freerows = L->freerows, *colsol = L->colsol;
  double *v = L->v;
  for (int pass = 0; pass < 2; pass++) {
    size_t k = 0, prev = nfree, steps = 0;
    const size_t step_cap = 4 * n + 64;
    nfree = 0;
    while (k < prev) {
      if (++steps > step_cap) {
        /* nfree <= k always holds, so this copy never overwrites unread entries. */
        memmove(freerows + nfree, freerows + k, (prev - k) * sizeof *freerows);
        nfree += prev - k;
        break;
      }
      size_t i = freerows[k++];
      lap_row_reduced(L, i, 0, 0.0, L->tmp);
      double umin = L->tmp[0], usub = INFINITY;
      size_t j1 = 0, j2 = LAP_NONE;
      for (size_t j = 1; j < n; j++) {
        double h = L->tmp[j];
        if (h < usub) {
          if (h >= umin) {
            usub = h;
            j2 = j;
          } else {
            usub = umin;
            umin = h;
            j2 = j1;
            j1 = j;
          }
        }
      }
      size_t i0 = colsol[j1];
      if (umin < usub) {
        v[j1] -= usub - umin;
      } else if (i0 != LAP_NONE) {
        /* A tie: take the second-best column instead, which may be free. */
        j1 = j2;
        i0 = colsol[j2];
      }
      L->rowsol[i] = j1;
      colsol[j1] = i;
      if (i0 != LAP_NONE) {
        if (umin < usub) freerows[--k] = i0;   /* processed next, as in the original */
        else freerows[nfree++] = i0;
      }
    }
  }
  return nfree;
}

/* Shortest augmenting path from free row `fr` (Dijkstra on reduced costs, stopping at the
 * first free column), then price update of the scanned columns and augmentation. */
static tch_status lap_augment(lap *L, size_t fr)
{
  const size_t n = L->n;
  double *v = L->v, *dist = L->dist;
  size_t *colsol = L->colsol, *pred = L->pred;
  lap_row_reduced(L, fr, 0, 0.0, dist);
  for (size_t k = 0; k < n; k++) pred[k] = fr;
  /* Positions [0, low): scanned; [low, up): at the current minimum, to scan; [up, n): rest. */
  size_t low = 0, up = 0, last = 0, endofpath = LAP_NONE;
  double mn = 0.0;
  while (endofpath == LAP_NONE) {
    if (up == low) {
      if (low >= n) return tchi_fail(TCH_E_INTERNAL, "assignment: no free column reachable");
      last = low;
      mn = dist[up++];
      for (size_t k = up; k < n; k++) {
        double h = dist[k];
        if (h <= mn) {
          if (h < mn) { up = low; mn = h; }
          lap_swap(L, k, up++);
        }
      }
      for (size_t k = low; k < up; k++)
        if (colsol[k] == LAP_NONE) { endofpath = k; break; }
      if (endofpath != LAP_NONE) break;
    }
    size_t k1 = low++, i = colsol[k1];
    double h = lap_cost(L, i, k1) - v[k1] - mn, *red = L->tmp;
    lap_row_reduced(L, i, up, h, red);
    for (size_t k = up; k < n; k++) {
      /* Columns swapped into [up, k) by this loop were already visited: red[k] stays
       * valid for the column now at k. */
      double v2 = red[k];
      if (v2 < dist[k]) {
        pred[k] = i;
        dist[k] = v2;
        if (v2 == mn) {
          if (colsol[k] == LAP_NONE) { endofpath = k; break; }
          lap_swap(L, k, up++);
        }
      }
    }
  }
  for (size_t k = 0; k < last; k++) v[k] += dist[k] - mn;
  size_t i;
  do {
    i = pred[endofpath];
    colsol[endofpath] = i;
    size_t k1 = endofpath;
    endofpath = L->rowsol[i];
    L->rowsol[i] = k1;
  } while (i != fr);
  return TCH_OK;
}

static void lap_free(lap *L)
{
  tchi_free(L->py); tchi_free(L->orig); tchi_free(L->v); tchi_free(L->dist);
  tchi_free(L->pred); tchi_free(L->colsol); tchi_free(L->rowsol);
  tchi_free(L->freerows); tchi_free(L->matches); tchi_free(L->tmp);
}

/* Solves L (kind, n, d, cost or x set; y: the columns' points) into row_to_col / col_price
 * by original column (both optional) and *total. */
static tch_status lap_solve(lap *L, const double *y, size_t *row_to_col, double *col_price,
                            double *total)
{
  const size_t n = L->n;
  tch_status s;
  if ((L->kind != LAP_MATRIX &&
       (s = tchi_alloc_array(&L->py, n * L->d, sizeof(double), 0, "assignment points"))) ||
      (s = tchi_alloc_array(&L->orig, n, sizeof(size_t), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->v, n, sizeof(double), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->dist, n, sizeof(double), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->pred, n, sizeof(size_t), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->colsol, n, sizeof(size_t), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->rowsol, n, sizeof(size_t), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->freerows, n, sizeof(size_t), 0, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->matches, n, sizeof(size_t), 1, "assignment workspace")) ||
      (s = tchi_alloc_array(&L->tmp, n, sizeof(double), 0, "assignment workspace"))) {
    lap_free(L);
    return s;
  }
  if (L->py) memcpy(L->py, y, n * L->d * sizeof(double));
  for (size_t k = 0; k < n; k++) {
    L->orig[k] = k;
    L->rowsol[k] = LAP_NONE;
  }
  if (n == 1) {
    L->rowsol[0] = 0;
    L->colsol[0] = 0;
    L->v[0] = lap_cost(L, 0, 0);
  } else {
    size_t nfree = lap_init(L);
    if (nfree > 0) nfree = lap_arr(L, nfree);
    for (size_t f = 0; f < nfree && s == TCH_OK; f++) s = lap_augment(L, L->freerows[f]);
  }
  if (s == TCH_OK) {
    double t = 0.0;
    for (size_t i = 0; i < n; i++) {
      t += lap_cost(L, i, L->rowsol[i]);
      if (row_to_col) row_to_col[i] = L->orig[L->rowsol[i]];
    }
    if (col_price)
      for (size_t k = 0; k < n; k++) col_price[L->orig[k]] = L->v[k];
    *total = t;
  }
  lap_free(L);
  return s;
}

static tch_status check_bounded(size_t count, const double *a, const char *what)
{
  for (size_t i = 0; i < count; i++)
    if (!isfinite(a[i]) || fabs(a[i]) > LAP_MAX_ABS)
      return tchi_fail(TCH_E_NUMERIC, "%s: entry %zu is %g (finite, |v| <= 1e150 required)",
                       what, i, a[i]);
  return TCH_OK;
}

tch_status tchi_assignment_euclid(size_t n, size_t d, const double *x, const double *y, int power,
                                  double *mean_cost, size_t *row_to_col, double *col_price)
{
  if (n == 0 || d == 0 || !x || !y || !mean_cost || (power != 1 && power != 2))
    return tchi_fail(TCH_E_ARG, "assignment: need n, d >= 1, points and power 1 or 2");
  int of = 0;
  size_t nd = tchi_mul_size(n, d, &of);
  if (of) return tchi_fail(TCH_E_ARG, "assignment: n x d overflows");
  tch_status s;
  if ((s = check_bounded(nd, x, "assignment: model samples")) ||
      (s = check_bounded(nd, y, "assignment: ground-truth samples")))
    return s;
  lap L = {.kind = power == 2 ? LAP_SQEUCLID : LAP_EUCLID, .n = n, .d = d, .x = x};
  double total = NAN;
  if ((s = lap_solve(&L, y, row_to_col, col_price, &total))) return s;
  *mean_cost = total / (double)n;
  return TCH_OK;
}

tch_status tchi_assignment_matrix(size_t n, const double *cost, double *total_cost,
                                  size_t *row_to_col, double *col_price)
{
  if (n == 0 || !cost || !total_cost)
    return tchi_fail(TCH_E_ARG, "assignment: need n >= 1 and a cost matrix");
  int of = 0;
  size_t nn = tchi_mul_size(n, n, &of);
  if (of) return tchi_fail(TCH_E_ARG, "assignment: n x n overflows");
  tch_status s = check_bounded(nn, cost, "assignment: cost matrix");
  if (s) return s;
  lap L = {.kind = LAP_MATRIX, .n = n, .d = 1, .cost = cost};
  return lap_solve(&L, NULL, row_to_col, col_price, total_cost);
}

tch_status tchi_wasserstein(size_t n, size_t m, size_t d, const double *x, const double *y,
                            int power, double *out)
{
  if (n != m)
    return tchi_fail(TCH_E_ARG, "Wasserstein distance: %zu model vs %zu ground-truth samples "
                                "(only equal sizes are supported)", n, m);
  double c = NAN;
  tch_status s = tchi_assignment_euclid(n, d, x, y, power, &c, NULL, NULL);
  if (s) return s;
  *out = power == 2 ? sqrt(c) : c;
  return TCH_OK;
}

/* ---- MMDs ---------------------------------------------------------------------------------- */

static inline double dot(size_t d, const double *a, const double *b)
{
  double s = 0.0;
  for (size_t k = 0; k < d; k++) s += a[k] * b[k];
  return s;
}

static inline double sqdist(size_t d, const double *a, const double *b)
{
  double s = 0.0;
  for (size_t k = 0; k < d; k++) {
    double t = a[k] - b[k];
    s += t * t;
  }
  return s;
}

double tchi_linear_mmd(size_t n, size_t d, const double *x, const double *y)
{
  if (n < 2) return NAN;
  double s = 0.0;
  for (size_t i = 0; i + 1 < n; i++) {
    const double *a0 = x + i * d, *b0 = y + i * d, *a1 = a0 + d, *b1 = b0 + d;
    double t = 0.0;
    for (size_t k = 0; k < d; k++) t += (a0[k] - b0[k]) * (a1[k] - b1[k]);
    s += t;
  }
  return s / (double)(n - 1);
}

double tchi_poly_mmd(size_t n, size_t d, const double *x, const double *y, int degree,
                     double alpha, double c)
{
  if (n < 2) return NAN;
  double kxx = 0.0, kyy = 0.0, kxy = 0.0, kyx = 0.0;
  for (size_t i = 0; i + 1 < n; i++) {
    const double *x0 = x + i * d, *y0 = y + i * d, *x1 = x0 + d, *y1 = y0 + d;
    kxx += pow(alpha * dot(d, x0, x1) + c, degree);
    kyy += pow(alpha * dot(d, y0, y1) + c, degree);
    kxy += pow(alpha * dot(d, x0, y1) + c, degree);
    kyx += pow(alpha * dot(d, y0, x1) + c, degree);
  }
  double m = (double)(n - 1);
  return kxx / m + kyy / m - kxy / m - kyx / m;
}

const double TCHI_RBF_SIGMAS[TCHI_RBF_N_SIGMAS] = {0.01, 0.1, 1.0, 10.0, 100.0};

/* Σ_s exp(−γ_s r²). Beyond −745 exp underflows to 0 anyway; skipping it saves time for the
 * narrow bandwidths, where almost every pair is that far apart. */
static inline double rbf_sum(double r2, size_t ns, const double *gamma)
{
  double k = 0.0;
  for (size_t s = 0; s < ns; s++) {
    double e = gamma[s] * r2;
    if (e < 746.0) k += exp(-e);
  }
  return k;
}

double tchi_rbf_mmd(size_t n, size_t d, const double *x, const double *y, size_t n_sigmas,
                    const double *sigmas)
{
  if (n == 0 || n_sigmas == 0 || n_sigmas > 64) return NAN;
  double gamma[64];
  for (size_t s = 0; s < n_sigmas; s++) gamma[s] = 1.0 / (2.0 * sigmas[s] * sigmas[s]);
  /* K_XX and K_YY are symmetric with diagonal Σ_s exp(0) = n_sigmas. */
  double sxx = 0.0, syy = 0.0, sxy = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double *xi = x + i * d, *yi = y + i * d;
    double rxx = 0.0, ryy = 0.0, rxy = 0.0;
    for (size_t j = i + 1; j < n; j++) {
      rxx += rbf_sum(sqdist(d, xi, x + j * d), n_sigmas, gamma);
      ryy += rbf_sum(sqdist(d, yi, y + j * d), n_sigmas, gamma);
    }
    for (size_t j = 0; j < n; j++) rxy += rbf_sum(sqdist(d, xi, y + j * d), n_sigmas, gamma);
    sxx += rxx;
    syy += ryy;
    sxy += rxy;
  }
  double diag = (double)n * (double)n_sigmas, nn = (double)n * (double)n;
  return (2.0 * sxx + diag) / nn + (2.0 * syy + diag) / nn - 2.0 * sxy / nn;
}

/* ---- mean and median distances -------------------------------------------------------- */

void tchi_vec_distances(size_t d, const double *a, const double *b, double *mse, double *l2,
                        double *l1)
{
  double s2 = 0.0, s1 = 0.0;
  for (size_t k = 0; k < d; k++) {
    double t = a[k] - b[k];
    s2 += t * t;
    s1 += fabs(t);
  }
  *mse = s2 / (double)d;
  *l2 = sqrt(*mse);
  *l1 = s1 / (double)d;
}

void tchi_coord_mean(size_t n, size_t d, const double *x, double *out)
{
  for (size_t k = 0; k < d; k++) out[k] = 0.0;
  for (size_t i = 0; i < n; i++)
    for (size_t k = 0; k < d; k++) out[k] += x[i * d + k];
  for (size_t k = 0; k < d; k++) out[k] /= (double)n;
}

/* k-th smallest of a[0, n) (Hoare selection, median-of-three pivot); reorders a. */
static double select_kth(double *a, size_t n, size_t k)
{
  size_t lo = 0, hi = n - 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    /* Order a[lo] <= a[mid] <= a[hi]; a[mid] is the pivot. */
    if (a[mid] < a[lo]) { double t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
    if (a[hi] < a[lo]) { double t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
    if (a[hi] < a[mid]) { double t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
    double pivot = a[mid];
    size_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (pivot < a[j]) j--;
      if (i <= j) {
        double t = a[i]; a[i] = a[j]; a[j] = t;
        i++;
        if (j == 0) break;
        j--;
      }
    }
    /* Now a[lo..j] <= pivot <= a[i..hi], and j < i. */
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return a[k];
  }
  return a[k];
}

void tchi_coord_median(size_t n, size_t d, const double *x, double *work, double *out)
{
  for (size_t k = 0; k < d; k++) {
    if (n == 0) {
      out[k] = NAN;
      continue;
    }
    for (size_t i = 0; i < n; i++) work[i] = x[i * d + k];
    out[k] = select_kth(work, n, (n - 1) / 2);
  }
}

/* ---- everything at once ------------------------------------------------------------------ */

tch_status tchi_dist_metrics_compute(size_t n, size_t m, size_t d, const double *x,
                                     const double *y, tchi_dist_metrics *out)
{
  if (n == 0 || d == 0 || !x || !y || !out)
    return tchi_fail(TCH_E_ARG, "distribution distances: need n, d >= 1 and both sample sets");
  if (n != m)
    return tchi_fail(TCH_E_ARG, "distribution distances: %zu model vs %zu ground-truth samples "
                                "(only equal sizes are supported)", n, m);
  int of = 0;
  size_t nd = tchi_mul_size(n, d, &of);
  if (of) return tchi_fail(TCH_E_ARG, "distribution distances: n x d overflows");
  tch_status s;
  if ((s = check_bounded(nd, x, "distribution distances: model samples")) ||
      (s = check_bounded(nd, y, "distribution distances: ground-truth samples")))
    return s;
  double *work = NULL;
  if ((s = tchi_alloc_array(&work, n + 4 * d, sizeof(double), 0, "distance workspace")))
    return s;
  tchi_dist_metrics r;
  if ((s = tchi_wasserstein(n, n, d, x, y, 1, &r.w1)) ||
      (s = tchi_wasserstein(n, n, d, x, y, 2, &r.w2))) {
    tchi_free(work);
    return s;
  }
  r.linear_mmd = tchi_linear_mmd(n, d, x, y);
  r.poly_mmd = tchi_poly_mmd(n, d, x, y, 2, 1.0, 2.0);
  r.rbf_mmd = tchi_rbf_mmd(n, d, x, y, TCHI_RBF_N_SIGMAS, TCHI_RBF_SIGMAS);
  double *ca = work + n, *cb = ca + d, *ma = cb + d, *mb = ma + d;
  tchi_coord_mean(n, d, x, ca);
  tchi_coord_mean(n, d, y, cb);
  tchi_vec_distances(d, ca, cb, &r.mean_mse, &r.mean_l2, &r.mean_l1);
  tchi_coord_median(n, d, x, work, ma);
  tchi_coord_median(n, d, y, work, mb);
  tchi_vec_distances(d, ma, mb, &r.median_mse, &r.median_l2, &r.median_l1);
  tchi_free(work);
  *out = r;
  return TCH_OK;
}
