"""Spec fragments for one recurrent cell: a built-in block where that is exact, primitives otherwise.

A fragment is {"units": {...}, "blocks": {...}, "connections": [...]}; `merge` adds it to a
spec. Primitives come from the built-in block's own body (compiler.blocks), prefixed and, for
a backward cell, with every delay negated: the unit and parameter names are the same as the
block would make, so a weight mapping does not care which form was written.
"""
from __future__ import annotations

import copy

from compiler.blocks import BUILTINS


def block_fragment(block: dict, prefix: str, sources: list[str]) -> dict:
    """`blocks: {prefix: block}` fed by every source."""
    return {"blocks": {prefix: copy.deepcopy(block)},
            "connections": [{"from": s, "to": prefix} for s in sources]}


def primitive_fragment(kind: str, options: dict, prefix: str, direction: int, sources: list[str],
                       proj_size: int = 0) -> dict:
    """The body of built-in `kind` written out as units and connections under `prefix`.

    `proj_size` P (lstm): the cell output o * tanh(c) is unit m, and h = W_hr m (P units, full
    weight "m->h", no bias) is what the gates read back and what the layer outputs."""
    body = BUILTINS[kind](dict(options))
    if proj_size:
        body = _project(body, proj_size)
    units = {f"{prefix}.{n}": copy.deepcopy(u) for n, u in body["units"].items()}
    conns = []
    for c in body["connections"]:
        c = copy.deepcopy(c)
        c["from"], c["to"] = f"{prefix}.{c['from']}", f"{prefix}.{c['to']}"
        if c.get("delay"):
            c["delay"] = c["delay"] * direction
        gate = c.get("gate")
        if isinstance(gate, str):
            c["gate"] = f"{prefix}.{gate}"
        elif isinstance(gate, dict):
            c["gate"] = {**gate, "unit": f"{prefix}.{gate['unit']}"}
        conns.append(c)
    ports = [p if isinstance(p, str) else p["unit"] for p in body["inputs"]]
    external = [{"from": s, "to": f"{prefix}.{p}"} for s in sources for p in ports]
    return {"units": units, "connections": external + conns}


def _project(body: dict, P: int) -> dict:
    body = copy.deepcopy(body)
    h = body["units"].pop("h")
    body["units"]["m"] = h
    body["units"]["h"] = {**h, "size": P}
    for c in body["connections"]:
        if c["from"] == "ct" and c["to"] == "h":
            c["to"] = "m"
    body["connections"].append({"from": "m", "to": "h"})
    return body


def cell_fragment(kind: str, options: list[dict], prefix: str, directions: list[int],
                  sources: list[str]) -> dict:
    """One recurrent layer: `directions` [+1], [-1] or [+1, -1] with per-direction block options.

    [+1] -> `{type: kind}` block; [+1, -1] with equal options -> `bidirectional` block (units
    prefix.fwd.*, prefix.bwd.*); a backward-only cell or different options per direction ->
    primitives with the same unit names."""
    if directions == [1]:
        return block_fragment({"type": kind, **options[0]}, prefix, sources)
    if directions == [1, -1] and options[0] == options[1]:
        return block_fragment({"type": "bidirectional", "cell": {"type": kind, **options[0]}}, prefix, sources)
    if directions == [-1]:
        return primitive_fragment(kind, options[0], prefix, -1, sources)
    out = {"units": {}, "connections": []}
    for opts, d, half in zip(options, directions, ("fwd", "bwd")):
        merge(out, primitive_fragment(kind, opts, f"{prefix}.{half}", d, sources))
    return out


def unit_prefixes(directions: list[int], prefix: str) -> list[str]:
    """The unit prefix of each direction of `cell_fragment(..., prefix, directions, ...)`."""
    if len(directions) == 2:
        return [f"{prefix}.fwd", f"{prefix}.bwd"]
    return [prefix]


def merge(spec: dict, fragment: dict) -> dict:
    for key in ("units", "blocks"):
        if fragment.get(key):
            spec.setdefault(key, {}).update(fragment[key])
    if fragment.get("connections"):
        spec.setdefault("connections", []).extend(fragment["connections"])
    return spec
