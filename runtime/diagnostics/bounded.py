"""Keeping report.html bounded for large networks: samples of units, with a note saying so.

The report's pictures and tables grow with the number of units (a graph picture routes every
edge around every node; the gradient-flow picture draws one curve and legend entry per state
unit). Above the limits below a section shows a summary of the whole network (units per
block) and a *sampled view*: units evenly spaced in computation order (the first and the last
always among them, the outputs always kept), and says which and how many it left out.
"""
from __future__ import annotations

import html
from collections import OrderedDict
from types import SimpleNamespace

MAX_GRAPH_UNITS = 16  # graph pictures and the interactive viewer: units drawn
MAX_CURVES = 12  # gradient flow: state units plotted and tabulated
MAX_SPECTRA = 12  # eigenvalue pictures and table rows
MAX_LISTED = 40  # summary: unit names listed


def evenly(names: list, k: int) -> list:
    """k of `names` evenly spaced (first and last included), in their order; all when len <= k."""
    n = len(names)
    if n <= k:
        return list(names)
    if k <= 1:
        return list(names[:k])
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [names[i] for i in picks]


def note(text: str) -> str:
    return f'<p class="note sampled">{html.escape(text)}</p>'


def sampled_program(program, k: int = MAX_GRAPH_UNITS):
    """(view, kept units) of `program`: itself when it has at most k units, else an object with
    what graph drawing and unrolling read (name, inputs, order, units, graph) restricted to
    k units (outputs kept) and the edges among them and the inputs."""
    order = list(program.order)
    if len(order) <= k:
        return program, order
    outputs = [u for u in order if u in program.outputs]
    rest = [u for u in order if u not in program.outputs]
    keep = set(evenly(rest, max(2, k - len(outputs)))) | set(outputs)
    kept = [u for u in order if u in keep]
    graph = program.graph.subgraph(list(program.inputs) + kept).copy()
    view = SimpleNamespace(name=program.name, inputs=dict(program.inputs), order=kept,
                           units={u: program.units[u] for u in kept}, graph=graph,
                           outputs={u: o for u, o in program.outputs.items() if u in keep})
    return view, kept


def block_of(name: str) -> str:
    """The top-level block a unit belongs to ("s.l3.h" -> "s"); a top-level unit is its own."""
    return name.split(".", 1)[0]


def group_rows(program) -> list[dict]:
    """One row per top-level block (or top-level unit): its units, neurons and parameters."""
    groups: OrderedDict = OrderedDict()
    for u in program.order:
        g = groups.setdefault(block_of(u), {"block": block_of(u), "units": 0, "neurons": 0, "parameters": 0})
        g["units"] += 1
        g["neurons"] += program.units[u].size
    for p in program.params.values():
        owner = p.owner
        target = owner.split("->", 1)[1] if "->" in owner else owner
        target = target.split("@", 1)[0].split("#", 1)[0]
        g = groups.get(block_of(target))
        if g is not None:
            n = 1
            for d in p.shape:
                n *= d
            g["parameters"] += n
    return list(groups.values())


def graph_summary(program, kept: list) -> str:
    """The note and the per-block table of a graph section drawn from a sample."""
    from .report import table

    total = len(program.order)
    edges = program.graph.number_of_edges()
    groups = group_rows(program)
    return (note(f"Large network: {total:,} units and {edges:,} connections (folded graph). The pictures "
                 f"below are a sampled view of {len(kept)} units (evenly spaced in computation order, "
                 f"outputs kept; edges to left-out units are not drawn); {total - len(kept):,} units are "
                 f"left out. The whole graph: timeloom compile SPEC --folded -o graph.json (or .graphml).")
            + "<h3>Units per block</h3>" + table(groups[:MAX_LISTED])
            + (note(f"{len(groups) - MAX_LISTED} more blocks left out.") if len(groups) > MAX_LISTED else ""))


def listed(names: list, k: int = MAX_LISTED) -> str:
    """Names joined, or the first and last ones with how many are left out."""
    if len(names) <= k:
        return ", ".join(names)
    half = k // 2
    return ", ".join(names[:half]) + f", ... ({len(names) - k:,} more) ..., " + ", ".join(names[-half:])


DIAG_UNIT_STEPS = 8_000  # large networks: units x time steps of one diagnostic pass
MIN_DIAG_STEPS = 4


def diag_steps(program, wanted: int) -> int:
    """The longest sequence the diagnostics run on: `wanted`, cut for a large network (more than
    MAX_GRAPH_UNITS units) so that one pass costs at most about DIAG_UNIT_STEPS unit-steps."""
    n = len(program.order)
    if n <= MAX_GRAPH_UNITS:
        return wanted
    return max(MIN_DIAG_STEPS, min(wanted, DIAG_UNIT_STEPS // n))


def steps_note(program, wanted: int) -> str:
    """The note of a section whose sequences were cut by `diag_steps` ('' when they were not)."""
    T = diag_steps(program, wanted)
    if T >= wanted:
        return ""
    return note(f"Large network ({len(program.order):,} units): the diagnostics run on sequences cut to "
                f"{T} steps (at most {wanted} otherwise) to keep the report quick.")


LARGE_JACOBIAN = 128  # large networks: state dimensions above which the step Jacobian is left out


def jacobian_limit(program, limit: int) -> int:
    """The report's step-Jacobian size limit: `limit`, lower for a large network (each of its
    dimensions costs two forward passes through every unit)."""
    return limit if len(program.order) <= MAX_GRAPH_UNITS else min(limit, LARGE_JACOBIAN)
