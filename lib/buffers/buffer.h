/* Replay buffer, internal view (tch_buffer). A trainer embeds one by handle and drives it
 * with its own RNG; checkpoints serialise it with tchi_buffer_write / tchi_buffer_read.
 *
 * Layout: live items occupy slots of parallel arrays (grown geometrically up to the
 * capacity, never shrunk; no allocation per add or draw once warm). Each item has a
 * record, a log-reward, a priority and a seq (a monotone insertion counter; re-adding a
 * record gives it a new seq). Three index structures over the slots:
 *   - an open-addressing hash table keyed by the record bytes (de-duplication);
 *   - an order-statistics treap keyed by seq (FIFO order: eviction, uniform draws, get);
 *   - an order-statistics treap keyed by (priority desc, seq asc) (rank-based draws).
 * Treap heap order is by (hash of seq, seq), so the shape is a function of the items
 * alone; draws only use ranks, so they depend on the items, their priorities and seqs and
 * the RNG, never on slot positions or history: a buffer read back from its serialisation
 * samples identically. */
#ifndef TCHI_BUFFER_H
#define TCHI_BUFFER_H
#include "core/core.h"
#include "io/io.h"
#include "teacher/buffer.h"

#define TCHI_BUFFER_NIL UINT32_MAX
/* Largest capacity (slot indices are uint32, TCHI_BUFFER_NIL excluded). */
#define TCHI_BUFFER_MAX_CAPACITY ((size_t)UINT32_MAX - 1)

/* A node of a size-augmented treap over slots, with its keys inline so that a walk
 * touches one cache line per level. */
typedef struct tchi_osnode {
  uint32_t l, r, sz;
  uint32_t hk;             /* heap key: high half of a bijective hash of seq */
  uint64_t seq;            /* 0 in fifo marks a free slot */
  double prio;             /* used by the rank tree only */
} tchi_osnode;

typedef struct tchi_ostree {
  tchi_osnode *nd;         /* alloc_cap nodes, indexed by slot */
  uint32_t root;
} tchi_ostree;

struct tch_buffer {
  tchi_ref ref;
  uint32_t record_dim;
  tch_priority priority;
  double rank_k;
  size_t capacity;         /* maximum live items */
  size_t n;                /* live items */
  uint64_t next_seq;       /* seq given to the next insertion (>= 1) */
  /* slot storage, alloc_cap slots each */
  size_t alloc_cap;
  int32_t *records;        /* alloc_cap x record_dim */
  double *log_r;
  uint64_t *hash;          /* hash of the slot's record */
  uint32_t used;           /* high-water mark of slots ever handed out */
  uint32_t free_head;      /* free slots, linked through fifo.nd[].l */
  /* fifo: keyed by seq; rank: keyed by (prio desc, seq asc). A slot's seq is
   * fifo.nd[s].seq (= rank.nd[s].seq), its priority rank.nd[s].prio. */
  tchi_ostree fifo, rank;
  /* de-duplication: open addressing, linear probing, backward-shift deletion */
  uint32_t *table;         /* table_mask + 1 entries, slot or NIL */
  size_t table_mask;
};

/* Same contracts and error codes as the public functions (arguments unchecked beyond
 * what the public documentation lists as TCH_E_ARG for values). */
tch_status tchi_buffer_create(uint32_t record_dim, size_t capacity, tch_priority priority,
                              double rank_k, tch_buffer **out);
void tchi_buffer_release(tch_buffer *b);           /* drops one reference; NULL is a no-op */
/* Adds n records in order; priority NULL = the mode's default (see teacher/buffer.h).
 * Validates the whole batch and reserves memory first: on any error nothing changes. */
tch_status tchi_buffer_add(tch_buffer *b, size_t n, const int32_t *records,
                           const double *log_r, const double *priority);
/* n draws with replacement using the caller's rng (TCH_E_STATE if empty and n > 0).
 * Each draw consumes one tchi_rng_uniform (rank mode) or one tchi_rng_below (uniform).
 * Either output may be NULL. */
tch_status tchi_buffer_sample(tch_buffer *b, tchi_rng *rng, size_t n, int32_t *out_records,
                              double *out_log_r);
/* i-th item in FIFO order (0 = oldest), i < b->n; any output may be NULL. */
void tchi_buffer_get(const tch_buffer *b, size_t i, int32_t *out_record, double *out_log_r,
                     double *out_priority);
void tchi_buffer_clear(tch_buffer *b);
/* Largest priority of a live item, or 1.0 when empty (the default of seeded records). */
double tchi_buffer_max_priority(const tch_buffer *b);

/* Serialisation body (for checkpoints): tag "TCHB", version, header fields, next seq and
 * the items in FIFO order with their seq. Errors stick in w->status. */
void tchi_buffer_write(const tch_buffer *b, tchi_writer *w);
/* Reads and validates a body written by tchi_buffer_write and rebuilds the structures.
 * Malformed or truncated input is TCH_E_IO (with a message naming r->path). */
tch_status tchi_buffer_read(tchi_reader *r, tch_buffer **out);

/* ---- exposed for tests ------------------------------------------------------------- */
/* Digamma function psi(x) for x > 0 (recurrence up to x >= 10, then the asymptotic
 * series); about 1e-15 absolute / relative away from the root near 1.4616. */
double tchi_digamma(double x);
/* The rank r in [0, n) drawn by u in [0, 1) under weights 1 / (a + r): the smallest r with
 * psi(a + r + 1) - psi(a) > u * (psi(a + n) - psi(a)) (binary search; a > 0, n >= 1). */
size_t tchi_buffer_rank_from_u(double a, size_t n, double u);

#endif /* TCHI_BUFFER_H */
