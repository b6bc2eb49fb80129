"""Size checks of the generated tasks, made before any sequence is generated.

Each generated task states what it will hold at once (the validation set, a series) as a number
of time steps and of numbers; `check_series` and `check_numbers` refuse beyond the bounds of
compiler/budget.py (TIMELOOM_MAX_STEPS, TIMELOOM_MAX_MEMORY) with a DataError that names the
data: key to lower.
"""
from __future__ import annotations

from compiler import budget
from compiler.errors import DataError

PYTHON_FLOAT_BYTES = 32  # a float object and its list slot (series made step by step in Python)


def check_series(task: str, steps: int, setting: str) -> None:
    """A sequence or series of `steps` time steps, made one step at a time."""
    try:
        budget.check_steps(f"task {task}: the generated data", steps, setting)
    except budget.BudgetError as e:
        raise DataError(str(e)) from None


def check_numbers(task: str, what: str, numbers: int, bytes_each: int, setting: str) -> None:
    """`numbers` values of `bytes_each` bytes held at once."""
    try:
        budget.check_memory(f"task {task}: {what} ({numbers:,} numbers)", numbers * bytes_each)
    except budget.BudgetError as e:
        raise DataError(str(e).replace("make it smaller", f"lower {setting}")) from None
