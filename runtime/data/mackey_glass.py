"""The Mackey-Glass series: one-step (or n-step) prediction, denoising, free-running prediction.

    dx/dt = 0.2 x(t - tau) / (1 + x(t - tau)^10) - 0.1 x(t)        (tau = 17: chaotic)

Discretisation: classic Runge-Kutta 4 with a fine step dt = 0.1, the delayed term read from
the stored fine-step history (x(t - tau) and x(t - tau + dt) exactly, their mean at the half
step), sampled every `sample_step` = 1 time unit. The history before t = 0 is constant x0
(by default drawn from U[1.1, 1.3] by the seed; give x0 = 1.2 for the textbook start), and
the first `discard` samples (transient) are dropped. The series then lies in about
[0.42, 1.32] with a quasi-period of about 50 steps.

Inputs x(t) + noise (Gaussian, std `noise`; fresh noise every training epoch), targets the
clean x(t + horizon): horizon 1 = one-step prediction, horizon 0 with noise = denoising.
The last `validation_split` of the series (default: training.validation_split, else 0.1) is
held out; the rest is cut into windows of `seq_len` (random offset and order each epoch)
or, without seq_len, is one long sequence (batch of 1); `validation()` cuts the held-out
part the same way (so its loss compares with the training loss), while `evaluate` runs it
as one sequence preceded by `warmup` steps of context (default 100) that do not count.

Metric `nrmse`: RMSE / standard deviation of the target over the held-out part; also `mse`.
Baseline: persistence (answer the current input). `free_run(net, steps=84)`: n-step
prediction feeding every output back as the next input (NRMSE normalised by the std of the
whole series, over all steps and at the last step, as Jaeger & Haas' NRMSE84).

Jaeger & Haas' setting (specs/esn_jaeger2004.yaml): `squash: true` makes the values
tanh(x - 1) (inputs and targets; free-run errors are measured back in x = atanh(.) + 1);
`bias_input: c` makes the input the constant c, so that the series reaches the network only
through its output fed back (a delayed connection from the output unit); such a network's
one-step score and its free-run warm-up are teacher-forced (the delayed reads of the output
see the true series). `free_run_steps: 84` makes the evaluation metric `nrmse84`: the
free-run NRMSE at step 84 over `free_run_runs` starting points (default 100), with `nrmse`
(one-step) and `nrmse_free_run` (all free-run steps) beside it. The baseline then is
persistence in the free run too (x(s) held for all steps).
"""
from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from compiler.errors import DataError

from .base import (
    Batch,
    Task,
    as_rng,
    batched,
    check_float,
    check_int,
    fail,
    positive_int,
    seeded_rng,
    to_numpy,
)
from .limits import PYTHON_FLOAT_BYTES, check_numbers, check_series
from .metrics import nrmse


def mackey_glass(n: int, tau: float = 17.0, dt: float = 0.1, sample_step: float = 1.0, x0: float = 1.2,
                 discard: int = 0, beta: float = 0.2, gamma: float = 0.1, power: int = 10) -> np.ndarray:
    """n samples of the Mackey-Glass series (RK4 with step dt, one sample every sample_step)."""
    lag, sub = round(tau / dt), round(sample_step / dt)
    hist = [float(x0)] * (lag + 1)  # fine-step history; hist[-1] is x(t)

    def f(x, d):
        return beta * d / (1.0 + d ** power) - gamma * x

    for _ in range((discard + n) * sub):
        x, d0, d1 = hist[-1], hist[-1 - lag], hist[-lag]
        dm = 0.5 * (d0 + d1)
        k1 = f(x, d0)
        k2 = f(x + 0.5 * dt * k1, dm)
        k3 = f(x + 0.5 * dt * k2, dm)
        k4 = f(x + dt * k3, d1)
        hist.append(x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))
    return np.array(hist[lag + discard * sub::sub][:n])


class PersistencePredictor:
    """Answers the current input: the trivial predictor of a time series."""

    def __init__(self, input: str, output: str):
        self.input, self.output = input, output

    def forward(self, inputs, lengths=None, **_):
        return {self.output: np.asarray(inputs[self.input], dtype=np.float64)}


class MackeyGlass(Task):
    name = "mackey_glass"
    metric = "nrmse"
    higher_is_better = False
    PARAMS: ClassVar[dict] = {"length": 3000, "tau": 17, "horizon": 1, "noise": 0.0, "seq_len": None,
              "validation_split": None, "warmup": 100, "x0": None, "discard": 1000,
              "dt": 0.1, "sample_step": 1.0, "squash": False, "bias_input": None,
              "free_run_steps": None, "free_run_runs": 100}
    STEPS_SETTING: ClassVar[str] = "data.seq_len (or data.length)"

    @classmethod
    def sequence_steps(cls, params: dict) -> int | None:
        p = {**cls.PARAMS, **params}
        return positive_int(p["seq_len"]) or positive_int(p["length"])  # no seq_len: one sequence

    @classmethod
    def sequences_per_epoch(cls, params: dict, training) -> int | None:
        return None if positive_int({**cls.PARAMS, **params}["seq_len"]) else 1

    def __init__(self, program, seed: int, **params):
        super().__init__(program, seed, **params)
        p = self.params
        self.length = check_int(p, "length", minimum=2)
        self.tau = check_float(p, "tau", 0, lo_open=True)
        self.horizon = check_int(p, "horizon", minimum=0)
        self.noise = check_float(p, "noise", 0)
        self.seq_len = None if p["seq_len"] is None else check_int(p, "seq_len")
        self.warmup = check_int(p, "warmup", minimum=0)
        self.discard = check_int(p, "discard", minimum=0)
        dt = check_float(p, "dt", 0, 1, lo_open=True)
        step = check_float(p, "sample_step", 0, lo_open=True)
        for name, value in (("tau", self.tau), ("sample_step", step)):
            if abs(value / dt - round(value / dt)) > 1e-9:
                raise fail(name, f"a multiple of data.dt = {dt:g}", value)
        if p["validation_split"] is None:
            p["validation_split"] = (program.training or {}).get("validation_split", 0.1)
        split = check_float(p, "validation_split", 0, 1, lo_open=True, hi_open=True)
        x0 = p["x0"]
        if x0 is None:
            x0 = 1.2 + 0.1 * (2 * seeded_rng(self.seed, 3).random() - 1)
        else:
            x0 = check_float(p, "x0", 0, lo_open=True)
        self.expect_input_size(1, "one value x(t) per step")
        self.expect_output_size(1, f"the value x(t + {self.horizon})")
        self.expect_loss(("mse",), "the target is a real number")
        self.expect_at(("all",), "a prediction at every step")

        samples = self.discard + self.length + self.horizon  # each takes sample_step / dt RK4 steps, in Python
        check_series(self.name, samples, "data.length (the series takes data.discard + data.length samples)")
        check_numbers(self.name, "the series at the fine step dt", samples * round(step / dt) + round(self.tau / dt),
                      PYTHON_FLOAT_BYTES, "data.length or raise data.dt")
        if not isinstance(p["squash"], bool):
            raise fail("squash", "true or false", p["squash"])
        self.squash = p["squash"]
        self.bias_input = None if p["bias_input"] is None else check_float(p, "bias_input", -np.inf)
        self.free_run_steps = None if p["free_run_steps"] is None else check_int(p, "free_run_steps")
        self.free_run_runs = check_int(p, "free_run_runs")
        if self.free_run_steps is not None:
            self.metric = "nrmse84" if self.free_run_steps == 84 else f"nrmse{self.free_run_steps}"
        # the raw series x (free-run errors are measured in x) and the values the network sees
        self.raw = mackey_glass(self.length + self.horizon, self.tau, dt, step, x0, self.discard)
        self.series = np.tanh(self.raw - 1.0) if self.squash else self.raw
        self.n_val = max(1, round(self.length * split))
        self.n_train = self.length - self.n_val
        if self.n_train < (self.seq_len or 1):
            raise DataError(f"data.length = {self.length} leaves {self.n_train} training steps, fewer than "
                            f"data.seq_len = {self.seq_len or 1}; raise data.length or lower the validation split")
        val_noise = seeded_rng(self.seed, 2).standard_normal(self.length) * self.noise
        self.val_inputs = self.inputs_of(self.series[:self.length] + val_noise)
        self._validation = None

    # -- batches ------------------------------------------------------------------------------
    def inputs_of(self, values) -> np.ndarray:
        """The input sequence: the (noisy) values, or the constant bias_input."""
        if self.bias_input is not None:
            return np.full(len(values), self.bias_input, dtype=np.float32)
        return np.asarray(values, dtype=np.float32)

    def feedback(self) -> bool:
        """Does the output feed back (a delayed connection from it)?"""
        return self.program.read_back(self.output)

    def _teacher(self, batch):
        if not self.feedback():
            return None
        target = batch.targets[self.output]
        return {self.output: (target, np.ones(target.shape[:2]))}

    def window(self, start: int, stop: int, inputs) -> tuple[np.ndarray, np.ndarray]:
        """(inputs (stop - start, 1), targets (stop - start, 1)) of steps start..stop-1."""
        x = inputs[start:stop, None]
        y = self.series[start + self.horizon:stop + self.horizon, None].astype(np.float32)
        return x, y

    def epoch_size(self) -> int:
        return 1 if self.seq_len is None else self.n_train // self.seq_len

    def train_batches(self, batch_size: int, rng=None):
        rng = as_rng(rng, self.seed)
        inputs = self.inputs_of(self.series[:self.length] + rng.standard_normal(self.length) * self.noise)
        if self.seq_len is None:
            x, y = self.window(0, self.n_train, inputs)
            yield Batch({self.input: x[:, None]}, {self.output: y[:, None]})
            return
        L = self.seq_len
        offset = int(rng.integers(L)) if self.n_train >= 2 * L else 0
        starts = rng.permutation(np.arange(offset, self.n_train - L + 1, L))
        for group in batched(starts, batch_size):
            xs, ys = zip(*(self.window(s, s + L, inputs) for s in group))
            yield Batch({self.input: np.stack(xs, axis=1)}, {self.output: np.stack(ys, axis=1)})

    def context(self) -> int:
        """Warm-up steps before the held-out part in `evaluation_batches` (not counted)."""
        return min(self.warmup, self.n_train)

    def validation(self) -> list:
        """The held-out part: windows of seq_len from a zero state, like the training batches; or,
        without seq_len, one sequence after `warmup` steps of context that the loss does not
        count (masked), so that the reservoir's start-up transient stays out of val_loss."""
        if self._validation is None:
            if self.seq_len is None or self.n_val < self.seq_len:
                (whole,) = self.evaluation_batches()
                mask = np.ones(whole.targets[self.output].shape[:2])
                mask[:self.context()] = 0
                self._validation = [Batch(whole.inputs, whole.targets, masks={self.output: mask})]
            else:
                starts = np.arange(self.n_train, self.length - self.seq_len + 1, self.seq_len)
                xs, ys = zip(*(self.window(s, s + self.seq_len, self.val_inputs) for s in starts))
                self._validation = [Batch({self.input: np.stack(xs, axis=1)}, {self.output: np.stack(ys, axis=1)})]
        return self._validation

    def evaluation_batches(self) -> list:
        """The held-out part as one sequence after `warmup` steps of context from the series."""
        x, y = self.window(self.n_train - self.context(), self.length, self.val_inputs)
        return [Batch({self.input: x[:, None]}, {self.output: y[:, None]})]

    # -- metrics ------------------------------------------------------------------------------
    def score(self, net) -> dict:
        params = getattr(net, "params", None)
        if self.free_run_steps is not None and isinstance(params, dict):
            # the free runs take a while: the same parameters (the epoch's end, then the final
            # evaluation of a ridge fit) are scored once
            h = hashlib.sha1()
            for name in sorted(params):
                h.update(name.encode())
                h.update(np.ascontiguousarray(to_numpy(params[name])).tobytes())
            key = (id(net), h.hexdigest())
            if getattr(self, "_scored", (None,))[0] != key:
                self._scored = (key, self._score(net))
            return dict(self._scored[1])
        return self._score(net)

    def _score(self, net, free: bool = True) -> dict:
        batch = self.evaluation_batches()[0]
        teacher = self._teacher(batch)  # one-step prediction of a network fed its own output
        outs = net.forward(batch.inputs, teacher=teacher) if teacher else net.forward(batch.inputs)
        pred = to_numpy(outs[self.output])[self.context():, 0, 0].astype(np.float64)
        target = batch.targets[self.output][self.context():, 0, 0].astype(np.float64)
        mse = float(np.mean((pred - target) ** 2))
        result = {"nrmse": nrmse(pred, target), "mse": mse, "rmse": float(np.sqrt(mse))}
        if free and self.free_run_steps is not None:
            fr = self.free_run(net, steps=self.free_run_steps, runs=self.free_run_runs)
            result.update({self.metric: fr["nrmse_at_end"], "nrmse_free_run": fr["nrmse"],
                           "free_run_runs": fr["runs"], "free_run_nrmse_at_end_per_run": fr["per_run_at_end"]})
        return result

    def compute_baseline(self) -> dict:
        """Persistence: the one-step answer x(t) for x(t + 1); in the free run x(s) held."""
        if self.bias_input is None:  # the input itself (noisy, if the inputs are)
            result = self._score(PersistencePredictor(self.input, self.output), free=False)
        else:  # the input is a constant: persistence of the series
            target = self.series[self.n_train + self.horizon:self.length + self.horizon]
            pred = self.series[self.n_train:self.length]
            mse = float(np.mean((pred - target) ** 2))
            result = {"nrmse": nrmse(pred, target), "mse": mse, "rmse": float(np.sqrt(mse))}
        if self.free_run_steps is not None:
            starts = self.free_run_starts(self.free_run_steps, self.free_run_runs)
            err = self.unsquash(self.series[starts + self.free_run_steps]) - self.unsquash(self.series[starts])
            result[self.metric] = float(np.sqrt(np.mean(err ** 2)) / self.raw[:self.length].std())
        return result

    def unsquash(self, values):
        """Values the network sees -> the series x."""
        if not self.squash:
            return np.asarray(values, dtype=np.float64)
        return np.arctanh(np.clip(np.asarray(values, dtype=np.float64), -1 + 1e-15, 1 - 1e-15)) + 1.0

    def free_run_starts(self, steps: int, runs: int) -> np.ndarray:
        first, last = self.n_train - 1, self.length - steps  # start s predicts s+1 .. s+steps
        if last < first:
            raise DataError(f"the held-out part has {self.n_val} steps, fewer than the {steps} free-running "
                            f"steps; raise data.length or data.validation_split")
        return np.unique(np.linspace(first, last, num=min(runs, last - first + 1)).round().astype(int))

    def free_run(self, net, steps: int = 84, runs: int = 10) -> dict:
        """Warm up on the true series, then predict `steps` values feeding each output back as
        the next input (T = 1 chunks with the network's state), from up to `runs` starting
        points in the held-out part, run as one batch. A network whose output feeds back is
        teacher-forced during the warm-up (its delayed reads of the output see the series, the
        last one x(s) too); with `bias_input` its input stays the constant. Errors are in x
        (unsquashed), normalised by the std of the whole series x."""
        if self.horizon != 1:
            raise DataError(f"free_run feeds each prediction back as the next input, so it needs "
                            f"data.horizon = 1, got {self.horizon}")
        if any(c.delay < 0 for c in self.program.connections):
            raise DataError("free_run runs forward in time step by step; this spec has backward "
                            "(negative-delay) connections")
        starts = self.free_run_starts(steps, runs)
        first = self.n_train - 1
        warm = max(1, min(self.warmup, first + 1))
        x = np.stack([self.inputs_of(self.series[s - warm + 1:s + 1]) for s in starts], axis=1)[..., None]
        if self.feedback():
            # teacher forcing: the delayed read of y at step t sees x(t + 1 - 1) = y's target at
            # t - 1; the last window value is never read inside the window (x(s) repeated)
            taught = np.stack([np.append(self.series[s - warm + 2:s + 1], self.series[s]) for s in starts],
                              axis=1)[..., None]
            outputs, state = net.forward({self.input: x}, teacher={self.output: (taught, np.ones(taught.shape[:2]))},
                                         return_state=True)
        else:
            outputs, state = net.forward({self.input: x}, return_state=True)
        preds = [to_numpy(outputs[self.output])[-1]]  # the prediction of x(s + 1) at s
        constant = x[-1:]
        while len(preds) < steps:
            inp = constant if self.bias_input is not None else preds[-1][None].astype(np.float32)
            outputs, state = net.forward({self.input: inp}, state=state, return_state=True)
            preds.append(to_numpy(outputs[self.output])[-1])
        pred = self.unsquash(np.stack(preds)[..., 0])  # (steps, runs)
        truth = self.unsquash(np.stack([self.series[s + 1:s + steps + 1] for s in starts], axis=1))
        err, std = pred - truth, self.raw[:self.length].std()
        return {"nrmse": float(np.sqrt(np.mean(err ** 2)) / std),
                "nrmse_at_end": float(np.sqrt(np.mean(err[-1] ** 2)) / std),
                "per_run_at_end": [float(v) for v in np.abs(err[-1]) / std],
                "steps": steps, "runs": len(starts)}
