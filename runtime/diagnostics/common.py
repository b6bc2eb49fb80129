"""What every diagnostic needs: a network (initial or from a checkpoint), a batch of the spec's
task, the units that carry state from step to step, and figures written without pyplot."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from compiler.errors import CheckpointError, DataError

DTYPE = "float64"  # diagnostics look at ratios down to 1e-30: float32 would flush them to zero


def seed_of(program) -> int:
    return int((program.training or {}).get("seed", 0))


def resolve_checkpoint(path) -> Path:
    """A checkpoint file, or a run directory (its newest checkpoint)."""
    from runtime.train import checkpoint

    path = Path(path)
    if path.is_dir():
        found = checkpoint.latest(path / "checkpoints") or checkpoint.latest(path)
        if found is None:
            raise CheckpointError(f"{path} has no checkpoint (looked in {path}/checkpoints); "
                                  f"give a ckpt-*.npz file or a run directory")
        return found
    return path


def network(program, checkpoint=None, seed: int | None = None, dtype: str = DTYPE):
    """The spec's network at initialisation (the run's seed), or with a checkpoint's parameters.

    Diagnostics make a few float64 passes: the interpreted scan runs them at once, where a
    compiled one would first compile for float64 (seconds per structure)."""
    from runtime import Network
    net = Network(program, dtype=dtype, seed=seed_of(program) if seed is None else seed, jit=False)
    if checkpoint is not None:  # a checkpoint (spec hash checked) or a parameter file (runtime.train.paramfile)
        from runtime.train import paramfile
        ckpt = paramfile.load(resolve_checkpoint(checkpoint), program)
        net.params = {k: net.backend.asarray(ckpt.params[k]) for k in net.params}
    return net


def copy_network(net, dtype: str = DTYPE):
    """The same parameters on a float64 numpy network (the run's network may be float32 or cupy)."""
    from runtime import Network

    if net.backend.name == "numpy" and str(net.backend.dtype) == dtype:
        return net
    other = Network(net.program, dtype=dtype, seed=net.seed, jit=False)  # a few passes: see network()
    other.params = {k: other.backend.asarray(net.backend.to_numpy(v)) for k, v in net.params.items()}
    return other


def task_of(program, seed: int | None = None):
    from runtime.data import make_task

    return make_task(program, None, seed_of(program) if seed is None else seed)


def state_units(program) -> list[str]:
    """Units read at another time step (a delayed connection or a leak): the network's state.
    Falls back to every unit that is not an output when nothing is (a network without memory)."""
    delayed = {c.source for c in program.connections if c.delay != 0}
    delayed |= {u.name for u in program.units.values() if u.leak is not None}
    found = [u for u in program.order if u in delayed]
    return found or [u for u in program.order if u not in program.outputs] or list(program.order)


def input_name(task) -> str:
    """The input a task feeds (tasks name it `input`; a spec with one input needs no name)."""
    return getattr(task, "input", None) or next(iter(task.program.inputs))


def parse_units(program, text) -> list[str] | None:
    """"enc.c,enc.f" (or a list) -> names, checked; None stays None."""
    if text is None:
        return None
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    for n in names:
        if n not in program.units:
            import difflib

            near = difflib.get_close_matches(n, list(program.units), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f" (units: {', '.join(program.order)})"
            raise DataError(f"unknown unit '{n}'{hint}")
    return names


# -- batches ------------------------------------------------------------------------------------
def sample_batch(task, size: int = 16, max_steps: int | None = None):
    """The `size` longest sequences of the task's first validation batch (else a training
    batch), cut to `max_steps` steps."""
    from runtime.data import Batch

    batches = list(task.validation() or [])
    batch = batches[0] if batches else next(iter(task.train_batches(size, np.random.default_rng(0))))
    T0, B0 = next(iter(batch.inputs.values())).shape[:2]
    lengths = np.full(B0, T0) if batch.lengths is None else np.asarray(batch.lengths)
    pick = np.sort(np.argsort(-lengths, kind="stable")[:size])
    T = int(lengths[pick].max())
    if max_steps:
        T = min(T, int(max_steps))
    lens = np.minimum(lengths[pick], T)

    def cut(a, timed=True):
        a = np.asarray(a)
        return a[:T, pick] if timed else a[pick]

    at_last = {o for o, out in task.program.outputs.items() if out.at == "last"}  # targets (B, ...)
    return Batch(inputs={k: cut(v) for k, v in batch.inputs.items()},
                 targets={k: cut(v, k not in at_last) for k, v in batch.targets.items()},
                 lengths=None if lens.min() == T else lens,
                 masks=None if batch.masks is None else {k: cut(v) for k, v in batch.masks.items()})


# -- figures ------------------------------------------------------------------------------------
def figure(width: float, height: float):
    # no pyplot: no GUI, no global state
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save(fig, path, dpi: int = 100) -> Path:
    """PNG or SVG by the suffix, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower() or "png")
    os.replace(tmp, path)
    return path


def png_bytes(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    return buf.getvalue()
