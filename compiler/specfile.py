"""One way in for every entry point: read a spec (file or dict), apply `--set` overrides, compile.

`load_spec(path, overrides)` is what `timeloom run`, `inspect`, `sweep`, a sweep's trials and
a resumed run use; a SpecError it raises names, for each problem, the file position or the
`--set` that caused it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import overrides as _overrides
from .errors import SpecError
from .loader import Positions, load_file
from .program import Program, compile_spec


@dataclass
class Loaded:
    program: Program
    spec: dict  # the spec as a plain dict, overrides applied (what a run directory records)
    source: str  # the file it came from (or the name given for a dict)


def load_spec(source, overrides=(), *, file: str | None = None) -> Loaded:
    """Compile `source` (a path, or an already-loaded spec dict with `file=` naming where it came
    from) with the `--set` overrides (["training.lr=0.01", ...]) applied.

    Raises TimeloomError for a malformed or misdirected --set (an unknown unit, block, ...), and
    SpecError listing every problem of the result, each placed at its line in the file or
    attributed to the --set that caused it (compiler.overrides.OverrideIssue)."""
    items = list(overrides)
    if isinstance(source, (str, Path)):
        data, positions = load_file(source)
        name = file or str(source)
    else:
        data, positions = source, Positions(file or "<dict>")
        name = file or "<dict>"
    if items:
        data = _overrides.apply(data, items)
    try:
        program = compile_spec(data, file=name, positions=positions)
    except SpecError as e:
        raise SpecError(_overrides.attribute(e.errors, items)) from None
    if items:
        program.warnings = _overrides.attribute(program.warnings, items)
    return Loaded(program, program.spec, name)
