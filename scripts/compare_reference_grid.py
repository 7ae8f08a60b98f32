#!/usr/bin/python3
"""Fidelity check against the reference code (not part of the test suite: it needs
PyTorch and a checkout of alstn12088/adaptive-teacher, see ../shared/reference/README.md).

    PYTHONPATH=../shared/reference/shims TEACHER_LIBRARY=build/lib/libteacher.so.0 \\
      /usr/bin/python3 scripts/compare_reference_grid.py REF [--ndim 4 --horizon 16 --seed 0]

Builds the reference's TB agent, copies its initial weights into a libteacher policy file
(format in docs/checkpoint.md), samples trajectories with the reference (forward, and
backward from random terminal states with its generate_backward), converts them to
libteacher's layout (an explicit EXIT after edge-terminated states) and compares the
trajectory-balance residuals delta = log R + log P_B - log Z - log P_F of both
implementations on identical trajectories and identical weights. The reference adds 1e-8
inside log R; the comparison accounts for it.
"""
import argparse
import math
import os
import struct
import sys
import tempfile
import zlib

ap = argparse.ArgumentParser()
ap.add_argument("ref")
ap.add_argument("--ndim", type=int, default=4)
ap.add_argument("--horizon", type=int, default=16)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--batches", type=int, default=4)
args = ap.parse_args()

sys.path.insert(0, os.path.abspath(args.ref))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bindings", "python"))
import torch  # noqa: E402
from grid.env import DeceptiveGridWorld  # noqa: E402
from grid.models import TBAgent  # noqa: E402
import teacher  # noqa: E402

d, H = args.ndim, args.horizon
torch.manual_seed(args.seed)
envs = [DeceptiveGridWorld(horizon=H, ndim=d, beta=1.0) for _ in range(16)]
agent = TBAgent(envs=envs, horizon=H, ndim=d, eps=0.0, logit_temp=1.0, device="cpu",
                n_hidden=256, n_layers=2, learn_pb=False)
with torch.no_grad():
    agent.log_Z.fill_(0.37)   # a non-zero log Z makes the comparison stricter
linears = [m for m in agent.model.modules() if isinstance(m, torch.nn.Linear)]

# libteacher policy file: forward head only (learn_pb off): last layer keeps d+1 outputs.
dims = [linears[0].in_features] + [l.out_features for l in linears]
dims[-1] = d + 1
body = b"".join(struct.pack("<I", v) for v in (d, d + 1, H * d, 1, 0, 0, 1, len(linears)))
body += b"".join(struct.pack("<Q", v) for v in dims)
body += struct.pack("<I", 1) + b"auto".ljust(32, b"\0") + struct.pack("<d", float(agent.log_Z))
params = []
for k, lin in enumerate(linears):
    W = lin.weight.detach().double()
    b = lin.bias.detach().double()
    if k == len(linears) - 1:
        W, b = W[: d + 1], b[: d + 1]
    params += W.t().reshape(-1).tolist() + b.tolist()   # libteacher: W is in x out
body += struct.pack("<Q", len(params)) + struct.pack("<%df" % len(params), *params)
blob = b"TCHP" + struct.pack("<II", 1, 0x01020304) + body
blob += struct.pack("<I", zlib.crc32(blob) & 0xFFFFFFFF)
path = os.path.join(tempfile.mkdtemp(), "ref_init.tchp")
open(path, "wb").write(blob)

env = teacher.Env.hypergrid(d, H, 1.0)
pol = teacher.Policy.load(path, env=env)
T = d * (H - 1) + 1
worst = 0.0
import numpy as np  # noqa: E402
rng = np.random.default_rng(args.seed)


def replay_batch(n):
    """Trajectories rebuilt by the reference's generate_backward from random terminal
    states, half of them edge-terminated: long trajectories, both endings."""
    out = []
    for i in range(n):
        x = rng.integers(0, H - 1, size=d)
        if i % 2:
            x[rng.integers(0, d)] = H - 1
        o, s_, a_ = envs[0].generate_backward(x.copy())
        r = float(envs[0].reward_func(x[None, :])[0])
        out.append((torch.from_numpy(o), torch.from_numpy(s_), torch.from_numpy(a_), r))
    return out


for b in range(args.batches):
    batch = agent.sample_many(16)[0] if b % 2 == 0 else replay_batch(16)
    with torch.no_grad():
        _, ref_delta, _ = agent.learn_from(batch)
    n = len(batch)
    states = [[0] * (T * d) for _ in range(n)]
    actions = [[-1] * T for _ in range(n)]
    lengths, log_r = [], []
    for i, (_obs, s, a, r) in enumerate(batch):
        s = s.tolist()
        a = [int(x[0]) for x in a.tolist()]
        if a[-1] == d:          # voluntary stop: drop the repeated x
            s = s[:-1]
        else:                   # edge-terminated: explicit EXIT
            a = a + [d]
        for k, st in enumerate(s):
            states[i][k * d:(k + 1) * d] = st
        actions[i][: len(a)] = a
        lengths.append(len(a))
        log_r.append(math.log(r))
    flat_s = [v for row in states for v in row]
    flat_a = [v for row in actions for v in row]
    log_pf, log_pb = pol.score(flat_s, flat_a, lengths)
    for i in range(n):
        ours = log_r[i] + float(log_pb[i]) - pol.log_z - float(log_pf[i])
        ref = ref_delta[i] - (math.log(math.exp(log_r[i]) + 1e-8) - log_r[i])
        worst = max(worst, abs(ours - ref))
    print("batch %d: max |delta_libteacher - delta_reference| = %.2e (mean length %.1f)"
          % (b, worst, sum(lengths) / n))
print("OK" if worst < 1e-3 else "MISMATCH", "worst %.3e" % worst)
sys.exit(0 if worst < 1e-3 else 1)
