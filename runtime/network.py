"""`Network`: parameters of a Program on a backend, forward, loss and gradients."""
from __future__ import annotations

import numpy as np

from compiler import budget
from compiler.errors import DataError, UsageError

from .backend import Backend
from .executor import FastExecutor
from .init import initialize_all
from .losses import LOSSES, fused
from .reference import ReferenceExecutor
from .tape import Reads

EXECUTORS = {"fast": FastExecutor, "reference": ReferenceExecutor}


class Parameters(dict):
    """{parameter name: array}; assigning one checks its name and shape against the program
    (a misshaped array would otherwise fail deep inside the next forward pass)."""

    def __init__(self, shapes: dict, values: dict, convert=None):
        super().__init__(values)
        self.shapes, self.convert = shapes, convert

    def _checked(self, name, value):
        want = self.shapes.get(name)
        if want is None:
            from compiler.schema import did_you_mean
            raise DataError(f"the network has no parameter '{name}'{did_you_mean(str(name), list(self.shapes))}")
        value = _real_array(value, f"parameter '{name}'")
        if tuple(value.shape) != want:
            raise DataError(f"parameter '{name}' has shape {want}; the array given has shape {tuple(value.shape)}")
        return self.convert(value) if self.convert is not None else value

    def __setitem__(self, name, value):
        super().__setitem__(name, self._checked(name, value))

    def update(self, *args, **kwargs):  # all checked before any is set: a bad one changes nothing
        checked = {name: self._checked(name, value) for name, value in dict(*args, **kwargs).items()}
        for name, value in checked.items():
            super().__setitem__(name, value)

    def __copy__(self):
        return Parameters(self.shapes, dict(self), self.convert)

    def setdefault(self, name, value=None):
        if name not in self:
            self[name] = value
        return self[name]

    def __reduce__(self):  # pickle (torch.save) as a dict with its shapes; the converter is the backend's
        return (Parameters, (self.shapes, dict(self)))


class Network:
    """A compiled spec with its parameters.

    `params`: name -> array (assignable, names as in docs/ARCHITECTURE.md). Inputs are
    {input_name: (T, B, size)} arrays; outputs likewise (time-major).

    `jit` (fast executor): None compiles each recurrent component's time loop with numba
    when it can (NumPy backend, numba importable, TIMELOOM_JIT not 0); False interprets the
    loop in Python; True requires the compiled loop (whatever TIMELOOM_JIT says). All three
    give the same results.
    """

    def __init__(self, program, backend: str = "numpy", dtype: str = "float32", seed: int = 0,
                 executor: str = "fast", jit: bool | None = None):
        self.program = program
        self.backend = Backend(backend, dtype)
        self.xp = self.backend.xp
        self.seed = seed
        self.params = Parameters({k: tuple(v.shape) for k, v in program.params.items()},
                                 {k: self.backend.asarray(v) for k, v in initialize_all(program.params, seed).items()},
                                 self.backend.asarray)
        self.consts = {c.name: self.backend.asarray(np.asarray(c.fixed, dtype=np.float64))
                       for c in program.connections if c.weight == "fixed"}
        if executor not in EXECUTORS:
            raise UsageError(f"unknown executor {executor!r}; use 'fast' or 'reference'")
        self.executor = (FastExecutor(program, self.backend, jit) if executor == "fast"
                         else EXECUTORS[executor](program, self.backend))
        self.state_depth = _state_depth(program)
        # a lower bound of a forward pass's memory per (t, b): every unit's output and input is kept
        self.values_per_step = sum(u.size for u in program.units.values()) + sum(program.inputs.values())

    @property
    def trainable(self) -> list[str]:
        return [n for n, p in self.program.params.items() if p.trainable]

    # -- input checking -------------------------------------------------------------------
    def _prepare(self, inputs, lengths, state, teacher=None):
        p = self.program
        for what, value in (("inputs", inputs), ("state", state), ("teacher", teacher)):
            if value is not None and not isinstance(value, dict):
                raise DataError(f"{what} must be a dict {{name: array}}, got {type(value).__name__}")
        missing = [n for n in p.inputs if n not in inputs]
        if missing:
            raise DataError(f"missing input '{missing[0]}' (the spec's inputs: {', '.join(p.inputs)})")
        unknown = [n for n in inputs if n not in p.inputs]
        if unknown:
            raise DataError(f"unknown input '{unknown[0]}' (the spec's inputs: {', '.join(p.inputs)})")
        arrays, T, B = {}, None, None
        for name, size in p.inputs.items():
            a = _real_array(inputs[name], f"input '{name}'")
            shape = tuple(a.shape)
            if len(shape) != 3 or shape[2] != size or (T is not None and shape[:2] != (T, B)):
                want = f"(T, B, {size})" if T is None else f"({T}, {B}, {size})"
                raise DataError(f"input '{name}' has shape {shape}, expected {want} (time, batch, features)")
            if T is None:  # the first input sets T and B: checked before anything of T x B is computed
                T, B = shape[0], shape[1]
                if T == 0 or B == 0:
                    raise DataError(f"input '{name}' has shape {shape}: it needs at least one time step and one "
                                    f"sequence (T >= 1, B >= 1)")
                budget.check_memory(f"a forward pass over T={T:,}, B={B:,} (at least its outputs)",
                                    1.0 * T * B * self.values_per_step * self.backend.dtype.itemsize)
            arr = self.backend.asarray(a)
            if not bool(self.xp.isfinite(arr).all()):
                raise DataError(f"input '{name}' contains NaN or Inf values")
            arrays[name] = arr
        if T is None:
            raise DataError("the spec has no inputs; give at least one input")
        if lengths is not None:
            try:
                given = np.asarray(self.backend.to_numpy(lengths) if not isinstance(lengths, (list, tuple))
                                   else lengths)
            except (TypeError, ValueError) as e:  # ragged lists
                raise DataError(f"lengths must be {B} integers in [1, {T}] ({e})") from None
            whole = given.dtype.kind in "iu" or (given.dtype.kind == "f" and bool(np.all(np.isfinite(given)))
                                                 and bool(np.all(np.mod(given, 1) == 0)))
            lengths = given.astype(np.int64) if whole else None
            if lengths is None or lengths.shape != (B,) or lengths.min() < 1 or lengths.max() > T:
                shown = given.ravel()[:12].tolist()
                raise DataError(f"lengths must be {B} integers in [1, {T}], got {shown}"
                                + (f" ... ({given.size:,} values)" if given.size > 12 else ""))
            if lengths.min() == T:
                lengths = None
        if state is not None:
            state = {k: self.backend.asarray(v) for k, v in self._checked_state(state, B).items()}
            if not all(bool(self.xp.isfinite(v).all()) for v in state.values()):
                raise DataError("state contains NaN or Inf values")
        return arrays, Reads(p, self.backend, T, B, lengths, state, self._teacher(teacher, T, B))

    def _checked_state(self, state, B):
        """`state=` as forward(return_state=True) gives it: {unit or input with delayed reads: (k, B,
        size)}, the last k values, newest last. Units left out start from their initial state."""
        p, checked = self.program, {}
        for name, value in state.items():
            if name not in self.state_depth:
                have = ", ".join(self.state_depth) or "none (nothing is read with a delay)"
                raise DataError(f"state names '{name}', which carries no state (the state's keys: {have})")
            size = p.units[name].size if name in p.units else p.inputs[name]
            a = _real_array(value, f"state '{name}'")
            if len(a.shape) != 3 or a.shape[0] < 1 or tuple(a.shape[1:]) != (B, size):
                raise DataError(f"state '{name}' has shape {tuple(a.shape)}, expected "
                                f"({self.state_depth[name]}, {B}, {size}) (steps, batch, size)")
            checked[name] = a
        return checked

    def _run(self, inputs, lengths, state, teacher):
        """Check the data and run the executor's forward: (inputs on the backend, reads, tape)."""
        arrays, reads = self._prepare(inputs, lengths, state, teacher)
        return arrays, reads, self.executor.forward(self.params, self.consts, arrays, reads)

    def _teacher(self, teacher, T, B):
        """{unit: values} or {unit: (values, mask)} -> {unit: (values, mask)} on the backend."""
        out = {}
        for name, spec in (teacher or {}).items():
            if name not in self.program.units:
                raise DataError(f"teacher forcing names unknown unit '{name}'")
            values, mask = spec if isinstance(spec, tuple) else (spec, None)
            values = _real_array(values, f"teacher values for '{name}'")
            size = self.program.units[name].size
            if tuple(values.shape) != (T, B, size):
                raise DataError(f"teacher values for '{name}' have shape {tuple(values.shape)}, "
                                f"expected ({T}, {B}, {size})")
            if mask is None:
                mask = self.xp.ones((T, B))
            else:  # the compiled scan reads it at every (t, b): a smaller array would be read past its end
                mask = _real_array(mask, f"the teacher-forcing mask of '{name}'")
                if tuple(mask.shape) != (T, B):
                    raise DataError(f"the teacher-forcing mask of '{name}' has shape {tuple(mask.shape)}, "
                                    f"expected ({T}, {B}) (1 where the target is fed, 0 elsewhere)")
            out[name] = (self.backend.asarray(values), self.backend.asarray(mask))
        return out

    # -- forward ----------------------------------------------------------------------------
    def forward(self, inputs, lengths=None, state=None, return_state=False, units=None, teacher=None):
        """{output_name: (T, B, size)}; padded steps (t >= length) are zero.

        `units`: extra unit names whose trajectories to return too. With `return_state=True`
        returns (outputs, state): the last values each delayed read (of a unit or an input) needs to go on.
        `teacher`: {unit: values (T, B, size)} or {unit: (values, mask (T, B))}: delayed reads of
        that unit see the given values where the mask is 1 (teacher forcing)."""
        arrays, reads, tape = self._run(inputs, lengths, state, teacher)
        names = list(self.program.outputs) + [u for u in (units or []) if u not in self.program.outputs]
        unknown = [u for u in names if u not in tape.out]
        if unknown:
            raise DataError(f"unknown unit '{unknown[0]}'")
        outs = {u: self._mask(tape.out[u], reads) for u in names}
        if return_state:
            return outs, self._final_state(tape, reads, arrays)
        return outs

    def _mask(self, y, reads):
        """A fresh array (the executor reuses its buffers): padded steps zeroed."""
        return y.copy() if reads.valid is None else y * reads.valid[..., None]

    def _final_state(self, tape, reads, inputs):
        xp, state = self.xp, {}
        for u, k in self.state_depth.items():
            init = xp.stack([reads.fill_at(u, tau, self.params) for tau in range(-k, 0)])
            seq = tape.out[u] if u in tape.out else inputs[u]
            hist = xp.concatenate([init, seq])  # index k + t holds time t
            if reads.lengths is None:
                state[u] = hist[-k:]
            else:
                idx = xp.asarray(reads.lengths)[None, :] + xp.arange(k)[:, None]  # (k, B)
                state[u] = xp.take_along_axis(hist, idx[..., None], axis=0)
        return state

    # -- loss and gradients -----------------------------------------------------------------
    def loss_and_grads(self, inputs, targets, lengths=None, state=None, masks=None, teacher=None,
                       return_state=False):
        """(loss, {trainable param name: gradient}) by backpropagation through time.

        With `return_state=True` returns (loss, grads, state), the state as `forward` gives it
        (for truncated BPTT: the next window starts from it, no gradient flows back into it)."""
        arrays, reads, tape = self._run(inputs, lengths, state, teacher)
        loss, dout, dnet = self._loss(tape, targets, reads, masks or {})
        grads = self.executor.backward(tape, self.params, self.consts, dout, dnet, reads)
        grads = {n: grads[n] for n in self.trainable}
        if return_state:
            return loss, grads, self._final_state(tape, reads, arrays)
        return loss, grads

    def state_gradients(self, inputs, targets, lengths=None, state=None, masks=None, teacher=None,
                        units=None) -> tuple[float, dict]:
        """(loss, {unit: (T, B, size)}): dL/d(output of the unit at step t) for every step, the
        error signal delta_t that BPTT carries back in time (total: through every later step).

        `units`: which units (default all). Padded steps (t >= length) get zeros."""
        arrays, reads, tape = self._run(inputs, lengths, state, teacher)
        loss, dout, dnet = self._loss(tape, targets, reads, masks or {})
        deltas = {}
        self.executor.backward(tape, self.params, self.consts, dout, dnet, reads, states=deltas)
        unknown = [u for u in (units or []) if u not in deltas]
        if unknown:
            raise DataError(f"unknown unit '{unknown[0]}'")
        return loss, {u: deltas[u].copy() for u in (units or self.program.units)}  # buffers are reused

    def loss(self, inputs, targets, lengths=None, state=None, masks=None, teacher=None) -> float:
        arrays, reads, tape = self._run(inputs, lengths, state, teacher)
        return self._loss(tape, targets, reads, masks or {})[0]

    def _loss(self, tape, targets, reads, masks):
        xp = self.xp
        total, dout, dnet = 0.0, {}, {}
        for name, out in self.program.outputs.items():
            if out.loss == "none":
                continue
            if name not in targets:
                raise DataError(f"missing target for output '{name}'")
            unit = self.program.units[name]
            y = tape.out[name]
            mask = self._position_mask(out, reads, masks.get(name))
            target = self._target(name, targets[name], out, reads, None if out.at == "last" else mask)
            if out.at == "last":
                target = self._place_last(target, y, reads)
            loss, grad, wrt_net = LOSSES[out.loss](xp, y, target, mask, unit.activation)
            if wrt_net and not fused(unit.activation.name, out.loss):
                raise DataError(f"loss {out.loss} on output '{name}' needs a softmax/sigmoid or identity unit")
            total += loss
            (dnet if wrt_net else dout)[name] = grad
        if not np.isfinite(total):
            from compiler.errors import TrainingError
            raise TrainingError("the loss is NaN or Inf")
        return total, dout, dnet

    def _position_mask(self, out, reads, user_mask):
        """Where the loss counts: valid steps (at: all), the last valid step (at: last) or the
        user's mask (at: mask). A mask given for an at: all/last output restricts it further
        (truncated BPTT uses this for windows in which a sequence has ended or not yet ended)."""
        xp, T, B = self.xp, reads.T, reads.B
        valid = reads.valid if reads.valid is not None else xp.ones((T, B), dtype=bool)
        if out.at == "mask" and user_mask is None:
            raise DataError(f"output '{out.unit}' has at: mask; pass masks={{'{out.unit}': (T, B) array}}")
        m = None
        if user_mask is not None:
            m = self.backend.asarray(_real_array(user_mask, f"mask of output '{out.unit}'"))
            if m.shape != (T, B):
                raise DataError(f"mask of output '{out.unit}' has shape {tuple(m.shape)}, expected ({T}, {B})")
            if not bool(xp.all(m >= 0)):
                raise DataError(f"mask of output '{out.unit}' has negative entries; a mask weights the loss "
                                f"at each step: give 0 (not counted) or 1 (counted)")
        if out.at == "last":
            last = xp.zeros((T, B), dtype=bool)
            lengths = reads.lengths if reads.lengths is not None else np.full(B, T)
            last[xp.asarray(lengths) - 1, xp.arange(B)] = True
            last = last.astype(self.backend.dtype)
            return last if m is None else last * m
        return valid.astype(self.backend.dtype) if m is None else m * valid

    def _target(self, name, target, out, reads, counted=None):
        T, B, size = reads.T, reads.B, self.program.units[name].size
        target = _real_array(target, f"target for output '{name}'")
        shape = tuple(target.shape)
        lead = (B,) if out.at == "last" else (T, B)
        ok = shape in (lead + (size,), lead) if out.loss == "cross_entropy" else shape == lead + (size,)
        if not ok:
            want = f"{lead + (size,)}" + (f" or class indices {lead}" if out.loss == "cross_entropy" else "")
            raise DataError(f"target for output '{name}' has shape {shape}, expected {want}")
        if out.loss == "cross_entropy" and shape == lead:
            idx = np.asarray(self.backend.to_numpy(target))
            if counted is not None and idx.shape == tuple(counted.shape):  # padded/masked steps may hold -1
                idx = idx[self.backend.to_numpy(counted) > 0]
            if idx.dtype.kind not in "iubf":
                raise DataError(f"target for output '{name}': class indices must be integers, got dtype {idx.dtype}")
            wrong = ~np.isfinite(idx) | (np.mod(idx, 1) != 0) if idx.dtype.kind == "f" else np.zeros(idx.shape, bool)
            wrong |= (idx < 0) | (idx >= size)
            if wrong.any():
                raise DataError(f"target for output '{name}': class indices must be integers in [0, {size - 1}] "
                                f"(one of {size} classes), got {idx[wrong].ravel()[0]!r}")
            return self.xp.asarray(target)
        return self.backend.asarray(target)

    def _place_last(self, target, y, reads):
        """Spread a (B, ...) target of an `at: last` output over (T, B, ...); only the last step counts."""
        xp = self.xp
        full = xp.zeros((reads.T,) + tuple(target.shape), dtype=target.dtype)
        full[:] = target
        return full


def _real_array(a, what: str):
    """`a` as an array of real numbers (lists are converted; NumPy, CuPy and torch arrays kept),
    or a DataError naming `what`."""
    if type(a).__module__.split(".")[0] == "torch" and hasattr(a, "detach"):  # a tensor, perhaps needing grad
        a = a.detach().cpu().numpy()
    if not (hasattr(a, "shape") and hasattr(a, "dtype")):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as e:
            raise DataError(f"{what} is not an array of numbers ({e})") from None
    kind = np.dtype(a.dtype).kind  # NumPy or CuPy: torch tensors were turned into NumPy above
    if kind not in "biuf":
        raise DataError(f"{what} has dtype {a.dtype}; give real numbers (float, int or bool)")
    return a


def _state_depth(program) -> dict:
    """unit or input -> how many past values the next chunk needs (max forward delay reading it):
    a delayed input (a causal convolution's taps) must carry over as much as a unit."""
    depth = {}
    for c in program.connections:
        if c.delay > 0:
            depth[c.source] = max(depth.get(c.source, 0), c.delay)
    for u in program.units.values():
        if u.leak is not None and program.direction.get(u.name, 1) >= 0:
            depth[u.name] = max(depth.get(u.name, 0), 1)
    return depth
