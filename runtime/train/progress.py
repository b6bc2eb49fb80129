"""What a run shows while it trains: a rich progress bar on a terminal, one line per epoch otherwise."""
from __future__ import annotations

import sys
import time


def _fmt(v, spec=".4f"):
    return "-" if v is None else (format(v, spec) if isinstance(v, (int, float)) else str(v))


def epoch_line(record: dict, epochs: int, metric: str | None, rate: float | None) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"step {record['step']}", f"loss {_fmt(record.get('loss'))}"]
    if record.get("val_loss") is not None:
        parts.append(f"val {_fmt(record['val_loss'])}")
    if metric and metric in record:
        parts.append(f"{metric} {_fmt(record[metric], '.4g')}")
    if record.get("lr"):
        parts.append(f"lr {record['lr']:.3g}")
    if "teacher_p" in record:
        parts.append(f"teacher {record['teacher_p']:.2f}")
    if rate:
        parts.append(f"{rate:.1f} steps/s")
    if record.get("best"):
        parts.append("*")
    return "  ".join(parts)


def legend(cfg) -> str | None:
    """The line that explains the `*` of epoch lines (only early stopping marks a best epoch)."""
    if not getattr(cfg, "patience", None):
        return None
    kept = ("its parameters are the ones kept at the end" if cfg.restore_best
            else "restore_best: false keeps the last epoch's parameters instead")
    return (f"* marks the best epoch so far (lowest validation loss, or training loss without validation data, "
            f"by more than min_delta {cfg.min_delta:g}); early stopping after {cfg.patience} epochs without "
            f"one; {kept}")


class PlainProgress:
    """No bar: one line per epoch (CI logs, pipes)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.epochs, self.metric = 0, None
        self._t = None
        self._first = self._steps = 0

    def start(self, trainer):
        self.epochs, self.metric = trainer.cfg.epochs, getattr(trainer.task, "metric", None)
        self._t, self._first, self._steps = time.monotonic(), trainer.pos.step, 0
        self.show_legend(legend(trainer.cfg))

    def show_legend(self, text):
        if text:
            print(text, file=self.stream, flush=True)

    def epoch_start(self, epoch, lr, total):
        pass

    def step(self, record):
        self._steps = record["step"] - self._first  # optimizer steps (one per window with truncation)

    def rate(self):
        dt = time.monotonic() - (self._t or time.monotonic())
        return self._steps / dt if dt > 0 and self._steps else None

    def epoch_end(self, record):
        print(epoch_line(record, self.epochs, self.metric, self.rate()), file=self.stream, flush=True)

    def message(self, text):
        print(text, file=self.stream, flush=True)

    def close(self):
        pass


class RichProgress(PlainProgress):
    """A rich progress bar: epoch, step, loss, metric, steps/s; a line per finished epoch above it."""

    def __init__(self, console=None):
        super().__init__()
        from rich.console import Console
        self.console = console or Console()
        self.bar = None
        self.task_id = None
        self.last_metric = None
        self.per_epoch = None

    def show_legend(self, text):
        if text:
            self.console.print(text, highlight=False, markup=False)

    def start(self, trainer):
        super().start(trainer)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self.per_epoch = trainer.cfg.steps_per_epoch
        self.bar = Progress(
            TextColumn("[bold]{task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("step {task.fields[step]}"), TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[metric]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            console=self.console, transient=False)
        self.bar.start()
        self.task_id = self.bar.add_task("train", total=self.per_epoch, epoch="", step=0, loss="-",
                                         metric="", rate="")

    def epoch_start(self, epoch, lr, total):
        self.bar.reset(self.task_id, total=total or self.per_epoch)  # (reset's **fields would replace all)
        self.bar.update(self.task_id, epoch=f"epoch {epoch + 1}/{self.epochs}")

    def step(self, record):
        super().step(record)
        rate = self.rate()
        self.bar.update(self.task_id, completed=record.get("batch", 0), step=record["step"],
                        loss=_fmt(record.get("loss")), rate=f"{rate:.1f} steps/s" if rate else "")

    def epoch_end(self, record):
        if self.metric and record.get(self.metric) is not None:
            self.last_metric = f"{self.metric} {_fmt(record[self.metric], '.4g')}"
        self.per_epoch = self.per_epoch or record.get("batches")
        self.bar.update(self.task_id, metric=self.last_metric or "")
        self.bar.console.print(epoch_line(record, self.epochs, self.metric, self.rate()), highlight=False)

    def message(self, text):
        self.bar.console.print(text, highlight=False) if self.bar else print(text)

    def close(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def make_progress(quiet: bool = False):
    """Rich bar on a terminal, plain per-epoch lines otherwise (or nothing when quiet)."""
    from .trainer import NullProgress
    if quiet:
        return NullProgress()
    if sys.stdout.isatty():
        return RichProgress()
    return PlainProgress()
