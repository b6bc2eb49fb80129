"""Ridge-regression readout for reservoirs (echo-state networks), closed form.

The readout is every trainable connection into the loss-carrying output unit y (full
weights, no gate) plus y's bias. Everything else stays as initialized (the reservoir). The
features of a time step are the readout connections' sources shifted by their delays,
concatenated, with a 1 for the bias; over all valid steps after the washout they form X
(N, F), the targets minus the fixed part of y's net input form Y (N, out), and

    W = Y^T X (X^T X + alpha I)^-1      (then split into the connection weights and the bias)

accumulated batch by batch through X^T X and X^T Y. y must be an identity or tanh unit with
an mse loss (tanh: the fit is in y's net input, on atanh of the targets, as Jaeger's squashed
output unit). If y feeds back into the network (a delayed connection from y), the states are
collected teacher-forced: the delayed reads of y see the targets.

Two settings for precise fits (Jaeger & Haas 2004, specs/esn_jaeger2004.yaml):
`noise`: Gaussian noise of this standard deviation added to the collected unit states (the
features from units, not inputs or the bias column), drawn from `noise_seed` (state noise
while teacher forcing: the readout learns to tolerate its own small errors when fed back);
`solver`: "solve" (default: the normal equations above) or "svd" (W from the singular value
decomposition of X itself, W = Y^T U diag(s / (s^2 + alpha)) V^T, which keeps the accuracy
that forming X^T X squares away; it keeps all feature rows in memory).
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
    squashed: bool = False  # tanh output unit: fit its net input to atanh(target)

    def columns(self, program) -> list[tuple[str, int]]:
        return [(c.name, program.size(c.source)) for c in self.connections] + ([(self.bias, 1)] if self.bias else [])


def find_readout(program) -> Readout:
    outs = [o for o in program.outputs.values() if o.loss != "none"]
    if len(outs) != 1:
        raise TrainingError(f"method: ridge needs exactly one output with a loss, the spec has {len(outs)}")
    out = outs[0]
    unit = program.units[out.unit]
    if unit.activation.name not in ("identity", "tanh") or out.loss != "mse":
        raise TrainingError(f"method: ridge fits a linear readout: output '{out.unit}' must have "
                            f"activation: identity and loss: mse (or activation: tanh, fitted in its net input; "
                            f"it has {unit.activation} and {out.loss})")
    conns = [c for c in program.incoming(out.unit) if c.trainable and c.has_param]
    for c in conns:
        if c.weight != "full" or c.gate is not None or c.bias is not None or c.source == out.unit:
            raise TrainingError(f"method: ridge: readout connection '{c.name}' must be a plain full weight "
                                f"(no gate, no connection bias, not from the output itself)")
    bias = f"{out.unit}.bias" if f"{out.unit}.bias" in program.params and \
        program.params[f"{out.unit}.bias"].trainable else None
    if not conns and bias is None:
        raise TrainingError(f"method: ridge: output '{out.unit}' has no trainable connection to fit")
    return Readout(out.unit, conns, bias, program.read_back(out.unit), unit.activation.name == "tanh")


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


def teacher(net, batch):
    """The teacher forcing a readout fit (and a one-step loss) of `net` on `batch` uses: the
    targets for the delayed reads of the output, if the output feeds back; else None."""
    try:
        readout = find_readout(net.program)
    except TrainingError:
        return None
    if not readout.feedback:
        return None
    target = batch.targets[readout.output]
    return {readout.output: (target, np.ones(target.shape[:2]))}


def washout_masks(net, batch, washout: int) -> dict | None:
    """The loss masks that count the steps the fit used: the batch's masks, with the readout's
    output masked before `washout` (the reservoir's start-up transient the readout was not fitted
    on)."""
    if washout <= 0:
        return batch.masks
    readout = find_readout(net.program)
    T, B = next(iter(batch.inputs.values())).shape[:2]
    keep = (np.arange(T) >= washout)[:, None] & np.ones((T, B), dtype=bool)
    masks = dict(batch.masks or {})
    given = masks.get(readout.output)
    masks[readout.output] = keep * (1.0 if given is None else _host(net.backend, given))
    return masks


# atanh of a target beyond this is clipped (a squashed target of exactly +-1 has no net input)
SQUASH_LIMIT = 1 - 1e-12


def features(net, readout: Readout, batch, washout: int, noise: float = 0.0, rng=None):
    """(X (N, F), R (N, out)): features and the part of the target the readout must produce
    (in y's net input for a tanh output). `noise`: std of Gaussian noise added to the unit
    columns of X."""
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
    if readout.squashed:
        worst = float(np.abs(target[keep]).max()) if keep.any() else 0.0  # the fitted steps only
        if worst > 1:
            raise TrainingError(f"method: ridge: output '{readout.output}' is a tanh unit, but its targets reach "
                                f"{worst:.4g}, outside tanh's range [-1, 1]; give it activation: identity, or "
                                f"scale the targets into (-1, 1) (mackey_glass: data.squash: true)")
        target = np.arctanh(np.clip(target, -SQUASH_LIMIT, SQUASH_LIMIT))
        fixed = np.arctanh(np.clip(fixed, -SQUASH_LIMIT, SQUASH_LIMIT))
    X = X[keep]
    if noise:
        rng = np.random.default_rng(rng)
        start = 0
        for c in readout.connections:
            width = program.size(c.source)
            if c.source in program.units:
                X[:, start:start + width] += rng.standard_normal((X.shape[0], width)) * noise
            start += width
    return X, (target - fixed)[keep]


def _host(be, a) -> np.ndarray:
    return np.asarray(a if isinstance(a, np.ndarray) else be.to_numpy(a), dtype=np.float64)


def solve(XtX, XtY, alpha: float) -> np.ndarray:
    """W (out, F) = Y^T X (X^T X + alpha I)^-1."""
    A = XtX + alpha * np.eye(XtX.shape[0])
    try:
        return np.linalg.solve(A, XtY).T
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, XtY, rcond=None)[0].T


def solve_svd(X, R, alpha: float) -> np.ndarray:
    """W (out, F) minimising |X W^T - R|^2 + alpha |W|^2, from the SVD of X (no X^T X formed)."""
    U, s, Vt = np.linalg.svd(X, full_matrices=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(s > 0, s / (s * s + alpha), 0.0) if alpha > 0 else \
            np.where(s > s.max(initial=0.0) * max(X.shape) * np.finfo(float).eps, 1 / s, 0.0)
    return ((Vt.T * d) @ (U.T @ R)).T


SOLVERS = ("solve", "svd")


def fit(net, batches, alpha: float = 1e-6, washout: int = 0, noise: float = 0.0, solver: str = "solve",
        noise_seed: int = 0) -> dict:
    """Fit the readout on `batches` and write it into net.params; returns a summary."""
    if solver not in SOLVERS:
        raise TrainingError(f"training.ridge.solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    readout = find_readout(net.program)
    rng = np.random.default_rng(noise_seed)
    XtX = XtY = None
    rows = []
    n = 0
    for batch in batches:
        X, R = features(net, readout, batch, washout, noise, rng)
        if solver == "svd":
            rows.append((X, R))
        else:
            if XtX is None:
                XtX, XtY = np.zeros((X.shape[1],) * 2), np.zeros((X.shape[1], R.shape[1]))
            XtX += X.T @ X
            XtY += X.T @ R
        n += X.shape[0]
    if not n:
        raise TrainingError(f"method: ridge: no time steps left to fit after a washout of {washout}; "
                            f"lower ridge.washout or use longer sequences")
    if solver == "svd":
        W = solve_svd(np.concatenate([x for x, _ in rows]), np.concatenate([r for _, r in rows]), alpha)
    else:
        W = solve(XtX, XtY, alpha)
    start = 0
    for name, width in readout.columns(net.program):
        part = W[:, start:start + width]
        net.params[name] = net.backend.asarray(part[:, 0] if name == readout.bias else part)
        start += width
    fixed = [p for p, info in net.program.params.items() if info.trainable and
             p not in dict(readout.columns(net.program))]
    return {"samples": n, "features": int(W.shape[1]), "alpha": alpha, "washout": washout,
            "noise": noise, "solver": solver, "untouched_trainable": fixed}
