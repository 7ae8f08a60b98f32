#!/usr/bin/python3
"""A Python-defined environment trained with libteacher (the Python twin of
examples/custom_env.c).

Objects: bit strings of length 6, built left to right; R(x) = exp(#ones / 2), so the exact
target is p(x) = R(x) / Z with log Z = 6 log(1 + e^0.5). After training the script
compares the learned log Z with the exact one and the sampler's distribution with p.

    TEACHER_LIBRARY=build/lib/libteacher.so.0 /usr/bin/python3 examples/python/custom_env.py \
        [--steps N] [--seed S] [--samples M]

The callbacks are vectorised with NumPy: each receives a whole batch as arrays that are
views over the library's buffers, and writes its outputs in place.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bindings", "python"))
import numpy as np   # noqa: E402
import teacher       # noqa: E402

NBITS = 6
EXIT = 2   # actions: 0 = append bit 0, 1 = append bit 1, 2 = EXIT (always the last action)


def n_set(states):
    """Number of set positions of each state (unset positions hold -1)."""
    return (states >= 0).sum(axis=1)


def step(states, actions, out):
    out[:] = states
    out[np.arange(len(states)), n_set(states)] = actions


def backward_step(states, actions, out):
    out[:] = states
    out[np.arange(len(states)), n_set(states) - 1] = -1


def masks(states, fwd, bwd):
    k = n_set(states)
    fwd[:, 0] = fwd[:, 1] = k < NBITS
    fwd[:, EXIT] = k == NBITS
    if bwd is not None:   # the only parent undoes the last bit
        last = states[np.arange(len(states)), np.maximum(k - 1, 0)]
        bwd[:, 0] = (k > 0) & (last == 0)
        bwd[:, 1] = (k > 0) & (last == 1)


def log_reward(states, out):
    if (n_set(states) != NBITS).any():
        raise ValueError("log_reward called on an incomplete string")
    out[:] = 0.5 * (states == 1).sum(axis=1)


def make_env():
    return teacher.Env.discrete(state_dim=NBITS, n_actions=3, max_len=NBITS,
                                s0=[-1] * NBITS, step=step, backward_step=backward_step,
                                masks=masks, log_reward=log_reward, vocab=[2] * NBITS)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=20000)
    args = ap.parse_args()

    env = make_env()
    cfg = teacher.Config({"seed": args.seed, "nn.hidden_dim": 64, "student.loss": "tb",
                          "student.lr": 1e-3, "student.lr_logz": 0.1})
    with teacher.Trainer(env, cfg) as tr:
        def progress(trainer, step_no):
            print("step %6d  loss %10.5f  log Z %8.4f"
                  % (step_no, trainer.metric("loss.student"), trainer.metric("logz.student")))
        tr.set_progress(progress, every=max(1, args.steps // 10))
        tr.step(args.steps)

        exact = NBITS * math.log1p(math.exp(0.5))
        logz = tr.metric("logz.student")
        x = tr.student.sample(args.samples, seed=args.seed + 1).states
        codes = ((x == 1) * (1 << np.arange(NBITS))).sum(axis=1)
        p_hat = np.bincount(codes, minlength=1 << NBITS) / len(codes)
        ones = np.array([bin(c).count("1") for c in range(1 << NBITS)])
        p = np.exp(0.5 * ones - exact)
        print("log Z: learned %.4f, exact %.4f (error %.4f)" % (logz, exact, logz - exact))
        print("total variation to the exact distribution: %.4f" % (0.5 * abs(p_hat - p).sum()))
    return 0 if args.steps < 2000 or abs(logz - exact) <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
