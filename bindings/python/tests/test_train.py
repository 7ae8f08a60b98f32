"""Training: the deceptive grid, a Python-defined env against its exact log Z, progress
callbacks, checkpoints."""
import math

import numpy as np
import pytest

import teacher
from bitenv import BitEnv, EXACT_LOGZ, small_config


def test_grid_trains(grid):
    """Deceptive grid ndim 2, horizon 8, 300 steps with Teacher + PER buffer: the mean
    loss of the last 50 steps falls below half that of the first 20 (measured ratio
    0.1-0.3 over seeds 0-3) and the visits find at least 3 of the 4 modes (measured: 4)."""
    assert grid.n_modes() == 4 and grid.n_terminal() > 0
    tr = teacher.Trainer(grid, {"seed": 0, "nn.hidden_dim": 64, "teacher.enabled": True,
                                "buffer.enabled": True, "buffer.priority": "teacher_reward"})
    losses = []
    tr.set_progress(lambda t, step: losses.append(t.metric("loss.student")), every=1)
    assert tr.step(300) is True
    m = tr.metrics()
    assert m["step"] == 300 and m["grad_steps"] == 300
    assert len(losses) == 300 and all(math.isfinite(x) for x in losses)
    early, late = np.mean(losses[:20]), np.mean(losses[-50:])
    assert late < 0.5 * early, (early, late)
    assert 3 <= m["modes"] <= 4
    assert 0 <= m["l1"] < 0.05
    assert math.isfinite(m["logz.student"]) and math.isfinite(m["loss.teacher"])
    ev = tr.evaluate(2000)
    assert set(ev) >= {"eval.l1", "eval.modes"} and ev["eval.modes"] >= 3
    assert tr.teacher is not None and tr.buffer is not None and len(tr.buffer) > 0
    assert tr.mixer.schedule
    tr.close()


def test_planned_steps(grid):
    tr = teacher.Trainer(grid, {"train.steps": 123})
    assert tr.planned_steps() == 123
    tr2 = teacher.Trainer(grid, {"train.steps": -1})
    assert tr2.planned_steps() > 0


def test_python_env_learns_log_z():
    """Bit strings (examples/custom_env.c in Python): after 1500 steps log Z must be within
    0.3 of the exact 6 log(1 + e^0.5) = 5.8445 (measured error < 0.01; the bound leaves a
    30x margin) and the sampled mean number of ones near its exact value."""
    b = BitEnv()
    env = b.make()
    tr = teacher.Trainer(env, small_config(seed=1))
    assert tr.step(1500)
    logz = tr.metric("logz.student")
    assert abs(logz - EXACT_LOGZ) < 0.3, (logz, EXACT_LOGZ)
    x = tr.student.sample(4000, seed=5).states
    assert x.shape == (4000, 6) and ((x == 0) | (x == 1)).all()
    mean_ones = (x == 1).sum(axis=1).mean()
    exact = 6 * math.exp(0.5) / (1 + math.exp(0.5))
    assert abs(mean_ones - exact) < 0.15, (mean_ones, exact)
    assert b.calls["log_reward"] > 0 and b.calls["step"] > 0


def test_progress_stops_training(grid):
    tr = teacher.Trainer(grid, {"nn.hidden_dim": 16})
    seen = []

    def progress(t, step):
        assert t is tr
        seen.append(step)
        return step >= 30

    tr.set_progress(progress, every=10)
    assert tr.step(100) is False
    assert seen == [10, 20, 30] and tr.metric("step") == 30
    tr.set_progress(None)
    assert tr.step(5) is True and tr.metric("step") == 35


def test_progress_exception_is_reraised(grid):
    tr = teacher.Trainer(grid, {"nn.hidden_dim": 16})

    def progress(t, step):
        if step == 20:
            raise KeyError("stop here")

    tr.set_progress(progress, every=5)
    with pytest.raises(KeyError, match="stop here"):
        tr.step(100)
    assert tr.metric("step") == 20          # the step that ran the callback is kept
    assert tr.step(10) is True and tr.metric("step") == 30


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]) or (math.isnan(a[k]) and math.isnan(b[k])), (k, a[k], b[k])


@pytest.mark.parametrize("python_env", [False, True])
def test_checkpoint_resume_is_bit_identical(tmp_path, python_env):
    def make_env():
        return BitEnv().make() if python_env else teacher.Env.hypergrid(2, 8)
    cfg = small_config(**{"teacher.enabled": True, "buffer.enabled": True,
                          "buffer.capacity": 50, "buffer.priority": "teacher_reward"})
    env = make_env()
    a = teacher.Trainer(env, cfg)
    a.step(60)
    path = tmp_path / "run.tchk"
    a.save(path)
    a.step(60)
    ref = a.metrics()
    ref_logz = a.student.log_z
    ref_samples = a.student.sample(50, seed=9).states

    b = teacher.Trainer.load(make_env(), path)
    assert b.metric("step") == 60
    assert b.config.to_dict() == a.config.to_dict()
    b.step(60)
    _same(ref, b.metrics())
    assert b.student.log_z == ref_logz
    assert (b.student.sample(50, seed=9).states == ref_samples).all()


def test_checkpoint_errors(tmp_path, grid):
    tr = teacher.Trainer(grid, {"nn.hidden_dim": 16})
    tr.step(3)
    path = tmp_path / "ck.tchk"
    tr.save(path)
    data = path.read_bytes()
    (tmp_path / "trunc.tchk").write_bytes(data[: len(data) // 2])
    with pytest.raises(teacher.FileFormatError):
        teacher.Trainer.load(grid, tmp_path / "trunc.tchk")
    with pytest.raises(teacher.ArgumentError):      # env of another shape
        teacher.Trainer.load(teacher.Env.hypergrid(3, 8), path)
    with pytest.raises(teacher.FileFormatError):
        teacher.Trainer.load(grid, tmp_path / "missing.tchk")


def test_policy_standalone(tmp_path, grid):
    p = teacher.Policy(grid, {"nn.hidden_dim": 32}, seed=3)
    assert p.n_params > 0 and isinstance(p.gemm_kernel, str) and p.env == grid
    t = p.sample_trajectories(8, seed=1, epsilon=0.1, temperature=2.0)
    T = grid.max_len + 1
    assert t.states.shape == (8, T, 2) and t.actions.shape == (8, T) and t.lengths.shape == (8,)
    for i in range(8):
        L = t.lengths[i]
        assert t.actions[i, L - 1] == grid.n_actions - 1 and (t.actions[i, L:] == -1).all()
    log_pf, log_pb = p.score(t)
    assert np.allclose(log_pf, t.log_pf) and np.allclose(log_pb, t.log_pb)
    x = p.sample(8, seed=2).states
    back = p.sample_backward(x, seed=4)
    for i in range(8):
        assert (back.states[i, back.lengths[i] - 1] == x[i]).all()
    path = tmp_path / "p.tchp"
    p.save(path)
    q = teacher.Policy.load(path, env=grid)
    assert q.log_z == p.log_z
    assert (q.sample(16, seed=7).states == p.sample(16, seed=7).states).all()
    c = p.clone()
    assert (c.sample(16, seed=7).states == p.sample(16, seed=7).states).all()
    with pytest.raises(ValueError):
        teacher.Policy.load(path).sample(2)       # no env


def test_buffer_and_mixer_standalone(grid):
    b = teacher.Buffer(2, capacity=4, priority="reward")
    assert (b.record_dim, b.capacity, len(b)) == (2, 4, 0)
    with pytest.raises(teacher.StateError):
        b.sample(1)
    x = [[0, 0], [1, 2], [6, 6], [1, 2]]
    b.add_discrete(x, grid.log_reward(x))
    assert len(b) == 3                       # the duplicate refreshed its entry
    assert list(b[-1].record) == [1, 2]
    rec, lr = b.sample(10, seed=1)
    assert rec.shape == (10, 2) and lr.shape == (10,)
    b.add([[5, 5]], [0.5], priority=[3.0])
    assert b.get(3).priority == 3.0
    p = teacher.Policy(grid, {"nn.hidden_dim": 16})
    t = b.sample_trajectories(p, grid, 5, seed=2)
    assert t.log_r.shape == (5,)

    m = teacher.Mixer("student,buffer")
    assert m.schedule == "student,buffer"
    assert m.source(0)[0] == "student" and m.source(1)[0] == "buffer"
    m.set_exploration("student", 0.2, 1.5)
    assert m.get_exploration("student") == (0.2, 1.5)
    m.set_policy("student", p)
    m.set_buffer(b)
    traj, src, flags = m.draw(grid, 4, step=1, seed=3)
    assert src == "buffer" and traj.lengths.shape == (4,)
    b.clear()
    assert len(b) == 0
    with pytest.raises(teacher.ConfigError):
        teacher.Mixer("student,nope")


def test_keyboard_interrupt_through_progress(grid):
    """Ctrl-C during a long step(): Python signal handlers run inside callbacks, so the
    KeyboardInterrupt raised in the progress callback stops training and surfaces."""
    tr = teacher.Trainer(grid, {"nn.hidden_dim": 16})

    def progress(t, step):
        if step == 7:
            raise KeyboardInterrupt

    tr.set_progress(progress, every=1)
    with pytest.raises(KeyboardInterrupt):
        tr.step(1000)
    assert tr.metric("step") == 7


@pytest.mark.parametrize("script,args", [("train_grid.py", ["--steps", "50"]),
                                         ("custom_env.py", ["--steps", "200",
                                                            "--samples", "2000"])])
def test_examples_run(script, args):
    import os
    import subprocess
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "..", "examples", "python", script)
    r = subprocess.run([sys.executable, path] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "log Z" in r.stdout or "evaluation" in r.stdout
