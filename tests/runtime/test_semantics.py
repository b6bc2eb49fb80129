"""Closed-form checks of single primitives: each small net against a hand-written NumPy loop.

The oracle here is the formula of docs/ARCHITECTURE.md written out in NumPy
(time-major arrays, W of shape (to.size, from.size), so a contribution is x @ W.T).
Both executors are checked against it.
"""
from __future__ import annotations

import numpy as np
import pytest

import compiler
import runtime
from compiler import DataError, TimeloomError

T, B = 7, 3
EXECUTORS = ["fast", "reference"]


def spec(inputs, units, connections, outputs):
    return compiler.compile_spec({"timeloom": 1, "name": "t", "inputs": inputs, "units": units,
                                  "connections": connections, "outputs": outputs})


def network(program, executor="fast", seed=0):
    """float64, every trainable parameter moved off its (often zero) initial value."""
    net = runtime.Network(program, dtype="float64", executor=executor, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name in net.trainable:
        net.params[name] = net.params[name] + 0.5 * rng.standard_normal(net.params[name].shape)
    return net


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def close(a, b, what=""):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=what)


def xs(rng, size, steps=T, batch=B):
    return rng.standard_normal((steps, batch, size))


# -- recurrences -----------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("initial", ["zeros", "learned"])
def test_elman_net_equals_a_hand_written_loop(executor, initial):
    p = spec({"x": {"size": 3}}, {"h": {"size": 4, "activation": "tanh", "initial": initial},
                                  "y": {"size": 2, "activation": "identity"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
             {"y": {"loss": "mse"}})
    net = network(p, executor)
    x = xs(np.random.default_rng(0), 3)
    W, U, b, V, c = (net.params[k] for k in ("x->h", "h->h@1", "h.bias", "h->y", "y.bias"))
    h_prev = np.zeros((B, 4)) + net.params.get("h.h0", 0)
    h = np.zeros((T, B, 4))
    for t in range(T):
        h[t] = h_prev = np.tanh(x[t] @ W.T + h_prev @ U.T + b)
    out = net.forward({"x": x}, units=["h"])
    close(out["h"], h, "h")
    close(out["y"], h @ V.T + c, "y")
    target = xs(np.random.default_rng(1), 2)
    assert net.loss({"x": x}, {"y": target}) == pytest.approx(np.mean((h @ V.T + c - target) ** 2), rel=1e-12)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_leaky_unit_mixes_its_previous_output_with_its_activation(executor):
    """out_t = a * out_{t-1} + (1 - a) * tanh(W x_t + U out_{t-1} + b), per-unit a, out_{-1} = h0."""
    alpha = [0.2, 0.5, 0.9]
    p = spec({"x": {"size": 2}},
             {"h": {"size": 3, "activation": "tanh", "initial": "learned",
                    "leak": {"alpha": alpha, "trainable": True}}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}], {"h": {"loss": "mse"}})
    net = network(p, executor)
    a = net.params["h.alpha"]
    assert not np.allclose(a, alpha)  # moved off the spec's values: the parameter is what is used
    x = xs(np.random.default_rng(2), 2)
    W, U, b = net.params["x->h"], net.params["h->h@1"], net.params["h.bias"]
    out_prev, want = np.zeros((B, 3)) + net.params["h.h0"], np.zeros((T, B, 3))
    for t in range(T):
        want[t] = out_prev = a * out_prev + (1 - a) * np.tanh(x[t] @ W.T + out_prev @ U.T + b)
    close(net.forward({"x": x})["h"], want)


def test_leak_alpha_from_the_spec_is_used_as_given():
    p = spec({"x": {"size": 1}}, {"h": {"size": 2, "activation": "identity", "bias": False,
                                        "leak": {"alpha": [0.25, 0.75]}}},
             [{"from": "x", "to": "h", "weight": {"fixed": [[1.0], [1.0]]}}], {"h": {"loss": "mse"}})
    net = runtime.Network(p, dtype="float64")
    assert "h.alpha" not in net.trainable
    x = np.ones((3, 1, 1))
    # out_0 = (1 - a), out_1 = a (1 - a) + (1 - a), ...
    a = np.array([0.25, 0.75])
    want = np.stack([(1 - a), a * (1 - a) + (1 - a), a * (a * (1 - a) + (1 - a)) + (1 - a)])[:, None, :]
    close(net.forward({"x": x})["h"], want)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_delay_5_reads_exactly_five_steps_back_and_the_initial_state_before(executor):
    """y_t = x_{t-5} (zeros before t = 5, an input has no h0); z_t = a_{t-5} with a = x, and a's
    learned h0 before t = 5."""
    p = spec({"x": {"size": 2}},
             {"a": {"size": 2, "activation": "identity", "bias": False, "initial": "learned"},
              "y": {"size": 2, "activation": "identity", "bias": False},
              "z": {"size": 2, "activation": "identity", "bias": False}},
             [{"from": "x", "to": "y", "delay": 5, "weight": {"fixed": 1}},
              {"from": "x", "to": "a", "weight": "identity"},
              {"from": "a", "to": "z", "delay": 5, "weight": "identity"}],
             {"y": {"loss": "mse"}, "z": {"loss": "mse"}})
    net = network(p, executor)
    net.params["a.h0"] = np.array([0.3, -0.7])
    x = xs(np.random.default_rng(3), 2, steps=8)
    out = net.forward({"x": x})
    close(out["y"][:5], 0)
    close(out["y"][5:], x[:3])
    close(out["z"][:5], np.broadcast_to([0.3, -0.7], (5, B, 2)))
    close(out["z"][5:], x[:3])


def backward_rnn(x, lengths, W, U, b, h0):
    """h_t = tanh(W x_t + U h_{t+1} + b) for t = L-1 .. 0, h_L = h0: a forward loop over each
    sample's reversed valid part, reversed back; zeros after the end."""
    h = np.zeros(x.shape[:2] + (U.shape[0],))
    for s, n in enumerate(lengths):
        prev = h0
        for j, xt in enumerate(x[:n, s][::-1]):
            h[n - 1 - j, s] = prev = np.tanh(W @ xt + U @ prev + b)
    return h


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("lengths", [None, [T, 3, 5]], ids=["full", "lengths"])
def test_backward_unit_equals_the_loop_run_on_the_reversed_sequence(executor, lengths):
    """A delay -1 recurrence starts at each sample's last valid step, from h0."""
    p = spec({"x": {"size": 2}},
             {"h": {"size": 3, "activation": "tanh", "initial": "learned"},
              "y": {"size": 1, "activation": "identity"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": -1}, {"from": "h", "to": "y"}],
             {"y": {"loss": "mse"}})
    assert [c.direction for c in p.components] == [-1, 0]
    net = network(p, executor)
    x = xs(np.random.default_rng(4), 2)
    want = backward_rnn(x, lengths or [T] * B, net.params["x->h"], net.params["h->h@-1"],
                        net.params["h.bias"], net.params["h.h0"])
    close(net.forward({"x": x}, lengths=lengths, units=["h"])["h"], want)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_forward_and_backward_units_of_a_bidirectional_net_see_their_own_ends(executor):
    p = spec({"x": {"size": 2}},
             {"f": {"size": 2, "activation": "tanh"}, "b": {"size": 2, "activation": "tanh"},
              "y": {"size": 1, "activation": "identity"}},
             [{"from": "x", "to": ["f", "b"]}, {"from": "f", "to": "f", "delay": 1},
              {"from": "b", "to": "b", "delay": -1}, {"from": ["f", "b"], "to": "y"}],
             {"y": {"loss": "mse"}})
    net = network(p, executor)
    x, lengths = xs(np.random.default_rng(5), 2), [4, T, 2]
    P = net.params
    fwd = np.zeros((T, B, 2))
    for s, n in enumerate(lengths):
        prev = np.zeros(2)
        for t in range(n):
            fwd[t, s] = prev = np.tanh(P["x->f"] @ x[t, s] + P["f->f@1"] @ prev + P["f.bias"])
    bwd = backward_rnn(x, lengths, P["x->b"], P["b->b@-1"], P["b.bias"], np.zeros(2))
    y = fwd @ P["f->y"].T + bwd @ P["b->y"].T + P["y.bias"]
    y *= (np.arange(T)[:, None] < np.asarray(lengths))[..., None]
    out = net.forward({"x": x}, lengths=lengths, units=["f", "b"])
    close(out["f"], fwd, "forward half")
    close(out["b"], bwd, "backward half")
    close(out["y"], y, "readout")


# -- gates -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
def test_gate_at_target_at_source_and_complement(executor):
    p = spec({"x": {"size": 3}},
             {"gt": {"size": 2, "activation": "sigmoid"}, "gs": {"size": 3, "activation": "sigmoid"},
              "y1": {"size": 2, "activation": "identity"}, "y2": {"size": 2, "activation": "identity"},
              "y3": {"size": 2, "activation": "identity"}, "y4": {"size": 2, "activation": "identity"},
              "c": {"size": 2, "activation": "identity", "bias": False}},
             [{"from": "x", "to": ["gt", "gs"]},
              {"from": "x", "to": "y1", "gate": "gt"},
              {"from": "x", "to": "y2", "bias": True, "gate": {"unit": "gt", "complement": True}},
              {"from": "x", "to": "y3", "gate": {"unit": "gs", "at": "source"}},
              {"from": "x", "to": "y4", "gate": {"unit": "gs", "at": "source", "complement": True}},
              {"from": "x", "to": "c"},
              {"from": "c", "to": "c", "delay": 1, "weight": "identity", "gate": "gt"}],
             {u: {"loss": "mse"} for u in ("y1", "y2", "y3", "y4", "c")})
    net = network(p, executor)
    P = net.params
    x = xs(np.random.default_rng(6), 3)
    gt = sigmoid(x @ P["x->gt"].T + P["gt.bias"])
    gs = sigmoid(x @ P["x->gs"].T + P["gs.bias"])
    c, prev = np.zeros((T, B, 2)), np.zeros((B, 2))
    for t in range(T):  # the gate is read at the target's step t, not at t - 1
        c[t] = prev = x[t] @ P["x->c"].T + gt[t] * prev
    want = {
        "y1": gt * (x @ P["x->y1"].T) + P["y1.bias"],
        "y2": (1 - gt) * (x @ P["x->y2"].T + P["x->y2.bias"]) + P["y2.bias"],
        "y3": (gs * x) @ P["x->y3"].T + P["y3.bias"],
        "y4": ((1 - gs) * x) @ P["x->y4"].T + P["y4.bias"],
        "c": c,
    }
    out = net.forward({"x": x})
    for u, w in want.items():
        close(out[u], w, u)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_gru_original_reset_gates_the_source_and_torch_form_gates_the_product(executor):
    """n = tanh(W x + U (r * h_{t-1})) (original) vs tanh(W x + r * (U h_{t-1} + b_hn)) (torch's)."""
    for lbr in (False, True):
        p = compiler.compile_spec({"timeloom": 1, "inputs": {"x": {"size": 2}},
                                   "blocks": {"g": {"type": "gru", "size": 3, "linear_before_reset": lbr}},
                                   "connections": [{"from": "x", "to": "g"}], "outputs": {"g.h": {"loss": "mse"}}})
        net = network(p, executor)
        P = net.params
        x = xs(np.random.default_rng(7), 2)
        h, prev = np.zeros((T, B, 3)), np.zeros((B, 3))
        for t in range(T):
            r = sigmoid(x[t] @ P["x->g.r"].T + prev @ P["g.h->g.r@1"].T + P["g.r.bias"])
            z = sigmoid(x[t] @ P["x->g.z"].T + prev @ P["g.h->g.z@1"].T + P["g.z.bias"])
            if lbr:
                rec = r * (prev @ P["g.h->g.n@1"].T + P["g.h->g.n@1.bias"])
            else:
                rec = (r * prev) @ P["g.h->g.n@1"].T
            n = np.tanh(x[t] @ P["x->g.n"].T + rec + P["g.n.bias"])
            h[t] = prev = (1 - z) * n + z * prev
        close(net.forward({"x": x})["g.h"], h, f"linear_before_reset={lbr}")


# -- losses ----------------------------------------------------------------------------------------

def classifier(activation="softmax", at="all", loss="cross_entropy", size=4):
    return spec({"x": {"size": 3}}, {"h": {"size": 3, "activation": "tanh"},
                                     "y": {"size": size, "activation": activation}},
                [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
                {"y": {"loss": loss, "at": at}})


def same_params(a, b):
    for k in a.params:
        b.params[k] = a.params[k].copy()


# padded steps hold y = 0, so the closed form takes log(0) there before `valid` masks them out
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("lengths", [None, [T, 2, 5]], ids=["full", "lengths"])
def test_cross_entropy_with_class_indices_equals_one_hot_and_the_closed_form(executor, lengths):
    net = network(classifier(), executor)
    rng = np.random.default_rng(8)
    x, labels = xs(rng, 3), rng.integers(0, 4, (T, B))
    onehot = np.eye(4)[labels]
    loss_i, grads_i = net.loss_and_grads({"x": x}, {"y": labels}, lengths=lengths)
    loss_h, grads_h = net.loss_and_grads({"x": x}, {"y": onehot}, lengths=lengths)
    y = net.forward({"x": x}, lengths=lengths)["y"]
    valid = np.arange(T)[:, None] < np.asarray(lengths or [T] * B)
    logp = np.log(np.take_along_axis(y, labels[..., None], axis=-1)[..., 0])
    assert loss_i == pytest.approx(-logp[valid].mean(), rel=1e-12)
    assert loss_h == pytest.approx(loss_i, rel=1e-12)
    for k in grads_i:
        close(grads_h[k], grads_i[k], k)


@pytest.mark.parametrize("loss", ["cross_entropy", "bce"])
def test_identity_logits_give_the_same_loss_and_gradients_as_the_squashed_output(loss):
    squash = "softmax" if loss == "cross_entropy" else "sigmoid"
    a, b = network(classifier(squash, loss=loss)), network(classifier("identity", loss=loss))
    same_params(a, b)
    rng = np.random.default_rng(9)
    x = xs(rng, 3)
    target = rng.integers(0, 4, (T, B)) if loss == "cross_entropy" else (rng.random((T, B, 4)) > 0.5) * 1.0
    loss_a, grads_a = a.loss_and_grads({"x": x}, {"y": target})
    loss_b, grads_b = b.loss_and_grads({"x": x}, {"y": target})
    assert loss_a == pytest.approx(loss_b, rel=1e-10)
    for k in grads_a:
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-9, atol=1e-12, err_msg=k)


# padded steps hold p = 0: log(0) and 0 * -inf there before `valid` masks them out
@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("lengths", [None, [T, 1, 4]], ids=["full", "lengths"])
def test_bce_is_the_mean_over_valid_positions_and_features(executor, lengths):
    net = network(classifier("sigmoid", loss="bce"), executor)
    rng = np.random.default_rng(10)
    x, target = xs(rng, 3), (rng.random((T, B, 4)) > 0.5) * 1.0
    p = net.forward({"x": x}, lengths=lengths)["y"]
    valid = np.arange(T)[:, None] < np.asarray(lengths or [T] * B)
    ce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    assert net.loss({"x": x}, {"y": target}, lengths=lengths) == pytest.approx(ce[valid].mean(), rel=1e-12)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_at_last_scores_each_samples_last_valid_step(executor, loss):
    lengths = [T, 2, 5]
    net = network(classifier("identity" if loss == "mse" else "softmax", at="last", loss=loss), executor)
    rng = np.random.default_rng(11)
    x = xs(rng, 3)
    target = rng.standard_normal((B, 4)) if loss == "mse" else rng.integers(0, 4, B)
    y = net.forward({"x": x}, lengths=lengths)["y"]
    last = y[np.asarray(lengths) - 1, np.arange(B)]  # (B, 4)
    want = np.mean((last - target) ** 2) if loss == "mse" else -np.log(last[np.arange(B), target]).mean()
    assert net.loss({"x": x}, {"y": target}, lengths=lengths) == pytest.approx(want, rel=1e-12)
    # the steps after a sample's end do not count even where their inputs change
    x2 = x.copy()
    x2[2:, 1] = 50.0
    assert net.loss({"x": x2}, {"y": target}, lengths=lengths) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("lengths", [None, [T, 3, 6]], ids=["full", "lengths"])
def test_at_mask_scores_the_masked_valid_positions(executor, lengths):
    net = network(classifier("identity", at="mask", loss="mse"), executor)
    rng = np.random.default_rng(12)
    x, target = xs(rng, 3), rng.standard_normal((T, B, 4))
    mask = (rng.random((T, B)) > 0.4) * 1.0
    y = net.forward({"x": x}, lengths=lengths)["y"]
    m = mask * (np.arange(T)[:, None] < np.asarray(lengths or [T] * B))
    want = ((y - target) ** 2 * m[..., None]).sum() / (m.sum() * 4)
    assert net.loss({"x": x}, {"y": target}, lengths=lengths, masks={"y": mask}) == pytest.approx(want, rel=1e-12)
    with pytest.raises(DataError, match="mask"):
        net.loss({"x": x}, {"y": target}, lengths=lengths)


@pytest.mark.parametrize("executor", EXECUTORS)
def test_learned_initial_state_gets_the_gradient_of_its_reads(executor):
    p = spec({"x": {"size": 2}}, {"h": {"size": 3, "activation": "tanh", "initial": "learned"},
                                  "y": {"size": 1, "activation": "identity"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
             {"y": {"loss": "mse"}})
    net = network(p, executor)
    assert "h.h0" in net.trainable
    rng = np.random.default_rng(13)
    x, target = xs(rng, 2), rng.standard_normal((T, B, 1))
    _, grads = net.loss_and_grads({"x": x}, {"y": target})
    assert np.abs(grads["h.h0"]).max() > 1e-4
    h0, eps = net.params["h.h0"], 1e-6
    for i in range(3):  # central differences: O(eps^2) ~ 1e-12 truncation, ~1e-10 round-off
        old = h0[i]
        h0[i] = old + eps
        up = net.loss({"x": x}, {"y": target})
        h0[i] = old - eps
        down = net.loss({"x": x}, {"y": target})
        h0[i] = old
        assert grads["h.h0"][i] == pytest.approx((up - down) / (2 * eps), rel=1e-6, abs=1e-9)
    zeros = spec({"x": {"size": 2}}, {"h": {"size": 3, "activation": "tanh"}},
                 [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}], {"h": {"loss": "mse"}})
    assert "h.h0" not in runtime.Network(zeros).params


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_carried_state_is_a_constant_and_continues_the_sequence(executor):
    """Chunk 2 run from chunk 1's state scores exactly the second half of one long run, and its
    BPTT stops at the chunk boundary (truncated BPTT): h0 gets no gradient from reads the state covers."""
    p = spec({"x": {"size": 2}}, {"h": {"size": 3, "activation": "tanh", "initial": "learned"},
                                  "y": {"size": 1, "activation": "identity"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
             {"y": {"loss": "mse"}})
    net = network(p, executor)
    rng = np.random.default_rng(14)
    x, target = xs(rng, 2), rng.standard_normal((T, B, 1))
    y = net.forward({"x": x})["y"]
    _, state = net.forward({"x": x[:3]}, return_state=True)
    loss, grads = net.loss_and_grads({"x": x[3:]}, {"y": target[3:]}, state=state)
    assert loss == pytest.approx(np.mean((y[3:] - target[3:]) ** 2), rel=1e-12)
    assert not np.any(grads["h.h0"])
    assert np.any(grads["h->h@1"])


def test_mask_of_the_wrong_shape_is_rejected():
    net = runtime.Network(classifier("identity", at="mask", loss="mse"), dtype="float64")
    x, target = np.zeros((T, B, 3)), np.zeros((T, B, 4))
    with pytest.raises(DataError, match=r"mask of output 'y' has shape \(7, 2\), expected \(7, 3\)"):
        net.loss({"x": x}, {"y": target}, masks={"y": np.ones((T, 2))})


# -- data errors -----------------------------------------------------------------------------------

@pytest.fixture
def two_inputs():
    p = spec({"x": {"size": 3}, "m": {"size": 1}},
             {"h": {"size": 2, "activation": "tanh"}, "y": {"size": 4, "activation": "softmax"},
              "r": {"size": 2, "activation": "identity"}},
             [{"from": ["x", "m"], "to": "h"}, {"from": "h", "to": ["y", "r"]}],
             {"y": {"loss": "cross_entropy"}, "r": {"loss": "mse", "at": "last"}})
    return runtime.Network(p, dtype="float64")


def good(T=5, B=2):
    rng = np.random.default_rng(0)
    return ({"x": rng.standard_normal((T, B, 3)), "m": rng.standard_normal((T, B, 1))},
            {"y": rng.integers(0, 4, (T, B)), "r": rng.standard_normal((B, 2))})


def test_data_errors_are_timeloom_errors():
    assert issubclass(DataError, TimeloomError)


def test_good_data_passes(two_inputs):
    inputs, targets = good()
    two_inputs.loss(inputs, targets)


@pytest.mark.parametrize("bad, found, expected", [
    ({"x": (5, 2, 4)}, "(5, 2, 4)", "(T, B, 3)"),
    ({"x": (5, 2)}, "(5, 2)", "(T, B, 3)"),
    ({"m": (4, 2, 1)}, "(4, 2, 1)", "(5, 2, 1)"),
    ({"m": (5, 3, 1)}, "(5, 3, 1)", "(5, 2, 1)"),
])
def test_wrong_input_shape_names_the_input_the_expected_and_the_found_shape(two_inputs, bad, found, expected):
    inputs, _ = good()
    ((name, shape),) = bad.items()
    inputs[name] = np.zeros(shape)
    with pytest.raises(DataError) as e:
        two_inputs.forward(inputs)
    msg = str(e.value)
    assert f"'{name}'" in msg and found in msg and expected in msg, msg


def test_missing_and_unknown_inputs_are_named(two_inputs):
    inputs, _ = good()
    del inputs["m"]
    with pytest.raises(DataError, match="missing input 'm'"):
        two_inputs.forward(inputs)
    inputs, _ = good()
    inputs["z"] = inputs["m"]
    with pytest.raises(DataError, match="unknown input 'z'"):
        two_inputs.forward(inputs)


@pytest.mark.parametrize("output, shape, expected", [
    ("y", (5, 2, 3), "(5, 2, 4) or class indices (5, 2)"),  # one-hot of the wrong width
    ("y", (4, 2), "(5, 2, 4) or class indices (5, 2)"),
    ("r", (5, 2, 2), "(2, 2)"),  # at: last wants one target per sample
    ("r", (2, 3), "(2, 2)"),
])
def test_wrong_target_shape_names_the_output_the_expected_and_the_found_shape(two_inputs, output, shape, expected):
    inputs, targets = good()
    targets[output] = np.zeros(shape, dtype=targets[output].dtype)
    with pytest.raises(DataError) as e:
        two_inputs.loss_and_grads(inputs, targets)
    msg = str(e.value)
    assert f"'{output}'" in msg and str(shape) in msg and expected in msg, msg


def test_missing_target_is_named(two_inputs):
    inputs, targets = good()
    del targets["r"]
    with pytest.raises(DataError, match="missing target for output 'r'"):
        two_inputs.loss(inputs, targets)


@pytest.mark.parametrize("lengths", [[0, 5], [5, 6], [5], [5.0, 4.5]])
def test_lengths_outside_one_to_T_are_rejected(two_inputs, lengths):
    inputs, targets = good()
    with pytest.raises(DataError, match=r"lengths must be 2 integers in \[1, 5\]"):
        two_inputs.loss(inputs, targets, lengths=lengths)


def test_whole_float_lengths_are_the_integers(two_inputs):
    inputs, targets = good()
    assert two_inputs.loss(inputs, targets, lengths=np.array([5.0, 3.0])) == \
        two_inputs.loss(inputs, targets, lengths=[5, 3])


@pytest.mark.parametrize("bad,message", [
    (lambda x: x.astype(complex), r"input 'x' has dtype complex128; give real numbers"),
    (lambda x: x.astype(str), r"input 'x' has dtype <U\d+; give real numbers"),
    (lambda x: x[:0], r"input 'x' has shape \(0, 2, 3\): it needs at least one time step"),
    (lambda x: x[:, :0], r"input 'x' has shape \(5, 0, 3\)"),
])
def test_inputs_that_are_not_real_arrays_with_steps_are_named(two_inputs, bad, message):
    inputs, targets = good()
    inputs["x"] = bad(inputs["x"])
    inputs["m"] = inputs["m"][:inputs["x"].shape[0], :inputs["x"].shape[1]]
    with pytest.raises(DataError, match=message):
        two_inputs.forward(inputs)


def test_lists_are_taken_as_arrays(two_inputs):
    inputs, targets = good()
    as_lists = {k: v.tolist() for k, v in inputs.items()}
    assert two_inputs.loss(as_lists, {k: v.tolist() for k, v in targets.items()}) == two_inputs.loss(inputs, targets)


@pytest.mark.parametrize("jit", [None, False])
def test_a_carried_state_is_checked_by_name_and_shape(jit):
    """`state=` as forward(return_state=True) gives it: a wrong shape or an unknown key is a
    DataError (numba's typing error, or with jit=False a silently wrong result, before)."""
    p = spec({"x": {"size": 3}}, {"h": {"size": 4, "activation": "tanh"}, "y": {"size": 2, "activation": "identity"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 2}, {"from": "h", "to": "y"}],
             {"y": {"loss": "mse"}})
    net = runtime.Network(p, dtype="float64", jit=jit)
    x = xs(np.random.default_rng(0), 3)
    _, state = net.forward({"x": x}, return_state=True)
    assert state["h"].shape == (2, B, 4)
    for bad, message in [({"h": state["h"][0]}, r"state 'h' has shape \(3, 4\), expected \(2, 3, 4\)"),
                         ({"h": state["h"][:, :2]}, r"state 'h' has shape \(2, 2, 4\)"),
                         ({"hh": state["h"]}, r"state names 'hh', which carries no state \(the state's keys: h\)"),
                         ({"h": state["h"].astype(complex)}, r"state 'h' has dtype complex128")]:
        with pytest.raises(DataError, match=message):
            net.forward({"x": x}, state=bad)
    close(net.forward({"x": x}, state={"h": state["h"][1:]})["y"],  # fewer steps than the depth: allowed
          net.forward({"x": x}, state={"h": np.concatenate([np.zeros((1, B, 4)), state["h"][1:]])})["y"])


def test_non_finite_inputs_are_rejected(two_inputs):
    inputs, _ = good()
    inputs["x"][1, 0, 2] = np.nan
    with pytest.raises(DataError, match="'x' contains NaN"):
        two_inputs.forward(inputs)


def test_bce_on_a_saturated_float32_sigmoid_stays_finite():
    """A sigmoid that rounds to exactly 1.0 in float32 with target 0: the loss is large but
    finite (log of float32's eps, not log 0), and the fused gradient is (y - t) / n."""
    spec = {"timeloom": 1, "inputs": {"x": {"size": 1}},
            "units": {"y": {"size": 1, "activation": "sigmoid", "bias": {"value": 40.0}}},
            "connections": [{"from": "x", "to": "y"}], "outputs": {"y": {"loss": "bce"}}}
    net = runtime.Network(compiler.compile_spec(spec), dtype="float32")
    x = {"x": np.zeros((2, 1, 1), dtype=np.float32)}
    loss, grads = net.loss_and_grads(x, {"y": np.zeros((2, 1, 1), dtype=np.float32)})
    assert np.isfinite(loss) and loss == pytest.approx(-np.log(np.finfo(np.float32).eps), rel=1e-6)
    assert grads["y.bias"][0] == pytest.approx(1.0, rel=1e-6)


def test_assigning_a_parameter_checks_its_name_and_shape(two_inputs):
    """A transposed weight used to fail deep in the next forward pass (numpy concatenate)."""
    name = "x->h"
    want = two_inputs.params[name].shape
    with pytest.raises(DataError, match=rf"parameter 'x->h' has shape \({want[0]}, {want[1]}\); the array given "
                                        rf"has shape \({want[1]}, {want[0]}\)"):
        two_inputs.params[name] = np.zeros(want[::-1])
    with pytest.raises(DataError, match=r"no parameter 'x->hh' \(did you mean 'x->h'\?\)"):
        two_inputs.params["x->hh"] = np.zeros(want)
    two_inputs.params[name] = np.ones(want, dtype=int)  # taken in the network's dtype
    assert two_inputs.params[name].dtype == np.float64 and np.array_equal(two_inputs.params[name], np.ones(want))
    two_inputs.params[name] = np.ones(want).tolist()
    assert isinstance(two_inputs.params[name], np.ndarray)
    with pytest.raises(DataError, match=r"parameter 'x->h' has dtype complex128"):
        two_inputs.params[name] = np.ones(want, dtype=complex)
    import pickle
    again = pickle.loads(pickle.dumps(two_inputs.params))  # (torch.save pickles it too)
    assert again.keys() == two_inputs.params.keys() and np.array_equal(again[name], two_inputs.params[name])
    with pytest.raises(DataError, match="has shape"):
        again[name] = np.zeros(want[::-1])


def test_torch_tensors_are_taken_as_arrays_even_when_they_need_gradients(two_inputs):
    torch = pytest.importorskip("torch")
    inputs, targets = good()
    as_tensors = {k: torch.tensor(v, requires_grad=True) for k, v in inputs.items()}
    assert two_inputs.loss(as_tensors, targets) == two_inputs.loss(inputs, targets)
    w = two_inputs.params["x->h"]
    two_inputs.params["x->h"] = torch.tensor(w, requires_grad=True)
    assert isinstance(two_inputs.params["x->h"], np.ndarray) and np.array_equal(two_inputs.params["x->h"], w)


def test_non_finite_lengths_are_a_data_error_without_warnings(two_inputs):
    import warnings
    inputs, targets = good()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="lengths must be 2 integers"):
            two_inputs.loss(inputs, targets, lengths=np.array([5.0, np.nan]))


@pytest.mark.parametrize("jit", [None, False])
def test_a_teacher_forcing_mask_of_the_wrong_shape_is_refused(jit):
    """The compiled scan reads the mask at every (t, b): a (1, 1) mask was read past its end."""
    p = spec({"x": {"size": 2}}, {"h": {"size": 3, "activation": "tanh"}, "y": {"size": 1, "activation": "identity"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
             {"y": {"loss": "mse"}})
    net = runtime.Network(p, dtype="float64", jit=jit)
    x = xs(np.random.default_rng(0), 2)
    forced = np.zeros((T, B, 3))
    for mask in (np.zeros((1, 1)), np.zeros((T,)), np.zeros((B, T))):
        with pytest.raises(DataError, match=rf"teacher-forcing mask of 'h' has shape .*expected \({T}, {B}\)"):
            net.forward({"x": x}, teacher={"h": (forced, mask)})
    close(net.forward({"x": x}, teacher={"h": (forced, np.zeros((T, B)))})["y"], net.forward({"x": x})["y"])


@pytest.mark.parametrize("bad", [[[4, 0]] * 5, [[-1, 0]] * 5, [[1.5, 0]] * 5, [[np.nan, 0]] * 5])
def test_class_indices_outside_the_classes_are_refused(two_inputs, bad):
    inputs, targets = good()
    targets["y"] = np.array(bad)
    with pytest.raises(DataError, match=r"target for output 'y': class indices must be integers in \[0, 3\]"):
        two_inputs.loss(inputs, targets)


def test_negative_loss_masks_are_refused(two_inputs):
    inputs, targets = good()
    with pytest.raises(DataError, match="mask of output 'y' has negative entries"):
        two_inputs.loss(inputs, targets, masks={"y": -np.ones((5, 2))})


def test_params_update_and_setdefault_check_like_assignment(two_inputs):
    want = two_inputs.params["x->h"].shape
    with pytest.raises(DataError, match="has shape"):
        two_inputs.params.update({"x->h": np.zeros(want[::-1])})
    with pytest.raises(DataError, match="no parameter 'bogus'"):
        two_inputs.params.update(bogus=np.zeros(1))
    with pytest.raises(DataError, match="no parameter 'bogus'"):
        two_inputs.params.setdefault("bogus", np.zeros(1))
    two_inputs.params.update({"x->h": np.ones(want)})
    assert np.array_equal(two_inputs.params["x->h"], np.ones(want))
    with pytest.raises(DataError, match="no parameter 'bogus'"):  # all checked first: nothing changes
        two_inputs.params.update({"x->h": np.zeros(want), "bogus": np.zeros(1)})
    assert np.array_equal(two_inputs.params["x->h"], np.ones(want))
    import copy
    twin = copy.copy(two_inputs.params)
    twin["x->h"] = np.ones(want, dtype=int)  # the copy converts to the net's dtype too
    assert twin["x->h"].dtype == np.float64 and two_inputs.params["x->h"] is not twin["x->h"]


def test_a_forward_pass_beyond_the_memory_limit_is_refused_before_it_starts(two_inputs):
    from compiler.budget import BudgetError
    huge = {"x": np.broadcast_to(np.zeros((1, 1, 3)), (100, 10**7, 3)), "m": np.broadcast_to(np.zeros((1, 1, 1)), (100, 10**7, 1))}
    with pytest.raises(BudgetError, match=r"a forward pass over T=100, B=10,000,000 \(at least its outputs\) needs about .* GiB"):
        two_inputs.forward(huge)


def test_arguments_of_the_wrong_kind_are_named(two_inputs):
    inputs, targets = good()
    with pytest.raises(DataError, match="inputs must be a dict"):
        two_inputs.forward([inputs["x"]])
    with pytest.raises(DataError, match="lengths must be 2 integers"):
        two_inputs.forward(inputs, lengths=[[1, 2], [3]])
    with pytest.raises(DataError, match=r"got \[0, 1, 2, .*\.\.\. \(1,000 values\)"):
        two_inputs.forward(inputs, lengths=list(range(1000)))


def test_padding_in_class_index_targets_is_not_checked():
    """-1 at padded (or masked) steps is padding, as the data tasks write it: only counted steps must
    hold a class; and the message shows the wrong value itself (for unsigned targets too)."""
    p = spec({"x": {"size": 3}}, {"h": {"size": 2, "activation": "tanh"}, "y": {"size": 4, "activation": "softmax"}},
             [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
             {"y": {"loss": "cross_entropy"}})
    net = runtime.Network(p, dtype="float64")
    x = xs(np.random.default_rng(0), 3, steps=5, batch=2)
    y = np.array([[1, 2], [3, 0], [2, -1], [1, -1], [0, -1]])
    padded = net.loss({"x": x}, {"y": y}, lengths=[5, 2])
    assert padded == pytest.approx(net.loss({"x": x}, {"y": np.where(y < 0, 0, y)}, lengths=[5, 2]), rel=1e-12)
    masked = {"y": np.where(y < 0, 0.0, 1.0)}
    assert np.isfinite(net.loss({"x": x}, {"y": y}, masks=masked))
    with pytest.raises(DataError, match=r"class indices must be integers in \[0, 3\].*got np\.uint8\(30\)"):
        net.loss({"x": x}, {"y": np.where(y < 0, 30, y).astype(np.uint8)})
