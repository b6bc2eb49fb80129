"""Command-line overrides of spec values: `--set training.lr=0.01` (dotted path = YAML value)."""
from __future__ import annotations

import copy

from compiler.errors import SpecError, TimeloomError
from compiler.loader import load_yaml


def parse(item: str) -> tuple[list, object]:
    """"training.bptt.truncate=20" -> (["training", "bptt", "truncate"], 20)."""
    key, eq, text = item.partition("=")
    if not eq or not key.strip() or not text.strip():
        raise TimeloomError(f"--set {item!r}: write KEY=VALUE, e.g. --set training.lr=0.01")
    path = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
    try:
        value, _ = load_yaml(text, f"--set {key}")
    except SpecError as e:
        raise TimeloomError(f"--set {item}: the value is not valid YAML ({e.errors[0].message})") from e
    return path, value


def apply(spec: dict, items: list[str]) -> dict:
    """A copy of the spec dict with every override applied (intermediate mappings are created)."""
    spec = copy.deepcopy(spec)
    for item in items:
        path, value = parse(item)
        node = spec
        for i, part in enumerate(path[:-1]):
            nxt = node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else \
                node.get(part) if isinstance(node, dict) else None
            if nxt is None and isinstance(node, dict):
                nxt = node[part] = {}
            if not isinstance(nxt, (dict, list)):
                where = ".".join(str(p) for p in path[:i + 1])
                raise TimeloomError(f"--set {item}: '{where}' is not a mapping or list")
            node = nxt
        last = path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or last >= len(node):
                raise TimeloomError(f"--set {item}: no item {last} in that list")
        node[last] = value
    return spec


def explain(err: SpecError, items: list[str]) -> list[str]:
    """Messages for spec errors found after overrides: name the --set that caused each one."""
    keys = {"/" + "/".join(str(p) for p in parse(i)[0]): i for i in items}
    lines = []
    for issue in err.errors:
        cause = next((item for ptr, item in keys.items() if issue.path == ptr or issue.path.startswith(ptr + "/")
                      or ptr.startswith(issue.path + "/") and issue.path), None)
        where = f"--set {cause}" if cause else f"{issue.file}"
        lines.append(f"{where}: {issue.severity}: {issue.message}")
    return lines
