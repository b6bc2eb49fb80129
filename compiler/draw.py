"""Export and draw graphs: the folded graph and the unrolled graph as JSON, GraphML, DOT, PNG, SVG.

Takes networkx graphs (docs/ARCHITECTURE.md, "Program"), never a Program. Unrolled nodes are
tuples (unit, t); exports name them "unit@t". Pictures put time left to right and units bottom
(inputs) to top (outputs); the edge style says the delay: 0 black, 1 blue, d > 1 purple with
"d=k", negative red (reads the future), gates orange dashed ending in a dot, leaks thin grey.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import networkx as nx
import numpy as np

__all__ = ["FORMATS", "draw", "edge_style", "graph_to_dot", "graph_to_json", "node_id",
           "unit_rows", "write", "write_graphml"]

FORMATS = ("json", "graphml", "dot", "png", "svg")
LARGE = 3000  # above this many nodes pictures are drawn without labels or arrowheads

# edge style -> (colour, matplotlib linestyle, linewidth, legend text, DOT attributes)
STYLES = {
    "d0": ("black", "-", 1.1, "delay 0 (same step)", "color=black"),
    "d1": ("#1f5fbf", "-", 1.3, "delay 1 (previous step)", 'style=dashed, color="#1f5fbf"'),
    "dk": ("#8e24aa", "-", 1.3, "delay d > 1 (d=k)", 'style=dotted, color="#8e24aa", penwidth=1.5'),
    "neg": ("#d32f2f", "-", 1.3, "negative delay (reads the future)", 'style=dashed, color="#d32f2f"'),
    "gate": ("#ef8a00", "--", 1.3, "gate (multiplies at the dot)", 'color="#ef8a00", arrowhead=dot'),
    "leak": ("#8a8a8a", "-", 0.6, "leak (alpha * own last output)", "style=dashed, color=gray55"),
}
NODES = {  # node kind -> (fill, edge colour, legend text)
    "input": ("#c8e6c9", "#2e7d32", "input"),
    "unit": ("#d6e6f7", "#1565c0", "unit"),
    "initial": ("#e0e0e0", "#9e9e9e", "initial state (h0 / zeros)"),
}


# ---------------------------------------------------------------- names and classes

def node_id(n) -> str:
    """A JSON/DOT/GraphML-safe node name: ("h", 3) -> "h@3", "h" -> "h"."""
    return "@".join(str(p) for p in n) if isinstance(n, tuple) else str(n)


def _is_unrolled(g) -> bool:
    return any(isinstance(n, tuple) for n in g.nodes)


def _unit(g, n) -> str:
    return g.nodes[n].get("unit", n[0] if isinstance(n, tuple) else n)


def _time(g, n) -> int:
    return g.nodes[n].get("t", n[1] if isinstance(n, tuple) else 0)


def edge_style(d: dict) -> str:
    """One of STYLES' keys for an edge's attributes (kind, delay)."""
    kind, delay = d.get("kind"), d.get("delay") or 0
    if kind in ("gate", "leak"):
        return kind
    return "d0" if delay == 0 else "d1" if delay == 1 else "dk" if delay > 1 else "neg"


def unit_rows(g) -> list[str]:
    """Units bottom to top: a topological order of the delay-0 edges, inputs first, sinks
    (outputs) last, ties broken by the order nodes appear in g. Works on both graphs."""
    order, kind = {}, {}
    for n, d in g.nodes(data=True):
        u = _unit(g, n)
        order.setdefault(u, len(order))
        kind.setdefault(u, d.get("kind"))
    dag, feeds = nx.DiGraph(), set()
    dag.add_nodes_from(order)
    for a, b, d in g.edges(data=True):
        ua, ub = _unit(g, a), _unit(g, b)
        if ua != ub:
            feeds.add(ua)
            if (d.get("delay") or 0) == 0:
                dag.add_edge(ua, ub)
    rank = {u: (0 if kind[u] == "input" else 1 if u in feeds else 2, order[u]) for u in order}
    try:
        return list(nx.lexicographical_topological_sort(dag, key=rank.get))
    except nx.NetworkXUnfeasible:  # an algebraic loop: the compiler rejects it; draw anyway
        return sorted(order, key=rank.get)


# ---------------------------------------------------------------- JSON, GraphML

def _json_safe(v):
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((_json_safe(x) for x in v), key=str)
    return str(v)


def _relabeled(g):
    """A copy with string node ids; unrolled nodes keep unit and t as attributes."""
    names = {n: node_id(n) for n in g}
    if len(set(names.values())) != len(names):
        raise ValueError("two graph nodes get the same name; unit names must not contain '@'")
    h = nx.relabel_nodes(g, names, copy=True)
    for n in g:
        if isinstance(n, tuple) and len(n) == 2:
            h.nodes[names[n]].setdefault("unit", n[0])
            h.nodes[names[n]].setdefault("t", n[1])
    return h


def graph_to_json(g) -> dict:
    """Node-link data (edges under "edges") that json.dumps accepts, for either graph."""
    return _json_safe(nx.node_link_data(_relabeled(g), edges="edges"))


def _scalar(v):
    v = _json_safe(v)
    return ",".join(map(str, v)) if isinstance(v, list) else json.dumps(v) if isinstance(v, dict) else v


def _scalars(d: dict) -> dict:
    return {str(k): _scalar(v) for k, v in d.items() if v is not None}


def write_graphml(g, path) -> None:
    """GraphML with string node ids; None attributes dropped, lists joined with commas."""
    h = _relabeled(g)
    out = h.__class__()
    out.graph.update(_scalars(h.graph))
    out.add_nodes_from((n, _scalars(d)) for n, d in h.nodes(data=True))
    edges = h.edges(keys=True, data=True) if h.is_multigraph() else h.edges(data=True)
    out.add_edges_from((*e[:-1], _scalars(e[-1])) for e in edges)
    nx.write_graphml(out, str(path))


# ---------------------------------------------------------------- DOT

def _q(s) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _edge_label(d: dict, short: int = 14) -> str:
    names = [str(p) for p in (d.get("params") or [d.get("param")]) if p]
    text = ", ".join(names)
    parts = [text] if text and len(text) <= short else []
    delay = d.get("delay") or 0
    return "\n".join(parts + ([f"d={delay}"] if abs(delay) >= 2 else []))


def _dot_node(g, n, unrolled: bool) -> str:
    d = g.nodes[n]
    kind = d.get("kind", "unit")
    fill, line, _ = NODES.get(kind, NODES["unit"])
    if unrolled:
        label = f"{_unit(g, n)}\nt={_time(g, n)}"
    elif kind == "input":
        label = f"{n}\n{d.get('size', '')}"
    else:
        label = f"{n}\n{d.get('size', '')} {d.get('activation', '')}" + (" leaky" if d.get("leak") else "")
    shape = "box" if kind == "input" else "ellipse"
    font = ', fontcolor=gray35' if kind == "initial" else ""
    return (f"{_q(node_id(n))} [label={_q(label.strip())}, shape={shape}, fillcolor={_q(fill)}, "
            f"color={_q(line)}, tooltip={_q(node_id(n))}{font}];")


def graph_to_dot(g, title: str = "", unrolled: bool | None = None, labels: bool | None = None) -> str:
    """Graphviz DOT text. Unrolled: a grid pinned for neato (the graph says layout=neato, so `dot`
    runs it too), time left to right, one row per unit, inputs at the bottom. Folded: for dot,
    units left to right by delay-0 depth (recurrent edges do not constrain the ranks).

    Edges are labelled with their parameter name (where short) when `labels`, by default on the
    folded graph only (the unrolled one repeats each name T times: there it is the tooltip)."""
    unrolled = _is_unrolled(g) if unrolled is None else unrolled
    labels = not unrolled if labels is None else labels
    layout = "layout=neato, splines=true, overlap=true" if unrolled else "rankdir=LR, nodesep=0.25"
    out = [f"digraph {_q(title or 'timeloom')} {{",
           f"  graph [{layout}, label={_q(title)}, labelloc=t, fontname=Helvetica];",
           "  node [style=filled, fontname=Helvetica, fontsize=10];",
           "  edge [fontname=Helvetica, fontsize=8, arrowsize=0.6];"]
    if unrolled:  # a pinned grid, as draw() makes: x = time, y = unit row (inputs at the bottom)
        row = {u: i for i, u in enumerate(unit_rows(g))}
        out += [f"  {_dot_node(g, n, True)[:-2]}, pos=\"{1.3 * _time(g, n):g},{0.8 * row[_unit(g, n)]:g}!\"];"
                for n in sorted(g, key=lambda n: (_time(g, n), row[_unit(g, n)]))]
    else:
        out += ["  " + _dot_node(g, n, False) for n in g]
    for a, b, d in g.edges(data=True):
        attrs = [STYLES[edge_style(d)][4]]
        label, names = _edge_label(d, 14 if labels else 0), _edge_label(d, 10 ** 6)
        attrs += [f"label={_q(label)}"] * bool(label) + [f"tooltip={_q(names)}"] * bool(names)
        if d.get("delay") and not unrolled:  # the delay-0 edges alone set the columns
            attrs.append("constraint=false")
        out.append(f"  {_q(node_id(a))} -> {_q(node_id(b))} [{', '.join(attrs)}];")
    out.append("}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- pictures

class _Sketch:
    """Nodes, edges and labels laid out in inches (sx, sy: inches per data unit), then drawn."""

    def __init__(self, sx: float, sy: float, large: bool):
        self.sx, self.sy, self.large = sx, sy, large
        self.lines, self.heads = defaultdict(list), defaultdict(list)
        self.dots, self.labels, self.nodes, self.shapes, self._index = [], [], [], {}, None

    def node(self, key, x, y, kind, half, text=None):
        """half = (a, b, p): half width, half height (inches) and the superellipse power."""
        self.nodes.append((x, y, kind, half, text))
        self.shapes[key] = (np.array([x * self.sx, y * self.sy]), half)

    def _inside(self, pts, key):
        c, (a, b, p) = self.shapes[key]
        return np.abs((pts[:, 0] - c[0]) / a) ** p + np.abs((pts[:, 1] - c[1]) / b) ** p < 1

    def _hits(self, pts, u, v) -> int:
        """How many nodes other than u and v the polyline pts (inches) runs through."""
        if self._index is None:
            self._index = (list(self.shapes), np.array([c for c, _ in self.shapes.values()]),
                           np.array([h for _, h in self.shapes.values()]))
        keys, C, H = self._index
        lo, hi = pts.min(0), pts.max(0)
        near = np.nonzero((C[:, 0] + H[:, 0] > lo[0]) & (C[:, 0] - H[:, 0] < hi[0])
                          & (C[:, 1] + H[:, 1] > lo[1]) & (C[:, 1] - H[:, 1] < hi[1]))[0]
        return sum(keys[i] not in (u, v) and bool(np.any(
            np.abs((pts[:, 0] - C[i, 0]) / (1.2 * H[i, 0])) ** H[i, 2]
            + np.abs((pts[:, 1] - C[i, 1]) / (1.2 * H[i, 1])) ** H[i, 2] < 1)) for i in near)

    def edge(self, u, v, rad, style, label=None, bends=(1, 0.5, -0.5, -1, 1.7, -1.7)):
        """A quadratic arc from u to v; rad > 0 bends it right of its direction. When it would
        run through other nodes (or its label onto another), the first of rad * bends that does not."""
        P, Q = self.shapes[u][0], self.shapes[v][0]
        best = None
        for r in [rad] if self.large else [rad] + [k * (rad or 0.3) for k in bends[1:]]:
            C = (P + Q) / 2 + r * np.array([Q[1] - P[1], P[0] - Q[0]])
            n = int(np.clip((np.hypot(*(C - P)) + np.hypot(*(Q - C))) / 0.03, 12, 400))
            s = np.linspace(0, 1, 12 if self.large else n)[:, None]
            pts, at = (1 - s) ** 2 * P + 2 * s * (1 - s) * C + s ** 2 * Q, 0.25 * P + 0.5 * C + 0.25 * Q
            bad = 0 if self.large else 10 * self._hits(pts, u, v) + sum(
                bool(label) and np.hypot(*(at - a)) < 0.3 for a, _, _ in self.labels)
            if best is None or bad < best[0]:
                best = (bad, pts, at)
            if bad == 0:
                break
        self._add(best[1], u, v, style, label, best[2])

    def loop(self, u, r, style, label=None):
        """A self-loop of radius r (inches) standing on top of node u."""
        c, (a, b, p) = self.shapes[u]
        centre = c + [0, b + 0.55 * r]
        ang = np.linspace(-0.35 * np.pi, 1.35 * np.pi, 60)[:, None]
        self._add(centre + r * np.hstack([np.cos(ang), np.sin(ang)]), u, u, style, label, centre + [0, r])

    def _add(self, pts, u, v, style, label, at):
        if not self.large:
            pts = pts[~(self._inside(pts, u) | self._inside(pts, v))]
        if len(pts) < 2:
            return
        self.lines[style].append(pts)
        if self.large:
            return
        if label:
            self.labels.append((at, label, style))
        tip, d = pts[-1], pts[-1] - pts[-2]
        d, n = d / (np.hypot(*d) or 1.0), np.array([-d[1], d[0]]) / (np.hypot(*d) or 1.0)
        if style == "gate":  # a dot where the gate multiplies, else an arrowhead
            self.dots.append(tip)
        else:
            self.heads[style].append(np.array([tip, tip - 0.1 * d + 0.035 * n, tip - 0.1 * d - 0.035 * n]))

    def render(self, path, fmt, title, setup=None):
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no GUI, no global state
        from matplotlib.collections import LineCollection, PatchCollection, PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.patches import Ellipse, Rectangle
        scale = np.array([self.sx, self.sy])
        pts = [np.vstack(v) for v in self.lines.values()] + [np.array([[0.0, 0.0]])] * (not self.shapes)
        for c, (a, b, _) in self.shapes.values():
            pts.append(np.array([c - [a, b], c + [a, b]]))
        pts.extend(np.array([at]) for at, _, _ in self.labels)
        lo, hi = np.vstack(pts).min(0) - 0.3, np.vstack(pts).max(0) + 0.3
        size = hi - lo  # the axes fill the figure: one data unit is exactly sx by sy inches
        fig = Figure(figsize=tuple(size))
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(lo[0] / self.sx, hi[0] / self.sx)
        ax.set_ylim(lo[1] / self.sy, hi[1] / self.sy)
        for style, lines in self.lines.items():
            ax.add_collection(LineCollection([p / scale for p in lines], colors=STYLES[style][0], zorder=1,
                                             linestyles=STYLES[style][1], linewidths=STYLES[style][2]))
        for style, heads in self.heads.items():
            ax.add_collection(PolyCollection([h / scale for h in heads], facecolors=STYLES[style][0],
                                             edgecolors="none", zorder=2))
        if self.dots:
            d = np.array(self.dots) / scale
            ax.plot(d[:, 0], d[:, 1], "o", ms=4.5, color=STYLES["gate"][0], zorder=2)
        patches, colours = [], []
        for x, y, kind, (a, b, p), text in self.nodes:
            w, h = 2 * a / self.sx, 2 * b / self.sy
            patches.append(Rectangle((x - w / 2, y - h / 2), w, h) if p > 2 else Ellipse((x, y), w, h))
            colours.append(NODES.get(kind, NODES["unit"]))
            if text and not self.large:
                ax.text(x, y, text, ha="center", va="center", fontsize=8, zorder=4)
        ax.add_collection(PatchCollection(patches, facecolors=[c[0] for c in colours], zorder=3,
                                          edgecolors=[c[1] for c in colours],
                                          linewidths=0.3 if self.large else 1))
        for at, text, style in self.labels:
            ax.text(*(at / scale), text, fontsize=7, color=STYLES[style][0], ha="center", va="center",
                    zorder=5, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.8))
        ax.set(xticks=[], yticks=[], frame_on=False)
        if setup:
            setup(ax)
        ax.set_title(title, fontsize=12, loc="left")
        handles = [Line2D([], [], color=STYLES[s][0], ls=STYLES[s][1], lw=STYLES[s][2],
                          marker="o" if s == "gate" else None, ms=4, label=STYLES[s][3])
                   for s in STYLES if self.lines.get(s)]
        kinds = {k for _, _, k, _, _ in self.nodes}
        handles += [Line2D([], [], ls="", marker="s" if k == "input" else "o", ms=9, mfc=v[0], mec=v[1],
                           label=v[2]) for k, v in NODES.items() if k in kinds]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        dpi = float(np.clip(30000 / max(size.max(), 1.0), 20, 110))
        fig.savefig(path, format=fmt, dpi=dpi, bbox_inches="tight", facecolor="white")


def _draw_unrolled(g, rows=None) -> tuple[_Sketch, callable]:
    known = unit_rows(g)
    order = [u for u in dict.fromkeys(rows or []) if u in known]
    order += [u for u in known if u not in order]
    row = {u: i for i, u in enumerate(order)}
    times = sorted({_time(g, n) for n in g}) or [0]
    ncols, nrows = times[-1] - times[0] + 1, len(order)
    large = g.number_of_nodes() > LARGE
    sx, sy = float(np.clip(90 / ncols, 0.06, 1.35)), float(np.clip(60 / max(nrows, 1), 0.06, 0.8))
    r = min(0.14, 0.2 * min(sx, sy))
    sk = _Sketch(sx, sy, large)
    for n, d in g.nodes(data=True):
        kind = d.get("kind", "unit")
        sk.node(n, _time(g, n), row[_unit(g, n)], kind, (r, r, 6 if kind == "input" else 2))
    for a, b, d in g.edges(data=True):
        style, dt, dr = edge_style(d), _time(g, b) - _time(g, a), row[_unit(g, b)] - row[_unit(g, a)]
        chord = float(np.hypot(dt * sx, dr * sy)) or 1.0
        if dt == 0:  # same step: straight to the next row, else bulge sideways (gates left)
            bulge = min(0.42 * sx, 0.04 + 0.07 * abs(dr) * sy) if abs(dr) > 1 else 0.0
            rad = (-2 if style == "gate" else 2) * bulge / chord
        elif dr == 0:  # own past: an arc over the intermediate steps (leaks and the future: below)
            rad = (2 if style == "leak" else -2) * sy * min(0.7, 0.22 + 0.1 * (abs(dt) - 1)) / chord
        else:
            rad = -min(0.5, 0.1 + 0.07 * (abs(dt) - 1))
        delay = d.get("delay") or 0
        sk.edge(a, b, rad, style, f"d={delay}" if abs(delay) >= 2 else None)
    inner = [_time(g, n) for n, k in g.nodes(data="kind") if k != "initial"]
    steps = g.graph.get("steps") or 1 + max(inner, default=0)

    def setup(ax):
        lo_x, hi_x = ax.get_xlim()
        if times[0] < 0:
            ax.axvspan(lo_x, -0.5, color="#f2f2f2", zorder=0)
        if times[-1] >= steps:
            ax.axvspan(steps - 0.5, hi_x, color="#f2f2f2", zorder=0)
        ticks = times if ncols <= 40 else [t for t in times if t % max(1, ncols // 20) == 0]
        ax.set_xticks(ticks, [f"t={t}" for t in ticks] if ncols <= 40 else ticks, fontsize=8)
        if nrows <= 100:
            ax.set_yticks(range(nrows), order, fontsize=9)
        ax.tick_params(length=0)
        grey = times[0] < 0 or times[-1] >= steps
        ax.set_xlabel("time step  →" + ("   (grey: initial states)" if grey else ""))

    return sk, setup


def _draw_folded(g) -> _Sketch:
    zero = nx.DiGraph((a, b) for a, b, d in g.edges(data=True) if (d.get("delay") or 0) == 0 and a != b)
    zero.add_nodes_from(g)
    appear = {n: i for i, n in enumerate(unit_rows(g))}
    try:
        layers = [list(layer) for layer in nx.topological_generations(zero)]
    except nx.NetworkXUnfeasible:
        layers = [list(g)]
    pos = {}
    for x, layer in enumerate(layers):  # order each layer by its predecessors' height, inputs first
        def bary(n):
            ys = [pos[p][1] for p in zero.predecessors(n) if p in pos]
            return (g.nodes[n].get("kind") != "input", -np.mean(ys) if ys else 0.0, appear[n])
        layer.sort(key=bary)
        for j, n in enumerate(layer):
            pos[n] = (x, (len(layer) - 1) / 2 - j)
    large = g.number_of_nodes() > LARGE
    width = max((len(str(n)) for n in g), default=1)
    a = float(np.clip(0.05 * width + 0.1, 0.3, 0.9))
    sk = _Sketch(2 * a + 0.9, 1.0, large)
    for n, d in g.nodes(data=True):
        kind = d.get("kind", "unit")
        info = str(d.get("size", "")) if kind == "input" else f"{d.get('size', '')} {d.get('activation', '')}"
        sk.node(n, *pos[n], kind, (a, 0.24, 6 if kind == "input" else 2), f"{n}\n{info.strip()}")
    loops, pairs = Counter(), Counter()
    for u, v, d in g.edges(data=True):
        style, delay = edge_style(d), d.get("delay") or 0
        label = "leak" if style == "leak" else f"d={delay}" if delay else None
        if style == "gate" and any(k == d.get("param") and e.get("gate_complement")
                                   for _, _, k, e in g.in_edges(v, keys=True, data=True)):
            label = f"1-{u}"  # a complement gate, as GRU's (1 - z)
        if u == v:
            sk.loop(u, 0.16 + 0.1 * loops[u], style, label)
            loops[u] += 1
            continue
        m = pairs[u, v]
        pairs[u, v] += 1
        span = abs(pos[v][0] - pos[u][0])
        if delay == 0:
            rad = ((0.0 if span == 1 else 0.15) + 0.2 * m) * (-1 if style == "gate" else 1)
        else:
            rad = -(0.3 if span else 0.45) - 0.15 * m
        sk.edge(u, v, rad, style, label, (1, -1, 1.7, -1.7, 2.5, -2.5))
    return sk


def draw(g, path, unrolled: bool | None = None, title: str = "", rows=None, fmt: str | None = None) -> None:
    """Draw g to a PNG or SVG (chosen by fmt or the path's suffix) with matplotlib (no GUI).

    unrolled: time on the x axis, one row per unit (bottom to top: `rows`, else unit_rows(g));
    folded: units left to right by delay-0 depth, recurrent edges as arcs labelled with the delay."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt not in ("png", "svg"):
        raise ValueError(f"draw writes png or svg, not {fmt!r} (path {path})")
    from .budget import MAX_PICTURE_NODES

    if g.number_of_nodes() > MAX_PICTURE_NODES:  # compile checks this before unrolling; other callers here
        raise ValueError(f"the graph has {g.number_of_nodes():,} nodes, too many to draw usefully as {fmt} "
                         f"(limit {MAX_PICTURE_NODES:,}); draw fewer steps or the folded graph, or write "
                         f"json/graphml/dot")
    unrolled = _is_unrolled(g) if unrolled is None else unrolled
    sk, setup = _draw_unrolled(g, rows) if unrolled else (_draw_folded(g), None)
    sk.render(path, fmt, title, setup)


def write(g, path, fmt: str | None = None, unrolled: bool | None = None, title: str = "", rows=None) -> None:
    """Write g to path as one of FORMATS (fmt, else the path's suffix)."""
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown graph format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "json":
        Path(path).write_text(json.dumps(graph_to_json(g), indent=1) + "\n")
    elif fmt == "graphml":
        write_graphml(g, path)
    elif fmt == "dot":
        Path(path).write_text(graph_to_dot(g, title, unrolled))
    else:
        draw(g, path, unrolled, title, rows, fmt)
