"""The `timeloom` command line: compile (validate, summarize, export/draw graphs), run forward/backward."""
from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from compiler import SpecError, TimeloomError, compile_spec

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="timeloom: recurrent neural networks as declarative YAML specs.")


class Format(str, Enum):
    json = "json"
    graphml = "graphml"
    dot = "dot"
    png = "png"
    svg = "svg"


def _fail(err: TimeloomError) -> None:
    """Print a compiler-style message and exit 2 (never a traceback for bad input)."""
    if isinstance(err, SpecError):
        for e in err.errors:
            typer.echo(str(e), err=True)
        n = len(err.errors)
        typer.echo(f"{n} error{'s' if n != 1 else ''}", err=True)
    else:
        typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2)


def _load(spec: Path):
    try:
        return compile_spec(spec)
    except TimeloomError as e:
        _fail(e)


def _summary(program) -> str:
    s = program.summary()
    lines = [f"{s['name']}: {len(s['units'])} units, {s['parameters']:,} trainable parameters"
             + (f", {s['fixed_parameters']:,} fixed" if s["fixed_parameters"] else "")]
    lines.append("  inputs:  " + ", ".join(f"{n}[{k}]" for n, k in s["inputs"].items()))
    lines.append("  units:   " + ", ".join(f"{n}[{k}]" for n, k in s["units"].items()))
    lines.append("  outputs: " + (", ".join(f"{o.unit} ({o.loss}, at {o.at})" for o in program.outputs.values())
                                  or "none"))
    lines.append("  parameters:")
    for name, p in program.params.items():
        count = 1
        for d in p.shape:
            count *= d
        flag = "" if p.trainable else "  (fixed)"
        lines.append(f"    {name:32s} {str(tuple(p.shape)):>12s} {count:>9,}{flag}")
    rec = [c for c in program.components if c.recurrent]
    lines.append(f"  recurrent components: {len(rec)}")
    for c in rec:
        way = "forward" if c.direction > 0 else "backward"
        delays = ", ".join(str(d) for d in c.delays if d)
        lines.append(f"    [{way}, delays {delays}] " + " -> ".join(c.units))
    return "\n".join(lines)


@app.command()
def compile(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write the graph to this file"),
    fmt: Optional[Format] = typer.Option(None, "--format", "-f",
                                         help="json|graphml|dot|png|svg (default: from the file suffix)"),
    steps: int = typer.Option(5, "--steps", "-T", min=1, help="time steps to unroll"),
    unrolled: Optional[bool] = typer.Option(None, "--unrolled/--folded",
                                            help="unrolled graph (default when --steps is given) or folded"),
):
    """Validate SPEC, print a summary, and optionally write its folded or unrolled graph."""
    program = _load(spec)
    for w in program.warnings:
        typer.echo(str(w), err=True)
    typer.echo(_summary(program))
    if output is None:
        return
    from compiler import draw

    kind = (fmt.value if fmt else output.suffix.lstrip(".").lower()) or "json"
    use_unrolled = unrolled if unrolled is not None else True
    graph = program.unroll(steps) if use_unrolled else program.graph
    title = f"{program.name}: " + (f"unrolled over {steps} steps" if use_unrolled else "folded graph")
    try:
        draw.write(graph, output, kind, unrolled=use_unrolled, title=title)
    except ValueError as e:
        _fail(TimeloomError(str(e)))
    typer.echo(f"wrote {output}")


@app.command()
def run(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    steps: int = typer.Option(20, "--steps", "-T", min=1, help="sequence length of the random smoke batch"),
    batch: int = typer.Option(4, "--batch", "-B", min=1),
    backend: str = typer.Option("numpy", help="numpy or cupy"),
    dtype: str = typer.Option("float32", help="float32 or float64"),
    seed: int = typer.Option(0),
):
    """Run SPEC forward and backward (BPTT) on a random batch and report loss and gradient norms.

    Training on the spec's data: section is `timeloom train` (coming with the data tasks)."""
    import numpy as np

    from runtime import Network

    program = _load(spec)
    try:
        net = Network(program, backend=backend, dtype=dtype, seed=seed)
        rng = np.random.default_rng(seed)
        inputs = {n: rng.standard_normal((steps, batch, k)) for n, k in program.inputs.items()}
        targets = {}
        for name, out in program.outputs.items():
            size = program.units[name].size
            lead = (batch,) if out.at == "last" else (steps, batch)
            if out.loss == "cross_entropy":
                targets[name] = rng.integers(0, size, lead)
            elif out.loss == "bce":
                targets[name] = (rng.random(lead + (size,)) > 0.5).astype(float)
            else:
                targets[name] = rng.standard_normal(lead + (size,))
        masks = {n: np.ones((steps, batch)) for n, o in program.outputs.items() if o.at == "mask"}
        loss, grads = net.loss_and_grads(inputs, targets, masks=masks)
    except TimeloomError as e:
        _fail(e)
    typer.echo(f"{program.name}: T={steps} B={batch} backend={backend} dtype={dtype}")
    typer.echo(f"  loss {loss:.6f}")
    norms = {k: float(np.sqrt((net.backend.to_numpy(g) ** 2).sum())) for k, g in grads.items()}
    total = float(np.sqrt(sum(v * v for v in norms.values())))
    typer.echo(f"  gradient norm {total:.6f} over {len(grads)} trainable arrays")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
