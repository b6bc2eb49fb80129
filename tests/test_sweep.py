"""`timeloom sweep`: trial plans and ids, success criteria, the aggregate, and (with Ray) a real
sweep of a tiny spec over 4 seeds x 2 learning rates on 2 workers: one row per trial with the
numbers of the same `timeloom run` commands, an injected worker crash retried once and reported
without losing the others, and a resume that runs only what had not finished.

The Ray part starts one local Ray for the module (its start-up takes 10-20 s on 2 cores) and is
skipped when ray is not installed (pip install 'timeloom[sweep]').
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from compiler.errors import TimeloomError
from runtime.sweep import plan as P
from runtime.sweep import report, success
from runtime.sweep.api import load_spec
from runtime.sweep.trial import CRASH_ENV, run_trial
from support import elman_yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = elman_yaml("tiny", h=4, at="last", data="{task: adding, length: 6, test_size: 32}",
                  training="{optimizer: adam, lr: 0.01, epochs: 2, steps_per_epoch: 3, batch_size: 8, seed: 0}")


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


# -- the plan -----------------------------------------------------------------------------------------
def test_grid_times_seeds_with_stable_distinct_ids():
    plan = P.Plan(sets=["training.epochs=2"], grid=P.parse_grid(["training.lr=1e-3,1e-2", "units.h.size=32,64"]),
                  seeds=P.parse_seeds("3"))
    trials = P.trials(plan, "digest")
    assert len(trials) == 2 * 2 * 3
    assert len({t.id for t in trials}) == len(trials)
    assert [t.id for t in P.trials(plan, "digest")] == [t.id for t in trials]  # stable
    assert {t.id for t in P.trials(plan, "other spec")}.isdisjoint(t.id for t in trials)
    first = trials[0]
    assert first.params == {"training.lr": 0.001, "units.h.size": 32} and first.seed == 0
    assert first.items == ("training.epochs=2", "training.lr=0.001", "units.h.size=32", "training.seed=0")
    assert first.command("s.yaml") == ("timeloom run s.yaml --set training.epochs=2 --set training.lr=0.001 "
                                       "--set units.h.size=32 --seed 0")
    # the order of the --grid options does not change a trial's id
    swapped = P.Plan(sets=["training.epochs=2"], grid=P.parse_grid(["units.h.size=32,64", "training.lr=1e-3,1e-2"]),
                     seeds=[0, 1, 2])
    assert {t.id for t in P.trials(swapped, "digest")} == {t.id for t in trials}


def test_option_parsing():
    assert P.split_values("1e-3, 1e-2") == ["1e-3", "1e-2"]
    assert P.split_values("[1, 2],[3]") == ["[1, 2]", "[3]"]
    assert P.parse_grid(["units.h.size=[1, 2],[3]"]) == {"units.h.size": [[1, 2], [3]]}
    assert P.parse_grid(["training.optimizer=adam,sgd"]) == {"training.optimizer": ["adam", "sgd"]}
    assert P.parse_seeds("3") == [0, 1, 2] and P.parse_seeds("5,9") == [5, 9] and P.parse_seeds(None) is None
    assert P.parse_sample(["training.lr=loguniform:1e-4,1e-1"]) == {"training.lr": ["loguniform", 1e-4, 0.1]}
    for bad in (["training.lr"], ["training.lr="]):
        with pytest.raises(TimeloomError, match="KEY=VALUES"):
            P.parse_grid(bad)
    with pytest.raises(TimeloomError, match="given twice"):
        P.parse_grid(["a=1", "a=2"])
    with pytest.raises(TimeloomError, match="DIST"):
        P.parse_sample(["training.lr=gauss:1,2"])
    with pytest.raises(TimeloomError, match="LO > 0"):
        P.parse_sample(["training.lr=loguniform:0,1"])
    with pytest.raises(TimeloomError, match="--seeds"):
        P.parse_seeds("0")


def test_random_search_is_reproducible_and_in_range():
    plan = P.Plan(grid={"units.h.size": [4, 8]}, samples=5, search_seed=3,
                  sample=P.parse_sample(["training.lr=loguniform:1e-4,1e-1", "training.batch_size=randint:4,9",
                                         "training.optimizer=choice:adam,rmsprop"]))
    a, b = P.trials(plan, "d"), P.trials(plan, "d")
    assert [t.id for t in a] == [t.id for t in b] and len(a) == 10
    for t in a:
        assert 1e-4 <= t.params["training.lr"] <= 0.1
        assert 4 <= t.params["training.batch_size"] <= 9
        assert t.params["training.optimizer"] in ("adam", "rmsprop")
        assert t.params["units.h.size"] in (4, 8)
    other = P.trials(P.Plan(grid=plan.grid, samples=5, search_seed=4, sample=plan.sample), "d")
    assert [t.id for t in other] != [t.id for t in a]


# -- success and the aggregate -------------------------------------------------------------------------
def test_success_criteria():
    c = success.parse("mse<0.01")
    assert (c.metric, c.op, c.threshold) == ("mse", "<", 0.01)
    assert c.holds(0.005) and not c.holds(0.01) and not c.holds(None) and not c.holds(float("nan"))
    assert success.parse(" fraction_correct >= 1 ").holds(1.0)
    with pytest.raises(TimeloomError, match="METRIC<VALUE"):
        success.parse("mse is small")
    assert str(success.default({"task": "adding", "length": 50})) == "mse < 0.01"
    assert str(success.default({"task": "anbncn", "train_n": [1, 20]})) == "solved_up_to_n >= 20"
    assert success.default({"task": "text"}) is None
    history = [{"kind": "epoch", "epoch": 1, "step": 10, "mse": 0.5}, {"kind": "epoch", "epoch": 2, "step": 20,
                                                                        "mse": 0.004}]
    assert success.judge(c, {"status": "completed", "history": history}) == (True, 20, 2)
    assert success.judge(c, {"status": "completed", "history": history[:1]}) == (False, None, None)
    assert success.judge(c, {"status": "failed", "history": history}) == (None, None, None)
    # a metric only the final evaluation has: solved at the end of training
    assert success.judge(success.parse("solved_fraction>=0.9"),
                         {"status": "completed", "history": history, "evaluation": {"solved_fraction": 0.95},
                          "steps": 20, "epochs": 2}) == (True, 20, 2)


def _row(tid, lr, seed, status, value, solved=None, steps=None):
    return {"id": tid, "status": status, "seed": seed, "value": value, "metric": "mse", "higher_is_better": False,
            "solved": solved, "steps_to_solve": steps, "sequences_to_solve": steps * 8 if steps else None,
            "baseline": 0.17, "attempts": 1, "_params": {"training.lr": lr}}


def test_aggregate_in_the_form_of_the_papers(tmp_path):
    rows = [_row("a", 0.1, 0, "completed", 0.005, True, 100), _row("b", 0.1, 1, "completed", 0.002, True, 300),
            _row("c", 0.1, 2, "completed", 0.3, False), _row("d", 0.1, 3, "failed", None),
            _row("e", 0.01, 0, "completed", 0.2, False), _row("f", 0.01, 1, "stopped", 0.4, False)]
    crit = success.parse("mse<0.01")
    agg = report.aggregate(rows, ["training.lr"], crit)
    fast, slow = agg["configurations"]
    assert fast["params"] == {"training.lr": 0.1}
    assert (fast["trials"], fast["finished"], fast["failed"], fast["solved"]) == (4, 3, 1, 2)
    assert fast["success_rate"] == pytest.approx(2 / 3)
    assert fast["median_steps_to_solve"] == 200 and fast["median_sequences_to_solve"] == 1600
    assert fast["best"] == 0.002 and fast["best_trial"] == "b" and fast["median"] == 0.005
    assert slow["stopped"] == 1 and slow["success_rate"] == 0 and slow["median_steps_to_solve"] is None
    assert agg["overall"]["trials"] == 6 and agg["overall"]["solved"] == 2 and agg["overall"]["best"] == 0.002
    assert agg["best_configuration"] == {"training.lr": 0.1}
    text = report.summary(agg, rows, "s", tmp_path)
    assert "2/3 (67%)" in text and "best trial b" in text and "failed d" in text and "mse < 0.01" in text
    assert report.plot(tmp_path / "metric.png", rows, ["training.lr"], "mse", False, crit).stat().st_size > 1000


def test_a_trial_that_raises_is_a_failed_record(tiny, tmp_path):
    """The error path without Ray: run_trial catches the trial's error and returns it."""
    spec, data = load_spec(tiny)
    rec = run_trial({"id": "x", "spec": spec, "data": data, "items": ["data.lenght=6"], "dir": str(tmp_path / "x")})
    # a data: key the task does not take is found when the trial compiles (did you mean)
    assert rec["status"] == "failed" and rec["error"].startswith("SpecError") and "'length'" in rec["error"], rec
    assert json.loads((tmp_path / "x" / "result.json").read_text())["status"] == "failed"


def test_cli_imports_no_ray_and_dry_run_needs_none(tiny, tmp_path):
    code = "import sys, cli; assert 'ray' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr
    res = CliRunner().invoke(cli.app, ["sweep", str(tiny), "--grid", "training.lr=1e-3,1e-2", "--seeds", "2",
                                       "--sweeps-dir", str(tmp_path / "sw"), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert res.output.count("todo  timeloom run") == 4 and "--set training.lr=0.001 --seed 1" in res.output
    assert not (tmp_path / "sw").exists()
    bad = CliRunner().invoke(cli.app, ["sweep", str(tiny), "--grid", "units.h.size=4,banana",
                                       "--sweeps-dir", str(tmp_path / "sw")])
    assert bad.exit_code == 2 and "units.h.size=banana" in bad.output


# -- a real sweep on Ray ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2 ** 20,
             logging_level="warning")
    yield ray
    ray.shutdown()


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def _epochs_and_steps(run: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock field."""
    return [{k: v for k, v in json.loads(line).items() if k != "time"} for line in (run / "metrics.jsonl").open()]


def _skip_run_report(monkeypatch):
    """The reference runs leave out report.html (an artifact written after evaluation.json, seconds
    of plotting per run): the numbers compared are those of the run itself."""
    try:
        import runtime.diagnostics.report as run_report
    except ImportError:
        return
    if hasattr(run_report, "write_run_report"):
        monkeypatch.setattr(run_report, "write_run_report", lambda *a, **k: None)


def test_sweep_on_ray_matches_timeloom_run_survives_a_crash_and_resumes(ray_session, tiny, tmp_path, monkeypatch):
    args = ["sweep", str(tiny), "--seeds", "4", "--grid", "training.lr=1e-3,1e-2", "--workers", "2",
            "--sweeps-dir", str(tmp_path / "sweeps"), "--name", "t", "-q"]
    _, data = load_spec(tiny)
    trials = P.trials(P.Plan(grid=P.parse_grid(["training.lr=1e-3,1e-2"]), seeds=[0, 1, 2, 3]), P.spec_digest(data))
    by = {(t.params["training.lr"], t.seed): t.id for t in trials}
    broken, flaky = by[(0.01, 3)], by[(0.001, 1)]
    # `broken` kills its worker on every attempt, `flaky` on its first attempt only
    monkeypatch.setenv(CRASH_ENV, f"{broken},{flaky}:1")
    res = CliRunner().invoke(cli.app, args)
    assert res.exit_code == 1, res.output  # 1: a trial failed
    sweep = tmp_path / "sweeps" / "t"
    rows = {r["id"]: r for r in _csv(sweep / "results.csv")}
    assert set(rows) == {t.id for t in trials}  # one row per trial
    assert rows[broken]["status"] == "failed" and rows[broken]["attempts"] == "2"
    assert "WorkerCrashedError" in rows[broken]["error"]
    assert f"failed {broken}" in res.output
    assert rows[flaky]["status"] == "completed" and rows[flaky]["attempts"] == "2"
    assert all(r["status"] == "completed" and r["attempts"] == "1" for tid, r in rows.items()
               if tid not in (broken, flaky))
    agg = json.loads((sweep / "aggregate.json").read_text())
    assert agg["overall"]["trials"] == 8 and agg["overall"]["failed"] == 1 and agg["metric"] == "mse"
    assert agg["criterion"]["text"] == "mse < 0.01"
    assert (sweep / "metric.png").stat().st_size > 1000

    # the same numbers as `timeloom run SPEC --set training.lr=LR --seed S`, run one by one
    monkeypatch.delenv(CRASH_ENV)
    _skip_run_report(monkeypatch)
    runner = CliRunner()
    for t in trials:
        if t.id == broken:
            continue
        out = runner.invoke(cli.app, ["run", str(tiny), "--set", f"training.lr={t.params['training.lr']}",
                                      "--seed", str(t.seed), "--runs-dir", str(tmp_path / "runs"), "--name", t.id,
                                      "-q"])
        assert out.exit_code == 0, out.output
        ref = next((tmp_path / "runs").glob(f"{t.id}-*"))
        ev = json.loads((ref / "evaluation.json").read_text())
        row = rows[t.id]
        assert float(row["value"]) == ev["mse"] and int(row["steps"]) == ev["steps"] and int(row["seed"]) == t.seed
        assert _epochs_and_steps(Path(row["run_dir"])) == _epochs_and_steps(ref)

    # resume: only the failed trial runs again; the finished ones are left as they were
    before = {tid: sorted(p.name for p in (sweep / "trials" / tid).iterdir()) for tid in rows if tid != broken}
    stamps = {tid: (sweep / "trials" / tid / "result.json").stat().st_mtime_ns for tid in before}
    res2 = CliRunner().invoke(cli.app, args)
    assert res2.exit_code == 0, res2.output
    assert "ran 1 now, 7 done before" in res2.output
    rows2 = {r["id"]: r for r in _csv(sweep / "results.csv")}
    assert all(r["status"] == "completed" for r in rows2.values()) and len(rows2) == 8
    assert {tid: sorted(p.name for p in (sweep / "trials" / tid).iterdir()) for tid in before} == before
    assert {tid: (sweep / "trials" / tid / "result.json").stat().st_mtime_ns for tid in before} == stamps
    assert all(rows2[tid]["value"] == rows[tid]["value"] for tid in before)
    table = json.loads((sweep / "trials.json").read_text())["trials"]
    assert table[broken]["status"] == "completed" and len(table) == 8


def test_a_retry_continues_the_crashed_attempts_run(tiny, tmp_path, monkeypatch):
    """An attempt that died after a checkpoint: the next one resumes that run, with the same numbers."""
    _skip_run_report(monkeypatch)
    spec, data = load_spec(tiny)
    job = {"id": "r", "spec": spec, "data": data, "items": ["training.seed=3"], "dir": str(tmp_path / "r")}
    first = run_trial(job)
    assert first["status"] == "completed"
    run = Path(first["run_dir"])
    # as if the worker died during epoch 2: no final checkpoint, no evaluation, metrics of epoch 1 only
    (run / "evaluation.json").unlink()
    ckpts = sorted((run / "checkpoints").glob("*.npz"))
    assert len(ckpts) == 2
    ckpts[-1].unlink()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n")  # 3 steps + epoch 1
    again = run_trial(dict(job, attempt=2))
    assert again["status"] == "completed" and again["run_dir"] == str(run) and again["resumed_from"] == str(run)
    def untimed(history):
        return [{k: v for k, v in r.items() if k != "time"} for r in history]

    assert again["value"] == first["value"] and untimed(again["history"]) == untimed(first["history"])


@pytest.mark.skipif(not os.environ.get("TIMELOOM_TEST_ASHA"), reason="Ray Tune start-up: set TIMELOOM_TEST_ASHA=1")
def test_asha_scheduler_runs_the_trials_through_ray_tune(ray_session, tiny, tmp_path):
    pytest.importorskip("ray.tune")
    res = CliRunner().invoke(cli.app, ["sweep", str(tiny), "--grid", "training.lr=1e-4,1e-3,1e-2,3e-2", "--epochs", "3",
                                       "--scheduler", "asha", "--workers", "2", "--sweeps-dir", str(tmp_path), "-q"])
    assert res.exit_code == 0, res.output
    rows = _csv(tmp_path / "tiny" / "results.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"completed", "stopped"}
    for r in rows:  # a stopped trial's row: the metric of its last epoch
        assert float(r["value"]) > 0
        assert int(r["epochs"]) == 3 if r["status"] == "completed" else 1 <= int(r["epochs"]) < 3


@pytest.mark.parametrize("stored,words", [
    ({"sets": [1]}, "sets are not a list"), ({"grid": [1]}, "grid is not a mapping"),
    ({"sample": {"training.lr": "x"}}, "sample is not a mapping"), ({"samples": "x"}, "samples is not a count"),
    ({"seeds": "abc"}, "seeds are not distinct integers"), ({"seeds": [1.5]}, "seeds are not distinct integers"),
    ({"seeds": [-1]}, "seeds are not distinct integers"),
])
def test_a_damaged_stored_plan_is_refused(stored, words):
    with pytest.raises(TimeloomError, match=words):
        P.Plan.from_json(stored)


def test_plans_beyond_the_trial_limit_are_refused_before_they_are_made():
    with pytest.raises(TimeloomError, match=r"--seeds 100000000: more than 100,000 seeds"):
        P.parse_seeds("100000000")
    huge = P.Plan(sample=P.parse_sample(["training.lr=uniform:0.1,0.2"]), samples=10**12)
    with pytest.raises(TimeloomError, match=r"plans 1,000,000,000,000 trials"):
        P.trials(huge, "digest")
    grid = P.Plan(grid={"a": list(range(1000)), "b": list(range(1000))})
    assert P.count(grid) == 1_000_000
    with pytest.raises(TimeloomError, match="more than 100,000"):
        P.trials(grid, "digest")
