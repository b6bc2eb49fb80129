"""One trial, run inside a worker process (a Ray task or a Tune actor): `timeloom run` in-process.

`run_trial(job)` makes exactly the calls `timeloom run SPEC --set ... --seed S` makes (the spec
dict with the overrides applied, compiled with the spec file's path, then session.new_run)
in a run directory under the trial's folder, and returns the trial's record: status, final
evaluation, epoch history, run directory, or the error. It never imports ray.

    job = {"id", "spec": absolute spec path, "data": the spec dict as loaded, "items": [--set ...],
           "dir": the trial's folder, "attempt": 1, 2, ..., "invocation": a token of the sweep run,
           "crash": bool}

A folder of a trial holds result.json (its last record) and run-TIMESTAMP/ per attempt. When
an earlier attempt left a run with checkpoints but no evaluation.json (a crashed worker), the
next attempt continues that run from its newest checkpoint (`timeloom run --resume`), which
gives bitwise the numbers of an uninterrupted run.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from pathlib import Path

RESULT = "result.json"
CRASH_ENV = "TIMELOOM_SWEEP_CRASH"  # testing hook, read by the driver: "ID[:ATTEMPTS],..." (see crash_plan)


def run_trial(job: dict, progress=None) -> dict:
    """Train the trial in this process; its record (status "completed" | "early_stopped" | "failed")."""
    t0 = time.monotonic()
    folder = Path(job["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id": job["id"], "attempt": job.get("attempt", 1), "invocation": job.get("invocation"),
              "host": socket.gethostname(), "pid": os.getpid(), "items": list(job["items"])}
    if job.get("crash"):
        os._exit(86)  # a worker crash (testing hook): the process dies without a word
    argv = sys.argv
    sys.argv = ["timeloom", "run", job["spec"]] + [a for i in job["items"] for a in ("--set", i)]
    try:
        record.update(_train(job, folder, progress))
    except Exception as e:  # noqa: BLE001 - any error of the trial is its result, not the sweep's
        record.update(status="failed", error=f"{type(e).__name__}: {e}",
                      traceback=traceback.format_exc(limit=8))
    finally:
        sys.argv = argv
    record["seconds"] = round(time.monotonic() - t0, 3)
    from runtime.train.rundir import write_json
    try:
        write_json(folder / RESULT, record)
    except Exception as e:  # noqa: BLE001 - the record still goes back to the driver
        record["warning"] = f"could not write {folder / RESULT}: {e}"
    return record


def _train(job: dict, folder: Path, progress) -> dict:
    from compiler import load_spec
    from runtime.train import session

    partial = unfinished_run(folder)
    opts = session.Options(runs_dir=folder, name="run", overrides=list(job["items"]), report=False)
    if partial is not None:
        program, spec, info = session.load_run(partial)
        report = session.resume_run(partial, program, spec, info, session.Options(runs_dir=folder, report=False),
                                    progress)
        resumed = str(partial)
    else:
        loaded = load_spec(job["data"], list(job["items"]), file=job["spec"])
        report = session.new_run(loaded.program, loaded.spec, opts, progress)
        resumed = None
    return from_report(report, resumed)


def from_report(report, resumed=None) -> dict:
    """The trial-record fields of a session.Report."""
    from runtime.train.rundir import MetricsLog

    res, ev = report.result, report.evaluation or {}
    status = res.status if res is not None else "failed"
    history = [r for r in MetricsLog(report.rundir / "metrics.jsonl").records() if r.get("kind") == "epoch"] \
        if report.rundir else list(res.history if res else [])
    last = history[-1] if history else {}
    metric = ev.get("metric") or getattr(report.task, "metric", None)
    out = {"status": status, "run_dir": str(report.rundir) if report.rundir else None,
           "metric": metric, "higher_is_better": bool(ev.get("higher_is_better",
                                                              getattr(report.task, "higher_is_better", False))),
           "value": ev.get(metric) if metric else None, "baseline": _baseline(ev, metric),
           "epochs": res.position.epoch if res else None, "steps": res.position.step if res else None,
           "batch_size": report.config.batch_size, "seed": report.config.seed,
           "loss": last.get("loss"), "val_loss": last.get("val_loss"),
           "evaluation": ev, "history": history, "train_seconds": round(report.seconds, 3)}
    if status == "interrupted":
        out["status"], out["error"] = "failed", "interrupted"
    if resumed:
        out["resumed_from"] = resumed
    return out


def _baseline(ev: dict, metric):
    b = ev.get("baseline")
    return b.get(metric) if isinstance(b, dict) else b


def unfinished_run(folder: Path) -> Path | None:
    """The newest run-* of the trial with a checkpoint and no evaluation.json (a crashed attempt)."""
    runs = sorted((p for p in Path(folder).glob("run-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        return None
    last = runs[-1]
    if (last / "evaluation.json").exists() or not (last / "run.json").exists():
        return None
    ckpts = last / "checkpoints"
    if ckpts.is_dir() and any(ckpts.glob("*.npz")):
        return last
    return None


def crash_plan(text: str | None) -> dict:
    """TIMELOOM_SWEEP_CRASH="ID,ID2:1": trial ID crashes its worker on every attempt, ID2 on the
    first 1 attempt(s) (a testing hook for the retry path)."""
    out = {}
    for part in (text or "").split(","):
        part = part.strip()
        if part:
            tid, _, n = part.partition(":")
            out[tid] = int(n) if n else 10 ** 6
    return out
