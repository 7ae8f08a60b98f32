// rdkit_molecules.cpp -- a molecule-generation environment scored with RDKit (C++17).
//
// Objects are SMILES strings built token by token from a small fragment vocabulary
// (atoms, methyl and fluoro branches, a carbonyl, a phenyl ring). Plain concatenation of
// these tokens is always a chain, so most strings parse; only chlorine placed anywhere but
// at either end gets two bonds and fails RDKit's valence check -- those invalid strings
// get a low reward and are counted.
// The reward callback parses each string with RDKit::SmilesToMol and scores valid
// molecules by their Wildman-Crippen logP (RDKit::Descriptors::calcClogP):
//
//     log R(x) = clip(logP(x), -5, 5)      valid molecules
//     log R(x) = -10                        strings RDKit rejects
//
// A Student is trained with the adaptive Teacher and a prioritised replay buffer; at the
// end the program prints the best molecules met during training and what the trained
// Student samples.
//
//   rdkit_molecules [--steps N] [--seed S] [--samples M] [--top K]
//
// Exit status 0 on success, 1 on a library error (printed with tch_last_error()), 2 on a
// bad command line.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <GraphMol/Descriptors/Crippen.h>
#include <GraphMol/ROMol.h>
#include <GraphMol/RWMol.h>
#include <GraphMol/SmilesParse/SmilesParse.h>
#include <GraphMol/SmilesParse/SmilesWrite.h>
#include <RDGeneral/RDLog.h>

#include <teacher.h>

namespace {

// The vocabulary. Action a < N_TOKENS appends token a; action N_TOKENS is EXIT.
const char *const TOKENS[] = {"C", "N", "O", "S", "c1ccccc1", "C(=O)", "C(C)", "C(F)", "Cl"};
constexpr uint32_t N_TOKENS = sizeof TOKENS / sizeof TOKENS[0];
constexpr uint32_t MAX_TOKENS = 6;               // state: 6 token ids, -1 = empty
constexpr uint32_t EXIT_ACTION = N_TOKENS;
constexpr double LOG_R_INVALID = -10.0;
constexpr double LOGP_CLIP = 5.0;

// A state is MAX_TOKENS int32 values: token ids, then -1 padding.
uint32_t n_tokens(const int32_t *s)
{
  uint32_t k = 0;
  while (k < MAX_TOKENS && s[k] >= 0) k++;
  return k;
}

std::string to_smiles(const int32_t *s)
{
  std::string out;
  for (uint32_t k = 0; k < MAX_TOKENS && s[k] >= 0; k++) out += TOKENS[s[k]];
  return out;
}

struct Score {
  bool valid = false;
  double logp = 0.0;        // Crippen logP (valid molecules only)
  double log_r = LOG_R_INVALID;
  std::string canonical;    // RDKit canonical SMILES (valid molecules only)
};

// Everything the callbacks share, passed to them as `user`.
struct Scorer {
  std::unordered_map<std::string, Score> cache;   // every distinct string scored so far
  uint64_t calls = 0;          // log_reward evaluations (strings)
  uint64_t invalid_calls = 0;  // ... of which RDKit rejected

  // Parses and scores one string; RDKit errors become an invalid score.
  const Score &score(const std::string &smi)
  {
    auto it = cache.find(smi);
    calls++;
    if (it != cache.end()) {
      invalid_calls += !it->second.valid;
      return it->second;
    }
    Score sc;
    std::unique_ptr<RDKit::RWMol> mol;
    try {
      mol.reset(RDKit::SmilesToMol(smi));   // sanitizes; NULL or an exception if invalid
    } catch (const std::exception &) {
      mol.reset();
    }
    if (mol && mol->getNumAtoms() > 0) {
      sc.valid = true;
      sc.logp = RDKit::Descriptors::calcClogP(*mol);
      sc.log_r = std::clamp(sc.logp, -LOGP_CLIP, LOGP_CLIP);
      sc.canonical = RDKit::MolToSmiles(*mol);
    }
    invalid_calls += !sc.valid;
    return cache.emplace(smi, std::move(sc)).first->second;
  }
};

// ---- the env's callbacks (C linkage: they are called through C function pointers) -------
// A callback must not let a C++ exception escape into the C library: each one catches
// everything, attaches the text with tch_set_callback_error() and returns non-zero.
extern "C" {

static int step_cb(void *, size_t n, const int32_t *states, const int32_t *actions,
                   int32_t *out)
{
  for (size_t i = 0; i < n; i++) {
    const int32_t *s = states + i * MAX_TOKENS;
    int32_t *o = out + i * MAX_TOKENS;
    std::memcpy(o, s, MAX_TOKENS * sizeof *s);
    uint32_t k = n_tokens(s);
    if (k >= MAX_TOKENS) {   // the library never asks this: the mask forbids it
      tch_set_callback_error("step: the string is already full");
      return 1;
    }
    o[k] = actions[i];
  }
  return 0;
}

// Backward action a undoes forward action a: drop the last token (which is a).
static int backward_step_cb(void *, size_t n, const int32_t *states, const int32_t *,
                            int32_t *out)
{
  for (size_t i = 0; i < n; i++) {
    const int32_t *s = states + i * MAX_TOKENS;
    int32_t *o = out + i * MAX_TOKENS;
    std::memcpy(o, s, MAX_TOKENS * sizeof *s);
    uint32_t k = n_tokens(s);
    if (k == 0) {
      tch_set_callback_error("backward_step: the empty string has no parent");
      return 1;
    }
    o[k - 1] = -1;
  }
  return 0;
}

// Forward: append while there is room; EXIT once there is at least one token (a full
// string can only EXIT). Backward: the single parent drops the last token.
static int masks_cb(void *, size_t n, const int32_t *states, uint8_t *fwd, uint8_t *bwd)
{
  const size_t na = N_TOKENS + 1;
  for (size_t i = 0; i < n; i++) {
    const int32_t *s = states + i * MAX_TOKENS;
    uint32_t k = n_tokens(s);
    for (uint32_t a = 0; a < N_TOKENS; a++) fwd[i * na + a] = k < MAX_TOKENS;
    fwd[i * na + EXIT_ACTION] = k >= 1;
    if (bwd)
      for (uint32_t a = 0; a < N_TOKENS; a++) bwd[i * N_TOKENS + a] = k > 0 && s[k - 1] == (int32_t)a;
  }
  return 0;
}

static int log_reward_cb(void *user, size_t n, const int32_t *states, double *out)
{
  auto *sc = static_cast<Scorer *>(user);
  try {
    for (size_t i = 0; i < n; i++) out[i] = sc->score(to_smiles(states + i * MAX_TOKENS)).log_r;
  } catch (const std::exception &e) {
    tch_set_callback_error(e.what());
    return 1;
  }
  return 0;
}

static void scorer_free(void *user) { delete static_cast<Scorer *>(user); }

static int progress_cb(void *user, const tch_trainer *t, uint64_t step)
{
  const auto *sc = static_cast<const Scorer *>(user);
  double loss = NAN, logz = NAN;
  if (tch_trainer_metric(t, "loss.student", &loss) != TCH_OK ||
      tch_trainer_metric(t, "logz.student", &logz) != TCH_OK)
    return 1;   // stop: tch_trainer_step returns TCH_STOPPED
  std::printf("step %5llu  loss %9.4f  log Z %7.3f  strings scored %6llu (%zu distinct, "
              "%.1f%% invalid)\n",
              static_cast<unsigned long long>(step), loss, logz,
              static_cast<unsigned long long>(sc->calls), sc->cache.size(),
              sc->calls ? 100.0 * static_cast<double>(sc->invalid_calls) / static_cast<double>(sc->calls) : 0.0);
  std::fflush(stdout);
  return 0;
}

}  // extern "C"

bool check(tch_status s, const char *what)
{
  if (s == TCH_OK) return true;
  std::fprintf(stderr, "rdkit_molecules: %s failed: %s: %s\n", what, tch_status_str(s),
               tch_last_error());
  return false;
}

#define CHECK(call) \
  do { if (!check((call), #call)) return 1; } while (0)

struct Handles {   // frees in any order: handles are reference counted
  tch_env *env = nullptr;
  tch_config *cfg = nullptr;
  tch_trainer *tr = nullptr;
  ~Handles()
  {
    tch_trainer_free(tr);
    tch_config_free(cfg);
    tch_env_free(env);
  }
};

int run(unsigned long long steps, unsigned long long seed, size_t n_samples, size_t top)
{
  Handles h;
  // The Scorer belongs to the env once the env exists (user_free deletes it); if creation
  // fails the library does not call user_free, and the unique_ptr still owns it.
  auto owner = std::make_unique<Scorer>();
  Scorer *scorer = owner.get();

  static const uint32_t vocab[MAX_TOKENS] = {N_TOKENS, N_TOKENS, N_TOKENS,
                                             N_TOKENS, N_TOKENS, N_TOKENS};
  static const int32_t s0[MAX_TOKENS] = {-1, -1, -1, -1, -1, -1};
  tch_discrete_env_desc d;
  tch_discrete_env_desc_init(&d);
  d.state_dim = MAX_TOKENS;
  d.n_actions = N_TOKENS + 1;
  d.max_len = MAX_TOKENS;
  d.s0 = s0;
  d.step = step_cb;
  d.backward_step = backward_step_cb;
  d.masks = masks_cb;
  d.log_reward = log_reward_cb;
  d.features = nullptr;          // built-in one-hot of each position
  d.vocab = vocab;
  d.user = scorer;
  d.user_free = scorer_free;
  CHECK(tch_env_create_discrete(&d, &h.env));
  owner.release();               // now owned by the env

  CHECK(tch_config_create(&h.cfg));
  CHECK(tch_config_set_int(h.cfg, "seed", static_cast<int64_t>(seed)));
  CHECK(tch_config_set_int(h.cfg, "nn.hidden_dim", 128));
  CHECK(tch_config_set_bool(h.cfg, "teacher.enabled", 1));
  CHECK(tch_config_set_bool(h.cfg, "buffer.enabled", 1));
  CHECK(tch_config_set_string(h.cfg, "buffer.priority", "teacher_reward"));
  CHECK(tch_config_set_int(h.cfg, "buffer.capacity", 2000));   // no env default here
  CHECK(tch_trainer_create(h.env, h.cfg, &h.tr));
  CHECK(tch_trainer_set_progress(h.tr, progress_cb, scorer, steps >= 5 ? steps / 5 : 1));

  std::printf("libteacher %s: SMILES from %u tokens, at most %u tokens; log R = clip(Crippen "
              "logP, -5, 5), invalid = %g; %llu steps\n",
              tch_version_string(), N_TOKENS, MAX_TOKENS, LOG_R_INVALID, steps);
  CHECK(tch_trainer_step(h.tr, steps));

  // The best distinct molecules met during training (by canonical SMILES).
  std::vector<const Score *> best;
  std::unordered_set<std::string> seen;
  for (const auto &kv : scorer->cache)
    if (kv.second.valid && seen.insert(kv.second.canonical).second) best.push_back(&kv.second);
  std::sort(best.begin(), best.end(), [](const Score *a, const Score *b) {
    return a->logp != b->logp ? a->logp > b->logp : a->canonical < b->canonical;
  });
  size_t invalid_distinct = 0;
  for (const auto &kv : scorer->cache) invalid_distinct += !kv.second.valid;
  std::printf("\nscored %llu strings during training: %zu distinct, %zu of them invalid "
              "(%llu invalid evaluations)\n",
              static_cast<unsigned long long>(scorer->calls), scorer->cache.size(),
              invalid_distinct, static_cast<unsigned long long>(scorer->invalid_calls));
  std::printf("best molecules found (%zu distinct valid):\n", best.size());
  for (size_t i = 0; i < best.size() && i < top; i++)
    std::printf("  %2zu. logP %6.3f  log R %6.3f  %s\n", i + 1, best[i]->logp, best[i]->log_r,
                best[i]->canonical.c_str());

  // What the trained Student samples (no exploration).
  tch_policy *student = nullptr;   // borrowed: valid while the trainer lives
  CHECK(tch_trainer_get_student(h.tr, &student));
  std::vector<int32_t> x(n_samples * MAX_TOKENS);
  std::vector<double> log_r(n_samples);
  CHECK(tch_policy_sample_discrete(student, h.env, seed + 1, n_samples, x.data(), nullptr));
  const uint64_t invalid_before = scorer->invalid_calls;
  CHECK(tch_env_log_reward(h.env, n_samples, x.data(), log_r.data()));   // via the callback
  double mean_log_r = 0.0;
  for (double v : log_r) mean_log_r += v;
  mean_log_r /= static_cast<double>(n_samples);
  std::printf("%zu Student samples: %.1f%% valid, mean log R %.3f\n", n_samples,
              100.0 * (1.0 - static_cast<double>(scorer->invalid_calls - invalid_before) /
                                 static_cast<double>(n_samples)),
              mean_log_r);
  return 0;
}

}  // namespace

int main(int argc, char **argv)
{
  unsigned long long steps = 500, seed = 0, samples = 1000, top = 10;
  for (int i = 1; i < argc; i++) {
    unsigned long long *dst = nullptr;
    if (!std::strcmp(argv[i], "--steps")) dst = &steps;
    else if (!std::strcmp(argv[i], "--seed")) dst = &seed;
    else if (!std::strcmp(argv[i], "--samples")) dst = &samples;
    else if (!std::strcmp(argv[i], "--top")) dst = &top;
    char *end = nullptr;
    if (!dst || i + 1 >= argc || (*dst = std::strtoull(argv[++i], &end, 10), *end != '\0')) {
      std::fprintf(stderr, "usage: %s [--steps N] [--seed S] [--samples M] [--top K]\n", argv[0]);
      return 2;
    }
  }
  if (samples == 0) samples = 1;
  if (tch_version_number() < TCH_VERSION_NUMBER) {
    std::fprintf(stderr, "rdkit_molecules: libteacher %s is older than the headers (%s)\n",
                 tch_version_string(), TCH_VERSION_STRING);
    return 1;
  }
  // RDKit logs every SMILES it rejects to stderr; this program counts them instead.
  boost::logging::disable_logs("rdApp.*");
  try {
    return run(steps, seed, static_cast<size_t>(samples), static_cast<size_t>(top));
  } catch (const std::exception &e) {
    std::fprintf(stderr, "rdkit_molecules: %s\n", e.what());
    return 1;
  }
}
