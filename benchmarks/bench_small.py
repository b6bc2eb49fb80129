"""Small recurrent nets, where the time loop is the whole cost: timeloom's compiled scan and its
interpreted scan against torch's built-in cells and a torch Python-loop peephole LSTM cell, in
one run, float32, one thread.

    python benchmarks/bench_small.py                 # every size, LSTM, 1 thread
    python benchmarks/bench_small.py --cell all      # LSTM, GRU and RNN against torch.nn.*
    python benchmarks/bench_small.py --quick         # smoke test
    python benchmarks/bench_small.py --gemm          # in-step products: loops vs NumPy's BLAS by size

Per size (T, B, I, H) and pass (forward; forward + mse + backward), microseconds per time step:
- `compiled`: timeloom, each recurrent component one numba scan (runtime/jit);
- `interp`: timeloom with the time loop interpreted in Python (jit=False);
- `torch`: torch.nn.LSTM / GRU / RNN (C++ cell), with the same weights (checked: same loss);
- `peephole`: timeloom's `lstm` block with `peepholes: true` (compiled), and `torch loop`: the
  same peephole cell written as a torch Python loop, what a user writes for a custom cell.
Ratios are timeloom / torch measured in the same run (interleaved repeats, median).
"""
from __future__ import annotations

import argparse
import os
import sys

import common
import numpy as np
from bench_rnn import copy_weights, spec_for, torch_model, torch_passes
from common import median, print_table, setup_threads, time_interleaved

SMALL = [(30, 64, 4, 3), (100, 32, 2, 32), (100, 1, 8, 16), (1000, 8, 4, 8)]
LARGE = [(100, 32, 64, 128), (100, 64, 128, 256), (100, 64, 256, 512)]  # bench_rnn.py's sizes
QUICK = [(10, 4, 3, 3), (20, 2, 4, 8)]


def peephole_spec(I, H):
    spec = spec_for("lstm", I, H)
    spec["blocks"]["enc"]["peepholes"] = True
    return spec


class TorchPeephole:
    """The peephole LSTM of Gers & Schmidhuber (2000) as a torch Python loop over time:
    i, f from x, h_{t-1}, c_{t-1}; o from x, h_{t-1}, c_t; c = f c + i tanh(g); h = o tanh(c)."""

    def __init__(self, I, H):
        import torch
        torch.manual_seed(0)
        self.W = torch.nn.Linear(I + H, 4 * H)
        self.p = torch.nn.Parameter(0.1 * torch.randn(3, H))
        self.H = H

    def parameters(self):
        return list(self.W.parameters()) + [self.p]

    def __call__(self, x):
        import torch
        T, B, _ = x.shape
        h = x.new_zeros(B, self.H)
        c = x.new_zeros(B, self.H)
        out = []
        for t in range(T):
            z = self.W(torch.cat([x[t], h], dim=1))
            zi, zf, zg, zo = z.chunk(4, dim=1)
            i = torch.sigmoid(zi + self.p[0] * c)
            f = torch.sigmoid(zf + self.p[1] * c)
            c = f * c + i * torch.tanh(zg)
            o = torch.sigmoid(zo + self.p[2] * c)
            h = o * torch.tanh(c)
            out.append(h)
        return torch.stack(out)


def bench_size(cell, T, B, I, H, repeats, peephole, stat=median):
    import torch
    import torch.nn.functional as F

    import compiler
    import runtime

    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.standard_normal((T, B, H)).astype(np.float32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    inputs, targets = {"x": x}, {"enc.h": y}
    program = compiler.compile_spec(spec_for(cell, I, H))
    nets = {"compiled": runtime.Network(program, dtype="float32", jit=True),
            "interp": runtime.Network(program, dtype="float32", jit=False)}
    model = torch_model(cell, I, H)
    for net in nets.values():
        copy_weights(cell, model, net)
    fns = {"fwd": {k: (lambda n=n: n.forward(inputs)) for k, n in nets.items()},
           "fwd+bwd": {k: (lambda n=n: n.loss_and_grads(inputs, targets)) for k, n in nets.items()}}

    th_fwd, th_fb = torch_passes(model, xt, yt)
    fns["fwd"]["torch"], fns["fwd+bwd"]["torch"] = th_fwd, th_fb
    ref = float(th_fb().detach())
    check = abs(nets["compiled"].loss_and_grads(inputs, targets)[0] - ref) / ref
    if peephole:
        pnet = runtime.Network(compiler.compile_spec(peephole_spec(I, H)), dtype="float32", jit=True)
        loop = TorchPeephole(I, H)

        def loop_fwd():
            with torch.no_grad():
                loop(xt)

        def loop_fb():
            for p in loop.parameters():
                p.grad = None
            F.mse_loss(loop(xt), yt).backward()

        fns["fwd"].update(peephole=lambda: pnet.forward(inputs), loop=loop_fwd)
        fns["fwd+bwd"].update(peephole=lambda: pnet.loss_and_grads(inputs, targets), loop=loop_fb)
    rows = []
    for mode, group in fns.items():
        times = time_interleaved(group, repeats=repeats, warmup=2)
        us = {k: 1e6 * stat(v) / T for k, v in times.items()}
        rows.append({"cell": cell, "size": (T, B, I, H), "mode": mode, "us": us, "check": check})
    return rows


def gemm_table(repeats):
    """The in-step product x (B, k) @ W (k, m): the compiled scans' loops (runtime/jit/kernels.py)
    against NumPy's BLAS (np.matmul into a buffer, what the interpreted scan does), per call.
    Above runtime/jit/scan.py's LOOP_BOUND (B*k*m) steps go to the interpreted scan."""
    from numba import njit

    from runtime.jit.kernels import matmul_loops

    @njit(cache=False)
    def loops(x, WT, W, out, n):
        for _ in range(n):
            matmul_loops(x, WT, W, out)

    def blas(x, WT, W, out, n):
        for _ in range(n):
            np.matmul(x, WT, out=out)

    rows = []
    # forward products (k = H, m = 4H) and their backward (k = 4H, m = H) at the LSTM sizes
    for B, k, m in [(1, 16, 64), (1, 64, 16), (8, 8, 32), (8, 32, 8), (64, 3, 12), (64, 12, 3), (32, 32, 128),
                    (32, 128, 32), (64, 64, 256), (64, 256, 64), (16, 128, 512), (16, 512, 128),
                    (32, 128, 512), (64, 256, 1024)]:
        x = np.random.rand(B, k).astype(np.float32)
        WT = np.random.rand(k, m).astype(np.float32)
        W = np.ascontiguousarray(WT.T)
        out = np.empty((B, m), np.float32)
        n = max(1, 2_000_000 // (B * k * m))
        res = {}
        for name, f in (("loops", loops), ("blas", blas)):
            f(x, WT, W, out, 1)
            res[name] = median(common.time_fn(lambda f=f: f(x, WT, W, out, n), repeats=repeats)) / n
        rows.append([B, k, m, B * k * m, f"{1e6 * res['loops']:.2f}", f"{1e6 * res['blas']:.2f}",
                     f"{res['loops'] / res['blas']:.2f}"])
    print_table(["B", "k", "m", "B*k*m", "loops us", "NumPy BLAS us", "loops/BLAS"], rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn", "all"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", default="median", choices=["median", "min"],
                    help="which statistic of the repeats the table shows (min is steadier on a busy machine)")
    ap.add_argument("--no-large", action="store_true", help="leave out bench_rnn.py's three larger sizes")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats (smoke test)")
    ap.add_argument("--gemm", action="store_true", help="only the loops-vs-BLAS table of the in-step products")
    args = ap.parse_args(argv)
    common.reexec_with_threads(args.threads)
    threads = setup_threads()
    print(common.machine_info())
    if args.gemm:
        gemm_table(args.repeats)
        return 0
    sizes = QUICK if args.quick else SMALL + ([] if args.no_large else LARGE)
    repeats = 2 if args.quick else args.repeats
    cells = ["lstm", "gru", "rnn"] if args.cell == "all" else [args.cell]
    print(f"float32, {threads} thread(s), {args.stat} of {repeats} interleaved repeats; microseconds per time step\n")
    rows = []
    for cell in cells:
        for T, B, I, H in sizes:
            print(f"  {cell} T={T} B={B} I={I} H={H} ...", file=sys.stderr, flush=True)
            rows += bench_size(cell, T, B, I, H, repeats, peephole=cell == "lstm",
                               stat=median if args.stat == "median" else min)
    table = []
    for r in rows:
        us = r["us"]
        line = [r["cell"], "x".join(map(str, r["size"])), r["mode"], f"{us['compiled']:.1f}", f"{us['interp']:.1f}",
                f"{us['torch']:.1f}", f"{us['compiled'] / us['torch']:.2f}x", f"{us['interp'] / us['torch']:.2f}x"]
        if "loop" in us:
            line += [f"{us['peephole']:.1f}", f"{us['loop']:.1f}", f"{us['loop'] / us['peephole']:.1f}x"]
        else:
            line += ["", "", ""]
        table.append(line + [f"{r['check']:.0e}"])
    print_table(["cell", "T x B x I x H", "pass", "compiled", "interp", "torch", "compiled/torch", "interp/torch",
                 "peephole", "torch loop", "loop/peephole", "check"], table)
    print("\ncheck: relative difference of the loss between timeloom (compiled) and torch; "
          f"load avg at the end: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
