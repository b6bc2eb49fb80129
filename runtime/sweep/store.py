"""The sweep directory `sweeps/NAME/`:

    sweep.json        the spec, the search (fixed --set, grid, random distributions, seeds), the
                      success criterion, the trial ids of the last invocation
    trials.json       the trials table: one row per trial ever run here (status, attempts, errors,
                      swept values, seed, final metric, run directory); rewritten after every
                      finished trial, so a killed sweep loses at most the trials still running
    trials/ID/        one folder per trial: result.json (the full record, with the epoch history)
                      and run-TIMESTAMP/ (the `timeloom run` directory of each attempt)
    results.csv       one row per trial of the last invocation
    aggregate.json    per configuration and overall: success rate, median steps to solve, metric
    metric.png        the final metric by hyper-parameter, with the spread over seeds

Resuming: a trial whose row says completed, early_stopped or stopped (ASHA) is not run again;
failed and never-finished trials are.
"""
from __future__ import annotations

import time
from pathlib import Path

from compiler.errors import TimeloomError
from runtime.train.rundir import MetricsLog, read_json, write_json

from .trial import RESULT

FINISHED = ("completed", "early_stopped", "stopped")
MARKER = ".timeloom-sweep"  # in every folder a sweep created; nothing is written into a folder without it
# fields of a trial record that stay in its result.json only (not in the table)
_BULKY = ("history", "traceback", "evaluation")


class SweepDir:
    def __init__(self, path):
        self.path = Path(path).resolve()
        self.trials_dir = self.path / "trials"
        self.table_path = self.path / "trials.json"
        self._table = None

    def create(self) -> None:
        self.check_ours()
        try:
            self.trials_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # --sweeps-dir names a file, or a folder that cannot be written
            raise TimeloomError(f"cannot create the sweep folder {self.path}: {e.strerror or e}; give "
                                "--sweeps-dir a folder you can write") from None
        marker = self.path / MARKER
        if not marker.is_file():
            marker.write_text("a folder written by `timeloom sweep`; it writes only into folders holding this file\n")

    def check_ours(self) -> None:
        """Refuse a folder that `timeloom sweep` did not create: one with files but without the marker
        file (a sweep.json of an older timeloom counts as the marker; an empty folder holds nothing to lose)."""
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise TimeloomError(f"{self.path} is a file, not a sweep folder; give the sweep another --name "
                                "or --sweeps-dir")
        if (self.path / MARKER).is_file() or self.exists() or not any(self.path.iterdir()):
            return
        raise TimeloomError(f"{self.path} exists and was not created by `timeloom sweep` (no {MARKER} in it); "
                            "a sweep writes only into its own folders, so nothing was written there: give the "
                            "sweep another --name or --sweeps-dir")

    def check_same_plan(self, trial_ids: list, resume_hint: str) -> None:
        """Refuse to reuse this folder for a different plan (other grid, samples, seeds, --set or spec):
        the same command again resumes; another command needs its own name."""
        if not self.exists():
            return
        info = self.read_info()
        stored = info.get("trials")
        if not isinstance(stored, list) or set(stored) == set(trial_ids):
            return
        common = len(set(stored) & set(trial_ids))
        raise TimeloomError(
            f"{self.path} holds another sweep ({len(stored)} trials of {describe_plan(info.get('plan') or {})}, "
            f"spec {info.get('spec', '?')}); this command plans {len(trial_ids)} trials, {common} of them the "
            f"same: its grid, --sample, --seeds, --set or spec differ. Give it its own --name (e.g. "
            f"--name {self.path.name}-2) or --sweeps-dir, or continue the stored sweep with {resume_hint}")

    def exists(self) -> bool:
        return (self.path / "sweep.json").is_file()

    # -- sweep.json ---------------------------------------------------------------------------
    def read_info(self) -> dict:
        return read_json(self.path / "sweep.json")

    def write_info(self, info: dict) -> None:
        write_json(self.path / "sweep.json", info)

    # -- the trials table -------------------------------------------------------------------------
    def table(self) -> dict:
        """id -> row; rows of result.json files the table missed (the driver was killed) are added."""
        if self._table is None:
            rows = {}
            if self.table_path.is_file():
                rows = dict(read_json(self.table_path).get("trials") or {})
            if self.trials_dir.is_dir():
                for folder in self.trials_dir.iterdir():
                    if folder.name not in rows or rows[folder.name].get("status") not in FINISHED:
                        rec = self.result(folder.name)
                        if rec and rec.get("status") in FINISHED:
                            rows[folder.name] = {**rows.get(folder.name, {}), **row_of(rec)}
            self._table = rows
        return self._table

    def finished(self) -> set:
        return {tid for tid, row in self.table().items() if row.get("status") in FINISHED}

    def put(self, record: dict) -> None:
        """Record a trial's outcome in the table (written at once, atomically)."""
        table = self.table()
        table[record["id"]] = {**table.get(record["id"], {}), **row_of(record)}
        write_json(self.table_path, {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "trials": table})

    # -- a trial's folder ---------------------------------------------------------------------------
    def trial_dir(self, tid: str) -> Path:
        return self.trials_dir / tid

    def result(self, tid: str) -> dict | None:
        path = self.trial_dir(tid) / RESULT
        if not path.is_file():
            return None
        try:
            return read_json(path)
        except Exception:  # noqa: BLE001 - a cut file: as if absent
            return None

    def history(self, tid: str) -> list:
        """The trial's epoch records: from result.json, else from its newest run's metrics.jsonl."""
        rec = self.result(tid)
        row = self.table().get(tid, {})
        if rec and rec.get("history") is not None and rec.get("run_dir") == row.get("run_dir", rec.get("run_dir")):
            return rec["history"]
        run = row.get("run_dir") or (rec or {}).get("run_dir") or newest_run(self.trial_dir(tid))
        if run and (Path(run) / "metrics.jsonl").is_file():
            return [r for r in MetricsLog(Path(run) / "metrics.jsonl").records() if r.get("kind") == "epoch"]
        return []

    def evaluation(self, tid: str) -> dict:
        rec = self.result(tid) or {}
        return rec.get("evaluation") or {}


def describe_plan(plan: dict) -> str:
    """The search of a sweep.json 'plan' as options: --grid K=V1,V2 --seeds 0,1 ..."""
    parts = [f"--grid {k}={','.join(str(v) for v in vs)}" for k, vs in (plan.get("grid") or {}).items()]
    parts += [f"--sample {k}={d[0]}:{','.join(str(v) for v in d[1:])}" for k, d in (plan.get("sample") or {}).items()]
    parts += [f"--set {s}" for s in plan.get("sets") or []]
    if plan.get("seeds") is not None:
        parts.append("--seeds " + ",".join(str(s) for s in plan["seeds"]))
    return " ".join(parts) or "the spec as it is"


def row_of(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in _BULKY}


def newest_run(folder: Path) -> str | None:
    runs = sorted((p for p in Path(folder).glob("run-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return str(runs[-1]) if runs else None
