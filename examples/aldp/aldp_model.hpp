// aldp_model.hpp -- the alanine-dipeptide Boltzmann density of Reinforced SMC's ALDP target
// (spec shared/spec/reinforced-smc.md §9.2), computed by the host with OpenMM.
//
// Three pieces, each usable alone:
//   * load_system(): the OpenMM System (AMBER ff96 + OBC1 implicit solvent, no cutoff, no
//     constraints) built through the C++ API from aldp_params.txt;
//   * InternalCoordinates: the 60-D internal coordinates of the reference's boltzgen
//     CoordinateTransform (mode "internal": a z-matrix for 19 atoms plus the bond lengths
//     and angle of the three frame atoms CA, N, C), normalised by a minimum-energy
//     reference geometry and the default standard deviations;
//   * Target: the log density the sampler is trained on, x (60) -> log p(x), as the
//     reference's ALDP.energy(): circular dihedrals through tanh(.)(pi + 1e-4) with their
//     log-det, internal -> Cartesian with its log-det, the OpenMM energy in units of kT at
//     300 K clamped by energy_cut / energy_max, a penalty for D-chirality.
// README.md describes where every number comes from and how this differs from the
// reference.
#ifndef ALDP_MODEL_HPP
#define ALDP_MODEL_HPP

#include <cstdint>
#include <memory>
#include <string>

#include <OpenMM.h>

namespace aldp {

constexpr int kAtoms = 22;
constexpr int kCartDim = 3 * kAtoms;  // 66: Cartesian coordinates, nm
constexpr int kDim = kCartDim - 6;    // 60: internal coordinates (rigid motions removed)
constexpr int kZAtoms = kAtoms - 3;   // atoms placed by the z-matrix

// Atom `atom` is placed at distance |atom - bonded|, angle (angle, bonded, atom) and
// dihedral (dihedral, angle, bonded, atom) from three atoms placed before it.
struct ZEntry {
  int atom, bonded, angle, dihedral;
};
extern const ZEntry kZMatrix[kZAtoms];  // the reference's z-matrix, in its order
extern const int kFrameAtoms[3];        // CA, N, C: the frame the z-matrix hangs on

// Indices into the 60-D state. x[0], x[1]: |N - CA|, |C - CA|; x[2]: the angle N-CA-C;
// then for z-matrix entry k: x[3+3k] bond, x[4+3k] angle, x[5+3k] dihedral.
constexpr int bond_index(int k) { return 3 + 3 * k; }
constexpr int angle_index(int k) { return 4 + 3 * k; }
constexpr int dihedral_index(int k) { return 5 + 3 * k; }
// The two dihedrals of the chirality test: C(ACE)'s (the backbone angle phi) and HA's.
constexpr int kChiralityIndex[2] = {17, 26};

// IUPAC dihedral angle a-b-c-d in radians, (-pi, pi].
double dihedral(const double *a, const double *b, const double *c, const double *d);
// The backbone dihedrals phi = C-N-CA-C and psi = N-CA-C-N of a Cartesian configuration.
void phi_psi(const double *cart, double *phi, double *psi);

// Reads aldp_params.txt (written by make_params.py) into an OpenMM System. Throws
// std::runtime_error naming the file and line of the first problem.
std::unique_ptr<OpenMM::System> load_system(const std::string &path);

// A geometry built from the force field's equilibrium bond lengths and angles and
// standard dihedrals (trans peptides, staggered methyls, L-alanine, phi = -150 degrees,
// psi = 150 degrees): the start of the energy minimisation that gives the reference.
void standard_geometry(const OpenMM::System &system, double *cart);

// The boltzgen internal-coordinate transform with the reference's settings.
class InternalCoordinates {
 public:
  // The means are the internal coordinates of `reference_cart` (66 numbers); the standard
  // deviations are boltzgen's defaults for a single reference configuration: 0.005 nm for
  // bonds, 0.15 rad for angles, 0.2 rad for dihedrals except the 12 circular ones (1).
  explicit InternalCoordinates(const double *reference_cart);

  // x (60, normalised; dihedrals not wrapped) -> Cartesian (66; CA at the origin, N on the
  // +x axis, C in the xy plane). Returns log|det d(cart)/dx| over the 60 Cartesian
  // coordinates the frame leaves free, as boltzgen computes it; NaN or -inf where the
  // reference's is (a non-positive |C - CA|, a zero bond or angle).
  double to_cartesian(const double *x, double *cart) const;
  // Cartesian (66, any position and orientation) -> x (60; dihedrals wrapped to
  // [-pi, pi) before scaling). Returns log|det dx/d(cart)| = -(to_cartesian's).
  double to_internal(const double *cart, double *x) const;

  // The 12 dihedrals the reference maps through tanh (ind_circ_dih in aldp.py).
  static bool is_circular(int index);
  double mean(int index) const { return mean_[index]; }
  double stddev(int index) const { return std_[index]; }

 private:
  double mean_[kDim];
  double std_[kDim];
  double log_std_sum_;
};

// The OBC1 generalized-Born energy (Amber igb=2 with the ACE surface term) of the System's
// CustomGBForce, computed directly: the same formulas and parameters as the force's
// expressions, without OpenMM's expression evaluator, which on Debian's build (no JIT)
// takes ~5 ms per configuration on the Reference platform. Energy only (kJ/mol).
class ObcEnergy {
 public:
  explicit ObcEnergy(const OpenMM::CustomGBForce &force);   // reads (charge, or, sr)
  double energy(const double *cart) const;

 private:
  double charge_[kAtoms], offset_radius_[kAtoms], scaled_radius_[kAtoms];
};

struct TargetOptions {
  double temperature = 300.0;  // K
  double energy_cut = 1.0e8;   // kT: energies above it grow logarithmically
  double energy_max = 1.0e20;  // kT: energies are capped here first
  double minimise_tolerance = 1e-2;  // kJ/mol/nm, LocalEnergyMinimizer
  // The reference tests chirality on the sampler's x, before the tanh of the circular
  // dihedrals (aldp.py energy()); true tests it on the dihedral angles themselves, after
  // the tanh, which is what the test's 2 pi periodicity is written for (README.md).
  bool chirality_on_angles = false;
  // Evaluate the implicit-solvent term with OpenMM's CustomGBForce instead of ObcEnergy
  // (the same energy to ~1e-12 relative, ~200 times slower).
  bool openmm_gb = false;
};

// The target density. Owns an OpenMM Context on the Reference platform (the reference's
// choice); not thread-safe.
class Target {
 public:
  Target(const std::string &params_path, const TargetOptions &options);

  // log p(x) for one 60-D point: minus the reference's ALDP.energy(x). Always finite:
  // where the reference's energy is NaN it is 2 energy_cut (as there); where it would be
  // +inf (a zero bond length or angle) we also use 2 energy_cut.
  double log_density(const double *x);
  // The regularised energy in kT of a Cartesian configuration (NaN for NaN/inf input).
  double reduced_energy(const double *cart);
  // The potential energy in kJ/mol: OpenMM's bonded and non-bonded forces (force group 0)
  // plus the implicit solvent (ObcEnergy, or OpenMM's CustomGBForce, group 1).
  double energy_kj(const double *cart);
  // The implicit-solvent term alone, from OpenMM's CustomGBForce and from ObcEnergy.
  double gb_energy_openmm(const double *cart);
  double gb_energy_host(const double *cart) const { return obc_->energy(cart); }

  // The reference's get_lform_indices() on x, before the tanh (what its energy() uses):
  // the difference of the normalised dihedrals of C(ACE) and HA, wrapped by 2 pi, within
  // 0.8 of -0.043. Some D-form states pass it: the tanh compresses the difference (the
  // mirror image of the reference geometry has angle difference 2.09 but x difference 0.70).
  static bool is_l_form(const double *x);
  // The same test on the dihedral angles (after the tanh): L-alanine exactly.
  static bool is_l_form_angles(const double *x);
  // The test the log density applies (TargetOptions::chirality_on_angles).
  bool penalty_free(const double *x) const
  { return opt_.chirality_on_angles ? is_l_form_angles(x) : is_l_form(x); }
  void set_chirality_on_angles(bool on) { opt_.chirality_on_angles = on; }
  // The reference's scale_ind_circ(): circular dihedrals x -> tanh(x)(pi + 1e-4), with
  // its log-det; and its inverse (atanh), with the inverse's log-det.
  static double squash_circular(const double *x, double *x_fab);
  static double unsquash_circular(const double *x_fab, double *x);
  // x (60) -> Cartesian (66) through both maps; returns the summed log-det.
  double to_cartesian(const double *x, double *cart) const;

  const InternalCoordinates &coordinates() const { return *ic_; }
  const double *reference_cartesian() const { return reference_; }
  double reference_energy_kj() const { return reference_energy_kj_; }
  double kT() const { return kT_; }
  OpenMM::System &system() { return *system_; }
  uint64_t evaluations() const { return evaluations_; }

 private:
  TargetOptions opt_;
  double kT_;
  std::unique_ptr<OpenMM::System> system_;
  std::unique_ptr<OpenMM::VerletIntegrator> integrator_;
  std::unique_ptr<OpenMM::Context> context_;
  std::unique_ptr<InternalCoordinates> ic_;
  std::unique_ptr<ObcEnergy> obc_;
  void set_positions(const double *cart);
  double reference_[kCartDim];
  double reference_energy_kj_;
  uint64_t evaluations_ = 0;
};

}  // namespace aldp

#endif
