"""The weight mappings ONNX <-> timeloom and torch <-> timeloom, per cell direction.

A cell direction is described by the timeloom unit of each role (`roles`: "i", "f", "o",
"g", "c", "ct", "h" for lstm; "r", "z", "n", "h" for gru; "h" for rnn) and its recurrent
delay D (+1 forward, -1 backward). Parameter names follow docs/ARCHITECTURE.md ("Parameter names"):

  ONNX (per direction; rows of W, R and both halves of B in ONNX_GATES order)
    W[k][:, cols of source s] -> "s->k"           R[k] -> "h->k@D"
    Wb[k] + Rb[k]             -> "k.bias"
    GRU, linear_before_reset=1: Wb[n] -> "n.bias", Rb[n] -> "h->n@D.bias" (inside r * (...));
                           =0: Wb[n] + Rb[n] -> "n.bias" (reset at the source: U (r * h))
    LSTM P in the order i, o, f -> "c->i@D", "c->o" (delay 0: o reads c_t), "c->f@D"
    LSTM input_forget=1 (forget = 1 - input) == timeloom coupled (input = 1 - forget) for a
    sigmoid gate: timeloom's f takes the NEGATED ONNX i rows; ONNX's f rows are unused.
    initial_h / initial_c (one row for all samples) -> "h.h0" / "c.h0"
  torch (nn.RNN / LSTM / GRU, TORCH_GATES order; see `torch_links`)

Activation slots (interop.activations) rescale everything that feeds a slot's units.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

ONNX_GATES = {"lstm": ("i", "o", "f", "g"), "gru": ("z", "r", "n"), "rnn": ("h",)}
ONNX_PEEPHOLES = ("i", "o", "f")
TORCH_GATES = {"rnn": ("h",), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
ROLES = {"lstm": ("i", "f", "o", "g", "c", "ct", "h"), "gru": ("r", "z", "n", "h"), "rnn": ("h",)}


def prefixed_roles(kind: str, prefix: str) -> dict:
    """The units of a built-in block under `prefix`: {"i": "enc.i", ...}."""
    return {r: f"{prefix}.{r}" for r in ROLES[kind]}


def _at(delay: int) -> str:
    return f"@{delay}" if delay else ""


def cell_names(kind: str, roles: dict, delay: int) -> dict:
    """Parameter names of one cell direction, keyed ("R", k), ("bias", k), ("P", g), "rbias", ("h0", u)."""
    h = roles["h"]
    names = {}
    for k in ONNX_GATES[kind]:
        names["R", k] = f"{h}->{roles[k]}{_at(delay)}"
        names["bias", k] = f"{roles[k]}.bias"
    if kind == "gru":
        names["rbias"] = f"{h}->{roles['n']}{_at(delay)}.bias"
    if kind == "lstm":
        c = roles["c"]
        names["P", "i"] = f"{c}->{roles['i']}{_at(delay)}"
        names["P", "f"] = f"{c}->{roles['f']}{_at(delay)}"
        names["P", "o"] = f"{c}->{roles['o']}"
        names["h0", "c"] = f"{c}.h0"
    names["h0", "h"] = f"{h}.h0"
    return names


def input_name(source: str, roles: dict, k: str) -> str:
    return f"{source}->{roles[k]}"


def gate_scales(kind: str, slots) -> dict:
    """role -> (scale, offset) of the ONNX slot squashing that role's net input."""
    from .activations import SLOT_ROLES
    out = {}
    for slot, roles in zip(slots, SLOT_ROLES[kind]):
        for r in roles:
            out[r] = (slot.scale, slot.offset)
    return out


def onnx_to_timeloom(kind, roles, delay, sources, W, R, B=None, P=None, slots=None,
                     linear_before_reset=False, coupled=False) -> dict:
    """One ONNX direction -> {timeloom name: array}.

    `sources`: [(source unit/input, column slice of W)], the parts of the operator's X.
    `slots`: interop.activations.Slot per activation slot (None: the defaults, no rescaling)."""
    gates = ONNX_GATES[kind]
    G, H = len(gates), R.shape[-1]
    B = np.zeros(2 * G * H) if B is None else B
    Wk, Rk = np.split(W, G), np.split(R, G)
    Wb, Rb = (np.split(b, G) for b in np.split(B, 2))
    scale = gate_scales(kind, slots) if slots else {}
    names = cell_names(kind, roles, delay)
    values = {}
    for j, k in enumerate(gates):
        s, o = scale.get(k, (1.0, 0.0))
        for src, cols in sources:
            values[input_name(src, roles, k)] = s * Wk[j][:, cols]
        values[names["R", k]] = s * Rk[j]
        if kind == "gru" and k == "n" and linear_before_reset:
            values[names["bias", k]] = s * Wb[j] + o
            values[names["rbias"]] = s * Rb[j]
        else:
            values[names["bias", k]] = s * (Wb[j] + Rb[j]) + o
    if kind == "lstm" and P is not None:
        for k, p in zip(ONNX_PEEPHOLES, np.split(P, 3)):
            values[names["P", k]] = scale.get(k, (1.0, 0.0))[0] * p
    if coupled:  # timeloom f = sigma(-a_i): the negated input-gate values; no unit i
        i_names = [input_name(s, roles, "i") for s, _ in sources] + [names["R", "i"], names["bias", "i"]]
        f_names = [input_name(s, roles, "f") for s, _ in sources] + [names["R", "f"], names["bias", "f"]]
        if P is not None:
            i_names.append(names["P", "i"])
            f_names.append(names["P", "f"])
        for ni, nf in zip(i_names, f_names):
            values[nf] = -values.pop(ni)
    return values


def timeloom_to_onnx(kind, cell, H, I, linear_before_reset=False, coupled=False):
    """The inverse, for export: one direction's (W, R, B, P) from a cell's timeloom arrays.

    `cell`: {("W", role): (H, I) input weights (the operator's X columns), ("R", role): (H, H),
    ("bias", role): (H,), "rbias": (H,) (GRU, linear_before_reset), ("P", role): (H,)}; a
    missing key is zeros (no such connection)."""
    gates = ONNX_GATES[kind]
    G = len(gates)
    W, R, B = np.zeros((G * H, I)), np.zeros((G * H, H)), np.zeros(2 * G * H)
    P = np.zeros(3 * H) if kind == "lstm" else None

    def put(dst, rows, key, sign=1.0):
        if cell.get(key) is not None:
            dst[rows] = sign * np.asarray(cell[key])

    for j, k in enumerate(gates):
        rows = slice(j * H, (j + 1) * H)
        src, sign = k, 1.0
        if coupled and k == "f":
            continue  # ONNX's f rows are unused with input_forget=1
        if coupled and k == "i":
            src, sign = "f", -1.0  # ONNX i = sigma(-a_f) = 1 - timeloom f
        put(W, rows, ("W", src), sign)
        put(R, rows, ("R", src), sign)
        put(B, rows, ("bias", src), sign)
        if kind == "gru" and k == "n" and linear_before_reset:
            put(B, slice((G + j) * H, (G + j + 1) * H), "rbias")
    if kind == "lstm":
        for j, k in enumerate(ONNX_PEEPHOLES):
            rows = slice(j * H, (j + 1) * H)
            if coupled and k == "f":
                continue
            if coupled and k == "i":
                put(P, rows, ("P", "f"), -1.0)
            else:
                put(P, rows, ("P", k))
    return W, R, B, P


# --- torch ----------------------------------------------------------------------------------

class Link(NamedTuple):
    """timeloom parameter `name` <-> the block `torch_param[rows, cols]` of a torch parameter.

    A timeloom parameter's value is the SUM of the torch blocks linked to it (torch's two
    biases b_ih + b_hh add up into one unit bias); the gradient of each linked torch block
    equals the timeloom parameter's gradient.
    """

    name: str
    torch_param: str
    rows: slice
    cols: slice = slice(None)

    def block(self, array):
        """This link's block of a torch parameter-shaped array (a view)."""
        return array[self.rows, self.cols] if array.ndim == 2 else array[self.rows]


def layer_prefix(prefix, layer, direction, num_layers, bidirectional):
    """Where torch's (layer, direction) lives in timeloom.

    stack -> "{prefix}.l{layer}", bidirectional -> ".fwd" (direction 0) / ".bwd" (direction 1).
    """
    p = f"{prefix}.l{layer}" if num_layers > 1 else prefix
    if bidirectional:
        p += ".fwd" if direction == 0 else ".bwd"
    return p


def torch_links(kind, input_name, input_size, hidden, num_layers, bidirectional, prefix="enc", bias=True,
                proj_size=0):
    """The mapping of one torch.nn.{RNN,LSTM,GRU} onto the timeloom names of the equivalent block.

    For layer l, direction d (torch suffix "_l{l}" + "_reverse" when d == 1), unit p of that
    layer (see `layer_prefix`), gate k of TORCH_GATES[kind] (rows k*H:(k+1)*H):
      weight_ih[k rows, cols of source s] -> "{s}->{p}.{k}"     s = the input (layer 0), or the
                                                                 previous layer's h unit(s): a
                                                                 bidirectional previous layer's
                                                                 (2H) columns split into fwd.h | bwd.h
      weight_hh[k rows]                   -> "{p}.h->{p}.{k}@{1 or -1}"   (delay -1 backward)
      bias_ih[k] + bias_hh[k]             -> "{p}.{k}.bias"
    except GRU's n gate: bias_hh[n] (b_hn, inside r * (W_hn h + b_hn)) -> "{p}.h->{p}.n@1.bias"
    (linear_before_reset, torch's form). An rnn block's single "gate" is its unit h.
    `bias=False` (a module built with bias=False): no bias links (the timeloom biases stay 0).
    `proj_size` P > 0 (LSTM with projections): unit p.m = o * tanh(c) (size H) and p.h = W_hr p.m
    (size P): weight_hr -> "{p}.m->{p}.h"; weight_hh is (4H, P), a layer's output P wide.
    """
    gates, dirs = TORCH_GATES[kind], (2 if bidirectional else 1)
    H, out = hidden, proj_size or hidden
    links = []
    for layer in range(num_layers):
        if layer == 0:
            sources = [(input_name, slice(0, input_size))]
        else:
            sources = [(f"{layer_prefix(prefix, layer - 1, d, num_layers, bidirectional)}.h",
                        slice(d * out, (d + 1) * out)) for d in range(dirs)]
        for d in range(dirs):
            p = layer_prefix(prefix, layer, d, num_layers, bidirectional)
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            delay = 1 if d == 0 else -1
            if proj_size:
                links.append(Link(f"{p}.m->{p}.h", f"weight_hr{sfx}", slice(None)))
            for k, g in enumerate(gates):
                rows = slice(k * H, (k + 1) * H)
                for src, cols in sources:
                    links.append(Link(f"{src}->{p}.{g}", f"weight_ih{sfx}", rows, cols))
                links.append(Link(f"{p}.h->{p}.{g}@{delay}", f"weight_hh{sfx}", rows))
                if not bias:
                    continue
                links.append(Link(f"{p}.{g}.bias", f"bias_ih{sfx}", rows))
                if kind == "gru" and g == "n":
                    links.append(Link(f"{p}.h->{p}.n@{delay}.bias", f"bias_hh{sfx}", rows))
                else:
                    links.append(Link(f"{p}.{g}.bias", f"bias_hh{sfx}", rows))
    return links


def values_from_links(links, tensors: dict) -> dict:
    """{timeloom name: sum of its linked torch blocks} (float64)."""
    values = {}
    for ln in links:
        block = np.asarray(ln.block(np.asarray(tensors[ln.torch_param], dtype=np.float64)))
        values[ln.name] = values[ln.name] + block if ln.name in values else block.copy()
    return values
