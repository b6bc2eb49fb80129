"""The a^n b^n c^n final evaluation up to n = 1000 (padded batches, `lengths=`) against a slow
evaluation that runs every string on its own, with the allowed-next-symbol sets written here."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from compiler import compile_spec
from runtime import Network
from runtime.train import tasks

SPEC = Path(__file__).resolve().parents[2] / "specs" / "anbncn.yaml"


def allowed(n: int) -> np.ndarray:
    """(3n + 1, 4) 0/1: after S: a or #; inside a^n: a or b; then b..b c; c..c #."""
    rows = [[1, 0, 0, 1]] + [[1, 1, 0, 0]] * n
    rows += [[0, 1, 0, 0]] * (n - 1) + [[0, 0, 1, 0]] if n else []
    rows += [[0, 0, 1, 0]] * (n - 1) + [[0, 0, 0, 1]] if n else []
    return np.array(rows, dtype=float)


def one_string(n: int) -> np.ndarray:
    x = np.zeros((3 * n + 1, 1, 4), dtype=np.float32)
    x[0, 0, 0] = 1
    for k in range(3):
        x[1 + k * n:1 + (k + 1) * n, 0, k + 1] = 1
    return x


class Counter:
    """A predictor that counts exactly until its counter saturates at `limit` a's: strings with
    n > limit go wrong at the first b after the limit."""

    def __init__(self, limit: int):
        self.limit = limit

    def forward(self, inputs, lengths=None):
        x = np.asarray(inputs["x"])
        T, B, _ = x.shape
        L = np.full(B, T) if lengths is None else np.asarray(lengths)
        valid = np.arange(T)[:, None] < L[None, :]
        sym = np.where(valid, x.argmax(axis=-1), -1)  # (T, B)
        a = np.minimum((sym == 1).sum(axis=0), self.limit)[None, :]
        seen_b, seen_c = np.cumsum(sym == 2, axis=0), np.cumsum(sym == 3, axis=0)
        lo, hi = 0.1, 0.9
        y = np.full((T, B, 4), lo)
        y[..., 0] = np.where((sym == 0) | (sym == 1), hi, lo)
        y[..., 1] = np.where((sym == 1) | ((sym == 2) & (seen_b < a)), hi, lo)
        y[..., 2] = np.where(((sym == 2) & (seen_b >= a)) | ((sym == 3) & (seen_c < a)), hi, lo)
        y[..., 3] = np.where((sym == 0) | ((sym == 3) & (seen_c >= a)), hi, lo)
        return {"y": y * valid[..., None]}


def make(eval_n):
    spec = yaml.safe_load(SPEC.read_text())
    spec["data"]["eval_n"] = eval_n
    program = compile_spec(spec)
    return program, tasks.load_task(program, 0)


def slow_ok(predict, n: int) -> bool:
    p = predict(one_string(n))[:, 0]
    return bool((((p > 0.5) == (allowed(n) > 0.5)).all()))


def test_curve_to_1000_matches_a_per_string_evaluation_of_a_counter():
    _, task = make([1, 1000])
    counter = Counter(limit=637)
    ev = task.final_evaluate(counter)
    curve = dict(ev["solved_by_n"])
    assert sorted(curve) == list(range(1, 1001))
    rng = np.random.default_rng(0)
    sample = sorted({1, 2, 636, 637, 638, 1000, *rng.integers(1, 1001, 20).tolist()})
    for n in sample:
        assert curve[n] == int(slow_ok(lambda x: counter.forward({"x": x})["y"], n)), n
    assert ev["solved_up_to_n"] == 637  # 1..637 right, 638 wrong
    assert ev["first_unsolved_n"] == 638
    assert ev["eval_n"] == [1, 1000]
    assert len(task.eval_groups(range(1, 1001))) > 1  # several padded batches


def test_padded_batches_of_a_real_network_match_each_string_run_alone():
    program, task = make([1, 1000])
    net = Network(program, seed=3, dtype="float64")
    rng = np.random.default_rng(1)
    for name, p in net.params.items():  # weights large enough for the outputs to vary with n
        net.params[name] = rng.uniform(-2, 2, p.shape)
    groups = task.eval_groups(range(1, 1001))
    ev = task.final_evaluate(net)
    curve = dict(ev["solved_by_n"])
    checked = 0
    for g in groups[::3] + [groups[-1]]:
        batch = task.batch_of(g, cache=False)
        y = task.predict(net, batch)
        for j, n in list(enumerate(g))[:: max(1, len(g) // 3)]:
            alone = net.forward({"x": one_string(n)})["y"][:, 0]
            np.testing.assert_allclose(y[:3 * n + 1, j], alone, atol=1e-10)
            assert np.all(y[3 * n + 1:, j] == 0)  # padded steps
            assert curve[n] == int(slow_ok(lambda x: net.forward({"x": x})["y"], n))
            checked += 1
    assert checked >= 15
