"""Running trials on Ray: a local cluster by default, or an existing one (`address`).

FIFO (default): one Ray task per trial attempt (`run_trial`, 1 CPU each), at most `workers` in
flight; a trial that fails (an error, or its worker process dying) is submitted again up to
`retries` more times, then recorded as failed; the others go on. Every finished trial is
written to the trials table at once.

ASHA (`scheduler="asha"`): the trials run as a Ray Tune experiment whose trainable reports the
task metric after every epoch; Tune's ASHAScheduler stops trials whose curve is hopeless
(recorded with status "stopped"). Tune retries a failed trial `retries` times.

Every worker runs with one BLAS/OpenMP thread (runtime_env env_vars), so `workers` trials share
the cores without oversubscribing them. `import ray` happens here only, when a sweep runs.
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

from compiler.errors import TimeloomError

from .plan import Trial
from .store import SweepDir, newest_run
from .trial import CRASH_ENV, crash_plan, run_trial

THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}


@dataclass
class Settings:
    workers: int | None = None  # trials at a time (default: the cluster's CPUs)
    address: str | None = None  # None: start a local Ray; "auto" or "HOST:PORT": join a cluster
    retries: int = 1
    scheduler: str = "fifo"  # "fifo" | "asha"
    grace_period: int = 1  # ASHA: epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0  # ASHA: keep the best 1/reduction_factor at each rung


def import_ray():
    try:
        import ray
    except ImportError:
        raise TimeloomError("timeloom sweep runs its trials on Ray, which is not installed; "
                            "pip install 'timeloom[sweep]' (or: pip install 'ray[tune]')") from None
    return ray


class RaySession:
    """ray.init on enter (unless Ray is already initialized: then that session is used, and
    left running); ray.shutdown on exit if it was started here."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.ray = import_ray()
        self.started = False
        self.task_env = None  # per-task runtime_env when the session is not ours

    def __enter__(self):
        ray, s = self.ray, self.settings
        if ray.is_initialized():
            self.task_env = {"env_vars": dict(THREAD_ENV)}
        else:
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            kw = {"include_dashboard": False, "log_to_driver": False,
                  "runtime_env": {"env_vars": dict(THREAD_ENV)}, "logging_level": "warning"}
            if s.address:
                ray.init(address=s.address, **kw)
            else:
                # "local": a new Ray of our own, even where a `ray start` cluster runs on this machine
                ray.init(address="local", num_cpus=s.workers or _cores(), object_store_memory=200 * 2 ** 20, **kw)
            self.started = True
        return self

    def workers(self) -> int:
        if self.settings.workers:
            return self.settings.workers
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def where(self) -> str:
        if self.settings.address:
            return f"the Ray cluster at {self.settings.address}"
        return "a local Ray" if self.started else "the running Ray session"

    def __exit__(self, *exc):
        if self.started:
            self.ray.shutdown()
        return False


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_trials(store: SweepDir, spec_path: str, data: dict, trials: list[Trial], settings: Settings,
               progress, skipped: int = 0, metric: tuple | None = None) -> list[dict]:
    """Run the trials; their final records (also written to the table as each one finishes)."""
    invocation = uuid.uuid4().hex[:12]
    jobs = {t.id: {"id": t.id, "spec": spec_path, "data": data, "items": list(t.items),
                   "dir": str(store.trial_dir(t.id)), "invocation": invocation, "epochs": _epochs(data, t),
                   "seed": t.seed}
            for t in trials}
    labels = {t.id: t.label() for t in trials}
    crash = crash_plan(os.environ.get(CRASH_ENV))
    progress.message(f"{len(trials)} trial{'s' if len(trials) != 1 else ''} to run; starting Ray ...")
    with RaySession(settings) as session:
        workers = session.workers()
        progress.start(len(trials), skipped, min(workers, len(trials)), session.where())
        try:
            if settings.scheduler == "asha":
                from .tune import run_asha
                return run_asha(session, store, jobs, labels, settings, workers, progress, invocation, metric,
                                crash)
            return _run_tasks(session, store, jobs, labels, settings, workers, progress, crash)
        finally:
            progress.close()


def _run_tasks(session, store, jobs, labels, settings, workers, progress, crash) -> list[dict]:
    ray = session.ray
    opts = {"num_cpus": 1, "max_retries": 0}
    if session.task_env:
        opts["runtime_env"] = session.task_env
    remote = ray.remote(run_trial).options(**opts)
    queue = list(jobs)  # trial ids, plan order
    inflight: dict = {}  # ObjectRef -> (tid, attempt)
    errors: dict = {tid: [] for tid in jobs}
    results = []

    def submit(tid, attempt):
        job = dict(jobs[tid], attempt=attempt, crash=attempt <= crash.get(tid, 0))
        inflight[remote.remote(job)] = (tid, attempt, time.monotonic())
        progress.submitted(tid)

    try:
        while queue or inflight:
            while queue and len(inflight) < workers:
                tid = queue.pop(0)
                submit(tid, 1)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                tid, attempt, t0 = inflight.pop(ref)
                try:
                    rec = ray.get(ref)
                except ray.exceptions.RayError as e:
                    rec = {"id": tid, "attempt": attempt, "status": "failed", "error": _ray_error(e),
                           "seconds": round(time.monotonic() - t0, 3)}
                if rec.get("status") == "failed":
                    errors[tid].append(f"attempt {attempt}: {rec.get('error')}")
                    if attempt <= settings.retries:
                        rec["attempts"] = attempt
                        progress.retry(rec, labels[tid])
                        submit(tid, attempt + 1)
                        continue
                rec.update(attempts=attempt, errors=errors[tid])
                if rec.get("seed") is None:
                    rec["seed"] = jobs[tid]["seed"]
                if rec.get("status") == "failed" and not rec.get("run_dir"):
                    rec["run_dir"] = newest_run(jobs[tid]["dir"])
                store.put(rec)
                results.append(rec)
                progress.finished(rec, labels[tid])
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise
    return results


def _ray_error(e) -> str:
    name = type(e).__name__
    text = str(e).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    if name in ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "TaskCancelledError"):
        return f"{name}: the worker process died while running the trial"
    return f"{name}: {first[:300]}"


def _epochs(data: dict, trial: Trial) -> int:
    from runtime.train.config import Config
    from runtime.train.overrides import apply

    try:
        return Config.from_training(apply(data, list(trial.items)).get("training")).epochs
    except Exception:  # noqa: BLE001 - a bad override fails in the trial, with its message
        return 1
