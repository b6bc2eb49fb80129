"""Compiled scans: each recurrent component's time loop generated as source and JIT-compiled
with numba (runtime/jit/codegen.py, kernels.py, cache.py, scan.py).

`enabled(backend)`: whether the fast executor uses them — on the NumPy backend when numba
can be imported, unless the environment sets TIMELOOM_JIT=0. Otherwise the interpreted scan
(runtime/scan.py) runs, with the same results.
"""
from __future__ import annotations

import os


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:  # ImportError, or a numba that fails to load its LLVM
        return False
    return True


def requested() -> bool:
    return os.environ.get("TIMELOOM_JIT", "1").strip().lower() not in ("0", "false", "no", "off")


def available(backend) -> bool:
    """Whether compiled scans can run on this backend (whatever TIMELOOM_JIT says)."""
    return backend.name == "numpy" and numba_available()


def enabled(backend) -> bool:
    """Whether a network uses them by default."""
    return requested() and available(backend)


def why_not(backend) -> str | None:
    """Why the time loop stays interpreted on this backend, or None when it is compiled."""
    if backend.name != "numpy":
        return f"the {backend.name} backend runs the interpreted scan (compiled scans are CPU code)"
    if not numba_available():
        return "numba cannot be imported (pip install numba)"
    if not requested():
        return "TIMELOOM_JIT=0 is set"
    return None
