"""Status codes, the exception hierarchy, and the propagation of exceptions raised inside
Python callbacks.

Every C call goes through :func:`call`, which clears this thread's pending callback
exception, calls the function, and converts the returned ``tch_status``:

* ``TCH_OK`` -> returns 0; ``TCH_STOPPED`` -> returns 1 where the caller allows it
  (``Trainer.step``), else raises :class:`StoppedError`;
* a negative status -> raises the matching :class:`TeacherError` subclass with the text of
  ``tch_last_error()``;
* in every case, if a Python callback raised during the call, that exception is re-raised
  instead (the original object, with its traceback; on Python >= 3.11 a note records the
  library's status and message). The callback itself returned non-zero, so the library
  stopped the operation and rolled the handle back before returning.
"""
import sys
import threading

from . import _ffi

__all__ = [
    "OK", "STOPPED", "E_ARG", "E_NOMEM", "E_STATE", "E_CONFIG", "E_CALLBACK", "E_NUMERIC",
    "E_IO", "E_VERSION", "E_INTERNAL",
    "TeacherError", "ArgumentError", "OutOfMemoryError", "StateError", "ConfigError",
    "CallbackError", "NumericError", "FileFormatError", "VersionError", "InternalError",
    "StoppedError", "status_str",
]

OK = 0
STOPPED = 1
E_ARG = -1
E_NOMEM = -2
E_STATE = -3
E_CONFIG = -4
E_CALLBACK = -5
E_NUMERIC = -6
E_IO = -7
E_VERSION = -8
E_INTERNAL = -9

_NAMES = {
    OK: "TCH_OK", STOPPED: "TCH_STOPPED", E_ARG: "TCH_E_ARG", E_NOMEM: "TCH_E_NOMEM",
    E_STATE: "TCH_E_STATE", E_CONFIG: "TCH_E_CONFIG", E_CALLBACK: "TCH_E_CALLBACK",
    E_NUMERIC: "TCH_E_NUMERIC", E_IO: "TCH_E_IO", E_VERSION: "TCH_E_VERSION",
    E_INTERNAL: "TCH_E_INTERNAL",
}


def status_str(status):
    """The library's static description of a status code."""
    return _ffi.decode(_ffi.tch_status_str(int(status)))


class TeacherError(Exception):
    """A libteacher call failed.

    Attributes: ``status`` (the ``tch_status`` value, an int), ``status_name``
    (``"TCH_E_CONFIG"``...), ``message`` (``tch_last_error()`` right after the call)."""

    def __init__(self, status, message=""):
        self.status = int(status)
        self.status_name = _NAMES.get(self.status, "TCH_STATUS_%d" % self.status)
        self.message = message
        text = message or status_str(self.status)
        super().__init__("%s: %s" % (self.status_name, text))

    def __reduce__(self):
        return (type(self), (self.status, self.message))


class ArgumentError(TeacherError, ValueError):
    """TCH_E_ARG: bad argument (NULL, out of range, mismatched sizes or shapes)."""


class OutOfMemoryError(TeacherError, MemoryError):
    """TCH_E_NOMEM: an allocation failed."""


class StateError(TeacherError):
    """TCH_E_STATE: the call is not valid in the object's current state."""


class ConfigError(TeacherError, ValueError):
    """TCH_E_CONFIG: bad key, type or value; malformed YAML (message has file:line:col)."""


class CallbackError(TeacherError):
    """TCH_E_CALLBACK: a host callback returned non-zero. ``code`` is the value it returned
    (``tch_last_callback_code()``). Raised for Python callbacks only when they *returned* a
    non-zero int; an exception raised by a Python callback is re-raised itself."""

    def __init__(self, status, message="", code=None):
        super().__init__(status, message)
        self.code = code

    def __reduce__(self):
        return (type(self), (self.status, self.message, self.code))


class NumericError(TeacherError, ArithmeticError):
    """TCH_E_NUMERIC: NaN/Inf in a reward, feature, loss or gradient."""


class FileFormatError(TeacherError, OSError):
    """TCH_E_IO: a file could not be read or written, or is truncated or corrupt."""

    def __init__(self, status, message=""):
        TeacherError.__init__(self, status, message)

    def __str__(self):
        return Exception.__str__(self)


class VersionError(TeacherError):
    """TCH_E_VERSION: file format or ABI version not supported."""


class InternalError(TeacherError):
    """TCH_E_INTERNAL: an internal invariant failed (a libteacher bug: please report)."""


class StoppedError(TeacherError):
    """TCH_STOPPED returned by a call that does not expect it (not normally raised:
    ``Trainer.step`` reports a stop by returning False)."""


_CLASSES = {
    E_ARG: ArgumentError, E_NOMEM: OutOfMemoryError, E_STATE: StateError,
    E_CONFIG: ConfigError, E_CALLBACK: CallbackError, E_NUMERIC: NumericError,
    E_IO: FileFormatError, E_VERSION: VersionError, E_INTERNAL: InternalError,
    STOPPED: StoppedError,
}


def error_for(status, message):
    cls = _CLASSES.get(status, TeacherError)
    if cls is CallbackError:
        return CallbackError(status, message, _ffi.tch_last_callback_code())
    return cls(status, message)


# ---- exceptions raised in Python callbacks ----------------------------------------------
# Callbacks run on the thread that called into the library, so one slot per thread is
# enough: the first exception of the current call wins (the library stops at the first
# failing callback anyway).
_tls = threading.local()


def store_exception(exc):
    """Called by the callback thunks; the callback then returns non-zero."""
    if getattr(_tls, "pending", None) is None:
        _tls.pending = exc


def _take_pending():
    exc = getattr(_tls, "pending", None)
    if exc is not None:
        _tls.pending = None
    return exc


def _clear_pending():
    _tls.pending = None


def _raise_pending(exc, status, message):
    if status != OK and hasattr(exc, "add_note"):
        try:
            exc.add_note("(raised in a Python callback; libteacher returned %s: %s)"
                         % (_NAMES.get(status, status), message))
        except Exception:  # pragma: no cover - exotic exception types
            pass
    try:
        raise exc
    finally:
        exc = None


def check(status, allow_stopped=False):
    """Converts a tch_status (see the module docstring)."""
    exc = _take_pending()
    if status == OK or (status == STOPPED and allow_stopped):
        if exc is not None:
            _raise_pending(exc, OK, "")
        return status
    message = _ffi.decode(_ffi.tch_last_error()) or ""
    if exc is not None:
        _raise_pending(exc, status, message)
    raise error_for(status, message)


def call(fn, *args, allow_stopped=False):
    """Calls a tch_status-returning C function and checks the result. Calls may nest (a
    progress callback reading metrics): only the outermost one clears the slot."""
    depth = getattr(_tls, "depth", 0)
    if depth == 0:
        _clear_pending()
    _tls.depth = depth + 1
    try:
        status = fn(*args)
    finally:
        _tls.depth = depth
    return check(status, allow_stopped=allow_stopped)


def call_noexcept(fn, *args):
    """Calls a C function that returns no status (tch_*_free). It must not touch the
    pending-exception slot: it runs from __del__, i.e. whenever the garbage collector
    does, possibly between a C call and its check. (The user_free thunk that a free may run
    swallows its own exceptions.)"""
    return fn(*args)


def _unraisable(exc, where):
    """Prints an exception that cannot be propagated (like Python's own "Exception
    ignored in ..." reports)."""
    try:
        import traceback
        sys.stderr.write("Exception ignored %s:\n" % where)
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    except Exception:  # pragma: no cover - interpreter shutdown
        pass


for _cls in (TeacherError, ArgumentError, OutOfMemoryError, StateError, ConfigError,
             CallbackError, NumericError, FileFormatError, VersionError, InternalError,
             StoppedError):
    _cls.__module__ = "teacher"   # shown as teacher.ConfigError; pickles by that name
del _cls
