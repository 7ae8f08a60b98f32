"""teacher.Mixer's "smc" source and teacher.Smc's MALA rejuvenation through the binding."""
import math

import pytest

import teacher

RSMC = {"seed": 3, "nn.hidden_dim": 16, "train.batch_size": 16, "smc.enabled": True,
        "smc.n_chunks": 4, "smc.prefill_batches": 1, "smc.buffer_batches": 2,
        "smc.flow_hidden": 16, "smc.init_std": 20}


def _lme(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v) / len(v))


def _rows(a):
    return [list(r) for r in a]


def test_smc_mala_moves():
    env = teacher.Env.gmm40(2, {"env.diffusion.steps": 8})
    with teacher.Trainer(env, teacher.Config(RSMC)) as tr:
        with teacher.Smc(tr, n_particles=16) as plain, \
                teacher.Smc(tr, n_particles=16, mala_steps=3, mala_step=0.05) as moved:
            assert plain.metric("mala_steps") == 0.0
            assert moved.metric("mala_steps") == 3.0 and moved.metric("mala_step") == 0.05
            _, _, lz = plain.run(seed=1)
            x, lw, lz2 = moved.run(seed=1)
            assert math.isnan(plain.metric("mala_accept"))
            assert 0.0 < moved.metric("mala_accept") <= 1.0
            assert moved.metric("energy_evals") == 16 * 4 * (1 + 3)
            assert _lme(list(lw)) == pytest.approx(lz2, rel=1e-9, abs=1e-9)
        with pytest.raises(ValueError):
            teacher.Smc(tr, mala_steps=-1)
        with pytest.raises(teacher.ArgumentError):
            teacher.Smc(tr, mala_steps=2, mala_step=-1.0)
    env.close()


def test_mixer_smc_source():
    assert teacher.SOURCES["smc"] == 3   # TCH_SOURCE_SMC, pinned
    env = teacher.Env.gmm40(2, {"env.diffusion.steps": 8})
    tr = teacher.Trainer(env, teacher.Config(RSMC))
    smc = teacher.Smc(tr, n_particles=16, mala_steps=1, mala_step=0.05)
    mix = teacher.Mixer("smc, student")
    assert mix.schedule == "smc,student"
    assert mix.source(0) == ("smc", 0) and mix.source(1)[0] == "student"
    with pytest.raises(teacher.StateError):   # nothing attached
        mix.draw_energy(env, step=0)
    mix.set_smc(smc)
    smc.close()       # the mixer holds the sampler, the sampler its trainer and env
    tr.close()
    x, lw, src, flags = mix.draw_energy(env, step=0, seed=4)
    assert src == "smc" and flags == 0
    assert len(x) == 16 and len(x[0]) == 2 and len(lw) == 16
    assert math.isfinite(_lme(list(lw)))
    x2, lw2, _, _ = mix.draw_energy(env, step=0, seed=4)
    assert _rows(x2) == _rows(x) and list(lw2) == list(lw)
    x3, _, _, _ = mix.draw_energy(env, step=2, seed=4)
    assert _rows(x3) != _rows(x)
    with pytest.raises(teacher.StateError):   # a student step
        mix.draw_energy(env, step=1)
    other = teacher.Env.gmm40(2, {"env.diffusion.steps": 8})
    with pytest.raises(teacher.ArgumentError):
        mix.draw_energy(other, step=0)
    other.close()
    mix.set_smc(None)
    with pytest.raises(teacher.StateError):
        mix.draw_energy(env, step=0)
    mix.close()
    env.close()


def test_mixer_smc_schedules():
    with teacher.Mixer("random:student=1,smc=3") as mix:
        assert mix.schedule == "random:student=1,teacher=0,buffer=0,smc=3"
        seen = {mix.source(i, seed=2)[0] for i in range(200)}
        assert seen == {"student", "smc"}
    with pytest.raises(teacher.ConfigError):
        teacher.Mixer("smc+ls")
    # a trainer's schedule cannot name the smc source
    with pytest.raises(teacher.ConfigError):
        teacher.Trainer(teacher.Env.hypergrid(2, 4), {"mixer.schedule": "student,smc"})
