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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import load_small, random_batch, random_specs

import compiler
import runtime
from runtime import jit

SPECS = Path(__file__).resolve().parents[2] / "specs"
H = 1e-4
FLOOR = 1e-5
TOL = 1e-6
T, B = 6, 3


# -- helpers ---------------------------------------------------------------------------------------

def perturbed_network(program, seed, scale=0.3, jit=None):
    """A float64 network whose trainable parameters are moved off their (often zero) initial values.

    jit=None: as TIMELOOM_JIT says (the tests' default: interpreted); the example specs are
    checked on the compiled scan too where numba is there."""
    net = runtime.Network(program, dtype="float64", seed=seed, jit=jit)
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

COMPILED = [False] + ([True] if jit.numba_available() else [])


@pytest.mark.parametrize("compiled", COMPILED, ids=["interpreted", "compiled"][:len(COMPILED)])
@pytest.mark.parametrize("variable_lengths", [False, True], ids=["full", "lengths"])
def test_bptt_gradients_of_every_example_spec_match_finite_differences(spec_path, variable_lengths, compiled):
    program = load_small(spec_path)
    rng = np.random.default_rng(7)
    inputs, targets, masks, lengths = random_batch(program, T, B, rng, variable_lengths)
    # ReLU (tcn) is not differentiable at 0: the stencil moves any net input by at most ~2h*|dnet/dp|
    # (<< 1e-2 here), so pick parameters that keep every valid ReLU net input 1e-2 away from 0.
    for seed in range(50):
        net = perturbed_network(program, seed, jit=compiled)
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



@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(), steps=st.integers(1, 6), batch=st.integers(1, 3),
       variable_lengths=st.booleans(), seed=st.integers(0, 2**16))
def test_bptt_gradients_of_random_graphs_match_finite_differences(spec, steps, batch, variable_lengths, seed):
    program = compiler.compile_spec(spec)
    rng = np.random.default_rng(seed)
    net = perturbed_network(program, seed, scale=0.2, jit=False)  # one compile per graph would cost minutes
    inputs, targets, masks, lengths = random_batch(program, steps, batch, rng, variable_lengths)
    check_fd(net, inputs, targets, lengths, masks, rng, per_param=1)


# -- the piecewise-linear activations ---------------------------------------------------------------

@pytest.mark.parametrize("act", [{"scaled_sigmoid": [-2, 2]}, "hard_sigmoid", {"hard_tanh": [-2, 2]},
                                 {"hard_tanh": [-1, 3]}], ids=str)
def test_activation_backward_matches_finite_differences_of_its_forward(act):
    """Each activation's backward (written in terms of its output) against the stencil of its forward,
    at points away from the kinks of the piecewise-linear ones (hard_sigmoid: net +-2.5; hard_tanh:
    lo, hi), in both the linear part and saturation (derivative exactly 0 there)."""
    from compiler.normalize import activation
    from runtime.primitives import activate, activate_backward
    a = activation(act)
    x = np.array([-6.0, -3.0, -2.6, -1.7, -0.4, 0.0, 0.3, 1.1, 1.9, 2.4, 2.7, 4.0, 7.5])
    da = np.linspace(0.5, 1.5, x.size)
    an = activate_backward(np, a, activate(np, a, x.copy()), da)
    fd = np.array([(lambda f: (f(-2) - 8 * f(-1) + 8 * f(1) - f(2)) / (12 * H))(
        lambda k, i=i: activate(np, a, x[i:i + 1] + k * H)[0]) for i in range(x.size)]) * da
    np.testing.assert_allclose(an, fd, rtol=1e-8, atol=1e-12)
    if a.name != "scaled_sigmoid":
        assert (an[[0, -1]] == 0).all()  # saturated: exactly flat


def test_bptt_gradients_through_hard_gates_and_a_hard_cell_input_match_finite_differences():
    """An LSTM with hard_sigmoid gates and a {hard_tanh: [-2, 2]} cell input (specs/anbncn_dekf.yaml)."""
    spec = {"timeloom": 1, "name": "hard", "inputs": {"x": {"size": 3}},
            "blocks": {"mem": {"type": "lstm", "size": 3, "forget_gate": False, "peepholes": False,
                               "gate_activation": "hard_sigmoid", "cell_activation": {"hard_tanh": [-2, 2]}}},
            "units": {"y": {"size": 2, "activation": "sigmoid"}},
            "connections": [{"from": "x", "to": "mem"}, {"from": "mem", "to": "y"}],
            "outputs": {"y": {"loss": "bce"}}}
    program = compiler.compile_spec(spec)
    for compiled in COMPILED:
        rng = np.random.default_rng(3)
        net = perturbed_network(program, 3, scale=0.5, jit=compiled)
        inputs, targets, masks, lengths = random_batch(program, T, B, rng, True)
        check_fd(net, inputs, targets, lengths, masks, rng, per_param=3)
