"""Command-line overrides of spec values (`--set training.lr=0.01`): moved to compiler.overrides,
which every entry point uses through compiler.load_spec; re-exported here for old imports."""
from __future__ import annotations

from compiler.overrides import MAX_PARTS, OverrideIssue, apply, attribute, check_names, explain, parse

__all__ = ["MAX_PARTS", "OverrideIssue", "apply", "attribute", "check_names", "explain", "parse"]
