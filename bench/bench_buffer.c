/* Benchmark: cost per add and per rank-based draw of tch_buffer as the capacity grows
 * (TEACHER_REWARD priorities, random), to show both are O(log N). A benchmark, not a test.
 *
 *   bench_buffer [--draws 1000000] [--dim 4] [--seed 0]
 *
 * For each capacity: fill the buffer (adds into a non-full buffer), then time
 * `capacity` more adds of fresh records (each evicts the oldest), then time draws in
 * batches of 256. Every add and draw touches the hash table and both treaps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "buffers/buffer.h"

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

#define CHECK(call)                                                                        \
  do {                                                                                     \
    tch_status s_ = (call);                                                                \
    if (s_ < 0) {                                                                          \
      fprintf(stderr, "%s: %s\n", #call, tch_last_error());                                \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

int main(int argc, char **argv)
{
  long draws = 1000000, dim = 4, seed = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--draws")) draws = atol(v);
    else if (!strcmp(k, "--dim")) dim = atol(v);
    else if (!strcmp(k, "--seed")) seed = atol(v);
    else { fprintf(stderr, "unknown option %s\n", k); return 2; }
  }
  if (draws < 256 || dim < 1) { fprintf(stderr, "bad options\n"); return 2; }
  const size_t caps[] = {1000, 10000, 100000, 1000000};
  const size_t chunk = 256;
  printf("tch_buffer, priority TEACHER_REWARD, rank_k 0.01, record_dim %ld\n", dim);
  printf("%10s %14s %14s %14s\n", "capacity", "fill ns/add", "evict ns/add", "ns/draw");
  tchi_rng rng;
  tchi_rng_seed(&rng, (uint64_t)seed, tchi_stream_id(TCHI_STREAM_USER, 0));
  int32_t *recs = malloc(chunk * (size_t)dim * sizeof *recs);
  double *lr = malloc(chunk * sizeof *lr), *pr = malloc(chunk * sizeof *pr);
  if (!recs || !lr || !pr) return 1;
  for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
    size_t cap = caps[c];
    tch_buffer *b;
    CHECK(tch_buffer_create((uint32_t)dim, cap, TCH_PRIORITY_TEACHER_REWARD, 0.01, &b));
    uint64_t next = 0;   /* record ids: distinct records, so every add is an insertion */
    double t_fill = 0, t_evict = 0;
    for (int phase = 0; phase < 2; phase++) {
      for (size_t done = 0; done < cap; done += chunk) {
        size_t m = cap - done < chunk ? cap - done : chunk;
        for (size_t i = 0; i < m; i++, next++) {
          int32_t *r = recs + i * (size_t)dim;
          r[0] = (int32_t)(uint32_t)next;   /* distinct by the first value alone */
          for (long d = 1; d < dim; d++) r[d] = (int32_t)((next * 2654435761u) >> (4 * d) & 0xffff);
          lr[i] = -tchi_rng_uniform(&rng);
          pr[i] = tchi_rng_uniform(&rng);
        }
        double t0 = now();
        CHECK(tch_buffer_add(b, m, recs, lr, pr));
        *(phase ? &t_evict : &t_fill) += now() - t0;
      }
    }
    size_t n;
    CHECK(tch_buffer_size(b, &n));
    if (n != cap) { fprintf(stderr, "size %zu != capacity %zu\n", n, cap); return 1; }
    tchi_rng drng;
    tchi_rng_seed(&drng, (uint64_t)seed, tchi_stream_id(TCHI_STREAM_BUFFER, 0));
    double t0 = now();
    for (long done = 0; done < draws; done += (long)chunk)
      CHECK(tchi_buffer_sample(b, &drng, chunk, recs, lr));
    double t_draw = now() - t0;
    long n_draws = (draws + (long)chunk - 1) / (long)chunk * (long)chunk;
    printf("%10zu %14.1f %14.1f %14.1f\n", cap, 1e9 * t_fill / (double)cap,
           1e9 * t_evict / (double)cap, 1e9 * t_draw / (double)n_draws);
    tch_buffer_free(b);
  }
  free(recs);
  free(lr);
  free(pr);
  return 0;
}
