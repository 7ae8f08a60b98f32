"""teacher.Policy: one amortized sampler (tch_policy)."""
import collections
import ctypes

from . import _ffi
from ._arrays import In, Out
from ._errors import call
from ._handle import Handle

__all__ = ["Policy", "Trajectories", "Samples"]

#: Terminal samples: states (n, state_dim) and their trajectory log P_F (n,).
Samples = collections.namedtuple("Samples", "states log_pf")

#: A batch of trajectories in the library's padded layout: T = max_len + 1 slots;
#: states (n, T, state_dim) (rows past a trajectory's length are unspecified), actions
#: (n, T) (-1 past the end, the last action EXIT), lengths (n,) = number of actions.
#: log_pf / log_pb / log_r are (n,) or None when the call does not produce them.
Trajectories = collections.namedtuple("Trajectories",
                                      "states actions lengths log_pf log_pb log_r")
Trajectories.__new__.__defaults__ = (None, None, None)


def traj_outputs(env, n):
    sd, _, ml = env.dims
    T = ml + 1
    return Out((n, T, sd), "i4"), Out((n, T), "i4"), Out((n,), "u4")


class Policy(Handle):
    """A policy network (P_F, optional learned P_B, log Z).

    ``Policy(env, config=None, seed=0)`` creates a randomly initialised policy shaped by
    the config's nn.* and student.* keys. Policies borrowed from a trainer
    (``trainer.student``) keep the trainer alive. Methods that need an env default to the
    env the policy was created with, loaded with, or borrowed from (the policy holds its
    own reference to it, so closing the caller's Env wrapper does not affect it); pass
    ``env=`` otherwise (a policy loaded without env= has none).
    """
    _c_free = staticmethod(_ffi.tch_policy_free)
    _c_retain = staticmethod(_ffi.tch_policy_retain)
    _kind = "Policy"

    def __init__(self, env, config=None, seed=0):
        from .config import Config
        cfg = Config.coerce(config)
        h = _ffi.policy_p()
        call(_ffi.tch_policy_create, env._ptr, cfg._ptr if cfg is not None else None,
             int(seed), ctypes.byref(h))
        self._init_handle(h)
        self._env = env.new_reference()

    def _post_init(self):
        self._env = None

    def _env_for(self, env):
        env = env if env is not None else self._env
        if env is None:
            raise ValueError("teacher.Policy: this policy has no env: pass env=")
        return env

    @property
    def env(self):
        """The env the policy was created with or borrowed from (None after load)."""
        return self._env

    # ---- sampling and scoring -------------------------------------------------------------
    def sample(self, n, seed=0, env=None):
        """n terminal objects sampled with the policy itself -> Samples(states, log_pf)."""
        env = self._env_for(env)
        n = int(n)
        states, log_pf = Out((n, env.state_dim), "i4"), Out((n,), "f8")
        call(_ffi.tch_policy_sample_discrete, self._ptr, env._ptr, int(seed), n, states.ptr,
             log_pf.ptr)
        return Samples(states.value(), log_pf.value())

    def sample_trajectories(self, n, seed=0, epsilon=0.0, temperature=1.0, env=None):
        """n whole trajectories (epsilon-uniform mixing, logit temperature; log P_F and
        log P_B scored under the policy itself) -> Trajectories."""
        env = self._env_for(env)
        n = int(n)
        states, actions, lengths = traj_outputs(env, n)
        log_pf, log_pb = Out((n,), "f8"), Out((n,), "f8")
        call(_ffi.tch_policy_sample_trajectories, self._ptr, env._ptr, int(seed), n,
             float(epsilon), float(temperature), states.ptr, actions.ptr, lengths.ptr,
             log_pf.ptr, log_pb.ptr)
        return Trajectories(states.value(), actions.value(), lengths.value(), log_pf.value(),
                            log_pb.value())

    def sample_backward(self, terminal_states, seed=0, env=None):
        """Trajectories ending in the given terminal states, built backward with P_B."""
        env = self._env_for(env)
        x = In(terminal_states, "i4", "terminal_states")
        n = x.rows(env.state_dim)
        states, actions, lengths = traj_outputs(env, n)
        call(_ffi.tch_policy_sample_backward, self._ptr, env._ptr, int(seed), n, x.ptr,
             states.ptr, actions.ptr, lengths.ptr)
        return Trajectories(states.value(), actions.value(), lengths.value())

    def score(self, states, actions=None, lengths=None, env=None):
        """(log_pf, log_pb) of given trajectories (padded layout; a Trajectories may be
        passed as the first argument)."""
        env = self._env_for(env)
        if isinstance(states, Trajectories):
            states, actions, lengths = states.states, states.actions, states.lengths
        sd, _, ml = env.dims
        T = ml + 1
        a = In(actions, "i4", "actions")
        n = a.rows(T)
        s = In(states, "i4", "states").expect(n * T * sd)
        ln = In(lengths, "u4", "lengths").expect(n)
        log_pf, log_pb = Out((n,), "f8"), Out((n,), "f8")
        call(_ffi.tch_policy_score_discrete, self._ptr, env._ptr, n, s.ptr, a.ptr, ln.ptr,
             log_pf.ptr, log_pb.ptr)
        return log_pf.value(), log_pb.value()

    # ---- properties ----------------------------------------------------------------------
    @property
    def log_z(self):
        v = ctypes.c_double()
        call(_ffi.tch_policy_log_z, self._ptr, ctypes.byref(v))
        return v.value

    @property
    def n_params(self):
        v = ctypes.c_size_t()
        call(_ffi.tch_policy_n_params, self._ptr, ctypes.byref(v))
        return v.value

    @property
    def gemm_kernel(self):
        """The BLIS kernel context the policy's gemms run on (e.g. "zen3")."""
        v = ctypes.c_char_p()
        call(_ffi.tch_policy_gemm_kernel, self._ptr, ctypes.byref(v))
        return _ffi.decode(v.value)

    # ---- copies and files ----------------------------------------------------------------
    def clone(self):
        """An independent copy (for concurrent sampling from several threads)."""
        h = _ffi.policy_p()
        call(_ffi.tch_policy_clone, self._ptr, ctypes.byref(h))
        p = Policy._own(h)
        p._env = self._env
        return p

    def save(self, path):
        """Versioned binary file ("TCHP"), written atomically."""
        call(_ffi.tch_policy_save, self._ptr, _ffi.encode_path(path))

    @classmethod
    def load(cls, path, env=None):
        h = _ffi.policy_p()
        call(_ffi.tch_policy_load, _ffi.encode_path(path), ctypes.byref(h))
        p = cls._own(h)
        p._env = env.new_reference() if env is not None else None
        return p

    def _on_close(self):
        self._env = None

