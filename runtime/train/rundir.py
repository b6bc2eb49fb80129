"""The run directory `runs/NAME-TIMESTAMP/`: resolved spec, metrics, curves, evaluation.

    spec.yaml          the spec with the command-line overrides applied
    spec.resolved.yaml the same with every default that applied filled in (training, data task)
    run.json           how it was started (source spec, overrides, backend, dtype, seed, hash)
    metrics.jsonl      one JSON object per line: {"kind": "step", ...} and {"kind": "epoch", ...}
    curves.png         training loss per step and per epoch, validation loss, the task's metric
    evaluation.json    the final evaluation (task metrics and baseline)
    checkpoints/       ckpt-STEP-EPOCH-BATCH.npz (see checkpoint.py)
    .lock              held (flock) by the process training in the folder; holds its PID

One process at a time trains in a run directory: `new_run` locks the folder it creates,
`resume_run` the folder it continues (`locked`); a second one is refused with the PID of the
first. The lock is the kernel's (fcntl.flock), so it goes away with the process, also on kill -9.
Temporary files (.NAME.PID.tmp, .NAME.PID.tmp.EXT) of processes that no longer exist are removed
when a run starts (`clean_stale`).
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import fcntl
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import yaml

from compiler.errors import TimeloomError



def create(root, name: str) -> Path:
    """A new, empty run directory root/NAME-YYYYmmdd-HHMMSS (with -2, -3, ... on a clash)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    inside(root, name, "run name")  # a plain name, not a path out of root
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for k in range(1, 1000):
            path = root / (f"{name}-{stamp}" + (f"-{k}" if k > 1 else ""))
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / "checkpoints").mkdir()
            _lock_created(path)
            return path
    except OSError as e:
        raise TimeloomError(f"cannot create a run directory under {root}: {e.strerror or e}") from e
    raise TimeloomError(f"too many runs named {name}-{stamp} under {root}")


def inside(base, name, what: str = "name") -> Path:
    """base/NAME, refused unless NAME is a plain name (compiler.schema.plain_name_problem: the rule of
    the schema's `name:`) and the folder resolves inside base (a symlink may not lead out of it)."""
    from compiler.schema import plain_name_problem

    problem = plain_name_problem(name)
    if problem is not None:
        raise TimeloomError(f"the {what} {problem}; give another with --name")
    base = Path(base)
    path = base / name
    real_base, real = base.resolve(), path.resolve()
    if real_base not in real.parents:
        raise TimeloomError(f"the {what} '{name}' leads to {real}, outside {real_base} (a link?); "
                            "give another with --name")
    return path


def write_text(path: Path, text: str) -> None:
    """Atomic small-file write (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TimeloomError(f"cannot write {path}: {e.strerror or e}") from e


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")


def write_spec(rundir: Path, spec: dict) -> None:
    write_text(rundir / "spec.yaml", yaml.safe_dump(spec, sort_keys=False, default_flow_style=None))


def write_resolved_spec(rundir: Path, spec: dict, cfg, task=None) -> None:
    """spec.resolved.yaml: `spec` with every default that applied filled in (see resolved.py)."""
    from .resolved import HEADER, resolved_spec

    text = yaml.safe_dump(resolved_spec(spec, cfg, task), sort_keys=False, default_flow_style=None)
    write_text(Path(rundir) / "spec.resolved.yaml", HEADER + text)


def read_spec(rundir: Path) -> dict:
    """The run's spec.yaml, read as a spec file is (compiler.loader: bounded aliases, nesting and
    size, duplicate keys refused); errors name the file."""
    from compiler.loader import load_file

    path = Path(rundir) / "spec.yaml"
    if not path.exists():
        raise TimeloomError(f"{path}: the run's spec is missing; is {rundir} a run directory?")
    data, _ = load_file(path)
    return data


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TimeloomError(f"cannot read {path}: {e}") from e


def _clean(x):
    """JSON-safe: NaN/Inf -> None, numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        x = x.item()
    if hasattr(x, "tolist"):
        return _clean(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class MetricsLog:
    """metrics.jsonl: appended line by line, flushed after each record."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(_clean(record)) + "\n")

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a kill
                break
        return out

    def truncate(self, step: int, epochs_done: int) -> None:
        """Keep what happened up to a checkpoint: steps <= step, epochs < epochs_done."""
        keep = [r for r in self.records()
                if (r.get("kind") == "step" and r["step"] <= step)
                or (r.get("kind") == "epoch" and r["epoch"] <= epochs_done)
                or r.get("kind") not in ("step", "epoch")]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))


def plot_curves(rundir: Path, metric: str | None = None, baseline=None) -> Path | None:
    """curves.png: loss per step and per epoch (train, validation); the task metric per epoch;
    the task's baseline (a dict, or a callable giving one: the trivial predictor's metrics) dashed."""
    records = MetricsLog(Path(rundir) / "metrics.jsonl").records()
    if callable(baseline):
        try:
            baseline = baseline()
        except Exception:  # noqa: BLE001 - the curves without a baseline rather than none
            baseline = None
    fig = curves_figure(records, metric, baseline)
    if fig is None:
        return None
    path = Path(rundir) / "curves.png"
    tmp = path.with_name(f".curves.{os.getpid()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path


def curves_figure(records: list[dict], metric: str | None = None, baseline: dict | None = None):
    """The matplotlib Figure of curves.png (None when nothing was logged): integer step and
    epoch ticks, plain numbers on log axes, the baseline as a dashed, labelled line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no GUI, faster import
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter, MaxNLocator

    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    if not steps and not epochs:
        return None
    baseline = baseline if isinstance(baseline, dict) else {}

    class Plain(LogFormatter):  # 0.01, 0.02, 0.05 instead of 10^-2, 2x10^-2 (LogFormatter picks which ticks)
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    def plain_log(axis):
        axis.set_major_formatter(Plain(labelOnlyBase=False))
        axis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(1, 0.4)))

    def draw_baseline(ax, value, name):
        if isinstance(value, (int, float)) and math.isfinite(value):
            ax.axhline(value, ls="--", color="0.35", lw=1, label=f"baseline {name} {value:.4g} (trivial predictor)")

    has_metric = metric is not None and any(r.get(metric) is not None for r in epochs)
    fig = Figure(figsize=(11 if has_metric else 6, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if has_metric else 1, squeeze=False)
    ax = axes[0][0]
    if steps:
        ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.6, alpha=0.4, label="train (step)")
    ep = [r for r in epochs if r.get("loss") is not None]
    if ep:
        ax.plot([r["step"] for r in ep], [r["loss"] for r in ep], "o-", label="train (epoch)")
    val = [r for r in epochs if r.get("val_loss") is not None]
    if val:
        ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "s-", label="validation")
    draw_baseline(ax, baseline.get("loss"), "loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(left=0)
    if all((r.get("loss") or 1) > 0 for r in steps + ep) and (baseline.get("loss") or 1) > 0:
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    ax.legend()
    ax.set_title("loss")
    if has_metric:
        m = [r for r in epochs if r.get(metric) is not None]
        ax2 = axes[0][1]
        ax2.plot([r["epoch"] for r in m], [r[metric] for r in m], "o-", color="C3", label=metric)
        draw_baseline(ax2, baseline.get(metric), metric)
        ax2.set_xlabel("epoch")
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_ylabel(metric)
        ax2.set_title(metric)
        ax2.legend()
    fig.subplots_adjust(left=0.08 if has_metric else 0.14, right=0.98, bottom=0.13, top=0.91, wspace=0.25)
    return fig


# -- one process per run directory ------------------------------------------------------------
LOCK = ".lock"
_created: contextvars.ContextVar = contextvars.ContextVar("timeloom_created_runs", default=None)


class RunLock:
    """An exclusive flock on RUNDIR/.lock, which holds the owner's PID while it is held."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.fd = None

    def acquire(self) -> "RunLock":
        path = self.folder / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise TimeloomError(f"cannot lock the run directory {self.folder} ({path}: "
                                f"{e.strerror or e})") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            try:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise TimeloomError(f"{self.folder} is in use: another timeloom process (PID {owner}) is "
                                    f"training in it; wait until it ends (or stop it) and try again") from None
            # a file system without locks (some network mounts): train unlocked, but say so
            print(f"warning: cannot lock the run directory {self.folder} ({e.strerror or e}); make sure no "
                  f"other process trains in it at the same time", file=sys.stderr)
            return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)  # nobody holds it now: no PID to name
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor releases the flock


@contextlib.contextmanager
def locked(folder):
    """Hold the run directory's lock for the block (TimeloomError naming the PID when it is taken)."""
    lock = RunLock(folder).acquire()
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def locking_new():
    """Lock every run directory `create` makes inside the block (before anything is written into
    it), and release those locks at its end."""
    held: list = []
    token = _created.set(held)
    try:
        yield held
    finally:
        _created.reset(token)
        for lock in reversed(held):
            lock.release()


def _lock_created(path: Path) -> None:
    held = _created.get()
    if held is not None:
        held.append(RunLock(path).acquire())


# -- temporary files of processes that died -------------------------------------------------------
TMP = re.compile(r"^\..+\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")  # .NAME.PID.tmp and .NAME.PID.tmp.EXT


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a PID we can ask about): leave its files alone
    return True


def clean_stale(folder) -> list[Path]:
    """Remove the temporary files (.NAME.PID.tmp[.EXT]) left in a run directory and its
    checkpoints/ by processes that no longer run (a kill during a write); returns them.
    Only files of that pattern whose PID is not alive; call it while holding the folder's lock."""
    removed = []
    for where in (Path(folder), Path(folder) / "checkpoints"):
        try:
            entries = list(os.scandir(where))
        except OSError:
            continue
        for entry in entries:
            m = TMP.match(entry.name)
            if not m or _alive(int(m.group(1))):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                os.unlink(entry.path)
            except OSError:
                continue
            removed.append(Path(entry.path))
    return removed


def clean_stale_under(root) -> list[Path]:
    """`clean_stale` in every run directory under root that no process is training in (its lock is
    free): what a fresh run does at its start, so killed runs that are never resumed do not keep
    their half-written checkpoints forever."""
    removed = []
    try:
        folders = [Path(e.path) for e in os.scandir(root) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return removed
    for folder in folders:
        if not (folder / "run.json").is_file() or not _has_stale(folder):
            continue
        lock = RunLock(folder)
        try:
            lock.acquire()
        except TimeloomError:
            continue  # in use (or not ours to lock): its process cleans up after itself
        try:
            removed += clean_stale(folder)
        finally:
            lock.release()
    return removed


def _has_stale(folder: Path) -> bool:
    for where in (folder, folder / "checkpoints"):
        try:
            if any(TMP.match(e.name) and not _alive(int(TMP.match(e.name).group(1))) for e in os.scandir(where)):
                return True
        except OSError:
            continue
    return False
