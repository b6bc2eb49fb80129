"""ONNX recurrent-operator activations <-> timeloom activations.

An ONNX slot function f is written as timeloom's `act(s * x + o)`: the scale `s` multiplies
every weight and bias feeding the units of that slot, the offset `o` is added to their bias.

  Tanh, Sigmoid, Relu, Softplus   -> the same name (s = 1, o = 0)
  Affine(a, b)        = a x + b    -> identity, s = a, o = b
  ScaledTanh(a, b)    = a tanh(b x) = -a + 2a sigma(2 b x)
                                   -> {scaled_sigmoid: [-|a|, |a|]}, s = 2 b sign(a), o = 0
  HardSigmoid(a, b)   = clip(a x + b, 0, 1) = hard_sigmoid(a/0.2 x + (b - 0.5)/0.2)
                                   -> hard_sigmoid, s = a / 0.2, o = (b - 0.5) / 0.2 (a != 0)
Not expressible (no such timeloom activation): LeakyRelu, ThresholdedRelu, Elu, Softsign.
Export maps back without rescaling: identity -> Affine(1, 0), hard_sigmoid -> HardSigmoid(0.2,
0.5), {scaled_sigmoid: [-a, a]} -> ScaledTanh(a, 0.5); softmax, hard_tanh and asymmetric scaled
sigmoids have no ONNX slot function (such cells export as a Scan).
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.primitives import ACTIVATIONS, HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA

from .errors import UnsupportedError

# the functions ONNX allows in the activations of LSTM / GRU / RNN (the ONNX operator specification)
RNN_FUNCTIONS = ("Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid",
                 "Elu", "Softsign", "Softplus")
# derived from the activation registry (runtime.primitives.ACTIVATIONS): ONNX slot function -> timeloom name
PLAIN = {a.onnx: name for name, a in ACTIVATIONS.items() if a.onnx in RNN_FUNCTIONS}
TAKES_ALPHA_BETA = {"Affine", "ScaledTanh", "HardSigmoid"}
TAKES_ALPHA = {"LeakyRelu", "ThresholdedRelu", "Elu"}
PLAIN.pop("HardSigmoid", None)  # takes alpha, beta: mapped with its scale and offset below
NOT_EXPRESSIBLE = set(RNN_FUNCTIONS) - set(PLAIN) - {"Affine", "ScaledTanh", "HardSigmoid"}

# ONNX default slot functions, one direction
DEFAULTS = {"lstm": ("Sigmoid", "Tanh", "Tanh"), "gru": ("Sigmoid", "Tanh"), "rnn": ("Tanh",)}
# block option of each slot
SLOT_OPTIONS = {"lstm": ("gate_activation", "cell_activation", "output_activation"),
                "gru": ("gate_activation", "activation"), "rnn": ("activation",)}
# the units (roles) whose net input each slot squashes; LSTM's h slot acts on c (unit ct)
SLOT_ROLES = {"lstm": (("i", "o", "f"), ("g",), ("ct",)), "gru": (("z", "r"), ("n",)), "rnn": (("h",),)}


@dataclass(frozen=True)
class Slot:
    """ONNX f(x) = timeloom activation(scale * x + offset)."""

    activation: object  # a spec activation: "tanh" or {"scaled_sigmoid": [lo, hi]}
    scale: float = 1.0
    offset: float = 0.0
    onnx: str = ""

    @property
    def exact(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0


def slot_from_onnx(name: str, alpha, beta, where: str) -> Slot:
    if name in PLAIN:
        return Slot(PLAIN[name], onnx=name)
    if name == "Affine":
        return Slot("identity", float(alpha), float(beta), onnx=name)
    if name == "ScaledTanh":
        a, b = float(alpha), float(beta)
        if a == 0:
            raise UnsupportedError(f"{where}: ScaledTanh with alpha = 0 is the constant 0; timeloom has "
                                   "no constant activation")
        sign = 1.0 if a > 0 else -1.0
        return Slot({"scaled_sigmoid": [-abs(a), abs(a)]}, 2 * b * sign, onnx=name)
    if name == "HardSigmoid":
        a, b = float(alpha), float(beta)
        if a == 0:
            raise UnsupportedError(f"{where}: HardSigmoid with alpha = 0 is a constant; timeloom has "
                                   "no constant activation")
        return Slot("hard_sigmoid", a / HARD_SIGMOID_ALPHA, (b - HARD_SIGMOID_BETA) / HARD_SIGMOID_ALPHA, onnx=name)
    if name in NOT_EXPRESSIBLE:
        raise UnsupportedError(f"{where}: activation {name} has no timeloom equivalent; timeloom's "
                               f"activations are {', '.join(ACTIVATIONS)} (ONNX {', '.join(PLAIN)}, Affine, "
                               "ScaledTanh)")
    raise UnsupportedError(f"{where}: unknown activation '{name}'")


def onnx_slots(kind: str, attrs: dict, dirs: int, where: str) -> list[list[Slot]]:
    """[direction][slot] -> Slot, from the node's activations / activation_alpha / activation_beta.

    alpha and beta are consumed in slot order by the functions that take them (as onnxruntime
    reads them)."""
    n = len(DEFAULTS[kind])
    names = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations") or []]
    if not names:
        names = list(DEFAULTS[kind]) * dirs
    if len(names) != n * dirs:
        raise UnsupportedError(f"{where}: {len(names)} activations given, the operator needs {n} per "
                               f"direction ({n * dirs})")
    alphas, betas = list(attrs.get("activation_alpha") or []), list(attrs.get("activation_beta") or [])
    out = []
    for d in range(dirs):
        slots = []
        for name in names[d * n:(d + 1) * n]:
            a = b = None
            if name in TAKES_ALPHA_BETA or name in TAKES_ALPHA:
                if not alphas:
                    raise UnsupportedError(f"{where}: activation {name} needs activation_alpha values")
                a = alphas.pop(0)
            if name in TAKES_ALPHA_BETA:
                if not betas:
                    raise UnsupportedError(f"{where}: activation {name} needs activation_beta values")
                b = betas.pop(0)
            slots.append(slot_from_onnx(name, a, b, where))
        out.append(slots)
    return out


def onnx_from_timeloom(act) -> tuple[str, float | None, float | None] | None:
    """A timeloom Activation -> (ONNX slot function, alpha, beta), or None when there is none."""
    onnx = ACTIVATIONS[act.name].onnx if act.name in ACTIVATIONS else None
    if onnx in PLAIN:
        return onnx, None, None
    if act.name == "identity":
        return "Affine", 1.0, 0.0
    if act.name == "hard_sigmoid":
        return "HardSigmoid", HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA
    if act.name == "scaled_sigmoid" and act.lo == -act.hi and act.hi > 0:
        return "ScaledTanh", float(act.hi), 0.5
    return None
