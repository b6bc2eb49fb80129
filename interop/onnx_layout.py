"""The layout nodes of an imported ONNX graph (Transpose, Squeeze, Unsqueeze, Reshape, Concat,
Gather on num_directions): they change a symbolic tensor's axes (interop.onnx_values), never
the units. A mixin of the importer (it needs `seq` and `opset`)."""
from __future__ import annotations

import numpy as np

from .errors import UnsupportedError, node_label
from .onnx_values import Input, Linear, Seq, permute, reshape, squeeze, unsqueeze


class LayoutOps:
    def _layout(self, v, where, fn):
        if isinstance(v, Input):
            raise UnsupportedError(f"{where}: reshaping a graph input before any other use is not supported")
        if isinstance(v, Seq):
            return Seq(fn(v.axes, v.dims()), v.parts)
        axes = fn(v.axes, v.dims())
        if "F" not in axes or axes[-1] != "F":
            v = self.seq(v, where)
            return Seq(fn(v.axes, v.dims()), v.parts)
        return Linear(axes, v.terms, v.size, v.bias)

    def op_Transpose(self, node, args, attrs):
        where, v = node_label(node), args[0]
        if isinstance(v, Input):
            perm = attrs.get("perm")
            if perm is None:
                perm = list(range(len(v.shape)))[::-1]
            inner = list(range(len(v.shape))) if v.perm is None else list(v.perm)
            return [Input(v.name, v.shape, tuple(inner[p] for p in perm))]
        return [self._layout(v, where, lambda axes, dims: permute(axes, attrs.get("perm"), where))]

    def op_Squeeze(self, node, args, attrs):
        if self.opset < 13:
            which = attrs.get("axes")
        else:
            which = list(args[1]) if len(args) > 1 and args[1] is not None else None
        where = node_label(node)
        return [self._layout(args[0], where, lambda axes, dims: squeeze(axes, dims, which, where))]

    def op_Unsqueeze(self, node, args, attrs):
        which = attrs.get("axes") if self.opset < 13 else list(args[1])
        where = node_label(node)
        return [self._layout(args[0], where, lambda axes, dims: unsqueeze(axes, which, where))]

    def op_Reshape(self, node, args, attrs):
        where = node_label(node)
        if not isinstance(args[1], np.ndarray):
            raise UnsupportedError(f"{where}: the target shape must be a constant")
        if attrs.get("allowzero", 0) and 0 in list(args[1]):
            raise UnsupportedError(f"{where}: allowzero=1 with a 0 in the shape (an empty tensor)")
        return [self._layout(args[0], where, lambda axes, dims: reshape(axes, dims, args[1], where))]

    def op_Concat(self, node, args, attrs):
        where = node_label(node)
        vals = [self.seq(a, where) for a in args]
        rank = len(vals[0].axes)
        axis = attrs["axis"] % rank
        if any(v.axes != vals[0].axes for v in vals) or vals[0].axes[axis] not in ("F", "D"):
            raise UnsupportedError(f"{where}: only concatenation along the features (or num_directions) of "
                                   "tensors with the same layout is supported")
        return [Seq(vals[0].axes, tuple(p for v in vals for p in v.parts))]

    def op_Gather(self, node, args, attrs):
        where = node_label(node)
        v, idx = args
        if not isinstance(v, Seq) or not isinstance(idx, np.ndarray) or idx.ndim != 0:
            raise UnsupportedError(f"{where}: only picking one direction (a scalar constant index on the "
                                   "num_directions axis) is supported")
        axis = attrs.get("axis", 0) % len(v.axes)
        if v.axes[axis] != "D":
            raise UnsupportedError(f"{where}: Gather along the {v.axes[axis]} axis; only the num_directions "
                                   "axis can be indexed")
        part = v.parts[int(idx) % len(v.parts)]
        return [Seq(tuple(a for i, a in enumerate(v.axes) if i != axis), (part,))]
