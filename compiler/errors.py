"""One exception tree for timeloom; spec problems are collected values with a position."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SpecIssue:
    """One problem found in a spec: where it is and what to do about it."""

    file: str
    line: int
    column: int
    path: str  # JSON-pointer-like, e.g. "/connections/2/to"
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        if self.line <= 0:  # about the whole file (not found, not readable): no place inside it
            return f"{self.file}: {self.severity}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"


class TimeloomError(Exception):
    """Base of every error timeloom raises on purpose."""


class SpecError(TimeloomError):
    """The spec is invalid; `.errors` lists every problem found (file, line, column, path, message)."""

    def __init__(self, errors: list[SpecIssue]):
        # in file order, as a compiler lists them (the stages that found them run in another order)
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.column))
        super().__init__("\n".join(str(e) for e in self.errors) or "invalid spec")


class UsageError(TimeloomError, ValueError):
    """An API call with an impossible argument (e.g. `Program.unroll(0)`, an unknown executor);
    also a ValueError, so callers that caught the ValueError it used to be keep working."""


class DataError(TimeloomError):
    """Input or target arrays do not fit the network (shape, dtype, NaN)."""


class CheckpointError(TimeloomError):
    """A checkpoint cannot be read or does not belong to this spec."""


class TrainingError(TimeloomError):
    """Training cannot go on (e.g. a NaN or Inf loss)."""


def pointer(path) -> str:
    """A JSON path tuple as a pointer string: ("connections", 2, "to") -> "/connections/2/to"."""
    return "/" + "/".join(str(p) for p in path) if path else ""
