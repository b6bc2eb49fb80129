"""One array-module interface for NumPy and CuPy: `xp`, dtype, transfers."""
from __future__ import annotations

import numpy as np

from compiler.errors import TimeloomError


class Backend:
    """`xp` is numpy or cupy; arrays created through it live on that backend."""

    def __init__(self, name: str = "numpy", dtype: str = "float32"):
        if dtype not in ("float32", "float64"):
            raise TimeloomError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
        if name == "numpy":
            self.xp = np
        elif name == "cupy":
            try:
                import cupy
                cupy.cuda.runtime.getDeviceCount()
            except Exception as e:  # ImportError, CUDARuntimeError, ...
                raise TimeloomError("backend 'cupy' needs CuPy and a CUDA GPU "
                                    f"(pip install 'timeloom[gpu]'): {e}") from e
            self.xp = cupy
        else:
            raise TimeloomError(f"unknown backend {name!r}; use 'numpy' or 'cupy'")
        self.name = name
        self.dtype = np.dtype(dtype)

    def asarray(self, a):
        return self.xp.asarray(a, dtype=self.dtype)

    def to_numpy(self, a):
        return a if self.xp is np else self.xp.asnumpy(a)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=self.dtype)
