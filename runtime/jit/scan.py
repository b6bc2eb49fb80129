"""Run a component's compiled scan: bind the executor's buffers to the generated arguments.

`CompiledScan.forward` / `.backward` take the same buffers as the interpreted scan and fill
the same outputs. Each argument of a generated function has a role (runtime/jit/codegen.py);
`_ROLES` says how to find its value for one call. What does not change between calls
(column offsets, placeholders for absent arrays) is made once.
"""
from __future__ import annotations

import numpy as np

from . import cache
from .codegen import generate, matrix_weight

# The compiled scans compute in-step products with their own loops (runtime/jit/kernels.py).
# When a product has this many multiply-adds per step (B x inputs x outputs) or more, the
# interpreted scan is faster: its products run on NumPy's BLAS and a step of that size costs
# more than the Python the compiled scan saves. Measured on the 2-core development machine,
# LSTM forward + backward, compiled / interpreted (1 thread, 2 threads): B=32 H=32 (131k)
# 0.47, 0.43; B=64 H=64 (1M) 0.88, 0.97; B=16 H=128 (1M) 0.85, 0.91; B=32 H=128 (2.1M) 1.16,
# 1.27. The results are the same either way.
LOOP_BOUND = 1_500_000

# the roles whose arrays the scans write: they must be the executor's own buffers
_WRITTEN = {"Y", "A", "G", "dY", "dNET", "dG", "dS", "dL", "dh0"}


def _c(a, dtype):
    """A C-contiguous, writable array of `dtype` (one machine-code version per dtype)."""
    if type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=dtype, order="C")


def _constant(kind, shape, dtype, value=0.0):
    """A read-only-by-convention array of `value` (the scans never write these), made once."""
    key = (kind, shape, np.dtype(dtype).str, value)
    a = _CONSTANTS.get(key)
    if a is None:
        a = _CONSTANTS[key] = np.full(shape, value, dtype)
    return a


_CONSTANTS = {}


def _fill(call, name):
    """(K, B, n): what reads of name at tau = -K..-1 give (carried-in state or initial)."""
    reads, k = call.reads, call.scan.code.read_depth[name]
    if name not in reads.state and f"{name}.h0" not in call.params:
        return _constant("zeros", (k, reads.B, reads.size(name)), call.dtype)
    return np.stack([_c(reads.fill_at(name, tau, call.params), call.dtype) for tau in range(-k, 0)])


def _init(call, name):
    if f"{name}.h0" not in call.params:
        return _constant("zeros", (call.reads.B, call.reads.size(name)), call.dtype)
    return _c(call.reads.initial(name, call.params), call.dtype)


def _teacher(call, name, part):
    t = call.reads.teacher.get(name)
    if part == 0:
        return t is not None
    if t is None:
        return _constant("none", (1, 1, 1) if part == 2 else (1, 1), call.dtype)
    return _c(t[1][..., 0], call.dtype) if part == 1 else _c(t[0], call.dtype)


def _learns(call, name):
    return f"{name}.h0" in call.grads


def _fill_learns(call, name):
    k, learns = call.scan.code.read_depth[name], _learns(call, name)
    return np.array([learns and not call.reads._from_state(name, tau) for tau in range(-k, 0)])


def _single_weight(call, name, transposed):
    """A matrix weight (and its transpose), or (1, n) for a diagonal, identity or scalar one."""
    c = call.scan.connections[name]
    W = call.params.get(name, call.consts.get(name))
    n = call.scan.program.size(c.target)
    if c.weight == "identity":
        W = _constant("ones", (n,), call.dtype, 1.0)
    elif c.weight == "fixed" and W.ndim == 0:
        W = _constant("fixed", (n,), call.dtype, float(W))
    if W.ndim == 1:
        return _c(W[None, :], call.dtype)  # diagonal: the same (1, n) both ways
    return _c(W.T if transposed else W, call.dtype)


def _valid(call, _):
    v = call.reads.valid
    return _constant("valid", (call.reads.T, call.reads.B), bool, True) if v is None else _c(v, bool)


_ROLES = {
    "fast": lambda call, _: call.dtype == np.float32,
    "valid": _valid,
    "alpha": lambda call, u: _c(call.params[f"{u}.alpha"], call.dtype),
    "one_minus_alpha": lambda call, u: _c(1 - call.params[f"{u}.alpha"], call.dtype),
    "offsets": lambda call, k: call.scan.offsets[k],
    "WT": lambda call, k: call.group_weights(k)[0],
    "W": lambda call, k: call.group_weights(k)[1],
    "gbias": lambda call, k: call.group_weights(k)[2],
    "SW": lambda call, name: _single_weight(call, name, False),
    "SWT": lambda call, name: _single_weight(call, name, True),
    "Sbias": lambda call, name: _c(call.params[f"{name}.bias"], call.dtype),
    "dnet": lambda call, u: _c(call.dnet[u], call.dtype) if u in call.dnet else _constant("none", (1, 1, 1),
                                                                                          call.dtype),
    "has_dnet": lambda call, u: u in call.dnet,
    "fill": _fill,
    "init": _init,
    "teach": lambda call, name: _teacher(call, name, 0),
    "tmask": lambda call, name: _teacher(call, name, 1),
    "forced": lambda call, name: _teacher(call, name, 2),
    "fill_learns": _fill_learns,
    "learns": _learns,
    "dh0": lambda call, name: call.grads[f"{name}.h0"] if _learns(call, name) else np.zeros(1, call.dtype),
}


class _Call:
    """What one call of a scan sees: dtype, reads, parameters and the buffers by role."""

    def __init__(self, scan, dtype, reads, params, consts, buffers, weights_of, grads=None, dnet=None):
        self.scan, self.dtype, self.reads, self.params, self.consts = scan, dtype, reads, params, consts
        self.buffers, self.weights_of = buffers, weights_of
        self.grads, self.dnet = grads or {}, dnet or {}
        self._groups = {}

    def group_weights(self, k):
        if k not in self._groups:
            g = self.scan.plan.step_groups[k]
            Wcat, bias = self.weights_of(g)
            self._groups[k] = (_c(Wcat.T, self.dtype), _c(Wcat, self.dtype),
                               _c(bias, self.dtype) if bias is not None else np.zeros(g.width, self.dtype))
        return self._groups[k]

    def value(self, role, name):
        if role in ("pre", "L", "pre_col", "L_col"):
            kind = role[:-4] if role.endswith("_col") else role
            base, lo = self.buffers["columns"].get((kind, name), (self.buffers[kind][name], 0))
            return lo if role.endswith("_col") else _c(base, self.dtype)
        if role in self.buffers:
            v = self.buffers[role][name]
            c = _c(v, self.dtype)
            if c is not v and role in _WRITTEN:
                raise AssertionError(f"compiled scan: buffer {role} {name!r} is not a C-contiguous "
                                     f"{self.dtype} array; the scan would write into a copy")
            return c
        return _ROLES[role](self, name)


class CompiledScan:
    def __init__(self, program, plan):
        self.program, self.plan = program, plan
        self.code = generate(program, plan)
        self.connections = {c.name: c for c in program.connections}
        self.offsets = [np.array([g.slices[c.name].start for c in g.members], dtype=np.int64)
                        for g in plan.step_groups]
        products = [program.size(g.source) * g.width for g in plan.step_groups]
        products += [program.size(c.source) * program.size(c.target) for terms in plan.terms.values()
                     for kind, c, _ in terms if kind == "single" and matrix_weight(c)]
        self.largest_product = max(products, default=0)  # multiply-adds per sample and step
        self._module = None

    def pays(self, B: int) -> bool:
        """Whether the compiled scan is the faster one for batch size B (see LOOP_BOUND)."""
        return B * self.largest_product < LOOP_BOUND

    @property
    def module(self):
        """The compiled module (written, imported and compiled or loaded on first use)."""
        if self._module is None:
            self._module = cache.load(self.code.source)
        return self._module

    def _groups_by_index(self, buffers, *roles):
        for role in roles:
            buffers[role] = {k: buffers[role][id(g)] for k, g in enumerate(self.plan.step_groups)}

    def forward(self, dtype, reads, params, consts, buffers, weights_of):
        """buffers: {role: {name: array}} for Y (every trajectory; the component's own are
        filled), pre, A, G (by id of the group), L."""
        self._groups_by_index(buffers, "G")
        call = _Call(self, dtype, reads, params, consts, buffers, weights_of)
        self.module.forward(reads.T, reads.B, *[call.value(r, n) for r, n in self.code.forward_args])

    def backward(self, dtype, reads, params, consts, buffers, weights_of, grads, dnet):
        """buffers as forward's plus dY, dNET, dG, dS, dL (filled); learned initial states'
        gradients accumulate in grads."""
        self._groups_by_index(buffers, "G", "dG")
        call = _Call(self, dtype, reads, params, consts, buffers, weights_of, grads, dnet)
        self.module.backward(reads.T, reads.B, *[call.value(r, n) for r, n in self.code.backward_args])
