"""Handle lifetime: any close/collection order is safe; no leaks over many cycles."""
import gc
import os

import pytest

import teacher
from teacher import env as env_mod, trainer as trainer_mod
from bitenv import BitEnv, small_config


def make(python_env=True):
    env = BitEnv().make() if python_env else teacher.Env.hypergrid(2, 8)
    tr = teacher.Trainer(env, small_config(**{"nn.hidden_dim": 16, "teacher.enabled": True,
                                              "buffer.enabled": True, "buffer.capacity": 20}))
    tr.step(2)
    return env, tr


@pytest.mark.parametrize("python_env", [True, False])
def test_trainer_before_env(python_env):
    env, tr = make(python_env)
    tr.close()
    assert env.log_reward([[1] * 6] if python_env else [[1, 1]]) is not None
    env.close()


def test_env_before_trainer():
    n = env_mod.registered_envs()
    env, tr = make()
    env.close()
    assert env.closed
    with pytest.raises(ValueError):
        env.log_reward([[1] * 6])
    assert tr.step(3)                      # the trainer holds its own C reference
    assert env_mod.registered_envs() == n + 1
    e2 = tr.env                             # a new wrapper over the live C env
    assert e2.state_dim == 6
    tr.close()
    assert env_mod.registered_envs() == n + 1   # e2 still holds the env
    e2.close()
    assert env_mod.registered_envs() == n      # user_free ran: callbacks released


def test_borrowed_handles_outlive_trainer():
    env, tr = make()
    student, teacher_p, buf, mixer = tr.student, tr.teacher, tr.buffer, tr.mixer
    logz = student.log_z
    tr.close()
    env.close()
    # Each borrowed wrapper holds its own C reference (tch_*_retain).
    assert student.log_z == logz
    assert student.sample(3, seed=1).states.shape == (3, 6)   # its env is retained too
    assert teacher_p.n_params > 0
    assert len(buf) > 0 and mixer.schedule
    for h in (mixer, buf, student, teacher_p):
        h.close()


def test_borrowed_policy_keeps_trainer_alive():
    env, tr = make()
    student = tr.student
    del tr, env
    gc.collect()
    assert student._owner is not None and not student._owner.closed
    assert student.sample(2).states.shape == (2, 6)


@pytest.mark.parametrize("order", ["env,trainer,policy", "policy,trainer,env",
                                   "trainer,policy,env", "policy,env,trainer",
                                   "env,policy,trainer", "trainer,env,policy"])
def test_any_collection_order(order):
    n = env_mod.registered_envs()
    objs = {}
    objs["env"], objs["trainer"] = make()
    objs["policy"] = objs["trainer"].student
    for name in order.split(","):
        obj = objs.pop(name)
        obj.close() if name != "policy" else None
        del obj
        gc.collect()
    gc.collect()
    assert env_mod.registered_envs() == n


def test_double_close_and_context_manager():
    env, tr = make()
    with tr:
        tr.step(1)
    assert tr.closed
    tr.close()
    tr.close()
    with pytest.raises(ValueError, match="closed"):
        tr.step(1)
    with env:
        pass
    env.close()
    c = teacher.Config()
    c.close()
    c.close()
    assert "closed" in repr(c)


def _rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_no_leak_over_300_cycles():
    """300 create/step/free cycles of a small trainer on a Python env (with a progress
    callback and a borrowed policy): after 50 warm-up cycles RSS may grow by at most
    20 MiB (measured: < 1 MiB), and no callback registry entry is left behind. One
    trainer (Student, Adam moments, hidden width 128) is ~0.4 MiB, so leaking trainers
    (or envs, which the trainer retains) would exceed the bound several times over."""
    def cycle(i):
        env = BitEnv().make()
        tr = teacher.Trainer(env, small_config(seed=i, **{"nn.hidden_dim": 128,
                                                          "train.batch_size": 4}))
        tr.set_progress(lambda t, s: False, every=1)
        tr.step(2)
        p = tr.student
        p.sample(2, seed=i)
        p.close()
        tr.close()
        env.close()

    n_envs, n_progress = env_mod.registered_envs(), len(trainer_mod._progress)
    for i in range(50):
        cycle(i)
    gc.collect()
    base = _rss_bytes()
    for i in range(50, 300):
        cycle(i)
    gc.collect()
    grown = _rss_bytes() - base
    print("RSS growth over 250 cycles: %.2f MiB" % (grown / 2 ** 20))
    assert grown < 20 * 2 ** 20, "RSS grew by %.1f MiB" % (grown / 2 ** 20)
    assert env_mod.registered_envs() == n_envs
    assert len(trainer_mod._progress) == n_progress


def test_standalone_policy_outlives_env_wrapper():
    n = env_mod.registered_envs()
    env = BitEnv().make()
    p = teacher.Policy(env, {"nn.hidden_dim": 8}, seed=1)
    c = p.clone()
    env.close()
    assert p.sample(3).states.shape == (3, 6)
    assert c.sample(3).states.shape == (3, 6)
    p.close()
    assert c.sample(1).states.shape == (1, 6)
    del c
    gc.collect()
    assert env_mod.registered_envs() == n
