"""Parity with the ONNX operators RNN, GRU and LSTM (forward: Y, Y_h, Y_c), float64.

The oracle is onnx's own reference evaluator (`onnx.reference.ReferenceEvaluator`) on a model
with one RNN / GRU / LSTM node built with `onnx.helper` (and checked by `onnx.checker`).
onnx 1.23's reference ops leave three attributes as TODO: LSTM and GRU ignore `activations`,
RNN knows only Tanh and Affine, and LSTM ignores `input_forget`. `ONNX_OPS` (tests/onnx_oracle.py) completes
them (passed as `new_ops`, which replaces the stock op): the activation slots take the
functions of the operators' "Activation functions" table, and `input_forget=1` couples the
gates as onnxruntime does (f_t = 1 - i_t; the f rows of W, R, B and P are unused). The
recurrence itself (gate order, bias sums, peepholes, directions, reset gate) stays onnx's code.

Mapping ONNX -> timeloom, per direction d (d = 0 forward, or the only direction of
`reverse`; d = 1 backward) onto the timeloom unit prefix p with recurrent delay D:
  forward: block `enc` (p = "enc", D = 1); reverse / bidirectional: a `bidirectional` block,
  p = "enc.fwd" (D = 1) for d = 0 of bidirectional and p = "enc.bwd" (D = -1) for the
  backward direction. A reverse ONNX op is exactly a timeloom unit whose delays are -1.
  RNN  W[d] -> "x->p.h"; R[d] -> "p.h->p.h@D"; Wb + Rb -> "p.h.bias".
  LSTM gate rows in the order i, o, f, c (timeloom's c~ is unit g):
       W[d][k] -> "x->p.k"; R[d][k] -> "p.h->p.k@D"; Wb[k] + Rb[k] -> "p.k.bias";
       P[d] in the order i, o, f -> "p.c->p.i@D", "p.c->p.o" (delay 0: o reads c_t, as ONNX's
       P_o * C_t), "p.c->p.f@D" (i and f read c_{t-1}); initial_h / initial_c (the same row
       for every sample) -> "p.h.h0" / "p.c.h0" (block option initial: learned); per-sample
       ones for a forward direction -> `state={"p.h": ..., "p.c": ...}`.
  GRU  gate rows in the order z, r, h (timeloom's n):
       W[d][k] -> "x->p.k"; R[d][k] -> "p.h->p.k@D"; z, r: Wb + Rb -> "p.k.bias";
       linear_before_reset=1: Wbh -> "p.n.bias", Rbh -> "p.h->p.n@D.bias" (inside r * (...));
       linear_before_reset=0: Wbh + Rbh -> "p.n.bias" (reset at the source: U (r * h)).
Activations: Tanh, Sigmoid, Relu, Softplus map by name (lstm block: f slot = gate_activation,
g = cell_activation, h = output_activation; gru: f = gate_activation, g = activation);
Affine(a, b) = identity on rescaled parameters (W, R, bias -> a W, a R, a bias + b);
ScaledTanh(a, b) = a tanh(b x) = {scaled_sigmoid: [-a, a]} of 2 b x (W, R, bias scaled by
2b; a = 2, b = 0.5 is Gers' [-2, 2] cell input unscaled); HardSigmoid(a, b) = clip(a x + b, 0, 1) =
hard_sigmoid of (a / 0.2) x + (b - 0.5) / 0.2. Not expressible in timeloom:
LeakyRelu, ThresholdedRelu, Elu, Softsign, `clip` (no clipping of net inputs),
different activations per direction of one bidirectional block.
input_forget=1 (ONNX/onnxruntime: i = f(a_i), forget = 1 - i) vs timeloom `coupled: true`
(f = sigma(a_f), input = 1 - f): the same model family for a sigmoid gate, since
1 - sigma(a) = sigma(-a): timeloom's f takes the NEGATED ONNX i rows (W, R, biases and the
i peephole), and ONNX's f rows are dropped. With another gate activation (one without
g(-x) = 1 - g(x)) the two couplings are different models.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx_oracle import ONNX_OPS  # noqa: E402

import compiler  # noqa: E402
import runtime  # noqa: E402
from interop import mapping  # noqa: E402  (the mapping under test: interop/mapping.py)
from interop.activations import Slot  # noqa: E402

TOL = 1e-10
X_COLUMNS = [("x", slice(None))]  # the operator's X is the input x alone
OPSET = 14


# --- the oracle: onnx's reference ops, completed (tests/onnx_oracle.py) ----------------------

OP_INPUTS = {"LSTM": ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"],
             "GRU": ["X", "W", "R", "B", "sequence_lens", "initial_h"],
             "RNN": ["X", "W", "R", "B", "sequence_lens", "initial_h"]}
RANK = {"Y": 4, "Y_h": 3, "Y_c": 3}


def run_onnx(op_type, arrays, **attrs):
    """Build a one-node model, check it, run it on the reference evaluator -> {Y, Y_h[, Y_c]}."""
    names = [n if n in arrays else "" for n in OP_INPUTS[op_type]]
    while names[-1] == "":
        names.pop()
    outputs = ["Y", "Y_h"] + (["Y_c"] if op_type == "LSTM" else [])
    node = helper.make_node(op_type, names, outputs, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, arrays[n].shape) for n in names if n],
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None] * RANK[n]) for n in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    got = ReferenceEvaluator(model, new_ops=ONNX_OPS).run(None, {n: arrays[n] for n in names if n})
    return dict(zip(outputs, got))


def test_completed_oracle_equals_onnx_stock_ops_on_defaults():
    """The completed ops change nothing where the stock reference ops already work."""
    rng = np.random.default_rng(0)
    for op, gates in (("LSTM", 4), ("GRU", 3), ("RNN", 1)):
        arrays = onnx_arrays(rng, op, 1, gates, T=4, B=2, I=3, H=2)
        names = [n for n in OP_INPUTS[op] if n in arrays]
        outs = ["Y", "Y_h"]
        node = helper.make_node(op, names, outs, hidden_size=2)
        graph = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info(n, TensorProto.DOUBLE, arrays[n].shape) for n in names],
            [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None] * RANK[n]) for n in outs])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        stock = ReferenceEvaluator(model).run(None, {n: arrays[n] for n in names})
        ours = ReferenceEvaluator(model, new_ops=ONNX_OPS).run(None, {n: arrays[n] for n in names})
        for a, b in zip(stock, ours):
            np.testing.assert_array_equal(a, b)


# --- random ONNX inputs and the timeloom side -------------------------------------------------

def onnx_arrays(rng, op, dirs, gates, T, B, I, H, peepholes=False, initial=False):
    u = lambda *shape: rng.uniform(-1, 1, shape)  # noqa: E731
    arrays = {"X": rng.standard_normal((T, B, I)), "W": u(dirs, gates * H, I),
              "R": u(dirs, gates * H, H), "B": u(dirs, 2 * gates * H)}
    if initial:
        # timeloom's learned h0 is one vector per unit: the same initial state for every sample
        arrays["initial_h"] = np.repeat(u(dirs, 1, H), B, axis=1)
        if op == "LSTM":
            arrays["initial_c"] = np.repeat(u(dirs, 1, H), B, axis=1)
    if peepholes:
        arrays["P"] = u(dirs, 3 * H)
    return arrays


def halves(direction):
    """[(timeloom prefix, delay)] for ONNX direction index 0 (and 1)."""
    return {"forward": [("enc", 1)], "reverse": [("enc.bwd", -1)],
            "bidirectional": [("enc.fwd", 1), ("enc.bwd", -1)]}[direction]


def timeloom_net(cell, direction, I):
    """The cell as block `enc` (forward) or inside a bidirectional block; every h an output."""
    block = cell if direction == "forward" else {"type": "bidirectional", "cell": cell}
    outs = ["enc.h"] if direction == "forward" else ["enc.fwd.h", "enc.bwd.h"]
    spec = {"timeloom": 1, "name": "onnx_parity", "inputs": {"x": {"size": I}},
            "blocks": {"enc": block}, "connections": [{"from": "x", "to": "enc"}],
            "outputs": {o: {"loss": "none"} for o in outs}}
    return runtime.Network(compiler.compile_spec(spec), dtype="float64")


def set_params(net, values, prefixes):
    """Assign `values`; every parameter of the used halves must be given exactly."""
    for name, v in values.items():
        assert name in net.params, f"{name} is not a timeloom parameter"
        assert net.params[name].shape == v.shape, (name, net.params[name].shape, v.shape)
        net.params[name] = np.array(v, dtype=np.float64)
    used = {n for n in net.params if any(n.startswith(p + ".") or f"->{p}." in n for p, _ in prefixes)}
    assert used <= set(values), f"not mapped: {sorted(used - set(values))}"


def compare(net, onnx_out, direction, unit_names, X, state=None, layout=0):
    """Y (T, dirs, B, H), Y_h (dirs, B, H), Y_c vs the timeloom trajectories of h (and c)."""
    hs = halves(direction)
    units = [f"{p}.{u}" for p, _ in hs for u in unit_names]
    traj = net.forward({"x": X}, units=units, state=state)
    T = X.shape[0]
    for d, (p, delay) in enumerate(hs):
        last = T - 1 if delay > 0 else 0  # the final state: after t = T-1, or for reverse after t = 0
        for u, key in zip(unit_names, ["Y_h", "Y_c"]):
            ref_last = onnx_out[key][:, d] if layout else onnx_out[key][d]
            np.testing.assert_allclose(traj[f"{p}.{u}"][last], ref_last, rtol=0, atol=TOL, err_msg=f"{key} {p}")
        ref_y = onnx_out["Y"].transpose(1, 2, 0, 3)[:, d] if layout else onnx_out["Y"][:, d]
        np.testing.assert_allclose(traj[f"{p}.h"], ref_y, rtol=0, atol=TOL, err_msg=f"Y {p}")


# --- RNN ----------------------------------------------------------------------------------------

# ONNX activation (alpha, beta) -> (timeloom activation, scale of W/R/bias, offset of bias).
# alpha and beta are float32 attributes: the values here are exact in float32.
RNN_ACTIVATIONS = {
    ("Tanh", None): ("tanh", 1.0, 0.0),
    ("Relu", None): ("relu", 1.0, 0.0),
    ("Sigmoid", None): ("sigmoid", 1.0, 0.0),
    ("Softplus", None): ("softplus", 1.0, 0.0),
    ("Affine", (1.0, 0.0)): ("identity", 1.0, 0.0),
    ("Affine", (0.5, 0.25)): ("identity", 0.5, 0.25),
    ("ScaledTanh", (1.5, 0.75)): ({"scaled_sigmoid": [-1.5, 1.5]}, 1.5, 0.0),
    ("HardSigmoid", (0.25, 0.5)): ("hard_sigmoid", 1.25, 0.0),  # clip(a x + b, 0, 1) = hard_sigmoid(a/0.2 x + ..)
    ("HardSigmoid", (0.5, 0.25)): ("hard_sigmoid", 2.5, -1.25),
}
RNN_CASES = [(a, ab, dr) for (a, ab) in RNN_ACTIVATIONS for dr in ("forward", "reverse", "bidirectional")
             if dr == "forward" or a in ("Tanh", "Relu", "ScaledTanh")]


@pytest.mark.parametrize("act,alpha_beta,direction", RNN_CASES,
                         ids=[f"{a}{'' if ab is None else ab}-{d}" for a, ab, d in RNN_CASES])
def test_rnn_matches_onnx(act, alpha_beta, direction):
    T, B, I, H = 5, 3, 3, 4
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(1)
    arrays = onnx_arrays(rng, "RNN", dirs, 1, T, B, I, H, initial=True)
    attrs = {"hidden_size": H, "direction": direction, "activations": [act] * dirs}
    if alpha_beta:
        attrs.update(activation_alpha=[alpha_beta[0]] * dirs, activation_beta=[alpha_beta[1]] * dirs)
    ref = run_onnx("RNN", arrays, **attrs)

    activation, scale, offset = RNN_ACTIVATIONS[(act, alpha_beta)]
    net = timeloom_net({"type": "rnn", "size": H, "activation": activation, "initial": "learned"},
                       direction, I)
    values, prefixes = {}, halves(direction)
    for d, (p, delay) in enumerate(prefixes):
        values.update(mapping.onnx_to_timeloom("rnn", mapping.prefixed_roles("rnn", p), delay, X_COLUMNS,
                                               arrays["W"][d], arrays["R"][d], arrays["B"][d],
                                               slots=[Slot(activation, scale, offset)]))
        values[f"{p}.h.h0"] = arrays["initial_h"][d, 0]
    set_params(net, values, prefixes)
    compare(net, ref, direction, ["h"], arrays["X"])


def test_reverse_rnn_is_a_unit_with_delay_minus_one():
    """ONNX direction=reverse written by hand: one unit, recurrent connection h -> h @ -1."""
    T, B, I, H = 6, 2, 3, 4
    rng = np.random.default_rng(2)
    arrays = onnx_arrays(rng, "RNN", 1, 1, T, B, I, H)
    ref = run_onnx("RNN", arrays, hidden_size=H, direction="reverse")
    spec = {"timeloom": 1, "name": "reverse", "inputs": {"x": {"size": I}},
            "units": {"h": {"size": H, "activation": "tanh"}},
            "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": -1}],
            "outputs": {"h": {"loss": "none"}}}
    net = runtime.Network(compiler.compile_spec(spec), dtype="float64")
    net.params.update({"x->h": arrays["W"][0], "h->h@-1": arrays["R"][0],
                       "h.bias": np.add(*np.split(arrays["B"][0], 2))})
    h = net.forward({"x": arrays["X"]})["h"]
    np.testing.assert_allclose(h, ref["Y"][:, 0], rtol=0, atol=TOL)
    np.testing.assert_allclose(h[0], ref["Y_h"][0], rtol=0, atol=TOL)


# --- LSTM ---------------------------------------------------------------------------------------

LSTM_ACTIVATIONS = {  # ONNX (f, g, h) + alpha/beta -> lstm block options
    "default": ([], None, {}),
    "relu-softplus": (["Sigmoid", "Relu", "Softplus"], None,
                      {"cell_activation": "relu", "output_activation": "softplus"}),
    "tanh-sigmoid-relu": (["Tanh", "Sigmoid", "Relu"], None,
                          {"gate_activation": "tanh", "cell_activation": "sigmoid", "output_activation": "relu"}),
    "gers-cell-input": (["Sigmoid", "ScaledTanh", "Tanh"], (2.0, 0.5),
                        {"cell_activation": {"scaled_sigmoid": [-2, 2]}}),
}


def lstm_values(arrays, direction, peepholes, coupled=False, initial=True):
    values, prefixes = {}, halves(direction)
    for d, (p, delay) in enumerate(prefixes):
        values.update(mapping.onnx_to_timeloom("lstm", mapping.prefixed_roles("lstm", p), delay, X_COLUMNS,
                                               arrays["W"][d], arrays["R"][d], arrays["B"][d],
                                               arrays["P"][d] if peepholes else None, coupled=coupled))
        if initial:
            values[f"{p}.h.h0"] = arrays["initial_h"][d, 0]
            values[f"{p}.c.h0"] = arrays["initial_c"][d, 0]
    return values, prefixes


LSTM_CASES = [(dr, peep, acts) for dr in ("forward", "reverse", "bidirectional") for peep in (False, True)
              for acts in LSTM_ACTIVATIONS if acts == "default" or (peep and dr != "reverse")]


@pytest.mark.parametrize("direction,peepholes,acts", LSTM_CASES,
                         ids=[f"{d}{'-peepholes' if p else ''}-{a}" for d, p, a in LSTM_CASES])
def test_lstm_matches_onnx(direction, peepholes, acts):
    T, B, I, H = 5, 3, 3, 4
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(3)
    arrays = onnx_arrays(rng, "LSTM", dirs, 4, T, B, I, H, peepholes=peepholes, initial=True)
    onnx_acts, alpha_beta, options = LSTM_ACTIVATIONS[acts]
    attrs = {"hidden_size": H, "direction": direction}
    if onnx_acts:
        attrs["activations"] = onnx_acts * dirs
    if alpha_beta:
        attrs.update(activation_alpha=[alpha_beta[0]] * dirs, activation_beta=[alpha_beta[1]] * dirs)
    ref = run_onnx("LSTM", arrays, **attrs)

    net = timeloom_net({"type": "lstm", "size": H, "peepholes": peepholes, "initial": "learned", **options},
                       direction, I)
    values, prefixes = lstm_values(arrays, direction, peepholes)
    set_params(net, values, prefixes)
    compare(net, ref, direction, ["h", "c"], arrays["X"])


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_lstm_input_forget_matches_timeloom_coupled_gates(direction):
    """ONNX input_forget=1 (forget = 1 - input) == timeloom coupled (input = 1 - forget) with the
    forget gate's parameters = the negated ONNX input-gate rows; ONNX's f rows play no part."""
    T, B, I, H = 6, 2, 3, 3
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(4)
    arrays = onnx_arrays(rng, "LSTM", dirs, 4, T, B, I, H, peepholes=True, initial=True)
    ref = run_onnx("LSTM", arrays, hidden_size=H, direction=direction, input_forget=1)
    net = timeloom_net({"type": "lstm", "size": H, "peepholes": True, "coupled": True, "initial": "learned"},
                       direction, I)
    values, prefixes = lstm_values(arrays, direction, True, coupled=True)
    set_params(net, values, prefixes)
    compare(net, ref, direction, ["h", "c"], arrays["X"])
    # ONNX's own f rows are unused: changing them leaves the ONNX outputs as they were
    other = dict(arrays, W=arrays["W"].copy())
    other["W"][:, 2 * H:3 * H] += 1.0
    np.testing.assert_array_equal(run_onnx("LSTM", other, hidden_size=H, direction=direction,
                                           input_forget=1)["Y"], ref["Y"])


def test_lstm_per_sample_initial_state_and_batch_major_layout():
    """initial_h / initial_c that differ per sample -> `state=` (forward direction); layout=1."""
    T, B, I, H = 4, 3, 2, 3
    rng = np.random.default_rng(5)
    arrays = onnx_arrays(rng, "LSTM", 1, 4, T, B, I, H, peepholes=True)
    arrays["initial_h"], arrays["initial_c"] = rng.uniform(-1, 1, (2, B, 1, H))  # (B, dirs, H): layout=1
    batch_major = dict(arrays, X=arrays["X"].transpose(1, 0, 2).copy())
    ref = run_onnx("LSTM", batch_major, hidden_size=H, layout=1)
    net = timeloom_net({"type": "lstm", "size": H, "peepholes": True}, "forward", I)
    values, prefixes = lstm_values(arrays, "forward", True, initial=False)
    set_params(net, values, prefixes)
    state = {"enc.h": arrays["initial_h"].transpose(1, 0, 2), "enc.c": arrays["initial_c"].transpose(1, 0, 2)}
    compare(net, ref, "forward", ["h", "c"], arrays["X"], state=state, layout=1)


# --- GRU ----------------------------------------------------------------------------------------

GRU_ACTIVATIONS = {"default": ([], {}),
                   "sigmoid-relu": (["Sigmoid", "Relu"], {"activation": "relu"}),
                   "tanh-softplus": (["Tanh", "Softplus"], {"gate_activation": "tanh", "activation": "softplus"})}
GRU_CASES = [(dr, lbr, acts) for dr in ("forward", "reverse", "bidirectional") for lbr in (0, 1)
             for acts in GRU_ACTIVATIONS if acts == "default" or dr == "forward"]


@pytest.mark.parametrize("direction,linear_before_reset,acts", GRU_CASES,
                         ids=[f"{d}-lbr{lbr}-{a}" for d, lbr, a in GRU_CASES])
def test_gru_matches_onnx(direction, linear_before_reset, acts):
    T, B, I, H = 5, 3, 3, 4
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(6)
    arrays = onnx_arrays(rng, "GRU", dirs, 3, T, B, I, H, initial=True)
    onnx_acts, options = GRU_ACTIVATIONS[acts]
    attrs = {"hidden_size": H, "direction": direction, "linear_before_reset": linear_before_reset}
    if onnx_acts:
        attrs["activations"] = onnx_acts * dirs
    ref = run_onnx("GRU", arrays, **attrs)

    net = timeloom_net({"type": "gru", "size": H, "linear_before_reset": bool(linear_before_reset),
                        "initial": "learned", **options}, direction, I)
    values, prefixes = {}, halves(direction)
    for d, (p, delay) in enumerate(prefixes):
        values.update(mapping.onnx_to_timeloom("gru", mapping.prefixed_roles("gru", p), delay, X_COLUMNS,
                                               arrays["W"][d], arrays["R"][d], arrays["B"][d],
                                               linear_before_reset=bool(linear_before_reset)))
        values[f"{p}.h.h0"] = arrays["initial_h"][d, 0]
    set_params(net, values, prefixes)
    compare(net, ref, direction, ["h"], arrays["X"])
