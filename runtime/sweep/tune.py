"""`--scheduler asha`: the trials as a Ray Tune experiment with ASHAScheduler.

The trainable runs the same `run_trial` as the FIFO driver, with a progress object that
reports the task metric to Tune after every epoch (`objective`; NaN counts as the worst
value). ASHA stops a trial at a rung (grace_period x reduction_factor^k epochs) when its
metric is not in the best 1/reduction_factor of the trials that reached the rung; its run
directory then ends at that epoch (metrics.jsonl, checkpoints; no evaluation.json) and its
row says "stopped" with the last reported metric. `import ray.tune` happens here only.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from runtime.train.rundir import MetricsLog

from .store import newest_run
from .trial import run_trial


class TuneReporter:
    """A trainer progress object (see runtime/train/progress.py) that reports each epoch to Tune."""

    def __init__(self, metric: str, higher_is_better: bool):
        self.metric, self.hib = metric, higher_is_better

    def start(self, trainer): ...
    def epoch_start(self, epoch, lr, total): ...
    def step(self, record): ...
    def message(self, text): ...
    def close(self): ...

    def epoch_end(self, record):
        from ray import tune
        v = record.get(self.metric)
        worst = -math.inf if self.hib else math.inf
        objective = float(v) if isinstance(v, (int, float)) and math.isfinite(v) else worst
        tune.report({"objective": objective, "epoch": record["epoch"], "step": record["step"],
                     "loss": _f(record.get("loss")), "val_loss": _f(record.get("val_loss"))})


def _f(v):
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _attempt(job: dict) -> int:
    """Count this attempt in the trial folder (Tune restarts a failed trial from scratch)."""
    folder = Path(job["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f".attempts-{job['invocation']}"
    with open(log, "a") as f:
        f.write(f"{time.time()}\n")
    return len(log.read_text().splitlines())


def tune_trainable(config, jobs=None, metric=None, crash=None):
    from ray import tune
    tid = config["trial"]
    attempt = _attempt(jobs[tid])
    job = dict(jobs[tid], attempt=attempt, crash=attempt <= (crash or {}).get(tid, 0))
    rec = run_trial(job, progress=TuneReporter(*metric))
    if rec.get("status") == "failed":
        raise RuntimeError(rec.get("error") or "the trial failed")
    value = rec.get("value")
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    tune.report({"objective": float(value) if ok else (-math.inf if metric[1] else math.inf),
                 "epoch": rec.get("epochs"), "step": rec.get("steps"), "trial_done": True})


def run_asha(session, store, jobs, labels, settings, workers, progress, invocation, metric, crash) -> list[dict]:
    import logging
    import os

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no tables of Tune's own
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard files per trial
    # ... so the result grid finds no result.json to read back; the sweep does not use it
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # a failed trial's traceback: the sweep reports the error itself (and it is in the Tune folder)
    logging.getLogger("ray.tune.execution.tune_controller").setLevel(logging.CRITICAL)
    logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # "Trials did not complete": reported below
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    if metric is None or metric[0] is None:
        from compiler.errors import TimeloomError
        raise TimeloomError("--scheduler asha needs the task's metric; the spec's data task has none")
    name, hib = metric
    epochs = max(int(j.get("epochs") or 1) for j in jobs.values())
    results: dict = {}

    def record(trial, error=None) -> dict:
        tid = trial.config["trial"]
        job = jobs[tid]
        attempts = _attempts(job)
        rec = store.result(tid) or {}
        if error is None and rec.get("invocation") == invocation and rec.get("status") in ("completed",
                                                                                          "early_stopped"):
            rec = dict(rec, attempts=attempts)
        elif error is not None:
            rec = {"id": tid, "status": "failed", "attempts": attempts, "items": job["items"],
                   "error": _tune_error(error), "run_dir": newest_run(job["dir"]), "invocation": invocation}
        else:  # stopped by the scheduler: the run so far
            last = trial.last_result or {}
            run = newest_run(job["dir"])
            history = [r for r in MetricsLog(Path(run) / "metrics.jsonl").records()
                       if r.get("kind") == "epoch"] if run else []
            final = history[-1] if history else {}
            value = final.get(name)
            rec = {"id": tid, "status": "stopped", "attempts": attempts, "items": job["items"],
                   "run_dir": run, "metric": name, "higher_is_better": hib, "value": value,
                   "epochs": final.get("epoch", last.get("epoch")), "steps": final.get("step", last.get("step")),
                   "loss": final.get("loss"), "val_loss": final.get("val_loss"), "history": history,
                   "seed": _seed(job), "invocation": invocation}
            rec["seconds"] = round(float(last.get("time_total_s") or 0.0), 3)
        rec.setdefault("seed", _seed(job))
        return rec

    class Reporter(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.submitted(trial.config["trial"])

        def on_trial_recover(self, iteration, trials, trial, **info):
            tid = trial.config["trial"]
            progress.retry({"id": tid, "attempts": _attempts(jobs[tid]),
                            "error": _tune_error(getattr(trial, "error_file", None))}, labels[tid])

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._done(trial, None)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._done(trial, getattr(trial, "error_file", None) or "error")

        def _done(self, trial, error):
            rec = record(trial, error)
            results[rec["id"]] = rec
            full = dict(rec)
            if rec["status"] == "stopped":  # keep its history for the report
                from runtime.train.rundir import write_json
                write_json(store.trial_dir(rec["id"]) / "result.json", rec)
            store.put(full)
            progress.finished(rec, labels[rec["id"]])

    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=epochs + 1,
                              grace_period=settings.grace_period, reduction_factor=settings.reduction_factor)
    trainable = tune.with_resources(
        tune.with_parameters(tune_trainable, jobs=jobs, metric=(name, hib), crash=crash), {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(list(jobs))},
        tune_config=tune.TuneConfig(metric="objective", mode="max" if hib else "min", scheduler=scheduler,
                                    max_concurrent_trials=workers, reuse_actors=False),
        run_config=tune.RunConfig(name=f"asha-{invocation}", storage_path=str(store.path / "tune"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=settings.retries),
                                  callbacks=[Reporter()]),
    )
    tuner.fit()
    return [results[tid] for tid in jobs if tid in results]


def _attempts(job: dict) -> int:
    log = Path(job["dir"]) / f".attempts-{job['invocation']}"
    return len(log.read_text().splitlines()) if log.is_file() else 0


def _seed(job: dict):
    for item in reversed(job["items"]):
        if item.startswith("training.seed="):
            return int(item.split("=", 1)[1])
    return ((job["data"].get("training") or {}).get("seed", 0))


def _tune_error(error) -> str:
    """The innermost "SomeError: message" of a Tune error file (or text)."""
    import re

    text = str(error or "")
    path = Path(text) if 0 < len(text) < 4096 and "\n" not in text else None
    if path is not None and path.is_file():
        text = path.read_text()
    text = text.split("Failure # ")[-1]  # error.txt: one block per failed attempt; the last one
    if "actor died unexpectedly" in text or "worker process has died" in text:
        return "ActorDiedError: the worker process died while running the trial"
    found = re.findall(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", text, re.MULTILINE)
    if not found:
        return "the trial failed"
    name, message = found[-1]
    if name in ("ActorDiedError", "WorkerCrashedError", "ActorUnavailableError"):
        return f"{name}: the worker process died while running the trial"
    if name == "RuntimeError" and re.match(r"\w+(Error|Exception): ", message):
        return message.strip()[:300]  # the trial's own error, raised again for Tune to retry
    return f"{name}: {message.strip()}"[:300]
