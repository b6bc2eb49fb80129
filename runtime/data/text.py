"""Character-level text tasks on a UTF-8 file: next-character prediction and end of word.

`path` is relative to the spec file's folder (`program.source`). The bundled corpus
(`<repo>/data/corpus.txt`, see `corpus.py`) is generated there when it is missing. It must be a
regular file of at most `max_mb` MiB (default 512; see `source.py`).

Alphabet (`alphabet`): `lower27`: the text is lower-cased, every run of characters other
than a-z becomes one space; symbols a..z = 0..25, space = 26 (the 27 symbols of the specs).
`file`: the file's own characters, unchanged, sorted by code point. `auto` (default):
lower27 when the spec's input has 27 features, else the file's alphabet.

Mode `next_char` (default): input one-hot c_t, target the class of c_{t+1}, cross_entropy.
Metric `bpc`: bits per character (mean -log2 p[c_{t+1}]) on the held-out part; also `nats`
(the same in nats, the unit of the specs' targets) and `accuracy`. Baseline: the unigram
distribution of the training part (its cross-entropy on the held-out part).

Mode `end_of_word` (seeds 000, "predict whether the current word has finished, i.e. that
the next character is the blank"): target 1 when c_{t+1} is not a letter, one output, bce.
Metric `accuracy` (threshold 0.5; also precision, recall, f1); baseline: the majority answer.

The last `validation_split` of the text (default: training.validation_split, else 0.1) is
held out, cut into windows of seq_len (at most `validation_chars` characters of it, default
100000). The training part is cut into windows of seq_len, with a random offset and order
each epoch.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import ClassVar

import numpy as np

from compiler.errors import DataError

from .base import (
    Batch,
    Task,
    as_rng,
    batched,
    check_choice,
    check_float,
    check_int,
    fail,
    one_hot,
    valid_mask,
)
from .corpus import ensure_bundled
from .metrics import ConstantPredictor, binary_scores, cross_entropy_bits
from .source import check_file, max_bytes

LOWER27 = "abcdefghijklmnopqrstuvwxyz "
VALIDATION_BATCH = 256


def normalize_lower27(text: str) -> str:
    """Lower-case; every run of characters other than a-z becomes a single space."""
    return re.sub(r"[^a-z]+", " ", text.lower())


def encode_text(text: str, alphabet: str) -> tuple[np.ndarray, str]:
    """(symbol indices, alphabet as a string) for `lower27` or `file`."""
    if alphabet == "lower27":
        text = normalize_lower27(text)
        lookup = np.zeros(256, dtype=np.int64)
        lookup[np.frombuffer(LOWER27.encode("ascii"), dtype=np.uint8)] = np.arange(27)
        return lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)], LOWER27
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    uniq, codes = np.unique(points, return_inverse=True)
    return codes.astype(np.int64), "".join(map(chr, uniq))


def resolve_path(program, path) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute():
        base = Path(program.source).resolve().parent if getattr(program, "source", None) else Path.cwd()
        p = base / p
    p = p.resolve()
    if not p.exists() and not ensure_bundled(p):
        raise DataError(f"data.path: no such file {p} (paths are relative to the spec file's folder)")
    return p


class Text(Task):
    name = "text"
    metric = "bpc"
    higher_is_better = False
    PARAMS: ClassVar[dict] = {"path": None, "seq_len": 100, "alphabet": "auto", "mode": "next_char",
              "validation_split": None, "validation_chars": 100_000, "max_mb": None}

    def __init__(self, program, seed: int, **params):
        super().__init__(program, seed, **params)
        p = self.params
        if p["path"] is None or not isinstance(p["path"], str):
            raise fail("path", "the path of a UTF-8 text file", p["path"])
        self.mode = check_choice(p, "mode", ("next_char", "end_of_word"))
        self.seq_len = check_int(p, "seq_len")
        self.validation_chars = check_int(p, "validation_chars")
        if p["validation_split"] is None:
            p["validation_split"] = (program.training or {}).get("validation_split", 0.1)
        split = check_float(p, "validation_split", 0, 1, lo_open=True, hi_open=True)
        choice = check_choice(p, "alphabet", ("auto", "lower27", "file"))
        self.path = check_file(resolve_path(program, p["path"]), "path", max_bytes(p))
        try:
            raw = self.path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError) as e:
            raise DataError(f"data.path: cannot read {self.path} as UTF-8 text: {e}") from e
        alphabet = choice if choice != "auto" else ("lower27" if self.input_size == 27 else "file")
        self.codes, self.alphabet = encode_text(raw, alphabet)
        self._check_sizes(choice, raw)
        n_val = max(self.seq_len + 1, round(len(self.codes) * split))
        if len(self.codes) - n_val < self.seq_len + 1:
            raise DataError(f"data.path: {self.path} has {len(self.codes)} characters, too few for "
                            f"windows of data.seq_len = {self.seq_len} in both the training and the held-out part")
        self.train_codes, self.val_codes = self.codes[:-n_val], self.codes[-n_val:]
        self.boundary = np.array([not ch.isalpha() for ch in self.alphabet])
        if self.mode == "end_of_word":
            self.metric, self.higher_is_better = "accuracy", True
        self._validation = None

    def _check_sizes(self, choice: str, raw: str):
        k = len(self.alphabet)
        what = "a-z and space" if self.alphabet == LOWER27 else f"the {k} distinct characters of {self.path.name}"
        if self.input_size != k:
            if choice == "auto":
                own = len(encode_text(raw, "file")[1])
                what = f"a-z and space, or {own} for the {own} distinct characters of {self.path.name}"
                k = 27
            self.expect_input_size(k, what)
        if self.mode == "next_char":
            self.expect_output_size(k, f"one class per character: {what}")
            self.expect_loss(("cross_entropy",), "a distribution over the next character")
        else:
            self.expect_output_size(1, "whether the next character ends the word")
            self.expect_loss(("bce", "mse"), "a yes/no target")
        self.expect_at(("all", "mask"), "a prediction at every step")

    # -- text in and out (priming and generation) ------------------------------------------------
    def encode(self, text: str) -> dict:
        """{input: one-hot (T, 1, size)} of `text` in the task's alphabet."""
        if self.alphabet == LOWER27:
            codes = encode_text(text, "lower27")[0]
        else:
            index = {ch: i for i, ch in enumerate(self.alphabet)}
            unknown = sorted(set(text) - set(index))
            if unknown:
                raise DataError(f"characters {''.join(unknown)!r} are not in the alphabet of {self.path.name}")
            codes = np.array([index[ch] for ch in text], dtype=np.int64)
        return {self.input: one_hot(codes, len(self.alphabet))[:, None]}

    def decode(self, symbols) -> str:
        """Symbol indices (T,) as text."""
        return "".join(self.alphabet[int(i)] for i in np.asarray(symbols).reshape(-1))

    # -- batches ------------------------------------------------------------------------------
    def batch_of(self, codes: np.ndarray, starts) -> Batch:
        idx = np.asarray(starts)[None, :] + np.arange(self.seq_len + 1)[:, None]  # (L + 1, B)
        window = codes[idx]
        x = one_hot(window[:-1], len(self.alphabet))
        following = window[1:]
        y = following if self.mode == "next_char" else self.boundary[following][..., None].astype(np.float32)
        return self.make_batch(x, y)

    def epoch_size(self) -> int:
        return (len(self.train_codes) - 1) // self.seq_len

    def train_batches(self, batch_size: int, rng=None):
        rng = as_rng(rng, self.seed)
        L = self.seq_len
        last = len(self.train_codes) - L - 1  # the last valid start
        offset = int(rng.integers(min(L, last + 1)))
        starts = rng.permutation(np.arange(offset, last + 1, L))
        for group in batched(starts, batch_size):
            yield self.batch_of(self.train_codes, group)

    def validation(self) -> list:
        if self._validation is None:
            codes = self.val_codes[:self.validation_chars + 1]
            starts = np.arange(0, len(codes) - self.seq_len, self.seq_len)
            self._validation = [self.batch_of(codes, group) for group in batched(starts, VALIDATION_BATCH)]
        return self._validation

    # -- metrics ------------------------------------------------------------------------------
    def score(self, net) -> dict:
        probs, targets, valid = [], [], []
        for batch in self.validation():
            probs.append(self.predict(net, batch))
            targets.append(batch.targets[self.output])
            valid.append(valid_mask(batch.lengths, batch.T, batch.B))
        p, y, v = (np.concatenate(a, axis=1) for a in (probs, targets, valid))
        if self.mode == "end_of_word":
            return binary_scores(p, y, v)
        classes = y if y.ndim == 2 else y.argmax(axis=-1)
        bpc = cross_entropy_bits(p, classes, v)
        accuracy = float(((p.argmax(axis=-1) == classes) & v).sum() / max(v.sum(), 1))
        return {"bpc": bpc, "nats": bpc * math.log(2), "accuracy": accuracy}

    def compute_baseline(self) -> dict:
        if self.mode == "end_of_word":
            rate = float(self.boundary[self.train_codes[1:]].mean())
            return self.score(ConstantPredictor(self.output, [rate]))
        counts = np.bincount(self.train_codes, minlength=len(self.alphabet)) + 1.0  # add-one
        return self.score(ConstantPredictor(self.output, counts / counts.sum()))

