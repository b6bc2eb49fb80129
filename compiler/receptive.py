"""The memory horizon of a compiled spec: through which lags each input can reach each output.

An edge of the folded graph with delay d carries (source, t - d) to (target, t), so a path
from input x to output y whose delays sum to k makes y_t depend on x_(t-k): k is a *lag*.
Gate edges read the gate at the target's step (delay 0); a leak is a self-loop with the
unit's scan direction as its delay. The lags of every path (walk) from x to y form the set
this module computes:

* no cycle on any path from x to y (a net without recurrence on the way, e.g. a TCN): a
  finite set, the receptive field; its size is max - min + 1 steps;
* a forward recurrent component (cycles of positive total delay) on the way: unbounded into
  the past; shortest lag by Bellman-Ford on the folded graph, and the per-step structure:
  beyond some lag the set repeats with a period that divides the lcm of the components'
  cycle gcds (gcd 1: every lag; delays 2 only: every 2nd lag ...);
* a backward component (cycles of negative total delay, `bidirectional`'s `bwd`): look-ahead
  into the future, unbounded (up to the end of the sequence) or, with negative delays and no
  backward cycle, a fixed number of steps.

The exact lags are enumerated in a window [-H, H] (bit sets per node, components in
topological order, a self-loop closed by doubling); the tail's period and residues are
checked against that window, and `settled` says whether the pattern held over the second half
of the reached part of the window (it does for every spec in specs/; a pattern that settles later is reported as
not settled rather than guessed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

import networkx as nx

MAX_WINDOW = 4096  # largest H (lags looked at each way)
WORK = 2_000_000  # about this many bit-set operations per input at most: H shrinks for huge graphs


@dataclass(frozen=True)
class Tail:
    """The periodic part of an unbounded side: from `start` steps on (counted away from lag 0:
    lags for the past, steps ahead for the look-ahead), the steps s with s % period in
    `residues` are reached."""

    start: int
    period: int
    residues: tuple

    def text(self, unit: str = "lag") -> str:
        if self.period == 1:
            return f"every {unit} >= {self.start}"
        if len(self.residues) == 1:
            seq = ", ".join(str(self.start + i * self.period) for i in range(3))
            return f"every {_ordinal(self.period)} {unit} >= {self.start} ({seq}, ...)"
        return f"the {unit}s >= {self.start} that are {', '.join(map(str, self.residues))} mod {self.period}"


@dataclass(frozen=True)
class Reach:
    """How input `input` reaches output `output`; lags are t_output - t_input (negative: look-ahead)."""

    output: str
    input: str
    lags: tuple  # every lag in [-window, window], sorted
    min_lag: int | None  # None: unbounded look-ahead
    max_lag: int | None  # None: unbounded past
    past: Tail | None = None  # the structure of the lags > 0 when unbounded into the past
    ahead: Tail | None = None  # the structure of the steps ahead (-lag) when the look-ahead is unbounded
    window: int = 0
    settled: bool = True  # the periodic tails held over the second half of the window

    @property
    def reachable(self) -> bool:
        return bool(self.lags) or self.min_lag is not None or self.max_lag is not None

    @property
    def finite(self) -> bool:
        return self.reachable and self.min_lag is not None and self.max_lag is not None

    @property
    def size(self) -> int | None:
        """Steps in the receptive field (max - min + 1) when it is finite, else None."""
        return self.max_lag - self.min_lag + 1 if self.finite else None

    @property
    def lookahead(self) -> int | None:
        """Steps into the future the output sees: 0 for a causal path, None when unbounded."""
        if not self.reachable:
            return 0
        return None if self.min_lag is None else max(0, -self.min_lag)

    def text(self) -> str:
        head = f"{self.output} <- {self.input}: "
        if not self.reachable:
            return head + "not reachable"
        if self.finite:
            field_ = f"{self.size} step{'s' if self.size != 1 else ''}"
            gaps = "" if len(self.lags) == self.size else f", {len(self.lags)} lags used"
            ahead = f"; look-ahead {-self.min_lag}" if self.min_lag < 0 else ""
            return head + f"lags {_ranges(self.lags)} (receptive field {field_}{gaps}{ahead})"
        parts = []
        if self.max_lag is None:
            lo = self.min_lag if self.min_lag is not None else 0
            early = [k for k in self.lags if lo <= k < self.past.start] if self.past else []
            desc = (f"lags {_ranges(early)}, then " if early else "") + (
                self.past.text("lag") if self.past else f"lags >= {lo}")
            parts.append("unbounded past: " + desc)
        else:
            parts.append(f"lags up to {self.max_lag}")
        if self.min_lag is None:
            hi = max(0, -self.max_lag) if self.max_lag is not None else 0
            early = [-k for k in reversed(self.lags) if hi <= -k < self.ahead.start] if self.ahead else []
            desc = (f"steps {_ranges(early)} ahead, then " if early else "") + (
                (self.ahead.text("step") + " ahead") if self.ahead else f"steps ahead >= {hi}")
            parts.append("unbounded look-ahead (to the end of the sequence): " + desc)
        elif self.min_lag < 0:
            parts.append(f"look-ahead {-self.min_lag} step{'s' if self.min_lag != -1 else ''}")
        note = "" if self.settled else f" (the lag pattern did not settle within {self.window} steps)"
        return head + "; ".join(parts) + note


@dataclass
class ReceptiveField:
    """For every output and input, a `Reach`; `text()` renders it as `timeloom compile` prints it."""

    reaches: list = field(default_factory=list)

    def __getitem__(self, key) -> Reach:
        output, input_ = key
        for r in self.reaches:
            if r.output == output and r.input == input_:
                return r
        raise KeyError(key)

    def text(self, indent: str = "") -> str:
        if not self.reaches:
            return f"{indent}memory horizon: no outputs"
        lines = [f"{indent}memory horizon (lags k: the output at t reads the input at t - k; negative k: look-ahead):"]
        lines += [f"{indent}  {r.text()}" for r in self.reaches]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def receptive_field(program, window: int | None = None) -> ReceptiveField:
    """The lags through which each input reaches each output (see the module docstring)."""
    g = program.graph
    outputs = list(program.outputs) or []
    result = []
    for y in outputs:
        above = nx.ancestors(g, y) | {y}
        for x in program.inputs:
            if x not in above:
                result.append(Reach(y, x, (), None, None))
                continue
            sub = g.subgraph(above & (nx.descendants(g, x) | {x}))  # the nodes on some path x -> y
            result.append(_reach(sub, x, y, window))
    return ReceptiveField(result)


# -- the computation ------------------------------------------------------------------------------
def _cycle_gcd(g: nx.MultiDiGraph, members) -> int:
    """gcd of the total delays of the cycles in one strongly connected component: potentials
    along a spanning tree, then the gcd of every edge's discrepancy (0 when all cycles have delay 0)."""
    members = list(members)
    phi = {members[0]: 0}
    stack = [members[0]]
    inner = g.subgraph(members)
    while stack:
        u = stack.pop()
        for _, v, d in inner.out_edges(u, data=True):
            if v not in phi:
                phi[v] = phi[u] + d["delay"]
                stack.append(v)
    out = 0
    for u, v, d in inner.edges(data=True):
        out = gcd(out, abs(phi[u] + d["delay"] - phi[v]))
    return out


def _cyclic(g, members) -> bool:
    return len(members) > 1 or g.has_edge(next(iter(members)), next(iter(members)))


def _reach(sub: nx.MultiDiGraph, x: str, y: str, window) -> Reach:
    cond = nx.condensation(sub)
    period, forward, backward = 1, False, False
    for i in cond:
        members = cond.nodes[i]["members"]
        if not _cyclic(sub, members):
            continue
        gc = _cycle_gcd(sub, members)
        if gc == 0:
            continue  # cycles of total delay 0 are algebraic loops (rejected by the compiler)
        period = period * gc // gcd(period, gc)
        delays = [d["delay"] for _, _, d in sub.subgraph(members).edges(data=True) if d["delay"]]
        forward |= any(d > 0 for d in delays)
        backward |= any(d < 0 for d in delays)
    min_lag = None if backward else _extreme(sub, x, y, 1)
    max_lag = None if forward else -_extreme(sub, x, y, -1)
    n = sub.number_of_nodes()
    dmax = max((abs(d["delay"]) for _, _, d in sub.edges(data=True)), default=1) or 1
    span = max(abs(min_lag or 0), abs(max_lag or 0))
    H = window or max(64, span + 4 * n * dmax + 2 * dmax * dmax + 4 * period)
    if not window:
        H = min(H, MAX_WINDOW, max(64, WORK // max(1, sub.number_of_edges())))
    lags = _enumerate(sub, cond, x, y, H)
    past = ahead = None
    settled = True
    if max_lag is None:
        past = _tail([k for k in lags if k >= 0], H, period)
        settled &= past is not None
    if min_lag is None:
        ahead = _tail([-k for k in lags if k <= 0], H, period)
        settled &= ahead is not None
    return Reach(y, x, tuple(lags), min_lag, max_lag, past, ahead, H, settled)


def _extreme(sub, x, y, sign) -> int:
    """The smallest (sign 1) or -largest (sign -1) total delay of a path x -> y (no cycle of
    that sign's negative total on the way, checked by the caller)."""
    simple = nx.DiGraph()
    simple.add_nodes_from(sub)
    for a, b, d in sub.edges(data=True):
        w = sign * d["delay"]
        if not simple.has_edge(a, b) or w < simple[a][b]["w"]:
            simple.add_edge(a, b, w=w)
    return nx.bellman_ford_path_length(simple, x, y, weight="w")


def _shift(mask: int, d: int, full: int) -> int:
    return (mask << d) & full if d >= 0 else mask >> -d


def _enumerate(sub, cond, x, y, H) -> list[int]:
    """Every lag in [-H, H] of a walk x -> y (walks that leave the window on the way are cut)."""
    full = (1 << (2 * H + 1)) - 1
    mask = {v: 0 for v in sub}
    mask[x] = 1 << H
    for i in nx.topological_sort(cond):
        members = cond.nodes[i]["members"]
        inner = [(a, b, d["delay"]) for a, b, d in sub.subgraph(members).edges(data=True)]
        loops = {}
        for a, b, d in inner:
            if a == b:
                loops.setdefault(a, set()).add(d)
        work = list(members)
        while work:
            u = work.pop()
            for d in loops.get(u, ()):  # a self-loop: closure under adding d, by doubling
                s = d
                while abs(s) <= 2 * H and mask[u]:
                    grown = mask[u] | _shift(mask[u], s, full)
                    if grown == mask[u]:
                        break
                    mask[u] = grown
                    s *= 2
            for _, v, d in sub.out_edges(u, data=True):
                if v == u or v not in members:
                    continue
                new = mask[v] | _shift(mask[u], d["delay"], full)
                if new != mask[v]:
                    mask[v] = new
                    if v not in work:
                        work.append(v)
        for u in members:  # then on to the next components
            for _, v, d in sub.out_edges(u, data=True):
                if v not in members:
                    mask[v] |= _shift(mask[u], d["delay"], full)
    m = mask[y]
    return [k - H for k in range(2 * H + 1) if m >> k & 1]


def _tail(steps: list[int], H: int, period: int) -> Tail | None:
    """The periodic pattern of `steps` (>= 0, all those <= H) near H: the smallest period dividing
    `period` that holds over the second half of [first step, H], and where it starts; None if it
    does not hold that long."""
    have = set(steps)
    lo = (min(have, default=0) + H) // 2  # the second half of the part of the window reached

    def holds(q, start):
        return all((s in have) == (s - q in have) for s in range(max(start, q), H + 1))

    q = next((q for q in range(1, period + 1) if period % q == 0 and holds(q, lo)), None)
    if q is None or H - lo < 2 * q:
        return None
    start = lo  # move the start back while the pattern still holds there
    while start > 0 and ((start - 1) in have) == ((start - 1 + q) in have):
        start -= 1
    residues = tuple(sorted({s % q for s in have if s >= start}))
    start = min((s for s in have if s >= start), default=start)  # the first step reached
    return Tail(start, q, residues)


def _ranges(values) -> str:
    """0..7 / 0, 2, 4 / 0..3, 5 (runs of 3 or more consecutive values as a..b)."""
    values = sorted(values)
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{values[i]}..{values[j]}")
            i = j + 1
        else:
            out.append(str(values[i]))
            i += 1
    return ", ".join(out)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"
