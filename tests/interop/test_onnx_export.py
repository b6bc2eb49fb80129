"""`timeloom export`: exported models run in onnxruntime (and onnx's reference evaluator) and
compute what timeloom computes.

Tolerances: float32 models (standard LSTM/GRU/RNN operators where a recurrence is exactly
one) in onnxruntime vs timeloom float64: 1e-5; float64 models (every recurrence a Scan) in
onnxruntime and onnx.reference: 1e-10.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx.reference import ReferenceEvaluator  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import cli  # noqa: E402
import compiler  # noqa: E402
import runtime  # noqa: E402
from interop import ParamsError, export_onnx, import_onnx, load_params, save_params  # noqa: E402

T, B = 7, 2


def network(spec, seed=0):
    """A float64 network with parameters moved away from their (often small or zero) initial values:
    +-1/sqrt(fan-in) on matrices, +-0.3 on vectors; leak rates stay as they are."""
    net = runtime.Network(compiler.compile_spec(spec), dtype="float64", seed=seed)
    rng = np.random.default_rng(seed)
    for name, info in net.program.params.items():
        if info.kind != "alpha":
            scale = 1 / np.sqrt(info.shape[1]) if len(info.shape) == 2 else 0.3
            net.params[name] = net.params[name] + scale * rng.uniform(-1, 1, info.shape)
    return net


def recurrent_ops(model):
    return {n.op_type for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN", "Scan")}


def as_float32(net):
    """The same network with parameters rounded to float32 (still computing in float64): the
    float32 comparison then measures the exported model's arithmetic, not the rounding of weights."""
    rounded = copy.copy(net)  # (a new Network would initialize again: slow for a big reservoir)
    rounded.params = {k: np.asarray(v, dtype=np.float32).astype(np.float64) for k, v in net.params.items()}
    return rounded


def assert_exports_match(net, T=T, float64_reference=True):
    program = net.program
    rng = np.random.default_rng(1)
    inputs = {n: rng.standard_normal((T, B, k)).astype(np.float32).astype(np.float64)
              for n, k in program.inputs.items()}
    models = {}
    for dtype, standard, tol in (("float32", True, 1e-5), ("float64", False, 1e-10)):
        want = (as_float32(net) if dtype == "float32" else net).forward(inputs)
        model = export_onnx(program, net.params, dtype=dtype, standard_ops=standard)
        models[dtype] = model
        feeds = {n: a.astype(dtype) for n, a in inputs.items()}
        runs = [ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)]
        if dtype == "float64" and float64_reference:
            runs.append(ReferenceEvaluator(model).run(None, feeds))
        for got in runs:
            for g, u in zip(got, program.outputs):
                np.testing.assert_allclose(g, want[u], rtol=0, atol=tol, err_msg=f"{program.name} {dtype} {u}")
    return models


def test_example_specs_export_and_match(spec_path):
    models = assert_exports_match(network(spec_path))
    assert recurrent_ops(models["float64"]) <= {"Scan"}


@pytest.mark.parametrize("spec,ops", [("elman", {"RNN"}), ("gru", {"GRU"}), ("lstm_peephole", {"LSTM"}),
                                      ("lstm_coupled", {"LSTM"}), ("lstm_gers2000", {"LSTM"}),
                                      ("bidirectional_lstm", {"LSTM"}), ("dcm", {"Scan"}),
                                      ("delayed_rnn", {"Scan"}), ("lstm_1997", {"Scan"})])
def test_exact_blocks_become_standard_operators(spec, ops):
    from conftest import ROOT
    model = export_onnx(compiler.compile_spec(ROOT / "specs" / f"{spec}.yaml"),
                        runtime.Network(compiler.compile_spec(ROOT / "specs" / f"{spec}.yaml")).params)
    assert recurrent_ops(model) == ops
    nodes = {n.op_type: n for n in model.graph.node}
    if spec == "lstm_coupled":
        assert onnx.helper.get_attribute_value(next(a for a in nodes["LSTM"].attribute
                                                    if a.name == "input_forget")) == 1
    if spec == "bidirectional_lstm":
        dirs = sorted(onnx.helper.get_attribute_value(a).decode() for n in model.graph.node if n.op_type == "LSTM"
                      for a in n.attribute if a.name == "direction")
        assert dirs == ["forward", "reverse"]


GENERAL = {  # components no standard operator expresses: gates, leaks, delays > 1, backward, softmax ...
    "timeloom": 1, "name": "general",
    "inputs": {"x": {"size": 3}, "u": {"size": 2}},
    "units": {
        "g": {"size": 4, "activation": "sigmoid", "initial": "learned"},
        "h": {"size": 4, "activation": "tanh", "leak": {"alpha": [0.1, 0.5, 0.7, 0.9]}, "initial": "learned"},
        "k": {"size": 4, "activation": {"scaled_sigmoid": [-1, 3]}},
        "p": {"size": 4, "activation": "softmax"},
        "e": {"size": 4, "activation": "sigmoid"},
        "q": {"size": 2, "activation": "sigmoid"},
        "b": {"size": 3, "activation": "relu", "leak": {"alpha": 0.3}, "initial": "learned"},
        "s": {"size": 4, "activation": "softplus", "bias": False},
        "y": {"size": 2, "activation": "identity"},
    },
    "connections": [
        {"from": "x", "to": ["g", "h", "e"]},
        {"from": "u", "to": "h", "delay": 2},
        {"from": "h", "to": "h", "delay": 1},
        {"from": "h", "to": "h", "delay": 3, "weight": "diagonal"},
        {"from": "g", "to": "h", "delay": 1, "gate": {"unit": "g", "complement": True}},
        {"from": "h", "to": "g", "delay": 2, "bias": True, "gate": {"unit": "k", "at": "source"}},
        {"from": "x", "to": "k", "gate": "e"},
        {"from": "h", "to": "k", "delay": 1, "weight": {"fixed": 0.5}},
        {"from": "u", "to": "g", "gate": {"unit": "k"}},
        {"from": "h", "to": "q", "delay": 1},
        {"from": "q", "to": "h", "delay": 1},
        {"from": "u", "to": "k", "gate": {"unit": "q", "at": "source"},
         "weight": {"fixed": [[1, 0], [0, 1], [1, 1], [0, -2]]}},
        {"from": "h", "to": "p"},
        {"from": "p", "to": "p", "delay": 1, "weight": "identity", "gate": "e"},
        {"from": "x", "to": "b", "delay": -2},
        {"from": "b", "to": "b", "delay": -1},
        {"from": "b", "to": "b", "delay": -4},
        {"from": "h", "to": "s", "delay": 5},
        {"from": "h", "to": "s", "delay": -1},
        {"from": ["p", "b", "s"], "to": "y"},
    ],
    "outputs": {"y": {"loss": "mse"}, "g": {"loss": "none"}},
}


@pytest.mark.parametrize("steps", [T, 3])
def test_general_components_export_as_scan(steps):
    net = network(GENERAL, seed=3)
    comps = [set(c.units) for c in net.program.components if c.recurrent]
    assert {"g", "h", "k", "q"} <= next(c for c in comps if "h" in c) and {"b"} in comps
    models = assert_exports_match(net, T=steps)
    assert recurrent_ops(models["float32"]) == {"Scan"}


def test_a_gate_read_from_outside_makes_a_scan_extra_inputs_into_gates_do_not():
    spec = {"timeloom": 1, "name": "rev", "inputs": {"x": {"size": 2}},
            "blocks": {"bi": {"type": "bidirectional", "cell": {"type": "gru", "size": 3, "linear_before_reset": False,
                                                                 "initial": "learned"}},
                       "d": {"type": "stack", "n": 2, "layer": {"type": "lstm", "size": 3, "peepholes": True,
                                                                "coupled": True, "initial": "learned"}}},
            "units": {"y": {"size": 2}},
            "connections": [{"from": "x", "to": ["bi", "d"]}, {"from": ["bi", "d"], "to": "y"},
                            {"from": "bi.fwd.r", "to": "d.l1.o", "delay": 1}],
            "outputs": {"y": {"loss": "mse"}}}
    models = assert_exports_match(network(spec, seed=4))
    ops = [n.op_type for n in models["float32"].graph.node if n.op_type in ("GRU", "LSTM", "Scan")]
    # bi.fwd: its gate r is read outside the cell (the GRU operator returns h only) -> Scan;
    # bi.bwd -> GRU (reverse); d.l0 and d.l1 -> LSTM (input_forget): an extra external input
    # into a gate is one more slice of the operator's X
    assert sorted(ops) == ["GRU", "LSTM", "LSTM", "Scan"]


@pytest.mark.parametrize("spec", ["elman", "gru", "lstm_peephole", "bidirectional_lstm", "deep_lstm", "lstm_gers2000"])
def test_export_then_import_gives_back_the_same_network(spec):
    from conftest import ROOT
    net = network(ROOT / "specs" / f"{spec}.yaml", seed=5)
    model = export_onnx(net.program, net.params, dtype="float64")
    back = import_onnx(model)
    x = {n: np.random.default_rng(2).standard_normal((T, B, k)) for n, k in net.program.inputs.items()}
    got = back.run(back.network(), x)
    want = net.forward(x)
    for u in net.program.outputs:
        np.testing.assert_allclose(got[u], want[u], rtol=0, atol=1e-10)


def test_params_files_check_names_and_shapes(tmp_path):
    net = network(GENERAL)
    path = save_params(net, tmp_path / "p.npz")
    other = runtime.Network(net.program, dtype="float64", seed=9)
    load_params(other, path)
    for k in net.params:
        np.testing.assert_array_equal(other.params[k], net.params[k])
    values = {k: np.asarray(v) for k, v in net.params.items()}
    bad = dict(values, **{"h->h@7": np.zeros((4, 4)), "h.bias": np.zeros(5)})
    del bad["x->g"]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ParamsError) as e:
        load_params(other, tmp_path / "bad.npz")
    assert all(s in str(e.value) for s in ("unknown parameter(s) 'h->h@7'", "missing parameter(s) 'x->g'",
                                           "'h.bias' has shape (5,), the spec needs (4,)"))
    # a training checkpoint ("param/{name}", "opt/...", "meta") is read too
    np.savez(tmp_path / "ckpt.npz", meta=np.array("{}"), **{f"param/{k}": v for k, v in values.items()},
             **{"opt/step": np.array(3)})
    load_params(other, tmp_path / "ckpt.npz")


def test_cli_export_verifies_and_fails_cleanly(tmp_path):
    from conftest import ROOT
    spec = ROOT / "specs" / "lstm_peephole.yaml"
    net = network(spec)
    save_params(net, tmp_path / "p.npz")
    runner = CliRunner()
    res = runner.invoke(cli.app, ["export", str(spec), "--params", str(tmp_path / "p.npz"), "-o",
                                  str(tmp_path / "m.onnx"), "--verify"])
    assert res.exit_code == 0, res.output
    assert "verified" in res.output and "LSTM" in res.output
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))
    np.savez(tmp_path / "wrong.npz", nope=np.zeros(2))
    res = runner.invoke(cli.app, ["export", str(spec), "--params", str(tmp_path / "wrong.npz"), "-o",
                                  str(tmp_path / "w.onnx")])
    assert res.exit_code == 2 and "unknown parameter(s) 'nope'" in res.output
