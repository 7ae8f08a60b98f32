// aldp_model.cpp -- see aldp_model.hpp.
#include "aldp_model.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <utility>
#include <vector>

namespace aldp {

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kPiPlusEps = kPi + 1e-4;       // aldp.py: PI_PLUS_EPS
constexpr double kGasConstant = 8.314e-3;       // kJ/mol/K, boltzgen openmm_interface.R
constexpr double kChiralityMeanDiff = -0.043;   // aldp.py defaults
constexpr double kChiralityThreshold = 0.8;
constexpr double kStdBond = 0.005, kStdAngle = 0.15, kStdDihedral = 0.2;  // boltzgen defaults

// ---- small vector helpers ----
struct V3 {
  double x, y, z;
};
V3 at(const double *p) { return {p[0], p[1], p[2]}; }
V3 operator-(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
V3 operator+(V3 a, V3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
V3 operator*(double s, V3 a) { return {s * a.x, s * a.y, s * a.z}; }
double dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
V3 cross(V3 a, V3 b) { return {a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x}; }
double norm(V3 a) { return std::sqrt(dot(a, a)); }
V3 unit(V3 a) { return (1.0 / norm(a)) * a; }
void store(double *p, V3 a) { p[0] = a.x; p[1] = a.y; p[2] = a.z; }

double bond_length(const double *a, const double *b) { return norm(at(a) - at(b)); }
// The angle a-b-c at b.
double bond_angle(const double *a, const double *b, const double *c)
{
  V3 u = unit(at(a) - at(b)), v = unit(at(c) - at(b));
  return std::acos(std::max(-1.0, std::min(1.0, dot(u, v))));
}

// Places atom d from c (bonded), b, a: |d - c| = bond, angle b-c-d, IUPAC dihedral a-b-c-d
// (the natural-extension reference frame construction).
V3 place(V3 a, V3 b, V3 c, double bond, double angle, double torsion)
{
  V3 bc = unit(c - b);
  V3 n = unit(cross(b - a, bc));
  V3 m = cross(n, bc);
  double r_sin = bond * std::sin(angle);
  return c + (-bond * std::cos(angle)) * bc + (r_sin * std::cos(torsion)) * m +
         (r_sin * std::sin(torsion)) * n;
}

// boltzgen measures a z-matrix dihedral as minus the IUPAC one (internal.calc_dihedrals).
double zmatrix_dihedral(const double *cart, const ZEntry &z)
{
  return -dihedral(cart + 3 * z.dihedral, cart + 3 * z.angle, cart + 3 * z.bonded,
                   cart + 3 * z.atom);
}

// Python's (v + pi) % (2 pi) - pi: [-pi, pi).
double wrap(double v)
{
  double w = std::fmod(v + kPi, 2 * kPi);
  if (w < 0) w += 2 * kPi;
  return w - kPi;
}

double log_cosh(double v)
{
  double a = std::fabs(v);
  return a + std::log1p(std::exp(-2 * a)) - std::log(2.0);
}

// The order in which the z-matrix can be built: every atom after its three references.
std::vector<int> build_order()
{
  std::vector<bool> placed(kAtoms, false);
  for (int a : kFrameAtoms) placed[a] = true;
  std::vector<int> order;
  while ((int)order.size() < kZAtoms) {
    size_t before = order.size();
    for (int k = 0; k < kZAtoms; k++) {
      const ZEntry &z = kZMatrix[k];
      if (!placed[z.atom] && placed[z.bonded] && placed[z.angle] && placed[z.dihedral]) {
        placed[z.atom] = true;
        order.push_back(k);
      }
    }
    if (order.size() == before) throw std::logic_error("z-matrix has a cycle");
  }
  return order;
}

// Raw (unnormalised) internal coordinates -> Cartesian in the frame; returns the log-det of
// the spherical placements (sum 2 log|b| + log|sin a|) plus log |C - CA| (boltzgen's
// CompleteInternalCoordinateTransform.inverse: jac + log(b2), NaN for b2 < 0).
double build_cartesian(const double *raw, double *cart)
{
  static const std::vector<int> order = build_order();
  double b1 = raw[0], b2 = raw[1], theta = raw[2];
  store(cart + 3 * kFrameAtoms[0], {0, 0, 0});
  store(cart + 3 * kFrameAtoms[1], {b1, 0, 0});
  store(cart + 3 * kFrameAtoms[2], {b2 * std::cos(theta), b2 * std::sin(theta), 0});
  double log_det = std::log(b2);
  for (int k : order) {
    const ZEntry &z = kZMatrix[k];
    double b = raw[bond_index(k)], a = raw[angle_index(k)], d = raw[dihedral_index(k)];
    V3 p = place(at(cart + 3 * z.dihedral), at(cart + 3 * z.angle), at(cart + 3 * z.bonded), b, a, -d);
    store(cart + 3 * z.atom, p);
    log_det += 2 * std::log(std::fabs(b)) + std::log(std::fabs(std::sin(a)));
  }
  return log_det;
}

// Cartesian -> raw internal coordinates (dihedrals in (-pi, pi]); the inverse's log-det.
double measure_internal(const double *cart, double *raw)
{
  const double *ca = cart + 3 * kFrameAtoms[0], *n = cart + 3 * kFrameAtoms[1],
               *c = cart + 3 * kFrameAtoms[2];
  raw[0] = bond_length(n, ca);
  raw[1] = bond_length(c, ca);
  raw[2] = bond_angle(n, ca, c);
  double log_det = std::log(raw[1]);
  for (int k = 0; k < kZAtoms; k++) {
    const ZEntry &z = kZMatrix[k];
    raw[bond_index(k)] = bond_length(cart + 3 * z.atom, cart + 3 * z.bonded);
    raw[angle_index(k)] = bond_angle(cart + 3 * z.angle, cart + 3 * z.bonded, cart + 3 * z.atom);
    raw[dihedral_index(k)] = zmatrix_dihedral(cart, z);
    log_det += 2 * std::log(raw[bond_index(k)]) + std::log(std::fabs(std::sin(raw[angle_index(k)])));
  }
  return log_det;
}

bool is_dihedral_index(int i) { return i >= 5 && (i - 5) % 3 == 0; }
bool is_angle_index(int i) { return i == 2 || (i >= 4 && (i - 4) % 3 == 0); }

[[noreturn]] void parse_error(const std::string &path, int line, const std::string &what)
{
  throw std::runtime_error(path + ":" + std::to_string(line) + ": " + what);
}

}  // namespace

// The reference's z-matrix (aldp.py), atom indices in the order of openmmtools'
// alanine-dipeptide-gbsa prmtop: 0 HH31 1 CH3 2 HH32 3 HH33 4 C 5 O (ACE), 6 N 7 H 8 CA
// 9 HA 10 CB 11-13 HB1-3 14 C 15 O (ALA), 16 N 17 H 18 CH3 19-21 HH31-33 (NME).
const ZEntry kZMatrix[kZAtoms] = {
    {0, 1, 4, 6},     {1, 4, 6, 8},     {2, 1, 4, 0},     {3, 1, 4, 0},
    {4, 6, 8, 14},    {5, 4, 6, 8},     {7, 6, 8, 4},     {9, 8, 6, 4},
    {10, 8, 6, 4},    {11, 10, 8, 6},   {12, 10, 8, 11},  {13, 10, 8, 11},
    {15, 14, 8, 16},  {16, 14, 8, 6},   {17, 16, 14, 15}, {18, 16, 14, 8},
    {19, 18, 16, 14}, {20, 18, 16, 19}, {21, 18, 16, 19},
};
const int kFrameAtoms[3] = {8, 6, 14};

double dihedral(const double *a, const double *b, const double *c, const double *d)
{
  V3 b0 = at(a) - at(b), b1 = unit(at(c) - at(b)), b2 = at(d) - at(c);
  V3 v = b0 - dot(b0, b1) * b1, w = b2 - dot(b2, b1) * b1;
  return std::atan2(dot(cross(b1, v), w), dot(v, w));
}

void phi_psi(const double *cart, double *phi, double *psi)
{
  *phi = dihedral(cart + 3 * 4, cart + 3 * 6, cart + 3 * 8, cart + 3 * 14);
  *psi = dihedral(cart + 3 * 6, cart + 3 * 8, cart + 3 * 14, cart + 3 * 16);
}

// ---- the force field ----------------------------------------------------------------------

std::unique_ptr<OpenMM::System> load_system(const std::string &path)
{
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  auto system = std::make_unique<OpenMM::System>();
  auto *bonds = new OpenMM::HarmonicBondForce();
  system->addForce(bonds);   // the System owns its forces from here on
  auto *angles = new OpenMM::HarmonicAngleForce();
  system->addForce(angles);
  auto *torsions = new OpenMM::PeriodicTorsionForce();
  system->addForce(torsions);
  auto *nonbonded = new OpenMM::NonbondedForce();
  system->addForce(nonbonded);
  nonbonded->setNonbondedMethod(OpenMM::NonbondedForce::NoCutoff);
  auto *gb = new OpenMM::CustomGBForce();
  system->addForce(gb);
  gb->setNonbondedMethod(OpenMM::CustomGBForce::NoCutoff);

  std::vector<double> mass(kAtoms, -1);
  std::vector<std::vector<double>> nb(kAtoms), gbp(kAtoms);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    std::istringstream s(line);
    std::string key;
    if (!(s >> key) || key[0] == '#') continue;
    auto atom_index = [&](int i) {
      if (i < 0 || i >= kAtoms) parse_error(path, lineno, "atom index out of range");
      return i;
    };
    auto rest = [&]() {
      std::string r;
      std::getline(s, r);
      size_t p = r.find_first_not_of(" \t");
      if (p == std::string::npos) parse_error(path, lineno, "missing expression");
      return r.substr(p);
    };
    bool ok = true;
    if (key == "atom") {
      int i;
      std::string res, name, elem;
      double m;
      ok = bool(s >> i >> res >> name >> elem >> m);
      if (ok) mass[atom_index(i)] = m;
    } else if (key == "bond") {
      int i, j;
      double r0, k;
      ok = bool(s >> i >> j >> r0 >> k);
      if (ok) bonds->addBond(atom_index(i), atom_index(j), r0, k);
    } else if (key == "angle") {
      int i, j, l;
      double t0, k;
      ok = bool(s >> i >> j >> l >> t0 >> k);
      if (ok) angles->addAngle(atom_index(i), atom_index(j), atom_index(l), t0, k);
    } else if (key == "torsion") {
      int i, j, k, l, n;
      double phase, kk;
      ok = bool(s >> i >> j >> k >> l >> n >> phase >> kk);
      if (ok) torsions->addTorsion(atom_index(i), atom_index(j), atom_index(k), atom_index(l), n, phase, kk);
    } else if (key == "nonbonded") {
      int i;
      double q, sig, eps;
      ok = bool(s >> i >> q >> sig >> eps);
      if (ok) nb[atom_index(i)] = {q, sig, eps};
    } else if (key == "exception") {
      int i, j;
      double qq, sig, eps;
      ok = bool(s >> i >> j >> qq >> sig >> eps);
      if (ok) nonbonded->addException(atom_index(i), atom_index(j), qq, sig, eps);
    } else if (key == "gb_parameter") {
      std::string name;
      ok = bool(s >> name);
      if (ok) gb->addPerParticleParameter(name);
    } else if (key == "gb_value") {
      std::string name;
      int type;
      ok = bool(s >> name >> type) && type >= 0 && type <= 2;
      if (ok) gb->addComputedValue(name, rest(), OpenMM::CustomGBForce::ComputationType(type));
    } else if (key == "gb_energy") {
      int type;
      ok = bool(s >> type) && type >= 0 && type <= 2;
      if (ok) gb->addEnergyTerm(rest(), OpenMM::CustomGBForce::ComputationType(type));
    } else if (key == "gb_particle") {
      int i;
      ok = bool(s >> i);
      std::vector<double> p;
      double v;
      while (ok && s >> v) p.push_back(v);
      if (ok) gbp[atom_index(i)] = p;
    } else {
      parse_error(path, lineno, "unknown record '" + key + "'");
    }
    if (!ok) parse_error(path, lineno, "malformed '" + key + "' record");
  }
  for (int i = 0; i < kAtoms; i++) {
    if (mass[i] <= 0 || nb[i].size() != 3 || gbp[i].size() != (size_t)gb->getNumPerParticleParameters())
      throw std::runtime_error(path + ": atom " + std::to_string(i) + " lacks a record");
    system->addParticle(mass[i]);
    nonbonded->addParticle(nb[i][0], nb[i][1], nb[i][2]);
    gb->addParticle(gbp[i]);
  }
  if (bonds->getNumBonds() != 21 || gb->getNumEnergyTerms() == 0)
    throw std::runtime_error(path + ": not the alanine-dipeptide parameter file");
  return system;
}

void standard_geometry(const OpenMM::System &system, double *cart)
{
  // Equilibrium lengths and angles from the force field, looked up by atom pair / triple.
  std::map<std::pair<int, int>, double> r0;
  std::map<std::tuple<int, int, int>, double> theta;
  for (int f = 0; f < system.getNumForces(); f++) {
    if (auto *b = dynamic_cast<const OpenMM::HarmonicBondForce *>(&system.getForce(f))) {
      for (int i = 0; i < b->getNumBonds(); i++) {
        int p, q;
        double len, k;
        b->getBondParameters(i, p, q, len, k);
        r0[{p, q}] = r0[{q, p}] = len;
      }
    } else if (auto *a = dynamic_cast<const OpenMM::HarmonicAngleForce *>(&system.getForce(f))) {
      for (int i = 0; i < a->getNumAngles(); i++) {
        int p, q, r;
        double t, k;
        a->getAngleParameters(i, p, q, r, t, k);
        theta[{p, q, r}] = theta[{r, q, p}] = t;
      }
    }
  }
  auto bond = [&](int p, int q) {
    auto it = r0.find({p, q});
    if (it == r0.end()) throw std::runtime_error("no bond parameter for the z-matrix");
    return it->second;
  };
  auto angle = [&](int p, int q, int r) {
    auto it = theta.find({p, q, r});
    if (it == theta.end()) throw std::runtime_error("no angle parameter for the z-matrix");
    return it->second;
  };
  // IUPAC dihedral (dihedral, angle, bonded, atom) in degrees, per z-matrix atom. L-alanine:
  // C-N-CA-HA = phi + 120, C-N-CA-CB = phi - 120.
  const double phi = -150, psi = 150;
  std::map<int, double> torsion = {
      {0, 180},  {1, 180},       {2, 120},       {3, -120}, {4, phi},  {5, 0},    {7, 180},
      {9, phi + 120}, {10, phi - 120}, {11, 180}, {12, 120}, {13, -120}, {15, 180}, {16, psi},
      {17, 180}, {18, 180},      {19, 180},      {20, 120}, {21, -120},
  };
  double raw[kDim];
  raw[0] = bond(kFrameAtoms[1], kFrameAtoms[0]);
  raw[1] = bond(kFrameAtoms[2], kFrameAtoms[0]);
  raw[2] = angle(kFrameAtoms[1], kFrameAtoms[0], kFrameAtoms[2]);
  for (int k = 0; k < kZAtoms; k++) {
    const ZEntry &z = kZMatrix[k];
    raw[bond_index(k)] = bond(z.atom, z.bonded);
    raw[angle_index(k)] = angle(z.angle, z.bonded, z.atom);
    raw[dihedral_index(k)] = -torsion.at(z.atom) * kPi / 180;   // boltzgen's sign
  }
  build_cartesian(raw, cart);
}

// ---- internal coordinates ---------------------------------------------------------------

bool InternalCoordinates::is_circular(int index)
{
  // ind_circ_dih = [0, 1, 2, 3, 4, 5, 8, 9, 10, 13, 15, 16] counts boltzgen's topologically
  // sorted z-matrix; these are the dihedrals of atoms 0 1 4 5 7 9 10 11 16 17 18 19, i.e.
  // entries k = 0 1 4 5 6 7 8 9 13 14 15 16 of kZMatrix (the 7 others place a hydrogen or
  // O relative to a sibling atom and stay narrow).
  static const int circular[] = {5, 8, 17, 20, 23, 26, 29, 32, 44, 47, 50, 53};
  return std::find(std::begin(circular), std::end(circular), index) != std::end(circular);
}

InternalCoordinates::InternalCoordinates(const double *reference_cart)
{
  measure_internal(reference_cart, mean_);
  log_std_sum_ = 0;
  for (int i = 0; i < kDim; i++) {
    if (is_dihedral_index(i))
      std_[i] = is_circular(i) ? 1.0 : kStdDihedral;
    else if (is_angle_index(i))
      std_[i] = kStdAngle;
    else
      std_[i] = kStdBond;
    log_std_sum_ += std::log(std_[i]);
  }
}

double InternalCoordinates::to_cartesian(const double *x, double *cart) const
{
  double raw[kDim];
  for (int i = 0; i < kDim; i++) raw[i] = x[i] * std_[i] + mean_[i];
  return build_cartesian(raw, cart) + log_std_sum_;
}

double InternalCoordinates::to_internal(const double *cart, double *x) const
{
  double raw[kDim];
  double log_det = measure_internal(cart, raw);
  for (int i = 0; i < kDim; i++) {
    double d = raw[i] - mean_[i];
    if (is_dihedral_index(i)) d = wrap(d);
    x[i] = d / std_[i];
  }
  return -(log_det + log_std_sum_);
}

// ---- the implicit solvent ---------------------------------------------------------------

ObcEnergy::ObcEnergy(const OpenMM::CustomGBForce &force)
{
  if (force.getNumParticles() != kAtoms || force.getNumPerParticleParameters() != 3)
    throw std::runtime_error("the CustomGBForce is not the OBC1 force of aldp_params.txt");
  for (int i = 0; i < kAtoms; i++) {
    std::vector<double> p;
    force.getParticleParameters(i, p);
    charge_[i] = p[0];
    offset_radius_[i] = p[1];   // radius - 0.009 nm
    scaled_radius_[i] = p[2];   // screening factor x offset radius
  }
}

double ObcEnergy::energy(const double *cart) const
{
  // customgbforces.GBSAOBC1Force with _createEnergyTerms(solventDielectric 78.5,
  // soluteDielectric 1, SA 'ACE', no cutoff, kappa 0, offset 0.009).
  constexpr double kCoulomb = 138.935485, kOffset = 0.009, kSurface = 28.3919551;
  constexpr double kDielectric = 1.0 / 1.0 - 1.0 / 78.5;
  double r[kAtoms][kAtoms];
  for (int i = 0; i < kAtoms; i++)
    for (int j = i; j < kAtoms; j++)
      r[i][j] = r[j][i] = bond_length(cart + 3 * i, cart + 3 * j);
  double born[kAtoms];
  for (int i = 0; i < kAtoms; i++) {
    // The descreening integral I_i over every other atom (exclusions do not apply).
    const double or_i = offset_radius_[i];
    double integral = 0;
    for (int j = 0; j < kAtoms; j++) {
      if (j == i) continue;
      const double d = r[i][j], sr = scaled_radius_[j];
      if (d + sr - or_i < 0) continue;   // select(step(r + sr2 - or1), ..., 0)
      const double u = d + sr, l = std::max(or_i, std::fabs(d - sr));
      integral += 0.5 * (1 / l - 1 / u + 0.25 * (d - sr * sr / d) * (1 / (u * u) - 1 / (l * l)) +
                         0.5 * std::log(l / u) / d);
    }
    const double psi = integral * or_i;
    born[i] = 1 / (1 / or_i - std::tanh(0.8 * psi + 2.909125 * psi * psi * psi) / (or_i + kOffset));
  }
  double e = 0;
  for (int i = 0; i < kAtoms; i++) {
    const double radius = offset_radius_[i] + kOffset;
    e += -0.5 * kCoulomb * kDielectric * charge_[i] * charge_[i] / born[i];
    e += kSurface * (radius + 0.14) * (radius + 0.14) * std::pow(radius / born[i], 6);
    for (int j = i + 1; j < kAtoms; j++) {
      const double bb = born[i] * born[j];
      const double f = std::sqrt(r[i][j] * r[i][j] + bb * std::exp(-r[i][j] * r[i][j] / (4 * bb)));
      e += -kCoulomb * kDielectric * charge_[i] * charge_[j] / f;
    }
  }
  return e;
}

// ---- the target -------------------------------------------------------------------------

Target::Target(const std::string &params_path, const TargetOptions &options)
    : opt_(options), kT_(kGasConstant * options.temperature)
{
  system_ = load_system(params_path);
  // Force group 1 is the implicit solvent, so that OpenMM can evaluate everything else alone.
  for (int f = 0; f < system_->getNumForces(); f++) {
    if (auto *gb = dynamic_cast<OpenMM::CustomGBForce *>(&system_->getForce(f))) {
      gb->setForceGroup(1);
      obc_ = std::make_unique<ObcEnergy>(*gb);
    }
  }
  if (!obc_) throw std::runtime_error(params_path + ": no implicit-solvent force");
  integrator_ = std::make_unique<OpenMM::VerletIntegrator>(0.001);
  context_ = std::make_unique<OpenMM::Context>(*system_, *integrator_,
                                               OpenMM::Platform::getPlatformByName("Reference"));
  // The reference geometry: the standard geometry, minimised. OpenMM's forces of the OBC1
  // CustomGBForce are slow here (no expression JIT), so a first pass replaces it with the
  // native GBSAOBCForce (OBC2: same charges, radii and screening, other tanh coefficients);
  // the second pass, with the real System, then has little left to do.
  double start[kCartDim];
  standard_geometry(*system_, start);
  std::vector<OpenMM::Vec3> pos(kAtoms);
  for (int a = 0; a < kAtoms; a++) pos[a] = OpenMM::Vec3(start[3 * a], start[3 * a + 1], start[3 * a + 2]);
  {
    std::unique_ptr<OpenMM::System> rough = load_system(params_path);
    for (int f = 0; f < rough->getNumForces(); f++) {
      if (auto *gb = dynamic_cast<OpenMM::CustomGBForce *>(&rough->getForce(f))) {
        auto *obc2 = new OpenMM::GBSAOBCForce();
        obc2->setNonbondedMethod(OpenMM::GBSAOBCForce::NoCutoff);
        for (int i = 0; i < kAtoms; i++) {
          std::vector<double> p;
          gb->getParticleParameters(i, p);   // charge, radius - 0.009, scale x (radius - 0.009)
          obc2->addParticle(p[0], p[1] + 0.009, p[2] / p[1]);
        }
        rough->removeForce(f);
        rough->addForce(obc2);
        break;
      }
    }
    OpenMM::VerletIntegrator integ(0.001);
    OpenMM::Context ctx(*rough, integ, OpenMM::Platform::getPlatformByName("Reference"));
    ctx.setPositions(pos);
    OpenMM::LocalEnergyMinimizer::minimize(ctx, opt_.minimise_tolerance, 0);
    pos = ctx.getState(OpenMM::State::Positions).getPositions();
  }
  context_->setPositions(pos);
  OpenMM::LocalEnergyMinimizer::minimize(*context_, opt_.minimise_tolerance, 0);
  OpenMM::State st = context_->getState(OpenMM::State::Positions | OpenMM::State::Energy);
  const std::vector<OpenMM::Vec3> &p = st.getPositions();
  for (int a = 0; a < kAtoms; a++)
    for (int d = 0; d < 3; d++) reference_[3 * a + d] = p[a][d];
  reference_energy_kj_ = st.getPotentialEnergy();
  ic_ = std::make_unique<InternalCoordinates>(reference_);
  // ObcEnergy must be the force's energy (a different parameter file would break it).
  double host = gb_energy_host(reference_), omm = gb_energy_openmm(reference_);
  if (!(std::fabs(host - omm) <= 1e-6 * std::max(1.0, std::fabs(omm))))
    throw std::runtime_error("the implicit-solvent energy differs from OpenMM's CustomGBForce: " +
                             std::to_string(host) + " vs " + std::to_string(omm) + " kJ/mol");
}

void Target::set_positions(const double *cart)
{
  std::vector<OpenMM::Vec3> pos(kAtoms);
  for (int a = 0; a < kAtoms; a++) pos[a] = OpenMM::Vec3(cart[3 * a], cart[3 * a + 1], cart[3 * a + 2]);
  context_->setPositions(pos);
}

double Target::gb_energy_openmm(const double *cart)
{
  set_positions(cart);
  return context_->getState(OpenMM::State::Energy, false, 1 << 1).getPotentialEnergy();
}

double Target::energy_kj(const double *cart)
{
  set_positions(cart);
  evaluations_++;
  if (opt_.openmm_gb) return context_->getState(OpenMM::State::Energy).getPotentialEnergy();
  return context_->getState(OpenMM::State::Energy, false, 1 << 0).getPotentialEnergy() +
         obc_->energy(cart);
}

double Target::reduced_energy(const double *cart)
{
  for (int i = 0; i < kCartDim; i++)
    if (!std::isfinite(cart[i])) return NAN;   // boltzgen: NaN energy, no OpenMM call
  double e = energy_kj(cart) / kT_;
  if (!std::isfinite(e)) return NAN;
  e = std::min(e, opt_.energy_max);            // boltzgen regularize_energy
  if (e >= opt_.energy_cut) e = std::log(e - opt_.energy_cut + 1) + opt_.energy_cut;
  return e;
}

namespace {
bool chirality_test(double a, double b)
{
  double d = a - b;
  double best = d;
  for (double c : {d + 2 * kPi, d - 2 * kPi})
    if (std::fabs(c) < std::fabs(best)) best = c;
  return std::fabs(best - kChiralityMeanDiff) < kChiralityThreshold;
}
}  // namespace

bool Target::is_l_form(const double *x)
{
  return chirality_test(x[kChiralityIndex[0]], x[kChiralityIndex[1]]);
}

bool Target::is_l_form_angles(const double *x)
{
  return chirality_test(std::tanh(x[kChiralityIndex[0]]) * kPiPlusEps,
                        std::tanh(x[kChiralityIndex[1]]) * kPiPlusEps);
}

double Target::squash_circular(const double *x, double *x_fab)
{
  double log_det = 0;
  for (int i = 0; i < kDim; i++) {
    x_fab[i] = x[i];
    if (InternalCoordinates::is_circular(i)) {
      x_fab[i] = std::tanh(x[i]) * kPiPlusEps;
      log_det += std::log(kPiPlusEps) - 2 * log_cosh(x[i]);
    }
  }
  return log_det;
}

double Target::unsquash_circular(const double *x_fab, double *x)
{
  double log_det = 0;
  for (int i = 0; i < kDim; i++) {
    x[i] = x_fab[i];
    if (InternalCoordinates::is_circular(i)) {
      x[i] = std::atanh(x_fab[i] / kPiPlusEps);
      log_det += std::log(kPiPlusEps) - std::log(std::fabs(kPiPlusEps * kPiPlusEps - x_fab[i] * x_fab[i]));
    }
  }
  return log_det;
}

double Target::to_cartesian(const double *x, double *cart) const
{
  double x_fab[kDim];
  double log_det = squash_circular(x, x_fab);
  return log_det + ic_->to_cartesian(x_fab, cart);
}

double Target::log_density(const double *x)
{
  double cart[kCartDim];
  double x_fab[kDim];
  double log_det_circ = squash_circular(x, x_fab);
  double log_det_ic = ic_->to_cartesian(x_fab, cart);
  // aldp.py: energy = -(log_prob(x_fab) + log_det) + penalty, log_prob = -E_reg + log_det_ic;
  // a NaN energy becomes 2 energy_cut.
  double energy = reduced_energy(cart) - log_det_ic - log_det_circ +
                  (penalty_free(x) ? 0.0 : 2 * opt_.energy_cut);
  if (!std::isfinite(energy)) energy = 2 * opt_.energy_cut;
  return -energy;
}

}  // namespace aldp
