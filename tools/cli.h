/* Internal interfaces of the `teacher` command-line program (tools/). Public API only:
 * everything here is built on <teacher.h>. */
#ifndef TEACHER_TOOLS_CLI_H
#define TEACHER_TOOLS_CLI_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <teacher.h>

/* Monotonic wall clock in seconds (never affects training). */
double tcli_now(void);
/* "1:02:03" or "2:03" into buf. */
void tcli_format_duration(char *buf, size_t len, double seconds);
/* A metric by name, NaN if the trainer does not define it. */
double tcli_metric(const tch_trainer *t, const char *name);
/* One metric value as the metrics files write it: %.17g; non-finite values nan/inf/-inf in
 * CSV, null in JSON. */
void tcli_put_value(FILE *f, double v, int json);

/* ---- metrics file (metrics.c) ----------------------------------------------------------
 * One record per line: every metric of tch_trainer_next_metric, then "wall_s" (wall-clock
 * seconds of the run, summed over resumed invocations) and "final" (1 on the record written
 * when an invocation reaches its target step count, else 0). Format by extension: .csv
 * (header line, NaN as "nan") or .jsonl (one object per line, NaN/Inf as null). */
typedef enum tcli_metrics_format {
  TCLI_METRICS_UNKNOWN = -1,
  TCLI_METRICS_CSV = 0,
  TCLI_METRICS_JSONL = 1
} tcli_metrics_format;

typedef struct tcli_metrics tcli_metrics;

tcli_metrics_format tcli_metrics_format_of(const char *path);
/* Opens the metrics file of a run at start_step. Fresh runs (resume = 0) truncate it.
 * Resumed runs keep the records with step <= start_step (< start_step unless keep_start:
 * an invocation with nothing to train rewrites its final record), dropping any written after
 * the checkpoint by an invocation that died, and append; *wall_offset is the wall_s of the
 * last kept record and *have_start is 1 when that record is at start_step. Returns 0, or
 * -1 with a message in err. */
int tcli_metrics_open(const char *path, const tch_trainer *tr, int resume, uint64_t start_step,
                      int keep_start, tcli_metrics **out, double *wall_offset, int *have_start, char *err,
                      size_t err_len);
/* Appends one record and flushes; the eval.* metrics are written only when with_eval (the
 * record follows an evaluation), NaN otherwise. 0, or -1 with a message in err. */
int tcli_metrics_write(tcli_metrics *m, const tch_trainer *tr, double wall_s, int final,
                       int with_eval, char *err, size_t err_len);
/* Closes the file; -1 (message in err) if a buffered write failed. NULL is a no-op. */
int tcli_metrics_close(tcli_metrics *m, char *err, size_t err_len);

/* ---- progress display on stderr (progress.c) ---------------------------------------- */
typedef enum tcli_progress_mode {
  TCLI_PROGRESS_QUIET = 0,   /* --quiet */
  TCLI_PROGRESS_BAR = 1,     /* stderr is a terminal: one line redrawn <= 10 times/s */
  TCLI_PROGRESS_LINES = 2    /* otherwise: a plain line per log interval */
} tcli_progress_mode;

typedef struct tcli_progress {
  tcli_progress_mode mode;
  int diffusion;      /* a diffusion trainer: show log Z and the buffer, not modes and L1 */
  uint64_t start_step, target;
  double t0;          /* tcli_now() when this invocation started training */
  double last_draw;   /* time of the last bar redraw */
  int on_screen;      /* a bar is drawn and the cursor is on its line */
} tcli_progress;

void tcli_progress_init(tcli_progress *p, tcli_progress_mode mode, uint64_t start_step,
                        uint64_t target, double t0);
/* Bar mode: redraws if >= 0.1 s since the last redraw (or force). */
void tcli_progress_tick(tcli_progress *p, const tch_trainer *t, uint64_t step, double now,
                        int force);
/* Lines mode: one plain progress line. */
void tcli_progress_line(tcli_progress *p, const tch_trainer *t, uint64_t step, double now);
/* Bar mode: final redraw and newline, so later output starts on a fresh line. */
void tcli_progress_end(tcli_progress *p, const tch_trainer *t, uint64_t step, double now);
/* Erases the bar before other stderr output (it is redrawn at the next tick). */
void tcli_progress_clear(tcli_progress *p);

/* ---- plots of diffusion samplers (plot.c) ------------------------------------------- */
typedef struct tcli_plot_opts {
  const char *path;            /* the PNG file */
  int have_range;              /* 0: chosen from the target (or the samples) */
  double x_min, x_max, y_min, y_max;
  uint32_t dim_x, dim_y;       /* the coordinates drawn (--plot-dims) */
  size_t n_samples;            /* Student samples drawn as dots */
  int size;                    /* pixels per side */
  uint64_t seed;               /* seed of the samples */
} tcli_plot_opts;

/* Writes the plot of a diffusion trainer's Student (o->n_samples fresh samples, coordinates
 * dim_x and dim_y) over the target's log density on a size x size grid. On success returns
 * 0 and describes what was drawn in note; else -1 with a message in err. */
int tcli_plot_diffusion(tch_trainer *t, const tcli_plot_opts *o, char *note, size_t note_len,
                        char *err, size_t err_len);

#endif /* TEACHER_TOOLS_CLI_H */
