"""Ridge-regression readout for reservoirs (echo-state networks), closed form.

The readout is every trainable connection into the loss-carrying output unit y (full
weights, no gate) plus y's bias. Everything else stays as initialized (the reservoir). The
features of a time step are the readout connections' sources shifted by their delays,
concatenated, with a 1 for the bias; over all valid steps after the washout they form X
(N, F), the targets minus the fixed part of y's net input form Y (N, out), and

    W = Y^T X (X^T X + alpha I)^-1      (then split into the connection weights and the bias)

accumulated batch by batch through X^T X and X^T Y. y must be an identity unit with an mse
loss. If y feeds back into the network (a delayed connection from y), the states are
collected teacher-forced: the delayed reads of y see the targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import TrainingError


@dataclass
class Readout:
    output: str
    connections: list  # [Connection] trainable, full, into output
    bias: str | None  # "{output}.bias" when trainable
    feedback: bool  # the output is read back with a delay (teacher-forced while collecting)

    def columns(self, program) -> list[tuple[str, int]]:
        return [(c.name, program.size(c.source)) for c in self.connections] + ([(self.bias, 1)] if self.bias else [])


def find_readout(program) -> Readout:
    outs = [o for o in program.outputs.values() if o.loss != "none"]
    if len(outs) != 1:
        raise TrainingError(f"method: ridge needs exactly one output with a loss, the spec has {len(outs)}")
    out = outs[0]
    unit = program.units[out.unit]
    if unit.activation.name != "identity" or out.loss != "mse":
        raise TrainingError(f"method: ridge fits a linear readout: output '{out.unit}' must have "
                            f"activation: identity and loss: mse (it has {unit.activation} and {out.loss})")
    conns = [c for c in program.incoming(out.unit) if c.trainable and c.has_param]
    for c in conns:
        if c.weight != "full" or c.gate is not None or c.bias is not None or c.source == out.unit:
            raise TrainingError(f"method: ridge: readout connection '{c.name}' must be a plain full weight "
                                f"(no gate, no connection bias, not from the output itself)")
    bias = f"{out.unit}.bias" if f"{out.unit}.bias" in program.params and \
        program.params[f"{out.unit}.bias"].trainable else None
    if not conns and bias is None:
        raise TrainingError(f"method: ridge: output '{out.unit}' has no trainable connection to fit")
    feedback = any(c.source == out.unit and c.delay > 0 for c in program.connections)
    return Readout(out.unit, conns, bias, feedback)


def _shift(a, delay):
    """S[t] = a[t - delay] (zeros outside the sequence), a: (T, B, n)."""
    if delay == 0:
        return a
    s = np.zeros_like(a)
    T = a.shape[0]
    if delay > 0:
        s[delay:] = a[:T - delay]
    else:
        s[:T + delay] = a[-delay:]
    return s


def positions(out, T, B, lengths, mask, washout) -> np.ndarray:
    """(T, B) bool: the steps that enter the fit."""
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    t = np.arange(T)[:, None]
    keep = (t < lengths[None, :]) & (t >= washout)
    if out.at == "last":
        keep &= t == lengths[None, :] - 1
    elif out.at == "mask" and mask is not None:
        keep &= np.asarray(mask) > 0
    return keep


def features(net, readout: Readout, batch, washout: int):
    """(X (N, F), R (N, out)): features and the part of the target the readout must produce."""
    program, be = net.program, net.backend
    out = program.outputs[readout.output]
    saved = {n: net.params[n] for n, _ in readout.columns(program)}
    for n in saved:  # zero the readout: y's output is then the fixed part of its net input
        net.params[n] = net.xp.zeros_like(saved[n])
    try:
        target = _host(be, batch.targets[readout.output])
        sources = sorted({c.source for c in readout.connections if c.source in program.units})
        T, B = next(iter(batch.inputs.values())).shape[:2]
        if out.at == "last":
            full = np.zeros((T,) + target.shape)
            full[:] = target
            target = full
        teacher = None
        if readout.feedback:
            teacher = {readout.output: (target, np.ones((T, B)))}
        outs = net.forward(batch.inputs, lengths=batch.lengths, units=sources, teacher=teacher)
    finally:
        net.params.update(saved)
    traj = {u: _host(be, outs[u]) for u in sources}
    traj.update({n: _host(be, x) for n, x in batch.inputs.items()})
    cols = [_shift(traj[c.source], c.delay) for c in readout.connections]
    if readout.bias:
        cols.append(np.ones((T, B, 1)))
    X = np.concatenate(cols, axis=-1)
    fixed = _host(be, outs[readout.output])
    mask = (batch.masks or {}).get(readout.output)
    keep = positions(out, T, B, batch.lengths, None if mask is None else _host(be, mask), washout)
    return X[keep], (target - fixed)[keep]


def _host(be, a) -> np.ndarray:
    return np.asarray(a if isinstance(a, np.ndarray) else be.to_numpy(a), dtype=np.float64)


def solve(XtX, XtY, alpha: float) -> np.ndarray:
    """W (out, F) = Y^T X (X^T X + alpha I)^-1."""
    A = XtX + alpha * np.eye(XtX.shape[0])
    try:
        return np.linalg.solve(A, XtY).T
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, XtY, rcond=None)[0].T


def fit(net, batches, alpha: float = 1e-6, washout: int = 0) -> dict:
    """Fit the readout on `batches` and write it into net.params; returns a summary."""
    readout = find_readout(net.program)
    XtX = XtY = None
    n = 0
    for batch in batches:
        X, R = features(net, readout, batch, washout)
        if XtX is None:
            XtX, XtY = np.zeros((X.shape[1],) * 2), np.zeros((X.shape[1], R.shape[1]))
        XtX += X.T @ X
        XtY += X.T @ R
        n += X.shape[0]
    if not n:
        raise TrainingError(f"method: ridge: no time steps left to fit after a washout of {washout}; "
                            f"lower ridge.washout or use longer sequences")
    W = solve(XtX, XtY, alpha)
    start = 0
    for name, width in readout.columns(net.program):
        part = W[:, start:start + width]
        net.params[name] = net.backend.asarray(part[:, 0] if name == readout.bias else part)
        start += width
    fixed = [p for p, info in net.program.params.items() if info.trainable and
             p not in dict(readout.columns(net.program))]
    return {"samples": n, "features": int(XtX.shape[0]), "alpha": alpha, "washout": washout,
            "untouched_trainable": fixed}
