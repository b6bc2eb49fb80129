"""Turn the short forms of the spec language into normalized records (Init dicts, Activation, Gate)."""
from __future__ import annotations

from .model import Activation, Gate, Leak



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
    """A unit's `activation` -> Activation; the names come from the registry (runtime.primitives.ACTIVATIONS)."""
    from .registries import activations

    known = activations()
    if isinstance(value, dict):
        (name, args), = value.items()
        if name not in known or not known[name].args:
            takes = ", ".join(n for n, a in known.items() if a.args)
            raise NormalizeError(f"unknown activation '{name}'; only {takes} take{'s' if ',' not in takes else ''} "
                                 "arguments")
        lo, hi = args
        if not hi > lo:
            raise NormalizeError(f"{name} needs lo < hi, got [{lo}, {hi}]")
        return Activation(name, float(lo), float(hi))
    if value not in known or known[value].args:
        choices = [n if not a.args else f"{{{n}: [{', '.join(a.args)}]}}" for n, a in known.items()]
        raise NormalizeError(f"unknown activation '{value}'; use one of {', '.join(choices)}")
    return Activation(value)


def bias(value, default_init: dict | None = None, size: int | None = None) -> tuple[dict | None, bool]:
    """A unit's or connection's `bias` entry -> (Init or None, trainable). A `value` list gives one
    start value per unit: with `size` (the unit's), its length is checked."""
    if value is None or value is True:
        return (default_init or {"kind": "zeros"}), True
    if value is False:
        return None, False
    if isinstance(value, (int, float)):
        return {"kind": "constant", "value": float(value)}, True
    trainable = bool(value.get("trainable", True))
    if "value" in value:
        start = value["value"]
        if isinstance(start, list) and isinstance(size, int) and len(start) != size:
            raise NormalizeError(f"bias value lists one value per unit: expected {size} values, got {len(start)}")
        return {"kind": "constant", "value": start}, trainable
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
