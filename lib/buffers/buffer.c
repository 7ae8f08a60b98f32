/* tch_buffer: replay buffer with FIFO eviction, de-duplication with refresh, and uniform or
 * rank-based sampling in O(log N) per draw (see buffer.h for the layout). */
#include <math.h>
#include <string.h>
#include "buffer.h"
#include "envs/env.h"
#include "gfn/gfn.h"

#define NIL TCHI_BUFFER_NIL
#define BUFFER_TAG 0x42484354u   /* "TCHB" as little-endian bytes */
#define BUFFER_FORMAT 1u

enum { TREE_FIFO = 0, TREE_RANK = 1 };

/* ---- hashing ------------------------------------------------------------------------- */
/* splitmix64 finaliser: a bijection on 64-bit words. */
static inline uint64_t mix64(uint64_t z)
{
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ull;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z;
}

static inline uint64_t rotl64(uint64_t x, unsigned k) { return (x << k) | (x >> (64 - k)); }

static uint64_t hash_record(const int32_t *x, uint32_t d)
{
  uint64_t h = 0x9e3779b97f4a7c15ull ^ d;
  for (uint32_t i = 0; i < d; i++) {
    h ^= (uint64_t)(uint32_t)x[i] * 0x87c37b91114253d5ull;
    h = rotl64(h, 31) * 0x4cf5ad432745937full;
  }
  return mix64(h);
}

/* ---- order-statistics treaps ---------------------------------------------------------- */
/* Keys are read from the nodes themselves; kind selects the order. */
static inline int key_less(int kind, const tchi_osnode *x, const tchi_osnode *y)
{
  if (kind == TREE_RANK && x->prio != y->prio) return x->prio > y->prio;
  return x->seq < y->seq;
}

/* Heap order: x above y by (hk, seq), hk = the high half of a bijective hash of seq,
 * cached in the node; (hk, seq) is unique, so the shape is a function of the items. */
static inline int heap_above(const tchi_osnode *x, const tchi_osnode *y)
{
  return x->hk != y->hk ? x->hk > y->hk : x->seq > y->seq;
}

static inline uint32_t tsize(const tchi_osnode *nd, uint32_t x) { return x == NIL ? 0 : nd[x].sz; }
static inline void tupdate(tchi_osnode *nd, uint32_t x)
{
  nd[x].sz = 1 + tsize(nd, nd[x].l) + tsize(nd, nd[x].r);
}

/* Splits subtree x into keys < key(k) and the rest. */
static void tsplit(tchi_osnode *nd, int kind, uint32_t x, const tchi_osnode *k, uint32_t *lo,
                   uint32_t *hi)
{
  if (x == NIL) {
    *lo = *hi = NIL;
    return;
  }
  if (key_less(kind, &nd[x], k)) {
    tsplit(nd, kind, nd[x].r, k, &nd[x].r, hi);
    *lo = x;
  } else {
    tsplit(nd, kind, nd[x].l, k, lo, &nd[x].l);
    *hi = x;
  }
  tupdate(nd, x);
}

/* Merges two subtrees, every key of x before every key of y. */
static uint32_t tmerge(tchi_osnode *nd, uint32_t x, uint32_t y)
{
  if (x == NIL) return y;
  if (y == NIL) return x;
  if (heap_above(&nd[x], &nd[y])) {
    nd[x].r = tmerge(nd, nd[x].r, y);
    tupdate(nd, x);
    return x;
  }
  nd[y].l = tmerge(nd, x, nd[y].l);
  tupdate(nd, y);
  return y;
}

/* Inserts node k (keys set) into subtree x. */
static uint32_t tinsert(tchi_osnode *nd, int kind, uint32_t x, uint32_t k)
{
  if (x == NIL) {
    nd[k].l = nd[k].r = NIL;
    nd[k].sz = 1;
    return k;
  }
  if (heap_above(&nd[k], &nd[x])) {
    tsplit(nd, kind, x, &nd[k], &nd[k].l, &nd[k].r);
    tupdate(nd, k);
    return k;
  }
  if (key_less(kind, &nd[k], &nd[x])) nd[x].l = tinsert(nd, kind, nd[x].l, k);
  else nd[x].r = tinsert(nd, kind, nd[x].r, k);
  nd[x].sz++;
  return x;
}

/* Removes k (which must be in the subtree). */
static uint32_t terase(tchi_osnode *nd, int kind, uint32_t x, uint32_t k)
{
  if (x == k) return tmerge(nd, nd[x].l, nd[x].r);
  if (key_less(kind, &nd[k], &nd[x])) nd[x].l = terase(nd, kind, nd[x].l, k);
  else nd[x].r = terase(nd, kind, nd[x].r, k);
  nd[x].sz--;
  return x;
}

/* The slot of rank i (0-based), i < size. */
static uint32_t tselect(const tchi_ostree *t, size_t i)
{
  const tchi_osnode *nd = t->nd;
  uint32_t x = t->root;
  for (;;) {
    size_t ls = tsize(nd, nd[x].l);
    if (i < ls) {
      x = nd[x].l;
    } else if (i == ls) {
      return x;
    } else {
      i -= ls + 1;
      x = nd[x].r;
    }
  }
}

/* ---- hash table ------------------------------------------------------------------------ */
static uint32_t ht_find(const tch_buffer *b, const int32_t *rec, uint64_t h)
{
  size_t i = (size_t)h & b->table_mask;
  const size_t bytes = (size_t)b->record_dim * sizeof(int32_t);
  for (;;) {
    uint32_t s = b->table[i];
    if (s == NIL) return NIL;
    if (b->hash[s] == h && memcmp(b->records + (size_t)s * b->record_dim, rec, bytes) == 0)
      return s;
    i = (i + 1) & b->table_mask;
  }
}

static void ht_insert(tch_buffer *b, uint32_t s)
{
  size_t i = (size_t)b->hash[s] & b->table_mask;
  while (b->table[i] != NIL) i = (i + 1) & b->table_mask;
  b->table[i] = s;
}

/* Backward-shift deletion keeps probe chains intact without tombstones. */
static void ht_remove(tch_buffer *b, uint32_t s)
{
  const size_t mask = b->table_mask;
  size_t i = (size_t)b->hash[s] & mask;
  while (b->table[i] != s) i = (i + 1) & mask;
  size_t j = i;
  for (;;) {
    j = (j + 1) & mask;
    uint32_t t = b->table[j];
    if (t == NIL) break;
    size_t home = (size_t)b->hash[t] & mask;
    /* t may stay if its home lies cyclically in (i, j] */
    int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    b->table[i] = t;
    i = j;
  }
  b->table[i] = NIL;
}

/* ---- storage ----------------------------------------------------------------------------- */
static int grow(void *pp, size_t count, size_t size)
{
  int ovf = 0;
  size_t bytes = tchi_mul_size(count, size, &ovf);
  if (ovf) return 0;
  void **p = (void **)pp;
  void *q = tchi_realloc(*p, bytes);
  if (!q) return 0;
  *p = q;
  return 1;
}

/* Ensures room for `need` live items (need <= capacity) and a hash table at load <= 1/2.
 * On failure the buffer is unchanged (some arrays may have grown; that is harmless). */
static tch_status reserve(tch_buffer *b, size_t need)
{
  if (need <= b->alloc_cap) return TCH_OK;
  size_t cap = b->alloc_cap ? 2 * b->alloc_cap : 16;
  if (cap < need) cap = need;
  if (cap > b->capacity) cap = b->capacity;
  if (!grow(&b->records, cap, (size_t)b->record_dim * sizeof(int32_t)) ||
      !grow(&b->log_r, cap, sizeof(double)) || !grow(&b->hash, cap, sizeof(uint64_t)) ||
      !grow(&b->fifo.nd, cap, sizeof(tchi_osnode)) || !grow(&b->rank.nd, cap, sizeof(tchi_osnode)))
    return tchi_fail(TCH_E_NOMEM, "out of memory growing a replay buffer to %zu records", cap);
  size_t tsz = 16;
  while (tsz < 2 * cap) tsz *= 2;
  if (!b->table || tsz > b->table_mask + 1) {
    uint32_t *nt = NULL;
    tch_status s = tchi_alloc_array(&nt, tsz, sizeof(uint32_t), 0, "replay buffer hash table");
    if (s) return s;
    memset(nt, 0xff, tsz * sizeof(uint32_t));   /* NIL */
    tchi_free(b->table);
    b->table = nt;
    b->table_mask = tsz - 1;
    for (uint32_t s2 = 0; s2 < b->used; s2++)
      if (b->fifo.nd[s2].seq != 0) ht_insert(b, s2);
  }
  b->alloc_cap = cap;
  return TCH_OK;
}

static uint32_t take_slot(tch_buffer *b)
{
  if (b->free_head != NIL) {
    uint32_t s = b->free_head;
    b->free_head = b->fifo.nd[s].l;
    return s;
  }
  return b->used++;
}

/* Indexes a slot whose record is already in place (room reserved, record absent). */
static void link_item(tch_buffer *b, uint32_t s, double log_r, double prio, uint64_t seq,
                      uint64_t h)
{
  b->log_r[s] = log_r;
  b->hash[s] = h;
  b->fifo.nd[s].seq = b->rank.nd[s].seq = seq;
  b->fifo.nd[s].hk = b->rank.nd[s].hk = (uint32_t)(mix64(seq) >> 32);
  b->fifo.nd[s].prio = b->rank.nd[s].prio = prio;
  ht_insert(b, s);
  b->fifo.root = tinsert(b->fifo.nd, TREE_FIFO, b->fifo.root, s);
  b->rank.root = tinsert(b->rank.nd, TREE_RANK, b->rank.root, s);
  b->n++;
}

static void remove_item(tch_buffer *b, uint32_t s)
{
  ht_remove(b, s);
  b->fifo.root = terase(b->fifo.nd, TREE_FIFO, b->fifo.root, s);
  b->rank.root = terase(b->rank.nd, TREE_RANK, b->rank.root, s);
  b->fifo.nd[s].seq = 0;
  b->fifo.nd[s].l = b->free_head;
  b->free_head = s;
  b->n--;
}

/* Adds one record (room reserved): refresh if present, else evict the oldest when full. */
static void add_one(tch_buffer *b, const int32_t *rec, double log_r, double prio)
{
  uint64_t h = hash_record(rec, b->record_dim);
  uint32_t old = ht_find(b, rec, h);
  if (old != NIL) remove_item(b, old);
  else if (b->n == b->capacity) remove_item(b, tselect(&b->fifo, 0));
  uint32_t s = take_slot(b);
  memcpy(b->records + (size_t)s * b->record_dim, rec, (size_t)b->record_dim * sizeof(int32_t));
  link_item(b, s, log_r, prio, b->next_seq++, h);
}

/* ---- internal API ------------------------------------------------------------------------ */
tch_status tchi_buffer_create(uint32_t record_dim, size_t capacity, tch_priority priority,
                              double rank_k, tch_buffer **out)
{
  *out = NULL;
  if (record_dim == 0) return tchi_fail(TCH_E_ARG, "buffer record_dim must be >= 1");
  if (capacity == 0) return tchi_fail(TCH_E_ARG, "buffer capacity must be >= 1");
  if (capacity > TCHI_BUFFER_MAX_CAPACITY)
    return tchi_fail(TCH_E_ARG, "buffer capacity %zu exceeds the maximum %zu", capacity,
                     TCHI_BUFFER_MAX_CAPACITY);
  if ((unsigned)priority > (unsigned)TCH_PRIORITY_TEACHER_REWARD)
    return tchi_fail(TCH_E_ARG, "unknown buffer priority mode %d", (int)priority);
  if (!(rank_k > 0.0) || !isfinite(rank_k))
    return tchi_fail(TCH_E_ARG, "buffer rank_k %g must be positive and finite", rank_k);
  tch_buffer *b = tchi_calloc(1, sizeof *b);
  if (!b) return tchi_fail(TCH_E_NOMEM, "out of memory allocating a replay buffer");
  tchi_ref_init(&b->ref);
  b->record_dim = record_dim;
  b->priority = priority;
  b->rank_k = rank_k;
  b->capacity = capacity;
  b->next_seq = 1;
  b->free_head = NIL;
  b->fifo.root = b->rank.root = NIL;
  *out = b;
  return TCH_OK;
}

static void buffer_destroy(tch_buffer *b)
{
  tchi_free(b->records);
  tchi_free(b->log_r);
  tchi_free(b->hash);
  tchi_free(b->fifo.nd);
  tchi_free(b->rank.nd);
  tchi_free(b->table);
  tchi_free(b);
}

void tchi_buffer_release(tch_buffer *b)
{
  if (b && tchi_ref_dec(&b->ref)) buffer_destroy(b);
}

double tchi_buffer_max_priority(const tch_buffer *b)
{
  return b->n ? b->rank.nd[tselect(&b->rank, 0)].prio : 1.0;
}

tch_status tchi_buffer_add(tch_buffer *b, size_t n, const int32_t *records, const double *log_r,
                           const double *priority)
{
  if (n == 0) return TCH_OK;
  for (size_t i = 0; i < n; i++) {
    if (isnan(log_r[i]))
      return tchi_fail(TCH_E_NUMERIC, "buffer add: log_r[%zu] is NaN (nothing added)", i);
    if (log_r[i] == INFINITY)
      return tchi_fail(TCH_E_NUMERIC, "buffer add: log_r[%zu] is +inf (nothing added)", i);
    if (priority) {
      if (!isfinite(priority[i]))
        return tchi_fail(TCH_E_NUMERIC, "buffer add: priority[%zu] is %g (nothing added)", i,
                         priority[i]);
    } else if (b->priority == TCH_PRIORITY_REWARD && isinf(exp(log_r[i]))) {
      return tchi_fail(TCH_E_NUMERIC, "buffer add: reward priority exp(%g) of record %zu "
                       "overflows; pass priorities explicitly (nothing added)", log_r[i], i);
    }
  }
  size_t need = n > b->capacity - b->n ? b->capacity : b->n + n;
  tch_status s = reserve(b, need);
  if (s) return s;
  const double def = b->priority == TCH_PRIORITY_LOSS || b->priority == TCH_PRIORITY_TEACHER_REWARD
                         ? tchi_buffer_max_priority(b) : 1.0;
  for (size_t i = 0; i < n; i++) {
    double pr = priority ? priority[i]
                : b->priority == TCH_PRIORITY_REWARD ? exp(log_r[i]) : def;
    add_one(b, records + i * b->record_dim, log_r[i], pr);
  }
  return TCH_OK;
}

/* ---- rank-based draws ---------------------------------------------------------------------- */
double tchi_digamma(double x)
{
  double acc = 0.0;
  while (x < 10.0) {   /* psi(x) = psi(x + 1) - 1/x */
    acc -= 1.0 / x;
    x += 1.0;
  }
  /* psi(x) ~ ln x - 1/(2x) - sum_k B_2k / (2k x^2k); next term < 5e-17 at x = 10 */
  double z = 1.0 / (x * x);
  double series =
      z * (1.0 / 12 -
      z * (1.0 / 120 -
      z * (1.0 / 252 -
      z * (1.0 / 240 -
      z * (1.0 / 132 -
      z * (691.0 / 32760 -
      z * (1.0 / 12)))))));
  return acc + log(x) - 0.5 / x - series;
}

/* Smallest r in [0, n) with psi(a + r + 1) - psi(a) > target (n - 1 if none: rounding at
 * u -> 1), given psi(a). The predicate is monotone in r, so any search finds the same r;
 * this one starts from psi(x) ~ ln(x - 1/2), which is within one rank for x >= 10, and
 * gallops outwards from it before bisecting: about three psi evaluations per draw. */
static size_t rank_search(double a, size_t n, double psi_a, double target)
{
#define RANK_P(r) (tchi_digamma(a + (double)(r) + 1.0) - psi_a > target)
  if (n == 1) return 0;
  double g = ceil(exp(psi_a + target) + 0.5 - a - 1.0);
  size_t r = !(g > 0.0) ? 0 : g >= (double)(n - 1) ? n - 1 : (size_t)g;
  /* bracket: P(hi) holds (hi = n - 1 needs no check); lo = -1 or P(lo) fails */
  int64_t lo, hi;
  if (r == n - 1 || RANK_P(r)) {
    hi = (int64_t)r;
    lo = -1;
    for (int64_t step = 1; hi - step >= 0; step *= 2) {
      if (!RANK_P(hi - step)) {
        lo = hi - step;
        break;
      }
      hi -= step;
    }
  } else {
    lo = (int64_t)r;
    hi = (int64_t)n - 1;
    for (int64_t step = 1; lo + step < (int64_t)n - 1; step *= 2) {
      if (RANK_P(lo + step)) {
        hi = lo + step;
        break;
      }
      lo += step;
    }
  }
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (RANK_P(mid)) hi = mid;
    else lo = mid;
  }
  return (size_t)hi;
#undef RANK_P
}

/* a = rank_k * N, kept away from 0 so that 1/a stays finite. */
static double rank_offset(const tch_buffer *b)
{
  double a = b->rank_k * (double)b->n;
  return a < 1e-300 ? 1e-300 : a;
}

size_t tchi_buffer_rank_from_u(double a, size_t n, double u)
{
  double psi_a = tchi_digamma(a);
  double total = tchi_digamma(a + (double)n) - psi_a;
  return rank_search(a, n, psi_a, u * total);
}

static uint64_t below64(tchi_rng *rng, uint64_t n)
{
  if (n <= UINT32_MAX) return tchi_rng_below(rng, (uint32_t)n);
  uint64_t lim = UINT64_MAX - UINT64_MAX % n, v;   /* unreachable at the capacity bound */
  do v = tchi_rng_u64(rng); while (v >= lim);
  return v % n;
}

tch_status tchi_buffer_sample(tch_buffer *b, tchi_rng *rng, size_t n, int32_t *out_records,
                              double *out_log_r)
{
  if (n == 0) return TCH_OK;
  if (b->n == 0) return tchi_fail(TCH_E_STATE, "cannot sample from an empty replay buffer");
  const uint32_t rd = b->record_dim;
  const int uniform = b->priority == TCH_PRIORITY_NONE;
  double a = 0.0, psi_a = 0.0, total = 0.0;
  if (!uniform) {
    a = rank_offset(b);
    psi_a = tchi_digamma(a);
    total = tchi_digamma(a + (double)b->n) - psi_a;
  }
  for (size_t i = 0; i < n; i++) {
    uint32_t s;
    if (uniform) {
      s = tselect(&b->fifo, (size_t)below64(rng, b->n));
    } else {
      double u = tchi_rng_uniform(rng);
      s = tselect(&b->rank, rank_search(a, b->n, psi_a, u * total));
    }
    if (out_records)
      memcpy(out_records + i * rd, b->records + (size_t)s * rd, rd * sizeof(int32_t));
    if (out_log_r) out_log_r[i] = b->log_r[s];
  }
  return TCH_OK;
}

void tchi_buffer_get(const tch_buffer *b, size_t i, int32_t *out_record, double *out_log_r,
                     double *out_priority)
{
  uint32_t s = tselect(&b->fifo, i);
  if (out_record)
    memcpy(out_record, b->records + (size_t)s * b->record_dim,
           (size_t)b->record_dim * sizeof(int32_t));
  if (out_log_r) *out_log_r = b->log_r[s];
  if (out_priority) *out_priority = b->rank.nd[s].prio;
}

void tchi_buffer_clear(tch_buffer *b)
{
  if (b->table) memset(b->table, 0xff, (b->table_mask + 1) * sizeof(uint32_t));
  b->n = 0;
  b->used = 0;
  b->free_head = NIL;
  b->fifo.root = b->rank.root = NIL;
}

/* ---- serialisation ------------------------------------------------------------------------ */
void tchi_buffer_write(const tch_buffer *b, tchi_writer *w)
{
  tchi_put_u32(w, BUFFER_TAG);
  tchi_put_u32(w, BUFFER_FORMAT);
  tchi_put_u32(w, b->record_dim);
  tchi_put_u32(w, (uint32_t)b->priority);
  tchi_put_u64(w, (uint64_t)b->capacity);
  tchi_put_f64(w, b->rank_k);
  tchi_put_u64(w, (uint64_t)b->n);
  tchi_put_u64(w, b->next_seq);
  for (size_t i = 0; i < b->n; i++) {
    uint32_t s = tselect(&b->fifo, i);
    tchi_put_u64(w, b->fifo.nd[s].seq);
    tchi_put_f64(w, b->log_r[s]);
    tchi_put_f64(w, b->rank.nd[s].prio);
    tchi_put(w, b->records + (size_t)s * b->record_dim, (size_t)b->record_dim * sizeof(int32_t));
  }
}

tch_status tchi_buffer_read(tchi_reader *r, tch_buffer **out)
{
  *out = NULL;
  const char *path = r->path ? r->path : "(memory)";
  uint32_t tag, format, rd, mode;
  uint64_t cap, n, next_seq;
  double rank_k;
  tch_status s;
  if ((s = tchi_get_u32(r, &tag)) || (s = tchi_get_u32(r, &format))) return s;
  if (tag != BUFFER_TAG) return tchi_fail(TCH_E_IO, "'%s': malformed replay buffer section", path);
  if (format != BUFFER_FORMAT)
    return tchi_fail(TCH_E_VERSION, "'%s': replay buffer format %u; this library reads format %u",
                     path, format, BUFFER_FORMAT);
  if ((s = tchi_get_u32(r, &rd)) || (s = tchi_get_u32(r, &mode)) || (s = tchi_get_u64(r, &cap)) ||
      (s = tchi_get_f64(r, &rank_k)) || (s = tchi_get_u64(r, &n)) ||
      (s = tchi_get_u64(r, &next_seq)))
    return s;
  if (rd == 0 || mode > (uint32_t)TCH_PRIORITY_TEACHER_REWARD || cap == 0 ||
      cap > TCHI_BUFFER_MAX_CAPACITY || !(rank_k > 0.0) || !isfinite(rank_k) || n > cap ||
      next_seq == 0 || n >= next_seq)
    return tchi_fail(TCH_E_IO, "'%s': malformed replay buffer header", path);
  const size_t item_bytes = 24 + (size_t)rd * sizeof(int32_t);
  if (n > (r->len - r->pos) / item_bytes)
    return tchi_fail(TCH_E_IO, "'%s': replay buffer section is truncated (%llu records)", path,
                     (unsigned long long)n);
  tch_buffer *b;
  if ((s = tchi_buffer_create(rd, (size_t)cap, (tch_priority)mode, rank_k, &b))) return s;
  if ((s = reserve(b, (size_t)n))) goto fail;
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t seq;
    double lr, pr;
    uint32_t slot = b->used;   /* no removals while reading: slots are handed out in order */
    int32_t *rec = b->records + (size_t)slot * rd;
    if ((s = tchi_get_u64(r, &seq)) || (s = tchi_get_f64(r, &lr)) || (s = tchi_get_f64(r, &pr)) ||
        (s = tchi_get(r, rec, (size_t)rd * sizeof(int32_t))))
      goto fail;
    if (seq <= prev || seq >= next_seq || isnan(lr) || lr == INFINITY || !isfinite(pr)) {
      s = tchi_fail(TCH_E_IO, "'%s': malformed replay buffer record %llu", path,
                    (unsigned long long)i);
      goto fail;
    }
    uint64_t h = hash_record(rec, rd);
    if (ht_find(b, rec, h) != NIL) {
      s = tchi_fail(TCH_E_IO, "'%s': duplicate replay buffer record %llu", path,
                    (unsigned long long)i);
      goto fail;
    }
    prev = seq;
    b->used++;
    link_item(b, slot, lr, pr, seq, h);
  }
  b->next_seq = next_seq;
  *out = b;
  return TCH_OK;
fail:
  tchi_buffer_release(b);
  return s;
}

/* ---- public API ------------------------------------------------------------------------------ */
#define CHECK_ARG(cond, ...) do { if (!(cond)) return tchi_fail(TCH_E_ARG, __VA_ARGS__); } while (0)

tch_status tch_buffer_create(uint32_t record_dim, size_t capacity, tch_priority priority,
                             double rank_k, tch_buffer **out)
{
  CHECK_ARG(out, "out is NULL");
  return tchi_buffer_create(record_dim, capacity, priority, rank_k, out);
}

tch_buffer *tch_buffer_retain(tch_buffer *b)
{
  if (b) tchi_ref_inc(&b->ref);
  return b;
}

void tch_buffer_free(tch_buffer *b) { tchi_buffer_release(b); }

tch_status tch_buffer_add(tch_buffer *b, size_t n, const int32_t *records, const double *log_r,
                          const double *priority)
{
  CHECK_ARG(b, "buffer is NULL");
  CHECK_ARG(n == 0 || (records && log_r), "records and log_r are required");
  return tchi_buffer_add(b, n, records, log_r, priority);
}

tch_status tch_buffer_add_discrete(tch_buffer *b, size_t n, const int32_t *states,
                                   const double *log_r)
{
  CHECK_ARG(b, "buffer is NULL");
  CHECK_ARG(n == 0 || (states && log_r), "states and log_r are required");
  return tchi_buffer_add(b, n, states, log_r, NULL);
}

tch_status tch_buffer_sample(tch_buffer *b, uint64_t seed, size_t n, int32_t *out_records,
                             double *out_log_r)
{
  CHECK_ARG(b, "buffer is NULL");
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_BUFFER, 0));
  return tchi_buffer_sample(b, &rng, n, out_records, out_log_r);
}

tch_status tch_buffer_sample_trajectories(tch_buffer *b, tch_policy *p, tch_env *env,
                                          uint64_t seed, size_t n, int32_t *out_states,
                                          int32_t *out_actions, uint32_t *out_len,
                                          double *out_log_r)
{
  CHECK_ARG(b, "buffer is NULL");
  CHECK_ARG(p, "policy is NULL");
  CHECK_ARG(env, "env is NULL");
  CHECK_ARG(out_states && out_actions && out_len, "out_states, out_actions and out_len are required");
  CHECK_ARG(env->kind == TCHI_ENV_DISCRETE, "env is not discrete");
  CHECK_ARG(b->record_dim == env->d.state_dim,
            "buffer record_dim %u does not match the env's state_dim %u", b->record_dim,
            env->d.state_dim);
  CHECK_ARG(p->state_dim == env->d.state_dim && p->n_actions == env->d.n_actions,
            "policy does not fit the env");
  if (n == 0) return TCH_OK;
  if (b->n == 0) return tchi_fail(TCH_E_STATE, "cannot sample from an empty replay buffer");
  tchi_rng rng;
  tchi_rng_seed(&rng, seed, tchi_stream_id(TCHI_STREAM_BUFFER, 0));
  int32_t *x = NULL;
  tch_status s = tchi_alloc_array(&x, n, (size_t)b->record_dim * sizeof(int32_t), 0,
                                  "sampled terminal states");
  if (s) return s;
  tchi_traj t;
  tchi_traj_init(&t);
  /* Draw into out_log_r directly: on failure the outputs are unspecified anyway. */
  s = tchi_buffer_sample(b, &rng, n, x, out_log_r);
  if (s == TCH_OK) s = tchi_sample_backward(p, env, &rng, n, x, &t);
  if (s == TCH_OK) {
    const size_t T = t.T, sd = t.state_dim;
    memcpy(out_states, t.states, n * T * sd * sizeof(int32_t));
    memcpy(out_actions, t.actions, n * T * sizeof(int32_t));
    memcpy(out_len, t.len, n * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++)
      memset(out_states + (i * T + t.len[i]) * sd, 0, (T - t.len[i]) * sd * sizeof(int32_t));
  }
  tchi_traj_destroy(&t);
  tchi_free(x);
  return s;
}

tch_status tch_buffer_size(const tch_buffer *b, size_t *out)
{
  CHECK_ARG(b && out, "buffer and out are required");
  *out = b->n;
  return TCH_OK;
}

tch_status tch_buffer_capacity(const tch_buffer *b, size_t *out)
{
  CHECK_ARG(b && out, "buffer and out are required");
  *out = b->capacity;
  return TCH_OK;
}

tch_status tch_buffer_record_dim(const tch_buffer *b, uint32_t *out)
{
  CHECK_ARG(b && out, "buffer and out are required");
  *out = b->record_dim;
  return TCH_OK;
}

tch_status tch_buffer_get(const tch_buffer *b, size_t i, int32_t *out_record, double *out_log_r,
                          double *out_priority)
{
  CHECK_ARG(b, "buffer is NULL");
  CHECK_ARG(i < b->n, "index %zu is out of range (size %zu)", i, b->n);
  tchi_buffer_get(b, i, out_record, out_log_r, out_priority);
  return TCH_OK;
}

tch_status tch_buffer_clear(tch_buffer *b)
{
  CHECK_ARG(b, "buffer is NULL");
  tchi_buffer_clear(b);
  return TCH_OK;
}
