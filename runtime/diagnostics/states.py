"""States and gates over time: heatmaps (unit feature x time step) of units' outputs for one sequence.

The sequence (`choose_sequence`): "n=K" is the task's string for n = K (a^n b^n, a^n b^n c^n),
a plain number K is sequence K of the task's validation data, anything else is text in the
task's symbols (a text or Reber task encodes it; for a^n b^n (c^n) the letters S, a, b, c with
the start symbol S added when missing). Default: n = 8 for the languages, else validation
sequence 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import DataError

from .common import figure, input_name, save

GATE_LIKE = ("sigmoid",)  # outputs in [0, 1]: drawn on a fixed 0..1 scale


@dataclass
class Sequence:
    inputs: dict  # {name: (L, 1, size)}
    labels: list  # one tick label per step
    description: str


def _languages(task) -> bool:
    return hasattr(task, "letters") and hasattr(task, "sequence") and getattr(task, "mode", "") == "next_symbol"


def _alphabet(task) -> str | None:
    if _languages(task):
        return "Sabc"[:task.letters + 1]
    if hasattr(task, "decode"):
        try:
            return task.decode(np.arange(task.input_size))
        except Exception:  # noqa: BLE001 - labels are a nicety
            return None
    return None


def step_labels(task, x: np.ndarray) -> list[str]:
    """Tick labels: the input symbol at each step when the input is one-hot, else the step."""
    x = np.asarray(x)
    one_hot = x.ndim == 2 and np.all((x == 0) | (x == 1)) and np.all(x.sum(axis=1) == 1)
    if not one_hot:
        return [str(t) for t in range(len(x))]
    alphabet = _alphabet(task) if task is not None else None
    idx = x.argmax(axis=1)
    if alphabet and len(alphabet) == x.shape[1]:
        return ["␣" if alphabet[i] == " " else alphabet[i] for i in idx]
    return [str(i) for i in idx]


def choose_sequence(task, spec: str | None = None, max_steps: int | None = None) -> Sequence:
    name = input_name(task)
    spec = None if spec is None else str(spec).strip()
    if spec is None and _languages(task):
        spec = f"n={min(8, task.test_n[1])}"
    if spec is None or spec.isdigit():
        k = int(spec or 0)
        for batch in task.validation() or [next(iter(task.train_batches(k + 1, np.random.default_rng(0))))]:
            X = np.asarray(batch.inputs[name])
            if k < X.shape[1]:
                L = int(X.shape[0] if batch.lengths is None else batch.lengths[k])
                x = X[:L, k:k + 1]
                desc = f"validation sequence {int(spec or 0)}"
                break
            k -= X.shape[1]
        else:
            raise DataError(f"--sequence {spec}: the task has fewer validation sequences")
    elif spec.startswith("n="):
        if not hasattr(task, "sequence"):
            raise DataError(f"--sequence {spec}: task {getattr(task, 'name', '?')} has no strings a^n...; give a validation "
                            f"sequence number or text")
        n = int(spec[2:])
        x = task.sequence(n)[0][:, None]
        desc = f"n = {n}"
    elif _languages(task):
        letters = spec if spec.startswith("S") else "S" + spec
        alphabet = _alphabet(task)
        bad = sorted(set(letters) - set(alphabet))
        if bad:
            raise DataError(f"--sequence: symbols {''.join(bad)!r} are not among {alphabet}")
        from runtime.data import one_hot
        x = one_hot([alphabet.index(c) for c in letters], len(alphabet))[:, None]
        desc = letters
    elif hasattr(task, "encode"):
        x = np.asarray(task.encode(spec)[name])
        desc = repr(spec)
    else:
        raise DataError(f"--sequence {spec!r}: task {getattr(task, 'name', '?')} takes a validation sequence number")
    x = np.asarray(x, dtype=np.float64)
    if max_steps:
        x = x[:max_steps]
    return Sequence({name: x}, step_labels(task, x[:, 0]), desc)


def trajectories(net, inputs: dict, units: list[str]) -> dict:
    """{unit: (L, size)} outputs of the units for the first sequence of `inputs`."""
    out = net.forward({k: np.asarray(v)[:, :1] for k, v in inputs.items()}, units=list(units))
    return {u: np.asarray(net.backend.to_numpy(out[u]))[:, 0].astype(np.float64) for u in units}


def draw(traj: dict, labels: list, path=None, title: str = "", program=None):
    """One heatmap band per unit, stacked on one axes: rows the unit's features, columns time steps
    labelled by input symbol. Gate-like (sigmoid) units on a fixed 0..1 scale (viridis), others
    blue -m .. red +m with m the unit's largest |value| (written next to its name)."""
    from matplotlib.colors import Normalize

    units = list(traj)
    L = len(labels)
    sizes = [traj[u].shape[1] for u in units]
    heights = [min(2.6, 0.25 + 0.16 * n) for n in sizes]  # band heights in inches
    acts = [program.units[u].activation.name if program is not None else "" for u in units]
    left = 0.3 + 0.068 * max(len(t) for t in units + [a + " ±0.00" for a in acts])  # inches for the labels
    W = min(16.0, max(6.0, left + 1.2 + 0.14 * L))
    H = 1.1 + sum(heights) + 0.15 * len(units)
    fig = figure(W, H)
    ax = fig.add_axes((left / W, 0.55 / H, 1 - (left + 0.2) / W, 1 - 1.1 / H))
    y, ticks, names = 0.0, [], []
    for u, n, h in zip(reversed(units), reversed(sizes), reversed(heights)):
        v = traj[u].T  # (size, L)
        act = program.units[u].activation.name if program is not None else ""
        if act in GATE_LIKE:
            cmap, norm, scale = "viridis", Normalize(0.0, 1.0), "0..1"
        else:
            m = float(np.nanmax(np.abs(v))) if v.size else 0.0
            cmap, norm, scale = "RdBu_r", Normalize(-(m or 1.0), m or 1.0), f"±{m:.2g}"
        ax.imshow(v, aspect="auto", interpolation="nearest", origin="lower", cmap=cmap, norm=norm,
                  extent=(-0.5, L - 0.5, y, y + h))
        ticks.append(y + h / 2)
        names.append(f"{u}\n{act} {scale}" if act else u)
        y += h + 0.15
    ax.set_xlim(-0.5, L - 0.5)
    ax.set_ylim(-0.05, y - 0.1)
    ax.set_yticks(ticks, names, fontsize=8)
    symbols = any(not s.isdigit() for s in labels)
    step = max(1, L // (60 if symbols else 25))
    ax.set_xticks(range(0, L, step), [labels[i] for i in range(0, L, step)], fontsize=7)
    ax.set_xlabel("time step (input symbol)" if symbols else "time step", fontsize=8)
    ax.tick_params(length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title + "\ngates: dark 0 .. yellow 1; other units: blue -m .. red +m", fontsize=9, loc="left")
    if path is not None:
        save(fig, path)
    return fig


def default_units(program) -> list[str]:
    """The units of the recurrent components (e.g. an LSTM's i, f, o, g, c, ct, h), at most 8."""
    rec = [u for c in program.components if c.recurrent for u in c.units]
    return (rec or [u for u in program.order if u not in program.outputs] or list(program.order))[:8]
