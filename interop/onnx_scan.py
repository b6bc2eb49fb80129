"""Any recurrent component as an ONNX `Scan`: the body is one time step of its primitives.

Outside the Scan (all steps at once): every contribution from outside the component that
needs nothing from inside it (summed per unit: the scan input `pre`); contributions whose
target gate is inside (their W . src + b becomes a scan input, gated in the body); sources
gated at the source by a unit inside (the shifted source becomes a scan input); gate units
outside read by connections inside (their trajectory becomes a scan input).
The state of unit u is its last k outputs, (k, B, n), oldest first, k = the largest delay
reading it inside (1 for a leak); a read with delay d takes row k - d. Initial state: h0
(learned or zeros). A backward component (delays < 0) scans its inputs reversed in time (a Slice
with step -1) and reverses its outputs back.
"""
from __future__ import annotations

from .onnx_graph import Builder


def emit_scan(ex, comp):
    program, b = ex.program, ex.b
    units, inside = list(comp.units), set(comp.units)
    reverse = comp.direction < 0
    depth = {}
    for c in program.connections:
        if c.target in inside and c.source in inside and c.delay != 0:
            depth[c.source] = max(depth.get(c.source, 0), abs(c.delay))
    for u in units:
        if program.units[u].leak is not None:
            depth[u] = max(depth.get(u, 0), 1)
    body = Builder(ex.dtype, used=b.used)
    scan_in = []  # (outer tensor, body name)

    def feed(outer, hint):
        name = body.name(hint)
        scan_in.append((outer, name))
        return name

    pre, late, src_in, gates_out = {}, {}, {}, {}
    for u in units:
        hoisted = []
        for c in program.incoming(u):
            gate_in = c.gate is not None and c.gate.unit in inside
            if c.source in inside:
                if c.gate is not None and not gate_in and c.gate.unit not in gates_out:
                    gates_out[c.gate.unit] = feed(ex.traj[c.gate.unit], f"{c.gate.unit}.t")
                continue
            if not gate_in:
                hoisted.append(ex.contribution(c))
            elif c.gate.at == "target":
                late[c.name] = feed(ex.linear(c), f"{c.name}.lin")
            else:
                src_in[c.name] = feed(ex.shifted(c.source, c.delay), f"{c.name}.src")
        if hoisted:
            pre[u] = feed(b.add_all(hoisted, f"{u}.pre"), f"{u}.pre")
        elif not any(c.source in inside or c.name in src_in or c.name in late for c in program.incoming(u)):
            pre[u] = feed(ex.zeros_like_steps(program.units[u].size), f"{u}.zero")  # bias only: (B, n)
    if not scan_in:  # an autonomous recurrence still needs a sequence to count the steps
        feed(next(iter(program.inputs)), "steps")
    states = {u: body.name(f"{u}.state") for u in depth}
    cur = {}

    def gate(c):
        g = cur[c.gate.unit] if c.gate.unit in inside else gates_out[c.gate.unit]
        return body.gate_value(g, c.gate.complement)

    def read(s, delay):
        if delay == 0:
            return cur[s]
        return body.op("Gather", [states[s], body.const(depth[s] - abs(delay), "row", True)], axis=0)

    for u in units:
        unit = program.units[u]
        terms = [pre[u]] if u in pre else []
        for c in program.incoming(u):
            if c.source in inside:
                x = read(c.source, c.delay)
            elif c.name in src_in:
                x = src_in[c.name]
            elif c.name in late:
                terms.append(body.op("Mul", [gate(c), late[c.name]]))
                continue
            else:
                continue
            if c.gate is not None and c.gate.at == "source":
                x = body.op("Mul", [gate(c), x])
            lin = body.weight(c, x, ex.value(c))
            if c.bias is not None:
                lin = body.op("Add", [lin, body.const(ex.params[f"{c.name}.bias"], f"{c.name}.bias")])
            if c.gate is not None and c.gate.at == "target":
                lin = body.op("Mul", [gate(c), lin])
            terms.append(lin)
        if unit.bias is not None:
            terms.append(body.const(ex.params[f"{u}.bias"], f"{u}.bias"))
        net = body.add_all(terms, f"{u}.net")
        a = body.activation(net, unit.activation, f"{u}.a")
        if unit.leak is not None:
            alpha = ex.params[f"{u}.alpha"]
            prev = read(u, 1)
            a = body.op("Add", [body.op("Mul", [prev, body.const(alpha, f"{u}.alpha")]),
                                body.op("Mul", [a, body.const(1.0 - alpha, f"{u}.1-alpha")])])
        cur[u] = a
    outs_state, outs_seq = [], []
    for u, k in depth.items():
        row = body.op("Unsqueeze", [cur[u], body.const([0], "i0", True)])
        new = row if k == 1 else body.op("Concat", [body.op("Slice", [states[u], body.const([1], "i1", True),
                                                                     body.const([k], "k", True),
                                                                     body.const([0], "i0", True)]), row], axis=0)
        outs_state.append(body.op("Identity", [new], f"{u}.state_next"))
    for u in units:
        outs_seq.append(body.op("Identity", [cur[u]], f"{u}.out"))
    _finish(ex, comp, body, states, depth, scan_in, outs_state, outs_seq, reverse)


def _finish(ex, comp, body, states, depth, scan_in, outs_state, outs_seq, reverse):
    from onnx import helper

    b, program = ex.b, ex.program
    vi = helper.make_tensor_value_info
    inputs = [vi(states[u], body.elem, [k, "B", program.size(u)]) for u, k in depth.items()]
    inputs += [vi(name, body.elem, ["B", None]) for _, name in scan_in]
    outputs = [vi(n, body.elem, [None, "B", None]) for n in outs_state]
    outputs += [vi(n, body.elem, ["B", program.size(u)]) for n, u in zip(outs_seq, comp.units)]
    graph = helper.make_graph(body.nodes, f"{comp.units[0]}_step", inputs, outputs, body.inits)
    init = [ex.initial_rows(u, k) for u, k in depth.items()]
    finals = [b.name(f"{u}.final") for u in depth]
    trajs = [b.name(u) for u in comp.units]
    outer = [t for t, _ in scan_in]
    if reverse:  # reversed in time by Slice (onnx.reference's Scan runs forward only)
        outer = [ex.reverse_time(t) for t in outer]
        trajs = [b.name(f"{u}.reversed") for u in comp.units]
    b.op("Scan", init + outer, outputs=finals + trajs, body=graph, num_scan_inputs=len(scan_in))
    for u, t in zip(comp.units, trajs):
        ex.traj[u] = ex.reverse_time(t, u) if reverse else t

