"""`timeloom sweep` (registered on the main typer app by cli.py)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from compiler import TimeloomError


def register(app: typer.Typer, fail) -> None:
    """Add the command to `app`; `fail(err)` prints a TimeloomError and exits 2."""

    @app.command("sweep")
    def sweep_cmd(
        spec: Optional[Path] = typer.Argument(None, help="the YAML spec (leave out with --resume)"),
        grid: List[str] = typer.Option([], "--grid", metavar="KEY=V1,V2,...",
                                       help="grid search over these values of a spec key, e.g. "
                                            "--grid training.lr=1e-3,1e-2 (repeatable: every combination)"),
        sample: List[str] = typer.Option([], "--sample", metavar="KEY=DIST:ARGS",
                                         help="random search: uniform:LO,HI, loguniform:LO,HI, randint:LO,HI "
                                              "or choice:V1,V2,... (repeatable)"),
        samples: int = typer.Option(8, "--samples", min=1, help="random configurations drawn (with --sample; "
                                                                "per grid point)"),
        search_seed: int = typer.Option(0, "--search-seed", min=0, help="seed of the random search's draws"),
        seeds: Optional[str] = typer.Option(None, "--seeds", metavar="N|S1,S2,...",
                                            help="seeds per configuration: N = seeds 0..N-1, or a list "
                                                 "(default: the spec's training.seed)"),
        set_: List[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                       help="override a spec value in every trial (repeatable)"),
        epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="= --set training.epochs=N"),
        success_: Optional[str] = typer.Option(None, "--success", metavar="METRIC<VALUE",
                                               help="when a trial counts as solved, e.g. 'mse<0.01' or "
                                                    "'fraction_correct>=1' (default: per task)"),
        workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                              help="trials at a time (default: the CPU cores)"),
        address: Optional[str] = typer.Option(None, "--address",
                                              help="join this Ray cluster (HOST:PORT or auto) instead of "
                                                   "starting a local one"),
        retries: int = typer.Option(1, "--retries", min=0, help="runs again a failed trial this many times"),
        scheduler: str = typer.Option("fifo", "--scheduler",
                                      help="fifo: run every trial to the end; asha: stop hopeless trials "
                                           "early (Ray Tune's ASHA on the task metric per epoch)"),
        grace_period: int = typer.Option(1, "--grace-period", min=1, help="asha: epochs before a trial "
                                                                          "can be stopped"),
        reduction_factor: float = typer.Option(2.0, "--reduction-factor", min=1.01,
                                               help="asha: keep the best 1/F of the trials at each rung"),
        sweeps_dir: Path = typer.Option(Path("sweeps"), "--sweeps-dir", help="where sweep directories go"),
        name: Optional[str] = typer.Option(None, "--name", help="sweep name (default: the spec's name); "
                                                                "the same name resumes the sweep"),
        resume: Optional[Path] = typer.Option(None, "--resume", metavar="SWEEPDIR",
                                              help="continue the sweep in SWEEPDIR with its own settings"),
        dry_run: bool = typer.Option(False, "--dry-run", help="list the trials (and their `timeloom run` "
                                                              "commands) without running them"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output, only the summary"),
    ):
        """Train every combination of --grid values (or --samples random draws) times --seeds.

        Each trial is an independent `timeloom run` on Ray; writes sweeps/NAME/ (results.csv,
        aggregate.json, metric.png). The same command again resumes: finished trials are not run
        again.

        Exit status: 0 all trials finished, 1 a trial failed (after retries), 2 bad spec/options, 130 Ctrl-C.

        Example: timeloom sweep specs/adding_lstm.yaml --grid training.lr=1e-3,1e-2 --seeds 3 --epochs 2"""
        from .api import run_sweep
        from .driver import Settings
        from .plan import Plan, parse_grid, parse_sample, parse_seeds
        from .progress import make_progress

        try:
            if scheduler not in ("fifo", "asha"):
                raise TimeloomError(f"--scheduler {scheduler!r}: fifo or asha")
            sets = list(set_) + ([f"training.epochs={epochs}"] if epochs is not None else [])
            plan = Plan(sets=sets, grid=parse_grid(grid), sample=parse_sample(sample),
                        samples=samples if sample else 0, search_seed=search_seed, seeds=parse_seeds(seeds))
            settings = Settings(workers=workers, address=address, retries=retries, scheduler=scheduler,
                                grace_period=grace_period, reduction_factor=reduction_factor)
            outcome = run_sweep(spec, plan, sweeps_dir=sweeps_dir, name=name, resume=resume,
                                success_text=success_, settings=settings, progress=make_progress(quiet),
                                dry_run=dry_run)
        except TimeloomError as e:
            fail(e)
        except KeyboardInterrupt:
            typer.echo("interrupted: finished trials are in the sweep's trials.json; run the same command "
                       "again to resume", err=True)
            raise typer.Exit(130) from None
        typer.echo(outcome.summary)
        if outcome.failed:
            raise typer.Exit(1)
