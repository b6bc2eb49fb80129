"""Parameters for `--params FILE`: a plain parameter file or a training checkpoint, as a Checkpoint.

A plain file (`timeloom import`'s spec.npz, `interop.save_params`) holds one array per parameter
name; it is checked against the spec by name and shape (unknown, missing and misshaped names
listed at once). A training checkpoint ("param/..." arrays and "meta") is checked as
`timeloom run --checkpoint` checks it: its spec hash first, then names and shapes. Either way
the result is a `checkpoint.Checkpoint` without optimizer state, which `run` trains from or
evaluates, and `inspect` and `export` read.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from compiler.errors import CheckpointError
from compiler.loader import file_kind

from . import checkpoint


def is_checkpoint(path) -> bool:
    """Whether `path` is a training checkpoint (it has a "meta" entry), not a plain parameter file."""
    try:
        with zipfile.ZipFile(path) as z:
            return "meta.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def load(path, program) -> checkpoint.Checkpoint:
    """The parameters in `path` for `program`, checked (CheckpointError names the file and the fix)."""
    path = Path(path)
    kind = file_kind(path)
    if kind == "a folder":
        raise CheckpointError(f"{path} is a folder; --params takes a file (.npz: a parameter file written by "
                              f"`timeloom import`, or a checkpoint such as RUNDIR/checkpoints/ckpt-*.npz)")
    if kind is not None:
        what = "no such parameter file" if kind == "missing" else f"is {kind}"
        raise CheckpointError(f"{path}: {what}; --params takes an .npz file")
    if is_checkpoint(path):
        ckpt = checkpoint.load(path)
        checkpoint.check_fits(ckpt, program)
        return checkpoint.Checkpoint(path, dict(ckpt.params), {}, dict(ckpt.meta))
    from interop.params import check_params, read_params

    stored = read_params(path, dtype=None)  # as stored: refuse what a float64 copy would hide
    for k, a in stored.items():
        if a.dtype.kind != "f":
            raise CheckpointError(f"{path}: parameter '{k}' holds {a.dtype} values; parameters are real "
                                  "floating-point numbers")
    values = {k: a.astype(np.float64) for k, a in stored.items()}
    check_params({n: p.shape for n, p in program.params.items()}, values, f"the parameters in {path}")
    for name, v in values.items():
        if not np.all(np.isfinite(v)):
            raise CheckpointError(f"{path}: parameter '{name}' holds NaN or infinite values")
    meta = {"spec_hash": checkpoint.spec_hash(program.spec), "spec_name": program.name, "parameter_file": True}
    return checkpoint.Checkpoint(path, values, {}, meta)
