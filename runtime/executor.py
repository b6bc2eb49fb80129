"""The fast executor: components in topological order, hoisted GEMMs, one scan per recurrence.

For each strongly connected component of the folded graph (its step program: runtime/plan.py):
- everything it reads from outside (earlier components, inputs) is computed for all time
  steps at once: connections sharing (source, delay) are fused into one GEMM over T*B rows
  (runtime/hoist.py);
- a component without recurrence is then finished with one activation over all steps;
- a recurrent component is scanned step by step, forward or backward in time as its
  delays say: one compiled call per sequence (runtime/jit) or the interpreted loop
  (runtime/scan.py); its internal connections sharing (source, delay) are fused into one
  GEMM per step (e.g. the four LSTM gates reading h_{t-1}).
Backward runs the components in reverse, scans in reverse time, and computes every weight
gradient as one GEMM over all steps after the scan.

This module holds what both parts share: the work buffers, the fused weights, a
connection's W (g x) + b, and the gradients of weights and units.
"""
from __future__ import annotations

from . import hoist, jit, scan
from . import primitives as P
from .plan import make_plan
from .tape import Errors, Run, Tape, Trajectories


class FastExecutor:
    def __init__(self, program, backend, jit_scans: bool | None = None):
        """`jit_scans`: run each recurrent component's time loop as a compiled scan (None: when
        runtime.jit.enabled says so; True: require it; False: the interpreted scan)."""
        self.program = program
        self.b = backend
        self.xp = backend.xp
        self.plans = [make_plan(program, comp) for comp in program.components]
        self.compiled = {}  # id(plan) -> CompiledScan, for every recurrent component when the JIT is on
        if jit_scans and not jit.available(backend):
            from compiler.errors import TimeloomError
            raise TimeloomError(f"compiled scans are not available: {jit.why_not(backend)}")
        if jit.enabled(backend) if jit_scans is None else jit_scans:
            from .jit.codegen import unsupported
            from .jit.scan import CompiledScan
            self.compiled = {id(p): CompiledScan(program, p) for p in self.plans
                             if p.direction != 0 and unsupported(program, p) is None}
        self._work = {}  # (key, shape) -> array reused across calls (see buffer)

    def buffer(self, key, shape, zero=False):
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

    # -- what hoist and scan share ----------------------------------------------------------
    def weights(self, group, params):
        """(W, bias) of a fused group: the members' weights stacked by rows (bias None if none)."""
        W = [params[c.name] for c in group.members]
        Wcat = W[0] if len(W) == 1 else self.xp.concatenate(W, axis=0)
        bias = None
        if any(c.bias is not None for c in group.members):
            bias = self.xp.concatenate([params[f"{c.name}.bias"] if c.bias is not None
                                        else self.xp.zeros(self.program.size(c.target), dtype=Wcat.dtype)
                                        for c in group.members])
        return Wcat, bias

    def lin(self, c, x, gv_source, run):
        """W (g * x) + b for one connection (any weight kind)."""
        xs = x if gv_source is None else gv_source * x
        lin = P.weight_apply(self.xp, c.weight, run.params.get(c.name, run.consts.get(c.name)), xs)
        if c.bias is not None:
            lin = lin + run.params[f"{c.name}.bias"]
        return lin

    @staticmethod
    def gate(c, out, t):
        """The factor c's gate applies at step(s) t: g or 1 - g."""
        return P.gate_value(out[c.gate.unit][t], c.gate.complement)

    def connection_grads(self, c, xs, dlin, grads):
        """Weight and bias gradients of one connection from its (gated) input and d(W x + b)."""
        if c.has_param:
            grads[c.name] += P.weight_grad(self.xp, c.weight, xs, dlin)
        if c.bias is not None:
            grads[f"{c.name}.bias"] += dlin.reshape(-1, dlin.shape[-1]).sum(axis=0)

    @staticmethod
    def group_grads(g, X, dZ, grads):
        """Weight and bias gradients of a fused group: one GEMM over all steps."""
        T, B = dZ.shape[0], dZ.shape[1]
        flat = dZ.reshape(T * B, g.width)
        dW = flat.T @ X.reshape(T * B, -1)
        db = flat.sum(axis=0)
        for c in g.members:
            sl = g.slices[c.name]
            grads[c.name] += dW[sl]
            if c.bias is not None:
                grads[f"{c.name}.bias"] += db[sl]

    # -- forward --------------------------------------------------------------------------
    def forward(self, params, consts, inputs, reads) -> Tape:
        T, B = reads.T, reads.B
        run = Run(params, consts, reads, Trajectories(out=dict(inputs)))
        for plan in self.plans:
            for u in plan.units:
                run.traj.out[u] = self.buffer(("out", u), (T, B, self.program.size(u)))
            pre = hoist.forward(self, plan, run)
            if plan.direction == 0:
                (u,) = plan.units
                P.activate(self.xp, self.program.units[u].activation, pre[u], out=run.traj.out[u])
            else:
                scan.forward(self, plan, run, pre)
        return Tape(out={u: run.traj.out[u] for u in self.program.units}, extra=run.traj)

    # -- backward -------------------------------------------------------------------------
    def backward(self, tape, params, consts, dout, dnet, reads, states=None) -> dict:
        """Parameter gradients; `states`, if a dict, receives {unit: (T, B, size) dL/d output}."""
        xp, T, B = self.xp, reads.T, reads.B
        d_out = {u: self.buffer(("d_out", u), (T, B, self.program.size(u)), zero=True) for u in self.program.units}
        for u, d in dout.items():
            d_out[u] += d
        run = Run(params, consts, reads, tape.extra, Errors(d_out),
                  {k: xp.zeros_like(v) for k, v in params.items()}, dnet)
        for plan in reversed(self.plans):
            if plan.direction == 0:
                (u,) = plan.units
                d_net = P.activate_backward(xp, self.program.units[u].activation, run.traj.out[u], d_out[u])
                run.errors.d_net[u] = d_net + dnet[u] if u in dnet else d_net
            else:
                scan.backward(self, plan, run)
            self._unit_grads(plan, run)
            hoist.backward(self, plan, run)
        if states is not None:
            states.update(d_out)
        return run.grads

    def _unit_grads(self, plan, run):
        """Gradients of the units' biases and leaks."""
        traj, errors, grads = run.traj, run.errors, run.grads
        for u in plan.units:
            unit = self.program.units[u]
            if unit.bias is not None:
                grads[f"{u}.bias"] += errors.d_net[u].reshape(-1, unit.size).sum(axis=0)
            if unit.leak is not None:
                prev = run.reads.shift(u, traj.out[u], plan.direction, run.params)
                _, _, dalpha = P.leak_backward(run.params[f"{u}.alpha"], prev, traj.squashed[u], errors.d_out[u])
                grads[f"{u}.alpha"] += dalpha
