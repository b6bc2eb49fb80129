"""Metric functions of the built-in tasks, and the trivial predictors their baselines run.

Metrics take numpy arrays in the runtime's time-major layout and a (T, B) validity mask.
The predictors are tiny stand-ins for a `Network` (they only have `forward`), so a task's
baseline goes through exactly the same evaluation code as a trained network.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12


def sequences_all_sets_right(p, targets, valid, threshold: float = 0.5) -> np.ndarray:
    """(B,) bool: every valid step of the sequence has every output on the right side of the
    threshold (multi-hot targets: each allowed symbol above, each other below)."""
    wrong = ((p > threshold) != (targets > 0.5)).any(axis=-1) & valid
    return ~wrong.any(axis=0)


def sequences_all_argmax_right(p, classes, valid) -> np.ndarray:
    """(B,) bool: the argmax equals the target class at every valid step."""
    wrong = (p.argmax(axis=-1) != classes) & valid
    return ~wrong.any(axis=0)


def solved_up_to(ns, solved, lo: int) -> int:
    """Largest n such that every tested n' <= n is solved (lo - 1 when n = lo is not)."""
    best = lo - 1
    for n, ok in sorted(zip(ns, solved)):
        if not ok:
            break
        best = n
    return int(best)


def cross_entropy_bits(p, classes, valid) -> float:
    """Mean over valid positions of -log2 p[target] (bits per symbol)."""
    picked = np.take_along_axis(p, np.where(valid, classes, 0)[..., None], axis=-1)[..., 0]
    return float(-(np.log2(np.maximum(picked, EPS)) * valid).sum() / max(valid.sum(), 1))


def nrmse(pred, target) -> float:
    """RMSE / standard deviation of the target."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    return float(np.sqrt(np.mean((pred - target) ** 2)) / max(target.std(), EPS))


def binary_scores(p, targets, valid, threshold: float = 0.5) -> dict:
    """accuracy, precision, recall, f1 of thresholded single-output predictions."""
    pred = (p[..., 0] > threshold)[valid]
    true = (targets[..., 0] > 0.5)[valid]
    tp = float((pred & true).sum())
    precision = tp / max(pred.sum(), 1)
    recall = tp / max(true.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, EPS)
    return {"accuracy": float((pred == true).mean()) if pred.size else 0.0,
            "precision": precision, "recall": recall, "f1": f1}


class ConstantPredictor:
    """Outputs the same vector at every step: the memoryless, input-blind predictor."""

    gives_probabilities = True

    def __init__(self, output: str, value):
        self.output, self.value = output, np.asarray(value, dtype=np.float64)

    def forward(self, inputs, lengths=None, **_):
        T, B = next(iter(inputs.values())).shape[:2]
        return {self.output: np.broadcast_to(self.value, (T, B) + self.value.shape).copy()}


class TablePredictor:
    """Outputs row k of a table when the (one-hot) input symbol at that step is k: the best
    a network without memory can do on a next-symbol task."""

    gives_probabilities = True

    def __init__(self, input: str, output: str, table):
        self.input, self.output, self.table = input, output, np.asarray(table, dtype=np.float64)

    def forward(self, inputs, lengths=None, **_):
        return {self.output: np.asarray(inputs[self.input], dtype=np.float64) @ self.table}


def majority_sets(symbols, sets, n_symbols: int, n_outputs: int) -> np.ndarray:
    """(n_symbols, n_outputs) table: for each input symbol the target set seen most often after it."""
    table = np.zeros((n_symbols, n_outputs))
    for k in range(n_symbols):
        rows = sets[symbols == k]
        if len(rows):
            uniq, counts = np.unique(rows, axis=0, return_counts=True)
            table[k] = uniq[counts.argmax()]
    return table
