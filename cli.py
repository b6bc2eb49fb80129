"""The `timeloom` command line: compile (validate, summarize, export/draw graphs), run (train, evaluate, generate)."""
from __future__ import annotations

import functools
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from compiler import SpecError, TimeloomError

app = typer.Typer(add_completion=False,
                  help="timeloom: recurrent neural networks as declarative YAML specs.")


def _plain_usage() -> None:
    """Help as `timeloom compile [OPTIONS] SPEC`, not `{spec}`, and flags without a `<bool>`
    type (what this typer writes; older ones have neither hook and need neither)."""
    from typer.core import TyperArgument, TyperOption

    if hasattr(TyperArgument, "_usage_display_name"):
        def usage(self) -> str:
            name = self.metavar or self.name.upper()
            return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")

        TyperArgument._usage_display_name = usage
    if hasattr(TyperOption, "display_type_rich"):
        typed = TyperOption.display_type_rich

        def option_type(self, ctx):
            return None if self.is_flag else typed(self, ctx)

        TyperOption.display_type_rich = option_type


_plain_usage()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("timeloom")
    except PackageNotFoundError:  # run from a checkout that was not installed
        return "unknown (not installed)"


@app.callback(invoke_without_command=True)
def _main(ctx: typer.Context,
          show_version: bool = typer.Option(False, "--version", help="print the version and exit")):
    """Bare `timeloom` prints this help and exits 0; `timeloom --version` prints the version."""
    if show_version:
        typer.echo(f"timeloom {_version()}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


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


def _load(spec: Path, overrides=()):
    from compiler import load_spec

    try:
        return load_spec(spec, overrides).program
    except TimeloomError as e:
        _fail(e)


SUMMARY_ITEMS = 32  # a longer list in the compile summary is cut, with the number left out


def _some(items: list, what: str, indent: str = "", limit: int | None = SUMMARY_ITEMS) -> list:
    """items, or the first `limit` of them and one saying how many more `what` there are."""
    if limit is None or len(items) <= limit:
        return items
    return items[:limit] + [f"{indent}... and {len(items) - limit:,} more {what} (--all lists them)"]


def _summary(program, limit: int | None = SUMMARY_ITEMS) -> str:
    some = functools.partial(_some, limit=limit)
    s = program.summary()
    lines = [f"{s['name']}: {len(s['units'])} units, {s['parameters']:,} trainable parameters"
             + (f", {s['fixed_parameters']:,} fixed" if s["fixed_parameters"] else "")]
    lines.append("  inputs:  " + ", ".join(some([f"{n}[{k}]" for n, k in s["inputs"].items()], "inputs")))
    lines.append("  units:   " + ", ".join(some([f"{n}[{k}]" for n, k in s["units"].items()], "units")))
    lines.append("  outputs: " + (", ".join(some([f"{o.unit} ({o.loss}, at {o.at})" for o in program.outputs.values()],
                                                   "outputs")) or "none"))
    lines.append("  parameters:")
    rows = []
    for name, p in program.params.items():
        count = 1
        for d in p.shape:
            count *= d
        flag = "" if p.trainable else "  (fixed)"
        rows.append(f"    {name:32s} {str(tuple(p.shape)):>12s} {count:>9,}{flag}")
    lines += some(rows, "parameters", "    ")
    rec = [c for c in program.components if c.recurrent]
    lines.append(f"  recurrent components: {len(rec)}")
    comps = []
    for c in rec:
        way = "forward" if c.direction > 0 else "backward"
        delays = ", ".join(str(d) for d in c.delays if d)
        comps.append(f"    [{way}, delays {delays}] " + " -> ".join(some(list(c.units), "units")))
    lines += some(comps, "components", "    ")
    return "\n".join(lines)


def _check_task(program) -> None:
    """A built-in data task that does not fit the network (sizes, loss, `at`) is a warning here, so
    that it shows before a run (which refuses it); the user's own files are read only by `run`."""
    from compiler.errors import DataError
    from runtime.data import make_task

    data = program.data
    if not isinstance(data, dict) or not data or "files" in data or data.get("task") == "files":
        return
    try:
        make_task(program, seed=0)
    except DataError as e:
        typer.echo(f"warning: data: {e}; `timeloom run` refuses this", err=True)
    except TimeloomError:  # e.g. a data file that is missing: `run` says so with its own message
        pass


def _time_loop(program) -> str:
    """Whether `timeloom run` compiles the time loop here, and if not, why."""
    from runtime import jit
    from runtime.backend import Backend
    n = sum(1 for c in program.components if c.recurrent)
    if n == 0:
        return "  time loop: nothing to scan (no recurrent component)"
    why = jit.why_not(Backend("numpy"))
    if why is not None:
        return f"  time loop: interpreted in every component: {why}"
    from runtime.jit.codegen import unsupported
    from runtime.plan import make_plan
    lines = []
    for comp in program.components:
        reason = unsupported(program, make_plan(program, comp)) if comp.recurrent else None
        if reason is not None:
            lines.append(f"    interpreted: {' -> '.join(comp.units)}: {reason}")
    head = f"  time loop: {n - len(lines)} of {n} recurrent component{'s' if n != 1 else ''} compiled (numba)"
    return "\n".join([head] + lines)


@app.command()
def compile(
    spec: Path = typer.Argument(..., help="the YAML spec"),
    output: Optional[str] = typer.Option(None, "-o", "--output", metavar="FILE",
                                         help="write the graph to this file"),
    fmt: Optional[Format] = typer.Option(None, "--format", "-f",
                                         help="json|graphml|dot|png|svg (default: from the file suffix)"),
    steps: int = typer.Option(5, "--steps", "-T", min=1, help="time steps to unroll"),
    unrolled: Optional[bool] = typer.Option(None, "--unrolled/--folded",
                                            help="unrolled graph (default when --steps is given) or folded"),
    emit_step: Optional[Path] = typer.Option(None, "--emit-step",
                                             help="write the generated source of the compiled time loop "
                                                  "(one scan per recurrent component) to this file"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="override a spec value first, as `timeloom run --set` does "
                                        "(e.g. --set units.h.size=64; repeatable)"),
    all_: bool = typer.Option(False, "--all", help=f"list every unit, parameter and component (the "
                                                    f"summary cuts lists longer than {SUMMARY_ITEMS})"),
):
    """Validate SPEC, print a summary, and optionally write its folded or unrolled graph.

    Example: timeloom compile specs/elman.yaml --steps 4 -o elman.png"""
    program = _load(spec, set_)
    for w in program.warnings:
        typer.echo(str(w), err=True)
    typer.echo(_summary(program, None if all_ else SUMMARY_ITEMS))
    _check_task(program)
    from compiler import budget
    typer.echo(budget.estimate(program).line())
    typer.echo(_time_loop(program))
    typer.echo(program.receptive_field().text(indent="  "))
    if emit_step is not None:
        from runtime.jit.codegen import emit
        try:
            emit_step.write_text(emit(program))
        except OSError as e:
            _fail(TimeloomError(f"cannot write {emit_step}: {e.strerror or e}"))
        typer.echo(f"wrote {emit_step}")
    if output is None:
        return
    from compiler import draw

    folder_name = output.endswith(("/", os.sep))  # (a Path would drop the slash: -o newdir/ is meant as a folder)
    output = Path(output)
    kind = (fmt.value if fmt else output.suffix.lstrip(".").lower()) or "json"
    if folder_name or output.is_dir():
        _fail(TimeloomError(f"-o {output} {'is' if output.is_dir() else 'names'} a folder; give a file name, "
                            f"e.g. -o {output / program.name}.{kind}"))
    use_unrolled = unrolled if unrolled is not None else True
    try:  # before the graph is built: refuse what cannot be drawn or held (compiler/budget.py)
        budget.check_unrolled(program, steps, kind, use_unrolled)
    except TimeloomError as e:
        _fail(e)
    graph = program.unroll(steps) if use_unrolled else program.graph
    title = f"{program.name}: " + (f"unrolled over {steps} steps" if use_unrolled else "folded graph")
    try:
        draw.write(graph, output, kind, unrolled=use_unrolled, title=title)
    except ValueError as e:
        _fail(TimeloomError(str(e)))
    except OSError as e:
        _fail(TimeloomError(f"cannot write {output}: {e.strerror or e}; give a file in a folder you can write"))
    typer.echo(f"wrote {output}")


@app.command()
def run(
    spec: Optional[Path] = typer.Argument(None, help="the YAML spec (leave out with --resume)"),
    set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="override a spec value, e.g. --set training.lr=0.01 (repeatable)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="= --set training.epochs=N"),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="= --set training.seed=N"),
    backend: Optional[str] = typer.Option(None, "--backend", help="numpy (default) or cupy"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 (default) or float64"),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUNDIR",
                                          help="continue a run from its newest checkpoint"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", metavar="FILE",
                                              help="start from this checkpoint's parameters "
                                                   "(with --evaluate: evaluate it, no training)"),
    evaluate: bool = typer.Option(False, "--evaluate", help="evaluate --checkpoint FILE (or --params FILE) "
                                                              "without training"),
    params: Optional[Path] = typer.Option(None, "--params", metavar="FILE",
                                          help="start from these parameters: a parameter file (.npz, e.g. "
                                               "from `timeloom import`) or a checkpoint (with --evaluate: "
                                               "evaluate them, no training)"),
    generate: Optional[int] = typer.Option(None, "--generate", min=1, metavar="N",
                                           help="after training (or --evaluate), let the network run "
                                                "free for N steps from a priming sequence"),
    prime: Optional[str] = typer.Option(None, "--prime", help="priming text (tasks that encode text)"),
    prime_steps: Optional[int] = typer.Option(None, "--prime-steps", min=1,
                                              help="steps of the first validation sequence to prime with"),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0,
                                      help="sample generated symbols at this temperature (0 = argmax)"),
    runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="where run directories go"),
    name: Optional[str] = typer.Option(None, "--name", help="run name (default: the spec's name)"),
    eval_every: int = typer.Option(1, "--eval-every", min=1, help="compute the task metric every K epochs"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output, only the summary"),
    report: bool = typer.Option(True, "--report/--no-report", help="write report.html into the run directory"),
):
    """Train SPEC on its data: with its training: settings; write runs/NAME-TIMESTAMP/.

    Exit status: 0 done, 2 bad spec/data/checkpoint or a NaN in training, 130 interrupted
    (Ctrl-C saves a checkpoint first; continue with --resume RUNDIR), 143 after SIGTERM (the same).

    Example: timeloom run specs/adding_lstm.yaml --epochs 2 --set training.lr=0.01"""
    import json

    from compiler import load_spec
    from runtime.train import session
    from runtime.train.progress import make_progress

    items = list(set_) + ([f"training.epochs={epochs}"] if epochs is not None else []) \
        + ([f"training.seed={seed}"] if seed is not None else [])
    opts = session.Options(backend=backend, dtype=dtype, runs_dir=runs_dir, name=name,
                           eval_every=eval_every, overrides=items, report=report)
    try:
        if params is not None and checkpoint is not None:
            raise TimeloomError("give --params FILE or --checkpoint FILE, not both")
        if name is not None:  # before any work: the same rule as the spec's name: (a plain folder name)
            session.rundir.inside(runs_dir, name, "run name")
        if resume is not None:
            if checkpoint is not None or evaluate or params is not None:
                raise TimeloomError("--resume continues a run from its own checkpoints; "
                                    "leave out --checkpoint/--params/--evaluate")
            program, data, info = session.load_run(resume, items)
            if spec is not None:
                _same_model(_load(spec), program, spec, resume)
        elif spec is None:
            raise TimeloomError("give a SPEC to train (or --resume RUNDIR to continue a run)")
        else:
            loaded = load_spec(spec, items)  # errors name the file position or the --set that caused them
            program, data = loaded.program, loaded.spec
        for w in program.warnings:
            typer.echo(str(w), err=True)
        if dtype == "float64":  # compile_spec checked one training step in float32
            from compiler import budget
            budget.check(budget.estimate(program, dtype="float64"), f"'{program.name}' in float64",
                         budget.steps_setting(program.data))
        if generate:
            from runtime.train.generate import check_generation, generated_output
            generated_output(program)  # fail before training when the network cannot generate
            check_generation(program, generate)  # and when N steps are beyond the bounds
            if prime is not None and not prime:
                raise TimeloomError("--prime is empty; give the text to start from (at least one character), "
                                    "or leave out --prime to start from a validation sequence")
        if params is not None:
            from runtime.train import paramfile
            checkpoint = paramfile.load(params, program)
        if resume is not None:
            report = session.resume_run(resume, program, data, info, opts, make_progress(quiet))
        elif evaluate:
            if checkpoint is None:
                raise TimeloomError("--evaluate needs --checkpoint FILE or --params FILE (the parameters to "
                                    "evaluate)")
            report = session.evaluate_checkpoint(program, checkpoint, opts)
        else:
            report = session.new_run(program, data, opts, make_progress(quiet), init=checkpoint)
        generation = None
        if generate and (report.result is None or report.result.status != "interrupted"):
            generation = session.run_generation(report.net, report.task, generate, prime, prime_steps,
                                                temperature, report.config.seed)
            if report.rundir is not None:
                from runtime.train.rundir import write_json
                write_json(report.rundir / "generation.json", generation)
    except TimeloomError as e:
        _fail(e)
    except KeyboardInterrupt as e:
        typer.echo("interrupted again: stopped without saving; the checkpoints written so far are kept",
                   err=True)
        raise typer.Exit(128 + getattr(e, "signum", 2)) from None
    typer.echo(session.summary(report, generation))
    if evaluate:
        typer.echo(json.dumps(report.evaluation, default=str))
    if report.result is not None and report.result.status == "interrupted":
        raise typer.Exit(128 + (report.result.signal or 2))  # 130 after Ctrl-C, 143 after SIGTERM


def _same_model(given, program, spec: Path, rundir: Path) -> None:
    from runtime.train.checkpoint import spec_hash

    if spec_hash(given.spec) != spec_hash(program.spec):
        raise TimeloomError(f"{spec} describes a different model than the run in {rundir}; "
                            f"resume with `timeloom run --resume {rundir}` alone")


from interop.cli import register as _register_interop  # noqa: E402  (timeloom import / export)

_register_interop(app, _fail)
from runtime.diagnostics.cli import register as _register_inspect  # noqa: E402  (timeloom inspect ...)

_register_inspect(app, _fail)
from runtime.sweep.cli import register as _register_sweep  # noqa: E402  (timeloom sweep; ray imported lazily)

_register_sweep(app, _fail)


def main() -> None:
    app(prog_name="timeloom")


if __name__ == "__main__":
    sys.exit(main())
