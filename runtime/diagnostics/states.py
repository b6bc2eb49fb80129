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

from .common import figure, save

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
    name = task.input
    spec = None if spec is None else str(spec).strip()
    if spec is None and _languages(task):
        spec = f"n={min(8, task.test_n[1])}"
    if spec is None or spec.isdigit():
        k = int(spec or 0)
        for batch in task.validation() or [next(iter(task.train_batches(k + 1, np.random.default_rng(0))))]:
            if k < batch.B:
                L = int(batch.valid_lengths()[k])
                x = np.asarray(batch.inputs[name])[:L, k:k + 1]
                desc = f"validation sequence {int(spec or 0)}"
                break
            k -= batch.B
        else:
            raise DataError(f"--sequence {spec}: the task has fewer validation sequences")
    elif spec.startswith("n="):
        if not hasattr(task, "sequence"):
            raise DataError(f"--sequence {spec}: task {task.name} has no strings a^n...; give a validation "
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
        raise DataError(f"--sequence {spec!r}: task {task.name} takes a validation sequence number")
    x = np.asarray(x, dtype=np.float64)
    if max_steps:
        x = x[:max_steps]
    return Sequence({name: x}, step_labels(task, x[:, 0]), desc)


def trajectories(net, inputs: dict, units: list[str]) -> dict:
    """{unit: (L, size)} outputs of the units for the first sequence of `inputs`."""
    out = net.forward({k: np.asarray(v)[:, :1] for k, v in inputs.items()}, units=list(units))
    return {u: np.asarray(net.backend.to_numpy(out[u]))[:, 0].astype(np.float64) for u in units}


def draw(traj: dict, labels: list, path=None, title: str = "", program=None):
    """One heatmap per unit: rows its features, columns time steps labelled by input symbol."""
    units = list(traj)
    L = len(labels)
    height = sum(min(6.0, 0.6 + 0.22 * traj[u].shape[1]) for u in units) + 0.9
    fig = figure(min(16.0, max(6.0, 2.5 + 0.14 * L)), height)
    ratios = [min(6.0, 0.6 + 0.22 * traj[u].shape[1]) for u in units]
    axes = fig.subplots(len(units), 1, squeeze=False, sharex=True, gridspec_kw={"height_ratios": ratios})[:, 0]
    for ax, u in zip(axes, units):
        v = traj[u].T  # (size, L)
        act = program.units[u].activation.name if program is not None else ""
        if act in GATE_LIKE:
            kw = {"cmap": "viridis", "vmin": 0.0, "vmax": 1.0}
        else:
            m = float(np.nanmax(np.abs(v))) if v.size else 1.0
            kw = {"cmap": "RdBu_r", "vmin": -(m or 1.0), "vmax": m or 1.0}
        im = ax.imshow(v, aspect="auto", interpolation="nearest", origin="lower", **kw)
        ax.set_ylabel(f"{u}\n({act})" if act else u, fontsize=8, rotation=0, ha="right", va="center")
        ax.set_yticks(range(v.shape[0]) if v.shape[0] <= 8 else [])
        ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=ax, pad=0.01, fraction=0.03)
    step = max(1, L // 60)
    axes[-1].set_xticks(range(0, L, step), [labels[i] for i in range(0, L, step)], fontsize=7)
    axes[-1].set_xlabel("time step (input symbol)" if any(not s.isdigit() for s in labels) else "time step")
    if title:
        axes[0].set_title(title, fontsize=10, loc="left")
    fig.tight_layout()
    if path is not None:
        save(fig, path)
    return fig


def default_units(program) -> list[str]:
    """The units of the recurrent components (e.g. an LSTM's i, f, o, g, c, ct, h), at most 8."""
    rec = [u for c in program.components if c.recurrent for u in c.units]
    return (rec or [u for u in program.order if u not in program.outputs] or list(program.order))[:8]
