/* Progress display of `teacher train` on stderr: a single redrawn bar on a terminal, plain
 * lines otherwise. Display only: nothing here feeds back into training. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include "cli.h"

double tcli_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void tcli_format_duration(char *buf, size_t len, double seconds)
{
  if (!isfinite(seconds) || seconds < 0) {
    snprintf(buf, len, "--:--");
    return;
  }
  unsigned long s = (unsigned long)(seconds + 0.5);
  if (s >= 3600)
    snprintf(buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(buf, len, "%lu:%02lu", s / 60, s % 60);
}

double tcli_metric(const tch_trainer *t, const char *name)
{
  double v;
  return tch_trainer_metric(t, name, &v) == TCH_OK ? v : NAN;
}

void tcli_progress_init(tcli_progress *p, tcli_progress_mode mode, uint64_t start_step,
                        uint64_t target, double t0)
{
  memset(p, 0, sizeof *p);
  p->mode = mode;
  p->start_step = start_step;
  p->target = target;
  p->t0 = t0;
  p->last_draw = -1e300;
}

/* Steps per second of this invocation, NaN before there is anything to measure. */
static double rate(const tcli_progress *p, uint64_t step, double now)
{
  double dt = now - p->t0;
  if (step <= p->start_step || dt <= 0) return NAN;
  return (double)(step - p->start_step) / dt;
}

static void format_rate(char *buf, size_t len, double r)
{
  if (!isfinite(r)) snprintf(buf, len, "-- it/s");
  else if (r >= 100) snprintf(buf, len, "%.0f it/s", r);
  else snprintf(buf, len, "%.1f it/s", r);
}

static void format_modes(char *buf, size_t len, const tch_trainer *t)
{
  double m = tcli_metric(t, "modes"), total = tcli_metric(t, "modes.total");
  if (isnan(m)) snprintf(buf, len, "modes -");
  else if (isnan(total)) snprintf(buf, len, "modes %.0f", m);
  else snprintf(buf, len, "modes %.0f/%.0f", m, total);
}

static int terminal_width(void)
{
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
  return 80;
}

static void draw_bar(tcli_progress *p, const tch_trainer *t, uint64_t step, double now)
{
  double frac = p->target > 0 ? (double)step / (double)p->target : 1.0;
  if (frac > 1) frac = 1;
  char modes[64], r[32], eta[32], rest[256];
  format_modes(modes, sizeof modes, t);
  double it_s = rate(p, step, now);
  format_rate(r, sizeof r, it_s);
  tcli_format_duration(eta, sizeof eta, isfinite(it_s) ? (double)(p->target - step) / it_s : NAN);
  /* Diffusion trainers have no modes to count; their learned log Z is the thing to watch. */
  if (p->diffusion) snprintf(modes, sizeof modes, "logZ %.4g", tcli_metric(t, "logz.student"));
  int n = snprintf(rest, sizeof rest, " %llu/%llu %3.0f%% | loss %.3g | %s | %s | ETA %s",
                   (unsigned long long)step, (unsigned long long)p->target, 100 * frac,
                   tcli_metric(t, "loss.student"), modes, r, eta);
  /* The bar takes what the terminal leaves (5..20 cells); the rest is cut if too narrow. */
  int cols = terminal_width() - 1, width = cols - 2 - n;
  if (width > 20) width = 20;
  if (width < 5) width = 5;
  char line[512];
  int filled = (int)(frac * width), k = 0;
  line[k++] = '[';
  for (int i = 0; i < width; i++) line[k++] = i < filled ? '#' : '.';
  line[k++] = ']';
  snprintf(line + k, sizeof line - (size_t)k, "%s", rest);
  if (cols < (int)sizeof line && (int)strlen(line) > cols) line[cols] = '\0';
  fprintf(stderr, "\r%s\033[K", line);
  fflush(stderr);
  p->on_screen = 1;
  p->last_draw = now;
}

void tcli_progress_tick(tcli_progress *p, const tch_trainer *t, uint64_t step, double now,
                        int force)
{
  if (p->mode != TCLI_PROGRESS_BAR) return;
  if (!force && now - p->last_draw < 0.1) return;
  draw_bar(p, t, step, now);
}

void tcli_progress_line(tcli_progress *p, const tch_trainer *t, uint64_t step, double now)
{
  if (p->mode != TCLI_PROGRESS_LINES) return;
  char modes[64], r[32], eta[32], elapsed[32], teacher[64] = "";
  format_modes(modes, sizeof modes, t);
  double it_s = rate(p, step, now);
  format_rate(r, sizeof r, it_s);
  tcli_format_duration(elapsed, sizeof elapsed, now - p->t0);
  tcli_format_duration(eta, sizeof eta, step >= p->target ? 0.0
                       : isfinite(it_s) ? (double)(p->target - step) / it_s : NAN);
  double tl = tcli_metric(t, "loss.teacher");
  if (!isnan(tl)) snprintf(teacher, sizeof teacher, " | teacher loss %.4g", tl);
  if (p->diffusion) {
    char buffer[64] = "";
    double bs = tcli_metric(t, "buffer.size");
    if (!isnan(bs)) snprintf(buffer, sizeof buffer, " | buffer %.0f", bs);
    fprintf(stderr, "step %llu/%llu (%.0f%%) | loss %.4g | logZ %.4g%s%s | %s | elapsed %s | "
            "ETA %s\n",
            (unsigned long long)step, (unsigned long long)p->target,
            p->target ? 100.0 * (double)step / (double)p->target : 100.0,
            tcli_metric(t, "loss.student"), tcli_metric(t, "logz.student"), teacher, buffer, r,
            elapsed, eta);
    fflush(stderr);
    return;
  }
  fprintf(stderr, "step %llu/%llu (%.0f%%) | loss %.4g | logZ %.4g%s | %s | L1 %.3e | %s | "
          "elapsed %s | ETA %s\n",
          (unsigned long long)step, (unsigned long long)p->target,
          p->target ? 100.0 * (double)step / (double)p->target : 100.0,
          tcli_metric(t, "loss.student"), tcli_metric(t, "logz.student"), teacher, modes,
          tcli_metric(t, "l1"), r, elapsed, eta);
  fflush(stderr);
}

void tcli_progress_end(tcli_progress *p, const tch_trainer *t, uint64_t step, double now)
{
  if (p->mode != TCLI_PROGRESS_BAR) return;
  draw_bar(p, t, step, now);
  fputc('\n', stderr);
  fflush(stderr);
  p->on_screen = 0;
}

void tcli_progress_clear(tcli_progress *p)
{
  if (p->mode != TCLI_PROGRESS_BAR || !p->on_screen) return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  p->on_screen = 0;
  p->last_draw = -1e300;   /* redraw at the next tick */
}
