"""Symbolic tensors of an ONNX graph being imported: what each ONNX value is in timeloom terms.

An ONNX value is a constant (numpy array), a graph input not placed yet (`Input`), a tensor
computed by timeloom units (`Seq`: its axes and the units whose outputs it holds) or an affine
map of such tensors that has not become a unit yet (`Linear`: MatMul/Gemm/Add/Mul fold into
it until an activation, or anything that needs a unit, turns it into one).

Axis labels: "T" time, "B" batch, "D" the recurrent operators' num_directions, "F" features,
"1" a size-1 axis, "T*B" / "B*T" time and batch flattened into one axis. A Seq with "D" holds
one part per direction; without it its parts are concatenated along F. Each part also says
which time steps it holds: "all" (a trajectory), "last" (each sequence's final step: Y_h of a
forward direction) or "first" (step 0: Y_h of a reverse direction); a tensor without "T"
holds "last" or "first" parts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import UnsupportedError


@dataclass(frozen=True)
class Part:
    unit: str
    size: int
    sel: str = "all"  # "all" | "last" | "first"


@dataclass
class Seq:
    axes: tuple
    parts: tuple

    @property
    def size(self) -> int:
        return self.parts[0].size if "D" in self.axes else sum(p.size for p in self.parts)

    def dims(self) -> list:
        """Known sizes per axis (None: T, B or T*B, known only at run time)."""
        known = {"D": len(self.parts), "F": self.size, "1": 1}
        return [known.get(a) for a in self.axes]


@dataclass
class Linear:
    """sum over terms of part @ M (M: (part.size, size)) + bias, on `axes` (F last)."""

    axes: tuple
    terms: list  # [(Part, ndarray)]
    size: int
    bias: np.ndarray | None = None

    def dims(self) -> list:
        return [{"F": self.size, "1": 1}.get(a) for a in self.axes]


@dataclass
class Input:
    """A graph input whose axes are not known yet (they are fixed by its first real use)."""

    name: str
    shape: tuple  # static dims or None
    perm: tuple | None = None  # a Transpose applied to it before use
    notes: list = field(default_factory=list)


class Dyn:
    """An integer tensor computed from run-time shapes (Shape -> Gather -> Concat ...): its content is
    not tracked; it may only end in a ConstantOfShape / Expand that builds a constant initial state."""


@dataclass
class Fill:
    """A tensor of run-time shape filled with one value (ConstantOfShape, Expand of a constant)."""

    value: float


def sel_of(parts, where: str) -> str:
    sels = {p.sel for p in parts}
    if len(sels) > 1:
        raise UnsupportedError(f"{where}: combines the last step of a forward direction with the first "
                               "step of a reverse one (Y_h of a bidirectional operator); a timeloom unit "
                               "reads all its sources at one time step: use each direction's Y_h on its own")
    return sels.pop()


def permute(axes: tuple, perm, where: str) -> tuple:
    perm = list(range(len(axes)))[::-1] if perm is None else list(perm)
    if sorted(perm) != list(range(len(axes))):
        raise UnsupportedError(f"{where}: perm {perm} does not fit a rank-{len(axes)} tensor")
    return tuple(axes[p] for p in perm)


def squeeze(axes: tuple, dims: list, which, where: str) -> tuple:
    rank = len(axes)
    which = [a % rank for a in which] if which is not None else [i for i, d in enumerate(dims) if d == 1]
    for a in which:
        if dims[a] != 1:
            raise UnsupportedError(f"{where}: axis {a} ({_label(axes[a])}) is not of size 1")
    return tuple(ax for i, ax in enumerate(axes) if i not in which)


def unsqueeze(axes: tuple, which, where: str) -> tuple:
    out = list(axes)
    rank = len(axes) + len(which)
    for a in sorted(x % rank for x in which):
        out.insert(a, "1")
    return tuple(out)


def reshape(axes: tuple, dims: list, shape, where: str) -> tuple:
    """The axes after Reshape(shape): only merges and splits that keep time, batch and features
    apart (D with F: the directions side by side; T with B; dropping or adding size-1 axes)."""
    shape = [int(s) for s in shape]
    groups = _match(axes, dims, shape, where)
    out = []
    for g in groups:
        labels = [axes[i] for i in g if axes[i] != "1" and not (axes[i] == "D" and dims[i] == 1)]
        if not labels:
            out.append("1")
        elif len(labels) == 1:
            out.append(labels[0])
        elif labels == ["D", "F"]:
            out.append("F")  # (D, H) -> D*H: the directions' features side by side, direction 0 first
        elif labels in (["T", "B"], ["B", "T"]):
            out.append("*".join(labels))
        else:
            raise UnsupportedError(f"{where}: Reshape to {shape} merges the {' and '.join(map(_label, labels))} "
                                   "axes; timeloom keeps time, batch and features apart (supported: merging "
                                   "num_directions with features, time with batch, and size-1 axes)")
    return tuple(out)


def _label(a):
    return {"T": "time", "B": "batch", "D": "num_directions", "F": "feature", "1": "size-1",
            "T*B": "time*batch", "B*T": "batch*time"}.get(a, a)


def _match(axes, dims, shape, where):
    """Groups of input axes, one per entry of `shape` (0 copies, -1 takes the rest)."""
    n = len(axes)
    if shape.count(-1) > 1:
        raise UnsupportedError(f"{where}: Reshape shape {shape} has more than one -1")

    def take(i, e, step):
        """Axes from i (going `step`) whose known sizes multiply to e > 1."""
        group, prod = [], 1
        while 0 <= i < n and prod != e:
            d = dims[i]
            if d is None or prod * d > e:
                break
            group.append(i)
            prod *= d
            i += step
        if prod != e:
            raise UnsupportedError(f"{where}: cannot reshape {[_label(a) for a in axes]} to {shape} "
                                   "(time and batch sizes are known only at run time: use 0 or -1 for them)")
        return group, i

    def run(entries, start, step):
        groups, i = [], start
        for j, e in entries:
            if e == 0:
                if j != i:
                    raise UnsupportedError(f"{where}: Reshape shape {shape}: entry 0 at {j} copies an axis "
                                           "that an earlier entry merged")
                groups.append([i])
                i += step
            elif e == 1:
                if 0 <= i < n and dims[i] == 1:
                    groups.append([i])
                    i += step
                else:
                    groups.append([])
            else:
                g, i = take(i, e, step)
                groups.append(g if step > 0 else g[::-1])
        return groups, i

    k = shape.index(-1) if -1 in shape else len(shape)
    left, i = run(list(enumerate(shape[:k])), 0, 1)
    if k == len(shape):
        if i != n and any(dims[m] != 1 for m in range(i, n)):
            raise UnsupportedError(f"{where}: Reshape shape {shape} does not cover all axes")
        return left
    right, r = run([(j, e) for j, e in reversed(list(enumerate(shape)))][:len(shape) - k - 1], n - 1, -1)
    if any(e == 0 for e in shape[k + 1:]) and len(shape) != n:
        raise UnsupportedError(f"{where}: Reshape shape {shape}: 0 after -1 with a change of rank")
    middle = list(range(i, r + 1))
    return left + [middle] + right[::-1]


def realize(value: Seq, traj: dict, lengths=None) -> np.ndarray:
    """The ONNX tensor `value` from timeloom trajectories {unit: (T, B, n)}."""
    arrays = []
    for p in value.parts:
        y = np.asarray(traj[p.unit])
        if p.sel == "first":
            y = y[0]
        elif p.sel == "last":
            idx = np.full(y.shape[1], y.shape[0] - 1) if lengths is None else np.asarray(lengths) - 1
            y = y[idx, np.arange(y.shape[1])]
        arrays.append(y)
    has_t = value.parts[0].sel == "all"
    if "D" in value.axes:
        base, labels = np.stack(arrays, axis=-2), ["B", "D", "F"]
    else:
        base, labels = np.concatenate(arrays, axis=-1), ["B", "F"]
    if has_t:
        labels = ["T"] + labels
    flat = [lab for a in value.axes if a != "1" for lab in a.split("*")]
    base = base.transpose([labels.index(lab) for lab in flat])
    sizes, k = [], 0
    for a in value.axes:
        if a == "1":
            sizes.append(1)
            continue
        m = len(a.split("*"))
        sizes.append(int(np.prod(base.shape[k:k + m])))
        k += m
    return base.reshape(sizes)
