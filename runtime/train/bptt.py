"""One batch of BPTT: windows of truncated BPTT with the state carried across, teacher forcing.

A window [a, b) of a (T, B) batch is run with the state the previous window ended in; no
gradient flows back into that state. Sequences that ended before a window take part with a
length of 1 and a zero loss mask; an `at: last` output counts only in the window holding a
sequence's last step. With truncate >= T there is one window: plain full BPTT.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Window:
    inputs: dict
    targets: dict
    lengths: np.ndarray | None
    masks: dict
    teacher: dict | None
    has_loss: bool


def teacher_units(program) -> list[str]:
    """Outputs with a loss at every step that the network reads back with a delay."""
    return [u for u, o in program.outputs.items() if o.loss != "none" and o.at != "last" and program.read_back(u)]


def teacher_values(program, unit, target) -> np.ndarray:
    """What the unit should have produced: one-hot rows for class-index targets."""
    target = np.asarray(target)
    size = program.units[unit].size
    if target.ndim == 2:  # (T, B) class indices
        onehot = np.zeros(target.shape + (size,))
        np.put_along_axis(onehot, np.clip(target.astype(np.int64), 0, size - 1)[..., None], 1.0, axis=-1)
        return onehot
    return target


def teacher(program, units, batch, p: float, rng) -> dict | None:
    """{unit: (values, Bernoulli(p) mask)} for the batch, or None when p == 0."""
    if p <= 0 or not units:
        return None
    T, B = next(iter(batch.inputs.values())).shape[:2]
    out = {}
    for u in units:
        mask = np.ones((T, B)) if p >= 1 else (rng.random((T, B)) < p).astype(np.float64)
        user = (batch.masks or {}).get(u)
        if program.outputs[u].at == "mask" and user is not None:
            mask = mask * (np.asarray(user) > 0)
        out[u] = (teacher_values(program, u, batch.targets[u]), mask)
    return out


def windows(program, batch, k: int | None, forced: dict | None):
    """Yield the Windows of a batch: one (the whole batch) when k is None or k >= T."""
    inputs, targets, masks = batch.inputs, batch.targets, dict(batch.masks or {})
    T, B = next(iter(inputs.values())).shape[:2]
    if not k or k >= T:
        yield Window(inputs, targets, batch.lengths, masks, forced, True)
        return
    lengths = np.full(B, T) if batch.lengths is None else np.asarray(batch.lengths)
    for a in range(0, T, k):
        b = min(a + k, T)
        clen = np.clip(lengths - a, 1, b - a)
        alive = lengths > a  # (B,) sequences still running in this window
        ct, cm, has_loss = {}, {}, False
        for name, out in program.outputs.items():
            if out.loss == "none":
                continue
            tgt = targets[name]
            if out.at == "last":
                ends = alive & (lengths <= b)
                ct[name], m = tgt, np.ones((b - a, B)) * ends[None, :]
            else:
                ct[name] = tgt[a:b]
                m = np.ones((b - a, B)) * alive[None, :]
                if out.at == "mask":
                    m = m * np.asarray(masks[name])[a:b]
            cm[name] = m
            has_loss = has_loss or bool(m.any())
        ci = {n: x[a:b] for n, x in inputs.items()}
        ctf = None if forced is None else {u: (v[a:b], m[a:b]) for u, (v, m) in forced.items()}
        yield Window(ci, ct, None if (clen == b - a).all() else clen, cm, ctf, has_loss)


def force_state(xp, state: dict, window: Window, T: int) -> dict:
    """Make the carried state of teacher-forced units what the next window's delayed reads
    would have seen in one long run: the teacher's values where its mask is 1."""
    if not window.teacher:
        return state
    B = next(iter(window.inputs.values())).shape[1]
    clen = np.full(B, T) if window.lengths is None else np.asarray(window.lengths)
    for u, (values, mask) in window.teacher.items():
        if u not in state:
            continue
        rows = state[u]
        k = rows.shape[0]
        new = []
        for j in range(k):
            t = clen - k + j  # the window step that row j holds, per sample
            ok = t >= 0
            tt = np.clip(t, 0, T - 1)
            v = np.asarray(values)[tt, np.arange(B)]
            m = (np.asarray(mask)[tt, np.arange(B)] > 0) & ok
            new.append(xp.where(xp.asarray(m)[:, None], xp.asarray(v, dtype=rows.dtype), rows[j]))
        state = dict(state, **{u: xp.stack(new)})
    return state
