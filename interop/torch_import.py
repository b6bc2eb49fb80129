"""PyTorch `state_dict` of nn.RNN / nn.LSTM / nn.GRU -> timeloom spec + parameters.

The file is what `torch.save(module.state_dict(), path)` writes. Everything is inferred from
the tensor names and shapes (torch's "Variables" layout): the kind from the gate rows of
weight_hh_l0 (4H lstm, 3H gru, H rnn), hidden size, input size, num_layers (_l{k}),
bidirectional (_reverse), bias (bias_ih_l0 present). nn.RNN's nonlinearity is not in the
state_dict: pass it (tanh by default). batch_first and dropout do not touch the weights.

The spec: input `x`, block `enc` = the cell, wrapped in `bidirectional` and/or `stack` as
the module is; the outputs are the last layer's h units. Names as interop.mapping.torch_links.
An LSTM with proj_size P (weight_hr_l*) has no built-in block: each layer and direction is
written as the lstm block's primitives with h renamed m and a projection unit h = W_hr m
(P units) that the gates read back (unit prefixes as the blocks would make them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InteropError, UnsupportedError
from .mapping import TORCH_GATES, layer_prefix, torch_links, values_from_links

KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
KINDS = {4: "lstm", 3: "gru", 1: "rnn"}


@dataclass
class TorchImport:
    spec: dict
    params: dict
    kind: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    nonlinearity: str = "tanh"
    proj_size: int = 0
    warnings: list = field(default_factory=list)

    @property
    def dirs(self) -> int:
        return 2 if self.bidirectional else 1

    def prefix(self, layer: int, d: int) -> str:
        return layer_prefix("enc", layer, d, self.num_layers, self.bidirectional)

    def network(self, dtype: str = "float64", **kw):
        import compiler
        from runtime import Network

        from .params import assign
        net = Network(compiler.compile_spec(self.spec), dtype=dtype, **kw)
        assign(net, self.params)
        return net

    def run(self, net, x, batch_first: bool = False):
        """Like the torch module's forward: (output, h_n) or (output, (h_n, c_n)), as numpy."""
        x = np.asarray(x, dtype=np.float64)
        if batch_first:
            x = x.swapaxes(0, 1)
        names = [f"{self.prefix(ly, d)}.{u}" for ly in range(self.num_layers) for d in range(self.dirs)
                 for u in (("h", "c") if self.kind == "lstm" else ("h",))]
        traj = {k: net.backend.to_numpy(v) for k, v in net.forward({"x": x}, units=names).items()}
        last = self.num_layers - 1
        out = np.concatenate([traj[f"{self.prefix(last, d)}.h"] for d in range(self.dirs)], axis=-1)
        if batch_first:
            out = out.swapaxes(0, 1)

        def final(u):
            return np.stack([traj[f"{self.prefix(ly, d)}.{u}"][-1 if d == 0 else 0]
                             for ly in range(self.num_layers) for d in range(self.dirs)])
        if self.kind == "lstm":
            return out, (final("h"), final("c"))
        return out, final("h")


def read_state_dict(path) -> dict:
    try:
        import torch
    except ImportError as e:
        raise InteropError("importing a PyTorch state_dict needs torch (pip install torch)") from e
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise InteropError(f"{path}: no such file") from e
    except Exception as e:
        raise InteropError(f"{path}: not a torch.save'd state_dict ({e})") from e
    if not isinstance(sd, dict):
        raise InteropError(f"{path}: holds a {type(sd).__name__}, not a state_dict (save module.state_dict())")
    return {k: v.detach().cpu().double().numpy() for k, v in sd.items() if hasattr(v, "detach")}


def import_torch(state, kind: str | None = None, nonlinearity: str = "tanh", module: str | None = None,
                 name: str = "torch_import") -> TorchImport:
    """`state`: a path or a {name: tensor/array} dict; `module`: the key prefix of the recurrent module
    inside a bigger model's state_dict (e.g. "encoder"); found by itself when there is only one."""
    tensors = read_state_dict(state) if isinstance(state, (str, Path)) else \
        {k: np.asarray(v.detach().cpu().double().numpy() if hasattr(v, "detach") else v, dtype=np.float64)
         for k, v in state.items()}
    tensors = _select(tensors, module)
    layers = {}
    for key in tensors:
        m = KEY.match(key)
        layers.setdefault(int(m.group(2)), set()).add(key)
    num_layers = max(layers) + 1
    if sorted(layers) != list(range(num_layers)):
        raise InteropError(f"layers {sorted(layers)} of the state_dict are not 0..{num_layers - 1}")
    bidirectional = "weight_ih_l0_reverse" in tensors
    bias = "bias_ih_l0" in tensors
    whh = tensors["weight_hh_l0"]
    proj = tensors["weight_hr_l0"].shape[0] if "weight_hr_l0" in tensors else 0
    H = tensors["weight_hr_l0"].shape[1] if proj else whh.shape[1]
    G = whh.shape[0] // H
    inferred = KINDS.get(G) if whh.shape[0] % H == 0 else None
    if inferred is None:
        raise InteropError(f"weight_hh_l0 has shape {whh.shape}: not (gates * H, H) of an RNN, GRU or LSTM")
    if kind is not None and kind.lower() != inferred:
        raise InteropError(f"--kind {kind} does not fit the weights: weight_hh_l0 {whh.shape} has "
                           f"{G} gate blocks ({inferred})")
    kind = inferred
    if nonlinearity not in ("tanh", "relu"):
        raise InteropError(f"nonlinearity must be tanh or relu (nn.RNN), not {nonlinearity!r}")
    I = tensors["weight_ih_l0"].shape[1]
    if proj and kind != "lstm":
        raise UnsupportedError("weight_hr_l* (proj_size) belongs to an LSTM only")
    links = torch_links(kind, "x", I, H, num_layers, bidirectional, bias=bias, proj_size=proj)
    expected = {ln.torch_param for ln in links}
    if set(tensors) != expected:
        extra, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
        raise InteropError(f"the state_dict does not look like one nn.{kind.upper()}"
                           + (f": unexpected {extra}" if extra else "") + (f": missing {missing}" if missing else ""))
    G = len(TORCH_GATES[kind])
    for ln in links:
        t = tensors[ln.torch_param]
        rows = t.shape[0]
        if rows != G * H and not ln.torch_param.startswith("weight_hr"):
            raise InteropError(f"{ln.torch_param} has shape {t.shape}, expected {G * H} rows")
    spec = _spec(kind, I, H, num_layers, bidirectional, nonlinearity, name, proj)
    values = values_from_links(links, tensors)
    result = TorchImport(spec, values, kind, I, H, num_layers, bidirectional, bias, nonlinearity, proj)
    import compiler
    program = compiler.compile_spec(spec)
    for n, p in program.params.items():  # bias=False: the unit biases exist in timeloom, at 0
        if n not in values:
            values[n] = np.zeros(p.shape)
    if not bias:
        result.warnings.append("bias=False: the timeloom biases are set to 0 (they stay trainable)")
    return result


def _select(tensors, module):
    rnn_keys = [k for k in tensors if KEY.match(k.rsplit(".", 1)[-1])]
    prefixes = sorted({k.rsplit(".", 1)[0] if "." in k else "" for k in rnn_keys})
    if module is None:
        if len(prefixes) != 1:
            raise InteropError("the state_dict holds " + ("no recurrent weights (weight_ih_l0, ...)" if not prefixes
                               else f"several recurrent modules {prefixes}; choose one with --module"))
        module = prefixes[0]
    elif module not in prefixes:
        raise InteropError(f"no recurrent module '{module}' in the state_dict (found: {prefixes})")
    start = f"{module}." if module else ""
    return {k[len(start):]: v for k, v in tensors.items()
            if k.startswith(start) and KEY.match(k[len(start):])}


def _spec(kind, I, H, num_layers, bidirectional, nonlinearity, name, proj=0):
    last = [layer_prefix("enc", num_layers - 1, d, num_layers, bidirectional) + ".h"
            for d in range(2 if bidirectional else 1)]
    spec = {"timeloom": 1, "name": name, "inputs": {"x": {"size": I}},
            "outputs": {u: {"loss": "mse", "at": "all"} for u in last}}
    if proj:
        return _projected(spec, H, proj, num_layers, bidirectional)
    cell = {"type": kind, "size": H}
    if kind == "rnn" and nonlinearity != "tanh":
        cell["activation"] = nonlinearity
    if bidirectional:
        cell = {"type": "bidirectional", "cell": cell}
    if num_layers > 1:
        cell = {"type": "stack", "n": num_layers, "layer": cell}
    return {**spec, "blocks": {"enc": cell}, "connections": [{"from": "x", "to": "enc"}]}


def _projected(spec, H, P, num_layers, bidirectional):
    """LSTM layers with projections, as primitives (interop.cells.primitive_fragment)."""
    from .cells import merge, primitive_fragment

    dirs = 2 if bidirectional else 1
    sources = ["x"]
    for layer in range(num_layers):
        prefixes = [layer_prefix("enc", layer, d, num_layers, bidirectional) for d in range(dirs)]
        for d, p in enumerate(prefixes):
            merge(spec, primitive_fragment("lstm", {"size": H}, p, 1 if d == 0 else -1, sources, proj_size=P))
        sources = [f"{p}.h" for p in prefixes]
    return spec
