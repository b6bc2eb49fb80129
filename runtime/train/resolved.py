"""spec.resolved.yaml: the spec as `timeloom run` used it, every default filled in.

`spec.yaml` in a run directory is the spec as written (with the command-line overrides);
`spec.resolved.yaml` beside it adds every setting that came from a default: the `training:`
values of `Config` (config.py: optimizer, lr, epochs, batch_size, seed, checkpoint, ...) and
the data task's parameters (its PARAMS defaults, train_size, input and output). Settings that
are off (no clipping, no early stopping, no truncation, ...) stay absent, as in a spec. The
file is itself a valid spec: `timeloom run RUNDIR/spec.resolved.yaml` trains the same run.
"""
from __future__ import annotations

import copy

from .config import Config
from .optimizers import OPTIMIZERS

HEADER = ("# The spec as `timeloom run` used it: spec.yaml (as written, with the --set overrides) plus every\n"
          "# default that applied (training settings from runtime/train/config.py, the data task's parameters).\n"
          "# Absent: switched off (no clipping, no early stopping, ...).\n")


def resolved_training(cfg: Config) -> dict:
    """The `training:` section that `Config.from_training` reads back as `cfg` (None: left out)."""
    reads = OPTIMIZERS[cfg.optimizer].settings if cfg.optimizer in OPTIMIZERS else {}
    given = {"momentum": cfg.momentum, "weight_decay": cfg.weight_decay, **cfg.optimizer_settings}
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in given.items() if k in reads}
    t = {"method": cfg.method, "optimizer": cfg.optimizer, "lr": cfg.lr, **settings, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
         "steps_per_epoch": cfg.steps_per_epoch, "seed": cfg.seed,
         "bptt": {"truncate": cfg.truncate} if cfg.truncate is not None else None,
         "clip_norm": cfg.clip_norm, "clip_value": cfg.clip_value,
         "lr_schedule": cfg.lr_schedule, "teacher_forcing": cfg.teacher_forcing,
         "ridge": ({"alpha": cfg.ridge_alpha, "washout": cfg.washout, "noise": cfg.ridge_noise,
                    "solver": cfg.ridge_solver} if cfg.method == "ridge" else None),
         "checkpoint": {"every": cfg.checkpoint_every, "keep": cfg.keep},
         "early_stopping": ({k: v for k, v in (("patience", cfg.patience), ("min_delta", cfg.min_delta),
                                                ("restore_best", cfg.restore_best),
                                                ("train_solved", cfg.train_solved or None)) if v is not None}
                            if cfg.patience is not None or cfg.train_solved else None),
         "validation_split": cfg.validation_split}
    return {k: v for k, v in t.items() if v is not None}


def resolved_data(task) -> dict:
    """The `data:` section with the task's defaults: task, input, output and every parameter."""
    out = {"task": task.name}
    for key in ("input", "output"):
        if getattr(task, key, None) is not None:
            out[key] = getattr(task, key)
    out.update({k: v for k, v in task.params.items() if v is not None})
    return out


def resolved_spec(spec: dict, cfg: Config, task=None) -> dict:
    """`spec` with `training:` (and `data:`, given the task) replaced by their resolved forms."""
    out = copy.deepcopy(spec)
    out["training"] = {**(out.get("training") or {}), **resolved_training(cfg)}
    if task is not None and hasattr(task, "params"):
        out["data"] = {**(out.get("data") or {}), **resolved_data(task)}
    return out
