"""`gradient: stop` on a connection, and the lstm block's `truncated: true` (the truncated
gradient of the original LSTM: Hochreiter & Schmidhuber 1997; Gers et al. 2000, 2002).

Oracles: torch in float64 with `.detach()` on the source of each marked connection (loss and
every parameter gradient to 1e-10), written out by hand from the equations; and the three
executors (compiled scan, interpreted scan, reference interpreter) against each other. The
forward pass must not change; full BPTT must give different gradients (so the mark is seen).
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from support import cli_in, random_batch

import compiler
import runtime
from runtime import jit
from tests.runtime.test_compiled_scan import assert_all_agree  # float64, to 1e-12

torch = pytest.importorskip("torch")

TOL = 1e-10


def elman_spec(stop=True):
    """x -> a -> h (a -> h marked), h -> h @1 (marked), a and h -> y."""
    mark = {"gradient": "stop"} if stop else {}
    return {"timeloom": 1, "name": "elman_stop", "inputs": {"x": {"size": 2}},
            "units": {"a": {"size": 3, "activation": "tanh"}, "h": {"size": 4, "activation": "tanh"},
                      "y": {"size": 2, "activation": "identity"}},
            "connections": [{"from": "x", "to": "a"}, {"from": "x", "to": "h"},
                            {"from": "a", "to": "h", **mark},
                            {"from": "h", "to": "h", "delay": 1, **mark},
                            {"from": "a", "to": "y"}, {"from": "h", "to": "y"}],
            "outputs": {"y": {"loss": "mse"}}}


def lstm_spec(truncated=True, peepholes=True):
    return {"timeloom": 1, "name": "lstm_trunc", "inputs": {"x": {"size": 2}},
            "blocks": {"enc": {"type": "lstm", "size": 3, "peepholes": peepholes, "truncated": truncated}},
            "units": {"y": {"size": 2, "activation": "identity"}},
            "connections": [{"from": "x", "to": "enc"}, {"from": "enc", "to": "y"}],
            "outputs": {"y": {"loss": "mse"}}}


def net_and_data(spec, executor="fast", jit_on=False, seed=0, T=6, B=3):
    program = compiler.compile_spec(spec)
    kw = {"executor": "reference"} if executor == "reference" else {"jit": jit_on}
    net = runtime.Network(program, dtype="float64", seed=seed, **kw)
    rng = np.random.default_rng(seed + 7)
    for name in net.trainable:  # far from zero, so that every gradient is
        net.params[name] = rng.uniform(-0.9, 0.9, net.params[name].shape)
    x = rng.standard_normal((T, B, 2))
    target = rng.standard_normal((T, B, 2))
    return net, x, target


def torch_params(net):
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in net.params.items()}


def torch_grads(loss, P):
    loss.backward()
    return {k: p.grad.numpy() for k, p in P.items()}


def torch_elman(P, x, target, stop=True):
    cut = (lambda v: v.detach()) if stop else (lambda v: v)
    lin = lambda W, v: v @ W.T  # noqa: E731
    X = torch.from_numpy(x)
    h = torch.zeros(x.shape[1], 4, dtype=torch.float64)
    ys = []
    for t in range(x.shape[0]):
        a = torch.tanh(lin(P["x->a"], X[t]) + P["a.bias"])
        h = torch.tanh(lin(P["x->h"], X[t]) + lin(P["a->h"], cut(a)) + lin(P["h->h@1"], cut(h)) + P["h.bias"])
        ys.append(lin(P["a->y"], a) + lin(P["h->y"], h) + P["y.bias"])
    return torch.nn.functional.mse_loss(torch.stack(ys), torch.from_numpy(target))


def torch_lstm(P, x, target, truncated=True):
    """Gers et al. 2002 peephole LSTM; truncated: h_{t-1} -> gates/g and c -> gates detached,
    the cell's self-connection c_{t-1} -> c_t (the constant error carousel) not."""
    cut = (lambda v: v.detach()) if truncated else (lambda v: v)
    lin = lambda W, v: v @ W.T  # noqa: E731
    X = torch.from_numpy(x)
    h = torch.zeros(x.shape[1], 3, dtype=torch.float64)
    c = torch.zeros_like(h)
    ys = []
    for t in range(x.shape[0]):
        hp, cp = cut(h), cut(c)
        i = torch.sigmoid(lin(P["x->enc.i"], X[t]) + lin(P["enc.h->enc.i@1"], hp) + P["enc.c->enc.i@1"] * cp
                          + P["enc.i.bias"])
        f = torch.sigmoid(lin(P["x->enc.f"], X[t]) + lin(P["enc.h->enc.f@1"], hp) + P["enc.c->enc.f@1"] * cp
                          + P["enc.f.bias"])
        g = torch.tanh(lin(P["x->enc.g"], X[t]) + lin(P["enc.h->enc.g@1"], hp) + P["enc.g.bias"])
        c = f * c + i * g
        o = torch.sigmoid(lin(P["x->enc.o"], X[t]) + lin(P["enc.h->enc.o@1"], hp) + P["enc.c->enc.o"] * cut(c)
                          + P["enc.o.bias"])
        h = o * torch.tanh(c)
        ys.append(lin(P["enc.h->y"], h) + P["y.bias"])
    return torch.nn.functional.mse_loss(torch.stack(ys), torch.from_numpy(target))


def assert_matches_torch(net, x, target, loss_t, grads_t):
    loss, grads = net.loss_and_grads({"x": x}, {"y": target})
    assert abs(loss - loss_t.item()) < TOL
    assert set(grads) == set(grads_t)
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_t[name], rtol=0, atol=TOL, err_msg=name)


EXECUTORS = [("fast", False), ("fast", True), ("reference", False)]
IDS = ["interpreted", "compiled", "reference"]


@pytest.mark.parametrize("executor,jit_on", EXECUTORS, ids=IDS)
def test_elman_with_stopped_connections_matches_torch_detach(executor, jit_on):
    if jit_on and not jit.numba_available():
        pytest.skip("numba is not installed")
    net, x, target = net_and_data(elman_spec(), executor, jit_on)
    P = torch_params(net)
    loss_t = torch_elman(P, x, target)
    assert_matches_torch(net, x, target, loss_t, torch_grads(loss_t, P))


@pytest.mark.parametrize("peepholes", [True, False], ids=["peepholes", "no-peepholes"])
@pytest.mark.parametrize("executor,jit_on", EXECUTORS, ids=IDS)
def test_truncated_lstm_matches_torch_detach(executor, jit_on, peepholes):
    if jit_on and not jit.numba_available():
        pytest.skip("numba is not installed")
    net, x, target = net_and_data(lstm_spec(peepholes=peepholes), executor, jit_on)
    P = torch_params(net)
    if not peepholes:
        zero = torch.zeros(3, dtype=torch.float64)
        P_full = {**P, "enc.c->enc.i@1": zero, "enc.c->enc.f@1": zero, "enc.c->enc.o": zero}
        loss_t = torch_lstm(P_full, x, target)
    else:
        loss_t = torch_lstm(P, x, target)
    assert_matches_torch(net, x, target, loss_t, torch_grads(loss_t, P))


def test_the_oracle_tells_truncated_from_full_bptt():
    """Without the mark the gradients are torch's full BPTT, and differ from the truncated ones:
    the tests above can fail."""
    for spec, model in ((elman_spec, torch_elman), (lstm_spec, torch_lstm)):
        full, x, target = net_and_data(spec(False))
        P = torch_params(full)
        loss_t = model(P, x, target, False)
        assert_matches_torch(full, x, target, loss_t, torch_grads(loss_t, P))
        cut, _, _ = net_and_data(spec(True))
        _, g_full = full.loss_and_grads({"x": x}, {"y": target})
        _, g_cut = cut.loss_and_grads({"x": x}, {"y": target})
        np.testing.assert_allclose(cut.forward({"x": x})["y"], full.forward({"x": x})["y"], rtol=0, atol=1e-14)
        assert max(np.abs(g_full[k] - g_cut[k]).max() for k in g_full) > 1e-3


# --- the three executors agree ----------------------------------------------------------------

def agreeing_specs():
    """Stop marks on: a fused step group, a hoisted group, singles in and before the scan
    (diagonal, identity, fixed, source-gated), a bidirectional lstm, a group split by the mark."""
    mixed = elman_spec()
    mixed["units"]["s"] = {"size": 4, "activation": "sigmoid"}
    mixed["connections"] += [
        {"from": "h", "to": "s", "delay": 1, "gradient": "stop"},  # same (source, delay) as h->h@1
        {"from": "h", "to": "s", "delay": 2},  # same source, not marked
        {"from": "s", "to": "h", "delay": 1, "weight": "diagonal", "gradient": "stop"},
        {"from": "a", "to": "s", "gate": {"unit": "a", "at": "source"}, "gradient": "stop"},
        {"from": "h", "to": "s", "delay": 3, "gate": {"unit": "h", "at": "source"}, "gradient": "stop"},
        {"from": "x", "to": "s"},
        {"from": "h", "to": "h", "delay": 2, "weight": "identity", "gradient": "stop"},
        {"from": "h", "to": "h", "delay": 3, "weight": {"fixed": 0.3}, "gradient": "flow"},
        {"from": "s", "to": "y", "gradient": "stop"}]
    split = elman_spec(stop=False)
    split["connections"].append({"from": "h", "to": "y", "delay": 1, "gradient": "stop"})
    split["connections"].append({"from": "h", "to": "a", "delay": 1, "gradient": "stop"})
    bi = lstm_spec()
    bi["blocks"]["enc"] = {"type": "bidirectional", "cell": {"type": "lstm", "size": 3, "peepholes": True,
                                                              "truncated": True, "gers2000": True}}
    gru = {"timeloom": 1, "name": "gru_stop", "inputs": {"x": {"size": 2}},
           "blocks": {"enc": {"type": "gru", "size": 3}},
           "units": {"y": {"size": 2, "activation": "identity"}},
           "connections": [{"from": "x", "to": "enc", "gradient": "stop"},
                           {"from": "enc", "to": "y"}, {"from": "y", "to": "enc", "delay": 1, "gradient": "stop"}],
           "outputs": {"y": {"loss": "mse"}}}
    return {"mixed": mixed, "split": split, "bidirectional-lstm": bi, "gru-output-feedback": gru}


@pytest.mark.skipif(not jit.numba_available(), reason="numba is not installed")
@pytest.mark.parametrize("name", list(agreeing_specs()))
def test_compiled_interpreted_and_reference_agree_with_stop_marks(name):
    program = compiler.compile_spec(agreeing_specs()[name])
    assert any(c.stop_gradient for c in program.connections)
    rng = np.random.default_rng(3)
    inputs, targets, masks, lengths = random_batch(program, 7, 3, rng, True)
    assert_all_agree(program, inputs, targets, masks, lengths)


def test_a_stopped_feedforward_path_gives_the_source_no_error():
    """x -> a -> y only through a stopped connection: a's weights get exactly zero gradient, the
    stopped weight a nonzero one (its source taken as a constant)."""
    spec = {"timeloom": 1, "name": "ff", "inputs": {"x": {"size": 2}},
            "units": {"a": {"size": 3, "activation": "tanh"}, "y": {"size": 2, "activation": "identity"}},
            "connections": [{"from": "x", "to": "a"}, {"from": "a", "to": "y", "gradient": "stop"}],
            "outputs": {"y": {"loss": "mse"}}}
    for executor in ("fast", "reference"):
        net, x, target = net_and_data(spec, executor)
        _, grads = net.loss_and_grads({"x": x}, {"y": target})
        assert np.all(grads["x->a"] == 0) and np.all(grads["a.bias"] == 0)
        assert np.abs(grads["a->y"]).max() > 1e-3


# --- the spec language ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["stopped", True, 0, "Stop"])
def test_a_bad_gradient_value_is_refused_with_its_place(value):
    spec = elman_spec()
    spec["connections"][2]["gradient"] = value
    with pytest.raises(compiler.TimeloomError) as err:
        compiler.compile_spec(spec)
    text = str(err.value)
    assert "connections/2/gradient" in text and "use one of: flow, stop" in text


def test_the_cli_refuses_a_bad_gradient_value_with_its_line_and_no_traceback(tmp_path):
    spec = elman_spec()
    spec["connections"][3]["gradient"] = "detach"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = cli_in(tmp_path, ["compile", "bad.yaml"])
    assert result.exit_code != 0
    assert "bad.yaml:" in result.output and "gradient" in result.output and "flow, stop" in result.output
    assert "Traceback" not in result.output
    spec["connections"][3]["gradient"] = "stop"
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert cli_in(tmp_path, ["compile", "good.yaml"]).exit_code == 0


def test_truncated_marks_only_the_recurrent_and_peephole_connections():
    program = compiler.compile_spec(lstm_spec())
    stopped = sorted(c.name for c in program.connections if c.stop_gradient)
    assert stopped == sorted(["enc.h->enc.i@1", "enc.h->enc.f@1", "enc.h->enc.o@1", "enc.h->enc.g@1",
                              "enc.c->enc.i@1", "enc.c->enc.f@1", "enc.c->enc.o"])
    assert not any(c.stop_gradient for c in compiler.compile_spec(lstm_spec(False)).connections)
    bad = lstm_spec()
    bad["blocks"]["enc"]["truncated"] = "yes"
    with pytest.raises(compiler.TimeloomError, match="truncated"):
        compiler.compile_spec(bad)
