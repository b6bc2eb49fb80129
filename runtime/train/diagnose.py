"""Where a NaN or Inf first appeared: a parameter, a unit (at which step), a target, a gradient."""
from __future__ import annotations

import numpy as np


def _finite(be, a) -> bool:
    return bool(np.isfinite(be.to_numpy(a)).all()) if a is not None else True


def all_finite(net) -> bool:
    """Whether every parameter is finite (one device sync; a sum overflowing to Inf is
    followed up by `first_bad_param`, which then finds nothing)."""
    xp = net.xp
    total = float(xp.stack([xp.abs(p).sum() for p in net.params.values()]).sum()) if net.params else 0.0
    return np.isfinite(total) or first_bad_param(net, net.params) is None


def first_bad_param(net, arrays: dict) -> str | None:
    for name in net.program.params:
        if name in arrays and not _finite(net.backend, arrays[name]):
            return name
    return None


def locate(net, window, state=None) -> str:
    """A phrase naming the first non-finite thing for this window of data."""
    be = net.backend
    name = first_bad_param(net, net.params)
    if name:
        return f"parameter '{name}'"
    try:
        outs = net.forward(window.inputs, lengths=window.lengths, state=state,
                           units=net.program.order, teacher=window.teacher)
    except Exception:  # noqa: BLE001 - diagnosis must not hide the original problem
        outs = {}
    first = None
    for i, u in enumerate(net.program.order):
        y = outs.get(u)
        if y is None:
            continue
        bad = ~np.isfinite(be.to_numpy(y)).reshape(y.shape[0], -1).all(axis=1)
        if bad.any():
            t = int(np.argmax(bad))
            if first is None or (t, i) < first[:2]:
                first = (t, i, u)
    if first:
        return f"unit '{first[2]}' at time step t={first[0]}"
    for out, tgt in window.targets.items():
        if not np.isfinite(np.asarray(be.to_numpy(tgt) if not isinstance(tgt, np.ndarray) else tgt,
                                      dtype=np.float64)).all():
            return f"the target of output '{out}' (the data)"
    return _overflowing_loss(net, outs)


def _overflowing_loss(net, outs: dict) -> str:
    """Every value is finite, the loss is not: it overflowed. Names the output with the largest
    values and the parameter with the largest norm (what a too-large lr blew up)."""
    be = net.backend
    where = "the loss"
    sizes = []
    for name in net.program.outputs:
        y = outs.get(name)
        if y is not None:
            sizes.append((float(np.abs(np.asarray(be.to_numpy(y), dtype=np.float64)).max(initial=0.0)), name))
    if sizes:
        top, name = max(sizes)
        where = f"the loss of output '{name}' (its values reach {top:.3g}, the loss overflows)"
    big = largest_param(net)
    if big:
        where += f"; the largest parameter is '{big[0]}' (norm {big[1]:.3g})"
    return where


def largest_param(net) -> tuple[str, float] | None:
    """(name, Frobenius norm) of the parameter with the largest norm, in float64."""
    norms = [(float(np.linalg.norm(np.asarray(net.backend.to_numpy(a), dtype=np.float64).ravel())), name)
             for name, a in net.params.items()]
    if not norms:
        return None
    norm, name = max(norms)
    return name, norm


def bad_gradient(net, grads: dict) -> str | None:
    return first_bad_param(net, grads)
