"""teacher.Smc (tch_smc) through the Python binding."""
import ctypes
import math

import pytest

import teacher
from teacher import _ffi

RSMC = {"seed": 3, "nn.hidden_dim": 16, "train.batch_size": 16, "smc.enabled": True,
        "smc.n_chunks": 4, "smc.prefill_batches": 1, "smc.buffer_batches": 2,
        "smc.flow_hidden": 16, "smc.init_std": 20}


def _lme(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v) / len(v))


def test_smc_runs_and_outlives_its_trainer():
    env = teacher.Env.gmm40(2, {"env.diffusion.steps": 8})
    tr = teacher.Trainer(env, teacher.Config(RSMC))
    tr.step(2)
    smc = teacher.Smc(tr, n_particles=24, resampler="multinomial", unbiased=True)
    assert smc.n_particles == 24 and smc.n_chunks == 4
    assert smc.metric("learnt_twist") == 1.0 and smc.metric("unbiased") == 1.0
    x, lw, lz = smc.run(seed=7)
    assert len(x) == 24 and len(x[0]) == 2 and len(lw) == 24
    assert _lme(list(lw)) == pytest.approx(lz, rel=1e-9, abs=1e-9)
    st = smc.chunk_stats()
    assert len(st["ess"]) == 4 and int(st["resampled"][3]) == 0
    tr.close()
    env.close()
    x2, lw2, lz2 = smc.run(seed=7)   # the handle keeps the trainer alive
    assert lz2 == lz and [list(r) for r in x2] == [list(r) for r in x]
    smc.close()


def test_smc_errors():
    with teacher.Trainer(teacher.Env.hypergrid(2, 4)) as tr:
        with pytest.raises(teacher.StateError):
            teacher.Smc(tr)
    env = teacher.Env.gmm25({"env.diffusion.steps": 8})
    with teacher.Trainer(env, {"train.batch_size": 8, "nn.hidden_dim": 16}) as tr:
        with pytest.raises(teacher.ArgumentError):
            teacher.Smc(tr, n_chunks=3)
        with pytest.raises(ValueError):
            teacher.Smc(tr, resampler="bogus")
        with teacher.Smc(tr, n_chunks=2) as smc:
            assert math.isnan(smc.metric("log_z"))
            with pytest.raises(teacher.StateError):
                smc.chunk_stats()
            with pytest.raises(teacher.ArgumentError):
                smc.metric("no.such")


def test_smc_desc_layout_matches_cffi():
    cffi = pytest.importorskip("cffi")
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "_cdef.h")) as f:
        ffi = cffi.FFI()
        ffi.cdef(f.read())
    assert ctypes.sizeof(_ffi.SmcDesc) == ffi.sizeof("tch_smc_desc")
    names = [n for n, _ in ffi.typeof("tch_smc_desc").fields]
    assert [f[0] for f in _ffi.SmcDesc._fields_] == names
    for n in names:
        assert getattr(_ffi.SmcDesc, n).offset == ffi.offsetof("tch_smc_desc", n), n
    rs = dict(ffi.typeof("tch_smc_resampler").relements)
    assert {k[len("TCH_SMC_RESAMPLER_"):].lower(): v for k, v in rs.items()} == teacher.RESAMPLERS
