"""`timeloom compile` (summary, graph files) and `timeloom run` from the command line."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from typer.testing import CliRunner

import cli

ROOT = Path(__file__).resolve().parents[1]
ELMAN = ROOT / "specs" / "elman.yaml"


def invoke(*args):
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "compile" in result.output and "run" in result.output


def test_bare_timeloom_prints_the_help_and_exits_0():
    result = invoke()
    assert result.exit_code == 0
    assert "Usage" in result.output and "compile" in result.output and "run" in result.output


def test_version_is_the_installed_package_version():
    from importlib.metadata import version
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"timeloom {version('timeloom')}"


def test_compile_prints_the_summary():
    result = invoke("compile", ELMAN)
    assert result.exit_code == 0, result.output
    out = result.output
    # x->h 64x27 + h->h@1 64x64 + h->y 27x64 + h.bias 64 + y.bias 27
    #   = 1728 + 4096 + 1728 + 64 + 27 = 7643
    assert "elman: 2 units, 7,643 trainable parameters" in out
    assert "inputs:  x[27]" in out and "units:   h[64], y[27]" in out
    assert "outputs: y (cross_entropy, at all)" in out
    for name, shape in [("x->h", "(64, 27)"), ("h->h@1", "(64, 64)"), ("h->y", "(27, 64)"), ("y.bias", "(27,)")]:
        assert any(line.split()[:1] == [name] and shape in line for line in out.splitlines()), name
    assert "recurrent components: 1" in out
    assert "[forward, delays 1] h" in out


def test_summary_shows_both_scan_directions_and_fixed_weights():
    out = invoke("compile", ROOT / "specs" / "bidirectional_lstm.yaml").output
    assert "recurrent components: 2" in out
    assert "[forward, delays 1] " in out and "[backward, delays -1] " in out
    esn = invoke("compile", ROOT / "specs" / "esn.yaml").output
    assert " fixed" in esn.splitlines()[0] and "(fixed)" in esn


def test_summary_shows_the_delays_of_a_time_delayed_net():
    out = invoke("compile", ROOT / "specs" / "delayed_rnn.yaml").output
    assert "[forward, delays 1, 5, 10] h" in out
    assert "h->h@10" in out


@pytest.mark.parametrize("fmt", ["json", "dot", "graphml"])
def test_compile_writes_text_graph_files(tmp_path, fmt):
    out = tmp_path / f"elman.{fmt}"
    result = invoke("compile", ELMAN, "--steps", 3, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    text = out.read_text()
    # unrolled over 3 steps: 3 inputs + 6 units + 1 initial state = 10 nodes, 9 edges
    if fmt == "json":
        data = json.loads(text)
        assert len(data["nodes"]) == 10 and len(data["edges"]) == 9
        assert {"x@0", "h@2", "h@-1"} <= {n["id"] for n in data["nodes"]}
    elif fmt == "graphml":
        g = nx.read_graphml(out)
        assert (g.number_of_nodes(), g.number_of_edges()) == (10, 9)
    else:
        assert text.lstrip().startswith("digraph") and '"h@-1"' in text


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<svg")])
def test_compile_draws_pictures(tmp_path, fmt, magic):
    out = tmp_path / f"elman.{fmt}"
    result = invoke("compile", ELMAN, "--steps", 3, "-o", out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert magic in data[:400] and len(data) > 1000


def test_folded_graph_and_explicit_format(tmp_path):
    out = tmp_path / "graph.txt"
    result = invoke("compile", ELMAN, "--folded", "--format", "json", "-o", out)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert sorted(n["id"] for n in data["nodes"]) == ["h", "x", "y"]


def test_unknown_graph_format_exits_2(tmp_path):
    result = invoke("compile", ELMAN, "-o", tmp_path / "graph.xyz")
    assert result.exit_code == 2
    assert "unknown graph format 'xyz'" in result.output and "json" in result.output


def test_compile_applies_set_overrides_like_run():
    plain = invoke("compile", ELMAN)
    wider = invoke("compile", ELMAN, "--set", "units.h.size=7")
    assert plain.exit_code == 0 and wider.exit_code == 0, wider.output
    assert re.search(r"^    h->h@1 +\(7, 7\) +49$", wider.output, re.M)
    assert not re.search(r"\(7, 7\)", plain.output)
    bad = invoke("compile", ELMAN, "--set", "units.hh.size=7")
    assert bad.exit_code == 2 and "--set units.hh.size=7" in bad.output and "there is no unit 'hh'" in bad.output


def test_missing_file_exits_2_with_a_clear_message(tmp_path):
    missing = tmp_path / "nope.yaml"
    result = invoke("compile", missing)
    assert result.exit_code == 2
    assert f"{missing}: error: file not found" in result.output  # no line:col: the whole file
    result = invoke("compile", tmp_path)
    assert result.exit_code == 2 and "is a directory" in result.output
    result = invoke("run", missing)
    assert result.exit_code == 2 and "file not found" in result.output


def test_run_prints_a_loss(tmp_path):
    """Three training steps of elman on its text task (a smoke test; tests/test_run_cli.py has the rest)."""
    result = invoke("run", ELMAN, "--epochs", 1, "--runs-dir", tmp_path, "--quiet",
                    "--set", "data.seq_len=20", "--set", "data.validation_chars=2000",
                    "--set", "training.batch_size=4", "--set", "training.steps_per_epoch=3")
    assert result.exit_code == 0, result.output
    loss = re.search(r"train loss (\d+\.\d+)", result.output)
    assert loss, result.output
    assert 0 < float(loss.group(1)) < 10  # about ln 27 = 3.3 nats after 3 steps


def test_console_script_in_a_real_process(tmp_path):
    exe = shutil.which("timeloom")
    command = [exe] if exe else [sys.executable, "-m", "cli"]
    out = tmp_path / "g.json"
    proc = subprocess.run(command + ["compile", str(ELMAN), "--steps", "2", "-o", str(out)],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "7,643 trainable parameters" in proc.stdout and proc.stderr == ""
    assert len(json.loads(out.read_text())["nodes"]) == 2 + 4 + 1  # x, h, y over 2 steps + h@-1


def test_compile_warns_when_the_data_task_does_not_fit_the_network(tmp_path):
    adding = ROOT / "specs" / "adding_elman.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text(adding.read_text().replace("x: {size: 2}", "x: {size: 3}"))
    res = invoke("compile", bad)
    assert res.exit_code == 0, res.output  # a valid network; `run` refuses the data
    assert "warning: data: input 'x' has size 3 but task adding produces 2 features" in res.output
    assert "set inputs.x.size: 2" in res.output
    assert "warning: data" not in invoke("compile", adding).output
