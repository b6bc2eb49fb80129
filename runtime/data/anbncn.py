"""The languages a^n b^n c^n and a^n b^n (Gers & Schmidhuber 2001): next-symbol prediction.

Mode `next_symbol` (default): inputs one-hot over {S, a, b, c} ({S, a, b} for anbn), the
string S a^n b^n c^n; targets at each step the multi-hot set of symbols allowed next, over
{a, b, c, #} ({a, b, #}), # being the terminal symbol. For n = 3 (seeds 004):

    input   S    a    a    a    b  b  b  c  c  c
    target  a,#  a,b  a,b  a,b  b  b  c  c  c  #

(after S the string may be empty, so # is allowed; once the first b is seen, n is known and
every later symbol is determined). Loss bce (or mse). A test string is solved when at every
step each allowed symbol's output is > 0.5 and every other one's < 0.5; the metric
`solved_up_to_n` is the largest n such that every tested n' <= n is solved.

Mode `one_to_many`: the input is one-hot n (position n - 1) at t = 0 and zero afterwards;
the targets are the classes of a^n b^n c^n # over {a, b, c, #} (cross_entropy, softmax);
a string is solved when the argmax is right at every step.

The final evaluation (`final_evaluate`, evaluation.json) tests every n in eval_n (default:
test_n), e.g. [1, 1000], in padded batches with `lengths=` (a few strings of similar n each),
and reports `solved_up_to_n` over that range with the whole curve `solved_by_n` ([n, 0/1]
pairs); the per-epoch metric stays on test_n.

Parameters: train_n [lo, hi] (default [1, 10]), test_n [lo, hi] (default [1, 50]), eval_n,
train_size (strings per epoch, n uniform in train_n; default steps_per_epoch x batch_size
of the training section, else 1000), mode.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import (
    Batch,
    Task,
    positive_int,
    as_rng,
    batched,
    check_choice,
    check_range,
    one_hot,
    pad,
    valid_mask,
)
from .limits import check_numbers, check_series
from .metrics import (
    ConstantPredictor,
    TablePredictor,
    majority_sets,
    sequences_all_argmax_right,
    sequences_all_sets_right,
    solved_up_to,
)

VALIDATION_BATCH = 64
EVAL_STEPS = 200_000  # steps x strings in one padded batch of the final evaluation


def string(n: int, letters: int) -> np.ndarray:
    """Input symbol indices of S a^n b^n (c^n): S = 0, a = 1, b = 2, c = 3."""
    return np.array([0] + [k for k in range(1, letters + 1) for _ in range(n)], dtype=np.int64)


def next_sets(n: int, letters: int) -> np.ndarray:
    """(len, letters + 1) multi-hot sets of allowed next symbols over (a, b, [c,] #)."""
    end = letters
    sets = np.zeros((letters * n + 1, letters + 1), dtype=np.float32)
    sets[0, [0, end]] = 1  # after S: a, or the end of the empty string
    t = 1
    for block in range(letters):
        for j in range(1, n + 1):
            if block == 0:
                sets[t, [0, 1]] = 1  # after an a: another a or the first b
            elif j < n:
                sets[t, block] = 1
            else:
                sets[t, block + 1 if block + 1 < letters else end] = 1
            t += 1
    return sets


def generated_classes(n: int, letters: int) -> np.ndarray:
    """one_to_many targets: a^n b^n (c^n) then # as class indices over (a, b, [c,] #)."""
    return np.array([k for k in range(letters) for _ in range(n)] + [letters], dtype=np.int64)


class AnBnCn(Task):
    name = "anbncn"
    metric = "solved_up_to_n"
    higher_is_better = True
    letters = 3
    PARAMS: ClassVar[dict] = {"train_n": [1, 10], "test_n": [1, 50], "train_size": None, "mode": "next_symbol",
                              "eval_n": None}
    STEPS_SETTING: ClassVar[str] = "data.train_n/test_n"
    FRESH_TRAIN_SIZE: ClassVar[int] = 1000

    @classmethod
    def sequence_steps(cls, params: dict) -> int | None:
        """S, `letters` runs of n symbols and # for the largest n trained or tested."""
        p = {**cls.PARAMS, **params}

        def top(v, default):
            ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(positive_int(x) or x == 0 for x in v)
            return int(v[1]) if ok else default
        return cls.letters * max(top(p["train_n"], 10), top(p["test_n"], 50)) + 2

    def __init__(self, program, seed: int, **params):
        super().__init__(program, seed, **params)
        p = self.params
        self.mode = check_choice(p, "mode", ("next_symbol", "one_to_many"))
        lowest = 1 if self.mode == "one_to_many" else 0
        self.train_n = check_range(p, "train_n", lowest)
        self.test_n = check_range(p, "test_n", lowest)
        self.eval_n = self.test_n if p.get("eval_n") is None else check_range(p, "eval_n", lowest)
        self.train_size = self.fresh_train_size()
        names = "abc"[:self.letters]
        outputs = ", ".join(names) + ", #"
        if self.mode == "next_symbol":
            self.expect_input_size(self.letters + 1, f"one-hot S, {', '.join(names)}")
            self.expect_output_size(self.letters + 1, f"{outputs}: the terminal symbol last")
            self.expect_loss(("bce", "mse"), "several next symbols can be allowed: multi-hot targets")
        else:
            self.n_max = max(self.train_n[1], self.test_n[1], self.eval_n[1])
            self.expect_input_size(self.n_max, f"one-hot n for n = 1..{self.n_max} at the first step")
            self.expect_output_size(self.letters + 1, f"classes {outputs}")
        self.expect_at(("all", "mask"), "a prediction at every step")
        hi = max(self.train_n[1], self.test_n[1])
        T = self.letters * hi + 1  # the longest string: S, then n of each letter
        check_series(self.name, T, "data.train_n or data.test_n")
        kinds = (self.train_n[1] - self.train_n[0]) + (self.test_n[1] - self.test_n[0]) + 2
        check_numbers(self.name, "one sequence per n", kinds * T * (self.input_size + self.output_size), 4,
                      "data.train_n or data.test_n")

    # -- sequences ----------------------------------------------------------------------------
    def sequence(self, n: int):
        """(inputs (L, size), targets: multi-hot (L, K) or classes (L,)) of the string for n
        (made once per n: batches copy them)."""
        cache = self.__dict__.setdefault("_sequences", {})
        if n not in cache:
            cache[n] = self._make_sequence(n)
        return cache[n]

    def _make_sequence(self, n: int):
        if self.mode == "next_symbol":
            return one_hot(string(n, self.letters), self.letters + 1), next_sets(n, self.letters)
        classes = generated_classes(n, self.letters)
        x = np.zeros((len(classes), self.n_max), dtype=np.float32)
        x[0, n - 1] = 1
        return x, classes

    def batch_of(self, ns, cache: bool = True) -> Batch:
        make = self.sequence if cache else self._make_sequence
        xs, ys = zip(*(make(int(n)) for n in ns))
        x, lengths = pad(xs)
        y, _ = pad(ys, value=0 if self.mode == "next_symbol" else -1)
        return self.make_batch(x, y, lengths)

    def train_batches(self, batch_size: int, rng=None):
        rng = as_rng(rng, self.seed)
        lo, hi = self.train_n
        for start in range(0, self.train_size, batch_size):
            size = min(batch_size, self.train_size - start)
            yield self.batch_of(rng.integers(lo, hi + 1, size=size))

    def test_ns(self) -> list[int]:
        return list(range(self.test_n[0], self.test_n[1] + 1))

    def validation(self) -> list:
        """The test strings in batches (made once: the same every epoch)."""
        if "_validation" not in self.__dict__:
            self._validation = [self.batch_of(ns) for ns in batched(self.test_ns(), VALIDATION_BATCH)]
        return list(self._validation)

    # -- metric -------------------------------------------------------------------------------
    def score(self, net) -> dict:
        groups = batched(self.test_ns(), VALIDATION_BATCH)
        return self._score(net, zip(groups, self.validation()), self.test_n[0])

    def train_solved(self, net) -> bool:
        """True when every string with n in train_n is predicted right (the stopping rule of Gers &
        Schmidhuber 2001: train until the training set is learned; early_stopping.train_solved)."""
        if "_train_set" not in self.__dict__:
            ns = list(range(self.train_n[0], self.train_n[1] + 1))
            self._train_set = [(g, self.batch_of(g)) for g in batched(ns, VALIDATION_BATCH)]
        return self._score(net, self._train_set, self.train_n[0])["first_unsolved_n"] is None

    def final_evaluate(self, net) -> dict:
        """`evaluate` over eval_n (every n, in padded batches of EVAL_STEPS symbols or fewer),
        with the curve `solved_by_n`: [[n, 1 if the string for n is predicted right else 0], ...]."""
        lo, hi = self.eval_n
        pairs = ((g, self.batch_of(g, cache=False)) for g in self.eval_groups(range(lo, hi + 1)))
        result = self._score(net, pairs, lo, curve=True)
        result["eval_n"] = [lo, hi]
        result["baseline"] = self.baseline()[self.metric]
        return result

    def eval_groups(self, ns) -> list:
        """Consecutive n in groups whose padded batch holds at most EVAL_STEPS steps x strings."""
        groups, group = [], []
        for n in ns:
            if group and (len(group) + 1) * (self.letters * n + 1) > EVAL_STEPS:
                groups.append(group)
                group = []
            group.append(n)
        return groups + ([group] if group else [])

    def _score(self, net, pairs, lo, curve=False) -> dict:
        ns, solved = [], []
        for group, batch in pairs:
            p = self.predict(net, batch)
            valid = valid_mask(batch.lengths, batch.T, batch.B)
            target = batch.targets[self.output]
            if self.mode == "next_symbol":
                ok = sequences_all_sets_right(p, target, valid)
            else:
                classes = target if target.ndim == 2 else target.argmax(axis=-1)
                ok = sequences_all_argmax_right(p, classes, valid)
            ns += group
            solved += [bool(v) for v in ok]
        unsolved = [n for n, ok in zip(ns, solved) if not ok]
        out = {
            "solved_up_to_n": solved_up_to(ns, solved, lo),
            "solved_fraction": float(np.mean(solved)),
            "first_unsolved_n": unsolved[0] if unsolved else None,
        }
        if curve:
            out["solved_by_n"] = [[int(n), int(ok)] for n, ok in zip(ns, solved)]
        return out

    def compute_baseline(self) -> dict:
        """A memoryless predictor: the most frequent next-symbol set after each input symbol
        (next_symbol), or the most frequent class at every step (one_to_many)."""
        ns = range(self.train_n[0], self.train_n[1] + 1)
        seqs = [self.sequence(n) for n in ns]
        if self.mode == "next_symbol":
            symbols = np.concatenate([x.argmax(axis=-1) for x, _ in seqs])
            sets = np.concatenate([y for _, y in seqs])
            table = majority_sets(symbols, sets, self.letters + 1, self.letters + 1)
            stub = TablePredictor(self.input, self.output, table)
        else:
            counts = np.bincount(np.concatenate([y for _, y in seqs]), minlength=self.letters + 1)
            stub = ConstantPredictor(self.output, counts / counts.sum())
        return self.score(stub)


class AnBn(AnBnCn):
    """a^n b^n: inputs S, a, b; outputs a, b, #."""

    name = "anbn"
    letters = 2

