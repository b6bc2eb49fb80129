"""The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Le et al.
2015 and Arjovsky et al. 2016).

Each sequence has `length` steps of 2 features: a value uniform in [0, 1] and a marker in
{0, 1}. Exactly two markers are 1, one at a uniformly drawn step of the first half and one
of the second half; the target, at the last step only (`at: last`, mse), is the sum of the
two marked values. Always answering the mean 1.0 gives mse Var(u1 + u2) = 1/6 = 0.167.

Metric `mse` on the test set; also `solved_fraction`, the fraction of test sequences
answered within 0.04 (Hochreiter & Schmidhuber's criterion). Parameters: length (T, >= 2),
train_size (sequences per epoch, fresh ones every epoch; default steps_per_epoch x batch_size
of the training section, else 10000), test_size
(fixed from the seed; default 1000).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Batch, Task, as_rng, check_int, positive_int, seeded_rng, to_numpy
from .limits import check_numbers, check_series
from .metrics import ConstantPredictor

VALIDATION_BATCH = 500
TOLERANCE = 0.04


def adding_sequences(count: int, length: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (length, count, 2), targets (count, 1)): values, markers and marked sums."""
    values = rng.random((length, count))
    half = length // 2
    first = rng.integers(0, half, size=count)
    second = rng.integers(half, length, size=count)
    markers = np.zeros((length, count))
    b = np.arange(count)
    markers[first, b] = 1
    markers[second, b] = 1
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values[first, b] + values[second, b])[:, None].astype(np.float32)
    return x, y


class Adding(Task):
    name = "adding"
    metric = "mse"
    higher_is_better = False
    PARAMS: ClassVar[dict] = {"length": 100, "train_size": None, "test_size": 1000}
    STEPS_SETTING: ClassVar[str] = "data.length"
    FRESH_TRAIN_SIZE: ClassVar[int] = 10000

    @classmethod
    def sequence_steps(cls, params: dict) -> int | None:
        return positive_int({**cls.PARAMS, **params}["length"])

    def __init__(self, program, seed: int, **params):
        super().__init__(program, seed, **params)
        self.length = check_int(self.params, "length", minimum=2)
        self.train_size = self.fresh_train_size()
        self.test_size = check_int(self.params, "test_size")
        check_series(self.name, self.length, "data.length")
        check_numbers(self.name, "the validation sequences", self.test_size * self.length * 4, 8,
                      "data.test_size or data.length")
        self.expect_input_size(2, "a value and a marker per step")
        self.expect_output_size(1, "the sum of the two marked values")
        self.expect_loss(("mse",), "the answer is a real number")
        self.expect_at(("last",), "one answer per sequence, after its last step")
        self._validation = None

    def batch_of(self, x, y) -> Batch:
        return Batch({self.input: x}, {self.output: y})

    def train_batches(self, batch_size: int, rng=None):
        rng = as_rng(rng, self.seed)
        for start in range(0, self.train_size, batch_size):
            yield self.batch_of(*adding_sequences(min(batch_size, self.train_size - start), self.length, rng))

    def validation(self) -> list:
        if self._validation is None:
            rng = seeded_rng(self.seed, 2)
            sizes = [min(VALIDATION_BATCH, self.test_size - s) for s in range(0, self.test_size, VALIDATION_BATCH)]
            self._validation = [self.batch_of(*adding_sequences(n, self.length, rng)) for n in sizes]
        return self._validation

    def score(self, net) -> dict:
        errors = []
        for batch in self.validation():
            y = to_numpy(net.forward(batch.inputs, lengths=batch.lengths)[self.output])
            errors.append(y[-1, :, 0].astype(np.float64) - batch.targets[self.output][:, 0])
        errors = np.concatenate(errors)
        return {"mse": float(np.mean(errors ** 2)), "solved_fraction": float(np.mean(np.abs(errors) < TOLERANCE))}

    def compute_baseline(self) -> dict:
        """Always answering the mean of the sum, 1.0 (mse 1/6 in expectation)."""
        return self.score(ConstantPredictor(self.output, [1.0]))
