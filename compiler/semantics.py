"""Checks beyond the schema: sizes, gates, algebraic loops, mixed directions, reachability."""
from __future__ import annotations

import networkx as nx
import numpy as np

from .errors import SpecIssue
from .graph import scc_directions, zero_delay_graph
from .model import Pos

LOSS_ACTIVATIONS = {"cross_entropy": ("softmax", "identity"), "bce": ("sigmoid", "identity")}


def _issue(pos: Pos, message: str, severity="error") -> SpecIssue:
    return SpecIssue(pos.file, pos.line, pos.column, "/" + "/".join(map(str, pos.path)), message, severity)


def check(ex, g: nx.MultiDiGraph) -> list[SpecIssue]:
    issues = []
    size = {**ex.inputs, **{n: u.size for n, u in ex.units.items()}}
    for c in ex.connections:
        issues += _check_connection(c, size, ex)
    for o in ex.outputs.values():
        issues += _check_output(o, ex.units[o.unit])
    issues += _check_loops(ex, g)
    issues += _check_reach(ex, g)
    return issues


def _check_output(o, unit):
    """cross_entropy / bce fuse their gradient with softmax / sigmoid: out must be exactly f(net)."""
    out = []
    allowed = LOSS_ACTIVATIONS.get(o.loss)
    act = unit.activation.name
    where = f"unit '{unit.name}' (line {unit.pos.line})"
    if allowed and act not in allowed:
        out.append(_issue(o.pos, f"output '{o.unit}' has loss {o.loss} but activation {act}; give {where} "
                                 f"activation: {allowed[0]} (or identity for logits), or use loss: mse"))
    if allowed and unit.leak is not None:
        out.append(_issue(o.pos, f"output '{o.unit}' has loss {o.loss} but a leak; {o.loss} needs the output "
                                 f"to be exactly {allowed[0]}(net) (its gradient is fused with the "
                                 f"{allowed[0]}): remove the leak from {where} or read the leaky unit "
                                 f"through a {allowed[0]} output unit"))
    return out


def _check_connection(c, size, ex):
    out = []
    src, tgt = size[c.source], size[c.target]
    what = f"connection {c.source} -> {c.target}"
    if c.weight in ("identity", "diagonal") and src != tgt:
        article = "an" if c.weight == "identity" else "a"
        out.append(_issue(c.pos, f"{what} has {article} {c.weight} weight but sizes differ ({c.source}: {src}, "
                                 f"{c.target}: {tgt}); use weight: full or make the sizes equal"))
    init = c.init or {}
    if init.get("kind") == "sparse" and c.weight == "full" and init["density"] * src * tgt < 1:
        out.append(_issue(c.pos, f"{what}: density {init['density']:g} leaves about "
                                 f"{init['density'] * src * tgt:.2g} of its {tgt}x{src} weights non-zero, so "
                                 f"it is most likely all zeros; raise the density (at least {1 / (src * tgt):.2g})",
                          "warning"))
    if c.weight == "fixed":
        shape = np.shape(c.fixed)
        if shape not in ((), (tgt, src)) or (shape == () and src != tgt):
            out.append(_issue(c.pos, f"{what}: a fixed weight must be a number (sizes equal) or a "
                                     f"{tgt}x{src} matrix, got shape {shape}"))
    if c.gate is not None:
        gsize = size[c.gate.unit]
        need = tgt if c.gate.at == "target" else src
        if gsize != need:
            side = c.target if c.gate.at == "target" else c.source
            out.append(_issue(c.pos, f"{what}: gate '{c.gate.unit}' has size {gsize} but gates '{side}' of "
                                     f"size {need}; make the gate unit's size {need}"))
    if c.gate is not None and c.gate.unit == c.target:
        out.append(_issue(c.pos, f"{what} is gated by its own target '{c.target}' at the same step; "
                                 "gate with another unit"))
    return out


def _cycle_text(cycle) -> str:
    nodes = [a for a, *_ in cycle]
    return " -> ".join(nodes + [nodes[0]])


def _check_loops(ex, g):
    out = []
    zero = zero_delay_graph(g)
    self_gated = {c.target for c in ex.connections if c.gate is not None and c.gate.unit == c.target}
    for comp in nx.strongly_connected_components(zero):
        (one,) = comp if len(comp) == 1 else (None,)
        if one in self_gated and not any(c.source == c.target == one and not c.delay for c in ex.connections):
            continue  # reported as "gated by its own target"
        if len(comp) > 1 or zero.has_edge(one, one):
            cycle = nx.find_cycle(zero.subgraph(comp))
            first = next(c for c in ex.connections if c.target == cycle[0][1] and c.source == cycle[0][0]
                         or (c.gate and c.gate.unit == cycle[0][0] and c.target == cycle[0][1]))
            out.append(_issue(first.pos, f"algebraic loop: the cycle {_cycle_text(cycle)} has total delay 0, "
                                         "so no step can be computed first; give one connection delay: 1"))
    _, _, mixed = scc_directions(g)
    for members, delays in mixed:
        sub = g.subgraph(members)
        c = next(c for c in ex.connections if c.source in members and c.target in members and c.delay)
        names = ", ".join(sorted(members))
        out.append(_issue(c.pos, f"the recurrent cycle through {names} mixes forward delays "
                                 f"({', '.join(str(d) for d in sorted(delays) if d > 0)}) and backward delays "
                                 f"({', '.join(str(d) for d in sorted(delays) if d < 0)}); it cannot be scanned in "
                                 "either direction: keep the forward and backward parts in separate units"))
        del sub
    return out


def _check_reach(ex, g):
    out = []
    reached = set()
    for x in ex.inputs:
        reached |= nx.descendants(g, x)
    for o in ex.outputs.values():
        if o.unit not in reached:
            out.append(_issue(o.pos, f"output '{o.unit}' is not reached by any input; connect an input to it "
                                     "(directly or through other units)"))
    if ex.outputs:
        needed = set()
        for o in ex.outputs:
            needed |= nx.ancestors(g, o) | {o}
        for name, u in ex.units.items():
            if name not in needed:
                out.append(_issue(u.pos, f"unit '{name}' does not influence any output; it is computed but "
                                         "unused (connect it or remove it)", "warning"))
    return out
