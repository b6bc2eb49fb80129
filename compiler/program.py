"""`compile_spec`: YAML or dict -> validated, expanded `Program` (graph, params, components)."""
from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from . import budget
from . import graph as graphs
from .errors import SpecError
from .loader import Positions, load_file, load_yaml
from .model import Connection, ParamInfo, Unit
from .schema import validate
from .semantics import check
from .templates import expand


@dataclass
class Program:
    """A compiled spec: what the runtime needs and nothing else. Independent of the sequence length."""

    name: str
    inputs: dict  # name -> size
    units: dict  # name -> Unit
    connections: list  # [Connection]
    outputs: dict  # unit name -> Output
    params: dict  # name -> ParamInfo
    graph: nx.MultiDiGraph
    components: list  # [Component] in topological order
    spec: dict = field(default_factory=dict)
    source: str | None = None
    warnings: list = field(default_factory=list)

    @property
    def data(self) -> dict:
        return self.spec.get("data") or {}

    @property
    def training(self) -> dict:
        return self.spec.get("training") or {}

    @property
    def order(self) -> list[str]:
        """All units, component by component, each in intra-step order."""
        return [u for comp in self.components for u in comp.units]

    @property
    def direction(self) -> dict[str, int]:
        return {u: comp.direction for comp in self.components for u in comp.units}

    def incoming(self, unit: str) -> list[Connection]:
        # an index by target, made once per connections list: a scan per call is quadratic in
        # the number of units (10,000 units took minutes to build a Network)
        index = self.__dict__.get("_incoming")
        if index is None or index[0] is not self.connections or index[1] != len(self.connections):
            by_target: dict = {}
            for c in self.connections:
                by_target.setdefault(c.target, []).append(c)
            index = self.__dict__["_incoming"] = (self.connections, len(self.connections), by_target)
        return list(index[2].get(unit, ()))

    def size(self, name: str) -> int:
        return self.inputs[name] if name in self.inputs else self.units[name].size

    def read_back(self, unit: str) -> bool:
        """Is `unit` read with a delay >= 1 (output feedback, teacher forcing: its past values are
        read by the network)?"""
        return any(c.source == unit and c.delay > 0 for c in self.connections)

    def unroll(self, steps: int) -> nx.DiGraph:
        return graphs.unroll(self, steps)

    def receptive_field(self, window: int | None = None):
        """For every output and input, the lags through which the input reaches the output
        (compiler/receptive.py): a `ReceptiveField`; `.text()` is what `timeloom compile` prints."""
        from .receptive import receptive_field
        return receptive_field(self, window)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "inputs": dict(self.inputs),
            "units": {n: u.size for n, u in self.units.items()},
            "parameters": sum(_count(p.shape) for p in self.params.values() if p.trainable),
            "fixed_parameters": sum(_count(p.shape) for p in self.params.values() if not p.trainable),
            "components": [{"units": list(c.units), "direction": c.direction, "delays": list(c.delays)}
                           for c in self.components if c.recurrent],
        }


def _count(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def parameters(inputs: dict, units: dict[str, Unit], connections: list[Connection]) -> dict[str, ParamInfo]:
    params = {}

    def add(name, shape, init, trainable, kind, owner):
        params[name] = ParamInfo(name, tuple(shape), init, trainable, kind, owner)

    for c in connections:
        if c.weight == "full":
            src = inputs[c.source] if c.source in inputs else units[c.source].size
            add(c.name, (units[c.target].size, src), c.init, c.trainable, "weight", c.name)
        elif c.weight == "diagonal":
            add(c.name, (units[c.target].size,), c.init, c.trainable, "weight", c.name)
        if c.bias is not None:
            add(f"{c.name}.bias", (units[c.target].size,), c.bias, c.trainable, "conn_bias", c.name)
    for u in units.values():
        if u.bias is not None:
            add(f"{u.name}.bias", (u.size,), u.bias, u.bias_trainable, "bias", u.name)
        if u.leak is not None:
            add(f"{u.name}.alpha", (u.size,), u.leak.alpha, u.leak.trainable, "alpha", u.name)
        if u.initial == "learned":
            add(f"{u.name}.h0", (u.size,), {"kind": "zeros"}, True, "h0", u.name)
    return params


def compile_spec(spec, file: str | None = None, positions: Positions | None = None) -> Program:
    """Compile a spec (path, YAML text via `file=`, or an already-loaded dict) to a Program.

    Raises SpecError listing every problem found, each with file:line:col: the errors of every
    stage that can still run (schema, expansion, the per-connection and per-output checks), a
    later stage's error dropped where an earlier stage already reported that place.
    `positions`: the source positions of a dict (e.g. the file it was read from before
    overrides were applied)."""
    if isinstance(spec, (str, Path)) and file is None:
        data, positions = load_file(spec)
        source = str(spec)
    elif isinstance(spec, str):
        data, positions = load_yaml(spec, file)
        source = file
    else:
        data, source = copy.deepcopy(spec), file
        positions = positions if positions is not None else Positions(file or "<dict>")
        if file is not None and positions.file != file:
            positions.file = file
    issues = validate(data, positions)
    if issues:
        raise SpecError(issues + _later_stages(data, positions, issues))
    ex = expand(data, positions)
    if not ex.issues:  # before any graph or array is built: refuse what would not fit (compiler/budget.py)
        budget.check(budget.estimate_spec(data, ex.inputs, ex.units, ex.connections),
                     f"'{data.get('name', Path(source).stem if source else 'spec')}'",
                     budget.steps_setting(data.get("data")))
    g = graphs.folded_graph(ex.inputs, ex.units, ex.connections)
    if ex.issues:
        raise SpecError(ex.issues + _local_checks(ex, g, ex.issues))
    problems = check(ex, g) + _needs_outputs(data, ex, positions) + _data_params(data, positions)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise SpecError(errors)
    _, direction, _ = graphs.scc_directions(g)
    graphs.add_leaks(g, ex.units, direction)
    comps = graphs.components(g, list(ex.units))
    units = {u: ex.units[u] for comp in comps for u in comp.units}  # in computation order
    return Program(
        name=data.get("name", Path(source).stem if source else "spec"),
        inputs=ex.inputs, units=units, connections=ex.connections, outputs=ex.outputs,
        params=parameters(ex.inputs, units, ex.connections), graph=g, components=comps,
        spec=data, source=source, warnings=[p for p in problems if p.severity == "warning"])


def _new_mistakes(found, earlier) -> list:
    """The errors of `found` that are not at, inside or around a place an earlier stage reported
    (the same mistake seen again)."""
    places = _Places([e.path for e in earlier])
    return [i for i in found if i.severity == "error" and not places.overlaps(i.path)]


class _Places:
    """The paths of earlier issues, with every path above them: `overlaps` in the depth of a path,
    not in the number of issues (a spec with thousands of mistakes)."""

    def __init__(self, paths):
        self.exact = {p for p in paths if p}
        self.above = {q for p in self.exact for q in _prefixes(p)}  # every proper ancestor
        self.empty = any(not p for p in paths)

    def overlaps(self, path: str) -> bool:
        if path in self.exact or (self.empty and not path):
            return True
        if path and path in self.above:  # around an earlier place
            return True
        return any(q in self.exact for q in _prefixes(path))  # inside an earlier place


def _prefixes(path: str) -> list:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(2, len(parts))]


def _later_stages(data, positions, earlier) -> list:
    """After schema errors: the expansion's and the local checks' errors at other places (an
    unknown source next to a misspelt activation), or nothing when the data is too broken to
    expand (the schema's errors say why)."""
    if not isinstance(data, dict):
        return []
    try:
        ex = expand(data, positions, _defined_badly(earlier))
        g = graphs.folded_graph(ex.inputs, ex.units, ex.connections)
        found = ex.issues + _local_checks(ex, g, ex.issues + list(earlier)) + _data_params(data, positions)
    except Exception:  # noqa: BLE001 - invalid data may break any assumption of the later stages
        return []
    return _new_mistakes(found, earlier)


def _defined_badly(earlier) -> set:
    """The top-level units and blocks with a schema error inside their definitions (`blocks/enc/
    size` -> enc): not built by the later stages, so their connections raise no follow-on errors."""
    names = set()
    for issue in earlier:
        parts = issue.path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] in ("units", "blocks"):
            names.add(parts[1])
    return names


def _local_checks(ex, g, earlier) -> list:
    """The semantic checks that stay valid on a partly expanded spec: every connection's and
    output's own checks, and the loops among the parts that were built (not reachability:
    a missing part would make it report what is only a consequence)."""
    from .semantics import _check_connection, _check_loops, _check_output
    size = {**ex.inputs, **{n: u.size for n, u in ex.units.items()}}
    found = []
    try:
        for c in ex.connections:
            found += _check_connection(c, size, ex)
        for o in ex.outputs.values():
            if o.unit in ex.units:
                found += _check_output(o, ex.units[o.unit])
        found += _check_loops(ex, g)
    except Exception:  # noqa: BLE001 - a partly built spec may break an assumption; report what was found
        pass
    return _new_mistakes(found, earlier)


def _data_params(data, positions) -> list:
    """Keys of `data:` that its task does not take, found at compile time (the task checks its values
    when `run` builds it). The task registry is runtime.data.TASKS, imported here only when needed."""
    spec = data.get("data") if isinstance(data, dict) else None
    name = spec.get("task", "files" if "files" in spec else None) if isinstance(spec, dict) else None
    if not isinstance(name, str):
        return []
    from runtime.data import TASKS
    from runtime.data.base import COMMON_PARAMS

    kind = TASKS.get(name)
    if kind is None:
        return []  # the schema's enum reports an unknown task
    allowed = set(kind.PARAMS) | set(COMMON_PARAMS)
    issues = []
    for key in spec:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            issues.append(positions.issue(("data", key), f"data.{key} is not a parameter of task "
                                          f"{kind.name} (it takes: {', '.join(kind.PARAMS) or 'none'}){hint}",
                                          at_key=True))
    return issues


def _needs_outputs(data, ex, positions) -> list:
    """A spec with `data:` is meant to be trained: it needs at least one output with a loss."""
    if not isinstance(data, dict) or not data.get("data"):
        return []
    if any(o.loss != "none" for o in ex.outputs.values()):
        return []
    feeding = {c.source for c in ex.connections}
    sinks = [n for n in ex.units if n not in feeding] or list(ex.units) or ["y"]
    last = sinks[-1]
    what = "no outputs:" if not ex.outputs else "no output with a loss (every one has loss: none)"
    return [positions.issue(("data",), f"the spec has data: (it is meant to be trained) but {what}; "
                                       f"add the unit the task trains, e.g. `outputs: {{{last}: {{loss: mse}}}}` "
                                       f"(cross_entropy for a softmax unit), or remove data:", at_key=True)]
