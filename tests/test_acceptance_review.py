"""Cases found by the acceptance review of issues 15 and 16 (typer's runner): exit status, the
message's key words, no traceback, and the files on disk."""
from __future__ import annotations

from typer.testing import CliRunner

import cli
from compiler import budget
from support import elman_yaml


def invoke(*args):
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Aborted" not in result.output, result.output
    return result


def compile_graph(tmp_path, steps, out):
    """`timeloom compile` of a tiny Elman spec unrolled over `steps`, written to `out`."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(elman_yaml())
    return invoke("compile", spec, "--steps", steps, "-o", out)


def test_a_text_graph_that_would_not_fit_the_memory_bound_is_refused_before_it_is_built(tmp_path):
    # 10^6 steps of a 3-unit net: 3e6 nodes and 3e6 edges; writing it as graphml peaks at about
    # 4 KB per node + edge (measured), far over the default 8 GiB, but the old per-node estimate
    # (2 KB per node: 6 GB) let it through into minutes of work and more memory than the bound
    out = tmp_path / "g.graphml"
    res = compile_graph(tmp_path, 1_000_000, out)
    assert res.exit_code == 2, res.output
    for word in ("3,000,000 nodes", "3,000,000 edges", "TIMELOOM_MAX_MEMORY"):
        assert word in res.output, (word, res.output)
    assert not out.exists()


def test_the_graph_estimate_counts_edges():
    # the same nodes with many more edges (an LSTM has about 2 edges per node) need more memory
    few, many = 100_000, 1_000_000
    budget.check_graph(few, 1, "json", edges=few)  # 1 GB: allowed
    try:
        budget.check_graph(few, 1, "json", edges=many * 2)
    except budget.BudgetError as e:
        assert "2,000,000 edges" in str(e)
    else:
        raise AssertionError("2.1e6 nodes + edges (about 10 GB) were not refused")


def test_a_small_text_graph_is_still_written(tmp_path):
    out = tmp_path / "g.json"
    res = compile_graph(tmp_path, 50, out)
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0


def test_an_onnx_node_name_of_thousands_of_characters_imports_as_a_spec_that_loads(tmp_path):
    # `timeloom import` names units after ONNX node names; a 5000-character name used to be written
    # as a YAML key that the loader refuses (plain keys end at 1024 characters): the written spec
    # could not be compiled. Now names are cut to interop.onnx_import.MAX_NAME, and the imported net
    # computes what the exported one does.
    import numpy as np
    import onnx

    from compiler import compile_spec
    from interop import load_params
    from runtime import Network

    spec = tmp_path / "tiny.yaml"
    spec.write_text(elman_yaml())
    assert invoke("export", spec, "-o", tmp_path / "m.onnx").exit_code == 0
    model = onnx.load(tmp_path / "m.onnx")
    for node in model.graph.node:
        node.name = "n" * 5000 + node.name
    onnx.save(model, tmp_path / "long.onnx")
    res = invoke("import", tmp_path / "long.onnx", "-o", tmp_path / "long.yaml")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "long.yaml").read_text()
    assert max(len(line) for line in text.splitlines()) < 1024
    res = invoke("compile", tmp_path / "long.yaml")
    assert res.exit_code == 0, res.output

    x = {"x": np.random.default_rng(0).standard_normal((6, 3, 2))}
    original = Network(compile_spec(spec), dtype="float64", seed=0)
    imported = Network(compile_spec(tmp_path / "long.yaml"), dtype="float64", seed=1)
    load_params(imported, tmp_path / "long.npz")
    np.testing.assert_allclose(imported.forward(x)["y"], original.forward(x)["y"], rtol=1e-5, atol=1e-6)


def test_sweeps_dir_naming_a_file_is_refused_with_a_message(tmp_path):
    # was a NotADirectoryError traceback (exit 1) from mkdir
    spec = tmp_path / "tiny.yaml"
    spec.write_text(elman_yaml())
    (tmp_path / "afile").write_text("keep\n")
    res = invoke("sweep", spec, "--sweeps-dir", tmp_path / "afile", "--grid", "training.lr=0.1", "-q")
    assert res.exit_code == 2, res.output
    for word in ("cannot create the sweep folder", "not a directory", "--sweeps-dir"):
        assert word in res.output.lower(), (word, res.output)
    assert (tmp_path / "afile").read_text() == "keep\n"


def test_a_spec_that_is_a_device_or_a_pipe_is_refused_not_read_forever(tmp_path):
    # `timeloom compile /dev/zero` (or a symlink to it, or a named pipe) used to read until memory ran
    # out or wait forever
    import os

    link = tmp_path / "z.yaml"
    link.symlink_to("/dev/zero")
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path, command in ((link, "compile"), (fifo, "compile"), (link, "run"), (fifo, "export")):
        args = [command, path] + (["-o", tmp_path / "m.onnx"] if command == "export" else [])
        res = invoke(*args)
        assert res.exit_code == 2, (command, path, res.output)
        assert "not a regular file" in res.output, (command, path, res.output)
    assert not (tmp_path / "m.onnx").exists()


def test_a_spec_file_beyond_the_size_bound_is_refused_with_its_size(tmp_path, monkeypatch):
    from compiler import loader

    monkeypatch.setattr(loader, "MAX_SPEC_BYTES", 1000)
    spec = tmp_path / "big.yaml"
    spec.write_text(elman_yaml() + "# " + "x" * 2000 + "\n")
    res = invoke("compile", spec)
    assert res.exit_code == 2, res.output
    assert f"{spec.stat().st_size:,} bytes" in res.output and "give a yaml spec file" in res.output.lower()
    spec.write_text(elman_yaml())
    assert invoke("compile", spec).exit_code == 0


def test_importing_a_device_is_refused_not_read_forever(tmp_path):
    # `timeloom import model.onnx` where model.onnx links to /dev/zero used to read until killed
    link = tmp_path / "model.onnx"
    link.symlink_to("/dev/zero")
    res = invoke("import", link, "-o", tmp_path / "m.yaml")
    assert res.exit_code == 2, res.output
    assert "not a regular file" in res.output and "onnx" in res.output
    assert not (tmp_path / "m.yaml").exists() and not (tmp_path / "m.npz").exists()


def test_lengths_that_are_nan_or_fractions_are_refused(tmp_path):
    # data.lengths of NaN passed the range check (NaN < 1 is False) and trained on whatever NaN
    # became as an integer; 2.5 was silently cut to 2
    import numpy as np

    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((8, 6, 2)))
    np.save(tmp_path / "y.npy", rng.random((8, 6, 1)))
    spec = tmp_path / "f.yaml"
    spec.write_text(elman_yaml("fl", h=3, at="all", training="{epochs: 1, batch_size: 4}",
                               data="{task: files, files: {x: x.npy, y: y.npy}, lengths: L.npy}"))
    for bad, words in (([np.nan] * 8, ("nan", "not all whole numbers")), ([2.5] * 8, ("2.5", "whole numbers")),
                       ([[1, 2]] * 8, ("shape (8, 2)",))):
        np.save(tmp_path / "L.npy", np.array(bad))
        res = invoke("run", spec, "-q", "--no-report", "--runs-dir", tmp_path / "runs")
        assert res.exit_code == 2, res.output
        assert "data.lengths must be 8 integers in [1, 6]" in res.output, res.output
        for w in words:
            assert w in res.output, (w, res.output)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    np.save(tmp_path / "L.npy", np.array([3.0] * 8))  # whole numbers stored as floats are fine
    assert invoke("run", spec, "-q", "--no-report", "--runs-dir", tmp_path / "runs").exit_code == 0
