"""The folded graph (units and connections), its recurrent components, and unrolling in time."""
from __future__ import annotations

import networkx as nx

from .model import Component, Connection, Unit


def folded_graph(inputs: dict, units: dict[str, Unit], connections: list[Connection]) -> nx.MultiDiGraph:
    """Units and inputs as nodes; connections, gates and leaks as edges (see docs/ARCHITECTURE.md)."""
    g = nx.MultiDiGraph()
    for name, size in inputs.items():
        g.add_node(name, kind="input", size=size)
    for u in units.values():
        g.add_node(u.name, kind="unit", size=u.size, activation=str(u.activation),
                   leak=u.leak is not None, initial=u.initial)
    for c in connections:
        gate = c.gate
        g.add_edge(c.source, c.target, key=c.name, kind="connection", param=c.name, delay=c.delay,
                   weight=c.weight, gate=gate.unit if gate else None,
                   gate_complement=bool(gate and gate.complement), gate_at=gate.at if gate else None)
        if gate is not None:
            g.add_edge(gate.unit, c.target, key=f"{c.name}:gate", kind="gate", delay=0, param=c.name)
    return g


def add_leaks(g: nx.MultiDiGraph, units: dict[str, Unit], direction: dict[str, int]) -> None:
    """A leaky unit reads its own previous output: a self-loop in its scan direction."""
    for u in units.values():
        if u.leak is not None:
            g.add_edge(u.name, u.name, key=f"{u.name}:leak", kind="leak",
                       delay=direction.get(u.name) or 1, param=f"{u.name}.alpha")


def zero_delay_graph(g: nx.MultiDiGraph) -> nx.DiGraph:
    """The same-step dependencies: connections with delay 0 and gate edges."""
    z = nx.DiGraph()
    z.add_nodes_from(g.nodes)
    z.add_edges_from((a, b) for a, b, d in g.edges(data=True) if d["delay"] == 0)
    return z


def scc_directions(g: nx.MultiDiGraph) -> tuple[list[set], dict[str, int], list[tuple]]:
    """Strongly connected components (leaks ignored) in topological order, the scan direction
    of each unit (+1, -1, 0) and the components whose delays mix both signs."""
    plain = nx.MultiDiGraph((a, b, k, d) for a, b, k, d in g.edges(keys=True, data=True) if d["kind"] != "leak")
    plain.add_nodes_from(g.nodes)
    cond = nx.condensation(plain)
    order = [cond.nodes[i]["members"] for i in nx.topological_sort(cond)]
    direction, mixed = {}, []
    for members in order:
        delays = {d["delay"] for a, b, d in plain.subgraph(members).edges(data=True)}
        signs = {1 if d > 0 else -1 for d in delays if d}
        if len(signs) > 1:
            mixed.append((members, delays))
        sign = signs.pop() if len(signs) == 1 else 0
        for m in members:
            direction[m] = sign
    return order, direction, mixed


def components(g: nx.MultiDiGraph, unit_names: list) -> list[Component]:
    """Components of units (leaks included now), each with its intra-step order.

    Ties are broken by the order units are defined in (`unit_names`), never by set order, so
    every process computes the same order (and sums gradients in the same order)."""
    cond = nx.condensation(g)
    zero = zero_delay_graph(g)
    rank = {name: i for i, name in enumerate(unit_names)}
    first = {i: min((rank.get(m, len(rank)) for m in cond.nodes[i]["members"]), default=0) for i in cond}
    out = []
    for i in nx.lexicographical_topological_sort(cond, key=first.get):
        members = sorted((m for m in cond.nodes[i]["members"] if m in rank), key=rank.get)
        if not members:
            continue
        sub = g.subgraph(members)
        delays = tuple(sorted({d["delay"] for _, _, d in sub.edges(data=True)}))
        signs = {1 if d > 0 else -1 for d in delays if d}
        direction = signs.pop() if len(signs) == 1 else 0
        inner = zero.subgraph(members)
        order = tuple(nx.lexicographical_topological_sort(inner, key=lambda n: members.index(n)))
        out.append(Component(order, direction, delays))
    return out


def unroll(program, steps: int) -> nx.DiGraph:
    """The computation graph over `steps` time steps: nodes (name, t); every edge goes from
    (source, t - delay) to (target, t). Reads outside [0, steps) come from initial-state nodes."""
    if not isinstance(steps, int) or steps < 1:
        from .errors import UsageError
        raise UsageError(f"unroll needs a positive number of steps, got {steps!r}")
    g = nx.DiGraph(name=program.name, steps=steps)
    for kind, names in (("input", program.inputs), ("unit", program.order)):
        for name in names:
            g.add_nodes_from(((name, t), {"kind": kind, "unit": name, "t": t}) for t in range(steps))
    merged: dict = {}  # folded edges on the same (source, target, delay) share one unrolled edge
    for a, b, d in program.graph.edges(data=True):
        conn = (d["param"],) if d["kind"] == "connection" else ()
        key = (a, b, d["delay"])
        if key in merged:
            merged[key]["params"] += conn
            merged[key]["kinds"] += (d["kind"],)
        else:
            merged[key] = {"kind": d["kind"], "kinds": (d["kind"],), "param": d["param"], "params": conn,
                           "delay": d["delay"], "gate": d.get("gate") if d["kind"] == "connection" else None}
    for (a, b, delay), attrs in merged.items():
        outside = [t - delay for t in range(steps) if not 0 <= t - delay < steps]
        g.add_nodes_from(((a, s), {"kind": "initial", "unit": a, "t": s}) for s in outside)  # h0; zeros for inputs
        g.add_edges_from(((a, t - delay), (b, t), attrs) for t in range(steps))
    return g
