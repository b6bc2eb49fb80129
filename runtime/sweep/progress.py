"""What the driver shows: a rich bar of finished trials on a terminal, one line per trial otherwise."""
from __future__ import annotations

import sys
import time


def trial_line(rec: dict, label: str, done: int, total: int) -> str:
    status = rec.get("status", "?")
    parts = [f"[{done}/{total}] {rec['id']} {label}"]
    if rec.get("seed") is not None:
        parts.append(f"seed {rec['seed']}")
    if status == "failed":
        err = str(rec.get("error") or "?").strip().splitlines()[0][:140]
        parts.append(f"FAILED after {rec.get('attempts', 1)} attempts: {err}")
    else:
        metric, value = rec.get("metric"), rec.get("value")
        shown = f"{value:.4g}" if isinstance(value, (int, float)) and value is not None else "-"
        parts.append(f"{status}: {metric} {shown}" if metric else status)
        if rec.get("steps") is not None:
            parts.append(f"{rec['steps']} steps")
        if rec.get("attempts", 1) > 1:
            parts.append(f"(attempt {rec['attempts']})")
    if rec.get("seconds") is not None:
        parts.append(f"{rec['seconds']:.1f}s")
    return "  ".join(parts)


class NullProgress:
    def start(self, total: int, skipped: int, workers: int, where: str): ...
    def submitted(self, tid: str): ...
    def retry(self, rec: dict, label: str): ...
    def finished(self, rec: dict, label: str): ...
    def message(self, text: str): ...
    def close(self): ...


class PlainProgress(NullProgress):
    """One line per finished trial (CI logs, pipes)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.total = self.done = self.failed = 0
        self.t0 = time.monotonic()

    def _print(self, text):
        print(text, file=self.stream, flush=True)

    def start(self, total, skipped, workers, where):
        self.total, self.t0 = total, time.monotonic()
        more = f" ({skipped} finished before: skipped)" if skipped else ""
        self._print(f"running {total} trial{'s' if total != 1 else ''} on {where}, {workers} at a time{more}")

    def retry(self, rec, label):
        err = str(rec.get("error") or "?").strip().splitlines()[0][:140]
        self._print(f"  retrying {rec['id']} {label} (attempt {rec.get('attempts', 1)} failed: {err})")

    def finished(self, rec, label):
        self.done += 1
        self.failed += rec.get("status") == "failed"
        self._print(trial_line(rec, label, self.done, self.total))

    def message(self, text):
        self._print(text)


class RichProgress(PlainProgress):
    """A bar over all trials (done, failed, running, elapsed, remaining) with a line per finished trial."""

    def __init__(self, console=None):
        super().__init__()
        from rich.console import Console
        self.console = console or Console()
        self.bar = None
        self.running = 0

    def start(self, total, skipped, workers, where):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        self.total, self.t0 = total, time.monotonic()
        more = f" ({skipped} finished before: skipped)" if skipped else ""
        self.console.print(f"running {total} trial{'s' if total != 1 else ''} on {where}, {workers} at a time{more}", highlight=False)
        self.bar = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[state]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=self.console, transient=False)
        self.bar.start()
        self.task = self.bar.add_task("sweep", total=total, state="")

    def _state(self):
        return f"{self.running} running" + (f", {self.failed} failed" if self.failed else "")

    def submitted(self, tid):
        self.running += 1
        self.bar.update(self.task, state=self._state())

    def retry(self, rec, label):
        self.running -= 1
        err = str(rec.get("error") or "?").strip().splitlines()[0][:140]
        self.bar.console.print(f"  retrying {rec['id']} {label} (attempt {rec.get('attempts', 1)} failed: {err})",
                               highlight=False)

    def finished(self, rec, label):
        self.done += 1
        self.running = max(0, self.running - 1)
        self.failed += rec.get("status") == "failed"
        self.bar.console.print(trial_line(rec, label, self.done, self.total), highlight=False)
        self.bar.update(self.task, completed=self.done, state=self._state())

    def message(self, text):
        (self.bar.console if self.bar else self.console).print(text, highlight=False)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def make_progress(quiet: bool = False):
    if quiet:
        return NullProgress()
    return RichProgress() if sys.stdout.isatty() else PlainProgress()
