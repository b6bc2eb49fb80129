"""Checkpoints: one `.npz` with parameters, optimizer state, RNG state, step and spec hash.

Layout: "param/{name}" and "opt/{key}" arrays plus "meta", a JSON string (step, epoch,
position in the epoch, RNG state, spec hash, ...). Written atomically: a temporary file in
the same folder, flushed and fsync'ed, then renamed over the final name, so a kill at any
moment leaves either the old set of checkpoints or the old set plus one complete new file.
Loaded with allow_pickle=False.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compiler.errors import CheckpointError

FORMAT = 1
MODEL_KEYS = ("inputs", "units", "connections", "blocks", "templates", "outputs")
NAME = re.compile(r"^ckpt-(\d{8})-(\d{4})-(\d{5})\.npz$")


def spec_hash(spec: dict) -> str:
    """sha256 of the canonical JSON of the model part of a spec (not data:/training:/name)."""
    model = {k: spec[k] for k in MODEL_KEYS if k in spec}
    text = json.dumps(model, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Checkpoint:
    path: Path
    params: dict  # name -> numpy array
    optimizer: dict  # key -> numpy array
    meta: dict


def file_name(step: int, epoch: int, batch: int) -> str:
    """Sorted names: the optimizer step, then the position (epoch, batches done) to resume at."""
    return f"ckpt-{step:08d}-{epoch:04d}-{batch:05d}.npz"


def save(path, params: dict, optimizer: dict, meta: dict, replace: bool = False) -> Path:
    """Write atomically (temp file, fsync, rename). Never replaces an existing file unless `replace`
    (the rename swaps the whole file: a reader sees the old or the new one, never a mix)."""
    path = Path(path)
    if path.exists() and not replace:
        raise CheckpointError(f"{path} exists already; refusing to overwrite a checkpoint")
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in optimizer.items()})
    arrays["meta"] = np.array(json.dumps(dict(meta, format=FORMAT)))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from e
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise CheckpointError(f"{path} is not a timeloom checkpoint (no 'meta' entry); a parameter file "
                                      f"(e.g. written by `timeloom import`) is given with --params {path}")
            meta = json.loads(str(z["meta"]))
            params = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
            opt = {k[len("opt/"):]: z[k] for k in z.files if k.startswith("opt/")}
    except CheckpointError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable timeloom checkpoint (truncated or not an .npz): "
                              f"{e}") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {meta.get('format')!r}; this timeloom reads {FORMAT}")
    return Checkpoint(path, params, opt, meta)


def check_fits(ckpt: Checkpoint, program, spec_file=None) -> None:
    """Refuse a checkpoint saved from a different model (spec hash, parameter names and shapes)."""
    want = spec_hash(program.spec)
    got = ckpt.meta.get("spec_hash")
    where = spec_file or program.source or program.name
    if got != want:
        raise CheckpointError(
            f"{ckpt.path} was saved from a different model (spec '{ckpt.meta.get('spec_name', '?')}', hash "
            f"{str(got)[:12]}) than {where} (hash {want[:12]}): units, connections, blocks, templates, inputs "
            f"or outputs differ; use the spec it was trained with, or start a new run without it")
    for name, info in program.params.items():
        arr = ckpt.params.get(name)
        if arr is None or tuple(arr.shape) != tuple(info.shape):
            have = "missing" if arr is None else f"shape {tuple(arr.shape)}"
            raise CheckpointError(f"{ckpt.path}: parameter '{name}' is {have}, the spec needs {tuple(info.shape)}")


def listing(folder) -> list[Path]:
    """The checkpoints in a folder, oldest first (temporary files are ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NAME.match(p.name))


def latest(folder) -> Path | None:
    found = listing(folder)
    return found[-1] if found else None


def rotate(folder, keep: int) -> list[Path]:
    """Delete the oldest of this run's checkpoints beyond the newest `keep`; returns those removed."""
    found = listing(folder)
    old = found[:-keep] if keep > 0 else []
    for p in old:
        p.unlink(missing_ok=True)
    return old
