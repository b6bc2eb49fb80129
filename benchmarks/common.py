"""Shared helpers for the benchmarks: thread setup, timing, a measured GEMM peak, tables.

Timing: a few warm-up calls, then the median of N repeats measured with
`time.perf_counter`. When two implementations are compared, `time_interleaved` runs their
repeats alternately (a, b, a, b, ...) so that load from other processes on a shared
machine hits both alike.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


# --- threads -------------------------------------------------------------------------------

def blas_threads() -> tuple[int, str]:
    """(thread count of NumPy's BLAS, how it was found)."""
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            return max(p["num_threads"] for p in blas), f"threadpoolctl ({blas[0].get('internal_api')})"
    except ImportError:
        pass
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():  # OpenBLAS obeys these at import
            return int(os.environ[var]), f"${var}"
    return os.cpu_count() or 1, "os.cpu_count() (threadpoolctl not installed)"


def reexec_with_threads(n: int | None) -> None:
    """Restart this script with OpenBLAS/MKL/OpenMP limited to n threads (they read the
    environment only when NumPy is first imported; threadpoolctl is not needed)."""
    if not n:
        return
    env = dict(os.environ)
    if env.get("OPENBLAS_NUM_THREADS") == str(n):
        return
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        env[var] = str(n)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def setup_threads(verbose: bool = True) -> int:
    """Give torch (if installed) as many threads as NumPy's BLAS uses; returns that count."""
    n, how = blas_threads()
    try:
        import torch
        torch.set_num_threads(n)
    except ImportError:
        pass
    if verbose:
        print(f"threads: {n} (NumPy BLAS, from {how}; torch.set_num_threads({n}))")
    return n


# --- timing --------------------------------------------------------------------------------

def _sync_none():
    pass


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def time_fn(fn, repeats: int = 5, warmup: int = 1, sync=_sync_none, clock=time.perf_counter) -> list[float]:
    """Seconds of each of `repeats` calls of fn() after `warmup` calls.

    clock: time.perf_counter (wall) or time.process_time (CPU time of this process: all its
    threads, kernel time included; steadier than wall time on a busy machine, but only
    comparable between single-threaded runs)."""
    for _ in range(warmup):
        fn()
        sync()
    times = []
    for _ in range(repeats):
        sync()
        t0 = clock()
        fn()
        sync()
        times.append(clock() - t0)
    return times


def time_interleaved(fns: dict, repeats: int = 5, warmup: int = 1, sync=_sync_none,
                     clock=time.perf_counter) -> dict:
    """{name: [seconds]} timing each fn in turn, repeat by repeat (a, b, a, b, ...)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            t0 = clock()
            fn()
            sync()
            times[k].append(clock() - t0)
    return times


def median(xs) -> float:
    return statistics.median(xs)


def spread(xs) -> float:
    """(max - min) / median: how noisy a series of timings was."""
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


# --- peak ----------------------------------------------------------------------------------

def gemm_peak(n: int = 1024, repeats: int = 7, dtype=np.float32) -> dict:
    """Measured float32 GEMM throughput of NumPy (n x n @ n x n): GFLOP/s, best and median."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    times = time_fn(lambda: np.matmul(a, b, out=c), repeats=repeats, warmup=2)
    flops = 2.0 * n ** 3
    return {"n": n, "best": flops / min(times) / 1e9, "median": flops / median(times) / 1e9}


def torch_gemm_peak(n: int = 1024, repeats: int = 7, device: str = "cpu") -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else _sync_none
    times = time_fn(lambda: torch.mm(a, b), repeats=repeats, warmup=2, sync=sync)
    flops = 2.0 * n ** 3
    return {"n": n, "best": flops / min(times) / 1e9, "median": flops / median(times) / 1e9}


# --- output --------------------------------------------------------------------------------

def fmt(x, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """Print a plain-text table (numbers right-aligned) and return it."""
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r):
        return "  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip()

    out = []
    if title:
        out.append(title)
    out.append(line(cells[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells[1:])
    text = "\n".join(out)
    print(text, flush=True)
    return text


def _numeric(s: str) -> bool:
    try:
        float(s.rstrip("x%"))
        return True
    except ValueError:
        return False


def code_version() -> str:
    """The repo's commit, '+dirty' when runtime/ or compiler/ has uncommitted changes."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "runtime", "compiler"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
        return (head or "?") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch
        parts.append(f"torch {torch.__version__}")
    except ImportError:
        pass
    parts.append(f"cpus {os.cpu_count()}")
    parts.append(f"timeloom {code_version()}")
    if load:
        parts.append("load avg " + "/".join(f"{x:.2f}" for x in load))
    return ", ".join(parts)


def lstm_problem(spec: dict, B: int, I: int, H: int, T: int, seed: int = 0, jit=None):
    """(net, inputs, targets): a float32 fast-executor network for `spec` and a random batch
    (jit=False: the interpreted scan)."""
    import numpy as np

    import compiler
    import runtime

    net = runtime.Network(compiler.compile_spec(spec), dtype="float32", executor="fast", jit=jit)
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal((T, B, I)).astype(np.float32)}
    targets = {"enc.h": rng.standard_normal((T, B, H)).astype(np.float32)}
    return net, inputs, targets
