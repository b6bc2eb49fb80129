"""Learning-rate schedules and the teacher-forcing probability schedule, both per epoch.

Learning rate at epoch e (0-based) of E, as torch's StepLR, ExponentialLR and
CosineAnnealingLR(T_max=E) stepped once per epoch:
- step:        lr * gamma^floor(e / step_size)
- exponential: lr * gamma^e
- cosine:      min_lr + (lr - min_lr) * (1 + cos(pi e / E)) / 2
Teacher forcing: `constant` keeps p; `linear` decays p to 0 at the last epoch.
"""
from __future__ import annotations

import math

from compiler.errors import TrainingError


def learning_rate(base: float, schedule: dict | None, epoch: int, epochs: int) -> float:
    if not schedule:
        return base
    kind = schedule.get("type")
    if kind == "step":
        return base * schedule.get("gamma", 0.1) ** (epoch // schedule.get("step_size", 1))
    if kind == "exponential":
        return base * schedule.get("gamma", 0.95) ** epoch
    if kind == "cosine":
        low = schedule.get("min_lr", 0.0)
        return low + (base - low) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2
    raise TrainingError(f"unknown lr_schedule type {kind!r}; use step, cosine or exponential")


def teacher_probability(spec: dict | None, epoch: int, epochs: int) -> float:
    """The probability of feeding the target at epoch e; 0 without teacher forcing."""
    if spec is None:
        return 0.0
    p = float(spec.get("probability", 1.0))
    if spec.get("schedule", "constant") == "linear" and epochs > 1:
        return p * (1 - epoch / (epochs - 1))
    return p
