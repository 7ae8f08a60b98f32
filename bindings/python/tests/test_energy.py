"""Energy envs from Python: the built-ins GMM25 and ManyWell, Python-defined targets
(callback errors, NaN, gradients), and clean failures of discrete-only calls."""
import math

import numpy as np
import pytest

import teacher
from teacher import env as env_mod


def test_builtins():
    g = teacher.Env.gmm25()
    assert g.is_energy and g.dim == 2 and g.log_Z() == 0.0
    assert g.diffusion_steps() == (100, 1.0)
    lp, grad = g.log_density([[0.0, 0.0], [5.0, -5.0]], grad=True)
    assert lp.shape == (2,) and grad.shape == (2, 2)
    assert lp[0] == pytest.approx(-math.log(25) - math.log(2 * math.pi * 0.3), abs=1e-9)
    x = g.sample_target(50, seed=3)
    assert x.shape == (50, 2)
    assert np.array_equal(x, g.sample_target(50, seed=3))
    m = teacher.Env.manywell({"env.diffusion.steps": 250, "env.diffusion.t_scale": 0.5})
    assert m.dim == 32 and m.log_Z() == pytest.approx(164.69567532, abs=1e-8)
    assert m.diffusion_steps() == (250, 0.5)
    assert m.sample_target(10, seed=1).shape == (10, 32)
    e = teacher.Env.from_config({"env.name": "manywell"})
    assert e.is_energy and e.dim == 32
    assert "energy dim=32" in repr(e)
    with pytest.raises(teacher.ArgumentError):
        g.dims
    with pytest.raises(teacher.ArgumentError):
        g.log_reward([[0, 0]])
    with teacher.Trainer(g) as tr:   # a diffusion trainer: its Student is no Policy
        assert tr.student is None
    grid = teacher.Env.hypergrid()
    assert not grid.is_energy
    with pytest.raises(teacher.ArgumentError):
        grid.dim


def test_python_energy():
    mu = np.array([1.0, -2.0, 0.5])
    state = {"fail": None, "nan": False}

    def log_density(x, out_lp, out_grad):
        if state["fail"] is not None:
            raise state["fail"]
        out_lp[:] = -0.5 * ((x - mu) ** 2).sum(axis=1)
        if state["nan"]:
            out_lp[1] = float("nan")
        if out_grad is not None:
            out_grad[:] = mu - x

    def sample(seed, out):
        rng = np.random.default_rng(seed)
        out[:] = mu + rng.standard_normal(out.shape)

    before = env_mod.registered_envs()
    e = teacher.Env.energy(3, log_density, log_Z=1.5 * math.log(2 * math.pi),
                           sample_reference=sample, has_grad=True)
    assert e.is_python and e.dim == 3
    lp, g = e.log_density(np.zeros((4, 3)), grad=True)
    assert lp[0] == pytest.approx(-0.5 * (1 + 4 + 0.25))
    assert np.allclose(g, np.tile(mu, (4, 1)))
    assert e.sample_target(1000, seed=2).mean(axis=0) == pytest.approx(mu, abs=0.2)
    err = KeyError("energy down")
    state["fail"] = err
    with pytest.raises(KeyError) as ei:
        e.log_density(np.zeros((2, 3)))
    assert ei.value is err
    state["fail"] = None
    state["nan"] = True
    with pytest.raises(teacher.NumericError, match="row 1"):
        e.log_density(np.zeros((2, 3)))
    e.close()
    assert env_mod.registered_envs() == before

    e = teacher.Env.energy(3, log_density)
    with pytest.raises(teacher.StateError):
        e.log_density(np.zeros((2, 3)), grad=True)
    with pytest.raises(teacher.StateError):
        e.log_Z()
    with pytest.raises(teacher.StateError):
        e.sample_target(3)
    e.close()
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.energy(0, log_density)
    assert env_mod.registered_envs() == before
