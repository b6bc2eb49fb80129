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
        self.explicit: dict[int, set] = {}  # mapping node -> its key nodes written out (not merged in)

    def build(self, node, path=()):
        self.count += 1
        if self.count > MAX_NODES:
            raise _Bomb(node)
        self.positions[path] = _mark(node)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            line, col = _mark(node)
            self.issues.append(SpecIssue(self.positions.file, line, col, pointer(path),
                                         f"the YAML tag '{node.tag}' is not supported; remove it "
                                         "(a spec holds plain mappings, lists and scalars)"))
        if isinstance(node, yaml.MappingNode):
            return self.build_mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,)) for i, v in enumerate(node.value)]
        return self.loader.construct_object(node)


    def build_mapping(self, node, path):
        """A mapping; `<<: *base` merges are allowed and the keys written out override merged ones."""
        if id(node) not in self.explicit:  # a node reached again through an alias is already flattened
            self.explicit[id(node)] = {id(k) for k, _ in node.value if k.tag != _MERGE}
            self.loader.flatten_mapping(node)
        explicit = self.explicit[id(node)]
        out, merged = {}, set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                self.issues.append(SpecIssue(self.positions.file, line, col, pointer(path),
                                             "a key must be a plain name, not a list or a mapping"))
                continue
            key = self.loader.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                key = str(key)
            if key in out and key not in merged:
                line, col = _mark(key_node)
                first = self.positions.keys.get(path + (key,), ("?", "?"))
                self.issues.append(SpecIssue(
                    self.positions.file, line, col, pointer(path + (key,)),
                    f"duplicate key '{key}' (first defined at line {first[0]}); "
                    "remove one of them or merge their contents"))
                continue
            if id(key_node) in explicit:
                merged.discard(key)
            else:
                merged.add(key)
            self.positions.keys[path + (key,)] = _mark(key_node)
            out[key] = self.build(value_node, path + (key,))
        return out


_MERGE = "tag:yaml.org,2002:merge"
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _Bomb(Exception):
    def __init__(self, node):
        self.node = node


def load_yaml(text: str, file: str = "<spec>"):
    """Parse YAML text -> (data, Positions). Raises SpecError with positions on any problem."""
    positions = Positions(file)
    try:
        loader = _CountingLoader(text)
    except yaml.YAMLError as e:  # a control character (NUL, \x01, \x7f): the reader refuses the text
        at = getattr(e, "position", 0) or 0
        line, col = text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1
        char = getattr(e, "character", None)
        what = f"the control character U+{char:04X}" if isinstance(char, int) else "a character YAML does not allow"
        raise SpecError([SpecIssue(file, line, col, "", f"the spec holds {what}; YAML text cannot contain it: "
                                                        "remove it (or write it as an escape in a quoted string)")]) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            raise SpecError([SpecIssue(file, line, col, "",
                                       f"YAML syntax error: {_explain_yaml(e, text)}")]) from None
        except yaml.YAMLError as e:
            raise SpecError([SpecIssue(file, 1, 1, "", f"YAML error: {e}")]) from None
        if loader.alias_count > MAX_ALIASES:
            raise SpecError([SpecIssue(file, 1, 1, "",
                                       f"the spec uses {loader.alias_count} YAML aliases (limit "
                                       f"{MAX_ALIASES}): too many to be safe (alias bomb?); expand them "
                                       "by hand or use a template")])
        if node is None:
            raise SpecError([SpecIssue(file, 1, 1, "", "the spec is empty; start with 'timeloom: 1'")])
        bomb = _alias_bomb(node)
        if bomb is not None:
            line, col = _mark(bomb[0])
            what = (f"expands to {bomb[1]:,} nodes through nested aliases (limit {MAX_NODES:,})"
                    if bomb[1] != float("inf") else "contains itself through an alias (a recursive &anchor)")
            raise SpecError([SpecIssue(file, line, col, "",
                                       f"YAML alias bomb (\"billion laughs\"): this value {what}; "
                                       "write the data out without nesting &anchors and *aliases")])
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
        except ValueError as e:  # an integer of thousands of digits (Python's int() limit)
            raise SpecError([SpecIssue(file, 1, 1, "", f"a number in the spec cannot be read ({e}); "
                                                       "write a value of ordinary size")]) from None
        if builder.issues:
            raise SpecError(builder.issues)
        return data, positions
    except RecursionError:
        raise SpecError([SpecIssue(file, 1, 1, "", "the spec nests lists/mappings too deeply to read "
                                                   "(hundreds of levels); flatten it")]) from None
    finally:
        loader.dispose()


def _alias_bomb(root):
    """(node, size: int or inf) for the deepest node whose alias-expanded size exceeds MAX_NODES, else None.

    Aliases share one node object, so sizes are memoized per node: linear in the document."""
    sizes: dict[int, float] = {}

    def size(node) -> float:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = float("inf")  # a node that (through an alias) contains itself never ends
        total = 1 + sum(size(c) for c in _children(node))
        sizes[key] = total if total == float("inf") else int(total)
        return sizes[key]

    if size(root) <= MAX_NODES:
        return None
    node, seen = root, set()
    while True:
        seen.add(id(node))
        big = next((c for c in _children(node) if size(c) > MAX_NODES), None)
        if big is None or id(big) in seen:  # id(big) in seen: a recursive anchor, report where it starts
            return node, size(node)
        node = big


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [n for kv in node.value for n in kv]
    return node.value if isinstance(node, yaml.SequenceNode) else []


_YAML_HINTS = (  # (substring of PyYAML's problem, explanation); {ctx} = where the context started
    ("'\\t'", "a tab character; YAML indentation must use spaces, not tabs"),
    ("expected <block end>, but found '<block mapping start>'",
     ("bad indentation: this line does not line up with the mapping that starts at {ctx}; "
      "the keys of one mapping must start in the same column")),
    ("expected <block end>, but found '<block sequence start>'",
     ("bad indentation: this list item does not line up with the block that starts at {ctx}; "
      "the items of one list must start in the same column")),
    ("expected <block end>", "bad indentation: this line does not line up with the block that starts at {ctx}"),
    ("mapping values are not allowed here",
     ("unexpected ':' here; check the indentation (is this line indented deeper than the key above it? "
      "keys of one mapping must line up) or quote a value that contains ': '")),
    ("expected ',' or '}'", "the '{{' at {ctx} is not closed; add the missing '}}'"),
    ("expected ',' or ']'", "the '[' at {ctx} is not closed; add the missing ']'"),
    ("could not find expected ':'", "a key is missing its ':' (the entry starts at {ctx})"),
    ("but found another document", "a spec is one YAML document; remove this '---' (or split the file)"),
    ("found undefined alias", "{problem}: define the anchor (&name) before using it (*name)"),
    ("found unexpected end of stream", "{problem}: the quote at {ctx} is not closed"),
)


def _explain_yaml(e: yaml.MarkedYAMLError, text: str) -> str:
    """PyYAML's problem text -> what is wrong and how to fix it."""
    problem = e.problem or "invalid YAML"
    cm = e.context_mark
    ctx = f"line {cm.line + 1}, column {cm.column + 1}" if cm else "the line above"
    for needle, explanation in _YAML_HINTS:
        if needle in problem:
            return explanation.format(ctx=ctx, problem=problem)
    if "\t" in text:
        return f"{problem} (YAML indentation must use spaces, not tabs)"
    return f"{problem} ({e.context} at {ctx})" if e.context else problem


MAX_SPEC_BYTES = 64 << 20  # a spec is text a person writes; beyond this it is not one
NOT_REGULAR = "not a regular file (a device, a pipe or a socket)"


def file_kind(path) -> str | None:
    """None for a regular file, else what `path` is instead: "missing", "a folder" or NOT_REGULAR (reading
    a device such as /dev/zero or a pipe may never end). The one check before the spec, data,
    parameter and ONNX files are read."""
    path = Path(path)
    if path.is_file():
        return None
    if not path.exists():
        return "missing"
    return "a folder" if path.is_dir() else NOT_REGULAR


def load_file(path) -> tuple[object, Positions]:
    path = Path(path)
    try:
        if file_kind(path) == NOT_REGULAR:
            raise SpecError([SpecIssue(str(path), 0, 0, "", f"is {NOT_REGULAR}; "
                                                            "give a YAML file such as specs/elman.yaml")])
        if path.is_file() and path.stat().st_size > MAX_SPEC_BYTES:
            raise SpecError([SpecIssue(str(path), 0, 0, "", f"holds {path.stat().st_size:,} bytes, more than a spec "
                                                            f"can ({MAX_SPEC_BYTES >> 20} MiB); give a YAML spec file")])
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise SpecError([SpecIssue(str(path), 0, 0, "", f"file not found{where}; check the path")]) from None
    except IsADirectoryError:
        raise SpecError([SpecIssue(str(path), 0, 0, "", "is a directory, not a spec; give a YAML file "
                                                        "such as specs/elman.yaml")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([SpecIssue(str(path), 0, 0, "", f"cannot read the spec: {e}")]) from None
    return load_yaml(text, str(path))
