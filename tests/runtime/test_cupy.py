"""CuPy backend == NumPy backend (needs CuPy and a CUDA GPU; skipped otherwise)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import cli_in, final_params, only_run, random_batch

from compiler import compile_spec
from runtime import Network

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


# -- whole runs: the trainers, the data tasks and the ridge readout on the GPU ----------------------
RUNS = {  # spec -> overrides that keep one epoch to a few steps
    "embedded_reber": ["data.train_size=48", "data.test_size=16", "training.validation_split=0.25"],
    # the spec's alpha = 1e-6 leaves cond(X^T X + alpha I) ~ 6e10: reservoir states that differ in the
    # 16th digit between cuBLAS and OpenBLAS move the readout by ~1e-6; alpha = 1e-3 (cond ~ 6e7) does not
    "esn": ["data.length=600", "training.ridge.alpha=1e-3"],
    "teacher_forcing": ["data.seq_len=20", "training.steps_per_epoch=3", "training.batch_size=4"],
    "one_to_many": ["training.steps_per_epoch=3"],
    "many_to_one": ["data.length=20", "training.steps_per_epoch=3", "data.test_size=32"],
    "anbncn": ["training.steps_per_epoch=3", "data.test_n=[1, 12]"],
    "tcn": ["data.length=700", "data.seq_len=40", "training.steps_per_epoch=3"],
    "copy_elman": ["training.steps_per_epoch=3", "data.test_size=32"],
}


def _run(tmp_path, name, backend, extra=()):
    folder = tmp_path / backend
    folder.mkdir()
    args = ["run", SPECS / f"{name}.yaml", "--epochs", "1", "--backend", backend, "--dtype", "float64",
            "--quiet", *extra]
    for o in RUNS[name]:
        args += ["--set", o]
    result = cli_in(folder, args)
    assert result.exit_code == 0, result.output
    return final_params(only_run(folder)), result.output


@pytest.mark.parametrize("name", sorted(RUNS))
def test_cupy_run_trains_like_numpy(name, tmp_path):
    """One short epoch of `timeloom run` on each backend ends with the same parameters."""
    _gpu_or_skip()
    extra = ["--no-report"] if name != "embedded_reber" else []  # one run writes report.html on the GPU
    p_cpu, _ = _run(tmp_path, name, "numpy", extra)
    p_gpu, _ = _run(tmp_path, name, "cupy", extra)
    assert set(p_cpu) == set(p_gpu)
    for k in p_cpu:
        np.testing.assert_allclose(p_gpu[k], p_cpu[k], rtol=1e-6, atol=1e-8, err_msg=k)


def test_cupy_generation_matches_numpy(tmp_path):
    _gpu_or_skip()
    _, out_c = _run(tmp_path, "teacher_forcing", "numpy", ["--no-report", "--generate", "40"])
    _, out_g = _run(tmp_path, "teacher_forcing", "cupy", ["--no-report", "--generate", "40"])
    gen = [line for line in out_c.splitlines() if "generat" in line.lower()]
    assert gen and gen == [line for line in out_g.splitlines() if "generat" in line.lower()]
