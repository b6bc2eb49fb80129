"""The Mackey-Glass free-run protocol (MackeyGlass.free_run) and the ridge settings of
specs/esn_jaeger2004.yaml: output feedback, squashed series, constant bias input, tanh readout,
state noise, SVD solver."""
from __future__ import annotations

import numpy as np
import pytest

import compiler
from runtime import Network
from runtime.data import make_task
from runtime.train import ridge
from runtime.train.config import Config
from runtime.train.trainer import Trainer


def esn_spec(units=40, feedback=True, data=None, ridge_cfg=None, activation="tanh") -> dict:
    conns = [{"from": "x", "to": "res"}, {"from": "res", "to": "y"}]
    if feedback:
        conns.insert(1, {"from": "y", "to": "res", "delay": 1})
    return {
        "timeloom": 1, "name": "esn_small",
        "inputs": {"x": {"size": 1}},
        "blocks": {"res": {"type": "reservoir", "size": units, "spectral_radius": 0.8, "density": 0.2}},
        "units": {"y": {"size": 1, "activation": activation}},
        "connections": conns,
        "outputs": {"y": {"loss": "mse", "at": "all"}},
        "data": data or {"task": "mackey_glass", "length": 900, "discard": 100, "squash": True, "bias_input": 0.2,
                         "warmup": 60, "free_run_steps": 84, "free_run_runs": 7, "validation_split": 0.25},
        "training": {"method": "ridge", "ridge": ridge_cfg or {"alpha": 1.0e-9, "washout": 100}, "seed": 0},
    }


def build(spec, seed=0):
    program = compiler.compile_spec(spec)
    return program, make_task(program, seed=seed), Network(program, dtype="float64", seed=seed)


class FeedbackOracle:
    """A perfect one-step predictor that knows the series and gets it only through its output fed
    back: at each step it finds the fed-back value (teacher-forced, else its own last output) in
    the series and answers the next one."""

    def __init__(self, series):
        self.series = np.asarray(series, dtype=np.float64)

    def _next(self, v):
        return self.series[np.abs(self.series[:-1] - v).argmin() + 1]

    def forward(self, inputs, lengths=None, state=None, return_state=False, teacher=None, **_):
        T, B = inputs["x"].shape[:2]
        prev = np.zeros(B) if state is None else state["y"][-1, :, 0]
        forced = None if teacher is None else np.asarray(teacher["y"][0])[..., 0]
        out = np.zeros((T, B, 1))
        for t in range(T):
            if t > 0:
                prev = forced[t - 1] if forced is not None else out[t - 1, :, 0]
            out[t, :, 0] = [self._next(v) for v in prev] if (t > 0 or state is not None) else np.nan
        if state is None and forced is not None:  # no value before the window: answer from the series
            out[0, :, 0] = [self._next(v) for v in self._before(forced[0])]
        outs = {"y": out}
        return (outs, {"y": out[-1:].copy()}) if return_state else outs

    def _before(self, first):
        return [self.series[np.abs(self.series[1:] - v).argmin()] for v in first]


def test_free_run_of_a_perfect_predictor_fed_back_is_exact():
    program, task, _ = build(esn_spec())
    result = task.free_run(FeedbackOracle(task.series), steps=84, runs=7)
    assert result["runs"] == 7 and result["steps"] == 84
    assert result["nrmse"] == 0.0 and result["nrmse_at_end"] == 0.0
    # and the baseline (persistence held for 84 steps) is far from it
    assert task.compute_baseline()["nrmse84"] > 0.3


def test_free_run_off_by_one_step_is_not_zero():
    """An oracle that answers the value two steps ahead (one step too far) fails the protocol."""
    program, task, _ = build(esn_spec())

    class Ahead(FeedbackOracle):
        def _next(self, v):
            return self.series[min(np.abs(self.series[:-2] - v).argmin() + 2, len(self.series) - 1)]

    assert task.free_run(Ahead(task.series), steps=84, runs=7)["nrmse_at_end"] > 0.1


def hand_esn(net, task, starts, steps, warm):
    """The free runs written out in NumPy from the network's weights (Jaeger's loop); the
    input is the float32 constant the task feeds."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    W, Win, Wfb = p["res.h->res.h@1"], p["x->res.h"], p["y->res.h@1"]
    V, c = p["res.h->y"], p["y.bias"]
    v, out = task.series, []
    for s in starts:
        h, y = np.zeros(W.shape[0]), np.zeros(1)
        for t in range(s - warm + 1, s + 1):  # teacher-forced: y(t-1) read as the true v(t)
            y_prev = y if t == s - warm + 1 else np.array([v[t]])
            h = np.tanh(W @ h + Win @ [float(np.float32(0.2))] + Wfb @ y_prev)
            y = np.tanh(V @ h + c)
        preds = [y[0]]
        for _ in range(steps - 1):
            h = np.tanh(W @ h + Win @ [float(np.float32(0.2))] + Wfb @ y)
            y = np.tanh(V @ h + c)
            preds.append(y[0])
        out.append(preds)
    pred = task.unsquash(np.array(out).T)
    truth = task.unsquash(np.stack([v[s + 1:s + steps + 1] for s in starts], axis=1))
    return np.sqrt(np.mean((pred[-1] - truth[-1]) ** 2)) / task.raw[:task.length].std()


def test_small_esn_with_output_feedback_free_run_matches_a_hand_written_loop():
    spec = esn_spec(ridge_cfg={"alpha": 1.0e-9, "washout": 100, "noise": 1.0e-6, "solver": "svd"})
    program, task, net = build(spec)
    cfg = Config.from_training(program.training)
    assert (cfg.ridge_noise, cfg.ridge_solver) == (1e-6, "svd")
    Trainer(net, task, cfg).fit()
    ev = task.evaluate(net)
    assert task.metric == "nrmse84"
    assert ev["nrmse"] < 0.01  # one-step, teacher-forced
    assert np.isfinite(ev["nrmse84"]) and len(ev["free_run_nrmse_at_end_per_run"]) == 7
    # a 40-unit reservoir diverges within 84 steps (chaos amplifies rounding), so the loop is
    # compared over 12 steps, where it still tracks the series
    fr = task.free_run(net, steps=12, runs=7)
    hand = hand_esn(net, task, task.free_run_starts(12, 7), 12, 60)
    assert np.isclose(fr["nrmse_at_end"], hand, rtol=1e-7, atol=1e-12)
    held = task.unsquash(task.series[task.free_run_starts(12, 7)])
    truth = task.unsquash(task.series[task.free_run_starts(12, 7) + 12])
    assert fr["nrmse_at_end"] < np.sqrt(np.mean((held - truth) ** 2)) / task.raw[:task.length].std()


def test_tanh_readout_recovers_known_weights_teacher_forced():
    """Targets made by the network itself with a known readout: the fit in y's net input (atanh)
    gives that readout back, with the normal equations and with the SVD."""
    program, task, net = build(esn_spec(units=30))
    rng = np.random.default_rng(5)
    V, c = rng.uniform(-0.1, 0.1, (1, 30)), np.array([0.05])
    net.params["res.h->y"], net.params["y.bias"] = V, c
    x = rng.uniform(-1, 1, (300, 1, 1))  # a varying input: the states span the readout's space
    # free-running outputs are self-consistent targets: teacher forcing with them changes nothing
    y = net.forward({"x": x})["y"]
    from runtime.data.base import Batch
    batch = Batch({"x": x}, {"y": y})
    for solver in ("solve", "svd"):
        net.params["res.h->y"], net.params["y.bias"] = np.zeros((1, 30)), np.zeros(1)
        info = ridge.fit(net, [batch], alpha=0.0 if solver == "svd" else 1e-14, washout=20, solver=solver)
        assert info["solver"] == solver
        assert np.allclose(net.params["res.h->y"], V, atol=1e-6) and np.allclose(net.params["y.bias"], c, atol=1e-6)


def test_svd_solver_equals_the_normal_equations_and_noise_regularises():
    rng = np.random.default_rng(0)
    X, R = rng.standard_normal((200, 12)), rng.standard_normal((200, 2))
    for alpha in (0.0, 1e-3, 10.0):
        direct = np.linalg.solve(X.T @ X + alpha * np.eye(12), X.T @ R).T
        assert np.allclose(ridge.solve_svd(X, R, alpha), direct, atol=1e-10)
    program, task, net = build(esn_spec(units=30, ridge_cfg={"alpha": 1.0e-9, "washout": 100}))
    batch = next(iter(task.train_batches(1, np.random.default_rng(0))))
    readout = ridge.find_readout(program)
    X0, _ = ridge.features(net, readout, batch, 100)
    Xn, _ = ridge.features(net, readout, batch, 100, noise=0.01, rng=1)
    diff = Xn - X0
    assert np.allclose(diff[:, -1], 0)  # the bias column stays clean
    assert 0.008 < diff[:, :-1].std() < 0.012
    with pytest.raises(Exception, match="solver"):
        ridge.fit(net, [batch], solver="qr")


def test_squash_and_bias_input_data():
    _, task, _ = build(esn_spec())
    assert np.allclose(task.series, np.tanh(task.raw - 1))
    assert np.allclose(task.unsquash(task.series), task.raw)
    batch = next(iter(task.train_batches(1, np.random.default_rng(0))))
    assert np.all(batch.inputs["x"] == np.float32(0.2))
    assert np.allclose(batch.targets["y"][:, 0, 0], task.series[1:task.n_train + 1].astype(np.float32))


def test_bad_settings_name_the_key():
    from compiler.errors import DataError, SpecError
    spec = esn_spec()
    spec["data"] = {**spec["data"], "squash": "yes"}
    with pytest.raises(SpecError, match="squash must be true or false"):
        build(spec)
    spec = esn_spec()
    spec["data"] = {**spec["data"], "free_run_steps": 0}
    with pytest.raises((DataError, SpecError), match="free_run_steps"):
        build(spec)
    with pytest.raises(SpecError, match="solver"):
        compiler.compile_spec(esn_spec(ridge_cfg={"alpha": 1e-9, "solver": "qr"}))


def test_the_training_loss_of_a_ridge_fit_counts_only_the_steps_after_the_washout():
    """The reported training loss is the mse over the steps the readout was fitted on: the
    reservoir's start-up transient (t < washout) stays out, as it stays out of the fit."""
    program, task, net = build(esn_spec(units=30, feedback=False, activation="identity",
                                        data={"task": "mackey_glass", "length": 900},
                                        ridge_cfg={"alpha": 1.0e-9, "washout": 100}))
    cfg = Config.from_training(program.training)
    result = Trainer(net, task, cfg).fit()
    batches = list(task.train_batches(cfg.batch_size, np.random.default_rng(0)))
    squared = [((net.forward(b.inputs)["y"] - b.targets["y"]) ** 2)[100:] for b in batches]
    by_hand = np.mean([s.mean() for s in squared])
    everything = np.mean([((net.forward(b.inputs)["y"] - b.targets["y"]) ** 2).mean() for b in batches])
    assert result.history[0]["loss"] == pytest.approx(by_hand, rel=1e-9)
    assert everything > 10 * by_hand  # the transient would have dominated the figure


def test_generation_of_an_esn_with_output_feedback_runs_the_loop_it_was_trained_for():
    """`timeloom run --generate` on Jaeger's setup: primed teacher-forced on the validation
    sequence, then the output goes round through y -> res with the bias input held: the values
    equal Jaeger's loop written out in NumPy (they were +-1 when the output was fed in as x)."""
    from runtime.train import session

    program, task, net = build(esn_spec(ridge_cfg={"alpha": 1.0e-9, "washout": 100}))
    result = Trainer(net, task, Config.from_training(program.training)).fit()
    gen = session.run_generation(net, task, steps=12)
    assert gen["mode"] == "hold"
    (batch,) = task.validation()
    x, v = batch.inputs["x"][:, 0, 0], batch.targets["y"][:, 0, 0]
    p = {k: np.asarray(val, dtype=np.float64) for k, val in net.params.items()}
    W, Win, Wfb = p["res.h->res.h@1"], p["x->res.h"], p["y->res.h@1"]
    V, c = p["res.h->y"], p["y.bias"]
    h, y, one_step = np.zeros(W.shape[0]), np.zeros(1), []
    for t in range(len(x)):  # teacher-forced: the delayed read of y sees the previous target
        y_prev = np.zeros(1) if t == 0 else np.array([v[t - 1]], dtype=np.float64)
        h = np.tanh(W @ h + Win @ [float(x[t])] + Wfb @ y_prev)
        y = np.tanh(V @ h + c)
        one_step.append(y[0])
    counted = batch.masks["y"][:, 0] > 0  # after the warm-up
    one_step_mse = np.mean(((np.array(one_step) - v) ** 2)[counted])
    assert result.history[0]["val_loss"] == pytest.approx(one_step_mse, rel=1e-6)  # teacher-forced too
    hand = [y[0]]
    for _ in range(11):
        h = np.tanh(W @ h + Win @ [float(x[-1])] + Wfb @ y)
        y = np.tanh(V @ h + c)
        hand.append(y[0])
    np.testing.assert_allclose(gen["values"], np.array(hand)[:, None], rtol=1e-9, atol=1e-12)
    assert np.abs(np.diff(np.array(gen["values"])[:, 0])).max() < 0.2  # a smooth continuation, not +-1


def test_ridge_mistakes_name_their_own_fix():
    """A tanh readout on targets beyond [-1, 1] is refused (their atanh was clipped silently), a
    washout past the data says so (it was reported as a NaN loss with 'raise ridge.alpha'), and an
    underdetermined fit or a readout worse than the baseline get advice for a closed-form fit."""
    from compiler.errors import TrainingError
    from runtime.train import session

    raw = {"task": "mackey_glass", "length": 900}  # values up to ~1.3
    program, task, net = build(esn_spec(units=20, feedback=False, data=raw))
    with pytest.raises(TrainingError, match=r"tanh unit, but its targets reach 1\.\d+, outside .*activation: identity"):
        Trainer(net, task, Config.from_training(program.training)).fit()
    program, task, net = build(esn_spec(units=20, feedback=False, activation="identity", data=raw,
                                        ridge_cfg={"alpha": 1e-9, "washout": 5000}))
    with pytest.raises(TrainingError) as e:
        Trainer(net, task, Config.from_training(program.training)).fit()
    assert "no time steps left to fit after a washout of 5000" in str(e.value) and "NaN" not in str(e.value)
    (w,) = session.ridge_warnings({"samples": 3, "features": 21})
    assert "3 time steps for 21 features" in w and "lower ridge.washout" in w
    assert session.ridge_warnings({"samples": 30, "features": 21}) == []
    (w,) = session.far_from_baseline({"metric": "nrmse", "nrmse": 1.0, "baseline": 0.1, "ridge": {"samples": 9}})
    assert "closed-form readout" in w and "lr" not in w
