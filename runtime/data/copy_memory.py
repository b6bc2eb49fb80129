"""Copy memory (Hochreiter & Schmidhuber 1997; in the form of Arjovsky et al. 2016).

Features and classes: the `symbols` data symbols 0..S-1, the blank S and the go-marker S+1
(S + 2 in all). A sequence has copy_length + lag + copy_length steps:

    input   s_1 .. s_k   blank x (lag - 1)   go   blank x k
    target  blank x (k + lag)                     s_1 .. s_k

so the target at step t + k + lag is the input symbol at step t. Loss cross_entropy at all
steps (`at: mask` trains on the recalled steps only). Metric `accuracy`: the fraction of
recalled symbols whose argmax is right. The memoryless baseline predicts the blank until
the marker and then a uniform guess: accuracy 1/S, loss k ln(S) / (2k + lag) nats per step.

Parameters: lag (>= 1, default 10), symbols (default 8), copy_length (default 10),
train_size (sequences per epoch, fresh every epoch; default steps_per_epoch x batch_size of
the training section, else 10000), test_size (default 1000).
"""
from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from .base import Task, as_rng, check_int, one_hot, positive_int, seeded_rng, valid_mask
from .limits import check_numbers, check_series
from .metrics import EPS

VALIDATION_BATCH = 500


def copy_sequences(count: int, symbols: int, copy_length: int, lag: int, rng):
    """(input classes (T, count), target classes (T, count), recall mask (T, count))."""
    k, blank, go = copy_length, symbols, symbols + 1
    T = 2 * k + lag
    data = rng.integers(0, symbols, size=(k, count))
    x = np.full((T, count), blank, dtype=np.int64)
    x[:k] = data
    x[k + lag - 1] = go
    y = np.full((T, count), blank, dtype=np.int64)
    y[k + lag:] = data
    recall = np.zeros((T, count), dtype=bool)
    recall[k + lag:] = True
    return x, y, recall


class CopyMemory(Task):
    name = "copy_memory"
    metric = "accuracy"
    higher_is_better = True
    PARAMS: ClassVar[dict] = {"lag": 10, "symbols": 8, "copy_length": 10, "train_size": None, "test_size": 1000}
    STEPS_SETTING: ClassVar[str] = "data.lag (T = lag + 2 copy_length)"
    FRESH_TRAIN_SIZE: ClassVar[int] = 10000

    @classmethod
    def sequence_steps(cls, params: dict) -> int | None:
        p = {**cls.PARAMS, **params}
        lag, k = positive_int(p["lag"]), positive_int(p["copy_length"])
        return 2 * k + lag if lag and k else None

    def __init__(self, program, seed: int, **params):
        super().__init__(program, seed, **params)
        p = self.params
        self.lag = check_int(p, "lag")
        self.symbols = check_int(p, "symbols")
        self.copy_length = check_int(p, "copy_length")
        self.train_size = self.fresh_train_size()
        self.test_size = check_int(p, "test_size")
        self.classes = self.symbols + 2
        T = 2 * self.copy_length + self.lag
        check_series(self.name, T, "data.lag or data.copy_length (T = lag + 2 copy_length)")
        check_numbers(self.name, "the validation sequences, one-hot", self.test_size * T * (self.classes + 4), 4,
                      "data.test_size, data.lag or data.symbols")
        self.expect_input_size(self.classes, f"one-hot over {self.symbols} symbols, the blank and the go-marker: symbols + 2")
        self.expect_output_size(self.classes, f"classes: {self.symbols} symbols, the blank and the go-marker: symbols + 2")
        self.expect_at(("all", "mask"), "a prediction at every step")
        self._validation = None

    def batch_of(self, count: int, rng):
        x, y, recall = copy_sequences(count, self.symbols, self.copy_length, self.lag, rng)
        return self.make_batch(one_hot(x, self.classes), y, recall=recall)

    def train_batches(self, batch_size: int, rng=None):
        rng = as_rng(rng, self.seed)
        for start in range(0, self.train_size, batch_size):
            yield self.batch_of(min(batch_size, self.train_size - start), rng)

    def validation(self) -> list:
        if self._validation is None:
            rng = seeded_rng(self.seed, 2)
            sizes = [min(VALIDATION_BATCH, self.test_size - s) for s in range(0, self.test_size, VALIDATION_BATCH)]
            self._validation = [self.batch_of(n, rng) for n in sizes]
        return self._validation

    def score(self, net) -> dict:
        right = count = 0
        loss, positions = 0.0, 0
        k, lag = self.copy_length, self.lag
        for batch in self.validation():
            p = self.predict(net, batch)
            target = batch.targets[self.output]
            classes = target if target.ndim == 2 else target.argmax(axis=-1)
            recalled = slice(k + lag, None)
            right += int((p[recalled].argmax(axis=-1) == classes[recalled]).sum())
            count += classes[recalled].size
            picked = np.take_along_axis(p, classes[..., None], axis=-1)[..., 0]
            valid = valid_mask(batch.lengths, batch.T, batch.B)
            loss -= float((np.log(np.maximum(picked, EPS)) * valid).sum())
            positions += int(valid.sum())
        return {"accuracy": right / max(count, 1), "loss": loss / max(positions, 1)}

    def compute_baseline(self) -> dict:
        """Memoryless: the blank until the marker, then a uniform guess over the symbols."""
        k = self.copy_length
        return {"accuracy": 1.0 / self.symbols, "loss": k * math.log(self.symbols) / (2 * k + self.lag)}
