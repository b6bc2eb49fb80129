"""Eigenvalues: of each recurrent weight matrix, and of the linearised step Jacobian.

Recurrent weight matrices: the square weights of the delayed connections inside a recurrent
component (W of h_t = tanh(U x_t + W h_{t-1}), the LSTM's U_i, U_f, U_o, U_g and the identity
of its cell c -> c, diagonal peepholes as diagonal matrices). For a reservoir (`init: {sparse:
..., spectral_radius: r}`) the radius the spec asked for is kept next to the one achieved.

The step Jacobian J = ds_t/ds_{t-1} of the state s (every unit read with a delay d > 0 or by a
leak, with its last d values: a delay-10 connection puts 10 copies of its source in s) at step t
of one sequence, the input x_t fixed. It is computed by central finite differences in float64
through one step of the network (`Network.forward(..., state=s, return_state=True)`), all
2 x dim(s) perturbed states in one batch. For an Elman net it is diag(1 - h_t^2) W (seeds 002);
|lambda| < 1 everywhere means errors and inputs fade. Units of backward-scanned components
(negative delays) are not part of s.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import copy_network, figure, save

MAX_JACOBIAN = 2048  # state dimensions above which the Jacobian is skipped


@dataclass
class Spectrum:
    name: str  # the parameter name, or "step Jacobian"
    kind: str  # "weight" | "jacobian"
    eigenvalues: np.ndarray  # complex
    requested: float | None = None  # a reservoir's spectral_radius from the spec
    note: str = ""

    @property
    def radius(self) -> float:
        return float(np.max(np.abs(self.eigenvalues))) if len(self.eigenvalues) else 0.0


def recurrent_connections(program) -> list:
    """Delayed connections inside a recurrent component with a square weight."""
    comp = {u: i for i, c in enumerate(program.components) if c.recurrent for u in c.units}
    found = []
    for c in program.connections:
        if c.delay == 0 or c.source not in comp or comp[c.source] != comp.get(c.target):
            continue
        if program.size(c.source) == program.size(c.target):
            found.append(c)
    return found


def weight_matrix(net, c) -> np.ndarray:
    """The (n, n) matrix a connection multiplies its source by (before any gate)."""
    n = net.program.size(c.target)
    if c.weight == "full":
        return np.asarray(net.backend.to_numpy(net.params[c.name]), dtype=np.float64)
    if c.weight == "diagonal":
        return np.diag(np.asarray(net.backend.to_numpy(net.params[c.name]), dtype=np.float64))
    if c.weight == "identity":
        return np.eye(n)
    fixed = np.asarray(c.fixed, dtype=np.float64)
    return fixed * np.eye(n) if fixed.ndim == 0 else fixed


def weight_spectra(net) -> list[Spectrum]:
    out = []
    for c in recurrent_connections(net.program):
        init = getattr(net.program.params.get(c.name), "init", None) or {}
        requested = init.get("spectral_radius") if init.get("kind") == "sparse" else None
        gate = f", gated by {'1-' if c.gate.complement else ''}{c.gate.unit}" if c.gate else ""
        note = f"{c.weight} weight, delay {c.delay}{gate}"
        out.append(Spectrum(c.name, "weight", np.linalg.eigvals(weight_matrix(net, c)), requested, note))
    return out


# -- the step Jacobian -------------------------------------------------------------------------------
def state_layout(net) -> list[tuple[str, int, int]]:
    """[(unit, depth, size)]: the forward state the network carries from one step to the next."""
    return [(u, k, net.program.size(u)) for u, k in net.state_depth.items() if u in net.program.units]


def step_jacobian(net, inputs: dict, t: int, eps: float = 1e-6) -> tuple[np.ndarray, list, np.ndarray]:
    """(J, labels, s_{t-1}): ds_t/ds_{t-1} at step t (>= 1) of the first sequence of `inputs`
    ({name: (T, B, size)}). labels[i] = "unit[j]@-d": state entry i is unit's feature j, d steps ago."""
    net = copy_network(net)
    x = {k: np.asarray(v, dtype=np.float64)[:, :1] for k, v in inputs.items()}
    T = next(iter(x.values())).shape[0]
    if not 1 <= t < T:
        raise ValueError(f"the Jacobian needs a step t in [1, {T - 1}], got {t}")
    layout = state_layout(net)
    _, state = net.forward({k: v[:t] for k, v in x.items()}, return_state=True)
    state = {k: np.asarray(net.backend.to_numpy(v)) for k, v in state.items()}
    s0 = np.concatenate([state[u].reshape(k, n).reshape(-1) for u, k, n in layout]) if layout else np.zeros(0)
    D = len(s0)
    labels = [f"{u}[{j}]@-{k - i}" for u, k, n in layout for i in range(k) for j in range(n)]
    if D == 0:
        return np.zeros((0, 0)), labels, s0
    B = 2 * D
    batch = {k: np.repeat(v, B, axis=1) for k, v in state.items()}  # (k, B, n)
    col = 0
    for u, k, n in layout:
        for i in range(k):
            for j in range(n):
                batch[u][i, col, j] += eps
                batch[u][i, D + col, j] -= eps
                col += 1
    _, new = net.forward({k: np.repeat(v[t:t + 1], B, axis=1) for k, v in x.items()}, state=batch,
                         return_state=True)
    out = np.concatenate([np.asarray(net.backend.to_numpy(new[u])).transpose(1, 0, 2).reshape(B, -1)
                          for u, k, n in layout], axis=1)  # (B, D)
    J = (out[:D] - out[D:]).T / (2 * eps)  # J[i, j] = d s_t[i] / d s_{t-1}[j]
    return J, labels, s0


def jacobian_spectrum(net, inputs: dict, t: int | None = None) -> Spectrum | None:
    """The step Jacobian's eigenvalues at step t (default: the middle of the first sequence)."""
    dims = sum(k * n for _, k, n in state_layout(net))
    T = next(iter(inputs.values())).shape[0]
    if dims == 0 or T < 2:
        return None
    t = T // 2 if t is None else t
    if dims > MAX_JACOBIAN:
        return Spectrum("step Jacobian", "jacobian", np.zeros(0), note=f"skipped: {dims} state dimensions")
    J, _, _ = step_jacobian(net, inputs, t)
    return Spectrum("step Jacobian", "jacobian", np.linalg.eigvals(J), note=f"at t={t}, {dims} state dimensions")


def spectra(net, inputs: dict | None = None, t: int | None = None) -> list[Spectrum]:
    """The step Jacobian's spectrum (when inputs are given and the net has state), then the weights'."""
    out = []
    if inputs is not None:
        s = jacobian_spectrum(net, inputs, t)
        if s is not None:
            out.append(s)
    return out + weight_spectra(net)


# -- output ------------------------------------------------------------------------------------
def write_csv(items: list[Spectrum], path) -> Path:
    """One row per eigenvalue: matrix, kind, index, real, imag, abs; radius and requested per matrix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["matrix", "kind", "index", "real", "imag", "abs", "spectral_radius", "requested_radius"])
        for s in items:
            for i, lam in enumerate(s.eigenvalues):
                w.writerow([s.name, s.kind, i, f"{lam.real:.8g}", f"{lam.imag:.8g}", f"{abs(lam):.8g}",
                            f"{s.radius:.8g}", "" if s.requested is None else f"{s.requested:g}"])
    return path


def draw(items: list[Spectrum], path=None, title: str = "", max_panels: int = 16):
    """Eigenvalues in the complex plane, one cell per matrix (small multiples on one axes, 4 per
    row): the unit circle grey, the spectral radius dotted, a reservoir's asked-for radius dashed
    red, eigenvalues dots (orange for the step Jacobian); a legend below names each of them."""
    shown = [s for s in items if len(s.eigenvalues)][:max_panels]
    cols = min(max(1, len(shown)), 4)
    rows = max(1, (len(shown) + cols - 1) // cols)
    lim = max([1.1] + [1.05 * max(s.radius, s.requested or 0) for s in shown])
    cell = 2 * lim + 0.5  # data units per cell, plus room for the title
    legend_h = 0.3  # inches at the bottom for the legend that names the circles
    fig = figure(2.6 * cols + 0.2, 2.9 * rows + (0.35 if title else 0.1) + legend_h)
    bottom = (0.01 + legend_h) / fig.get_figheight()
    ax = fig.add_axes((0.01, bottom, 0.98, 0.99 - bottom - (0.35 if title else 0.05) / fig.get_figheight()))
    ring = np.exp(1j * np.linspace(0, 2 * np.pi, 200))
    labels = {}  # label -> line: one legend entry per kind of circle and dot
    for i, s in enumerate(shown):
        c = complex((i % cols) * cell, -(i // cols) * (cell + 0.45))
        circles = [(1.0, "-", "#999", "unit circle |z| = 1"), (s.radius, ":", "C0", "spectral radius")] + (
            [(s.requested, "--", "C3", "radius asked in the spec")] if s.requested else [])
        for r, style, colour, label in circles:
            z = c + r * ring
            labels.setdefault(label, ax.plot(z.real, z.imag, style, color=colour, lw=0.9)[0])
        ax.plot([c.real - lim, c.real + lim], [c.imag, c.imag], color="#ddd", lw=0.6, zorder=0)
        ax.plot([c.real, c.real], [c.imag - lim, c.imag + lim], color="#ddd", lw=0.6, zorder=0)
        ev = c + s.eigenvalues
        dots = ax.plot(ev.real, ev.imag, "o", ms=2.5 if len(ev) > 100 else 3.5, alpha=0.7,
                       color="C1" if s.kind == "jacobian" else "C0", zorder=3)[0]
        labels.setdefault("eigenvalues (step Jacobian)" if s.kind == "jacobian" else "eigenvalues", dots)
        asked = f", asked {s.requested:g}" if s.requested is not None else ""
        ax.text(c.real, c.imag + lim + 0.08, f"{s.name}\nradius {s.radius:.4g}{asked}", ha="center",
                va="bottom", fontsize=8)
    for label, line in labels.items():
        line.set_label(label)
    if labels:
        fig.legend(list(labels.values()), list(labels), loc="lower center", ncol=min(len(labels), 5), fontsize=7,
                   frameon=False, handlelength=2.2, borderaxespad=0.2)
    if not shown:
        ax.text(0, 0, "no recurrent matrix", ha="center", va="center")
    ax.set_xlim(-lim - 0.1, (cols - 1) * cell + lim + 0.1)
    ax.set_ylim(-(rows - 1) * (cell + 0.45) - lim - 0.1, lim + 0.75)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.1 / fig.get_figheight(), va="top")
    if path is not None:
        save(fig, path)
    return fig
