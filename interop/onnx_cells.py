"""Emit a matched cell (interop.onnx_match.Cell) as one ONNX LSTM / GRU / RNN operator.

The operator's X is the concatenation of the cell's external sources: each (source, delay)
of a plain full connection into the gates once (its weights in the gates' rows of W), then,
for a gate with any other external contribution (gated, diagonal, with a connection bias),
that contribution summed outside and fed through identity rows. W, R, B, P come from
interop.mapping.timeloom_to_onnx; learned h0 -> initial_h / initial_c.
"""
from __future__ import annotations

import numpy as np

from . import mapping


def _plain(c):
    return c.weight == "full" and c.gate is None and c.bias is None


def emit_cell(ex, cell):
    program, b = ex.program, ex.b
    roles, units = cell.roles, set(cell.roles.values())
    H = program.units[roles["h"]].size
    keys, extras, plain = [], [], {k: [] for k in cell.gates}
    for k in cell.gates:
        other = []
        for c in program.incoming(roles[k]):
            if c.source in units:
                continue
            if _plain(c):
                if (c.source, c.delay) not in keys:
                    keys.append((c.source, c.delay))
                plain[k].append(c)
            else:
                other.append(ex.contribution(c))
        if other:
            extras.append((k, b.add_all(other, f"{roles[k]}.ext")))
    widths = [program.size(s) for s, _ in keys] + [H] * len(extras)
    tensors = [ex.shifted(s, d) for s, d in keys] + [t for _, t in extras]
    if not tensors:
        widths, tensors = [1], [ex.zeros_like_steps(1)]
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    columns = {k: np.zeros((H, offsets[-1])) for k in cell.gates}
    for k in cell.gates:
        for c in plain[k]:
            j = keys.index((c.source, c.delay))
            columns[k][:, offsets[j]:offsets[j + 1]] += ex.params[c.name]
    for m, (k, _) in enumerate(extras):
        j = len(keys) + m
        columns[k][:, offsets[j]:offsets[j + 1]] = np.eye(H)
    X = tensors[0] if len(tensors) == 1 else b.op("Concat", tensors, f"{roles['h']}.X", axis=-1)
    W, R, B, P = mapping.timeloom_to_onnx(cell.kind, cell_arrays(ex, cell, columns), H, int(offsets[-1]),
                                          linear_before_reset=cell.linear_before_reset, coupled=cell.coupled)
    prefix = roles["h"].rsplit(".", 1)[0] if "." in roles["h"] else roles["h"]
    inputs = [X, b.const(W[None], f"{prefix}.W"), b.const(R[None], f"{prefix}.R"), b.const(B[None], f"{prefix}.B"), ""]
    inputs.append(ex.initial_rows(roles["h"], 1) if f"{roles['h']}.h0" in ex.params else "")
    if cell.kind == "lstm":
        inputs.append(ex.initial_rows(roles["c"], 1) if f"{roles['c']}.h0" in ex.params else "")
        inputs.append(b.const(P[None], f"{prefix}.P") if any(k[0] == "P" for k in cell.conns) else "")
    while inputs[-1] == "":
        inputs.pop()
    attrs = {"hidden_size": H, "direction": "forward" if cell.delay > 0 else "reverse",
             "activations": [s[0] for s in cell.slots]}
    alphas = [s[1] for s in cell.slots if s[1] is not None]
    if alphas:
        attrs["activation_alpha"] = alphas
        attrs["activation_beta"] = [s[2] for s in cell.slots if s[2] is not None]
    if cell.kind == "lstm" and cell.coupled:
        attrs["input_forget"] = 1
    if cell.kind == "gru":
        attrs["linear_before_reset"] = int(cell.linear_before_reset)
    op = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell.kind]
    Y = b.op(op, inputs, f"{prefix}.Y", **attrs)
    ex.traj[roles["h"]] = b.op("Squeeze", [Y, b.const([1], "i1", True)], roles["h"])


def cell_arrays(ex, cell, columns):
    """The timeloom arrays of a matched cell, keyed as mapping.timeloom_to_onnx reads them."""
    arrays = {key: ex.params[c.name] for key, c in cell.conns.items()}
    for k in cell.gates:
        u = ex.program.units[cell.roles[k]]
        if u.bias is not None:
            arrays["bias", k] = ex.params[f"{u.name}.bias"]
        arrays["W", k] = columns[k]
    reset = cell.conns.get(("R", "n"))
    if reset is not None and reset.bias is not None:
        arrays["rbias"] = ex.params[f"{reset.name}.bias"]
    return arrays
