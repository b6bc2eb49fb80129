"""Expand a validated spec (blocks, user templates, name lists) into primitive records.

One mechanism serves the top level, built-in blocks (`compiler.blocks`) and user templates:
a *scope* is a body with `units`, `blocks`, `connections`, `inputs`, `outputs`, expanded
under a name prefix and a time direction (+1, or -1 for the backward copy of a
bidirectional net: all delays flip sign).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import budget, normalize
from .blocks import BUILTINS
from .errors import SpecIssue
from .loader import Positions
from .model import WEIGHTS_WITH_PARAMS, Connection, Output, Pos, Unit
from .parameters import references, substitute
from .schema import did_you_mean, validate_template_body


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
        self.failed: set[str] = set()  # units/blocks that could not be built: no "unknown name" cascades
        self.instances: list[tuple] = []  # (block, template, path) of the user templates being expanded
        self.broken_templates = self.check_templates()
        self.budget = budget.UnitBudget()  # expanded units/connections, counted before each block expands
        self._counts: dict = {}  # (kind, options) -> units one block of that kind generates
        self._valid_bodies: set = set()  # (kind, options) whose substituted body passed the schema

    # -- errors ---------------------------------------------------------------------
    def error(self, path, message, at_key=False):
        if self.instances:
            block, kind, where = self.instances[-1]
            line, _ = self.positions.find(where)
            message += f" (in block '{block}', an instance of template '{kind}' at line {line})"
        issue = self.positions.issue(path, message, at_key=at_key)
        if issue not in self.issues:  # a template used twice reports its own mistakes once
            self.issues.append(issue)
        raise _Fail

    def check_templates(self) -> set:
        """Every $-reference in a template body must name one of its params; report each at its place."""
        broken = set()
        for kind, template in self.templates.items():
            params = (template or {}).get("params") or {}
            for key in ("units", "blocks", "connections", "inputs", "outputs"):
                for path, ref, text in references(template.get(key), ("templates", kind, key)):
                    if ref not in params:
                        broken.add(kind)
                        self.issues.append(self.positions.issue(
                            path, f"template '{kind}' uses '{text}' but has no parameter '{ref}'"
                                  f"{did_you_mean(ref, params)}; add it to the template's params: "
                                  f"(with a default) or fix the reference"))
        return broken

    def pos(self, path) -> Pos:
        line, col = self.positions.find(path)
        return Pos(self.positions.file, line, col, tuple(path))

    def key_pos(self, path) -> Pos:
        """The place of the key that names `path` (`h:` of `units: {h: ...}`)."""
        line, col = self.positions.key(path)
        return Pos(self.positions.file, line, col, tuple(path))

    # -- scopes ---------------------------------------------------------------------
    def scope(self, body: dict, prefix: str, direction: int, path: tuple, own_path: bool):
        """Expand one body. `own_path`: positions of its items exist in the spec (top level,
        user templates); otherwise everything points at `path` (a built-in block entry)."""
        where = (lambda *p: path + p) if own_path else (lambda *p: path)
        for name, ub in (body.get("units") or {}).items():
            if self.is_failed(prefix + name):
                continue
            if not self._try(where("units", name), self.add_unit, prefix + name, ub, where("units", name), own_path):
                self.failed.add(prefix + name)
        for name, bb in (body.get("blocks") or {}).items():
            if self.is_failed(prefix + name):
                continue
            if not self._try(where("blocks", name), self.add_block, prefix + name, bb, direction,
                             where("blocks", name), own_path):
                self.failed.add(prefix + name)
        for i, cb in enumerate(body.get("connections") or []):
            self._try(where("connections", i), self.add_connection, cb, prefix, direction, where("connections", i))

    def _try(self, path, fn, *args) -> bool:
        """Run one expansion step; False (and the issue recorded) if it failed."""
        try:
            fn(*args)
            return True
        except _Fail:
            return False
        except normalize.NormalizeError as e:
            self.issues.append(self.positions.issue(path, str(e)))
            return False

    def is_failed(self, full: str) -> bool:
        """`full` is (inside) a unit or block whose definition already failed: its error is reported."""
        parts = full.split(".")  # `full` itself or a block above it: a lookup per level, not per failure
        return any(".".join(parts[:i]) in self.failed for i in range(1, len(parts) + 1))

    def add_unit(self, name, ub, path, own_path=True):
        at = (lambda *p: path + p) if own_path else (lambda *p: path)  # noqa: E731
        if name in self.units or name in self.inputs or name in self.blocks:
            self.error(path, f"'{name}' is defined twice; rename one of them", at_key=True)
        size = ub.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            self.error(at("size"), f"unit '{name}' needs a positive integer size, got {size!r}")
        too_many = self.budget.units_message(len(self.units) + 1)
        if too_many:
            self.error(path, too_many, at_key=True)
        read = {"activation": lambda: normalize.activation(ub.get("activation", "identity")),
                "bias": lambda: normalize.bias(ub.get("bias", True), size=size),
                "leak": lambda: normalize.leak(ub.get("leak"), size)}
        values = {}
        for key, value in read.items():
            try:
                values[key] = value()
            except normalize.NormalizeError as e:
                sub = at(key, "alpha") if key == "leak" and isinstance(ub.get("leak"), dict) else at(key)
                self.error(sub, f"unit '{name}': {e}")
        act, (bias, bias_trainable), leak = values["activation"], values["bias"], values["leak"]
        self.units[name] = Unit(name, size, act, bias, bias_trainable, ub.get("initial", "zeros"),
                                leak, self.key_pos(path))

    def add_block(self, name, bb, direction, path, own_path):
        if name in self.units or name in self.inputs or name in self.blocks:
            self.error(path, f"'{name}' is defined twice; rename one of them", at_key=True)
        self.depth += 1
        if self.depth > 20:
            self.error(path, "templates nest more than 20 deep; does a template instantiate itself?")
        try:
            kind = bb.get("type")
            too_many = self.budget.units_message(len(self.units) + self.count_block(bb),
                                                 f"with block '{name}' the spec")
            if too_many:
                self.error(path, too_many, at_key=True)
            direction = direction * bb.get("_direction", 1)
            options = {k: v for k, v in bb.items() if k not in ("type", "_direction")}
            if kind in BUILTINS:
                try:
                    body = BUILTINS[kind](options)
                except (KeyError, ValueError, TypeError) as e:
                    self.error(path, f"block '{name}' ({kind}): {_explain(e)}")
                body_path, body_own = path, False
            elif kind in self.templates:
                stack = [k for _, k, _ in self.instances]
                if kind in stack:
                    cycle = " -> ".join(stack[stack.index(kind):] + [kind])
                    self.error(path + ("type",), f"template '{kind}' instantiates itself ({cycle}); "
                               "a template cannot contain itself: remove the block or use another type")
                if kind in self.broken_templates:
                    raise _Fail  # its mistakes are reported at the template
                body = self.instantiate(name, kind, options, path)
                body_path, body_own = ("templates", kind), own_path
            else:
                choices = list(BUILTINS) + list(self.templates)
                self.error(path + ("type",), f"unknown block type '{kind}'{did_you_mean(kind, choices)}; "
                           f"use a built-in ({', '.join(BUILTINS)}) or define it under templates:")
            user = kind in self.templates
            if user:
                self.instances.append((name, kind, path))
            try:
                self.scope(body, name + ".", direction, body_path, body_own)
                in_path = body_path if not body_own else body_path + ("inputs",)
                out_path = body_path if not body_own else body_path + ("outputs",)
                inputs = [p for port in body.get("inputs") or [] for p in self.in_ports(name, port, in_path)]
                outputs = [u for port in body.get("outputs") or [] for u in self.out_ports(name, port, out_path)]
            finally:
                if user:
                    self.instances.pop()
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
        body = {k: template[k] for k in ("units", "blocks", "connections", "inputs", "outputs") if k in template}
        body = substitute(body, params, lambda p: self.error(path, f"template '{kind}': unknown parameter "
                                                                    f"'${p}'{did_you_mean(p, params)}"))
        given = ", ".join(f"{k}: {v!r}" for k, v in options.items() if k != "type")
        line, _ = self.positions.find(path)
        context = (f" (in block '{name}', an instance of template '{kind}' at line {line}"
                   + (f" with {given})" if given else ")"))
        key = (kind, repr(options))
        if key in self._valid_bodies:  # the same template with the same options: checked already
            return body
        issues = validate_template_body(body, self.positions, ("templates", kind), context)
        if issues:
            self.issues += [i for i in issues if i not in self.issues]
            raise _Fail
        self._valid_bodies.add(key)
        return body

    # -- the unit budget --------------------------------------------------------------
    def count_block(self, bb) -> float:
        """How many units block entry `bb` generates, without expanding it (memoized per type
        and options, so a template that uses another one twice per level costs one count per level).
        A block that cannot be built counts 0 (expanding it reports why)."""
        if not isinstance(bb, dict):
            return 0
        kind = bb.get("type")
        options = {k: v for k, v in bb.items() if k not in ("type", "_direction")}
        try:
            key = (kind, repr(options))
        except RecursionError:
            return 0
        if key in self._counts:
            return self._counts[key]
        self._counts[key] = 0  # a template that contains itself is reported by add_block
        try:
            if kind in BUILTINS:
                body = BUILTINS[kind](options)
            elif kind in self.templates and kind not in self.broken_templates:
                template = self.templates[kind] or {}
                params = {**(template.get("params") or {}), **options}
                body = {k: template[k] for k in ("units", "blocks") if k in template}
                body = substitute(body, params, _unknown_parameter)
            else:
                return 0
        except (KeyError, ValueError, TypeError, AttributeError, _Fail):
            return 0
        count = len(body.get("units") or {}) if isinstance(body.get("units"), dict) else 0
        blocks = body.get("blocks") if isinstance(body.get("blocks"), dict) else {}
        for inner in blocks.values():
            count += self.count_block(inner)
        self._counts[key] = count
        return count

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
        if self.is_failed(full):
            return []
        self.error(path, f"template input '{name}' of '{block}' is neither a unit nor a block of it"
                   f"{did_you_mean(name, self._local(block))}")

    def out_ports(self, block, port, path):
        full = f"{block}.{port}"
        if full in self.units:
            return [full]
        if full in self.blocks:
            return self.blocks[full].outputs
        if self.is_failed(full):
            return []
        self.error(path, f"template output '{port}' of '{block}' is neither a unit nor a block of it"
                   f"{did_you_mean(port, self._local(block))}")

    def _local(self, block):
        return [n[len(block) + 1:] for n in list(self.units) + list(self.blocks) if n.startswith(block + ".")]

    # -- connections ----------------------------------------------------------------
    def resolve(self, name, prefix, path, as_source, role=None):
        """A name in a scope -> units (for targets: InPorts)."""
        full = prefix + name
        if self.is_failed(full):
            raise _Fail  # already reported where it is defined
        if full in self.units:
            return [full] if as_source else [InPort(full)]
        if full in self.blocks:
            b = self.blocks[full]
            ports = list(b.outputs) if as_source else list(b.inputs)
            if not ports:
                which = "outputs" if as_source else "inputs"
                units = [u for u in self.units if u.startswith(full + ".")]
                self.error(path, f"block '{name}' has no {which[:-1]} ports (its template lists no {which}:); "
                           f"add {which}: to the template or name one of its units"
                           + (f", e.g. {units[0]}" if units else ""))
            return ports
        if not prefix and name in self.inputs:
            if as_source:
                return [name]
            self.error(path, f"'{name}' is an input; connections can only go *to* units (inputs come "
                             "from the data): connect to a unit instead")
        choices = [n[len(prefix):] for n in list(self.units) + list(self.blocks) if n.startswith(prefix)]
        if not prefix:
            choices += list(self.inputs)
        role = role or ("source" if as_source else "target")
        self.error(path, f"unknown {role} '{name}'{did_you_mean(name, choices)}; "
                   f"define it under units: (or blocks:) or fix the name")

    def add_connection(self, cb, prefix, direction, path):
        names = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
        gate = normalize.gate(cb.get("gate"))
        if gate is not None:
            units = self.resolve(gate.unit, prefix, path + ("gate",), as_source=True, role="gate unit")
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
        too_many = self.budget.connections_message(len(self.raw_connections) + len(port.taps))
        if too_many:
            self.issues.append(self.positions.issue(path, too_many))
            raise _OverBudget
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
        winit = normalize.init(opts.get("init"), default_init) if weight in WEIGHTS_WITH_PARAMS else None
        cbias = None
        if opts.get("bias") not in (None, False):
            cbias, _ = normalize.bias(opts["bias"])
        for tap in taps:
            self.raw_connections.append(Connection(
                "", source, port.unit, direction * (delay + tap), weight, winit, fixed,
                bool(opts.get("trainable", True)), cbias, gate, self.pos(path),
                stop_gradient=opts.get("gradient", "flow") == "stop"))

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
                out[units[0]] = Output(units[0], ob.get("loss", "mse"), ob.get("at", "all"), self.key_pos(path))
            except _Fail:
                pass
        return out


def name_connections(connections: list[Connection]) -> list[Connection]:
    """Parameter names (docs/ARCHITECTURE.md): "from->to", "@delay" when delay != 0, "#2" for repeats."""
    seen: dict[str, int] = {}
    for c in connections:
        base = f"{c.source}->{c.target}" + (f"@{c.delay}" if c.delay else "")
        seen[base] = seen.get(base, 0) + 1
        c.name = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return connections


def expand(spec: dict, positions: Positions, broken=()) -> Expanded:
    """The spec's units, blocks and connections, expanded. `broken`: top-level unit or block
    names whose definitions are already reported invalid (by the schema); they are not built,
    and connections to them are dropped without an error of their own."""
    ex = Expander(spec, positions)
    ex.failed.update(broken)
    try:
        ex.scope(spec, "", 1, (), own_path=True)
    except _OverBudget:  # too many connections: stop at once, the issue says why
        return Expanded(ex.inputs, ex.units, [], {}, ex.blocks, ex.issues)
    outputs = ex.outputs()
    return Expanded(ex.inputs, ex.units, name_connections(ex.raw_connections), outputs, ex.blocks, ex.issues)


class _OverBudget(Exception):
    """Expansion went past the connection budget: stop expanding altogether."""


def _unknown_parameter(name):
    raise _Fail


def _explain(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"missing option {e}"
    return str(e)
