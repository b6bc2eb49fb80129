"""The built-in data tasks (runtime/data): batches in the runtime's shapes, deterministic per
seed, contents checked against independent oracles, metrics at their perfect and trivial ends.

Oracles: brute-force membership tests of a^n b^n (c^n) and of the embedded Reber grammar
written here from the definitions (not from the generators' code), the marked sum and the
shifted symbols read back from the inputs, a second integrator (Heun, step 0.01) for
Mackey-Glass, closed forms (log2 of the alphabet, Var of a sum of uniforms), and stub
networks whose `forward` returns the targets.
"""
from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import compiler
from compiler.errors import DataError
from runtime import Network
from runtime.data import TASKS, Batch, make_task
from runtime.data import corpus as corpus_module
from runtime.data.mackey_glass import mackey_glass

ROOT = corpus_module.BUNDLED.parents[1]


# -- helpers ---------------------------------------------------------------------------------------

@functools.cache
def program(inputs: int, outputs: int, activation: str = "softmax", loss: str = "cross_entropy",
            at: str = "all"):
    """A tiny Elman net x -> h -> y with the given sizes, output activation, loss and `at`."""
    return compiler.compile_spec({
        "timeloom": 1, "name": "t",
        "inputs": {"x": {"size": inputs}},
        "units": {"h": {"size": 3, "activation": "tanh"}, "y": {"size": outputs, "activation": activation}},
        "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
        "outputs": {"y": {"loss": loss, "at": at}},
    })


def task(data: dict, inputs: int, outputs: int, seed: int = 0, **kw):
    return make_task(program(inputs, outputs, **kw), data, seed)


def key(inputs: dict) -> str:
    return hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in inputs.values())).hexdigest()


class Oracle:
    """A stand-in network whose forward returns each validation batch's targets as outputs
    (class indices one-hot; an `at: last` target placed at the last valid step)."""

    def __init__(self, t, corrupt=None):
        self.t, self.by_key = t, {key(b.inputs): b for b in t.evaluation_batches()}
        self.corrupt = corrupt

    def forward(self, inputs, lengths=None, **_):
        b = self.by_key[key(inputs)]
        y = np.asarray(b.targets[self.t.output], dtype=np.float64)
        if b.targets[self.t.output].dtype.kind in "iu":
            y = np.eye(self.t.output_size)[b.targets[self.t.output]]
        if self.t.out.at == "last":
            full = np.zeros((b.T,) + y.shape)
            full[b.valid_lengths() - 1, np.arange(b.B)] = y
            y = full
        if self.corrupt:
            y = self.corrupt(b, y.copy())
        return {self.t.output: y}


class Constant:
    """A stand-in network answering the same vector at every step."""

    def __init__(self, value):
        self.value = np.asarray(value, dtype=np.float64)

    def forward(self, inputs, lengths=None, **_):
        T, B = next(iter(inputs.values())).shape[:2]
        return {"y": np.broadcast_to(self.value, (T, B) + self.value.shape).copy()}


def first_batch(t, seed=None, size=8) -> Batch:
    rng = None if seed is None else np.random.default_rng(seed)
    return next(iter(t.train_batches(size, rng)))


def same(a: Batch, b: Batch) -> bool:
    parts = lambda x: [x.inputs["x"], x.targets["y"]] + ([] if x.lengths is None else [x.lengths])
    return all(p.shape == q.shape and np.array_equal(p, q) for p, q in zip(parts(a), parts(b)))


def decode(batch: Batch, alphabet: str, b: int) -> str:
    """The b-th input sequence of a batch as a string of symbols."""
    x = batch.inputs["x"][:batch.valid_lengths()[b], b]
    return "".join(alphabet[i] for i in x.argmax(axis=-1))


def small_text(tmp_path, text=None, name="t.txt"):
    path = tmp_path / name
    path.write_text(text or corpus_module.generate_corpus(size=6000, seed=3), encoding="utf-8")
    return str(path)


# -- every example spec gets a task whose batches the network accepts -------------------------------

@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "specs").glob("*.yaml")))
def test_every_example_spec_builds_its_task_and_the_network_takes_its_batches(name):
    path = ROOT / "specs" / f"{name}.yaml"
    p = compiler.compile_spec(path)
    t = make_task(p, p.data, seed=0)
    if name == "esn":  # a 500-unit reservoir takes seconds to set up; 20 units check the same shapes
        spec = yaml.safe_load(path.read_text())
        spec["blocks"]["res"]["size"] = 20
        p = compiler.compile_spec(spec)
    assert type(t) is TASKS[p.data.get("task", "files")]
    b = first_batch(t, seed=0, size=2)
    if b.T > 400:  # one long series (esn): a short piece is enough to check the shapes
        b = Batch({"x": b.inputs["x"][:50]}, {"y": b.targets["y"][:50]})
    loss = Network(p, dtype="float64").loss(b.inputs, b.targets, lengths=b.lengths, masks=b.masks)
    assert np.isfinite(loss)
    assert t.validation() and t.metric in t.baseline()


# -- determinism -------------------------------------------------------------------------------------

GENERATED = {
    "anbncn": ({"task": "anbncn", "train_n": [1, 10], "test_n": [1, 12]}, (4, 4), {"loss": "bce", "activation": "sigmoid"}),
    "anbn": ({"task": "anbn", "train_n": [1, 10], "test_n": [1, 12]}, (3, 3), {"loss": "bce", "activation": "sigmoid"}),
    "embedded_reber": ({"task": "embedded_reber", "train_size": 50, "test_size": 20}, (7, 7),
                       {"loss": "bce", "activation": "sigmoid"}),
    "adding": ({"task": "adding", "length": 20, "test_size": 30}, (2, 1),
               {"loss": "mse", "activation": "identity", "at": "last"}),
    "copy_memory": ({"task": "copy_memory", "lag": 5, "test_size": 30}, (10, 10), {}),
    "mackey_glass": ({"task": "mackey_glass", "length": 600, "noise": 0.1, "seq_len": 50, "discard": 100}, (1, 1),
                     {"loss": "mse", "activation": "identity"}),
}


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generators_are_deterministic_per_seed_and_differ_across_seeds(name):
    data, sizes, kw = GENERATED[name]
    a, a2, b = (task(data, *sizes, seed=s, **kw) for s in (1, 1, 2))
    assert same(first_batch(a), first_batch(a2))
    assert same(first_batch(a, seed=5), first_batch(a2, seed=5))
    assert same(a.validation()[0], a2.validation()[0])
    assert not same(first_batch(a), first_batch(b))
    assert not same(first_batch(a, seed=5), first_batch(a, seed=6))
    if name not in ("anbncn", "anbn"):  # their test strings are all n of the range, by design
        assert not same(a.validation()[0], b.validation()[0])


def test_text_batches_are_deterministic_per_seed(tmp_path):
    data = {"task": "text", "path": small_text(tmp_path), "seq_len": 20}
    a, a2, b = (task(data, 27, 27, seed=s) for s in (1, 1, 2))
    assert same(first_batch(a), first_batch(a2)) and not same(first_batch(a), first_batch(b))


# -- a^n b^n c^n and a^n b^n -------------------------------------------------------------------------

def in_language(word: str, letters: str) -> bool:
    n = len(word) // len(letters)
    return word == "".join(c * n for c in letters)


def is_prefix(word: str, letters: str) -> bool:
    """Some a^m b^m (c^m) starts with `word` (brute force over m)."""
    return any("".join(c * m for c in letters).startswith(word) for m in range(len(word) + 1))


def allowed_after(prefix: str, letters: str) -> set:
    """Symbols allowed after `prefix`: a letter that keeps it a prefix, # if it is a word."""
    allowed = {c for c in letters if is_prefix(prefix + c, letters)}
    return allowed | ({"#"} if in_language(prefix, letters) else set())


@pytest.mark.parametrize("name,letters", [("anbncn", "abc"), ("anbn", "ab")])
def test_anbncn_strings_are_in_the_language_and_targets_are_the_allowed_next_symbols(name, letters):
    k = len(letters)
    t = task({"task": name, "train_n": [0, 6], "test_n": [0, 6]}, k + 1, k + 1, loss="bce", activation="sigmoid")
    outputs = letters + "#"
    for batch in t.validation() + [first_batch(t, seed=3, size=16)]:
        for b in range(batch.B):
            s = decode(batch, "S" + letters, b)
            assert s[0] == "S" and in_language(s[1:], letters)
            for i in range(len(s)):
                target = batch.targets["y"][i, b]
                assert {outputs[j] for j in np.flatnonzero(target)} == allowed_after(s[1:i + 1], letters)
            assert not batch.targets["y"][len(s):, b].any()  # padding carries no target


def test_anbncn_matches_the_lecture_example_for_n_3():
    t = task({"task": "anbncn", "train_n": [3, 3], "test_n": [3, 3]}, 4, 4, loss="bce", activation="sigmoid")
    batch = t.validation()[0]
    assert decode(batch, "Sabc", 0) == "Saaabbbccc"
    got = [",".join(sorted("abc#"[j] for j in np.flatnonzero(row))) for row in batch.targets["y"][:, 0]]
    assert got == ["#,a", "a,b", "a,b", "a,b", "b", "b", "c", "c", "c", "#"]


def test_anbncn_solved_up_to_n_counts_the_unbroken_run_of_solved_strings():
    t = task({"task": "anbncn", "train_n": [1, 10], "test_n": [1, 20]}, 4, 4, loss="bce", activation="sigmoid")
    result = t.evaluate(Oracle(t))
    assert result["solved_up_to_n"] == 20 and result["solved_fraction"] == 1.0

    def break_n_8_and_13(batch, y):  # flip the last prediction of the strings with n = 8 and 13
        for b, length in enumerate(batch.valid_lengths()):
            if (length - 1) // 3 in (8, 13):
                y[length - 1, b] = 1 - y[length - 1, b]
        return y
    broken = t.evaluate(Oracle(t, break_n_8_and_13))
    assert broken["solved_up_to_n"] == 7 and broken["first_unsolved_n"] == 8
    assert broken["solved_fraction"] == pytest.approx(18 / 20)
    assert t.baseline()["solved_up_to_n"] == 0 and broken["baseline"] == 0


def test_anbncn_one_to_many_gives_n_at_the_first_step_and_the_string_as_classes():
    p = compiler.compile_spec(ROOT / "specs" / "one_to_many.yaml")
    t = make_task(p, p.data, seed=0)
    batch = t.validation()[0]
    for b in range(batch.B):
        n = batch.inputs["x"][0, b].argmax() + 1
        assert batch.inputs["x"][0, b].sum() == 1 and not batch.inputs["x"][1:, b].any()
        classes = batch.targets["y"][:batch.valid_lengths()[b], b]
        assert "".join("abc#"[c] for c in classes) == "a" * n + "b" * n + "c" * n + "#"
    assert t.evaluate(Oracle(t))["solved_up_to_n"] == 10
    assert t.evaluate(Constant([0.4, 0.3, 0.2, 0.1]))["solved_up_to_n"] == 0


# -- embedded Reber --------------------------------------------------------------------------------

REBER_EDGES = {  # the Reber graph, written out from Hochreiter & Schmidhuber (1997), fig. 5
    "r0": {"T": "r1", "P": "r2"}, "r1": {"S": "r1", "X": "r3"}, "r2": {"T": "r2", "V": "r4"},
    "r3": {"X": "r2", "S": "r5"}, "r4": {"P": "r3", "V": "r5"}, "r5": {"E": "done"},
}


def embedded_reber_automaton():
    """state -> {symbol: next state} for B (T|P) B <Reber> E (T|P) E, the branch remembered."""
    edges = {"start": {"B": "e1"}, "e1": {"T": "T.in", "P": "P.in"}, "accept": {}}
    for w in "TP":
        edges[f"{w}.in"] = {"B": f"{w}.r0"}
        for state, out in REBER_EDGES.items():
            edges[f"{w}.{state}"] = {s: f"{w}.{nxt}" for s, nxt in out.items()}
        edges[f"{w}.done"] = {w: "tail"}
    edges["tail"] = {"E": "accept"}
    return edges


def test_embedded_reber_strings_are_accepted_and_targets_list_every_legal_next_symbol():
    edges = embedded_reber_automaton()
    t = task({"task": "embedded_reber", "train_size": 300, "test_size": 10}, 7, 7, loss="bce", activation="sigmoid")
    lengths = []
    for batch in t.train_batches(64, np.random.default_rng(0)):
        for b in range(batch.B):
            s = decode(batch, "BTPSXVE", b)
            state = "start"
            for i, symbol in enumerate(s):
                assert symbol in edges[state], f"{s!r} leaves the grammar at {i}"
                state = edges[state][symbol]
                legal = {"BTPSXVE"[j] for j in np.flatnonzero(batch.targets["y"][i, b])}
                assert legal == set(edges[state])
            assert state == "accept" and s[1] == s[-2]
            lengths.append(len(s))
    assert len(lengths) == 300 and min(lengths) == 9 and max(lengths) > 15


def test_embedded_reber_metric_is_the_fraction_of_fully_right_strings():
    t = task({"task": "embedded_reber", "train_size": 100, "test_size": 40}, 7, 7, loss="bce", activation="sigmoid")
    assert t.evaluate(Oracle(t))["fraction_correct"] == 1.0

    def forget_the_branch(batch, y):  # answer T after the inner E, whatever the branch was
        for b, length in enumerate(batch.valid_lengths()):
            y[length - 3, b] = 0
            y[length - 3, b, 1] = 1
        return y
    half = t.evaluate(Oracle(t, forget_the_branch))
    t_branch = np.mean([s[0][1, 1] for s in t.test_strings])  # strings with T at step 1
    assert half["fraction_correct"] == pytest.approx(t_branch)
    assert t.baseline()["fraction_correct"] == 0.0


# -- adding ------------------------------------------------------------------------------------------

def test_adding_target_is_the_sum_of_the_two_marked_values_one_per_half():
    t = task({"task": "adding", "length": 30, "test_size": 50}, 2, 1, loss="mse", activation="identity", at="last")
    for batch in [first_batch(t, seed=1, size=40)] + t.validation():
        x, y = batch.inputs["x"], batch.targets["y"]
        assert x.shape[0] == 30 and y.shape == (batch.B, 1)
        assert np.all((x[..., 0] >= 0) & (x[..., 0] <= 1))
        assert np.all(x[:15, :, 1].sum(axis=0) == 1) and np.all(x[15:, :, 1].sum(axis=0) == 1)
        np.testing.assert_allclose(y[:, 0], (x[..., 0] * x[..., 1]).sum(axis=0), rtol=1e-6)


def test_adding_metric_is_zero_for_the_oracle_and_one_sixth_for_always_one():
    t = task({"task": "adding", "length": 20, "test_size": 2000}, 2, 1, loss="mse", activation="identity", at="last")
    assert t.evaluate(Oracle(t))["mse"] == pytest.approx(0, abs=1e-12)
    trivial = t.evaluate(Constant([1.0]))["mse"]
    assert trivial == pytest.approx(t.baseline()["mse"]) == pytest.approx(1 / 6, abs=0.015)


# -- copy memory -------------------------------------------------------------------------------------

def test_copy_memory_targets_are_the_input_symbols_shifted_by_the_lag():
    lag, k, S = 7, 4, 5
    t = task({"task": "copy_memory", "lag": lag, "symbols": S, "copy_length": k}, S + 2, S + 2)
    batch = first_batch(t, seed=2, size=16)
    x, y = batch.inputs["x"].argmax(axis=-1), batch.targets["y"]
    assert x.shape == y.shape == (2 * k + lag, 16)
    np.testing.assert_array_equal(y[k + lag:], x[:k])  # recall = the symbols, k + lag steps later
    assert np.all(y[:k + lag] == S) and np.all(x[:k] < S)  # blank targets before the recall
    assert np.all(x[k + lag - 1] == S + 1)  # the go-marker ends the lag
    assert np.all(np.delete(x[k:], lag - 1, axis=0) == S)  # blanks elsewhere


def test_copy_memory_metric_perfect_oracle_and_memoryless_baseline():
    t = task({"task": "copy_memory", "lag": 10, "test_size": 400}, 10, 10)
    perfect = t.evaluate(Oracle(t))
    assert perfect["accuracy"] == 1.0 and perfect["loss"] == pytest.approx(0, abs=1e-9)
    assert t.baseline() == {"accuracy": 1 / 8, "loss": pytest.approx(10 * math.log(8) / 30)}
    guess = np.r_[np.full(8, 1 / 8), 0, 0]  # uniform over the symbols, never blank: argmax = symbol 0
    assert t.evaluate(Constant(guess))["accuracy"] == pytest.approx(1 / 8, abs=0.03)


def test_copy_memory_at_mask_marks_the_recalled_steps():
    t = task({"task": "copy_memory", "lag": 3, "copy_length": 2}, 10, 10, at="mask")
    batch = first_batch(t, size=4)
    np.testing.assert_array_equal(batch.masks["y"][:, 0], [0, 0, 0, 0, 0, 1, 1])


# -- Mackey-Glass ------------------------------------------------------------------------------------

def heun_mackey_glass(n, tau=17.0, dt=0.01, x0=1.2):
    """A second integrator: Heun's method with a 10x finer step, exact delayed reads."""
    lag, sub = round(tau / dt), round(1 / dt)
    x = [x0] * (lag + 1)
    f = lambda v, d: 0.2 * d / (1 + d ** 10) - 0.1 * v
    for _ in range(n * sub):
        k1 = f(x[-1], x[-1 - lag])
        k2 = f(x[-1] + dt * k1, x[-lag])
        x.append(x[-1] + dt / 2 * (k1 + k2))
    return np.array(x[lag::sub][:n])


def test_mackey_glass_matches_a_second_integrator_and_has_its_range_and_period():
    series = mackey_glass(300, x0=1.2)
    np.testing.assert_allclose(series, heun_mackey_glass(300), atol=2e-3)
    long = mackey_glass(2000, discard=500)
    assert 0.35 < long.min() < 0.5 and 1.25 < long.max() < 1.4
    z = long - long.mean()
    ac = np.correlate(z, z, "full")[len(z) - 1:] / (z @ z)
    peaks = [k for k in range(10, 200) if ac[k - 1] < ac[k] >= ac[k + 1]]
    assert 40 <= peaks[0] <= 60 and ac[peaks[0]] > 0.5


def test_mackey_glass_targets_are_the_series_horizon_steps_ahead():
    t = task({"task": "mackey_glass", "length": 500, "horizon": 1, "seq_len": 40, "discard": 100}, 1, 1,
             loss="mse", activation="identity")
    batch = first_batch(t, seed=0, size=4)
    np.testing.assert_array_equal(batch.targets["y"][:-1], batch.inputs["x"][1:])
    np.testing.assert_allclose(t.series[1:501], t.series[:500], atol=0.2)  # one step moves little
    noisy = task({"task": "mackey_glass", "length": 2000, "horizon": 0, "noise": 0.1, "discard": 100}, 1, 1,
                 loss="mse", activation="identity")
    b = first_batch(noisy)
    assert b.inputs["x"].shape == (1800, 1, 1)  # no seq_len: one long sequence
    assert np.std(b.inputs["x"] - b.targets["y"]) == pytest.approx(0.1, rel=0.1)
    assert noisy.baseline()["mse"] == pytest.approx(0.01, rel=0.25)  # the noisy input itself


def test_mackey_glass_nrmse_is_zero_for_the_oracle_and_positive_for_persistence():
    t = task({"task": "mackey_glass", "length": 800, "horizon": 1, "discard": 100}, 1, 1,
             loss="mse", activation="identity")
    assert t.evaluate(Oracle(t))["nrmse"] == pytest.approx(0, abs=1e-6)
    assert 0.05 < t.baseline()["nrmse"] < 0.5


def test_mackey_glass_validation_counts_only_the_held_out_steps_after_a_context():
    t = task({"task": "mackey_glass", "length": 800, "horizon": 1, "discard": 100, "warmup": 30,
              "validation_split": 0.25}, 1, 1, loss="mse", activation="identity")
    (batch,) = t.validation()
    x, m = batch.inputs["x"][:, 0, 0], batch.masks["y"][:, 0]
    assert len(x) == 30 + 200 and m[:30].sum() == 0 and m[30:].all()  # 30 steps of context, then 200
    np.testing.assert_array_equal(x[30:], t.val_inputs[600:800])  # the held-out part itself
    np.testing.assert_array_equal(x[:30], t.val_inputs[570:600])  # the end of the training part before it


class SeriesOracle:
    """Knows the series: after a warm-up window it answers the next true value, step by step,
    keeping its position in the state it hands back (as Network.forward(return_state=True))."""

    def __init__(self, series):
        self.series = series

    def forward(self, inputs, lengths=None, state=None, return_state=False, **_):
        x = inputs["x"][..., 0]
        if state is None:  # find each warm-up window in the series
            W = x.shape[0]
            windows = np.lib.stride_tricks.sliding_window_view(self.series.astype(np.float32), W)
            pos = np.array([np.abs(windows - x[:, b]).sum(axis=1).argmin() + W - 1 for b in range(x.shape[1])])
        else:
            pos = state["pos"]
        y = self.series[pos + 1][None, :, None].astype(np.float32)
        return ({"y": y}, {"pos": pos + 1}) if return_state else {"y": y}


def test_mackey_glass_free_run_feeds_predictions_back_for_84_steps():
    t = task({"task": "mackey_glass", "length": 1200, "horizon": 1, "discard": 100, "validation_split": 0.2},
             1, 1, loss="mse", activation="identity")
    result = t.free_run(SeriesOracle(t.series), steps=84)
    assert result["steps"] == 84 and result["runs"] == 10 and result["nrmse"] < 1e-5
    net = Network(program(1, 1, loss="mse", activation="identity"))
    assert np.isfinite(t.free_run(net, steps=10, runs=3)["nrmse_at_end"])
    with pytest.raises(DataError, match="horizon"):
        task({"task": "mackey_glass", "length": 300, "horizon": 0, "discard": 10}, 1, 1,
             loss="mse", activation="identity").free_run(net)


# -- text --------------------------------------------------------------------------------------------

def test_text_lower27_alphabet_and_the_bits_per_character_of_a_uniform_guess(tmp_path):
    t = task({"task": "text", "path": small_text(tmp_path), "seq_len": 30}, 27, 27)
    assert t.alphabet == "abcdefghijklmnopqrstuvwxyz "
    batch = first_batch(t, size=5)
    assert batch.inputs["x"].shape == (30, 5, 27) and batch.targets["y"].shape == (30, 5)
    np.testing.assert_array_equal(batch.targets["y"][:-1], batch.inputs["x"][1:].argmax(axis=-1))
    assert t.evaluate(Constant(np.full(27, 1 / 27)))["bpc"] == pytest.approx(math.log2(27))
    perfect = t.evaluate(Oracle(t))
    assert perfect["bpc"] == pytest.approx(0) and perfect["accuracy"] == 1.0
    base = t.baseline()["bpc"]
    assert 3.5 < base < math.log2(27)  # the unigram entropy is below the uniform guess


def test_text_normalises_to_27_symbols_or_keeps_the_files_own_alphabet(tmp_path):
    path = small_text(tmp_path, "Hello,  World!\nIt's 42 -- fine. " * 20)
    t = task({"task": "text", "path": path, "seq_len": 10}, 27, 27)
    text = "".join(t.alphabet[i] for i in t.codes[:30])
    assert text == "hello world it s fine hello wo"
    own = sorted(set(Path(path).read_text(encoding="utf-8")))
    f = task({"task": "text", "path": path, "seq_len": 10}, len(own), len(own))
    assert list(f.alphabet) == own
    assert f.evaluate(Constant(np.full(len(own), 1 / len(own))))["bpc"] == pytest.approx(math.log2(len(own)))


def test_text_end_of_word_marks_the_last_character_of_each_word(tmp_path):
    path = small_text(tmp_path, "the cat sat on a mat " * 40)
    t = task({"task": "text", "path": path, "seq_len": 12, "mode": "end_of_word"}, 27, 1,
             activation="sigmoid", loss="bce")
    batch = t.validation()[0]
    s = decode(batch, t.alphabet, 0) + t.alphabet[t.val_codes[12]]  # the window and the next character
    ends = batch.targets["y"][:, 0, 0]
    np.testing.assert_array_equal(ends, [s[i + 1] == " " for i in range(12)])
    assert t.evaluate(Oracle(t))["accuracy"] == 1.0
    positives = np.concatenate([b.targets["y"].ravel() for b in t.validation()])
    assert t.baseline()["accuracy"] == pytest.approx(1 - positives.mean())  # always "no"
    assert 0.6 < t.baseline()["accuracy"] < 0.9


def test_text_encodes_priming_text_and_decodes_symbols(tmp_path):
    t = task({"task": "text", "path": small_text(tmp_path), "seq_len": 20}, 27, 27)
    x = t.encode("Hello, there!")["x"]
    assert x.shape == (12, 1, 27) and t.decode(x[:, 0].argmax(axis=-1)) == "hello there "


def test_the_bundled_corpus_is_deterministic_and_generated_when_missing(tmp_path, monkeypatch, capsys):
    assert corpus_module.generate_corpus(5000) == corpus_module.generate_corpus(5000)
    assert corpus_module.generate_corpus(5000) != corpus_module.generate_corpus(5000, seed=1)
    bundled = tmp_path / "data" / "corpus.txt"
    monkeypatch.setattr(corpus_module, "BUNDLED", bundled)
    monkeypatch.setattr(corpus_module, "SIZE", 8000)
    t = task({"task": "text", "path": str(bundled), "seq_len": 50}, 27, 27)
    assert bundled.exists() and "generating the bundled corpus" in capsys.readouterr().err
    assert len(t.codes) > 7000
    with pytest.raises(DataError, match="data.path: no such file"):
        task({"task": "text", "path": str(tmp_path / "other.txt")}, 27, 27)


def test_the_committed_corpus_is_the_generated_one():
    if not corpus_module.BUNDLED.exists():
        pytest.skip("data/corpus.txt is generated on first use")
    text = corpus_module.BUNDLED.read_text(encoding="utf-8")
    assert len(text.encode()) < 300_000 and text == corpus_module.generate_corpus()


# -- user files --------------------------------------------------------------------------------------

def test_files_are_sequences_by_time_by_features_and_batches_come_time_major(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 6, 3)), rng.standard_normal((20, 6, 2))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "y.npz", y=y)
    p = program(3, 2, loss="mse", activation="identity")
    t = make_task(p, {"files": {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npz")},
                      "validation_split": 0.25}, seed=0)
    batches = list(t.train_batches(4, np.random.default_rng(0)))
    assert len(batches) == 4 and batches[0].inputs["x"].shape == (6, 4, 3)
    seen = np.concatenate([b.inputs["x"] for b in batches], axis=1).transpose(1, 0, 2)
    assert sorted(map(bytes, seen.astype(np.float32))) == sorted(map(bytes, x[:15].astype(np.float32)))
    np.testing.assert_allclose(t.validation()[0].targets["y"], y[15:].transpose(1, 0, 2), rtol=1e-6)
    assert t.evaluate(Oracle(t))["mse"] == pytest.approx(0)
    assert t.baseline()["mse"] == pytest.approx(np.mean((y[15:] - y[:15].mean(axis=(0, 1))) ** 2), rel=1e-5)


def test_files_csv_single_sequence_is_split_in_time(tmp_path):
    series = np.sin(np.arange(200) * 0.1)
    np.savetxt(tmp_path / "x.csv", series[:, None], delimiter=",", header="x", comments="")
    np.savetxt(tmp_path / "y.csv", np.roll(series, -1), delimiter=",")
    p = program(1, 1, loss="mse", activation="identity")
    t = make_task(p, {"task": "files", "files": {"x": str(tmp_path / "x.csv"), "y": str(tmp_path / "y.csv")},
                      "seq_len": 30, "validation_split": 0.1}, seed=0)
    assert [b.inputs["x"].shape for b in t.train_batches(8)] == [(30, 6, 1)]
    assert t.validation()[0].inputs["x"].shape == (20, 1, 1)


def test_files_with_the_wrong_shape_name_the_input_and_both_shapes(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((5, 4, 3)))
    np.save(tmp_path / "y.npy", np.zeros((5, 4, 2)))
    files = {"x": str(tmp_path / "x.npy"), "y": str(tmp_path / "y.npy")}
    with pytest.raises(DataError, match=r"input 'x' in .*x.npy has shape \(5, 4, 3\), expected \(N, T, 2\)"):
        make_task(program(2, 2, loss="mse", activation="identity"), {"files": files}, 0)
    with pytest.raises(DataError, match=r"target for output 'y' .* has shape \(5, 4, 2\), expected \(5, 4, 3\)"):
        make_task(program(3, 3, loss="mse", activation="identity"), {"files": files}, 0)
    with pytest.raises(DataError, match="data.files must give 'y'"):
        make_task(program(3, 2, loss="mse", activation="identity"), {"files": {"x": files["x"]}}, 0)


# -- errors name the parameter, the expected and the found value ----------------------------------

@pytest.mark.parametrize("data,sizes,kw,message", [
    ({"task": "copy_memory", "lag": -3}, (10, 10), {}, r"data\.lag must be a positive integer, got -3"),
    ({"task": "copy_memory", "lagg": 3}, (10, 10), {}, r"data\.lagg is not a parameter .*did you mean 'lag'"),
    ({"task": "copy_memory", "symbols": 8}, (5, 10), {},
     r"input 'x' has size 5 but task copy_memory produces 10 features .*symbols \+ 2.*; set inputs\.x\.size: 10"),
    ({"task": "copy_memory", "symbols": 8}, (10, 9), {},
     r"output 'y' has size 9 but task copy_memory needs 10 .*; set units\.y\.size: 10 in the spec"),
    ({"task": "anbncn", "train_n": [5, 2]}, (4, 4), {"loss": "bce", "activation": "sigmoid"},
     r"data\.train_n must be a range \[lo, hi\].*got \[5, 2\]"),
    ({"task": "anbncn"}, (4, 4), {}, r"output 'y' has loss cross_entropy but task anbncn needs bce or mse"),
    ({"task": "adding", "length": 1}, (2, 1), {"loss": "mse", "activation": "identity", "at": "last"},
     r"data\.length must be an integer >= 2, got 1"),
    ({"task": "adding"}, (2, 1), {"loss": "mse", "activation": "identity"}, r"needs at: last"),
    ({"task": "mackey_glass", "tau": -1}, (1, 1), {"loss": "mse", "activation": "identity"}, r"data\.tau must be"),
    ({"task": "mackey_glass", "noise": "lots"}, (1, 1), {"loss": "mse", "activation": "identity"},
     r"data\.noise must be a number .*got 'lots'"),
    ({"task": "embedded_reber", "train_size": 0}, (7, 7), {"loss": "bce", "activation": "sigmoid"},
     r"data\.train_size must be a positive integer, got 0"),
    ({"task": "text"}, (27, 27), {}, r"data\.path must be the path of a UTF-8 text file, got None"),
    ({"task": "anbncn", "mode": "many"}, (4, 4), {"loss": "bce", "activation": "sigmoid"},
     r"data\.mode must be one of next_symbol, one_to_many, got 'many'"),
    ({"task": "sorting"}, (4, 4), {}, r"data\.task must be one of .*got 'sorting'"),
])
def test_bad_parameters_raise_data_error_naming_them(data, sizes, kw, message):
    with pytest.raises(DataError, match=message):
        task(data, *sizes, **kw)


def test_text_with_the_wrong_input_size_names_both_alphabets(tmp_path):
    path = small_text(tmp_path, "abc def. " * 50)
    with pytest.raises(DataError, match=r"input 'x' has size 12 but task text produces 27 features "
                                        r"\(a-z and space, or 8 for the 8 distinct characters"):
        task({"task": "text", "path": path}, 12, 12)
