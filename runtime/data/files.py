"""User data from files: `data: {files: {x: x.npy, y: y.npy}}` (task `files`).

Every input of the spec and every output with a loss gets one file, named by the unit;
paths are relative to the spec file's folder. Formats: `.npy`; `.npz` (the array named like
the unit, or its only array); `.csv` (comma-separated numbers, optional header line). Each is a
regular file of at most `max_mb` MiB (default 512) holding real numbers (see `source.py`).

Layout: sample-major, one row per sequence, as a data set is usually stored:
  inputs and `at: all`/`at: mask` targets   (N, T, size)   N sequences of T steps
  cross_entropy targets                     (N, T) class indices, or (N, T, size)
  `at: last` targets                        (N, size), or (N,) class indices
A `.csv` file is one sequence: (T, size) rows of steps (a single column may be 1-D); for
an `at: last` target it holds (N, size) rows of sequences. Batches are transposed to the
runtime's time-major (T, B, size).

Optional: `lengths: lengths.npy` ((N,) valid steps of each sequence, for padded data) and
`masks: {y: mask.npy}` ((N, T), required for `at: mask` outputs).

Held out: the last `validation_split` of the sequences (default: training.validation_split,
else 0.1). A single sequence (N = 1) is split in time instead, and `seq_len` then cuts its
training part into windows. Metric on the task's output (`data.output`, or the only one):
`mse` for mse outputs; `accuracy` (argmax for cross_entropy, threshold 0.5 for bce) else.
Baseline: the training targets' mean (mse) or the majority class (accuracy).
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from compiler.errors import DataError

from .base import Batch, Task, as_rng, batched, check_float, check_int, fail, valid_mask
from .metrics import ConstantPredictor
from .source import check_file, check_real, max_bytes


def load_array(path: Path, name: str) -> np.ndarray:
    return check_real(_read_array(path, name), f"files.{name}", path)


def _read_array(path: Path, name: str) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if name in keys:
                    return archive[name]
                if len(keys) == 1:
                    return archive[keys[0]]
                if not keys:
                    raise DataError(f"data.files.{name}: {path.name} holds no arrays")
                raise DataError(f"data.files.{name}: {path.name} holds arrays {', '.join(keys)}; "
                                f"name one '{name}' or keep a single array")
        if path.suffix == ".csv":
            try:
                return np.loadtxt(path, delimiter=",", ndmin=1)
            except ValueError:
                return np.loadtxt(path, delimiter=",", ndmin=1, skiprows=1)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"data.files.{name}: cannot read {path} (a damaged or cut file?): {e}") from e
    raise DataError(f"data.files.{name}: {path.name} must be a .npy, .npz or .csv file")


class Files(Task):
    name = "files"
    PARAMS: ClassVar[dict] = {"files": None, "lengths": None, "masks": None, "validation_split": None, "seq_len": None,
                              "max_mb": None}

    def __init__(self, program, seed: int, **params):
        carrying = [n for n, o in program.outputs.items() if o.loss != "none"]
        params.setdefault("input", next(iter(program.inputs), None))
        params.setdefault("output", carrying[0] if carrying else None)
        super().__init__(program, seed, **params)
        p = self.params
        if not isinstance(p["files"], dict) or not p["files"]:
            raise fail("files", "a mapping from input/output names to files", p["files"])
        self.seq_len = None if p["seq_len"] is None else check_int(p, "seq_len")
        if p["validation_split"] is None:
            p["validation_split"] = (program.training or {}).get("validation_split", 0.1)
        split = check_float(p, "validation_split", 0, 1, lo_open=True, hi_open=True)
        self.outputs = {n: program.outputs[n] for n in carrying}
        self.base = Path(program.source).resolve().parent if getattr(program, "source", None) else Path.cwd()
        self.max_bytes = max_bytes(p)
        self._load(p)
        self._split(split)
        kind = self.out.loss
        self.metric = "mse" if kind == "mse" else "accuracy"
        self.higher_is_better = kind != "mse"

    # -- loading and checking ---------------------------------------------------------------
    def _path(self, where: str, value) -> Path:
        if not isinstance(value, str):
            raise fail(where, "a file path", value)
        path = Path(value).expanduser()
        path = path if path.is_absolute() else self.base / path
        return check_file(path, where, self.max_bytes)

    def _load(self, p: dict):
        files = p["files"]
        known = set(self.program.inputs) | set(self.outputs)
        for name in files:
            if name not in known:
                raise DataError(f"data.files.{name}: '{name}' is neither an input nor an output with a loss "
                                f"of the spec ({', '.join(sorted(known))})")
        for name in known:
            if name not in files:
                raise DataError(f"data.files must give '{name}' (every input and every output with a loss)")
        arrays = {n: load_array(self._path(f"files.{n}", files[n]), n) for n in files}
        self.x = {n: self._input(n, arrays[n], files[n]) for n in self.program.inputs}
        self.N, self.T = next(iter(self.x.values())).shape[:2]
        self.y = {n: self._target(n, arrays[n], files[n]) for n in self.outputs}
        self.lengths = None
        if p["lengths"] is not None:
            given = load_array(self._path("lengths", p["lengths"]), "lengths")
            lengths = given.reshape(-1)
            whole = lengths.size > 0 and bool(np.all(np.isfinite(lengths)) and np.all(lengths == np.round(lengths)))
            if lengths.shape != (self.N,) or not whole or lengths.min() < 1 or lengths.max() > self.T:
                raise DataError(f"data.lengths must be {self.N} integers in [1, {self.T}], "
                                f"got shape {given.shape}" + (f" with values in [{lengths.min()}, {lengths.max()}]"
                                                              if lengths.size else "")
                                + ("" if whole or not lengths.size else " (not all whole numbers)"))
            self.lengths = lengths.astype(np.int64)
        self.masks = {}
        for n, o in self.outputs.items():
            if o.at != "mask":
                continue
            given = (p["masks"] or {}).get(n) if isinstance(p["masks"] or {}, dict) else None
            if given is None:
                raise DataError(f"output '{n}' has at: mask; give its mask file as data.masks.{n} ((N, T) of 0/1)")
            m = load_array(self._path(f"masks.{n}", given), n)
            m = m[None] if m.ndim == 1 else m
            if m.shape != (self.N, self.T):
                raise DataError(f"mask of output '{n}' in {given} has shape {m.shape}, expected ({self.N}, {self.T})")
            self.masks[n] = m.astype(np.float32)

    def _input(self, name: str, a: np.ndarray, file: str) -> np.ndarray:
        size = self.program.inputs[name]
        if Path(file).suffix == ".csv":
            a = a.reshape(1, -1, 1) if a.ndim == 1 else a[None]
        if a.ndim != 3 or a.shape[2] != size:
            raise DataError(f"input '{name}' in {file} has shape {a.shape}, expected (N, T, {size}) "
                            f"(sequences, time steps, features)")
        if hasattr(self, "N") and a.shape[:2] != (self.N, self.T):
            raise DataError(f"input '{name}' in {file} has shape {a.shape}, expected ({self.N}, {self.T}, {size}) "
                            f"like the other inputs")
        return self._finite(name, file, a).astype(np.float32)

    def _target(self, name: str, a: np.ndarray, file: str) -> np.ndarray:
        out, size, N, T = self.outputs[name], self.program.units[name].size, self.N, self.T
        classes = out.loss == "cross_entropy"
        if out.at == "last":
            if a.ndim == 1 and not classes and size == 1:
                a = a[:, None]
            allowed = [(N, size)] + ([(N,)] if classes else [])
        else:
            if Path(file).suffix == ".csv":
                a = a[None] if (a.ndim == 2 or classes) else a.reshape(1, -1, 1)
                if classes and a.ndim == 3 and a.shape[2] == 1 and size != 1:
                    a = a[..., 0]
            allowed = [(N, T, size)] + ([(N, T)] if classes else [])
        if a.shape not in allowed:
            raise DataError(f"target for output '{name}' in {file} has shape {a.shape}, expected "
                            f"{' or '.join(str(s) for s in allowed)}")
        a = self._finite(name, file, a)
        if classes and a.shape in ((N,), (N, T)):
            if not np.all((a == np.round(a)) & (a >= 0) & (a < size)):
                raise DataError(f"target for output '{name}' in {file} must hold class indices in [0, {size})")
            return a.astype(np.int64)
        return a.astype(np.float32)

    @staticmethod
    def _finite(name, file, a):
        if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
            raise DataError(f"'{name}' in {file} must hold finite numbers")
        return a

    def _split(self, split: float):
        if self.N == 1:
            if any(o.at == "last" for o in self.outputs.values()):
                raise DataError("an output with at: last needs several sequences (N >= 2) in the files")
            n_val = max(1, round(self.T * split))
            if self.T - n_val < (self.seq_len or 1):
                raise DataError(f"the single sequence has {self.T} steps, too few to hold out {n_val} and "
                                f"train on windows of data.seq_len = {self.seq_len}")
            self.time_split = self.T - n_val
        else:
            if self.seq_len is not None:
                raise DataError("data.seq_len cuts a single long sequence into windows; the files hold "
                                f"{self.N} sequences")
            self.time_split = None
            self.n_val = min(self.N - 1, max(1, round(self.N * split)))

    # -- batches ------------------------------------------------------------------------------
    def batch(self, rows, start: int = 0, stop: int | None = None) -> Batch:
        """The sequences `rows`, steps start..stop-1, time-major."""
        stop = self.T if stop is None else stop
        rows = np.asarray(rows)
        inputs = {n: np.swapaxes(a[rows, start:stop], 0, 1) for n, a in self.x.items()}
        targets = {n: (a[rows] if self.outputs[n].at == "last" else np.swapaxes(a[rows, start:stop], 0, 1))
                   for n, a in self.y.items()}
        masks = {n: np.swapaxes(m[rows, start:stop], 0, 1) for n, m in self.masks.items()} or None
        lengths = None
        if self.lengths is not None:
            lengths = np.clip(self.lengths[rows] - start, 1, stop - start)
            lengths = None if lengths.min() == stop - start else lengths
        return Batch(inputs, targets, lengths, masks)

    def epoch_size(self) -> int:
        if self.time_split is None:
            return self.N - self.n_val
        return 1 if self.seq_len is None else self.time_split // self.seq_len

    def train_batches(self, batch_size: int, rng=None):
        rng = as_rng(rng, self.seed)
        if self.time_split is None:
            for rows in batched(rng.permutation(self.N - self.n_val), batch_size):
                yield self.batch(rows)
        elif self.seq_len is None:
            yield self.batch([0], 0, self.time_split)
        else:
            L = self.seq_len
            for starts in batched(rng.permutation(np.arange(0, self.time_split - L + 1, L)), batch_size):
                parts = [self.batch([0], s, s + L) for s in starts]
                yield Batch({n: np.concatenate([b.inputs[n] for b in parts], axis=1) for n in self.x},
                            {n: np.concatenate([b.targets[n] for b in parts], axis=1) for n in self.y},
                            None,
                            {n: np.concatenate([b.masks[n] for b in parts], axis=1) for n in self.masks} or None)

    def validation(self) -> list:
        if self.time_split is not None:
            return [self.batch([0], self.time_split, self.T)]
        rows = np.arange(self.N - self.n_val, self.N)
        return [self.batch(group) for group in batched(rows, 256)]

    # -- metrics ------------------------------------------------------------------------------
    def _counted(self, batch: Batch, y=None):
        """(predictions (M, K) or None, targets (M, K) or (M,)) at the positions the loss counts."""
        target = batch.targets[self.output]
        if self.out.at == "last":
            return (None if y is None else y[batch.valid_lengths() - 1, np.arange(batch.B)]), target
        keep = valid_mask(batch.lengths, batch.T, batch.B)
        if self.out.at == "mask":
            keep = keep & (batch.masks[self.output] > 0)
        return (None if y is None else y[keep]), target[keep]

    def score(self, net) -> dict:
        preds, targets = zip(*(self._counted(b, self.predict(net, b)) for b in self.validation()))
        p, t = np.concatenate(preds), np.concatenate(targets)
        if self.out.loss == "mse":
            return {"mse": float(np.mean((p - t) ** 2))}
        if self.out.loss == "cross_entropy":
            classes = t if t.ndim == 1 else t.argmax(axis=-1)
            return {"accuracy": float(np.mean(p.argmax(axis=-1) == classes))}
        return {"accuracy": float(np.mean((p > 0.5) == (t > 0.5)))}

    def compute_baseline(self) -> dict:
        """The training targets' mean (mse) or majority (accuracy), at every step."""
        if self.time_split is None:
            train = self.batch(np.arange(self.N - self.n_val))
        else:
            train = self.batch([0], 0, self.time_split)
        t = self._counted(train)[1]
        size = self.output_size
        if self.out.loss == "mse":
            value = t.mean(axis=0)
        elif self.out.loss == "cross_entropy":
            classes = t if t.ndim == 1 else t.argmax(axis=-1)
            value = np.eye(size)[np.bincount(classes.astype(np.int64), minlength=size).argmax()]
        else:
            value = (t.mean(axis=0) > 0.5).astype(float)
        return self.score(ConstantPredictor(self.output, value))
