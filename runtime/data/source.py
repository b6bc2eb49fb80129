"""Checks on a data file before it is read (tasks `text` and `files`).

A data file must be a regular file (not a device such as /dev/zero, a pipe or a folder, which
could be read until memory runs out) no larger than `data.max_mb` MiB (default MAX_MB). For an
`.npz` archive the limit applies to the arrays it unpacks to as well (a small archive can hold
huge compressed arrays). Arrays must hold real numbers: complex values are refused instead of
being cut to their real part, as are strings, objects and records.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from compiler.errors import DataError
from compiler.loader import file_kind

MAX_MB = 512  # the default of data.max_mb
MIB = 2 ** 20


def max_bytes(params: dict) -> int:
    """data.max_mb in bytes (a positive number, default MAX_MB)."""
    mb = params.get("max_mb")
    if mb is None:
        mb = MAX_MB
    if isinstance(mb, bool) or not isinstance(mb, (int, float)) or not math.isfinite(mb) or mb <= 0:
        raise DataError(f"data.max_mb must be a positive number of MiB (default {MAX_MB}), got {mb!r}")
    return int(mb * MIB)


def _mb(n: int) -> str:
    return f"{n / MIB:,.1f} MiB" if n >= MIB // 10 else f"{n:,} bytes"


def check_file(path: Path, where: str, limit: int) -> Path:
    """`path` if it is a regular file of at most `limit` bytes; a DataError naming `data.WHERE` otherwise."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "missing":
        raise DataError(f"data.{where}: no such file {path} (paths are relative to the spec file's folder)")
    if kind is not None:
        raise DataError(f"data.{where}: {path} is {kind}; give the path of a data file")
    size = path.stat().st_size
    if size > limit:
        raise DataError(f"data.{where}: {path} holds {_mb(size)}, more than data.max_mb = {_mb(limit)}; "
                        f"raise data.max_mb (e.g. data.max_mb: {math.ceil(size / MIB) + 1}) to read it")
    if size == 0:
        raise DataError(f"data.{where}: {path} is empty (0 bytes)")
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as z:
                unpacked = sum(i.file_size for i in z.infolist())
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise DataError(f"data.{where}: {path} is not a readable .npz archive ({e}); "
                            "write it again with numpy.savez") from e
        if unpacked > limit:
            raise DataError(f"data.{where}: {path} unpacks to {_mb(unpacked)} of arrays ({_mb(size)} on disk), "
                            f"more than data.max_mb = {_mb(limit)}; raise data.max_mb "
                            f"(e.g. data.max_mb: {math.ceil(unpacked / MIB) + 1}) to read it")
    return path


def check_real(a: np.ndarray, where: str, path) -> np.ndarray:
    """Refuse arrays that are not real numbers (bool, integers and floats pass)."""
    if np.iscomplexobj(a):
        raise DataError(f"data.{where}: {path} holds complex numbers ({a.dtype}); timeloom trains on real "
                        "numbers: store the real and imaginary parts as separate features")
    if a.dtype.kind not in "biuf":
        raise DataError(f"data.{where}: {path} holds {a.dtype} values, not numbers")
    return a
