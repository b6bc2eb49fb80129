"""The training loop: epochs of batches, BPTT steps, validation, early stopping, checkpoints.

Determinism: the network is initialized from `seed`; the data generator `rng` is one
numpy Generator seeded with `seed` and handed to `task.train_batches` each epoch (tasks must
draw all their randomness from it); teacher-forcing masks come from a generator keyed by
(seed, step). A checkpoint stores the generator's state at the start of the current epoch
and how many batches of it are done, so a resumed run replays the epoch's data draws up to
that batch and goes on with bitwise the same numbers as an uninterrupted run.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from compiler.errors import CheckpointError, DataError, TrainingError

from . import bptt, checkpoint, diagnose, ridge
from .clipping import clip_by_norm, clip_by_value, global_norm
from .config import Config
from .optimizers import make_optimizer
from .rundir import MetricsLog
from .schedules import learning_rate, teacher_probability


BEST = "best.npz"  # checkpoints/best.npz: the parameters of the best epoch (early_stopping.restore_best)


@dataclass
class Position:
    epoch: int = 0  # the epoch being run (or the next one)
    batch: int = 0  # batches of that epoch done
    step: int = 0  # optimizer steps done
    epoch_rng: dict | None = None  # the data generator's state at the start of `epoch`
    loss_sum: float = 0.0  # this epoch's batch losses so far
    loss_n: int = 0


@dataclass
class Result:
    status: str  # "completed" | "early_stopped" | "interrupted"
    position: Position
    history: list = field(default_factory=list)  # epoch records
    checkpoint: Path | None = None
    best: dict | None = None
    ridge: dict | None = None
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)


class NullProgress:
    def start(self, trainer): ...
    def epoch_start(self, epoch, lr, total): ...
    def step(self, record): ...
    def epoch_end(self, record): ...
    def message(self, text): ...
    def close(self): ...


class Trainer:
    def __init__(self, net, task, config: Config, rundir=None, progress=None):
        self.net, self.task, self.cfg = net, task, config
        self.program = net.program
        if config.truncate and any(c.delay < 0 for c in self.program.connections):
            raise TrainingError("training.bptt.truncate: this network reads the future (negative delays, "
                                "e.g. a bidirectional block), so its sequences cannot be cut into windows; "
                                "remove bptt.truncate")
        if config.optimizer == "dekf":  # Kalman-filter training, per-step updates (runtime/train/dekf.py)
            from .dekf import DEKF
            self.optimizer = DEKF(net, config.optimizer_settings.get("dekf"))
        else:
            self.optimizer = make_optimizer(config.optimizer, net.xp, net.trainable, **config.optimizer_options())
        if config.train_solved and not callable(getattr(task, "train_solved", None)):
            raise TrainingError(f"training.early_stopping.train_solved: the data task "
                                f"'{getattr(task, 'name', '?')}' has no solved training set (anbncn and anbn "
                                f"have one); remove train_solved or use patience")
        self.rng = np.random.default_rng(config.seed)
        self.pos = Position()
        self.best = None  # {"epoch", "value", "monitor"}
        self.best_params = None  # host copies of the parameters of the best epoch (restore_best)
        self.bad_epochs = 0
        self.history: list = []
        self.rundir = Path(rundir) if rundir else None
        self.ckpt_dir = self.rundir / "checkpoints" if self.rundir else None
        self.metrics = MetricsLog(self.rundir / "metrics.jsonl") if self.rundir else None
        if self.ckpt_dir is not None:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress or NullProgress()
        self.teacher_units = bptt.teacher_units(self.program)
        self.leaks = [n for n, p in self.program.params.items() if p.kind == "alpha" and p.trainable]
        self.last_checkpoint = None
        self.stop_requested = False
        self.stop_signal = None  # SIGINT or SIGTERM: the exit status is 128 + it
        self.before_save = None  # called once, before the first checkpoint is written (resume_run)
        self.undo_overrides = None  # after it ran: the --set items that restore the spec's earlier values
        self.spec_hash = checkpoint.spec_hash(self.program.spec)
        self.ridge_info = None
        self._t0 = time.monotonic()

    # -- the loop ---------------------------------------------------------------------------
    def fit(self) -> Result:
        previous = self._install_stop(signal.SIGINT, "interrupted: finishing this step and saving a checkpoint "
                                                     "(Ctrl-C again to quit at once)")
        previous_term = self._install_stop(signal.SIGTERM, "terminated (SIGTERM): finishing this step and "
                                                           "saving a checkpoint")
        self.progress.start(self)
        try:
            # every loss and gradient is checked for NaN/Inf, and the error names the step, the output and
            # the largest parameter (diagnose.py): numpy's overflow warnings would come first and say less
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._epochs()
        finally:
            self.progress.close()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            if previous_term is not None:
                signal.signal(signal.SIGTERM, previous_term)

    def _epochs(self) -> Result:
        if self.cfg.method == "ridge":
            return self._fit_ridge()
        for epoch in range(self.pos.epoch, self.cfg.epochs):
            status = self._run_epoch(epoch)
            if status:
                return self._result(status)
        return self._result("completed")

    def _run_epoch(self, epoch: int) -> str | None:
        cfg, pos = self.cfg, self.pos
        if pos.batch == 0:
            pos.epoch_rng, pos.loss_sum, pos.loss_n = self.rng.bit_generator.state, 0.0, 0
        else:  # resumed inside this epoch: replay its data draws
            self.rng.bit_generator.state = pos.epoch_rng
        lr = learning_rate(cfg.lr, cfg.lr_schedule, epoch, cfg.epochs)
        p = teacher_probability(cfg.teacher_forcing, epoch, cfg.epochs) if self.teacher_units else 0.0
        self.progress.epoch_start(epoch, lr, cfg.steps_per_epoch)
        batches = self.task.train_batches(cfg.batch_size, self.rng)
        if cfg.steps_per_epoch:
            batches = islice(batches, cfg.steps_per_epoch)
        for b, batch in enumerate(batches):
            if b < pos.batch:
                continue
            loss, gnorm = self._train_batch(batch, lr, p, epoch, b)
            pos.batch, pos.loss_sum, pos.loss_n = b + 1, pos.loss_sum + loss, pos.loss_n + 1
            record = {"kind": "step", "step": pos.step, "epoch": epoch + 1, "batch": b + 1, "loss": loss,
                      "lr": lr, "grad_norm": gnorm}
            self._log(record)
            self.progress.step(record)
            if self.stop_requested:
                self.save_checkpoint("interrupt")
                return "interrupted"
        if pos.loss_n == 0:
            raise DataError(f"the data task '{getattr(self.task, 'name', '?')}' gave no training batches "
                            f"in epoch {epoch + 1}")
        batches_done = pos.batch
        pos.epoch, pos.batch = epoch + 1, 0
        record, stop = self._end_epoch(epoch, lr, p, pos.loss_sum / pos.loss_n, batches_done)
        last = stop or epoch + 1 == cfg.epochs
        if last or (epoch + 1) % cfg.checkpoint_every == 0 or self.stop_requested:
            self.save_checkpoint("final" if last else ("interrupt" if self.stop_requested else "epoch"))
        if stop:
            return "early_stopped"
        return "interrupted" if self.stop_requested and not last else None

    def _keep_leaks_in_range(self):
        """Trained leaks stay in [0, 1] (projected after each update): alpha is the share of the
        previous output a leaky unit keeps; above 1 its state would grow instead of decaying."""
        for name in self.leaks:
            a = self.net.params[name]
            if bool(((a < 0) | (a > 1)).any()):
                self.net.params[name] = self.net.xp.clip(a, 0.0, 1.0)

    def _train_batch(self, batch, lr: float, p: float, epoch: int, b: int):
        """One batch: one optimizer step per window; returns (mean window loss, last grad norm)."""
        net, cfg = self.net, self.cfg
        if cfg.optimizer == "dekf":  # no gradient step: the filter updates at every time step
            loss = self.optimizer.train_batch(batch)
            self._keep_leaks_in_range()
            self.pos.step += 1
            return loss, 0.0
        T = next(iter(batch.inputs.values())).shape[0]
        forced = bptt.teacher(self.program, self.teacher_units, batch, p,
                              np.random.default_rng([cfg.seed, 0x7EAC, self.pos.step]))
        multi = bool(cfg.truncate) and cfg.truncate < T
        state, losses, gnorm = None, [], 0.0
        for w in bptt.windows(self.program, batch, cfg.truncate, forced):
            wT = next(iter(w.inputs.values())).shape[0]
            try:
                if not w.has_loss:
                    _, state = net.forward(w.inputs, lengths=w.lengths, state=state, return_state=True,
                                           teacher=w.teacher)
                    state = bptt.force_state(net.xp, state, w, wT)
                    continue
                out = net.loss_and_grads(w.inputs, w.targets, lengths=w.lengths, state=state,
                                         masks=w.masks, teacher=w.teacher, return_state=multi)
            except TrainingError:
                self._nan(epoch, b, "the loss", diagnose.locate(net, w, state))
            except DataError as e:
                raise DataError(f"data task '{getattr(self.task, 'name', '?')}', epoch {epoch + 1} batch "
                                f"{b + 1}: {e}") from e
            loss, grads = out[0], out[1]
            gnorm = global_norm(net.xp, grads)
            if not math.isfinite(gnorm):
                bad = diagnose.bad_gradient(net, grads) or "?"
                self._nan(epoch, b, "a gradient", f"the gradient of parameter '{bad}'")
            self._clip(grads, gnorm)
            self.optimizer.step(net.params, grads, lr)
            self._keep_leaks_in_range()
            self.pos.step += 1
            if not diagnose.all_finite(net):
                bad = diagnose.first_bad_param(net, net.params)
                self._nan(epoch, b, "a parameter", f"parameter '{bad}' after the update (lr {lr:g} too large?)")
            losses.append(loss)
            if multi:
                state = bptt.force_state(net.xp, out[2], w, wT)
        return (sum(losses) / len(losses) if losses else 0.0), gnorm

    def _clip(self, grads, norm: float) -> None:
        """Clip by value, then by global norm (the norm is recomputed if values were clipped)."""
        xp = self.net.xp
        if self.cfg.clip_value:
            clip_by_value(xp, grads, self.cfg.clip_value)
            norm = None
        if self.cfg.clip_norm:
            clip_by_norm(xp, grads, self.cfg.clip_norm, norm)

    def _nan(self, epoch, b, what, where):
        step = self.pos.step + 1
        if self.last_checkpoint is not None:
            keep = f"the last good checkpoint is {self.last_checkpoint}"
            if self.rundir:
                keep += f" (resume: timeloom run --resume {self.rundir})"
        else:
            keep = "no checkpoint had been written yet"
        if self.before_save is not None and self.rundir:
            keep += ", with the settings before this resume's --set overrides (they were not kept in spec.yaml)"
        elif self.undo_overrides and self.rundir:
            keep += (f"; this resume's --set overrides trained to a checkpoint and are now in spec.yaml: to go back "
                     f"to the earlier settings, resume with {' '.join(self.undo_overrides)}")
        raise TrainingError(f"step {step} (epoch {epoch + 1}, batch {b + 1}): {what} is NaN or Inf, first in "
                            f"{where}; training stopped, {keep}; try a lower lr or clip_norm")

    # -- epoch end: validation, metric, early stopping ----------------------------------------
    def validation_loss(self) -> float | None:
        batches = list(self.task.validation() or [])
        if not batches:
            return None
        total = 0.0
        for batch in batches:
            # a ridge readout's loss is the one-step loss: teacher-forced where the output feeds back
            teacher = ridge.teacher(self.net, batch) if self.cfg.method == "ridge" else None
            try:
                total += self.net.loss(batch.inputs, batch.targets, lengths=batch.lengths, masks=batch.masks,
                                       teacher=teacher)
            except TrainingError as e:
                raise TrainingError(f"step {self.pos.step}: the validation loss is NaN or Inf "
                                    f"({diagnose.locate(self.net, _as_window(batch))})") from e
        return total / len(batches)

    def _end_epoch(self, epoch, lr, p, train_loss, batches):
        cfg = self.cfg
        val = self.validation_loss()
        record = {"kind": "epoch", "epoch": epoch + 1, "step": self.pos.step, "batches": batches,
                  "loss": train_loss, "val_loss": val, "lr": lr}
        if self.teacher_units and cfg.teacher_forcing:
            record["teacher_p"] = p
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            record[self.task.metric] = _scalar(self.task.evaluate(self.net).get(self.task.metric))
        stop = solved = False
        if cfg.train_solved:  # Gers & Schmidhuber 2001: train until the training set is learned
            solved = record["train_solved"] = bool(self.task.train_solved(self.net))
        if cfg.patience:
            monitor, value = ("val_loss", val) if val is not None else ("loss", train_loss)
            if self.best is None or value < self.best["value"] - cfg.min_delta:
                self.best, self.bad_epochs = {"epoch": epoch + 1, "value": value, "monitor": monitor}, 0
                record["best"] = True
                if cfg.restore_best:
                    self._keep_best()
            else:
                self.bad_epochs += 1
                stop = self.bad_epochs >= cfg.patience
        record["time"] = round(time.monotonic() - self._t0, 3)
        self.history.append(record)
        self._log(record)
        self.progress.epoch_end(record)
        if solved:
            self.progress.message(f"early stopping after epoch {epoch + 1}: every training string is solved "
                                  f"(early_stopping.train_solved)")
            return record, True
        if stop:
            restored = cfg.restore_best and self._restore_best()
            self.progress.message(f"early stopping after epoch {epoch + 1}: {self.best['monitor']} has not "
                                  f"improved for {cfg.patience} epochs (best {self.best['value']:.6g} at "
                                  f"epoch {self.best['epoch']}" + ("; its parameters restored)" if restored else ")"))
        return record, stop

    def _keep_best(self) -> None:
        """Remember the parameters of the best epoch so far (in memory and, in a run, checkpoints/best.npz)."""
        be = self.net.backend
        self.best_params = {k: be.to_numpy(v).copy() for k, v in self.net.params.items()}
        if self.ckpt_dir is not None:
            checkpoint.save(self.ckpt_dir / BEST, self.best_params, {},
                            {"spec_hash": self.spec_hash, "kind": "best", "epoch": self.best["epoch"],
                             "step": self.pos.step, "best": self.best}, replace=True)

    def _restore_best(self) -> bool:
        """Put the best epoch's parameters back into the network (after a resume: from best.npz)."""
        best = self.best_params
        if best is None and self.ckpt_dir is not None and (self.ckpt_dir / BEST).is_file():
            best = checkpoint.load(self.ckpt_dir / BEST).params
        if best is None:
            return False
        for k in self.net.params:
            self.net.params[k] = self.net.backend.asarray(best[k])
        return True

    # -- ridge ----------------------------------------------------------------------------------
    def _fit_ridge(self) -> Result:
        cfg = self.cfg
        if self.pos.epoch >= 1:
            return self._result("completed")
        self.pos.epoch_rng = self.rng.bit_generator.state
        batches = self.task.train_batches(cfg.batch_size, self.rng)
        batches = list(islice(batches, cfg.steps_per_epoch) if cfg.steps_per_epoch else batches)
        self.progress.epoch_start(0, 0.0, len(batches))
        try:
            self.ridge_info = ridge.fit(self.net, batches, cfg.ridge_alpha, cfg.washout, cfg.ridge_noise,
                                        cfg.ridge_solver, noise_seed=cfg.seed)  # its errors say what to change
            try:
                losses = [self.net.loss(b.inputs, b.targets, lengths=b.lengths,
                                        masks=ridge.washout_masks(self.net, b, cfg.washout),
                                        teacher=ridge.teacher(self.net, b)) for b in batches]
            except TrainingError as e:
                raise TrainingError(f"method: ridge: the readout gives a NaN or Inf loss ({e}); "
                                    f"raise ridge.alpha") from e
        except DataError as e:
            raise DataError(f"data task '{getattr(self.task, 'name', '?')}': {e}") from e
        self.pos.step, self.pos.epoch = 1, 1
        self.progress.step({"kind": "step", "step": 1, "epoch": 1, "batch": len(batches),
                            "loss": sum(losses) / len(losses)})
        self._end_epoch(0, 0.0, 0.0, sum(losses) / len(losses), len(batches))
        self.save_checkpoint("final")
        return self._result("completed")

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self, kind: str) -> Path | None:
        if self.ckpt_dir is None:
            return None
        if self.before_save is not None:
            hook, self.before_save = self.before_save, None
            hook()
        pos = self.pos
        path = self.ckpt_dir / checkpoint.file_name(pos.step, pos.epoch, pos.batch)
        if path.exists():  # a resumed run reached a state already saved: it is bitwise the same
            self.last_checkpoint = path
            return path
        be = self.net.backend
        meta = {
            "spec_hash": self.spec_hash, "spec_name": self.program.name, "kind": kind,
            "step": pos.step, "epoch": pos.epoch, "batch": pos.batch, "epoch_rng": pos.epoch_rng,
            "rng": self.rng.bit_generator.state, "loss_sum": pos.loss_sum, "loss_n": pos.loss_n,
            "best": self.best, "bad_epochs": self.bad_epochs, "optimizer": self.cfg.optimizer,
            "method": self.cfg.method, "dtype": str(be.dtype), "backend": be.name, "seed": self.cfg.seed,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        params = {k: be.to_numpy(v) for k, v in self.net.params.items()}
        opt = {k: (v if isinstance(v, np.ndarray) else be.to_numpy(v)) for k, v in self.optimizer.state().items()}
        checkpoint.save(path, params, opt, meta)
        checkpoint.rotate(self.ckpt_dir, self.cfg.keep)
        self.last_checkpoint = path
        return path

    def restore(self, ckpt: checkpoint.Checkpoint, resume: bool = True) -> None:
        """Load parameters; with `resume`, also the optimizer, generator and position."""
        checkpoint.check_fits(ckpt, self.program)
        checkpoint.check_finite(ckpt, optimizer=resume)
        for name in self.program.params:
            self.net.params[name] = self.net.backend.asarray(ckpt.params[name])
        if not resume:
            return
        meta = ckpt.meta
        checkpoint.check_resume(ckpt, self.cfg, self.program)  # the same method and optimizer, the whole state
        try:
            self.optimizer.load_state(ckpt.optimizer, self.net.backend.asarray)
        except TrainingError as e:
            raise CheckpointError(f"{ckpt.path}: {e}") from e
        self.rng.bit_generator.state = meta["rng"]
        self.pos = Position(meta["epoch"], meta["batch"], meta["step"], meta.get("epoch_rng"),
                            meta.get("loss_sum", 0.0), meta.get("loss_n", 0))
        self.best, self.bad_epochs = meta.get("best"), meta.get("bad_epochs", 0)
        self.last_checkpoint = ckpt.path
        if self.metrics is not None:
            self.metrics.truncate(self.pos.step, self.pos.epoch)
            self.history = [r for r in self.metrics.records() if r.get("kind") == "epoch"]

    # -- helpers ------------------------------------------------------------------------------------
    def _log(self, record):
        if self.metrics is not None:
            self.metrics.append(record)

    def _result(self, status) -> Result:
        return Result(status, self.pos, self.history, self.last_checkpoint, self.best, self.ridge_info,
                      self.stop_signal if status == "interrupted" else None)

    def _install_stop(self, signum, message: str):
        """SIGINT (Ctrl-C) and SIGTERM (sent by `timeout`, SLURM, Ray, kill) alike: finish the step,
        save a checkpoint, exit with 128 + the signal (130, 143); a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_signal(sig, frame):
            if self.stop_requested:
                raise Terminated(sig)
            self.stop_requested, self.stop_signal = True, sig
            self.progress.message(message)

        return signal.signal(signum, on_signal)


def _scalar(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None


def _as_window(batch):
    return bptt.Window(batch.inputs, batch.targets, batch.lengths, batch.masks or {}, None, True)


class Terminated(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: stop at once, without saving (the exit status is 128 + `signum`)."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum

