"""teacher.Mixer: the behaviour-policy schedule (tch_mixer)."""
import ctypes

from . import _ffi
from ._errors import call
from ._handle import Handle
from .policy import Trajectories, traj_outputs
from ._arrays import Out

__all__ = ["Mixer", "SOURCES", "LOCAL_SEARCH"]

#: Sampling sources (tch_source, pinned), by name. "smc" only in standalone mixers.
SOURCES = {"student": 0, "teacher": 1, "buffer": 2, "smc": 3}
_SOURCE_NAMES = {v: k for k, v in SOURCES.items()}
#: Flag of a step whose batch is refined by local search.
LOCAL_SEARCH = _ffi.TCH_MIXER_LOCAL_SEARCH


def _source(s):
    if isinstance(s, str):
        try:
            return SOURCES[s]
        except KeyError:
            raise ValueError("unknown source %r (one of student, teacher, buffer, smc)" % s) from None
    return int(s)


def source_name(v):
    return _SOURCE_NAMES.get(v, v)


class Mixer(Handle):
    """``Mixer(schedule)``, e.g. ``"student,buffer,teacher,buffer"`` or
    ``"random:student=2,teacher=1,buffer=1"`` (see include/teacher/mixer.h). Sources are
    given and returned by name ("student", "teacher", "buffer", "smc"). The "smc" source
    (energy envs) draws weighted particles from an attached :class:`teacher.Smc`."""
    _c_free = staticmethod(_ffi.tch_mixer_free)
    _c_retain = staticmethod(_ffi.tch_mixer_retain)
    _kind = "Mixer"

    def __init__(self, schedule):
        h = _ffi.mixer_p()
        call(_ffi.tch_mixer_create, _ffi.encode(schedule), ctypes.byref(h))
        self._init_handle(h)

    @property
    def schedule(self):
        """Canonical text of the schedule."""
        v = ctypes.c_char_p()
        call(_ffi.tch_mixer_schedule, self._ptr, ctypes.byref(v))
        return _ffi.decode(v.value)

    def source(self, step, seed=0):
        """(source name, flags) of a step; flags & teacher.LOCAL_SEARCH marks local search."""
        src, flags = ctypes.c_int(), ctypes.c_uint32()
        call(_ffi.tch_mixer_source, self._ptr, int(seed), int(step), ctypes.byref(src),
             ctypes.byref(flags))
        return source_name(src.value), flags.value

    def set_exploration(self, source, epsilon=0.0, temperature=1.0):
        call(_ffi.tch_mixer_set_exploration, self._ptr, _source(source), float(epsilon),
             float(temperature))

    def get_exploration(self, source):
        """(epsilon, temperature) of a sampling source."""
        e, t = ctypes.c_double(), ctypes.c_double()
        call(_ffi.tch_mixer_get_exploration, self._ptr, _source(source), ctypes.byref(e),
             ctypes.byref(t))
        return e.value, t.value

    def set_policy(self, source, policy):
        """Attaches the policy a source draws from (retained by the mixer; None detaches)."""
        call(_ffi.tch_mixer_set_policy, self._ptr, _source(source),
             policy._ptr if policy is not None else None)

    def set_buffer(self, buffer):
        call(_ffi.tch_mixer_set_buffer, self._ptr, buffer._ptr if buffer is not None else None)

    def draw(self, env, n, step, seed=0):
        """Draws a batch of n trajectories for a step -> (Trajectories, source name,
        flags). Local search is not applied here (it needs a trainer)."""
        n = int(n)
        states, actions, lengths = traj_outputs(env, n)
        src, flags = ctypes.c_int(), ctypes.c_uint32()
        call(_ffi.tch_mixer_draw_discrete, self._ptr, env._ptr, int(seed), int(step), n,
             states.ptr, actions.ptr, lengths.ptr, ctypes.byref(src), ctypes.byref(flags))
        return (Trajectories(states.value(), actions.value(), lengths.value()),
                source_name(src.value), flags.value)

    def set_smc(self, smc):
        """Attaches the SMC sampler the "smc" source draws from (retained by the mixer, with
        its trainer; None detaches)."""
        call(_ffi.tch_mixer_set_smc, self._ptr, smc._ptr if smc is not None else None)
        self._smc_particles = smc.n_particles if smc is not None else None

    def draw_energy(self, env, step, seed=0):
        """The batch of an "smc" step (energy envs): one run of the attached sampler on the
        SMC stream of (seed, step) -> (x (n, dim), log_w (n,), source name, flags), n the
        sampler's particles; log-mean-exp(log_w) is log Z-hat."""
        n = getattr(self, "_smc_particles", None)
        # nothing attached: one row, so that the library reports what is missing
        n = 1 if n is None else int(n)
        dim = int(env.dim) if env.is_energy else 1
        x = Out((n, dim), "f8")
        lw = Out((n,), "f8")
        src, flags = ctypes.c_int(), ctypes.c_uint32()
        call(_ffi.tch_mixer_draw_energy, self._ptr, env._ptr, int(seed), int(step), n, x.ptr,
             lw.ptr, ctypes.byref(src), ctypes.byref(flags))
        return x.value(), lw.value(), source_name(src.value), flags.value
