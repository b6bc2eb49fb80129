"""Parameter initializers (host-side, float64, from one seeded generator)."""
from __future__ import annotations

import hashlib

import numpy as np


def _glorot(rng, shape):
    fan_out, fan_in = (shape[0], shape[1]) if len(shape) == 2 else (shape[0], shape[0])
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _orthogonal(rng, shape):
    if len(shape) != 2:
        return rng.uniform(-0.1, 0.1, size=shape)
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q if rows >= cols else q.T


_RADII: dict = {}  # sha1 of a matrix -> its spectral radius (networks re-made from one seed)


def _radius(w) -> float:
    """max |eigenvalue| of the square matrix w (remembered: large reservoirs take seconds)."""
    key = (w.shape, hashlib.sha1(np.ascontiguousarray(w).tobytes()).hexdigest())
    if key not in _RADII:
        if len(_RADII) > 16:
            _RADII.clear()
        _RADII[key] = float(np.max(np.abs(np.linalg.eigvals(w))))
    return _RADII[key]


def _sparse(rng, shape, density, spectral_radius):
    """Echo-state reservoir weights: a sparse random matrix rescaled to the spectral radius."""
    w = rng.standard_normal(shape) * (rng.random(shape) < density)
    if len(shape) == 2 and shape[0] == shape[1]:
        rho = _radius(w)
        if rho > 0:
            w *= spectral_radius / rho
    return w


def initialize(info, rng) -> np.ndarray:
    """A float64 array for one ParamInfo."""
    init, shape = info.init or {"kind": "zeros"}, info.shape
    kind = init["kind"]
    if kind == "glorot":
        return _glorot(rng, shape)
    if kind == "orthogonal":
        return _orthogonal(rng, shape)
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "constant":
        return np.broadcast_to(np.asarray(init["value"], dtype=np.float64), shape).copy()
    if kind == "normal":
        return rng.normal(0.0, init["std"], size=shape)
    if kind == "uniform":
        return rng.uniform(init["low"], init["high"], size=shape)
    if kind == "sparse":
        return _sparse(rng, shape, init["density"], init["spectral_radius"])
    raise ValueError(f"unknown initializer {kind!r} for {info.name}")


def initialize_all(params: dict, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {name: initialize(info, rng) for name, info in params.items()}
