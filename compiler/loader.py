"""Load YAML into plain data plus a table of source positions.

The text is composed into PyYAML's node tree (which knows every node's line and column),
checked for duplicate keys and alias bombs, and turned into plain dicts/lists. Positions
are kept in a side table keyed by JSON path, so later checks can say file:line:col.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from .errors import SpecError, SpecIssue, pointer

MAX_ALIASES = 100  # more alias uses than this is treated as a "billion laughs" attack
MAX_NODES = 200_000  # nodes after alias expansion


class Positions(dict):
    """JSON path tuple -> (line, column), 1-based; `find` falls back to the nearest parent."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.keys: dict = {}  # JSON path -> (line, column) of the mapping key itself

    def key(self, path) -> tuple[int, int]:
        """Position of the key that names `path` (falls back to the value's position)."""
        return self.keys.get(tuple(path)) or self.find(path)

    def find(self, path) -> tuple[int, int]:
        path = tuple(path)
        while path not in self and path:
            path = path[:-1]
        return self.get(path, (1, 1))

    def issue(self, path, message: str, severity: str = "error", at_key: bool = False) -> SpecIssue:
        line, col = self.key(path) if at_key else self.find(path)
        return SpecIssue(self.file, line, col, pointer(tuple(path)), message, severity)


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader that counts alias uses while composing, with YAML 1.2 floats (1e-3 is a number)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.alias_count = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
        return super().compose_node(parent, index)


_FLOAT_12 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_CountingLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_CountingLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, positions: Positions):
        self.loader = loader
        self.positions = positions
        self.issues: list[SpecIssue] = []
        self.count = 0

    def build(self, node, path=()):
        self.count += 1
        if self.count > MAX_NODES:
            raise _Bomb(node)
        self.positions[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            out = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    key = str(key)
                if key in out:
                    line, col = _mark(key_node)
                    first = self.positions.keys.get(path + (key,), ("?", "?"))
                    self.issues.append(SpecIssue(
                        self.positions.file, line, col, pointer(path + (key,)),
                        f"duplicate key '{key}' (first defined at line {first[0]}); "
                        "remove one of them or merge their contents"))
                    continue
                self.positions.keys[path + (key,)] = _mark(key_node)
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,)) for i, v in enumerate(node.value)]
        return self.loader.construct_object(node)


class _Bomb(Exception):
    def __init__(self, node):
        self.node = node


def load_yaml(text: str, file: str = "<spec>"):
    """Parse YAML text -> (data, Positions). Raises SpecError with positions on any problem."""
    positions = Positions(file)
    loader = _CountingLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = e.problem or "invalid YAML"
            hint = ""
            if "tab" in problem.lower() or "\t" in text:
                hint = " (YAML indentation must use spaces, not tabs)"
            raise SpecError([SpecIssue(file, line, col, "",
                                       f"YAML syntax error: {problem}{hint}")]) from None
        except yaml.YAMLError as e:
            raise SpecError([SpecIssue(file, 1, 1, "", f"YAML error: {e}")]) from None
        if loader.alias_count > MAX_ALIASES:
            raise SpecError([SpecIssue(file, 1, 1, "",
                                       f"the spec uses {loader.alias_count} YAML aliases (limit "
                                       f"{MAX_ALIASES}); expand them by hand or use a template")])
        if node is None:
            raise SpecError([SpecIssue(file, 1, 1, "", "the spec is empty; start with 'timeloom: 1'")])
        builder = _Builder(loader, positions)
        try:
            data = builder.build(node)
        except _Bomb as b:
            line, col = _mark(b.node)
            raise SpecError([SpecIssue(file, line, col, "",
                                       f"the spec expands to more than {MAX_NODES} YAML nodes "
                                       "(alias bomb?); write it without nested aliases")]) from None
        except yaml.constructor.ConstructorError as e:
            mark = e.problem_mark
            raise SpecError([SpecIssue(file, mark.line + 1, mark.column + 1, "",
                                       f"YAML error: {e.problem}")]) from None
        if builder.issues:
            raise SpecError(builder.issues)
        return data, positions
    finally:
        loader.dispose()


def load_file(path) -> tuple[object, Positions]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue(str(path), 0, 0, "", "file not found; check the path")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([SpecIssue(str(path), 0, 0, "", f"cannot read the spec: {e}")]) from None
    return load_yaml(text, str(path))
