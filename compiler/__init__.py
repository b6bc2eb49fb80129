"""timeloom's compiler: YAML spec -> validated, expanded, unrollable Program."""
from .errors import CheckpointError, DataError, SpecError, SpecIssue, TimeloomError, TrainingError, UsageError
from .model import Activation, Component, Connection, Gate, Leak, Output, ParamInfo, Pos, Unit
from .program import Program, compile_spec
from .specfile import Loaded, load_spec

__all__ = [
    "Activation", "CheckpointError", "Component", "Connection", "DataError", "Gate", "Leak",
    "Output", "ParamInfo", "Pos", "Program", "SpecError", "SpecIssue", "TimeloomError",
    "TrainingError", "Unit", "UsageError", "compile_spec", "load_spec",
]
