"""CuPy backend == NumPy backend (needs CuPy and a CUDA GPU; skipped otherwise)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler import compile_spec
from runtime import Network
from support import random_batch

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _gpu_or_skip():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'timeloom[gpu]')")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no CUDA device visible to CuPy")
    except Exception as e:  # CUDARuntimeError without a driver
        pytest.skip(f"no usable CUDA device: {e}")
    return cupy


@pytest.mark.parametrize("name", ["elman", "lstm_peephole", "gru", "bidirectional_lstm", "leaky", "tcn", "dcm",
                                  "delayed_rnn"])
@pytest.mark.parametrize("lengths", [False, True])
def test_cupy_matches_numpy_outputs_and_gradients(name, lengths):
    cupy = _gpu_or_skip()
    program = compile_spec(SPECS / f"{name}.yaml")
    rng = np.random.default_rng(0)
    inputs, targets, masks, lens = random_batch(program, 9, 3, rng, lengths=lengths)
    cpu = Network(program, backend="numpy", dtype="float64", seed=3)
    gpu = Network(program, backend="cupy", dtype="float64", seed=3)
    out_c = cpu.forward(inputs, lengths=lens)
    out_g = gpu.forward(inputs, lengths=lens)
    for k in out_c:
        assert isinstance(out_g[k], cupy.ndarray)  # results stay on the device
        np.testing.assert_allclose(cupy.asnumpy(out_g[k]), out_c[k], rtol=1e-9, atol=1e-11)
    loss_c, g_c = cpu.loss_and_grads(inputs, targets, lengths=lens, masks=masks)
    loss_g, g_g = gpu.loss_and_grads(inputs, targets, lengths=lens, masks=masks)
    assert loss_g == pytest.approx(loss_c, rel=1e-9)
    for k in g_c:
        np.testing.assert_allclose(cupy.asnumpy(g_g[k]), g_c[k], rtol=1e-7, atol=1e-10, err_msg=k)


def test_cupy_float32_fused_kernels_match_numpy():
    _gpu_or_skip()
    program = compile_spec(SPECS / "lstm_gers2000.yaml")  # sigmoid, tanh and scaled_sigmoid kernels
    rng = np.random.default_rng(1)
    inputs, targets, masks, lens = random_batch(program, 12, 4, rng)
    cpu = Network(program, backend="numpy", dtype="float32", seed=0)
    gpu = Network(program, backend="cupy", dtype="float32", seed=0)
    loss_c, g_c = cpu.loss_and_grads(inputs, targets, masks=masks)
    loss_g, g_g = gpu.loss_and_grads(inputs, targets, masks=masks)
    # float32 rounding differs between BLAS and cuBLAS and between libm and CUDA's exp/tanh:
    # ~1e-6 relative per op, accumulated over 12 steps
    assert loss_g == pytest.approx(loss_c, rel=1e-4)
    for k in g_c:
        np.testing.assert_allclose(gpu.backend.to_numpy(g_g[k]), g_c[k], rtol=1e-3, atol=1e-5, err_msg=k)
