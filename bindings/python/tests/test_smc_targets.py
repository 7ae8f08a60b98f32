"""Reinforced SMC's built-in targets from Python: GMM40 (2-D with the reference's means, and
other dimensions) and the funnel, directly and through Env.from_config."""
import math

import numpy as np
import pytest

import teacher


def test_gmm40():
    g = teacher.Env.gmm40()
    assert g.is_energy and g.dim == 2 and g.log_Z() == 0.0
    # at the first of the reference's means the density is at least one component's peak
    lp, grad = g.log_density([[-0.299472809, 21.4577446]], grad=True)
    assert lp[0] > -math.log(40) - math.log(2 * math.pi) - 1e-6
    assert grad.shape == (1, 2) and np.all(np.abs(grad) < 1e-3)
    x = g.sample_target(4000, seed=1)
    assert x.shape == (4000, 2) and np.array_equal(x, g.sample_target(4000, seed=1))
    assert np.all(np.abs(x) < 40 + 6)
    h = teacher.Env.gmm40(50, {"env.diffusion.steps": 128})
    assert h.dim == 50 and h.diffusion_steps()[0] == 128
    assert h.sample_target(3, seed=2).shape == (3, 50)
    e = teacher.Env.from_config({"env.name": "gmm40", "env.gmm40.dim": 5})
    assert e.dim == 5
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.gmm40(0)
    with pytest.raises(ValueError):
        teacher.Env.gmm40(-1)


def test_funnel():
    f = teacher.Env.funnel()
    assert f.is_energy and f.dim == 10 and f.log_Z() == 0.0
    x = np.zeros((1, 10))
    lp, grad = f.log_density(x, grad=True)
    # log N(0; 0, 9) + 9 log N(0; 0, 1)
    assert lp[0] == pytest.approx(-10 * 0.5 * math.log(2 * math.pi) - math.log(3.0), abs=1e-12)
    assert grad[0, 0] == pytest.approx(-4.5)
    s = f.sample_target(20000, seed=3)
    assert abs(s[:, 0].mean()) < 5 * 3 / math.sqrt(20000)
    assert abs(s[:, 0].var() - 9) < 5 * 9 * math.sqrt(2 / 20000)
    assert teacher.Env.from_config({"env.name": "funnel", "env.funnel.dim": 3}).dim == 3
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.funnel(1)
