"""Training: optimizers, schedules, clipping, BPTT loop, ridge readout, checkpoints, run directories."""
from .checkpoint import Checkpoint, spec_hash
from .config import Config
from .generate import Generation, generate
from .optimizers import OPTIMIZERS, make_optimizer
from .ridge import fit as fit_ridge
from .trainer import Position, Result, Trainer

__all__ = ["Checkpoint", "Config", "Generation", "OPTIMIZERS", "Position", "Result", "Trainer",
           "fit_ridge", "generate", "make_optimizer", "spec_hash"]
