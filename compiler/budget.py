"""Time and memory bounds, checked before anything is allocated.

The compiler counts what a spec will build before it builds it: expanded units and
connections (while templates expand, `unit_budget`), parameters, and the memory of one
training step from the sizes, the sequence length T and the batch size B (`estimate`).
Beyond a bound the work is refused with the estimate and the setting that raises the bound:

    TIMELOOM_MAX_MEMORY   memory of one training step, of a data set, of a graph (default 8GiB;
                          a number of bytes or e.g. 512MB, 16GiB)
    TIMELOOM_MAX_UNITS    expanded units of a spec (default 20000); connections: 4x that
    TIMELOOM_MAX_STEPS    time steps of one sequence, one generated series, `--generate N`,
                          and of `compile --steps` (default 1000000)

Pictures (png/svg) of more than MAX_PICTURE_NODES nodes are refused (a smaller --steps or
--folded draws them); text graph formats are bounded by TIMELOOM_MAX_MEMORY.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import TimeloomError

GiB = 1 << 30
DEFAULT_MAX_MEMORY = 8 * GiB
DEFAULT_MAX_UNITS = 20_000
DEFAULT_MAX_STEPS = 1_000_000
CONNECTIONS_PER_UNIT = 4  # the connection budget is this many times the unit budget
MAX_PICTURE_NODES = 10_000  # png/svg: beyond this a picture is a grey blur
GRAPH_NODE_BYTES = 2_000  # about what one node and its edges cost in a networkx graph and its file
# what one node or one edge costs while the graph is built and written (peak RSS, measured: json
# 2.5 KB, graphml 4.2 KB per node + edge on elman and lstm_peephole)
GRAPH_ITEM_BYTES = 5_000

# One training step, per (t, b) and neuron, keeps at most about this many numbers: the output
# h_t, the pre-activation (or hoisted product block), the backward d/dh and d/dnet (identity
# units store less). An upper bound, checked against tracemalloc's peak in tests/test_bounds.py
# (the peak is 1/2 to 1/7 of it on the specs in specs/).
WORDS_PER_NEURON_STEP = 3
WORDS_PER_INPUT_STEP = 3  # the input batch, its delayed reads, the target
OPTIMIZER_SLOTS = {"adam": 2, "rmsprop": 1, "sgd": 1, "momentum": 1, "adagrad": 1, "ridge": 0}


class BudgetError(TimeloomError):
    """The work would exceed a time or memory bound; the message says how to raise it."""


# -- limits ---------------------------------------------------------------------------------------
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$")


def parse_bytes(text: str) -> int:
    """'8GiB' -> 8 * 2**30, '512MB' -> 512e6, '1e9' -> 10**9; ValueError otherwise."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (write e.g. 8GiB, 512MB or a number of bytes)")
    number, prefix, binary = float(m.group(1)), m.group(2).upper(), m.group(3)
    power = " KMGT".index(prefix) if prefix else 0
    return int(number * ((1024 if binary or not prefix else 1000) ** power if prefix else 1))


def _env(name: str, default: int, parse=int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = parse(raw.strip().replace("_", ""))
    except ValueError:
        raise BudgetError(f"{name}={raw!r} is not a valid limit; give a positive number"
                          + (" of bytes such as 8GiB or 512MB" if name.endswith("MEMORY") else "")) from None
    if value < 1:
        raise BudgetError(f"{name}={raw!r} must be positive")
    return value


def max_memory() -> int:
    return _env("TIMELOOM_MAX_MEMORY", DEFAULT_MAX_MEMORY, parse_bytes)


def max_units() -> int:
    return _env("TIMELOOM_MAX_UNITS", DEFAULT_MAX_UNITS)


def max_connections() -> int:
    return CONNECTIONS_PER_UNIT * max_units()


def max_steps() -> int:
    return _env("TIMELOOM_MAX_STEPS", DEFAULT_MAX_STEPS)


def human(n: float) -> str:
    """Bytes as 1.5 GiB / 12.0 MiB / 512 B."""
    for unit, size in (("TiB", 1 << 40), ("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} B"


def _raise_memory(what: str, need: float) -> str:
    limit = max_memory()
    head = f"{what} needs about {human(need)}, more than the limit of {human(limit)}; make it smaller"
    if need > 1 << 50:  # a petabyte: raising the limit is no answer
        return head + " (no machine has that much memory; the limit is TIMELOOM_MAX_MEMORY)"
    return (head + f", or raise the limit with the environment variable TIMELOOM_MAX_MEMORY (e.g. "
            f"TIMELOOM_MAX_MEMORY={int(-(-need // GiB))}GiB) if the machine has the memory")


def check_memory(what: str, need: float) -> None:
    """Refuse `what` when it needs more than TIMELOOM_MAX_MEMORY bytes."""
    if need > max_memory():
        raise BudgetError(_raise_memory(what, need))


def check_steps(what: str, steps: int, setting: str) -> None:
    """Refuse `steps` time steps of `what` beyond TIMELOOM_MAX_STEPS; `setting` is what to lower."""
    limit = max_steps()
    if steps > limit:
        raise BudgetError(f"{what} has {steps:,} time steps, more than the limit of {limit:,}; lower "
                          f"{setting}, or raise the limit with the environment variable TIMELOOM_MAX_STEPS "
                          f"(e.g. TIMELOOM_MAX_STEPS={steps})")


# -- counting while templates expand --------------------------------------------------------------
class UnitBudget:
    """Counts what template expansion generates; `over(units, connections)` says what is too many."""

    def __init__(self):
        self.units_limit = max_units()
        self.connections_limit = max_connections()

    def units_message(self, count: int, where: str = "the spec") -> str | None:
        if count <= self.units_limit:
            return None
        return (f"{where} expands to {_count_text(count)} units, more than the limit of "
                f"{self.units_limit:,}; use fewer or smaller blocks (a template that uses another "
                f"template twice doubles at every level), or raise the limit with the environment "
                f"variable TIMELOOM_MAX_UNITS")

    def connections_message(self, count: int, where: str = "the spec") -> str | None:
        if count <= self.connections_limit:
            return None
        return (f"{where} expands to {_count_text(count)} connections, more than the limit of "
                f"{self.connections_limit:,} ({CONNECTIONS_PER_UNIT} x TIMELOOM_MAX_UNITS); use fewer "
                f"blocks, taps or ports, or raise TIMELOOM_MAX_UNITS")


def _count_text(n: float) -> str:
    return "more than 10^18" if n > 10 ** 18 else f"{int(n):,}"


# -- the estimate of one training step ------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """What a compiled spec will allocate: counts are exact, step memory is an estimate."""

    units: int  # expanded units
    connections: int
    neurons: int  # sum of the unit sizes
    input_features: int  # sum of the input sizes
    parameters: int  # trainable + fixed, the numbers Network.params holds
    trainable: int
    steps: int | None  # T of one training sequence (None: the data section does not say)
    batch: int  # B
    optimizer: str = "adam"
    dtype_bytes: int = 4

    @property
    def parameter_bytes(self) -> int:
        """Bytes of the Network's parameter arrays."""
        return self.parameters * self.dtype_bytes

    @property
    def state_bytes(self) -> int:
        """Parameters, their gradients and the optimizer's state (moments)."""
        slots = OPTIMIZER_SLOTS.get(self.optimizer, 2)
        return self.parameter_bytes + self.trainable * self.dtype_bytes * (1 + slots)

    @property
    def activation_bytes(self) -> int:
        """What the forward pass keeps for backward over T steps and B sequences, and the errors."""
        T = self.steps or 1
        words = WORDS_PER_NEURON_STEP * self.neurons + WORDS_PER_INPUT_STEP * self.input_features
        return T * self.batch * words * self.dtype_bytes

    @property
    def step_bytes(self) -> int:
        """Memory of one training step (forward + backward + update)."""
        return self.state_bytes + self.activation_bytes

    def line(self) -> str:
        T = f"T={self.steps:,}" if self.steps else "T unknown before the data is read, counted as 1"
        return (f"  estimate: {self.units:,} units, {self.connections:,} connections, "
                f"{self.parameters:,} parameters ({human(self.parameter_bytes)}); one training step "
                f"({T}, B={self.batch:,}): about {human(self.step_bytes)} of {human(max_memory())} allowed "
                f"(TIMELOOM_MAX_MEMORY)")


def count_parameters(inputs: dict, units: dict, connections: list) -> tuple[int, int]:
    """(all, trainable) parameter numbers of expanded units and connections, without arrays
    (the same rule as compiler.program.parameters)."""
    total = trainable = 0

    def add(n, train):
        nonlocal total, trainable
        total += n
        trainable += n if train else 0

    def size(name):
        return inputs[name] if name in inputs else units[name].size

    for c in connections:
        rows = units[c.target].size
        if c.weight == "full":
            add(rows * size(c.source), c.trainable)
        elif c.weight == "diagonal":
            add(rows, c.trainable)
        if c.bias is not None:
            add(rows, c.trainable)
    for u in units.values():
        if u.bias is not None:
            add(u.size, u.bias_trainable)
        if u.leak is not None:
            add(u.size, u.leak.trainable)
        if u.initial == "learned":
            add(u.size, True)
    return total, trainable


def positive_int(v) -> int | None:
    """v if it is an int > 0 (not a bool), else None: a count read from a spec before it is checked
    (also the data tasks' `sequence_steps`, runtime/data/base.py)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def _task(data):
    """The task class the data: section names (runtime.data.TASKS), or None."""
    if not isinstance(data, dict):
        return None
    from runtime.data import TASKS

    return TASKS.get(data.get("task", "files" if "files" in data else None))


def sequence_steps(data: dict) -> int | None:
    """The longest training sequence T the data section describes, from its numbers alone
    (nothing is generated or read: the task's own `sequence_steps`); None when it cannot be known
    before loading the data."""
    kind = _task(data)
    if kind is None:
        return positive_int(data.get("seq_len")) if isinstance(data, dict) else None
    from runtime.data import task_params

    return kind.sequence_steps(task_params(data))


def batch_size(data: dict, training: dict) -> int:
    """B of one training step: training.batch_size (default 32), at most the number of training
    sequences when the sections say it (the task's `sequences_per_epoch`: a batch never holds more
    sequences than there are)."""
    training = training if isinstance(training, dict) else {}
    data = data if isinstance(data, dict) else {}
    B = positive_int(training.get("batch_size", 32)) or 32
    kind = _task(data)
    if kind is None:
        count = positive_int(data.get("train_size"))
    else:
        from runtime.data import task_params

        count = kind.sequences_per_epoch(task_params(data), training)
    return min(B, count) if count else B


def steps_setting(data: dict) -> str:
    """The data: key(s) that set T, for messages."""
    kind = _task(data)
    return kind.STEPS_SETTING if kind is not None else "data.seq_len"


def estimate_spec(spec: dict, inputs, units, connections, dtype: str = "float32") -> Estimate:
    """The estimate from a spec's data: and training: sections and its expanded units."""
    data, training = spec.get("data") or {}, spec.get("training") or {}
    training = training if isinstance(training, dict) else {}
    return estimate_parts(inputs, units, connections, sequence_steps(data), batch_size(data, training),
                          str(training.get("optimizer", "adam")), dtype)


def estimate(program, dtype: str = "float32") -> Estimate:
    """The estimate for a compiled Program (T and B from its data: and training: sections)."""
    return estimate_spec(program.spec or {}, program.inputs, program.units, program.connections, dtype)


def estimate_parts(inputs, units, connections, steps, batch, optimizer="adam", dtype="float32") -> Estimate:
    total, trainable = count_parameters(inputs, units, connections)
    return Estimate(units=len(units), connections=len(connections),
                    neurons=sum(u.size for u in units.values()), input_features=sum(inputs.values()),
                    parameters=total, trainable=trainable, steps=steps, batch=batch, optimizer=optimizer,
                    dtype_bytes=8 if dtype == "float64" else 4)


def check(est: Estimate, name: str = "the spec", setting: str = "data.seq_len") -> None:
    """Refuse a spec whose sequence is too long or whose training step does not fit the memory bound."""
    if est.steps is not None:
        check_steps(f"one training sequence of {name}", est.steps, setting)
    if est.parameter_bytes > max_memory():
        raise BudgetError(_raise_memory(f"{name} has {_count_text(est.parameters)} parameters and", est.parameter_bytes))
    if est.step_bytes > max_memory():
        T = f"T={est.steps:,}" if est.steps else "T=1"
        raise BudgetError(_raise_memory(
            f"one training step of {name} ({est.parameters:,} parameters, {est.neurons:,} neurons, "
            f"{T}, batch_size={est.batch:,})", est.step_bytes)
            .replace("make it smaller", "use smaller units, a shorter sequence (seq_len, or "
                     "training.bptt.truncate) or a smaller training.batch_size"))


def check_unrolled(program, steps: int, kind: str, unrolled: bool = True) -> None:
    """Refuse the graph of `program` (unrolled over `steps`, or folded) as `kind` before it is built:
    the step limit (unrolled) and check_graph on its node and edge counts."""
    if unrolled:
        check_steps("the unrolled graph", steps, "--steps")
    copies = steps if unrolled else 1
    check_graph((len(program.inputs) + len(program.units)) * copies, steps, kind,
                edges=program.graph.number_of_edges() * copies)


def check_graph(nodes: int, steps: int, kind: str, edges: int | None = None) -> None:
    """Refuse writing a graph of `nodes` nodes (and `edges` edges) as `kind` before it is built."""
    if kind in ("png", "svg") and nodes > MAX_PICTURE_NODES:
        raise BudgetError(f"the graph has {nodes:,} nodes, too many to draw usefully as {kind} (limit "
                          f"{MAX_PICTURE_NODES:,}); draw fewer steps (e.g. --steps "
                          f"{max(1, steps * MAX_PICTURE_NODES // max(nodes, 1))}), the --folded graph, or "
                          f"write json/graphml/dot")
    if edges is None:
        check_memory(f"the graph ({nodes:,} nodes)", nodes * GRAPH_NODE_BYTES)
    else:
        check_memory(f"the graph ({nodes:,} nodes, {edges:,} edges)", (nodes + edges) * GRAPH_ITEM_BYTES)
