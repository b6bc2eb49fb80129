"""The `training:` section of a spec as typed settings with defaults."""
from __future__ import annotations

from dataclasses import dataclass, field

from .optimizers import DEFAULT_OPTIMIZER, OPTIMIZERS


@dataclass
class Config:
    method: str = "bptt"  # "bptt" | "ridge"
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 10
    steps_per_epoch: int | None = None
    batch_size: int = 32
    seed: int = 0
    truncate: int | None = None
    clip_norm: float | None = None
    clip_value: float | None = None
    lr_schedule: dict | None = None
    teacher_forcing: dict | None = None
    ridge_alpha: float = 1e-6
    washout: int = 0
    ridge_noise: float = 0.0
    ridge_solver: str = "solve"
    checkpoint_every: int = 1
    keep: int = 3
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    validation_split: float | None = None
    eval_every: int = 1
    optimizer_settings: dict = field(default_factory=dict)  # training: keys the optimizer reads (betas, eps, ...)
    train_solved: bool = False  # early_stopping.train_solved: stop once the task's training set is solved

    @classmethod
    def from_training(cls, t: dict | None) -> Config:
        t = t or {}
        opt = t.get("optimizer", DEFAULT_OPTIMIZER)
        kind = OPTIMIZERS.get(opt)
        ridge = t.get("ridge") or {}
        ckpt = t.get("checkpoint") or {}
        stop = t.get("early_stopping")
        method = t.get("method", "bptt")
        return cls(
            method=method, optimizer=opt, lr=float(t.get("lr", kind.default_lr if kind else 0.001)),
            momentum=float(t.get("momentum", 0.0)), weight_decay=float(t.get("weight_decay", 0.0)),
            epochs=1 if method == "ridge" else int(t.get("epochs", 10)),  # ridge: one closed-form fit
            steps_per_epoch=t.get("steps_per_epoch"), batch_size=int(t.get("batch_size", 32)),
            seed=int(t.get("seed", 0)), truncate=(t.get("bptt") or {}).get("truncate"),
            clip_norm=t.get("clip_norm"), clip_value=t.get("clip_value"),
            lr_schedule=t.get("lr_schedule"), teacher_forcing=t.get("teacher_forcing"),
            ridge_alpha=float(ridge.get("alpha", 1e-6)), washout=int(ridge.get("washout", 0)),
            ridge_noise=float(ridge.get("noise", 0.0)), ridge_solver=str(ridge.get("solver", "solve")),
            checkpoint_every=int(ckpt.get("every", 1)), keep=int(ckpt.get("keep", 3)),
            patience=None if stop is None or ("patience" not in stop and stop.get("train_solved"))
            else int(stop.get("patience", 5)),
            min_delta=float((stop or {}).get("min_delta", 0.0)),
            restore_best=bool((stop or {}).get("restore_best", True)),
            validation_split=t.get("validation_split"),
            optimizer_settings={k: tuple(v) if isinstance(v, (list, tuple)) else v
                                for k, v in ((k, t.get(k, d)) for k, d in (kind.settings if kind else {}).items())
                                if k not in ("momentum", "weight_decay")},
            train_solved=bool((stop or {}).get("train_solved", False)),
        )

    def optimizer_options(self) -> dict:
        """Keyword arguments of optimizers.make_optimizer: momentum, weight_decay and the other settings."""
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, **self.optimizer_settings}
