"""Bit strings of length NBITS built left to right, R(x) = exp(#ones / 2): the Python twin
of examples/custom_env.c. log Z = NBITS * log(1 + e^0.5)."""
import math

import numpy as np

import teacher

NBITS = 6
EXIT = 2
EXACT_LOGZ = NBITS * math.log1p(math.exp(0.5))


def n_set(states):
    return (states >= 0).sum(axis=1)


class BitEnv(object):
    """Callbacks as methods, so that tests can make one of them misbehave."""

    def __init__(self, nbits=NBITS):
        self.nbits = nbits
        self.fail = {}       # callback name -> exception (or int code, or "nan") to inject
        self.calls = {"step": 0, "backward_step": 0, "masks": 0, "log_reward": 0}

    def _hook(self, name):
        self.calls[name] += 1
        f = self.fail.get(name)
        if isinstance(f, BaseException):
            raise f
        return f

    def step(self, states, actions, out):
        f = self._hook("step")
        if isinstance(f, int):
            return f
        out[:] = states
        out[np.arange(len(states)), n_set(states)] = actions

    def backward_step(self, states, actions, out):
        f = self._hook("backward_step")
        if isinstance(f, int):
            return f
        out[:] = states
        out[np.arange(len(states)), n_set(states) - 1] = -1

    def masks(self, states, fwd, bwd):
        f = self._hook("masks")
        if isinstance(f, int):
            return f
        k = n_set(states)
        fwd[:, 0] = fwd[:, 1] = k < self.nbits
        fwd[:, EXIT] = k == self.nbits
        if bwd is not None:
            last = states[np.arange(len(states)), np.maximum(k - 1, 0)]
            bwd[:, 0] = (k > 0) & (last == 0)
            bwd[:, 1] = (k > 0) & (last == 1)

    def log_reward(self, states, out):
        f = self._hook("log_reward")
        if isinstance(f, int):
            return f
        if (n_set(states) != self.nbits).any():
            raise AssertionError("log_reward called on an incomplete string")
        out[:] = 0.5 * (states == 1).sum(axis=1)
        if f == "nan":
            out[0] = float("nan")

    def make(self):
        return teacher.Env.discrete(
            state_dim=self.nbits, n_actions=3, max_len=self.nbits, s0=[-1] * self.nbits,
            step=self.step, backward_step=self.backward_step, masks=self.masks,
            log_reward=self.log_reward, vocab=[2] * self.nbits)


def small_config(**extra):
    cfg = {"seed": 1, "nn.hidden_dim": 32, "train.batch_size": 16, "student.lr_logz": 0.1}
    cfg.update(extra)
    return cfg
