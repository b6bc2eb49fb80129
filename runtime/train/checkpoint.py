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
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its 'meta' entry is not a JSON object; the file was not written by "
                              "timeloom (or was edited)")
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
    check_arrays(ckpt, program)


def check_arrays(ckpt: Checkpoint, program) -> None:
    """Refuse parameters the spec does not have, and parameter arrays that are not real floats
    (integers would truncate every update, complex values would be cut to their real part)."""
    extra = sorted(set(ckpt.params) - set(program.params))
    if extra:
        raise CheckpointError(f"{ckpt.path}: parameter '{extra[0]}' is not a parameter of the spec "
                              f"({len(extra)} such); the file was not saved from this model (or was edited)")
    for name, arr in ckpt.params.items():
        if arr.dtype.kind != "f":
            raise CheckpointError(f"{ckpt.path}: parameter '{name}' holds {arr.dtype} values; parameters are "
                                  "real floating-point numbers")


def check_resume(ckpt: Checkpoint, cfg, program) -> None:
    """What an exact resume reads beyond the parameters: the same method and optimizer (cfg: the
    run's train.config.Config), the position, the generator state and the optimizer's whole state
    (its step count and, after the first step, a buffer per trainable parameter and slot, each
    shaped like its parameter). Checked before the run directory is touched."""
    from .optimizers import OPTIMIZERS, make_optimizer

    meta, where, params = ckpt.meta, ckpt.path, ckpt.params
    if meta.get("method", "bptt") != cfg.method or (cfg.method == "bptt" and meta.get("optimizer") != cfg.optimizer):
        raise CheckpointError(f"{where} was trained with method {meta.get('method')}, optimizer "
                              f"{meta.get('optimizer')}; resume with the same training settings")
    for key in ("epoch", "batch", "step"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(f"{where}: meta '{key}' is {v!r}, not a count >= 0 (an edited checkpoint?)")
    for key in ("rng", "epoch_rng"):
        state = meta.get(key)
        if state is None and key == "epoch_rng":
            continue
        try:
            np.random.Generator(np.random.PCG64()).bit_generator.state = state
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as e:
            raise CheckpointError(f"{where}: meta '{key}' is not the state of a PCG64 random generator ({e}); "
                                  "the run cannot continue exactly from this checkpoint") from e
    for key in ("loss_sum", "loss_n", "bad_epochs"):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise CheckpointError(f"{where}: meta '{key}' is {v!r}, not a number (an edited checkpoint?)")
    if not isinstance(meta.get("best"), (dict, type(None))):
        raise CheckpointError(f"{where}: meta 'best' is {meta['best']!r}, not a record of the best epoch "
                              "(an edited checkpoint?)")
    state = ckpt.optimizer
    if "step" not in state:
        raise CheckpointError(f"{where} has no optimizer state (no 'opt/step'); resuming from it could not "
                              "continue the run exactly: start a new run from its parameters with "
                              f"`timeloom run SPEC --checkpoint {where}`")
    steps = np.asarray(state["step"])
    if steps.shape != () or steps.dtype.kind not in "iu" or int(steps) < 0:
        raise CheckpointError(f"{where}: optimizer 'step' is not a count >= 0")
    if cfg.optimizer == "dekf":  # its state is the covariance P, checked by DEKF.load_state
        return
    for key, arr in state.items():
        slot, _, name = key.partition("/")
        if key != "step" and (name not in params or tuple(np.shape(arr)) != tuple(params[name].shape)
                              or np.asarray(arr).dtype.kind != "f"):
            raise CheckpointError(f"{where}: optimizer state '{key}' does not fit parameter '{name}' "
                                  f"(an edited checkpoint, or one of another model)")
    if int(steps) > 0 and cfg.optimizer in OPTIMIZERS:
        optimizer = make_optimizer(cfg.optimizer, np, [n for n, p in program.params.items() if p.trainable],
                                   **cfg.optimizer_options())
        for slot in optimizer.used_slots():
            for name in optimizer.names:
                if f"{slot}/{name}" not in state:
                    raise CheckpointError(f"{where}: optimizer state '{slot}/{name}' is missing; resuming "
                                          "without it could not continue the run exactly")


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


def check_finite(ckpt: Checkpoint, optimizer: bool = True) -> None:
    """Refuse a checkpoint whose parameters hold NaN or Inf (or, with `optimizer`, whose optimizer
    state holds NaN; an overflowed second moment may be Inf and still step), naming the array:
    training from it cannot recover."""
    groups = [("parameter", ckpt.params, np.isfinite)]
    if optimizer:
        groups.append(("optimizer state", ckpt.optimizer, lambda a: ~np.isnan(a)))
    for kind, arrays, good in groups:
        for name, a in arrays.items():
            a = np.asarray(a)
            if a.dtype.kind not in "fc":
                continue
            bad = int(a.size - good(a).sum())
            if bad:
                what = "NaN or Inf" if kind == "parameter" else "NaN"
                raise CheckpointError(
                    f"{ckpt.path}: {kind} '{name}' holds {what} ({bad} of {a.size} values), so training "
                    f"cannot go on from this checkpoint; move it out of its folder to resume from the one "
                    f"before it, or start a new run")
