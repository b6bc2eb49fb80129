"""When a trial counts as a success: a threshold on a metric, e.g. "mse<0.01".

The metric is any key of the run's epoch records (`loss`, `val_loss`, the task's metric) or of
its evaluation.json (the task's further metrics, e.g. adding's `solved_fraction`). A trial is
solved when the criterion holds at some epoch's evaluation (or at the final evaluation);
its steps to solve are the optimizer steps done by the first such epoch, as the papers count
"training sequences until solved" (also given: steps x batch_size).

Defaults per built-in task, from the papers the tasks come from:

    adding          mse < 0.01                 (Hochreiter & Schmidhuber 1997, exp. 4: mean error < 0.01)
    embedded_reber  fraction_correct >= 1      (every test string right, H&S 1997 exp. 1)
    anbn, anbncn    solved_up_to_n >= HI       (HI = train_n's upper end: every training length
                                                solved, Gers & Schmidhuber 2001)
    copy_memory     accuracy >= 0.99
    mackey_glass    nrmse < 0.01
    text, files     none: give --success
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from compiler.errors import TimeloomError

_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b}
_RE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+|inf)\s*$")


@dataclass(frozen=True)
class Criterion:
    metric: str
    op: str
    threshold: float
    source: str = "--success"  # or "default for task X"

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def holds(self, value) -> bool:
        try:
            v = float(value)
        except (TypeError, ValueError):
            return False
        return math.isfinite(v) and _OPS[self.op](v, self.threshold)

    def to_json(self) -> dict:
        return {"metric": self.metric, "op": self.op, "threshold": self.threshold, "source": self.source,
                "text": str(self)}


def parse(text: str) -> Criterion:
    m = _RE.match(text or "")
    if not m:
        raise TimeloomError(f"--success {text!r}: write METRIC<VALUE (or <=, >, >=), e.g. --success 'mse<0.01'")
    try:
        threshold = float(m.group(3))
    except ValueError:
        raise TimeloomError(f"--success {text!r}: {m.group(3)!r} is not a number") from None
    return Criterion(m.group(1), m.group(2), threshold)


def default(data: dict | None) -> Criterion | None:
    """The default criterion of a spec's `data:` section (None for tasks without one)."""
    data = data or {}
    task = data.get("task", "files" if "files" in data else None)
    src = f"default for task {task}"
    if task == "adding":
        return Criterion("mse", "<", 0.01, src)
    if task == "embedded_reber":
        return Criterion("fraction_correct", ">=", 1.0, src)
    if task in ("anbn", "anbncn"):
        hi = (data.get("train_n") or [1, 10])[-1]
        return Criterion("solved_up_to_n", ">=", float(hi), src)
    if task == "copy_memory":
        return Criterion("accuracy", ">=", 0.99, src)
    if task == "mackey_glass":
        return Criterion("nrmse", "<", 0.01, src)
    return None


def judge(criterion: Criterion | None, record: dict) -> tuple[bool | None, int | None, int | None]:
    """(solved, steps to solve, epoch solved) of a trial record; (None, None, None) without a criterion
    or for a trial with no result."""
    if criterion is None or record.get("status") == "failed":
        return None, None, None
    for r in record.get("history") or []:
        if r.get("kind", "epoch") == "epoch" and criterion.holds(r.get(criterion.metric)):
            return True, r.get("step"), r.get("epoch")
    ev = record.get("evaluation") or {}
    if criterion.holds(ev.get(criterion.metric)):
        return True, record.get("steps"), record.get("epochs")
    return False, None, None
