"""The fast executor agrees with the reference interpreter, and variable lengths and chunking
behave as docs/ARCHITECTURE.md "Runtime semantics" says.

Oracles: the reference interpreter (walks the unrolled graph node by node), the same sequence
run in one pass vs in chunks, and each sample of a padded batch run alone at its own length.
Specs are shrunk to a few units per layer so every check runs in milliseconds.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import load_small, random_batch, random_specs

import compiler
import runtime

T, B = 7, 3
ATOL = RTOL = 1e-10


# -- helpers ---------------------------------------------------------------------------------------

def network(program, executor="fast", seed=0, scale=0.3, jit=None):
    """A float64 network with trainable parameters moved off their (often zero) initial values.

    jit=None: compiled scans where numba is there. The random graphs run the interpreted scan
    (one compile per graph would cost minutes); tests/runtime/test_compiled_scan.py holds the
    compiled scans to it and to the reference interpreter."""
    net = runtime.Network(program, dtype="float64", executor=executor, seed=seed, jit=jit)
    rng = np.random.default_rng(seed + 1000)
    for name in net.trainable:
        net.params[name] = net.params[name] + scale * rng.standard_normal(net.params[name].shape)
    return net


def forward_only(program):
    return all(c.delay >= 0 for c in program.connections) and all(c.direction >= 0 for c in program.components)


def assert_close(a, b, what, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=what)


def assert_two_chunks_equal_one_pass(net, program, inputs, split):
    """Every unit's trajectory over [0, split) then [split, T) with the state passed on
    equals the one over [0, T)."""
    units = list(program.units)
    whole = net.forward(inputs, units=units)
    first, state = net.forward({k: v[:split] for k, v in inputs.items()}, units=units, return_state=True)
    second = net.forward({k: v[split:] for k, v in inputs.items()}, units=units, state=state)
    for u in units:
        assert_close(np.concatenate([first[u], second[u]]), whole[u], f"unit {u} over two chunks")


def assert_executors_agree(program, inputs, targets, masks, lengths, jit=None):
    fast, ref = network(program, "fast", jit=jit), network(program, "reference")
    for name in fast.params:
        np.testing.assert_array_equal(fast.params[name], ref.params[name])
    units = list(program.units)
    out_f = fast.forward(inputs, lengths=lengths, units=units)
    out_r = ref.forward(inputs, lengths=lengths, units=units)
    for u in units:
        assert_close(out_f[u], out_r[u], f"forward output of unit {u}")
    loss_f, grads_f = fast.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    loss_r, grads_r = ref.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    assert_close(loss_f, loss_r, "loss")
    assert set(grads_f) == set(grads_r)
    for name in grads_f:
        assert_close(grads_f[name], grads_r[name], f"gradient of {name}")


# -- the example specs -----------------------------------------------------------------------------

@pytest.mark.parametrize("variable_lengths", [False, True], ids=["full", "lengths"])
def test_fast_executor_matches_reference_interpreter_on_every_example_spec(spec_path, variable_lengths):
    program = load_small(spec_path)
    inputs, targets, masks, lengths = random_batch(program, T, B, np.random.default_rng(3), variable_lengths)
    assert_executors_agree(program, inputs, targets, masks, lengths)


@pytest.mark.parametrize("split", [1, 3])
def test_forward_in_two_chunks_passing_state_equals_one_pass(spec_path, split):
    program = load_small(spec_path)
    if not forward_only(program):
        pytest.skip("reads the future: a chunk cannot be run before the next one")
    net = network(program)
    inputs, _, _, _ = random_batch(program, T, B, np.random.default_rng(4))
    assert_two_chunks_equal_one_pass(net, program, inputs, split)


def test_returned_state_holds_each_samples_last_valid_steps(spec_path):
    program = load_small(spec_path)
    if not forward_only(program):
        pytest.skip("reads the future: no state to carry forward")
    net = network(program)
    inputs, _, _, lengths = random_batch(program, T, B, np.random.default_rng(5), lengths=True)
    lengths[1] = 1
    units = list(program.units)
    out, state = net.forward(inputs, lengths=lengths, units=units, return_state=True)
    out.update(inputs)  # a delayed input (tcn's taps) is carried over too
    for u, s in state.items():
        k = s.shape[0]
        for b, n in enumerate(lengths):
            for j in range(k):
                tau = n - k + j  # state[j] holds time n - k + j of this sample
                want = out[u][tau, b] if tau >= 0 else np.zeros(s.shape[-1]) + net.params.get(f"{u}.h0", 0)
                assert_close(s[j, b], want, f"state of {u}, sample {b}, slot {j}")


def test_training_returns_the_same_state_as_forward(spec_path):
    program = load_small(spec_path)
    if not forward_only(program):
        pytest.skip("reads the future: no state to carry forward")
    net = network(program)
    inputs, targets, masks, lengths = random_batch(program, T, B, np.random.default_rng(10), lengths=True)
    _, state = net.forward(inputs, lengths=lengths, return_state=True)
    *_, trained = net.loss_and_grads(inputs, targets, lengths=lengths, masks=masks, return_state=True)
    assert set(trained) == set(state)
    for u in state:
        assert_close(trained[u], state[u], f"state of {u}")


def test_outputs_at_padded_steps_are_zero(spec_path):
    program = load_small(spec_path)
    net = network(program)
    inputs, _, _, lengths = random_batch(program, T, B, np.random.default_rng(6), lengths=True)
    lengths[-1] = 2
    out = net.forward(inputs, lengths=lengths, units=list(program.units))
    for u, y in out.items():
        for b, n in enumerate(lengths):
            assert not np.any(y[n:, b]), f"unit {u} is nonzero after the end of sample {b}"
            assert np.all(np.isfinite(y[:n, b]))


def garbage_after(a, lengths, rng, axis_t=0):
    """`a` with every padded step (t >= length) replaced by large random values."""
    a = np.array(a, dtype=float, copy=True)
    for b, n in enumerate(lengths):
        a[n:, b] = 100 * rng.standard_normal(a[n:, b].shape) if a.ndim == 3 else rng.integers(0, 2, a[n:, b].shape)
    return a


def test_padded_steps_do_not_change_loss_or_gradients(spec_path):
    program = load_small(spec_path)
    rng = np.random.default_rng(8)
    inputs, targets, masks, lengths = random_batch(program, T, B, rng, lengths=True)
    lengths[-1] = 2
    net = network(program)
    loss, grads = net.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    noisy_inputs = {k: garbage_after(v, lengths, rng) for k, v in inputs.items()}
    noisy_targets = {}
    for name, tgt in targets.items():
        if program.outputs[name].at == "last":
            noisy_targets[name] = tgt
        elif tgt.ndim == 2:  # class indices
            noisy = tgt.copy()
            for b, n in enumerate(lengths):
                noisy[n:, b] = rng.integers(0, program.units[name].size, T - n)
            noisy_targets[name] = noisy
        else:
            noisy_targets[name] = garbage_after(tgt, lengths, rng)
    noisy_masks = {k: garbage_after(v, lengths, rng) for k, v in masks.items()}
    loss2, grads2 = net.loss_and_grads(noisy_inputs, noisy_targets, lengths=lengths, masks=noisy_masks)
    assert_close(loss2, loss, "loss with garbage after the lengths", atol=1e-12, rtol=1e-12)
    for name in grads:
        assert_close(grads2[name], grads[name], f"gradient of {name} with garbage after the lengths",
                     atol=1e-12, rtol=1e-12)


def _count(program, out_name, lengths, masks, b):
    """How many positions sample b contributes to the mean of output `out_name`."""
    at = program.outputs[out_name].at
    if at == "last":
        return 1.0
    if at == "mask":
        return float(masks[out_name][:lengths[b], b].sum())
    return float(lengths[b])


@pytest.mark.parametrize("executor", ["fast", "reference"])
def test_a_padded_batch_equals_each_sample_run_alone_at_its_length(spec_path, executor):
    """Outputs per sample equal a batch of one truncated at its length; a bidirectional net's
    backward half must start at each sample's last valid step. With one output, the loss is the
    mean over all valid positions, so it and its gradients are the count-weighted sample means."""
    program = load_small(spec_path)
    rng = np.random.default_rng(9)
    inputs, targets, masks, lengths = random_batch(program, T, B, rng, lengths=True)
    lengths[:] = [T, 2, 5][:B]
    net = network(program, executor)
    out = net.forward(inputs, lengths=lengths, units=list(program.units))
    for b, n in enumerate(lengths):
        single = net.forward({k: v[:n, b:b + 1] for k, v in inputs.items()}, units=list(program.units))
        for u in program.units:
            assert_close(out[u][:n, b], single[u][:, 0], f"unit {u} of sample {b} (length {n})")
    if len(program.outputs) != 1:
        return  # several outputs: each has its own mean, the total is no single weighted sum
    (name,) = program.outputs
    weights, losses, grads = [], [], []
    for b, n in enumerate(lengths):
        alone = {k: v[:n, b:b + 1] for k, v in inputs.items()}
        tgt = targets[name][b:b + 1] if program.outputs[name].at == "last" else targets[name][:n, b:b + 1]
        m = {k: v[:n, b:b + 1] for k, v in masks.items()}
        loss_b, grads_b = net.loss_and_grads(alone, {name: tgt}, masks=m)
        weights.append(_count(program, name, lengths, masks, b))
        losses.append(loss_b)
        grads.append(grads_b)
    w = np.asarray(weights) / sum(weights)
    loss, g = net.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    assert_close(loss, float(np.dot(w, losses)), "loss vs the weighted per-sample losses")
    for p in g:
        assert_close(g[p], sum(wb * gb[p] for wb, gb in zip(w, grads)), f"gradient of {p} vs per-sample")


# -- random graphs ---------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), steps=st.integers(1, 6), batch=st.integers(1, 3),
       variable_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_fast_executor_matches_reference_interpreter_on_random_graphs(spec, steps, batch, variable_lengths, seed):
    program = compiler.compile_spec(spec)
    inputs, targets, masks, lengths = random_batch(program, steps, batch, np.random.default_rng(seed),
                                                   variable_lengths)
    assert_executors_agree(program, inputs, targets, masks, lengths, jit=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(backward=False), steps=st.integers(2, 6), data=st.data(), seed=st.integers(0, 2**16))
def test_chunked_forward_with_state_equals_one_pass_on_random_forward_graphs(spec, steps, data, seed):
    program = compiler.compile_spec(spec)
    split = data.draw(st.integers(1, steps - 1), label="split")
    net = network(program, seed=seed, jit=False)
    inputs, _, _, _ = random_batch(program, steps, 2, np.random.default_rng(seed))
    assert_two_chunks_equal_one_pass(net, program, inputs, split)
