"""float32 runs agree with float64 runs (the oracle) and stay in float32.

Both networks get the same float32-representable parameters and inputs, so the only
difference is the arithmetic precision.

Tolerance: float32's unit round-off is u = 6e-8. A value at step t of a T = 8 step BPTT
passes through O(10) roundings per step on O(T) paths, so forward values and gradients
carry errors of k*u with k of a few tens: a few 1e-6 relative to their scale at worst
(measured: <= 1e-6 on every example spec). We allow 2e-5 relative to the scale: outputs
against max(1, max |y|) of that unit, each gradient against the largest |g| of the same
parameter (floored at 1e-3 of the largest gradient of the network, so that a parameter with
an almost-zero gradient is not held to a tolerance below float32's resolution of the whole
backward pass). That is 20x the expected error and still far below what a real precision
bug gives (a stray float16 cast: ~1e-3; a dropped term: O(1)).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from support import random_batch, shrink

import compiler
import runtime

SPECS = Path(__file__).resolve().parents[2] / "specs"
T, B = 8, 3
TOL = 2e-5


def twin_networks(program, seed=0):
    """(float64 net, float32 net) holding the same float32-representable parameters."""
    n64 = runtime.Network(program, dtype="float64", seed=seed)
    n32 = runtime.Network(program, dtype="float32", seed=seed)
    rng = np.random.default_rng(seed)
    for name, value in n64.params.items():
        if name in n64.trainable:
            value = value + 0.3 * rng.standard_normal(value.shape)
        value = np.asarray(value, dtype=np.float32)
        n32.params[name] = value.copy()
        n64.params[name] = value.astype(np.float64)
    return n64, n32


@pytest.mark.parametrize("variable_lengths", [False, True], ids=["full", "lengths"])
def test_float32_outputs_and_gradients_agree_with_float64(spec_path, variable_lengths):
    program = compiler.compile_spec(shrink(yaml.safe_load(spec_path.read_text())))
    n64, n32 = twin_networks(program)
    inputs, targets, masks, lengths = random_batch(program, T, B, np.random.default_rng(1), variable_lengths)
    inputs = {k: v.astype(np.float32) for k, v in inputs.items()}
    units = list(program.units)

    out64 = n64.forward(inputs, lengths=lengths, units=units)
    out32 = n32.forward(inputs, lengths=lengths, units=units)
    for u in units:
        assert out32[u].dtype == np.float32, f"unit {u} left float32"
        scale = max(1.0, float(np.abs(out64[u]).max()))
        err = float(np.abs(out32[u] - out64[u]).max())
        assert err <= TOL * scale, f"unit {u}: float32 differs by {err:.2e} (scale {scale:.2e})"

    loss64, g64 = n64.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    loss32, g32 = n32.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    assert abs(loss32 - loss64) <= TOL * max(1.0, abs(loss64))
    assert set(g32) == set(g64)
    overall = max(float(np.abs(g).max()) for g in g64.values())
    for name in g64:
        assert g32[name].dtype == np.float32, f"gradient of {name} left float32"
        scale = max(float(np.abs(g64[name]).max()), 1e-3 * overall)
        err = float(np.abs(g32[name] - g64[name]).max())
        assert err <= TOL * scale, f"gradient of {name}: float32 differs by {err:.2e} (scale {scale:.2e})"


def test_float32_state_stays_float32_and_matches_float64():
    program = compiler.compile_spec(shrink(yaml.safe_load((SPECS / "leaky.yaml").read_text())))
    n64, n32 = twin_networks(program)
    inputs, _, _, _ = random_batch(program, T, B, np.random.default_rng(2))
    inputs = {k: v.astype(np.float32) for k, v in inputs.items()}
    _, s64 = n64.forward(inputs, return_state=True)
    _, s32 = n32.forward(inputs, return_state=True)
    assert set(s32) == set(s64)
    for u in s64:
        assert s32[u].dtype == np.float32
        assert float(np.abs(s32[u] - s64[u]).max()) <= TOL * max(1.0, float(np.abs(s64[u]).max()))
