"""Built-in data tasks: the spec's `data:` section as batches, validation data and metrics.

`make_task(program, data_spec, seed)` builds the task a spec names; `TASKS` maps each task
name to its class. Every task follows the interface of `base.Task` (docs/ARCHITECTURE.md,
"Training"): `train_batches(batch_size, rng)`, `validation()`, `evaluate(net)`, `baseline()`.
"""
from __future__ import annotations

from compiler.errors import DataError

from .adding import Adding
from .anbncn import AnBn, AnBnCn
from .base import Batch, Task, one_hot, pad
from .copy_memory import CopyMemory
from .files import Files
from .mackey_glass import MackeyGlass, mackey_glass
from .reber import EmbeddedReber
from .text import Text

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (AnBnCn, AnBn, EmbeddedReber, Adding, CopyMemory, MackeyGlass, Text, Files)
}


def make_task(program, data_spec: dict | None = None, seed: int = 0) -> Task:
    """The task of `data_spec` (default: the program's `data:` section), bound to the
    program's input and loss-carrying output; DataError names any bad parameter."""
    spec = program.data if data_spec is None else data_spec
    if not isinstance(spec, dict) or not spec:
        from .suggest import no_data_hint
        raise DataError(no_data_hint(program))
    name = spec.get("task", "files" if "files" in spec else None)
    if name not in TASKS:
        raise DataError(f"data.task must be one of {', '.join(TASKS)}, got {name!r}")
    return TASKS[name](program, seed, **task_params(spec))


def task_params(data_spec: dict) -> dict:
    """The task's own parameters: the data section without its `task:` key."""
    return {k: v for k, v in data_spec.items() if k != "task"}


__all__ = [
    "TASKS",
    "Adding",
    "AnBn",
    "AnBnCn",
    "Batch",
    "CopyMemory",
    "DataError",
    "EmbeddedReber",
    "Files",
    "MackeyGlass",
    "Task",
    "Text",
    "mackey_glass",
    "make_task",
    "one_hot",
    "pad",
    "task_params",
]
