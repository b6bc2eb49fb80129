"""What `import_onnx` returns: the spec, its parameters, and how the ONNX model's inputs and
outputs correspond to timeloom's (so the imported network can be run on the same feeds)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InteropError
from .onnx_values import realize


@dataclass
class OnnxImport:
    spec: dict
    params: dict  # timeloom name -> float64 array
    inputs: dict  # ONNX input -> (timeloom input, axes of the ONNX tensor)
    outputs: dict  # ONNX output -> onnx_values.Seq
    lengths: object = None  # ONNX input name (sequence_lens) or a constant array
    states: dict = field(default_factory=dict)  # ONNX input -> (layout, [unit per direction])
    warnings: list = field(default_factory=list)

    def program(self):
        import compiler
        return compiler.compile_spec(self.spec)

    def check(self):
        """Compile the spec and check that the parameters fit it exactly (an importer bug otherwise)."""
        from compiler import SpecError

        from .params import check_params
        try:
            program = self.program()
        except SpecError as e:
            raise InteropError(f"the imported spec does not compile (an importer bug):\n{e}") from e
        check_params({n: p.shape for n, p in program.params.items()}, self.params, "imported parameters")
        return program

    def network(self, dtype: str = "float64", **kw):
        """A runtime.Network of the spec with the imported parameters."""
        from runtime import Network

        from .params import assign
        net = Network(self.program(), dtype=dtype, **kw)
        assign(net, self.params)
        return net

    def feeds(self, feeds: dict):
        """ONNX feeds -> (timeloom inputs (T, B, n), lengths or None, state or None)."""
        inputs = {}
        for onnx_name, (name, axes) in self.inputs.items():
            a = np.asarray(feeds[onnx_name], dtype=np.float64)
            inputs[name] = a.transpose([axes.index(x) for x in ("T", "B", "F")])
        lengths = None
        if isinstance(self.lengths, str):
            lengths = np.asarray(feeds[self.lengths], dtype=np.int64)
        elif self.lengths is not None:
            lengths = np.asarray(self.lengths, dtype=np.int64)
        state = {}
        for onnx_name, (layout, units) in self.states.items():
            a = np.asarray(feeds[onnx_name], dtype=np.float64)
            a = a if layout == 0 else a.swapaxes(0, 1)  # (dirs, B, H)
            for d, unit in enumerate(units):
                if unit is not None:
                    state[unit] = a[d][None]
        return inputs, lengths, state or None

    def units(self) -> list:
        return sorted({p.unit for v in self.outputs.values() for p in v.parts})

    def run(self, net, feeds: dict) -> dict:
        """Run `net` on ONNX feeds; {ONNX output name: array shaped as the ONNX model's}."""
        inputs, lengths, state = self.feeds(feeds)
        traj = net.forward(inputs, lengths=lengths, state=state, units=self.units())
        traj = {u: net.backend.to_numpy(v) for u, v in traj.items()}
        return {name: realize(v, traj, lengths) for name, v in self.outputs.items()}

    def describe(self) -> list[str]:
        """Lines for the spec file's header: where each ONNX input and output went."""
        lines = []
        for onnx_name, (name, axes) in self.inputs.items():
            lines.append(f"ONNX input  {onnx_name!r} ({', '.join(axes)}) -> input {name}")
        if self.lengths is not None:
            src = repr(self.lengths) if isinstance(self.lengths, str) else "a constant"
            lines.append(f"ONNX sequence_lens {src} -> lengths= of Network.forward")
        for onnx_name, (layout, units) in self.states.items():
            lines.append(f"ONNX input  {onnx_name!r} (initial state) -> state= of "
                         + ", ".join(u for u in units if u))
        for onnx_name, v in self.outputs.items():
            parts = ", ".join(p.unit + ("" if p.sel == "all" else f" (step: {p.sel})") for p in v.parts)
            lines.append(f"ONNX output {onnx_name!r} ({', '.join(v.axes)}) <- {parts}")
        return lines
