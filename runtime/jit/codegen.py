"""Generate the Python source of a component's whole scan over T, forward and BPTT, from its
step program (runtime/plan.py): the numba-compiled twin of runtime/scan.py.

The generated functions run every time step of one recurrent component in one call. They
see the same buffers the interpreter fills (outputs, pre-activations, fused step products,
hoisted gated terms) and call runtime/jit/kernels.py for each operation of a step, so a
step reads like the plan: read, product, gate, sum, activation, leak. Arguments are named
by role and index; `ScanSource.forward_args` / `backward_args` say which array each one is
(runtime/jit/scan.py binds them). The source holds no spec names and no sizes, so components
of the same structure share it; `ScanSource.legend` (and `emit`, for `timeloom compile
--emit-step`) says which spec names the indices stand for.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from ..plan import Plan

HEADER = '''"""timeloom: a compiled scan (direction {direction:+d}), generated from a component's step program
by runtime/jit/codegen.py. Y<j>: unit or input trajectories (T, B, n); P<i>: pre-activations
(columns Po<i>.. of a hoisted product);
G<k>: fused step products; S*: single connections; L<m>: hoisted terms gated in the scan."""
# built on runtime/jit/kernels.py {kernels}: numba's cache of this file is keyed on this file
# alone, so a change of the kernels must change this text
import numpy as np
from numba import njit
from runtime.jit.kernels import (read, route, matmul_into, add_bias, weigh, zero,
                                 copy_cols, take_cols, add_cols, gated_add_cols, gate_mul_cols, gate_grad_cols,
                                 leak, scale_rows, {activations})

'''


def _label(name: str) -> str:
    """A name for a comment: no line breaks can leave the comment."""
    return repr(str(name)).replace("\n", " ")


@dataclass
class ScanSource:
    """The generated module: source text and the meaning of each argument of its functions."""

    source: str
    forward_args: list  # [(role, name)] in the order of forward()'s arguments after T
    backward_args: list  # likewise for backward()
    read_depth: dict = field(default_factory=dict)  # source -> K (reads reach back to t - K)
    legend: str = ""  # which spec names the indices stand for (comment lines)


class _Writer:
    def __init__(self):
        self.lines = []
        self.depth = 1

    def __call__(self, line=""):
        self.lines.append("    " * self.depth + line if line else "")


# what the kernels implement (runtime/jit/kernels.py: NAME and NAME_back for each activation);
# a component using anything else keeps the interpreted scan, and `timeloom compile` says so
ACTIVATIONS = ("identity", "tanh", "sigmoid", "scaled_sigmoid", "hard_sigmoid", "hard_tanh", "relu", "softplus",
               "softmax")
WEIGHTS = ("full", "diagonal", "identity", "fixed")


def unsupported(program, plan: Plan) -> str | None:
    """Why this component's scan cannot be compiled, or None."""
    for u in plan.units:
        name = program.units[u].activation.name
        if name not in ACTIVATIONS:
            return f"unit {_label(u)} has activation {name!r}, which the compiled kernels do not implement"
    for terms in plan.terms.values():
        for _, c, _ in terms:
            if c.weight not in WEIGHTS:
                return f"connection {_label(c.name)} has weight kind {c.weight!r}, which the kernels do not implement"
    return None


def pre_units(program, plan: Plan) -> set:
    """The units of the component whose pre-activation array exists before the scan (a bias,
    or a hoisted connection not gated inside the component)."""
    out = {u for u in plan.units if program.units[u].bias is not None}
    for g in plan.hoist_groups:
        out |= {c.target for c in g.members if c.name not in plan.late_gate}
    for u, conns in plan.hoist_single.items():
        if any(c.name not in plan.late_gate for c in conns):
            out.add(u)
    return out


def generate(program, plan: Plan) -> ScanSource:
    return _Generator(program, plan).build()


class _Generator:
    def __init__(self, program, plan):
        self.program, self.plan = program, plan
        self.units = list(plan.units)
        self.direction = plan.direction
        self.names = list(self.units)  # every trajectory the scan touches: Y{j}
        self.groups = list(plan.step_groups)
        self.singles, self.lates = [], []  # connections, in term order
        for u in self.units:
            for kind, c, _ in plan.terms[u]:
                (self.singles if kind == "single" else self.lates if kind == "late" else []).append(c)
        self.depth = {}  # read source -> deepest positive delay
        for g in self.groups:
            self._reads(g.source, g.delay)
        for c in self.singles:
            self._reads(c.source, c.delay)
            if c.gate is not None:
                self._name(c.gate.unit)
        for c in self.lates + [c for g in self.groups for c in g.members]:
            if c.gate is not None:
                self._name(c.gate.unit)
        for u in self.units:
            if program.units[u].leak is not None:
                self._reads(u, self.direction)
        self.pre = pre_units(program, plan)

    def _name(self, name):
        if name not in self.names:
            self.names.append(name)
        return self.names.index(name)

    def _reads(self, name, delay):
        self._name(name)
        self.depth[name] = max(self.depth.get(name, 1), delay)

    # -- argument lists --------------------------------------------------------------------
    def _j(self, name):
        return self.names.index(name)

    def _read_args(self, backward):
        args = []
        for name in self.depth:
            j = self._j(name)
            args += [(f"F{j}", ("fill", name)), (f"I{j}", ("init", name)), (f"TE{j}", ("teach", name)),
                     (f"TM{j}", ("tmask", name)), (f"TV{j}", ("forced", name))]
            if backward:
                args += [(f"FL{j}", ("fill_learns", name)), (f"LE{j}", ("learns", name)),
                         (f"D0{j}", ("dh0", name))]
        return args

    def forward_args(self):
        a = [("fast", ("fast", None)), ("valid", ("valid", None))]
        a += [(f"Y{j}", ("Y", n)) for j, n in enumerate(self.names)]
        for i, u in enumerate(self.units):
            if u in self.pre:
                a += [(f"P{i}", ("pre", u)), (f"Po{i}", ("pre_col", u))]
            if self.program.units[u].leak is not None:
                a += [(f"A{i}", ("A", u)), (f"al{i}", ("alpha", u))]
        for k, g in enumerate(self.groups):
            a += [(f"WT{k}", ("WT", k)), (f"W{k}", ("W", k)), (f"G{k}", ("G", k)), (f"off{k}", ("offsets", k))]
            if self._group_bias(g):
                a.append((f"gb{k}", ("gbias", k)))
        for m, c in enumerate(self.singles):
            a += [(f"SW{m}", ("SW", c.name)), (f"SWT{m}", ("SWT", c.name))]
            if c.bias is not None:
                a.append((f"Sb{m}", ("Sbias", c.name)))
        a += [x for m, c in enumerate(self.lates) for x in ((f"L{m}", ("L", c.name)), (f"Lo{m}", ("L_col", c.name)))]
        return a + self._read_args(False)

    def backward_args(self):
        a = [("valid", ("valid", None))]
        a += [(f"Y{j}", ("Y", n)) for j, n in enumerate(self.names)]
        a += [(f"dY{j}", ("dY", n)) for j, n in enumerate(self.names) if n in self.program.units]
        for i, u in enumerate(self.units):
            a += [(f"dN{i}", ("dNET", u)), (f"DN{i}", ("dnet", u)), (f"hasDN{i}", ("has_dnet", u))]
            if self.program.units[u].leak is not None:
                a += [(f"A{i}", ("A", u)), (f"al{i}", ("alpha", u)), (f"oal{i}", ("one_minus_alpha", u))]
        for k, g in enumerate(self.groups):
            a += [(f"W{k}", ("W", k)), (f"WT{k}", ("WT", k)), (f"G{k}", ("G", k)), (f"dG{k}", ("dG", k)),
                  (f"off{k}", ("offsets", k))]
        for m, c in enumerate(self.singles):
            a += [(f"SW{m}", ("SW", c.name)), (f"SWT{m}", ("SWT", c.name)), (f"dS{m}", ("dS", c.name))]
            if c.bias is not None:
                a.append((f"Sb{m}", ("Sbias", c.name)))
        a += [x for m, c in enumerate(self.lates)
              for x in ((f"L{m}", ("L", c.name)), (f"Lo{m}", ("L_col", c.name)), (f"dL{m}", ("dL", c.name)))]
        return a + self._read_args(True)

    @staticmethod
    def _group_bias(g):
        return any(c.bias is not None for c in g.members)

    # -- pieces of a step -------------------------------------------------------------------
    def _read(self, w, name, tau_expr, delay):
        """x<j> = the value a connection of `delay` reads of `name` at tau (a view of Y<j> or,
        at the edges, the row buffer r<j>); returns "x<j>"."""
        j = self._j(name)
        teach = f"TE{j}" if delay > 0 else "False"
        w(f"x{j} = read(r{j}, Y{j}, {tau_expr}, F{j}, I{j}, valid, {teach}, TM{j}, TV{j})")
        return f"x{j}"

    def _route(self, w, name, tau_expr, delay, d):
        if name not in self.program.units:
            return  # an input: nothing to carry the gradient to
        j = self._j(name)
        teach = f"TE{j}" if delay > 0 else "False"
        w(f"route(dY{j}, {tau_expr}, {d}, valid, {teach}, TM{j}, FL{j}, LE{j}, D0{j})")

    def _tau(self, delay):
        return "t" if delay == 0 else f"t - {delay}" if delay > 0 else f"t + {-delay}"

    def _gate(self, c):
        return f"Y{self._j(c.gate.unit)}[t]", "True" if c.gate.complement else "False"

    @staticmethod
    def _single_diag(c):
        return not matrix_weight(c)

    def _temps(self, w, backward):
        """Per-step (B, n) work rows, allocated once per call."""
        def row(name):
            return f"np.empty((B, Y{self._j(name)}.shape[2]), dtype=Y0.dtype)"

        for name in self.depth:
            w(f"r{self._j(name)} = {row(name)}")
        for m, c in enumerate(self.singles):
            w(f"s{m} = {row(c.target)}")
            if c.gate is not None and c.gate.at == "source":
                w(f"gx{m} = {row(c.source)}")
        if backward:
            for i, u in enumerate(self.units):
                w(f"d{i} = {row(u)}")
            for name in self.depth:
                w(f"q{self._j(name)} = {row(name)}")
            for k, g in enumerate(self.groups):
                w(f"dx{k} = {row(g.source)}")
            for m, c in enumerate(self.singles):
                w(f"ds{m} = {row(c.source)}")  # d(source) = dS @ W: the source's width

    def _steps(self, w, backward):
        forward_in_time = (self.direction > 0) != backward
        w("for s in range(T):")
        w.depth += 1
        w("t = s" if forward_in_time else "t = T - 1 - s")

    # -- forward ---------------------------------------------------------------------------------
    def _group_product(self, w, k, g):
        x = self._read(w, g.source, self._tau(g.delay), g.delay)
        w(f"matmul_into({x}, WT{k}, W{k}, G{k}[t])")
        if self._group_bias(g):
            w(f"add_bias(G{k}[t], gb{k})")

    def _forward(self, w):
        w("def forward(T, B, " + ", ".join(n for n, _ in self.forward_args()) + "):")
        w.depth = 1
        self._temps(w, False)
        self._steps(w, False)
        done = set()
        for k, g in enumerate(self.groups):
            if g.delay != 0:
                self._group_product(w, k, g)
                done.add(k)
        singles, lates = iter(range(len(self.singles))), iter(range(len(self.lates)))
        for i, u in enumerate(self.units):
            unit = self.program.units[u]
            w(f"# unit {i}")
            buf = f"Y{i}[t]" if unit.leak is None else f"A{i}[t]"
            w(f"net = {buf}")
            w(f"take_cols(net, P{i}[t], Po{i})" if u in self.pre else "zero(net)")
            for kind, c, g in self.plan.terms[u]:
                if kind == "group":
                    k = self.groups.index(g)
                    if k not in done:
                        self._group_product(w, k, g)
                        done.add(k)
                    lin, lo = f"G{k}[t]", f"off{k}[{g.members.index(c)}]"
                elif kind == "late":
                    m = next(lates)
                    lin, lo = f"L{m}[t]", f"Lo{m}"
                else:
                    m = next(singles)
                    lin, lo = self._single_lin(w, m, c), "0"
                if c.gate is not None and c.gate.at == "target":
                    g_, comp = self._gate(c)
                    w(f"gated_add_cols(net, {g_}, {comp}, {lin}, {lo})")
                else:
                    w(f"add_cols(net, {lin}, {lo})")
            act = unit.activation
            w(f"{act.name}(net, {float(act.lo)!r}, {float(act.hi)!r}, fast)")
            if unit.leak is not None:
                x = self._read(w, u, self._tau(self.direction), self.direction)
                w(f"leak(Y{i}[t], al{i}, {x}, net)")
        w.depth = 1
        w("return 0")

    def _single_lin(self, w, m, c):
        """W (g * x) + b for one in-scan connection that is not part of a fused product: writes
        it (into s{m}, or nowhere for a plain identity weight) and returns its name."""
        x = self._read(w, c.source, self._tau(c.delay), c.delay)
        if c.gate is not None and c.gate.at == "source":
            g_, comp = self._gate(c)
            w(f"gate_mul_cols(gx{m}, 0, {g_}, {comp}, {x})")
            x = f"gx{m}"
        if c.weight == "identity" and c.bias is None:
            return x
        if c.weight == "identity":
            w(f"copy_cols(s{m}, 0, {x})")
        else:
            w(f"weigh({x}, SW{m}, SWT{m}, {self._single_diag(c)}, s{m})")
        if c.bias is not None:
            w(f"add_bias(s{m}, Sb{m})")
        return f"s{m}"

    # -- backward --------------------------------------------------------------------------------
    def _flush(self, w, k, g):
        """The gradient of a fused product's input: dG[t] @ W, routed to the source it read
        (nothing for a group of `gradient: stop` connections: its source gets no error)."""
        if g.stop_gradient:
            return
        w(f"matmul_into(dG{k}[t], W{k}, WT{k}, dx{k})")
        self._route(w, g.source, self._tau(g.delay), g.delay, f"dx{k}")

    def _backward(self, w):
        w("def backward(T, B, " + ", ".join(n for n, _ in self.backward_args()) + "):")
        w.depth = 1
        self._temps(w, True)
        self._steps(w, True)
        zero = {}
        for k, g in enumerate(self.groups):
            if g.delay == 0:
                zero.setdefault(g.source, []).append(k)
        singles = {id(c): m for m, c in enumerate(self.singles)}
        lates = {id(c): m for m, c in enumerate(self.lates)}
        for i in reversed(range(len(self.units))):
            u = self.units[i]
            unit = self.program.units[u]
            w(f"# unit {i}")
            for k in zero.get(u, ()):
                self._flush(w, k, self.groups[k])
            if unit.leak is not None:
                j = self._j(u)
                w(f"scale_rows(q{j}, al{i}, dY{i}[t])")
                self._route(w, u, self._tau(self.direction), self.direction, f"q{j}")
                w(f"scale_rows(d{i}, oal{i}, dY{i}[t])")
                a = f"A{i}[t]"
                d = f"d{i}"
            else:
                a, d = f"Y{i}[t]", f"dY{i}[t]"  # read only here: no later term writes it
            act = unit.activation
            w(f"dn = dN{i}[t]")
            w(f"{act.name}_back({a}, {d}, dn, {float(act.lo)!r}, {float(act.hi)!r})")
            w(f"if hasDN{i}:")
            w(f"    add_cols(dn, DN{i}[t], 0)")
            for kind, c, g in self.plan.terms[u]:
                gated = c.gate is not None and c.gate.at == "target"
                if gated:
                    g_, comp = self._gate(c)
                    dgate = f"dY{self._j(c.gate.unit)}[t]"
                if kind == "group":
                    k = self.groups.index(g)
                    lo = f"off{k}[{g.members.index(c)}]"
                    if gated:
                        w(f"gate_grad_cols({dgate}, {comp}, dn, G{k}[t], {lo})")
                        w(f"gate_mul_cols(dG{k}[t], {lo}, {g_}, {comp}, dn)")
                    else:
                        w(f"copy_cols(dG{k}[t], {lo}, dn)")
                elif kind == "late":
                    m = lates[id(c)]
                    w(f"gate_grad_cols({dgate}, {comp}, dn, L{m}[t], Lo{m})")
                    w(f"gate_mul_cols(dL{m}[t], 0, {g_}, {comp}, dn)")
                else:
                    self._single_backward(w, singles[id(c)], c)
            w("")
        w.depth = 2
        for k, g in enumerate(self.groups):
            if g.delay != 0:
                self._flush(w, k, g)
        w.depth = 1
        w("return 0")

    def _single_backward(self, w, m, c):
        j = self._j(c.source)
        if c.gate is not None and c.gate.at == "target":
            g_, comp = self._gate(c)
            lin = self._single_lin(w, m, c)  # lin again; it also leaves the read in x{j}
            w(f"gate_grad_cols(dY{self._j(c.gate.unit)}[t], {comp}, dn, {lin}, 0)")
            w(f"gate_mul_cols(dS{m}[t], 0, {g_}, {comp}, dn)")
        else:
            if c.gate is not None:  # at the source: its gradient needs the read
                self._read(w, c.source, self._tau(c.delay), c.delay)
            w(f"copy_cols(dS{m}[t], 0, dn)")
        source_gated = c.gate is not None and c.gate.at == "source"
        if c.stop_gradient and not source_gated:
            return  # `gradient: stop`: dS (for the weight gradient) is all; the source gets no error
        ds = f"dS{m}[t]"  # d(W g x + b); then d(g x)
        if c.weight != "identity":
            w(f"weigh({ds}, SWT{m}, SW{m}, {self._single_diag(c)}, ds{m})")
            ds = f"ds{m}"
        if c.gate is not None and c.gate.at == "source":
            g_, comp = self._gate(c)
            w(f"gate_grad_cols(dY{self._j(c.gate.unit)}[t], {comp}, {ds}, x{j}, 0)")
            w(f"gate_mul_cols(ds{m}, 0, {g_}, {comp}, {ds})")
            ds = f"ds{m}"
        if not c.stop_gradient:
            self._route(w, c.source, self._tau(c.delay), c.delay, ds)

    # -- the module ---------------------------------------------------------------------------------
    def build(self) -> ScanSource:
        acts = sorted({a for u in self.units for a in (self.program.units[u].activation.name,
                                                       self.program.units[u].activation.name + "_back")})
        fw, bw = _Writer(), _Writer()
        for w, body in ((fw, self._forward), (bw, self._backward)):
            w.depth = 0
            w("@njit(cache=True, nogil=True, error_model='numpy')")
            body(w)
        head = HEADER.format(direction=self.direction, activations=", ".join(acts), kernels=_kernels_hash())
        return ScanSource(head + "\n".join(fw.lines) + "\n\n\n" + "\n".join(bw.lines) + "\n",
                          [r for _, r in self.forward_args()], [r for _, r in self.backward_args()],
                          dict(self.depth), self.legend())

    def legend(self) -> str:
        """The spec's names behind the indices (kept out of the source, so that components of
        the same structure share one compiled scan)."""
        lines = [f"# Y{j} = {_label(n)}" + (f" (unit {self.units.index(n)} of this component)"
                                            if n in self.units else "") for j, n in enumerate(self.names)]
        lines += [f"# G{k} = {_label(g.source)}@{g.delay} -> "
                  + ", ".join(_label(c.name) for c in g.members) for k, g in enumerate(self.groups)]
        lines += [f"# S{m} = {_label(c.name)}" for m, c in enumerate(self.singles)]
        lines += [f"# L{m} = {_label(c.name)} (gated by {_label(c.gate.unit)} in the scan)"
                  for m, c in enumerate(self.lates)]
        return "\n".join(lines)


def emit(program) -> str:
    """The generated scans of every recurrent component of a program, each under the names it
    stands for: what `timeloom compile SPEC --emit-step FILE` writes."""
    from ..plan import make_plan
    parts = [f"# timeloom: the compiled time loop of {_label(program.name)}, one module per recurrent component."]
    for comp in program.components:
        if comp.direction == 0:
            continue
        plan = make_plan(program, comp)
        why = unsupported(program, plan)
        if why is not None:
            parts.append(f"\n# component {', '.join(_label(u) for u in comp.units)}: interpreted ({why})")
            continue
        code = generate(program, plan)
        way = "forward" if comp.direction > 0 else "backward"
        parts.append("\n# " + "=" * 94 + f"\n# component {', '.join(_label(u) for u in comp.units)} "
                     f"({way} in time)\n" + code.legend + "\n# " + "=" * 94 + "\n" + code.source)
    return "\n".join(parts)


@functools.lru_cache(maxsize=1)
def _kernels_hash() -> str:
    import hashlib
    from pathlib import Path
    return hashlib.sha256((Path(__file__).parent / "kernels.py").read_bytes()).hexdigest()[:16]


def matrix_weight(c) -> bool:
    """Whether connection c multiplies by a matrix (full, or fixed with a matrix); the other
    kinds (diagonal, identity, fixed scalar) scale each unit."""
    return c.weight == "full" or (c.weight == "fixed" and
                                  (isinstance(c.fixed, (list, tuple)) or getattr(c.fixed, "ndim", 0) == 2))
