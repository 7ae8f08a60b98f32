/* teacher: the command-line program of libteacher.
 *
 *   teacher train CONFIG.yaml [options]     train a sampler (docs/cli.md)
 *   teacher sample POLICY.tchp CONFIG.yaml  sample terminal objects from a saved policy
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
  "  --save-policy PATH       save the trained Student policy (.tchp) at the end\n"
  "  --quiet                  no progress output (the summary line is still printed)\n"
  "\n"
  "SIGINT/SIGTERM finish the current step, write the checkpoint (if a path is configured)\n"
  "and exit with status 130/143.\n";

static const char usage_sample[] =
  "usage: teacher sample POLICY.tchp CONFIG.yaml [options]\n"
  "\n"
  "  -n N                     number of samples (default 10)\n"
  "  --seed S                 sampling seed (default 0)\n"
  "  --format csv|jsonl       output format (default csv: x_0,...,x_{d-1},log_pf)\n"
  "  --header                 csv: print a header line first\n"
  "  --set KEY=VALUE          override a configuration key of CONFIG (repeatable)\n";

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
  uint64_t ckpt_every, log_every, start, target;
  double t0, wall_offset;
  int failed;                /* the callback hit an error: err holds it */
  char err[1024];
} train_run;

static double wall_time(const train_run *r) { return r->wall_offset + (tcli_now() - r->t0); }

static int write_record(train_run *r, const tch_trainer *t, int final)
{
  if (!r->metrics) return 0;
  char err[512];
  if (tcli_metrics_write(r->metrics, t, wall_time(r), final, err, sizeof err) == 0) return 0;
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

/* Called after every step: stop on a signal, log and checkpoint on their intervals, redraw
 * the bar. Nothing here changes the trainer. */
static int train_progress(void *user, const tch_trainer *t, uint64_t step)
{
  train_run *r = user;
  if (g_signal) return 1;
  if (step < r->target) {   /* the end of the run is handled after tch_trainer_step */
    if (r->log_every && step % r->log_every == 0) {
      if (write_record(r, t, 0)) return 1;
      tcli_progress_line(&r->progress, t, step, tcli_now());
    }
    if (r->ckpt_path && r->ckpt_every && step % r->ckpt_every == 0 && save_checkpoint(r, t))
      return 1;
  }
  tcli_progress_tick(&r->progress, t, step, tcli_now(), 0);
  return 0;
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
  int64_t steps, ckpt_every, log_every, eval;   /* INT64_MIN: not given */
} train_opts;

/* Writes the command-line run options into c (the corresponding train.* keys). */
static void apply_run_options(tch_config *c, const train_opts *o)
{
  struct { const char *opt, *key; int64_t v; } ints[] = {
    { "--steps", "train.steps", o->steps },
    { "--checkpoint-every", "train.checkpoint_every", o->ckpt_every },
    { "--log-every", "train.log_every", o->log_every },
    { "--eval", "train.eval_samples", o->eval },
  };
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if (ints[i].v != INT64_MIN && tch_config_set_int(c, ints[i].key, ints[i].v) != TCH_OK)
      usage_error("%s %" PRId64 ": %s", ints[i].opt, ints[i].v, tch_last_error());
  if (o->ckpt && tch_config_set_string(c, "train.checkpoint_path", o->ckpt) != TCH_OK)
    usage_error("--checkpoint: %s", tch_last_error());
  if (o->metrics && tch_config_set_string(c, "train.metrics_path", o->metrics) != TCH_OK)
    usage_error("--metrics: %s", tch_last_error());
}

static void parse_train(int argc, char **argv, train_opts *o)
{
  enum { O_SET = 1, O_STEPS, O_RESUME, O_CKPT, O_CKPT_EVERY, O_METRICS, O_LOG_EVERY, O_EVAL,
         O_QUIET, O_SAVE_POLICY };
  static const optdef defs[] = {
    { "--set", 1, O_SET }, { "--steps", 1, O_STEPS }, { "--resume", 1, O_RESUME },
    { "--checkpoint", 1, O_CKPT }, { "--checkpoint-every", 1, O_CKPT_EVERY },
    { "--metrics", 1, O_METRICS }, { "--log-every", 1, O_LOG_EVERY }, { "--eval", 1, O_EVAL },
    { "--quiet", 0, O_QUIET }, { "-q", 0, O_QUIET }, { "--save-policy", 1, O_SAVE_POLICY },
    { NULL, 0, 0 },
  };
  memset(o, 0, sizeof *o);
  o->steps = o->ckpt_every = o->log_every = o->eval = INT64_MIN;
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
    case O_QUIET: o->quiet = 1; break;
    case O_SAVE_POLICY: o->save_policy = v; break;
    default: break;
    }
  }
  if (!o->config) usage_error("missing CONFIG.yaml (usage: teacher train CONFIG.yaml [options])");
  if (o->resume && o->n_sets)
    usage_error("--set cannot be combined with --resume: a resumed run keeps the configuration "
                "stored in its checkpoint");
  if (o->metrics && !*o->metrics) o->metrics = NULL;
  if (o->metrics && tcli_metrics_format_of(o->metrics) == TCLI_METRICS_UNKNOWN)
    usage_error("--metrics %s: unknown format (the name must end in .csv or .jsonl)", o->metrics);
}

static void print_summary(tch_trainer *tr, int evaluated, uint64_t steps_run, double train_s)
{
  double step = tcli_metric(tr, "step"), calls = tcli_metric(tr, "reward_calls");
  double modes = tcli_metric(tr, "modes"), total = tcli_metric(tr, "modes.total");
  double l1 = tcli_metric(tr, "l1");
  printf("steps %.0f | reward calls %.0f | modes %.0f/%.0f | train L1 %.4e", step, calls, modes,
         total, l1);
  if (evaluated)
    printf(" | eval L1 %.4e | eval modes %.0f", tcli_metric(tr, "eval.l1"),
           tcli_metric(tr, "eval.modes"));
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
  tch_status s;
  char errbuf[1024];

  if (load_config(o.config, o.sets, o.n_sets, &cfg)) goto out;
  if (!o.resume) apply_run_options(cfg, &o);   /* recorded in the checkpoints */
  if ((s = tch_env_create_from_config(cfg, &env))) {
    lib_error(s, "cannot create the env of '%s'", o.config);
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
  int64_t ckpt_every = 0, log_every = -1, eval = 0;
  if ((s = tch_config_get_string(run_cfg, "train.checkpoint_path", &ckpt)) ||
      (s = tch_config_get_string(run_cfg, "train.metrics_path", &metrics)) ||
      (s = tch_config_get_int(run_cfg, "train.checkpoint_every", &ckpt_every)) ||
      (s = tch_config_get_int(run_cfg, "train.log_every", &log_every)) ||
      (s = tch_config_get_int(run_cfg, "train.eval_samples", &eval))) {
    lib_error(s, "cannot read the train.* settings");
    goto out;
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
  r.ckpt_path = *ckpt ? ckpt : NULL;
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
  if (!o.quiet) {
    tch_mixer *mixer = NULL;
    tch_policy *student = NULL;
    const char *schedule = "?", *kernel = "?", *loss = "?", *env_name = "?";
    int64_t seed = 0, ndim = 0, horizon = 0;
    if (tch_trainer_get_mixer(tr, &mixer) == TCH_OK) tch_mixer_schedule(mixer, &schedule);
    if (tch_trainer_get_student(tr, &student) == TCH_OK) tch_policy_gemm_kernel(student, &kernel);
    tch_config_get_string(run_cfg, "student.loss", &loss);
    tch_config_get_string(run_cfg, "env.name", &env_name);
    tch_config_get_int(run_cfg, "seed", &seed);
    tch_config_get_int(run_cfg, "env.hypergrid.ndim", &ndim);
    tch_config_get_int(run_cfg, "env.hypergrid.horizon", &horizon);
    int teacher = 0, gafn = 0;
    tch_config_get_bool(run_cfg, "teacher.enabled", &teacher);
    tch_config_get_bool(run_cfg, "gafn.enabled", &gafn);
    fprintf(stderr, "teacher: %s ndim %" PRId64 " horizon %" PRId64 " | %s%s | schedule '%s' | "
            "steps %llu..%llu | seed %" PRId64 " | BLIS %s\n",
            env_name, ndim, horizon, teacher ? "teacher + " : gafn ? "gafn + " : "", loss, schedule,
            (unsigned long long)r.start, (unsigned long long)r.target, seed, kernel);
  }
  r.t0 = tcli_now();
  tcli_progress_init(&r.progress, mode, r.start, r.target, r.t0);
  g_progress = &r.progress;
  if (!have_start && r.target > r.start && write_record(&r, tr, 0)) {
    message("%s", r.err);
    goto out;
  }
  tcli_progress_line(&r.progress, tr, r.start, r.t0);

  /* Train. */
  if ((s = tch_trainer_set_progress(tr, train_progress, &r, 1))) {
    lib_error(s, "cannot install the progress callback");
    goto out;
  }
  s = g_signal ? TCH_STOPPED : r.target > r.start ? tch_trainer_step(tr, r.target - r.start) : TCH_OK;
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
  if (s == TCH_STOPPED) {   /* a signal: keep what we have and stop */
    if (write_record(&r, tr, 0) || (r.ckpt_path && save_checkpoint(&r, tr))) {
      message("%s", r.err);
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
  if (write_record(&r, tr, 1) || (r.ckpt_path && save_checkpoint(&r, tr))) {
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
  print_summary(tr, evaluated, now_step - r.start, train_end - r.t0);
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
static int cmd_sample(int argc, char **argv)
{
  enum { O_N = 1, O_SEED, O_FORMAT, O_HEADER, O_SET };
  static const optdef defs[] = {
    { "-n", 1, O_N }, { "--n", 1, O_N }, { "--seed", 1, O_SEED }, { "--format", 1, O_FORMAT },
    { "--header", 0, O_HEADER }, { "--set", 1, O_SET }, { NULL, 0, 0 },
  };
  const char *policy_path = NULL, *config_path = NULL;
  uint64_t n = 10, seed = 0;
  int jsonl = 0, header = 0, n_sets = 0;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  if (!sets) usage_error("out of memory");
  argiter it = { argc, argv, 0, 0 };
  const char *v;
  int id;
  while ((id = next_arg(&it, defs, &v)) != ARG_END) {
    switch (id) {
    case OPT_HELP: fputs(usage_sample, stdout); free(sets); return 0;
    case ARG_POSITIONAL:
      if (!policy_path) policy_path = v;
      else if (!config_path) config_path = v;
      else usage_error("unexpected argument '%s'", v);
      break;
    case O_N: n = parse_u64("-n", v); break;
    case O_SEED: seed = parse_u64("--seed", v); break;
    case O_FORMAT:
      if (strcmp(v, "csv") == 0) jsonl = 0;
      else if (strcmp(v, "jsonl") == 0) jsonl = 1;
      else usage_error("--format: '%s' is not csv or jsonl", v);
      break;
    case O_HEADER: header = 1; break;
    case O_SET: sets[n_sets++] = v; break;
    default: break;
    }
  }
  if (!policy_path || !config_path)
    usage_error("usage: teacher sample POLICY.tchp CONFIG.yaml [-n N] [--seed S] [--format csv|jsonl]");
  if (n == 0 || n > (uint64_t)1 << 32) usage_error("-n: %llu is not in [1, 2^32]", (unsigned long long)n);

  int rc = EXIT_LIB;
  tch_config *cfg = NULL;
  tch_env *env = NULL;
  tch_policy *pol = NULL;
  int32_t *states = NULL;
  double *log_pf = NULL;
  uint32_t sd = 0;
  tch_status s;
  if (load_config(config_path, sets, n_sets, &cfg)) goto out;
  if ((s = tch_env_create_from_config(cfg, &env))) {
    lib_error(s, "cannot create the env of '%s'", config_path);
    goto out;
  }
  if ((s = tch_policy_load(policy_path, &pol))) {
    lib_error(s, "cannot load policy '%s'", policy_path);
    goto out;
  }
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
    lib_error(s, "sampling from '%s' failed", policy_path);
    goto out;
  }
  if (header && !jsonl) {
    for (uint32_t j = 0; j < sd; j++) printf("x%u,", j);
    printf("log_pf\n");
  }
  for (uint64_t i = 0; i < n; i++) {
    const int32_t *x = states + i * sd;
    if (jsonl) {
      fputs("{\"x\":[", stdout);
      for (uint32_t j = 0; j < sd; j++) printf("%s%" PRId32, j ? "," : "", x[j]);
      printf("],\"log_pf\":%.17g}\n", log_pf[i]);
    } else {
      for (uint32_t j = 0; j < sd; j++) printf("%" PRId32 ",", x[j]);
      printf("%.17g\n", log_pf[i]);
    }
  }
  if (fflush(stdout) != 0 || ferror(stdout)) {
    message("cannot write to stdout: %s", strerror(errno));
    goto out;
  }
  rc = 0;
out:
  free(states);
  free(log_pf);
  tch_policy_free(pol);
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
  if ((s = tch_env_create_from_config(c, &env))) {
    lib_error(s, "cannot create the env of %s", name);
  } else if ((s = tch_trainer_create(env, c, &tr))) {
    lib_error(s, "cannot create a trainer for %s", name);
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
  if (!strcmp(cmd, "config")) { g_cmd = "config"; return cmd_config(argc - 2, argv + 2); }
  if (cmd[0] == '-') usage_error("unknown option '%s' (see 'teacher help')", cmd);
  usage_error("unknown command '%s' (see 'teacher help')", cmd);
}
