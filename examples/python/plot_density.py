#!/usr/bin/python3
"""Plot what a sampler learned on the 2-D deceptive hypergrid next to the exact target.

Trains a Student (with the adaptive Teacher and a PER replay buffer, or plain on-policy TB)
from Python through the ctypes binding, draws many samples from the trained Student, and
writes a PNG with two heat maps side by side: the empirical density of the samples and the
exact target p*(x) = R(x) / Z, enumerated by the env (Env.enumerate_terminal).

    TEACHER_LIBRARY=build/lib/libteacher.so.0 /usr/bin/python3 examples/python/plot_density.py \
        [--horizon 16] [--steps 2000] [--method teacher|tb] [--samples 50000] [--seed 0] \
        [--out density.png]

Needs NumPy and matplotlib (Debian: python3-numpy, python3-matplotlib); uses the Agg
backend, so no display is needed. --check (used by the test suite) also verifies that the
PNG was written; with --check a missing matplotlib exits with status 77 (skip).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bindings", "python"))

SKIP = 77   # the exit status meson and automake read as "test skipped"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--method", choices=["teacher", "tb"], default="teacher")
    ap.add_argument("--samples", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="density.png")
    ap.add_argument("--check", action="store_true",
                    help="verify the PNG afterwards; exit 77 if matplotlib is missing")
    args = ap.parse_args()

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print("plot_density: matplotlib is not available (%s); on Debian: "
              "apt-get install python3-matplotlib" % e, file=sys.stderr)
        return SKIP if args.check else 1
    import numpy as np
    import teacher

    H = args.horizon
    env = teacher.Env.hypergrid(ndim=2, horizon=H)
    cfg = teacher.Config({"seed": args.seed, "nn.hidden_dim": 128})
    if args.method == "teacher":
        cfg.update({"teacher.enabled": True, "buffer.enabled": True,
                    "buffer.priority": "teacher_reward"})

    # The exact target, from the env's enumeration of its terminal set.
    states, log_r = env.enumerate_terminal()
    states, log_r = np.asarray(states), np.asarray(log_r)
    target = np.zeros((H, H))
    target[states[:, 0], states[:, 1]] = np.exp(log_r - log_r.max())
    target /= target.sum()

    with teacher.Trainer(env, cfg) as tr:
        tr.set_progress(lambda t, step: print("step %5d  loss %9.4f  modes %d/%d"
                                              % (step, t.metric("loss.student"),
                                                 t.metric("modes"), env.n_modes())),
                        every=max(1, args.steps // 5))
        tr.step(args.steps)
        x = np.asarray(tr.student.sample(args.samples, seed=args.seed + 1).states)
    learned = np.zeros((H, H))
    np.add.at(learned, (x[:, 0], x[:, 1]), 1.0)
    learned /= len(x)
    l1 = env.empirical_l1(x)
    modes = env.count_modes(x)
    print("%d Student samples: L1 to the target %.3e, modes %d of %d"
          % (len(x), l1, modes, env.n_modes()))

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    vmax = max(learned.max(), target.max())
    for ax, img, title in ((axes[0], learned, "learned: %d Student samples\n"
                            "(%s, %d steps)" % (len(x), args.method, args.steps)),
                           (axes[1], target, "exact target R(x) / Z\n"
                            "(deceptive grid, horizon %d)" % H)):
        im = ax.imshow(img.T, origin="lower", cmap="viridis", vmin=0.0, vmax=vmax,
                       interpolation="nearest")
        ax.set_title(title)
        ax.set_xlabel("s[0]")
        ax.set_ylabel("s[1]")
    fig.colorbar(im, ax=axes, shrink=0.9, label="probability")
    fig.suptitle("libteacher %s: empirical L1 %.2e, modes found %d of %d"
                 % (teacher.version(), l1, modes, env.n_modes()))
    fig.savefig(args.out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    print("wrote %s" % args.out)

    if args.check:
        with open(args.out, "rb") as f:
            head = f.read(8)
        size = os.path.getsize(args.out)
        if head != b"\x89PNG\r\n\x1a\n" or size < 1000:
            print("plot_density: %s is not a plausible PNG (%d bytes)" % (args.out, size),
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
