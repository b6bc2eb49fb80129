"""The decoupled extended Kalman filter (DEKF) as a training method (`training.optimizer: dekf`).

Puskorius & Feldkamp (1994) train a recurrent net by treating its weights w as the state of a
Kalman filter whose measurement is the net's output: d_t = y_t(w) + v_t (v_t ~ N(0, R)),
w_{t+1} = w_t + omega_t (omega_t ~ N(0, Q)). Decoupled: the weights fall into G groups (here
all incoming weights of one unit, gate or cell, with its bias; or one global group) and the
covariance P is kept block-diagonal, one block P_i per group. At every time step t with a
target (Pérez-Ortiz, Gers, Eck & Schmidhuber 2003, eqs. of the DEKF section):

    H_i   = d y_t / d w_i                     (|w_i| x K: the output Jacobian, group i)
    A     = (R + sum_i H_i^T P_i H_i)^-1      (K x K, shared by all groups)
    K_i   = P_i H_i A                         (the Kalman gain of group i)
    w_i  <- w_i + K_i (d_t - y_t)
    P_i  <- P_i - K_i H_i^T P_i + Q

With one group this is the global EKF. R = r I and Q = q I are annealed (exponentially, per
update) from their start values to their end values: r_n = r_end + (r - r_end) exp(-n / tau).

The Jacobian: the paper took the truncated RTRL derivatives of its LSTM. Here, at every
time step t, the net is run again over the sequence's prefix 0..t with the current weights
and each output k at step t is backpropagated through the whole prefix (K backward passes):
the exact derivative of y_t at the current weights, for any spec, at O(t) per step (O(T^2)
per sequence of length T: fine for strings of length ~30 online, not for T in the
thousands). Sequences of a batch are processed one after another (online: one string at a
time, each step an update); the measurement is the output y (after its activation) against
the target (class indices become one-hot), at the steps where the loss counts.

Numerics: y and the targets are in the same units (the output after its activation); H goes
through that activation (a one-hot d out, not the fused sigmoid+bce shortcut of the loss);
P is symmetrised after each update; the weight estimate is kept in float64 between updates
(see weights()), whatever the network's dtype.

Settings (`training.dekf:`): p0 (P(0) = p0 I), r, r_end, q, q_end, tau (annealing time
constant, in updates), groups (`unit` | `global`).
"""
from __future__ import annotations

import math

import numpy as np

from compiler.errors import TrainingError

DEFAULTS = {"p0": 100.0, "r": 100.0, "r_end": 3.0, "q": 1.0e-2, "q_end": 1.0e-6, "tau": 5000.0, "groups": "unit"}


def unit_groups(program, names) -> list[list[tuple[str, np.ndarray]]]:
    """Groups of (param name, flat index array): per receiving unit (a connection matrix
    (target, source) gives one row per target neuron), or per whole array when the parameter
    has no per-neuron structure; a unit's bias goes with its incoming weights."""
    by_unit: dict = {}
    order: list = []

    def add(key, name, idx):
        if key not in by_unit:
            by_unit[key] = []
            order.append(key)
        by_unit[key].append((name, np.asarray(idx, dtype=np.int64)))

    for name in names:
        shape = tuple(program.params[name].shape)
        size = int(np.prod(shape)) if shape else 1
        if "->" in name:  # connection 'src->dst[@d]': shape (dst size, src size) or (dst size,) diagonal
            target = name.split("->", 1)[1].split("@", 1)[0]
        elif name.endswith(".bias"):
            target = name[: -len(".bias")]
        else:
            target = name.rsplit(".", 1)[0]
        if len(shape) >= 1 and shape[0] > 0:
            rows = shape[0]
            per = size // rows
            for j in range(rows):
                add((target, j), name, np.arange(j * per, (j + 1) * per))
        else:
            add((target, 0), name, np.arange(size))
    return [by_unit[k] for k in order]


class DEKF:
    """State: the block-diagonal covariance P (stacked, padded to the largest group) and the
    number of updates n. `train_batch(batch)` does the per-step updates of every sequence.
    In the registry optimizers.OPTIMIZERS as "dekf"; it reads only `training.dekf` (lr,
    momentum, weight_decay and clipping do not apply)."""

    default_lr = 0.001  # not used: the Kalman gain sets the step
    settings: dict = {"dekf": None}

    def __init__(self, net, settings: dict | None = None):
        s = dict(DEFAULTS)
        s.update(settings or {})
        if s["groups"] not in ("unit", "global"):
            raise TrainingError(f"training.dekf.groups: {s['groups']!r}; use unit or global")
        for key in ("p0", "r", "r_end", "tau"):
            if not float(s[key]) > 0:
                raise TrainingError(f"training.dekf.{key} must be > 0 (got {s[key]})")
        self.s = {k: (v if k == "groups" else float(v)) for k, v in s.items()}
        self.net = net
        self.names = list(net.trainable)
        self.shapes = {n: tuple(net.params[n].shape) for n in self.names}
        self.offsets, off = {}, 0
        for n in self.names:
            size = int(np.prod(self.shapes[n])) if self.shapes[n] else 1
            self.offsets[n] = (off, size)
            off += size
        self.size = off
        if s["groups"] == "global":
            idx = [np.arange(self.size)]
        else:
            idx = [np.concatenate([self.offsets[n][0] + i for n, i in g])
                   for g in unit_groups(net.program, self.names)]
        self.groups = idx
        m = max(len(g) for g in idx)
        self.m = m
        G = len(idx)
        self.index = np.zeros((G, m), dtype=np.int64)  # flat weight index per (group, slot)
        self.valid = np.zeros((G, m), dtype=bool)
        for i, g in enumerate(idx):
            self.index[i, :len(g)] = g
            self.valid[i, :len(g)] = True
        self.P = self.s["p0"] * np.eye(m)[None] * (self.valid[:, :, None] & self.valid[:, None, :])
        self.t = 0  # updates done
        self.w = None  # the float64 weight estimate between updates (see weights())

    # -- the weights as one flat float64 vector ---------------------------------------------------
    def flat(self) -> np.ndarray:
        be = self.net.backend
        return np.concatenate([np.asarray(be.to_numpy(self.net.params[n]), dtype=np.float64).ravel()
                               for n in self.names])

    def _unflat_into(self, w: np.ndarray) -> None:
        be = self.net.backend
        for n in self.names:
            a, size = self.offsets[n]
            self.net.params[n] = be.asarray(w[a:a + size].reshape(self.shapes[n]))

    def _grad_flat(self, grads: dict) -> np.ndarray:
        be = self.net.backend
        return np.concatenate([np.asarray(be.to_numpy(grads[n]), dtype=np.float64).ravel() for n in self.names])

    def noise(self) -> tuple[float, float]:
        """(r, q) after self.t updates."""
        s, decay = self.s, math.exp(-self.t / self.s["tau"])
        return s["r_end"] + (s["r"] - s["r_end"]) * decay, s["q_end"] + (s["q"] - s["q_end"]) * decay

    # -- one Kalman update ------------------------------------------------------------------------
    def update(self, w: np.ndarray, H: np.ndarray, err: np.ndarray) -> np.ndarray:
        """One measurement: H (weights, K) = d y / d w, err (K,) = d - y. Returns the new w
        (and updates P and the update count)."""
        r, q = self.noise()
        Hg = H[self.index] * self.valid[:, :, None]  # (G, m, K)
        PH = self.P @ Hg  # (G, m, K)
        S = r * np.eye(H.shape[1]) + np.einsum("gmk,gml->kl", Hg, PH)
        A = np.linalg.inv(S)
        Kg = PH @ A  # (G, m, K)
        dw = Kg @ err  # (G, m)
        w = w.copy()
        np.add.at(w, self.index[self.valid], dw[self.valid])
        self.P = self.P - Kg @ np.transpose(PH, (0, 2, 1))
        self.P = 0.5 * (self.P + np.transpose(self.P, (0, 2, 1)))  # keep it symmetric in float rounding
        self.P[:, np.arange(self.m), np.arange(self.m)] += q * self.valid
        self.t += 1
        return w

    # -- measurements of a batch ----------------------------------------------------------------------
    def _measurements(self, batch):
        """Per sequence b: (length, [(t, {output: (target (K,), )})]) for the steps with a loss."""
        program = self.net.program
        B = next(iter(batch.inputs.values())).shape[1]
        T = next(iter(batch.inputs.values())).shape[0]
        lengths = np.full(B, T) if batch.lengths is None else np.asarray(batch.lengths)
        outs = [(name, o) for name, o in program.outputs.items() if o.loss != "none"]
        if not outs:
            raise TrainingError("optimizer: dekf needs an output with a loss (its measurement)")
        per = []
        for b in range(B):
            L = int(lengths[b])
            steps: dict = {}
            for name, o in outs:
                size = program.units[name].size
                tgt = np.asarray(batch.targets[name])
                user = (batch.masks or {}).get(name)
                for t in range(L):
                    if o.at == "last" and t != L - 1:
                        continue
                    if o.at == "mask" and (user is None or not np.asarray(user)[t, b] > 0):
                        continue
                    row = tgt[b] if o.at == "last" else tgt[t, b]
                    row = np.asarray(row, dtype=np.float64)
                    if row.ndim == 0:  # a class index
                        oh = np.zeros(size)
                        oh[int(row)] = 1.0
                        row = oh
                    steps.setdefault(t, {})[name] = row
            per.append((L, sorted(steps.items())))
        return per

    def jacobian(self, inputs: dict, b: int, t: int, names) -> tuple[np.ndarray, np.ndarray]:
        """(y, H) at step t of sequence b: y the outputs `names` after their activation (the
        units the targets are in), H (weights, sum of their sizes) = d y / d w, exact: the prefix
        0..t is run again with the current weights and each output component is backpropagated
        (a one-hot d out, which goes through the output's activation derivative)."""
        net = self.net
        xp, be = net.xp, net.backend
        prefix = {k: v[:t + 1, b:b + 1] for k, v in inputs.items()}
        arrays, reads = net._prepare(prefix, None, None)
        tape = net.executor.forward(net.params, net.consts, arrays, reads)
        ys, cols = [], []
        for name in names:
            ys.append(np.asarray(be.to_numpy(tape.out[name][t, 0]), dtype=np.float64))
            for k in range(tape.out[name].shape[-1]):
                g = xp.zeros(tape.out[name].shape, dtype=tape.out[name].dtype)
                g[t, 0, k] = 1
                grads = net.executor.backward(tape, net.params, net.consts, {name: g}, {}, reads)
                cols.append(self._grad_flat(grads))
        return np.concatenate(ys), np.stack(cols, axis=1)

    def weights(self) -> np.ndarray:
        """The filter's weight estimate in float64. It is kept here between updates, so that a
        float32 network does not round away the small late updates; if the network's
        parameters were changed from outside (they no longer equal the kept estimate in their
        own dtype), they are read again."""
        w = self.flat()
        if self.w is not None and self.w.shape == w.shape:
            dtype = np.asarray(self.net.backend.to_numpy(self.net.params[self.names[0]])).dtype
            if np.array_equal(self.w.astype(dtype).astype(np.float64), w):
                return self.w.copy()
        return w

    def train_batch(self, batch) -> float:
        """Per-step DEKF updates over the batch's sequences, one after the other. Returns the
        mean squared error of the measurements before their updates."""
        sq, count = 0.0, 0
        w = self.weights()
        for b, (L, steps) in enumerate(self._measurements(batch)):
            for t, targets in steps:
                y, H = self.jacobian(batch.inputs, b, t, list(targets))
                d = np.concatenate(list(targets.values()))
                err = d - y
                if not np.all(np.isfinite(err)):
                    raise TrainingError("optimizer: dekf: the output is NaN or Inf")
                sq += float(err @ err) / len(err)
                count += 1
                w = self.update(w, H, err)
                if not np.all(np.isfinite(w)):
                    raise TrainingError("optimizer: dekf: a weight became NaN or Inf; raise training.dekf.r")
                self._unflat_into(w)
                self.w = w.copy()
        return sq / max(count, 1)

    # -- checkpointing --------------------------------------------------------------------------------
    def state(self) -> dict:
        out = {"step": np.asarray(self.t, dtype=np.int64), "P": self.P}
        if self.w is not None:
            out["w"] = self.w
        return out

    def load_state(self, state: dict, asarray) -> None:
        P = np.asarray(state.get("P"))
        if P.shape != self.P.shape or P.dtype.kind != "f" or not np.all(np.isfinite(P)):
            raise TrainingError(f"optimizer state 'P' has shape {P.shape}, expected {self.P.shape} "
                                f"(a dekf optimizer over this network's parameters and groups)")
        self.P = P.astype(np.float64)
        self.t = int(state.get("step", 0))
        w = state.get("w")
        self.w = None if w is None or np.asarray(w).shape != (self.size,) else np.asarray(w, dtype=np.float64)
