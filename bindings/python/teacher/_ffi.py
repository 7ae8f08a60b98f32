"""Low-level ctypes declarations of the libteacher C API (include/teacher/*.h).

Only the standard library is used here. The library is located, in this order:

1. the ``TEACHER_LIBRARY`` environment variable: the path of the shared library file
   (``.../libteacher.so.0``) or of a folder holding it;
2. ``libteacher.so.0`` next to this package (a wheel or an install that bundles it);
3. an in-tree meson build: ``<repo>/build/lib/libteacher.so.0`` (the package lives in
   ``<repo>/bindings/python/teacher``);
4. the system search path: ``ctypes.util.find_library("teacher")`` (``ldconfig``), then
   ``libteacher.so.0`` through the dynamic loader (``LD_LIBRARY_PATH``).

The loaded library must have ABI version 0 and a version number at least
:data:`REQUIRED_VERSION` (the release this binding was written for).
"""
import ctypes
import ctypes.util
import os

__all__ = ["lib", "library_path", "REQUIRED_VERSION", "ABI_VERSION", "DiscreteEnvDesc",
           "EnergyDesc", "SmcDesc", "SeqpaEnvDesc"]

#: tch_version_number() of the release this binding was written for (0.1.0).
REQUIRED_VERSION = 100
#: The soname number the binding is compatible with.
ABI_VERSION = 0
SONAME = "libteacher.so.%d" % ABI_VERSION

_here = os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """(description, path-or-name) pairs, in search order."""
    env = os.environ.get("TEACHER_LIBRARY")
    if env:
        if os.path.isdir(env):
            env = os.path.join(env, SONAME)
        # An explicit choice is never silently replaced by another library.
        return [("TEACHER_LIBRARY", env)]
    out = [("next to the package", os.path.join(_here, SONAME)),
           ("in-tree build", os.path.normpath(os.path.join(_here, "..", "..", "..", "build",
                                                            "lib", SONAME)))]
    found = ctypes.util.find_library("teacher")
    if found:
        out.append(("ctypes.util.find_library('teacher')", found))
    out.append(("dynamic loader search path", SONAME))
    return out


def _load():
    tried = []
    for what, path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append("%s: %s (no such file)" % (what, path))
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s: %s (%s)" % (what, path, e))
    raise ImportError("teacher: cannot load the libteacher shared library; tried\n  " +
                      "\n  ".join(tried) +
                      "\nBuild it (meson setup build && ninja -C build) or set TEACHER_LIBRARY "
                      "to the path of libteacher.so.0")


lib, library_path = _load()

# ---- basic types -------------------------------------------------------------------------
c_size_t = ctypes.c_size_t
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_uint32_p = ctypes.POINTER(ctypes.c_uint32)
c_uint8_p = ctypes.POINTER(ctypes.c_uint8)
c_double_p = ctypes.POINTER(ctypes.c_double)
c_float_p = ctypes.POINTER(ctypes.c_float)
c_status = ctypes.c_int   # tch_status: int-sized enum
c_enum = ctypes.c_int


class _Opaque(ctypes.Structure):
    _fields_ = []


class tch_config(_Opaque):
    pass


class tch_env(_Opaque):
    pass


class tch_policy(_Opaque):
    pass


class tch_buffer(_Opaque):
    pass


class tch_mixer(_Opaque):
    pass


class tch_trainer(_Opaque):
    pass


class tch_smc(_Opaque):
    pass


config_p = ctypes.POINTER(tch_config)
env_p = ctypes.POINTER(tch_env)
policy_p = ctypes.POINTER(tch_policy)
buffer_p = ctypes.POINTER(tch_buffer)
mixer_p = ctypes.POINTER(tch_mixer)
trainer_p = ctypes.POINTER(tch_trainer)
smc_p = ctypes.POINTER(tch_smc)

# ---- callbacks (env.h, trainer.h, status.h) --------------------------------------------
step_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, c_size_t, ctypes.c_void_p,
                           ctypes.c_void_p, ctypes.c_void_p)
masks_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, c_size_t, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p)
log_reward_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, c_size_t, ctypes.c_void_p,
                                 ctypes.c_void_p)
features_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, c_size_t, ctypes.c_void_p,
                               ctypes.c_void_p)
user_free_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
log_density_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, c_size_t, c_size_t,
                                  ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
sample_reference_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint64, c_size_t,
                                       c_size_t, ctypes.c_void_p)
seqpa_score_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, c_size_t, ctypes.c_void_p,
                                  ctypes.c_void_p)
progress_fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)
log_fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)

TCH_ENV_REENTRANT = 0x1
TCH_ENERGY_HAS_GRAD = 0x1
TCH_MIXER_LOCAL_SEARCH = 0x1


class DiscreteEnvDesc(ctypes.Structure):
    """tch_discrete_env_desc (env.h). Set ``struct_size = ctypes.sizeof(DiscreteEnvDesc)``."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("state_dim", ctypes.c_uint32),
        ("n_actions", ctypes.c_uint32),
        ("feat_dim", ctypes.c_uint32),
        ("max_len", ctypes.c_uint32),
        ("s0", c_int32_p),
        ("step", step_fn),
        ("backward_step", step_fn),
        ("masks", masks_fn),
        ("log_reward", log_reward_fn),
        ("features", features_fn),
        ("user", ctypes.c_void_p),
        ("user_free", user_free_fn),
        # appended fields
        ("vocab", c_uint32_p),
        ("flags", ctypes.c_uint32),
        ("cond_dim", ctypes.c_uint32),
    ]


class EnergyDesc(ctypes.Structure):
    """tch_energy_desc (env.h). Set ``struct_size = ctypes.sizeof(EnergyDesc)`` and
    ``log_Z = float("nan")`` when unknown."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("dim", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("log_density", log_density_fn),
        ("log_Z", ctypes.c_double),
        ("sample_reference", sample_reference_fn),
        ("user", ctypes.c_void_p),
        ("user_free", user_free_fn),
    ]


TCH_SEQPA_ENUMERATE = 0x1
TCH_SEQPA_HAS_LOG_Z = 0x2


class SeqpaEnvDesc(ctypes.Structure):
    """tch_seqpa_env_desc (env.h). Set ``struct_size = ctypes.sizeof(SeqpaEnvDesc)``; beta
    and y_min have no usable zero default (the C helper sets 1 and 0.001)."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("len", ctypes.c_uint32),
        ("n_chars", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("score", seqpa_score_fn),
        ("user", ctypes.c_void_p),
        ("user_free", user_free_fn),
        ("name", ctypes.c_char_p),
        ("beta", ctypes.c_double),
        ("y_min", ctypes.c_double),
        ("log_scale", ctypes.c_double),
        ("r_max", ctypes.c_double),
        ("add_floor", ctypes.c_double),
        ("max_floor", ctypes.c_double),
        ("log_Z", ctypes.c_double),
        ("modes", ctypes.POINTER(ctypes.c_uint64)),
        ("n_modes", c_size_t),
    ]


# tch_smc_resampler (smc.h, pinned)
TCH_SMC_RESAMPLER_CONFIG = 0
TCH_SMC_RESAMPLER_SYSTEMATIC = 1
TCH_SMC_RESAMPLER_STRATIFIED = 2
TCH_SMC_RESAMPLER_MULTINOMIAL = 3


class SmcDesc(ctypes.Structure):
    """tch_smc_desc (smc.h). Set ``struct_size = ctypes.sizeof(SmcDesc)``; a zero field
    takes the trainer's value."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("n_particles", ctypes.c_uint32),
        ("n_chunks", ctypes.c_uint32),
        ("resampler", ctypes.c_uint32),
        ("resample_threshold", ctypes.c_double),
        ("target_ess", ctypes.c_double),
        ("unbiased", ctypes.c_int32),
        # version 2: MALA rejuvenation (0 takes the config key, mala_steps -1: none)
        ("mala_step", ctypes.c_double),
        ("mala_steps", ctypes.c_int32),
    ]


# ---- prototypes --------------------------------------------------------------------------
def _fn(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


P = ctypes.POINTER
_p = ctypes.c_void_p
_u32 = ctypes.c_uint32
_u64 = ctypes.c_uint64
_i64 = ctypes.c_int64
_d = ctypes.c_double
_cstr = ctypes.c_char_p

# status.h
tch_status_str = _fn("tch_status_str", _cstr, c_status)
tch_last_error = _fn("tch_last_error", _cstr)
tch_set_callback_error = _fn("tch_set_callback_error", None, _cstr)
tch_last_callback_code = _fn("tch_last_callback_code", ctypes.c_int)
tch_version_number = _fn("tch_version_number", ctypes.c_uint)
tch_version_string = _fn("tch_version_string", _cstr)
tch_abi_version = _fn("tch_abi_version", ctypes.c_uint)
tch_set_log_callback = _fn("tch_set_log_callback", None, log_fn, _p, ctypes.c_int)

# config.h
tch_config_create = _fn("tch_config_create", c_status, P(config_p))
tch_config_clone = _fn("tch_config_clone", c_status, config_p, P(config_p))
tch_config_retain = _fn("tch_config_retain", config_p, config_p)
tch_config_free = _fn("tch_config_free", None, config_p)
tch_config_load_yaml = _fn("tch_config_load_yaml", c_status, config_p, _cstr)
tch_config_load_yaml_string = _fn("tch_config_load_yaml_string", c_status, config_p, _cstr,
                                  c_size_t)
tch_config_dump_yaml = _fn("tch_config_dump_yaml", c_status, config_p, _cstr)
tch_config_set_int = _fn("tch_config_set_int", c_status, config_p, _cstr, _i64)
tch_config_set_double = _fn("tch_config_set_double", c_status, config_p, _cstr, _d)
tch_config_set_bool = _fn("tch_config_set_bool", c_status, config_p, _cstr, ctypes.c_int)
tch_config_set_string = _fn("tch_config_set_string", c_status, config_p, _cstr, _cstr)
tch_config_set_from_string = _fn("tch_config_set_from_string", c_status, config_p, _cstr, _cstr)
tch_config_get_int = _fn("tch_config_get_int", c_status, config_p, _cstr, P(_i64))
tch_config_get_double = _fn("tch_config_get_double", c_status, config_p, _cstr, P(_d))
tch_config_get_bool = _fn("tch_config_get_bool", c_status, config_p, _cstr, P(ctypes.c_int))
tch_config_get_string = _fn("tch_config_get_string", c_status, config_p, _cstr, P(_cstr))
tch_config_next_key = _fn("tch_config_next_key", _cstr, _cstr)
tch_config_describe = _fn("tch_config_describe", c_status, _cstr, P(c_enum), P(_cstr), P(_d),
                          P(_d), P(_cstr), P(_cstr))

# env.h
tch_env_create_discrete = _fn("tch_env_create_discrete", c_status, P(DiscreteEnvDesc),
                              P(env_p))
tch_env_create_hypergrid = _fn("tch_env_create_hypergrid", c_status, _u32, _u32, _d, P(env_p))
tch_env_create_from_config = _fn("tch_env_create_from_config", c_status, config_p, P(env_p))
tch_env_retain = _fn("tch_env_retain", env_p, env_p)
tch_env_free = _fn("tch_env_free", None, env_p)
tch_env_dims = _fn("tch_env_dims", c_status, env_p, P(_u32), P(_u32), P(_u32))
tch_env_log_reward = _fn("tch_env_log_reward", c_status, env_p, c_size_t, c_int32_p, c_double_p)
tch_env_n_terminal = _fn("tch_env_n_terminal", c_status, env_p, P(c_size_t))
tch_env_n_modes = _fn("tch_env_n_modes", c_status, env_p, P(c_size_t))
tch_env_enumerate_terminal = _fn("tch_env_enumerate_terminal", c_status, env_p, c_size_t,
                                 c_int32_p, c_double_p)
tch_env_empirical_l1 = _fn("tch_env_empirical_l1", c_status, env_p, c_size_t, c_int32_p, P(_d))
tch_env_count_modes = _fn("tch_env_count_modes", c_status, env_p, c_size_t, c_int32_p,
                          P(c_size_t))
tch_env_create_energy = _fn("tch_env_create_energy", c_status, P(EnergyDesc), config_p,
                            P(env_p))
tch_env_create_gmm25 = _fn("tch_env_create_gmm25", c_status, config_p, P(env_p))
tch_env_create_manywell = _fn("tch_env_create_manywell", c_status, config_p, P(env_p))
tch_env_create_gmm40 = _fn("tch_env_create_gmm40", c_status, _u32, config_p, P(env_p))
tch_env_create_funnel = _fn("tch_env_create_funnel", c_status, _u32, config_p, P(env_p))
tch_env_energy_dim = _fn("tch_env_energy_dim", c_status, env_p, P(_u32))
tch_env_log_density = _fn("tch_env_log_density", c_status, env_p, c_size_t, c_double_p,
                          c_double_p, c_double_p)
tch_env_log_Z = _fn("tch_env_log_Z", c_status, env_p, P(_d))
tch_env_sample_target = _fn("tch_env_sample_target", c_status, env_p, _u64, c_size_t, c_double_p)
tch_env_diffusion_steps = _fn("tch_env_diffusion_steps", c_status, env_p, P(_u32), P(_d))
tch_env_create_seqpa = _fn("tch_env_create_seqpa", c_status, P(SeqpaEnvDesc), P(env_p))
tch_env_create_qm9str = _fn("tch_env_create_qm9str", c_status, P(env_p))
tch_env_create_sehstr = _fn("tch_env_create_sehstr", c_status, P(env_p))
tch_env_create_tfbind8 = _fn("tch_env_create_tfbind8", c_status, P(env_p))
tch_env_create_rna = _fn("tch_env_create_rna", c_status, _u32, P(env_p))
tch_env_raw_scores = _fn("tch_env_raw_scores", c_status, env_p, c_size_t, c_int32_p, c_double_p)
tch_env_target_log_Z = _fn("tch_env_target_log_Z", c_status, env_p, P(_d))

# policy.h
tch_policy_create = _fn("tch_policy_create", c_status, env_p, config_p, _u64, P(policy_p))
tch_policy_clone = _fn("tch_policy_clone", c_status, policy_p, P(policy_p))
tch_policy_retain = _fn("tch_policy_retain", policy_p, policy_p)
tch_policy_free = _fn("tch_policy_free", None, policy_p)
tch_policy_sample_discrete = _fn("tch_policy_sample_discrete", c_status, policy_p, env_p, _u64,
                                 c_size_t, c_int32_p, c_double_p)
tch_policy_sample_trajectories = _fn("tch_policy_sample_trajectories", c_status, policy_p, env_p,
                                     _u64, c_size_t, _d, _d, c_int32_p, c_int32_p, c_uint32_p,
                                     c_double_p, c_double_p)
tch_policy_sample_backward = _fn("tch_policy_sample_backward", c_status, policy_p, env_p, _u64,
                                 c_size_t, c_int32_p, c_int32_p, c_int32_p, c_uint32_p)
tch_policy_score_discrete = _fn("tch_policy_score_discrete", c_status, policy_p, env_p, c_size_t,
                                c_int32_p, c_int32_p, c_uint32_p, c_double_p, c_double_p)
tch_policy_log_z = _fn("tch_policy_log_z", c_status, policy_p, P(_d))
tch_policy_n_params = _fn("tch_policy_n_params", c_status, policy_p, P(c_size_t))
tch_policy_gemm_kernel = _fn("tch_policy_gemm_kernel", c_status, policy_p, P(_cstr))
tch_policy_save = _fn("tch_policy_save", c_status, policy_p, _cstr)
tch_policy_load = _fn("tch_policy_load", c_status, _cstr, P(policy_p))

# buffer.h
tch_buffer_create = _fn("tch_buffer_create", c_status, _u32, c_size_t, c_enum, _d, P(buffer_p))
tch_buffer_retain = _fn("tch_buffer_retain", buffer_p, buffer_p)
tch_buffer_free = _fn("tch_buffer_free", None, buffer_p)
tch_buffer_add = _fn("tch_buffer_add", c_status, buffer_p, c_size_t, c_int32_p, c_double_p,
                     c_double_p)
tch_buffer_add_discrete = _fn("tch_buffer_add_discrete", c_status, buffer_p, c_size_t, c_int32_p,
                              c_double_p)
tch_buffer_sample = _fn("tch_buffer_sample", c_status, buffer_p, _u64, c_size_t, c_int32_p,
                        c_double_p)
tch_buffer_sample_trajectories = _fn("tch_buffer_sample_trajectories", c_status, buffer_p,
                                     policy_p, env_p, _u64, c_size_t, c_int32_p, c_int32_p,
                                     c_uint32_p, c_double_p)
tch_buffer_size = _fn("tch_buffer_size", c_status, buffer_p, P(c_size_t))
tch_buffer_capacity = _fn("tch_buffer_capacity", c_status, buffer_p, P(c_size_t))
tch_buffer_record_dim = _fn("tch_buffer_record_dim", c_status, buffer_p, P(_u32))
tch_buffer_get = _fn("tch_buffer_get", c_status, buffer_p, c_size_t, c_int32_p, c_double_p,
                     c_double_p)
tch_buffer_clear = _fn("tch_buffer_clear", c_status, buffer_p)

# mixer.h
tch_mixer_create = _fn("tch_mixer_create", c_status, _cstr, P(mixer_p))
tch_mixer_retain = _fn("tch_mixer_retain", mixer_p, mixer_p)
tch_mixer_free = _fn("tch_mixer_free", None, mixer_p)
tch_mixer_source = _fn("tch_mixer_source", c_status, mixer_p, _u64, _u64, P(c_enum), P(_u32))
tch_mixer_schedule = _fn("tch_mixer_schedule", c_status, mixer_p, P(_cstr))
tch_mixer_set_exploration = _fn("tch_mixer_set_exploration", c_status, mixer_p, c_enum, _d, _d)
tch_mixer_get_exploration = _fn("tch_mixer_get_exploration", c_status, mixer_p, c_enum, P(_d),
                                P(_d))
tch_mixer_set_policy = _fn("tch_mixer_set_policy", c_status, mixer_p, c_enum, policy_p)
tch_mixer_set_buffer = _fn("tch_mixer_set_buffer", c_status, mixer_p, buffer_p)
tch_mixer_draw_discrete = _fn("tch_mixer_draw_discrete", c_status, mixer_p, env_p, _u64, _u64,
                              c_size_t, c_int32_p, c_int32_p, c_uint32_p, P(c_enum), P(_u32))
tch_mixer_set_smc = _fn("tch_mixer_set_smc", c_status, mixer_p, smc_p)
tch_mixer_draw_energy = _fn("tch_mixer_draw_energy", c_status, mixer_p, env_p, _u64, _u64,
                            c_size_t, c_double_p, c_double_p, P(c_enum), P(_u32))

# trainer.h
tch_trainer_create = _fn("tch_trainer_create", c_status, env_p, config_p, P(trainer_p))
tch_trainer_retain = _fn("tch_trainer_retain", trainer_p, trainer_p)
tch_trainer_free = _fn("tch_trainer_free", None, trainer_p)
tch_trainer_set_progress = _fn("tch_trainer_set_progress", c_status, trainer_p, progress_fn, _p,
                               _u64)
tch_trainer_step = _fn("tch_trainer_step", c_status, trainer_p, _u64)
tch_trainer_planned_steps = _fn("tch_trainer_planned_steps", c_status, trainer_p, P(_u64))
tch_trainer_evaluate = _fn("tch_trainer_evaluate", c_status, trainer_p, c_size_t)
tch_trainer_metric = _fn("tch_trainer_metric", c_status, trainer_p, _cstr, P(_d))
tch_trainer_next_metric = _fn("tch_trainer_next_metric", _cstr, trainer_p, _cstr)
tch_trainer_get_student = _fn("tch_trainer_get_student", c_status, trainer_p, P(policy_p))
tch_trainer_get_env = _fn("tch_trainer_get_env", c_status, trainer_p, P(env_p))
tch_trainer_get_config = _fn("tch_trainer_get_config", c_status, trainer_p, P(config_p))
tch_trainer_get_teacher = _fn("tch_trainer_get_teacher", c_status, trainer_p, P(policy_p))
tch_trainer_get_buffer = _fn("tch_trainer_get_buffer", c_status, trainer_p, P(buffer_p))
tch_trainer_get_mixer = _fn("tch_trainer_get_mixer", c_status, trainer_p, P(mixer_p))
tch_trainer_save = _fn("tch_trainer_save", c_status, trainer_p, _cstr)
tch_trainer_load = _fn("tch_trainer_load", c_status, env_p, _cstr, P(trainer_p))
tch_trainer_sample_continuous = _fn("tch_trainer_sample_continuous", c_status, trainer_p, _u64,
                                    c_size_t, c_double_p, c_double_p)

# smc.h
tch_smc_create = _fn("tch_smc_create", c_status, trainer_p, P(SmcDesc), P(smc_p))
tch_smc_retain = _fn("tch_smc_retain", smc_p, smc_p)
tch_smc_free = _fn("tch_smc_free", None, smc_p)
tch_smc_run = _fn("tch_smc_run", c_status, smc_p, _u64, c_size_t, c_double_p, c_double_p,
                  c_double_p)
tch_smc_metric = _fn("tch_smc_metric", c_status, smc_p, _cstr, P(_d))
tch_smc_chunk_stats = _fn("tch_smc_chunk_stats", c_status, smc_p, c_size_t, c_double_p,
                          c_double_p, c_uint8_p)


def _check_version():
    abi = tch_abi_version()
    if abi != ABI_VERSION:
        raise ImportError("teacher: %s has ABI version %d; this binding needs ABI %d"
                          % (library_path, abi, ABI_VERSION))
    v = tch_version_number()
    if v < REQUIRED_VERSION:
        raise ImportError("teacher: %s is libteacher %s (%d); this binding needs >= %d"
                          % (library_path, tch_version_string().decode(), v, REQUIRED_VERSION))


_check_version()


def _cstr_or_none(b):
    return None if b is None else b.decode("utf-8", "replace")


def encode(s):
    """str/bytes -> bytes for char * arguments (keys, schedules)."""
    if isinstance(s, bytes):
        return s
    return str(s).encode("utf-8")


def encode_path(p):
    """str/bytes/os.PathLike -> bytes for file names."""
    return os.fsencode(p)


def decode(b):
    return _cstr_or_none(b)

