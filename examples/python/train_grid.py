#!/usr/bin/python3
"""Train a sampler on the built-in deceptive hypergrid from Python.

    TEACHER_LIBRARY=build/lib/libteacher.so.0 /usr/bin/python3 examples/python/train_grid.py \
        [--ndim 2] [--horizon 8] [--steps 1000] [--method teacher|tb] [--seed 0] \
        [--config file.yaml] [--checkpoint run.tchk]

--method teacher trains with the adaptive Teacher and a PER replay buffer; tb is plain
on-policy trajectory balance. Prints the metrics ten times and the exact-target evaluation
at the end. Works with or without NumPy.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "bindings", "python"))
import teacher   # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ndim", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--method", choices=["teacher", "tb"], default="teacher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", help="YAML file applied before the options above")
    ap.add_argument("--checkpoint", help="save a checkpoint here at the end")
    args = ap.parse_args()

    print("libteacher %s (%s)" % (teacher.version(), teacher.library_path))
    cfg = teacher.Config.from_yaml(args.config) if args.config else teacher.Config()
    cfg.update({"seed": args.seed, "nn.hidden_dim": 128,
                "env": {"name": "hypergrid",
                        "hypergrid": {"ndim": args.ndim, "horizon": args.horizon}}})
    if args.method == "teacher":
        cfg.update({"teacher.enabled": True, "buffer.enabled": True,
                    "buffer.priority": "teacher_reward"})

    env = teacher.Env.from_config(cfg)
    with teacher.Trainer(env, cfg) as tr:
        def progress(t, step):
            m = t.metrics()
            print("step %6d  loss %9.4f  log Z %7.3f  L1 %.4f  modes %d/%d"
                  % (step, m["loss.student"], m["logz.student"], m["l1"], m["modes"],
                     env.n_modes()))
        tr.set_progress(progress, every=max(1, args.steps // 10))
        try:
            tr.step(args.steps)
        except KeyboardInterrupt:   # delivered through the progress callback
            print("interrupted at step %d" % tr.metric("step"))
        ev = tr.evaluate(20000)
        print("evaluation on 20000 fresh samples: L1 %.5f, modes %d of %d"
              % (ev["eval.l1"], ev["eval.modes"], env.n_modes()))
        if args.checkpoint:
            tr.save(args.checkpoint)
            print("checkpoint written to %s" % args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
