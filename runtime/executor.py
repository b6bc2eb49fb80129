"""The fast executor: components in topological order, hoisted GEMMs, one scan per recurrence.

For each strongly connected component of the folded graph:
- everything it reads from outside (earlier components, inputs) is computed for all time
  steps at once: connections sharing (source, delay) are fused into one GEMM over T*B rows;
- a component without recurrence is then finished with one activation over all steps;
- a recurrent component is scanned step by step, forward or backward in time as its
  delays say; its internal connections sharing (source, delay) are fused into one GEMM per
  step (e.g. the four LSTM gates reading h_{t-1}).
Backward runs the components in reverse, scans in reverse time, and computes every weight
gradient as one GEMM over all steps after the scan.
"""
from __future__ import annotations

from . import jit
from . import primitives as P
from .plan import make_plan
from .tape import Tape


class FastExecutor:
    def __init__(self, program, backend, jit_scans: bool | None = None):
        """`jit_scans`: run each recurrent component's time loop as a compiled scan (None: when
        runtime.jit.enabled says so; True: require it; False: the interpreted scan)."""
        self.program = program
        self.b = backend
        self.xp = backend.xp
        self.plans = [make_plan(program, comp) for comp in program.components]
        self.compiled = {}  # id(plan) -> CompiledScan, for every recurrent component when the JIT is on
        if jit_scans and not jit.enabled(backend):
            from compiler.errors import TimeloomError
            raise TimeloomError(f"compiled scans are not available: {jit.why_not(backend)}")
        if jit.enabled(backend) if jit_scans is None else jit_scans:
            from .jit.scan import CompiledScan
            self.compiled = {id(p): CompiledScan(program, p) for p in self.plans if p.direction != 0}
        self._work = {}  # (key, shape) -> array reused across calls (see _buffer)

    def _buffer(self, key, shape, zero=False):
        """A work array of `shape`, kept between calls: the per-sequence buffers (outputs,
        step GEMM results, gradients) are then not allocated and page-faulted anew each call.
        Whatever the network hands out (outputs, state, gradients) is copied or fresh."""
        shape = tuple(shape)
        a = self._work.get((key, shape))
        if a is None:
            if len(self._work) > 512:  # many different sequence shapes: start over
                self._work.clear()
            a = self._work[(key, shape)] = self.xp.empty(shape, dtype=self.b.dtype)
        if zero:
            a.fill(0)
        return a

    # -- helpers ------------------------------------------------------------------------
    def _weights(self, group, params, consts):
        W = [params[c.name] for c in group.members]
        Wcat = W[0] if len(W) == 1 else self.xp.concatenate(W, axis=0)
        bias = None
        if any(c.bias is not None for c in group.members):
            bias = self.xp.concatenate([params[f"{c.name}.bias"] if c.bias is not None
                                        else self.xp.zeros(self.program.size(c.target), dtype=Wcat.dtype)
                                        for c in group.members])
        return Wcat, bias

    def _lin(self, c, x, gv_source, params, consts):
        """W (g * x) + b for one connection (any weight kind)."""
        xs = x if gv_source is None else gv_source * x
        lin = P.weight_apply(self.xp, c.weight, params.get(c.name, consts.get(c.name)), xs)
        if c.bias is not None:
            lin = lin + params[f"{c.name}.bias"]
        return lin

    def _gv(self, c, H, t):
        return P.gate_value(H[c.gate.unit][t], c.gate.complement)

    # -- forward ------------------------------------------------------------------------
    def forward(self, params, consts, inputs, reads) -> Tape:
        xp, T, B = self.xp, reads.T, reads.B
        H = dict(inputs)
        A, LIN, S, GLIN = {}, {}, {}, {}
        for plan in self.plans:
            for u in plan.units:
                H[u] = self._buffer(("H", u), (T, B, self.program.size(u)))
            pre = self._hoist(plan, params, consts, H, reads, LIN, S)
            if plan.direction == 0:
                (u,) = plan.units
                P.activate(xp, self.program.units[u].activation, pre[u], out=H[u])
            else:
                self._scan(plan, params, consts, H, A, pre, LIN, GLIN, reads)
        return Tape(out={u: H[u] for u in self.program.units},
                    extra={"H": H, "A": A, "LIN": LIN, "S": S, "GLIN": GLIN})

    def _shifted(self, S, name, H, delay, params, reads):
        key = (name, delay)
        if key not in S:
            S[key] = reads.shift(name, H[name], delay, params)
        return S[key]

    def _hoist(self, plan, params, consts, H, reads, LIN, S):
        """pre[u] (T, B, n): bias plus every contribution computable before the scan."""
        xp, T, B = self.xp, reads.T, reads.B
        pre, owned = {}, set()

        def add(u, v, mine=False):
            """pre[u] += v, in place once pre[u] is an array of this call's own."""
            if u not in pre:
                pre[u] = v
                if mine:
                    owned.add(u)
            elif u in owned:
                pre[u] += v
            else:
                pre[u] = pre[u] + v
                owned.add(u)

        for g in plan.hoist_groups:
            X = self._shifted(S, g.source, H, g.delay, params, reads)
            Wcat, bias = self._weights(g, params, consts)
            Z = self._buffer(("Z", id(g)), (T, B, g.width))
            xp.matmul(X.reshape(T * B, -1), Wcat.T, out=Z.reshape(T * B, g.width))
            if bias is not None:
                Z += bias
            for c in g.members:
                self._place(plan, c, Z[..., g.slices[c.name]], H, LIN, add, mine=True)
        for u, conns in plan.hoist_single.items():
            for c in conns:
                X = self._shifted(S, c.source, H, c.delay, params, reads)
                gsrc = self._gv(c, H, slice(None)) if c.gate is not None and c.gate.at == "source" else None
                self._place(plan, c, self._lin(c, X, gsrc, params, consts), H, LIN, add)
        for u in plan.units:
            unit = self.program.units[u]
            if unit.bias is not None:
                add(u, params[f"{u}.bias"])
            if u not in pre and plan.direction != 0:
                pre[u] = None  # nothing before the scan: the step sums its own terms
            elif u not in pre or pre[u].shape != (T, B, unit.size):
                pre[u] = xp.broadcast_to(pre.get(u, 0), (T, B, unit.size)).astype(self.b.dtype)
        return pre

    def _place(self, plan, c, lin, H, LIN, add, mine=False):
        if c.name in plan.late_gate:
            LIN[c.name] = lin  # gated inside the scan
        elif c.gate is not None and c.gate.at == "target":
            add(c.target, self._gv(c, H, slice(None)) * lin, mine=True)
        else:
            add(c.target, lin, mine)

    def _scan(self, plan, params, consts, H, A, pre, LIN, GLIN, reads):
        xp, T, B = self.xp, reads.T, reads.B
        units = self.program.units
        steps = range(T) if plan.direction > 0 else range(T - 1, -1, -1)
        weights = {}
        for g in plan.step_groups:
            Wcat, bias = self._weights(g, params, consts)
            weights[id(g)] = (xp.ascontiguousarray(Wcat.T), bias)
            GLIN[id(g)] = self._buffer(("GLIN", id(g)), (T, B, g.width))
        for u in plan.units:
            if units[u].leak is not None:
                A[u] = self._buffer(("A", u), (T, B, units[u].size))
        compiled = self.compiled.get(id(plan))
        if compiled is not None:
            compiled.forward(self.b.dtype, reads, params, consts,
                             {"Y": H, "pre": pre, "A": A, "G": GLIN, "L": LIN},
                             lambda g: self._weights(g, params, consts))
            return
        delayed = [g for g in plan.step_groups if g.delay != 0]
        for t in steps:
            done = set()
            for g in delayed:
                self._group_step(g, t, H, GLIN, weights, params, reads, done)
            for u in plan.units:
                unit = units[u]
                buf = H[u][t] if unit.leak is None else A[u][t]
                net = self._step_net(plan, u, t, pre[u], buf, H, LIN, GLIN, weights, params, consts, reads, done)
                if net is buf and unit.activation.name == "identity":
                    a = buf
                else:
                    a = P.activate(xp, unit.activation, net, out=buf)
                if unit.leak is not None:
                    tau = t - plan.direction
                    prev = reads.read(u, tau, H[u][tau] if 0 <= tau < T else None, params, plan.direction)
                    H[u][t] = P.leak_forward(params[f"{u}.alpha"], prev, a)

    def _group_step(self, g, t, H, GLIN, weights, params, reads, done):
        """One fused GEMM of a step group at step t (once per step)."""
        if id(g) not in done:
            tau = t - g.delay
            x = reads.read(g.source, tau, H[g.source][tau] if 0 <= tau < reads.T else None, params, g.delay)
            WT, bias = weights[id(g)]
            out = GLIN[id(g)][t]
            self.xp.matmul(x, WT, out=out)
            if bias is not None:
                out += bias
            done.add(id(g))
        return GLIN[id(g)][t]

    def _step_net(self, plan, u, t, pre, buf, H, LIN, GLIN, weights, params, consts, reads, done):
        """Sum a unit's terms at step t, accumulating in `buf` (its output slot) without extra copies."""
        xp, T = self.xp, reads.T
        acc, owned = (None, False) if pre is None else (pre[t], False)
        for kind, c, g in plan.terms[u]:
            gate_target = c.gate is not None and c.gate.at == "target"
            if kind == "group":
                lin = self._group_step(g, t, H, GLIN, weights, params, reads, done)[:, g.slices[c.name]]
            elif kind == "late":
                lin = LIN[c.name][t]
            else:
                tau = t - c.delay
                x = reads.read(c.source, tau, H[c.source][tau] if 0 <= tau < T else None, params, c.delay)
                gsrc = self._gv(c, H, t) if c.gate is not None and c.gate.at == "source" else None
                lin = self._lin(c, x, gsrc, params, consts)
            if acc is None:
                if gate_target:
                    acc, owned = xp.multiply(self._gv(c, H, t), lin, out=buf), True
                else:
                    acc, owned = lin, False
            else:
                term = self._gv(c, H, t) * lin if gate_target else lin
                if owned:
                    acc += term
                else:
                    acc, owned = xp.add(acc, term, out=buf), True
        if acc is None:
            buf[...] = 0
            return buf
        return acc

    # -- backward -----------------------------------------------------------------------
    def backward(self, tape, params, consts, dout, dnet, reads, states=None) -> dict:
        """Parameter gradients; `states`, if a dict, receives {unit: (T, B, size) dL/d output}."""
        xp, T, B = self.xp, reads.T, reads.B
        H, A, LIN, S, GLIN = (tape.extra[k] for k in ("H", "A", "LIN", "S", "GLIN"))
        grads = {k: xp.zeros_like(v) for k, v in params.items()}
        dH = {u: self._buffer(("dH", u), (T, B, self.program.size(u)), zero=True) for u in self.program.units}
        for u, d in dout.items():
            dH[u] += d
        for plan in reversed(self.plans):
            dNET, dLIN = {}, {}
            if plan.direction == 0:
                (u,) = plan.units
                dNET[u] = P.activate_backward(xp, self.program.units[u].activation, H[u], dH[u])
                if u in dnet:
                    dNET[u] = dNET[u] + dnet[u]
            else:
                self._scan_backward(plan, params, consts, H, A, LIN, GLIN, dH, dNET, dLIN, dnet, grads, reads)
            self._unit_grads(plan, params, H, A, dH, dNET, grads, reads)
            self._hoist_backward(plan, params, consts, H, LIN, S, dH, dNET, dLIN, grads, reads)
        if states is not None:
            states.update(dH)
        return grads

    def _route(self, dH, name, tau, d, grads, reads, delay):
        """Add the gradient of a read of (name, tau) by a connection of `delay` where it belongs."""
        if name in dH:
            inside = reads.read_backward(name, tau, d, grads, delay)
            if inside is not None:
                dH[name][tau] += inside

    def _scan_backward(self, plan, params, consts, H, A, LIN, GLIN, dH, dNET, dLIN, dnet, grads, reads):
        T, B = reads.T, reads.B
        units = self.program.units
        dG = {id(g): self._buffer(("dG", id(g)), (T, B, g.width)) for g in plan.step_groups}
        for u in plan.units:
            dNET[u] = self._buffer(("dNET", u), (T, B, units[u].size))
        compiled = self.compiled.get(id(plan))
        dS = {}  # per-step d(lin) of single connections with a weight or bias: gradients after the scan
        for u, terms in plan.terms.items():
            for kind, c, _ in terms:
                if kind == "late":
                    dLIN[c.name] = self._buffer(("dLIN", c.name), LIN[c.name].shape)
                elif kind == "single" and (c.has_param or c.bias is not None or compiled is not None):
                    dS[c.name] = self._buffer(("dS", c.name), (T, B, units[u].size))
        if compiled is not None:
            compiled.backward(self.b.dtype, reads, params, consts,
                              {"Y": H, "A": A, "G": GLIN, "L": LIN, "dY": dH, "dNET": dNET, "dG": dG,
                               "dS": dS, "dL": dLIN},
                              lambda g: self._weights(g, params, consts), grads, dnet)
        else:
            self._scan_steps_backward(plan, params, consts, H, A, LIN, GLIN, dH, dNET, dLIN, dnet, dG, dS,
                                      grads, reads)
        self._scan_grads(plan, params, H, dG, dS, grads, reads)

    def _scan_steps_backward(self, plan, params, consts, H, A, LIN, GLIN, dH, dNET, dLIN, dnet, dG, dS,
                             grads, reads):
        xp, T = self.xp, reads.T
        units = self.program.units
        steps = range(T - 1, -1, -1) if plan.direction > 0 else range(T)
        weights = {id(g): self._weights(g, params, consts)[0] for g in plan.step_groups}
        zero_groups, delayed = {}, []
        for g in plan.step_groups:
            (zero_groups.setdefault(g.source, []) if g.delay == 0 else delayed).append(g)

        def flush(g, t):
            self._route(dH, g.source, t - g.delay, dG[id(g)][t] @ weights[id(g)], grads, reads, g.delay)

        for t in steps:
            for u in reversed(plan.units):
                for g in zero_groups.get(u, ()):
                    flush(g, t)
                unit = units[u]
                d = dH[u][t]
                if unit.leak is not None:
                    alpha = params[f"{u}.alpha"]
                    self._route(dH, u, t - plan.direction, alpha * d, grads, reads, plan.direction)
                    d, a = (1 - alpha) * d, A[u][t]
                else:
                    a = H[u][t]
                dn = P.activate_backward(xp, unit.activation, a, d, out=dNET[u][t])
                if u in dnet:
                    dn += dnet[u][t]
                for kind, c, g in plan.terms[u]:
                    if kind == "group":
                        sl = g.slices[c.name]
                        if c.gate is not None:
                            dH[c.gate.unit][t] += P.gate_grad(dn * GLIN[id(g)][t][:, sl], c.gate.complement)
                            xp.multiply(dn, self._gv(c, H, t), out=dG[id(g)][t][:, sl])
                        else:
                            dG[id(g)][t][:, sl] = dn
                    elif kind == "late":
                        dH[c.gate.unit][t] += P.gate_grad(dn * LIN[c.name][t], c.gate.complement)
                        xp.multiply(dn, self._gv(c, H, t), out=dLIN[c.name][t])
                    else:
                        self._single_backward(c, t, dn, params, consts, H, dH, dS, grads, reads)
            for g in delayed:
                flush(g, t)

    def _scan_grads(self, plan, params, H, dG, dS, grads, reads):
        """Weight gradients of a scan: one GEMM (or reduction) over all steps for each group and
        connection."""
        for g in plan.step_groups:
            X = reads.shift(g.source, H[g.source], g.delay, params)
            self._group_grads(g, X, dG[id(g)], grads)
        for u, terms in plan.terms.items():
            for kind, c, _ in terms:
                if c.name in dS and (c.has_param or c.bias is not None):
                    xs = reads.shift(c.source, H[c.source], c.delay, params)
                    if c.gate is not None and c.gate.at == "source":
                        xs = self._gv(c, H, slice(None)) * xs
                    self._connection_grads(c, xs, dS[c.name], grads)

    def _single_backward(self, c, t, dn, params, consts, H, dH, dS, grads, reads):
        """Backward of one step of a connection computed inside the scan (weight gradients later)."""
        xp, T = self.xp, reads.T
        tau = t - c.delay
        x = reads.read(c.source, tau, H[c.source][tau] if 0 <= tau < T else None, params, c.delay)
        gsrc = self._gv(c, H, t) if c.gate is not None and c.gate.at == "source" else None
        dlin = dn
        if c.gate is not None and c.gate.at == "target":
            lin = self._lin(c, x, None, params, consts)
            dH[c.gate.unit][t] += P.gate_grad(dn * lin, c.gate.complement)
            dlin = dn * self._gv(c, H, t)
        if c.name in dS:
            dS[c.name][t] = dlin
        dxs = P.weight_back(xp, c.weight, params.get(c.name, consts.get(c.name)), dlin)
        if gsrc is not None:
            dH[c.gate.unit][t] += P.gate_grad(dxs * x, c.gate.complement)
            dxs = dxs * gsrc
        self._route(dH, c.source, tau, dxs, grads, reads, c.delay)

    def _connection_grads(self, c, xs, dlin, grads):
        if c.weight in ("full", "diagonal"):
            grads[c.name] += P.weight_grad(self.xp, c.weight, xs, dlin)
        if c.bias is not None:
            grads[f"{c.name}.bias"] += dlin.reshape(-1, dlin.shape[-1]).sum(axis=0)

    def _group_grads(self, g, X, dZ, grads):
        T, B = dZ.shape[0], dZ.shape[1]
        flat = dZ.reshape(T * B, g.width)
        dW = flat.T @ X.reshape(T * B, -1)
        db = flat.sum(axis=0)
        for c in g.members:
            sl = g.slices[c.name]
            grads[c.name] += dW[sl]
            if c.bias is not None:
                grads[f"{c.name}.bias"] += db[sl]

    def _unit_grads(self, plan, params, H, A, dH, dNET, grads, reads):
        for u in plan.units:
            unit = self.program.units[u]
            if unit.bias is not None:
                grads[f"{u}.bias"] += dNET[u].reshape(-1, unit.size).sum(axis=0)
            if unit.leak is not None:
                prev = reads.shift(u, H[u], plan.direction, params)
                _, _, dalpha = P.leak_backward(params[f"{u}.alpha"], prev, A[u], dH[u])
                grads[f"{u}.alpha"] += dalpha

    def _hoist_backward(self, plan, params, consts, H, LIN, S, dH, dNET, dLIN, grads, reads):
        """Gradients of everything hoisted before the scan: one GEMM per fused group."""
        xp, T, B = self.xp, reads.T, reads.B
        everything = slice(None)

        def dlin_of(c, lin):
            if c.name in plan.late_gate:
                return dLIN[c.name]
            dn = dNET[c.target]
            if c.gate is not None and c.gate.at == "target":
                dH[c.gate.unit] += P.gate_grad(dn * lin(), c.gate.complement)
                return dn * self._gv(c, H, everything)
            return dn

        for g in plan.hoist_groups:
            X = S[(g.source, g.delay)]
            Wcat, _ = self._weights(g, params, consts)
            parts = [dlin_of(c, lambda c=c: self._lin(c, X, None, params, consts)) for c in g.members]
            dZ = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)
            self._group_grads(g, X, dZ, grads)
            if g.source in dH:
                dX = (dZ.reshape(T * B, g.width) @ Wcat).reshape(T, B, -1)
                dH[g.source] += reads.shift_backward(g.source, dX, g.delay, grads)
        for u, conns in plan.hoist_single.items():
            for c in conns:
                X = S[(c.source, c.delay)]
                gsrc = self._gv(c, H, everything) if c.gate is not None and c.gate.at == "source" else None
                dlin = dlin_of(c, lambda c=c: self._lin(c, X, None, params, consts))
                xs = X if gsrc is None else gsrc * X
                self._connection_grads(c, xs, dlin, grads)
                dX = P.weight_back(xp, c.weight, params.get(c.name, consts.get(c.name)), dlin)
                if gsrc is not None:
                    dH[c.gate.unit] += P.gate_grad(dX * X, c.gate.complement)
                    dX = dX * gsrc
                if c.source in dH:
                    dH[c.source] += reads.shift_backward(c.source, dX, c.delay, grads)
