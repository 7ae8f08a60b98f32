"""Python binding of libteacher: GFlowNet samplers trained with the adaptive Teacher.

    import teacher
    env = teacher.Env.hypergrid(ndim=2, horizon=8)
    tr = teacher.Trainer(env, {"teacher.enabled": True, "buffer.enabled": True,
                               "nn.hidden_dim": 64})
    tr.step(300)
    print(tr.metrics()["loss.student"], tr.metric("modes"))

ctypes over the C library; only the standard library is needed at import, NumPy is used
when present. See docs/python.md (library lookup, errors, callbacks, lifetimes).
"""
from . import _ffi
from ._errors import (TeacherError, ArgumentError, OutOfMemoryError, StateError, ConfigError,
                      CallbackError, NumericError, FileFormatError, VersionError,
                      InternalError, StoppedError, status_str)
from . import _errors
from . import _errors as status   # status.OK, status.E_CONFIG... (tch_status values)
from ._arrays import have_numpy
from .config import Config, KeyInfo
from .env import Env
from .policy import Policy, Trajectories, Samples
from .buffer import Buffer, PRIORITIES
from .mixer import Mixer, SOURCES, LOCAL_SEARCH
from .trainer import Trainer
from .smc import Smc, RESAMPLERS
from ._ffi import DiscreteEnvDesc, REQUIRED_VERSION, ABI_VERSION

__all__ = [
    "Config", "KeyInfo", "Env", "Policy", "Trajectories", "Samples", "Buffer", "Mixer",
    "Trainer", "TeacherError", "ArgumentError", "OutOfMemoryError", "StateError",
    "ConfigError", "CallbackError", "NumericError", "FileFormatError", "VersionError",
    "InternalError", "StoppedError", "status_str", "version", "version_number",
    "abi_version", "library_path", "set_log_callback", "have_numpy", "DiscreteEnvDesc",
    "PRIORITIES", "SOURCES", "LOCAL_SEARCH", "status", "REQUIRED_VERSION", "ABI_VERSION",
    "Smc", "RESAMPLERS",
]

#: Path (or loader name) of the libteacher shared library in use.
library_path = _ffi.library_path


def version():
    """Version string of the loaded library ("0.1.0")."""
    return _ffi.tch_version_string().decode()


def version_number():
    """MAJOR*10000 + MINOR*100 + PATCH of the loaded library."""
    return int(_ffi.tch_version_number())


def abi_version():
    return int(_ffi.tch_abi_version())


__version__ = version()

_log_state = {"fn": None}


@_ffi.log_fn
def _log_thunk(user, level, msg):
    fn = _log_state["fn"]
    if fn is None:
        return
    try:
        fn(int(level), msg.decode("utf-8", "replace") if msg is not None else "")
    except BaseException as exc:  # cannot propagate: the sink returns nothing
        _errors._unraisable(exc, "in the teacher log callback %r" % (fn,))


def set_log_callback(fn, max_level=2):
    """Sends library log messages (level 0 error, 1 warning, 2 info, 3 debug, up to
    max_level) to ``fn(level, message)``; fn=None turns logging off. Process-wide.
    Exceptions raised by fn are printed and ignored."""
    if fn is None:
        _ffi.tch_set_log_callback(_ffi.log_fn(), None, 0)
        _log_state["fn"] = None
        return
    if not callable(fn):
        raise TypeError("set_log_callback: fn must be callable")
    _log_state["fn"] = fn
    _ffi.tch_set_log_callback(_log_thunk, None, int(max_level))
