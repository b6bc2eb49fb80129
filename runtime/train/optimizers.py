"""Optimizers with their state as named arrays (so a checkpoint can hold them).

Update rules as in torch.optim; `weight_decay` lambda adds lambda * p to the gradient first
(torch's L2 `weight_decay`, coupled, not AdamW's):
- sgd:     b <- mu b + g  (b = g at the first step);  p <- p - lr b   (plain p - lr g when mu = 0)
- adam:    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
           p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
- rmsprop: v <- a v + (1-a) g^2;  d = g / (sqrt(v) + eps);
           b <- mu b + d, p <- p - lr b  (momentum mu > 0)  or  p <- p - lr d
`state()` is {key: array}: "step" and "{slot}/{param}" (e.g. "m/h->h@1").

The registry `OPTIMIZERS` is the one place an optimizer is declared: the schema's enum for
`training.optimizer`, the default learning rate and the check that every optimizer setting in
`training:` is one the chosen optimizer reads (compiler/registries.py) all come from it. A new
optimizer is one class (a subclass of `Optimizer` with `default_lr`, `settings` = the
`training:` keys it reads with their defaults, `slots` and `update`) and one entry in
`OPTIMIZERS`; a setting key no optimizer had before also needs its entry under
`$defs/training/properties` in schemas/timeloom.schema.json.
"""
from __future__ import annotations

import math

import numpy as np

from compiler.errors import TrainingError

DEFAULT_OPTIMIZER = "adam"


class Optimizer:
    """Base: `step(params, grads, lr)` updates the param arrays in place."""

    slots: tuple = ()
    default_lr: float = 0.001  # training.lr when the spec gives none
    settings: dict = {"weight_decay": 0.0}  # the training: keys this optimizer reads, with their defaults

    def __init__(self, xp, names, **hyper):
        unread = sorted(set(hyper) - set(self.settings))
        if unread:
            raise TrainingError(f"optimizer {type(self).__name__.lower()} does not read {', '.join(unread)} "
                                f"(it reads {', '.join(self.settings)})")
        self.xp = xp
        self.names = list(names)
        self.hyper = {**self.settings, **hyper}
        self.t = 0
        self.buffers = {slot: {} for slot in self.slots}  # slot -> {param: array}, created lazily

    def step(self, params: dict, grads: dict, lr: float) -> None:
        self.t += 1
        wd = self.hyper.get("weight_decay", 0.0)
        for name in self.names:
            p, g = params[name], grads[name]
            params[name] = self.update(name, p, g + wd * p if wd else g, lr)

    def update(self, name, p, g, lr):
        raise NotImplementedError

    def _buf(self, slot, name, like):
        b = self.buffers[slot].get(name)
        if b is None:
            b = self.buffers[slot][name] = self.xp.zeros_like(like)
        return b

    # -- checkpointing ---------------------------------------------------------------------
    def state(self) -> dict:
        out = {"step": np.asarray(self.t, dtype=np.int64)}
        for slot, bufs in self.buffers.items():
            for name, arr in bufs.items():
                out[f"{slot}/{name}"] = arr
        return out

    def used_slots(self) -> tuple:
        """The slots that hold a buffer for every parameter after the first step."""
        return tuple(s for s in self.slots if s != "momentum" or self.hyper.get("momentum", 0.0))

    def load_state(self, state: dict, asarray) -> None:
        self.t = int(state.get("step", 0))
        self.buffers = {slot: {} for slot in self.slots}
        for key, arr in state.items():
            if key == "step":
                continue
            slot, _, name = key.partition("/")
            if slot not in self.buffers or name not in self.names:
                raise TrainingError(f"optimizer state '{key}' does not fit a {type(self).__name__.lower()} "
                                    f"optimizer over this network's parameters")
            self.buffers[slot][name] = asarray(arr)


class SGD(Optimizer):
    slots = ("momentum",)
    default_lr = 0.01
    settings = {"momentum": 0.0, "weight_decay": 0.0}

    def update(self, name, p, g, lr):
        mu = self.hyper["momentum"]
        if mu:
            b = self.buffers["momentum"].get(name)
            b = g.copy() if b is None else b * mu + g
            self.buffers["momentum"][name] = b
            g = b
        return p - lr * g


class Adam(Optimizer):
    slots = ("m", "v")
    default_lr = 0.001
    settings = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}

    def update(self, name, p, g, lr):
        (b1, b2), eps = self.hyper["betas"], self.hyper["eps"]
        m = self._buf("m", name, p) * b1 + (1 - b1) * g
        v = self._buf("v", name, p) * b2 + (1 - b2) * (g * g)
        self.buffers["m"][name], self.buffers["v"][name] = m, v
        bc1, bc2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        denom = self.xp.sqrt(v) / math.sqrt(bc2) + eps
        return p - (lr / bc1) * (m / denom)


class RMSprop(Optimizer):
    slots = ("square_avg", "momentum")
    default_lr = 0.01
    settings = {"eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0}
    alpha = 0.99  # the smoothing constant (torch's default; not a spec setting)

    def update(self, name, p, g, lr):
        a, eps, mu = self.alpha, self.hyper["eps"], self.hyper["momentum"]
        v = self._buf("square_avg", name, p) * a + (1 - a) * (g * g)
        self.buffers["square_avg"][name] = v
        d = g / (self.xp.sqrt(v) + eps)
        if mu:
            d = self._buf("momentum", name, p) * mu + d
            self.buffers["momentum"][name] = d
        return p - lr * d


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}

from .dekf import DEKF  # noqa: E402  (the Kalman filter: its own module, its own step; trainer.py calls it)

OPTIMIZERS["dekf"] = DEKF


def __getattr__(name):  # DEFAULT_LR, derived from the registry (kept for callers of the old table)
    if name == "DEFAULT_LR":
        return {k: cls.default_lr for k, cls in OPTIMIZERS.items()}
    raise AttributeError(name)


def make_optimizer(kind: str, xp, names, momentum: float = 0.0, weight_decay: float = 0.0, **settings) -> Optimizer:
    """The optimizer `kind` over `names`; of the settings given it takes those it reads (the compiler has
    refused a spec that sets one the optimizer does not read, compiler/registries.py)."""
    cls = OPTIMIZERS.get(kind)
    if cls is None:
        raise TrainingError(f"unknown optimizer {kind!r}; use one of {', '.join(OPTIMIZERS)}")
    given = {"momentum": momentum, "weight_decay": weight_decay, **settings}
    return cls(xp, names, **{k: v for k, v in given.items() if k in cls.settings})
