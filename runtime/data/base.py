"""What every built-in data task shares: `Batch`, the `Task` base class, parameter checks,
and the array helpers (one-hot, padding, outputs to numpy, probabilities).

A task turns the spec's `data:` section into batches in the shapes `Network.loss_and_grads`
takes: inputs {name: (T, B, size)}; targets {unit: (T, B, size) | class indices (T, B)} for
`at: all`/`at: mask`, {unit: (B, size) | (B,)} for `at: last`; `lengths` (B,) when the
sequences of a batch differ in length; `masks` {unit: (T, B)} for `at: mask` outputs.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from compiler.budget import positive_int
from compiler.errors import DataError

COMMON_PARAMS = ("task", "input", "output")


@dataclass
class Batch:
    """One batch, time-major, ready for `net.loss_and_grads(**batch.kwargs())`."""

    inputs: dict
    targets: dict
    lengths: np.ndarray | None = None
    masks: dict | None = None

    @property
    def T(self) -> int:
        return next(iter(self.inputs.values())).shape[0]

    @property
    def B(self) -> int:
        return next(iter(self.inputs.values())).shape[1]

    def valid_lengths(self) -> np.ndarray:
        """(B,) lengths, also when `lengths` is None (every sequence has length T)."""
        return np.full(self.B, self.T, dtype=np.int64) if self.lengths is None else self.lengths

    def kwargs(self) -> dict:
        return {"inputs": self.inputs, "targets": self.targets, "lengths": self.lengths,
                "masks": self.masks}


# -- array helpers ---------------------------------------------------------------------------
def one_hot(indices, size: int, dtype=np.float32) -> np.ndarray:
    """indices (...) -> (..., size); negative indices give all-zero rows (padding)."""
    indices = np.asarray(indices)
    out = np.zeros(indices.shape + (size,), dtype=dtype)
    ok = indices >= 0
    out[ok, indices[ok]] = 1
    return out


def pad(sequences, value=0, dtype=None) -> tuple[np.ndarray, np.ndarray | None]:
    """A list of (L_i, ...) arrays -> ((T, B, ...) padded with `value`, lengths (B,) or None).

    lengths is None when every sequence has the same length (no padding needed)."""
    seqs = [np.asarray(s) for s in sequences]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    T = int(lengths.max())
    out = np.full((T, len(seqs)) + seqs[0].shape[1:], value, dtype=dtype or seqs[0].dtype)
    for b, s in enumerate(seqs):
        out[:len(s), b] = s
    return out, (None if lengths.min() == T else lengths)


def valid_mask(lengths, T: int, B: int) -> np.ndarray:
    """(T, B) bool: True at the steps t < length of each sequence."""
    if lengths is None:
        return np.ones((T, B), dtype=bool)
    return np.arange(T)[:, None] < np.asarray(lengths)[None, :]


def to_numpy(a) -> np.ndarray:
    """A numpy or cupy array (or anything array-like) as a numpy array."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        a = a.get()
    return np.asarray(a)


def softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    """An independent generator per (seed, stream): streams keep train/validation data apart."""
    return np.random.default_rng(np.random.SeedSequence([stream, int(seed) % (1 << 63)]))


def as_rng(rng, seed: int) -> np.random.Generator:
    if rng is None:
        return seeded_rng(seed, 99)
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def batched(items, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# -- parameter checks -----------------------------------------------------------------------
def fail(name: str, expected: str, value) -> DataError:
    return DataError(f"data.{name} must be {expected}, got {value!r}")


def check_int(params: dict, name: str, minimum: int = 1) -> int:
    v = params[name]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        what = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
        raise fail(name, what, v)
    return int(v)


def check_float(params: dict, name: str, lo: float = 0.0, hi: float = float("inf"),
                lo_open: bool = False, hi_open: bool = False) -> float:
    v = params[name]
    ok = not isinstance(v, bool) and isinstance(v, (int, float, np.floating, np.integer))
    if ok:
        v = float(v)
        ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise fail(name, f"a number in {left}{lo:g}, {hi:g}{right}", params[name])
    return v


def check_range(params: dict, name: str, minimum: int = 0) -> tuple[int, int]:
    v = params[name]
    if (not isinstance(v, (list, tuple)) or len(v) != 2
            or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) for x in v)
            or v[0] < minimum or v[1] < v[0]):
        raise fail(name, f"a range [lo, hi] of integers with {minimum} <= lo <= hi", v)
    return int(v[0]), int(v[1])


def check_choice(params: dict, name: str, choices) -> str:
    v = params[name]
    if v not in choices:
        raise fail(name, "one of " + ", ".join(map(str, choices)), v)
    return v


# -- the Task base class ------------------------------------------------------------------------
class Task:
    """A built-in data task bound to a program's input and output unit.

    Subclasses set `name`, `metric`, `higher_is_better` and `PARAMS` (name -> default; the
    parameters the task takes besides task/input/output) and implement `train_batches`,
    `validation`, `score` (the metrics of a network) and `compute_baseline` (the trivial
    predictor's); `evaluate` and `baseline` wrap the last two."""

    name = "task"
    metric = "loss"
    higher_is_better = False
    PARAMS: ClassVar[dict] = {}
    STEPS_SETTING: ClassVar[str] = "data.seq_len"  # the data: key(s) that set T (for messages)

    @classmethod
    def sequence_steps(cls, params: dict) -> int | None:
        """The longest training sequence T that the data: section `params` describes, from its numbers
        and PARAMS' defaults alone (nothing generated or read; compiler/budget.py estimates from it);
        None when it cannot be known before the data is loaded."""
        return positive_int({**cls.PARAMS, **params}.get("seq_len"))

    FRESH_TRAIN_SIZE: ClassVar[int | None] = None  # a task drawing fresh sequences every epoch: their default count

    @classmethod
    def sequences_per_epoch(cls, params: dict, training: dict | None) -> int | None:
        """The training sequences of one epoch from the data: and training: sections alone: data.train_size
        (or its PARAMS default), for a task drawing fresh sequences else training.steps_per_epoch x
        training.batch_size when both are given, else FRESH_TRAIN_SIZE; None when unknown."""
        n = positive_int({**cls.PARAMS, **params}.get("train_size"))
        if n is None and cls.FRESH_TRAIN_SIZE is not None:
            training = training if isinstance(training, dict) else {}
            steps, size = positive_int(training.get("steps_per_epoch")), positive_int(training.get("batch_size"))
            n = steps * size if steps and size else cls.FRESH_TRAIN_SIZE
        return n

    def __init__(self, program, seed: int, **params):
        self.program = program
        self.seed = int(seed)
        self.params = self._check_params(params)
        self.input, self.output = _resolve_io(program, params.get("input"), params.get("output"))
        self.input_size = program.inputs[self.input]
        self.out = program.outputs[self.output]
        self.output_size = program.units[self.output].size
        self.output_activation = program.units[self.output].activation.name
        self._baseline = None

    def _check_params(self, params: dict) -> dict:
        allowed = set(self.PARAMS) | set(COMMON_PARAMS)
        for key in params:
            if key not in allowed:
                near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise DataError(f"data.{key} is not a parameter of task {self.name} (it takes: "
                                f"{', '.join(self.PARAMS) or 'none'}){hint}")
        merged = dict(self.PARAMS)
        merged.update({k: v for k, v in params.items() if k not in COMMON_PARAMS})
        return merged

    # -- checks against the spec ------------------------------------------------------------
    def expect_input_size(self, n: int, what: str):
        if self.input_size != n:
            raise DataError(f"input '{self.input}' has size {self.input_size} but task {self.name} "
                            f"produces {n} features ({what}); set inputs.{self.input}.size: {n} in the spec")

    def expect_output_size(self, n: int, what: str):
        if self.output_size != n:
            units = (self.program.spec or {}).get("units") or {}
            fix = f"set units.{self.output}.size: {n} in the spec" if self.output in units else \
                f"give output '{self.output}' size {n}"
            raise DataError(f"output '{self.output}' has size {self.output_size} but task {self.name} "
                            f"needs {n} ({what}); {fix}")

    def expect_loss(self, losses, why: str):
        if self.out.loss not in losses:
            raise DataError(f"output '{self.output}' has loss {self.out.loss} but task {self.name} needs "
                            f"{' or '.join(losses)} ({why})")

    def expect_at(self, ats, why: str):
        if self.out.at not in ats:
            raise DataError(f"output '{self.output}' has at: {self.out.at} but task {self.name} needs "
                            f"at: {' or '.join(ats)} ({why})")

    # -- building batches -------------------------------------------------------------------
    def make_batch(self, x, step_targets, lengths=None, recall=None) -> Batch:
        """Batch from inputs (T, B, size) and per-step targets: class indices (T, B) or values
        (T, B, K). Class targets become one-hot for mse/bce outputs; `at: last` keeps the last
        valid step; `at: mask` uses `recall` (T, B) (default: every valid step)."""
        T, B = x.shape[:2]
        y = np.asarray(step_targets)
        if y.ndim == 2 and self.out.loss != "cross_entropy":
            y = one_hot(y, self.output_size)
        elif y.ndim == 2:
            y = np.where(y < 0, 0, y).astype(np.int64)  # padded steps: any valid class
        masks = None
        if self.out.at == "last":
            last = (np.full(B, T) if lengths is None else np.asarray(lengths)) - 1
            y = y[last, np.arange(B)]
        elif self.out.at == "mask":
            m = valid_mask(lengths, T, B) if recall is None else np.asarray(recall, dtype=bool)
            masks = {self.output: m.astype(np.float32)}
        return Batch({self.input: x.astype(np.float32)}, {self.output: y}, lengths, masks)

    def predict(self, net, batch: Batch) -> np.ndarray:
        """The output unit's values (T, B, K) as probabilities where the loss implies them
        (an identity unit under cross_entropy/bce carries logits; the baselines' predictors
        give probabilities directly)."""
        y = to_numpy(net.forward(batch.inputs, lengths=batch.lengths)[self.output]).astype(np.float64)
        if getattr(net, "gives_probabilities", False):
            return y
        if self.output_activation == "identity" and self.out.loss == "cross_entropy":
            return softmax(y)
        if self.output_activation == "identity" and self.out.loss == "bce":
            return 1.0 / (1.0 + np.exp(-y))
        return y

    def fresh_train_size(self) -> int:
        """train_size of a task that draws fresh sequences every epoch (`sequences_per_epoch`)."""
        if self.params.get("train_size") is None:
            self.params["train_size"] = type(self).sequences_per_epoch({}, self.program.training)
        return check_int(self.params, "train_size")

    def epoch_batches(self, batch_size: int) -> int:
        """How many batches `train_batches` yields for one epoch."""
        return -(-self.epoch_size() // batch_size)

    def epoch_size(self) -> int:
        return int(self.params.get("train_size") or 1)

    # -- the interface ----------------------------------------------------------------------
    def train_batches(self, batch_size: int, rng=None) -> Iterator[Batch]:
        raise NotImplementedError

    def validation(self) -> list[Batch]:
        raise NotImplementedError

    def evaluation_batches(self) -> list:
        """The batches `evaluate` runs (default: the validation batches)."""
        return self.validation()

    def evaluate(self, net) -> dict:
        """{metric: value, ...task-specific..., "baseline": the trivial predictor's metric}."""
        result = self.score(net)
        result["baseline"] = self.baseline()[self.metric]
        return result

    def baseline(self) -> dict:
        """The trivial predictor's metrics (computed once)."""
        if self._baseline is None:
            self._baseline = self.compute_baseline()
        return self._baseline

    def score(self, net) -> dict:
        """The task's metrics of `net` (anything with `forward`) on the validation data."""
        raise NotImplementedError

    def compute_baseline(self) -> dict:
        raise NotImplementedError

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"<{type(self).__name__} {self.name}: {self.input} -> {self.output}, {shown}>"


def _resolve_io(program, input_name, output_name) -> tuple[str, str]:
    if input_name is None:
        if len(program.inputs) != 1:
            raise DataError(f"the spec has {len(program.inputs)} inputs ({', '.join(program.inputs)}); "
                            f"name the one the task feeds with data.input")
        input_name = next(iter(program.inputs))
    elif input_name not in program.inputs:
        raise DataError(f"data.input must name one of the spec's inputs ({', '.join(program.inputs)}), "
                        f"got {input_name!r}")
    carrying = [n for n, o in program.outputs.items() if o.loss != "none"]
    if output_name is None:
        if len(carrying) != 1:
            raise DataError(f"the spec has {len(carrying)} outputs with a loss ({', '.join(carrying)}); "
                            f"name the one the task trains with data.output")
        output_name = carrying[0]
    elif output_name not in program.outputs:
        raise DataError(f"data.output must name one of the spec's outputs ({', '.join(program.outputs)}), "
                        f"got {output_name!r}")
    return input_name, output_name
