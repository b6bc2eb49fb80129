"""The fast executor agrees with the reference interpreter, and variable lengths and chunking
behave as docs/ARCHITECTURE.md "Runtime semantics" says.

Oracles: the reference interpreter (walks the unrolled graph node by node), the same sequence
run in one pass vs in chunks, and each sample of a padded batch run alone at its own length.
Specs are shrunk to a few units per layer so every check runs in milliseconds.
"""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import random_batch

import compiler
import runtime

T, B = 7, 3
ATOL = RTOL = 1e-10


# -- helpers ---------------------------------------------------------------------------------------

def shrink(spec, n=3):
    """The spec with every `size` (inputs, units, blocks, template params) capped at n."""
    if isinstance(spec, dict):
        return {k: min(v, n) if k == "size" and isinstance(v, int) else shrink(v, n) for k, v in spec.items()}
    if isinstance(spec, list):
        return [shrink(v, n) for v in spec]
    return spec


def load_small(path, n=3):
    return compiler.compile_spec(shrink(yaml.safe_load(path.read_text()), n))


def network(program, executor="fast", seed=0, scale=0.3):
    """A float64 network with trainable parameters moved off their (often zero) initial values."""
    net = runtime.Network(program, dtype="float64", executor=executor, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    for name in net.trainable:
        net.params[name] = net.params[name] + scale * rng.standard_normal(net.params[name].shape)
    return net


def forward_only(program):
    return all(c.delay >= 0 for c in program.connections) and all(c.direction >= 0 for c in program.components)


def assert_close(a, b, what, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(a, b, atol=atol, rtol=rtol, err_msg=what)


def assert_executors_agree(program, inputs, targets, masks, lengths):
    fast, ref = network(program, "fast"), network(program, "reference")
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
    units = list(program.units)
    whole = net.forward(inputs, units=units)
    first, state = net.forward({k: v[:split] for k, v in inputs.items()}, units=units, return_state=True)
    second = net.forward({k: v[split:] for k, v in inputs.items()}, units=units, state=state)
    for u in units:
        assert_close(np.concatenate([first[u], second[u]]), whole[u], f"unit {u} over two chunks")


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

ACTIVATIONS = ("tanh", "sigmoid", "identity", "softplus")


@st.composite
def random_specs(draw, backward=True):
    """A random small recurrent graph, valid by construction (the same generator as test_gradients).

    Units form a forward group (delays >= 0 inside) and a backward group (delays <= 0 inside),
    one group entirely before the other in index order. Inside a group, a connection from a
    lower to a higher index may have delay 0, any other one has a nonzero delay of the group's
    sign; between groups connections go from the first group to the second only, with any delay
    in [-3, 3]. So no cycle mixes signs and every zero-delay edge (connections and gates, whose
    gate unit always has a lower index than the target) goes up in index: no algebraic loop.
    Each unit gets one connection from an input or a lower-index unit, so every unit is reached.
    `backward=False`: no backward group and no negative delay at all.
    """
    inputs = {f"x{i}": {"size": draw(st.integers(1, 3))} for i in range(draw(st.integers(1, 2)))}
    groups = [+1] * draw(st.integers(1, 3)) + [-1] * draw(st.integers(0, 2 if backward else 0))
    if draw(st.booleans()):
        groups.reverse()
    names = [f"{'f' if g > 0 else 'b'}{i}" for i, g in enumerate(groups)]
    units = {}
    for name in names:
        size = draw(st.integers(1, 4))
        unit = {"size": size, "activation": draw(st.sampled_from(ACTIVATIONS))}
        if draw(st.integers(0, 3)) == 0:
            unit["bias"] = False
        if draw(st.booleans()):
            unit["initial"] = "learned"
        if draw(st.integers(0, 2)) == 0:
            alpha = draw(st.one_of(st.floats(0.1, 0.9),
                                   st.lists(st.floats(0.1, 0.9), min_size=size, max_size=size)))
            unit["leak"] = {"alpha": alpha, "trainable": draw(st.booleans())}
        units[name] = unit
    size = {**{k: v["size"] for k, v in inputs.items()}, **{k: v["size"] for k, v in units.items()}}
    lowest = -3 if backward else 0

    def delays(i, j):
        if groups[i] != groups[j]:
            return list(range(lowest, 4)) if i < j else []
        return [groups[i] * d for d in (range(4) if i < j else range(1, 4))]

    def connection(src, j, delay):
        tgt = names[j]
        c = {"from": src, "to": tgt, "delay": delay}
        kinds = ["full"] + (["diagonal", "identity", {"fixed": 0.5}] if size[src] == size[tgt] else [])
        c["weight"] = draw(st.sampled_from(kinds))
        if draw(st.integers(0, 3)) == 0:
            c["bias"] = True
        if draw(st.integers(0, 5)) == 0:
            c["trainable"] = False
        kind = draw(st.sampled_from(["none", "none", "target", "source"]))
        side = size[tgt] if kind == "target" else size[src]
        gates = [names[k] for k in range(j) if size[names[k]] == side]
        if kind != "none" and gates:
            c["gate"] = {"unit": draw(st.sampled_from(gates)), "complement": draw(st.booleans()), "at": kind}
        return c

    conns = []
    for j in range(len(names)):
        src = draw(st.sampled_from(list(inputs) + names[:j]))
        delay = draw(st.integers(lowest, 3)) if src in inputs else draw(st.sampled_from(delays(names.index(src), j)))
        conns.append(connection(src, j, delay))
    pairs = [(i, j) for i in range(len(names)) for j in range(len(names)) if delays(i, j)]
    for _ in range(draw(st.integers(0, 4))):
        if pairs:
            i, j = draw(st.sampled_from(pairs))
            conns.append(connection(names[i], j, draw(st.sampled_from(delays(i, j)))))
    outputs = {}
    for name in draw(st.permutations(names))[:draw(st.integers(1, min(2, len(names))))]:
        act = units[name]["activation"] if "leak" not in units[name] else "leaky"  # fused losses need f(net)
        losses = ["mse"] + (["bce"] if act in ("sigmoid", "identity") else []) + \
                 (["cross_entropy"] if act == "identity" else [])
        outputs[name] = {"loss": draw(st.sampled_from(losses)), "at": draw(st.sampled_from(["all", "last", "mask"]))}
    return {"timeloom": 1, "name": "random", "inputs": inputs, "units": units,
            "connections": conns, "outputs": outputs}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), steps=st.integers(1, 6), batch=st.integers(1, 3),
       variable_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_fast_executor_matches_reference_interpreter_on_random_graphs(spec, steps, batch, variable_lengths, seed):
    program = compiler.compile_spec(spec)
    inputs, targets, masks, lengths = random_batch(program, steps, batch, np.random.default_rng(seed),
                                                   variable_lengths)
    assert_executors_agree(program, inputs, targets, masks, lengths)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(backward=False), steps=st.integers(2, 6), data=st.data(), seed=st.integers(0, 2**16))
def test_chunked_forward_with_state_equals_one_pass_on_random_forward_graphs(spec, steps, data, seed):
    program = compiler.compile_spec(spec)
    split = data.draw(st.integers(1, steps - 1), label="split")
    net = network(program, seed=seed)
    inputs, _, _, _ = random_batch(program, steps, 2, np.random.default_rng(seed))
    units = list(program.units)
    whole = net.forward(inputs, units=units)
    first, state = net.forward({k: v[:split] for k, v in inputs.items()}, units=units, return_state=True)
    second = net.forward({k: v[split:] for k, v in inputs.items()}, units=units, state=state)
    for u in units:
        assert_close(np.concatenate([first[u], second[u]]), whole[u], f"unit {u} over two chunks")
