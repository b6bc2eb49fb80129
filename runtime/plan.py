"""The step program of a component: what the scan of one recurrent component does at each step.

`make_plan` sorts every connection into a component's unit into the part computed for all
time steps before the scan (hoisted: fused GEMMs over T*B rows) and the terms summed inside
the step, grouping the full-weight connections that share a source and a delay into one
fused product per step (the four LSTM gates reading h_{t-1}). The interpreter
(runtime/scan.py) walks a Plan step by step; runtime/jit/codegen.py writes it out as one
compiled scan.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Group:
    """Full-weight connections sharing a source and a delay: one GEMM."""

    source: str
    delay: int
    members: list  # [Connection]
    stop_gradient: bool = False  # its members carry `gradient: stop`: the source gets no error from it
    slices: dict = field(default_factory=dict)  # connection name -> slice of the fused output
    width: int = 0


@dataclass
class Plan:
    units: tuple
    direction: int
    hoist_groups: list  # [Group] external, full, no source gate
    hoist_single: dict  # unit -> [Connection] external, other weights or source-gated by an external gate
    late_gate: set  # names of hoisted connections whose target gate lies inside the component
    step_groups: list  # [Group] internal full connections without source gate
    terms: dict  # unit -> [(kind, connection, group)] summed inside the scan: "group" (a fused step
    # GEMM's slice), "single" (any other in-scan connection), "late" (hoisted, gated inside)


def _group(conns, size):
    groups = {}
    for c in conns:
        key = (c.source, c.delay, c.stop_gradient)
        if key not in groups:
            groups[key] = Group(c.source, c.delay, [], c.stop_gradient)
        groups[key].members.append(c)
    for g in groups.values():
        start = 0
        for c in g.members:
            n = size(c.target)
            g.slices[c.name] = slice(start, start + n)
            start += n
        g.width = start
    return list(groups.values())


def make_plan(program, comp) -> Plan:
    inside = set(comp.units)
    hoist_full, hoist_single, step_full, step_single, late = [], {}, [], {}, set()
    for u in comp.units:
        for c in program.incoming(u):
            gate_in = c.gate is not None and c.gate.unit in inside
            source_gated = c.gate is not None and c.gate.at == "source"
            if c.source not in inside and not (gate_in and source_gated):
                if gate_in:
                    late.add(c.name)
                (hoist_full.append(c) if c.weight == "full" and not source_gated
                 else hoist_single.setdefault(u, []).append(c))
            elif c.weight == "full" and not source_gated and c.source in inside:
                step_full.append(c)
            else:
                step_single.setdefault(u, []).append(c)
    step_groups = _group(step_full, program.size)
    group_of = {c.name: g for g in step_groups for c in g.members}
    terms = {u: [("group", c, group_of[c.name]) for c in step_full if c.target == u]
             + [("single", c, None) for c in step_single.get(u, ())]
             + [("late", c, None) for c in program.incoming(u) if c.name in late] for u in comp.units}
    return Plan(comp.units, comp.direction, _group(hoist_full, program.size), hoist_single, late,
                step_groups, terms)
