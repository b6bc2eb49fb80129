"""The registries every list of names is derived from, and what the schema takes from them.

  activations  runtime.primitives.ACTIVATIONS     (forward, backward, ONNX operator, arguments)
  optimizers   runtime.train.optimizers.OPTIMIZERS (class: default_lr, settings it reads)
  blocks       compiler.blocks.BUILTINS            (expansion function)
  tasks        runtime.data.TASKS                  (task class)

`fill_schema(schema)` writes their names into the schema's enums when the schema is loaded
(compiler/schema.py), so validation always follows the registries; tests/compiler/
test_registries.py fails when schemas/timeloom.schema.json on disk drifts from them (editors read
the file for completion). `training_issues` refuses an optimizer setting the chosen optimizer does
not read. The runtime is imported lazily, inside the functions: the compiler does not need it
until a spec is validated.
"""
from __future__ import annotations

import copy

from .errors import SpecIssue

# where each registry's names sit in the schema: (path, registry)
ENUMS = (
    (("$defs", "activation", "else", "then", "enum"), "activations"),
    (("$defs", "training", "properties", "optimizer", "enum"), "optimizers"),
    (("$defs", "data", "properties", "task", "enum"), "tasks"),
    (("properties", "templates", "propertyNames", "not", "enum"), "blocks"),
    (("$defs", "block", "allOf", -1, "if", "properties", "type", "enum"), "blocks"),
)


def activations() -> dict:
    from runtime.primitives import ACTIVATIONS
    return ACTIVATIONS


def plain_activations() -> list[str]:
    """Activations written as a bare name (the others take arguments: {scaled_sigmoid: [lo, hi]})."""
    return [n for n, a in activations().items() if not a.args]


def optimizers() -> dict:
    from runtime.train.optimizers import OPTIMIZERS
    return OPTIMIZERS


def default_optimizer() -> str:
    from runtime.train.optimizers import DEFAULT_OPTIMIZER
    return DEFAULT_OPTIMIZER


def blocks() -> dict:
    from .blocks import BUILTINS
    return BUILTINS


def tasks() -> dict:
    from runtime.data import TASKS
    return TASKS


def names(registry: str) -> list[str]:
    if registry == "activations":
        return plain_activations()
    return list({"optimizers": optimizers, "blocks": blocks, "tasks": tasks}[registry]())


def _node(schema, path):
    for p in path:
        schema = schema[p]
    return schema


def fill_schema(schema: dict) -> dict:
    """A copy of `schema` with every registry-derived enum set from the registries."""
    schema = copy.deepcopy(schema)
    for path, registry in ENUMS:
        parent = _node(schema, path[:-1])
        parent[path[-1]] = names(registry)
    return schema


def drift(schema: dict) -> list[str]:
    """Where `schema` (e.g. the file on disk) differs from the registries, one line each."""
    out = []
    for path, registry in ENUMS:
        have = _node(schema, path)
        want = names(registry)
        if have != want:
            out.append(f"{'/'.join(map(str, path))}: {have} should be {want} (from the {registry} registry)")
    return out


def optimizer_settings() -> dict:
    """setting key -> the optimizers that read it."""
    found = {}
    for name, cls in optimizers().items():
        for key in cls.settings:
            found.setdefault(key, []).append(name)
    return found


def training_issues(data, positions) -> list[SpecIssue]:
    """An optimizer setting in `training:` that the chosen optimizer does not read is an error (it would
    silently do nothing: `momentum` with adam, `betas` with sgd)."""
    training = data.get("training") if isinstance(data, dict) else None
    if not isinstance(training, dict):
        return []
    kind = training.get("optimizer", default_optimizer())
    cls = optimizers().get(kind) if isinstance(kind, str) else None
    if cls is None:
        return []  # an unknown optimizer: the schema's enum says so
    issues = []
    for key, readers in optimizer_settings().items():
        if key in training and key not in cls.settings:
            reads = ", ".join(["lr", *cls.settings])
            issues.append(positions.issue(
                ("training", key), f"training.{key} is not read by optimizer {kind} (it reads {reads}); remove "
                                   f"it, or use an optimizer that reads it: {', '.join(readers)}", at_key=True))
    return issues
