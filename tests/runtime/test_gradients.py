"""BPTT gradients agree with finite differences (the oracle) in float64.

Every example spec (shrunk to a few units so the check is fast) and random small graphs
(units, gates, leaks, delays in both directions, learned initial states) are checked on
sampled coordinates of every trainable parameter, with and without variable lengths.

Finite differences: the fourth-order central stencil
    f'(x) ~ (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / 12h,   h = 1e-4.
Its truncation error is O(h^4 f^(5)) ~ 1e-16 and its round-off about eps_mach*|L|/h ~ 1e-12*|L|,
so it resolves gradients to ~1e-9 relative; the plain central difference with h ~ 1e-6 has a
round-off floor of ~1e-10 absolute and cannot reach 1e-6 relative on gradients below ~1e-4.
Error measure: |a - b| / max(|a| + |b|, FLOOR * max(1, |L|)) < 1e-6. FLOOR = 1e-5: for gradients
smaller than 1e-5*|L| this is an absolute tolerance of 1e-11*|L|, ~10x the stencil's round-off.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import random_batch

import compiler
import runtime

SPECS = Path(__file__).resolve().parents[2] / "specs"
H = 1e-4
FLOOR = 1e-5
TOL = 1e-6
T, B = 6, 3


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


def perturbed_network(program, seed, scale=0.3):
    """A float64 network whose trainable parameters are moved off their (often zero) initial values."""
    net = runtime.Network(program, dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 1000)
    for name in net.trainable:
        net.params[name] = net.params[name] + scale * rng.standard_normal(net.params[name].shape)
    return net


def fd_derivative(loss, p, i):
    old = p.flat[i]
    vals = {}
    for k in (-2, -1, 1, 2):
        p.flat[i] = old + k * H
        vals[k] = loss()
    p.flat[i] = old
    return (vals[-2] - 8 * vals[-1] + 8 * vals[1] - vals[2]) / (12 * H)


def check_fd(net, inputs, targets, lengths, masks, rng, per_param=1):
    """Compare BPTT with finite differences on `per_param` random coordinates of each trainable param."""
    loss, grads = net.loss_and_grads(inputs, targets, lengths=lengths, masks=masks)
    assert set(grads) == {n for n, p in net.program.params.items() if p.trainable}
    floor = FLOOR * max(1.0, abs(loss))

    def f():
        return net.loss(inputs, targets, lengths=lengths, masks=masks)

    bad = []
    for name in sorted(grads):
        p = net.params[name]
        assert grads[name].shape == p.shape, name
        for i in rng.choice(p.size, size=min(per_param, p.size), replace=False):
            fd, an = fd_derivative(f, p, i), float(grads[name].flat[i])
            err = abs(fd - an) / max(abs(fd) + abs(an), floor)
            if err > TOL:
                bad.append(f"{name}[{np.unravel_index(i, p.shape)}]: bptt {an:.10g} fd {fd:.10g} (rel {err:.1e})")
    assert not bad, "gradients differ from finite differences:\n" + "\n".join(bad)


def relu_margin_ok(net, inputs, lengths, delta):
    """No ReLU unit's net input at a valid step lies within `delta` of the kink at 0.

    For a ReLU unit u, a = relu(net). Where a > 0, net = a. Where a == 0, net <= 0; raising
    u's bias by delta raises u's own net input by exactly delta (u is not recurrent), so a
    position that turns positive had net in (-delta, 0]."""
    relus = [u for u, unit in net.program.units.items() if unit.activation.name == "relu"]
    if not relus:
        return True
    base = net.forward(inputs, lengths=lengths, units=relus)
    for u in relus:
        a = base[u]
        if ((a > 0) & (a < delta)).any():
            return False
        bias = net.params[f"{u}.bias"]
        net.params[f"{u}.bias"] = bias + delta
        shifted = net.forward(inputs, lengths=lengths, units=[u])[u]
        net.params[f"{u}.bias"] = bias
        if ((a == 0) & (shifted > 0)).any():
            return False
    return True


# -- the example specs -----------------------------------------------------------------------------

@pytest.mark.parametrize("variable_lengths", [False, True], ids=["full", "lengths"])
def test_bptt_gradients_of_every_example_spec_match_finite_differences(spec_path, variable_lengths):
    program = load_small(spec_path)
    rng = np.random.default_rng(7)
    inputs, targets, masks, lengths = random_batch(program, T, B, rng, variable_lengths)
    # ReLU (tcn) is not differentiable at 0: the stencil moves any net input by at most ~2h*|dnet/dp|
    # (<< 1e-2 here), so pick parameters that keep every valid ReLU net input 1e-2 away from 0.
    for seed in range(50):
        net = perturbed_network(program, seed)
        if relu_margin_ok(net, inputs, lengths, delta=1e-2):
            break
    else:
        pytest.fail("no parameter draw keeps the ReLU net inputs away from 0")
    per_param = 2 if len(net.trainable) <= 8 else 1
    check_fd(net, inputs, targets, lengths, masks, rng, per_param)


def test_fixed_weights_get_no_gradient_and_the_readout_does():
    """The echo-state net trains only its readout; the reservoir's weights are constants."""
    program = load_small(SPECS / "esn.yaml", n=20)
    fixed = {n for n, p in program.params.items() if not p.trainable}
    assert fixed, "the reservoir's weights should be fixed parameters"
    net = perturbed_network(program, 0)
    rng = np.random.default_rng(0)
    inputs, targets, masks, _ = random_batch(program, T, B, rng)
    _, grads = net.loss_and_grads(inputs, targets, masks=masks)
    assert not fixed & set(grads)
    assert set(grads) == set(net.trainable)
    check_fd(net, inputs, targets, None, masks, rng, per_param=3)


# -- random graphs ---------------------------------------------------------------------------------

ACTIVATIONS = ("tanh", "sigmoid", "identity", "softplus")


@st.composite
def random_specs(draw):
    """A random small recurrent graph, valid by construction.

    Units form a forward group (delays >= 0 inside) and a backward group (delays <= 0 inside),
    one group entirely before the other in index order. Inside a group, a connection from a
    lower to a higher index may have delay 0, any other one has a nonzero delay of the group's
    sign; between groups connections go from the first group to the second only, with any delay
    in [-3, 3]. So no cycle mixes signs and every zero-delay edge (connections and gates, whose
    gate unit always has a lower index than the target) goes up in index: no algebraic loop.
    Each unit gets one connection from an input or a lower-index unit, so every unit is reached.
    """
    inputs = {f"x{i}": {"size": draw(st.integers(1, 3))} for i in range(draw(st.integers(1, 2)))}
    groups = [+1] * draw(st.integers(1, 3)) + [-1] * draw(st.integers(0, 2))
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

    def delays(i, j):
        if groups[i] != groups[j]:
            return list(range(-3, 4)) if i < j else []
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
        delay = draw(st.integers(-3, 3)) if src in inputs else draw(st.sampled_from(delays(names.index(src), j)))
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
def test_bptt_gradients_of_random_graphs_match_finite_differences(spec, steps, batch, variable_lengths, seed):
    program = compiler.compile_spec(spec)
    rng = np.random.default_rng(seed)
    net = perturbed_network(program, seed, scale=0.2)
    inputs, targets, masks, lengths = random_batch(program, steps, batch, rng, variable_lengths)
    check_fd(net, inputs, targets, lengths, masks, rng, per_param=1)
