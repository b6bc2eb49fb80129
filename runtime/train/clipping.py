"""Gradient clipping: by global norm (torch.nn.utils.clip_grad_norm_) and by value."""
from __future__ import annotations

import math


def global_norm(xp, grads: dict) -> float:
    """sqrt of the sum of squares of every gradient entry (the norm of the per-array norms);
    NaN or Inf when any entry is. One device sync for all arrays."""
    if not grads:
        return 0.0
    squares = [(g * g).sum() for g in grads.values()]
    return math.sqrt(float(xp.stack(squares).sum()))


def clip_by_norm(xp, grads: dict, max_norm: float, norm: float | None = None) -> float:
    """Scale all gradients by max_norm / (norm + 1e-6) when that is < 1, in place; returns the norm before."""
    total = global_norm(xp, grads) if norm is None else norm
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for k in grads:
            grads[k] = grads[k] * coef
    return total


def clip_by_value(xp, grads: dict, value: float) -> None:
    """Clip every gradient entry to [-value, value], in place (torch.nn.utils.clip_grad_value_)."""
    for k in grads:
        grads[k] = xp.clip(grads[k], -value, value)
