"""Parameter files: one `.npz` holding every parameter under its name (docs/ARCHITECTURE.md "Parameter names")
("x->h", "h->h@1", "h.bias", "h->n@1.bias", "h.h0", "h.alpha", ...).

`save_params(net, path)` writes `net.params` (float64); `load_params(net, path)` checks every
name and shape against the network's program before it assigns anything. It also reads a
training checkpoint (runtime/train/checkpoint.py: "param/{name}" arrays next to "opt/..." and
"meta"): then only the "param/" arrays count. In a plain file, keys that start with "_",
contain "/" or are "meta" are metadata and skipped.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import ParamsError


def is_metadata(key: str) -> bool:
    return key.startswith("_") or "/" in key or key == "meta"


def read_params(path, dtype=np.float64) -> dict:
    """{name: array of `dtype`} from an .npz file (metadata keys left out); dtype=None: as stored."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if any(k.startswith("param/") for k in f.files):  # a training checkpoint
                return {k[len("param/"):]: np.asarray(f[k], dtype=dtype) for k in f.files
                        if k.startswith("param/")}
            return {k: np.asarray(f[k], dtype=dtype) for k in f.files if not is_metadata(k)}
    except FileNotFoundError as e:
        raise ParamsError(f"{path}: no such parameter file") from e
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ParamsError(f"{path}: not a readable .npz parameter file ({e})") from e


def check_params(expected: dict, values: dict, where: str = "parameters") -> None:
    """`expected`: name -> shape. Raise ParamsError listing unknown, missing and misshaped names."""
    problems = []
    unknown = sorted(set(values) - set(expected))
    missing = sorted(set(expected) - set(values))
    if unknown:
        problems.append(f"unknown parameter(s) {', '.join(map(repr, unknown))} (not in the spec)")
    if missing:
        problems.append(f"missing parameter(s) {', '.join(map(repr, missing))}")
    for name in sorted(set(values) & set(expected)):
        got, want = tuple(np.shape(values[name])), tuple(expected[name])
        if got != want:
            problems.append(f"'{name}' has shape {got}, the spec needs {want}")
    if problems:
        raise ParamsError(f"{where} do not fit the spec: " + "; ".join(problems))


def load_params(net, path) -> dict:
    """Assign every parameter of `net` from `path`; returns the values read (float64)."""
    values = read_params(path)
    assign(net, values, where=str(path))
    return values


def assign(net, values: dict, where: str = "parameters") -> None:
    """Check `values` against the network's program, then assign them all."""
    check_params({n: p.shape for n, p in net.program.params.items()}, values, where)
    for name, v in values.items():
        net.params[name] = net.backend.asarray(np.asarray(v, dtype=np.float64))


def save_params(net_or_params, path) -> Path:
    """Write a Network's params (or a {name: array} dict) to `path` (.npz, float64)."""
    params = getattr(net_or_params, "params", net_or_params)
    backend = getattr(net_or_params, "backend", None)
    arrays = {}
    for name, v in params.items():
        if is_metadata(name):
            raise ParamsError(f"parameter name {name!r} would be read back as metadata")
        arrays[name] = np.asarray(backend.to_numpy(v) if backend else v, dtype=np.float64)
    path = Path(path)
    if path.suffix != ".npz":
        raise ParamsError(f"{path}: parameter files end in .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path
