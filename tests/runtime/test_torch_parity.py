"""Parity with torch.nn.RNN / LSTM / GRU: same weights, same input -> same outputs and gradients.

torch is the independent oracle here (float64, 1e-9). Each torch module is rebuilt as a
timeloom spec (an rnn / lstm / gru block, wrapped in `bidirectional` and/or `stack`), feeding
a linear readout `y` (identity unit) trained with mse; torch gets the same readout
(`nn.Linear`) and `F.mse_loss`, so both sides compute the same loss and every parameter
gradient can be compared, torch's `weight_ih_l*`, `weight_hh_l*`, `bias_ih_l*`, `bias_hh_l*`
one by one.

The name mapping (`interop.mapping.torch_links`) follows the parameter names of docs/ARCHITECTURE.md and
ARCHITECTURE.md's block wiring; torch's layout is in its docs (nn.RNN / nn.LSTM / nn.GRU, "Variables").
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import compiler  # noqa: E402
import runtime  # noqa: E402

TOL = 1e-9

# The mapping under test lives in interop/mapping.py (used by `timeloom import` of a state_dict):
# torch's gate order (TORCH_GATES), `Link` (a timeloom name <-> a block of a torch parameter),
# `layer_prefix` and `torch_links` (every link of one nn.RNN / LSTM / GRU).
from interop.mapping import Link, layer_prefix, torch_links  # noqa: E402,F401


def readout_links(hidden, num_layers, bidirectional, prefix="enc", unit="y"):
    """nn.Linear(dirs*H, O) reading the last layer: weight columns split by direction."""
    dirs = 2 if bidirectional else 1
    links = [Link(f"{layer_prefix(prefix, num_layers - 1, d, num_layers, bidirectional)}.h->{unit}",
                  "weight", slice(None), slice(d * hidden, (d + 1) * hidden)) for d in range(dirs)]
    return links + [Link(f"{unit}.bias", "bias", slice(None))]


def copy_params(net, links, torch_params):
    """Set every linked timeloom parameter to the sum of its torch blocks."""
    values = {}
    for ln in links:
        values[ln.name] = values.get(ln.name, 0) + ln.block(torch_params[ln.torch_param].detach().numpy())
    missing = set(net.params) - set(values)
    assert not missing, f"timeloom parameters with no torch counterpart: {sorted(missing)}"
    for name, v in values.items():
        assert net.params[name].shape == v.shape, (name, net.params[name].shape, v.shape)
        net.params[name] = np.array(v, dtype=np.float64)


def assert_grads_match(links, grads, torch_params):
    covered = {}
    for ln in links:
        tp = torch_params[ln.torch_param]
        np.testing.assert_allclose(grads[ln.name], ln.block(tp.grad.numpy()), rtol=0, atol=TOL,
                                   err_msg=f"{ln.name} vs {ln.torch_param}[{ln.rows}, {ln.cols}]")
        ln.block(covered.setdefault(ln.torch_param, np.zeros(tp.shape, dtype=int)))[...] += 1
    for name, tp in torch_params.items():
        assert name in covered and (covered[name] == 1).all(), f"torch {name} not linked exactly once"
    assert set(grads) == {ln.name for ln in links}


# --- building both sides ----------------------------------------------------------------------

def block_spec(kind, hidden, num_layers, bidirectional, nonlinearity="tanh"):
    cell = {"type": kind, "size": hidden}
    if kind == "rnn":
        cell["activation"] = nonlinearity
    if bidirectional:
        cell = {"type": "bidirectional", "cell": cell}
    if num_layers > 1:
        cell = {"type": "stack", "n": num_layers, "layer": cell}
    return cell


def make_spec(kind, input_size, hidden, out_size, num_layers, bidirectional, nonlinearity="tanh"):
    return {
        "timeloom": 1, "name": f"torch_{kind}",
        "inputs": {"x": {"size": input_size}},
        "blocks": {"enc": block_spec(kind, hidden, num_layers, bidirectional, nonlinearity)},
        "units": {"y": {"size": out_size, "activation": "identity"}},
        "connections": [{"from": "x", "to": "enc"}, {"from": "enc", "to": "y"}],
        "outputs": {"y": {"loss": "mse"}},
    }


def torch_module(kind, input_size, hidden, out_size, num_layers, bidirectional, nonlinearity, seed):
    torch.manual_seed(seed)
    kw = dict(num_layers=num_layers, bidirectional=bidirectional)
    if kind == "rnn":
        mod = torch.nn.RNN(input_size, hidden, nonlinearity=nonlinearity, **kw)
    else:
        mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](input_size, hidden, **kw)
    mod = mod.double()
    with torch.no_grad():  # larger than torch's default init, so gradients are far from zero
        for p in mod.parameters():
            p.uniform_(-0.8, 0.8)
    dirs = 2 if bidirectional else 1
    head = torch.nn.Linear(dirs * hidden, out_size).double()
    return mod, head


def setup(kind, num_layers, bidirectional, nonlinearity="tanh", I=3, H=4, O=3, seed=0):
    mod, head = torch_module(kind, I, H, O, num_layers, bidirectional, nonlinearity, seed)
    program = compiler.compile_spec(make_spec(kind, I, H, O, num_layers, bidirectional, nonlinearity))
    net = runtime.Network(program, dtype="float64")
    rnn_links = torch_links(kind, "x", I, H, num_layers, bidirectional)
    head_links = readout_links(H, num_layers, bidirectional)
    copy_params(net, rnn_links + head_links, {**dict(mod.named_parameters()),
                                              **dict(head.named_parameters())})
    return mod, head, net, rnn_links, head_links


CASES = [(kind, nl, layers, bi)
         for kind, nl in [("rnn", "tanh"), ("rnn", "relu"), ("lstm", None), ("gru", None)]
         for layers in (1, 2) for bi in (False, True)]


@pytest.mark.parametrize("kind,nonlinearity,num_layers,bidirectional", CASES,
                         ids=[f"{k}{'-' + n if n else ''}-{l}layer{'-bi' if b else ''}" for k, n, l, b in CASES])
def test_outputs_and_all_gradients_match_torch(kind, nonlinearity, num_layers, bidirectional):
    T, B = 5, 3
    mod, head, net, rnn_links, head_links = setup(kind, num_layers, bidirectional, nonlinearity or "tanh")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, 3))
    target = rng.standard_normal((T, B, 3))

    seq, _ = mod(torch.from_numpy(x))
    y_torch = head(seq)
    loss_torch = torch.nn.functional.mse_loss(y_torch, torch.from_numpy(target))
    loss_torch.backward()

    y = net.forward({"x": x})["y"]
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=0, atol=TOL)
    loss, grads = net.loss_and_grads({"x": x}, {"y": target})
    assert abs(loss - loss_torch.item()) < TOL
    params = {**dict(mod.named_parameters()), **dict(head.named_parameters())}
    assert_grads_match(rnn_links + head_links, grads, params)


def test_hidden_trajectories_match_torch_layer_by_layer():
    """Every layer's h (not just the readout) equals torch's output of that layer."""
    T, B, H = 4, 2, 4
    mod, head, net, _, _ = setup("lstm", 2, True)
    x = np.random.default_rng(2).standard_normal((T, B, 3))
    names = [f"enc.l{lay}.{d}.h" for lay in (0, 1) for d in ("fwd", "bwd")]
    outs = net.forward({"x": x}, units=names)
    first = torch.nn.LSTM(3, H, bidirectional=True).double()
    with torch.no_grad():
        for n, p in first.named_parameters():
            p.copy_(getattr(mod, n))
    seq0, _ = first(torch.from_numpy(x))
    seq1, _ = mod(torch.from_numpy(x))
    for layer, seq in ((0, seq0), (1, seq1)):
        s = seq.detach().numpy()
        np.testing.assert_allclose(outs[f"enc.l{layer}.fwd.h"], s[..., :H], rtol=0, atol=TOL)
        np.testing.assert_allclose(outs[f"enc.l{layer}.bwd.h"], s[..., H:], rtol=0, atol=TOL)


def test_variable_lengths_match_packed_bidirectional_lstm():
    """timeloom's `lengths=` == torch's pack_padded_sequence: the backward direction of each
    sample starts at its own last valid step; padded steps never reach the loss."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    T, B, O = 6, 4, 3
    lengths = np.array([6, 3, 1, 5])
    mod, head, net, rnn_links, head_links = setup("lstm", 1, True, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((T, B, 3))
    target = rng.standard_normal((T, B, O))
    valid = (np.arange(T)[:, None] < lengths[None, :]).astype(float)  # (T, B)

    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), enforce_sorted=False)
    seq, _ = pad_packed_sequence(mod(packed)[0], total_length=T)
    y_torch = head(seq)
    m = torch.from_numpy(valid)[..., None]
    # timeloom's mse with lengths: mean over valid positions and features
    loss_torch = (((y_torch - torch.from_numpy(target)) ** 2) * m).sum() / (m.sum() * O)
    loss_torch.backward()

    y = net.forward({"x": x}, lengths=lengths)["y"]
    ok = valid.astype(bool)
    np.testing.assert_allclose(y[ok], y_torch.detach().numpy()[ok], rtol=0, atol=TOL)
    assert np.all(y[~ok] == 0)  # padded steps come back zeroed
    loss, grads = net.loss_and_grads({"x": x}, {"y": target}, lengths=lengths)
    assert abs(loss - loss_torch.item()) < TOL
    params = {**dict(mod.named_parameters()), **dict(head.named_parameters())}
    assert_grads_match(rnn_links + head_links, grads, params)


def test_reference_executor_agrees_with_torch_too():
    """The node-by-node interpreter (the tests' oracle elsewhere) also matches torch."""
    T, B = 4, 2
    mod, head, _, rnn_links, head_links = setup("gru", 2, True, seed=5)
    program = compiler.compile_spec(make_spec("gru", 3, 4, 3, 2, True))
    net = runtime.Network(program, dtype="float64", executor="reference")
    params = {**dict(mod.named_parameters()), **dict(head.named_parameters())}
    copy_params(net, rnn_links + head_links, params)
    rng = np.random.default_rng(6)
    x, target = rng.standard_normal((T, B, 3)), rng.standard_normal((T, B, 3))
    y_torch = head(mod(torch.from_numpy(x))[0])
    loss_torch = torch.nn.functional.mse_loss(y_torch, torch.from_numpy(target))
    loss_torch.backward()
    np.testing.assert_allclose(net.forward({"x": x})["y"], y_torch.detach().numpy(), rtol=0, atol=TOL)
    loss, grads = net.loss_and_grads({"x": x}, {"y": target})
    assert abs(loss - loss_torch.item()) < TOL
    assert_grads_match(rnn_links + head_links, grads, params)
