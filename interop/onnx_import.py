"""ONNX model -> timeloom spec + parameters.

Every LSTM / GRU / RNN node becomes a cell (interop.cells: a built-in block where exact,
primitives otherwise) with its weights mapped as interop.mapping says; the nodes around them
(MatMul, Gemm, Add, Sum, Sub, Mul, Div, Sigmoid, Tanh, Relu, Softplus, Softmax, Identity, Dropout,
Transpose, Squeeze, Unsqueeze, Reshape, Concat, Gather on num_directions) become units and
connections, folded as symbolic tensors (interop.onnx_values) until an activation or a
recurrent operator needs a unit. Nodes whose inputs are all constants are evaluated
(onnx.reference); shape arithmetic that ends in a ConstantOfShape / Expand (the zero initial
states torch's exporter writes) becomes a constant-filled initial state. Anything else
raises UnsupportedError naming the node and its op type.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from compiler.loader import NOT_REGULAR, file_kind
from runtime.primitives import ACTIVATIONS, HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA

from .errors import InteropError, UnsupportedError, node_label
from .onnx_export import NAMES_KEY, OUTPUTS_KEY  # metadata_props written by timeloom export
from .onnx_layout import LayoutOps
from .onnx_result import OnnxImport
from .onnx_values import Dyn, Fill, Input, Linear, Part, Seq, permute, sel_of

CLIP_INACTIVE = 1e6  # a clip this large never acts on the net inputs of a working model
RECURRENT = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}
# ONNX operator -> timeloom activation, from the registry (runtime.primitives.ACTIVATIONS)
ACTIVATION_OPS = {a.onnx: name for name, a in ACTIVATIONS.items() if a.onnx}
FILL_LAYOUT = {"Slice", "Gather", "Squeeze", "Unsqueeze", "Reshape", "Transpose", "Identity", "Cast", "Expand",
               "Concat"}
SHAPE_ARITHMETIC = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul",
                    "Div", "Reshape", "Identity", "Max", "Min"}


def import_onnx(model, name: str | None = None) -> OnnxImport:
    """An onnx.ModelProto (or a path) -> OnnxImport (spec dict, params, I/O mapping)."""
    import onnx

    where = "the ONNX model"
    if isinstance(model, (str, Path)):
        where = str(model)
        if file_kind(model) == NOT_REGULAR:  # /dev/zero, a pipe: reading would never end
            raise InteropError(f"{model} is {NOT_REGULAR}; give an .onnx file")
        if Path(model).is_file() and Path(model).stat().st_size == 0:
            raise InteropError(f"{model} is empty (0 bytes), not an ONNX model; export the model again")
        try:
            model = onnx.load(str(model))
        except Exception as e:  # protobuf decode errors, missing files
            raise InteropError(f"{model}: cannot read the ONNX model ({e})") from e
    if not model.graph.output:
        raise InteropError(f"{where} has no graph outputs (" + (f"{len(model.graph.node)} nodes" if model.graph.node
                                                                else "an empty graph")
                           + "); a model timeloom imports computes at least one output")
    return _Importer(model, name).run()


def tensor_array(t, what: str = "initializer") -> np.ndarray:
    """numpy_helper.to_array with a clear error for a tensor whose dims do not fit its data."""
    from onnx import numpy_helper

    try:
        return numpy_helper.to_array(t)
    except Exception as e:  # noqa: BLE001 - a reshape ValueError, a bad data type, truncated data
        raise InteropError(f"{what} '{t.name}': its dims {list(t.dims)} do not match its data, or the data "
                           f"cannot be read ({e}); the model file is damaged") from e




MAX_NAME = 100  # characters of an imported name (YAML refuses a plain key over 1024)


def sanitize(name: str, fallback: str = "u") -> str:
    """A spec name from any string: letters, digits and '_', starting with a letter (a name that starts
    with '_' would be read back as metadata from a parameter file)."""
    s = re.sub(r"[^A-Za-z0-9_]", "_", name or "").lstrip("_0123456789")
    s = re.sub(r"__+", "_", s)[:MAX_NAME].rstrip("_")  # a longer YAML key could not be read back
    return s or fallback


def readable(name: str, op_type: str = "") -> str | None:
    """The meaningful part of an ONNX node or tensor name, or None for a generated one.

    torch's exporter names nodes by module scope ("/encoder/LSTM", "/head/Gemm") and tensors
    "/encoder/LSTM_output_0" or "onnx::LSTM_345": the scope is kept, the operator part dropped."""
    name = re.sub(r"_output_\d+$", "", (name or "").split("::")[-1])
    parts = [p for p in name.split("/") if p]
    if parts and op_type and re.fullmatch(rf"{re.escape(op_type)}(_\d+)?", parts[-1]):
        parts = parts[:-1]
    elif parts and re.fullmatch(r"[A-Z][A-Za-z]*_\d+", parts[-1]):
        parts = parts[:-1]  # another generated name, e.g. "LSTM_345"
    if not parts:
        return None
    s = sanitize("_".join(parts), "")
    return s or None


class _Importer(LayoutOps):
    def __init__(self, model, name):
        self.model = model
        self.graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.env = {t.name: tensor_array(t) for t in self.graph.initializer}
        self.spec = {"timeloom": 1, "name": sanitize(name or self.graph.name or "imported"),
                     "inputs": {}, "units": {}, "blocks": {}, "connections": [], "outputs": {}}
        self.params, self.used, self.warnings = {}, set(), []
        self.placed = {}  # onnx input -> (timeloom input, axes)
        self.lengths = None  # onnx input name or constant array
        self.states = {}  # onnx input -> (layout, [unit per direction])
        self.names = _metadata(model, NAMES_KEY)
        self.output_specs = _metadata(model, OUTPUTS_KEY)
        self.output_alias = _output_aliases(self.graph)
        for vi in self.graph.input:
            if vi.name not in self.env:
                dims = tuple(d.dim_value if d.HasField("dim_value") else None
                             for d in vi.type.tensor_type.shape.dim)
                self.env[vi.name] = Input(vi.name, dims)

    # -- names ----------------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        base = sanitize(hint)
        name, k = base, 1
        while name in self.used or any(u.startswith(name + ".") or name.startswith(u + ".") for u in self.used):
            k += 1
            name = f"{base}_{k}" if base[-1].isdigit() else f"{base}{k}"
        self.used.add(name)
        return name

    def unit_hint(self, node, fallback: str) -> str:
        """The name for the unit (or block) a node makes: what the exporter recorded, the graph output
        it is, the node's own name, its output's name, else `fallback` (numbered when taken)."""
        given = self.names.get(node.name)
        if isinstance(given, str):
            return given
        out = node.output[0] if node.output else ""
        if out in self.output_alias:
            return self.output_alias[out]
        return readable(node.name, node.op_type) or readable(out, node.op_type) or fallback

    def roles_of(self, node):
        """{role: unit} the exporter recorded for a recurrent node (the spec's own unit names), or None."""
        given = self.names.get(node.name)
        return given if isinstance(given, dict) else None

    # -- the walk -------------------------------------------------------------------------
    def run(self) -> OnnxImport:
        scan = next((n for n in self.graph.node if n.op_type in ("Scan", "Loop")), None)
        if scan is not None:  # reported first: the nodes before it would fail on what it is for
            raise UnsupportedError(f"{node_label(scan)}: a {scan.op_type} recurrence cannot be imported; timeloom "
                                   f"imports recurrences written as LSTM/GRU/RNN operators (timeloom export writes "
                                   f"them so for exact cells unless --scan-only is given)")
        for node in self.graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedError(f"{node_label(node)}: operators of domain '{node.domain}' are not supported")
            missing = [i for i in node.input if i and i not in self.env]
            if missing:
                raise InteropError(f"{node_label(node)}: input '{missing[0]}' is not produced by any earlier node")
            args = [self.env[i] if i else None for i in node.input]
            if node.op_type not in RECURRENT and all(a is None or isinstance(a, np.ndarray) for a in args):
                outs = self.fold(node, args)
            elif node.op_type == "Shape" or any(isinstance(a, Dyn) for a in args):
                outs = self.dynamic(node, args, _attrs(node))
            elif node.op_type in FILL_LAYOUT and isinstance(args[0], Fill) and all(
                    not isinstance(a, (Seq, Linear, Input)) and (not isinstance(a, Fill) or a == args[0])
                    for a in args):
                outs = [args[0]]  # a slice / reshape of a constant-filled tensor is filled with the same value
            elif node.op_type not in RECURRENT and any(isinstance(a, Fill) for a in args):
                raise UnsupportedError(f"{node_label(node)}: reads a tensor of run-time shape filled with a constant "
                                       "(ConstantOfShape / Expand); that is supported only as a recurrent node's "
                                       "initial_h / initial_c")
            else:
                handler = self._activation if node.op_type in ACTIVATION_OPS else getattr(self, "op_" + node.op_type,
                                                                                          None)
                if handler is None:
                    raise UnsupportedError(
                        f"{node_label(node)}: op type {node.op_type} is not supported by timeloom import "
                        "(supported: LSTM, GRU, RNN, MatMul, Gemm, Add, Sum, Sub, Mul, Div, "
                        f"{', '.join(ACTIVATION_OPS)}, Identity, Dropout, Transpose, Squeeze, Unsqueeze, Reshape, "
                        "Concat, Gather, and any node on constants)")
                outs = handler(node, args, _attrs(node))
            for name, value in zip(node.output, outs):
                if name:
                    self.env[name] = value
        return self.finish()

    def fold(self, node, args):
        from onnx.reference import ReferenceEvaluator

        try:
            ref = ReferenceEvaluator(node, opsets={"": self.opset})
            feeds = {i: a for i, a in zip(node.input, args) if i}
            return ref.run(None, feeds)
        except Exception as e:
            raise UnsupportedError(f"{node_label(node)}: could not evaluate it on its constant inputs ({e})") from e

    def dynamic(self, node, args, attrs):
        """Shape arithmetic: Shape -> Gather/Unsqueeze/Concat/... -> ConstantOfShape (a zero initial state,
        as torch's ONNX exporter writes it)."""
        op = node.op_type
        if op == "ConstantOfShape":
            value = attrs.get("value")
            return [Fill(float(tensor_array(value, f"{node_label(node)}: value").reshape(-1)[0])
                         if value is not None else 0.0)]
        if op == "Expand" and isinstance(args[0], np.ndarray) and args[0].size and np.all(args[0] == args[0].flat[0]):
            return [Fill(float(args[0].flat[0]))]
        if op in SHAPE_ARITHMETIC and all(a is None or isinstance(a, (np.ndarray, Dyn)) or op == "Shape"
                                          for a in args):
            return [Dyn() for _ in node.output]
        raise UnsupportedError(f"{node_label(node)}: computes with the run-time shape of a tensor; only shapes "
                               "that build a constant-filled initial state (Shape -> Gather/Unsqueeze/Concat -> "
                               "ConstantOfShape or Expand) are supported")

    def finish(self) -> OnnxImport:
        outputs = {}
        for vi in self.graph.output:
            v = self.env.get(vi.name)
            where = f"graph output '{vi.name}'"
            if isinstance(v, Linear):
                v = self.materialize(v, "identity", self.output_alias.get(vi.name, vi.name))
            if not isinstance(v, Seq):
                raise UnsupportedError(f"{where} is not computed by the recurrent network "
                                       f"(it is a {'constant' if isinstance(v, np.ndarray) else 'graph input'})")
            outputs[vi.name] = v
            for p in v.parts:
                act = self.spec["units"].get(p.unit, {}).get("activation") if p.unit in self.spec["units"] else None
                loss = {"softmax": "cross_entropy", "sigmoid": "bce"}.get(act, "mse") if isinstance(act, str) else "mse"
                prev = self.spec["outputs"].get(p.unit)
                at = "last" if p.sel == "last" and (prev is None or prev["at"] == "last") else "all"
                self.spec["outputs"][p.unit] = {"loss": loss, "at": at}
                given = self.output_specs.get(p.unit)
                if p.sel == "all" and isinstance(given, dict) and given.get("loss") in ("mse", "cross_entropy", "bce",
                                                                                        "none") \
                        and given.get("at") in ("all", "last", "mask"):
                    self.spec["outputs"][p.unit] = {"loss": given["loss"], "at": given["at"]}
        spec = {k: v for k, v in self.spec.items() if v or k in ("timeloom", "name")}
        result = OnnxImport(spec=spec, params=self.params, inputs=dict(self.placed), outputs=outputs,
                            lengths=self.lengths, states=dict(self.states), warnings=self.warnings)
        result.check()
        return result

    # -- values -------------------------------------------------------------------------
    def seq(self, v, where, axes=("T", "B", "F"), size=None) -> Seq:
        """A Seq for `v`: a pending Linear becomes an identity unit; a graph input is placed."""
        if isinstance(v, Seq):
            return v
        if isinstance(v, Linear):
            return self.materialize(v, "identity", "linear")
        if isinstance(v, Input):
            return self.place(v, axes, size, where)
        raise UnsupportedError(f"{where}: expected a sequence tensor, got a constant")

    def place(self, inp: Input, axes, size, where) -> Seq:
        """Fix a graph input's axes from its first use (`axes`, after the Transposes it went through)."""
        if inp.name in self.placed:
            name, orig = self.placed[inp.name]
            part = Part(name, self.spec["inputs"][name]["size"])
            return Seq(permute(orig, inp.perm, where) if inp.perm else orig, (part,))
        orig = list(axes)
        if inp.perm is not None:
            perm = list(inp.perm)
            orig = [None] * len(axes)
            for i, p in enumerate(perm):
                orig[p] = axes[i]
        orig = tuple(orig)
        if len(inp.shape) != len(orig):
            raise UnsupportedError(f"{where}: graph input '{inp.name}' has rank {len(inp.shape)}, a sequence "
                                   f"input here is {len(orig)}-D ({', '.join(orig)})")
        static = inp.shape[orig.index("F")]
        if size is None:
            size = static
        if size is None:
            raise UnsupportedError(f"graph input '{inp.name}': its feature size is not static")
        if static is not None and static != size:
            raise InteropError(f"{where}: graph input '{inp.name}' has {static} features, the node needs {size}")
        name = self.fresh(inp.name)
        self.spec["inputs"][name] = {"size": int(size)}
        self.placed[inp.name] = (name, orig)
        return Seq(tuple(axes), (Part(name, int(size)),))

    def linear(self, v, where) -> Linear:
        if isinstance(v, Linear):
            return v
        s = self.seq(v, where)
        if "D" in s.axes:
            raise UnsupportedError(f"{where}: the tensor still has the num_directions axis; Squeeze it "
                                   "(one direction) or Transpose + Reshape it (directions side by side) first")
        terms, col = [], 0
        for p in s.parts:
            m = np.zeros((p.size, s.size))
            m[:, col:col + p.size] = np.eye(p.size)
            terms.append((p, m))
            col += p.size
        return Linear(s.axes, terms, s.size)

    def materialize(self, lin: Linear, activation, hint) -> Seq:
        """A unit computing activation(lin)."""
        where = f"unit for '{hint}'"
        sel = sel_of([p for p, _ in lin.terms], where)
        unit = self.fresh(hint)
        by_source = {}
        for p, m in lin.terms:
            by_source[p.unit] = by_source[p.unit] + m if p.unit in by_source else m
        spec_unit = {"size": lin.size, "activation": activation}
        if lin.bias is None:
            spec_unit["bias"] = False
        self.spec["units"][unit] = spec_unit
        for src, m in by_source.items():
            if m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0])):
                self.spec["connections"].append({"from": src, "to": unit, "weight": "identity"})
            else:
                self.spec["connections"].append({"from": src, "to": unit})
                self.params[f"{src}->{unit}"] = m.T.copy()
        if lin.bias is not None:
            self.params[f"{unit}.bias"] = np.broadcast_to(lin.bias, (lin.size,)).astype(np.float64).copy()
        return Seq(lin.axes, (Part(unit, lin.size, sel),))

    # -- affine nodes -------------------------------------------------------------------
    def op_MatMul(self, node, args, attrs):
        a, b = args
        where = node_label(node)
        if not isinstance(b, np.ndarray) or b.ndim != 2:
            raise UnsupportedError(f"{where}: only tensor @ constant matrix is supported (the second input "
                                   "must be a 2-D initializer)")
        x = self.seq(a, where, size=b.shape[0])
        return [self._matmul(x, b.astype(np.float64), where)]

    def _matmul(self, x: Seq, m, where) -> Linear:
        if "D" in x.axes:
            raise UnsupportedError(f"{where}: the tensor still has the num_directions axis; Squeeze it "
                                   "(one direction) or Transpose + Reshape it (directions side by side) first")
        if x.axes[-1] != "F" or x.size != m.shape[0]:
            raise UnsupportedError(f"{where}: multiplies axis '{x.axes[-1]}' of size {x.size} by a "
                                   f"{m.shape[0]}-row matrix; only the feature axis can be multiplied")
        terms, row = [], 0
        for p in x.parts:
            terms.append((p, m[row:row + p.size]))
            row += p.size
        return Linear(x.axes, terms, m.shape[1])

    def op_Gemm(self, node, args, attrs):
        where = node_label(node)
        a, b = args[0], args[1]
        c = args[2] if len(args) > 2 else None
        if attrs.get("transA", 0):
            raise UnsupportedError(f"{where}: transA=1 transposes time/batch with features; not supported")
        if not isinstance(b, np.ndarray) or (c is not None and not isinstance(c, np.ndarray)):
            raise UnsupportedError(f"{where}: B and C must be constants (initializers)")
        m = attrs.get("alpha", 1.0) * (b.T if attrs.get("transB", 0) else b).astype(np.float64)
        x = self.seq(a, where, size=m.shape[0])
        if len(x.axes) != 2:
            raise UnsupportedError(f"{where}: Gemm needs a 2-D input")
        lin = self._matmul(x, m, where)
        if c is not None:
            lin.bias = self._feature_vector(attrs.get("beta", 1.0) * c.astype(np.float64), lin, where)
        return [lin]

    def _feature_vector(self, c, lin, where):
        if c.ndim and (any(d != 1 for d in c.shape[:-1]) or c.shape[-1] not in (1, lin.size)):
            raise UnsupportedError(f"{where}: the constant of shape {c.shape} does not broadcast along the "
                                   f"features only (expected ({lin.size},) or (1, ..., {lin.size}))")
        return np.broadcast_to(c.reshape(-1) if c.ndim else c, (lin.size,)).astype(np.float64)

    def op_Add(self, node, args, attrs, sign=1.0):
        where = node_label(node)
        a, b = args
        if isinstance(b, np.ndarray) or isinstance(a, np.ndarray):
            const, sym, first = (b, a, True) if isinstance(b, np.ndarray) else (a, b, False)
            lin = self.linear(sym, where)
            if not first and sign < 0:  # const - x
                lin = _scaled(lin, -1.0)
                sign = 1.0
            c = self._feature_vector(const.astype(np.float64), lin, where) * sign
            return [Linear(lin.axes, lin.terms, lin.size, c if lin.bias is None else lin.bias + c)]
        la, lb = self.linear(a, where), self.linear(b, where)
        if sign < 0:
            lb = _scaled(lb, -1.0)
        if la.axes != lb.axes or la.size != lb.size:
            raise UnsupportedError(f"{where}: adds tensors of different layouts ({la.axes}, {lb.axes}); "
                                   "broadcasting over time or batch is not supported")
        bias = la.bias if lb.bias is None else (lb.bias if la.bias is None else la.bias + lb.bias)
        return [Linear(la.axes, la.terms + lb.terms, la.size, bias)]

    def op_Sum(self, node, args, attrs):
        where, acc = node_label(node), args[0]
        for a in args[1:]:
            acc = self.op_Add(node, [acc, a], attrs)[0]
        return [acc if len(args) > 1 else self.linear(acc, where)]

    def op_Sub(self, node, args, attrs):
        return self.op_Add(node, args, attrs, sign=-1.0)

    def op_Mul(self, node, args, attrs, invert=False):
        where = node_label(node)
        a, b = args
        const, sym = (b, a) if isinstance(b, np.ndarray) else (a, b)
        if not isinstance(const, np.ndarray) or (invert and const is not b):
            raise UnsupportedError(f"{where}: only multiplication by a constant (a scalar or one value per "
                                   "feature) is supported")
        lin = self.linear(sym, where)
        c = self._feature_vector(const.astype(np.float64), lin, where)
        return [_scaled(lin, 1.0 / c if invert else c)]

    def op_Div(self, node, args, attrs):
        return self.op_Mul(node, args, attrs, invert=True)

    # -- activations --------------------------------------------------------------------
    def _activation(self, node, args, attrs):
        where = node_label(node)
        act = ACTIVATION_OPS[node.op_type]
        if node.op_type == "Softmax":
            x = args[0]
            rank = len(x.axes) if isinstance(x, (Seq, Linear)) else len(x.shape)
            axis = attrs.get("axis", -1 if self.opset >= 13 else 1) % rank
            if axis != rank - 1:
                raise UnsupportedError(f"{where}: softmax over axis {axis}; timeloom's softmax is over the "
                                       f"features (the last axis, {rank - 1})")
        ours = (HARD_SIGMOID_ALPHA, HARD_SIGMOID_BETA)  # also ONNX's defaults
        if node.op_type == "HardSigmoid" and (attrs.get("alpha", ours[0]), attrs.get("beta", ours[1])) != ours:
            raise UnsupportedError(f"{where}: HardSigmoid alpha {attrs.get('alpha', ours[0])}, beta "
                                   f"{attrs.get('beta', ours[1])}; timeloom's hard_sigmoid is alpha {ours[0]:g}, "
                                   f"beta {ours[1]:g}")
        return [self.materialize(self.linear(args[0], where), act, self.unit_hint(node, act))]

    def op_Identity(self, node, args, attrs):
        return [args[0]]

    def op_Dropout(self, node, args, attrs):
        return [args[0]]  # inference: the identity (a mask output, if asked for, is not supported)

    # -- recurrent operators ------------------------------------------------------------
    def _recurrent(self, node, args, attrs):
        from .onnx_recurrent import import_recurrent
        return import_recurrent(self, node, args, attrs, RECURRENT[node.op_type])

    op_LSTM = op_GRU = op_RNN = _recurrent


def _metadata(model, key) -> dict:
    """A JSON object timeloom's exporter wrote under metadata_props `key` ({} when absent or unreadable)."""
    import json

    for p in model.metadata_props:
        if p.key == key:
            try:
                found = json.loads(p.value)
            except ValueError:
                return {}
            return found if isinstance(found, dict) else {}
    return {}


def _output_aliases(graph) -> dict:
    """{tensor: graph output name} for tensors that are a graph output or reach one through Identity nodes
    (timeloom's exporter ends every output so; the unit is then named after the output)."""
    alias = {o.name: readable(o.name) or sanitize(o.name) for o in graph.output}
    changed = True
    while changed:
        changed = False
        for node in graph.node:
            if node.op_type == "Identity" and node.output and node.output[0] in alias and node.input[0] not in alias:
                alias[node.input[0]] = alias[node.output[0]]
                changed = True
    return alias


def _scaled(lin: Linear, c) -> Linear:
    return Linear(lin.axes, [(p, m * c) for p, m in lin.terms], lin.size,
                  None if lin.bias is None else lin.bias * c)


def _attrs(node) -> dict:
    from onnx import helper

    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list):
            v = [x.decode() if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out

