// aldp.cpp -- Reinforced SMC on a real molecule: the Boltzmann distribution of alanine
// dipeptide in implicit solvent at 300 K, in the 60 internal coordinates of the paper's
// ALDP target (spec shared/spec/reinforced-smc.md §9.2), with the energy from OpenMM.
//
// The host (this program) owns the physics: it builds the OpenMM System from
// aldp_params.txt (AMBER ff96 + OBC1, see README.md), minimises a standard geometry to get
// the reference of the internal coordinates, and hands the library a batched log-density
// callback x[n, 60] -> log p (internal -> Cartesian with its log-det, OpenMM energy / kT,
// the reference's clamps and chirality penalty). The library trains the diffusion sampler
// with the paper's method (smc.method smc_buffer: TB + chunked SubTB, twisted SMC, the
// importance-weighted buffer) through the public API only. No gradient is declared: the
// SMC and TB methods do not need one.
//
// After training it reports the importance-sampled log Z (ELBO, ESS), an SMC run's log Z
// estimate, the fraction of L-form samples and where the samples fall on the Ramachandran
// map (phi, psi), raw and importance-reweighted. `--bench` measures the energy callback
// alone.
//
//   aldp [--steps N] [--particles N] [--time-steps T] [--chunks K] [--hidden H]
//        [--flow-hidden H] [--prefill B] [--buffer-batches B] [--replay-ratio R]
//        [--samples M] [--seed S] [--energy-cut C] [--log-every N] [--rama FILE]
//        [--bench] [--check] [--openmm-gb] [--chirality-on-angles]
//        [--params FILE] [--set KEY=VALUE]...
//
// --set overrides any configuration key after the reference's settings (e.g. --set
// student.lr=1e-3); --openmm-gb evaluates the implicit solvent with OpenMM's CustomGBForce instead of the
// host's equivalent ObcEnergy (slow: for checking); --chirality-on-angles applies the
// D-form penalty to the dihedral angles rather than to x (README.md, "Deviations").
// Exit status 0 on success, 1 on a library or OpenMM error, 2 on a bad command line;
// with --check also 1 unless every reported estimate is finite.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <teacher.h>

#include "aldp_model.hpp"

#ifndef ALDP_PARAMS_PATH
#define ALDP_PARAMS_PATH "aldp_params.txt"
#endif

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = 180.0 / kPi;

struct Options {
  uint64_t steps = 1000, seed = 0, samples = 2000, log_every = 0;
  uint32_t particles = 100, time_steps = 32, chunks = 4, hidden = 128, flow_hidden = 64;
  uint32_t prefill = 10, buffer_batches = 100, replay_ratio = 3;
  double energy_cut = 1e8;
  std::string params = ALDP_PARAMS_PATH, rama;
  std::vector<std::string> sets;   // --set key=value, applied last
  bool bench = false, check = false, openmm_gb = false, chirality_on_angles = false;
};

double seconds_since(std::chrono::steady_clock::time_point t0)
{
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The energy callback. Errors from OpenMM become TCH_E_CALLBACK with the exception's text.
int log_density(void *user, size_t n, size_t dim, const double *x, double *out_log_p,
                double *out_grad)
{
  auto *target = static_cast<aldp::Target *>(user);
  if (dim != aldp::kDim || out_grad) return 1;   // no gradient is declared
  try {
    for (size_t i = 0; i < n; i++) out_log_p[i] = target->log_density(x + i * aldp::kDim);
  } catch (const std::exception &e) {
    tch_set_callback_error(e.what());
    return 2;
  }
  return 0;
}

bool fail(const char *what)
{
  fprintf(stderr, "%s: %s\n", what, tch_last_error());
  return false;
}

double log_mean_exp(const std::vector<double> &v)
{
  double top = -INFINITY;
  for (double a : v) top = std::max(top, a);
  if (!std::isfinite(top)) return top;
  double s = 0;
  for (double a : v) s += std::exp(a - top);
  return top + std::log(s / v.size());
}

// ---- Ramachandran statistics ----
enum Basin { kBeta, kAlphaR, kAlphaL, kBasins };
const char *const kBasinName[kBasins] = {"beta/PII/C7eq (phi<0, other psi)",
                                         "alpha_R (phi<0, -120<=psi<50)",
                                         "alpha_L/C7ax (phi>=0)"};
Basin basin_of(double phi, double psi)
{
  if (phi >= 0) return kAlphaL;
  double p = psi * kDeg;
  return (p >= -120 && p < 50) ? kAlphaR : kBeta;
}

struct Rama {
  std::vector<double> phi, psi, weight;   // radians; weights sum to 1
};

void print_rama(const char *title, const Rama &r)
{
  // 12 rows of psi (30 degrees, +180 at the top) x 24 columns of phi (15 degrees).
  constexpr int kRows = 12, kCols = 24;
  double h[kRows][kCols] = {};
  double basin[kBasins] = {};
  for (size_t i = 0; i < r.phi.size(); i++) {
    int c = std::min(kCols - 1, std::max(0, int((r.phi[i] + kPi) / (2 * kPi) * kCols)));
    int row = std::min(kRows - 1, std::max(0, int((kPi - r.psi[i]) / (2 * kPi) * kRows)));
    h[row][c] += r.weight[i];
    basin[basin_of(r.phi[i], r.psi[i])] += r.weight[i];
  }
  double top = 0;
  for (auto &row : h)
    for (double v : row) top = std::max(top, v);
  printf("%s\n  psi\n", title);
  const char *shades = " .:-=+*#%@";
  for (int row = 0; row < kRows; row++) {
    printf("%5d |", 180 - 30 * row);   // the row's upper psi edge, degrees
    for (int c = 0; c < kCols; c++) {
      double v = h[row][c];
      // log scale over three decades: ' ' empty, '.' <= 1e-3 of the peak ... '@' the peak
      int k = v <= 0 ? 0 : std::max(1, std::min(9, int(std::ceil(9 + 3 * std::log10(v / top)))));
      putchar(shades[k]);
    }
    printf("|\n");
  }
  printf("      -180%*s0%*s180  phi\n", kCols / 2 - 5, "", kCols / 2 - 3, "");
  for (int b = 0; b < kBasins; b++) printf("  %-34s %6.3f\n", kBasinName[b], basin[b]);
}

Rama rama_of_samples(const aldp::Target &target, const std::vector<double> &x, size_t n,
                     const std::vector<double> *log_w, bool l_form_only)
{
  Rama r;
  std::vector<double> lw;
  for (size_t i = 0; i < n; i++) {
    const double *xi = x.data() + i * aldp::kDim;
    if (l_form_only && !aldp::Target::is_l_form_angles(xi)) continue;
    double cart[aldp::kCartDim], phi, psi;
    target.to_cartesian(xi, cart);
    aldp::phi_psi(cart, &phi, &psi);
    if (!std::isfinite(phi) || !std::isfinite(psi)) continue;
    r.phi.push_back(phi);
    r.psi.push_back(psi);
    lw.push_back(log_w ? (*log_w)[i] : 0.0);
  }
  double top = -INFINITY, s = 0;
  for (double a : lw) top = std::max(top, a);
  for (double &a : lw) s += (a = std::exp(a - top));
  for (double a : lw) r.weight.push_back(a / s);
  return r;
}

// The harmonic (Laplace) estimate of log Z of the reference basin alone: the Gaussian
// integral of the second-order expansion of log p around x = 0, by central differences.
// Not the target's log Z (it ignores the other conformational basins and the 3-fold
// rotations of the three methyl groups, each a mode of its own: + log 27), but a yardstick.
double laplace_log_z(aldp::Target &target)
{
  constexpr int n = aldp::kDim;
  const double h = 1e-3;
  std::vector<double> x(n, 0.0), hess(n * n), grad(n);
  auto f = [&](int i, double di, int j, double dj) {
    x[i] += di;
    x[j] += dj;
    double v = target.log_density(x.data());
    x[i] -= di;
    x[j] -= dj;
    return v;
  };
  const double f0 = target.log_density(x.data());
  for (int i = 0; i < n; i++) {
    double fp = f(i, h, i, 0), fm = f(i, -h, i, 0);
    grad[i] = (fp - fm) / (2 * h);
    hess[i * n + i] = -(fp - 2 * f0 + fm) / (h * h);
    for (int j = 0; j < i; j++)
      hess[i * n + j] = hess[j * n + i] =
          -(f(i, h, j, h) - f(i, h, j, -h) - f(i, -h, j, h) + f(i, -h, j, -h)) / (4 * h * h);
  }
  // Cholesky H = L L^T; log det H and g^T H^-1 g.
  std::vector<double> l(n * n, 0.0), y(n);
  double log_det = 0;
  for (int j = 0; j < n; j++) {
    double d = hess[j * n + j];
    for (int k = 0; k < j; k++) d -= l[j * n + k] * l[j * n + k];
    if (!(d > 0)) return NAN;   // not a local maximum of log p
    l[j * n + j] = std::sqrt(d);
    log_det += std::log(d);
    for (int i = j + 1; i < n; i++) {
      double v = hess[i * n + j];
      for (int k = 0; k < j; k++) v -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = v / l[j * n + j];
    }
  }
  double quad = 0;
  for (int i = 0; i < n; i++) {
    double v = grad[i];
    for (int k = 0; k < i; k++) v -= l[i * n + k] * y[k];
    y[i] = v / l[i * n + i];
    quad += y[i] * y[i];
  }
  return f0 + 0.5 * quad + 0.5 * n * std::log(2 * kPi) - 0.5 * log_det;
}

void bench(aldp::Target &target)
{
  constexpr size_t kBatch = 400;
  std::mt19937_64 rng(1);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(kBatch * aldp::kDim), lp(kBatch);
  for (double &v : x) v = normal(rng);
  for (int rep = 0; rep < 3; rep++) {
    auto t0 = std::chrono::steady_clock::now();
    if (log_density(&target, kBatch, aldp::kDim, x.data(), lp.data(), nullptr)) return;
    double s = seconds_since(t0);
    printf("bench: %zu log-density evaluations (N(0, I) points) in %.3f s: %.0f evaluations/s\n",
           kBatch, s, kBatch / s);
  }
}

struct Progress {
  std::chrono::steady_clock::time_point t0;
  uint64_t last_step = 0;
  double last_time = 0;
};

int progress(void *user, const tch_trainer *t, uint64_t step)
{
  auto *p = static_cast<Progress *>(user);
  double now = seconds_since(p->t0);
  double loss, logz, smc_logz, smc_ess, calls;
  tch_trainer_metric(t, "loss.student", &loss);
  tch_trainer_metric(t, "logz.student", &logz);
  tch_trainer_metric(t, "smc.log_z_hat", &smc_logz);
  tch_trainer_metric(t, "smc.ess", &smc_ess);
  tch_trainer_metric(t, "reward_calls", &calls);
  printf("step %6llu  loss %10.4g  logZ %9.3f  smc logZ %9.3f  smc ESS %5.3f  energy evals %9.0f"
         "  %.2f s/it\n", (unsigned long long)step, loss, logz, smc_logz, smc_ess, calls,
         (now - p->last_time) / double(step - p->last_step));
  fflush(stdout);
  p->last_step = step;
  p->last_time = now;
  return 0;
}

bool parse(int argc, char **argv, Options &o)
{
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    auto u64 = [&]() { return strtoull(argv[++i], nullptr, 10); };
    if (!strcmp(a, "--bench")) o.bench = true;
    else if (!strcmp(a, "--check")) o.check = true;
    else if (!strcmp(a, "--openmm-gb")) o.openmm_gb = true;
    else if (!strcmp(a, "--chirality-on-angles")) o.chirality_on_angles = true;
    else if (has && !strcmp(a, "--steps")) o.steps = u64();
    else if (has && !strcmp(a, "--seed")) o.seed = u64();
    else if (has && !strcmp(a, "--samples")) o.samples = u64();
    else if (has && !strcmp(a, "--log-every")) o.log_every = u64();
    else if (has && !strcmp(a, "--particles")) o.particles = uint32_t(u64());
    else if (has && !strcmp(a, "--time-steps")) o.time_steps = uint32_t(u64());
    else if (has && !strcmp(a, "--chunks")) o.chunks = uint32_t(u64());
    else if (has && !strcmp(a, "--hidden")) o.hidden = uint32_t(u64());
    else if (has && !strcmp(a, "--flow-hidden")) o.flow_hidden = uint32_t(u64());
    else if (has && !strcmp(a, "--prefill")) o.prefill = uint32_t(u64());
    else if (has && !strcmp(a, "--buffer-batches")) o.buffer_batches = uint32_t(u64());
    else if (has && !strcmp(a, "--replay-ratio")) o.replay_ratio = uint32_t(u64());
    else if (has && !strcmp(a, "--energy-cut")) o.energy_cut = strtod(argv[++i], nullptr);
    else if (has && !strcmp(a, "--rama")) o.rama = argv[++i];
    else if (has && !strcmp(a, "--params")) o.params = argv[++i];
    else if (has && !strcmp(a, "--set") && strchr(argv[i + 1], '=')) o.sets.push_back(argv[++i]);
    else return false;
  }
  return o.particles > 0 && o.samples > 0 && o.steps > 0 && o.energy_cut > 0;
}

// The reference's settings (RSMC-T scripts/aldp.sh) at the sizes of the command line,
// except the learning rates: its 5e-4 (policy, flow) and 0.05 (log Z, beta) are for a
// 1024-wide network and 10000 iterations; the small networks here learn faster with the
// library's defaults, the JAX code's 1e-3 and 0.1 (README.md; --set restores them).
bool configure(tch_config *c, const Options &o, double logz_init)
{
  struct {
    const char *key, *value;
  } fixed[] = {
      {"smc.enabled", "true"},         {"smc.method", "smc_buffer"},
      {"smc.buffer_priority", "piw"},  {"smc.buffer_target_ess", "0.05"},
      {"smc.target_ess", "0.05"},      {"smc.resample_threshold", "0.2"},
      {"smc.resampler", "systematic"}, {"smc.init_std", "1"},
      {"student.lr", "1e-3"},          {"smc.lr_flow", "1e-3"},
      {"student.lr_logz", "0.1"},      {"smc.lr_beta", "0.1"},
      {"smc.lr_milestones", "0.8"},    {"smc.lr_decay", "0.1"},
      {"env.diffusion.t_scale", "1"},
  };
  for (auto &f : fixed)
    if (tch_config_set_from_string(c, f.key, f.value)) return fail(f.key);
  if (tch_config_set_int(c, "seed", int64_t(o.seed)) ||
      tch_config_set_int(c, "train.steps", int64_t(o.steps)) ||
      tch_config_set_int(c, "train.batch_size", o.particles) ||
      tch_config_set_int(c, "env.diffusion.steps", o.time_steps) ||
      tch_config_set_int(c, "smc.n_chunks", o.chunks) ||
      tch_config_set_int(c, "nn.hidden_dim", o.hidden) ||
      tch_config_set_int(c, "smc.flow_hidden", o.flow_hidden) ||
      tch_config_set_int(c, "smc.prefill_batches", o.prefill) ||
      tch_config_set_int(c, "smc.buffer_batches", o.buffer_batches) ||
      tch_config_set_int(c, "smc.replay_ratio", o.replay_ratio) ||
      tch_config_set_double(c, "student.logz_init", logz_init))
    return fail("config");
  for (const std::string &kv : o.sets) {
    size_t eq = kv.find('=');
    if (tch_config_set_from_string(c, kv.substr(0, eq).c_str(), kv.substr(eq + 1).c_str()))
      return fail(kv.c_str());
  }
  return true;
}

bool run(const Options &o, aldp::Target &target)
{
  tch_energy_desc d;
  tch_energy_desc_init(&d);
  d.dim = aldp::kDim;
  d.log_density = log_density;
  d.user = &target;
  tch_config *cfg = nullptr;
  tch_env *env = nullptr;
  tch_trainer *tr = nullptr;
  tch_smc *smc = nullptr;
  bool ok = false;
  const size_t n = o.particles, m = o.samples;
  std::vector<double> x(std::max(n, m) * aldp::kDim), log_w(std::max(n, m));
  do {
    if (tch_config_create(&cfg) || !configure(cfg, o, 0.0)) { fail("config"); break; }
    if (tch_env_create_energy(&d, cfg, &env)) { fail("tch_env_create_energy"); break; }

    // log Z starts at the importance-weighted ELBO of the untrained sampler (the
    // reference's init_log_Z iw_elbo): a throw-away trainer with the same seed has the same
    // initial weights.
    if (tch_trainer_create(env, cfg, &tr)) { fail("tch_trainer_create"); break; }
    if (tch_trainer_sample_continuous(tr, o.seed + 1000, n, x.data(), log_w.data())) {
      fail("tch_trainer_sample_continuous");
      break;
    }
    tch_trainer_free(tr);
    tr = nullptr;
    std::vector<double> lw0(log_w.begin(), log_w.begin() + n);
    double logz0 = log_mean_exp(lw0);
    printf("initial sampler: IW-ELBO log Z = %.3f (log Z starts there)\n", logz0);
    if (!configure(cfg, o, logz0) || tch_trainer_create(env, cfg, &tr)) { fail("tch_trainer_create"); break; }

    Progress prog;
    prog.t0 = std::chrono::steady_clock::now();
    uint64_t every = o.log_every ? o.log_every : std::max<uint64_t>(1, o.steps / 10);
    if (tch_trainer_set_progress(tr, progress, &prog, every)) { fail("set_progress"); break; }
    printf("training: %llu iterations, N = %zu particles, T = %u steps, K = %u chunks, "
           "hidden %u, flow %u, prefill %u, buffer %u batches, r = %u\n",
           (unsigned long long)o.steps, n, o.time_steps, o.chunks, o.hidden, o.flow_hidden,
           o.prefill, o.buffer_batches, o.replay_ratio);
    fflush(stdout);
    const uint64_t evals0 = target.evaluations();
    if (tch_trainer_step(tr, o.steps)) { fail("tch_trainer_step"); break; }
    double train_s = seconds_since(prog.t0);
    double calls = NAN;
    tch_trainer_metric(tr, "reward_calls", &calls);
    printf("trained in %.1f s (%.3f s per iteration; %llu energy evaluations, %.0f per second "
           "of training)\n", train_s, train_s / double(o.steps),
           (unsigned long long)(target.evaluations() - evals0),
           double(target.evaluations() - evals0) / train_s);

    // Importance sampling from the trained sampler.
    if (tch_trainer_evaluate(tr, m)) { fail("tch_trainer_evaluate"); break; }
    double is_logz, elbo, ess;
    tch_trainer_metric(tr, "eval.log_z", &is_logz);
    tch_trainer_metric(tr, "eval.elbo", &elbo);
    tch_trainer_metric(tr, "eval.ess_fraction", &ess);
    printf("evaluation (%zu samples): IS log Z = %.3f  ELBO = %.3f  ESS = %.4f of the samples\n",
           m, is_logz, elbo, ess);

    // One SMC run with the learnt twists.
    if (tch_smc_create(tr, nullptr, &smc) ||
        tch_smc_run(smc, o.seed + 2000, n, nullptr, nullptr, nullptr)) {
      fail("tch_smc");
      break;
    }
    double smc_logz, smc_ess;
    tch_smc_metric(smc, "log_z", &smc_logz);
    tch_smc_metric(smc, "ess", &smc_ess);
    printf("SMC (%zu particles, learnt twists): log Z-hat = %.3f  ESS = %.4f\n", n, smc_logz, smc_ess);

    // Samples: chirality and the Ramachandran map.
    if (tch_trainer_sample_continuous(tr, o.seed + 3000, m, x.data(), log_w.data())) {
      fail("tch_trainer_sample_continuous");
      break;
    }
    size_t l_form = 0, l_angles = 0;
    for (size_t i = 0; i < m; i++) {
      l_form += aldp::Target::is_l_form(x.data() + i * aldp::kDim);
      l_angles += aldp::Target::is_l_form_angles(x.data() + i * aldp::kDim);
    }
    printf("L-form samples: %.3f by the reference's test (on x), %.3f by the dihedral angles\n",
           double(l_form) / double(m), double(l_angles) / double(m));
    // Samples the target clamps or penalises have log R below -energy_cut; the others' mean
    // log-weight is an ELBO restricted to them, which the penalised ones do not swamp.
    size_t valid = 0;
    double valid_sum = 0;
    for (size_t i = 0; i < m; i++)
      if (log_w[i] > -0.5 * o.energy_cut) valid++, valid_sum += log_w[i];
    printf("unpenalised samples (log R > -energy_cut): %.3f, their mean log-weight %.3f\n",
           double(valid) / double(m), valid ? valid_sum / double(valid) : NAN);
    print_rama("Ramachandran map of the L-form samples (by their angles; unweighted):",
               rama_of_samples(target, x, m, nullptr, true));
    print_rama("... importance-reweighted (all samples; D-form ones weigh ~0):",
               rama_of_samples(target, x, m, &log_w, false));
    if (!o.rama.empty()) {
      FILE *f = fopen(o.rama.c_str(), "w");
      if (!f) { fprintf(stderr, "cannot write %s\n", o.rama.c_str()); break; }
      fprintf(f, "# phi_deg psi_deg log_w l_form(reference test) l_form(angles)\n");
      for (size_t i = 0; i < m; i++) {
        double cart[aldp::kCartDim], phi, psi;
        target.to_cartesian(x.data() + i * aldp::kDim, cart);
        aldp::phi_psi(cart, &phi, &psi);
        fprintf(f, "%.3f %.3f %.6g %d %d\n", phi * kDeg, psi * kDeg, log_w[i],
                int(aldp::Target::is_l_form(x.data() + i * aldp::kDim)),
                int(aldp::Target::is_l_form_angles(x.data() + i * aldp::kDim)));
      }
      fclose(f);
      printf("wrote %s\n", o.rama.c_str());
    }
    ok = true;
    if (o.check && !(std::isfinite(is_logz) && std::isfinite(elbo) && std::isfinite(smc_logz) &&
                     std::isfinite(logz0))) {
      fprintf(stderr, "check failed: a non-finite estimate\n");
      ok = false;
    }
  } while (false);
  tch_smc_free(smc);
  tch_trainer_free(tr);
  tch_env_free(env);
  tch_config_free(cfg);
  return ok;
}

}  // namespace

int main(int argc, char **argv)
{
  Options o;
  if (!parse(argc, argv, o)) {
    fprintf(stderr,
            "usage: %s [--steps N] [--particles N] [--time-steps T] [--chunks K] [--hidden H]\n"
            "          [--flow-hidden H] [--prefill B] [--buffer-batches B] [--replay-ratio R]\n"
            "          [--samples M] [--seed S] [--energy-cut C] [--log-every N] [--rama FILE]\n"
            "          [--bench] [--check] [--openmm-gb] [--chirality-on-angles]\n"
            "          [--params FILE] [--set KEY=VALUE]...\n", argv[0]);
    return 2;
  }
  try {
    aldp::TargetOptions to;
    to.energy_cut = o.energy_cut;
    to.openmm_gb = o.openmm_gb;
    to.chirality_on_angles = o.chirality_on_angles;
    auto t0 = std::chrono::steady_clock::now();
    aldp::Target target(o.params, to);
    double phi, psi;
    aldp::phi_psi(target.reference_cartesian(), &phi, &psi);
    printf("alanine dipeptide: AMBER ff96 + OBC1 (%s); reference geometry minimised in %.2f s: "
           "E = %.4f kJ/mol, phi = %.1f, psi = %.1f degrees; log p(0) = %.3f\n",
           o.params.c_str(), seconds_since(t0), target.reference_energy_kj(), phi * kDeg,
           psi * kDeg, [&] { double z[aldp::kDim] = {}; return target.log_density(z); }());
    printf("harmonic estimate of log Z of the reference basin alone (no other basins, no "
           "methyl rotations): %.3f\n", laplace_log_z(target));
    if (o.bench) {
      bench(target);
      return 0;
    }
    return run(o, target) ? 0 : 1;
  } catch (const std::exception &e) {
    fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
