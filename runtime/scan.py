"""The scan of a recurrent component over time, forward and backward (BPTT), step by step.

Each step follows the component's step program (runtime/plan.py): the fused products of
the step groups, then unit by unit in intra-step order the sum of its terms, the squashing
and the leak. When the component has a compiled scan (runtime/jit), one call runs all
steps; otherwise this module interprets the steps in Python, with the same results. Weight
gradients are computed after the scan, as one GEMM over all steps.
"""
from __future__ import annotations

from . import primitives as P


def _read(run, name, tau, delay):
    """The value of `name` at time tau as read by a connection of `delay` (or a leak)."""
    out = run.traj.out[name]
    return run.reads.read(name, tau, out[tau] if 0 <= tau < run.reads.T else None, run.params, delay)


def _route(run, name, tau, d, delay):
    """Add the gradient of a read of (name, tau) by a connection of `delay` where it belongs."""
    d_out = run.errors.d_out
    if name in d_out:
        inside = run.reads.read_backward(name, tau, d, run.grads, delay)
        if inside is not None:
            d_out[name][tau] += inside


# -- forward -------------------------------------------------------------------------------------

def forward(ex, plan, run, pre):
    xp, T, B = ex.xp, run.reads.T, run.reads.B
    units, traj = ex.program.units, run.traj
    for g in plan.step_groups:
        traj.products[id(g)] = ex.buffer(("product", id(g)), (T, B, g.width))
    for u in plan.units:
        if units[u].leak is not None:
            traj.squashed[u] = ex.buffer(("squashed", u), (T, B, units[u].size))
    compiled = ex.compiled.get(id(plan))
    if compiled is not None and compiled.pays(B):
        compiled.forward(ex.b.dtype, run.reads, run.params, run.consts,
                         {"Y": traj.out, "pre": pre, "A": traj.squashed, "G": traj.products,
                          "L": traj.gated_later, "columns": traj.columns},
                         lambda g: ex.weights(g, run.params))
        return
    weights = {}
    for g in plan.step_groups:
        Wcat, bias = ex.weights(g, run.params)
        weights[id(g)] = (xp.ascontiguousarray(Wcat.T), bias)
    delayed = [g for g in plan.step_groups if g.delay != 0]
    steps = range(T) if plan.direction > 0 else range(T - 1, -1, -1)
    for t in steps:
        done = set()
        for g in delayed:
            _product(ex, run, g, t, weights, done)
        for u in plan.units:
            unit = units[u]
            buf = traj.out[u][t] if unit.leak is None else traj.squashed[u][t]
            net = _net(ex, plan, run, u, t, pre[u], buf, weights, done)
            if net is buf and unit.activation.name == "identity":
                a = buf
            else:
                a = P.activate(xp, unit.activation, net, out=buf)
            if unit.leak is not None:
                prev = _read(run, u, t - plan.direction, plan.direction)
                traj.out[u][t] = P.leak_forward(run.params[f"{u}.alpha"], prev, a)


def _product(ex, run, g, t, weights, done):
    """The fused product of a step group at step t (computed once per step)."""
    product = run.traj.products[id(g)][t]
    if id(g) not in done:
        x = _read(run, g.source, t - g.delay, g.delay)
        WT, bias = weights[id(g)]
        ex.xp.matmul(x, WT, out=product)
        if bias is not None:
            product += bias
        done.add(id(g))
    return product


def _net(ex, plan, run, u, t, pre, buf, weights, done):
    """Sum a unit's terms at step t, accumulating in `buf` (its output slot) without extra copies."""
    xp, out = ex.xp, run.traj.out
    acc, owned = (None, False) if pre is None else (pre[t], False)
    for kind, c, g in plan.terms[u]:
        gate_target = c.gate is not None and c.gate.at == "target"
        if kind == "group":
            lin = _product(ex, run, g, t, weights, done)[:, g.slices[c.name]]
        elif kind == "late":
            lin = run.traj.gated_later[c.name][t]
        else:
            x = _read(run, c.source, t - c.delay, c.delay)
            gsrc = ex.gate(c, out, t) if c.gate is not None and c.gate.at == "source" else None
            lin = ex.lin(c, x, gsrc, run)
        if acc is None:
            if gate_target:
                acc, owned = xp.multiply(ex.gate(c, out, t), lin, out=buf), True
            else:
                acc, owned = lin, False
        else:
            term = ex.gate(c, out, t) * lin if gate_target else lin
            if owned:
                acc += term
            else:
                acc, owned = xp.add(acc, term, out=buf), True
    if acc is None:
        buf[...] = 0
        return buf
    return acc


# -- backward ------------------------------------------------------------------------------------

def backward(ex, plan, run):
    """BPTT through the scan: fills d_net, d_products, d_single, d_gated_later and routes the
    error signal into d_out; then the weight gradients of the in-scan connections."""
    T, B = run.reads.T, run.reads.B
    units, errors = ex.program.units, run.errors
    for g in plan.step_groups:
        errors.d_products[id(g)] = ex.buffer(("d_product", id(g)), (T, B, g.width))
    for u in plan.units:
        errors.d_net[u] = ex.buffer(("d_net", u), (T, B, units[u].size))
    for u, terms in plan.terms.items():
        for kind, c, _ in terms:
            if kind == "late":
                errors.d_gated_later[c.name] = ex.buffer(("d_gated_later", c.name),
                                                         run.traj.gated_later[c.name].shape)
            elif kind == "single":
                errors.d_single[c.name] = ex.buffer(("d_single", c.name), (T, B, units[u].size))
    compiled = ex.compiled.get(id(plan))
    if compiled is not None and compiled.pays(B):
        traj = run.traj
        compiled.backward(ex.b.dtype, run.reads, run.params, run.consts,
                          {"Y": traj.out, "A": traj.squashed, "G": traj.products, "L": traj.gated_later,
                           "columns": traj.columns, "dY": errors.d_out, "dNET": errors.d_net, "dG": errors.d_products,
                           "dS": errors.d_single, "dL": errors.d_gated_later},
                          lambda g: ex.weights(g, run.params), run.grads, run.dnet)
    else:
        _steps_backward(ex, plan, run)
    _weight_grads(ex, plan, run)


def _steps_backward(ex, plan, run):
    xp, T = ex.xp, run.reads.T
    units, out, errors = ex.program.units, run.traj.out, run.errors
    d_out, d_products = errors.d_out, errors.d_products
    weights = {id(g): ex.weights(g, run.params)[0] for g in plan.step_groups}
    zero_delay, delayed = {}, []
    for g in plan.step_groups:
        (zero_delay.setdefault(g.source, []) if g.delay == 0 else delayed).append(g)

    def flush(g, t):
        """The error of a fused product's input at step t, routed to the read it came from."""
        if g.stop_gradient:
            return
        _route(run, g.source, t - g.delay, d_products[id(g)][t] @ weights[id(g)], g.delay)

    for t in (range(T - 1, -1, -1) if plan.direction > 0 else range(T)):
        for u in reversed(plan.units):
            for g in zero_delay.get(u, ()):
                flush(g, t)
            unit = units[u]
            d = d_out[u][t]
            if unit.leak is not None:
                alpha = run.params[f"{u}.alpha"]
                _route(run, u, t - plan.direction, alpha * d, plan.direction)
                d, a = (1 - alpha) * d, run.traj.squashed[u][t]
            else:
                a = out[u][t]
            dn = P.activate_backward(xp, unit.activation, a, d, out=errors.d_net[u][t])
            if u in run.dnet:
                dn += run.dnet[u][t]
            for kind, c, g in plan.terms[u]:
                if kind == "group":
                    sl = g.slices[c.name]
                    if c.gate is not None:
                        product = run.traj.products[id(g)][t][:, sl]
                        d_out[c.gate.unit][t] += P.gate_grad(dn * product, c.gate.complement)
                        xp.multiply(dn, ex.gate(c, out, t), out=d_products[id(g)][t][:, sl])
                    else:
                        d_products[id(g)][t][:, sl] = dn
                elif kind == "late":
                    lin = run.traj.gated_later[c.name][t]
                    d_out[c.gate.unit][t] += P.gate_grad(dn * lin, c.gate.complement)
                    xp.multiply(dn, ex.gate(c, out, t), out=errors.d_gated_later[c.name][t])
                else:
                    _single_backward(ex, run, c, t, dn)
        for g in delayed:
            flush(g, t)


def _single_backward(ex, run, c, t, dn):
    """Backward of one step of a connection computed inside the scan (weight gradients later)."""
    out, d_out = run.traj.out, run.errors.d_out
    tau = t - c.delay
    x = _read(run, c.source, tau, c.delay)
    gsrc = ex.gate(c, out, t) if c.gate is not None and c.gate.at == "source" else None
    dlin = dn
    if c.gate is not None and c.gate.at == "target":
        d_out[c.gate.unit][t] += P.gate_grad(dn * ex.lin(c, x, None, run), c.gate.complement)
        dlin = dn * ex.gate(c, out, t)
    run.errors.d_single[c.name][t] = dlin
    dxs = P.weight_back(ex.xp, c.weight, run.params.get(c.name, run.consts.get(c.name)), dlin)
    if gsrc is not None:
        d_out[c.gate.unit][t] += P.gate_grad(dxs * x, c.gate.complement)
        dxs = dxs * gsrc
    if not c.stop_gradient:
        _route(run, c.source, tau, dxs, c.delay)


def _weight_grads(ex, plan, run):
    """Weight gradients of a scan: one GEMM (or reduction) over all steps for each group and
    connection."""
    out, reads = run.traj.out, run.reads
    for g in plan.step_groups:
        X = reads.shift(g.source, out[g.source], g.delay, run.params)
        ex.group_grads(g, X, run.errors.d_products[id(g)], run.grads)
    for u, terms in plan.terms.items():
        for kind, c, _ in terms:
            if kind == "single" and (c.has_param or c.bias is not None):
                xs = reads.shift(c.source, out[c.source], c.delay, run.params)
                if c.gate is not None and c.gate.at == "source":
                    xs = ex.gate(c, out, slice(None)) * xs
                ex.connection_grads(c, xs, run.errors.d_single[c.name], run.grads)
