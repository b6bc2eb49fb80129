"""Time and memory bounds checked before anything is allocated (compiler/budget.py), and the
bounded report.html for large networks (runtime/diagnostics/bounded.py).

Refusals are asserted on the message, the exit status and the absence of a traceback, never on
elapsed time; the estimate is checked against the parameter arrays a Network really allocates
and against tracemalloc's peak of one training step."""
from __future__ import annotations

import re
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import cli
from compiler import TimeloomError, budget, compile_spec
from tests.support import random_batch, shrink

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


def invoke(*args, env=None):
    result = CliRunner().invoke(cli.app, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output, result.output
    return result


def refused(result, *needles):
    """Exit 2, a message containing every needle, and no Python exception escaping."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    for needle in needles:
        assert needle in result.output, (needle, result.output)


def write(tmp_path, spec: dict, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def adding(**data) -> dict:
    return {"timeloom": 1, "name": "add", "inputs": {"x": {"size": 2}},
            "units": {"h": {"size": 4, "activation": "tanh"}, "y": {"size": 1}},
            "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1},
                            {"from": "h", "to": "y"}],
            "outputs": {"y": {"loss": "mse", "at": "last"}},
            "data": {"task": "adding", "length": 10, "train_size": 16, "test_size": 8, **data},
            "training": {"epochs": 1, "batch_size": 8}}


def with_block(block: dict, size_in=2) -> dict:
    return {"timeloom": 1, "name": "blocky", "inputs": {"x": {"size": size_in}}, "blocks": {"b": block},
            "units": {"y": {"size": 1}},
            "connections": [{"from": "x", "to": "b"}, {"from": "b", "to": "y"}],
            "outputs": {"y": {"loss": "mse", "at": "last"}}}


def nested_templates(levels: int) -> dict:
    """t0 uses t1 twice, t1 uses t2 twice, ...; the last is one unit: 2^(levels-1) units."""
    templates = {}
    for i in range(levels):
        if i == levels - 1:
            templates[f"t{i}"] = {"units": {"h": {"size": 1}}, "inputs": ["h"], "outputs": ["h"]}
        else:
            templates[f"t{i}"] = {"blocks": {"a": {"type": f"t{i + 1}"}, "b": {"type": f"t{i + 1}"}},
                                  "inputs": ["a", "b"], "outputs": ["a", "b"]}
    spec = with_block({"type": "t0"}, size_in=1)
    spec["templates"] = templates
    return spec


# -- refusals at compile time ---------------------------------------------------------------------
def test_a_unit_of_size_1e9_is_refused_with_its_parameter_count(tmp_path):
    spec = adding()
    spec["units"]["h"]["size"] = 10 ** 9
    result = invoke("compile", write(tmp_path, spec))
    refused(result, "more than 10^18 parameters", "TIMELOOM_MAX_MEMORY")


def test_a_large_model_is_refused_with_the_estimate_and_the_setting(tmp_path):
    spec = adding()
    spec["units"]["h"]["size"] = 60_000  # 3.6e9 recurrent weights: 13.4 GiB of float32 alone
    result = invoke("compile", write(tmp_path, spec))
    n = 60_000 * 60_000 + 60_000 * 2 + 60_000 + 60_000 + 1  # W, U, b_h, V, b_y
    refused(result, f"{n:,} parameters", "TIMELOOM_MAX_MEMORY=")
    ok = invoke("compile", write(tmp_path, spec), env={"TIMELOOM_MAX_MEMORY": "100GiB"})
    assert ok.exit_code == 0, ok.output
    assert f"{n:,} parameters" in ok.output


@pytest.mark.parametrize("block,needle", [
    ({"type": "stack", "n": 10 ** 9, "layer": {"type": "rnn", "size": 4}}, "n: 1,000,000,000"),
    ({"type": "conv", "size": 4, "kernel": 10 ** 9}, "kernel: 1,000,000,000"),
])
def test_huge_block_counts_are_refused_before_the_body_is_built(tmp_path, block, needle):
    refused(invoke("compile", write(tmp_path, with_block(block))), needle, "TIMELOOM_MAX_UNITS")


def test_the_nested_template_bomb_is_refused_with_the_exact_unit_count(tmp_path):
    result = invoke("compile", write(tmp_path, nested_templates(17)))
    # the count is exact (oracle: 2^16 leaves plus the top-level unit y), found without expanding
    refused(result, f"expands to {2 ** 16 + 1:,} units", "TIMELOOM_MAX_UNITS")
    assert result.output.strip().endswith("1 error")


def test_the_unit_limit_is_a_setting(tmp_path, monkeypatch):
    path = write(tmp_path, nested_templates(5))  # 16 leaves + y = 17 units
    assert invoke("compile", path).exit_code == 0
    refused(invoke("compile", path, env={"TIMELOOM_MAX_UNITS": "10"}), "17 units", "limit of 10")
    refused(invoke("compile", path, env={"TIMELOOM_MAX_UNITS": "lots"}), "TIMELOOM_MAX_UNITS='lots'")


def test_the_unit_precount_equals_the_expanded_units():
    for levels in (1, 2, 4, 6):
        program = compile_spec(nested_templates(levels))
        assert len(program.units) == 2 ** (levels - 1) + 1
    stack = with_block({"type": "stack", "n": 7, "layer": {"type": "lstm", "size": 2}})
    assert len(compile_spec(stack).units) == 7 * 7 + 1  # i, f, o, g, c, ct, h per layer, and y


def test_too_many_connections_stop_the_expansion(tmp_path):
    spec = {"timeloom": 1, "name": "dense", "inputs": {"x": {"size": 1}},
            "units": {f"u{i}": {"size": 1} for i in range(30)},
            "connections": [{"from": [f"u{i}" for i in range(30)], "to": [f"u{i}" for i in range(30)],
                             "delay": 1}],
            "outputs": {"u0": {"loss": "mse"}}}
    refused(invoke("compile", write(tmp_path, spec), env={"TIMELOOM_MAX_UNITS": "100"}),
            "connections, more than the limit of 400")


def test_compile_summary_prints_the_estimate(tmp_path):
    result = invoke("compile", write(tmp_path, adding()))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip().startswith("estimate:")]
    assert len(lines) == 1
    # 4*2 + 4*4 + 4 + 1*4 + 1 = 33 parameters, 132 bytes; T = data.length, B = batch_size
    assert "2 units, 3 connections, 33 parameters (132 B)" in lines[0]
    assert "(T=10, B=8): about " in lines[0] and "of 8.0 GiB allowed (TIMELOOM_MAX_MEMORY)" in lines[0]


# -- pictures and unrolled graphs -----------------------------------------------------------------
def test_an_unrolled_graph_beyond_the_step_limit_is_refused(tmp_path):
    out = tmp_path / "g.png"
    refused(invoke("compile", write(tmp_path, adding()), "--steps", 100_000_000, "-o", out),
            "100,000,000 time steps", "--steps", "TIMELOOM_MAX_STEPS")
    assert not out.exists()


def test_a_picture_with_too_many_nodes_is_refused_with_a_smaller_steps(tmp_path):
    out = tmp_path / "g.svg"
    result = invoke("compile", write(tmp_path, adding()), "--steps", 5000, "-o", out)
    # (x, h, y) x 5000 steps = 15,000 nodes
    refused(result, "15,000 nodes", "too many to draw", "--steps 3333")
    assert not out.exists()


def test_draw_refuses_a_graph_too_large_to_draw():
    import networkx as nx

    from compiler import draw

    g = nx.path_graph(budget.MAX_PICTURE_NODES + 1, create_using=nx.MultiDiGraph)
    with pytest.raises(ValueError, match=f"{budget.MAX_PICTURE_NODES + 1:,} nodes, too many to draw"):
        draw.draw(g, "never.png")


# -- refusals before training -------------------------------------------------------------------
def test_a_batch_beyond_the_memory_limit_is_refused(tmp_path):
    path = write(tmp_path, adding())
    result = invoke("run", path, "--runs-dir", tmp_path / "runs", "--set", "training.batch_size=100000000",
                    "--set", "data.train_size=100000000")
    refused(result, "batch_size=100,000,000", "training.batch_size", "TIMELOOM_MAX_MEMORY")
    assert not (tmp_path / "runs").exists()


def test_float64_is_checked_at_its_own_width(tmp_path):
    spec = adding(train_size=4000)
    spec["training"]["batch_size"] = 4000
    spec["units"]["h"]["size"] = 2000  # T=10, B=4000: 3*2001*10*4000 numbers = 0.9 GiB (float32)
    path = write(tmp_path, spec)
    env = {"TIMELOOM_MAX_MEMORY": "1.5GiB"}
    program = compile_spec(spec)
    est32, est64 = budget.estimate(program), budget.estimate(program, dtype="float64")
    assert est64.step_bytes == 2 * est32.step_bytes < 2 << 30  # every number twice as wide
    assert f"about {budget.human(est32.step_bytes)} of 1.5 GiB" in invoke("compile", path, env=env).output
    result = invoke("run", path, "--dtype", "float64", "--runs-dir", tmp_path / "runs", env=env)
    refused(result, "in float64", f"about {budget.human(est64.step_bytes)}", "TIMELOOM_MAX_MEMORY")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("data,needle", [
    ({"length": 10 ** 8}, "data.length"),
    ({"task": "copy_memory", "lag": 10 ** 9}, "data.lag"),
    ({"task": "mackey_glass", "length": 10 ** 9}, "data.seq_len (or data.length)"),
])
def test_a_sequence_beyond_the_step_limit_is_refused(tmp_path, data, needle):
    spec = adding()
    if data.get("task") == "copy_memory":
        spec["inputs"]["x"]["size"] = spec["units"]["y"]["size"] = 10
        spec["outputs"]["y"] = {"loss": "cross_entropy", "at": "all"}
        spec["data"] = {"task": "copy_memory"}
    elif data.get("task") == "mackey_glass":
        spec["inputs"]["x"]["size"] = 1
        spec["outputs"]["y"]["at"] = "all"
        spec["data"] = {}
    spec["data"].update(data)
    result = invoke("run", write(tmp_path, spec), "--runs-dir", tmp_path / "runs")
    refused(result, "time steps, more than the limit of 1,000,000", needle, "TIMELOOM_MAX_STEPS")


def mackey(**data) -> dict:
    spec = adding()
    spec["inputs"]["x"]["size"] = 1
    spec["outputs"]["y"]["at"] = "all"
    spec["data"] = {"task": "mackey_glass", "length": 400, "seq_len": 20, "discard": 10, **data}
    return spec


def test_the_generated_series_is_checked_before_it_is_generated(tmp_path):
    result = invoke("run", write(tmp_path, mackey(length=10 ** 9)), "--runs-dir", tmp_path / "runs")
    refused(result, "task mackey_glass", "1,000,000,011 time steps", "data.length")


def test_generated_validation_data_is_checked_against_the_memory_limit(tmp_path):
    spec = adding(length=1000, test_size=10 ** 7)  # 4e10 numbers
    result = invoke("run", write(tmp_path, spec), "--runs-dir", tmp_path / "runs")
    refused(result, "task adding: the validation sequences", "data.test_size", "TIMELOOM_MAX_MEMORY")


def test_generate_beyond_the_step_limit_is_refused_before_training(tmp_path):
    result = invoke("run", write(tmp_path, mackey()), "--runs-dir", tmp_path / "runs", "--generate", 10 ** 8)
    refused(result, "--generate has 100,000,000 time steps", "TIMELOOM_MAX_STEPS")
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_limits_parse_sizes():
    assert budget.parse_bytes("8GiB") == 8 << 30
    assert budget.parse_bytes("512MB") == 512 * 10 ** 6
    assert budget.parse_bytes("1e9") == 10 ** 9
    assert budget.parse_bytes("2048") == 2048
    with pytest.raises(ValueError):
        budget.parse_bytes("eight gigs")


def test_a_bad_limit_setting_is_a_clear_error(tmp_path):
    result = invoke("compile", write(tmp_path, adding()), env={"TIMELOOM_MAX_MEMORY": "plenty"})
    refused(result, "TIMELOOM_MAX_MEMORY='plenty'", "8GiB or 512MB")


# -- the estimate against what is really allocated ------------------------------------------------
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_estimated_parameters_equal_the_network_arrays(path):
    from runtime.network import Network

    program = compile_spec(shrink(yaml.safe_load(path.read_text()), 4))
    for dtype, width in (("float32", 4), ("float64", 8)):
        est = budget.estimate(program, dtype=dtype)
        net = Network(program, dtype=dtype, jit=False)
        assert est.parameters == sum(a.size for a in net.params.values())
        assert est.trainable == sum(net.params[n].size for n in net.trainable)
        assert est.parameter_bytes == sum(a.nbytes for a in net.params.values())
        assert est.dtype_bytes == width
        assert est.units == len(program.units)


@pytest.mark.parametrize("name", ["elman", "lstm_peephole", "tcn", "gru", "leaky"])
def test_the_step_estimate_bounds_the_measured_peak(name):
    """The activation estimate is an upper bound of tracemalloc's peak for one loss_and_grads,
    and not a wild one (within 10x)."""
    from runtime.network import Network

    program = compile_spec(shrink(yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text()), 12))
    T, B = 60, 8
    net = Network(program, dtype="float64", jit=False)
    inputs, targets, masks, _ = random_batch(program, T, B, np.random.default_rng(0))
    net.loss_and_grads(inputs, targets, masks=masks or None)  # warm caches
    tracemalloc.start()
    try:
        net.loss_and_grads(inputs, targets, masks=masks or None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    est = budget.estimate_parts(program.inputs, program.units, program.connections, T, B, dtype="float64")
    assert peak <= est.activation_bytes <= 10 * peak, (peak, est.activation_bytes)


def test_the_batch_is_at_most_the_training_set():
    assert budget.batch_size({"task": "adding", "train_size": 100}, {"batch_size": 10 ** 8}) == 100
    assert budget.batch_size({"task": "adding"}, {"batch_size": 10 ** 8}) == 10000  # the task's default
    assert budget.batch_size({"task": "text", "path": "x"}, {"batch_size": 64}) == 64


# -- the bounded report -----------------------------------------------------------------------------
def test_the_report_of_a_large_network_is_sampled_with_a_note():
    from runtime.data import make_task
    from runtime.diagnostics import bounded, report
    from runtime.network import Network

    n = 120
    spec = with_block({"type": "stack", "n": n, "layer": {"type": "rnn", "size": 1}})
    spec["data"] = {"task": "adding", "length": 100, "train_size": 8, "test_size": 8}
    program = compile_spec(spec)
    page, failed = report.build(None, Network(program), make_task(program))
    assert failed == {}
    sections = dict(re.findall(r'<section id="(\w+)"[^>]*>(.*?)</section>', page, re.S))
    assert set(report.SECTIONS) <= set(sections)
    graphs = sections["graphs"]
    k = bounded.MAX_GRAPH_UNITS
    assert f"a sampled view of {k} units" in graphs and f"{n + 1 - k:,} units are left out" in graphs
    assert "Units per block" in graphs and ">b</td>" in graphs and f">{n}</td>" in graphs  # block b: n units
    assert "sampled view" in sections["viewer"]
    grads = sections["gradients"]
    assert f"{n:,} state units" in grads and f"a sample of {bounded.MAX_CURVES}" in grads
    assert "b.l0.h" in grads and f"b.l{n - 1}.h" in grads
    cut = bounded.DIAG_UNIT_STEPS // (n + 1)
    assert f"cut to {cut} steps" in grads
    assert "a sample of 12" in sections["spectrum"]
    assert "more) ..." in sections["summary"]  # unit list shortened


def test_a_small_network_report_has_no_sampling_note():
    from runtime.data import make_task
    from runtime.diagnostics import report
    from runtime.network import Network

    program = compile_spec(adding())
    page, failed = report.build(None, Network(program), make_task(program))
    assert failed == {}
    assert "sampled" not in page and "Large network" not in page


def test_evenly_keeps_the_first_and_the_last():
    from runtime.diagnostics.bounded import evenly

    names = [f"u{i}" for i in range(100)]
    picked = evenly(names, 12)
    assert len(picked) == 12 and picked[0] == "u0" and picked[-1] == "u99"
    assert picked == sorted(picked, key=names.index)
    assert evenly(names[:5], 12) == names[:5]


def test_budget_error_is_a_timeloom_error():
    assert issubclass(budget.BudgetError, TimeloomError)


def test_the_compile_summary_of_a_wide_net_is_cut_with_a_count(tmp_path):
    """100 units (300 parameters, 100 components): each list stops at cli.SUMMARY_ITEMS with the number
    left out, instead of one line per item (a 4,097-unit spec printed 120 KB)."""
    n = 100
    spec = {"timeloom": 1, "name": "wide", "inputs": {"x": {"size": 1}},
            "units": {f"u{i}": {"size": 1} for i in range(n)},
            "connections": [{"from": "x", "to": f"u{i}"} for i in range(n)]
            + [{"from": f"u{i}", "to": f"u{i}", "delay": 1} for i in range(n)],
            "outputs": {"u0": {"loss": "mse"}}}
    path = tmp_path / "wide.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli.app, ["compile", str(path)])
    assert result.exit_code == 0, result.output
    out = result.output
    k = cli.SUMMARY_ITEMS
    assert f"... and {n - k} more units" in out and f"... and {3 * n - k} more parameters" in out
    assert f"... and {n - k} more components" in out
    assert out.count("(1, 1)") == k  # parameter rows shown
    every = CliRunner().invoke(cli.app, ["compile", str(path), "--all"]).output
    assert "more" not in every and every.count("(1, 1)") == 2 * n  # every u->u@1 and x->u row
    assert all(f"u{i}[1]" in every for i in range(n))
