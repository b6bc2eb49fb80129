"""cProfile of timeloom's LSTM forward + backward (`net.loss_and_grads`), top functions by tottime.

    python benchmarks/profile_lstm.py                      # B=64, I=128, H=256, T=100
    python benchmarks/profile_lstm.py --size 32x64x128 --top 40 --threads 1

cProfile sees Python functions and C functions called by name (np.matmul, ndarray.copy,
ndarray.sum, np.concatenate, ...); arithmetic written with operators (a * b, a += b, x @ W)
is not a call, so its time shows up as the *tottime* of the Python function whose line
runs it (e.g. runtime.scan.forward / backward). "per step" divides by iterations * T.

The last line reports user/sys CPU time and minor page faults per call: sys time is the
kernel mapping and zeroing fresh pages for the (T, B, n) buffers allocated on every call.
Compare with glibc told to keep freed memory (no code change):
    MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_MMAP_THRESHOLD_=33554432 python benchmarks/profile_lstm.py
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import common
import numpy as np
from bench_rnn import gemm_flops, parse_sizes, spec_for


def _name(func) -> str:
    file, line, fn = func
    if file == "~":
        return fn  # built-in
    parts = file.replace("\\", "/").split("/")
    short = "/".join(parts[-2:])
    return f"{short}:{line}({fn})"


def os_costs(call, iters):
    """(user ms, sys ms, minor page faults) per call: sys time and faults come from first
    touches of freshly mapped memory (large NumPy arrays are mmap'ed anew on each call)."""
    import resource
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(iters):
        call()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return (1e3 * (r1.ru_utime - r0.ru_utime) / iters, 1e3 * (r1.ru_stime - r0.ru_stime) / iters,
            (r1.ru_minflt - r0.ru_minflt) // iters)


def gemm_floor(cell, T, B, I, H, forward_only=False, repeats=3):
    """Seconds of the executor's own GEMMs alone (same shapes, NumPy float32, no other work):
    the floor the fast executor could reach at this size without changing its algorithm."""
    from bench_rnn import GATES
    G = GATES[cell] * H
    rng = np.random.default_rng(0)
    f32 = np.float32
    X = rng.standard_normal((T * B, I), dtype=f32)
    Wx = rng.standard_normal((I, G), dtype=f32)
    Whh = rng.standard_normal((H, G), dtype=f32)
    Hs = rng.standard_normal((T, B, H), dtype=f32)
    Z = np.empty((T * B, G), dtype=f32)
    dZ = rng.standard_normal((T, B, G), dtype=f32)
    WhhT = np.ascontiguousarray(Whh.T)
    dh = np.empty((B, H), dtype=f32)

    def run():
        np.matmul(X, Wx, out=Z)
        Zs = Z.reshape(T, B, G)
        for t in range(T):
            np.matmul(Hs[t], Whh, out=Zs[t])
        if forward_only:
            return
        for t in range(T):
            np.matmul(dZ[t], WhhT, out=dh)
        flat = dZ.reshape(T * B, G)
        flat.T @ X
        flat.T @ Hs.reshape(T * B, H)

    return min(common.time_fn(run, repeats=repeats, warmup=1))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--size", type=parse_sizes, default=[(64, 128, 256)], help="BxIxH")
    ap.add_argument("-T", "--steps", type=int, default=100)
    ap.add_argument("--iters", type=int, default=3, help="profiled calls (after one warm-up)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None, help="limit NumPy's BLAS to N threads")
    ap.add_argument("--forward", action="store_true", help="profile net.forward only")
    args = ap.parse_args(argv)
    common.reexec_with_threads(args.threads)
    threads = common.setup_threads()
    print(common.machine_info())


    (B, I, H), = args.size
    T = args.steps
    net, inputs, targets = common.lstm_problem(spec_for(args.cell, I, H), B, I, H, T)
    call = (lambda: net.forward(inputs)) if args.forward else (lambda: net.loss_and_grads(inputs, targets))
    call()  # warm-up

    t0 = time.perf_counter()
    for _ in range(args.iters):
        call()
    plain = (time.perf_counter() - t0) / args.iters

    prof = cProfile.Profile()
    prof.enable()
    for _ in range(args.iters):
        call()
    prof.disable()

    st = pstats.Stats(prof)
    total = st.total_tt / args.iters
    steps = args.iters * T
    flops = gemm_flops(args.cell, T, B, I, H) * (1 if args.forward else 3)
    peak = common.gemm_peak()
    what = "forward" if args.forward else "forward+backward (loss_and_grads)"
    print(f"{args.cell} {what}, T={T}, B={B}, I={I}, H={H}, float32, {threads} BLAS threads")
    floor = gemm_floor(args.cell, T, B, I, H, args.forward)
    print(f"unprofiled: {1e3 * plain:.1f} ms/call ({flops / plain / 1e9:.1f} GFLOP/s of GEMM, "
          f"peak {peak['best']:.1f}); profiled: {1e3 * total:.1f} ms/call; {args.iters} calls profiled")
    print(f"GEMM floor (the same GEMMs alone, best of 3): {1e3 * floor:.1f} ms -> everything else: "
          f"{1e3 * (plain - floor):.1f} ms/call = {1e6 * (plain - floor) / T:.0f} us/step "
          f"({100 * (plain - floor) / plain:.0f}% of the call)\n")

    rows = []
    entries = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)
    for func, (cc, nc, tt, ct, _callers) in entries[:args.top]:
        rows.append([_name(func), nc // args.iters, f"{nc / steps:.1f}", f"{1e3 * tt / args.iters:.1f}",
                     f"{100 * tt / st.total_tt:.1f}%", f"{1e6 * tt / steps:.1f}", f"{1e3 * ct / args.iters:.1f}"])
    common.print_table(["function", "calls/call", "calls/step", "tottime ms", "% total", "us/step",
                        "cumtime ms"], rows, title=f"top {args.top} by tottime (per loss_and_grads call)")

    by_file = {}
    for func, (cc, nc, tt, ct, _callers) in st.stats.items():
        key = "numpy/builtins (called by name)" if func[0] == "~" else "/".join(func[0].split("/")[-2:])
        by_file[key] = by_file.get(key, 0.0) + tt
    rows = [[k, f"{1e3 * v / args.iters:.1f}", f"{100 * v / st.total_tt:.1f}%"]
            for k, v in sorted(by_file.items(), key=lambda kv: -kv[1])[:8]]
    print()
    common.print_table(["file", "tottime ms/call", "% total"], rows, title="tottime by file")

    user, sys_, faults = os_costs(call, args.iters)
    print(f"\nkernel side (getrusage, unprofiled, per call): user {user:.1f} ms, sys {sys_:.1f} ms, "
          f"{faults} minor page faults")
    return 0


if __name__ == "__main__":
    sys.exit(main())
