"""Trainers: optimizers and schedules against torch, clipping, ridge readout against lstsq,
teacher forcing against an open-loop network, truncated BPTT, checkpoints, resume, NaN stops.

The built-in data tasks are tested with runtime/data; here a tiny task with the same
interface (train_batches, validation, evaluate, baseline, metric, higher_is_better) is used.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from compiler import CheckpointError, TrainingError, compile_spec
from runtime import Network
from runtime.train import bptt, checkpoint, diagnose, ridge
from runtime.train.clipping import clip_by_norm, clip_by_value
from runtime.train.config import Config
from runtime.train.generate import generate
from runtime.train.optimizers import make_optimizer
from runtime.train.schedules import learning_rate, teacher_probability
from runtime.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
Batch = namedtuple("Batch", "inputs targets lengths masks")


# -- a tiny task and tiny specs ---------------------------------------------------------------
class EchoTask:
    """y_t = 0.5 x_{t-1} (mse): needs one step of memory."""

    name, metric, higher_is_better = "echo", "mse", False

    def __init__(self, program, seed=0, T=5, steps=4, nan_at=None, val=16):
        self.program, self.seed, self.T, self.steps, self.nan_at, self.val = program, seed, T, steps, nan_at, val
        self.drawn = 0

    def batch(self, rng, B):
        x = rng.uniform(-1, 1, (self.T, B, 1))
        y = np.zeros_like(x)
        y[1:] = 0.5 * x[:-1]
        return Batch({"x": x}, {"y": y}, None, None)

    def train_batches(self, batch_size, rng):
        for _ in range(self.steps):
            b = self.batch(rng, batch_size)
            self.drawn += 1
            if self.drawn == self.nan_at:
                b.targets["y"][2] = np.nan
            yield b

    def validation(self):
        return [self.batch(np.random.default_rng(self.seed + 99), self.val)] if self.val else []

    def evaluate(self, net):
        b = self.batch(np.random.default_rng(self.seed + 99), 16)
        y = net.backend.to_numpy(net.forward(b.inputs)["y"])
        return {"mse": float(((y - b.targets["y"]) ** 2).mean()), "baseline": self.baseline()["mse"]}

    def baseline(self):
        b = self.batch(np.random.default_rng(self.seed + 99), 16)
        return {"mse": float((b.targets["y"] ** 2).mean())}


def spec(units=None, connections=None, outputs=None, inputs=None, training=None):
    return {
        "timeloom": 1, "name": "tiny",
        "inputs": inputs or {"x": {"size": 1}},
        "units": units or {"h": {"size": 6, "activation": "tanh"}, "y": {"size": 1, "activation": "identity"}},
        "connections": connections or [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1},
                                       {"from": "h", "to": "y"}],
        "outputs": outputs or {"y": {"loss": "mse", "at": "all"}},
        "data": {"task": "adding"},
        "training": training or {},
    }


def echo_trainer(training=None, rundir=None, dtype="float64", **task):
    program = compile_spec(spec(training=training))
    cfg = Config.from_training(program.training)
    net = Network(program, dtype=dtype, seed=cfg.seed)
    return Trainer(net, EchoTask(program, cfg.seed, **task), cfg, rundir)


# -- optimizers, schedules, clipping against torch ---------------------------------------------
@pytest.mark.parametrize("kind,kw,torch_kw", [
    ("sgd", {}, {}), ("sgd", {"momentum": 0.9}, {"momentum": 0.9}),
    ("adam", {}, {}), ("rmsprop", {}, {}), ("rmsprop", {"momentum": 0.5}, {"momentum": 0.5}),
    ("sgd", {"momentum": 0.9, "weight_decay": 0.1}, {"momentum": 0.9, "weight_decay": 0.1}),
    ("adam", {"weight_decay": 0.1}, {"weight_decay": 0.1}),
    ("rmsprop", {"momentum": 0.5, "weight_decay": 0.1}, {"momentum": 0.5, "weight_decay": 0.1}),
])
def test_optimizer_steps_match_torch_on_a_quadratic(kind, kw, torch_kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    M = rng.standard_normal((4, 4))
    A, b = M @ M.T + np.eye(4), rng.standard_normal(4)
    p0 = {"w": rng.standard_normal(4), "v": rng.standard_normal((2, 3))}
    lrs = [0.05, 0.05, 0.02, 0.01] * 5  # a changing lr, as a schedule does

    def grads(p):
        return {"w": A @ p["w"] - b, "v": 2 * p["v"] ** 3}

    params = {k: v.copy() for k, v in p0.items()}
    opt = make_optimizer(kind, np, list(params), **kw)
    for lr in lrs:
        opt.step(params, grads(params), lr)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[kind]
    topt = cls(list(tp.values()), lr=lrs[0], **torch_kw)
    for lr in lrs:
        for g in topt.param_groups:
            g["lr"] = lr
        topt.zero_grad()
        loss = 0.5 * tp["w"] @ torch.tensor(A) @ tp["w"] - torch.tensor(b) @ tp["w"] + 0.5 * (tp["v"] ** 4).sum()
        loss.backward()
        topt.step()
    for k in params:
        np.testing.assert_allclose(params[k], tp[k].detach().numpy(), rtol=1e-10, atol=1e-12)


def test_optimizer_state_round_trips_through_arrays():
    params = {"a": np.ones(3)}
    opt = make_optimizer("adam", np, ["a"])
    opt.step(params, {"a": np.full(3, 0.5)}, 0.1)
    state = opt.state()
    assert set(state) == {"step", "m/a", "v/a"}
    again = make_optimizer("adam", np, ["a"])
    again.load_state(state, np.asarray)
    p1, p2 = dict(params), dict(params)
    opt.step(p1, {"a": np.full(3, -0.2)}, 0.1)
    again.step(p2, {"a": np.full(3, -0.2)}, 0.1)
    assert np.array_equal(p1["a"], p2["a"])


def test_lr_schedules_match_torch_schedulers():
    torch = pytest.importorskip("torch")
    E = 12
    cases = [({"type": "step", "step_size": 4, "gamma": 0.5}, lambda o: torch.optim.lr_scheduler.StepLR(o, 4, 0.5)),
             ({"type": "exponential", "gamma": 0.9}, lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.9)),
             ({"type": "cosine", "min_lr": 0.001},
              lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=E, eta_min=0.001))]
    for sched, make in cases:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        s = make(opt)
        for e in range(E):
            assert learning_rate(0.1, sched, e, E) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12), (sched, e)
            opt.step()
            s.step()


def test_teacher_probability_schedules():
    assert teacher_probability(None, 3, 10) == 0
    assert teacher_probability({"probability": 0.7}, 9, 10) == 0.7
    lin = [teacher_probability({"probability": 1.0, "schedule": "linear"}, e, 5) for e in range(5)]
    assert lin == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_clip_by_global_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = {"a": rng.standard_normal((3, 4)) * 5, "b": rng.standard_normal(7)}
    ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for t, g in zip(ts, grads.values()):
        t.grad = torch.tensor(g)
    want_norm = torch.nn.utils.clip_grad_norm_(ts, 1.5)
    mine = dict(grads)
    norm = clip_by_norm(np, mine, 1.5)
    assert norm == pytest.approx(float(want_norm), rel=1e-12)
    for t, k in zip(ts, grads):
        np.testing.assert_allclose(mine[k], t.grad.numpy(), rtol=1e-12)
    small = {"a": np.full(2, 0.1)}
    clip_by_norm(np, small, 10.0)
    assert np.array_equal(small["a"], np.full(2, 0.1))  # below the threshold: untouched
    vals = {"a": np.array([-3.0, 0.5, 2.0])}
    clip_by_value(np, vals, 1.0)
    assert vals["a"].tolist() == [-1.0, 0.5, 1.0]


# -- training works -------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [
    {"optimizer": "adam", "lr": 0.03, "epochs": 8, "batch_size": 16},
    {"optimizer": "rmsprop", "lr": 0.01, "epochs": 8, "batch_size": 16, "clip_norm": 1.0},
    {"optimizer": "sgd", "lr": 0.3, "momentum": 0.9, "epochs": 8, "batch_size": 16, "clip_value": 1.0,
     "lr_schedule": {"type": "cosine"}},
])
def test_tiny_net_learns_the_echo_task(training):
    tr = echo_trainer(training, steps=20)
    before = tr.task.evaluate(tr.net)["mse"]
    result = tr.fit()
    after = tr.task.evaluate(tr.net)["mse"]
    assert result.status == "completed" and result.position.step == 160
    assert after < 0.1 * tr.task.baseline()["mse"], (before, after)


def test_same_seed_same_numbers_bitwise():
    runs = []
    for _ in range(2):
        tr = echo_trainer({"lr": 0.03, "epochs": 2, "batch_size": 8, "seed": 3})
        tr.fit()
        runs.append(tr.net.params)
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    tr = echo_trainer({"lr": 1e-9, "epochs": 20, "batch_size": 8, "early_stopping": {"patience": 2, "min_delta": 1.0}})
    result = tr.fit()
    assert result.status == "early_stopped"
    assert result.position.epoch == 3 and result.best == {"epoch": 1, "value": result.history[0]["val_loss"],
                                                           "monitor": "val_loss"}


# -- ridge readout ----------------------------------------------------------------------------------
def reservoir_program(delay=0, bias=True):
    return compile_spec(spec(
        units={"y": {"size": 2, "activation": "identity", "bias": bias}},
        connections=[{"from": "x", "to": "res"}, {"from": "res", "to": "y"},
                     {"from": "x", "to": "y", "delay": delay}],
        inputs={"x": {"size": 3}},
        training={"method": "ridge", "ridge": {"alpha": 0.5, "washout": 3}}) | {
        "blocks": {"res": {"type": "reservoir", "size": 12, "spectral_radius": 0.9, "density": 0.3}}})


@pytest.mark.parametrize("delay,bias", [(0, True), (2, False)])
def test_ridge_readout_equals_a_regularized_least_squares_solve(delay, bias):
    program = reservoir_program(delay, bias)
    net = Network(program, dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):
        x = rng.standard_normal((9, 4, 3))
        y = np.stack([np.sin(x[..., 0]), x[..., 1] * x[..., 2]], axis=-1)
        batches.append(Batch({"x": x}, {"y": y}, np.array([9, 7, 9, 5]), None))
    before = {k: v.copy() for k, v in net.params.items()}
    ridge.fit(net, batches, alpha=0.5, washout=3)
    # the oracle: reservoir states by hand, lstsq on [X; sqrt(alpha) I] w = [Y; 0]
    rows, targets = [], []
    for b in batches:
        h = net.forward(b.inputs, units=["res.h"])["res.h"]
        xs = np.zeros_like(b.inputs["x"])
        xs[delay:] = b.inputs["x"][:9 - delay]
        for t in range(3, 9):
            for j in range(4):
                if t < b.lengths[j]:
                    rows.append(np.concatenate([h[t, j], xs[t, j]] + ([[1.0]] if bias else [])))
                    targets.append(b.targets["y"][t, j])
    X, Y = np.array(rows), np.array(targets)
    aug = np.vstack([X, np.sqrt(0.5) * np.eye(X.shape[1])])
    W = np.linalg.lstsq(aug, np.vstack([Y, np.zeros((X.shape[1], 2))]), rcond=None)[0].T
    np.testing.assert_allclose(net.params["res.h->y"], W[:, :12], rtol=1e-9, atol=1e-10)
    name = "x->y" + (f"@{delay}" if delay else "")
    np.testing.assert_allclose(net.params[name], W[:, 12:15], rtol=1e-9, atol=1e-10)
    if bias:
        np.testing.assert_allclose(net.params["y.bias"], W[:, 15], rtol=1e-9, atol=1e-10)
    for k in before:  # the reservoir is untouched
        if k not in ("res.h->y", name, "y.bias"):
            assert np.array_equal(before[k], net.params[k])


def test_ridge_refuses_a_nonlinear_readout():
    program = compile_spec(spec(units={"h": {"size": 3, "activation": "tanh"},
                                       "y": {"size": 1, "activation": "sigmoid"}},
                                outputs={"y": {"loss": "bce", "at": "all"}}))
    with pytest.raises(TrainingError, match="activation: identity and loss: mse"):
        ridge.find_readout(program)


# -- teacher forcing ---------------------------------------------------------------------------------
def closed_and_open_loop():
    """A net with an output recurrence y -> h (delay 1), and the same net with y's feedback
    replaced by an input `yt` (the open loop a teacher-forced net must equal)."""
    units = {"h": {"size": 5, "activation": "tanh"}, "y": {"size": 3, "activation": "softmax"}}
    outputs = {"y": {"loss": "cross_entropy", "at": "all"}}
    closed = compile_spec(spec(units=units, outputs=outputs, inputs={"x": {"size": 3}}, connections=[
        {"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "y", "to": "h", "delay": 1},
        {"from": "h", "to": "y"}]))
    opened = compile_spec(spec(units=units, outputs=outputs, inputs={"x": {"size": 3}, "yt": {"size": 3}},
                               connections=[{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1},
                                            {"from": "yt", "to": "h", "delay": 1}, {"from": "h", "to": "y"}]))
    a, b = Network(closed, dtype="float64", seed=0), Network(opened, dtype="float64", seed=0)
    for k in a.params:
        b.params[k.replace("y->h@1", "yt->h@1")] = a.params[k]
    return a, b


def test_teacher_forcing_feeds_the_target_to_the_delayed_read():
    closed, opened = closed_and_open_loop()
    assert bptt.teacher_units(closed.program) == ["y"]
    rng = np.random.default_rng(0)
    x = np.eye(3)[rng.integers(0, 3, (6, 2))]
    target = rng.integers(0, 3, (6, 2))
    batch = Batch({"x": x}, {"y": target}, None, None)
    forced = bptt.teacher(closed.program, ["y"], batch, 1.0, rng)
    onehot = np.eye(3)[target]
    np.testing.assert_array_equal(forced["y"][0], onehot)
    loss_c, g_c = closed.loss_and_grads(batch.inputs, batch.targets, teacher=forced)
    loss_o, g_o = opened.loss_and_grads({"x": x, "yt": onehot}, batch.targets)
    assert loss_c == pytest.approx(loss_o, rel=1e-12)
    for k, g in g_c.items():
        np.testing.assert_allclose(g, g_o[k.replace("y->h@1", "yt->h@1")], rtol=1e-10, atol=1e-12)
    free = closed.forward(batch.inputs)["y"]
    assert not np.allclose(free, opened.forward({"x": x, "yt": onehot})["y"])  # p = 0: its own output


def test_scheduled_teacher_masks_are_bernoulli_p():
    closed, _ = closed_and_open_loop()
    rng = np.random.default_rng(0)
    batch = Batch({"x": np.zeros((200, 50, 3))}, {"y": np.zeros((200, 50), dtype=int)}, None, None)
    assert bptt.teacher(closed.program, ["y"], batch, 0.0, rng) is None
    mask = bptt.teacher(closed.program, ["y"], batch, 0.3, rng)["y"][1]
    assert set(np.unique(mask)) == {0.0, 1.0} and abs(mask.mean() - 0.3) < 0.02


# -- truncated BPTT ---------------------------------------------------------------------------------
def test_truncate_at_least_T_equals_full_bptt_bitwise():
    finals = []
    for truncate in (None, 5, 50):
        training = {"lr": 0.03, "epochs": 2, "batch_size": 8}
        if truncate:
            training["bptt"] = {"truncate": truncate}
        tr = echo_trainer(training)
        tr.fit()
        finals.append(tr.net.params)
    for other in finals[1:]:
        assert all(np.array_equal(finals[0][k], other[k]) for k in finals[0])


def test_truncated_windows_carry_the_state_of_one_long_run():
    """Running the windows with the carried state (lengths, teacher forcing) reproduces one long forward."""
    closed, _ = closed_and_open_loop()
    rng = np.random.default_rng(2)
    T, B = 11, 3
    batch = Batch({"x": rng.standard_normal((T, B, 3))}, {"y": rng.integers(0, 3, (T, B))},
                  np.array([11, 6, 9]), None)
    forced = bptt.teacher(closed.program, ["y"], batch, 0.5, rng)
    full = closed.forward(batch.inputs, lengths=batch.lengths, teacher=forced)["y"]
    state, pieces = None, []
    for w in bptt.windows(closed.program, batch, 4, forced):
        wT = next(iter(w.inputs.values())).shape[0]
        out, state = closed.forward(w.inputs, lengths=w.lengths, state=state, return_state=True, teacher=w.teacher)
        state = bptt.force_state(np, state, w, wT)
        pieces.append(out["y"])
    chunked = np.concatenate(pieces)
    valid = np.arange(T)[:, None] < batch.lengths[None, :]
    np.testing.assert_allclose(chunked[valid], full[valid], rtol=1e-12, atol=1e-12)


def test_truncation_is_refused_for_a_network_that_reads_the_future():
    program = compile_spec(spec(connections=[{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": -1},
                                             {"from": "h", "to": "y"}], training={"bptt": {"truncate": 3}}))
    with pytest.raises(TrainingError, match="reads the future"):
        Trainer(Network(program), EchoTask(program), Config.from_training(program.training))


def test_truncated_windows_put_an_at_last_loss_in_the_window_where_each_sequence_ends():
    program = compile_spec(spec(outputs={"y": {"loss": "mse", "at": "last"}}))
    batch = Batch({"x": np.zeros((10, 3, 1))}, {"y": np.zeros((3, 1))}, np.array([10, 3, 6]), None)
    ws = list(bptt.windows(program, batch, 4, None))
    assert [w.has_loss for w in ws] == [True, True, True]
    assert [w.masks["y"][0].tolist() for w in ws] == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert ws[2].lengths.tolist() == [2, 1, 1]
    batch = Batch({"x": np.zeros((10, 2, 1))}, {"y": np.zeros((2, 1))}, None, None)
    assert [w.has_loss for w in bptt.windows(program, batch, 4, None)] == [False, False, True]


# -- checkpoints, resume, NaN --------------------------------------------------------------------------
def test_spec_hash_covers_the_model_not_the_training():
    s = spec()
    h = checkpoint.spec_hash(s)
    assert checkpoint.spec_hash(s | {"training": {"lr": 0.5}, "name": "other"}) == h
    assert checkpoint.spec_hash(s | {"units": {"h": {"size": 7}, "y": {"size": 1}}}) != h


def test_checkpoint_round_trip_and_refusal_of_another_model(tmp_path):
    tr = echo_trainer({"epochs": 1, "batch_size": 4}, rundir=tmp_path)
    tr.fit()
    path = checkpoint.latest(tmp_path / "checkpoints")
    ck = checkpoint.load(path)
    assert ck.meta["step"] == 4 and ck.meta["spec_hash"] == checkpoint.spec_hash(tr.program.spec)
    assert all(np.array_equal(ck.params[k], tr.net.params[k]) for k in tr.net.params)
    assert set(ck.optimizer) == {"step"} | {f"{s}/{p}" for s in "mv" for p in tr.net.trainable}
    other = compile_spec(spec(units={"h": {"size": 7, "activation": "tanh"}, "y": {"size": 1}}))
    with pytest.raises(CheckpointError, match="different model"):
        checkpoint.check_fits(ck, other)
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        checkpoint.save(path, {}, {}, {})
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CheckpointError, match="not a readable timeloom checkpoint"):
        checkpoint.load(tmp_path / "junk.npz")


def test_checkpoints_rotate_keeping_the_newest(tmp_path):
    tr = echo_trainer({"epochs": 5, "batch_size": 4, "checkpoint": {"every": 1, "keep": 2}}, rundir=tmp_path)
    tr.fit()
    names = [p.name for p in checkpoint.listing(tmp_path / "checkpoints")]
    assert names == ["ckpt-00000016-0004-00000.npz", "ckpt-00000020-0005-00000.npz"]


@pytest.mark.parametrize("stop_at", [6, 8, 13])  # inside an epoch, at an epoch's end, near the end
def test_interrupt_and_resume_equals_an_uninterrupted_run_bitwise(tmp_path, stop_at):
    training = {"lr": 0.03, "epochs": 4, "batch_size": 8, "validation_split": 0.1,
                "early_stopping": {"patience": 10}, "lr_schedule": {"type": "step", "step_size": 1, "gamma": 0.7}}
    whole = echo_trainer(training, rundir=tmp_path / "a")
    whole.fit()

    first = echo_trainer(training, rundir=tmp_path / "b")

    class StopAt:
        def __getattr__(self, name):
            return lambda *a: None

        def step(self, record):
            if record["step"] == stop_at:
                first.stop_requested = True

    first.progress = StopAt()
    assert first.fit().status == "interrupted"
    again = echo_trainer(training, rundir=tmp_path / "b")
    again.restore(checkpoint.load(checkpoint.latest(tmp_path / "b" / "checkpoints")))
    assert again.pos.step == stop_at
    assert again.fit().status == "completed"
    for k in whole.net.params:
        assert np.array_equal(whole.net.params[k], again.net.params[k]), k
    a = [r for r in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    b = [r for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    strip = [__import__("re").sub(r', "time": [0-9.]+', "", r) for r in a + b]
    assert strip[:len(a)] == strip[len(a):]


def test_nan_target_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path):
    tr = echo_trainer({"epochs": 3, "batch_size": 4}, rundir=tmp_path, nan_at=6)
    with pytest.raises(TrainingError) as e:
        tr.fit()
    msg = str(e.value)
    assert "step 6 (epoch 2, batch 2)" in msg and "the target of output 'y'" in msg
    kept = checkpoint.latest(tmp_path / "checkpoints")
    assert kept.name == "ckpt-00000004-0001-00000.npz" and str(kept) in msg
    ck = checkpoint.load(kept)
    assert all(np.isfinite(v).all() for v in ck.params.values())


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul:RuntimeWarning")  # 1e200 weights: on purpose
def test_nan_diagnosis_names_the_parameter_or_the_unit_and_step():
    program = compile_spec(spec(units={"h": {"size": 2, "activation": "identity"},
                                       "y": {"size": 1, "activation": "identity"}}))
    net = Network(program, dtype="float64")
    w = bptt.Window({"x": np.ones((4, 1, 1))}, {"y": np.zeros((4, 1, 1))}, None, {}, None, True)
    net.params["h->h@1"] = np.full((2, 2), 1e200)
    net.params["x->h"] = np.full((2, 1), 1e200)
    assert diagnose.locate(net, w) == "unit 'h' at time step t=1"
    net.params["h->y"] = np.array([[np.inf, 0.0]])
    assert diagnose.locate(net, w) == "parameter 'h->y'"


def test_atomic_checkpoint_survives_a_kill_during_write(tmp_path):
    """A writer killed at a random moment leaves only complete checkpoints (no half-written file
    under a checkpoint name); temporary files are never taken for checkpoints."""
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from runtime.train import checkpoint
        big = np.random.default_rng(0).standard_normal(2_000_000)
        for i in range(1000):
            checkpoint.save({str(tmp_path)!r} + f"/ckpt-{{i:08d}}-0000-00000.npz", {{"w": big + i}}, {{}},
                            {{"step": i, "spec_hash": "x"}})
            print(i, flush=True)
    """)
    big = np.random.default_rng(0).standard_normal(2_000_000)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "0"
    deadline = time.monotonic() + 20

    def half_written():
        return any(f.name.endswith(".tmp") and f.stat().st_size > 1_000_000 for f in os.scandir(tmp_path))

    while not half_written() and time.monotonic() < deadline:
        time.sleep(0.0005)
    proc.kill()  # while a checkpoint is being written
    proc.wait()
    partial = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert partial, "the kill landed during a write"
    found = checkpoint.listing(tmp_path)
    assert not any(p.name in partial for p in found)
    assert found, "at least the first checkpoint exists"
    for p in found:
        ck = checkpoint.load(p)
        assert np.array_equal(ck.params["w"], big + ck.meta["step"])
    assert checkpoint.latest(tmp_path) == found[-1]


# -- generation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("feedback", [True, False])
def test_generation_equals_one_long_forward_over_its_own_inputs(feedback):
    if feedback:
        program = compile_spec(spec(inputs={"x": {"size": 3}},
                                    units={"h": {"size": 5, "activation": "tanh"},
                                           "y": {"size": 3, "activation": "softmax"}},
                                    outputs={"y": {"loss": "cross_entropy", "at": "all"}}))
    else:
        program = compile_spec(spec(inputs={"x": {"size": 2}}))
    net = Network(program, dtype="float64", seed=4)
    rng = np.random.default_rng(0)
    prime = {"x": rng.standard_normal((4, 2, program.inputs["x"]))}
    g = generate(net, prime, 6)
    assert g.mode == ("feedback" if feedback else "zeros")
    fed = np.zeros((5, 2, program.inputs["x"]))
    if feedback:
        fed = np.eye(3)[g.symbols[:5]]
    whole = net.forward({"x": np.concatenate([prime["x"], fed])})["y"]
    np.testing.assert_allclose(g.values, whole[3:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("restore", [True, False])
def test_early_stopping_restores_the_parameters_of_the_best_epoch(tmp_path, restore):
    stop = {"patience": 1, "min_delta": 1.0, "restore_best": restore}  # epoch 1 stays the best: stop after 2
    tr = echo_trainer({"lr": 0.03, "epochs": 5, "batch_size": 8, "early_stopping": stop}, rundir=tmp_path)
    result = tr.fit()
    assert result.status == "early_stopped" and result.position.epoch == 2
    want = echo_trainer({"lr": 0.03, "epochs": 1 if restore else 2, "batch_size": 8}, steps=4)
    want.fit()
    for k in want.net.params:
        np.testing.assert_array_equal(tr.net.params[k], want.net.params[k], err_msg=k)
    final = checkpoint.load(checkpoint.latest(tmp_path / "checkpoints"))
    for k in want.net.params:  # the final checkpoint holds what the network ends with
        np.testing.assert_array_equal(final.params[k], want.net.params[k], err_msg=k)
    assert (tmp_path / "checkpoints" / "best.npz").is_file() == restore
    if restore:
        assert checkpoint.load(tmp_path / "checkpoints" / "best.npz").meta["epoch"] == 1


def test_a_resumed_run_restores_the_best_epoch_from_best_npz(tmp_path):
    stop = {"patience": 2, "min_delta": 1.0}
    first = echo_trainer({"lr": 0.03, "epochs": 2, "batch_size": 8, "early_stopping": stop}, rundir=tmp_path)
    assert first.fit().status == "completed"  # epoch 2 was not better, one more bad epoch would stop it
    resumed = echo_trainer({"lr": 0.03, "epochs": 5, "batch_size": 8, "early_stopping": stop}, rundir=tmp_path)
    resumed.restore(checkpoint.load(checkpoint.latest(tmp_path / "checkpoints")))
    result = resumed.fit()
    assert result.status == "early_stopped" and result.position.epoch == 3 and result.best["epoch"] == 1
    want = echo_trainer({"lr": 0.03, "epochs": 1, "batch_size": 8})
    want.fit()
    for k in want.net.params:
        np.testing.assert_array_equal(resumed.net.params[k], want.net.params[k], err_msg=k)


def test_a_trained_leak_stays_in_zero_one():
    """alpha is the share of the previous output a leaky unit keeps: training projects it back into
    [0, 1] after each update (specs/leaky.yaml's alpha reached 1.035 without it)."""
    program = compile_spec(spec(units={"h": {"size": 3, "activation": "tanh",
                                             "leak": {"alpha": [0.1, 0.5, 0.95], "trainable": True}},
                                       "y": {"size": 1, "activation": "identity"}},
                                training={"optimizer": "sgd", "lr": 1e4, "epochs": 1}))
    cfg = Config.from_training(program.training)
    trainer = Trainer(Network(program, dtype="float64", seed=0), EchoTask(program, 0), cfg)
    before = np.asarray(trainer.net.params["h.alpha"]).copy()
    trainer.fit()
    after = np.asarray(trainer.net.params["h.alpha"])
    assert not np.array_equal(before, after) and after.min() >= 0.0 and after.max() <= 1.0
    assert np.any((after == 0.0) | (after == 1.0))  # the huge step went past the bounds and was clipped


def test_generation_mode_and_priming_of_a_net_that_reads_its_output_back():
    """`hold` only for a constant priming input of two or more steps (an ESN's bias); a one-step or
    text prime of a char net with output recurrence feeds back; priming is teacher-forced as in
    training, one-hot from class-index targets."""
    from runtime.train import session
    from runtime.train.generate import choose_mode

    program = compile_spec(spec(inputs={"x": {"size": 3}},
                                units={"h": {"size": 5, "activation": "tanh"},
                                       "y": {"size": 3, "activation": "softmax"}},
                                connections=[{"from": "x", "to": "h"}, {"from": "y", "to": "h", "delay": 1},
                                             {"from": "h", "to": "y"}],
                                outputs={"y": {"loss": "cross_entropy", "at": "all"}}))
    one = np.eye(3)[[1]][:, None]  # (1, 1, 3)
    assert choose_mode(program, "y", {"x": one}) == "feedback"  # one step: not a constant input
    assert choose_mode(program, "y", {"x": np.repeat(one, 4, axis=0)}) == "hold"
    assert choose_mode(program, "y", {"x": np.eye(3)[[0, 1, 2, 1]][:, None]}) == "feedback"

    class Chars:  # validation: one sequence of symbols with class-index targets (the next symbol)
        def validation(self):
            s = np.array([0, 1, 2, 1, 0, 2])
            return [Batch({"x": np.eye(3)[s[:-1]][:, None]}, {"y": s[1:, None]}, None, None)]

    prime, teacher, mode = session.prime_inputs(program, Chars(), None, None)
    assert mode == "feedback" and prime["x"].shape == (5, 1, 3)
    np.testing.assert_array_equal(teacher["y"][0][:, 0], np.eye(3)[[1, 2, 1, 0, 2]])  # one-hot targets
    assert teacher["y"][1].shape == (5, 1) and teacher["y"][1].all()
