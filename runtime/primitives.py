"""The primitive table: each activation and weight kind with its forward and backward side by side.

Activation backwards are written in terms of the output `a` (all of ours can be), so the
executors keep only outputs. Weight kinds work on arrays of any leading shape (B, n) or
(T, B, n); `grad` sums over all leading axes.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .cuda import is_cupy, kernel


# --- activations: forward(xp, net, act) -> a ; backward(xp, a, da, act) -> dnet -----------------

class Kind(NamedTuple):
    """One activation: the registry entry every list of activation names is derived from (the schema's
    enum, the normalizer, the ONNX maps in interop/; see compiler/registries.py)."""

    forward: Callable
    backward: Callable
    onnx: str | None = None  # the ONNX operator computing exactly f (None: the exporter composes it)
    args: tuple = ()  # the arguments of a parameterised activation ({scaled_sigmoid: [lo, hi]})

def _sigmoid(xp, x, out=None):
    """sigma(x) = (1 + tanh(x/2)) / 2: no overflow, and numpy's SIMD tanh beats exp + reciprocal."""
    out = xp.multiply(x, 0.5, out=out)
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def _softmax(xp, x, out=None):
    out = xp.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    xp.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


# hard_sigmoid(x) = clip(ALPHA x + BETA, 0, 1): ONNX HardSigmoid with its default alpha and beta
HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA = 0.2, 0.5

ACTIVATIONS = {
    "identity": Kind(lambda xp, x, act, out=None: x if out is None else xp.copyto(out, x) or out,
                     lambda xp, a, da, act, out=None: da if out is None else xp.copyto(out, da) or out),
    "tanh": Kind(lambda xp, x, act, out=None: xp.tanh(x, out=out),
                 lambda xp, a, da, act, out=None: _tanh_back(xp, a, da, out), onnx="Tanh"),
    "sigmoid": Kind(lambda xp, x, act, out=None: _sigmoid(xp, x, out),
                    lambda xp, a, da, act, out=None: _sigmoid_back(xp, a, da, out), onnx="Sigmoid"),
    "relu": Kind(lambda xp, x, act, out=None: xp.maximum(x, 0, out=out),
                 lambda xp, a, da, act, out=None: xp.multiply(da, a > 0, out=out), onnx="Relu"),
    "softmax": Kind(lambda xp, x, act, out=None: _softmax(xp, x, out),
                    lambda xp, a, da, act, out=None: xp.multiply(a, da - (da * a).sum(axis=-1, keepdims=True),
                                                                 out=out), onnx="Softmax"),
    "softplus": Kind(lambda xp, x, act, out=None: xp.logaddexp(0, x, out=out),
                     lambda xp, a, da, act, out=None: xp.multiply(da, -xp.expm1(-a), out=out),  # sigma = 1 - e^-a
                     onnx="Softplus"),
    "scaled_sigmoid": Kind(lambda xp, x, act, out=None: _scale(_sigmoid(xp, x, out), act),
                           lambda xp, a, da, act, out=None: xp.multiply(
                               da, (a - act.lo) * (act.hi - a) / (act.hi - act.lo), out=out), args=("lo", "hi")),
    # piecewise linear: exactly 0 / 1 (lo / hi) once saturated, derivative 0 there
    "hard_sigmoid": Kind(lambda xp, x, act, out=None: _hard_sigmoid(xp, x, out),
                         lambda xp, a, da, act, out=None: xp.multiply(
                             da, HARD_SIGMOID_ALPHA * ((a > 0) & (a < 1)), out=out), onnx="HardSigmoid"),
    "hard_tanh": Kind(lambda xp, x, act, out=None: xp.clip(x, act.lo, act.hi, out=out),  # clip(x, lo, hi)
                      lambda xp, a, da, act, out=None: xp.multiply(da, (a > act.lo) & (a < act.hi), out=out),
                      args=("lo", "hi")),
}


def _hard_sigmoid(xp, x, out=None):
    out = xp.multiply(x, HARD_SIGMOID_ALPHA, out=out)
    out += HARD_SIGMOID_BETA
    return xp.clip(out, 0.0, 1.0, out=out)


def _tanh_back(xp, a, da, out=None):
    """da * (1 - a^2), in place in `out` when given."""
    out = xp.multiply(a, a, out=out)
    xp.subtract(1, out, out=out)
    out *= da
    return out


def _sigmoid_back(xp, a, da, out=None):
    """da * a * (1 - a)."""
    out = xp.subtract(1, a, out=out)
    out *= a
    out *= da
    return out


def _scale(s, act):
    s *= act.hi - act.lo
    s += act.lo
    return s


def activate(xp, act, net, out=None):
    if act.name in _FUSED and is_cupy(xp):
        return _FUSED[act.name][0](net, act, out)
    return ACTIVATIONS[act.name][0](xp, net, act, out)


def activate_backward(xp, act, a, da, out=None):
    if act.name in _FUSED and is_cupy(xp):
        return _FUSED[act.name][1](a, da, act, out)
    return ACTIVATIONS[act.name][1](xp, a, da, act, out)


# CuPy: the same functions as single fused kernels (runtime/cuda.py)
_FUSED = {
    "sigmoid": (lambda x, act, out: _run("sigmoid", x, out=out),
                lambda a, da, act, out: _run("sigmoid_back", a, da, out=out)),
    "tanh": (lambda x, act, out: _cupy().tanh(x, out=out),  # already one kernel
             lambda a, da, act, out: _run("tanh_back", a, da, out=out)),
    "scaled_sigmoid": (lambda x, act, out: _run("scaled_sigmoid", x, x.dtype.type(act.lo), x.dtype.type(act.hi),
                                                out=out),
                       lambda a, da, act, out: _run("scaled_sigmoid_back", a, da, a.dtype.type(act.lo),
                                                        a.dtype.type(act.hi), out=out)),
}


def _run(name, *args, out=None):
    k = kernel(name)
    return k(*args) if out is None else k(*args, out)


def _cupy():
    import cupy
    return cupy


# --- weights: apply(xp, W, x) -> y ; back(xp, W, dy) -> dx ; grad(xp, x, dy) -> dW ------------

def _flat(a):
    return a.reshape(-1, a.shape[-1])


WEIGHTS = {
    "full": (lambda xp, W, x: x @ W.T,
             lambda xp, W, dy: dy @ W,
             lambda xp, x, dy: _flat(dy).T @ _flat(x)),
    "diagonal": (lambda xp, w, x: x * w,
                 lambda xp, w, dy: dy * w,
                 lambda xp, x, dy: _flat(dy * x).sum(axis=0)),
    "identity": (lambda xp, W, x: x,
                 lambda xp, W, dy: dy,
                 None),
    "fixed": (lambda xp, F, x: x * F if F.ndim == 0 else x @ F.T,
              lambda xp, F, dy: dy * F if F.ndim == 0 else dy @ F,
              None),
}


def weight_apply(xp, kind, W, x):
    return WEIGHTS[kind][0](xp, W, x)


def weight_back(xp, kind, W, dy):
    return WEIGHTS[kind][1](xp, W, dy)


def weight_grad(xp, kind, x, dy):
    return WEIGHTS[kind][2](xp, x, dy)


# --- gates and leaks ------------------------------------------------------------------------

def gate_value(g, complement: bool):
    """The factor a gate applies: g or (1 - g)."""
    return 1 - g if complement else g


def gate_grad(d_gated_times_other, complement: bool):
    """d loss / d g, given d(loss)/d(product) * (the other factor)."""
    return -d_gated_times_other if complement else d_gated_times_other


def leak_forward(alpha, prev, a):
    """out = alpha * prev + (1 - alpha) * a."""
    if type(a).__module__.startswith("cupy"):
        return kernel("leak")(alpha, prev, a)
    return alpha * prev + (1 - alpha) * a


def leak_backward(alpha, prev, a, dout):
    """-> (d prev, d a, d alpha summed over leading axes)."""
    dalpha = (dout * (prev - a)).reshape(-1, dout.shape[-1]).sum(axis=0)
    return alpha * dout, (1 - alpha) * dout, dalpha
