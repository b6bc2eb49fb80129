"""Helpers for tests: random inputs and targets that fit a program's inputs and outputs."""
from __future__ import annotations

import numpy as np


def random_batch(program, T, B, rng, lengths=False):
    """(inputs, targets, masks, lengths) for `program` with sequence length T and batch B."""
    inputs = {n: rng.standard_normal((T, B, k)) for n, k in program.inputs.items()}
    targets, masks = {}, {}
    for name, out in program.outputs.items():
        size = program.units[name].size
        lead = (B,) if out.at == "last" else (T, B)
        if out.loss == "cross_entropy":
            targets[name] = rng.integers(0, size, lead)
        elif out.loss == "bce":
            targets[name] = (rng.random(lead + (size,)) > 0.5).astype(float)
        else:
            targets[name] = rng.standard_normal(lead + (size,))
        if out.at == "mask":
            masks[name] = (rng.random((T, B)) > 0.3).astype(float)
    lens = None
    if lengths:
        lens = rng.integers(max(1, T // 2), T + 1, size=B)
        lens[0] = T
    return inputs, targets, masks, lens
