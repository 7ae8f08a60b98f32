/* The Teacher-Student training loop.
 *
 * Each step takes a batch from the source the mixer names (Student, Teacher or buffer
 * replay, optionally refined by local search), takes one Student step on it, derives the
 * Teacher's rewards from the Student's pre-update residuals, takes one Teacher step on the
 * same batch, and stores sampled objects in the replay buffer (grid/trainer.py). With
 * train.schedule discovery the steps follow discovery/gflownet/trainers.py instead: rounds of
 * an online step and an offline step replaying first-time objects PRT-style, with the
 * reference's clamps, and the discovery metrics (modes, top-k, evaluation bounds).
 *
 * A step either completes or leaves the trainer exactly as before it (weights, optimiser
 * moments, buffer, counters, visit statistics): everything that can fail runs before the
 * first mutation. Random numbers come from streams keyed by (seed, purpose, step), so no
 * generator state needs saving and a resumed run is bit-identical. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "trainer.h"
#include "buffers/buffer.h"
#include "config/config.h"
#include "envs/builtin/seqpa.h"
#include "io/io.h"

/* ---- exact-target visit statistics --------------------------------------------------- */
static void visits_destroy(tchi_visits *v)
{
  tchi_free(v->ring);
  tchi_free(v->counts);
  tchi_free(v->seen_mode);
  memset(v, 0, sizeof *v);
}

static tch_status visits_init(tchi_visits *v, const tch_env *e, size_t window)
{
  memset(v, 0, sizeof *v);
  if (!e->exact) {
    /* A SeqPA task without exact target (sehstr): flags over its own mode list only. */
    const tchi_seqpa_task *task = tchi_seqpa_task_of(e);
    if (task && task->n_modes > 0)
      return tchi_alloc_array(&v->seen_mode, task->n_modes, 1, 1, "mode flags");
    return TCH_OK;
  }
  v->window = window;
  tch_status s;
  if ((s = tchi_alloc_array(&v->ring, window ? window : 1, sizeof(int64_t), 0, "visit ring")) ||
      (s = tchi_alloc_array(&v->counts, e->exact->n, sizeof(uint32_t), 1, "visit counts")) ||
      (s = tchi_alloc_array(&v->seen_mode, e->exact->n, 1, 1, "mode flags")))
    visits_destroy(v);
  return s;
}

/* Looks up every terminal state first (the only part that can fail), then records. */
static tch_status visits_lookup(const tch_env *e, size_t n, const int32_t *x, int64_t *idx)
{
  for (size_t i = 0; i < n; i++) {
    idx[i] = e->exact->index_of(e, x + i * e->d.state_dim);
    if (idx[i] < 0)
      return tchi_fail(TCH_E_CALLBACK, "sampled terminal state %zu is not in the env's "
                       "enumerated terminal set", i);
  }
  return TCH_OK;
}

static void visits_record(tchi_visits *v, const tch_env *e, size_t n, const int64_t *idx)
{
  for (size_t i = 0; i < n; i++) {
    int64_t k = idx[i];
    if (v->window) {
      if (v->count == v->window) v->counts[v->ring[v->head]]--;
      else v->count++;
      v->ring[v->head] = k;
      v->counts[k]++;
      v->head = (v->head + 1) % v->window;
    }
    if (e->exact->is_mode[k] && !v->seen_mode[k]) {
      v->seen_mode[k] = 1;
      v->modes_found++;
    }
    v->total++;
  }
}

/* Without exact target: modes of the task's list among n sampled terminal states. */
static void visits_record_modes(tchi_visits *v, const tch_env *e, size_t n, const int32_t *x)
{
  if (!v->seen_mode) return;
  for (size_t i = 0; i < n; i++) {
    int64_t id = tchi_seqpa_mode_id(e, x + i * e->d.state_dim);
    if (id >= 0 && !v->seen_mode[id]) {
      v->seen_mode[id] = 1;
      v->modes_found++;
    }
  }
  v->total += n;
}

/* Size of the mode list the visits track: the exact target's, a SeqPA task's, or 0. */
static size_t visits_mode_total(const tchi_visits *v, const tch_env *e)
{
  if (e->exact) return e->exact->n_modes;
  const tchi_seqpa_task *task = tchi_seqpa_task_of(e);
  return v->seen_mode && task ? task->n_modes : 0;
}

void tchi_visits_rebuild_counts(tchi_visits *v, const tch_env *e)
{
  memset(v->counts, 0, e->exact->n * sizeof(uint32_t));
  for (size_t i = 0; i < v->count; i++) v->counts[v->ring[i]]++;
}

static double visits_l1(const tchi_visits *v, const tch_env *e)
{
  if (!e->exact || v->count == 0) return NAN;
  double sum = 0.0, inv = 1.0 / (double)v->count;
  for (size_t k = 0; k < e->exact->n; k++) sum += fabs(v->counts[k] * inv - e->exact->p[k]);
  return sum / (double)e->exact->n;
}

/* ---- discovery: the set of sampled objects, its FIFOs and the top-k ---------------------- */
#define DISC_NIL UINT32_MAX
/* trainers.py: no offline batch until the buffer holds 10 objects. */
#define DISC_MIN_BUFFER 10

static void disc_destroy(tchi_disc *d)
{
  if (!d) return;
  tchi_free(d->key); tchi_free(d->log_r); tchi_free(d->real); tchi_free(d->adv);
  tchi_free(d->in_l); tchi_free(d->table); tchi_free(d->rfifo); tchi_free(d->lfifo);
  tchi_free(d->heap); tchi_free(d->vals); tchi_free(d->hi_ids); tchi_free(d->lo_ids);
  tchi_free(d->pick); tchi_free(d->xs); tchi_free(d->bkeys); tchi_free(d->y);
  tchi_free(d->adv_b); tchi_free(d->tdelta);
  tchi_free(d->div_states); tchi_free(d->lev);
  tchi_free(d);
}

static size_t disc_hash(uint64_t k, size_t mask)
{
  /* splitmix64's finaliser: base-A indices are dense, the table needs them spread */
  k ^= k >> 30; k *= 0xbf58476d1ce4e5b9ull;
  k ^= k >> 27; k *= 0x94d049bb133111ebull;
  k ^= k >> 31;
  return (size_t)k & mask;
}

static uint32_t disc_find(const tchi_disc *d, uint64_t key)
{
  if (!d->table) return DISC_NIL;
  for (size_t h = disc_hash(key, d->table_mask);; h = (h + 1) & d->table_mask) {
    uint32_t id = d->table[h];
    if (id == DISC_NIL || d->key[id] == key) return id;
  }
}

/* Room for n entries (seen-set arrays, and a table at most half full); all-or-nothing. */
static tch_status disc_reserve(tchi_disc *d, size_t n)
{
  if (n >= DISC_NIL) return tchi_fail(TCH_E_NOMEM, "more than 2^32 - 1 distinct objects");
  if (n > d->cap_seen) {
    size_t cap = d->cap_seen ? d->cap_seen : 1024;
    while (cap < n) cap *= 2;
    if (cap >= DISC_NIL) cap = DISC_NIL - 1;
    uint64_t *key = NULL;
    double *lr = NULL, *real = NULL, *adv = NULL;
    uint8_t *in_l = NULL;
    tch_status s;
    if ((s = tchi_alloc_array(&key, cap, sizeof *key, 0, "seen objects")) ||
        (s = tchi_alloc_array(&lr, cap, sizeof *lr, 0, "seen objects")) ||
        (s = tchi_alloc_array(&real, cap, sizeof *real, 0, "seen objects")) ||
        (s = tchi_alloc_array(&adv, cap, sizeof *adv, 0, "seen objects")) ||
        (s = tchi_alloc_array(&in_l, cap, 1, 1, "seen objects"))) {
      tchi_free(key); tchi_free(lr); tchi_free(real); tchi_free(adv); tchi_free(in_l);
      return s;
    }
    const size_t m = d->n_seen;
    if (m) {
      memcpy(key, d->key, m * sizeof *key);
      memcpy(lr, d->log_r, m * sizeof *lr);
      memcpy(real, d->real, m * sizeof *real);
      memcpy(adv, d->adv, m * sizeof *adv);
      memcpy(in_l, d->in_l, m);
    }
    tchi_free(d->key); tchi_free(d->log_r); tchi_free(d->real); tchi_free(d->adv);
    tchi_free(d->in_l);
    d->key = key; d->log_r = lr; d->real = real; d->adv = adv; d->in_l = in_l;
    d->cap_seen = cap;
  }
  size_t slots = d->table ? d->table_mask + 1 : 0;
  if (2 * n > slots) {
    size_t want = slots ? slots : 2048;
    while (want < 2 * n) want *= 2;
    uint32_t *table;
    tch_status s = tchi_alloc_array(&table, want, sizeof *table, 0, "seen-object table");
    if (s) return s;
    for (size_t i = 0; i < want; i++) table[i] = DISC_NIL;
    for (uint32_t id = 0; id < d->n_seen; id++) {
      size_t h = disc_hash(d->key[id], want - 1);
      while (table[h] != DISC_NIL) h = (h + 1) & (want - 1);
      table[h] = id;
    }
    tchi_free(d->table);
    d->table = table;
    d->table_mask = want - 1;
  }
  return TCH_OK;
}

/* FIFO of entry ids (capacity fifo_cap): appends id; returns the evicted oldest or NIL. */
static uint32_t fifo_push(uint32_t *ring, size_t cap, size_t *head, size_t *n, uint32_t id)
{
  if (*n < cap) {
    ring[(*head + (*n)++) % cap] = id;
    return DISC_NIL;
  }
  uint32_t old = ring[*head];
  ring[*head] = id;
  *head = (*head + 1) % cap;
  return old;
}

/* Top-k min-heap order: smaller raw reward first, and among equal rewards the later-seen
 * entry first, so that ties keep the earlier object (the stable sort of monitor.py). */
static int heap_less(const tchi_disc *d, uint32_t a, uint32_t b)
{
  return d->real[a] < d->real[b] || (d->real[a] == d->real[b] && a > b);
}

static void heap_sift_down(tchi_disc *d, size_t i)
{
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < d->heap_n && heap_less(d, d->heap[l], d->heap[m])) m = l;
    if (r < d->heap_n && heap_less(d, d->heap[r], d->heap[m])) m = r;
    if (m == i) return;
    uint32_t tmp = d->heap[i]; d->heap[i] = d->heap[m]; d->heap[m] = tmp;
    i = m;
  }
}

static void topk_offer(tchi_disc *d, uint32_t id)
{
  if (isnan(d->real[id])) return;
  if (d->heap_n < d->top_k) {
    size_t i = d->heap_n++;
    d->heap[i] = id;
    while (i > 0 && heap_less(d, d->heap[i], d->heap[(i - 1) / 2])) {
      uint32_t tmp = d->heap[i]; d->heap[i] = d->heap[(i - 1) / 2]; d->heap[(i - 1) / 2] = tmp;
      i = (i - 1) / 2;
    }
  } else if (d->real[id] > d->real[d->heap[0]]) {
    d->heap[0] = id;
    heap_sift_down(d, 0);
  }
}

/* A new object (the caller made room): the seen set, the first-time FIFO, the top-k. */
static uint32_t disc_insert(tchi_disc *d, uint64_t key, double log_r, double real)
{
  uint32_t id = (uint32_t)d->n_seen++;
  d->key[id] = key;
  d->log_r[id] = log_r;
  d->real[id] = real;
  d->adv[id] = NAN;
  d->in_l[id] = 0;
  size_t h = disc_hash(key, d->table_mask);
  while (d->table[h] != DISC_NIL) h = (h + 1) & d->table_mask;
  d->table[h] = id;
  if (d->fifo_cap) fifo_push(d->rfifo, d->fifo_cap, &d->r_head, &d->r_n, id);
  topk_offer(d, id);
  return id;
}

/* PER: allXtoL[x] = adv; a key already in the adv FIFO keeps its place (OrderedDict). */
static void disc_set_adv(tchi_disc *d, uint32_t id, double adv)
{
  d->adv[id] = adv;
  if (d->in_l[id]) return;
  uint32_t old = fifo_push(d->lfifo, d->fifo_cap, &d->l_head, &d->l_n, id);
  if (old != DISC_NIL) d->in_l[old] = 0;
  d->in_l[id] = 1;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* np.percentile(v, 100 q) with linear interpolation (numpy's _lerp) of n >= 1 values,
 * sorted in place. */
double tchi_percentile_linear(double *v, size_t n, double q)
{
  qsort(v, n, sizeof *v, cmp_double);
  double idx = q * (double)(n - 1), fl = floor(idx), t = idx - fl;
  size_t lo = (size_t)fl;
  if (lo + 1 >= n) return v[n - 1];
  double a = v[lo], b = v[lo + 1], diff = b - a;
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

/* Levenshtein distance of two strings of n symbols; row: 2 (n + 1) scratch. */
size_t tchi_levenshtein(const int32_t *a, const int32_t *b, size_t n, size_t *row)
{
  size_t *prev = row, *cur = row + n + 1;
  for (size_t j = 0; j <= n; j++) prev[j] = j;
  for (size_t i = 1; i <= n; i++) {
    cur[0] = i;
    for (size_t j = 1; j <= n; j++) {
      size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);
      if (prev[j] + 1 < best) best = prev[j] + 1;
      if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
      cur[j] = best;
    }
    size_t *tmp = prev; prev = cur; cur = tmp;
  }
  return prev[n];
}

/* Terminal state of a key: a SeqPA string, or the exact target's state. */
static void disc_state_of(const tch_trainer *t, uint64_t key, int32_t *out)
{
  const tchi_seqpa_task *task = t->disc->task;
  if (task) tchi_seqpa_from_index(key, task->len, task->n_chars, out);
  else memcpy(out, t->env->exact->states + key * t->env->d.state_dim,
              t->env->d.state_dim * sizeof(int32_t));
}

/* Mean raw reward of the top-k objects (NaN before the first). */
static double disc_topk_reward(const tchi_disc *d)
{
  if (!d->heap_n) return NAN;
  double sum = 0.0;
  for (size_t i = 0; i < d->heap_n; i++) sum += d->real[d->heap[i]];
  return sum / (double)d->heap_n;
}

/* Mean pairwise Levenshtein distance of the top-k strings: the clean mean over pairs
 * (monitor.py divides the sum by n(n-1), half of it). SeqPA only; NaN below two. Writes the
 * trainer's scratch only. */
static double disc_topk_diversity(const tch_trainer *t)
{
  const tchi_disc *d = t->disc;
  if (!d->task || d->heap_n < 2) return NAN;
  const size_t L = d->task->len, n = d->heap_n;
  for (size_t i = 0; i < n; i++) disc_state_of(t, d->key[d->heap[i]], d->div_states + i * L);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      sum += (double)tchi_levenshtein(d->div_states + i * L, d->div_states + j * L, L, d->lev);
  return sum / ((double)n * (double)(n - 1) / 2.0);
}

/* Raw rewards of n terminal states with keys: SeqPA max(y, y_min) from the task's score
 * (the reference's real_reward), else R from the exact target. */
static tch_status disc_real_rewards(tch_trainer *t, size_t n, const int32_t *x, const uint64_t *keys,
                                    double *out)
{
  const tchi_seqpa_task *task = t->disc->task;
  if (!task) {
    for (size_t i = 0; i < n; i++) out[i] = exp(t->env->exact->log_r[keys[i]]);
    return TCH_OK;
  }
  tch_status s = tchi_seqpa_scores(t->env, n, x, out);
  if (s) return s;
  for (size_t i = 0; i < n; i++)
    if (out[i] < task->reward.y_min) out[i] = task->reward.y_min;
  return TCH_OK;
}

/* ---- construction ----------------------------------------------------------------------- */
static void learner_destroy(tchi_learner *l)
{
  tchi_free(l->clamp_d);
  tchi_free(l->clamp_w);
  tchi_adam_destroy(&l->opt);
  tchi_eval_destroy(&l->ev);
  tchi_policy_release(l->policy);
  memset(l, 0, sizeof *l);
}

/* Policy from spec, Adam with the network and log Z as two parameter groups. */
static tch_status learner_init(tchi_learner *l, const tchi_policy_spec *spec, uint64_t seed,
                               uint64_t init_stream, double lr, double lr_logz, double wd,
                               double clip)
{
  memset(l, 0, sizeof *l);
  tchi_eval_init(&l->ev);
  l->grad_clip = clip;
  l->n_clip_groups = 2;
  l->last_loss = l->last_grad_norm = NAN;
  l->logz_min = -INFINITY;
  tch_status s = tchi_policy_new(spec, seed, init_stream, &l->policy);
  if (s) return s;
  tchi_param_group groups[2] = {
    { .p = l->policy->mlp.params, .g = l->policy->mlp.grads, .n = l->policy->mlp.n_params,
      .lr = lr, .weight_decay = wd },
    { .pd = &l->policy->log_z, .gd = &l->policy->log_z_grad, .n = 1, .lr = lr_logz },
  };
  return tchi_adam_init(&l->opt, 2, groups);
}

void tchi_trainer_release(tch_trainer *t)
{
  if (!t || !tchi_ref_dec(&t->ref)) return;
  if (t->kind == TCHI_TRAINER_DIFFUSION) {
    tchi_dtrainer_destroy(t);
    tch_buffer_free(t->buffer);
    tch_config_free(t->cfg);
    tch_env_free(t->env);
    tchi_free(t);
    return;
  }
  learner_destroy(&t->student);
  learner_destroy(&t->teacher);
  if (t->gafn) tchi_rnd_destroy(&t->rnd);
  tch_buffer_free(t->buffer);
  tchi_mixer_release(t->mixer);
  tchi_ls_ws_destroy(&t->ls_ws);
  tchi_traj_destroy(&t->traj);
  tchi_free(t->delta); tchi_free(t->dres); tchi_free(t->rt); tchi_free(t->t_log_r);
  tchi_free(t->prio); tchi_free(t->terminals); tchi_free(t->visit_idx);
  tchi_free(t->tr_rec); tchi_free(t->tr_log_r); tchi_free(t->tr_prio); tchi_free(t->tr_d);
  tchi_free(t->tr_tlog);
  disc_destroy(t->disc);
  visits_destroy(&t->visits);
  tch_config_free(t->cfg);
  tch_env_free(t->env);
  tchi_free(t);
}

static tch_priority priority_of(const char *name)
{
  if (!strcmp(name, "reward")) return TCH_PRIORITY_REWARD;
  if (!strcmp(name, "loss")) return TCH_PRIORITY_LOSS;
  if (!strcmp(name, "teacher_reward")) return TCH_PRIORITY_TEACHER_REWARD;
  return TCH_PRIORITY_NONE;
}

/* ---- defaults that differ between the domains -------------------------------------------- */
typedef struct domain_default {
  const char *key;
  int is_int;
  double grid, energy;     /* energy < 0: computed below */
  double discovery;        /* train.schedule discovery (discrete envs); < 0: computed below */
} domain_default;

static const domain_default domain_defaults[] = {
  /* grid/trainer.py, diffusion/train.py, discovery settings.yaml num_samples_per_*_batch */
  { "train.batch_size", 1, 16, 500, 32 },
  { "train.eval_samples", 1, 100000, 2000, 2048 }, /* L1 window; eval_step; eval_num_samples */
  { "student.weight_decay", 0, 0.0, 1e-7, 0.0 },   /* diffusion --weight_decay */
  { "student.grad_clip", 0, 1.0, 0.0, 10.0 },      /* the diffusion Student is not clipped */
  { "teacher.lr", 0, 1e-3, -1.0, -1.0 },           /* diffusion and discovery: 5 x lr_policy */
  { "teacher.grad_clip", 0, 1.0, 0.1, 10.0 },      /* diffusion: on param_groups[0] */
  { "student.loss_clamp", 0, 0.0, 0.0, 5000.0 },   /* basegfn.py: clamp(losses, max=5000) */
  { "teacher.loss_clamp", 0, 0.0, 0.0, 5000.0 },   /* teacher.py: the same */
};

static int discovery_schedule(const tch_config *c)
{
  return strcmp(tchi_cfg_string(c, "train.schedule"), "discovery") == 0;
}

tch_status tchi_trainer_resolve_defaults(const tch_env *env, tch_config *c)
{
  const int energy = env->kind == TCHI_ENV_ENERGY;
  const int discovery = !energy && discovery_schedule(c);
  for (size_t i = 0; i < sizeof domain_defaults / sizeof domain_defaults[0]; i++) {
    const domain_default *d = &domain_defaults[i];
    double v = tchi_cfg_double(c, d->key);
    if (v != -1.0) {
      if (d->is_int && v == 0.0 && strcmp(d->key, "train.batch_size") == 0)
        return tchi_fail(TCH_E_CONFIG, "key 'train.batch_size': 0 is invalid (>= 1, or -1 for "
                         "the env's default)");
      if (v < 0.0)
        return tchi_fail(TCH_E_CONFIG, "key '%s': %g is invalid (>= 0, or -1 for the env's "
                         "default)", d->key, v);
      continue;
    }
    double r = energy ? d->energy : discovery ? d->discovery : d->grid;
    if (r < 0.0) r = 5.0 * tchi_cfg_double(c, "student.lr");
    tch_status s = d->is_int ? tch_config_set_int(c, d->key, (int64_t)r)
                             : tch_config_set_double(c, d->key, r);
    if (s) return s;
  }
  return TCH_OK;
}

/* Clamps of a learner: log Z floor, TB loss clamp (with its scratch); discovery clips the
 * network only (basegfn.py clips policy_fwd's parameters, not log Z). */
static tch_status learner_limits(tchi_learner *l, size_t batch, double logz_min, double loss_clamp,
                                 int discovery)
{
  l->logz_min = logz_min;
  l->loss_clamp = loss_clamp;
  if (discovery) l->n_clip_groups = 1;
  if (loss_clamp <= 0) return TCH_OK;
  tch_status s;
  if ((s = tchi_alloc_array(&l->clamp_d, batch, sizeof(double), 0, "loss clamp")) ||
      (s = tchi_alloc_array(&l->clamp_w, batch, sizeof(double), 0, "loss clamp")))
    return s;
  return TCH_OK;
}

/* trainers.py learn_default: the Teacher samples at rounds r mod 3 = 2, the Student at the
 * others; with a buffer every round ends with an offline (replay) step. */
static const char *discovery_auto_schedule(int teacher, int buffer)
{
  if (teacher && buffer) return "student,buffer,student,buffer,teacher,buffer";
  if (teacher) return "student,student,teacher";
  return buffer ? "student,buffer" : "student";
}

/* What the discovery schedule cannot do, before anything is built. */
static tch_status discovery_check(const tch_trainer *t, const tch_config *cf)
{
  if (t->loss_kind != TCHI_LOSS_TB || t->gafn || tchi_cfg_bool(cf, "local_search.enabled"))
    return tchi_fail(TCH_E_CONFIG, "train.schedule discovery trains TB (student.loss tb) without "
                     "gafn.enabled or local_search.enabled, as discovery/gflownet/trainers.py");
  const tchi_seqpa_task *task = tchi_seqpa_task_of(t->env);
  if (task) {
    /* keys are base-A indices of full strings: A^L must fit in 64 bits */
    double bits = (double)task->len * log2((double)task->n_chars);
    if (bits >= 64.0)
      return tchi_fail(TCH_E_CONFIG, "train.schedule discovery: %u^%u strings do not fit a 64-bit "
                       "index", (unsigned)task->n_chars, (unsigned)task->len);
  } else if (!t->env->exact) {
    return tchi_fail(TCH_E_CONFIG, "train.schedule discovery keys objects by index: it needs a "
                     "SeqPA task (qm9str, sehstr) or an env that enumerates its terminal set");
  }
  if (tchi_cfg_bool(cf, "buffer.enabled") && !strcmp(tchi_cfg_string(cf, "buffer.priority"), "loss"))
    return tchi_fail(TCH_E_CONFIG, "buffer.priority loss: the discovery schedule draws by reward "
                     "(PRT), teacher_reward (PER) or none (uniform)");
  return TCH_OK;
}

/* The discovery state: select rule, FIFO capacity, top-k, scratch, exact log Z. */
static tch_status discovery_create(tch_trainer *t, const tch_config *cf, int buffer_on)
{
  tchi_disc *d = tchi_calloc(1, sizeof *d);
  if (!d) return tchi_fail(TCH_E_NOMEM, "out of memory allocating the discovery state");
  t->disc = d;
  const tch_env *env = t->env;
  d->task = tchi_seqpa_task_of(env);
  const char *prio = tchi_cfg_string(cf, "buffer.priority");
  d->select = !strcmp(prio, "teacher_reward") ? TCHI_OFFLINE_PER
              : !strcmp(prio, "none") ? TCHI_OFFLINE_RANDOM : TCHI_OFFLINE_PRT;
  if (buffer_on) {
    int64_t cap = tchi_cfg_int(cf, "buffer.capacity");
    if (cap < 0) cap = (int64_t)env->default_buffer_capacity;
    if (cap <= 0 || (uint64_t)cap >= DISC_NIL)
      return tchi_fail(TCH_E_CONFIG, "buffer.capacity %s: the discovery schedule needs a capacity "
                       "of at least 1 (the reference's replay_buffer_size is 1000)",
                       cap == 0 ? "is 0 or the env has no default" : "is too large");
    d->fifo_cap = (size_t)cap;
  }
  d->top_k = (size_t)tchi_cfg_int(cf, "metrics.top_k");
  d->log_z_true = d->ev_log_z = d->ev_elbo = d->ev_eubo = d->ev_pearson = NAN;
  d->ev_expected_reward = NAN;
  const size_t B = t->batch, sd = env->d.state_dim, C = d->fifo_cap ? d->fifo_cap : 1;
  const size_t L = d->task ? d->task->len : 1;
  tch_status s;
  if ((s = tchi_alloc_array(&d->rfifo, C, sizeof(uint32_t), 0, "discovery FIFO")) ||
      (s = tchi_alloc_array(&d->lfifo, C, sizeof(uint32_t), 0, "discovery FIFO")) ||
      (s = tchi_alloc_array(&d->vals, C, sizeof(double), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->hi_ids, C, sizeof(uint32_t), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->lo_ids, C, sizeof(uint32_t), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->heap, d->top_k, sizeof(uint32_t), 0, "top-k heap")) ||
      (s = tchi_alloc_array(&d->pick, B, sizeof(uint32_t), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->bkeys, B, sizeof(uint64_t), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->y, B, sizeof(double), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->adv_b, B, sizeof(double), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->tdelta, B, sizeof(double), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->xs, B, sd * sizeof(int32_t), 0, "discovery scratch")) ||
      (s = tchi_alloc_array(&d->div_states, d->top_k, L * sizeof(int32_t), 0, "diversity scratch")) ||
      (s = tchi_alloc_array(&d->lev, 2 * (L + 1), sizeof(size_t), 0, "diversity scratch")) ||
      (s = disc_reserve(d, 1024)))
    return s;
  if (env->exact) {
    /* log sum_x exp(beta log R(x)): the partition function the Student's log Z targets */
    const tchi_exact_target *x = env->exact;
    double m = -INFINITY, sum = 0.0, beta = t->reward_exponent;
    for (size_t i = 0; i < x->n; i++) m = beta * x->log_r[i] > m ? beta * x->log_r[i] : m;
    for (size_t i = 0; i < x->n; i++) sum += exp(beta * x->log_r[i] - m);
    d->log_z_true = m + log(sum);
  } else if (tchi_seqpa_task_of(env) && t->reward_exponent == 1.0) {
    double lz;   /* a task too large to enumerate with a known log Z (sehstr) */
    if (tchi_seqpa_log_z(env, &lz) == TCH_OK) d->log_z_true = lz;
  }
  return TCH_OK;
}

tch_status tchi_trainer_create(tch_env *env, const tch_config *c, tch_trainer **out)
{
  *out = NULL;
  if (env->kind == TCHI_ENV_ENERGY) {
    if (c && discovery_schedule(c))
      return tchi_fail(TCH_E_CONFIG, "train.schedule: discovery is a loop of discrete envs; "
                       "energy envs use grid (their diffusion loop)");
    return tchi_dtrainer_create(env, c, out);
  }
  if (env->kind != TCHI_ENV_DISCRETE)
    return tchi_fail(TCH_E_ARG, "this trainer needs a discrete env");
  tch_trainer *t = tchi_calloc(1, sizeof *t);
  if (!t) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a trainer");
  tchi_ref_init(&t->ref);
  tchi_traj_init(&t->traj);
  tchi_ls_ws_init(&t->ls_ws);
  t->env = tch_env_retain(env);
  t->eval_l1 = t->eval_modes = NAN;
  t->last_source = -1;
  tch_status s = c ? tch_config_clone(c, &t->cfg) : tch_config_create(&t->cfg);
  if (s) goto fail;
  if ((s = tchi_trainer_resolve_defaults(env, t->cfg))) goto fail;

  const tch_config *cf = t->cfg;
  t->loss_kind = strcmp(tchi_cfg_string(cf, "student.loss"), "db") == 0 ? TCHI_LOSS_DB : TCHI_LOSS_TB;
  t->gafn = tchi_cfg_bool(cf, "gafn.enabled");
  if (t->gafn && (t->loss_kind != TCHI_LOSS_TB || tchi_cfg_bool(cf, "teacher.enabled") ||
                  tchi_cfg_bool(cf, "buffer.enabled") || tchi_cfg_bool(cf, "local_search.enabled"))) {
    s = tchi_fail(TCH_E_CONFIG, "gafn.enabled: the GAFN baseline trains TB on-policy (as the "
                  "reference's gafntb agent); it cannot be combined with student.loss db, the "
                  "Teacher, a buffer or local search");
    goto fail;
  }
  t->seed = (uint64_t)tchi_cfg_int(cf, "seed");
  t->batch = (size_t)tchi_cfg_int(cf, "train.batch_size");
  t->reward_exponent = tchi_cfg_double(cf, "student.reward_exponent");
  t->clip_min = tchi_cfg_double(cf, "student.log_reward_clip_min");
  const int discovery = discovery_schedule(cf);
  const char *form = tchi_cfg_string(cf, "teacher.reward.form");
  t->treward = (tchi_teacher_reward){
    .use_log = tchi_cfg_bool(cf, "teacher.reward.log"),
    .C = tchi_cfg_double(cf, "teacher.reward.C"),
    .alpha = tchi_cfg_double(cf, "teacher.reward.alpha"),
    .exponent = tchi_cfg_double(cf, "teacher.reward_exponent"),
    .loss_clamp = tchi_cfg_double(cf, "student.loss_clamp"),
    .additive = !strcmp(form, "sum") || (!strcmp(form, "auto") && discovery),
  };
  if ((t->treward.additive || t->treward.loss_clamp > 0 ||
       tchi_cfg_double(cf, "teacher.loss_clamp") > 0) && (t->loss_kind != TCHI_LOSS_TB || t->gafn)) {
    s = tchi_fail(TCH_E_CONFIG, "student.loss_clamp, teacher.loss_clamp and teacher.reward.form sum "
                  "apply to trajectory balance (student.loss tb, without gafn)");
    goto fail;
  }
  if (discovery && (s = discovery_check(t, cf))) goto fail;

  /* Student, and the Teacher with the same architecture (the reference's agents). */
  tchi_policy_spec spec;
  if ((s = tchi_policy_spec_from_config(cf, env, &spec))) goto fail;
  spec.has_flow |= t->gafn;   /* GAFN's state flow F(s) weighs the edge rewards */
  if ((s = learner_init(&t->student, &spec, t->seed, 0, tchi_cfg_double(cf, "student.lr"),
                        tchi_cfg_double(cf, "student.lr_logz"),
                        tchi_cfg_double(cf, "student.weight_decay"),
                        tchi_cfg_double(cf, "student.grad_clip"))) ||
      (s = learner_limits(&t->student, t->batch, tchi_cfg_double(cf, "student.logz_min"),
                          tchi_cfg_double(cf, "student.loss_clamp"), discovery)))
    goto fail;
  if (t->gafn) {
    /* RND networks, and the predictor as a third optimiser group outside the clip. */
    t->gafn_params = (tchi_gafn_params){
      .ri_scale = tchi_cfg_double(cf, "gafn.ri_scale"),
      .ri_loss_weight = tchi_cfg_double(cf, "gafn.ri_loss_weight"),
      .edge_ri = tchi_cfg_bool(cf, "gafn.edge_ri"),
    };
    if ((s = tchi_rnd_init(&t->rnd, env->in_dim, (size_t)tchi_cfg_int(cf, "gafn.rnd_hidden_dim"),
                           (size_t)tchi_cfg_int(cf, "gafn.rnd_latent_dim"), t->seed)))
      goto fail;
    tchi_param_group groups[3] = {
      t->student.opt.grp[0], t->student.opt.grp[1],
      { .p = t->rnd.pred.params, .g = t->rnd.pred.grads, .n = t->rnd.pred.n_params,
        .lr = tchi_cfg_double(cf, "student.lr") },
    };
    tchi_adam_destroy(&t->student.opt);
    if ((s = tchi_adam_init(&t->student.opt, 3, groups))) goto fail;
  }
  int teacher_on = tchi_cfg_bool(cf, "teacher.enabled");
  if (teacher_on) {
    /* Its own initialisation stream (index 1), independent of the Student's. */
    if ((s = learner_init(&t->teacher, &spec, t->seed, 1,
                          tchi_cfg_double(cf, "teacher.lr"), tchi_cfg_double(cf, "teacher.lr_logz"),
                          tchi_cfg_double(cf, "student.weight_decay"),
                          tchi_cfg_double(cf, "teacher.grad_clip"))) ||
        (s = learner_limits(&t->teacher, t->batch, tchi_cfg_double(cf, "teacher.logz_min"),
                            tchi_cfg_double(cf, "teacher.loss_clamp"), discovery)))
      goto fail;
  }

  /* Replay buffer. */
  int buffer_on = tchi_cfg_bool(cf, "buffer.enabled");
  t->priority = priority_of(tchi_cfg_string(cf, "buffer.priority"));
  t->transitions = buffer_on && t->loss_kind == TCHI_LOSS_DB;
  /* The discovery schedule keeps its own FIFOs (discovery_create), not a tch_buffer. */
  if (buffer_on && !discovery) {
    int64_t cap = tchi_cfg_int(cf, "buffer.capacity");
    if (cap < 0 && t->transitions) cap = 1000;   /* trainer_db.py --buffer_size */
    if (cap < 0) {
      if (!env->default_buffer_capacity) {
        s = tchi_fail(TCH_E_CONFIG, "buffer.capacity is -1 (the env's default) but this env has "
                      "no default: set buffer.capacity");
        goto fail;
      }
      cap = (int64_t)env->default_buffer_capacity;
    }
    if (t->transitions) {
      int64_t rn = tchi_cfg_int(cf, "buffer.replay_transitions");
      if (rn < 0 && !env->default_replay_factor) {
        s = tchi_fail(TCH_E_CONFIG, "buffer.replay_transitions is -1 but this env has no default: set it");
        goto fail;
      }
      t->replay_n = rn >= 0 ? (size_t)rn : t->batch * env->default_replay_factor;
      if (t->replay_n == 0) t->replay_n = 1;
      size_t T = (size_t)env->d.max_len + 1;
      t->tr_cap = TCHI_MAX(t->replay_n, t->batch * T);
      if ((s = tchi_alloc_array(&t->tr_rec, t->tr_cap, tchi_transition_dim(env) * sizeof(int32_t), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_log_r, t->tr_cap, sizeof(double), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_prio, t->tr_cap, sizeof(double), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_d, t->tr_cap, sizeof(double), 0, "transitions")) ||
          (s = tchi_alloc_array(&t->tr_tlog, t->tr_cap, sizeof(double), 0, "transitions")))
        goto fail;
    }
    if ((s = tch_buffer_create(t->transitions ? tchi_transition_dim(env) : env->d.state_dim,
                               (size_t)cap, t->priority,
                               tchi_cfg_double(cf, "buffer.rank_k"), &t->buffer)))
      goto fail;
  }

  /* Local search and the behaviour mixer. */
  int ls_on = tchi_cfg_bool(cf, "local_search.enabled");
  t->ls = (tchi_ls_params){
    .iterations = (int)tchi_cfg_int(cf, "local_search.iterations"),
    .back_ratio = tchi_cfg_double(cf, "local_search.back_ratio"),
    .student = t->student.policy, .student_db = t->loss_kind == TCHI_LOSS_DB,
    .tr = &t->treward, .reward_exponent = t->reward_exponent, .clip_min = t->clip_min,
  };
  const char *sched = tchi_cfg_string(cf, "mixer.schedule");
  if (!strcmp(sched, "auto"))
    sched = discovery ? discovery_auto_schedule(teacher_on, buffer_on)
                      : tchi_mixer_auto_schedule(teacher_on, buffer_on, ls_on);
  if ((s = tchi_mixer_create(sched, &t->mixer))) goto fail;
  for (size_t i = 0; i < t->mixer->n_tokens; i++) {
    if (t->mixer->src[i] == TCH_SOURCE_TEACHER && !teacher_on) {
      s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s' samples from the teacher but teacher.enabled is false", sched);
      goto fail;
    }
    if (t->mixer->src[i] == TCH_SOURCE_BUFFER && !buffer_on) {
      s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s' replays the buffer but buffer.enabled is false", sched);
      goto fail;
    }
  }
  if ((t->mixer->random && t->mixer->weight[TCH_SOURCE_TEACHER] > 0 && !teacher_on) ||
      (t->mixer->random && t->mixer->weight[TCH_SOURCE_BUFFER] > 0 && !buffer_on)) {
    s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s' uses a source that is not enabled", sched);
    goto fail;
  }
  for (size_t i = 0; discovery && i < t->mixer->n_tokens; i++)
    if (t->mixer->flags[i] & TCH_MIXER_LOCAL_SEARCH) {
      s = tchi_fail(TCH_E_CONFIG, "mixer.schedule '%s': train.schedule discovery has no "
                    "back-and-forth local search (+ls)", sched);
      goto fail;
    }
  double eps = tchi_cfg_double(cf, "mixer.epsilon"), temp = tchi_cfg_double(cf, "mixer.temperature");
  double teps = tchi_cfg_double(cf, "mixer.teacher_epsilon");
  double ttemp = tchi_cfg_double(cf, "mixer.teacher_temperature");
  if ((s = tch_mixer_set_exploration(t->mixer, TCH_SOURCE_STUDENT, eps, temp)) ||
      (s = tch_mixer_set_exploration(t->mixer, TCH_SOURCE_TEACHER, teps < 0 ? eps : teps,
                                     ttemp < 0 ? temp : ttemp)))
    goto fail;

  size_t B = t->batch, T = (size_t)env->d.max_len + 1;
  if ((s = tchi_alloc_array(&t->delta, B, sizeof(double), 0, "residuals")) ||
      (s = tchi_alloc_array(&t->dres, B * T, sizeof(double), 0, "residuals")) ||
      (s = tchi_alloc_array(&t->rt, B, sizeof(double), 0, "teacher rewards")) ||
      (s = tchi_alloc_array(&t->t_log_r, B, sizeof(double), 0, "teacher rewards")) ||
      (s = tchi_alloc_array(&t->prio, B, sizeof(double), 0, "priorities")) ||
      (s = tchi_alloc_array(&t->visit_idx, B, sizeof(int64_t), 0, "visit index")) ||
      (s = tchi_alloc_array(&t->terminals, B, env->d.state_dim * sizeof(int32_t), 0, "terminals")))
    goto fail;
  int64_t win = tchi_cfg_int(cf, "metrics.num_empirical");
  size_t window = win >= 0 ? (size_t)win : env->default_num_empirical ? env->default_num_empirical : 20000;
  if ((s = visits_init(&t->visits, env, window))) goto fail;
  if ((s = tchi_traj_reserve(&t->traj, env, B))) goto fail;
  if (discovery && (s = discovery_create(t, cf, buffer_on))) goto fail;
  *out = t;
  return TCH_OK;
fail:
  tchi_trainer_release(t);
  return s;
}

tch_status tchi_trainer_planned_steps(const tch_trainer *t, uint64_t *out)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) return tchi_dtrainer_planned_steps(t, out);
  int64_t steps = tchi_cfg_int(t->cfg, "train.steps");
  if (steps >= 0) {
    *out = (uint64_t)steps;
    return TCH_OK;
  }
  if (!t->env->default_steps_base) {
    /* The discovery tasks: the reference's num_active_learning_rounds, one step per round,
     * two with an offline (buffer) step. */
    const tchi_seqpa_task *task = tchi_seqpa_task_of(t->env);
    static const struct { const char *prefix; uint64_t rounds; } task_rounds[] = {
      {"qm9str", 1000}, {"sehstr", 2000}, {"tfbind8", 2000}, {"rna", 2000},
    };
    for (size_t i = 0; task && i < sizeof task_rounds / sizeof task_rounds[0]; i++)
      if (!strncmp(task->name, task_rounds[i].prefix, strlen(task_rounds[i].prefix))) {
        *out = task_rounds[i].rounds * (tchi_cfg_bool(t->cfg, "buffer.enabled") ? 2 : 1);
        return TCH_OK;
      }
    return tchi_fail(TCH_E_CONFIG, "train.steps is -1 (the env's default) but this env has no "
                     "default: set train.steps");
  }
  /* grid/trainer.py: x1.5 unless local search, x2 with a buffer (integer truncation). */
  uint64_t n = t->env->default_steps_base;
  if (!tchi_cfg_bool(t->cfg, "local_search.enabled")) n = n * 3 / 2;
  if (t->buffer) n *= 2;
  *out = n;
  return TCH_OK;
}

/* ---- one step --------------------------------------------------------------------------- */
/* TB with the loss per trajectory min(d^2, c) (basegfn.py: torch.clamp(losses, max=5000)):
 * the rows above c have no gradient, so when there are any the gradient is taken again with
 * weight 0 on them (rare: residuals of 70 nats). d holds the residuals of the first pass;
 * *loss becomes the clamped mean. */
static tch_status clamp_tb(tch_trainer *t, tchi_learner *l, const double *log_r, const double *d,
                           double *loss)
{
  const size_t n = t->traj.n;
  const double c = l->loss_clamp;
  size_t over = 0;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    double dd = d[i] * d[i];
    l->clamp_w[i] = dd > c ? 0.0 : 1.0;
    over += dd > c;
    sum += dd > c ? c : dd;
  }
  *loss = sum / (double)n;
  if (!over) return TCH_OK;
  tch_policy *p = l->policy;
  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0.0;
  double unused;
  return tchi_tb_loss(p, t->env, &t->traj, &l->ev, log_r, l->clamp_w, 1, NULL, &unused);
}

/* Gradient of one learner on the batch; the update itself is applied at commit. */
static tch_status learner_grad(tch_trainer *t, tchi_learner *l, const double *log_r, double *delta,
                               double *dres, double *loss, double *norm)
{
  tch_policy *p = l->policy;
  tchi_mlp_zero_grad(&p->mlp);
  p->log_z_grad = 0.0;
  tch_status s;
  if (t->gafn && l == &t->student) {
    tchi_mlp_zero_grad(&t->rnd.pred);
    s = tchi_gafn_loss(p, &t->rnd, t->env, &t->traj, &l->ev, log_r, &t->gafn_params, 1, loss);
  } else if (t->loss_kind == TCHI_LOSS_DB) {
    s = tchi_db_loss(p, t->env, &t->traj, &l->ev, log_r, 1, dres, loss);
  } else {
    double *d = delta ? delta : l->clamp_d;   /* the clamp needs the residuals */
    s = tchi_tb_loss(p, t->env, &t->traj, &l->ev, log_r, NULL, 1, d, loss);
    if (s == TCH_OK && l->loss_clamp > 0) s = clamp_tb(t, l, log_r, d, loss);
  }
  if (s) return s;
  /* The reference clips the sampler's network and log Z only (not the RND predictor). */
  *norm = tchi_clip_grad_norm(l->opt.grp, l->n_clip_groups, l->grad_clip);
  if (!isfinite(*norm))
    return tchi_fail(TCH_E_NUMERIC, "%s gradient norm is %g at step %llu",
                     l == &t->student ? "Student" : "Teacher", *norm, (unsigned long long)t->step);
  return TCH_OK;
}

/* The update of a learner whose gradient learner_grad left in place; log Z then clamped to
 * its floor (basegfn.py clamp_logZ after every step). */
static void learner_commit(tchi_learner *l, double loss, double norm)
{
  tchi_adam_step(&l->opt);
  if (l->policy->log_z < l->logz_min) l->policy->log_z = l->logz_min;
  l->last_loss = loss;
  l->last_grad_norm = norm;
}

/* Fills t->traj (and its log_r, training scale) from the step's source. */
static tch_status behaviour_batch(tch_trainer *t, tch_source src, uint32_t flags, uint64_t *calls)
{
  const size_t B = t->batch;
  tchi_rng rng;
  tch_status s;
  if (src == TCH_SOURCE_BUFFER) {
    tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_BUFFER, t->step));
    if ((s = tchi_buffer_sample(t->buffer, &rng, B, t->terminals, t->traj.log_r))) return s;
    double keep[256];
    double *lr = B <= 256 ? keep : t->t_log_r;   /* t_log_r is free scratch at this point */
    memcpy(lr, t->traj.log_r, B * sizeof(double));
    /* Rebuilt with the Student's P_B: uniform over valid parents unless it learns P_B,
     * which is the reference's generate_backward. */
    if ((s = tchi_sample_backward(t->student.policy, t->env, &rng, B, t->terminals, &t->traj)))
      return s;
    memcpy(t->traj.log_r, lr, B * sizeof(double));
    return TCH_OK;
  }
  tchi_learner *l = src == TCH_SOURCE_TEACHER ? &t->teacher : &t->student;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(src == TCH_SOURCE_TEACHER ? TCHI_STREAM_TEACHER
                                                                        : TCHI_STREAM_STUDENT, t->step));
  if ((s = tchi_sample_forward(l->policy, t->env, &rng, B, t->mixer->eps[src], t->mixer->temp[src],
                               &t->traj, NULL)))
    return s;
  tchi_traj_terminals(&t->traj, t->terminals);
  if ((s = tchi_env_log_reward(t->env, B, t->terminals, t->clip_min, t->traj.log_r))) return s;
  for (size_t i = 0; i < B; i++) t->traj.log_r[i] *= t->reward_exponent;
  *calls += B;
  if (flags & TCH_MIXER_LOCAL_SEARCH) {
    tchi_ls_params lp = t->ls;
    lp.teacher_ls = src == TCH_SOURCE_TEACHER;
    tchi_rng lrng;
    tchi_rng_seed(&lrng, t->seed, tchi_stream_id(TCHI_STREAM_LOCAL_SEARCH, t->step));
    if ((s = tchi_local_search(l->policy, t->env, &lrng, &lp, &t->traj, &t->ls_ws))) return s;
    *calls += B * (uint64_t)lp.iterations;
    tchi_traj_terminals(&t->traj, t->terminals);
  }
  return TCH_OK;
}

/* One replay step of DB on transitions (trainer_db.py learn_from_transition), Student then
 * Teacher; no buffer insertion and no visits. */
static tch_status transition_step(tch_trainer *t)
{
  const size_t R = t->replay_n;
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_BUFFER, t->step));
  tch_status s = tchi_buffer_sample(t->buffer, &rng, R, t->tr_rec, t->tr_log_r);
  if (s) return s;
  double loss, norm, tloss = NAN, tnorm = NAN;
  tchi_learner *l = &t->student;
  tchi_mlp_zero_grad(&l->policy->mlp);
  l->policy->log_z_grad = 0.0;
  if ((s = tchi_db_transition_loss(l->policy, t->env, R, t->tr_rec, t->tr_log_r, &l->ev, 1,
                                   t->tr_d, &loss)))
    return s;
  norm = tchi_clip_grad_norm(l->opt.grp, l->n_clip_groups, l->grad_clip);
  if (!isfinite(norm)) return tchi_fail(TCH_E_NUMERIC, "Student gradient norm is %g", norm);
  if (t->teacher.policy) {
    /* R_T = f(w d^2) (1 + r)^alpha per transition (r: the stored reward, 0 unless
     * terminal); the Teacher's target on terminal transitions is beta_T log(R_T + 1e-8). */
    const tchi_teacher_reward *tr = &t->treward;
    for (size_t i = 0; i < R; i++) {
      double rt = tchi_teacher_reward_value(tr, t->tr_d[i], log1p(exp(t->tr_log_r[i])));
      t->tr_tlog[i] = tchi_teacher_log_reward(tr, rt);
    }
    tchi_learner *tl = &t->teacher;
    tchi_mlp_zero_grad(&tl->policy->mlp);
    tl->policy->log_z_grad = 0.0;
    if ((s = tchi_db_transition_loss(tl->policy, t->env, R, t->tr_rec, t->tr_tlog, &tl->ev, 1,
                                     NULL, &tloss)))
      return s;
    tnorm = tchi_clip_grad_norm(tl->opt.grp, tl->n_clip_groups, tl->grad_clip);
    if (!isfinite(tnorm)) return tchi_fail(TCH_E_NUMERIC, "Teacher gradient norm is %g", tnorm);
  }
  learner_commit(l, loss, norm);
  if (t->teacher.policy) learner_commit(&t->teacher, tloss, tnorm);
  t->grad_steps++;
  t->last_source = (int)TCH_SOURCE_BUFFER;
  t->step++;
  return TCH_OK;
}

/* The transitions of a sampled DB batch, with the reference's priorities (trainer_db.py):
 * teacher_reward -> per-transition R_T (r = 1, plus R on the last), loss -> d_t^2, else 1. */
static size_t batch_transitions(tch_trainer *t)
{
  const tchi_traj *tr = &t->traj;
  const size_t T = tr->T, sd = tr->state_dim, na = tr->n_actions, w = 2 * sd + 2;
  const tchi_teacher_reward *R_T = &t->treward;
  size_t m = 0;
  for (size_t i = 0; i < tr->n; i++) {
    size_t L = tr->len[i];
    size_t n_tr = L - (size_t)tchi_forced_terminal(tr->fwd + (i * T + L - 1) * na, na);
    for (size_t k = 0; k < n_tr; k++, m++) {
      int32_t *r = t->tr_rec + m * w;
      int32_t a = tr->actions[i * T + k];
      int term = k + 1 == n_tr, is_exit = (size_t)a == na - 1;
      memcpy(r, tchi_traj_state(tr, i, k), sd * sizeof(int32_t));
      r[sd] = a;
      memcpy(r + sd + 1, tchi_traj_state(tr, i, is_exit ? k : k + 1), sd * sizeof(int32_t));
      r[2 * sd + 1] = term;
      t->tr_log_r[m] = term ? tr->log_r[i] : -INFINITY;
      double d = t->dres[i * T + k];
      if (t->priority == TCH_PRIORITY_TEACHER_REWARD) {
        /* r = 1, plus R on the terminal transition: R^alpha with log R = log(r) */
        double log_rv = term ? log1p(exp(tr->log_r[i])) : 0.0;
        t->tr_prio[m] = tchi_teacher_reward_value(R_T, d, log_rv);
      } else if (t->priority == TCH_PRIORITY_LOSS) {
        t->tr_prio[m] = d * d;
      } else {
        t->tr_prio[m] = 1.0;
      }
    }
  }
  return m;
}

static tch_status one_step(tch_trainer *t)
{
  const size_t B = t->batch;
  tch_source src;
  uint32_t flags;
  tchi_mixer_source(t->mixer, t->seed, t->step, &src, &flags);
  if (src == TCH_SOURCE_BUFFER && t->transitions) return transition_step(t);
  uint64_t calls = 0;
  tch_status s = behaviour_batch(t, src, flags, &calls);
  if (s) return s;
  const int sampled = src != TCH_SOURCE_BUFFER;
  const double *log_r = t->traj.log_r;
  if (sampled && t->env->exact && (s = visits_lookup(t->env, B, t->terminals, t->visit_idx)))
    return s;

  /* Student gradient; residuals from the pre-update parameters. */
  double loss, norm, tloss = NAN, tnorm = NAN;
  if ((s = learner_grad(t, &t->student, log_r, t->delta, t->dres, &loss, &norm))) return s;

  /* Teacher rewards from the Student's residuals (also the PER priority). */
  int need_rt = t->teacher.policy || (t->buffer && t->priority == TCH_PRIORITY_TEACHER_REWARD);
  if (need_rt) {
    if (t->loss_kind == TCHI_LOSS_DB) tchi_teacher_rewards_db(&t->treward, &t->traj, t->dres, log_r, t->rt);
    else tchi_teacher_rewards_tb(&t->treward, &t->traj, t->delta, log_r, t->rt);
  }
  if (t->teacher.policy) {
    for (size_t i = 0; i < B; i++)
      t->t_log_r[i] = t->treward.additive
                        ? tchi_teacher_train_log_reward(&t->treward, t->delta[i], log_r[i])
                        : tchi_teacher_log_reward(&t->treward, t->rt[i]);
    /* Teacher residuals are not kept: the Student's stay in delta/dres for the priorities. */
    if ((s = learner_grad(t, &t->teacher, t->t_log_r, NULL, NULL, &tloss, &tnorm))) return s;
  }

  /* Commit. The buffer goes first: its insertion is all-or-nothing; the rest cannot fail. */
  if (sampled && t->transitions) {
    size_t m = batch_transitions(t);
    if ((s = tchi_buffer_add(t->buffer, m, t->tr_rec, t->tr_log_r, t->tr_prio))) return s;
  } else if (sampled && t->buffer) {
    const size_t T = t->traj.T;
    for (size_t i = 0; i < B; i++) {
      switch (t->priority) {
      case TCH_PRIORITY_REWARD: t->prio[i] = exp(log_r[i]); break;
      case TCH_PRIORITY_TEACHER_REWARD: t->prio[i] = t->rt[i]; break;
      case TCH_PRIORITY_LOSS:
        if (t->loss_kind == TCHI_LOSS_DB) {
          double sum = 0.0;
          for (size_t k = 0; k < T; k++) sum += t->dres[i * T + k] * t->dres[i * T + k];
          t->prio[i] = sum;
        } else {
          t->prio[i] = t->delta[i] * t->delta[i];
        }
        break;
      default: t->prio[i] = 1.0;
      }
    }
    if ((s = tchi_buffer_add(t->buffer, B, t->terminals, log_r, t->prio))) return s;
  }
  learner_commit(&t->student, loss, norm);
  if (t->teacher.policy) learner_commit(&t->teacher, tloss, tnorm);
  if (sampled && t->env->exact) visits_record(&t->visits, t->env, B, t->visit_idx);
  else if (sampled) visits_record_modes(&t->visits, t->env, B, t->terminals);
  t->reward_calls += calls;
  t->grad_steps++;
  t->last_source = (int)src;
  t->step++;
  return TCH_OK;
}

/* ---- the discovery schedule's steps (trainers.py learn_default) --------------------------- */
/* Student then Teacher gradients on t->traj (log R in traj.log_r): the Student's residuals
 * in t->delta give adv = log(1.001 + w min(d^2, 5000)) (its PER score, in d->adv_b) and the
 * Teacher's log-reward log(adv) + alpha log R. Nothing is committed. */
static tch_status disc_grads(tch_trainer *t, double *loss, double *norm, double *tloss, double *tnorm)
{
  tchi_disc *d = t->disc;
  const size_t n = t->traj.n;
  const double *log_r = t->traj.log_r;
  tch_status s = learner_grad(t, &t->student, log_r, t->delta, NULL, loss, norm);
  if (s) return s;
  tchi_teacher_reward adv_only = t->treward;
  adv_only.alpha = 0.0;
  for (size_t i = 0; i < n; i++) d->adv_b[i] = tchi_teacher_reward_value(&adv_only, t->delta[i], 0.0);
  *tloss = *tnorm = NAN;
  if (!t->teacher.policy) return TCH_OK;
  for (size_t i = 0; i < n; i++)
    t->t_log_r[i] = tchi_teacher_train_log_reward(&t->treward, t->delta[i], log_r[i]);
  return learner_grad(t, &t->teacher, t->t_log_r, d->tdelta, NULL, tloss, tnorm);
}

static void disc_commit_learners(tch_trainer *t, double loss, double norm, double tloss,
                                 double tnorm, tch_source src)
{
  learner_commit(&t->student, loss, norm);
  if (t->teacher.policy) learner_commit(&t->teacher, tloss, tnorm);
  t->grad_steps++;
  t->last_source = (int)src;
  t->step++;
}

/* Online: a batch from the Student or the Teacher (with epsilon), both trained on it, its
 * first-time objects into the seen set and the FIFO (allXtoR, allXtoR_buffer), with PER
 * every object's adv score (allXtoL). */
static tch_status disc_online_step(tch_trainer *t, tch_source src)
{
  tchi_disc *d = t->disc;
  const size_t B = t->batch;
  uint64_t calls = 0;
  tch_status s = behaviour_batch(t, src, 0, &calls);
  if (s) return s;
  if (t->env->exact) {
    if ((s = visits_lookup(t->env, B, t->terminals, t->visit_idx))) return s;
    for (size_t i = 0; i < B; i++) d->bkeys[i] = (uint64_t)t->visit_idx[i];
  } else {   /* a SeqPA task: full strings (the env's log_reward checked them) */
    for (size_t i = 0; i < B; i++)
      d->bkeys[i] = tchi_seqpa_index(t->terminals + i * d->task->len, d->task->len, d->task->n_chars);
  }
  if ((s = disc_real_rewards(t, B, t->terminals, d->bkeys, d->y))) return s;
  double loss, norm, tloss, tnorm;
  if ((s = disc_grads(t, &loss, &norm, &tloss, &tnorm))) return s;
  if ((s = disc_reserve(d, d->n_seen + B))) return s;

  /* Commit: nothing below can fail. */
  disc_commit_learners(t, loss, norm, tloss, tnorm, src);
  for (size_t i = 0; i < B; i++) {
    uint32_t id = disc_find(d, d->bkeys[i]);
    if (id == DISC_NIL) id = disc_insert(d, d->bkeys[i], t->traj.log_r[i], d->y[i]);
    if (d->select == TCHI_OFFLINE_PER && d->fifo_cap) disc_set_adv(d, id, d->adv_b[i]);
  }
  if (t->env->exact) visits_record(&t->visits, t->env, B, t->visit_idx);
  else visits_record_modes(&t->visits, t->env, B, t->terminals);
  t->reward_calls += calls;
  return TCH_OK;
}

/* The offline batch's entries (2 floor(B/2) with PRT/PER, B uniform); 0 = no batch. */
static size_t disc_select(tch_trainer *t, tchi_rng *rng)
{
  tchi_disc *d = t->disc;
  const size_t B = t->batch;
  if (d->r_n < DISC_MIN_BUFFER) return 0;
  if (d->select == TCHI_OFFLINE_RANDOM) {
    for (size_t i = 0; i < B; i++)
      d->pick[i] = d->rfifo[(d->r_head + tchi_rng_below(rng, (uint32_t)d->r_n)) % d->fifo_cap];
    return B;
  }
  /* PRT: 90th percentile of the buffer's rewards (log R: the same split, log is monotone);
   * PER: of the adv FIFO's scores. Half of the batch from each side, with replacement. */
  const int per = d->select == TCHI_OFFLINE_PER;
  const uint32_t *ring = per ? d->lfifo : d->rfifo;
  const size_t n = per ? d->l_n : d->r_n, head = per ? d->l_head : d->r_head;
  const double *score = per ? d->adv : d->log_r;
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) d->vals[i] = score[ring[(head + i) % d->fifo_cap]];
  const double thr = tchi_percentile_linear(d->vals, n, 0.9);
  size_t n_hi = 0, n_lo = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t id = ring[(head + i) % d->fifo_cap];
    if (score[id] >= thr) d->hi_ids[n_hi++] = id;
    if (score[id] <= thr) d->lo_ids[n_lo++] = id;
  }
  const size_t half = B / 2;
  for (size_t i = 0; i < half; i++) d->pick[i] = d->hi_ids[tchi_rng_below(rng, (uint32_t)n_hi)];
  for (size_t i = 0; i < half; i++) d->pick[half + i] = d->lo_ids[tchi_rng_below(rng, (uint32_t)n_lo)];
  return 2 * half;
}

/* Offline: objects drawn from the FIFO, fresh backward trajectories under the Student's P_B
 * (uniform), their stored rewards; Student then Teacher. Fewer than 10 objects: the step
 * passes without an update (counted in `skipped`; the reference would take an Adam step on
 * an empty batch). */
static tch_status disc_offline_step(tch_trainer *t)
{
  tchi_disc *d = t->disc;
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_BUFFER, t->step));
  const size_t n = disc_select(t, &rng);
  if (n == 0) {
    d->skipped++;
    t->last_source = (int)TCH_SOURCE_BUFFER;
    t->step++;
    return TCH_OK;
  }
  const size_t sd = t->env->d.state_dim;
  for (size_t i = 0; i < n; i++) disc_state_of(t, d->key[d->pick[i]], d->xs + i * sd);
  tch_status s = tchi_sample_backward(t->student.policy, t->env, &rng, n, d->xs, &t->traj);
  if (s) return s;
  for (size_t i = 0; i < n; i++) t->traj.log_r[i] = d->log_r[d->pick[i]];
  double loss, norm, tloss, tnorm;
  if ((s = disc_grads(t, &loss, &norm, &tloss, &tnorm))) return s;
  disc_commit_learners(t, loss, norm, tloss, tnorm, TCH_SOURCE_BUFFER);
  if (d->select == TCHI_OFFLINE_PER)
    for (size_t i = 0; i < n; i++) disc_set_adv(d, d->pick[i], d->adv_b[i]);
  return TCH_OK;
}

static tch_status disc_one_step(tch_trainer *t)
{
  tch_source src;
  uint32_t flags;
  tchi_mixer_source(t->mixer, t->seed, t->step, &src, &flags);
  return src == TCH_SOURCE_BUFFER ? disc_offline_step(t) : disc_online_step(t, src);
}

tch_status tchi_trainer_step(tch_trainer *t, uint64_t n_steps)
{
  for (uint64_t k = 0; k < n_steps; k++) {
    tch_status s = t->kind == TCHI_TRAINER_DIFFUSION ? tchi_dtrainer_one_step(t)
                   : t->disc ? disc_one_step(t) : one_step(t);
    if (s) return s;
    if (t->progress && t->progress_every && t->step % t->progress_every == 0) {
      tchi_callback_error_reset();
      if (t->progress(t->progress_user, t, t->step))
        return tchi_fail(TCH_STOPPED, "stopped by the progress callback at step %llu",
                         (unsigned long long)t->step);
    }
  }
  return TCH_OK;
}

/* Pearson correlation of n pairs (NaN below two pairs or without variance). */
static double pearson(size_t n, const double *a, const double *b)
{
  if (n < 2) return NAN;
  double ma = 0.0, mb = 0.0;
  for (size_t i = 0; i < n; i++) { ma += a[i]; mb += b[i]; }
  ma /= (double)n;
  mb /= (double)n;
  double sab = 0.0, saa = 0.0, sbb = 0.0;
  for (size_t i = 0; i < n; i++) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Keys of n terminal states (exact index or base-A index). */
static tch_status disc_keys(const tch_trainer *t, size_t n, const int32_t *x, uint64_t *keys)
{
  const tchi_seqpa_task *task = t->disc->task;
  for (size_t i = 0; i < n; i++) {
    if (t->env->exact) {
      int64_t k = t->env->exact->index_of(t->env, x + i * t->env->d.state_dim);
      if (k < 0) return tchi_fail(TCH_E_CALLBACK, "sampled terminal state %zu is not in the env's "
                                  "enumerated terminal set", i);
      keys[i] = (uint64_t)k;
    } else {
      keys[i] = tchi_seqpa_index(x + i * task->len, task->len, task->n_chars);
    }
  }
  return TCH_OK;
}

/* trainers.py evaluate on n fresh Student samples (epsilon 0): log Z estimate
 * logsumexp(log R + log P_B - log P_F) - log n, ELBO (their mean), the expected raw reward,
 * modes among the samples, the exact-target L1; with an exact target, n target samples
 * x ~ R^beta (a fixed set per seed, as the reference's true_samples) with one uniform-P_B
 * backward trajectory each: EUBO (the mean of the same expression) and the Pearson
 * correlation of sum log P_F with log of the raw reward over all of them (the reference
 * takes its last chunk of 128 only). Evaluation rewards are not counted in reward_calls. */
static tch_status disc_evaluate(tch_trainer *t, size_t n)
{
  tchi_disc *d = t->disc;
  tch_env *env = t->env;
  const tchi_exact_target *x = env->exact;
  const size_t chunk = 1000, sd = env->d.state_dim, m_cap = TCHI_MIN(chunk, n);
  int32_t *all = NULL, *tx = NULL;
  double *logw = NULL, *y = NULL, *lpf = NULL, *lreal = NULL, *cdf = NULL;
  uint64_t *keys = NULL;
  tchi_traj traj;
  tchi_eval ev;
  tchi_traj_init(&traj);
  tchi_eval_init(&ev);
  tch_status s;
  if ((s = tchi_alloc_array(&all, n, sd * sizeof(int32_t), 0, "evaluation samples")) ||
      (s = tchi_alloc_array(&logw, n, sizeof(double), 0, "evaluation samples")) ||
      (s = tchi_alloc_array(&y, m_cap, sizeof(double), 0, "evaluation samples")) ||
      (s = tchi_alloc_array(&keys, m_cap, sizeof(uint64_t), 0, "evaluation samples")))
    goto done;
  double real_sum = 0.0;
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_EVAL, t->step));
  for (size_t done = 0; done < n; done += chunk) {
    const size_t m = TCHI_MIN(chunk, n - done);
    int32_t *xs = all + done * sd;
    if ((s = tchi_sample_forward(t->student.policy, env, &rng, m, 0.0, 1.0, &traj, NULL))) goto done;
    tchi_traj_terminals(&traj, xs);
    if ((s = tchi_env_log_reward(env, m, xs, t->clip_min, traj.log_r)) ||
        (s = tchi_eval_traj(t->student.policy, env, &traj, &ev)) ||
        (s = disc_keys(t, m, xs, keys)) || (s = disc_real_rewards(t, m, xs, keys, y)))
      goto done;
    for (size_t i = 0; i < m; i++) {
      logw[done + i] = t->reward_exponent * traj.log_r[i] + ev.log_pb[i] - ev.log_pf[i];
      real_sum += y[i];
    }
  }
  double elbo = 0.0;
  for (size_t i = 0; i < n; i++) elbo += logw[i];
  elbo /= (double)n;
  const double log_z = tchi_log_sum_exp(n, logw) - log((double)n);
  size_t modes = 0;
  double l1 = NAN, eubo = NAN, corr = NAN;
  if (x) {
    if ((s = tch_env_empirical_l1(env, n, all, &l1)) || (s = tch_env_count_modes(env, n, all, &modes)))
      goto done;
  } else if ((s = tchi_seqpa_count_modes(env, n, all, &modes))) {
    goto done;
  }
  if (x) {
    /* target samples by inversion of the cumulative distribution of R^beta */
    if ((s = tchi_alloc_array(&cdf, x->n, sizeof(double), 0, "target distribution")) ||
        (s = tchi_alloc_array(&tx, m_cap, sd * sizeof(int32_t), 0, "target samples")) ||
        (s = tchi_alloc_array(&lpf, n, sizeof(double), 0, "target samples")) ||
        (s = tchi_alloc_array(&lreal, n, sizeof(double), 0, "target samples")))
      goto done;
    const double beta = t->reward_exponent;
    double mx = -INFINITY, total = 0.0;
    for (size_t i = 0; i < x->n; i++) mx = beta * x->log_r[i] > mx ? beta * x->log_r[i] : mx;
    for (size_t i = 0; i < x->n; i++) cdf[i] = total += exp(beta * x->log_r[i] - mx);
    tchi_rng pick, back;
    tchi_rng_seed(&pick, t->seed, tchi_stream_id(TCHI_STREAM_EVAL, (uint64_t)1 << 40));
    tchi_rng_seed(&back, t->seed, tchi_stream_id(TCHI_STREAM_EVAL, (uint64_t)2 << 40 | t->step));
    double eubo_sum = 0.0;
    for (size_t done = 0; done < n; done += chunk) {
      const size_t m = TCHI_MIN(chunk, n - done);
      for (size_t i = 0; i < m; i++) {
        double u = tchi_rng_uniform(&pick) * total;
        size_t lo = 0, hi = x->n - 1;   /* the first i with cdf[i] > u */
        while (lo < hi) {
          size_t mid = lo + (hi - lo) / 2;
          if (cdf[mid] > u) hi = mid;
          else lo = mid + 1;
        }
        keys[i] = lo;
        memcpy(tx + i * sd, x->states + lo * sd, sd * sizeof(int32_t));
      }
      if ((s = tchi_sample_backward(t->student.policy, env, &back, m, tx, &traj)) ||
          (s = tchi_eval_traj(t->student.policy, env, &traj, &ev)) ||
          (s = disc_real_rewards(t, m, tx, keys, y)))
        goto done;
      for (size_t i = 0; i < m; i++) {
        eubo_sum += beta * x->log_r[keys[i]] + ev.log_pb[i] - ev.log_pf[i];
        lpf[done + i] = ev.log_pf[i];
        lreal[done + i] = log(y[i]);
      }
    }
    eubo = eubo_sum / (double)n;
    corr = pearson(n, lpf, lreal);
  }
  t->eval_l1 = l1;
  t->eval_modes = (double)modes;
  d->ev_log_z = log_z;
  d->ev_elbo = elbo;
  d->ev_eubo = eubo;
  d->ev_pearson = corr;
  d->ev_expected_reward = real_sum / (double)n;
done:
  tchi_traj_destroy(&traj);
  tchi_eval_destroy(&ev);
  tchi_free(all); tchi_free(tx); tchi_free(logw); tchi_free(y); tchi_free(lpf);
  tchi_free(lreal); tchi_free(cdf); tchi_free(keys);
  return s;
}

tch_status tchi_trainer_evaluate(tch_trainer *t, size_t n_samples)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) return tchi_dtrainer_evaluate(t, n_samples);
  if (t->disc) return disc_evaluate(t, n_samples);
  /* Without exact target, a SeqPA task still counts the modes of its list. */
  const int task_modes = !t->env->exact && tchi_seqpa_task_of(t->env);
  if (!t->env->exact && !task_modes)
    return tchi_fail(TCH_E_STATE, "evaluation needs an env that enumerates its terminal set");
  const size_t chunk = 1000, sd = t->env->d.state_dim;
  int32_t *all;
  tch_status s = tchi_alloc_array(&all, n_samples, sd * sizeof(int32_t), 0, "evaluation samples");
  if (s) return s;
  tchi_traj traj;
  tchi_traj_init(&traj);
  tchi_rng rng;
  tchi_rng_seed(&rng, t->seed, tchi_stream_id(TCHI_STREAM_EVAL, t->step));
  for (size_t done = 0; done < n_samples && s == TCH_OK; done += chunk) {
    size_t m = TCHI_MIN(chunk, n_samples - done);
    s = tchi_sample_forward(t->student.policy, t->env, &rng, m, 0.0, 1.0, &traj, NULL);
    if (s == TCH_OK) tchi_traj_terminals(&traj, all + done * sd);
  }
  size_t modes = 0;
  double l1 = NAN;
  if (s == TCH_OK && task_modes) s = tchi_seqpa_count_modes(t->env, n_samples, all, &modes);
  if (s == TCH_OK && !task_modes) s = tch_env_empirical_l1(t->env, n_samples, all, &l1);
  if (s == TCH_OK && !task_modes) s = tch_env_count_modes(t->env, n_samples, all, &modes);
  if (s == TCH_OK) {
    t->eval_l1 = l1;
    t->eval_modes = (double)modes;
  }
  tchi_traj_destroy(&traj);
  tchi_free(all);
  return s;
}

/* ---- metrics ------------------------------------------------------------------------ */
static const char *const metric_names[] = {
  "step", "loss.student", "logz.student", "grad_norm.student", "loss.teacher", "logz.teacher",
  "grad_norm.teacher", "l1", "modes", "modes.total", "reward_calls", "grad_steps", "visits",
  "buffer.size", "source", "eval.l1", "eval.modes",
};
#define N_METRICS (sizeof metric_names / sizeof metric_names[0])
/* Listed after the others for train.schedule discovery only, so that the metrics files of
 * grid runs keep their columns (resumed runs append to them). */
static const char *const disc_metric_names[] = {
  "unique", "topk.reward", "topk.diversity", "skipped", "eval.log_z", "eval.delta_log_z",
  "eval.elbo", "eval.eubo", "eval.pearson", "eval.expected_reward",
};
#define N_DISC_METRICS (sizeof disc_metric_names / sizeof disc_metric_names[0])

static int disc_metric(const char *name)
{
  for (size_t i = 0; i < N_DISC_METRICS; i++)
    if (!strcmp(name, disc_metric_names[i])) return 1;
  return 0;
}

const char *tchi_trainer_next_metric(const tch_trainer *t, const char *prev)
{
  if (t && t->kind == TCHI_TRAINER_DIFFUSION) return tchi_dtrainer_next_metric(prev);
  const int with_disc = t && t->disc;
  if (!prev) return metric_names[0];
  for (size_t i = 0; i < N_METRICS; i++)
    if (strcmp(prev, metric_names[i]) == 0)
      return i + 1 < N_METRICS ? metric_names[i + 1] : with_disc ? disc_metric_names[0] : NULL;
  for (size_t i = 0; with_disc && i + 1 < N_DISC_METRICS; i++)
    if (strcmp(prev, disc_metric_names[i]) == 0) return disc_metric_names[i + 1];
  return NULL;
}

/* A name of the other kind's list: defined, but NaN for this trainer. */
static int other_kind_metric(const tch_trainer *t, const char *name)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) {
    for (size_t i = 0; i < N_METRICS; i++)
      if (!strcmp(name, metric_names[i])) return 1;
    return disc_metric(name);
  }
  for (const char *k = tchi_dtrainer_next_metric(NULL); k; k = tchi_dtrainer_next_metric(k))
    if (!strcmp(name, k)) return 1;
  return 0;
}

tch_status tchi_trainer_metric(const tch_trainer *t, const char *name, double *out)
{
  if (t->kind == TCHI_TRAINER_DIFFUSION) {
    tch_status s = tchi_dtrainer_metric(t, name, out);
    if (s == TCH_E_ARG && other_kind_metric(t, name)) {
      tchi_clear_error();
      *out = NAN;
      return TCH_OK;
    }
    return s;
  }
  const tch_policy *tp = t->teacher.policy;
  const tchi_disc *d = t->disc;
  const size_t mode_total = visits_mode_total(&t->visits, t->env);
  size_t bsize = 0;
  if (t->buffer) tch_buffer_size(t->buffer, &bsize);
  if (d) bsize = d->r_n;
  if (!strcmp(name, "step")) *out = (double)t->step;
  else if (!strcmp(name, "loss.student")) *out = t->student.last_loss;
  else if (!strcmp(name, "logz.student")) *out = t->student.policy->log_z;
  else if (!strcmp(name, "grad_norm.student")) *out = t->student.last_grad_norm;
  else if (!strcmp(name, "loss.teacher")) *out = tp ? t->teacher.last_loss : NAN;
  else if (!strcmp(name, "logz.teacher")) *out = tp ? tp->log_z : NAN;
  else if (!strcmp(name, "grad_norm.teacher")) *out = tp ? t->teacher.last_grad_norm : NAN;
  else if (!strcmp(name, "l1")) *out = visits_l1(&t->visits, t->env);
  else if (!strcmp(name, "modes")) *out = mode_total ? (double)t->visits.modes_found : NAN;
  else if (!strcmp(name, "modes.total")) *out = mode_total ? (double)mode_total : NAN;
  else if (!strcmp(name, "reward_calls")) *out = (double)t->reward_calls;
  else if (!strcmp(name, "grad_steps")) *out = (double)t->grad_steps;
  else if (!strcmp(name, "visits")) *out = (double)t->visits.total;
  else if (!strcmp(name, "buffer.size")) *out = t->buffer || (d && d->fifo_cap) ? (double)bsize : NAN;
  else if (!strcmp(name, "source")) *out = t->last_source < 0 ? NAN : (double)t->last_source;
  else if (!strcmp(name, "eval.l1")) *out = t->eval_l1;
  else if (!strcmp(name, "eval.modes")) *out = t->eval_modes;
  else if (disc_metric(name) && !d) *out = NAN;
  else if (!strcmp(name, "unique")) *out = (double)d->n_seen;
  else if (!strcmp(name, "topk.reward")) *out = disc_topk_reward(d);
  else if (!strcmp(name, "topk.diversity")) *out = disc_topk_diversity(t);
  else if (!strcmp(name, "skipped")) *out = (double)d->skipped;
  else if (!strcmp(name, "eval.log_z")) *out = d->ev_log_z;
  else if (!strcmp(name, "eval.delta_log_z")) *out = d->log_z_true - d->ev_log_z;
  else if (!strcmp(name, "eval.elbo")) *out = d->ev_elbo;
  else if (!strcmp(name, "eval.eubo")) *out = d->ev_eubo;
  else if (!strcmp(name, "eval.pearson")) *out = d->ev_pearson;
  else if (!strcmp(name, "eval.expected_reward")) *out = d->ev_expected_reward;
  else if (other_kind_metric(t, name)) *out = NAN;
  else return tchi_fail(TCH_E_ARG, "unknown metric '%s'", name);
  return TCH_OK;
}

/* ---- checkpoint body of the discovery state ------------------------------------------------ */
#define DISC_SECTION_VERSION 1u

int tchi_trainer_has_discovery_state(const tch_trainer *t)
{
  return t->kind == TCHI_TRAINER_DISCRETE && (t->disc || (!t->env->exact && t->visits.seen_mode));
}

/* Version, the mode flags of a SeqPA env without exact target (count, total visits, ids),
 * then with the discovery schedule: the entries in first-seen order (key, log R, raw
 * reward, adv), both FIFOs oldest first, the skip counter and the last evaluation. The
 * top-k heap is rebuilt from the entries on reading. */
void tchi_trainer_write_discovery(const tch_trainer *t, tchi_writer *w)
{
  tchi_put_u32(w, DISC_SECTION_VERSION);
  const tchi_visits *v = &t->visits;
  const size_t n_list = !t->env->exact && v->seen_mode ? visits_mode_total(v, t->env) : 0;
  tchi_put_u64(w, n_list ? v->modes_found : 0);
  tchi_put_u64(w, n_list ? v->total : 0);
  for (size_t k = 0; k < n_list; k++)
    if (v->seen_mode[k]) tchi_put_u64(w, k);
  const tchi_disc *d = t->disc;
  tchi_put_u32(w, d != NULL);
  if (!d) return;
  tchi_put_u64(w, d->n_seen);
  for (size_t i = 0; i < d->n_seen; i++) {
    tchi_put_u64(w, d->key[i]);
    tchi_put_f64(w, d->log_r[i]);
    tchi_put_f64(w, d->real[i]);
    tchi_put_f64(w, d->adv[i]);
  }
  tchi_put_u64(w, d->fifo_cap);
  tchi_put_u64(w, d->r_n);
  for (size_t i = 0; i < d->r_n; i++) tchi_put_u32(w, d->rfifo[(d->r_head + i) % d->fifo_cap]);
  tchi_put_u64(w, d->l_n);
  for (size_t i = 0; i < d->l_n; i++) tchi_put_u32(w, d->lfifo[(d->l_head + i) % d->fifo_cap]);
  tchi_put_u64(w, d->skipped);
  tchi_put_f64(w, d->ev_log_z);
  tchi_put_f64(w, d->ev_elbo);
  tchi_put_f64(w, d->ev_eubo);
  tchi_put_f64(w, d->ev_pearson);
  tchi_put_f64(w, d->ev_expected_reward);
}

static tch_status disc_malformed(const tchi_reader *r, const char *what)
{
  return tchi_fail(TCH_E_IO, "'%s': malformed checkpoint (discovery state: %s)", r->path, what);
}

/* Reads a FIFO of n ids < n_seen into ring (head 0); flags (may be NULL) marks members. */
static tch_status read_fifo(tchi_reader *r, tchi_disc *d, uint32_t *ring, size_t *n_out,
                            uint8_t *flags)
{
  uint64_t n;
  tch_status s = tchi_get_u64(r, &n);
  if (s) return s;
  if (n > d->fifo_cap || (n && !d->fifo_cap)) return disc_malformed(r, "FIFO size");
  for (size_t i = 0; i < n; i++) {
    uint32_t id;
    if ((s = tchi_get_u32(r, &id))) return s;
    if (id >= d->n_seen || (flags && flags[id])) return disc_malformed(r, "FIFO entry");
    ring[i] = id;
    if (flags) flags[id] = 1;
  }
  *n_out = (size_t)n;
  return TCH_OK;
}

tch_status tchi_trainer_read_discovery(tchi_reader *r, tch_trainer *t)
{
  uint32_t version, has;
  uint64_t modes, total;
  tch_status s;
  if ((s = tchi_get_u32(r, &version))) return s;
  if (version != DISC_SECTION_VERSION) return disc_malformed(r, "unknown version");
  tchi_visits *v = &t->visits;
  const size_t n_list = !t->env->exact && v->seen_mode ? visits_mode_total(v, t->env) : 0;
  if ((s = tchi_get_u64(r, &modes)) || (s = tchi_get_u64(r, &total))) return s;
  if (modes > n_list) return disc_malformed(r, "mode count");
  if (n_list) memset(v->seen_mode, 0, n_list);
  for (uint64_t i = 0; i < modes; i++) {
    uint64_t k;
    if ((s = tchi_get_u64(r, &k))) return s;
    if (k >= n_list || v->seen_mode[k]) return disc_malformed(r, "mode id");
    v->seen_mode[k] = 1;
  }
  if (n_list) {
    v->modes_found = (size_t)modes;
    v->total = total;
  }
  if ((s = tchi_get_u32(r, &has))) return s;
  tchi_disc *d = t->disc;
  if ((has != 0) != (d != NULL)) return disc_malformed(r, "train.schedule differs");
  if (!d) return TCH_OK;
  uint64_t n_seen, cap;
  if ((s = tchi_get_u64(r, &n_seen))) return s;
  if (n_seen >= DISC_NIL) return disc_malformed(r, "entry count");
  /* start from an empty set (the trainer was just created) */
  d->n_seen = d->r_n = d->l_n = d->r_head = d->l_head = d->heap_n = 0;
  if (d->table) for (size_t i = 0; i <= d->table_mask; i++) d->table[i] = DISC_NIL;
  if ((s = disc_reserve(d, (size_t)n_seen))) return s;
  uint64_t n_keys = t->env->exact ? t->env->exact->n : 1;   /* keys are below this */
  for (uint32_t i = 0; !t->env->exact && i < d->task->len; i++) n_keys *= d->task->n_chars;
  const size_t fifo_cap = d->fifo_cap;
  d->fifo_cap = 0;   /* disc_insert must not fill the FIFOs: they are read below */
  for (uint64_t i = 0; i < n_seen; i++) {
    uint64_t key;
    double lr, real, adv;
    if ((s = tchi_get_u64(r, &key)) || (s = tchi_get_f64(r, &lr)) || (s = tchi_get_f64(r, &real)) ||
        (s = tchi_get_f64(r, &adv)))
      break;
    if (key >= n_keys || disc_find(d, key) != DISC_NIL) {
      s = disc_malformed(r, "entry key");
      break;
    }
    uint32_t id = disc_insert(d, key, lr, real);
    d->adv[id] = adv;
  }
  d->fifo_cap = fifo_cap;
  if (s) return s;
  if ((s = tchi_get_u64(r, &cap))) return s;
  if (cap != d->fifo_cap) return disc_malformed(r, "buffer.capacity differs");
  if ((s = read_fifo(r, d, d->rfifo, &d->r_n, NULL)) ||
      (s = read_fifo(r, d, d->lfifo, &d->l_n, d->in_l)) ||
      (s = tchi_get_u64(r, &d->skipped)) || (s = tchi_get_f64(r, &d->ev_log_z)) ||
      (s = tchi_get_f64(r, &d->ev_elbo)) || (s = tchi_get_f64(r, &d->ev_eubo)) ||
      (s = tchi_get_f64(r, &d->ev_pearson)) || (s = tchi_get_f64(r, &d->ev_expected_reward)))
    return s;
  return TCH_OK;
}
