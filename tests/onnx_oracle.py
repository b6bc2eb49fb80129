"""The ONNX oracle for recurrent operators: onnx's reference ops (`onnx.reference`) with the
parts onnx 1.23 leaves as TODO filled in (shared by tests/runtime/test_onnx_parity.py and
tests/interop).

LSTM and GRU ignore `activations`, RNN knows only Tanh and Affine, and LSTM ignores
`input_forget`. `ONNX_OPS` completes them (pass as `new_ops=`, which replaces the stock op):
the activation slots take the functions of the operators' "Activation functions" table, and
`input_forget=1` couples the gates as onnxruntime does (f_t = 1 - i_t; the f rows of W, R, B
and P are unused). The recurrence itself (gate order, bias sums, peepholes, directions, reset
gate) stays onnx's code. `sequence_lens` and `clip` stay unsupported by these ops.
"""
from __future__ import annotations

import numpy as np
from onnx.reference.ops.op_gru import GRU as _ReferenceGRU
from onnx.reference.ops.op_lstm import LSTM as _ReferenceLSTM
from onnx.reference.ops.op_rnn import RNN_14 as _ReferenceRNN

# --- the oracle: onnx's reference ops, with the activation table filled in --------------------

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ONNX RNN/GRU/LSTM docs, "Activation functions" (those timeloom can express, and a few more).
ONNX_ACTIVATIONS = {
    "Relu": lambda x, a, b: np.maximum(0, x),
    "Tanh": lambda x, a, b: np.tanh(x),
    "Sigmoid": lambda x, a, b: _sigmoid(x),
    "Softplus": lambda x, a, b: np.logaddexp(0, x),
    "Affine": lambda x, a, b: a * x + b,
    "ScaledTanh": lambda x, a, b: a * np.tanh(b * x),
    "HardSigmoid": lambda x, a, b: np.clip(a * x + b, 0, 1),
    "Softsign": lambda x, a, b: x / (1 + np.abs(x)),
}
TAKES_ALPHA_BETA = {"Affine", "ScaledTanh", "HardSigmoid"}


def _activation_slots(op, defaults):
    """The functions of one direction's slots; alpha/beta are consumed in slot order by the
    functions that take them (the ONNX docs: "consumed in the order of activation functions")."""
    names = list(op.activations or defaults)
    n = len(defaults)
    if op.direction == "bidirectional" and len(names) == 2 * n:
        assert names[:n] == names[n:], "this oracle runs both directions with one activation set"
    alphas, betas = iter(op.activation_alpha or []), iter(op.activation_beta or [])
    fns = []
    for name in names[:n]:
        name = name.decode() if isinstance(name, bytes) else name
        a, b = (next(alphas), next(betas)) if name in TAKES_ALPHA_BETA else (None, None)
        fns.append(lambda x, fn=ONNX_ACTIVATIONS[name], a=a, b=b: fn(x, a, b))
    return fns


class LSTM(_ReferenceLSTM):
    """onnx's reference LSTM + `activations` (f, g, h) + `input_forget` (forget = 1 - input)."""

    op_domain = ""

    def __init__(self, onnx_node, run_params):
        super().__init__(onnx_node, run_params)
        self.f, self.g, self.h = _activation_slots(self, ["Sigmoid", "Tanh", "Tanh"])

    def _run(self, X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, **kw):
        if self.input_forget:
            # forget = 1 - f(a_i) = f(-a_i) for f = sigmoid: feed onnx's loop f rows = -(i rows)
            # (whatever the model's f rows hold, they are unused, as in onnxruntime)
            assert (self.activations or ["Sigmoid"])[0] in ("Sigmoid", b"Sigmoid")
            H = R.shape[-1]
            W, R = _copy_rows(W, 2 * H, 0, H, -1), _copy_rows(R, 2 * H, 0, H, -1)
            if B is not None:
                B = _copy_rows(_copy_rows(B, 2 * H, 0, H, -1), 6 * H, 4 * H, H, -1)
            if P is not None:
                P = _copy_rows(P, 2 * H, 0, H, -1)
        return super()._run(X, W, R, B, sequence_lens, initial_h, initial_c, P, **kw)


def _copy_rows(a, dst, src, n, sign):
    a = a.copy()
    a[:, dst:dst + n] = sign * a[:, src:src + n]
    return a


class GRU(_ReferenceGRU):
    """onnx's reference GRU + `activations` (f for z and r, g for the candidate)."""

    op_domain = ""

    def __init__(self, onnx_node, run_params):
        super().__init__(onnx_node, run_params)
        self.f, self.g = _activation_slots(self, ["Sigmoid", "Tanh"])


class RNN(_ReferenceRNN):
    """onnx's reference RNN with the whole activation table (stock: Tanh and Affine only)."""

    op_domain = ""

    def choose_act(self, name, alpha, beta):
        name = name.decode() if isinstance(name, bytes) else name
        return lambda x: ONNX_ACTIVATIONS[name](x, alpha, beta)


ONNX_OPS = [LSTM, GRU, RNN]
