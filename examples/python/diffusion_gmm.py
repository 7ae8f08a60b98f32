#!/usr/bin/python3
"""Train a diffusion sampler with the adaptive Teacher on a continuous target (the Python
twin of examples/gmm_diffusion.c).

The default target is defined here with NumPy: an unnormalised mixture of four Gaussians in
2-D (means (+-2.5, +-2.5), std 0.5, scaled by e^3 so that log Z = 3), with its gradient and
an exact sampler, passed to the library through Env.energy. --target gmm25 trains on the
built-in 25-Gaussian mixture instead (Env.gmm25, log Z = 0; hard to cover in a short run).
After training, the script estimates log Z by importance sampling from the Student's
samples (Trainer.sample_continuous with log_weights=True) and reports the library's own
evaluation (ELBO, EUBO, ESS).

    TEACHER_LIBRARY=build/lib/libteacher.so.0 /usr/bin/python3 examples/python/diffusion_gmm.py \
        [--target host|gmm25] [--steps N] [--seed S] [--samples M]

Needs NumPy. With the default target and step count, exits 1 unless the estimate is within
0.5 of log Z.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bindings", "python"))
import numpy as np   # noqa: E402
import teacher       # noqa: E402

MEANS = np.array([[-2.5, -2.5], [-2.5, 2.5], [2.5, -2.5], [2.5, 2.5]])
STD = 0.5
LOG_SCALE = 3.0      # log Z of the unnormalised density
DEFAULT_STEPS = 600


def log_density(x, out_log_p, out_grad):
    """Batched: x (n, 2) read-only; writes log p (n,) and, when asked, d log p / dx (n, 2)."""
    d = x[:, None, :] - MEANS[None, :, :]                       # (n, 4, 2)
    lk = (-0.5 * (d ** 2).sum(axis=2) / STD ** 2
          - math.log(2 * math.pi * STD ** 2) - math.log(len(MEANS)))
    top = lk.max(axis=1, keepdims=True)
    w = np.exp(lk - top)
    out_log_p[:] = LOG_SCALE + top[:, 0] + np.log(w.sum(axis=1))
    if out_grad is not None:                                    # only if the library asks
        r = w / w.sum(axis=1, keepdims=True)                    # responsibilities
        out_grad[:] = -(r[:, :, None] * d).sum(axis=1) / STD ** 2


def sample_reference(seed, out):
    """Exact samples (for the EUBO and the sample distance), reproducible per seed."""
    rng = np.random.default_rng(seed)
    k = rng.integers(len(MEANS), size=len(out))
    out[:] = MEANS[k] + STD * rng.standard_normal(out.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", choices=["host", "gmm25"], default="host")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=5000)
    args = ap.parse_args()

    # The library owns the diffusion's discretisation (env.diffusion.*): 50 steps here.
    env_cfg = {"env.diffusion.steps": 50}
    if args.target == "host":
        env = teacher.Env.energy(2, log_density, log_Z=LOG_SCALE,
                                 sample_reference=sample_reference, has_grad=True,
                                 config=env_cfg)
        log_z = LOG_SCALE
    else:
        env = teacher.Env.gmm25(config=env_cfg)
        log_z = env.log_Z()
    # Student + adaptive Teacher, smaller than the reference's nets and batch (fast).
    cfg = teacher.Config({"seed": args.seed, "teacher.enabled": True,
                          "train.batch_size": 200, "nn.hidden_dim": 64})
    with teacher.Trainer(env, cfg) as tr:
        def progress(trainer, step_no):
            print("step %5d  loss %9.4f  learned log Z %8.4f  teacher loss %9.4f"
                  % (step_no, trainer.metric("loss.student"), trainer.metric("logz.student"),
                     trainer.metric("loss.teacher")))
        tr.set_progress(progress, every=max(1, args.steps // 5))
        tr.step(args.steps)

        x, log_w = tr.sample_continuous(args.samples, seed=args.seed + 1, log_weights=True)
        top = log_w.max()
        is_log_z = top + math.log(np.exp(log_w - top).mean())
        ev = tr.evaluate(min(args.samples, 2000))
        print("IS log Z estimate %.4f (%d samples; exact %.4f, error %+.4f)"
              % (is_log_z, len(x), log_z, is_log_z - log_z))
        print("ELBO %.4f  EUBO %.4f  ESS %.1f%%"
              % (ev["eval.elbo"], ev["eval.eubo"], 100 * ev["eval.ess_fraction"]))
    full = args.target == "host" and args.steps == DEFAULT_STEPS
    return 1 if not math.isfinite(is_log_z) or (full and abs(is_log_z - log_z) > 0.5) else 0


if __name__ == "__main__":
    sys.exit(main())
