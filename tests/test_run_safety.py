"""Runs that must not be lost or poisoned: a failed resume leaves the run as it was, one process per
run directory (a lock naming the PID), temporary files of killed processes are removed, SIGTERM
saves like Ctrl-C (exit 143), NaN checkpoints are refused by name, an overflowing loss names its
output and the largest parameter, a run ending far above the task's baseline warns.

Real processes (kill -9, SIGTERM) run the stand-in task of test_run_cli through its driver script.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import cli_in, elman_yaml, final_params, only_run
from test_run_cli import ARGS, DATA, driver, start, tiny, uninterrupted, wait_for, write_spec  # noqa: F401

from compiler.errors import TimeloomError
from runtime.train import checkpoint, rundir
from runtime.train.session import FAR_FROM_BASELINE, far_from_baseline

# the real adding task, plain SGD: at lr 1e6 the weights blow up and the mse overflows within 2 epochs
ADDING = elman_yaml("add", h=8, data="{task: adding, length: 10}",
                    training="{optimizer: sgd, lr: 0.01, epochs: 1, steps_per_epoch: 5, batch_size: 8, seed: 0}")


def run(args, cwd):
    return cli_in(cwd, ["run", *map(str, args)])


def snapshot(folder: Path) -> dict:
    """Every file under a run directory (but the lock) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != rundir.LOCK}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# -- 7: a failed resume with --set leaves the run as it was -------------------------------------------
def test_failed_resume_with_overrides_leaves_the_run_resumable(tmp_path):
    spec = tmp_path / "add.yaml"
    spec.write_text(ADDING)
    assert run([spec, "--no-report", "-q"], tmp_path).exit_code == 0
    folder = only_run(tmp_path)
    before = snapshot(folder)

    # refused before training: the checkpoint does not fit the new optimizer -> nothing changes
    refused = run(["--resume", folder, "--set", "training.optimizer=adam", "--epochs", "2"], tmp_path)
    assert refused.exit_code == 2 and "resume with the same training settings" in refused.output
    no_traceback(refused.output)
    assert snapshot(folder) == before

    # fails in training (NaN before the next checkpoint): spec.yaml keeps the run's settings
    bad = run(["--resume", folder, "--set", "training.lr=1e6", "--epochs", "3", "--no-report", "-q"], tmp_path)
    assert bad.exit_code == 2, bad.output
    no_traceback(bad.output)
    line = next(ln for ln in bad.output.splitlines() if ln.startswith("error:"))
    assert "NaN or Inf" in line and f"timeloom run --resume {folder}" in line and "not kept in spec.yaml" in line
    after = snapshot(folder)
    assert after["spec.yaml"] == before["spec.yaml"]
    assert {k for k in after if k.startswith("checkpoints/")} == {k for k in before if k.startswith("checkpoints/")}
    info = json.loads(after["run.json"])
    assert info["resumed"] == [{"overrides": ["training.lr=1e6", "training.epochs=3"],
                                "from": "ckpt-00000005-0001-00000.npz", "applied": False}]

    # the suggested command works; a resume whose overrides train to a checkpoint keeps them
    again = run(["--resume", folder, "--epochs", "2", "--no-report", "-q"], tmp_path)
    assert again.exit_code == 0, again.output
    assert "finished after 2 epochs, 10 steps" in again.output
    import yaml
    assert yaml.safe_load((folder / "spec.yaml").read_text())["training"]["epochs"] == 2
    assert yaml.safe_load((folder / "spec.yaml").read_text())["training"]["lr"] == 0.01
    assert json.loads((folder / "run.json").read_text())["resumed"][-1]["applied"] is True
    assert checkpoint.latest(folder / "checkpoints").name == "ckpt-00000010-0002-00000.npz"


def test_a_nan_after_the_overrides_reached_the_spec_names_the_set_that_undoes_them(tmp_path):
    """lr 30 trains one finite epoch (a checkpoint: the override is now the run's spec) and overflows in
    the next: the message gives the --set that restores the spec's earlier value."""
    spec = tmp_path / "add.yaml"
    spec.write_text(ADDING)
    assert run([spec, "--no-report", "-q"], tmp_path).exit_code == 0
    folder = only_run(tmp_path)
    bad = run(["--resume", folder, "--set", "training.lr=30", "--epochs", "4", "--no-report", "-q"], tmp_path)
    assert bad.exit_code == 2, bad.output
    no_traceback(bad.output)
    import yaml
    assert yaml.safe_load((folder / "spec.yaml").read_text())["training"]["lr"] == 30  # applied after epoch 2
    line = next(ln for ln in bad.output.splitlines() if ln.startswith("error:"))
    assert "NaN or Inf" in line and "now in spec.yaml" in line, line
    assert "--set training.lr=0.01" in line and "--set training.epochs=1" in line, line
    again = run(["--resume", folder, "--set", "training.lr=0.01", "--epochs", "4", "--no-report", "-q"], tmp_path)
    assert again.exit_code == 0, again.output


# -- 8: one process per run directory -----------------------------------------------------------------
def test_lock_names_the_holder_and_is_released():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        with rundir.locked(d):
            assert (Path(d) / rundir.LOCK).read_text().strip() == str(os.getpid())
            with pytest.raises(TimeloomError, match=f"another timeloom process \\(PID {os.getpid()}\\)"):
                with rundir.locked(d):
                    pass
        with rundir.locked(d):  # released at the end of the block
            pass


def test_second_process_in_a_run_directory_is_refused_with_the_pid(tiny, tmp_path):
    spec = write_spec(tmp_path, data=DATA)
    proc = start(tmp_path, spec, *ARGS)  # a fresh run, training
    try:
        wait_for(tmp_path, lambda rs: any(r["kind"] == "step" and r["epoch"] == 2 for r in rs), proc)
        folder = only_run(tmp_path)
        held = run(["--resume", folder], tmp_path)
        assert held.exit_code == 2, held.output
        no_traceback(held.output)
        assert f"PID {proc.pid}" in held.output and "in use" in held.output and str(folder) in held.output
        assert "resumed" not in json.loads((folder / "run.json").read_text())  # the refused one left no trace
    finally:
        proc.kill()  # kill -9: the kernel drops the lock with the process
        proc.wait()
    assert checkpoint.latest(folder / "checkpoints") is not None
    # two resumes at once: the second is refused while the first trains, the first ends consistent
    first = subprocess.Popen([sys.executable, str(driver(tmp_path)), "run", "--resume", str(folder), "--no-report"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while (folder / rundir.LOCK).read_text().strip() != str(first.pid):
            assert first.poll() is None and time.monotonic() < deadline, "the resume did not take the lock"
            time.sleep(0.01)
        second = run(["--resume", folder], tmp_path)
        assert second.exit_code == 2 and f"PID {first.pid}" in second.output, second.output
        no_traceback(second.output)
        out, _ = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, out
    assert "finished after 4 epochs, 16 steps" in out
    ev = json.loads((folder / "evaluation.json").read_text())
    assert ev["checkpoint"].endswith(checkpoint.latest(folder / "checkpoints").name)
    assert checkpoint.latest(folder / "checkpoints").name == "ckpt-00000016-0004-00000.npz"
    assert (folder / rundir.LOCK).read_text() == ""  # released: no PID to name


# -- 9: temporary files of killed processes ------------------------------------------------------------
SLOW_WRITE = """
import os, time
import numpy as np
_savez, _writes = np.savez, []
def _slow_savez(f, **arrays):  # from the N-th checkpoint write on, each takes long: a kill lands inside
    _savez(f, **arrays)
    _writes.append(1)
    if len(_writes) >= int(os.environ["SLOW_FROM"]):
        f.flush()
        with open(os.environ["SLOW_MARK"], "w") as m:  # tell the test: in the middle of this write now
            m.write(f.name)
        time.sleep(60)
np.savez = _slow_savez
"""


def killed_during_a_checkpoint_write(folder: Path, slow_from: int, *args) -> tuple[int, Path]:
    """Run `timeloom run ARGS` whose checkpoint writes from the `slow_from`-th on are slow, and kill -9
    it in the middle of that write; returns (its PID, the temporary file it left)."""
    script, mark = folder / "slow.py", folder / "writing"
    mark.unlink(missing_ok=True)
    script.write_text(driver(folder).read_text().replace("import cli\n", SLOW_WRITE + "import cli\n"))
    proc = subprocess.Popen([sys.executable, str(script), "run", *map(str, args)], cwd=folder,
                            env={**os.environ, "SLOW_FROM": str(slow_from), "SLOW_MARK": str(mark)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (mark.exists() and mark.read_text()):
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint write to interrupt"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    tmp = folder / mark.read_text()  # relative to the run's working directory
    assert tmp.is_file() and tmp.name.endswith(f".{proc.pid}.tmp")
    return proc.pid, tmp


def test_temporary_files_of_killed_runs_are_removed_on_start_and_resume(tiny, tmp_path):
    spec = write_spec(tmp_path)
    # kill -9 in the write of the second checkpoint (epoch 2) of a fresh run
    pid, stale = killed_during_a_checkpoint_write(tmp_path, 2, spec, "--no-report")
    folder = only_run(tmp_path)
    ckpts = folder / "checkpoints"
    assert stale.parent == ckpts and [p.name for p in checkpoint.listing(ckpts)] == ["ckpt-00000004-0001-00000.npz"]
    # what must stay: a temporary file of a process that runs (this one), files of other patterns
    half = stale.read_bytes()[:1000]
    live = ckpts / f".ckpt-00000099-0003-00000.npz.{os.getpid()}.tmp"
    other = [ckpts / "notes.txt", folder / ".keep.tmp", folder / f"mine.{dead_pid()}.tmp"]
    for p in [live] + other:
        p.write_bytes(half)
    kept = {p: p.read_bytes() for p in [live] + other}

    # a fresh run in the same runs folder cleans the killed run's folder (nobody holds its lock)
    assert run([spec, "--epochs", "1", "--name", "fresh", "--no-report", "-q"], tmp_path).exit_code == 0
    assert not stale.exists()
    assert all(p.read_bytes() == b for p, b in kept.items())

    # its resume, killed again in a checkpoint write, then resumed: that resume cleans up
    pid2, stale2 = killed_during_a_checkpoint_write(tmp_path, 1, "--resume", folder, "--no-report")
    assert stale2.parent == ckpts and pid2 != pid
    result = run(["--resume", folder, "--no-report", "-q"], tmp_path)
    assert result.exit_code == 0, result.output
    no_traceback(result.output)
    assert not stale2.exists()
    assert all(p.read_bytes() == b for p, b in kept.items())
    assert [p.name for p in checkpoint.listing(ckpts)][-1] == "ckpt-00000012-0003-00000.npz"
    assert not [p for p in ckpts.iterdir() if p.name.endswith(".tmp") and p != live]


# -- 10: SIGTERM is Ctrl-C ---------------------------------------------------------------------------
def test_sigterm_saves_exits_143_and_resumes_bitwise(tmp_path, uninterrupted):
    spec = write_spec(tmp_path, data=DATA)
    proc = start(tmp_path, spec, *ARGS)
    wait_for(tmp_path, lambda rs: any(r["kind"] == "step" and r["step"] >= 6 for r in rs), proc)
    folder = only_run(tmp_path)
    before = checkpoint.listing(folder / "checkpoints")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    no_traceback(out)
    assert "terminated (SIGTERM)" in out and f"resume with: timeloom run --resume {folder.relative_to(tmp_path)}" in out
    saved = checkpoint.load(checkpoint.latest(folder / "checkpoints"))
    assert saved.path not in before and saved.meta["kind"] == "interrupt" and saved.meta["step"] >= 6
    assert not (folder / "evaluation.json").exists()
    resumed = subprocess.run([sys.executable, str(driver(tmp_path)), "run", "--resume", str(folder)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    params = final_params(folder)
    assert all(np.array_equal(params[k], uninterrupted[k]) for k in uninterrupted)


# -- 11: NaN checkpoints, overflowing losses, runs far above the baseline -------------------------------
def test_a_checkpoint_holding_nan_is_refused_with_the_parameter_name(tiny, tmp_path):
    spec = write_spec(tmp_path, epochs=1)
    assert run([spec, "--no-report", "-q"], tmp_path).exit_code == 0
    folder = only_run(tmp_path)
    ck = checkpoint.load(checkpoint.latest(folder / "checkpoints"))
    params = dict(ck.params)
    name = sorted(params)[1]
    params[name] = params[name].copy()
    params[name].flat[0] = np.nan
    checkpoint.save(ck.path, params, ck.optimizer, {k: v for k, v in ck.meta.items() if k != "format"}, replace=True)
    before = snapshot(folder)
    result = run(["--resume", folder, "--epochs", "2"], tmp_path)
    assert result.exit_code == 2, result.output
    no_traceback(result.output)
    assert f"parameter '{name}' holds NaN or Inf (1 of {params[name].size} values)" in result.output
    assert str(ck.path) in result.output and "last good checkpoint" not in result.output
    assert snapshot(folder) == before
    fresh = run([spec, "--checkpoint", ck.path, "--no-report"], tmp_path)  # nor as a starting point
    assert fresh.exit_code == 2 and f"parameter '{name}' holds NaN" in fresh.output
    no_traceback(fresh.output)
    assert only_run(tmp_path) == folder  # refused before a run directory was made


def test_an_overflowing_loss_names_the_output_and_the_largest_parameter(tmp_path):
    spec = tmp_path / "add.yaml"
    spec.write_text(ADDING)
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run([spec, "--set", "training.lr=1e6", "--epochs", "3", "--no-report", "-q"], tmp_path)
    assert result.exit_code == 2, result.output
    no_traceback(result.output)
    # the message below says it all: numpy's overflow warnings are not printed before it
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    line = next(ln for ln in result.output.splitlines() if ln.startswith("error:"))
    assert "the loss of output 'y'" in line and "the loss overflows" in line
    named = line.split("the largest parameter is '")[1].split("'")[0]
    from compiler import compile_spec
    assert named in compile_spec(spec).params
    reach = float(line.split("its values reach ")[1].split(",")[0])
    assert reach > 1e18  # float32 mse overflows above ~1.8e19 squared differences


def test_far_from_baseline_rule():
    ev = {"metric": "mse", "higher_is_better": False, "baseline": 0.2}
    assert far_from_baseline({**ev, "mse": FAR_FROM_BASELINE * 0.2}) == []
    assert far_from_baseline({**ev, "mse": 0.05}) == []
    (w,) = far_from_baseline({**ev, "mse": 2.0})
    assert "mse 2 is 10 times the baseline's 0.2" in w
    assert far_from_baseline({**ev, "mse": float("nan")})
    assert far_from_baseline({"metric": "accuracy", "higher_is_better": True, "accuracy": 0.0, "baseline": 0.5}) == []


def test_a_run_ending_far_above_the_baseline_warns(tmp_path):
    spec = tmp_path / "add.yaml"
    spec.write_text(ADDING)
    result = run([spec, "--set", "training.optimizer=adam", "--set", "training.lr=1e6", "--epochs", "2",
                  "--no-report"], tmp_path)
    assert result.exit_code == 0, result.output
    no_traceback(result.output)
    ev = json.loads((only_run(tmp_path) / "evaluation.json").read_text())
    assert ev["status"] == "completed" and ev["mse"] > 1e6 * ev["baseline"]  # Adam's steps are ~lr: diverged
    (w,) = ev["warnings"]
    assert "times the baseline" in w and "lower lr" in w
    assert f"warning: {w}" in result.output

    # a run that learns has none
    good = run([spec, "--set", "training.optimizer=adam", "--set", "training.lr=0.01", "--name", "good",
                "--no-report", "-q"], tmp_path)
    assert good.exit_code == 0
    ev = json.loads(next((tmp_path / "runs").glob("good-*/evaluation.json")).read_text())
    assert ev["mse"] <= FAR_FROM_BASELINE * ev["baseline"] and "warnings" not in ev
    assert "warning:" not in good.output
