"""`run_sweep`: plan the trials, skip the finished ones, run the rest on Ray, write the results."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from compiler.errors import SpecError, TimeloomError

from runtime.train.rundir import inside

from . import report, success
from .plan import Plan, Trial, spec_digest
from .plan import trials as plan_trials
from .store import SweepDir


@dataclass
class Outcome:
    path: Path  # the sweep directory
    trials: list  # the plan's Trial objects
    rows: list  # report.trial_rows: one per trial
    aggregate: dict
    summary: str
    ran: int  # trials run by this invocation
    skipped: int  # trials finished before
    failed: int  # trials of the plan that failed
    seconds: float


def load_spec(spec: Path) -> tuple[str, dict]:
    """(absolute path, the spec dict as `timeloom run` loads it); compile errors raise SpecError."""
    from compiler import load_spec as _load

    spec = Path(spec)
    if not spec.is_file():
        raise TimeloomError(f"{spec}: no such spec file")
    loaded = _load(spec)  # the base spec must be valid on its own (as for `timeloom run`)
    return str(spec.resolve()), loaded.spec


def check_trials(spec_path: str, data: dict, trials: list[Trial]) -> None:
    """Compile every distinct configuration once: a bad --grid/--set value stops the sweep here,
    naming the option, instead of failing every trial."""
    from compiler import load_spec as _load

    seen = set()
    for t in trials:
        items = [i for i in t.items if not i.startswith("training.seed=")]
        key = tuple(items)
        if key in seen:
            continue
        seen.add(key)
        try:
            _load(data, items, file=spec_path)
        except SpecError as e:
            msgs = [str(i) for i in e.errors]
            raise TimeloomError(f"trial {t.id} ({t.label()}) is not a valid spec:\n  " + "\n  ".join(msgs)) from None
        except TimeloomError as e:
            raise TimeloomError(f"trial {t.id} ({t.label()}) is not a valid spec: {e}") from None


def criterion_for(text: str | None, data: dict, plan: Plan):
    if text:
        return success.parse(text)
    from compiler import overrides
    return success.default(overrides.apply(data, list(plan.sets)).get("data"))


def task_metric(spec_path: str, data: dict, plan: Plan) -> tuple[str | None, bool]:
    """(metric, higher_is_better) of the spec's data task (built once, in the driver)."""
    from compiler import load_spec as _load
    from runtime.train import tasks
    from runtime.train.config import Config

    program = _load(data, list(plan.sets), file=spec_path).program
    task = tasks.load_task(program, Config.from_training(program.training).seed)
    return task.metric, bool(task.higher_is_better)


def _merge(stored: Plan, given: Plan) -> Plan:
    """--resume: the stored search, with the parts given again on the command line replaced."""
    return Plan(sets=given.sets or stored.sets, grid=given.grid or stored.grid,
                sample=given.sample or stored.sample,
                samples=given.samples if given.sample else stored.samples,
                search_seed=given.search_seed if given.sample else stored.search_seed,
                seeds=given.seeds if given.seeds is not None else stored.seeds)


def run_sweep(spec: Path | None, plan: Plan, *, sweeps_dir: Path = Path("sweeps"), name: str | None = None,
              resume: Path | None = None, success_text: str | None = None, settings=None, progress=None,
              dry_run: bool = False) -> Outcome:
    """Run (or resume) the sweep; write trials.json, results.csv, aggregate.json, metric.png."""
    from .driver import Settings, run_trials
    from .progress import NullProgress

    t0 = time.monotonic()
    settings = settings or Settings()
    progress = progress or NullProgress()
    if resume is not None:
        store = SweepDir(resume)
        if not store.exists():
            raise TimeloomError(f"{resume} is not a sweep directory (no sweep.json)")
        info = store.read_info()
        if not isinstance(info, dict) or not isinstance(info.get("spec"), str) or not isinstance(info.get("plan"), dict):
            raise TimeloomError(f"{store.path / 'sweep.json'} is damaged (no spec file or plan in it); restore it, "
                                f"or start the sweep again under a new --name")
        if spec is None:
            spec = Path(info["spec"])
        plan = _merge(Plan.from_json(info["plan"]), plan)
        stored_success = info.get("success")
        success_text = success_text or (stored_success.get("given") if isinstance(stored_success, dict) else None)
    if spec is None:
        raise TimeloomError("give a SPEC to sweep (or --resume SWEEPDIR)")
    spec_path, data = load_spec(spec)
    if resume is None:
        store = SweepDir(inside(sweeps_dir, name or str(data.get("name") or Path(spec).stem), "sweep name"))
    digest = spec_digest(data)
    trials = plan_trials(plan, digest)
    if resume is not None:
        stored = info.get("trials") if isinstance(info.get("trials"), list) else []
        changed = info["spec_digest"] != digest if info.get("spec_digest") else \
            bool(stored) and not set(stored) & {t.id for t in trials}  # older sweeps: their trial ids tell
        if changed:
            raise TimeloomError(f"{spec_path} is not the spec the sweep {store.path} ran its trials with (it "
                                f"changed since); restore it to continue this sweep, or start a new sweep with its "
                                f"own --name")
    store.check_ours()
    if resume is None:
        store.check_same_plan([t.id for t in trials], f"`timeloom sweep --resume {store.path}`")
    check_trials(spec_path, data, trials)
    criterion = criterion_for(success_text, data, plan)
    finished = store.finished() if store.exists() or store.table_path.exists() else set()
    todo = [t for t in trials if t.id not in finished]
    if dry_run:
        lines = [f"sweep {store.path}: {len(trials)} trials, {len(trials) - len(todo)} finished before"]
        for t in trials:
            mark = "done" if t.id in finished else "todo"
            lines.append(f"  {t.id} {mark}  {t.command(spec_path)}")
        return Outcome(store.path, trials, [], {}, "\n".join(lines), 0, len(trials) - len(todo), 0, 0.0)
    store.create()
    prior = store.read_info() if store.exists() else {}
    store.write_info({
        "name": store.path.name, "spec": spec_path, "spec_digest": digest, "plan": plan.to_json(),
        "success": {**(criterion.to_json() if criterion else {}), "given": success_text},
        "scheduler": settings.scheduler, "retries": settings.retries, "address": settings.address,
        "created": prior.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "command": sys.argv,
        "trials": [t.id for t in trials],
    })
    ran = 0
    if todo:
        metric = task_metric(spec_path, data, plan) if settings.scheduler == "asha" else None
        try:
            ran = len(run_trials(store, spec_path, data, todo, settings, progress,
                                 skipped=len(trials) - len(todo), metric=metric))
        finally:
            store._table = None  # re-read: rows written by the driver (and any result.json it missed)
    return finish(store, trials, criterion, time.monotonic() - t0, ran, len(trials) - len(todo))


def finish(store: SweepDir, trials: list[Trial], criterion, seconds: float, ran: int, skipped: int) -> Outcome:
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    rows = report.trial_rows(store, trials, criterion)
    agg = report.aggregate(rows, keys, criterion)
    from runtime.train.rundir import write_json

    report.write_csv(store.path / "results.csv", rows, keys)
    write_json(store.path / "aggregate.json", agg)
    try:
        report.plot(store.path / "metric.png", rows, keys, agg["metric"], agg["higher_is_better"], criterion)
    except Exception as e:  # noqa: BLE001 - a failed plot must not hide the results
        print(f"warning: could not draw metric.png: {e}", file=sys.stderr)
    text = report.summary(agg, rows, store.path.name, store.path, seconds, ran, skipped)
    failed = sum(r["status"] == "failed" for r in rows)
    return Outcome(store.path, trials, rows, agg, text, ran, skipped, failed, seconds)
