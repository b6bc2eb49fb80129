"""One ONNX LSTM / GRU / RNN node -> a timeloom cell (block or primitives) and its parameters.

Attributes: direction (forward: delays +1; reverse: delays -1, written as primitives;
bidirectional: a `bidirectional` block, or primitives when the directions' activations
differ), activations with alpha/beta (interop.activations; rescaled weights), hidden_size,
layout (0 time-major, 1 batch-major), linear_before_reset (GRU), input_forget (LSTM: the
coupled gate of timeloom, sigmoid gates only), clip (refused unless >= CLIP_INACTIVE).
Inputs: W, R, B, P must be constants; initial_h / initial_c: a constant with the same row for
every sample -> learned h0 ("{unit}.h0"), a graph input -> `state=` (forward direction only);
sequence_lens -> `lengths=` (one for the whole network).
"""
from __future__ import annotations

import re

import numpy as np

from . import mapping
from .activations import SLOT_OPTIONS, onnx_slots
from .cells import cell_fragment, merge, primitive_fragment, unit_prefixes
from .errors import UnsupportedError, node_label
from .onnx_import import readable
from .onnx_values import Fill, Input, Part, Seq

CLIP_INACTIVE = 1e6
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
INPUTS = {"lstm": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
          "gru": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
          "rnn": ("X", "W", "R", "B", "sequence_lens", "initial_h")}


def import_recurrent(imp, node, args, attrs, kind):
    where = node_label(node)
    a = dict(zip(INPUTS[kind], list(args) + [None] * (len(INPUTS[kind]) - len(args))))
    direction = attrs.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    directions = {"forward": [1], "reverse": [-1], "bidirectional": [1, -1]}.get(direction)
    if directions is None:
        raise UnsupportedError(f"{where}: unknown direction '{direction}'")
    layout = attrs.get("layout", 0)
    for key in ("W", "R", "B", "P"):
        if a.get(key) is not None and not isinstance(a[key], np.ndarray):
            raise UnsupportedError(f"{where}: input {key} must be a constant (an initializer); timeloom "
                                   "imports weights, not weights computed at run time")
    W, R = a["W"].astype(np.float64), a["R"].astype(np.float64)
    H = attrs.get("hidden_size", R.shape[-1])
    if W.shape[0] != dirs or R.shape != (dirs, len(mapping.ONNX_GATES[kind]) * H, H):
        raise UnsupportedError(f"{where}: W {W.shape} / R {R.shape} do not fit direction={direction}, "
                               f"hidden_size={H}")
    _check_clip(imp, attrs, where)
    slots = onnx_slots(kind, attrs, dirs, where)
    coupled = bool(attrs.get("input_forget", 0)) if kind == "lstm" else False
    lbr = bool(attrs.get("linear_before_reset", 0)) if kind == "gru" else False
    _check_slots(kind, slots, coupled, where)

    x_axes = ("T", "B", "F") if layout == 0 else ("B", "T", "F")
    x = imp.seq(a["X"], where, axes=x_axes, size=W.shape[-1])
    if x.axes != x_axes or x.parts[0].sel != "all":
        raise UnsupportedError(f"{where}: X has axes ({', '.join(x.axes)}); layout={layout} needs "
                               f"({', '.join(x_axes)}) over all time steps")
    if len({p.unit for p in x.parts}) != len(x.parts):
        raise UnsupportedError(f"{where}: X holds the same unit twice")
    if a.get("sequence_lens") is not None:
        _set_lengths(imp, a["sequence_lens"], where)

    h0 = _initial(imp, a.get("initial_h"), dirs, H, layout, directions, where, "initial_h")
    c0 = _initial(imp, a.get("initial_c"), dirs, H, layout, directions, where, "initial_c") if kind == "lstm" else None
    options = []
    for d in range(dirs):
        opt = {"size": H}
        for slot, key in zip(slots[d], SLOT_OPTIONS[kind]):
            if not _is_default(kind, key, slot.activation):
                opt[key] = slot.activation
        if kind == "lstm" and a.get("P") is not None:
            opt["peepholes"] = True
        if coupled:
            opt["coupled"] = True
        if kind == "gru":
            opt["linear_before_reset"] = lbr
        if _learned(h0, d) or _learned(c0, d):
            opt["initial"] = "learned"
        options.append(opt)

    sources, col = [], 0
    for p in x.parts:
        sources.append((p.unit, slice(col, col + p.size)))
        col += p.size
    given = _given_units(imp, node, kind, dirs)
    block = _common_prefix(given) if given else None
    prefix = imp.fresh(block or (imp.names.get(node.name) if isinstance(imp.names.get(node.name), str) else None)
                       or readable(node.name, node.op_type) or kind)
    fragment = cell_fragment(kind, options, prefix, directions, [p.unit for p in x.parts])
    rename = {}
    if given and (block is None or block != prefix):  # the spec's own unit names, written as primitives
        fragment = primitive_fragment(kind, options[0], prefix, directions[0], [p.unit for p in x.parts])
        rename = {f"{prefix}.{role}": unit for role, unit in given.items()}
        fragment = rename_units(fragment, rename)
        imp.used.discard(prefix)
        imp.used.update(given.values())
    merge(imp.spec, fragment)
    prefixes = unit_prefixes(directions, prefix)
    all_roles = [{r: rename.get(u, u) for r, u in mapping.prefixed_roles(kind, up).items()} for up in prefixes]
    for d, delay in enumerate(directions):
        roles = all_roles[d]
        B = None if a.get("B") is None else a["B"][d].astype(np.float64)
        P = None if a.get("P") is None else a["P"][d].astype(np.float64)
        imp.params.update(mapping.onnx_to_timeloom(kind, roles, delay, sources, W[d], R[d], B, P, slots[d],
                                                   linear_before_reset=lbr, coupled=coupled))
        names = mapping.cell_names(kind, roles, delay)
        if options[d].get("initial") == "learned":
            imp.params[names["h0", "h"]] = _row(h0, d, H)
            if kind == "lstm":
                imp.params[names["h0", "c"]] = _row(c0, d, H)
        for init, role in ((h0, "h"), (c0, "c")):
            if isinstance(init, str):
                imp.states.setdefault(init, (layout, [None] * dirs))[1][d] = roles[role]
    sel = ["last" if delay > 0 else "first" for delay in directions]
    y_axes = ("T", "D", "B", "F") if layout == 0 else ("B", "T", "D", "F")
    last_axes = ("D", "B", "F") if layout == 0 else ("B", "D", "F")
    outs = [Seq(y_axes, tuple(Part(r["h"], H) for r in all_roles)),
            Seq(last_axes, tuple(Part(r["h"], H, s) for r, s in zip(all_roles, sel)))]
    if kind == "lstm":
        outs.append(Seq(last_axes, tuple(Part(r["c"], H, s) for r, s in zip(all_roles, sel))))
    return outs


def _given_units(imp, node, kind, dirs) -> dict | None:
    """{role: unit} recorded by timeloom's exporter for this node, when usable: one direction, every
    role of the cell named, names not taken yet."""
    given = imp.roles_of(node)
    if not given or dirs != 1:
        return None
    want = set(mapping.ROLES[kind]) - ({"i"} if kind == "lstm" and "i" not in given else set())
    if set(given) != want or not all(isinstance(u, str) and _NAME.fullmatch(u) for u in given.values()):
        return None
    if len(set(given.values())) != len(given) or any(
            u in imp.used or any(v.startswith(u + ".") or u.startswith(v + ".") for v in imp.used)
            for u in given.values()):
        return None
    return dict(given)


def _common_prefix(roles: dict) -> str | None:
    """P when every unit is P.role (the spec had a block P), else None."""
    prefixes = {u.rsplit(".", 1)[0] for u in roles.values() if "." in u}
    if len(prefixes) != 1:
        return None
    p = prefixes.pop()
    return p if all(u == f"{p}.{r}" for r, u in roles.items()) else None


def rename_units(fragment: dict, rename: dict) -> dict:
    """The fragment with units renamed (keys, connection ends and gates)."""
    units = {rename.get(n, n): u for n, u in fragment.get("units", {}).items()}
    conns = []
    for c in fragment.get("connections", []):
        c = dict(c, **{"from": rename.get(c["from"], c["from"]), "to": rename.get(c["to"], c["to"])})
        gate = c.get("gate")
        if isinstance(gate, str):
            c["gate"] = rename.get(gate, gate)
        elif isinstance(gate, dict):
            c["gate"] = {**gate, "unit": rename.get(gate["unit"], gate["unit"])}
        conns.append(c)
    return {**fragment, "units": units, "connections": conns}


def _is_default(kind, key, value):
    defaults = {"gate_activation": "sigmoid", "cell_activation": "tanh", "output_activation": "tanh",
                "activation": "tanh"}
    return key in defaults and value == defaults[key]


def _check_clip(imp, attrs, where):
    if "clip" not in attrs:
        return
    clip = float(attrs["clip"])
    if clip < CLIP_INACTIVE:
        raise UnsupportedError(f"{where}: clip={clip:g} clips the net inputs of the gates, which timeloom cannot "
                               f"express; only a clip >= {CLIP_INACTIVE:g} (never active in a working model) "
                               "is imported, as no clipping")
    imp.warnings.append(f"{where}: clip={clip:g} is taken as inactive (no clipping in timeloom)")


def _check_slots(kind, slots, coupled, where):
    for d, ds in enumerate(slots):
        if kind == "lstm" and not ds[2].exact:
            raise UnsupportedError(f"{where}: the output activation h = {ds[2].onnx} rescales the cell "
                                   "state c, which reaches it through an identity connection (no weights to "
                                   "absorb the scale); use Tanh, Sigmoid, Relu, Softplus, Affine(1, 0) or "
                                   "ScaledTanh(a, 0.5)")
        if coupled and not (ds[0].onnx == "Sigmoid"):
            raise UnsupportedError(f"{where}: input_forget=1 couples forget = 1 - input; timeloom couples "
                                   "input = 1 - forget, the same model only for a Sigmoid gate activation "
                                   f"(got {ds[0].onnx})")


def _set_lengths(imp, v, where):
    if isinstance(v, Input):
        key = v.name
    elif isinstance(v, np.ndarray):
        key = v.astype(np.int64)
    else:
        raise UnsupportedError(f"{where}: sequence_lens must be a graph input or a constant")
    if imp.lengths is None:
        imp.lengths = key
        return
    same = imp.lengths == key if isinstance(key, str) or isinstance(imp.lengths, str) else \
        np.array_equal(imp.lengths, key)
    if not (isinstance(same, (bool, np.bool_)) and same):
        raise UnsupportedError(f"{where}: a second, different sequence_lens; timeloom takes one `lengths` "
                               "for the whole network")


def _initial(imp, v, dirs, H, layout, directions, where, what):
    """None (zeros), a (dirs, H) array (one row for all samples) or the graph input's name."""
    if v is None or isinstance(v, Fill) and v.value == 0:
        return None
    if isinstance(v, Fill):
        return np.full((dirs, H), v.value)
    if isinstance(v, Input):
        if any(d < 0 for d in directions):
            raise UnsupportedError(f"{where}: {what} comes from a graph input (one state per sample), which "
                                   "timeloom can carry in only for a forward direction (`state=`); the "
                                   "reverse direction starts from its learned h0 (a constant initializer)")
        return v.name
    if not isinstance(v, np.ndarray):
        raise UnsupportedError(f"{where}: {what} must be a constant or a graph input")
    v = v.astype(np.float64)
    if layout == 1:
        v = v.swapaxes(0, 1)
    if v.shape[0] != dirs or v.shape[-1] != H:
        raise UnsupportedError(f"{where}: {what} has shape {v.shape}")
    if not np.all(v == v[:, :1]):
        raise UnsupportedError(f"{where}: the constant {what} differs between samples; timeloom's learned "
                               "initial state is one vector per unit")
    return v[:, 0]


def _learned(init, d):
    return isinstance(init, np.ndarray) and bool(np.any(init[d] != 0))


def _row(init, d, H):
    return init[d].copy() if isinstance(init, np.ndarray) else np.zeros(H)
