"""Command-line overrides of spec values: `--set training.lr=0.01` (dotted path = YAML value).

A path that goes into a named entry of `inputs:`, `units:`, `blocks:`, `outputs:` or
`templates:` must name one that exists (`--set units.h.size=32`); a typo is an error with a
"did you mean" instead of a new, unconnected unit. A new entry is added only when the whole
entry is given as a mapping: `--set units.h2={size: 8, activation: tanh}` (and then the
compiler's warnings say when it is not connected to anything).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from .errors import SpecError, SpecIssue
from .loader import load_yaml
from .schema import did_you_mean

MAX_PARTS = 16  # the deepest spec path is far shorter; longer keys are typos or attacks
NAMED = {"inputs": "input", "units": "unit", "blocks": "block", "outputs": "output", "templates": "template"}


def parse(item: str) -> tuple[list, object]:
    """"training.bptt.truncate=20" -> (["training", "bptt", "truncate"], 20)."""
    key, eq, text = item.partition("=")
    if not eq or not key.strip() or not text.strip():
        _refuse(repr(_short(item)), "write KEY=VALUE, e.g. --set training.lr=0.01")
    parts = key.strip().split(".")
    if len(parts) > MAX_PARTS:
        _refuse(_short(key), f"the key has {len(parts)} dotted parts (at most {MAX_PARTS}); "
                "a spec path is a few names such as training.bptt.truncate")
    if any(not p.strip() for p in parts):
        _refuse(_short(item), "the key has an empty part (two dots in a row, or a dot at an end); "
                "write e.g. units.h.size=32")
    path = [int(p) if p.isascii() and p.isdigit() else p for p in parts]
    try:
        value, _ = load_yaml(text, f"--set {key}")
    except SpecError as e:
        _refuse(_short(item), f"the value is not valid YAML ({e.errors[0].message})")
    return path, value


def _refuse(item: str, message: str):
    """A malformed or misdirected --set, reported as the spec's errors are (`--set ITEM: error: ...`)."""
    raise SpecError([OverrideIssue("--set", 0, 0, "", message, "error", item)])


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def check_names(spec: dict, path: list, value, item: str) -> None:
    """A path into `units:` (inputs, blocks, outputs, templates) names an entry that exists, or
    (two parts, a mapping value) adds a whole new entry."""
    if len(path) < 2 or path[0] not in NAMED or not isinstance(spec, dict):
        return
    section, name, kind = path[0], path[1], NAMED[path[0]]
    entries = spec.get(section)
    entries = entries if isinstance(entries, dict) else {}
    if name in entries:
        return
    if len(path) == 2 and isinstance(value, dict):
        return  # a whole new entry
    names = [str(n) for n in entries]
    hint = did_you_mean(name, names)
    have = f"the spec's {section}: {', '.join(names)}" if names else f"the spec has no {section}"
    example = "{size: 8, activation: tanh}" if section == "units" else \
        "{size: 3}" if section == "inputs" else "{loss: mse}" if section == "outputs" else "{type: lstm, size: 8}" \
        if section == "blocks" else "{...}"
    _refuse(_short(item), f"there is no {kind} '{name}'{hint} ({have}); to add a new {kind}, give its "
                          f"whole entry, e.g. --set {section}.{name}={example}")


def apply(spec: dict, items: list[str]) -> dict:
    """A copy of the spec dict with every override applied (intermediate mappings are created)."""
    spec = copy.deepcopy(spec)
    for item in items:
        path, value = parse(item)
        check_names(spec, path, value, item)
        node = spec
        for i, part in enumerate(path[:-1]):
            nxt = node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else \
                node.get(part) if isinstance(node, dict) else None
            if nxt is None and isinstance(node, dict):
                nxt = node[part] = {}
            if not isinstance(nxt, (dict, list)):
                where = ".".join(str(p) for p in path[:i + 1])
                _refuse(_short(item), f"'{where}' is not a mapping or list")
            node = nxt
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last >= len(node):
                _refuse(_short(item), f"no item {last} in that list")
        node[last] = value
    return spec


@dataclass(frozen=True)
class OverrideIssue(SpecIssue):
    """A spec problem caused by a `--set`: printed as `--set KEY=VALUE: error: message`."""

    cause: str = ""

    def __str__(self) -> str:
        return f"--set {self.cause}: {self.severity}: {self.message}"


def _pointers(items: list[str]) -> dict:
    """{"/units/h/size": "units.h.size=32", ...}: each --set's spec path (parsed once)."""
    return {"/" + "/".join(str(p) for p in parse(i)[0]): i for i in items}


def _cause(issue: SpecIssue, keys: dict) -> str | None:
    if issue.path in keys:
        return keys[issue.path]
    return next((item for ptr, item in keys.items() if issue.path.startswith(ptr + "/")
                 or ptr.startswith(issue.path + "/") and issue.path), None)


def attribute(issues: list[SpecIssue], items: list[str]) -> list[SpecIssue]:
    """The issues, each one that a --set caused turned into an OverrideIssue naming that --set."""
    out = []
    keys = _pointers(items) if items else {}
    for issue in issues:
        cause = _cause(issue, keys) if items else None
        if cause is None:
            out.append(issue)
        else:
            out.append(OverrideIssue(issue.file, issue.line, issue.column, issue.path, issue.message,
                                     issue.severity, cause))
    return out


def explain(err: SpecError, items: list[str]) -> list[str]:
    """Messages for spec errors found after overrides: name the --set that caused each one."""
    lines = []
    for issue in attribute(err.errors, items):
        lines.append(str(issue) if isinstance(issue, OverrideIssue) else f"{issue.file}: {issue.severity}: "
                     f"{issue.message}")
    return lines
