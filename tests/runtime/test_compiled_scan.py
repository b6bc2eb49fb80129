"""The compiled scans (runtime/jit) against the interpreted scan and the reference interpreter.

Oracles: the reference interpreter (walks the unrolled graph node by node) and the fast
executor's interpreted scan, in float64 to 1e-12: outputs, returned state, loss, every
gradient and the per-step error signals, with variable lengths, carried-in state and teacher
forcing; the numba file cache (a second process loads, does not compile); and the fallback
when numba cannot be imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import load_small, random_batch, random_specs

import compiler
import runtime
from runtime import jit

pytestmark = pytest.mark.skipif(not jit.numba_available(), reason="numba is not installed")

T, B = 7, 3
TOL = 1e-12
ROOT = Path(__file__).resolve().parents[2]


def networks(program, seed=0, scale=0.3):
    """compiled, interpreted, reference: float64 networks with the same perturbed parameters."""
    nets = [runtime.Network(program, dtype="float64", seed=seed, jit=True),
            runtime.Network(program, dtype="float64", seed=seed, jit=False),
            runtime.Network(program, dtype="float64", seed=seed, executor="reference")]
    rng = np.random.default_rng(seed + 1000)
    for name in nets[0].trainable:
        p = nets[0].params[name] + scale * rng.standard_normal(nets[0].params[name].shape)
        for net in nets:
            net.params[name] = p.copy()
    assert nets[0].executor.compiled, "no compiled scan"
    return nets


def close(a, b, what):
    np.testing.assert_allclose(a, b, atol=TOL, rtol=TOL, err_msg=what)


def teacher_for(program, steps, batch, rng):
    """Teacher forcing of every unit that a delayed connection reads, on a random half of the steps."""
    read = {c.source for c in program.connections if c.delay > 0 and c.source in program.units}
    return {u: (rng.standard_normal((steps, batch, program.units[u].size)),
                (rng.random((steps, batch)) > 0.5).astype(float)) for u in sorted(read)}


def assert_all_agree(program, inputs, targets, masks, lengths, state=None, teacher=None, seed=0):
    nets = networks(program, seed)
    units = list(program.units)
    runs = []
    for net in nets:
        out, carried = net.forward(inputs, lengths=lengths, units=units, state=state, teacher=teacher,
                                   return_state=True)
        loss, grads = net.loss_and_grads(inputs, targets, lengths=lengths, masks=masks, state=state,
                                         teacher=teacher)
        _, deltas = net.state_gradients(inputs, targets, lengths=lengths, masks=masks, state=state,
                                        teacher=teacher)
        runs.append((out, carried, loss, grads, deltas))
    names = ("compiled", "interpreted", "reference")
    for (out, carried, loss, grads, deltas), other in zip(runs[1:], names[1:]):
        c_out, c_carried, c_loss, c_grads, c_deltas = runs[0]
        for u in units:
            close(c_out[u], out[u], f"output of {u}: compiled vs {other}")
            close(c_deltas[u], deltas[u], f"error signal of {u}: compiled vs {other}")
        for u in carried:
            close(c_carried[u], carried[u], f"returned state of {u}: compiled vs {other}")
        close(c_loss, loss, f"loss: compiled vs {other}")
        assert set(c_grads) == set(grads)
        for p in grads:
            close(c_grads[p], grads[p], f"gradient of {p}: compiled vs {other}")


def forward_only(program):
    return all(c.delay >= 0 for c in program.connections) and all(c.direction >= 0 for c in program.components)


def carried_state(program, rng, batch):
    """A random state as `forward(..., return_state=True)` returns it."""
    depth = runtime.network._state_depth(program)
    return {u: rng.standard_normal((k, batch, program.size(u))) for u, k in depth.items()}


# -- the example specs -----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["full", "lengths", "state+teacher"])
def test_compiled_scan_equals_interpreter_and_reference_on_every_example_spec(spec_path, case):
    program = load_small(spec_path)
    if not any(c.recurrent for c in program.components):
        pytest.skip("no recurrent component: nothing is scanned")
    rng = np.random.default_rng(11)
    inputs, targets, masks, lengths = random_batch(program, T, B, rng, case == "lengths")
    state = teacher = None
    if case == "state+teacher":
        if not forward_only(program):
            pytest.skip("reads the future: no state to carry in")
        state, teacher = carried_state(program, rng, B), teacher_for(program, T, B, rng)
    assert_all_agree(program, inputs, targets, masks, lengths, state, teacher)


def test_float32_compiled_scan_stays_close_to_the_interpreted_one():
    """float32: a vectorised tanh (a few ulps) instead of NumPy's; same results to float32 precision."""
    program = compiler.compile_spec(ROOT / "specs" / "lstm_peephole.yaml")
    compiled = runtime.Network(program, dtype="float32", seed=0, jit=True)
    interpreted = runtime.Network(program, dtype="float32", seed=0, jit=False)
    inputs, targets, masks, _ = random_batch(program, 20, 4, np.random.default_rng(0))
    lc, gc = compiled.loss_and_grads(inputs, targets, masks=masks)
    li, gi = interpreted.loss_and_grads(inputs, targets, masks=masks)
    assert abs(lc - li) <= 1e-5 * abs(li)
    for p in gi:
        np.testing.assert_allclose(gc[p], gi[p], rtol=2e-3, atol=2e-5 * np.abs(gi[p]).max(), err_msg=p)


# -- random graphs ---------------------------------------------------------------------------------

@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), steps=st.integers(1, 6), batch=st.integers(1, 3),
       variable_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_compiled_scan_equals_interpreter_and_reference_on_random_graphs(spec, steps, batch, variable_lengths,
                                                                         seed):
    """Delays -3..3, forward and backward components, gates at target/source/complement, leaks,
    diagonal/identity/fixed weights, connection biases, learned initial states, lengths; forward
    graphs also with carried-in state and teacher forcing. (Few examples: each graph compiles.)"""
    program = compiler.compile_spec(spec)
    if not any(c.recurrent for c in program.components):
        return
    rng = np.random.default_rng(seed)
    inputs, targets, masks, lengths = random_batch(program, steps, batch, rng, variable_lengths)
    state = teacher = None
    if forward_only(program):
        state, teacher = carried_state(program, rng, batch), teacher_for(program, steps, batch, rng)
    assert_all_agree(program, inputs, targets, masks, lengths, state, teacher, seed=seed % 100)


# -- the cache, the fallback, the switch -------------------------------------------------------------

_CHILD = textwrap.dedent("""
    import json, numpy as np, compiler, runtime
    from runtime.jit import cache
    net = runtime.Network(compiler.compile_spec("specs/elman.yaml"), dtype="float64")
    x = {"x": np.ones((3, 2, 27))}
    net.forward(x)
    (scan,) = net.executor.compiled.values()
    print(json.dumps({"from_cache": cache.loaded_from_cache(scan.module),
                      "versions": cache.compiled_signatures(scan.module),
                      "file": str(Path(scan.module.__file__).parent)}))
""").replace("import json,", "from pathlib import Path\nimport json,")


def test_a_second_process_loads_the_compiled_scan_from_the_cache_without_compiling(tmp_path):
    env = dict(os.environ, TIMELOOM_CACHE_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    env.pop("TIMELOOM_JIT", None)
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["from_cache"] is False and first["versions"] == 1, first
    assert second["from_cache"] is True and second["versions"] == 1, second
    assert Path(first["file"]) == tmp_path / "scans"
    assert list((tmp_path / "scans").glob("scan_*.py")), "no generated source in the cache folder"


def test_without_numba_the_interpreted_scan_runs_with_the_same_results(monkeypatch):
    program = load_small(ROOT / "specs" / "lstm_peephole.yaml")
    inputs, targets, masks, _ = random_batch(program, T, B, np.random.default_rng(2))
    compiled = networks(program)[0]
    want = compiled.loss_and_grads(inputs, targets, masks=masks)
    monkeypatch.setenv("TIMELOOM_JIT", "1")
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    assert not jit.numba_available()
    net = runtime.Network(program, dtype="float64", seed=0)
    assert not net.executor.compiled
    assert "numba cannot be imported" in jit.why_not(net.backend)
    net.params = {k: v.copy() for k, v in compiled.params.items()}
    loss, grads = net.loss_and_grads(inputs, targets, masks=masks)
    close(loss, want[0], "loss without numba")
    for p in grads:
        close(grads[p], want[1][p], f"gradient of {p} without numba")
    with pytest.raises(compiler.TimeloomError, match="numba"):
        runtime.Network(program, jit=True)


def test_timeloom_jit_0_turns_the_compiled_scans_off(monkeypatch):
    program = load_small(ROOT / "specs" / "elman.yaml")
    monkeypatch.setenv("TIMELOOM_JIT", "0")
    assert not runtime.Network(program).executor.compiled
    monkeypatch.setenv("TIMELOOM_JIT", "1")
    assert runtime.Network(program).executor.compiled


def test_a_whole_run_trains_through_the_compiled_scan_like_the_interpreted_one(tmp_path, monkeypatch):
    """`timeloom run` (float32, Adam, clipping, padded batches: a^n b^n c^n) with the compiled
    scans and with the interpreted ones: the same loss at every step to float32 precision."""
    from support import cli_in, only_run
    losses = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("TIMELOOM_JIT", flag)
        folder = tmp_path / flag
        folder.mkdir()
        r = cli_in(folder, ["run", ROOT / "specs" / "anbncn.yaml", "--epochs", "2", "--no-report",
                            "--set", "data.train_size=128"])
        assert r.exit_code == 0, r.output
        records = [json.loads(line) for line in (only_run(folder) / "metrics.jsonl").read_text().splitlines()]
        losses[flag] = [r["loss"] for r in records if r.get("kind") == "step"]
    assert len(losses["1"]) == len(losses["0"]) == 4
    np.testing.assert_allclose(losses["1"], losses["0"], rtol=1e-4)


def test_every_activation_of_the_primitive_table_has_a_compiled_forward_and_backward():
    from runtime import primitives
    from runtime.jit import codegen, kernels
    assert set(codegen.ACTIVATIONS) == set(primitives.ACTIVATIONS)
    assert set(codegen.WEIGHTS) == set(primitives.WEIGHTS)
    for name in codegen.ACTIVATIONS:
        assert callable(getattr(kernels, name)) and callable(getattr(kernels, f"{name}_back")), name


def test_a_component_the_kernels_cannot_run_stays_interpreted_and_compile_says_which(monkeypatch, tmp_path):
    """An activation added to the primitive table before the kernels know it: that component is
    interpreted (same results), the others compiled, and `timeloom compile` names it and why."""
    from support import cli_in

    from runtime.jit import codegen
    monkeypatch.setattr(codegen, "ACTIVATIONS", tuple(a for a in codegen.ACTIVATIONS if a != "softplus"))
    monkeypatch.setenv("TIMELOOM_JIT", "1")
    spec = {"timeloom": 1, "name": "two", "inputs": {"x": {"size": 2}},
            "units": {"a": {"size": 3, "activation": "tanh"}, "b": {"size": 2, "activation": "softplus"}},
            "connections": [{"from": "x", "to": "a"}, {"from": "a", "to": "a", "delay": 1},
                            {"from": "a", "to": "b"}, {"from": "b", "to": "b", "delay": 2}],
            "outputs": {"b": {"loss": "mse"}}}
    program = compiler.compile_spec(spec)
    net = runtime.Network(program, dtype="float64", jit=True)
    assert len(net.executor.compiled) == 1
    inputs, targets, masks, lengths = random_batch(program, T, B, np.random.default_rng(0), True)
    ref = runtime.Network(program, dtype="float64", executor="reference")
    close(net.loss(inputs, targets, lengths=lengths), ref.loss(inputs, targets, lengths=lengths), "loss")
    path = tmp_path / "two.yaml"
    import yaml
    path.write_text(yaml.safe_dump(spec))
    r = cli_in(tmp_path, ["compile", path, "--emit-step", tmp_path / "step.py"])
    assert r.exit_code == 0, r.output
    assert "1 of 2 recurrent components compiled" in r.output
    assert "interpreted: b: unit 'b' has activation 'softplus'" in r.output
    assert "interpreted (unit 'b'" in (tmp_path / "step.py").read_text()


def test_emit_step_writes_readable_python_with_the_spec_names(tmp_path, monkeypatch):
    from support import cli_in
    monkeypatch.setenv("TIMELOOM_JIT", "1")
    out = tmp_path / "lstm.py"
    r = cli_in(tmp_path, ["compile", ROOT / "specs" / "lstm_peephole.yaml", "--emit-step", out])
    assert r.exit_code == 0, r.output
    assert "time loop: 1 of 1 recurrent component compiled" in r.output
    text = out.read_text()
    compile(text, str(out), "exec")  # valid Python
    assert text.count("def forward(") == 1 and text.count("def backward(") == 1
    assert "# G0 = 'mem.h'@1 -> 'mem.h->mem.i@1'" in text
    r = cli_in(tmp_path, ["compile", ROOT / "specs" / "elman.yaml", "--emit-step", tmp_path / "missing" / "x.py"])
    assert r.exit_code == 2 and "cannot write" in r.output and "Traceback" not in r.output


def test_softmax_relu_and_scaled_sigmoid_units_inside_a_recurrence():
    """The activations the random graphs do not draw, each inside a recurrent loop, with a
    source gate, a complement target gate, a connection bias and a learned initial state."""
    spec = {"timeloom": 1, "name": "acts", "inputs": {"x": {"size": 3}},
            "units": {"s": {"size": 4, "activation": "softmax", "initial": "learned"},
                      "r": {"size": 4, "activation": "relu"},
                      "q": {"size": 4, "activation": {"scaled_sigmoid": [-2, 2]}},
                      "y": {"size": 2, "activation": "identity"}},
            "connections": [{"from": "x", "to": "s"}, {"from": "q", "to": "s", "delay": 1},
                            {"from": "s", "to": "r", "bias": True},
                            {"from": "r", "to": "q", "gate": {"unit": "s", "at": "source"}},
                            {"from": "q", "to": "q", "delay": 2, "weight": "diagonal",
                             "gate": {"unit": "r", "complement": True}},
                            {"from": "q", "to": "y"}],
            "outputs": {"y": {"loss": "mse"}}}
    _all_agree_on(spec, seed=5)


def _all_agree_on(spec, seed):
    """Every executor gives the same loss and gradients on the spec, with and without lengths."""
    program = compiler.compile_spec(spec)
    rng = np.random.default_rng(seed)
    for lengths in (False, True):
        inputs, targets, masks, lens = random_batch(program, T, B, rng, lengths)
        assert_all_agree(program, inputs, targets, masks, lens, carried_state(program, rng, B),
                         teacher_for(program, T, B, rng))


def test_hard_sigmoid_and_hard_tanh_units_inside_a_recurrence():
    """The piecewise-linear activations (kinks, exact saturation) inside a recurrent loop."""
    spec = {"timeloom": 1, "name": "hard", "inputs": {"x": {"size": 3}},
            "units": {"g": {"size": 4, "activation": "hard_sigmoid"},
                      "q": {"size": 4, "activation": {"hard_tanh": [-2, 2]}},
                      "y": {"size": 2, "activation": "identity"}},
            "connections": [{"from": "x", "to": "g", "init": {"uniform": [-4, 4]}},
                            {"from": "x", "to": "q", "init": {"uniform": [-4, 4]}},
                            {"from": "q", "to": "q", "delay": 1, "gate": {"unit": "g"}},
                            {"from": "q", "to": "g", "delay": 1}, {"from": "q", "to": "y"}],
            "outputs": {"y": {"loss": "mse"}}}
    _all_agree_on(spec, seed=6)


def test_steps_with_products_beyond_the_loop_bound_run_the_interpreted_scan(monkeypatch):
    """Large in-step products go to NumPy's BLAS through the interpreted scan: same results."""
    from runtime.jit import scan as jit_scan
    program = load_small(ROOT / "specs" / "gru.yaml")
    inputs, targets, masks, _ = random_batch(program, T, B, np.random.default_rng(1))
    nets = networks(program)
    want = nets[2].loss_and_grads(inputs, targets, masks=masks)
    calls = []
    monkeypatch.setattr(jit_scan.CompiledScan, "backward", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(jit_scan, "LOOP_BOUND", 1)
    loss, grads = nets[0].loss_and_grads(inputs, targets, masks=masks)
    assert not calls, "the compiled scan ran"
    close(loss, want[0], "loss")
    for p in grads:
        close(grads[p], want[1][p], f"gradient of {p}")


# -- memory safety: the generated scans under numba's bounds checking ---------------------------------

_BOUNDS_CHILD = textwrap.dedent("""
    import numpy as np, compiler, runtime
    for wide, narrow in ((5, 2), (2, 5)):  # a gated single connection between units of different widths
        spec = {"timeloom": 1, "name": "gated_single", "inputs": {"x": {"size": 3}},
                "units": {"a": {"size": wide, "activation": "tanh"}, "b": {"size": narrow, "activation": "tanh"}},
                "connections": [{"from": "x", "to": "a"}, {"from": "b", "to": "a", "delay": 1},
                                {"from": "a", "to": "b", "gate": {"unit": "a", "at": "source"}}],
                "outputs": {"a": {"loss": "mse"}}}
        program = compiler.compile_spec(spec)
        rng = np.random.default_rng(0)
        x, y = {"x": rng.standard_normal((4, 2, 3))}, {"a": rng.standard_normal((4, 2, wide))}
        compiled, interpreted = (runtime.Network(program, dtype="float64", seed=0, jit=j) for j in (True, False))
        assert compiled.executor.compiled, "no compiled scan"
        (lc, gc), (li, gi) = compiled.loss_and_grads(x, y), interpreted.loss_and_grads(x, y)
        assert abs(lc - li) <= 1e-12 * abs(li)
        for p in gi:
            np.testing.assert_allclose(gc[p], gi[p], rtol=1e-12, atol=1e-12, err_msg=p)
    print("ok")
""")


def test_generated_scans_stay_inside_their_buffers_under_numba_bounds_checking(tmp_path):
    """A connection gated at its source keeps its own work rows; d(source) = dS @ W is as wide as
    the source, not the target (an out-of-bounds write there once corrupted memory at random,
    which the comparisons above only caught now and then). NUMBA_BOUNDSCHECK turns any such
    write into an IndexError; fresh caches so that nothing compiled without the checks is used."""
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               TIMELOOM_CACHE_DIR=str(tmp_path / "timeloom"), PYTHONPATH=str(ROOT))
    env.pop("TIMELOOM_JIT", None)
    r = subprocess.run([sys.executable, "-c", _BOUNDS_CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
