"""The part of a component computed for all time steps at once, before its scan (and its
gradients after the scan): what it reads from inputs and earlier components, as one fused
GEMM over T*B rows per (source, delay), plus the units' biases.

`forward` returns pre[u] (T, B, n): the sum a unit's step starts from (None where a
recurrent unit gets nothing before its scan).
"""
from __future__ import annotations

from . import primitives as P

EVERY_STEP = slice(None)


def _shifted(run, name, delay):
    """What a connection of `delay` reads of `name`, all steps (computed once per call)."""
    key = (name, delay)
    if key not in run.traj.shifted:
        run.traj.shifted[key] = run.reads.shift(name, run.traj.out[name], delay, run.params)
    return run.traj.shifted[key]


def forward(ex, plan, run):
    """pre[u] (T, B, n): bias plus every contribution computable before the scan. Where pre[u]
    (or a gated-later term) is a block of columns of a hoisted product Z, run.traj.columns
    says so: {("pre", u) or ("L", connection): (Z, first column)} (the compiled scan reads Z
    there instead of a copy)."""
    xp, T, B = ex.xp, run.reads.T, run.reads.B
    out, columns = run.traj.out, run.traj.columns
    pre, owned = {}, set()

    def add(u, v, mine=False, cols=None):
        """pre[u] += v, in place once pre[u] is an array of this call's own."""
        if u not in pre:
            pre[u] = v
            if mine:
                owned.add(u)
            if cols is not None:
                columns[("pre", u)] = cols
        elif u in owned:
            pre[u] += v
        else:
            pre[u] = pre[u] + v
            owned.add(u)
            columns.pop(("pre", u), None)

    def place(c, lin, mine=False, cols=None):
        if c.name in plan.late_gate:
            run.traj.gated_later[c.name] = lin  # gated inside the scan
            if cols is not None:
                columns[("L", c.name)] = cols
        elif c.gate is not None and c.gate.at == "target":
            add(c.target, ex.gate(c, out, EVERY_STEP) * lin, mine=True)
        else:
            add(c.target, lin, mine, cols)

    biased = set()  # units whose bias is added with a hoisted product's bias (one pass over Z)
    for g in plan.hoist_groups:
        X = _shifted(run, g.source, g.delay)
        Wcat, bias = ex.weights(g, run.params)
        own = False
        for c in g.members:
            u = c.target
            if (ex.program.units[u].bias is not None and u not in pre and u not in biased
                    and c.name not in plan.late_gate and (c.gate is None or c.gate.at != "target")):
                if not own:
                    bias, own = (xp.zeros(g.width, dtype=Wcat.dtype) if bias is None else bias.copy()), True
                bias[g.slices[c.name]] += run.params[f"{u}.bias"]
                biased.add(u)
        Z = ex.buffer(("hoisted", id(g)), (T, B, g.width))
        xp.matmul(X.reshape(T * B, -1), Wcat.T, out=Z.reshape(T * B, g.width))
        if bias is not None:
            Z += bias
        for c in g.members:
            place(c, Z[..., g.slices[c.name]], mine=True, cols=(Z, g.slices[c.name].start))
    for u, conns in plan.hoist_single.items():
        for c in conns:
            X = _shifted(run, c.source, c.delay)
            gsrc = ex.gate(c, out, EVERY_STEP) if c.gate is not None and c.gate.at == "source" else None
            place(c, ex.lin(c, X, gsrc, run))
    for u in plan.units:
        unit = ex.program.units[u]
        if unit.bias is not None and u not in biased:
            add(u, run.params[f"{u}.bias"])
        if u not in pre and plan.direction != 0:
            pre[u] = None  # nothing before the scan: the step sums its own terms
        elif u not in pre or pre[u].shape != (T, B, unit.size):
            pre[u] = xp.broadcast_to(pre.get(u, 0), (T, B, unit.size)).astype(ex.b.dtype)
            columns.pop(("pre", u), None)
    return pre


def backward(ex, plan, run):
    """Gradients of everything hoisted before the scan: one GEMM per fused group."""
    xp, T, B = ex.xp, run.reads.T, run.reads.B
    out, errors, grads, reads = run.traj.out, run.errors, run.grads, run.reads
    d_out = errors.d_out

    def dlin_of(c, lin):
        if c.name in plan.late_gate:
            return errors.d_gated_later[c.name]
        dn = errors.d_net[c.target]
        if c.gate is not None and c.gate.at == "target":
            d_out[c.gate.unit] += P.gate_grad(dn * lin(), c.gate.complement)
            return dn * ex.gate(c, out, EVERY_STEP)
        return dn

    for g in plan.hoist_groups:
        X = run.traj.shifted[(g.source, g.delay)]
        Wcat, _ = ex.weights(g, run.params)
        parts = [dlin_of(c, lambda c=c: ex.lin(c, X, None, run)) for c in g.members]
        dZ = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)
        ex.group_grads(g, X, dZ, grads)
        if g.source in d_out and not g.stop_gradient:
            dX = (dZ.reshape(T * B, g.width) @ Wcat).reshape(T, B, -1)
            d_out[g.source] += reads.shift_backward(g.source, dX, g.delay, grads)
    for u, conns in plan.hoist_single.items():
        for c in conns:
            X = run.traj.shifted[(c.source, c.delay)]
            gsrc = ex.gate(c, out, EVERY_STEP) if c.gate is not None and c.gate.at == "source" else None
            dlin = dlin_of(c, lambda c=c: ex.lin(c, X, None, run))
            xs = X if gsrc is None else gsrc * X
            ex.connection_grads(c, xs, dlin, grads)
            dX = P.weight_back(xp, c.weight, run.params.get(c.name, run.consts.get(c.name)), dlin)
            if gsrc is not None:
                d_out[c.gate.unit] += P.gate_grad(dX * X, c.gate.complement)
                dX = dX * gsrc
            if c.source in d_out and not c.stop_gradient:
                d_out[c.source] += reads.shift_backward(c.source, dX, c.delay, grads)
