"""timeloom Program + parameters -> ONNX model.

Graph inputs are the spec's inputs, (T, B, size) time-major with symbolic T and B; graph
outputs are the spec's output units, (T, B, size). Components go in topological order:
- a unit outside any recurrence: its contributions for all steps at once (delays as a
  shift in time: Concat of the initial rows and a Slice), bias, activation;
- a recurrent component that is exactly an LSTM / GRU / RNN (interop.onnx_match): the
  standard operator (direction forward or reverse), its external inputs concatenated as X;
- any other recurrent component: a `Scan` (interop.onnx_scan) whose body is one step built
  from the component's primitives, its state the last d outputs of each unit read with delay d.
Sequences are full length (no sequence_lens input). onnxruntime runs the LSTM/GRU/RNN
operators in float32 only; `standard_ops=False` exports every recurrence as a Scan.
"""
from __future__ import annotations

import json

import numpy as np

from .errors import InteropError
from .onnx_graph import Builder
from .onnx_match import match_cell

OPSET = 17
NAMES_KEY = "timeloom.names"  # metadata_props: the spec's unit names per node (read by interop.onnx_import)
OUTPUTS_KEY = "timeloom.outputs"  # metadata_props: {output unit: {loss, at}} of the spec


def export_onnx(program, params: dict, dtype: str = "float32", standard_ops: bool = True, opset: int = OPSET):
    """-> onnx.ModelProto (checked with onnx.checker)."""
    import onnx
    from onnx import helper

    if dtype not in ("float32", "float64"):
        raise InteropError(f"dtype must be float32 or float64, not {dtype!r}")
    if not program.inputs:
        raise InteropError("the spec has no inputs; an exported model needs at least one")
    ex = Exporter(program, {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}, dtype)
    names = {}  # node name -> the unit it computes, or {role: unit} of a recurrent operator (for import)
    for comp in program.components:
        if not comp.recurrent:
            out = ex.unit_all_steps(comp.units[0])
            names.update({n.name: comp.units[0] for n in ex.b.nodes if n.output and n.output[0] == out})
            continue
        cell = match_cell(program, comp) if standard_ops else None
        if cell is not None:
            from .onnx_cells import emit_cell
            first = len(ex.b.nodes)
            emit_cell(ex, cell)
            names.update({n.name: dict(cell.roles) for n in ex.b.nodes[first:] if n.op_type in ("LSTM", "GRU", "RNN")})
        else:
            from .onnx_scan import emit_scan
            emit_scan(ex, comp)
    b = ex.b
    for u in program.outputs:
        b.op("Identity", [ex.traj[u]], outputs=[u])
    inputs = [helper.make_tensor_value_info(n, b.elem, ["T", "B", k]) for n, k in program.inputs.items()]
    outputs = [helper.make_tensor_value_info(u, b.elem, ["T", "B", program.units[u].size]) for u in program.outputs]
    graph = helper.make_graph(b.nodes, program.name, inputs, outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="timeloom")
    outs = {u: {"loss": o.loss, "at": o.at} for u, o in program.outputs.items()}
    helper.set_model_props(model, {NAMES_KEY: json.dumps(names, sort_keys=True),
                                   OUTPUTS_KEY: json.dumps(outs, sort_keys=True)})
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise InteropError(f"the exported model fails the ONNX checker (an exporter bug): {e}") from e
    return model


class Exporter:
    """The outer graph: trajectories (T, B, n) of inputs and units, shifted copies, contributions."""

    def __init__(self, program, params, dtype):
        self.program, self.params, self.dtype = program, params, dtype
        self.b = Builder(dtype, reserved=list(program.inputs) + list(program.outputs))
        self.traj = {n: n for n in program.inputs}
        self._shift, self._dims = {}, None

    # -- sizes at run time ------------------------------------------------------------
    def dims(self):
        """(T, B) as 1-element int64 tensors, from the first input's shape."""
        if self._dims is None:
            b = self.b
            shape = b.op("Shape", [next(iter(self.program.inputs))], "shape")
            self._dims = (b.op("Slice", [shape, b.const([0], "i0", True), b.const([1], "i1", True)], "T"),
                          b.op("Slice", [shape, b.const([1], "i1", True), b.const([2], "i2", True)], "B"))
        return self._dims

    def initial_rows(self, name: str, k: int, lead_batch_only: bool = False) -> str:
        """(k, B, n) copies of the initial state of `name` (h0, or zeros)."""
        b, n = self.b, self.program.size(name)
        h0 = self.params.get(f"{name}.h0")
        base = b.const(np.zeros((1, 1, n)) if h0 is None else h0.reshape(1, 1, n), f"{name}.h0")
        _, B = self.dims()
        shape = b.op("Concat", [b.const([k], "k", True), B, b.const([n], "n", True)], axis=0)
        return b.op("Expand", [base, shape], f"{name}.init")

    def shifted(self, name: str, delay: int) -> str:
        """S[t] = name[t - delay] (initial state outside 0..T-1), (T, B, n)."""
        if delay == 0:
            return self.traj[name]
        key = (name, delay)
        if key not in self._shift:
            b, k = self.b, abs(delay)
            init = self.initial_rows(name, k)
            T, _ = self.dims()
            if delay > 0:
                cat = b.op("Concat", [init, self.traj[name]], axis=0)
                start, end = b.const([0], "i0", True), T
            else:
                cat = b.op("Concat", [self.traj[name], init], axis=0)
                start, end = b.const([k], "k", True), b.op("Add", [T, b.const([k], "k", True)])
            self._shift[key] = b.op("Slice", [cat, start, end, b.const([0], "i0", True)], f"{name}@{delay}")
        return self._shift[key]

    def reverse_time(self, t: str, hint: str | None = None) -> str:
        b = self.b
        return b.op("Slice", [t, b.const([-1], "m1", True), b.const([-(2 ** 63)], "int64_min", True),
                              b.const([0], "i0", True), b.const([-1], "m1", True)], hint or f"{t}.rev")

    def value(self, c):
        return self.params[c.name] if c.has_param else (c.fixed if c.weight == "fixed" else None)

    def linear(self, c) -> str:
        """W . (gate_s * src(t - d)) + b for all steps, before any target gate."""
        b = self.b
        x = self.shifted(c.source, c.delay)
        if c.gate is not None and c.gate.at == "source":
            x = b.op("Mul", [b.gate_value(self.traj[c.gate.unit], c.gate.complement), x])
        lin = b.weight(c, x, self.value(c))
        if c.bias is not None:
            lin = b.op("Add", [lin, b.const(self.params[f"{c.name}.bias"], f"{c.name}.bias")])
        return lin

    def contribution(self, c) -> str:
        lin = self.linear(c)
        if c.gate is not None and c.gate.at == "target":
            lin = self.b.op("Mul", [self.b.gate_value(self.traj[c.gate.unit], c.gate.complement), lin])
        return lin

    def zeros_like_steps(self, n: int) -> str:
        b = self.b
        T, B = self.dims()
        shape = b.op("Concat", [T, B, b.const([n], "n", True)], axis=0)
        return b.op("Expand", [b.const(np.zeros(1), "zero"), shape])

    def unit_all_steps(self, u: str) -> str:
        unit, b = self.program.units[u], self.b
        terms = [self.contribution(c) for c in self.program.incoming(u)]
        if unit.bias is not None:
            terms.append(b.const(self.params[f"{u}.bias"], f"{u}.bias"))
        if not terms or len(terms) == 1 and unit.bias is not None:
            terms.insert(0, self.zeros_like_steps(unit.size))
        net = b.add_all(terms, f"{u}.net")
        self.traj[u] = b.activation(net, unit.activation, u) if unit.activation.name != "identity" else net
        return self.traj[u]

