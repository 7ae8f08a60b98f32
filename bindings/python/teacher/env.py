"""teacher.Env: built-in environments and environments defined by Python callbacks."""
import ctypes
import itertools

from . import _ffi, _errors
from ._arrays import In, Out, view
from ._errors import call
from ._handle import Handle

__all__ = ["Env"]

# ---- Python-defined environments ---------------------------------------------------------
# The C env stores an integer key as its `user` pointer. The callbacks of every Python env
# go through the module-level thunks below, which look the key up here; the env's
# user_free (run by the library when the last reference to the C env goes) removes the
# entry. So the Python callables live exactly as long as the C env, whichever wrapper or
# trainer releases it last, and the CFUNCTYPE thunks are never freed.
# No lock: dict operations and next() on a count are atomic under the GIL, and a lock
# could deadlock when the garbage collector frees an env (running user_free) while the
# same thread holds it.
_registry = {}
_keys = itertools.count(1)


class _PyEnv(object):
    __slots__ = ("state_dim", "n_actions", "feat_dim", "step", "backward_step", "masks",
                 "log_reward", "features")


def _result_code(r, what):
    if r is None or r is False:
        return 0
    if isinstance(r, bool):   # True is not a status: treat as a (user) failure code 1
        return 1
    try:
        code = int(r)
    except (TypeError, ValueError):
        raise TypeError("the %s callback must return None or an int status, not %r"
                        % (what, type(r).__name__)) from None
    return max(-2 ** 31, min(2 ** 31 - 1, code))


def _failed(exc, what):
    _errors.store_exception(exc)
    try:
        _ffi.tch_set_callback_error(
            ("Python %s in %s: %s" % (type(exc).__name__, what, exc)).encode("utf-8",
                                                                          "replace")[:900])
    except BaseException:  # pragma: no cover - never let anything escape into C
        pass
    return -1


def _step_impl(which, user, n, states, actions, out):
    try:
        e = _registry[user]
        sd = e.state_dim
        fn = e.step if which == 0 else e.backward_step
        r = fn(view(states, (n, sd), "i4", True), view(actions, (n,), "i4", True),
               view(out, (n, sd), "i4", False))
        return _result_code(r, "step" if which == 0 else "backward_step")
    except BaseException as exc:
        return _failed(exc, "step" if which == 0 else "backward_step")


@_ffi.step_fn
def _step_thunk(user, n, states, actions, out):
    return _step_impl(0, user, n, states, actions, out)


@_ffi.step_fn
def _backward_step_thunk(user, n, states, actions, out):
    return _step_impl(1, user, n, states, actions, out)


@_ffi.masks_fn
def _masks_thunk(user, n, states, fwd, bwd):
    try:
        e = _registry[user]
        na = e.n_actions
        r = e.masks(view(states, (n, e.state_dim), "i4", True), view(fwd, (n, na), "u1", False),
                    view(bwd, (n, na - 1), "u1", False))
        return _result_code(r, "masks")
    except BaseException as exc:
        return _failed(exc, "masks")


@_ffi.log_reward_fn
def _log_reward_thunk(user, n, states, out):
    try:
        e = _registry[user]
        r = e.log_reward(view(states, (n, e.state_dim), "i4", True), view(out, (n,), "f8", False))
        return _result_code(r, "log_reward")
    except BaseException as exc:
        return _failed(exc, "log_reward")


@_ffi.features_fn
def _features_thunk(user, n, states, out):
    try:
        e = _registry[user]
        r = e.features(view(states, (n, e.state_dim), "i4", True),
                       view(out, (n, e.feat_dim), "f4", False))
        return _result_code(r, "features")
    except BaseException as exc:
        return _failed(exc, "features")


class _PyEnergy(object):
    __slots__ = ("dim", "log_density", "sample_reference")


@_ffi.log_density_fn
def _log_density_thunk(user, n, dim, x, out_log_p, out_grad):
    try:
        e = _registry[user]
        r = e.log_density(view(x, (n, dim), "f8", True), view(out_log_p, (n,), "f8", False),
                          view(out_grad, (n, dim), "f8", False))
        return _result_code(r, "log_density")
    except BaseException as exc:
        return _failed(exc, "log_density")


@_ffi.sample_reference_fn
def _sample_reference_thunk(user, seed, n, dim, out):
    try:
        e = _registry[user]
        r = e.sample_reference(int(seed), view(out, (n, dim), "f8", False))
        return _result_code(r, "sample_reference")
    except BaseException as exc:
        return _failed(exc, "sample_reference")


class _PySeqpa(object):
    __slots__ = ("len", "score")


@_ffi.seqpa_score_fn
def _seqpa_score_thunk(user, n, strings, out):
    try:
        e = _registry[user]
        r = e.score(view(strings, (n, e.len), "i4", True), view(out, (n,), "f8", False))
        return _result_code(r, "score")
    except BaseException as exc:
        return _failed(exc, "score")


def _mode_indices(modes, length, n_chars):
    """Mode strings as base-n_chars indices: ints pass through, sequences of characters
    (position 0 most significant) are converted."""
    out = []
    for m in modes:
        if isinstance(m, (list, tuple)) or hasattr(m, "__len__"):
            if len(m) != length:
                raise ValueError("a mode string must have %d characters, not %d" % (length, len(m)))
            k = 0
            for c in m:
                c = int(c)
                if not 0 <= c < n_chars:
                    raise ValueError("mode character %d is outside [0, %d)" % (c, n_chars))
                k = k * n_chars + c
            out.append(k)
        else:
            out.append(int(m))
    return out


@_ffi.user_free_fn
def _user_free_thunk(user):
    try:
        _registry.pop(user, None)
    except BaseException:  # pragma: no cover - interpreter shutdown
        pass


def registered_envs():
    """Number of live Python-defined C envs (for leak tests)."""
    return len(_registry)


class Env(Handle):
    """An environment (tch_env). Create one with :meth:`hypergrid`, :meth:`from_config` or
    :meth:`discrete` (Python callbacks); sequence tasks with :meth:`qm9str`, :meth:`sehstr`,
    :meth:`tfbind8`, :meth:`rna` or :meth:`seqpa` (a Python score); energy envs (continuous
    targets of diffusion samplers) with :meth:`gmm25`, :meth:`manywell`, :meth:`gmm40`,
    :meth:`funnel` or :meth:`energy` (Python callbacks)."""
    _c_free = staticmethod(_ffi.tch_env_free)
    _c_retain = staticmethod(_ffi.tch_env_retain)
    _kind = "Env"

    def __init__(self, *a, **kw):
        raise TypeError("use Env.hypergrid(), Env.from_config(), Env.discrete(), Env.qm9str(), "
                        "Env.sehstr(), Env.tfbind8(), Env.rna(), Env.seqpa(), Env.gmm25(), "
                        "Env.manywell(), Env.gmm40(), Env.funnel() or Env.energy()")

    def _post_init(self):
        dim = ctypes.c_uint32()
        # TCH_E_ARG for a discrete env: the kind of the C env, without raising.
        if _ffi.tch_env_energy_dim(self._h, ctypes.byref(dim)) == _errors.OK:
            self._energy_dim, self._dims = dim.value, None
            return
        self._energy_dim = None
        sd, na, ml = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.c_uint32()
        call(_ffi.tch_env_dims, self._h, ctypes.byref(sd), ctypes.byref(na), ctypes.byref(ml))
        self._dims = (sd.value, na.value, ml.value)

    # ---- constructors --------------------------------------------------------------------
    @classmethod
    def hypergrid(cls, ndim=2, horizon=8, beta=1.0):
        """The built-in deceptive hypergrid ({0..horizon-1}^ndim, exact target known)."""
        h = _ffi.env_p()
        call(_ffi.tch_env_create_hypergrid, int(ndim), int(horizon), float(beta),
             ctypes.byref(h))
        return cls._own(h)

    @classmethod
    def from_config(cls, config):
        """A built-in env from the keys env.name and env.<name>.* of a Config (or a
        mapping)."""
        from .config import Config
        cfg = Config.coerce(config)
        h = _ffi.env_p()
        call(_ffi.tch_env_create_from_config, cfg._ptr, ctypes.byref(h))
        return cls._own(h)

    @classmethod
    def discrete(cls, state_dim, n_actions, max_len, s0, step, backward_step, masks,
                 log_reward, vocab=None, features=None, feat_dim=None):
        """An environment defined by Python callables (see docs/python.md).

        States are `state_dim` int32 values; actions 0..n_actions-1, the last one EXIT.
        Every callable receives views over the library's buffers (NumPy arrays when NumPy is
        present -- inputs read-only -- else memoryviews) and writes its outputs in place:

        * ``step(states, actions, out)`` and ``backward_step(states, actions, out)``:
          states (n, state_dim), actions (n,), out (n, state_dim);
        * ``masks(states, fwd, bwd)``: fwd (n, n_actions) uint8 (pre-zeroed), bwd
          (n, n_actions-1) uint8 or None when the library does not need it;
        * ``log_reward(states, out)``: out (n,) float64;
        * ``features(states, out)``: out (n, feat_dim) float32 (optional; without it the
          library one-hot encodes each position, which needs `vocab`).

        A callable returns None (success) or an int (non-zero fails the call with
        CallbackError). An exception it raises stops the library call, which is rolled
        back, and is then re-raised from the Python call that triggered it. The views are
        valid only during the call: copy what you keep.
        """
        if features is not None and not feat_dim:
            raise ValueError("Env.discrete: feat_dim is required with features")
        if features is None and vocab is None:
            raise ValueError("Env.discrete: vocab is required without features "
                             "(the built-in one-hot needs the values of each position)")
        for name, fn in (("step", step), ("backward_step", backward_step), ("masks", masks),
                         ("log_reward", log_reward)):
            if not callable(fn):
                raise TypeError("Env.discrete: %s must be callable" % name)
        if features is not None and not callable(features):
            raise TypeError("Env.discrete: features must be callable")
        state_dim, n_actions, max_len = int(state_dim), int(n_actions), int(max_len)
        s0_in = In(s0, "i4", "s0").expect(state_dim)
        vocab_in = In(vocab, "u4", "vocab").expect(state_dim) if vocab is not None else None

        e = _PyEnv()
        e.state_dim, e.n_actions = state_dim, n_actions
        e.feat_dim = int(feat_dim) if features is not None else 0
        e.step, e.backward_step, e.masks = step, backward_step, masks
        e.log_reward, e.features = log_reward, features
        key = next(_keys)
        _registry[key] = e

        d = _ffi.DiscreteEnvDesc()
        d.struct_size = ctypes.sizeof(_ffi.DiscreteEnvDesc)
        d.state_dim, d.n_actions, d.max_len = state_dim, n_actions, max_len
        d.feat_dim = e.feat_dim
        d.s0 = s0_in.ptr
        d.step, d.backward_step = _step_thunk, _backward_step_thunk
        d.masks, d.log_reward = _masks_thunk, _log_reward_thunk
        if features is not None:
            d.features = _features_thunk
        d.user = key
        d.user_free = _user_free_thunk
        if vocab_in is not None:
            d.vocab = vocab_in.ptr
        h = _ffi.env_p()
        try:
            call(_ffi.tch_env_create_discrete, ctypes.byref(d), ctypes.byref(h))
        except BaseException:
            # On failure the library does not call user_free: we still own the entry.
            _registry.pop(key, None)
            raise
        env = cls._own(h)
        env._python = True
        return env

    @classmethod
    def gmm25(cls, config=None):
        """The built-in 25-Gaussian mixture in 2-D (energy env; log Z = 0, gradient, exact
        sampler). `config` (a Config or mapping) may set env.diffusion.*."""
        return cls._builtin_energy(_ffi.tch_env_create_gmm25, config)

    @classmethod
    def manywell(cls, config=None):
        """The built-in ManyWell in 32-D (energy env; log Z = 164.69567532, gradient, exact
        sampler). `config` may set env.diffusion.*."""
        return cls._builtin_energy(_ffi.tch_env_create_manywell, config)

    @classmethod
    def gmm40(cls, dim=2, config=None):
        """The built-in 40-Gaussian mixture of Reinforced SMC (energy env; log Z = 0,
        gradient, exact sampler): the reference's means in 2-D, fixed seeded means in
        [-40, 40)^dim otherwise. `config` may set env.diffusion.*."""
        return cls._builtin_energy_dim(_ffi.tch_env_create_gmm40, dim, config)

    @classmethod
    def funnel(cls, dim=10, config=None):
        """The built-in funnel of Reinforced SMC (energy env; x_1 ~ N(0, 9), x_i ~
        N(0, e^{x_1}); log Z = 0, gradient, exact sampler). `config` may set
        env.diffusion.*."""
        return cls._builtin_energy_dim(_ffi.tch_env_create_funnel, dim, config)

    @classmethod
    def _builtin_energy_dim(cls, fn, dim, config):
        from .config import Config
        dim = int(dim)
        if not 0 <= dim < 2 ** 32:
            raise ValueError("dim %d is out of range" % dim)
        cfg = Config.coerce(config) if config is not None else None
        h = _ffi.env_p()
        call(fn, dim, cfg._ptr if cfg is not None else None, ctypes.byref(h))
        return cls._own(h)

    @classmethod
    def _builtin_energy(cls, fn, config):
        from .config import Config
        cfg = Config.coerce(config) if config is not None else None
        h = _ffi.env_p()
        call(fn, cfg._ptr if cfg is not None else None, ctypes.byref(h))
        return cls._own(h)

    @classmethod
    def energy(cls, dim, log_density, log_Z=None, sample_reference=None, has_grad=False,
               config=None):
        """An energy env (continuous target of a diffusion sampler) defined by Python
        callables (see docs/api/env.md for the contract):

        * ``log_density(x, out_log_p, out_grad)``: x (n, dim) float64, read-only; writes
          log p into out_log_p (n,) and, when out_grad is not None (only if `has_grad`),
          the gradient into out_grad (n, dim);
        * ``sample_reference(seed, out)`` (optional): n exact samples into out (n, dim).

        Return values and exceptions as for :meth:`discrete`. `log_Z` is None when unknown;
        `config` may set env.diffusion.*.
        """
        if not callable(log_density):
            raise TypeError("Env.energy: log_density must be callable")
        if sample_reference is not None and not callable(sample_reference):
            raise TypeError("Env.energy: sample_reference must be callable")
        from .config import Config
        cfg = Config.coerce(config) if config is not None else None
        e = _PyEnergy()
        e.dim, e.log_density, e.sample_reference = int(dim), log_density, sample_reference
        key = next(_keys)
        _registry[key] = e
        d = _ffi.EnergyDesc()
        d.struct_size = ctypes.sizeof(_ffi.EnergyDesc)
        d.dim = e.dim
        d.flags = _ffi.TCH_ENERGY_HAS_GRAD if has_grad else 0
        d.log_density = _log_density_thunk
        d.log_Z = float("nan") if log_Z is None else float(log_Z)
        if sample_reference is not None:
            d.sample_reference = _sample_reference_thunk
        d.user = key
        d.user_free = _user_free_thunk
        h = _ffi.env_p()
        try:
            call(_ffi.tch_env_create_energy, ctypes.byref(d),
                 cfg._ptr if cfg is not None else None, ctypes.byref(h))
        except BaseException:
            _registry.pop(key, None)   # user_free is not called on failure
            raise
        env = cls._own(h)
        env._python = True
        return env

    # ---- sequence tasks (the discovery experiments' prepend/append MDP) ----------------
    @classmethod
    def qm9str(cls):
        """Built-in QM9 fragment strings (5 of 11 blocks, exact target, 805 modes)."""
        return cls._builtin_task(_ffi.tch_env_create_qm9str)

    @classmethod
    def sehstr(cls):
        """Built-in sEH fragment strings (6 of 18 blocks, GBR proxy, 129 modes)."""
        return cls._builtin_task(_ffi.tch_env_create_sehstr)

    @classmethod
    def tfbind8(cls):
        """Built-in TFBind8 (DNA 8-mers, exact target, 328 modes). Unless the library was
        built with the exact table, the score is a STAND-IN fitted to the public half of the
        SIX6 table (docs/api/env.md): do not report its numbers as the paper's task."""
        return cls._builtin_task(_ffi.tch_env_create_tfbind8)

    @classmethod
    def rna(cls, task=1):
        """Built-in L14 RNA-binding task 1..3 (ViennaRNA duplex folding). StateError when
        the library was built without ViennaRNA: use :meth:`seqpa` with your own folding."""
        h = _ffi.env_p()
        call(_ffi.tch_env_create_rna, int(task), ctypes.byref(h))
        return cls._own(h)

    @classmethod
    def _builtin_task(cls, fn):
        h = _ffi.env_p()
        call(fn, ctypes.byref(h))
        return cls._own(h)

    @classmethod
    def seqpa(cls, length, n_chars, score, beta=1.0, y_min=0.001, log_scale=0.0, r_max=0.0,
              add_floor=0.0, max_floor=0.0, log_Z=None, modes=None, enumerate=False,
              name=None):
        """A sequence task on the prepend/append MDP whose raw score is a Python callable
        ``score(strings, out)``: strings (n, length) int32 characters in [0, n_chars),
        read-only; writes the raw scores y into out (n,) float64. Return values and
        exceptions as for :meth:`discrete`.

        Reward: R = max(max(y, y_min)^beta * scale + add_floor, max_floor) with
        scale = exp(log_scale), or r_max / max over all strings of max(y, y_min)^beta when
        r_max > 0 (needs enumerate=True). `enumerate` scores all n_chars^length strings at
        creation (at most 2^24) for the exact target and log Z; `log_Z` gives a known log Z
        otherwise. `modes`: mode strings as base-n_chars indices or sequences of characters.
        """
        if not callable(score):
            raise TypeError("Env.seqpa: score must be callable")
        length, n_chars = int(length), int(n_chars)
        e = _PySeqpa()
        e.len, e.score = length, score
        mode_idx = _mode_indices(modes, length, n_chars) if modes is not None else []
        mode_arr = (ctypes.c_uint64 * max(1, len(mode_idx)))(*mode_idx)
        d = _ffi.SeqpaEnvDesc()
        d.struct_size = ctypes.sizeof(_ffi.SeqpaEnvDesc)
        d.len, d.n_chars = length, n_chars
        d.flags = ((_ffi.TCH_SEQPA_ENUMERATE if enumerate else 0) |
                   (_ffi.TCH_SEQPA_HAS_LOG_Z if log_Z is not None else 0))
        d.score = _seqpa_score_thunk
        d.name = _ffi.encode(name) if name is not None else None
        d.beta, d.y_min, d.log_scale, d.r_max = float(beta), float(y_min), float(log_scale), float(r_max)
        d.add_floor, d.max_floor = float(add_floor), float(max_floor)
        d.log_Z = float(log_Z) if log_Z is not None else 0.0
        d.modes = ctypes.cast(mode_arr, ctypes.POINTER(ctypes.c_uint64)) if mode_idx else None
        d.n_modes = len(mode_idx)
        key = next(_keys)
        _registry[key] = e
        d.user = key
        d.user_free = _user_free_thunk
        h = _ffi.env_p()
        try:
            call(_ffi.tch_env_create_seqpa, ctypes.byref(d), ctypes.byref(h))
        except BaseException:
            _registry.pop(key, None)   # user_free is not called on failure
            raise
        env = cls._own(h)
        env._python = True
        return env

    def raw_scores(self, states):
        """Sequence tasks: raw scores y (before the reward transform) of complete strings
        (n, length) -> (n,) floats. StateError for envs without raw scores."""
        s, n = self._states(states)
        out = Out((n,), "f8")
        call(_ffi.tch_env_raw_scores, self._ptr, n, s.ptr, out.ptr)
        return out.value()

    def target_log_Z(self):
        """log Z of the env's target: by enumeration (hypergrid, qm9str, tfbind8, seqpa
        with enumerate=True), a known constant (rna, seqpa with log_Z), or an energy env's
        log Z. StateError when unknown."""
        v = ctypes.c_double()
        call(_ffi.tch_env_target_log_Z, self._ptr, ctypes.byref(v))
        return v.value

    def new_reference(self):
        """Another wrapper of the same C env holding a reference of its own (so closing
        this one does not affect it)."""
        e = Env._borrow(self._ptr)
        e._python = self.is_python
        return e

    # ---- queries -------------------------------------------------------------------------
    def _discrete_dims(self):
        if self._dims is None:
            raise _errors.ArgumentError(_errors.E_ARG, "this is an energy env; it has no "
                                        "discrete dims (use Env.dim)")
        return self._dims

    @property
    def state_dim(self):
        return self._discrete_dims()[0]

    @property
    def n_actions(self):
        """Forward actions including EXIT (the last one)."""
        return self._discrete_dims()[1]

    @property
    def max_len(self):
        """Bound on the non-EXIT steps of a trajectory (trajectories pad to max_len + 1)."""
        return self._discrete_dims()[2]

    @property
    def dims(self):
        """(state_dim, n_actions, max_len)."""
        return self._discrete_dims()

    @property
    def is_energy(self):
        """True for an energy env (continuous target of a diffusion sampler)."""
        return self._energy_dim is not None

    @property
    def dim(self):
        """Dimension of an energy env's points (ArgumentError for a discrete env)."""
        v = ctypes.c_uint32()
        call(_ffi.tch_env_energy_dim, self._ptr, ctypes.byref(v))
        return v.value

    def log_density(self, x, grad=False):
        """Energy envs: log p of points x (n, dim) -> (n,) floats, or (log_p, grad (n, dim))
        with grad=True (StateError if the env has no gradient)."""
        dim = self.dim
        xi = In(x, "f8", "x")
        n = xi.rows(dim)
        lp = Out((n,), "f8")
        g = Out((n, dim), "f8") if grad else None
        call(_ffi.tch_env_log_density, self._ptr, n, xi.ptr, lp.ptr, g.ptr if g else None)
        return (lp.value(), g.value()) if grad else lp.value()

    def log_Z(self):
        """Energy envs: the target's log normalising constant (StateError if unknown)."""
        v = ctypes.c_double()
        call(_ffi.tch_env_log_Z, self._ptr, ctypes.byref(v))
        return v.value

    def sample_target(self, n, seed=0):
        """Energy envs: n exact samples (n, dim) of the target, reproducible per seed
        (StateError if the env has no exact sampler)."""
        n = int(n)
        out = Out((n, self.dim), "f8")
        call(_ffi.tch_env_sample_target, self._ptr, int(seed), n, out.ptr)
        return out.value()

    def diffusion_steps(self):
        """Energy envs: (steps T, t_scale) of the diffusion sampler's forward SDE."""
        steps, ts = ctypes.c_uint32(), ctypes.c_double()
        call(_ffi.tch_env_diffusion_steps, self._ptr, ctypes.byref(steps), ctypes.byref(ts))
        return steps.value, ts.value

    @property
    def is_python(self):
        """True for an env defined by Python callbacks."""
        return getattr(self, "_python", False)

    def _states(self, states, name="states"):
        s = In(states, "i4", name)
        return s, s.rows(self.state_dim)

    def log_reward(self, states):
        """log R of terminal states (n, state_dim) -> (n,) floats; NaN/Inf is
        NumericError."""
        s, n = self._states(states)
        out = Out((n,), "f8")
        call(_ffi.tch_env_log_reward, self._ptr, n, s.ptr, out.ptr)
        return out.value()

    def n_terminal(self):
        """Size of the terminal set (envs that enumerate it; StateError otherwise)."""
        v = ctypes.c_size_t()
        call(_ffi.tch_env_n_terminal, self._ptr, ctypes.byref(v))
        return v.value

    def n_modes(self):
        v = ctypes.c_size_t()
        call(_ffi.tch_env_n_modes, self._ptr, ctypes.byref(v))
        return v.value

    def enumerate_terminal(self, cap=None):
        """(states (k, state_dim), log_r (k,)) of the first k = min(cap, n_terminal)
        terminal states."""
        total = self.n_terminal()
        k = total if cap is None else min(int(cap), total)
        states, log_r = Out((k, self.state_dim), "i4"), Out((k,), "f8")
        call(_ffi.tch_env_enumerate_terminal, self._ptr, k, states.ptr, log_r.ptr)
        return states.value(), log_r.value()

    def empirical_l1(self, states):
        """Empirical L1 of terminal samples against the exact target."""
        s, n = self._states(states)
        v = ctypes.c_double()
        call(_ffi.tch_env_empirical_l1, self._ptr, n, s.ptr, ctypes.byref(v))
        return v.value

    def count_modes(self, states):
        """Number of distinct modes among terminal samples."""
        s, n = self._states(states)
        v = ctypes.c_size_t()
        call(_ffi.tch_env_count_modes, self._ptr, n, s.ptr, ctypes.byref(v))
        return v.value

    def __repr__(self):
        if self.closed:
            return "<teacher.Env (closed)>"
        if self._dims is None:
            return "<teacher.Env%s energy dim=%d>" % (" (Python)" if self.is_python else "",
                                                      self._energy_dim)
        return "<teacher.Env%s state_dim=%d n_actions=%d max_len=%d>" % (
            " (Python)" if self.is_python else "", self._dims[0], self._dims[1], self._dims[2])

