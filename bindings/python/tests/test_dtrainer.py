"""The diffusion trainer through the Python binding (energy envs)."""
import math

import pytest

import teacher

SMALL = {"seed": 3, "nn.hidden_dim": 16, "train.batch_size": 32, "teacher.enabled": True}


def test_diffusion_trainer_samples_and_evaluates():
    env = teacher.Env.gmm25({"env.diffusion.steps": 8})
    with teacher.Trainer(env, teacher.Config(SMALL)) as tr:
        assert tr.student is None and tr.teacher is None and tr.mixer is None
        assert tr.buffer is not None
        assert tr.planned_steps() == 10001
        assert tr.step(3)
        m = tr.metrics()
        assert m["step"] == 3 and math.isfinite(m["threshold"]) and "eval.eubo" in m
        x = tr.sample_continuous(20, seed=5)
        assert len(x) == 20 and len(x[0]) == 2
        x2, lw = tr.sample_continuous(20, seed=5, log_weights=True)
        assert [list(r) for r in x2] == [list(r) for r in x]
        assert len(lw) == 20 and all(math.isfinite(v) for v in lw)
        ev = tr.evaluate(100)
        assert ev["eval.elbo"] <= ev["eval.log_z"]
        assert ev["eval.delta_log_z"] == pytest.approx(-ev["eval.log_z"])
        assert tr.config.to_dict()["train.batch_size"] == 32


def test_sample_continuous_needs_a_diffusion_trainer():
    with teacher.Trainer(teacher.Env.hypergrid(2, 4)) as tr:
        with pytest.raises(teacher.StateError):
            tr.sample_continuous(3)
