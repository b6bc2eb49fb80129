"""What to train a spec on when it has no `data:` section: the built-in tasks that fit it.

Each candidate below is tried against the spec by building the task itself (the task's own
checks of input size, output size, loss and `at`), so a proposal always fits; nothing here
restates a task's sizes. `CANDIDATES` has an entry for every task of runtime.data.TASKS but
`files` (the user's own arrays, which fit any spec and are proposed last).
"""
from __future__ import annotations

import os
from pathlib import Path


def _corpus(program) -> str:
    """The bundled text corpus, relative to the spec's folder when both are in one tree."""
    from runtime.data.corpus import BUNDLED
    base = Path(program.source).resolve().parent if program.source else Path.cwd()
    root = Path(BUNDLED).resolve().parent.parent  # the checkout the corpus belongs to
    inside = base == root or root in base.parents
    return os.path.relpath(BUNDLED, base) if inside else str(BUNDLED)


def _symbols(program) -> dict | None:
    k = next(iter(program.inputs.values()), 0)
    return {"symbols": k - 2, "lag": 10} if k >= 3 else None


# task name -> functions of the program giving the data: parameters to try (None: not applicable)
CANDIDATES = {
    "text": [lambda p: {"path": _corpus(p), "seq_len": 100},
             lambda p: {"path": _corpus(p), "mode": "end_of_word"}],
    "adding": [lambda p: {"length": 50}],
    "anbn": [lambda p: {}],
    "anbncn": [lambda p: {}],
    "embedded_reber": [lambda p: {}],
    "copy_memory": [_symbols],
    "mackey_glass": [lambda p: {"length": 3000}],
}


def _yaml(params: dict) -> str:
    inner = ", ".join(f"{k}: {v}" for k, v in params.items())
    return "{" + inner + "}"


def fitting_tasks(program, near: list | None = None) -> list[dict]:
    """The `data:` sections of the built-in tasks that fit the program as it is (task first).
    `near`, if given, receives (data section, reason) of the tasks whose sizes fit but whose
    loss or `at:` does not (one change to the output away)."""
    from compiler.errors import TimeloomError
    from runtime.data import TASKS

    fits = []
    for name, makers in CANDIDATES.items():
        for make in makers:
            try:
                params = make(program)
                if params is None:
                    continue
                TASKS[name](program, 0, **params)
            except (TimeloomError, ValueError, TypeError, KeyError, OSError) as e:
                text = str(e)
                if near is not None and (" has at: " in text or " has loss " in text):
                    near.append(({"task": name, **params}, text))
                continue
            fits.append({"task": name, **params})
            break
    return fits


def no_data_hint(program) -> str:
    """The message for a spec without `data:`: the tasks that fit its sizes, or how to make one fit."""
    carrying = [n for n, o in program.outputs.items() if o.loss != "none"]
    ins = ", ".join(f"{n}[{k}]" for n, k in program.inputs.items()) or "none"
    outs = ", ".join(f"{n}[{program.units[n].size}] ({program.outputs[n].loss})" for n in carrying) or "none"
    head = f"the spec has no data: section (inputs {ins}; outputs {outs}); "
    if not carrying:
        return head + ("it needs an output with a loss too: add e.g. `outputs: {y: {loss: mse}}` and a "
                       "data: section (docs/ARCHITECTURE.md, Training)")
    near: list = []
    fits = fitting_tasks(program, near)
    own = ("or train on your own arrays: `data: {files: {"
           + ", ".join(f"{n}: {n}.npy" for n in [*program.inputs, *carrying]) + "}}` (README, Your own data)")
    if not fits and near:
        return head + "; ".join(f"`data: {_yaml(d)}` fits the sizes, but {why}" for d, why in near) + "; " + own
    if not fits:
        return head + "no built-in task fits these sizes (runtime/data lists what each expects); " + own
    return head + "add one that fits it, e.g. " + "; ".join(f"`data: {_yaml(f)}`" for f in fits) + "; " + own
