"""Errors of the interop layer: every one a `TimeloomError`, so the CLI prints it and exits 2."""
from __future__ import annotations

from compiler.errors import CheckpointError, TimeloomError


class InteropError(TimeloomError):
    """A model cannot be imported or exported; the message names the node / unit and the reason."""


class UnsupportedError(InteropError):
    """The model uses something timeloom (or the target format) cannot express exactly."""


class ParamsError(CheckpointError):
    """A parameter file does not fit the spec: unknown or missing names, wrong shapes."""


def node_label(node) -> str:
    """"node 'lstm_1' (LSTM)": how every message about an ONNX node starts."""
    name = node.name or (node.output[0] if node.output else "?")
    return f"node '{name}' ({node.op_type})"
