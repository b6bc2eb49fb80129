"""Turn the short forms of the spec language into normalized records (Init dicts, Activation, Gate)."""
from __future__ import annotations

from .model import Activation, Gate, Leak

ACTIVATIONS = ("identity", "tanh", "sigmoid", "relu", "softmax", "softplus", "scaled_sigmoid")


class NormalizeError(ValueError):
    """A value has the right type but an impossible content; the message names the fix."""


def init(value, default: dict | None = None) -> dict | None:
    """An `init` entry -> {"kind": ...}."""
    if value is None:
        return default
    if isinstance(value, str):
        if value in ("glorot", "orthogonal", "zeros"):
            return {"kind": value}
        if value == "normal":
            return {"kind": "normal", "std": 0.1}
        if value == "uniform":
            return {"kind": "uniform", "low": -0.1, "high": 0.1}
        raise NormalizeError(f"unknown init '{value}'; use glorot, orthogonal, zeros, "
                             "{normal: std}, {uniform: [lo, hi]} or {sparse: density, spectral_radius: r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"kind": "constant", "value": float(value)}
    if isinstance(value, dict):
        if "sparse" in value:
            return {"kind": "sparse", "density": float(value["sparse"]),
                    "spectral_radius": float(value.get("spectral_radius", 0.9))}
        if "normal" in value:
            return {"kind": "normal", "std": float(value["normal"])}
        if "uniform" in value:
            lo, hi = _range(value["uniform"])
            return {"kind": "uniform", "low": lo, "high": hi}
        if "constant" in value:
            return {"kind": "constant", "value": value["constant"]}
    raise NormalizeError(f"cannot read init {value!r}")


def _range(v):
    if isinstance(v, (int, float)):
        return -float(v), float(v)
    lo, hi = v
    if not abs(float(hi) - float(lo)) < float("inf"):  # numpy cannot draw from a wider range
        raise NormalizeError(f"init uniform [{lo}, {hi}]: hi - lo overflows; use a range narrower than 1e308")
    return float(lo), float(hi)


def activation(value) -> Activation:
    if isinstance(value, dict):
        (name, args), = value.items()
        if name != "scaled_sigmoid":
            raise NormalizeError(f"unknown activation '{name}'; only scaled_sigmoid takes arguments")
        lo, hi = args
        if not hi > lo:
            raise NormalizeError(f"scaled_sigmoid needs lo < hi, got [{lo}, {hi}]")
        return Activation("scaled_sigmoid", float(lo), float(hi))
    if value not in ACTIVATIONS or value == "scaled_sigmoid":
        raise NormalizeError(f"unknown activation '{value}'; use one of "
                             "identity, tanh, sigmoid, relu, softmax, softplus, {scaled_sigmoid: [lo, hi]}")
    return Activation(value)


def bias(value, default_init: dict | None = None) -> tuple[dict | None, bool]:
    """A unit's or connection's `bias` entry -> (Init or None, trainable)."""
    if value is None or value is True:
        return (default_init or {"kind": "zeros"}), True
    if value is False:
        return None, False
    if isinstance(value, (int, float)):
        return {"kind": "constant", "value": float(value)}, True
    trainable = bool(value.get("trainable", True))
    if "value" in value:
        return {"kind": "constant", "value": value["value"]}, trainable
    return init(value.get("init"), {"kind": "zeros"}), trainable


def gate(value) -> Gate | None:
    if value is None:
        return None
    if isinstance(value, str):
        return Gate(value)
    return Gate(value["unit"], bool(value.get("complement", False)), value.get("at", "target"))


def leak(value, size: int) -> Leak | None:
    if value is None or value is False:
        return None
    if isinstance(value, (int, float)):
        value = {"alpha": value}
    alpha = value.get("alpha", 0.9)
    if isinstance(alpha, list):
        if len(alpha) != size:
            raise NormalizeError(f"leak alpha lists one value per unit: expected {size} values, got {len(alpha)}")
        a = {"kind": "constant", "value": [float(x) for x in alpha]}
    elif isinstance(alpha, dict):
        a = init(alpha)
    else:
        a = {"kind": "constant", "value": float(alpha)}
    return Leak(a, bool(value.get("trainable", False)))
