"""`timeloom import model.onnx`: imported networks compute what the ONNX model computes.

Models are "RNN/GRU/LSTM -> Squeeze or Transpose+Reshape -> MatMul -> Add -> activation"
with random attribute combinations (direction, activations with alpha/beta, layout,
peepholes, input_forget, linear_before_reset, initial states, sequence_lens, clip). Oracles:
onnx's reference evaluator, completed for activations and input_forget (tests/onnx_oracle.py),
in float64 (1e-10), and onnxruntime in float32 (1e-5; it runs layout=0 only and is the
oracle for sequence_lens, per-sample initial states, clip and per-direction activations).
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx_oracle import ONNX_OPS  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import cli  # noqa: E402
from interop import UnsupportedError, import_onnx, load_params  # noqa: E402
from interop.onnx_recurrent import CLIP_INACTIVE  # noqa: E402

T, B, I, H, O = 5, 3, 3, 4, 3
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
# expressible slot functions per op and slot, with float32-exact alpha/beta
SLOTS = {
    "RNN": [["Tanh", "Relu", "Sigmoid", "Softplus", ("Affine", 0.5, 0.25), ("ScaledTanh", 1.5, 0.75)]],
    "GRU": [["Sigmoid", "Tanh", ("ScaledTanh", 1.0, 0.5)],
            ["Tanh", "Relu", "Softplus", ("Affine", 0.75, -0.25), ("ScaledTanh", -1.5, 0.5)]],
    "LSTM": [["Sigmoid", "Tanh", ("ScaledTanh", 0.5, 1.0)],
             ["Tanh", "Relu", "Sigmoid", "Softplus", ("Affine", 0.5, 0.5), ("ScaledTanh", 2.0, 0.5)],
             ["Tanh", "Sigmoid", "Softplus", ("Affine", 1.0, 0.0), ("ScaledTanh", 1.5, 0.5)]],
}


def random_case(rng, runtime):
    op = rng.choice(list(GATES))
    case = {"op": op, "direction": rng.choice(["forward", "reverse", "bidirectional"]),
            "layout": 0 if runtime == "ort" else int(rng.integers(2)),
            "peepholes": op == "LSTM" and rng.random() < 0.5,
            "input_forget": op == "LSTM" and rng.random() < 0.3,
            "lbr": int(rng.integers(2)), "initial": rng.choice(["none", "const", "input"]),
            "lens": runtime == "ort" and rng.random() < 0.5,
            "clip": runtime == "ort" and rng.random() < 0.3,
            "head": rng.choice(["Softmax", "Sigmoid", "Tanh", "Relu"])}
    dirs = 2 if case["direction"] == "bidirectional" else 1
    if case["initial"] == "input" and case["direction"] != "forward":
        case["initial"] = "const"
    per_dir = [[SLOTS[op][k][rng.integers(len(SLOTS[op][k]))] for k in range(len(SLOTS[op]))]
               for _ in range(dirs)]
    if runtime == "reference" or rng.random() < 0.5:
        per_dir = [per_dir[0]] * dirs  # the oracle runs both directions with one activation set
    if case["input_forget"]:
        for slots in per_dir:
            slots[0] = "Sigmoid"
    case["slots"] = per_dir
    return case


def build(case, rng, dtype=np.float64):
    """(model, feeds) for one case."""
    op, dirs = case["op"], 2 if case["direction"] == "bidirectional" else 1
    G, elem = GATES[op], TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    u = lambda *s: rng.uniform(-0.8, 0.8, s).astype(dtype)  # noqa: E731
    inits = {"W": u(dirs, G * H, I), "R": u(dirs, G * H, H), "B": u(dirs, 2 * G * H),
             "M": u(dirs * H, O), "c": u(O), "shape": np.array([0, 0, -1]), "axes": np.array([1])}
    x_shape = [T, B, I] if case["layout"] == 0 else [B, T, I]
    feeds = {"X": rng.standard_normal(x_shape).astype(dtype)}
    graph_inputs = [helper.make_tensor_value_info("X", elem, ["T", "B", I] if case["layout"] == 0 else ["B", "T", I])]
    names = ["X", "W", "R", "B", "", "", ""]
    if case["lens"]:
        feeds["lens"] = rng.integers(1, T + 1, B).astype(np.int32)
        feeds["lens"][0] = T
        graph_inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
        names[4] = "lens"
    state_shape = (dirs, B, H) if case["layout"] == 0 else (B, dirs, H)
    if case["initial"] == "const":
        row = u(dirs, 1, H)
        inits["h0"] = np.repeat(row, B, 1) if case["layout"] == 0 else np.repeat(row.swapaxes(0, 1), B, 0)
        names[5] = "h0"
    elif case["initial"] == "input":
        feeds["h0"] = u(*state_shape)
        graph_inputs.append(helper.make_tensor_value_info("h0", elem, list(state_shape)))
        names[5] = "h0"
    if op == "LSTM":
        if case["initial"] != "none":
            inits["c0"] = np.repeat(u(dirs, 1, H), B, 1) if case["layout"] == 0 else \
                np.repeat(u(1, dirs, H), B, 0)
            names[6] = "c0"
        if case["peepholes"]:
            inits["P"] = u(dirs, 3 * H)
            names.append("P")
    else:
        names = names[:6]
    while names[-1] == "":
        names.pop()
    attrs = {"hidden_size": H, "direction": case["direction"], "layout": case["layout"]}
    flat = [s for slots in case["slots"] for s in slots]
    attrs["activations"] = [s if isinstance(s, str) else s[0] for s in flat]
    if any(not isinstance(s, str) for s in flat):
        attrs["activation_alpha"] = [s[1] for s in flat if not isinstance(s, str)]
        attrs["activation_beta"] = [s[2] for s in flat if not isinstance(s, str)]
    if op == "GRU":
        attrs["linear_before_reset"] = case["lbr"]
    if case["input_forget"]:
        attrs["input_forget"] = 1
    if case["clip"]:
        attrs["clip"] = CLIP_INACTIVE
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    nodes = [helper.make_node(op, names, outs, name="enc", **attrs)]
    if dirs == 1 and case["layout"] == 0:
        nodes.append(helper.make_node("Squeeze", ["Y", "axes"], ["seq"]))
    else:
        if case["layout"] == 0:
            nodes.append(helper.make_node("Transpose", ["Y"], ["Yt"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", ["Yt" if case["layout"] == 0 else "Y", "shape"], ["seq"]))
    nodes += [helper.make_node("MatMul", ["seq", "M"], ["lin"]), helper.make_node("Add", ["lin", "c"], ["net"]),
              helper.make_node(case["head"], ["net"], ["probs"], name="head")]
    out_rank = {"probs": 3, "Y": 4, "Y_h": 3, "Y_c": 3}
    graph = helper.make_graph(
        nodes, "seqmodel", graph_inputs,
        [helper.make_tensor_value_info(n, elem, [None] * out_rank[n]) for n in ["probs"] + outs],
        [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if k in ("shape", "axes") else dtype), k)
         for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model, feeds


def valid_steps(name, value, case, feeds):
    """Positions to compare: a padded step of a layer after the recurrence holds f(bias) in ONNX, 0 in
    timeloom (Network.forward zeroes padded steps); the recurrent outputs themselves agree everywhere."""
    if not case["lens"] or name != "probs":
        return np.ones(value.shape, dtype=bool)
    mask = np.arange(T)[:, None] < feeds["lens"][None, :]  # (T, B)
    return np.broadcast_to(mask[..., None], value.shape)


def check(case, model, feeds, runner, tol):
    result = import_onnx(model)
    net = result.network(dtype="float64")
    got = result.run(net, feeds)
    want = dict(zip([o.name for o in model.graph.output], runner(model, feeds)))
    assert set(got) == set(want)
    for name, ref in want.items():
        ok = valid_steps(name, ref, case, feeds)
        np.testing.assert_allclose(got[name][ok], np.asarray(ref, dtype=np.float64)[ok], rtol=0, atol=tol,
                                   err_msg=f"{name} of {case}")
    return result


def run_reference(model, feeds):
    return ReferenceEvaluator(model, new_ops=ONNX_OPS).run(None, feeds)


def run_ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.mark.parametrize("seed", range(14))
def test_random_models_match_onnx_reference_float64(seed):
    rng = np.random.default_rng(100 + seed)
    case = random_case(rng, "reference")
    model, feeds = build(case, rng)
    check(case, model, feeds, run_reference, 1e-10)


@pytest.mark.parametrize("seed", range(14))
def test_random_models_match_onnxruntime_float32(seed):
    rng = np.random.default_rng(200 + seed)
    case = random_case(rng, "ort")
    model, feeds = build(case, rng, np.float32)
    check(case, model, feeds, run_ort, 1e-5)


def test_every_op_direction_and_layout_is_covered():
    """The random cases above cover each (op, direction), both layouts and the special inputs."""
    seen = set()
    for seed, runtime in [(100 + s, "reference") for s in range(14)] + [(200 + s, "ort") for s in range(14)]:
        c = random_case(np.random.default_rng(seed), runtime)
        seen |= {(c["op"], c["direction"]), ("layout", c["layout"]), ("initial", c["initial"])}
        seen |= {k for k in ("peepholes", "input_forget", "lens", "clip") if c[k]}
        seen |= {("differs", c["slots"][0] != c["slots"][-1])}
    want = {(op, d) for op in GATES for d in ("forward", "reverse", "bidirectional")}
    want |= {("layout", 0), ("layout", 1), ("initial", "const"), ("initial", "input"), ("differs", True),
             "peepholes", "input_forget", "lens", "clip"}
    assert want <= seen, sorted(want - seen, key=str)


def test_blocks_where_exact_primitives_otherwise():
    rng = np.random.default_rng(0)
    base = {"op": "LSTM", "layout": 0, "peepholes": True, "input_forget": False, "lbr": 1, "initial": "none",
            "lens": False, "clip": False, "head": "Softmax"}
    fwd = import_onnx(build({**base, "direction": "forward", "slots": [["Sigmoid", "Tanh", "Tanh"]]}, rng)[0])
    assert fwd.spec["blocks"]["enc"] == {"type": "lstm", "size": H, "peepholes": True}
    bi = import_onnx(build({**base, "direction": "bidirectional", "slots": [["Sigmoid", "Relu", "Tanh"]] * 2},
                           rng)[0])
    assert bi.spec["blocks"]["enc"] == {"type": "bidirectional",
                                        "cell": {"type": "lstm", "size": H, "cell_activation": "relu",
                                                 "peepholes": True}}
    rev = import_onnx(build({**base, "direction": "reverse", "slots": [["Sigmoid", "Tanh", "Tanh"]]}, rng)[0])
    assert "enc" not in rev.spec.get("blocks", {}) and rev.spec["units"]["enc.c"]["activation"] == "identity"
    assert {"from": "enc.h", "to": "enc.i", "delay": -1} in rev.spec["connections"]
    assert rev.spec["units"]["probs"] == {"size": O, "activation": "softmax"}
    assert rev.spec["outputs"]["probs"] == {"loss": "cross_entropy", "at": "all"}


def small_model(node, extra_nodes=(), extra_inits=()):
    W = numpy_helper.from_array(np.zeros((1, 4 * H, I)), "W")
    R = numpy_helper.from_array(np.zeros((1, 4 * H, H)), "R")
    graph = helper.make_graph([node, *extra_nodes], "g", [helper.make_tensor_value_info("X", TensorProto.DOUBLE,
                                                                                        ["T", "B", I])],
                              [helper.make_tensor_value_info(extra_nodes[-1].output[0] if extra_nodes else "Y",
                                                             TensorProto.DOUBLE, None)], [W, R, *extra_inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_refusals_name_the_node_and_the_reason():
    lstm = {"inputs": ["X", "W", "R"], "outputs": ["Y"], "name": "enc", "hidden_size": H}
    cases = [
        (helper.make_node("LSTM", **lstm, clip=3.0), (), "node 'enc' (LSTM): clip=3"),
        (helper.make_node("LSTM", **lstm, activations=["Softsign", "Tanh", "Tanh"]), (),
         "Softsign has no timeloom equivalent"),
        (helper.make_node("LSTM", **lstm, activations=["Sigmoid", "Tanh", "Affine"], activation_alpha=[2.0],
                          activation_beta=[0.0]), (), "output activation"),
        (helper.make_node("LSTM", **lstm, activations=["Tanh", "Tanh", "Tanh"], input_forget=1), (),
         "input_forget=1"),
        (helper.make_node("LSTM", **lstm), [helper.make_node("LeakyRelu", ["Y"], ["Z"], name="act")],
         "node 'act' (LeakyRelu): op type LeakyRelu is not supported"),
    ]
    for node, extra, message in cases:
        with pytest.raises(UnsupportedError, match=message.replace("(", r"\(").replace(")", r"\)")):
            import_onnx(small_model(node, extra))


def test_cli_import_writes_a_spec_and_params_that_run(tmp_path):
    rng = np.random.default_rng(7)
    case = {"op": "GRU", "direction": "bidirectional", "layout": 0, "peepholes": False, "input_forget": False,
            "lbr": 0, "initial": "const", "lens": False, "clip": False, "head": "Softmax",
            "slots": [["Sigmoid", "Tanh"]] * 2}
    model, feeds = build(case, rng)
    onnx.save(model, tmp_path / "model.onnx")
    res = CliRunner().invoke(cli.app, ["import", str(tmp_path / "model.onnx"), "-o", str(tmp_path / "m.yaml")])
    assert res.exit_code == 0, res.output
    import compiler
    import runtime
    net = runtime.Network(compiler.compile_spec(tmp_path / "m.yaml"), dtype="float64")
    load_params(net, tmp_path / "m.npz")
    probs = net.forward({"x" if "x" in net.program.inputs else "X": feeds["X"]})["probs"]
    np.testing.assert_allclose(probs, run_reference(model, feeds)[0], rtol=0, atol=1e-10)
    # bad input: a clear message and exit status 2, no traceback
    node = helper.make_node("LSTM", ["X", "W", "R"], ["Y"], name="enc", hidden_size=H, clip=1.0)
    onnx.save(small_model(node), tmp_path / "clip.onnx")
    res = CliRunner().invoke(cli.app, ["import", str(tmp_path / "clip.onnx"), "-o", str(tmp_path / "c.yaml")])
    assert res.exit_code == 2 and "node 'enc' (LSTM): clip=1" in res.output


def test_many_to_one_gemm_on_the_final_state_with_lengths_and_per_sample_state():
    """LSTM -> Y_h -> Squeeze -> Gemm -> Softmax (a classifier of whole sequences), plus the other
    affine and layout nodes; sequence_lens and a per-sample initial_h (-> lengths=, state=)."""
    rng = np.random.default_rng(11)
    f = np.float32
    u = lambda *s: rng.uniform(-0.8, 0.8, s).astype(f)  # noqa: E731
    inits = {"W": u(1, 4 * H, I), "R": u(1, 4 * H, H), "B": u(1, 8 * H), "P": u(1, 3 * H), "G": u(O, H), "g": u(O),
             "ax0": np.array([0]), "two": np.array(2.0, f), "m": u(H), "zero": np.array(0)}
    nodes = [helper.make_node("LSTM", ["X", "W", "R", "B", "lens", "h0", "", "P"], ["Y", "Y_h"], name="enc",
                              hidden_size=H),
             helper.make_node("Squeeze", ["Y_h", "ax0"], ["last"]),
             helper.make_node("Gemm", ["last", "G", "g"], ["score"], transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Softmax", ["score"], ["klass"], axis=1),
             helper.make_node("Gather", ["Y", "zero"], ["fwd"], axis=1),  # (T, B, H): direction 0
             helper.make_node("Mul", ["fwd", "m"], ["scaled"]),
             helper.make_node("Div", ["scaled", "two"], ["half"]),
             helper.make_node("Sub", ["half", "m"], ["shifted"]),
             helper.make_node("Sum", ["shifted", "fwd", "half"], ["mix"]),
             helper.make_node("Concat", ["mix", "fwd"], ["both"], axis=-1),
             helper.make_node("Tanh", ["both"], ["out"])]
    graph = helper.make_graph(
        nodes, "classifier",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I]),
         helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]),
         helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, "B", H])],
        [helper.make_tensor_value_info("klass", TensorProto.FLOAT, [None, None]),
         helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, None, None])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    feeds = {"X": rng.standard_normal((T, B, I)).astype(f), "lens": np.array([T, 2, 4], np.int32),
             "h0": u(1, B, H)}
    result = import_onnx(model)
    assert result.spec["outputs"]["klass"] == {"loss": "cross_entropy", "at": "last"}
    got = result.run(result.network(), feeds)
    want = dict(zip(["klass", "out"], run_ort(model, feeds)))
    np.testing.assert_allclose(got["klass"], want["klass"], rtol=0, atol=1e-5)
    valid = (np.arange(T)[:, None] < feeds["lens"][None, :])[..., None] & np.ones((1, 1, 2 * H), bool)
    np.testing.assert_allclose(got["out"][valid], want["out"][valid], rtol=0, atol=1e-5)


def test_final_states_of_both_directions_in_one_unit_are_refused():
    W = numpy_helper.from_array(np.zeros((2, 4 * H, I)), "W")
    R = numpy_helper.from_array(np.zeros((2, 4 * H, H)), "R")
    G = numpy_helper.from_array(np.zeros((2 * H, O)), "G")
    shape = numpy_helper.from_array(np.array([0, -1]), "shape")
    nodes = [helper.make_node("LSTM", ["X", "W", "R"], ["Y", "Y_h"], name="enc", hidden_size=H,
                              direction="bidirectional"),
             helper.make_node("Transpose", ["Y_h"], ["t"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["t", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "G"], ["score"], name="head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.DOUBLE, ["T", "B", I])],
                              [helper.make_tensor_value_info("score", TensorProto.DOUBLE, None)], [W, R, G, shape])
    with pytest.raises(UnsupportedError, match="first step of a reverse one"):
        import_onnx(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_a_model_exported_by_torch_onnx_imports_and_matches_torch(tmp_path, kind):
    """torch's ONNX exporter writes zero initial states as Shape -> Gather -> Concat -> ConstantOfShape
    and slices them per layer: they import as zero initial states."""
    torch = pytest.importorskip("torch")

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = getattr(torch.nn, kind)(I, H, num_layers=2, bidirectional=True)
            self.head = torch.nn.Linear(2 * H, O)

        def forward(self, x):
            return torch.softmax(self.head(self.rnn(x)[0]), -1)

    torch.manual_seed(0)
    model = Tagger().eval()
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.randn(T, B, I),), str(tmp_path / "t.onnx"), dynamo=False,
                              input_names=["x"], output_names=["p"], dynamic_axes={"x": {0: "T", 1: "B"}})
    except Exception as e:  # an exporter that needs packages this environment lacks
        pytest.skip(f"torch.onnx.export failed: {e}")
    result = import_onnx(tmp_path / "t.onnx")
    assert [b["type"] for b in result.spec["blocks"].values()] == ["bidirectional"] * 2
    x = torch.randn(T + 2, B + 1, I)
    got = result.run(result.network(), {"x": x.numpy()})["p"]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=0, atol=1e-5)
