"""Imported models run: `timeloom import` -> `timeloom run --params` / `inspect --params`, through the CLI.

Oracles: the original spec evaluated with the same parameters (export -> import -> run
--evaluate gives the same validation loss), the `--checkpoint` path (training from --params
ends in the same parameters as training from an equal checkpoint), torch itself (models
written by torch.onnx.export, legacy TorchScript exporter `dynamo=False`, imported by the CLI
and run by timeloom: the same output and final states), numpy's eigenvalues (inspect
spectrum --params).
"""
from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import yaml
from support import cli_in, final_params, only_run

import compiler
import runtime
from interop import save_params
from runtime.train import checkpoint

onnx = pytest.importorskip("onnx")

SMALL = """\
timeloom: 1
name: small
inputs:
  x: {size: 2}
units:
  h: {size: 5, activation: tanh}
  y: {size: 1, activation: identity}
blocks:
  mem: {type: lstm, size: 3}
connections:
  - {from: x, to: h}
  - {from: h, to: h, delay: 1}
  - {from: h, to: mem}
  - {from: mem.h, to: y}
outputs:
  y: {loss: mse, at: last}
"""
DATA = "data: {task: adding, length: 8, train_size: 64}\ntraining: {epochs: 1, batch_size: 16, seed: 0}\n"


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def refused(result, *words):
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output, result.output
    return result.output


def evaluation(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def exported(tmp_path):
    """small.yaml (with data), its seed-3 parameters p.npz, exported (float64) and imported back."""
    (tmp_path / "small.yaml").write_text(SMALL + DATA)
    net = runtime.Network(compiler.compile_spec(tmp_path / "small.yaml"), dtype="float64", seed=3)
    save_params(net, tmp_path / "p.npz")
    ok(cli_in(tmp_path, ["export", "small.yaml", "--params", "p.npz", "--dtype", "float64", "-o", "m.onnx"]))
    ok(cli_in(tmp_path, ["import", "m.onnx", "-o", "imp.yaml"]))
    with open(tmp_path / "imp.yaml", "a") as f:
        f.write(DATA)
    return tmp_path


def test_round_trip_keeps_the_names_and_evaluates_the_same(exported):
    spec = yaml.safe_load((exported / "imp.yaml").read_text())
    assert set(spec["units"]) == {"h", "y"} and spec["blocks"] == {"mem": {"type": "lstm", "size": 3}}
    assert spec["outputs"] == {"y": {"loss": "mse", "at": "last"}}
    with np.load(exported / "imp.npz") as f, np.load(exported / "p.npz") as g:
        assert sorted(f.files) == sorted(g.files)  # the same parameter names, none starting with "_"
        for k in g.files:
            np.testing.assert_array_equal(f[k], g[k])
    got = evaluation(ok(cli_in(exported, ["run", "imp.yaml", "--params", "imp.npz", "--evaluate"])))
    want = evaluation(ok(cli_in(exported, ["run", "small.yaml", "--params", "p.npz", "--evaluate"])))
    assert got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)
    assert got["mse"] == pytest.approx(want["mse"], rel=1e-6)
    assert got["checkpoint"] == "imp.npz"


def test_training_from_params_equals_training_from_the_same_checkpoint(exported):
    program = compiler.compile_spec(exported / "imp.yaml")
    with np.load(exported / "imp.npz") as f:
        params = {k: f[k] for k in f.files}
    checkpoint.save(exported / "same.npz", params, {}, {"spec_hash": checkpoint.spec_hash(program.spec)})
    ok(cli_in(exported, ["run", "imp.yaml", "--params", "imp.npz", "-q", "--no-report"]))
    first = only_run(exported)
    info = json.loads((first / "run.json").read_text())
    assert info["init_checkpoint"] == "imp.npz"
    a = final_params(first)
    first.rename(exported / "first")
    ok(cli_in(exported, ["run", "imp.yaml", "--checkpoint", "same.npz", "-q", "--no-report"]))
    b = final_params(only_run(exported))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], params[k]) for k in a)  # it did train


def test_params_refusals(exported):
    refused(cli_in(exported, ["run", "imp.yaml", "--checkpoint", "imp.npz", "--evaluate"]),
            "not a timeloom checkpoint", "--params imp.npz")
    refused(cli_in(exported, ["run", "imp.yaml", "--params", "imp.npz", "--checkpoint", "imp.npz"]), "not both")
    (exported / "wide.yaml").write_text((exported / "imp.yaml").read_text().replace("size: 5", "size: 6"))
    refused(cli_in(exported, ["run", "wide.yaml", "--params", "imp.npz", "--evaluate"]),
            "'h->h@1' has shape (5, 5), the spec needs (6, 6)")
    refused(cli_in(exported, ["run", "imp.yaml", "--params", "nothing.npz", "--evaluate"]), "no such parameter file")
    refused(cli_in(exported, ["run", "imp.yaml", "--params", "/dev/null", "--evaluate"]), "not a regular file")
    with np.load(exported / "imp.npz") as f:
        arrays = {k: f[k] for k in f.files}
    arrays["h.bias"] = arrays["h.bias"].astype(np.int64)
    np.savez(exported / "ints.npz", **arrays)
    refused(cli_in(exported, ["run", "imp.yaml", "--params", "ints.npz", "--evaluate"]),
            "parameter 'h.bias' holds int64 values")


def test_export_checks_a_checkpoints_spec_hash_as_run_does(exported):
    ok(cli_in(exported, ["run", "small.yaml", "-q", "--no-report"]))
    ckpt = checkpoint.latest(only_run(exported) / "checkpoints")
    # relu instead of tanh: the same parameter names and shapes, a different model
    (exported / "relu.yaml").write_text((exported / "small.yaml").read_text().replace("tanh", "relu"))
    out = refused(cli_in(exported, ["export", "relu.yaml", "--params", ckpt, "-o", "r.onnx"]), "different model")
    run_out = refused(cli_in(exported, ["run", "relu.yaml", "--checkpoint", ckpt, "--evaluate"]), "different model")
    assert out.split("than")[0] == run_out.split("than")[0]
    assert not (exported / "r.onnx").exists()
    ok(cli_in(exported, ["export", "small.yaml", "--params", ckpt, "-o", "s.onnx"]))


def test_inspect_spectrum_reads_a_parameter_file(exported):
    out = ok(cli_in(exported, ["inspect", "spectrum", "imp.yaml", "--params", "imp.npz", "-o", "s.png"]))
    with np.load(exported / "imp.npz") as f:
        want = np.abs(np.linalg.eigvals(f["h->h@1"])).max()
    got = float(re.search(r"h->h@1\s+spectral radius ([0-9.e+-]+)", out).group(1))
    assert got == pytest.approx(want, rel=1e-5)
    assert (exported / "s.png").stat().st_size > 0


# -- damaged ONNX files ----------------------------------------------------------------------------
def test_an_empty_onnx_file_is_refused(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    refused(cli_in(tmp_path, ["import", "e.onnx", "-o", "e.yaml"]), "empty (0 bytes)")
    assert not (tmp_path / "e.yaml").exists()


def test_a_model_without_outputs_is_refused(tmp_path):
    from onnx import TensorProto, helper
    graph = helper.make_graph([], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", 3])], [])
    onnx.save(helper.make_model(graph), tmp_path / "n.onnx")
    refused(cli_in(tmp_path, ["import", "n.onnx", "-o", "n.yaml"]), "no graph outputs")
    assert not (tmp_path / "n.yaml").exists()


def test_a_tensor_whose_dims_do_not_match_its_data_is_refused(exported):
    model = onnx.load(exported / "m.onnx")
    t = next(t for t in model.graph.initializer if len(t.dims) == 3)  # an LSTM/RNN weight
    t.dims[1] += 1
    onnx.save(model, exported / "bad.onnx")
    refused(cli_in(exported, ["import", "bad.onnx", "-o", "bad.yaml"]), f"'{t.name}'", "do not match its data")


# -- models written by torch.onnx.export -----------------------------------------------------------
T, B, I, H = 6, 2, 3, 4
TORCH_CASES = [(k, n, bi) for k in ("lstm", "gru") for n in (1, 2) for bi in (False, True)]


@pytest.mark.parametrize("kind,layers,bidirectional", TORCH_CASES,
                         ids=[f"{k}-{n}layer{'-bi' if b else ''}" for k, n, b in TORCH_CASES])
def test_torch_exported_models_import_by_the_cli_and_match_torch(tmp_path, kind, layers, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(layers + 2 * bidirectional)
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](I, H, num_layers=layers,
                                                            bidirectional=bidirectional).eval()
    names = ["y", "hn"] + (["cn"] if kind == "lstm" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mod, (torch.randn(T, B, I),), str(tmp_path / "m.onnx"), dynamo=False,
                          input_names=["x"], output_names=names, dynamic_axes={"x": {0: "T", 1: "B"}})
    ok(cli_in(tmp_path, ["import", "m.onnx", "-o", "m.yaml"]))
    program = compiler.compile_spec(tmp_path / "m.yaml")
    with np.load(tmp_path / "m.npz") as f:
        assert not any(k.startswith("_") for k in f.files)
        params = {k: f[k] for k in f.files}
    blocks = [kind] + [f"{kind}{n}" for n in range(2, layers + 1)]  # short names: lstm, lstm2
    assert list(yaml.safe_load((tmp_path / "m.yaml").read_text())["blocks"]) == blocks
    net = runtime.Network(program, dtype="float64", seed=0)
    for k, v in params.items():
        net.params[k] = v
    x = torch.randn(T + 1, B + 1, I)  # other sizes than at export: T and B are dynamic
    with torch.no_grad():
        want = mod(x)
    want_y = want[0].numpy()
    want_states = [s.numpy() for s in (want[1] if kind == "lstm" else (want[1],))]
    dirs = ["fwd", "bwd"] if bidirectional else [None]

    def unit(block, d, role):
        return f"{block}.{d}.{role}" if d else f"{block}.{role}"

    roles = ["h", "c"] if kind == "lstm" else ["h"]
    wanted = [unit(b, d, r) for b in blocks for d in dirs for r in roles]
    traj = net.forward({"x": x.numpy().astype(np.float64)}, units=wanted)
    got_y = np.concatenate([traj[unit(blocks[-1], d, "h")] for d in dirs], axis=-1)
    np.testing.assert_allclose(got_y, want_y, rtol=0, atol=2e-5)
    for role, state in zip(roles, want_states):  # (layers * dirs, B, H): last step forward, first backward
        k = 0
        for b in blocks:
            for d in dirs:
                step = 0 if d == "bwd" else -1
                np.testing.assert_allclose(traj[unit(b, d, role)][step], state[k], rtol=0, atol=2e-5)
                k += 1


def test_torch_module_scopes_name_the_blocks(tmp_path):
    torch = pytest.importorskip("torch")

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.GRU(I, H)
            self.head = torch.nn.Linear(H, 2)

        def forward(self, x):
            return torch.sigmoid(self.head(self.encoder(x)[0]))

    torch.manual_seed(0)
    model = Tagger().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(T, B, I),), str(tmp_path / "t.onnx"), dynamo=False,
                          input_names=["x"], output_names=["p"], dynamic_axes={"x": {0: "T", 1: "B"}})
    ok(cli_in(tmp_path, ["import", "t.onnx", "-o", "t.yaml"]))
    spec = yaml.safe_load((tmp_path / "t.yaml").read_text())
    assert list(spec["blocks"]) == ["encoder"] and list(spec["units"]) == ["p"]
    assert spec["outputs"] == {"p": {"loss": "bce", "at": "all"}}
    program = compiler.compile_spec(tmp_path / "t.yaml")
    net = runtime.Network(program, dtype="float64", seed=0)
    with np.load(tmp_path / "t.npz") as f:
        for k in f.files:
            net.params[k] = f[k]
    x = torch.randn(T, B, I)
    got = net.forward({"x": x.numpy().astype(np.float64)}, units=["p"])["p"]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=0, atol=2e-5)


def test_verify_of_a_float64_model_with_lstm_operators_is_refused_before_writing(tmp_path):
    """onnxruntime runs LSTM/GRU/RNN in float32 only: the float64 export keeps the operators (valid
    ONNX, importable), so --verify is refused with the advice, and --scan-only verifies."""
    pytest.importorskip("onnxruntime")
    (tmp_path / "small.yaml").write_text(SMALL)
    refused(cli_in(tmp_path, ["export", "small.yaml", "--dtype", "float64", "--verify", "-o", "m.onnx"]),
            "--verify", "float32 only", "--scan-only")
    assert not (tmp_path / "m.onnx").exists()
    out = ok(cli_in(tmp_path, ["export", "small.yaml", "--dtype", "float64", "--scan-only", "--verify", "-o", "m.onnx"]))
    assert "recurrences as Scan" in out and "verified" in out


def test_a_scan_model_is_refused_naming_the_scan_and_the_export_that_avoids_it(tmp_path):
    pytest.importorskip("onnx")
    (tmp_path / "small.yaml").write_text(SMALL)
    ok(cli_in(tmp_path, ["export", "small.yaml", "--scan-only", "-o", "s.onnx"]))
    refused(cli_in(tmp_path, ["import", "s.onnx", "-o", "s.yaml"]), "(Scan): a Scan recurrence cannot be imported",
            "--scan-only")
    assert not (tmp_path / "s.yaml").exists()
