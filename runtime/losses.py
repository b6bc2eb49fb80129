"""Losses over the valid positions of an output: value and gradient side by side.

Each returns (loss, d loss / d out) — or, fused with the output's activation where that is
exact and stable (softmax + cross_entropy, sigmoid + bce, identity = logits), the gradient
with respect to the unit's net input, flagged by `wrt_net=True`.
"""
from __future__ import annotations

EPS = 1e-12


def _count(mask, width=1):
    return max(float(mask.sum()) * width, 1.0)


def mse(xp, y, target, mask, act):
    """mean over valid positions and features of (y - target)^2 (torch MSELoss)."""
    m = mask[..., None]
    diff = (y - target) * m
    n = _count(mask, y.shape[-1])
    return float((diff * diff).sum()) / n, 2 * diff / n, False


def cross_entropy(xp, y, target, mask, act):
    """mean over valid positions of -log p[target]; target: class indices or one-hot/probabilities."""
    n = _count(mask)
    m = mask[..., None]
    if target.ndim == y.ndim - 1:
        onehot = xp.zeros_like(y)
        idx = xp.clip(target.astype(xp.int64), 0, y.shape[-1] - 1)
        xp.put_along_axis(onehot, idx[..., None], 1.0, axis=-1)
        target = onehot
    if act.name == "identity":  # logits
        shifted = y - y.max(axis=-1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
        p = xp.exp(logp)
    else:  # softmax output
        p = y
        logp = xp.log(xp.maximum(y, EPS))
    loss = -float((target * logp * m).sum()) / n
    return loss, (p * target.sum(axis=-1, keepdims=True) - target) * m / n, True


def bce(xp, y, target, mask, act):
    """mean over valid positions and features of binary cross-entropy (multi-label targets)."""
    n = _count(mask, y.shape[-1])
    m = mask[..., None]
    if act.name == "identity":  # logits: log(1 + e^x) - t x
        loss = xp.logaddexp(0, y) - target * y
        p = 0.5 + 0.5 * xp.tanh(0.5 * y)
    else:  # a saturated sigmoid: keep log() finite in the output's own precision
        eps = float(xp.finfo(y.dtype).eps)
        p = xp.clip(y, eps, 1 - eps)
        loss = -(target * xp.log(p) + (1 - target) * xp.log(1 - p))
    return float((loss * m).sum()) / n, (p - target) * m / n, True


LOSSES = {"mse": mse, "cross_entropy": cross_entropy, "bce": bce}


def fused(act_name: str, loss: str) -> bool:
    """Whether the loss's gradient is taken with respect to the net input."""
    return (loss, act_name) in {("cross_entropy", "softmax"), ("cross_entropy", "identity"),
                                ("bce", "sigmoid"), ("bce", "identity")}
