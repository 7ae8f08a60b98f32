/* teacher: the command-line program of libteacher.
 *
 *   teacher train CONFIG.yaml [options]     train a sampler (docs/cli.md)
 *   teacher sample POLICY.tchp CONFIG.yaml  sample terminal objects from a saved policy
 *   teacher sample --checkpoint CKPT CONFIG sample the Student of a checkpoint (any env)
 *   teacher evaluate CKPT CONFIG            the eval.* metrics of a checkpoint's Student
 *   teacher config [CONFIG.yaml]            print the effective configuration as YAML
 *   teacher help [COMMAND] | --version
 *
 * Exit status: 0 success, 1 library or I/O error (tch_last_error() is printed), 2 bad
 * command line, 130/143 stopped by SIGINT/SIGTERM (after a checkpoint, if configured).
 * Uses the public API only. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <teacher.h>
#include "cli.h"

enum { EXIT_LIB = 1, EXIT_USAGE = 2 };

/* ---- messages ---------------------------------------------------------------------------- */
static const char *g_cmd = "";   /* subcommand, for messages */
static tcli_progress *g_progress;  /* bar to erase before other stderr output */

static void vmessage(const char *fmt, va_list ap)
{
  if (g_progress) tcli_progress_clear(g_progress);
  fprintf(stderr, "teacher%s%s: ", *g_cmd ? " " : "", g_cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
}

static void message(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vmessage(fmt, ap);
  va_end(ap);
}

/* A bad command line: one line on stderr, exit status 2. */
static _Noreturn void usage_error(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vmessage(fmt, ap);
  va_end(ap);
  exit(EXIT_USAGE);
}

/* "<what>: <library detail>" for a failed library call; returns EXIT_LIB. */
static int lib_error(tch_status s, const char *fmt, ...)
{
  char what[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  const char *detail = tch_last_error();
  message("%s: %s", what, detail && *detail ? detail : tch_status_str(s));
  return EXIT_LIB;
}

static void log_sink(void *user, int level, const char *msg)
{
  (void)user;
  message("%s: %s", level == 0 ? "error" : level == 1 ? "warning" : "info", msg);
}

/* ---- usage ------------------------------------------------------------------------------- */
static const char usage_main[] =
  "usage: teacher <command> [arguments]\n"
  "\n"
  "Trains amortized samplers (GFlowNets) with the adaptive Teacher method.\n"
  "\n"
  "commands:\n"
  "  train CONFIG.yaml [options]       train a sampler; metrics, checkpoints, resume\n"
  "  sample POLICY.tchp CONFIG.yaml    sample terminal objects from a saved policy\n"
  "  sample --checkpoint CKPT CONFIG   sample the Student of a checkpoint (diffusion too)\n"
  "  evaluate CKPT CONFIG              evaluate a checkpoint's Student (the eval.* metrics)\n"
  "  config [CONFIG.yaml]              print the effective configuration as YAML\n"
  "  help [COMMAND]                    this text, or the options of COMMAND\n"
  "\n"
  "  teacher --version                 library version and ABI\n"
  "\n"
  "Configuration keys: docs/config.md. Command line: docs/cli.md.\n";

static const char usage_train[] =
  "usage: teacher train CONFIG.yaml [options]\n"
  "\n"
  "  --set KEY=VALUE          override a configuration key (repeatable; not with --resume)\n"
  "  --steps N                total steps of the run (train.steps; default: the reference's\n"
  "                           count for the env and method)\n"
  "  --resume CKPT            continue the run saved in CKPT (CONFIG must describe the same env)\n"
  "  --checkpoint PATH        write checkpoints to PATH (train.checkpoint_path)\n"
  "  --checkpoint-every N     ... every N steps, and at the end (train.checkpoint_every; 0 = end only)\n"
  "  --metrics PATH           metrics file, .csv or .jsonl (train.metrics_path)\n"
  "  --log-every N            steps between metric records and progress lines\n"
  "                           (train.log_every; -1 = steps/5, 0 = start and end only)\n"
  "  --eval N                 final evaluation on N fresh samples (train.eval_samples; 0 = skip)\n"
  "  --eval-every N           also evaluate every N steps during training, in that step's\n"
  "                           metric record (train.eval_every; 0 = at the end only)\n"
  "  --until STEP             stop after STEP (below the total): metric record and checkpoint,\n"
  "                           exit 0; the run continues later with --resume (needs --checkpoint)\n"
  "  --save-policy PATH       save the trained Student policy (.tchp) at the end\n"
  "                           (discrete envs; diffusion trainers: use --checkpoint)\n"
  "  --quiet                  no progress output (the summary line is still printed)\n"
  "\n"
  "Energy envs (diffusion samplers) only:\n"
  "  --plot PATH.png          after training, draw Student samples over the target's log\n"
  "                           density (dimension >= 2; two coordinates, see --plot-dims)\n"
  "  --plot-range LO,HI | XLO,XHI,YLO,YHI\n"
  "                           plotted region (default: from exact target samples)\n"
  "  --plot-dims I,J          coordinates drawn (default 0,1; with more than two, the\n"
  "                           background is the log density with the others at 0)\n"
  "  --plot-samples N         Student samples drawn (default 2000)\n"
  "\n"
  "SIGINT/SIGTERM finish the current step, write the checkpoint (if a path is configured)\n"
  "and exit with status 130/143.\n";

static const char usage_sample[] =
  "usage: teacher sample POLICY.tchp CONFIG.yaml [options]\n"
  "       teacher sample --checkpoint CKPT.tchk CONFIG.yaml [options]\n"
  "\n"
  "  --checkpoint CKPT        sample the Student of a trainer checkpoint (teacher train\n"
  "                           --checkpoint) instead of a policy file; the only way for\n"
  "                           diffusion samplers (energy envs)\n"
  "  -n N                     number of samples (default 10)\n"
  "  --seed S                 sampling seed (default 0)\n"
  "  --format csv|jsonl       output format (default csv: x_0,...,x_{d-1},log_pf; diffusion\n"
  "                           samplers: x_0,...,x_{d-1},log_w, the importance log-weight)\n"
  "  --header                 csv: print a header line first\n"
  "  --set KEY=VALUE          override a configuration key of CONFIG (repeatable)\n";

static const char usage_evaluate[] =
  "usage: teacher evaluate CKPT.tchk CONFIG.yaml [options]\n"
  "\n"
  "Evaluates the Student of a trainer checkpoint as at the end of training\n"
  "(tch_trainer_evaluate) and prints one record: step and the eval.* metrics.\n"
  "The evaluation's samples are keyed by the checkpoint's step: the same checkpoint\n"
  "gives the same numbers.\n"
  "\n"
  "  -n N                     evaluation samples (default: the checkpoint's\n"
  "                           train.eval_samples, e.g. 2000 for energy envs)\n"
  "  --format csv|jsonl       output format (default csv: a header line and one record)\n"
  "  --set KEY=VALUE          override a configuration key of CONFIG (repeatable; the\n"
  "                           env keys must still match the checkpoint's)\n";

static const char usage_config[] =
  "usage: teacher config [CONFIG.yaml] [options]\n"
  "\n"
  "Prints every configuration key with its effective value (defaults, then CONFIG, then\n"
  "--set) as YAML on stdout.\n"
  "\n"
  "  --set KEY=VALUE          override a configuration key (repeatable)\n"
  "  --check                  also build the env and the trainer, and report the planned\n"
  "                           step count and behaviour schedule on stderr\n";

/* ---- argument parsing -------------------------------------------------------------------- */
typedef struct optdef {
  const char *name;   /* "--steps", "-n" */
  int has_arg;
  int id;
} optdef;

typedef struct argiter {
  int argc;
  char **argv;
  int i;
  int only_positional;   /* after "--" */
} argiter;

enum { ARG_END = -1, ARG_POSITIONAL = 0, OPT_HELP = 1000 };

/* Next option (its id, *val = its argument) or positional (ARG_POSITIONAL, *val = it). */
static int next_arg(argiter *it, const optdef *defs, const char **val)
{
  *val = NULL;
  if (it->i >= it->argc) return ARG_END;
  const char *a = it->argv[it->i++];
  if (it->only_positional || a[0] != '-' || a[1] == '\0') {
    *val = a;
    return ARG_POSITIONAL;
  }
  if (strcmp(a, "--") == 0) {
    it->only_positional = 1;
    return next_arg(it, defs, val);
  }
  if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return OPT_HELP;
  const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
  size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
  for (const optdef *d = defs; d->name; d++) {
    if (strlen(d->name) != name_len || strncmp(d->name, a, name_len) != 0) continue;
    if (!d->has_arg) {
      if (eq) usage_error("option %s takes no value", d->name);
      return d->id;
    }
    if (eq) *val = eq + 1;
    else if (it->i < it->argc) *val = it->argv[it->i++];
    else usage_error("option %s needs a value", d->name);
    return d->id;
  }
  usage_error("unknown option '%.*s' (see 'teacher help %s')", (int)name_len, a, g_cmd);
}

static int64_t parse_int(const char *opt, const char *text, int64_t min, int64_t max)
{
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (!*text || *end || errno || v < min || v > max)
    usage_error("%s: '%s' is not an integer in [%" PRId64 ", %" PRId64 "]", opt, text, min, max);
  return (int64_t)v;
}

static uint64_t parse_u64(const char *opt, const char *text)
{
  char *end;
  errno = 0;
  if (!*text || *text == '-' || *text == '+' || *text == ' ')
    usage_error("%s: '%s' is not a non-negative integer", opt, text);
  unsigned long long v = strtoull(text, &end, 10);
  if (*end || errno) usage_error("%s: '%s' is not a non-negative integer", opt, text);
  return (uint64_t)v;
}

/* --set KEY=VALUE; a bad key or value is a command-line error (exit 2). */
/* --format csv|jsonl: 1 for jsonl. */
static int parse_jsonl_format(const char *text)
{
  if (strcmp(text, "csv") == 0) return 0;
  if (strcmp(text, "jsonl") == 0) return 1;
  usage_error("--format: '%s' is not csv or jsonl", text);
}

static void apply_set(tch_config *c, const char *kv)
{
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv) usage_error("--set takes KEY=VALUE, got '%s'", kv);
  char key[256];
  if ((size_t)(eq - kv) >= sizeof key) usage_error("--set: key too long in '%s'", kv);
  memcpy(key, kv, (size_t)(eq - kv));
  key[eq - kv] = '\0';
  if (tch_config_set_from_string(c, key, eq + 1) != TCH_OK)
    usage_error("--set %s: %s", kv, tch_last_error());
}

/* Config with defaults, then the YAML file (if any), then the --set overrides. Returns 0 or
 * EXIT_LIB (message printed); bad --set values exit 2. */
static int load_config(const char *path, const char **sets, int n_sets, tch_config **out)
{
  *out = NULL;
  tch_config *c = NULL;
  tch_status s = tch_config_create(&c);
  if (s) return lib_error(s, "cannot create a config");
  if (path && (s = tch_config_load_yaml(c, path)) != TCH_OK) {
    int rc = lib_error(s, "cannot load config '%s'", path);
    tch_config_free(c);
    return rc;
  }
  for (int i = 0; i < n_sets; i++) apply_set(c, sets[i]);
  *out = c;
  return 0;
}

/* ---- signals ----------------------------------------------------------------------------- */
static volatile sig_atomic_t g_signal;

static void on_signal(int sig) { g_signal = sig; }

/* The first SIGINT/SIGTERM asks for a clean stop; a second one kills (SA_RESETHAND). */
static void install_signals(void)
{
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static int signal_exit_status(void) { return g_signal == SIGTERM ? 143 : 130; }

/* ---- teacher train ----------------------------------------------------------------------- */
typedef struct train_run {
  tcli_progress progress;
  tcli_metrics *metrics;
  const char *metrics_path;
  const char *ckpt_path;     /* NULL: no checkpoints */
  uint64_t ckpt_every, log_every, eval_every, start, target;
  int64_t eval_samples;      /* evaluations at eval_every steps (0: records only) */
  double t0, wall_offset;
  uint64_t last_record;      /* step of the last record written (UINT64_MAX: none yet) */
  int failed;                /* the callback hit an error: err holds it */
  char err[1024];
} train_run;

static double wall_time(const train_run *r) { return r->wall_offset + (tcli_now() - r->t0); }

static int write_record(train_run *r, const tch_trainer *t, int final, int with_eval)
{
  if (!r->metrics) return 0;
  char err[512];
  double step = tcli_metric(t, "step");
  r->last_record = step > 0 ? (uint64_t)step : 0;
  if (tcli_metrics_write(r->metrics, t, wall_time(r), final, with_eval, err, sizeof err) == 0)
    return 0;
  snprintf(r->err, sizeof r->err, "%s ('%s')", err, r->metrics_path);
  r->failed = 1;
  return -1;
}

static int save_checkpoint(train_run *r, const tch_trainer *t)
{
  tch_status s = tch_trainer_save(t, r->ckpt_path);
  if (s == TCH_OK) return 0;
  snprintf(r->err, sizeof r->err, "cannot write checkpoint '%s': %s", r->ckpt_path,
           *tch_last_error() ? tch_last_error() : tch_status_str(s));
  r->failed = 1;
  return -1;
}

static int is_eval_step(const train_run *r, uint64_t step)
{
  return r->eval_every && step % r->eval_every == 0;
}

/* Called after every step: stop on a signal, log and checkpoint on their intervals, redraw
 * the bar. Nothing here changes the trainer. The record of an evaluation step is written by
 * run_training after the evaluation (training stops there: tch_trainer_step is called up to
 * each evaluation step). */
static int train_progress(void *user, const tch_trainer *t, uint64_t step)
{
  train_run *r = user;
  if (g_signal) return 1;
  if (step < r->target) {   /* the end of the run is handled after tch_trainer_step */
    if (r->log_every && step % r->log_every == 0 && !is_eval_step(r, step)) {
      if (write_record(r, t, 0, 0)) return 1;
      tcli_progress_line(&r->progress, t, step, tcli_now());
    }
    if (r->ckpt_path && r->ckpt_every && step % r->ckpt_every == 0 && !is_eval_step(r, step) &&
        save_checkpoint(r, t))
      return 1;
  }
  tcli_progress_tick(&r->progress, t, step, tcli_now(), 0);
  return 0;
}

/* Trains from r->start to stop (<= r->target), pausing at every evaluation step before the
 * target (the final evaluation is the caller's) to evaluate on r->eval_samples fresh samples
 * and write that step's record, then its checkpoint if one is due. An evaluation draws from
 * its own RNG stream, so pausing changes nothing in the training. TCH_OK, TCH_STOPPED (a
 * signal, or r->failed with the message in r->err), or the status of a failed step. */
static tch_status run_training(train_run *r, tch_trainer *tr, uint64_t stop)
{
  uint64_t step = r->start;
  while (step < stop) {
    uint64_t next = stop;
    if (r->eval_every) {
      uint64_t next_eval = (step / r->eval_every + 1) * r->eval_every;
      if (next_eval < next) next = next_eval;
    }
    tch_status s = tch_trainer_step(tr, next - step);
    if (s != TCH_OK) return s;
    step = next;
    if (step >= r->target || !is_eval_step(r, step)) continue;
    if (r->eval_samples > 0 && (s = tch_trainer_evaluate(tr, (size_t)r->eval_samples))) {
      snprintf(r->err, sizeof r->err, "evaluation on %" PRId64 " samples at step %llu failed: %s",
               r->eval_samples, (unsigned long long)step,
               *tch_last_error() ? tch_last_error() : tch_status_str(s));
      r->failed = 1;
      return TCH_STOPPED;
    }
    if (write_record(r, tr, 0, r->eval_samples > 0)) return TCH_STOPPED;
    tcli_progress_line(&r->progress, tr, step, tcli_now());
    if (r->ckpt_path && r->ckpt_every && step % r->ckpt_every == 0 && save_checkpoint(r, tr))
      return TCH_STOPPED;
  }
  return TCH_OK;
}

/* With --resume: CONFIG and the checkpoint must describe the same env (every env.* key). */
static int same_env(const tch_config *a, const tch_config *b, char *why, size_t why_len)
{
  for (const char *k = tch_config_next_key(NULL); k; k = tch_config_next_key(k)) {
    if (strncmp(k, "env.", 4) != 0) continue;
    tch_param_type ty;
    if (tch_config_describe(k, &ty, NULL, NULL, NULL, NULL, NULL) != TCH_OK) continue;
    char va[128] = "?", vb[128] = "?";
    int differ = 0;
    if (ty == TCH_PARAM_INT) {
      int64_t x = 0, y = 0;
      tch_config_get_int(a, k, &x);
      tch_config_get_int(b, k, &y);
      differ = x != y;
      snprintf(va, sizeof va, "%" PRId64, x);
      snprintf(vb, sizeof vb, "%" PRId64, y);
    } else if (ty == TCH_PARAM_DOUBLE) {
      double x = 0, y = 0;
      tch_config_get_double(a, k, &x);
      tch_config_get_double(b, k, &y);
      differ = memcmp(&x, &y, sizeof x) != 0 && x != y;
      snprintf(va, sizeof va, "%.17g", x);
      snprintf(vb, sizeof vb, "%.17g", y);
    } else if (ty == TCH_PARAM_BOOL) {
      int x = 0, y = 0;
      tch_config_get_bool(a, k, &x);
      tch_config_get_bool(b, k, &y);
      differ = !x != !y;
      snprintf(va, sizeof va, "%s", x ? "true" : "false");
      snprintf(vb, sizeof vb, "%s", y ? "true" : "false");
    } else {
      const char *x = "", *y = "";
      tch_config_get_string(a, k, &x);
      tch_config_get_string(b, k, &y);
      differ = strcmp(x, y) != 0;
      snprintf(va, sizeof va, "'%s'", x);
      snprintf(vb, sizeof vb, "'%s'", y);
    }
    if (differ) {
      snprintf(why, why_len, "%s is %s in CONFIG but %s in the checkpoint", k, va, vb);
      return 0;
    }
  }
  return 1;
}

typedef struct train_opts {
  const char *config, *resume, *ckpt, *metrics, *save_policy;
  const char **sets;
  int n_sets, quiet;
  int64_t steps, ckpt_every, log_every, eval, eval_every;   /* INT64_MIN: not given */
  int64_t until;                                            /* INT64_MIN: not given */
  tcli_plot_opts plot;                          /* plot.path NULL: no --plot */
  const char *plot_option;                      /* a --plot-* option given, for messages */
} train_opts;

/* Writes the command-line run options into c (the corresponding train.* keys). */
static void apply_run_options(tch_config *c, const train_opts *o)
{
  struct { const char *opt, *key; int64_t v; } ints[] = {
    { "--steps", "train.steps", o->steps },
    { "--checkpoint-every", "train.checkpoint_every", o->ckpt_every },
    { "--log-every", "train.log_every", o->log_every },
    { "--eval", "train.eval_samples", o->eval },
    { "--eval-every", "train.eval_every", o->eval_every },
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (ints[i].v != INT64_MIN && tch_config_set_int(c, ints[i].key, ints[i].v) != TCH_OK)
      usage_error("%s %" PRId64 ": %s", ints[i].opt, ints[i].v, tch_last_error());
  if (o->ckpt && tch_config_set_string(c, "train.checkpoint_path", o->ckpt) != TCH_OK)
    usage_error("--checkpoint: %s", tch_last_error());
  if (o->metrics && tch_config_set_string(c, "train.metrics_path", o->metrics) != TCH_OK)
    usage_error("--metrics: %s", tch_last_error());
}

/* A comma-separated list of exactly n finite numbers ("-13,13"). */
static void parse_doubles(const char *opt, const char *text, int n, double *out)
{
  const char *p = text;
  for (int i = 0; i < n; i++) {
    char *end;
    errno = 0;
    out[i] = strtod(p, &end);
    if (end == p || errno || !isfinite(out[i]) || (i < n - 1 ? *end != ',' : *end != '\0'))
      usage_error("%s: '%s' is not %d comma-separated numbers", opt, text, n);
    p = end + 1;
  }
}

/* --plot-range LO,HI (both axes) or XLO,XHI,YLO,YHI. */
static void parse_plot_range(const char *text, tcli_plot_opts *p)
{
  double v[4];
  int commas = 0;
  for (const char *c = text; *c; c++) commas += *c == ',';
  if (commas == 1) {
    parse_doubles("--plot-range", text, 2, v);
    v[2] = v[0];
    v[3] = v[1];
  } else if (commas == 3) {
    parse_doubles("--plot-range", text, 4, v);
  } else {
    usage_error("--plot-range: '%s' is not LO,HI or XLO,XHI,YLO,YHI", text);
  }
  if (!(v[0] < v[1]) || !(v[2] < v[3]))
    usage_error("--plot-range: '%s' is an empty region (each LO must be below its HI)", text);
  p->have_range = 1;
  p->x_min = v[0];
  p->x_max = v[1];
  p->y_min = v[2];
  p->y_max = v[3];
}

/* --plot-dims I,J: two different coordinates (checked against the env's dimension later). */
static void parse_plot_dims(const char *text, tcli_plot_opts *p)
{
  char *end;
  errno = 0;
  unsigned long i = strtoul(text, &end, 10), j = 0;
  int ok = end != text && *end == ',' && text[0] != '-' && !errno;
  if (ok) {
    const char *q = end + 1;
    j = strtoul(q, &end, 10);
    ok = end != q && *end == '\0' && q[0] != '-' && !errno && i <= UINT32_MAX && j <= UINT32_MAX;
  }
  if (!ok || i == j) usage_error("--plot-dims: '%s' is not two different coordinates I,J", text);
  p->dim_x = (uint32_t)i;
  p->dim_y = (uint32_t)j;
}

static void parse_train(int argc, char **argv, train_opts *o)
{
  enum { O_SET = 1, O_STEPS, O_RESUME, O_CKPT, O_CKPT_EVERY, O_METRICS, O_LOG_EVERY, O_EVAL,
         O_EVAL_EVERY, O_UNTIL, O_QUIET, O_SAVE_POLICY, O_PLOT, O_PLOT_RANGE, O_PLOT_DIMS, O_PLOT_SAMPLES };
  static const optdef defs[] = {
    { "--set", 1, O_SET }, { "--steps", 1, O_STEPS }, { "--resume", 1, O_RESUME },
    { "--checkpoint", 1, O_CKPT }, { "--checkpoint-every", 1, O_CKPT_EVERY },
    { "--metrics", 1, O_METRICS }, { "--log-every", 1, O_LOG_EVERY }, { "--eval", 1, O_EVAL },
    { "--eval-every", 1, O_EVAL_EVERY }, { "--until", 1, O_UNTIL },
    { "--quiet", 0, O_QUIET }, { "-q", 0, O_QUIET }, { "--save-policy", 1, O_SAVE_POLICY },
    { "--plot", 1, O_PLOT }, { "--plot-range", 1, O_PLOT_RANGE }, { "--plot-dims", 1, O_PLOT_DIMS },
    { "--plot-samples", 1, O_PLOT_SAMPLES },
    { NULL, 0, 0 },
  };
  memset(o, 0, sizeof *o);
  o->steps = o->ckpt_every = o->log_every = o->eval = o->eval_every = o->until = INT64_MIN;
  o->plot.dim_x = 0;
  o->plot.dim_y = 1;
  o->plot.n_samples = 2000;   /* the reference's plot_data_size */
  o->plot.size = 512;
  o->sets = calloc((size_t)argc + 1, sizeof *o->sets);
  if (!o->sets) usage_error("out of memory");
  argiter it = { argc, argv, 0, 0 };
  const char *v;
  int id;
  while ((id = next_arg(&it, defs, &v)) != ARG_END) {
    switch (id) {
    case OPT_HELP: fputs(usage_train, stdout); free(o->sets); exit(0);
    case ARG_POSITIONAL:
      if (o->config) usage_error("unexpected argument '%s' (one CONFIG.yaml only)", v);
      o->config = v;
      break;
    case O_SET: o->sets[o->n_sets++] = v; break;
    case O_STEPS: o->steps = parse_int("--steps", v, 0, INT64_MAX); break;
    case O_RESUME: o->resume = v; break;
    case O_CKPT: o->ckpt = v; break;
    case O_CKPT_EVERY: o->ckpt_every = parse_int("--checkpoint-every", v, 0, INT64_MAX); break;
    case O_METRICS: o->metrics = v; break;
    case O_LOG_EVERY: o->log_every = parse_int("--log-every", v, -1, INT64_MAX); break;
    case O_EVAL: o->eval = parse_int("--eval", v, 0, INT64_MAX); break;
    case O_EVAL_EVERY: o->eval_every = parse_int("--eval-every", v, 0, INT64_MAX); break;
    case O_UNTIL: o->until = parse_int("--until", v, 1, INT64_MAX); break;
    case O_QUIET: o->quiet = 1; break;
    case O_SAVE_POLICY: o->save_policy = v; break;
    case O_PLOT:
      if (!*v) usage_error("--plot needs a file name");
      o->plot.path = v;
      break;
    case O_PLOT_RANGE: parse_plot_range(v, &o->plot); o->plot_option = "--plot-range"; break;
    case O_PLOT_DIMS: parse_plot_dims(v, &o->plot); o->plot_option = "--plot-dims"; break;
    case O_PLOT_SAMPLES:
      o->plot.n_samples = (size_t)parse_int("--plot-samples", v, 0, 10000000);
      o->plot_option = "--plot-samples";
      break;
    default: break;
    }
  }
  if (!o->config) usage_error("missing CONFIG.yaml (usage: teacher train CONFIG.yaml [options])");
  if (o->plot_option && !o->plot.path) usage_error("%s needs --plot PATH.png", o->plot_option);
  if (o->resume && o->n_sets)
    usage_error("--set cannot be combined with --resume: a resumed run keeps the configuration "
                "stored in its checkpoint");
  if (o->metrics && !*o->metrics) o->metrics = NULL;
  if (o->metrics && tcli_metrics_format_of(o->metrics) == TCLI_METRICS_UNKNOWN)
    usage_error("--metrics %s: unknown format (the name must end in .csv or .jsonl)", o->metrics);
}

/* The method of a diffusion trainer, named by the reference's command-line flags
 * (diffusion/train.py): what teacher.enabled, buffer.enabled and local_search.enabled select. */
static const char *diffusion_method(const tch_config *c)
{
  int teacher = 0, buffer = 0, ls = 0, smc = 0;
  /* Reinforced SMC (smc.enabled): its method, named by the reference's trainers */
  tch_config_get_bool(c, "smc.enabled", &smc);
  if (smc) {
    const char *m = "";
    tch_config_get_string(c, "smc.method", &m);
    int teacher_smc = 0;
    tch_config_get_bool(c, "teacher.enabled", &teacher_smc);
    if (teacher_smc && !strcmp(m, "smc_buffer"))
      return "Reinforced SMC + Teacher: TB/SubTB + Teacher + SMC + IW buffer";
    if (teacher_smc && !strcmp(m, "smc"))
      return "Reinforced SMC + Teacher: TB/SubTB + Teacher + SMC, no buffer";
    if (teacher_smc) return "Reinforced SMC baseline + Teacher: TB + Teacher + IW buffer";
    if (!strcmp(m, "smc_buffer")) return "Reinforced SMC: TB/SubTB + SMC + IW buffer (gfn_subtb_smc)";
    if (!strcmp(m, "smc")) return "Reinforced SMC: TB/SubTB + SMC, no buffer (gfn_subtb_smc_nobuffer)";
    if (!strcmp(m, "tb_buffer")) return "Reinforced SMC baseline: TB + IW buffer (gfn_tb)";
    return "Reinforced SMC baseline: TB on-policy, OU reference (gfn_tb)";
  }
  tch_config_get_bool(c, "teacher.enabled", &teacher);
  tch_config_get_bool(c, "buffer.enabled", &buffer);
  tch_config_get_bool(c, "local_search.enabled", &ls);
  if (teacher) return ls ? "Teacher + MALA local search (--teacher --els)" : "Teacher (--teacher)";
  if (buffer) return ls ? "TB + PER + MALA local search (--per --ls)" : "TB + PER (--per)";
  return "TB on-policy";
}

/* " | NAME value" when the metric is defined (not NaN). */
static void print_if_defined(const char *name, double v, const char *fmt)
{
  if (isnan(v)) return;
  printf(" | %s ", name);
  printf(fmt, v);
}

/* Diffusion trainers: learned log Z, and after the evaluation the importance-weighted log Z
 * estimate, its error against the known log Z, ELBO, EUBO, ESS, the sample distance and (on
 * GMM40) the components the evaluation's samples cover. */
static void print_diffusion_summary(tch_trainer *tr, int evaluated)
{
  printf("steps %.0f | reward calls %.0f | loss %.4g | logZ %.4f", tcli_metric(tr, "step"),
         tcli_metric(tr, "reward_calls"), tcli_metric(tr, "loss.student"),
         tcli_metric(tr, "logz.student"));
  if (!evaluated) return;
  print_if_defined("eval log Z", tcli_metric(tr, "eval.log_z"), "%.4f");
  print_if_defined("delta log Z", tcli_metric(tr, "eval.delta_log_z"), "%.4f");
  print_if_defined("ELBO", tcli_metric(tr, "eval.elbo"), "%.4f");
  print_if_defined("EUBO", tcli_metric(tr, "eval.eubo"), "%.4f");
  print_if_defined("ESS", 100 * tcli_metric(tr, "eval.ess_fraction"), "%.1f%%");
  print_if_defined("W2", tcli_metric(tr, "eval.w2"), "%.4f");
  print_if_defined("modes", tcli_metric(tr, "eval.modes"), "%.0f/40");
}

/* Discrete trainers: modes visited and the empirical L1, with the evaluation's; the
 * discovery schedule adds its own (the metrics are NaN, and not printed, otherwise). */
static void print_discrete_summary(tch_trainer *tr, int evaluated)
{
  double step = tcli_metric(tr, "step"), calls = tcli_metric(tr, "reward_calls");
  double modes = tcli_metric(tr, "modes"), total = tcli_metric(tr, "modes.total");
  double l1 = tcli_metric(tr, "l1");
  printf("steps %.0f | reward calls %.0f | modes %.0f/%.0f | train L1 %.4e", step, calls, modes,
         total, l1);
  print_if_defined("unique", tcli_metric(tr, "unique"), "%.0f");
  print_if_defined("top-k reward", tcli_metric(tr, "topk.reward"), "%.4g");
  print_if_defined("top-k diversity", tcli_metric(tr, "topk.diversity"), "%.3f");
  if (!evaluated) return;
  printf(" | eval L1 %.4e | eval modes %.0f", tcli_metric(tr, "eval.l1"),
         tcli_metric(tr, "eval.modes"));
  print_if_defined("eval log Z", tcli_metric(tr, "eval.log_z"), "%.4f");
  print_if_defined("delta log Z", tcli_metric(tr, "eval.delta_log_z"), "%.4f");
  print_if_defined("ELBO", tcli_metric(tr, "eval.elbo"), "%.4f");
  print_if_defined("EUBO", tcli_metric(tr, "eval.eubo"), "%.4f");
  print_if_defined("Pearson", tcli_metric(tr, "eval.pearson"), "%.3f");
}

static void print_summary(tch_trainer *tr, int diffusion, int evaluated, uint64_t steps_run,
                          double train_s)
{
  if (diffusion) print_diffusion_summary(tr, evaluated);
  else print_discrete_summary(tr, evaluated);
  if (steps_run && train_s > 0) printf(" | %.1f it/s", (double)steps_run / train_s);
  else printf(" | -- it/s");
  printf(" | %.1f s\n", train_s);
  fflush(stdout);
}

static int cmd_train(int argc, char **argv)
{
  train_opts o;
  parse_train(argc, argv, &o);
  install_signals();   /* early: a signal before training starts stops at the start step */
  int rc = EXIT_LIB;
  tch_config *cfg = NULL, *run_cfg = NULL;
  tch_env *env = NULL;
  tch_trainer *tr = NULL;
  train_run r;
  memset(&r, 0, sizeof r);
  r.last_record = UINT64_MAX;
  tch_status s;
  char errbuf[1024];

  if (load_config(o.config, o.sets, o.n_sets, &cfg)) goto out;
  if (!o.resume) apply_run_options(cfg, &o);   /* recorded in the checkpoints */
  if ((s = tch_env_create_from_config(cfg, &env))) {
    lib_error(s, "cannot create the env of '%s'", o.config);
    goto out;
  }
  /* Energy envs train diffusion samplers: options that need a discrete policy, or a 2-D
   * picture of a continuous one, are checked now rather than after a long run. */
  uint32_t edim = 0;
  const int diffusion = tch_env_energy_dim(env, &edim) == TCH_OK;
  const char *env_name = "?";
  tch_config_get_string(cfg, "env.name", &env_name);
  if (diffusion && o.save_policy) {
    message("--save-policy: '%s' is an energy env, whose diffusion sampler has no policy file "
            "yet; use --checkpoint PATH and 'teacher sample --checkpoint PATH'", env_name);
    rc = EXIT_USAGE;
    goto out;
  }
  if (o.plot.path && !diffusion) {
    message("--plot: '%s' is a discrete env; plots are drawn for energy envs (diffusion "
            "samplers) of dimension >= 2", env_name);
    rc = EXIT_USAGE;
    goto out;
  }
  if (o.plot.path && edim < 2) {
    message("--plot: the target of '%s' is %u-dimensional; plots need dimension >= 2", env_name,
            edim);
    rc = EXIT_USAGE;
    goto out;
  }
  if (o.plot.path && (o.plot.dim_x >= edim || o.plot.dim_y >= edim)) {
    message("--plot-dims %u,%u: the target of '%s' has coordinates 0..%u", o.plot.dim_x,
            o.plot.dim_y, env_name, edim - 1);
    rc = EXIT_USAGE;
    goto out;
  }
  if (o.resume) {
    if ((s = tch_trainer_load(env, o.resume, &tr))) {
      lib_error(s, "cannot resume from '%s'", o.resume);
      goto out;
    }
    const tch_config *saved;
    if ((s = tch_trainer_get_config(tr, &saved)) || (s = tch_config_clone(saved, &run_cfg))) {
      lib_error(s, "cannot read the configuration of '%s'", o.resume);
      goto out;
    }
    char why[512];
    if (!same_env(cfg, run_cfg, why, sizeof why)) {
      message("--resume %s: CONFIG '%s' describes another env: %s", o.resume, o.config, why);
      rc = EXIT_USAGE;
      goto out;
    }
    apply_run_options(run_cfg, &o);   /* options still override the stored train.* keys */
  } else {
    if ((s = tch_trainer_create(env, cfg, &tr))) {
      lib_error(s, "cannot create the trainer for '%s'", o.config);
      goto out;
    }
    run_cfg = tch_config_retain(cfg);
  }

  /* What this invocation does. */
  const char *ckpt = "", *metrics = "";
  int64_t ckpt_every = 0, log_every = -1, eval = 0, eval_every = 0;
  if ((s = tch_config_get_string(run_cfg, "train.checkpoint_path", &ckpt)) ||
      (s = tch_config_get_string(run_cfg, "train.metrics_path", &metrics)) ||
      (s = tch_config_get_int(run_cfg, "train.checkpoint_every", &ckpt_every)) ||
      (s = tch_config_get_int(run_cfg, "train.log_every", &log_every)) ||
      (s = tch_config_get_int(run_cfg, "train.eval_every", &eval_every)) ||
      (s = tch_config_get_int(run_cfg, "train.eval_samples", &eval))) {
    lib_error(s, "cannot read the train.* settings");
    goto out;
  }
  if (eval < 0) {   /* -1: the env's default, resolved in the trainer's own config */
    const tch_config *eff;
    if ((s = tch_trainer_get_config(tr, &eff)) ||
        (s = tch_config_get_int(eff, "train.eval_samples", &eval))) {
      lib_error(s, "cannot read train.eval_samples");
      goto out;
    }
  }
  double step0 = tcli_metric(tr, "step");
  r.start = isfinite(step0) && step0 > 0 ? (uint64_t)step0 : 0;
  if (o.steps != INT64_MIN) {
    r.target = (uint64_t)o.steps;
  } else if ((s = tch_trainer_planned_steps(tr, &r.target))) {
    lib_error(s, "cannot plan the number of steps");
    goto out;
  }
  if (r.target < r.start) {
    if (o.steps != INT64_MIN) {
      message("--steps %llu is below the checkpoint's step %llu", (unsigned long long)r.target,
              (unsigned long long)r.start);
      rc = EXIT_USAGE;
      goto out;
    }
    r.target = r.start;   /* the stored total was extended by an earlier --steps: finished */
  }
  r.log_every = log_every < 0 ? (r.target >= 5 ? r.target / 5 : 1) : (uint64_t)log_every;
  r.eval_every = (uint64_t)eval_every;
  r.eval_samples = eval;
  r.ckpt_path = *ckpt ? ckpt : NULL;
  if (o.until != INT64_MIN && !r.ckpt_path) {
    message("--until %" PRId64 " needs a checkpoint path (--checkpoint PATH): the run continues "
            "from it", o.until);
    rc = EXIT_USAGE;
    goto out;
  }
  r.ckpt_every = (uint64_t)ckpt_every;
  if (!r.ckpt_path && r.ckpt_every && o.ckpt_every != INT64_MIN && !o.quiet)
    message("warning: --checkpoint-every without a checkpoint path (--checkpoint) writes nothing");
  r.metrics_path = *metrics ? metrics : NULL;

  /* Metrics file, and the record at the start of the run. */
  int have_start = 0;
  if (r.metrics_path &&
      tcli_metrics_open(r.metrics_path, tr, o.resume != NULL, r.start, r.target > r.start,
                        &r.metrics, &r.wall_offset,
                        &have_start, errbuf, sizeof errbuf)) {
    message("%s", errbuf);
    rc = tcli_metrics_format_of(r.metrics_path) == TCLI_METRICS_UNKNOWN ? EXIT_USAGE : EXIT_LIB;
    goto out;
  }

  tcli_progress_mode mode = o.quiet ? TCLI_PROGRESS_QUIET
                            : isatty(STDERR_FILENO) ? TCLI_PROGRESS_BAR : TCLI_PROGRESS_LINES;
  if (!o.quiet && diffusion) {
    const tch_config *eff = run_cfg;
    int64_t seed = 0, batch = 0;
    uint32_t T = 0;
    tch_trainer_get_config(tr, &eff);   /* resolved -1 defaults (batch size) */
    tch_config_get_int(eff, "seed", &seed);
    tch_config_get_int(eff, "train.batch_size", &batch);
    tch_env_diffusion_steps(env, &T, NULL);
    fprintf(stderr, "teacher: %s dim %u | diffusion sampler, T %u, batch %" PRId64 " | %s | "
            "steps %llu..%llu | seed %" PRId64 "\n",
            env_name, edim, T, batch, diffusion_method(eff), (unsigned long long)r.start,
            (unsigned long long)r.target, seed);
  } else if (!o.quiet) {
    tch_mixer *mixer = NULL;
    tch_policy *student = NULL;
    const char *schedule = "?", *kernel = "?", *loss = "?";
    int64_t seed = 0, ndim = 0, horizon = 0;
    if (tch_trainer_get_mixer(tr, &mixer) == TCH_OK) tch_mixer_schedule(mixer, &schedule);
    if (tch_trainer_get_student(tr, &student) == TCH_OK) tch_policy_gemm_kernel(student, &kernel);
    const char *loop = "grid";
    tch_config_get_string(run_cfg, "student.loss", &loss);
    tch_config_get_string(run_cfg, "train.schedule", &loop);
    tch_config_get_int(run_cfg, "seed", &seed);
    /* The env's own keys: the hypergrid's size, else the MDP's dimensions. */
    char shape[96];
    if (!strcmp(env_name, "hypergrid")) {
      tch_config_get_int(run_cfg, "env.hypergrid.ndim", &ndim);
      tch_config_get_int(run_cfg, "env.hypergrid.horizon", &horizon);
      snprintf(shape, sizeof shape, "ndim %" PRId64 " horizon %" PRId64, ndim, horizon);
    } else {
      uint32_t sd = 0, na = 0;
      tch_env_dims(env, &sd, &na, NULL);
      snprintf(shape, sizeof shape, "state dim %u, %u actions", sd, na);
    }
    int teacher = 0, gafn = 0;
    tch_config_get_bool(run_cfg, "teacher.enabled", &teacher);
    tch_config_get_bool(run_cfg, "gafn.enabled", &gafn);
    fprintf(stderr, "teacher: %s %s | %s%s | %s schedule '%s' | "
            "steps %llu..%llu | seed %" PRId64 " | BLIS %s\n",
            env_name, shape, teacher ? "teacher + " : gafn ? "gafn + " : "", loss, loop, schedule,
            (unsigned long long)r.start, (unsigned long long)r.target, seed, kernel);
  }
  r.t0 = tcli_now();
  tcli_progress_init(&r.progress, mode, r.start, r.target, r.t0);
  r.progress.diffusion = diffusion;
  g_progress = &r.progress;
  if (!have_start && r.target > r.start && write_record(&r, tr, 0, 0)) {
    message("%s", r.err);
    goto out;
  }
  tcli_progress_line(&r.progress, tr, r.start, r.t0);

  /* Train. */
  if ((s = tch_trainer_set_progress(tr, train_progress, &r, 1))) {
    lib_error(s, "cannot install the progress callback");
    goto out;
  }
  const uint64_t stop = o.until != INT64_MIN && (uint64_t)o.until < r.target ? (uint64_t)o.until
                                                                             : r.target;
  s = g_signal ? TCH_STOPPED : run_training(&r, tr, stop);
  double train_end = tcli_now();
  uint64_t now_step = (uint64_t)tcli_metric(tr, "step");
  tcli_progress_end(&r.progress, tr, now_step, train_end);
  if (s < 0) {
    lib_error(s, "training failed at step %llu", (unsigned long long)now_step);
    goto out;
  }
  if (r.failed) {
    message("%s", r.err);
    goto out;
  }
  if (s == TCH_STOPPED || now_step < r.target) {   /* a signal or --until: keep what we have */
    if ((r.last_record != now_step && write_record(&r, tr, 0, 0)) ||
        (r.ckpt_path && save_checkpoint(&r, tr))) {
      message("%s", r.err);
      goto out;
    }
    if (s != TCH_STOPPED) {   /* --until */
      if (!o.quiet)
        message("stopped at step %llu of %llu (--until); checkpoint written to %s: continue "
                "with --resume %s", (unsigned long long)now_step, (unsigned long long)r.target,
                r.ckpt_path, r.ckpt_path);
      rc = 0;
      goto out;
    }
    if (!o.quiet)
      message("interrupted at step %llu%s%s", (unsigned long long)now_step,
              r.ckpt_path ? "; checkpoint written to " : " (no checkpoint path configured)",
              r.ckpt_path ? r.ckpt_path : "");
    rc = signal_exit_status();
    goto out;
  }

  /* The end: evaluation, final record, checkpoint, policy, summary. */
  int evaluated = 0;
  if (eval > 0) {
    if ((s = tch_trainer_evaluate(tr, (size_t)eval))) {
      lib_error(s, "evaluation on %" PRId64 " samples failed", eval);
      goto out;
    }
    evaluated = 1;
  }
  tcli_progress_line(&r.progress, tr, now_step, train_end);
  if (write_record(&r, tr, 1, evaluated) || (r.ckpt_path && save_checkpoint(&r, tr))) {
    message("%s", r.err);
    goto out;
  }
  if (o.save_policy) {
    tch_policy *student;
    if ((s = tch_trainer_get_student(tr, &student)) || (s = tch_policy_save(student, o.save_policy))) {
      lib_error(s, "cannot save the policy to '%s'", o.save_policy);
      goto out;
    }
  }
  if (o.plot.path) {
    char note[512];
    int64_t seed = 0;
    tch_config_get_int(run_cfg, "seed", &seed);
    o.plot.seed = (uint64_t)seed;   /* the run's seed: the same run draws the same picture */
    if (tcli_plot_diffusion(tr, &o.plot, note, sizeof note, errbuf, sizeof errbuf)) {
      message("--plot %s: %s", o.plot.path, errbuf);
      goto out;
    }
    if (!o.quiet) message("plot written to %s: %s", o.plot.path, note);
  }
  print_summary(tr, diffusion, evaluated, now_step - r.start, train_end - r.t0);
  rc = g_signal ? signal_exit_status() : 0;

out:
  g_progress = NULL;
  if (tcli_metrics_close(r.metrics, errbuf, sizeof errbuf) && rc == 0) {
    message("%s", errbuf);
    rc = EXIT_LIB;
  }
  tch_trainer_free(tr);
  tch_env_free(env);
  tch_config_free(run_cfg);
  tch_config_free(cfg);
  free(o.sets);
  return rc;
}

/* ---- teacher sample ---------------------------------------------------------------------- */
typedef struct sample_out {
  int jsonl, header;
} sample_out;

/* Terminal objects of a discrete env: x_0..x_{d-1} and the trajectory's log P_F. */
static void print_discrete_samples(const sample_out *so, uint64_t n, uint32_t sd,
                                   const int32_t *states, const double *log_pf)
{
  if (so->header && !so->jsonl) {
    for (uint32_t j = 0; j < sd; j++) printf("x%u,", j);
    printf("log_pf\n");
  }
  for (uint64_t i = 0; i < n; i++) {
    const int32_t *x = states + i * sd;
    if (so->jsonl) {
      fputs("{\"x\":[", stdout);
      for (uint32_t j = 0; j < sd; j++) printf("%s%" PRId32, j ? "," : "", x[j]);
      printf("],\"log_pf\":%.17g}\n", log_pf[i]);
    } else {
      for (uint32_t j = 0; j < sd; j++) printf("%" PRId32 ",", x[j]);
      printf("%.17g\n", log_pf[i]);
    }
  }
}

/* Points of a diffusion sampler: x_0..x_{d-1} and the log-weight log R + sum log P_B - sum
 * log P_F (logmeanexp of them estimates log Z). JSON has no NaN: non-finite values are null. */
static void print_json_double(double v)
{
  if (isfinite(v)) printf("%.17g", v);
  else fputs("null", stdout);
}

static void print_continuous_samples(const sample_out *so, uint64_t n, uint32_t dim,
                                     const double *x, const double *log_w)
{
  if (so->header && !so->jsonl) {
    for (uint32_t j = 0; j < dim; j++) printf("x%u,", j);
    printf("log_w\n");
  }
  for (uint64_t i = 0; i < n; i++) {
    const double *p = x + i * dim;
    if (so->jsonl) {
      fputs("{\"x\":[", stdout);
      for (uint32_t j = 0; j < dim; j++) {
        if (j) putchar(',');
        print_json_double(p[j]);
      }
      fputs("],\"log_w\":", stdout);
      print_json_double(log_w[i]);
      fputs("}\n", stdout);
    } else {
      for (uint32_t j = 0; j < dim; j++) printf("%.17g,", p[j]);
      printf("%.17g\n", log_w[i]);
    }
  }
}

static int cmd_sample(int argc, char **argv)
{
  enum { O_N = 1, O_SEED, O_FORMAT, O_HEADER, O_SET, O_CKPT };
  static const optdef defs[] = {
    { "-n", 1, O_N }, { "--n", 1, O_N }, { "--seed", 1, O_SEED }, { "--format", 1, O_FORMAT },
    { "--header", 0, O_HEADER }, { "--set", 1, O_SET }, { "--checkpoint", 1, O_CKPT },
    { NULL, 0, 0 },
  };
  const char *policy_path = NULL, *config_path = NULL, *ckpt_path = NULL;
  const char *positional[2] = { NULL, NULL };
  int n_positional = 0;
  uint64_t n = 10, seed = 0;
  sample_out so = { 0, 0 };
  int n_sets = 0;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets) usage_error("out of memory");
  argiter it = { argc, argv, 0, 0 };
  const char *v;
  int id;
  while ((id = next_arg(&it, defs, &v)) != ARG_END) {
    switch (id) {
    case OPT_HELP: fputs(usage_sample, stdout); free(sets); return 0;
    case ARG_POSITIONAL:
      if (n_positional == 2) usage_error("unexpected argument '%s'", v);
      positional[n_positional++] = v;
      break;
    case O_N: n = parse_u64("-n", v); break;
    case O_SEED: seed = parse_u64("--seed", v); break;
    case O_FORMAT: so.jsonl = parse_jsonl_format(v); break;
    case O_HEADER: so.header = 1; break;
    case O_SET: sets[n_sets++] = v; break;
    case O_CKPT: ckpt_path = v; break;
    default: break;
    }
  }
  if (ckpt_path) {   /* teacher sample --checkpoint CKPT CONFIG */
    if (n_positional != 1)
      usage_error("usage: teacher sample --checkpoint CKPT.tchk CONFIG.yaml [-n N] [--seed S] "
                  "[--format csv|jsonl]");
    config_path = positional[0];
  } else {
    if (n_positional != 2)
      usage_error("usage: teacher sample POLICY.tchp CONFIG.yaml [-n N] [--seed S] "
                  "[--format csv|jsonl] (or --checkpoint CKPT.tchk CONFIG.yaml)");
    policy_path = positional[0];
    config_path = positional[1];
  }
  if (n == 0 || n > (uint64_t)1 << 32) usage_error("-n: %llu is not in [1, 2^32]", (unsigned long long)n);

  int rc = EXIT_LIB;
  tch_config *cfg = NULL;
  tch_env *env = NULL;
  tch_policy *pol = NULL;
  tch_trainer *tr = NULL;
  int32_t *states = NULL;
  double *log_pf = NULL, *x = NULL;
  uint32_t sd = 0, edim = 0;
  tch_status s;
  if (load_config(config_path, sets, n_sets, &cfg)) goto out;
  if ((s = tch_env_create_from_config(cfg, &env))) {
    lib_error(s, "cannot create the env of '%s'", config_path);
    goto out;
  }
  const int diffusion = tch_env_energy_dim(env, &edim) == TCH_OK;
  if (diffusion && !ckpt_path) {
    const char *env_name = "?";
    tch_config_get_string(cfg, "env.name", &env_name);
    message("'%s' describes an energy env ('%s'): its diffusion sampler has no policy file; "
            "sample the trainer's checkpoint: teacher sample --checkpoint CKPT.tchk %s",
            config_path, env_name, config_path);
    rc = EXIT_USAGE;
    goto out;
  }
  if (ckpt_path) {
    if ((s = tch_trainer_load(env, ckpt_path, &tr))) {
      lib_error(s, "cannot load checkpoint '%s'", ckpt_path);
      goto out;
    }
  } else if ((s = tch_policy_load(policy_path, &pol))) {
    lib_error(s, "cannot load policy '%s'", policy_path);
    goto out;
  }
  const char *source = ckpt_path ? ckpt_path : policy_path;

  if (diffusion) {
    if ((size_t)n > SIZE_MAX / sizeof *x / edim ||
        !(x = malloc((size_t)n * edim * sizeof *x)) || !(log_pf = malloc((size_t)n * sizeof *log_pf))) {
      message("out of memory for %llu samples", (unsigned long long)n);
      goto out;
    }
    if ((s = tch_trainer_sample_continuous(tr, seed, (size_t)n, x, log_pf))) {
      lib_error(s, "sampling from '%s' failed", source);
      goto out;
    }
    print_continuous_samples(&so, n, edim, x, log_pf);
  } else {
    if (tr && (s = tch_trainer_get_student(tr, &pol))) {
      lib_error(s, "cannot read the Student of '%s'", source);
      goto out;
    }
    if (tr) tch_policy_retain(pol);   /* freed below like a loaded one */
    if ((s = tch_env_dims(env, &sd, NULL, NULL))) {
      lib_error(s, "cannot query the env");
      goto out;
    }
    states = malloc((size_t)n * sd * sizeof *states);
    log_pf = malloc((size_t)n * sizeof *log_pf);
    if (!states || !log_pf) {
      message("out of memory for %llu samples", (unsigned long long)n);
      goto out;
    }
    if ((s = tch_policy_sample_discrete(pol, env, seed, (size_t)n, states, log_pf))) {
      lib_error(s, "sampling from '%s' failed", source);
      goto out;
    }
    print_discrete_samples(&so, n, sd, states, log_pf);
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    message("cannot write to stdout: %s", strerror(errno));
    goto out;
  }
  rc = 0;
out:
  free(states);
  free(log_pf);
  free(x);
  tch_policy_free(pol);
  tch_trainer_free(tr);
  tch_env_free(env);
  tch_config_free(cfg);
  free(sets);
  return rc;
}

/* ---- teacher evaluate -------------------------------------------------------------------- */
static int cmd_evaluate(int argc, char **argv)
{
  enum { O_N = 1, O_FORMAT, O_SET };
  static const optdef defs[] = {
    { "-n", 1, O_N }, { "--n", 1, O_N }, { "--format", 1, O_FORMAT }, { "--set", 1, O_SET },
    { NULL, 0, 0 },
  };
  const char *positional[2] = { NULL, NULL };
  int n_positional = 0, jsonl = 0, n_sets = 0;
  int64_t n = -1;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets) usage_error("out of memory");
  argiter it = { argc, argv, 0, 0 };
  const char *v;
  int id;
  while ((id = next_arg(&it, defs, &v)) != ARG_END) {
    switch (id) {
    case OPT_HELP: fputs(usage_evaluate, stdout); free(sets); return 0;
    case ARG_POSITIONAL:
      if (n_positional == 2) usage_error("unexpected argument '%s'", v);
      positional[n_positional++] = v;
      break;
    case O_N: n = parse_int("-n", v, 1, (int64_t)1 << 32); break;
    case O_FORMAT: jsonl = parse_jsonl_format(v); break;
    case O_SET: sets[n_sets++] = v; break;
    default: break;
    }
  }
  if (n_positional != 2)
    usage_error("usage: teacher evaluate CKPT.tchk CONFIG.yaml [-n N] [--format csv|jsonl]");
  const char *ckpt_path = positional[0], *config_path = positional[1];

  int rc = EXIT_LIB;
  tch_config *cfg = NULL;
  tch_env *env = NULL;
  tch_trainer *tr = NULL;
  tch_status s;
  if (load_config(config_path, sets, n_sets, &cfg)) goto out;
  if ((s = tch_env_create_from_config(cfg, &env))) {
    lib_error(s, "cannot create the env of '%s'", config_path);
    goto out;
  }
  if ((s = tch_trainer_load(env, ckpt_path, &tr))) {
    lib_error(s, "cannot load checkpoint '%s'", ckpt_path);
    goto out;
  }
  if (n < 0) {   /* the checkpoint's train.eval_samples, resolved to the env's default */
    const tch_config *eff;
    if ((s = tch_trainer_get_config(tr, &eff)) ||
        (s = tch_config_get_int(eff, "train.eval_samples", &n))) {
      lib_error(s, "cannot read train.eval_samples");
      goto out;
    }
    if (n <= 0) {
      message("the checkpoint's train.eval_samples is %lld: give the number of samples with -n",
              (long long)n);
      rc = EXIT_USAGE;
      goto out;
    }
  }
  if ((s = tch_trainer_evaluate(tr, (size_t)n))) {
    lib_error(s, "evaluating '%s' on %lld samples failed", ckpt_path, (long long)n);
    goto out;
  }
  /* step, then every eval.* metric of this kind of trainer, in the library's order. */
  const char *names[64];
  size_t k = 0;
  names[k++] = "step";
  for (const char *m = tch_trainer_next_metric(tr, NULL); m && k < 64; m = tch_trainer_next_metric(tr, m))
    if (strncmp(m, "eval.", 5) == 0) names[k++] = m;
  if (jsonl) putchar('{');
  else
    for (size_t i = 0; i < k; i++) printf("%s%s", names[i], i + 1 < k ? "," : "\n");
  for (size_t i = 0; i < k; i++) {
    if (jsonl) printf("%s\"%s\":", i ? "," : "", names[i]);
    else if (i) putchar(',');
    tcli_put_value(stdout, tcli_metric(tr, names[i]), jsonl);
  }
  puts(jsonl ? "}" : "");
  if (fflush(stdout) != 0 || ferror(stdout)) {
    message("cannot write to stdout: %s", strerror(errno));
    goto out;
  }
  rc = 0;
out:
  tch_trainer_free(tr);
  tch_env_free(env);
  tch_config_free(cfg);
  free(sets);
  return rc;
}

/* ---- teacher config ---------------------------------------------------------------------- */
/* tch_config_dump_yaml writes atomically (temp file + rename), so it needs a real directory:
 * dump into a private temporary directory and copy to stdout. */
static int print_config_yaml(const tch_config *c)
{
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  char dir[4096], file[4200];
  if ((size_t)snprintf(dir, sizeof dir, "%s/teacher-config.XXXXXX", tmp) >= sizeof dir ||
      !mkdtemp(dir)) {
    message("cannot create a temporary directory in '%s': %s", tmp, strerror(errno));
    return EXIT_LIB;
  }
  snprintf(file, sizeof file, "%s/config.yaml", dir);
  int rc = 0;
  tch_status s = tch_config_dump_yaml(c, file);
  if (s) {
    rc = lib_error(s, "cannot write the config");
  } else {
    FILE *f = fopen(file, "rb");
    if (!f) {
      message("cannot read '%s': %s", file, strerror(errno));
      rc = EXIT_LIB;
    } else {
      char buf[8192];
      size_t k;
      while ((k = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, k, stdout);
      if (ferror(f)) rc = EXIT_LIB;
      fclose(f);
      if (fflush(stdout) != 0 || ferror(stdout)) {
        message("cannot write to stdout: %s", strerror(errno));
        rc = EXIT_LIB;
      }
    }
  }
  remove(file);
  rmdir(dir);
  return rc;
}

static int check_config(const tch_config *c, const char *path)
{
  tch_env *env = NULL;
  tch_trainer *tr = NULL;
  const char *name = path ? path : "the default config";
  int rc = EXIT_LIB;
  tch_status s;
  uint64_t steps = 0;
  tch_mixer *mixer;
  const char *schedule = "?";
  uint32_t edim = 0, T = 0;
  if ((s = tch_env_create_from_config(c, &env))) {
    lib_error(s, "cannot create the env of %s", name);
  } else if ((s = tch_trainer_create(env, c, &tr))) {
    lib_error(s, "cannot create a trainer for %s", name);
  } else if (tch_env_energy_dim(env, &edim) == TCH_OK) {
    /* A diffusion trainer: no mixer, the reference's fixed pattern for the method. */
    const tch_config *eff = c;
    int64_t batch = 0;
    tch_trainer_get_config(tr, &eff);
    tch_config_get_int(eff, "train.batch_size", &batch);
    tch_env_diffusion_steps(env, &T, NULL);
    if ((s = tch_trainer_planned_steps(tr, &steps))) {
      lib_error(s, "cannot plan a run of %s", name);
    } else {
      message("%s: ok: %llu steps, diffusion sampler on a %u-D target, T %u, batch %" PRId64
              ", %s", name, (unsigned long long)steps, edim, T, batch, diffusion_method(eff));
      rc = 0;
    }
  } else if ((s = tch_trainer_planned_steps(tr, &steps)) ||
             (s = tch_trainer_get_mixer(tr, &mixer)) || (s = tch_mixer_schedule(mixer, &schedule))) {
    lib_error(s, "cannot plan a run of %s", name);
  } else {
    message("%s: ok: %llu steps, behaviour schedule '%s'", name, (unsigned long long)steps,
            schedule);
    rc = 0;
  }
  tch_trainer_free(tr);
  tch_env_free(env);
  return rc;
}

static int cmd_config(int argc, char **argv)
{
  enum { O_SET = 1, O_CHECK };
  static const optdef defs[] = { { "--set", 1, O_SET }, { "--check", 0, O_CHECK }, { NULL, 0, 0 } };
  const char *path = NULL;
  int check = 0, n_sets = 0;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets) usage_error("out of memory");
  argiter it = { argc, argv, 0, 0 };
  const char *v;
  int id;
  while ((id = next_arg(&it, defs, &v)) != ARG_END) {
    switch (id) {
    case OPT_HELP: fputs(usage_config, stdout); free(sets); return 0;
    case ARG_POSITIONAL:
      if (path) usage_error("unexpected argument '%s' (one CONFIG.yaml at most)", v);
      path = v;
      break;
    case O_SET: sets[n_sets++] = v; break;
    case O_CHECK: check = 1; break;
    default: break;
    }
  }
  tch_config *c = NULL;
  int rc = load_config(path, sets, n_sets, &c);
  free(sets);
  if (rc) return rc;
  rc = print_config_yaml(c);
  if (rc == 0 && check) rc = check_config(c, path);
  tch_config_free(c);
  return rc;
}

/* ---- main -------------------------------------------------------------------------------- */
static int cmd_help(int argc, char **argv)
{
  if (argc > 1) usage_error("usage: teacher help [COMMAND]");
  const char *topic = argc ? argv[0] : NULL;
  if (!topic) fputs(usage_main, stdout);
  else if (strcmp(topic, "train") == 0) fputs(usage_train, stdout);
  else if (strcmp(topic, "sample") == 0) fputs(usage_sample, stdout);
  else if (strcmp(topic, "evaluate") == 0) fputs(usage_evaluate, stdout);
  else if (strcmp(topic, "config") == 0) fputs(usage_config, stdout);
  else if (strcmp(topic, "help") == 0) fputs(usage_main, stdout);
  else usage_error("no help for unknown command '%s'", topic);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fputs(usage_main, stderr);
    return EXIT_USAGE;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
    printf("teacher (libteacher) %s, ABI %u\n", tch_version_string(), tch_abi_version());
    return 0;
  }
  if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help"))
    return cmd_help(argc - 2, argv + 2);
  tch_set_log_callback(log_sink, NULL, 1);
  if (!strcmp(cmd, "train")) { g_cmd = "train"; return cmd_train(argc - 2, argv + 2); }
  if (!strcmp(cmd, "sample")) { g_cmd = "sample"; return cmd_sample(argc - 2, argv + 2); }
  if (!strcmp(cmd, "evaluate")) { g_cmd = "evaluate"; return cmd_evaluate(argc - 2, argv + 2); }
  if (!strcmp(cmd, "config")) { g_cmd = "config"; return cmd_config(argc - 2, argv + 2); }
  if (cmd[0] == '-') usage_error("unknown option '%s' (see 'teacher help')", cmd);
  usage_error("unknown command '%s' (see 'teacher help')", cmd);
}
