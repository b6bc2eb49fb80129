"""The embedded Reber grammar (Hochreiter & Schmidhuber 1997, experiment 1).

Strings are B T <Reber string> T E or B P <Reber string> P E, the inner Reber string
B ... E walking the classic graph below with probability 1/2 per branch. Symbols (input and
output order): B, T, P, S, X, V, E. At each step the target is the multi-hot set of every
symbol allowed next (after the final E: none). The second-to-last prediction needs the
symbol seen at step 1, across the whole inner string: one bit of long-term memory.

Metric `fraction_correct`: the fraction of test strings where every prediction at every
step is right (every allowed symbol's output > 0.5, every other < 0.5), the classic
criterion. Parameters: train_size (default 2000), test_size (default 500): fixed sets drawn
from the seed; each epoch reshuffles the training set.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from compiler.errors import DataError

from .base import Task, as_rng, batched, check_int, one_hot, pad, seeded_rng, valid_mask
from .limits import check_numbers
from .metrics import TablePredictor, majority_sets, sequences_all_sets_right

SYMBOLS = "BTPSXVE"
INDEX = {s: i for i, s in enumerate(SYMBOLS)}
# state -> [(symbol, next state)]; state 0 follows the inner B, None ends the inner string.
REBER = {
    0: [("T", 1), ("P", 2)],
    1: [("S", 1), ("X", 3)],
    2: [("T", 2), ("V", 4)],
    3: [("X", 2), ("S", 5)],
    4: [("P", 3), ("V", 5)],
    5: [("E", None)],
}
VALIDATION_BATCH = 128


def embedded_reber(rng) -> tuple[str, list[str]]:
    """(string, allowed) where allowed[t] is the set of symbols allowed after string[:t + 1]."""
    wrap = "TP"[rng.integers(2)]
    out, allowed = ["B", wrap, "B"], ["TP", "B", "TP"]
    state = 0
    while state is not None:
        options = REBER[state]
        symbol, state = options[rng.integers(len(options))]
        out.append(symbol)
        allowed.append("".join(s for s, _ in REBER[state]) if state is not None else wrap)
    out += [wrap, "E"]
    allowed += ["E", ""]
    return "".join(out), allowed


def encode(string: str, allowed: list[str]) -> tuple[np.ndarray, np.ndarray]:
    x = one_hot([INDEX[s] for s in string], len(SYMBOLS))
    y = np.zeros((len(string), len(SYMBOLS)), dtype=np.float32)
    for t, options in enumerate(allowed):
        y[t, [INDEX[s] for s in options]] = 1
    return x, y


class EmbeddedReber(Task):
    name = "embedded_reber"
    metric = "fraction_correct"
    higher_is_better = True
    PARAMS: ClassVar[dict] = {"train_size": 2000, "test_size": 500}

    @classmethod
    def sequence_steps(cls, params: dict) -> None:
        return None  # random strings: their length is known only when they are drawn

    def __init__(self, program, seed: int, **params):
        super().__init__(program, seed, **params)
        self.train_size = check_int(self.params, "train_size")
        self.test_size = check_int(self.params, "test_size")
        self.expect_input_size(len(SYMBOLS), "one-hot B, T, P, S, X, V, E")
        self.expect_output_size(len(SYMBOLS), "one output per symbol B, T, P, S, X, V, E")
        self.expect_loss(("bce", "mse"), "several next symbols can be allowed: multi-hot targets")
        self.expect_at(("all", "mask"), "a prediction at every step")
        # a string has about 25 symbols (seldom more than 60), one-hot over 7 symbols when batched
        check_numbers(self.name, "the training and test strings", (self.train_size + self.test_size) * 60 * 8, 4,
                      "data.train_size or data.test_size")
        self.train_strings = self._draw(self.train_size, stream=1)
        self.test_strings = self._draw(self.test_size, stream=2)
        self._validation = None

    def _draw(self, count: int, stream: int) -> list:
        rng = seeded_rng(self.seed, stream)
        return [encode(*embedded_reber(rng)) for _ in range(count)]

    def encode(self, text: str) -> dict:
        """{input: one-hot (T, 1, 7)} of a string over B, T, P, S, X, V, E."""
        unknown = sorted(set(text) - set(SYMBOLS))
        if unknown:
            raise DataError(f"symbols {''.join(unknown)!r} are not among {SYMBOLS}")
        return {self.input: one_hot([INDEX[s] for s in text], len(SYMBOLS))[:, None]}

    def decode(self, symbols) -> str:
        return "".join(SYMBOLS[int(i)] for i in np.asarray(symbols).reshape(-1))

    def batch_of(self, pairs):
        xs, ys = zip(*pairs)
        x, lengths = pad(xs)
        y, _ = pad(ys)
        return self.make_batch(x, y, lengths)

    def train_batches(self, batch_size: int, rng=None):
        order = as_rng(rng, self.seed).permutation(len(self.train_strings))
        for idx in batched(order, batch_size):
            yield self.batch_of([self.train_strings[i] for i in idx])

    def validation(self) -> list:
        if self._validation is None:
            self._validation = [self.batch_of(group) for group in batched(self.test_strings, VALIDATION_BATCH)]
        return self._validation

    def score(self, net) -> dict:
        right, memory_right = [], []
        for batch in self.validation():
            p = self.predict(net, batch)
            valid = valid_mask(batch.lengths, batch.T, batch.B)
            target = batch.targets[self.output]
            right.append(sequences_all_sets_right(p, target, valid))
            # the long-term prediction: after the inner E comes the symbol seen at step 1
            t = batch.valid_lengths() - 3
            b = np.arange(batch.B)
            memory_right.append(((p[t, b] > 0.5) == (target[t, b] > 0.5)).all(axis=-1))
        right, memory_right = np.concatenate(right), np.concatenate(memory_right)
        return {"fraction_correct": float(right.mean()), "second_to_last_right": float(memory_right.mean())}

    def compute_baseline(self) -> dict:
        """A memoryless predictor: the most frequent allowed set after each symbol."""
        symbols = np.concatenate([x.argmax(axis=-1) for x, _ in self.train_strings])
        sets = np.concatenate([y for _, y in self.train_strings])
        table = majority_sets(symbols, sets, len(SYMBOLS), len(SYMBOLS))
        return self.score(TablePredictor(self.input, self.output, table))
