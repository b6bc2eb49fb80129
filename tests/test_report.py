"""report.html: written by every `timeloom run`, every section present, self-contained, and
rendered by a real headless browser (Debian's chromium) without console errors.

The browser tests skip when no Chromium is installed (.ci/run installs it).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from support import cli_in

from runtime.diagnostics import browser, viewer
from runtime.diagnostics.report import SECTIONS

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "blocks.mem.size=4", "--set", "data.length=12", "--set", "data.test_size=16",
        "--set", "training.steps_per_epoch=3", "--set", "training.batch_size=4", "--epochs", "1"]
needs_chromium = pytest.mark.skipif(browser.find() is None,
                                    reason="no headless Chromium (Debian: apt-get install chromium)")


def invoke(args, cwd: Path):
    return cli_in(cwd, args)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 1-epoch run of a tiny LSTM on the adding problem: (run directory, the command's output)."""
    folder = tmp_path_factory.mktemp("report")
    res = invoke(["run", ROOT / "specs" / "adding_lstm.yaml", *TINY, "--runs-dir", "runs", "--name", "tiny", "-q"],
                 folder)
    assert res.exit_code == 0, res.output
    (rundir,) = (folder / "runs").iterdir()
    return rundir, res.output


def test_every_run_writes_a_report_with_every_section(run):
    rundir, output = run
    text = (rundir / "report.html").read_text()
    assert "report.html" in output  # the run's summary lists it
    for key in SECTIONS:
        assert f'<section id="{key}"' in text, key
    assert "could not compute" not in text
    assert "task: adding" in text and "mem.h->mem.f@1" in text  # the spec and the spectrum table
    assert "lag where &lt; 1e-6 of start" in text and "solved_fraction" in text  # diagnostics, evaluation


def test_report_is_self_contained(run):
    text = (run[0] / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', text)
    assert sources and all(s.startswith("data:") for s in sources), [s[:40] for s in sources if not s.startswith("data:")]
    assert len(re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', text)) >= 6
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert "<script src" not in text and 'rel="stylesheet"' not in text


def test_inspect_report_rewrites_it(run, tmp_path):
    rundir, _ = run
    res = invoke(["inspect", "report", rundir, "-o", tmp_path / "again.html"], tmp_path)
    assert res.exit_code == 0, res.output
    assert all(f'<section id="{k}"' in (tmp_path / "again.html").read_text() for k in SECTIONS)


def test_inspect_takes_a_run_directory_for_spec_and_checkpoint(run, tmp_path):
    rundir, _ = run
    res = invoke(["inspect", "gradients", rundir, "-o", tmp_path / "g.png"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "tiny  initialisation" in res.output and "tiny  after training" in res.output
    res = invoke(["inspect", "spectrum", rundir, "-o", tmp_path / "s.png"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "mem.c->mem.c@1  spectral radius 1 " in res.output


def test_inspect_graph_takes_a_run_directory_too(run, tmp_path):
    import shutil
    res = invoke(["inspect", "graph", run[0], "--steps", "3", "-o", tmp_path / "v.html"], tmp_path)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "v.html").is_file()
    bare = tmp_path / "bare"  # a run folder without checkpoints: the graph needs only its spec
    shutil.copytree(run[0], bare, ignore=shutil.ignore_patterns("checkpoints"))
    res = invoke(["inspect", "graph", bare, "--steps", "3", "-o", tmp_path / "w.html"], tmp_path)
    assert res.exit_code == 0, res.output


def test_the_command_the_report_names_gives_its_gradient_figures(run, tmp_path):
    """The report's own batch and steps are in the command it names: running that command gives
    the same ||dL/dh_T|| (with the default --batch 16 it did not)."""
    rundir, _ = run
    text = (rundir / "report.html").read_text()
    batch, steps = re.search(r"inspect gradients SPEC --checkpoint RUNDIR --batch (\d+) --steps (\d+)", text).groups()
    res = invoke(["inspect", "gradients", rundir, "--batch", batch, "--steps", steps, "-o", tmp_path / "g.png"],
                 tmp_path)
    assert res.exit_code == 0, res.output
    norms = re.findall(r"\|\|dL/dh_T\|\| ([0-9.e+-]+)", res.output)
    cells = re.findall(r'<td class="num">([0-9.e+-]+)</td>', text[text.index("lag where &lt; 1e-6"):])
    assert norms and all(any(np.isclose(float(n), float(c), rtol=5e-3) for c in cells) for n in norms), (norms, cells)


def test_a_resumed_runs_report_names_the_resume_and_its_overrides(tmp_path):
    res = invoke(["run", ROOT / "specs" / "adding_lstm.yaml", *TINY, "--runs-dir", "runs", "--name", "r", "-q"], tmp_path)
    assert res.exit_code == 0, res.output
    (rundir,) = (tmp_path / "runs").iterdir()
    res = invoke(["run", "--resume", rundir, "--epochs", "2", "-q"], tmp_path)
    assert res.exit_code == 0, res.output
    text = (rundir / "report.html").read_text()
    assert "overrides (at the start)" in text and "with training.epochs=2</td>" in text
    res = invoke(["run", "--resume", rundir, "--epochs", "1", "-q"], tmp_path)
    assert res.exit_code == 0 and "nothing more to train (give --epochs N with N > 2" in res.output, res.output


@needs_chromium
def test_report_opens_in_headless_chromium_without_console_errors(run, tmp_path):
    page = browser.open_page(run[0] / "report.html", screenshot=tmp_path / "report.png", size=(1400, 2400))
    assert page.console_errors == []
    assert re.search(r'data-ready="\d+ nodes, \d+ edges"', page.dom), "the graph viewer's script did not run"
    from PIL import Image

    shot = np.asarray(Image.open(page.screenshot).convert("L"), dtype=float)
    assert shot.shape == (2400, 1400) and shot.std() > 20  # not a blank page


@needs_chromium
def test_the_console_check_catches_a_script_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>")
    errors = browser.open_page(bad).console_errors
    assert errors and "notDefined" in errors[0]


@needs_chromium
def test_viewer_hover_shows_unit_time_parameter_delay_and_gate(tmp_path):
    from compiler import compile_spec

    g = compile_spec(ROOT / "specs" / "adding_lstm.yaml").unroll(4)
    data = viewer.graph_data(g)
    i = next(k for k, n in enumerate(data["nodes"]) if data["rows"][n[0]] == "mem.c" and n[1] == 2)
    hover = (f"<script>var b = document.getElementById('graph-viewer'), p = b.locate({i});"
             "b.querySelector('canvas').dispatchEvent(new MouseEvent('mousemove', "
             "{clientX: p[0], clientY: p[1], bubbles: true}));</script></body>")
    page_file = tmp_path / "hover.html"
    page_file.write_text(viewer.page(g, "hover").replace("</body>", hover))
    page = browser.open_page(page_file)
    assert page.console_errors == []
    tip = re.search(r'<div class="tip"[^>]*display: block[^>]*>(.*?)</div>', page.dom).group(1)
    assert "<b>mem.c</b>  t=2" in tip
    assert "mem.c@1: mem.c-&gt;mem.c@1  (delay 1, gated by mem.f)" in tip
    assert "mem.f@2: gate of mem.c-&gt;mem.c@1" in tip


def test_inspect_graph_bounds_its_steps_and_its_output_path(run, tmp_path):
    res = invoke(["inspect", "graph", run[0], "--steps", "100000000", "-o", tmp_path / "v.html"], tmp_path)
    assert res.exit_code == 2 and "100,000,000 time steps, more than the limit" in res.output, res.output
    for bad in (tmp_path / "missing" / "v.html", tmp_path):
        res = invoke(["inspect", "graph", run[0], "--steps", "2", "-o", bad], tmp_path)
        assert res.exit_code == 2 and f"cannot write {bad}" in res.output and "Traceback" not in res.output


def test_a_run_folders_spec_is_read_as_a_spec_file(run, tmp_path):
    """A hand-edited spec.yaml with an alias bomb or a duplicate key: the loader's errors (it was read
    with plain yaml.safe_load: a hang or a RecursionError)."""
    import shutil
    for text, words in (("a: &a [*a]\n", "alias bomb"), ("timeloom: 1\nname: x\nname: y\n", "duplicate key 'name'")):
        copy = tmp_path / f"copy{len(text)}"
        shutil.copytree(run[0], copy)
        (copy / "spec.yaml").write_text(text)
        res = invoke(["inspect", "graph", copy, "-o", tmp_path / "v.html"], tmp_path)
        assert res.exit_code == 2 and words in res.output and "spec.yaml:" in res.output, res.output
