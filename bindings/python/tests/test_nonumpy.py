"""The standard-library path (no NumPy): lists and array.array in, lists out, memoryviews
in callbacks. test_basics.py also imports the package in a subprocess where NumPy cannot
be imported at all."""
import array

import pytest

import teacher
from teacher import _arrays

NB = 4


@pytest.fixture
def no_numpy(monkeypatch):
    monkeypatch.setattr(_arrays, "np", None)
    assert not teacher.have_numpy()


def _n_set(row):
    k = 0
    while k < NB and row[k] >= 0:
        k += 1
    return k


def step(states, actions, out):
    assert isinstance(states, memoryview) and states.readonly and states.shape[1] == NB
    for i in range(states.shape[0]):
        k = _n_set([states[i, j] for j in range(NB)])
        for j in range(NB):
            out[i, j] = states[i, j]
        out[i, k] = actions[i]


def backward_step(states, actions, out):
    for i in range(states.shape[0]):
        row = [states[i, j] for j in range(NB)]
        k = _n_set(row)
        for j in range(NB):
            out[i, j] = row[j]
        out[i, k - 1] = -1


def masks(states, fwd, bwd):
    assert not fwd.readonly
    for i in range(states.shape[0]):
        row = [states[i, j] for j in range(NB)]
        k = _n_set(row)
        fwd[i, 0] = fwd[i, 1] = k < NB
        fwd[i, 2] = k == NB
        if bwd is not None:
            bwd[i, 0] = k > 0 and row[k - 1] == 0
            bwd[i, 1] = k > 0 and row[k - 1] == 1


def log_reward(states, out):
    for i in range(states.shape[0]):
        out[i] = 0.5 * sum(1 for j in range(NB) if states[i, j] == 1)


def test_pure_python_env_and_lists(no_numpy):
    env = teacher.Env.discrete(NB, 3, NB, array.array("i", [-1] * NB), step, backward_step,
                               masks, log_reward, vocab=(2,) * NB)
    tr = teacher.Trainer(env, {"nn.hidden_dim": 16, "seed": 2})
    assert tr.step(20)
    s = tr.student.sample(5, seed=1)
    assert isinstance(s.states, list) and all(len(r) == NB for r in s.states)
    assert isinstance(s.log_pf, list) and len(s.log_pf) == 5
    assert all(v in (0, 1) for r in s.states for v in r)
    lr = env.log_reward(s.states)                  # nested lists in
    assert lr == [0.5 * sum(r) for r in s.states]
    flat = array.array("i", [v for r in s.states for v in r])
    assert env.log_reward(flat) == lr              # a flat buffer of int32
    t = tr.student.sample_trajectories(3, seed=4)
    assert len(t.states) == 3 and len(t.states[0]) == NB + 1 and len(t.actions[0]) == NB + 1
    pf, pb = tr.student.score(t)
    assert len(pf) == 3 and all(abs(a - b) < 1e-9 for a, b in zip(pf, t.log_pf))


def test_grid_without_numpy(no_numpy, grid):
    p = teacher.Policy(grid, {"nn.hidden_dim": 16}, seed=1)
    s = p.sample(6, seed=3)
    assert len(s.states) == 6 and grid.count_modes(s.states) >= 0
    states, log_r = grid.enumerate_terminal(cap=5)
    assert len(states) == 5 and len(log_r) == 5
    b = teacher.Buffer(2, 10)
    b.add_discrete(states, log_r)
    rec, lr = b.sample(3, seed=1)
    assert len(rec) == 3 and len(rec[0]) == 2
    assert isinstance(b[0].record, list)
