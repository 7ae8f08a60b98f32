"""teacher.Smc: twisted SMC over a diffusion trainer's Student (tch_smc, smc.h)."""
import ctypes
import math

from . import _ffi
from ._errors import call
from ._handle import Handle
from ._arrays import Out

__all__ = ["Smc", "RESAMPLERS"]

#: resampler name -> tch_smc_resampler value (pinned); "config" takes the trainer's.
RESAMPLERS = {"config": _ffi.TCH_SMC_RESAMPLER_CONFIG,
              "systematic": _ffi.TCH_SMC_RESAMPLER_SYSTEMATIC,
              "stratified": _ffi.TCH_SMC_RESAMPLER_STRATIFIED,
              "multinomial": _ffi.TCH_SMC_RESAMPLER_MULTINOMIAL}


class Smc(Handle):
    """``Smc(trainer, n_particles=0, n_chunks=0, resample_threshold=0, target_ess=0,
    resampler="config", unbiased=None, mala_steps=None, mala_step=0)``: an SMC sampler over
    the trainer's current Student (and its learnt twist, with smc.enabled). Zero / "config"
    / None take the trainer's settings; mala_steps > 0 adds that many MALA rejuvenation
    moves after every chunk (0: none; needs the env's gradient). Holds a reference on the
    trainer: either may be closed first."""
    _c_free = staticmethod(_ffi.tch_smc_free)
    _c_retain = staticmethod(_ffi.tch_smc_retain)
    _kind = "Smc"

    def __init__(self, trainer, n_particles=0, n_chunks=0, resample_threshold=0.0,
                 target_ess=0.0, resampler="config", unbiased=None, mala_steps=None,
                 mala_step=0.0):
        if resampler not in RESAMPLERS:
            raise ValueError("Smc: resampler must be one of %s" % sorted(RESAMPLERS))
        d = _ffi.SmcDesc()
        d.struct_size = ctypes.sizeof(_ffi.SmcDesc)
        d.n_particles = int(n_particles)
        d.n_chunks = int(n_chunks)
        d.resample_threshold = float(resample_threshold)
        d.target_ess = float(target_ess)
        d.resampler = RESAMPLERS[resampler]
        d.unbiased = 0 if unbiased is None else (1 if unbiased else -1)
        if mala_steps is not None and int(mala_steps) < 0:
            raise ValueError("Smc: mala_steps must be >= 0 (None takes smc.mala_steps)")
        d.mala_steps = 0 if mala_steps is None else (int(mala_steps) if int(mala_steps) else -1)
        d.mala_step = float(mala_step)
        h = _ffi.smc_p()
        call(_ffi.tch_smc_create, trainer._ptr, ctypes.byref(d), ctypes.byref(h))
        self._init_handle(h)
        self._post_init()

    @property
    def n_particles(self):
        return int(self.metric("n_particles"))

    @property
    def n_chunks(self):
        return int(self.metric("n_chunks"))

    def run(self, seed=0):
        """One run: (x (n, dim), log_w (n,), log_z). mean(exp(log_w)) == exp(log_z);
        bit-identical for a seed and trainer state; the trainer is not changed."""
        n, dim = self.n_particles, int(self.metric("dim"))
        x = Out((n, dim), "f8")
        lw = Out((n,), "f8")
        lz = ctypes.c_double(math.nan)
        call(_ffi.tch_smc_run, self._ptr, int(seed), n, x.ptr, lw.ptr, ctypes.byref(lz))
        return x.value(), lw.value(), lz.value

    def metric(self, name):
        """A setting or last-run value by name ("log_z", "ess", "resamples", "energy_evals",
        "mala_accept", "n_particles"...; see docs/api/smc.md); NaN before the first run."""
        v = ctypes.c_double()
        call(_ffi.tch_smc_metric, self._ptr, _ffi.encode(name), ctypes.byref(v))
        return v.value

    def chunk_stats(self):
        """Per-chunk diagnostics of the last run: {"ess", "temperature", "resampled"}."""
        k = self.n_chunks
        ess, temp, res = Out((k,), "f8"), Out((k,), "f8"), Out((k,), "u1")
        call(_ffi.tch_smc_chunk_stats, self._ptr, k, ess.ptr, temp.ptr, res.ptr)
        return {"ess": ess.value(), "temperature": temp.value(), "resampled": res.value()}

    def __repr__(self):
        if self.closed:
            return "<teacher.Smc closed>"
        return "<teacher.Smc %d particles, %d chunks>" % (self.n_particles, self.n_chunks)
