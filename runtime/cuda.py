"""Fused CuPy kernels for the elementwise work of a time step (one kernel instead of 3-4).

Used by runtime.primitives when the backend is CuPy; NumPy never imports this module.
"""
from __future__ import annotations

from functools import lru_cache

_SOURCES = {
    # name: (inputs, outputs, operation)
    "sigmoid": ("T x", "T y", "y = 1 / (1 + exp(-x))"),
    "scaled_sigmoid": ("T x, T lo, T hi", "T y", "y = lo + (hi - lo) / (1 + exp(-x))"),
    "tanh_back": ("T a, T da", "T d", "d = da * (1 - a * a)"),
    "sigmoid_back": ("T a, T da", "T d", "d = da * a * (1 - a)"),
    "scaled_sigmoid_back": ("T a, T da, T lo, T hi", "T d", "d = da * (a - lo) * (hi - a) / (hi - lo)"),
    "leak": ("T alpha, T prev, T a", "T out", "out = alpha * prev + (1 - alpha) * a"),
}


@lru_cache(maxsize=None)
def kernel(name: str):
    import cupy

    inputs, outputs, op = _SOURCES[name]
    return cupy.ElementwiseKernel(inputs, outputs, op, f"timeloom_{name}")


def is_cupy(xp) -> bool:
    return getattr(xp, "__name__", "") == "cupy"
