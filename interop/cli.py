"""`timeloom import` and `timeloom export` (registered on the main typer app by cli.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compiler import TimeloomError


def register(app: typer.Typer, fail) -> None:
    """Add the commands to `app`; `fail(err)` prints a TimeloomError and exits 2."""

    @app.command("import")
    def import_cmd(
        source: Path = typer.Argument(..., help="model.onnx, or a torch.save'd state_dict (.pt/.pth) of "
                                                "nn.RNN / nn.LSTM / nn.GRU"),
        output: Path = typer.Option(..., "-o", "--output", help="the spec to write (YAML)"),
        params: Optional[Path] = typer.Option(None, "--params", "-p",
                                              help="the parameter file to write (.npz; default: next to the "
                                                   "spec, same name)"),
        kind: Optional[str] = typer.Option(None, "--kind", help="torch: rnn, lstm or gru (checked against the "
                                                                "weights; inferred when left out)"),
        nonlinearity: str = typer.Option("tanh", help="torch nn.RNN: tanh or relu (not in a state_dict)"),
        module: Optional[str] = typer.Option(None, help="torch: the recurrent module's key prefix in a "
                                                        "bigger model's state_dict"),
        name: Optional[str] = typer.Option(None, help="the spec's name (default: the source's file name)"),
    ):
        """Import an ONNX model or a PyTorch RNN/LSTM/GRU state_dict as a spec plus parameters (.npz).

        ONNX: LSTM/GRU/RNN nodes become blocks (or primitives), the layers around them units; anything
        timeloom cannot express is refused with the node's name. See docs/INTEROP.md.

        Example: timeloom import model.onnx -o spec.yaml"""
        try:
            spec, values, header, warnings = _import(source, kind, nonlinearity, module, name)
            from .params import save_params
            from .specfile import write_spec

            params_path = params or output.with_suffix(".npz")
            write_spec(spec, output, header + [f"parameters: {params_path.name} (load with "
                                               "interop.load_params or --params)"])
            save_params(values, params_path)
        except TimeloomError as e:
            fail(e)
        for w in warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(f"wrote {output} and {params_path} ({len(values)} parameter arrays)")

    @app.command("export")
    def export_cmd(
        spec: Path = typer.Argument(..., help="the YAML spec"),
        output: Path = typer.Option(..., "-o", "--output", help="the ONNX file to write"),
        params: Optional[Path] = typer.Option(None, "--params", "-p",
                                              help="parameters (.npz, e.g. a run's checkpoint); default: the "
                                                   "spec's initial parameters"),
        dtype: str = typer.Option("float32", help="float32 or float64 (onnxruntime runs LSTM/GRU/RNN "
                                                  "operators in float32 only)"),
        scan_only: bool = typer.Option(False, "--scan-only", help="export every recurrence as a Scan, "
                                                                  "even an exact LSTM/GRU/RNN"),
        verify: bool = typer.Option(False, "--verify", help="run the model in onnxruntime on a random batch "
                                                            "and compare with timeloom"),
        seed: int = typer.Option(0, help="initial parameters' seed when --params is not given"),
    ):
        """Export SPEC with its parameters as an ONNX model (checked with onnx.checker).

        A recurrence that is exactly an LSTM/GRU/RNN becomes that operator, any other a Scan over
        its primitives. See docs/INTEROP.md.

        Example: timeloom export specs/gru.yaml --params CHECKPOINT.npz -o gru.onnx --verify"""
        try:
            import compiler
            from runtime import Network

            from .onnx_export import export_onnx
            from .params import assign

            program = compiler.load_spec(spec).program
            net = Network(program, dtype="float64", seed=seed)
            if params is not None:  # a checkpoint's spec hash is checked as `timeloom run` checks it
                from runtime.train import paramfile
                assign(net, paramfile.load(params, program).params, where=str(params))
            else:
                typer.echo(f"warning: no --params: exporting the initial parameters (seed {seed})", err=True)
            values = {k: net.backend.to_numpy(v) for k, v in net.params.items()}
            model = _need_onnx(lambda: export_onnx(program, values, dtype=dtype, standard_ops=not scan_only))
            ops = sorted({n.op_type for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN", "Scan")})
            if verify and dtype == "float64" and set(ops) - {"Scan"}:
                from .errors import InteropError
                raise InteropError(f"--verify runs the model in onnxruntime, which runs {'/'.join(set(ops) - {'Scan'})} "
                                   "operators in float32 only; add --scan-only for a float64 model it runs, or "
                                   "leave out --verify (the model itself is valid ONNX)")
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(model.SerializeToString())
            typer.echo(f"wrote {output} (opset {model.opset_import[0].version}, {dtype}"
                       + (f", recurrences as {', '.join(ops)}" if ops else "") + ")")
            if verify:
                typer.echo(_verify(model, net, dtype, seed))
        except TimeloomError as e:
            fail(e)


def _need_onnx(fn):
    try:
        return fn()
    except ImportError as e:
        from .errors import InteropError
        raise InteropError(f"this needs the onnx package: pip install 'timeloom[interop]' ({e})") from e


def _import(source: Path, kind, nonlinearity, module, name):
    from .errors import InteropError

    if not source.exists():
        raise InteropError(f"{source}: no such file")
    if source.suffix.lower() == ".onnx":
        from .onnx_import import import_onnx

        result = _need_onnx(lambda: import_onnx(source, name=name or source.stem))
        header = [f"imported from {source.name} by `timeloom import`"] + result.describe()
        return result.spec, result.params, header, result.warnings
    from .torch_import import import_torch

    result = import_torch(source, kind=kind, nonlinearity=nonlinearity, module=module, name=name or source.stem)
    header = [f"imported from {source.name} (a torch nn.{result.kind.upper()} state_dict: "
              f"hidden_size={result.hidden_size}, num_layers={result.num_layers}, "
              f"bidirectional={result.bidirectional}, bias={result.bias}) by `timeloom import`",
              "input x: (T, B, input_size) time-major; outputs: the last layer's h (torch's output, "
              "directions side by side)"]
    return result.spec, result.params, header, result.warnings


def _verify(model, net, dtype, seed) -> str:
    import numpy as np

    from .errors import InteropError

    try:
        import onnxruntime as ort
    except ImportError as e:
        raise InteropError("--verify needs onnxruntime: pip install 'timeloom[interop]'") from e
    rng = np.random.default_rng(seed)
    inputs = {n: rng.standard_normal((6, 2, k)) for n, k in net.program.inputs.items()}
    want = net.forward(inputs)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {n: a.astype(dtype) for n, a in inputs.items()})
    except Exception as e:  # noqa: BLE001 - onnxruntime's own errors (e.g. an operator it lacks)
        raise InteropError(f"onnxruntime cannot run the written model: {str(e).splitlines()[0][:300]}") from None
    err = max(float(np.abs(g - net.backend.to_numpy(want[u])).max()) for g, u in zip(got, net.program.outputs))
    tol = 1e-4 if dtype == "float32" else 1e-9
    if not err <= tol:
        raise InteropError(f"onnxruntime and timeloom differ by {err:.3g} (> {tol:g}) on a random batch")
    return f"verified: onnxruntime matches timeloom on a random batch (T=6, B=2), max |diff| {err:.2e}"
