"""Finding the data task of a spec (`data:` section) through runtime.data.make_task."""
from __future__ import annotations

from compiler.errors import DataError, TrainingError

REQUIRED = ("train_batches", "validation", "evaluate", "baseline", "metric", "higher_is_better")


def load_task(program, seed: int):
    """The spec's task: make_task(program, data_spec, seed); DataError when it cannot be built."""
    data = program.data
    if not data:
        from runtime.data.suggest import no_data_hint
        raise TrainingError(no_data_hint(program))
    try:
        from runtime.data import make_task
    except ImportError as e:
        raise TrainingError(f"data task '{data.get('task')}' is not available: the built-in tasks "
                            f"(runtime/data) cannot be imported ({e})") from e
    task = make_task(program, data, seed)
    missing = [a for a in REQUIRED if not hasattr(task, a)]
    if missing:
        raise DataError(f"data task '{data.get('task')}' lacks {', '.join(missing)}")
    return task
