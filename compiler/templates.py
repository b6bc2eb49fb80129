"""Expand a validated spec (blocks, user templates, name lists) into primitive records.

One mechanism serves the top level, built-in blocks (`compiler.blocks`) and user templates:
a *scope* is a body with `units`, `blocks`, `connections`, `inputs`, `outputs`, expanded
under a name prefix and a time direction (+1, or -1 for the backward copy of a
bidirectional net: all delays flip sign).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import normalize
from .blocks import BUILTINS
from .errors import SpecIssue
from .loader import Positions
from .model import Connection, Output, Pos, Unit
from .schema import did_you_mean


@dataclass
class InPort:
    unit: str
    taps: tuple = (0,)
    defaults: dict = field(default_factory=dict)
    residual: bool = False


@dataclass
class Block:
    name: str
    inputs: list  # [InPort]
    outputs: list  # [unit name]


@dataclass
class Expanded:
    inputs: dict  # name -> size
    units: dict  # name -> Unit
    connections: list  # [Connection] (named)
    outputs: dict  # name -> Output
    blocks: dict  # prefix -> Block
    issues: list  # [SpecIssue]


class _Fail(Exception):
    """Stop expanding the current item; the issue has been recorded."""


class Expander:
    def __init__(self, spec: dict, positions: Positions):
        self.spec = spec
        self.positions = positions
        self.templates = spec.get("templates") or {}
        self.inputs = {k: v["size"] for k, v in (spec.get("inputs") or {}).items()}
        self.units: dict[str, Unit] = {}
        self.blocks: dict[str, Block] = {}
        self.raw_connections: list[Connection] = []
        self.issues: list[SpecIssue] = []
        self.depth = 0

    # -- errors ---------------------------------------------------------------------
    def error(self, path, message, at_key=False):
        self.issues.append(self.positions.issue(path, message, at_key=at_key))
        raise _Fail

    def pos(self, path) -> Pos:
        line, col = self.positions.find(path)
        return Pos(self.positions.file, line, col, tuple(path))

    # -- scopes ---------------------------------------------------------------------
    def scope(self, body: dict, prefix: str, direction: int, path: tuple, own_path: bool):
        """Expand one body. `own_path`: positions of its items exist in the spec (top level,
        user templates); otherwise everything points at `path` (a built-in block entry)."""
        where = (lambda *p: path + p) if own_path else (lambda *p: path)
        for name, ub in (body.get("units") or {}).items():
            self._try(self.add_unit, prefix + name, ub, where("units", name))
        for name, bb in (body.get("blocks") or {}).items():
            self._try(self.add_block, prefix + name, bb, direction, where("blocks", name), own_path)
        for i, cb in enumerate(body.get("connections") or []):
            self._try(self.add_connection, cb, prefix, direction, where("connections", i))

    def _try(self, fn, *args):
        try:
            fn(*args)
        except _Fail:
            pass
        except normalize.NormalizeError as e:
            self.issues.append(self.positions.issue(args[-1] if isinstance(args[-1], tuple) else (), str(e)))

    def add_unit(self, name, ub, path):
        if name in self.units or name in self.inputs or name in self.blocks:
            self.error(path, f"'{name}' is defined twice; rename one of them", at_key=True)
        size = ub.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            self.error(path + ("size",), f"unit '{name}' needs a positive integer size, got {size!r}")
        try:
            act = normalize.activation(ub.get("activation", "identity"))
            bias, bias_trainable = normalize.bias(ub.get("bias", True))
            leak = normalize.leak(ub.get("leak"), size)
        except normalize.NormalizeError as e:
            self.error(path, f"unit '{name}': {e}")
        self.units[name] = Unit(name, size, act, bias, bias_trainable, ub.get("initial", "zeros"),
                                leak, self.pos(path))

    def add_block(self, name, bb, direction, path, own_path):
        if name in self.units or name in self.inputs or name in self.blocks:
            self.error(path, f"'{name}' is defined twice; rename one of them", at_key=True)
        self.depth += 1
        if self.depth > 20:
            self.error(path, "templates nest more than 20 deep; does a template instantiate itself?")
        try:
            kind = bb.get("type")
            direction = direction * bb.get("_direction", 1)
            options = {k: v for k, v in bb.items() if k not in ("type", "_direction")}
            if kind in BUILTINS:
                try:
                    body = BUILTINS[kind](options)
                except (KeyError, ValueError, TypeError) as e:
                    self.error(path, f"block '{name}' ({kind}): {_explain(e)}")
                body_path, body_own = path, False
            elif kind in self.templates:
                body = self.instantiate(name, kind, options, path)
                body_path, body_own = ("templates", kind), own_path
            else:
                choices = list(BUILTINS) + list(self.templates)
                self.error(path + ("type",), f"unknown block type '{kind}'{did_you_mean(kind, choices)}; "
                           f"use a built-in ({', '.join(BUILTINS)}) or define it under templates:")
            self.scope(body, name + ".", direction, body_path, body_own)
            ports_path = body_path if not body_own else body_path + ("inputs",)
            inputs = [p for port in body.get("inputs", []) for p in self.in_ports(name, port, ports_path)]
            outputs = [u for port in body.get("outputs", []) for u in self.out_ports(name, port, ports_path)]
            self.blocks[name] = Block(name, inputs, outputs)
        finally:
            self.depth -= 1

    def instantiate(self, name, kind, options, path):
        template = self.templates[kind]
        params = dict(template.get("params") or {})
        unknown = [k for k in options if k not in params]
        if unknown:
            self.error(path + (unknown[0],), f"template '{kind}' has no parameter '{unknown[0]}'"
                       f"{did_you_mean(unknown[0], params)}; its parameters: {', '.join(params) or 'none'}",
                       at_key=True)
        params.update(options)
        body = {k: template.get(k) for k in ("units", "blocks", "connections", "inputs", "outputs")}
        return _substitute(body, params, lambda p: self.error(path, f"template '{kind}': unknown parameter "
                                                                    f"'${p}'{did_you_mean(p, params)}"))

    def in_ports(self, block, port, path):
        if isinstance(port, dict):
            name = port["unit"]
            extra = {"taps": tuple(port.get("taps", (0,))), "defaults": dict(port.get("defaults", {})),
                     "residual": bool(port.get("residual", False))}
        else:
            name, extra = port, {}
        full = f"{block}.{name}"
        if full in self.units:
            return [InPort(full, **extra)]
        if full in self.blocks:
            return self.blocks[full].inputs
        self.error(path, f"template port '{name}' of '{block}' is neither a unit nor a block of it")

    def out_ports(self, block, port, path):
        full = f"{block}.{port}"
        if full in self.units:
            return [full]
        if full in self.blocks:
            return self.blocks[full].outputs
        self.error(path, f"template output '{port}' of '{block}' is neither a unit nor a block of it")

    # -- connections ----------------------------------------------------------------
    def resolve(self, name, prefix, path, as_source):
        """A name in a scope -> units (for targets: InPorts)."""
        full = prefix + name
        if full in self.units:
            return [full] if as_source else [InPort(full)]
        if full in self.blocks:
            b = self.blocks[full]
            return list(b.outputs) if as_source else list(b.inputs)
        if not prefix and name in self.inputs:
            if as_source:
                return [name]
            self.error(path, f"'{name}' is an input; connections can only go *to* units")
        choices = [n[len(prefix):] for n in list(self.units) + list(self.blocks) if n.startswith(prefix)]
        if not prefix:
            choices += list(self.inputs)
        self.error(path, f"unknown {'source' if as_source else 'target'} '{name}'{did_you_mean(name, choices)}")

    def add_connection(self, cb, prefix, direction, path):
        names = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        gate = normalize.gate(cb.get("gate"))
        if gate is not None:
            units = self.resolve(gate.unit, prefix, path + ("gate",), as_source=True)
            if gate.unit in self.inputs and not prefix:
                self.error(path + ("gate",), f"gate '{gate.unit}' is an input; a gate must be a unit "
                           "(add a sigmoid unit fed by the input and gate with it)")
            if len(units) != 1:
                self.error(path + ("gate",), f"gate '{gate.unit}' has {len(units)} outputs; name one unit")
            gate = type(gate)(units[0], gate.complement, gate.at)
        for si, src in enumerate(names(cb["from"])):
            sources = self.resolve(src, prefix, path + ("from",), as_source=True)
            for ti, tgt in enumerate(names(cb["to"])):
                for port in self.resolve(tgt, prefix, path + ("to",), as_source=False):
                    for s in sources:
                        self.connect(s, port, cb, gate, direction, path)

    def connect(self, source, port, cb, gate, direction, path):
        opts = {**port.defaults, **cb}
        delay = opts.get("delay", 0)
        weight = opts.get("weight", "full")
        fixed = None
        if isinstance(weight, dict):
            fixed, weight = weight["fixed"], "fixed"
        if port.residual:
            taps, weight, opts = (0,), ("identity" if self._size(source) == self.units[port.unit].size else "full"), {}
        else:
            taps = port.taps
        default_init = {"kind": "glorot"} if weight == "full" else (
            {"kind": "uniform", "low": -0.1, "high": 0.1} if weight == "diagonal" else None)
        winit = normalize.init(opts.get("init"), default_init) if weight in ("full", "diagonal") else None
        cbias = None
        if opts.get("bias") not in (None, False):
            cbias, _ = normalize.bias(opts["bias"])
        for tap in taps:
            self.raw_connections.append(Connection(
                "", source, port.unit, direction * (delay + tap), weight, winit, fixed,
                bool(opts.get("trainable", True)), cbias, gate, self.pos(path)))

    def _size(self, name):
        return self.inputs[name] if name in self.inputs else self.units[name].size

    # -- top level ------------------------------------------------------------------
    def outputs(self):
        out = {}
        for name, ob in (self.spec.get("outputs") or {}).items():
            path = ("outputs", name)
            try:
                units = self.resolve(name, "", path, as_source=True)
                if name in self.inputs:
                    self.error(path, f"output '{name}' is an input; outputs must be units", at_key=True)
                if len(units) != 1:
                    self.error(path, f"output '{name}' is a block with {len(units)} output units; "
                               f"name one of: {', '.join(units)}", at_key=True)
                ob = ob or {}
                out[units[0]] = Output(units[0], ob.get("loss", "mse"), ob.get("at", "all"), self.pos(path))
            except _Fail:
                pass
        return out


def name_connections(connections: list[Connection]) -> list[Connection]:
    """Parameter names as in DESIGN.md: "from->to", "@delay" when delay != 0, "#2" for repeats."""
    seen: dict[str, int] = {}
    for c in connections:
        base = f"{c.source}->{c.target}" + (f"@{c.delay}" if c.delay else "")
        seen[base] = seen.get(base, 0) + 1
        c.name = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return connections


def expand(spec: dict, positions: Positions) -> Expanded:
    ex = Expander(spec, positions)
    ex.scope(spec, "", 1, (), own_path=True)
    outputs = ex.outputs()
    return Expanded(ex.inputs, ex.units, name_connections(ex.raw_connections), outputs, ex.blocks, ex.issues)


_PARAM = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _substitute(value, params, unknown):
    """Replace "$name" (whole value, keeps its type) and "${name}" (inside strings)."""
    if isinstance(value, dict):
        return {k: _substitute(v, params, unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params, unknown) for v in value]
    if isinstance(value, str) and "$" in value:
        whole = _PARAM.fullmatch(value)
        if whole:
            if whole.group(1) not in params:
                unknown(whole.group(1))
            return params[whole.group(1)]

        def repl(m):
            if m.group(1) not in params:
                unknown(m.group(1))
            return str(params[m.group(1)])
        return _PARAM.sub(repl, value)
    return value


def _explain(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing option {e}"
    return str(e)
