"""Hostile and careless input through the CLI (typer's runner): names that lead out of the folder
the user gave, a sweep over a folder it did not create or with another plan under the same name,
devices and damaged files as data, tampered checkpoints, outputs that cannot be written, NaN and
infinity in a spec, complex numbers in data and parameters.

Every case asserts the exit status, the message's key words, that no traceback (or click's bare
"Aborted!") reached the user, and the files on disk before and after: nothing is written outside
the folders the user gave, and the user's existing files are unchanged.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from compiler.errors import TimeloomError
from runtime.train import rundir
from support import elman_yaml

TINY = elman_yaml(h=3, data="{task: adding, length: 5, test_size: 16}",
                  training="{optimizer: adam, lr: 0.01, epochs: 1, steps_per_epoch: 2, batch_size: 4, seed: 0}")

FILES = elman_yaml("fl", h=3, at="all", data="{task: files, files: {x: x.npy, y: y.npz}}",
                   training="{epochs: 1, batch_size: 4}")

TEXT = textwrap.dedent("""\
    timeloom: 1
    name: txt
    inputs:
      x: {size: 27}
    units:
      h: {size: 3, activation: tanh}
      y: {size: 27, activation: softmax}
    connections:
      - {from: x, to: h}
      - {from: h, to: h, delay: 1}
      - {from: h, to: y}
    outputs:
      y: {loss: cross_entropy, at: all}
    data: {task: text, path: PATH, seq_len: 10}
    training: {epochs: 1, batch_size: 4}
""")


def invoke(*args):
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Aborted" not in result.output, result.output
    return result


def refused(result, *words):
    """Exit 2 with a message holding every word (case-insensitive)."""
    assert result.exit_code == 2, result.output
    text = result.output.lower()
    for w in words:
        assert w.lower() in text, (w, result.output)
    return result


def snapshot(root: Path) -> dict:
    """relative path -> sha256 of every file (and '/' for every folder) under root."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "/" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def tiny(tmp_path) -> Path:
    (tmp_path / "work").mkdir()
    path = tmp_path / "work" / "tiny.yaml"
    path.write_text(TINY)
    return path


# -- 1. paths: names are plain names, every folder resolves inside the one the user gave ------------------
@pytest.mark.parametrize("how", ["--name ../../escaped", "--name ABS", "spec ../escaped", "spec ABS"])
def test_a_run_name_cannot_lead_out_of_runs_dir(tiny, tmp_path, how):
    kind, name = how.split()
    name = str(tmp_path / "abs_target") if name == "ABS" else name
    runs = tmp_path / "work" / "runs"
    args = ["run", tiny, "--runs-dir", runs, "-q", "--no-report"]
    if kind == "--name":
        args += ["--name", name]
    else:
        tiny.write_text(TINY.replace("name: tiny", f"name: {json.dumps(name)}"))
    before = snapshot(tmp_path)
    res = refused(invoke(*args), "not a plain name", "no '/'")
    assert ("name:" in res.output) if kind == "spec" else ("--name" in res.output)
    assert snapshot(tmp_path) == before  # nothing written anywhere, not even runs/


def test_inside_refuses_a_link_out_of_the_base(tmp_path):
    base, out = tmp_path / "runs", tmp_path / "elsewhere"
    base.mkdir()
    out.mkdir()
    (base / "link").symlink_to(out, target_is_directory=True)
    with pytest.raises(TimeloomError, match="outside"):
        rundir.inside(base, "link", "sweep name")
    assert rundir.inside(base, "ok.v2 run", "run name") == base / "ok.v2 run"
    for bad in ("..", ".", "a/b", "a\\b", "a\nb", "", "x" * 101):
        with pytest.raises(TimeloomError, match="not a plain name"):
            rundir.inside(base, bad, "run name")


def test_a_sweep_writes_only_into_folders_it_created(tiny, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "results.csv").write_text("my own results\n")
    (victim / "notes.txt").write_text("keep me\n")
    before = snapshot(tmp_path)
    sweeps = tmp_path / "work" / "sweeps"
    for name in ("../../victim", str(victim)):
        res = invoke("sweep", tiny, "--grid", "training.lr=1e-3,1e-2", "--sweeps-dir", sweeps, "--name", name, "-q")
        refused(res, "sweep name", "not a plain name")
    # a plain name, but an existing folder that no sweep created
    res = invoke("sweep", tiny, "--grid", "training.lr=1e-3,1e-2", "--sweeps-dir", tmp_path, "--name", "victim", "-q")
    refused(res, "was not created by `timeloom sweep`", ".timeloom-sweep", "--name")
    assert snapshot(tmp_path) == before


def _local_trials(monkeypatch):
    """Run a sweep's trials one after another in this process (no Ray): the driver's contract."""
    from runtime.sweep import driver
    from runtime.sweep.trial import run_trial

    def run_trials(store, spec_path, data, trials, settings, progress, skipped=0, metric=None):
        records = []
        for t in trials:
            rec = run_trial({"id": t.id, "spec": spec_path, "data": data, "items": list(t.items),
                             "dir": str(store.trial_dir(t.id)), "seed": t.seed})
            store.put(rec)
            records.append(rec)
        return records

    monkeypatch.setattr(driver, "run_trials", run_trials)


def test_a_changed_plan_under_an_existing_sweep_name_is_refused(tiny, tmp_path, monkeypatch):
    _local_trials(monkeypatch)
    sweeps = tmp_path / "work" / "sweeps"
    first = ["sweep", tiny, "--grid", "training.lr=1e-3,1e-2", "--sweeps-dir", sweeps, "--name", "s", "-q"]
    res = invoke(*first)
    assert res.exit_code == 0, res.output
    folder = sweeps / "s"
    assert (folder / ".timeloom-sweep").is_file() and "ran 2 now, 0 done before" in res.output
    # the same plan again: its finished trials are reused, nothing runs
    before = {p: p.stat().st_mtime_ns for p in (folder / "trials").rglob("result.json")}
    res = invoke(*first)
    assert res.exit_code == 0 and "ran 0 now, 2 done before" in res.output, res.output
    assert {p: p.stat().st_mtime_ns for p in (folder / "trials").rglob("result.json")} == before
    # another grid under the same name: refused, the first sweep's files unchanged
    kept = snapshot(folder)
    other = ["sweep", tiny, "--grid", "training.lr=1e-3,3e-2", "--sweeps-dir", sweeps, "--name", "s", "-q"]
    res = refused(invoke(*other), "holds another sweep", "--grid training.lr=0.001,0.01", "1 of them the same",
                  "--name s-2", "--resume")
    assert snapshot(folder) == kept
    assert len((folder / "results.csv").read_text().splitlines()) == 3  # header + the first sweep's 2 trials
    res = invoke(*other[:-3], "--name", "s-2", "-q")  # the suggested fix works
    assert res.exit_code == 0 and "ran 1 now" not in res.output and "ran 2 now" in res.output, res.output


# -- 2. data files: regular files only, of bounded size ---------------------------------------------------
def test_a_device_or_an_oversized_file_is_not_read(tmp_path):
    spec = tmp_path / "text.yaml"
    spec.write_text(TEXT.replace("PATH", "/dev/zero"))
    before = snapshot(tmp_path)
    res = refused(invoke("run", spec, "--runs-dir", tmp_path / "runs", "-q"), "data.path", "/dev/zero",
                  "not a regular file")
    assert snapshot(tmp_path) == before
    big = tmp_path / "big.txt"
    big.write_text("abc def " * 40_000)  # 320,000 bytes
    spec.write_text(TEXT.replace("PATH", "big.txt"))
    before = snapshot(tmp_path)
    res = refused(invoke("run", spec, "--runs-dir", tmp_path / "runs", "-q", "--set", "data.max_mb=0.1"),
                  "data.path", "0.3 MiB", "more than data.max_mb = 0.1 MiB", "raise data.max_mb")
    assert snapshot(tmp_path) == before
    res = refused(invoke("run", spec, "--set", "data.max_mb=-1", "--runs-dir", tmp_path / "runs", "-q"),
                  "data/max_mb must be > 0")


# -- 5. damaged files and tampered checkpoints: a message, not a traceback -------------------------------
@pytest.fixture
def files_spec(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.random((8, 5, 2)))
    np.savez(tmp_path / "y.npz", y=rng.random((8, 5, 1)))
    spec = tmp_path / "files.yaml"
    spec.write_text(FILES)
    return spec


@pytest.mark.parametrize("damage,words", [
    ("y.npz:cut", ("data.files.y", "not a readable .npz archive")),
    ("y.npz:empty", ("data.files.y", "is empty (0 bytes)")),
    ("x.npy:empty", ("data.files.x", "is empty (0 bytes)")),
    ("x.npy:cut", ("data.files.x", "cannot read", "damaged or cut")),
    ("x.npy:complex", ("data.files.x", "complex numbers", "real and imaginary parts")),
    ("y.npz:text", ("data.files.y", "<U1 values, not numbers")),
])
def test_damaged_or_complex_data_files(files_spec, tmp_path, damage, words):
    name, how = damage.split(":")
    path = tmp_path / name
    if how == "cut":
        path.write_bytes(path.read_bytes()[:60])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "complex":
        np.save(path, np.random.default_rng(1).random((8, 5, 2)) * (1 + 1j))
    else:
        np.savez(path, y=np.full((8, 5, 1), "a"))
    before = snapshot(tmp_path)
    refused(invoke("run", files_spec, "--runs-dir", tmp_path / "runs", "-q"), *words)
    assert snapshot(tmp_path) == before


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished run of TINY (adam: optimizer state m and v for every parameter)."""
    root = tmp_path_factory.mktemp("trained")
    spec = root / "tiny.yaml"
    spec.write_text(TINY)
    res = invoke("run", spec, "--runs-dir", root / "runs", "-q", "--no-report")
    assert res.exit_code == 0, res.output
    return next((root / "runs").glob("tiny-*"))


def _tamper(trained: Path, tmp_path: Path, change) -> tuple[Path, Path]:
    """A copy of the run whose newest checkpoint is rewritten by change(arrays, meta) (which edits
    both in place; meta["replace by"] = X: the meta entry becomes X)."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.npz"))[-1]
    with np.load(ckpt) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    change(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta.pop("replace by", meta)))
    np.savez(ckpt, **arrays)
    return run, ckpt


def _first_param(arrays):
    return next(k for k in arrays if k.startswith("param/"))


TAMPERED = {
    "meta is a list": (lambda a, m: m.__setitem__("replace by", [1, 2]), "not a JSON object", True),
    "rng of another generator": (lambda a, m: m.__setitem__("rng", {"bit_generator": "MT19937", "state": 1}),
                                 "meta 'rng' is not the state of a pcg64", False),
    "rng not a mapping": (lambda a, m: m.__setitem__("rng", "x"), "meta 'rng' is not the state of a pcg64", False),
    "epoch is text": (lambda a, m: m.__setitem__("epoch", "x"), "meta 'epoch' is 'x'", False),
    "no optimizer state": (lambda a, m: [a.pop(k) for k in list(a) if k.startswith("opt/")],
                           "has no optimizer state", False),
    "adam's m missing": (lambda a, m: [a.pop(k) for k in list(a) if k.startswith("opt/m/")],
                         "optimizer state 'm/", False),
    "optimizer buffer of another shape": (lambda a, m: a.__setitem__("opt/v/" + _first_param(a)[6:], np.zeros(7)),
                                          "does not fit parameter", False),
    "extra parameter": (lambda a, m: a.__setitem__("param/intruder", np.zeros(3)), "parameter 'intruder'", True),
    "integer parameter": (lambda a, m: a.__setitem__(_first_param(a), a[_first_param(a)].astype(np.int64)),
                          "holds int64 values", True),
    "complex parameter": (lambda a, m: a.__setitem__(_first_param(a), a[_first_param(a)] * (1 + 1j)),
                          "holds complex64 values", True),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_checkpoints_are_refused(trained, tmp_path, case):
    change, words, also_evaluate = TAMPERED[case]
    run, ckpt = _tamper(trained, tmp_path, change)
    before = snapshot(tmp_path)
    refused(invoke("run", "--resume", run, "-q", "--no-report"), str(ckpt.name), words)
    assert snapshot(tmp_path) == before  # the refused resume changed nothing in the run
    if also_evaluate:  # what does not concern the parameters is only read by a resume
        refused(invoke("run", run / "spec.yaml", "--checkpoint", ckpt, "--evaluate", "--runs-dir",
                       tmp_path / "runs"), words)
        assert snapshot(tmp_path) == before


def test_an_untouched_checkpoint_still_resumes_and_evaluates(trained, tmp_path):
    """The control of the cases above: the same copy without a change is accepted."""
    run, ckpt = _tamper(trained, tmp_path, lambda a, m: None)
    res = invoke("run", run / "spec.yaml", "--checkpoint", ckpt, "--evaluate", "--runs-dir", tmp_path / "runs")
    assert res.exit_code == 0, res.output
    res = invoke("run", "--resume", run, "--epochs", "2", "-q", "--no-report")
    assert res.exit_code == 0, res.output


# -- 5. outputs that cannot be written --------------------------------------------------------------------
def test_compile_output_a_folder_or_an_unwritable_path(tiny, tmp_path):
    folder = tmp_path / "graphs"
    folder.mkdir()
    (folder / "old.json").write_text("{}")
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("not a folder")
    before = snapshot(tmp_path)
    refused(invoke("compile", tiny, "-o", f"{folder}/"), "is a folder", "give a file name", f"{folder}/tiny.json")
    refused(invoke("compile", tiny, "-o", blocker / "g.png"), "cannot write", "not a directory")
    refused(invoke("compile", tiny, "-o", tmp_path / "missing" / "g.json"), "cannot write", "no such file")
    refused(invoke("compile", tiny, "-o", f"{tmp_path / 'newdir'}/"), "names a folder", f"{tmp_path}/newdir/tiny.json")
    assert snapshot(tmp_path) == before  # (no file called newdir either)


# -- 6. no NaN or infinity anywhere in a spec -------------------------------------------------------------
@pytest.mark.parametrize("item", [
    "training.lr=.nan", "training.lr=.inf", "training.clip_norm=.nan", "training.validation_split=.nan",
    "training.lr_schedule={type: step, step_size: 1, gamma: .nan}",
    "training.early_stopping={patience: 2, min_delta: .nan}", "training.momentum=.nan",
    "training.weight_decay=.inf", "units.h.alpha=-.inf", "data.noise=.nan",
])
def test_non_finite_numbers_are_refused(tiny, tmp_path, item):
    before = snapshot(tmp_path)
    res = refused(invoke("run", tiny, "--set", item, "--runs-dir", tmp_path / "runs", "-q"),
                  "must be a finite number", "no value in a spec may be nan or infinite")
    assert item.split("=")[0].split(".")[-1] in res.output or "gamma" in res.output or "min_delta" in res.output
    assert snapshot(tmp_path) == before


def test_init_ranges_must_be_finite_and_drawable(tiny, tmp_path):
    before = snapshot(tmp_path)
    tiny.write_text(TINY.replace("- {from: x, to: h}", "- {from: x, to: h, init: {uniform: [.nan, 1]}}"))
    refused(invoke("compile", tiny), "connections/0/init/uniform/0 must be a finite number, not .nan")
    tiny.write_text(TINY.replace("- {from: x, to: h}", "- {from: x, to: h, init: {uniform: [-1.0e+308, 1.0e+308]}}"))
    refused(invoke("run", tiny, "--runs-dir", tmp_path / "runs", "-q"), "hi - lo overflows")
    assert snapshot(tmp_path) == {**before, "work/tiny.yaml": snapshot(tmp_path)["work/tiny.yaml"]}


def test_resuming_a_sweep_whose_spec_changed_is_refused(tiny, tmp_path, monkeypatch):
    """--resume took the changed spec, re-ran every trial into the old sweep and overwrote its digest."""
    _local_trials(monkeypatch)
    sweeps = tmp_path / "work" / "sweeps"
    res = invoke("sweep", tiny, "--grid", "training.lr=1e-3,1e-2", "--sweeps-dir", sweeps, "--name", "s", "-q")
    assert res.exit_code == 0, res.output
    folder = sweeps / "s"
    kept = snapshot(folder)
    tiny.write_text(tiny.read_text().replace("lr: 0.01", "lr: 0.02"))
    refused(invoke("sweep", "--resume", folder, "-q"), "is not the spec the sweep", "changed", "--name")
    assert snapshot(folder) == kept
    info = json.loads((folder / "sweep.json").read_text())  # a sweep written before the digest was stored
    del info["spec_digest"]
    (folder / "sweep.json").write_text(json.dumps(info))
    refused(invoke("sweep", "--resume", folder, "-q"), "is not the spec the sweep")
    tiny.write_text(tiny.read_text().replace("lr: 0.02", "lr: 0.01"))  # restored: it continues
    res = invoke("sweep", "--resume", folder, "-q")
    assert res.exit_code == 0 and "ran 0 now, 2 done before" in res.output, res.output


@pytest.mark.parametrize("text,where,words", [
    ("timeloom: 1\nname: \"a\x01\"\n", "2:9", "the control character U+0001"),
    ("timeloom: 1\nname: a\x00b\n", "2:8", "the control character U+0000"),
    ("timeloom: 1\ninputs: {x: {size: " + "9" * 5000 + "}}\n", "1:1", "a number in the spec cannot be read"),
])
def test_unreadable_characters_and_numbers_are_spec_errors(tmp_path, text, where, words):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    refused(invoke("compile", path), f"s.yaml:{where}: error: ", words)


def test_a_unicode_digit_in_a_set_key_is_a_key_not_an_index():
    res = invoke("compile", Path(__file__).resolve().parents[1] / "specs" / "elman.yaml", "--set", "units.h.\u00b2=1")
    refused(res, "--set units.h.\u00b2=1: error: unknown key '\u00b2'")
