"""Built-in templates, each written in the spec language itself.

A builder takes the block's options and returns a template body: `units`, `connections`,
`blocks` (nested), `inputs` (ports that an incoming connection feeds) and `outputs`
(ports an outgoing connection reads). `compiler.templates` expands bodies to primitives,
so built-in and user templates go through one mechanism.

An input port is a name, or a dict {unit, taps, defaults, residual}: `taps` are extra
delays added to an incoming connection (a causal convolution), `defaults` fill keys the
incoming connection leaves out (a reservoir's fixed input weights), `residual: true`
makes the port an identity (or 1x1 when sizes differ) skip connection.
"""
from __future__ import annotations

from . import budget

GERS_INPUT_BIAS = -1.0  # Gers et al. 2000: the input gate starts closed ...
GERS_FORGET_BIAS = 1.0  # ... and the forget gate open (remember by default)
GERS_CELL_INPUT = {"scaled_sigmoid": [-2, 2]}  # cell input squashed to [-2, 2]


def rnn(o):
    """Elman: h_t = f(W x_t + U h_{t-1} + b)."""
    return {
        "units": {"h": {"size": o["size"], "activation": o.get("activation", "tanh"),
                        "initial": o.get("initial", "zeros")}},
        "connections": [{"from": "h", "to": "h", "delay": 1, **_opt(o, "init")}],
        "inputs": ["h"], "outputs": ["h"],
    }


def lstm(o):
    """LSTM memory block (Hochreiter & Schmidhuber 1997; Gers et al. 2000; peepholes, coupled gates).

    i, f, o = sigma(W x_t + U h_{t-1} [+ peephole c]); g = cell input; c_t = f*c_{t-1} + i*g;
    h_t = o * tanh(c_t). truncated: the recurrent connections into the gates and cell input and
    the peepholes carry `gradient: stop` (error flows back in time only through c -> c).
    """
    size, gers = o["size"], o.get("gers2000", False)
    gate_act = o.get("gate_activation", "sigmoid")
    forget, coupled = o.get("forget_gate", True), o.get("coupled", False)
    initial = o.get("initial", "zeros")
    gates = ([] if coupled else ["i"]) + (["f"] if forget else []) + ["o"]
    units = {name: {"size": size, "activation": gate_act} for name in gates}
    if gers and "i" in units:
        units["i"]["bias"] = {"value": GERS_INPUT_BIAS}
    if gers and "f" in units:
        units["f"]["bias"] = {"value": GERS_FORGET_BIAS}
    if "forget_bias" in o and not forget:
        raise ValueError("forget_bias needs forget_gate: true (without a forget gate there is nothing to bias)")
    if "input_bias" in o and coupled:
        raise ValueError("input_bias needs an input gate (coupled: true has none; set forget_bias instead)")
    for key, gate in (("input_bias", "i"), ("forget_bias", "f"), ("output_bias", "o")):
        if key in o:  # one number for every cell, or a list with one start value per cell (per block)
            value = o[key]
            if isinstance(value, list) and isinstance(size, int) and len(value) != size:
                raise ValueError(f"{key}: a list of {len(value)} values for {size} cells (give one per cell, "
                                 f"or one number for all)")
            units[gate]["bias"] = {"value": value}
    units["g"] = {"size": size, "activation": GERS_CELL_INPUT if gers else o.get("cell_activation", "tanh")}
    units["c"] = {"size": size, "activation": "identity", "bias": False, "initial": initial}
    units["ct"] = {"size": size, "activation": o.get("output_activation", "tanh"), "bias": False}
    units["h"] = {"size": size, "activation": "identity", "bias": False, "initial": initial}
    ports = [g for g in ("i", "f", "o") if g in units] + ["g"]
    conns = [{"from": "h", "to": p, "delay": 1, **_opt(o, "init")} for p in ports]
    keep = {"from": "c", "to": "c", "delay": 1, "weight": "identity"}
    if forget:
        keep["gate"] = "f"
    write = {"from": "g", "to": "c", "weight": "identity",
             "gate": {"unit": "f", "complement": True} if coupled else "i"}
    conns += [keep, write,
              {"from": "c", "to": "ct", "weight": "identity"},
              {"from": "ct", "to": "h", "weight": "identity", "gate": "o"}]
    if o.get("peepholes", False):
        conns += [{"from": "c", "to": g, "delay": 1, "weight": "diagonal"} for g in ("i", "f") if g in units]
        conns.append({"from": "c", "to": "o", "weight": "diagonal"})
    if coupled and not forget:
        raise ValueError("a coupled input/forget gate needs forget_gate: true")
    if o.get("truncated", False):
        # the original LSTM's truncated gradient (Hochreiter & Schmidhuber 1997; Gers et al. 2000,
        # 2002): no error flows back through h_{t-1} -> gates/cell input nor through the peepholes;
        # earlier steps are reached only through the constant error carousel c -> c
        for c in conns:
            if c["from"] == "h" and c["to"] in ports or c["from"] == "c" and c.get("weight") == "diagonal":
                c["gradient"] = "stop"
    return {"units": units, "connections": conns, "inputs": ports, "outputs": ["h"]}


def gru(o):
    """GRU (Cho et al. 2014): r, z gates; n = tanh(W x + r * (U h + b)) (linear_before_reset) or
    tanh(W x + U (r * h)); h_t = (1 - z) * n + z * h_{t-1}."""
    size, gate_act = o["size"], o.get("gate_activation", "sigmoid")
    initial = o.get("initial", "zeros")
    units = {"r": {"size": size, "activation": gate_act},
             "z": {"size": size, "activation": gate_act},
             "n": {"size": size, "activation": o.get("activation", "tanh")},
             "h": {"size": size, "activation": "identity", "bias": False, "initial": initial}}
    init = _opt(o, "init")
    if o.get("linear_before_reset", True):
        reset = {"from": "h", "to": "n", "delay": 1, "bias": True, "gate": "r", **init}
    else:
        reset = {"from": "h", "to": "n", "delay": 1, "gate": {"unit": "r", "at": "source"}, **init}
    conns = [{"from": "h", "to": "r", "delay": 1, **init},
             {"from": "h", "to": "z", "delay": 1, **init},
             reset,
             {"from": "n", "to": "h", "weight": "identity", "gate": {"unit": "z", "complement": True}},
             {"from": "h", "to": "h", "delay": 1, "weight": "identity", "gate": "z"}]
    return {"units": units, "connections": conns, "inputs": ["r", "z", "n"], "outputs": ["h"]}


def leaky(o):
    """Leaky units with per-unit time constants: h_t = a * h_{t-1} + (1 - a) * f(W x + U h_{t-1} + b)."""
    leak = {"alpha": o.get("alpha", 0.9), "trainable": o.get("trainable_alpha", False)}
    return {
        "units": {"h": {"size": o["size"], "activation": o.get("activation", "tanh"), "leak": leak,
                        "initial": o.get("initial", "zeros")}},
        "connections": [{"from": "h", "to": "h", "delay": 1, **_opt(o, "init")}],
        "inputs": ["h"], "outputs": ["h"],
    }


def reservoir(o):
    """Echo-state reservoir: fixed sparse recurrent weights scaled to a spectral radius, fixed
    random input weights, optional leak; only the readout is trained."""
    unit = {"size": o["size"], "activation": o.get("activation", "tanh"), "bias": o.get("bias", False)}
    if o.get("alpha", 0):
        unit["leak"] = {"alpha": o["alpha"]}
    scale = o.get("input_scaling", 1.0)
    port = {"unit": "h", "defaults": {"trainable": False, "init": {"uniform": [-scale, scale]}}}
    rec = {"from": "h", "to": "h", "delay": 1, "trainable": False,
           "init": {"sparse": o.get("density", 0.1), "spectral_radius": o.get("spectral_radius", 0.9)}}
    return {"units": {"h": unit}, "connections": [rec], "inputs": [port], "outputs": ["h"]}


def conv(o):
    """Dilated causal convolution (WaveNet/TCN): y_t = f(sum_k W_k x_{t - k d} + b); residual adds x."""
    k, d = o.get("kernel", 2), o.get("dilation", 1)
    _at_most(k, budget.max_connections(), "kernel", "taps (one connection each)", "TIMELOOM_MAX_UNITS")
    units = {"h": {"size": o["size"], "activation": o.get("activation", "relu")}}
    ports = [{"unit": "h", "taps": [j * d for j in range(k)]}]
    outputs = ["h"]
    conns = []
    if o.get("residual", False):
        units["out"] = {"size": o["size"], "activation": "identity", "bias": False}
        conns.append({"from": "h", "to": "out", "weight": "identity"})
        ports.append({"unit": "out", "residual": True})
        outputs = ["out"]
    return {"units": units, "connections": conns, "inputs": ports, "outputs": outputs}


def bidirectional(o):
    """A forward copy (delays +1) and a backward copy (delays -1) of one cell, reading the same
    inputs; a connection from the block reads both (their outputs concatenated)."""
    cell = dict(o["cell"])
    return {"blocks": {"fwd": cell, "bwd": {**cell, "_direction": -1}},
            "inputs": ["fwd", "bwd"], "outputs": ["fwd", "bwd"]}


def stack(o):
    """n layers of one block, each feeding the next (a deep RNN)."""
    n = o.get("n", 2)
    _at_most(n, budget.max_units(), "n", "layers", "TIMELOOM_MAX_UNITS")
    blocks = {f"l{j}": dict(o["layer"]) for j in range(n)}
    conns = [{"from": f"l{j}", "to": f"l{j + 1}"} for j in range(n - 1)]
    return {"blocks": blocks, "connections": conns, "inputs": ["l0"], "outputs": [f"l{n - 1}"]}


def _at_most(value, limit: int, option: str, what: str, setting: str) -> None:
    """Refuse a count option before building a body of that many entries."""
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        raise ValueError(f"{option}: {value:,} asks for {value:,} {what}, more than the limit of {limit:,}; "
                         f"use a smaller {option}, or raise the limit with the environment variable {setting}")


def _opt(o, key):
    return {key: o[key]} if key in o else {}


BUILTINS = {"rnn": rnn, "lstm": lstm, "gru": gru, "leaky": leaky, "reservoir": reservoir,
            "conv": conv, "bidirectional": bidirectional, "stack": stack}
