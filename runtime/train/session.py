"""A whole `timeloom run`: new run, resumed run, evaluation of a checkpoint, generation.

The CLI parses options and prints; everything else happens here.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler.errors import CheckpointError, DataError

from runtime.data import Batch

from . import bptt, checkpoint, rundir, tasks
from .config import Config
from .generate import choose_mode, generate, generated_output
from .trainer import Result, Trainer


@dataclass
class Options:
    backend: str | None = None  # None: numpy (or the resumed run's)
    dtype: str | None = None  # None: float32 (or the resumed run's)
    runs_dir: Path = Path("runs")
    name: str | None = None
    eval_every: int = 1
    overrides: list = field(default_factory=list)  # ["training.lr=0.01", ...] as given
    report: bool = True  # write report.html at the end (a few seconds; sweeps turn it off)


@dataclass
class Report:
    program: object
    net: object
    task: object
    result: Result | None
    rundir: Path | None
    evaluation: dict | None
    seconds: float
    config: Config


def _network(program, backend, dtype, seed):
    from runtime import Network
    return Network(program, backend=backend or "numpy", dtype=dtype or "float32", seed=seed)


def _config(program, opts) -> Config:
    cfg = Config.from_training(program.training)
    cfg.eval_every = max(1, opts.eval_every)
    return cfg


def new_run(program, spec: dict, opts: Options, progress=None, init: Path | None = None) -> Report:
    """Train from scratch (or from the parameters of `init`) in a new run directory, which stays
    locked (rundir.locked) from its creation to the end; first removes the temporary files that
    killed runs left under runs_dir."""
    rundir.clean_stale_under(opts.runs_dir)
    with rundir.locking_new():
        return _new_run(program, spec, opts, progress, init)


def _new_run(program, spec: dict, opts: Options, progress=None, init: Path | None = None) -> Report:
    """Train from scratch (or from the parameters of `init`) in a new run directory."""
    cfg = _config(program, opts)
    task = tasks.load_task(program, cfg.seed)
    net = _network(program, opts.backend, opts.dtype, cfg.seed)
    init_ckpt = _as_checkpoint(init)
    if init_ckpt:
        checkpoint.check_fits(init_ckpt, program)
        checkpoint.check_finite(init_ckpt, optimizer=False)
        init = init_ckpt.path
    path = rundir.create(opts.runs_dir, opts.name or program.name)
    rundir.write_spec(path, spec)
    rundir.write_resolved_spec(path, spec, cfg, task)
    rundir.write_json(path / "run.json", {
        "name": program.name, "source": program.source, "overrides": list(opts.overrides),
        "backend": net.backend.name, "dtype": str(net.backend.dtype), "seed": cfg.seed,
        "spec_hash": checkpoint.spec_hash(program.spec), "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "init_checkpoint": str(init) if init else None})
    trainer = Trainer(net, task, cfg, path, progress)
    if init_ckpt:
        trainer.restore(init_ckpt, resume=False)
    return _train(trainer, task, cfg, opts.report)


def load_run(path: Path, overrides: list = (), apply=None) -> tuple:
    """(program, spec, run info) of a run directory, with further --set overrides applied
    (through compiler.load_spec; `apply`, if given, is an older caller's own override function)."""
    from compiler import load_spec

    path = Path(path)
    if not (path / "run.json").is_file():
        raise CheckpointError(f"{path} is not a run directory (no run.json); give the folder "
                              f"`timeloom run` created, e.g. runs/NAME-TIMESTAMP")
    info = rundir.read_json(path / "run.json")
    spec = rundir.read_spec(path)
    if overrides and apply is not None:
        spec, overrides = apply(spec, overrides), ()
    loaded = load_spec(spec, overrides, file=info.get("source") or str(path / "spec.yaml"))
    return loaded.program, loaded.spec, info


def resume_run(path: Path, program, spec: dict, info: dict, opts: Options, progress=None) -> Report:
    """Continue the run in `path` from its newest checkpoint, holding the folder's lock (a second
    process is refused) and after removing the temporary files of killed processes."""
    with rundir.locked(path):
        rundir.clean_stale(path)
        return _resume_run(path, program, spec, info, opts, progress)


def _resume_run(path: Path, program, spec: dict, info: dict, opts: Options, progress=None) -> Report:
    """Continue the run in `path` from its newest checkpoint, in the same directory.

    Nothing in the folder changes before the checkpoint is restored and checked; --set overrides
    reach spec.yaml only when the first checkpoint trained with them is written (a resume that
    fails before, e.g. on a NaN, leaves the spec as it was, so the suggested --resume works)."""
    path = Path(path)
    found = checkpoint.latest(path / "checkpoints")
    if found is None:
        raise CheckpointError(f"{path}/checkpoints has no checkpoint to resume from; start a new run")
    ckpt = checkpoint.load(found)
    checkpoint.check_fits(ckpt, program)
    cfg = _config(program, opts)
    if ckpt.meta.get("seed", cfg.seed) != cfg.seed:
        raise CheckpointError(f"{found} was trained with seed {ckpt.meta.get('seed')}, not {cfg.seed}; "
                              f"resume without --seed")
    checkpoint.check_resume(ckpt, cfg, program)  # an exact resume is possible: checked before anything is written
    done = ckpt.meta.get("epoch")
    if isinstance(done, int) and done >= cfg.epochs and ckpt.meta.get("batch", 0) == 0:
        print(f"note: the run has trained {done} epochs and training.epochs is {cfg.epochs}: nothing more to "
              f"train (give --epochs N with N > {done} to go on)", file=sys.stderr)
    task = tasks.load_task(program, cfg.seed)
    net = _network(program, opts.backend or info.get("backend"), opts.dtype or info.get("dtype"), cfg.seed)
    trainer = Trainer(net, task, cfg, path, progress)
    trainer.restore(ckpt)
    if opts.overrides:
        entry = {"overrides": list(opts.overrides), "from": found.name, "applied": False}
        info.setdefault("resumed", []).append(entry)

        def apply_overrides():  # trained up to a checkpoint without a NaN: the run's spec from now on
            trainer.undo_overrides = _undo(path / "spec.yaml", opts.overrides)
            rundir.write_spec(path, spec)
            rundir.write_resolved_spec(path, spec, cfg, task)
            entry["applied"] = True
            rundir.write_json(path / "run.json", info)

        trainer.before_save = apply_overrides
    else:
        info.setdefault("resumed", []).append({"from": found.name})
    rundir.write_json(path / "run.json", info)
    return _train(trainer, task, cfg, opts.report)


def _train(trainer: Trainer, task, cfg, report: bool = True) -> Report:
    t0 = time.monotonic()
    result, evaluation = None, None
    try:
        result = trainer.fit()
        if result.status != "interrupted":
            evaluation = final_evaluation(task, trainer.net)
            evaluation.update(status=result.status, epochs=result.position.epoch, steps=result.position.step,
                              checkpoint=str(Path(result.checkpoint).resolve()) if result.checkpoint else None,
                              best=result.best)
            if result.ridge:
                evaluation["ridge"] = result.ridge
            warnings = far_from_baseline(evaluation) + ridge_warnings(result.ridge)
            if warnings:
                evaluation["warnings"] = warnings
            rundir.write_json(trainer.rundir / "evaluation.json", evaluation)
    finally:
        try:
            rundir.plot_curves(trainer.rundir, getattr(task, "metric", None), getattr(task, "baseline", None))
        except Exception as e:  # noqa: BLE001 - a failed plot must not hide the run's outcome
            print(f"warning: could not draw curves.png: {e}", file=sys.stderr)
        if report:
            from runtime.diagnostics.report import write_run_report  # report.html; never raises
            write_run_report(trainer.rundir, trainer.net, task, evaluation)
    return Report(trainer.program, trainer.net, task, result, trainer.rundir, evaluation,
                  time.monotonic() - t0, cfg)


def _as_checkpoint(source):
    """A checkpoint file's path, or an already loaded Checkpoint (`--params`: runtime.train.paramfile)."""
    if source is None or isinstance(source, checkpoint.Checkpoint):
        return source
    return checkpoint.load(source)


def final_evaluation(task, net) -> dict:
    ev = dict(getattr(task, "final_evaluate", task.evaluate)(net))  # a task may test further at the end
    if "baseline" not in ev:
        ev["baseline"] = task.baseline()
    ev = {"metric": task.metric, "higher_is_better": bool(task.higher_is_better), **ev}
    return ev


def _undo(spec_file: Path, overrides) -> list[str]:
    """The --set items that give back the values which `overrides` replace in spec_file (for the message
    of a NaN after the overrides reached spec.yaml); a key the spec did not set is named as such."""
    import json

    import yaml

    from compiler.overrides import parse

    try:
        old = yaml.safe_load(spec_file.read_text())
    except (OSError, yaml.YAMLError):
        return []
    undo = []
    for item in overrides:
        path, _ = parse(str(item))  # the keys as --set reads them (list indices too: connections.0.delay)
        value, found = old, True
        for part in path:
            try:
                value = value[part]
            except (KeyError, IndexError, TypeError):
                found = False
                break
        key = ".".join(map(str, path))
        undo.append(f"--set {key}={json.dumps(value)}" if found else f"({key} was not set before)")
    return undo


FAR_FROM_BASELINE = 5.0  # a lower-is-better metric this many times the baseline's is a warning


def far_from_baseline(evaluation: dict) -> list[str]:
    """Warnings for a run that ended far worse than the task's trivial predictor (the baseline):
    a lower-is-better metric above FAR_FROM_BASELINE x the baseline's (e.g. a diverged lr)."""
    metric = evaluation.get("metric")
    value, base = evaluation.get(metric), evaluation.get("baseline")
    if isinstance(base, dict):
        base = base.get(metric)
    try:
        value, base = float(value), float(base)
    except (TypeError, ValueError):
        return []
    if evaluation.get("higher_is_better") or not base > 0:
        return []
    if not value <= FAR_FROM_BASELINE * base:  # also NaN
        advice = ("the closed-form readout fits worse than that: check the reservoir (spectral_radius, "
                  "input_scaling, density) and ridge.alpha" if evaluation.get("ridge") else
                  "training diverged or has not learned yet; train longer (more epochs) or, if the loss grew, "
                  "try a lower lr or clip_norm")
        return [f"{metric} {value:.6g} is {value / base:.3g} times the baseline's {base:.6g} (the trivial "
                f"predictor): {advice}"]
    return []


def ridge_warnings(info: dict | None) -> list[str]:
    """A readout fitted on fewer time steps than it has weights per output is underdetermined."""
    if info and info.get("samples", 0) < info.get("features", 0):
        return [f"the ridge readout was fitted on {info['samples']} time steps for {info['features']} features "
                f"(fewer steps than weights: only ridge.alpha decides them); lower ridge.washout or give "
                f"longer or more training sequences"]
    return []


def evaluate_checkpoint(program, path: Path, opts: Options) -> Report:
    """Evaluate the parameters of a checkpoint file; writes nothing."""
    t0 = time.monotonic()
    ckpt = _as_checkpoint(path)
    checkpoint.check_fits(ckpt, program)  # before building the task: a wrong file fails fast
    path = ckpt.path
    cfg = _config(program, opts)
    task = tasks.load_task(program, cfg.seed)
    net = _network(program, opts.backend, opts.dtype or ckpt.meta.get("dtype"), cfg.seed)
    trainer = Trainer(net, task, cfg)
    trainer.restore(ckpt, resume=False)
    evaluation = final_evaluation(task, net)
    evaluation["val_loss"] = trainer.validation_loss()
    evaluation["checkpoint"] = str(path)
    evaluation["step"] = ckpt.meta.get("step")
    return Report(program, net, task, None, None, evaluation, time.monotonic() - t0, cfg)


# -- generation --------------------------------------------------------------------------------
def prime_inputs(program, task, text: str | None, steps: int | None):
    """(priming inputs, teacher, mode): `task.encode(text)`, or the first validation (else
    training) sequence; the mode is chosen on the whole sequence (runtime/train/generate.py). A
    network trained teacher-forced (it reads an output back) is primed teacher-forced the same way."""
    out = generated_output(program)
    if text is not None:
        if not hasattr(task, "encode"):
            raise DataError(f"data task '{getattr(task, 'name', '?')}' cannot turn text into inputs; "
                            f"leave out --prime to prime with a validation sequence")
        inputs = task.encode(text)
        prime = {n: np.asarray(x)[:, :1] if np.ndim(x) == 3 else np.asarray(x)[:, None] for n, x in inputs.items()}
        return prime, None, choose_mode(program, out)
    batches = list(task.validation() or [])
    batch = batches[0] if batches else next(iter(task.train_batches(1, np.random.default_rng(0))))
    L = int(batch.lengths[0]) if batch.lengths is not None else next(iter(batch.inputs.values())).shape[0]
    mode = choose_mode(program, out, {n: np.asarray(x)[:L, :1] for n, x in batch.inputs.items()})
    k = min(steps or (L if mode in ("feedback", "hold") else 1), L)
    cut = Batch({n: np.asarray(x)[:k, :1] for n, x in batch.inputs.items()},
                {n: np.asarray(y)[:k, :1] if program.outputs[n].at != "last" else np.asarray(y)[:1]
                 for n, y in batch.targets.items()},
                None, {n: np.asarray(m)[:k, :1] for n, m in (batch.masks or {}).items()})
    teacher = bptt.teacher(program, bptt.teacher_units(program), cut, 1.0, None)
    return cut.inputs, teacher, mode


def run_generation(net, task, steps: int, text=None, prime_steps=None, temperature=0.0, seed=0) -> dict:
    prime, teacher, mode = prime_inputs(net.program, task, text, prime_steps)
    g = generate(net, prime, steps, mode=mode, temperature=temperature, seed=seed,
                 symbols=hasattr(task, "decode"), teacher=teacher)
    out = {"output": g.output, "mode": g.mode, "prime_steps": int(next(iter(prime.values())).shape[0]),
           "steps": steps, "temperature": temperature}
    if g.symbols is not None:
        out["symbols"] = g.symbols[:, 0].tolist()
        if hasattr(task, "decode"):
            try:
                x = next(iter(prime.values()))[:, 0]
                if x.shape[-1] == net.program.units[g.output].size:
                    out["prime_text"] = task.decode(np.asarray(x).argmax(axis=-1))
                out["text"] = task.decode(g.symbols[:, 0])
            except Exception as e:  # noqa: BLE001 - decoding is a nicety
                out["text_error"] = str(e)
    else:
        out["values"] = g.values[:, 0].tolist()
    return out


def summary(report: Report, generation: dict | None = None) -> str:
    """The one-screen summary printed at the end of a run."""
    p, res, ev = report.program, report.result, report.evaluation or {}
    be = report.net.backend
    lines = []
    if res is not None:
        what = {"completed": "finished", "early_stopped": "stopped early", "interrupted": "interrupted"}[res.status]
        lines.append(f"{p.name}: {what} after {res.position.epoch} epochs, {res.position.step} steps in "
                     f"{_duration(report.seconds)} ({be.name} {be.dtype}, seed {report.config.seed})")
        last = res.history[-1] if res.history else {}
        if last:
            line = f"  train loss {last.get('loss', float('nan')):.6g}"
            if last.get("val_loss") is not None:
                line += f"   validation loss {last['val_loss']:.6g}"
            lines.append(line)
        if res.best:
            lines.append(f"  best {res.best['monitor']} {res.best['value']:.6g} at epoch {res.best['epoch']}")
        if res.ridge:
            lines.append(f"  ridge readout: {res.ridge['samples']} steps x {res.ridge['features']} features, "
                         f"alpha {res.ridge['alpha']:g}, washout {res.ridge['washout']}")
    else:
        lines.append(f"{p.name}: evaluated {ev.get('checkpoint')} ({be.name} {be.dtype})")
        if ev.get("val_loss") is not None:
            lines.append(f"  validation loss {ev['val_loss']:.6g}")
    if ev:
        metric = ev.get("metric")
        value, base = ev.get(metric), ev.get("baseline")
        if isinstance(base, dict):
            base = base.get(metric)
        better = "higher" if ev.get("higher_is_better") else "lower"
        lines.append(f"  {metric} {_num(value)}   baseline {_num(base)}   ({better} is better)")
        lines += [f"  warning: {w}" for w in ev.get("warnings") or []]
    if generation:
        shown = generation.get("text")
        if shown is None:
            seq = generation.get("symbols") or [round(v[0], 4) if isinstance(v, list) else v
                                                 for v in generation.get("values", [])]
            shown = " ".join(str(s) for s in seq[:40]) + (" ..." if len(seq) > 40 else "")
        primed = generation.get("prime_text")
        after = f" after {primed[-30:]!r}" if primed else ""
        lines.append(f"  generated ({generation['mode']}, {generation['steps']} steps){after}: {shown}")
    if report.rundir:
        lines.append(f"  run         {report.rundir}/")
        files = [f for f in ("spec.yaml", "spec.resolved.yaml", "metrics.jsonl", "curves.png", "evaluation.json",
                             "report.html", "generation.json")
                 if (report.rundir / f).exists()]
        lines.append(f"  files       {' '.join(files)}")
    if res is not None and res.checkpoint:
        lines.append(f"  checkpoint  {res.checkpoint}")
    if res is not None and res.status == "interrupted":
        lines.append(f"  resume with: timeloom run --resume {report.rundir}")
    return "\n".join(lines)


def _num(v):
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)


def _duration(s: float) -> str:
    m, sec = divmod(int(round(s)), 60)
    return f"{m}m {sec:02d}s" if m else f"{s:.1f}s"

