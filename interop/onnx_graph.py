"""A small ONNX graph builder: unique names, typed constants, one call per node, and the
timeloom primitives (activations, weight kinds, gates) written as ONNX nodes."""
from __future__ import annotations

import numpy as np

ONNX_DTYPES = {"float32": np.float32, "float64": np.float64}


class Builder:
    def __init__(self, dtype: str, reserved=(), used: set | None = None):
        """`used`: a name set shared with the enclosing graph (ONNX names are unique across scopes)."""
        from onnx import TensorProto

        self.dtype = np.dtype(ONNX_DTYPES[dtype])
        self.elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
        self.nodes, self.inits = [], []
        self.used = used if used is not None else set()
        self.used.update(reserved)
        self._consts = {}

    def name(self, hint: str) -> str:
        base = hint.replace(" ", "_") or "t"
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def const(self, value, hint: str = "const", integer: bool = False) -> str:
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=np.int64 if integer else self.dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 16 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def op(self, op_type: str, inputs, hint: str | None = None, outputs=None, n_out: int = 1, **attrs):
        from onnx import helper

        if outputs is None:
            outputs = [self.name(f"{hint or op_type}") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs),
                                           name=self.name(f"{op_type}_{len(self.nodes)}"), **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    # -- timeloom primitives ---------------------------------------------------------
    def activation(self, x: str, act, hint: str) -> str:
        name = act.name
        if name == "identity":
            return x
        if name == "softmax":
            return self.op("Softmax", [x], hint, axis=-1)
        if name == "softplus" and self.dtype == np.float64:
            # onnxruntime has no double Softplus: max(x, 0) + log(1 + exp(-|x|)), overflow-free
            e = self.op("Exp", [self.op("Neg", [self.op("Abs", [x])])])
            return self.op("Add", [self.op("Relu", [x]), self.op("Log", [self.op("Add", [e, self.const(1.0, "one")])])],
                           hint)
        if name == "hard_sigmoid" and self.dtype == np.float64:
            # onnxruntime has no double HardSigmoid: clip(alpha x + beta, 0, 1) from Mul, Add, Min, Max
            from runtime.primitives import HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA
            z = self.op("Add", [self.op("Mul", [x, self.const(HARD_SIGMOID_ALPHA, "hs_alpha")]),
                                self.const(HARD_SIGMOID_BETA, "hs_beta")])
            return self.op("Max", [self.op("Min", [z, self.const(1.0, "one")]), self.const(0.0, "zero")], hint)
        from runtime.primitives import ACTIVATIONS  # the registry: the ONNX operator computing an activation
        if name in ACTIVATIONS and ACTIVATIONS[name].onnx:
            return self.op(ACTIVATIONS[name].onnx, [x], hint)
        if name == "scaled_sigmoid":
            s = self.op("Sigmoid", [x])
            return self.op("Add", [self.op("Mul", [s, self.const(act.hi - act.lo, "span")]), self.const(act.lo, "lo")],
                           hint)
        if name == "hard_tanh":  # clip(x, lo, hi)
            return self.op("Max", [self.op("Min", [x, self.const(act.hi, "hi")]), self.const(act.lo, "lo")], hint)
        raise ValueError(f"no ONNX form for activation {act}")

    def weight(self, c, x: str, value) -> str:
        """W . x for connection `c` (its weight `value`: the parameter or the fixed constant)."""
        if c.weight == "identity":
            return x
        v = np.asarray(value)
        if c.weight == "diagonal" or v.ndim == 0:
            return self.op("Mul", [x, self.const(v, f"{c.name}")])
        return self.op("MatMul", [x, self.const(v.T, f"{c.name}.T")])

    def gate_value(self, g: str, complement: bool) -> str:
        return self.op("Sub", [self.const(1.0, "one"), g]) if complement else g

    def add_all(self, terms: list, hint: str) -> str:
        if len(terms) == 1:
            return terms[0]
        if len(terms) == 2:
            return self.op("Add", terms, hint)
        return self.op("Sum", terms, hint)
