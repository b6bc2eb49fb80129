"""timeloom (fast executor) against torch.nn.LSTM / GRU / RNN, measured in the same run.

    python benchmarks/bench_rnn.py --cell lstm                # the default sizes, T=100
    python benchmarks/bench_rnn.py --cell all --quick         # smoke test, tiny sizes
    python benchmarks/bench_rnn.py --cell gru --sizes 32x64x128,64x128x256 --repeats 7
    python benchmarks/bench_rnn.py --cell lstm --backend cupy  # CuPy vs torch CUDA (cuDNN)

Both sides get the same weights (torch's, copied into timeloom's parameters) and the same
data; the loss of the two is compared as a check that they compute the same thing.
timeloom: `net.forward` and `net.loss_and_grads` (mse on the block's h, at: all).
torch: forward under `torch.no_grad()`, and forward + `F.mse_loss` + `backward()`.

GFLOP/s counts only the GEMMs: forward 2*T*B*(I+H)*G*H (G = 4 LSTM, 3 GRU, 1 RNN),
forward+backward 3x that (backward ~ 2x forward), against the measured GEMM peak.
"""
from __future__ import annotations

import argparse
import os
import sys

import common
import numpy as np
from common import (
    fmt,
    machine_info,
    median,
    print_table,
    setup_threads,
    spread,
    time_interleaved,
)

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DEFAULT_SIZES = [(32, 64, 128), (64, 128, 256), (64, 256, 512)]
QUICK_SIZES = [(4, 8, 16), (8, 16, 32)]
CUDA_SIZES = [(64, 512, 512), (64, 1024, 1024)]


# --- the two models ------------------------------------------------------------------------

def spec_for(cell: str, I: int, H: int) -> dict:
    return {
        "timeloom": 1, "name": f"bench_{cell}",
        "inputs": {"x": {"size": I}},
        "blocks": {"enc": {"type": cell, "size": H}},
        "connections": [{"from": "x", "to": "enc"}],
        "outputs": {"enc.h": {"loss": "mse", "at": "all"}},
    }


def torch_model(cell: str, I: int, H: int):
    import torch
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    torch.manual_seed(0)
    return cls(I, H)  # time-major (T, B, I), tanh for rnn


def copy_weights(cell: str, model, net):
    """torch's parameters -> timeloom's names (docs/ARCHITECTURE.md wiring)."""
    W_ih = model.weight_ih_l0.detach().cpu().numpy()
    W_hh = model.weight_hh_l0.detach().cpu().numpy()
    b_ih = model.bias_ih_l0.detach().cpu().numpy()
    b_hh = model.bias_hh_l0.detach().cpu().numpy()
    H = W_hh.shape[1]
    p = {}
    if cell == "rnn":
        p = {"x->enc.h": W_ih, "enc.h->enc.h@1": W_hh, "enc.h.bias": b_ih + b_hh}
    elif cell == "lstm":  # torch's row blocks: i, f, g, o
        for k, g in enumerate("ifgo"):
            rows = slice(k * H, (k + 1) * H)
            p[f"x->enc.{g}"] = W_ih[rows]
            p[f"enc.h->enc.{g}@1"] = W_hh[rows]
            p[f"enc.{g}.bias"] = b_ih[rows] + b_hh[rows]
    else:  # gru: r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        for k, g in enumerate("rzn"):
            rows = slice(k * H, (k + 1) * H)
            p[f"x->enc.{g}"] = W_ih[rows]
            p[f"enc.h->enc.{g}@1"] = W_hh[rows]
            p[f"enc.{g}.bias"] = b_ih[rows] + (b_hh[rows] if g != "n" else 0)
        p["enc.h->enc.n@1.bias"] = b_hh[2 * H:]
    missing = set(net.params) - set(p)
    assert not missing, f"no torch counterpart for {sorted(missing)}"
    for k, v in p.items():
        assert net.params[k].shape == v.shape, (k, net.params[k].shape, v.shape)
        net.params[k] = net.backend.asarray(v)


def torch_passes(model, xt, yt):
    """(forward under no_grad, forward + mse + backward returning the loss) of a torch RNN module."""
    import torch
    import torch.nn.functional as F

    def forward():
        with torch.no_grad():
            model(xt)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        out, _ = model(xt)
        loss = F.mse_loss(out, yt)
        loss.backward()
        return loss

    return forward, forward_backward


def gemm_flops(cell: str, T: int, B: int, I: int, H: int) -> float:
    return 2.0 * T * B * (I + H) * GATES[cell] * H


# --- one size ------------------------------------------------------------------------------

def bench_size(cell, T, B, I, H, repeats, warmup, backend="numpy", stat=median, clock=None):
    import torch

    import compiler
    import runtime

    cuda = backend == "cupy"
    net = runtime.Network(compiler.compile_spec(spec_for(cell, I, H)), backend=backend,
                          dtype="float32", executor="fast")
    model = torch_model(cell, I, H)
    copy_weights(cell, model, net)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    y = rng.standard_normal((T, B, H)).astype(np.float32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if cuda:
        import cupy
        model, xt, yt = model.cuda(), xt.cuda(), yt.cuda()
        x, y = cupy.asarray(x), cupy.asarray(y)

        def sync():
            cupy.cuda.get_current_stream().synchronize()
            torch.cuda.synchronize()
    else:
        def sync():
            pass

    inputs, targets = {"x": x}, {"enc.h": y}

    def tl_fwd():
        net.forward(inputs)

    def tl_fb():
        return net.loss_and_grads(inputs, targets)

    th_fwd, th_fb = torch_passes(model, xt, yt)

    # check: same loss and a gradient from both
    loss_tl, grads = tl_fb()
    loss_th = float(th_fb().detach())
    gname = "x->enc.h" if cell == "rnn" else ("x->enc.i" if cell == "lstm" else "x->enc.r")
    g_tl = net.backend.to_numpy(grads[gname])
    g_th = model.weight_ih_l0.grad.detach().cpu().numpy()[:H]
    check = max(abs(loss_tl - loss_th) / abs(loss_th),
                float(np.abs(g_tl - g_th).max() / (np.abs(g_th).max() + 1e-30)))

    flops = gemm_flops(cell, T, B, I, H)
    rows = []
    for mode, fns, f in (("fwd", {"tl": tl_fwd, "torch": th_fwd}, flops),
                         ("fwd+bwd", {"tl": tl_fb, "torch": th_fb}, 3 * flops)):
        times = time_interleaved(fns, repeats=repeats, warmup=warmup, sync=sync,
                                 clock=clock or common.CLOCKS["wall"])
        t_tl, t_th = stat(times["tl"]), stat(times["torch"])
        rows.append({"cell": cell, "B": B, "I": I, "H": H, "mode": mode,
                     "tl_ms": 1e3 * t_tl, "th_ms": 1e3 * t_th, "ratio": t_tl / t_th,
                     "ratio_min": min(times["tl"]) / min(times["torch"]),
                     "tl_gf": f / t_tl / 1e9, "th_gf": f / t_th / 1e9,
                     "noise": max(spread(times["tl"]), spread(times["torch"])), "check": check})
    return rows


# --- main ----------------------------------------------------------------------------------

def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    sizes = []
    for part in text.replace(";", ",").split(","):
        if part.strip():
            b, i, h = (int(v) for v in part.lower().split("x"))
            sizes.append((b, i, h))
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn", "all"])
    ap.add_argument("--sizes", type=parse_sizes, default=None,
                    help="comma-separated BxIxH, e.g. 32x64x128,64x128x256")
    ap.add_argument("-T", "--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, T=10, 2 repeats (smoke test)")
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    ap.add_argument("--threads", type=int, default=None,
                    help="limit NumPy's BLAS and torch to N threads (re-runs the script with "
                         "OPENBLAS_NUM_THREADS=N); default: NumPy's BLAS thread count")
    ap.add_argument("--stat", default="median", choices=["median", "min"],
                    help="which statistic of the repeats the table shows (min is steadier on a busy machine)")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall: time.perf_counter; cpu: time.process_time (steadier on a shared machine, "
                         "meaningful with --threads 1 only)")
    ap.add_argument("--tf32", action="store_true", help="cupy: let torch use TF32 (off by default: fair fp32)")
    args = ap.parse_args(argv)
    common.reexec_with_threads(args.threads)

    if args.quick:
        sizes = args.sizes or QUICK_SIZES
        T, repeats, warmup = (args.steps if args.steps != 100 else 10), min(args.repeats, 2), 1
    else:
        sizes = args.sizes or (CUDA_SIZES if args.backend == "cupy" else DEFAULT_SIZES)
        T, repeats, warmup = args.steps, args.repeats, args.warmup
    cells = ["lstm", "gru", "rnn"] if args.cell == "all" else [args.cell]
    if args.clock == "cpu" and args.backend == "cupy":
        ap.error("--clock cpu measures host CPU time; use the wall clock with --backend cupy")

    threads = setup_threads()
    print(machine_info())
    if args.backend == "cupy":
        peak = _cuda_setup(args.tf32)
        if peak is None:
            return 1
        device_words = "CuPy vs torch CUDA"
    else:
        peak = common.gemm_peak()
        tp = common.torch_gemm_peak()
        print(f"GEMM peak (numpy float32 {peak['n']}^3, {threads} threads): best {peak['best']:.1f} GFLOP/s, "
              f"median {peak['median']:.1f}" + (f"; torch.mm: best {tp['best']:.1f} GFLOP/s" if tp else ""))
        device_words = "numpy CPU vs torch CPU"
    if args.clock == "cpu" and threads > 1:
        print(f"warning: --clock cpu sums the CPU time of all {threads} threads; use --threads 1")
    print(f"T={T}, repeats={repeats} ({args.stat}, interleaved, {args.clock} clock), warm-up={warmup}; {device_words}; "
          f"%peak against the best GEMM peak seen (before/after)\n", flush=True)

    rows = []
    for cell in cells:
        for (B, I, H) in sizes:
            print(f"  {cell} B={B} I={I} H={H} ...", file=sys.stderr, flush=True)
            rows += bench_size(cell, T, B, I, H, repeats, warmup, args.backend,
                               median if args.stat == "median" else min, common.CLOCKS[args.clock])
    if args.backend == "numpy":  # a busy machine can depress one measurement: keep the best seen
        after = common.gemm_peak()
        if after["best"] > peak["best"]:
            print(f"GEMM peak measured again after the runs: best {after['best']:.1f} GFLOP/s (used for %peak)")
            peak = after
    headers = ["cell", "B", "I", "H", "pass", "timeloom ms", "torch ms", "tl/torch", "(of mins)",
               "tl GFLOP/s", "torch GFLOP/s", "tl %peak", "torch %peak", "noise", "check"]
    table = [[r["cell"], r["B"], r["I"], r["H"], r["mode"], fmt(r["tl_ms"]), fmt(r["th_ms"]),
              f"{r['ratio']:.2f}x", f"{r['ratio_min']:.2f}x", fmt(r["tl_gf"]), fmt(r["th_gf"]),
              f"{100 * r['tl_gf'] / peak['best']:.0f}%", f"{100 * r['th_gf'] / peak['best']:.0f}%",
              f"{100 * r['noise']:.0f}%", f"{r['check']:.0e}"] for r in rows]
    print_table(headers, table)
    print(f"\ntimes, ratio and GFLOP/s: {args.stat} of the repeats; (of mins): ratio of the best times; "
          f"load avg at the end: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("noise: (max-min)/median of the repeats (worse of the two); check: max relative "
          "difference of loss and d/dW_ih (first gate) between timeloom and torch")
    return 0


def _cuda_setup(tf32: bool):
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (ImportError, CUDARuntimeError, ...)
        print(f"--backend cupy needs CuPy and a CUDA GPU: {e}")
        return None
    import torch
    if not torch.cuda.is_available():
        print("--backend cupy compares with torch CUDA, but torch has no CUDA here")
        return None
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    n = 4096
    a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    sync = cupy.cuda.get_current_stream().synchronize
    times = common.time_fn(lambda: a @ a, repeats=7, warmup=2, sync=sync)
    peak = {"n": n, "best": 2.0 * n ** 3 / min(times) / 1e9, "median": 2.0 * n ** 3 / median(times) / 1e9}
    tp = common.torch_gemm_peak(n, device="cuda")
    print(f"GPU {torch.cuda.get_device_name()}; GEMM peak (cupy float32 {n}^3): best {peak['best']:.0f} GFLOP/s"
          + (f"; torch.mm: best {tp['best']:.0f} GFLOP/s" if tp else "") + f"; TF32 {'on' if tf32 else 'off'}")
    return peak


if __name__ == "__main__":
    sys.exit(main())
