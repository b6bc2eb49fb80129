"""`timeloom inspect ...`: gradient flow, spectrum, states, the run report and the graph viewer.

Registered on the main typer app by cli.py (`register(app, fail)`); the heavy imports happen
inside the commands, so `timeloom --help` stays fast.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from compiler import TimeloomError

SET_HELP = "override a spec value, e.g. --set data.length=200 (repeatable)"
SPEC_HELP = "the YAML spec, or a run directory (its spec and, unless --checkpoint, its newest checkpoint)"
CKPT_HELP = "a checkpoint file or a run directory (its newest checkpoint); default: the initial parameters"
PARAMS_HELP = "a parameter file (.npz, e.g. from `timeloom import`) or checkpoint to look at (= --checkpoint FILE)"


def _program(spec: Path, items: list):
    """The compiled spec with --set overrides."""
    from compiler import load_spec

    return load_spec(spec, items).program


def _spec_of(path: Path, items: list):
    """(program, title): a spec file, or a run directory's spec.yaml (the title is the run's folder
    name without its timestamp)."""
    import os
    import re

    if not path.is_dir():
        program = _program(path, items)
        return program, program.name
    from runtime.train import session

    program, _, _ = session.load_run(path, items)
    return program, re.sub(r"-\d{8}-\d{6}(-\d+)?$", "", Path(os.path.abspath(path)).name)


def _spec_or_run(path: Path, items: list):
    """(program, title, checkpoint or None): _spec_of, and a run directory's newest checkpoint."""
    from .common import resolve_checkpoint

    program, title = _spec_of(path, items)
    return program, title, resolve_checkpoint(path) if path.is_dir() else None


def _out(output: Optional[Path], default: str) -> Path:
    return output if output is not None else Path(default)


def register(app: typer.Typer, fail) -> None:
    """Add the `inspect` command group to `app`; `fail(err)` prints a TimeloomError and exits 2."""
    inspect_app = typer.Typer(no_args_is_help=True, add_completion=False,
                              help="Look inside a network: gradient flow over time, eigenvalues, states and "
                                   "gates over time, the run report, the interactive unrolled graph.")

    def guarded(run):
        try:
            return run()
        except TimeloomError as e:
            fail(e)
        except ValueError as e:
            fail(TimeloomError(str(e)))

    @inspect_app.command("gradients")
    def gradients_cmd(
        specs: List[Path] = typer.Argument(..., help="YAML specs or run directories (one panel each; a run "
                                                     "directory brings its spec and newest checkpoint)"),
        checkpoint: List[Path] = typer.Option([], "--checkpoint", "-c", metavar="FILE|RUNDIR",
                                              help=CKPT_HELP + "; one per spec, in order"),
        params: List[Path] = typer.Option([], "--params", "-p", metavar="FILE",
                                          help=PARAMS_HELP + "; one per spec, in order"),
        units: Optional[str] = typer.Option(None, "--units", "-u",
                                            help="units, comma-separated (default: the state units)"),
        batch: int = typer.Option(16, "--batch", min=1, help="validation sequences to average over"),
        steps: Optional[int] = typer.Option(None, "--steps", min=2, help="cut sequences to this many steps"),
        set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="the picture (.png/.svg; default NAME-gradients.png); "
                                                   "the CSV goes next to it"),
    ):
        """Gradient flow over time: ||dL/dh_{T-k}|| against the lag k, at initialisation and after training.

        The loss is taken at each sequence's last step; the curves (log scale) are at initialisation
        and, with --checkpoint or a run directory, after training. Writes a PNG and a CSV and prints the lag at which each
        curve falls below 1e-6 of its start.

        Example: timeloom inspect gradients specs/elman.yaml specs/lstm_1997.yaml -o gradients.png"""
        from . import common, gradients

        def run():
            nonlocal checkpoint
            if params and checkpoint:
                raise TimeloomError("give --params or --checkpoint, not both")
            checkpoint = list(checkpoint or params)
            if checkpoint and len(checkpoint) != len(specs):
                raise TimeloomError(f"give one --checkpoint per spec ({len(specs)} specs, {len(checkpoint)} "
                                    f"checkpoints)")
            panels = []
            for i, spec in enumerate(specs):
                program, title, found = _spec_or_run(spec, set_)
                task = common.task_of(program)
                b = common.sample_batch(task, batch, steps)
                chosen = common.parse_units(program, units)
                flows = [gradients.gradient_flow(common.network(program), b, chosen, "initialisation")]
                found = common.resolve_checkpoint(checkpoint[i]) if checkpoint else found
                if found is not None:
                    flows.append(gradients.gradient_flow(common.network(program, found), b, chosen,
                                                         "after training"))
                panels.append((title, flows))
            path = _out(output, "-".join(n for n, _ in panels) + "-gradients.png")
            gradients.draw(panels, path)
            csv = gradients.write_csv(panels, path.with_suffix(".csv"))
            for r in gradients.summary_rows(panels):
                lag = r["vanish_lag"]
                when = f"falls below 1e-6 of its start at lag {lag}" if lag is not None else \
                    f"stays above 1e-6 of its start up to lag {r['last_lag']} (ratio {r['relative_at_last']:.3g})"
                if r["zero_beyond"] is not None:
                    when += f"; exactly 0 beyond lag {r['zero_beyond']} (no path reaches further back)"
                typer.echo(f"{r['spec']:>24s}  {r['state']:<15s} {r['unit']:<12s} ||dL/dh_T|| {r['lag0']:.3g}  {when}")
            typer.echo(f"wrote {path} and {csv}")

        guarded(run)

    @inspect_app.command("spectrum")
    def spectrum_cmd(
        spec: Path = typer.Argument(..., help=SPEC_HELP),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", metavar="FILE|RUNDIR", help=CKPT_HELP),
        params: Optional[Path] = typer.Option(None, "--params", "-p", metavar="FILE", help=PARAMS_HELP),
        step: Optional[int] = typer.Option(None, "--step", "-t", min=1,
                                           help="linearise at this step of the first validation sequence "
                                                "(default: its middle)"),
        set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="the picture (default NAME-spectrum.png); the CSV goes next to it"),
    ):
        """Eigenvalues of the recurrent weight matrices and of the step Jacobian, with spectral radii.

        Drawn in the complex plane with the unit circle; for reservoirs the spectral radius the spec
        asked for is shown next to the one achieved. Writes a PNG and a CSV.

        Example: timeloom inspect spectrum specs/esn.yaml -o spectrum.png"""
        from . import common, spectrum

        def run():
            program, title, found = _spec_or_run(spec, set_)
            found = checkpoint or params or found
            net = common.network(program, found)
            try:
                inputs = common.sample_batch(common.task_of(program), 1).inputs
            except TimeloomError as e:
                typer.echo(f"note: no step Jacobian ({e})", err=True)
                inputs = None
            items = spectrum.spectra(net, inputs, step)
            path = _out(output, f"{title}-spectrum.png")
            spectrum.draw(items, path, title=f"{title}: eigenvalues"
                          + (f" ({Path(str(found)).name})" if found else " at initialisation"))
            csv = spectrum.write_csv(items, path.with_suffix(".csv"))
            for s in items:
                asked = f"  (asked {s.requested:g})" if s.requested is not None else ""
                typer.echo(f"{s.name:>32s}  spectral radius {s.radius:.6g}{asked}  {s.note}")
            typer.echo(f"wrote {path} and {csv}")

        guarded(run)

    @inspect_app.command("states")
    def states_cmd(
        spec: Path = typer.Argument(..., help=SPEC_HELP),
        units: Optional[str] = typer.Option(None, "--units", "-u",
                                            help="units, comma-separated, e.g. mem.c,mem.f (default: the "
                                                 "recurrent components' units)"),
        sequence: Optional[str] = typer.Option(None, "--sequence", "-s",
                                               help="n=K (the a^n b^n (c^n) string for n = K), K (validation "
                                                    "sequence K), or text in the task's symbols, e.g. aaabbbccc"),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", "-c", metavar="FILE|RUNDIR", help=CKPT_HELP),
        params: Optional[Path] = typer.Option(None, "--params", "-p", metavar="FILE", help=PARAMS_HELP),
        steps: Optional[int] = typer.Option(None, "--steps", min=1, help="show at most this many steps"),
        set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="the picture (default NAME-states.png)"),
    ):
        """States and gates over time: heatmaps (unit feature x time) of units' outputs for one sequence.

        E.g. an LSTM's cell state and gates on an a^n b^n c^n string:
        --units mem.c,mem.i,mem.f,mem.o --sequence n=8.

        Example: timeloom inspect states runs/anbncn-TIMESTAMP --units mem.c,mem.i --sequence n=8"""
        from . import common, states

        def run():
            program, title, found = _spec_or_run(spec, set_)
            net = common.network(program, checkpoint or params or found)
            task = common.task_of(program)
            seq = states.choose_sequence(task, sequence, steps)
            chosen = common.parse_units(program, units) or states.default_units(program)
            traj = states.trajectories(net, seq.inputs, chosen)
            path = _out(output, f"{title}-states.png")
            states.draw(traj, seq.labels, path, title=f"{title}: {seq.description}", program=program)
            typer.echo(f"wrote {path} ({', '.join(chosen)}; {len(seq.labels)} steps)")

        guarded(run)

    @inspect_app.command("report")
    def report_cmd(
        rundir: Path = typer.Argument(..., help="a run directory (runs/NAME-TIMESTAMP)"),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="default: RUNDIR/report.html"),
        check: bool = typer.Option(False, "--check", help="open it in headless Chromium: list console errors"),
        screenshot: Optional[Path] = typer.Option(None, "--screenshot", help="with --check: save a PNG of the page"),
    ):
        """(Re)write a run's report.html from its spec, metrics and newest checkpoint.

        Example: timeloom inspect report runs/elman-TIMESTAMP"""
        from runtime.train import checkpoint as ckpts
        from runtime.train import session

        from . import common, report

        def run():
            program, _, info = session.load_run(rundir)
            found = ckpts.latest(Path(rundir) / "checkpoints")
            net = common.network(program, found, seed=info.get("seed"))
            try:
                task = common.task_of(program, info.get("seed"))
            except TimeloomError as e:
                typer.echo(f"note: no data task ({e})", err=True)
                task = None
            path, failed = report.write_report(rundir, net, task, path=output)
            for key, why in failed.items():
                typer.echo(f"warning: section '{key}' left out: {why}", err=True)
            typer.echo(f"wrote {path}" + ("" if found else " (no checkpoint: initial parameters)"))
            if check or screenshot:
                _check(path, screenshot)

        guarded(run)

    @inspect_app.command("graph")
    def graph_cmd(
        spec: Path = typer.Argument(..., help="the YAML spec, or a run directory (its spec)"),
        steps: int = typer.Option(10, "--steps", "-T", min=1, help="time steps to unroll"),
        output: Optional[Path] = typer.Option(None, "-o", "--output", help="default NAME-graph.html"),
        set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
    ):
        """The unrolled graph as an interactive page (zoom, pan, hover): one self-contained HTML file.

        Example: timeloom inspect graph specs/lstm_peephole.yaml --steps 6 -o graph.html"""
        from . import viewer

        def run():
            program, _ = _spec_of(spec, set_)  # a run directory: its spec only (the graph needs no parameters)
            from compiler import budget
            budget.check_unrolled(program, steps, "json")  # before it is built, as compile -o does
            g = program.unroll(steps)
            if g.number_of_nodes() > 4 * viewer.MAX_NODES:
                typer.echo(f"note: {g.number_of_nodes()} nodes; the viewer is meant for a few thousand", err=True)
            path = _out(output, f"{program.name}-graph.html")
            try:
                path.write_text(viewer.page(g, f"{program.name}: unrolled over {steps} steps"))
            except OSError as e:
                raise TimeloomError(f"cannot write {path}: {e.strerror or e}; give -o a file in a folder you "
                                    f"can write") from None
            typer.echo(f"wrote {path} ({g.number_of_nodes()} nodes, {g.number_of_edges()} edges)")

        guarded(run)

    app.add_typer(inspect_app, name="inspect")


def _check(path: Path, screenshot: Optional[Path]) -> None:
    from . import browser

    if browser.find() is None:
        raise TimeloomError("--check needs Chromium (Debian: apt-get install chromium)")
    page = browser.open_page(path, screenshot)
    for line in page.console_errors:
        typer.echo(f"console: {line}", err=True)
    if page.screenshot:
        typer.echo(f"wrote {page.screenshot}")
    if page.console_errors:
        raise typer.Exit(1)
    typer.echo("opened in headless Chromium: no console errors")
