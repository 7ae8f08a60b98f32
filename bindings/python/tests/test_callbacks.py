"""Python-defined envs: exceptions in callbacks, return codes, NaN rewards, zero-copy views,
host features."""
import sys

import numpy as np
import pytest

import teacher
from teacher import env as env_mod
from bitenv import BitEnv, small_config


@pytest.mark.parametrize("where", ["step", "masks", "log_reward"])
def test_exception_in_callback_surfaces_from_step(where):
    """The callback's own exception object is re-raised from trainer.step (not wrapped);
    the failing step is rolled back and the trainer keeps working."""
    b = BitEnv()
    env = b.make()
    tr = teacher.Trainer(env, small_config())
    assert tr.step(5)
    before = tr.metrics()
    err = ValueError("boom in %s" % where)
    b.fail[where] = err
    with pytest.raises(ValueError) as ei:
        tr.step(3)
    assert ei.value is err
    assert ei.value.__traceback__ is not None
    if sys.version_info >= (3, 11):
        assert any("TCH_E_CALLBACK" in n and where in n for n in ei.value.__notes__)
    assert tr.metric("step") == 5                  # rolled back
    assert tr.metric("logz.student") == before["logz.student"]
    del b.fail[where]
    assert tr.step(4) is True
    assert tr.metric("step") == 9


def test_exception_from_direct_env_call():
    b = BitEnv()
    env = b.make()
    b.fail["log_reward"] = ZeroDivisionError("direct")
    with pytest.raises(ZeroDivisionError, match="direct"):
        env.log_reward([[1, 0, 1, 0, 1, 0]])
    del b.fail["log_reward"]
    assert env.log_reward([[1, 0, 1, 0, 1, 0]])[0] == 1.5


def test_exception_during_policy_sampling():
    b = BitEnv()
    env = b.make()
    p = teacher.Policy(env, {"nn.hidden_dim": 8})
    b.fail["step"] = RuntimeError("no")
    with pytest.raises(RuntimeError, match="no"):
        p.sample(4)
    del b.fail["step"]
    assert p.sample(4).states.shape == (4, 6)


def test_callback_return_code_is_callback_error():
    b = BitEnv()
    env = b.make()
    tr = teacher.Trainer(env, small_config())
    b.fail["log_reward"] = 7
    with pytest.raises(teacher.CallbackError) as ei:
        tr.step(1)
    assert ei.value.code == 7 and ei.value.status == -5
    assert "log_reward callback returned 7" in ei.value.message
    del b.fail["log_reward"]
    assert tr.step(1)


def test_nan_reward_is_numeric_error():
    b = BitEnv()
    env = b.make()
    tr = teacher.Trainer(env, small_config())
    b.fail["log_reward"] = "nan"
    with pytest.raises(teacher.NumericError) as ei:
        tr.step(1)
    assert "nan" in ei.value.message and ei.value.status_name == "TCH_E_NUMERIC"
    assert tr.metric("step") == 0
    # A finite clip turns NaN into the clip value instead.
    tr2 = teacher.Trainer(env, small_config(**{"student.log_reward_clip_min": -10.0}))
    assert tr2.step(2)
    del b.fail["log_reward"]
    assert tr.step(1)


def test_bad_masks_are_argument_errors():
    b = BitEnv()
    env = b.make()

    def bad_masks(states, fwd, bwd):
        fwd[:] = 0   # no valid action

    env2 = teacher.Env.discrete(6, 3, 6, [-1] * 6, b.step, b.backward_step, bad_masks,
                                b.log_reward, vocab=[2] * 6)
    with pytest.raises(teacher.ArgumentError, match="no valid forward action"):
        teacher.Policy(env2, {"nn.hidden_dim": 8}).sample(2)
    del env


def test_views_are_zero_copy():
    seen = {}

    def log_reward(states, out):
        seen["states"] = (states.__array_interface__["data"][0], states.flags.writeable,
                          states.flags.owndata, states.shape, states.dtype)
        seen["out"] = (out.__array_interface__["data"][0], out.flags.writeable, out.shape,
                       out.dtype)
        out[:] = states.sum(axis=1)

    b = BitEnv()
    env = teacher.Env.discrete(6, 3, 6, [-1] * 6, b.step, b.backward_step, b.masks, log_reward,
                               vocab=[2] * 6)
    x = np.array([[1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=np.int32)
    r = env.log_reward(x)
    assert list(r) == [3.0, 6.0]
    addr, writeable, owndata, shape, dtype = seen["states"]
    assert addr == x.ctypes.data            # the caller's own buffer, passed through C
    assert not writeable and not owndata and shape == (2, 6) and dtype == np.int32
    addr, writeable, shape, dtype = seen["out"]
    assert addr == r.ctypes.data and writeable and shape == (2,) and dtype == np.float64


def test_host_features():
    b = BitEnv()
    shapes = []

    def features(states, out):
        shapes.append((out.shape, out.dtype))
        out[:, :6] = states == 1
        out[:, 6:] = states == 0

    env = teacher.Env.discrete(6, 3, 6, [-1] * 6, b.step, b.backward_step, b.masks,
                               b.log_reward, features=features, feat_dim=12)
    tr = teacher.Trainer(env, small_config())
    assert tr.step(5)
    assert shapes and all(s[0][1] == 12 and s[1] == np.float32 for s in shapes)

    def nan_features(states, out):
        out[:] = np.nan

    env2 = teacher.Env.discrete(6, 3, 6, [-1] * 6, b.step, b.backward_step, b.masks,
                                b.log_reward, features=nan_features, feat_dim=12)
    with pytest.raises(teacher.NumericError):
        teacher.Trainer(env2, small_config()).step(1)


def test_discrete_argument_checks():
    b = BitEnv()
    with pytest.raises(ValueError):
        teacher.Env.discrete(6, 3, 6, [-1] * 6, b.step, b.backward_step, b.masks, b.log_reward)
    with pytest.raises(ValueError):
        teacher.Env.discrete(6, 3, 6, [-1] * 5, b.step, b.backward_step, b.masks, b.log_reward,
                             vocab=[2] * 6)
    n = env_mod.registered_envs()
    with pytest.raises(teacher.ArgumentError, match="n_actions"):
        teacher.Env.discrete(6, 1, 6, [-1] * 6, b.step, b.backward_step, b.masks,
                             b.log_reward, vocab=[2] * 6)
    assert env_mod.registered_envs() == n       # no entry left behind on failure


def test_exceptions_stay_on_their_thread():
    """Two threads train their own Python-env trainers; one env fails. Its exception
    surfaces in its own thread only (the pending-exception slot is per thread)."""
    import threading
    results = {}

    def run(name, fail):
        b = BitEnv()
        tr = teacher.Trainer(b.make(), small_config())
        try:
            for i in range(20):
                if fail and i == 10:
                    b.fail["log_reward"] = ArithmeticError(name)
                tr.step(5)
            results[name] = "ok"
        except ArithmeticError as e:
            results[name] = "raised %s" % e

    threads = [threading.Thread(target=run, args=("good", False)),
               threading.Thread(target=run, args=("bad", True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"good": "ok", "bad": "raised bad"}
