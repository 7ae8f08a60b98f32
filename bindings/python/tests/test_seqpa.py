"""Sequence tasks from Python: the built-in discovery tasks (qm9str, sehstr, tfbind8, rna),
Env.seqpa with a Python score (reward transform, exact target, modes, errors, lifetime),
raw scores and the target's log Z."""
import math

import numpy as np
import pytest

import teacher
from teacher import env as env_mod


def _logsumexp(v):
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def test_builtin_tasks():
    t = teacher.Env.tfbind8()
    assert t.dims == (8, 9, 8)
    assert t.n_terminal() == 65536 and t.n_modes() == 328
    states, log_r = t.enumerate_terminal()
    y = t.raw_scores(states)
    assert y.shape == (65536,) and 0.0 <= y.min() and y.max() == 1.0
    # R = max(y+^20 * 10 / max y+^20, 1e-20), so the target's log Z by hand:
    want = np.maximum(20 * np.log(np.maximum(y, 1e-3)) + math.log(10), math.log(1e-20))
    assert np.allclose(log_r, want, atol=1e-9)
    assert t.target_log_Z() == pytest.approx(_logsumexp(want), abs=1e-9)
    q = teacher.Env.qm9str()
    assert q.dims == (5, 23, 5) and q.n_modes() == 805
    # data/README.md: QM9 test vectors.
    assert q.raw_scores([[0, 0, 0, 0, 0], [1, 2, 3, 4, 5]]) == pytest.approx([8.5926, 4.05092],
                                                                              abs=1e-4)
    s = teacher.Env.sehstr()
    assert s.raw_scores([[0, 1, 2, 3, 4, 5]]) == pytest.approx([4.5417976755], abs=1e-9)
    # 18^6 strings, not enumerated at creation: the constant from tools/seqpa_log_z sehstr
    assert s.target_log_Z() == pytest.approx(17.552393997, abs=1e-9)
    with pytest.raises(teacher.StateError):
        s.n_terminal()
    assert teacher.Env.from_config({"env.name": "tfbind8"}).n_terminal() == 65536
    try:
        r = teacher.Env.rna(2)
    except teacher.StateError as e:            # built without ViennaRNA
        assert "ViennaRNA" in str(e)
    else:
        assert r.dims == (14, 9, 14)
        assert math.isfinite(r.target_log_Z())
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.rna(4)
    grid = teacher.Env.hypergrid(2, 4)
    with pytest.raises(teacher.StateError):
        grid.raw_scores([[1, 1]])
    _, lr = grid.enumerate_terminal()
    assert grid.target_log_Z() == pytest.approx(_logsumexp(lr), abs=1e-12)
    assert teacher.Env.gmm25().target_log_Z() == 0.0


def index_score(length, n_chars):
    def score(strings, out):
        k = np.zeros(len(strings))
        for j in range(length):
            k = k * n_chars + strings[:, j]
        out[:] = 1.0 + k
    return score


def test_seqpa_python_score():
    before = env_mod.registered_envs()
    e = teacher.Env.seqpa(3, 2, index_score(3, 2), beta=2.0, r_max=10.0, enumerate=True,
                          max_floor=1e-3, modes=[7, [0, 1, 0], 7], name="bits")
    assert e.is_python and e.dims == (3, 5, 3)
    assert e.n_terminal() == 8 and e.n_modes() == 2
    states, log_r = e.enumerate_terminal()
    want = [math.log(max((k + 1.0) ** 2 * 10 / 64, 1e-3)) for k in range(8)]
    assert np.allclose(log_r, want, atol=1e-12)
    assert e.target_log_Z() == pytest.approx(_logsumexp(want), abs=1e-12)
    assert list(e.raw_scores(states)) == [k + 1.0 for k in range(8)]
    assert e.count_modes(states) == 2
    # A short training run on it.
    with teacher.Trainer(e, {"env.name": "custom", "train.batch_size": 8,
                             "nn.hidden_dim": 16}) as tr:
        tr.step(3)
        assert math.isfinite(tr.metric("loss.student"))
    e.close()
    assert env_mod.registered_envs() == before


def test_seqpa_errors():
    before = env_mod.registered_envs()
    calls = {"n": 0}

    def bad(strings, out):
        calls["n"] += 1
        raise KeyError("folding server down")
    # The exception raised while enumerating comes back from the constructor; no leak.
    with pytest.raises(KeyError):
        teacher.Env.seqpa(4, 3, bad, enumerate=True)
    assert env_mod.registered_envs() == before
    assert calls["n"] == 1
    e = teacher.Env.seqpa(4, 3, bad)           # not enumerated: nothing scored yet
    assert calls["n"] == 1
    with pytest.raises(KeyError):
        e.raw_scores([[0, 1, 2, 0]])
    with pytest.raises(KeyError):
        e.log_reward([[0, 1, 2, 0]])
    with pytest.raises(teacher.ArgumentError):
        e.raw_scores([[0, 1, 3, 0]])           # character 3 is outside the alphabet
    with pytest.raises(teacher.StateError):
        e.target_log_Z()
    e.close()

    def code(strings, out):
        return 5
    e = teacher.Env.seqpa(2, 2, code, log_Z=1.25)
    assert e.target_log_Z() == 1.25
    with pytest.raises(teacher.CallbackError):
        e.raw_scores([[0, 1]])
    e.close()

    def nan(strings, out):
        out[:] = float("nan")
    e = teacher.Env.seqpa(2, 2, nan)
    with pytest.raises(teacher.NumericError):
        e.raw_scores([[0, 1]])
    with pytest.raises(teacher.NumericError):
        e.log_reward([[0, 1]])
    e.close()
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.seqpa(3, 2, index_score(3, 2), r_max=10.0)     # r_max needs enumerate
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.seqpa(3, 2, index_score(3, 2), y_min=0.0)
    with pytest.raises(teacher.ArgumentError):
        teacher.Env.seqpa(3, 2, index_score(3, 2), modes=[8])
    with pytest.raises(ValueError):
        teacher.Env.seqpa(3, 2, index_score(3, 2), modes=[[0, 1]])
    with pytest.raises(TypeError):
        teacher.Env.seqpa(3, 2, None)
    assert env_mod.registered_envs() == before
