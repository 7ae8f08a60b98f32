"""teacher.Trainer: the Teacher-Student training loop (tch_trainer)."""
import ctypes
import itertools
import math
import weakref

from . import _ffi, _errors
from ._errors import call, StateError
from ._handle import Handle
from .buffer import Buffer
from .config import Config
from .env import Env
from .mixer import Mixer
from .policy import Policy
from ._arrays import Out

__all__ = ["Trainer"]

# Progress callbacks: key (the C `user` pointer) -> (weakref to the Trainer wrapper, fn).
# One module-level thunk serves every trainer; the entry goes when the trainer is closed
# or its callback replaced.
_progress = {}
_progress_keys = itertools.count(1)


@_ffi.progress_fn
def _progress_thunk(user, t, step):
    try:
        ref, fn = _progress[user]
        tr = ref()
        if tr is None:
            return 0
        return 1 if fn(tr, step) else 0
    except BaseException as exc:
        _errors.store_exception(exc)
        return 1


class Trainer(Handle):
    """``Trainer(env, config=None)``: builds the Student (and a Teacher, buffer, local
    search...) from a Config, a mapping with nested/dotted keys, a YAML path, or None for
    the defaults. The trainer retains the env: the Env wrapper may be closed first."""
    _c_free = staticmethod(_ffi.tch_trainer_free)
    _c_retain = staticmethod(_ffi.tch_trainer_retain)
    _kind = "Trainer"

    def __init__(self, env, config=None):
        cfg = Config.coerce(config)
        h = _ffi.trainer_p()
        call(_ffi.tch_trainer_create, env._ptr, cfg._ptr if cfg is not None else None,
             ctypes.byref(h))
        self._init_handle(h)
        self._post_init()

    def _post_init(self):
        self._progress_key = None

    @classmethod
    def load(cls, env, path):
        """Resumes a checkpoint written by save() with a fresh env of the same shape
        (callbacks cannot be saved). The resumed run is bit-identical to an uninterrupted
        one."""
        h = _ffi.trainer_p()
        call(_ffi.tch_trainer_load, env._ptr, _ffi.encode_path(path), ctypes.byref(h))
        return cls._own(h)

    def save(self, path):
        """Checkpoint of the whole state, written atomically."""
        call(_ffi.tch_trainer_save, self._ptr, _ffi.encode_path(path))

    # ---- training ------------------------------------------------------------------------
    def step(self, n=1):
        """Runs n gradient steps. Returns True when all ran, False when the progress
        callback stopped training (TCH_STOPPED). On an error the failing step is rolled
        back and the error raised (or the exception a Python callback raised)."""
        st = call(_ffi.tch_trainer_step, self._ptr, int(n), allow_stopped=True)
        return st == _errors.OK

    def set_progress(self, fn, every=1):
        """Calls ``fn(trainer, step)`` every `every` completed steps; a true return value
        stops training after the current step (step() then returns False). An exception
        raised by fn also stops training, and step() re-raises it. fn=None removes it."""
        h = self._ptr
        old = self._progress_key
        if fn is None:
            call(_ffi.tch_trainer_set_progress, h, _ffi.progress_fn(), None, 0)
            self._progress_key = None
        else:
            if not callable(fn):
                raise TypeError("set_progress: fn must be callable")
            key = next(_progress_keys)
            _progress[key] = (weakref.ref(self), fn)
            try:
                call(_ffi.tch_trainer_set_progress, h, _progress_thunk, key, int(every))
            except BaseException:
                _progress.pop(key, None)
                raise
            self._progress_key = key
        if old is not None:
            _progress.pop(old, None)

    def planned_steps(self):
        """train.steps, or the reference's default for the env when it is -1."""
        v = ctypes.c_uint64()
        call(_ffi.tch_trainer_planned_steps, self._ptr, ctypes.byref(v))
        return v.value

    def evaluate(self, n_samples):
        """Samples n fresh Student objects and updates the eval.* metrics; returns them."""
        call(_ffi.tch_trainer_evaluate, self._ptr, int(n_samples))
        return {k: v for k, v in self.metrics().items() if k.startswith("eval.")}

    def sample_continuous(self, n, seed=0, log_weights=False):
        """Diffusion trainers (energy envs): n fresh samples (n, dim) of the Student's
        sampler, without exploration; with log_weights=True also their log-weights
        log R + sum log P_B - sum log P_F (n,), whose logmeanexp estimates log Z.
        Reproducible per seed; StateError for a discrete trainer."""
        n = int(n)
        env = self.env
        dim = env.dim if env.is_energy else 1   # a discrete trainer: StateError below
        x = Out((n, dim), "f8")
        lw = Out((n,), "f8") if log_weights else None
        call(_ffi.tch_trainer_sample_continuous, self._ptr, int(seed), n, x.ptr,
             lw.ptr if lw else None)
        return (x.value(), lw.value()) if log_weights else x.value()

    # ---- metrics -------------------------------------------------------------------------
    def metric(self, name):
        """A metric by name ("loss.student", "logz.student", "modes", "l1", "eval.l1"...);
        NaN when not (yet) defined; ArgumentError for an unknown name."""
        v = ctypes.c_double()
        call(_ffi.tch_trainer_metric, self._ptr, _ffi.encode(name), ctypes.byref(v))
        return v.value

    def metric_names(self):
        h, out, prev = self._ptr, [], None
        while True:
            k = _ffi.tch_trainer_next_metric(h, prev)
            if k is None:
                return out
            out.append(k.decode())
            prev = k

    def metrics(self):
        """{name: value} of every metric."""
        return {k: self.metric(k) for k in self.metric_names()}

    # ---- borrowed handles ----------------------------------------------------------------
    def _get(self, fn, ptr_type, cls):
        p = ptr_type()
        try:
            call(fn, self._ptr, ctypes.byref(p))
        except StateError:
            return None
        if not p:
            return None
        return cls._borrow(p, owner=self)

    @property
    def env(self):
        """The trainer's env (a new wrapper holding its own reference)."""
        return self._get(_ffi.tch_trainer_get_env, _ffi.env_p, Env)

    @property
    def student(self):
        """The Student policy (borrowed: keeps this trainer alive; holds its own C
        reference, so it also outlives an explicit close() of the trainer)."""
        p = self._get(_ffi.tch_trainer_get_student, _ffi.policy_p, Policy)
        if p is not None:
            p._env = self.env
        return p

    @property
    def teacher(self):
        """The Teacher policy, or None without teacher.enabled."""
        p = self._get(_ffi.tch_trainer_get_teacher, _ffi.policy_p, Policy)
        if p is not None:
            p._env = self.env
        return p

    @property
    def buffer(self):
        """The replay buffer, or None without buffer.enabled."""
        return self._get(_ffi.tch_trainer_get_buffer, _ffi.buffer_p, Buffer)

    @property
    def mixer(self):
        return self._get(_ffi.tch_trainer_get_mixer, _ffi.mixer_p, Mixer)

    @property
    def config(self):
        """A copy of the trainer's effective config."""
        p = _ffi.config_p()
        call(_ffi.tch_trainer_get_config, self._ptr, ctypes.byref(p))
        c = _ffi.config_p()
        call(_ffi.tch_config_clone, p, ctypes.byref(c))
        return Config._own(c)

    def _on_close(self):
        key = getattr(self, "_progress_key", None)
        self._progress_key = None
        if key is not None:
            _progress.pop(key, None)

    def close(self):
        # Detach the progress callback first: nothing can call it once the entry is gone,
        # but the C trainer may outlive this wrapper only if someone retained it.
        h = getattr(self, "_h", None)
        if h and getattr(self, "_progress_key", None) is not None:
            try:
                _ffi.tch_trainer_set_progress(h, _ffi.progress_fn(), None, 0)
            except Exception:  # pragma: no cover
                pass
        Handle.close(self)

    def __repr__(self):
        if self.closed:
            return "<teacher.Trainer (closed)>"
        step = self.metric("step")
        return "<teacher.Trainer step=%s>" % (int(step) if not math.isnan(step) else "?")
