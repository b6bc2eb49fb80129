"""The primitive model a spec compiles to: units, connections, gates, leaks, delays.

Everything the runtime sees is one of these records; templates (blocks) lower to them.
Each record keeps the source position (`pos`) of the spec text it came from, so later
checks can point at the right line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Init = dict  # normalized initializer: {"kind": "glorot"|"orthogonal"|"normal"|"uniform"|"zeros"|"constant"|"sparse", ...}


@dataclass(frozen=True)
class Pos:
    """A place in a spec file: 1-based line and column, and the JSON path of the node."""

    file: str = "<spec>"
    line: int = 0
    column: int = 0
    path: tuple = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Activation:
    """A unit's squashing function; `lo`/`hi` are used by scaled_sigmoid and hard_tanh only."""

    name: str = "identity"
    lo: float = 0.0
    hi: float = 1.0

    def __str__(self) -> str:
        if self.name in ("scaled_sigmoid", "hard_tanh"):
            return f"{self.name}[{self.lo:g},{self.hi:g}]"
        return self.name


@dataclass
class Leak:
    """out_t = alpha * out_{t-s} + (1 - alpha) * f(net_t), s = the unit's scan direction."""

    alpha: Init  # initializer of the (size,) parameter "{unit}.alpha"
    trainable: bool = False


@dataclass
class Unit:
    name: str
    size: int
    activation: Activation = field(default_factory=Activation)
    bias: Init | None = field(default_factory=lambda: {"kind": "zeros"})  # None: no bias
    bias_trainable: bool = True
    initial: str = "zeros"  # "zeros" | "learned": the state before t=0 ("{unit}.h0")
    leak: Leak | None = None
    pos: Pos = field(default_factory=Pos)


@dataclass(frozen=True)
class Gate:
    """Multiply a contribution by another unit's output at the target's time step."""

    unit: str
    complement: bool = False  # use (1 - g) instead of g
    at: str = "target"  # "target": g * (W src); "source": W (g * src)


# The weight kinds that are parameters (and so carry a gradient when trainable); identity and
# fixed weights are constants. The one place this rule lives: everything else asks
# `Connection.has_param` or this tuple.
WEIGHTS_WITH_PARAMS = ("full", "diagonal")


@dataclass
class Connection:
    name: str  # the parameter name of its weight, e.g. "h->h@1" (also its identity)
    source: str  # an input or a unit
    target: str  # a unit
    delay: int = 0
    weight: str = "full"  # "full" | "diagonal" | "identity" | "fixed"
    init: Init | None = None  # weight initializer (full/diagonal); None for identity/fixed
    fixed: Any = None  # weight == "fixed": a scalar (scaled identity) or a (target, source) matrix
    trainable: bool = True
    bias: Init | None = None  # a bias inside the connection, before its gate: "{name}.bias"
    gate: Gate | None = None
    pos: Pos = field(default_factory=Pos)
    # gradient: stop -- backpropagation sends no error to the source through this connection
    # (its weight still gets dL/dW, with the source's value taken as a constant: torch's .detach())
    stop_gradient: bool = False

    @property
    def has_param(self) -> bool:
        return self.weight in WEIGHTS_WITH_PARAMS


@dataclass
class Output:
    unit: str
    loss: str = "mse"  # "mse" | "cross_entropy" | "bce" | "none"
    at: str = "all"  # "all" | "last" | "mask"
    pos: Pos = field(default_factory=Pos)


@dataclass
class ParamInfo:
    """One trainable or fixed array of the network, named as in docs/ARCHITECTURE.md."""

    name: str
    shape: tuple
    init: Init
    trainable: bool
    kind: str  # "weight" | "bias" | "conn_bias" | "alpha" | "h0"
    owner: str  # the unit or connection name it belongs to


@dataclass
class Component:
    """A strongly connected component of the folded graph, scanned as one.

    `units` are in intra-step order (delay-0 and gate dependencies first);
    `direction` is +1 (scan forward in time), -1 (backward) or 0 (no recurrence:
    computed for all steps at once); `delays` are the delays of its internal edges.
    """

    units: tuple
    direction: int
    delays: tuple = ()

    @property
    def recurrent(self) -> bool:
        return self.direction != 0
