"""The reference interpreter: walks `Program.unroll(T)` node by node.

Slow and plain on purpose: it is the oracle the fast executor is tested against. Forward
visits the unrolled graph in topological order; backward visits it in reverse, each node
applying the backward of the same primitives (runtime.primitives) it used going forward.
"""
from __future__ import annotations

import networkx as nx

from . import primitives as P
from .tape import Reads, Tape


class ReferenceExecutor:
    def __init__(self, program, backend):
        self.program = program
        self.b = backend
        self.xp = backend.xp
        self.conn = {c.name: c for c in program.connections}
        self.direction = program.direction

    # -- forward ------------------------------------------------------------------------
    def forward(self, params, consts, inputs, reads: Reads) -> Tape:
        T = reads.T
        g = self.program.unroll(T)
        order = list(nx.topological_sort(g))
        val, act = {}, {}
        for node in order:
            name, t = node
            kind = g.nodes[node]["kind"]
            if kind == "input":
                val[node] = inputs[name][t]
            elif kind == "unit":
                val[node], act[node] = self._unit(g, node, params, consts, val, reads)
        out = {u: self.xp.stack([val[(u, t)] for t in range(T)]) for u in self.program.units}
        return Tape(out=out, extra={"graph": g, "order": order, "val": val, "act": act,
                                    "inputs": inputs})

    def _read(self, val, reads, node, params, t):
        name, tau = node
        return reads.read(name, tau, val.get(node), params, t - tau)

    def _contributions(self, g, node, params, consts, val, reads):
        """Yield (connection, source value, gate value or None, lin before target gate)."""
        xp = self.xp
        for src, _, e in g.in_edges(node, data=True):
            for pname in e["params"]:
                c = self.conn[pname]
                x = self._read(val, reads, src, params, node[1])
                gv = None
                if c.gate is not None:
                    gv = P.gate_value(val[(c.gate.unit, node[1])], c.gate.complement)
                xs = gv * x if (gv is not None and c.gate.at == "source") else x
                W = params.get(c.name, consts.get(c.name))
                lin = P.weight_apply(xp, c.weight, W, xs)
                if c.bias is not None:
                    lin = lin + params[f"{c.name}.bias"]
                yield c, src, x, gv, lin

    def _unit(self, g, node, params, consts, val, reads):
        xp = self.xp
        u = self.program.units[node[0]]
        net = xp.zeros_like(reads.initial(u.name, params))
        if u.bias is not None:
            net = net + params[f"{u.name}.bias"]
        for c, _, _, gv, lin in self._contributions(g, node, params, consts, val, reads):
            net = net + (gv * lin if (gv is not None and c.gate.at == "target") else lin)
        a = P.activate(xp, u.activation, net)
        if u.leak is None:
            return a, a
        prev = self._read(val, reads, self._leak_source(g, node), params, node[1])
        return P.leak_forward(params[f"{u.name}.alpha"], prev, a), a

    @staticmethod
    def _leak_source(g, node):
        return next(src for src, _, e in g.in_edges(node, data=True) if "leak" in e["kinds"])

    # -- backward -----------------------------------------------------------------------
    def backward(self, tape: Tape, params, consts, dout: dict, dnet: dict, reads: Reads, states=None) -> dict:
        """Parameter gradients; `states`, if a dict, receives {unit: (T, B, size) dL/d output}."""
        xp = self.xp
        g, val, act = tape.extra["graph"], tape.extra["val"], tape.extra["act"]
        grads = {k: xp.zeros_like(v) for k, v in params.items()}
        dval = {}

        def add(node, d):
            dval[node] = dval[node] + d if node in dval else d

        def add_read(node, d, t):
            name, tau = node
            if name in self.program.inputs:
                return
            inside = reads.read_backward(name, tau, d, grads, t - tau)
            if inside is not None:
                add(node, inside)

        for u, d in dout.items():
            for t in range(reads.T):
                add((u, t), d[t])
        for node in reversed(tape.extra["order"]):
            if g.nodes[node]["kind"] != "unit":
                continue
            name, t = node
            u = self.program.units[name]
            d = dval.get(node, xp.zeros_like(val[node]))
            if u.leak is not None:
                src = self._leak_source(g, node)
                prev = self._read(val, reads, src, params, t)
                dprev, d, dalpha = P.leak_backward(params[f"{name}.alpha"], prev, act[node], d)
                grads[f"{name}.alpha"] += dalpha
                add_read(src, dprev, t)
            dn = P.activate_backward(xp, u.activation, act[node], d)
            if name in dnet:
                dn = dn + dnet[name][t]
            if u.bias is not None:
                grads[f"{name}.bias"] += dn.sum(axis=0)
            for c, src, x, gv, lin in self._contributions(g, node, params, consts, val, reads):
                dlin = dn
                if gv is not None and c.gate.at == "target":
                    dlin = dn * gv
                    add((c.gate.unit, t), P.gate_grad(dn * lin, c.gate.complement))
                if c.bias is not None:
                    grads[f"{c.name}.bias"] += dlin.sum(axis=0)
                xs = gv * x if (gv is not None and c.gate.at == "source") else x
                if c.name in grads and c.has_param:
                    grads[c.name] += P.weight_grad(xp, c.weight, xs, dlin)
                dxs = P.weight_back(xp, c.weight, params.get(c.name, consts.get(c.name)), dlin)
                if gv is not None and c.gate.at == "source":
                    add((c.gate.unit, t), P.gate_grad(dxs * x, c.gate.complement))
                    dxs = dxs * gv
                if not c.stop_gradient:
                    add_read(src, dxs, t)
        if states is not None:
            states.update({u: xp.stack([dval.get((u, t), xp.zeros_like(val[(u, t)])) for t in range(reads.T)])
                           for u in self.program.units})
        return grads
