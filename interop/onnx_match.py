"""Recognise a recurrent component that is exactly an ONNX LSTM, GRU or RNN operator.

The test is on the primitives (so a cell written by hand, or imported as primitives, counts
too): the component's units and internal connections must be exactly a cell's wiring (the
built-in block's, see compiler/blocks.py), with activations the operator has (interop.
activations), no leaks, and nothing but the output unit h read from outside. External
connections into the gate units are free: the exporter feeds them through the operator's X.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .activations import onnx_from_timeloom


@dataclass
class Cell:
    kind: str  # "lstm" | "gru" | "rnn"
    roles: dict  # role -> unit
    delay: int  # +1 forward, -1 reverse
    conns: dict = field(default_factory=dict)  # ("R", role) / ("P", role) -> Connection
    coupled: bool = False
    linear_before_reset: bool = False
    slots: list = field(default_factory=list)  # [(ONNX name, alpha, beta)]

    @property
    def gates(self) -> list:
        return {"lstm": [r for r in ("i", "f", "o", "g") if r in self.roles], "gru": ["r", "z", "n"],
                "rnn": ["h"]}[self.kind]


def match_cell(program, comp) -> Cell | None:
    units = set(comp.units)
    if any(program.units[u].leak is not None for u in units) or comp.direction == 0:
        return None
    internal = [c for c in program.connections if c.target in units and c.source in units]
    cell = {1: _rnn, 4: _gru, 6: _lstm, 7: _lstm}.get(len(units), lambda *a: None)(program, units, internal)
    if cell is None or cell.delay != comp.direction:
        return None
    h = cell.roles["h"]
    for c in program.connections:  # only h may be read from outside (the operator returns Y only)
        if c.target not in units and (c.source in units and c.source != h or c.gate and c.gate.unit in units):
            return None
    if any(u in program.outputs for u in units - {h}):
        return None
    for u in units - {cell.roles[g] for g in cell.gates}:  # nothing from outside into c, ct, h
        if any(c.source not in units for c in program.incoming(u)):
            return None
    return cell


def _plain(c, weight="full"):
    return c.weight == weight and c.gate is None and c.bias is None


def _gate(c, unit=None, complement=False, at="target"):
    return (c.gate is not None and (unit is None or c.gate.unit == unit) and c.gate.complement == complement
            and c.gate.at == at)


def _slot(program, unit, identity_bias_free=False):
    u = program.units[unit]
    if identity_bias_free and (u.activation.name != "identity" or u.bias is not None):
        return None
    return onnx_from_timeloom(u.activation)


def _rnn(program, units, internal):
    (h,) = units
    if len(internal) != 1 or not _plain(internal[0]) or abs(internal[0].delay) != 1:
        return None
    slot = _slot(program, h)
    if slot is None:
        return None
    return Cell("rnn", {"h": h}, internal[0].delay, {("R", "h"): internal[0]}, slots=[slot])


def _take(internal, pred):
    found = [c for c in internal if pred(c)]
    if len(found) != 1:
        return None
    internal.remove(found[0])
    return found[0]


def _recurrent_rows(cell, internal, gates):
    """h -> gate @D full plain (each optional; missing = zero rows of R)."""
    h = cell.roles["h"]
    for k in gates:
        c = _take(internal, lambda c, k=k: c.source == h and c.target == cell.roles[k] and c.delay == cell.delay
                  and _plain(c))
        if c is not None:
            cell.conns["R", k] = c


def _gated_self_loop(internal):
    """Take the gated identity u -> u at delay +-1 (the LSTM cell's keep, the GRU's carry), or None."""
    return _take(internal, lambda c: c.source == c.target and c.weight == "identity" and abs(c.delay) == 1
                 and _gate(c) and c.bias is None)


def _lstm(program, units, internal):
    internal = list(internal)
    keep = _gated_self_loop(internal)
    if keep is None:
        return None
    c_unit, f, delay = keep.source, keep.gate.unit, keep.delay
    ct_conn = _take(internal, lambda c: c.source == c_unit and c.delay == 0 and _plain(c, "identity")
                    and c.target != c_unit)
    if ct_conn is None:
        return None
    ct = ct_conn.target
    out = _take(internal, lambda c: c.source == ct and c.delay == 0 and c.weight == "identity" and _gate(c)
                and c.bias is None)
    if out is None:
        return None
    h, o = out.target, out.gate.unit
    write = _take(internal, lambda c: c.target == c_unit and c.delay == 0 and c.weight == "identity"
                  and c.bias is None and (_gate(c) or _gate(c, f, complement=True)))
    if write is None:
        return None
    g, coupled = write.source, write.gate.complement
    roles = {"f": f, "o": o, "g": g, "c": c_unit, "ct": ct, "h": h}
    if not coupled:
        roles["i"] = write.gate.unit
    if set(roles.values()) != units or len(set(roles.values())) != len(roles):
        return None
    cell = Cell("lstm", roles, delay, coupled=coupled)
    _recurrent_rows(cell, internal, cell.gates)
    for k, d in (("i", delay), ("f", delay), ("o", 0)):
        if k not in roles:
            continue
        p = _take(internal, lambda c, k=k, d=d: c.source == c_unit and c.target == roles[k] and c.delay == d
                  and _plain(c, "diagonal"))
        if p is not None:
            cell.conns["P", k] = p
    if internal:
        return None  # anything else (gate-to-gate, extra delays): not an LSTM operator
    gate_units = [roles[k] for k in ("i", "f", "o") if k in roles]
    acts = {str(program.units[u].activation) for u in gate_units}
    f_slot, g_slot, h_slot = _slot(program, f), _slot(program, g), _slot(program, ct)
    if len(acts) != 1 or None in (f_slot, g_slot, h_slot) or program.units[ct].bias is not None:
        return None
    if _slot(program, c_unit, True) is None or _slot(program, h, True) is None:
        return None
    if coupled and f_slot[0] != "Sigmoid":
        return None  # ONNX couples forget = 1 - input; the same as timeloom's only for sigmoid gates
    cell.slots = [f_slot, g_slot, h_slot]
    return cell


def _gru(program, units, internal):
    internal = list(internal)
    carry = _gated_self_loop(internal)
    if carry is None:
        return None
    h, z, delay = carry.source, carry.gate.unit, carry.delay
    new = _take(internal, lambda c: c.target == h and c.delay == 0 and c.weight == "identity" and c.bias is None
                and _gate(c, z, complement=True))
    if new is None:
        return None
    n = new.source
    reset = _take(internal, lambda c: c.source == h and c.target == n and c.delay == delay and c.weight == "full"
                  and (_gate(c) or _gate(c, at="source") and c.bias is None))
    if reset is None:
        return None
    r = reset.gate.unit
    roles = {"r": r, "z": z, "n": n, "h": h}
    if set(roles.values()) != units or len(set(roles.values())) != 4:
        return None
    cell = Cell("gru", roles, delay, linear_before_reset=reset.gate.at == "target")
    cell.conns["R", "n"] = reset
    _recurrent_rows(cell, internal, ["r", "z"])
    if internal:
        return None
    f_slot, g_slot = _slot(program, r), _slot(program, n)
    if str(program.units[r].activation) != str(program.units[z].activation) or None in (f_slot, g_slot):
        return None
    if _slot(program, h, True) is None:
        return None
    cell.slots = [f_slot, g_slot]
    return cell
