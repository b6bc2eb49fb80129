"""What a forward pass keeps for backward, and the rule for reads at the sequence's edges.

Reading unit or input `s` at time tau for sample b gives its stored value when
0 <= tau < length_b; otherwise the initial state: zeros for an input, h0 for a unit
(zeros or the learned "{s}.h0"), or, for tau < 0, the `state=` carried in from a previous
chunk. Gradients reaching an initial state go to "{s}.h0" when it is learned; a carried
state is treated as a constant (truncated BPTT).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tape:
    out: dict  # unit -> (T, B, size) outputs
    extra: object = field(default_factory=dict)  # the executor's own record (fast: Trajectories)


@dataclass
class Trajectories:
    """What the fast executor's forward keeps, all steps at once, (T, B, n) arrays."""

    out: dict  # unit or input -> its output h_t (for a leaky unit: after the leak)
    squashed: dict = field(default_factory=dict)  # leaky unit -> f(net_t), before the leak
    shifted: dict = field(default_factory=dict)  # (name, delay) -> what a connection of that delay reads
    gated_later: dict = field(default_factory=dict)  # connection -> W x + b of a hoisted connection
    # whose gate unit is computed inside the scan (the gate is applied step by step)
    products: dict = field(default_factory=dict)  # id(group) -> the group's fused step product
    columns: dict = field(default_factory=dict)  # ("pre", unit) / ("L", connection) -> (Z, first
    # column): this call's pre-activation or gated-later term is a block of a hoisted product Z


@dataclass
class Errors:
    """What the fast executor's backward fills: d loss / d of each forward quantity."""

    d_out: dict  # unit -> d/d h_t (through every later step: the BPTT error signal)
    d_net: dict = field(default_factory=dict)  # unit -> d/d net_t (before the squashing)
    d_products: dict = field(default_factory=dict)  # id(group) -> d/d its fused step product
    d_single: dict = field(default_factory=dict)  # in-scan connection -> d/d (W x + b)
    d_gated_later: dict = field(default_factory=dict)  # gated-later connection -> d/d (W x + b)


@dataclass
class Run:
    """One call of the fast executor: what it runs on and the records it fills."""

    params: dict
    consts: dict
    reads: "Reads"
    traj: Trajectories
    errors: Errors | None = None
    grads: dict | None = None  # parameter name -> gradient (accumulated)
    dnet: dict = field(default_factory=dict)  # output unit -> d loss / d net given by a fused loss


class Reads:
    def __init__(self, program, backend, T, B, lengths=None, state=None, teacher=None):
        """`teacher`: {unit: (values (T, B, size), mask (T, B) of 0/1)}: where the mask is 1, a
        delayed read of the unit at tau gives values[tau] (teacher forcing) and no gradient."""
        self.program, self.xp, self.T, self.B = program, backend.xp, T, B
        self.teacher = {u: (v, m[..., None]) for u, (v, m) in (teacher or {}).items()}
        self.backend = backend
        self.state = state or {}
        self.lengths = lengths
        if lengths is None:
            self.valid = None
        else:
            self.valid = self.xp.arange(T)[:, None] < self.xp.asarray(lengths)[None, :]  # (T, B)

    # -- initial values -----------------------------------------------------------------
    def size(self, name):
        return self.program.size(name)

    def initial(self, name, params):
        """(B, size) initial state of a unit (zeros for an input)."""
        h0 = params.get(f"{name}.h0")
        z = self.backend.zeros((self.B, self.size(name)))
        return z if h0 is None else z + h0

    def fill_at(self, name, tau, params):
        if tau < 0 and name in self.state:
            k = self.state[name].shape[0]
            if k + tau >= 0:
                return self.state[name][k + tau]
        return self.initial(name, params)

    def _from_state(self, name, tau):
        return tau < 0 and name in self.state and self.state[name].shape[0] + tau >= 0

    # -- one step -------------------------------------------------------------------------
    def read(self, name, tau, value, params, delay=0):
        """The value of `name` at time tau as read by a connection of `delay` (or a leak)."""
        if not 0 <= tau < self.T:
            return self.fill_at(name, tau, params)
        if delay > 0 and name in self.teacher:
            forced, m = self.teacher[name]
            value = self.xp.where(m[tau], forced[tau], value)
        if self.valid is None:
            return value
        return self.xp.where(self.valid[tau][:, None], value, self.initial(name, params))

    def read_backward(self, name, tau, d, grads, delay=0):
        """Route the gradient of one read; returns the part for the stored value (or None)."""
        h0 = f"{name}.h0"
        if not 0 <= tau < self.T:
            if h0 in grads and not self._from_state(name, tau):
                grads[h0] += d.sum(axis=0)
            return None
        if delay > 0 and name in self.teacher:
            d = d * (1 - self.teacher[name][1][tau])
        if self.valid is None:
            return d
        keep = self.valid[tau][:, None]
        if h0 in grads:
            grads[h0] += self.xp.where(keep, 0, d).sum(axis=0)
        return self.xp.where(keep, d, 0)

    # -- all steps at once ----------------------------------------------------------------
    def shift(self, name, H, delay, params):
        """S[t] = read(name, t - delay) for all t: (T, B, size)."""
        xp, T = self.xp, self.T
        if delay == 0:
            return H
        S = xp.empty_like(H)
        if delay > 0:
            d = min(delay, T)
            S[d:] = H[:T - d]
            if name in self.teacher:
                forced, m = self.teacher[name]
                S[d:] = xp.where(m[:T - d], forced[:T - d], S[d:])
            for t in range(d):
                S[t] = self.fill_at(name, t - delay, params)
            return S
        e = min(-delay, T)
        S[:T - e] = H[e:]
        S[T - e:] = self.initial(name, params)
        if self.valid is not None:
            keep = xp.zeros((T, self.B), dtype=bool)
            keep[:T - e] = self.valid[e:]
            S = xp.where(keep[..., None], S, self.initial(name, params))
        return S

    def shift_backward(self, name, dS, delay, grads):
        """Gradient of `shift`: the (T, B, size) part for H; initial-state parts go to h0."""
        xp, T = self.xp, self.T
        if delay == 0:
            return dS
        h0 = f"{name}.h0"
        dH = xp.zeros_like(dS)
        if delay > 0:
            d = min(delay, T)
            dH[:T - d] = dS[d:]
            if name in self.teacher:
                dH[:T - d] *= 1 - self.teacher[name][1][:T - d]
            if h0 in grads:
                for t in range(d):
                    if not self._from_state(name, t - delay):
                        grads[h0] += dS[t].sum(axis=0)
            return dH
        e = min(-delay, T)
        part = dS[:T - e]
        if self.valid is not None:
            keep = self.valid[e:][..., None]
            if h0 in grads:
                grads[h0] += xp.where(keep, 0, part).sum(axis=(0, 1))
            part = xp.where(keep, part, 0)
        dH[e:] = part
        if h0 in grads:
            grads[h0] += dS[T - e:].sum(axis=(0, 1))
        return dH
