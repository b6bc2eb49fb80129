"""Line-by-line cost of the fast executor's LSTM forward + backward (needs `line_profiler`).

    pip install line_profiler        # or: pip install --target /tmp/lp line_profiler; PYTHONPATH=/tmp/lp
    python benchmarks/lineprof_lstm.py --threads 1 [--min-ms 2]

Prints, for the executor's scan and hoist functions, the lines that take more than
--min-ms per call in total. Unlike cProfile this attributes operator arithmetic (a * b,
a += b, x @ W) to its line. line_profiler adds overhead to every line, so read the
proportions, not the absolute times.
"""
from __future__ import annotations

import argparse
import sys

import common
from bench_rnn import parse_sizes, spec_for


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--size", type=parse_sizes, default=[(64, 128, 256)], help="BxIxH")
    ap.add_argument("-T", "--steps", type=int, default=100)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--min-ms", type=float, default=2.0, help="show lines above this many ms per call")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    common.reexec_with_threads(args.threads)
    try:
        from line_profiler import LineProfiler
    except ImportError:
        print("line_profiler is not installed (pip install line_profiler)")
        return 1
    common.setup_threads()
    print(common.machine_info())

    from runtime import executor, hoist, primitives, scan, tape

    (B, I, H), = args.size
    T = args.steps
    net, inputs, targets = common.lstm_problem(spec_for(args.cell, I, H), B, I, H, T, jit=False)
    net.loss_and_grads(inputs, targets)

    lp = LineProfiler()
    targets_fns = [getattr(executor.FastExecutor, n) for n in dir(executor.FastExecutor)
                   if callable(getattr(executor.FastExecutor, n)) and not n.startswith("__")]
    targets_fns += [f for m in (hoist, scan) for n, f in vars(m).items() if callable(f) and f.__module__ == m.__name__]
    targets_fns += [tape.Reads.read, tape.Reads.read_backward, tape.Reads.shift, primitives._sigmoid]
    for f in targets_fns:
        lp.add_function(f)
    lp.enable_by_count()
    for _ in range(args.iters):
        net.loss_and_grads(inputs, targets)
    lp.disable_by_count()

    stats = lp.get_stats()
    rows = []
    for (file, first, name), lines in stats.timings.items():
        src = _source(file)
        for lineno, nhits, total in lines:
            ms = total * stats.unit * 1e3 / args.iters
            if ms >= args.min_ms:
                code = src[lineno - 1].strip() if lineno - 1 < len(src) else ""
                rows.append([f"{name}:{lineno}", nhits // args.iters, f"{ms:.1f}",
                             f"{1e3 * ms / max(nhits // args.iters, 1):.1f}", code[:90]])
    rows.sort(key=lambda r: -float(r[2]))
    print(f"{args.cell} loss_and_grads, T={T}, B={B}, I={I}, H={H}; lines over {args.min_ms} ms per call\n")
    common.print_table(["function:line", "hits/call", "ms/call", "us/hit", "code"], rows)
    return 0


def _source(file):
    try:
        with open(file, encoding="utf-8") as fh:
            return fh.read().splitlines()
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
