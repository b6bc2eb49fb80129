"""Peak memory of timeloom's forward and forward+backward (LSTM) against the sequence length T.

    python benchmarks/memory.py                       # T = 250, 500, 1000; B=16, I=32, H=128
    python benchmarks/memory.py --steps 100,200 --cell gru

Measured with tracemalloc (NumPy reports its array buffers to it): the peak of the bytes
allocated during the call, above what was allocated before it (network, inputs, targets).
BPTT keeps every step's activations, so the peak should grow linearly in T: the "per
step" column should stay flat. "floats/(step*B*H)" says how many (B, H) float32 arrays the
call keeps alive per time step at its peak (an LSTM stores 7 units i, f, o, g, c, ct, h).
"""
from __future__ import annotations

import argparse
import sys
import tracemalloc

import common  # noqa: F401  (repo root on sys.path)
import numpy as np
from bench_rnn import spec_for
from common import print_table


def peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak - base


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--steps", default="250,500,1000", help="comma-separated sequence lengths")
    ap.add_argument("-B", type=int, default=16)
    ap.add_argument("-I", type=int, default=32)
    ap.add_argument("-H", type=int, default=128)
    args = ap.parse_args(argv)
    steps = [int(t) for t in args.steps.split(",")]

    import compiler
    import runtime

    B, I, H = args.B, args.I, args.H
    program = compiler.compile_spec(spec_for(args.cell, I, H))
    net = runtime.Network(program, dtype="float32", executor="fast")
    rng = np.random.default_rng(0)
    param_mb = sum(p.nbytes for p in net.params.values()) / 2 ** 20
    print(f"timeloom {args.cell}, B={B}, I={I}, H={H}, float32, fast executor; "
          f"parameters {param_mb:.2f} MB; tracemalloc peak above the baseline\n")
    rows, first = [], None
    for T in steps:
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        y = rng.standard_normal((T, B, H)).astype(np.float32)
        # a fresh network each time: the executor keeps its work buffers between calls, so the
        # first call's peak (buffers included) is the footprint a training loop lives with
        net = runtime.Network(program, dtype="float32", executor="fast")
        fwd = peak_bytes(lambda x=x: net.forward({"x": x}))
        net = runtime.Network(program, dtype="float32", executor="fast")
        fb = peak_bytes(lambda x=x, y=y: net.loss_and_grads({"x": x}, {"enc.h": y}))
        first = first or (T, fb)
        unit = T * B * H * 4
        rows.append([T, f"{fwd / 2**20:.1f}", f"{fb / 2**20:.1f}", f"{fb / T / 2**10:.1f}",
                     f"{fb / first[1]:.2f}", f"{T / first[0]:.2f}", f"{fwd / unit:.1f}", f"{fb / unit:.1f}"])
    print_table(["T", "fwd peak MB", "fwd+bwd peak MB", "fwd+bwd KB/step", "peak ratio", "T ratio",
                 "fwd floats/(step*B*H)", "fwd+bwd floats/(step*B*H)"], rows)
    x_mb = steps[-1] * B * I * 4 / 2 ** 20
    print(f"\n(for scale: the input x at T={steps[-1]} is {x_mb:.1f} MB, one (T, B, H) float32 array "
          f"{steps[-1] * B * H * 4 / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
