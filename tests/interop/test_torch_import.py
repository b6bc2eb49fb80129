"""`timeloom import` of a PyTorch state_dict: the imported network computes what the torch
module computes (output, h_n, c_n; float64, 1e-10). The mapping is interop.mapping.torch_links."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

import cli  # noqa: E402
import compiler  # noqa: E402
import runtime  # noqa: E402
from interop import InteropError, UnsupportedError, import_torch, load_params  # noqa: E402

T, B, I, H = 6, 3, 3, 4
MODULES = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
CASES = [("rnn", "tanh", 1, False, True), ("rnn", "relu", 2, True, False), ("lstm", None, 1, False, True),
         ("lstm", None, 2, True, True), ("lstm", None, 1, True, False), ("gru", None, 2, False, True),
         ("gru", None, 1, True, True), ("gru", None, 3, True, False)]


def make_module(kind, nonlinearity, num_layers, bidirectional, bias, seed=0, **kw):
    torch.manual_seed(seed)
    extra = {"nonlinearity": nonlinearity} if kind == "rnn" else {}
    mod = MODULES[kind](I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias, **extra, **kw).double()
    with torch.no_grad():
        for p in mod.parameters():
            p.uniform_(-0.8, 0.8)
    return mod


def assert_matches_torch(mod, result, x, batch_first=False):
    out, state = mod(torch.from_numpy(x))
    got_out, got_state = result.run(result.network(), x, batch_first=batch_first)
    np.testing.assert_allclose(got_out, out.detach().numpy(), rtol=0, atol=1e-10)
    pairs = zip(got_state, state) if isinstance(state, tuple) else [(got_state, state)]
    for g, w in pairs:
        np.testing.assert_allclose(g, w.detach().numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind,nonlinearity,num_layers,bidirectional,bias", CASES,
                         ids=[f"{k}{'-' + n if n else ''}-{ly}layer{'-bi' if b else ''}{'' if bias else '-nobias'}"
                              for k, n, ly, b, bias in CASES])
def test_state_dict_import_matches_torch(tmp_path, kind, nonlinearity, num_layers, bidirectional, bias):
    mod = make_module(kind, nonlinearity, num_layers, bidirectional, bias)
    torch.save(mod.state_dict(), tmp_path / "m.pt")
    result = import_torch(tmp_path / "m.pt", nonlinearity=nonlinearity or "tanh")
    got = (result.kind, result.num_layers, result.bidirectional, result.bias)
    assert got == (kind, num_layers, bidirectional, bias)
    assert_matches_torch(mod, result, np.random.default_rng(1).standard_normal((T, B, I)))


def test_block_structure_follows_the_module():
    result = import_torch(make_module("lstm", None, 2, True, True).state_dict())
    assert result.spec["blocks"]["enc"] == {"type": "stack", "n": 2,
                                            "layer": {"type": "bidirectional", "cell": {"type": "lstm", "size": H}}}
    assert set(result.spec["outputs"]) == {"enc.l1.fwd.h", "enc.l1.bwd.h"}


def test_batch_first_module_and_a_module_inside_a_bigger_model(tmp_path):
    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = make_module("gru", None, 1, True, True, batch_first=True)
            self.head = torch.nn.Linear(2 * H, 2).double()

    model = Tagger()
    torch.save(model.state_dict(), tmp_path / "tagger.pt")
    result = import_torch(tmp_path / "tagger.pt")  # the only recurrent module: found by itself
    assert_matches_torch(model.encoder, result, np.random.default_rng(2).standard_normal((B, T, I)), batch_first=True)


@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_lstm_with_projections_matches_torch_and_exports(num_layers, bidirectional):
    """proj_size P: primitives with h = W_hr (o * tanh(c)) fed back; the export is a Scan."""
    mod = make_module("lstm", None, num_layers, bidirectional, True, proj_size=2)
    result = import_torch(mod.state_dict())
    assert result.proj_size == 2 and "blocks" not in result.spec
    x = np.random.default_rng(4).standard_normal((T, B, I))
    assert_matches_torch(mod, result, x)
    ort = pytest.importorskip("onnxruntime")
    from interop import export_onnx
    net = result.network()
    model = export_onnx(net.program, net.params, dtype="float64")
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    want = net.forward({"x": x})
    for g, u in zip(got, net.program.outputs):
        np.testing.assert_allclose(g, want[u], rtol=0, atol=1e-10)


def test_refusals():
    with pytest.raises(UnsupportedError, match="belongs to an LSTM only"):
        sd = torch.nn.GRU(I, H).state_dict()
        import_torch({**sd, "weight_hr_l0": torch.zeros(2, H)})
    with pytest.raises(InteropError, match="--kind gru does not fit the weights"):
        import_torch(torch.nn.LSTM(I, H).state_dict(), kind="gru")
    two = {**{f"a.{k}": v for k, v in torch.nn.GRU(I, H).state_dict().items()},
           **{f"b.{k}": v for k, v in torch.nn.RNN(I, H).state_dict().items()}}
    with pytest.raises(InteropError, match="several recurrent modules"):
        import_torch(two)
    assert import_torch(two, module="b").kind == "rnn"


def test_cli_import_of_a_state_dict(tmp_path):
    mod = make_module("rnn", "relu", 2, False, True)
    torch.save(mod.state_dict(), tmp_path / "rnn.pt")
    res = CliRunner().invoke(cli.app, ["import", str(tmp_path / "rnn.pt"), "-o", str(tmp_path / "rnn.yaml"),
                                       "--kind", "rnn", "--nonlinearity", "relu"])
    assert res.exit_code == 0, res.output
    net = runtime.Network(compiler.compile_spec(tmp_path / "rnn.yaml"), dtype="float64")
    load_params(net, tmp_path / "rnn.npz")
    x = np.random.default_rng(3).standard_normal((T, B, I))
    np.testing.assert_allclose(net.forward({"x": x})["enc.l1.h"], mod(torch.from_numpy(x))[0].detach().numpy(),
                               rtol=0, atol=1e-10)
    res = CliRunner().invoke(cli.app, ["import", str(tmp_path / "rnn.pt"), "-o", str(tmp_path / "x.yaml"),
                                       "--kind", "lstm"])
    assert res.exit_code == 2 and "--kind lstm does not fit the weights" in res.output
