"""optimizer: dekf against a global extended Kalman filter written here (closed-form forward-mode
derivatives of a one-unit recurrent net with 2 weights), and on a tiny LSTM."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from compiler import compile_spec
from runtime import Network
from runtime.data.base import Batch
from runtime.train.dekf import DEKF

TWO_WEIGHTS = """
timeloom: 1
name: two_weights
inputs: {x: {size: 1}}
units: {h: {size: 1, activation: tanh, bias: false}}
connections:
  - {from: x, to: h}
  - {from: h, to: h, delay: 1}
outputs: {h: {loss: mse, at: all}}
"""


def global_ekf(w, P, xs, ds, settings, n0=0):
    """One sequence of per-step global EKF updates of h_t = tanh(w0 x_t + w1 h_{t-1}), h_{-1} = 0:
    at step t the sequence's prefix is run again with the current w; dh/dw by forward mode."""
    ws = []
    n = n0
    for t in range(len(xs)):
        h, dh = 0.0, np.zeros(2)
        for s in range(t + 1):
            a = w[0] * xs[s] + w[1] * h
            hn = np.tanh(a)
            dh = (1 - hn * hn) * (np.array([xs[s], h]) + w[1] * dh)
            h = hn
        decay = np.exp(-n / settings["tau"])
        r = settings["r_end"] + (settings["r"] - settings["r_end"]) * decay
        q = settings["q_end"] + (settings["q"] - settings["q_end"]) * decay
        H = dh[:, None]
        A = 1.0 / (r + (H.T @ P @ H).item())
        K = P @ H * A
        w = w + (K * (ds[t] - h))[:, 0]
        P = P - K @ H.T @ P + q * np.eye(2)
        n += 1
        ws.append(w.copy())
    return w, P, ws


@pytest.mark.parametrize("groups", ["global", "unit"])
def test_dekf_with_one_group_is_the_global_ekf(groups):
    program = compile_spec(yaml.safe_load(TWO_WEIGHTS))
    net = Network(program, dtype="float64", seed=0)
    assert sorted(net.trainable) == ["h->h@1", "x->h"]
    net.params["x->h"] = np.array([[0.7]])
    net.params["h->h@1"] = np.array([[-0.4]])
    settings = {"p0": 2.0, "r": 1.5, "r_end": 0.2, "q": 1e-2, "q_end": 1e-4, "tau": 4.0, "groups": groups}
    dekf = DEKF(net, settings)
    assert len(dekf.groups) == 1
    rng = np.random.default_rng(0)
    w = np.array([0.7, -0.4])  # (x->h, h->h@1): the order of dekf.names is checked below
    order = [dekf.names.index("x->h"), dekf.names.index("h->h@1")]
    P = settings["p0"] * np.eye(2)
    n = 0
    for _ in range(3):  # three sequences of 6 steps, one after the other
        xs = rng.uniform(-1, 1, 6)
        ds = 0.8 * np.sin(np.cumsum(xs))
        batch = Batch({"x": xs[:, None, None]}, {"h": ds[:, None, None]}, None, {})
        dekf.train_batch(batch)
        w, P, _ = global_ekf(w, P, xs, ds, settings, n)
        n += 6
        got = dekf.flat()[order]
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-10)
        Pg = dekf.P[0][np.ix_(order, order)]
        np.testing.assert_allclose(Pg, P, rtol=0, atol=1e-10)
    assert dekf.t == 18
    assert abs(w[0] - 0.7) > 1e-3  # the filter did move the weights


def test_unit_groups_of_an_lstm_are_one_per_receiving_neuron():
    spec = yaml.safe_load(LSTM)
    net = Network(compile_spec(spec), dtype="float64", seed=0)
    dekf = DEKF(net, {"groups": "unit"})
    # 2 cells x 4 gates (input, forget, output, cell input) + 2 output units
    assert len(dekf.groups) == 2 * 4 + 2
    flat = np.concatenate(dekf.groups)
    assert sorted(flat.tolist()) == list(range(dekf.size))  # every weight in exactly one group
    assert dekf.P.shape[0] == 10


LSTM = """
timeloom: 1
name: tiny_lstm
inputs: {x: {size: 2}}
blocks:
  mem: {type: lstm, size: 2, peepholes: true}
units: {y: {size: 2, activation: sigmoid}}
connections:
  - {from: x, to: mem}
  - {from: mem, to: y}
outputs: {y: {loss: bce, at: all}}
"""


def test_dekf_lowers_the_loss_of_a_tiny_lstm_on_a_fixed_batch():
    program = compile_spec(yaml.safe_load(LSTM))
    net = Network(program, dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    T, B = 5, 4
    x = rng.integers(0, 2, (T, B, 2)).astype(float)
    y = np.stack([x[..., 0], np.cumsum(x[..., 1], axis=0) % 2], axis=-1)  # copy and running parity
    lengths = np.array([5, 4, 5, 3])
    batch = Batch({"x": x}, {"y": y}, lengths, {})
    before = net.loss(batch.inputs, batch.targets, lengths=lengths)
    dekf = DEKF(net, {"p0": 10.0, "r": 1.0, "r_end": 0.5, "q": 1e-3, "q_end": 1e-5, "tau": 50.0})
    for _ in range(4):
        dekf.train_batch(batch)
    after = net.loss(batch.inputs, batch.targets, lengths=lengths)
    assert after < 0.7 * before
    assert dekf.t == 4 * int(lengths.sum())  # one update per valid step, none on padding


CLI_SPEC = """
timeloom: 1
name: tiny_anbncn_dekf
inputs: {x: {size: 4}}
blocks: {mem: {type: lstm, size: 1, peepholes: true, gers2000: true}}
units: {y: {size: 4, activation: sigmoid}}
connections:
  - {from: x, to: mem}
  - {from: mem, to: y}
outputs: {y: {loss: bce, at: all}}
data: {task: anbncn, train_n: [1, 2], test_n: [1, 3], eval_n: [1, 6]}
training:
  optimizer: dekf
  dekf: {p0: 10.0, r: 10.0, r_end: 1.0, tau: 20}
  epochs: 2
  steps_per_epoch: 2
  batch_size: 1
"""


def test_timeloom_run_trains_with_dekf_and_checkpoints_its_covariance(tmp_path):
    import json

    from support import cli_in, only_run

    from runtime.train import checkpoint

    (tmp_path / "s.yaml").write_text(CLI_SPEC)
    r = cli_in(tmp_path, ["run", "s.yaml", "-q", "--no-report"])
    assert r.exit_code == 0, r.output
    run = only_run(tmp_path)
    ev = json.loads((run / "evaluation.json").read_text())
    assert [n for n, _ in ev["solved_by_n"]] == [1, 2, 3, 4, 5, 6]
    ck = checkpoint.load(checkpoint.latest(run / "checkpoints"))
    assert ck.optimizer["P"].ndim == 3 and int(ck.optimizer["step"]) > 0


def test_bad_dekf_settings_are_refused_with_the_key(tmp_path):
    (tmp_path / "s.yaml").write_text(CLI_SPEC.replace("tau: 20", "tau: 20, groups: layer"))
    from support import cli_in
    r = cli_in(tmp_path, ["run", "s.yaml", "-q", "--no-report"])
    assert r.exit_code != 0
    assert "groups" in r.output and "Traceback" not in r.output


def test_a_resumed_dekf_run_continues_exactly(tmp_path):
    from support import cli_in, final_params

    (tmp_path / "s.yaml").write_text(CLI_SPEC)
    assert cli_in(tmp_path, ["run", "s.yaml", "-q", "--no-report", "--name", "whole"]).exit_code == 0
    assert cli_in(tmp_path, ["run", "s.yaml", "-q", "--no-report", "--name", "half", "--epochs", "1"]).exit_code == 0
    half = next((tmp_path / "runs").glob("half-*"))
    r = cli_in(tmp_path, ["run", "--resume", half, "--epochs", "2", "-q", "--no-report"])
    assert r.exit_code == 0, r.output
    whole = final_params(next((tmp_path / "runs").glob("whole-*")))
    resumed = final_params(half)
    for k in whole:
        np.testing.assert_array_equal(whole[k], resumed[k])


def test_weight_decay_with_dekf_is_refused(tmp_path):
    from support import cli_in

    (tmp_path / "s.yaml").write_text(CLI_SPEC.replace("  batch_size: 1\n", "  batch_size: 1\n  weight_decay: 0.1\n"))
    r = cli_in(tmp_path, ["run", "s.yaml", "-q", "--no-report"])
    assert r.exit_code != 0 and "weight_decay is not read by optimizer dekf" in r.output


def test_the_measurement_jacobian_is_d_output_after_its_sigmoid_by_finite_differences():
    """H is the derivative of y (after the output's sigmoid, the units the 0/1 targets are in)
    at step t, including everything before t: central differences of the forward pass in
    float64, weight by weight, on a peephole LSTM with a bce output (whose loss gradient is
    fused with the sigmoid; the measurement Jacobian must not be)."""
    program = compile_spec(yaml.safe_load(LSTM))
    net = Network(program, dtype="float64", seed=3)
    rng = np.random.default_rng(4)
    for n in net.trainable:  # weights large enough that the sigmoid' factor is far from 1/4
        net.params[n] = rng.uniform(-1.5, 1.5, np.shape(net.params[n]))
    dekf = DEKF(net, {"groups": "unit"})
    x = rng.uniform(-1, 1, (6, 1, 2))
    t = 4
    y, H = dekf.jacobian({"x": x}, 0, t, ["y"])
    out = net.forward({"x": x})["y"]
    np.testing.assert_allclose(y, out[t, 0], rtol=0, atol=1e-14)
    w0 = dekf.flat()
    eps = 1e-6
    fd = np.zeros_like(H)
    for j in range(dekf.size):
        for sign in (1, -1):
            w = w0.copy()
            w[j] += sign * eps
            dekf._unflat_into(w)
            fd[j] += sign * net.forward({"x": x})["y"][t, 0] / (2 * eps)
    dekf._unflat_into(w0)
    np.testing.assert_allclose(H, fd, rtol=0, atol=1e-8)
    assert np.abs(H).max() > 1e-2  # a real test: the outputs depend on the weights


def test_a_float32_network_keeps_the_filters_small_updates_in_float64():
    """Late in training the Kalman steps are far below float32's resolution of the weights;
    the filter keeps its own float64 estimate between strings, so a float32 network follows
    the same trajectory as the float64 one (up to float32 rounding of the forward pass),
    while re-reading the rounded float32 weights each string would lose those steps."""
    program = compile_spec(yaml.safe_load(TWO_WEIGHTS))
    nets = {d: Network(program, dtype=d, seed=0) for d in ("float32", "float64")}
    nets["forgetful"] = Network(program, dtype="float32", seed=0)
    filters = {}
    for d, net in nets.items():
        dt = "float32" if d == "forgetful" else d
        net.params["x->h"] = np.array([[0.7]], dtype=dt)
        net.params["h->h@1"] = np.array([[-0.4]], dtype=dt)
        # tiny p0, no q and a huge r: the steps are ~1e-10, below float32's spacing at 0.7 (6e-8)
        filters[d] = DEKF(net, {"p0": 1e-4, "r": 1e4, "r_end": 1e4, "q": 0.0, "q_end": 0.0, "tau": 1.0})
    rng = np.random.default_rng(1)
    for _ in range(40):
        xs = rng.uniform(-1, 1, 5)
        ds = 0.8 * np.sin(np.cumsum(xs))
        filters["forgetful"].w = None  # re-read the float32 weights, as before the float64 estimate
        for f in filters.values():
            f.train_batch(Batch({"x": xs[:, None, None]}, {"h": ds[:, None, None]}, None, {}))
    w32, w64 = filters["float32"].weights(), filters["float64"].weights()
    moved = np.abs(w64 - np.array([0.7, -0.4])[[filters["float64"].names.index(n) for n in ("x->h", "h->h@1")]])
    assert moved.max() > 1e-7  # the filter moved the weights by more than a float32 step in total
    np.testing.assert_allclose(w32, w64, rtol=0, atol=5e-8)  # float32 forward passes: ~1e-8 apart
    lossy = filters["forgetful"].flat()
    assert np.abs(lossy - w64).max() > 5 * np.abs(w32 - w64).max()  # rounded after every string
    # and the state a checkpoint holds carries the float64 estimate
    assert np.array_equal(filters["float32"].state()["w"], w32)
