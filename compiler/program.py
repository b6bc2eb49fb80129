"""`compile_spec`: YAML or dict -> validated, expanded `Program` (graph, params, components)."""
from __future__ import annotations

import copy
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

    def unroll(self, steps: int) -> nx.DiGraph:
        return graphs.unroll(self, steps)

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


def compile_spec(spec, file: str | None = None) -> Program:
    """Compile a spec (path, YAML text via `file=`, or an already-loaded dict) to a Program.

    Raises SpecError listing every problem found, each with file:line:col."""
    if isinstance(spec, (str, Path)) and file is None:
        data, positions = load_file(spec)
        source = str(spec)
    elif isinstance(spec, str):
        data, positions = load_yaml(spec, file)
        source = file
    else:
        data, positions, source = copy.deepcopy(spec), Positions(file or "<dict>"), file
    issues = validate(data, positions)
    if issues:
        raise SpecError(issues)
    ex = expand(data, positions)
    if ex.issues:
        raise SpecError(ex.issues)
    # before any graph or array is built: refuse what would not fit (compiler/budget.py)
    budget.check(budget.estimate_spec(data, ex.inputs, ex.units, ex.connections),
                 f"'{data.get('name', Path(source).stem if source else 'spec')}'",
                 budget.steps_setting(data.get("data")))
    g = graphs.folded_graph(ex.inputs, ex.units, ex.connections)
    problems = check(ex, g)
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
