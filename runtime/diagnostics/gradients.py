"""Gradient flow over time: ||dL/dh_{t-k}|| against the lag k for the loss at the last step.

BPTT carries the error signal delta_t = dL/dh_t back through h_{t-1} = ... ; in an Elman net
each step multiplies it by diag(1 - h_t^2) W^T, so it shrinks exponentially (vanishing
gradient, seeds 002); an LSTM's cell passes it on through c_t = f_t c_{t-1} + ..., multiplied
only by the forget gate (the constant error carousel when f = 1, seeds 004).

For each sequence b the loss is restricted to its last counted step a_b (its last valid step,
or the last step of its `at: mask` mask); the curve at lag k is the mean over sequences of
||dL/dh_{a_b - k}|| (the 2-norm over the unit's features), from `Network.state_gradients`.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .common import figure, save, state_units

VANISHED = 1e-6  # "falls below 1e-6 of its start"


@dataclass
class GradientFlow:
    label: str  # e.g. "initialisation", "trained (ckpt-...)"
    norms: dict  # unit -> (K,) mean over sequences of ||dL/dh_{a-k}||, k = 0..K-1 (NaN: no sequence that long)
    loss: float
    sequences: int
    meta: dict = field(default_factory=dict)

    @property
    def lags(self) -> np.ndarray:
        return np.arange(len(next(iter(self.norms.values()), [])))

    def relative(self, unit: str) -> np.ndarray:
        """The curve divided by its value at lag 0 (NaN where that is 0)."""
        n = self.norms[unit]
        return n / n[0] if n[0] > 0 else np.full_like(n, np.nan)

    def vanish_lag(self, unit: str, ratio: float = VANISHED) -> int | None:
        """The lag from which on the gradient stays below `ratio` times its value at lag 0 (a
        recurrence with delay d only reaches every d-th lag: the exact zeros between do not count)."""
        r = self.relative(unit)
        known = ~np.isnan(r) & (r > 0)  # exact zeros: lags the recurrence's delays do not reach
        above = np.nonzero(known & (r >= ratio))[0]
        start = int(above[-1]) + 1 if len(above) else 0
        below = np.nonzero(known[start:])[0]
        return start + int(below[0]) if len(below) else None

    def reached(self, unit: str) -> np.ndarray:
        """The lags the gradient reaches (non-zero); with a delay-d recurrence every d-th lag."""
        return np.nonzero(self.norms[unit] > 0)[0]


def last_step_masks(program, batch) -> tuple[dict, np.ndarray]:
    """(masks restricting every loss to each sequence's last counted step, anchors (B,))."""
    T, B = batch.T, batch.B
    valid = np.arange(T)[:, None] < batch.valid_lengths()[None, :]
    anchors = np.full(B, -1)
    counted = {}
    for name, out in program.outputs.items():
        if out.loss == "none":
            continue
        m = valid.copy()
        if out.at == "mask" and batch.masks and name in batch.masks:
            m &= np.asarray(batch.masks[name]) > 0
        counted[name] = m
        last = np.where(m.any(axis=0), T - 1 - np.argmax(m[::-1], axis=0), -1)
        anchors = np.maximum(anchors, last)
    at_anchor = np.zeros((T, B))
    ok = anchors >= 0
    at_anchor[anchors[ok], np.nonzero(ok)[0]] = 1.0
    return {name: at_anchor * m for name, m in counted.items()}, anchors


def gradient_flow(net, batch, units=None, label: str = "") -> GradientFlow:
    """The gradient norms of `units` (default: the state units) by lag, for one batch."""
    program = net.program
    units = list(units or state_units(program))
    masks, anchors = last_step_masks(program, batch)
    loss, deltas = net.state_gradients(batch.inputs, batch.targets, lengths=batch.lengths, masks=masks,
                                       units=units)
    K = int(anchors.max()) + 1 if anchors.max() >= 0 else 0
    norms = {}
    for u in units:
        d = np.linalg.norm(np.asarray(net.backend.to_numpy(deltas[u]), dtype=np.float64), axis=-1)  # (T, B)
        per = np.full((K, batch.B), np.nan)
        for b, a in enumerate(anchors):
            if a >= 0:
                per[:a + 1, b] = d[a::-1, b]
        with np.errstate(all="ignore"):
            norms[u] = np.nanmean(per, axis=1) if K else np.zeros(0)
    return GradientFlow(label, norms, float(loss), int((anchors >= 0).sum()),
                        {"steps": batch.T, "lengths": batch.valid_lengths().tolist()})


# -- output ------------------------------------------------------------------------------------
def write_csv(panels: list, path) -> Path:
    """Long format: spec, state (flow label), unit, lag, norm, relative."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["spec", "state", "unit", "lag", "norm", "relative"])
        for name, flows in panels:
            for flow in flows:
                for u, n in flow.norms.items():
                    rel = flow.relative(u)
                    for k in range(len(n)):
                        w.writerow([name, flow.label, u, k, f"{n[k]:.6e}", f"{rel[k]:.6e}"])
    return path


def summary_rows(panels: list) -> list[dict]:
    """One row per (spec, flow, unit): the norm at lag 0 and at the largest lag, and the lag at
    which the gradient falls below 1e-6 of its start."""
    rows = []
    for name, flows in panels:
        for flow in flows:
            for u, n in flow.norms.items():
                rel = flow.relative(u)
                reached = flow.reached(u)
                last = int(reached[-1]) if len(reached) else len(n) - 1  # the last lag it reaches at all
                rows.append({"spec": name, "state": flow.label, "unit": u, "lag0": float(n[0]) if len(n) else None,
                             "last_lag": last, "relative_at_last": float(rel[last]) if len(n) else None,
                             "vanish_lag": flow.vanish_lag(u),
                             "zero_beyond": last if last < len(n) - 1 else None})  # a finite receptive field
    return rows


def draw(panels: list, path=None, width: float = 6.0):
    """One panel per spec: relative gradient norm against the lag (log scale), one colour per
    unit, dashed at initialisation, solid after training. Returns the figure (saved if path)."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    n = max(1, len(panels))
    cols = n if n <= 3 else 2 if n == 4 else 3
    rows = (n + cols - 1) // cols
    fig = figure(width * cols if cols < 3 else 5.2 * cols, 4.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for ax, (name, flows) in zip(axes, panels):
        colours = {}
        for i, flow in enumerate(flows):
            style = "--" if flow.label.startswith("init") else "-"
            for u in flow.norms:
                colour = colours.setdefault(u, f"C{len(colours) % 10}")
                rel = flow.relative(u)
                ok = rel > 0  # the lags it reaches (every d-th one for a delay-d recurrence), joined up
                lag = flow.vanish_lag(u)
                tag = f"  (< 1e-6 at k={lag})" if lag is not None else ""
                ax.plot(flow.lags[ok], rel[ok], style, color=colour, lw=1.6 if style == "-" else 1.2,
                        label=f"{u}{', ' + flow.label if flow.label else ''}{tag}")
        ax.axhline(VANISHED, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.yaxis.set_minor_locator(NullLocator())  # minor ticks and mathtext labels cost more than the rest
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"1e{round(np.log10(v)):d}" if v > 0 else ""))
        ax.set_xlabel("lag k (steps back from the loss at the last step)")
        if ax in axes[::cols]:
            ax.set_ylabel("||dL/dh_{T-k}|| / ||dL/dh_T||")
        ax.set_title(name, fontsize=11)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    W, H = fig.get_figwidth(), fig.get_figheight()
    fig.subplots_adjust(left=0.85 / W, right=1 - 0.15 / W, bottom=0.55 / H, top=1 - 0.35 / H,
                        wspace=0.25, hspace=0.9 / (H / rows))
    if path is not None:
        save(fig, path)
    return fig
