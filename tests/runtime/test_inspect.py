"""`runtime.diagnostics` and `timeloom inspect`: gradient flow, spectrum, states, the graph viewer.

Oracles: the gradient w.r.t. a unit's state at step s is checked against central finite
differences of the loss of the rest of the sequence run from a perturbed carried state
(`forward(..., state=...)`, no backward pass involved), at 3 lags; the step Jacobian against
the closed form diag(1 - h_t^2) W of an Elman net (seeds 002); eigenvalues against
numpy.linalg.eigvals of the same matrix.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import cli_in

from compiler import compile_spec
from runtime import Network
from runtime.data import Batch
from runtime.diagnostics import common, gradients, spectrum, states, viewer

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
EPS = 1e-5


def tiny(kind: str, T: int = 7, probes=()):
    """A tiny many-to-one net (Elman or LSTM) on the adding problem of length T; `probes`: units
    that get an extra input "probe_UNIT" added to their net input with an identity weight."""
    rec = {"type": "rnn", "size": 3} if kind == "elman" else {"type": "lstm", "size": 3}
    return compile_spec({
        "timeloom": 1, "name": f"tiny_{kind}", "inputs": {"x": {"size": 2}, **{"probe_" + u.replace(".", "_"): {"size": 3} for u in probes}},
        "blocks": {"rec": rec}, "units": {"y": {"size": 1, "activation": "identity"}},
        "connections": [{"from": "x", "to": "rec"}, {"from": "rec", "to": "y"}]
        + [{"from": "probe_" + u.replace(".", "_"), "to": u, "weight": "identity"} for u in probes],
        "outputs": {"y": {"loss": "mse", "at": "last"}},
        "data": {"task": "adding", "length": T, "test_size": 4}, "training": {"seed": 3}})


def perturbed(program, seed=0, scale=0.4):
    net = Network(program, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 7)
    for k in net.trainable:
        net.params[k] = net.params[k] + scale * rng.standard_normal(net.params[k].shape)
    return net


def central(loss, shape):
    grad = np.zeros(shape)
    for idx in np.ndindex(*shape):
        grad[idx] = (loss(idx, EPS) - loss(idx, -EPS)) / (2 * EPS)
    return grad


def fd_by_carried_state(net, batch, unit, s):
    """dL/dh_s for an Elman h (read at step s only by y, whose loss is at the last step): run
    steps 0..s, perturb the carried state h_s, run steps s+1..T-1."""
    x = batch.inputs
    _, state = net.forward({k: v[:s + 1] for k, v in x.items()}, return_state=True)
    rest = {k: v[s + 1:] for k, v in x.items()}

    def loss(idx, e):
        st = {k: v.copy() for k, v in state.items()}
        st[unit][(-1,) + idx] += e
        return net.loss(rest, batch.targets, state=st)
    return central(loss, state[unit].shape[1:])


def fd_by_probe(probed, batch, unit, s):
    """dL/d(unit at s) for a unit with identity activation: perturb the probe input added to its
    net input at step s (all its later uses, same step or delayed, see the change)."""
    T, B = batch.T, batch.B
    zeros = {n: np.zeros((T, B, k)) for n, k in probed.program.inputs.items() if n.startswith("probe_")}

    def loss(idx, e):
        p = {k: v.copy() for k, v in zeros.items()}
        p["probe_" + unit.replace(".", "_")][(s,) + idx] += e
        return probed.loss({**batch.inputs, **p}, batch.targets)
    return central(loss, (B, probed.program.units[unit].size))


@pytest.mark.parametrize("kind,units", [("elman", ["rec.h"]), ("lstm", ["rec.c", "rec.h"])])
def test_gradient_norm_curves_equal_finite_differences_at_three_lags(kind, units):
    program = tiny(kind)
    net = perturbed(program)
    probed = None
    if kind == "lstm":  # c and h have identity activations: a probe input measures dL/dc_s, dL/dh_s
        probed = Network(tiny(kind, probes=units), dtype="float64")
        probed.params = dict(net.params)
    rng = np.random.default_rng(1)
    T, B = 7, 2
    batch = Batch({"x": rng.random((T, B, 2))}, {"y": rng.random((B, 1))})
    _, deltas = net.state_gradients(batch.inputs, batch.targets, units=units)
    flow = gradients.gradient_flow(net, batch, units)
    for u in units:
        for k in (1, 2, 3):
            s = T - 1 - k
            fd = fd_by_probe(probed, batch, u, s) if probed else fd_by_carried_state(net, batch, u, s)
            np.testing.assert_allclose(deltas[u][s], fd, rtol=1e-6, atol=1e-10)
            want = np.linalg.norm(fd, axis=-1).mean()
            assert flow.norms[u][k] == pytest.approx(want, rel=1e-6)


def test_state_gradients_agree_between_executors_and_vanish_on_padding():
    program = tiny("lstm")
    rng = np.random.default_rng(2)
    x, y, lengths = rng.random((6, 3, 2)), rng.random((3, 1)), np.array([6, 4, 5])
    got = {}
    for ex in ("fast", "reference"):
        net = Network(program, dtype="float64", seed=0, executor=ex)
        got[ex] = net.state_gradients({"x": x}, {"y": y}, lengths=lengths)[1]
    for u in program.units:
        np.testing.assert_allclose(got["fast"][u], got["reference"][u], rtol=1e-10, atol=1e-14)
    assert not got["fast"]["rec.c"][4:, 1].any() and not got["fast"]["rec.c"][5:, 2].any()
    net = Network(program, dtype="float64", seed=0)
    first = net.state_gradients({"x": x}, {"y": y}, lengths=lengths)[1]["rec.c"]
    net.state_gradients({"x": 2 * x}, {"y": y}, lengths=lengths)  # the executor reuses its buffers
    np.testing.assert_array_equal(first, got["fast"]["rec.c"])


def test_gradient_flow_counts_lags_from_each_sequences_last_step():
    program = tiny("elman")
    net = perturbed(program)
    rng = np.random.default_rng(3)
    lengths = np.array([7, 4])
    batch = Batch({"x": rng.random((7, 2, 2))}, {"y": rng.random((2, 1))}, lengths=lengths)
    _, d = net.state_gradients(batch.inputs, batch.targets, lengths=lengths)
    flow = gradients.gradient_flow(net, batch)
    n = np.linalg.norm(d["rec.h"], axis=-1)
    assert flow.norms["rec.h"][0] == pytest.approx((n[6, 0] + n[3, 1]) / 2)
    assert flow.norms["rec.h"][5] == pytest.approx(n[1, 0])  # only the longer sequence reaches lag 5
    assert flow.relative("rec.h")[0] == 1.0


def test_vanish_lag_is_the_first_lag_below_the_ratio():
    flow = gradients.GradientFlow("x", {"h": np.array([2.0, 1.0, 1e-5, 1e-7, 1e-9])}, 0.0, 1)
    assert flow.vanish_lag("h") == 3
    assert flow.vanish_lag("h", 1e-10) is None


def test_elman_step_jacobian_is_tanh_derivative_times_w():
    program = tiny("elman", T=9)
    net = perturbed(program)
    x = {"x": np.random.default_rng(4).random((9, 1, 2))}
    t = 5
    J, labels, _ = spectrum.step_jacobian(net, x, t)
    h = net.forward({"x": x["x"][:t + 1]}, units=["rec.h"])["rec.h"][t, 0]
    closed = np.diag(1 - h ** 2) @ net.params["rec.h->rec.h@1"]
    np.testing.assert_allclose(J, closed, rtol=1e-6, atol=1e-9)
    assert labels == ["rec.h[0]@-1", "rec.h[1]@-1", "rec.h[2]@-1"]


def test_delayed_state_gives_a_companion_jacobian():
    """A delay-2 self-connection: the state holds h_{t-1}, h_{t-2}; one block row shifts."""
    program = compile_spec({
        "timeloom": 1, "name": "d2", "inputs": {"x": {"size": 1}},
        "units": {"h": {"size": 2, "activation": "tanh"}, "y": {"size": 1}},
        "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 2}, {"from": "h", "to": "y"}],
        "outputs": {"y": {"loss": "mse", "at": "all"}}})
    net = perturbed(program)
    J, labels, _ = spectrum.step_jacobian(net, {"x": np.ones((6, 1, 1))}, 3)
    assert J.shape == (4, 4) and labels[:2] == ["h[0]@-2", "h[1]@-2"]
    np.testing.assert_allclose(J[:2], [[0, 0, 1, 0], [0, 0, 0, 1]], atol=1e-8)  # h_{t-1} moves down
    np.testing.assert_allclose(J[2:, 2:], 0, atol=1e-8)  # h_t does not read h_{t-1}


def test_weight_eigenvalues_match_numpy_linalg():
    program = compile_spec(ROOT / "specs" / "adding_lstm.yaml")
    net = common.network(program)
    found = {s.name: s for s in spectrum.weight_spectra(net)}
    assert set(found) >= {"mem.h->mem.i@1", "mem.h->mem.f@1", "mem.h->mem.o@1", "mem.h->mem.g@1", "mem.c->mem.c@1"}
    for name in ("mem.h->mem.f@1", "mem.h->mem.g@1"):
        want = np.linalg.eigvals(np.asarray(net.params[name]))
        got = found[name].eigenvalues
        np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), rtol=1e-12, atol=1e-12)
        assert found[name].radius == pytest.approx(np.abs(want).max())
    np.testing.assert_allclose(found["mem.c->mem.c@1"].eigenvalues, 1.0)  # the carousel's identity


def test_reservoir_spectral_radius_asked_versus_achieved():
    spec = yaml.safe_load((ROOT / "specs" / "esn.yaml").read_text())
    spec["blocks"]["res"].update(size=60, spectral_radius=1.25, density=0.2)
    for dtype in ("float64", "float32"):
        net = Network(compile_spec(spec), dtype=dtype, seed=5)
        (res,) = [s for s in spectrum.weight_spectra(net) if s.name == "res.h->res.h@1"]
        assert res.requested == 1.25
        want = np.abs(np.linalg.eigvals(np.asarray(net.params["res.h->res.h@1"], dtype=np.float64))).max()
        assert res.radius == pytest.approx(want)
        assert res.radius == pytest.approx(1.25, rel=1e-5 if dtype == "float32" else 1e-12)


# -- every example spec --------------------------------------------------------------------------
def small(path: Path):
    """The spec with hidden sizes capped at 8 (inputs and outputs keep the task's sizes)."""
    spec = yaml.safe_load(path.read_text())
    outputs = set(spec.get("outputs") or {})

    def cap(node):
        if isinstance(node, dict):
            return {k: min(v, 8) if k == "size" and isinstance(v, int) else cap(v) for k, v in node.items()}
        return [cap(v) for v in node] if isinstance(node, list) else node

    for key in ("blocks", "templates"):
        if key in spec:
            spec[key] = cap(spec[key])
    for name, unit in (spec.get("units") or {}).items():
        if name not in outputs and isinstance(unit, dict) and isinstance(unit.get("size"), int):
            unit["size"] = min(unit["size"], 8)
    data = dict(spec.get("data") or {})
    if isinstance(data.get("path"), str):
        data["path"] = str((path.parent / data["path"]).resolve())
    spec["data"] = data
    return compile_spec(spec, file=str(path))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_pictures_for_every_example_spec(path, tmp_path):
    program = small(path)
    task = common.task_of(program)
    batch = common.sample_batch(task, 2, 12)
    net = common.network(program)
    flow = gradients.gradient_flow(net, batch, label="initialisation")
    assert all(np.isfinite(v).any() for v in flow.norms.values())
    gradients.draw([(program.name, [flow])], tmp_path / "g.png")
    gradients.write_csv([(program.name, [flow])], tmp_path / "g.csv")
    items = spectrum.spectra(net, batch.inputs)
    spectrum.draw(items, tmp_path / "s.png")
    seq = states.choose_sequence(task, None, max_steps=16)
    traj = states.trajectories(net, seq.inputs, states.default_units(program))
    states.draw(traj, seq.labels, tmp_path / "h.png", program=program)
    for name in ("g.png", "s.png", "h.png"):
        assert (tmp_path / name).stat().st_size > 2000


# -- choosing a sequence -------------------------------------------------------------------------
def test_sequences_by_n_by_letters_and_by_number():
    program = compile_spec(ROOT / "specs" / "anbncn.yaml")
    task = common.task_of(program)
    seq = states.choose_sequence(task, "n=3")
    assert "".join(seq.labels) == "Saaabbbccc"
    assert "".join(states.choose_sequence(task, "aabbcc").labels) == "Saabbcc"
    assert "".join(states.choose_sequence(task).labels) == "S" + "a" * 8 + "b" * 8 + "c" * 8
    assert len(states.choose_sequence(task, "2").labels) == 1 + 3 * (task.test_n[0] + 2)
    with pytest.raises(Exception, match="symbols 'x'"):
        states.choose_sequence(task, "axb")


# -- the viewer's data ---------------------------------------------------------------------------
def test_viewer_data_keeps_every_node_and_edge_with_its_parameter_delay_and_gate():
    program = compile_spec(ROOT / "specs" / "adding_lstm.yaml")
    g = program.unroll(3)
    data = viewer.graph_data(g)
    assert len(data["nodes"]) == g.number_of_nodes() and len(data["edges"]) == g.number_of_edges()
    rows = data["rows"]
    named = {(rows[data["nodes"][a][0]], data["nodes"][a][1], rows[data["nodes"][b][0]], data["nodes"][b][1]): e
             for a, b, *e in data["edges"]}
    assert named[("mem.c", 0, "mem.c", 1)] == ["d1", "mem.c->mem.c@1", 1, "mem.f"]
    assert named[("mem.f", 1, "mem.c", 1)][0] == "gate"


def test_viewer_handles_a_few_thousand_nodes_quickly():
    program = compile_spec(ROOT / "specs" / "adding_lstm.yaml")
    T = viewer.steps_for(program, 10_000)
    g = program.unroll(T)
    assert 2500 <= g.number_of_nodes() <= viewer.MAX_NODES
    t0 = time.monotonic()
    text = viewer.viewer_html(g)
    assert time.monotonic() - t0 < 10
    assert "</script" not in text.split('type="application/json">')[1].split("</script>")[0]


# -- the commands ---------------------------------------------------------------------------------
def invoke(args, cwd):
    return cli_in(cwd, ["inspect", *args])


def test_inspect_gradients_writes_png_and_csv_before_and_after_training(tmp_path):
    spec = ROOT / "specs" / "adding_lstm.yaml"
    program = compile_spec(spec)
    ckpt_params = {k: np.asarray(v) for k, v in common.network(program).params.items()}
    from runtime.train import checkpoint

    ckpt = checkpoint.save(tmp_path / "ckpt-00000001-0001-00000.npz", ckpt_params, {},
                           {"spec_hash": checkpoint.spec_hash(program.spec), "step": 1})
    res = invoke(["gradients", spec, "-c", ckpt, "--set", "data.length=12", "--set", "data.test_size=4",
                  "--batch", "3", "-o", "g.png"], tmp_path)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "g.png").stat().st_size > 5000
    with open(tmp_path / "g.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["state"] for r in rows} == {"initialisation", "after training"}
    assert {r["unit"] for r in rows} == {"mem.c", "mem.h"}
    assert max(int(r["lag"]) for r in rows) == 11
    assert "mem.c" in res.output and "wrote g.png" in res.output


def test_inspect_states_spectrum_and_graph_commands(tmp_path):
    spec = ROOT / "specs" / "anbncn.yaml"
    res = invoke(["states", spec, "--units", "mem.c,mem.f", "--sequence", "aaabbbccc", "-o", "s.png"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "mem.c, mem.f; 10 steps" in res.output
    res = invoke(["spectrum", spec, "-o", "e.png"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "step Jacobian" in res.output and (tmp_path / "e.csv").exists()
    res = invoke(["graph", spec, "--steps", "5", "-o", "v.html"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "graph-viewer" in (tmp_path / "v.html").read_text()


def test_inspect_names_an_unknown_unit(tmp_path):
    res = invoke(["states", ROOT / "specs" / "anbncn.yaml", "--units", "mem.cc"], tmp_path)
    assert res.exit_code == 2
    assert "unknown unit 'mem.cc'; did you mean 'mem.c'" in res.output


def test_the_vanishing_lag_skips_the_lags_a_delayed_recurrence_never_reaches():
    """h -> h with delay 5 only reaches lags 0, 5, 10, ...: the exact zeros between are not a
    vanished gradient (it was reported as vanishing at lag 1)."""
    from runtime.diagnostics.gradients import GradientFlow, summary_rows

    every5 = np.zeros(13)
    every5[[0, 5, 10]] = [2.0, 1.8, 1.5]
    dips = np.array([1.0, 1e-7, 0.5, 1e-8, 1e-9])
    flow = GradientFlow("initialisation", {"h": every5, "g": dips, "v": np.array([1.0, 0.1, 1e-7, 1e-8])}, 0.0, 4)
    assert flow.vanish_lag("h") is None
    assert flow.vanish_lag("g") == 3  # below from lag 3 on (the dip at lag 1 recovered)
    assert flow.vanish_lag("v") == 2
    row = next(r for r in summary_rows([("s", [flow])]) if r["unit"] == "h")
    assert row["last_lag"] == 10 and row["relative_at_last"] == pytest.approx(0.75)
    assert row["zero_beyond"] == 10  # a finite reach: said as such, not as a vanishing gradient
    assert next(r for r in summary_rows([("s", [flow])]) if r["unit"] == "v")["zero_beyond"] is None
