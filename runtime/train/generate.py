"""Free-running generation: prime the network with a sequence, then let it run on its own.

Three modes:
- `hold` (a network that reads its own output back with a delay, e.g. an echo-state network
  with output feedback, primed with a constant input such as Jaeger's bias): the output
  reaches the next step through the network's own delayed connection, the input stays at its
  last priming value;
- `feedback` (prediction tasks: one input and one output of the same size): each generated
  output becomes the next input: the argmax one-hot (or a sample at `temperature` > 0) for
  a cross_entropy output, 0/1 for bce, the value itself for mse;
- `zeros` (one-to-many): after the priming steps the input is zero, the output unfolds from
  the state alone.
The state is carried from step to step with `forward(state=..., return_state=True)`; the
first generated output is the network's output at the last priming step. A network that
reads its output back is teacher-forced while primed (`teacher=`: its delayed reads of the
output see the priming targets, as in training), then runs on its own outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.errors import TrainingError


@dataclass
class Generation:
    output: str
    mode: str
    values: np.ndarray  # (N, B, size) generated outputs
    symbols: np.ndarray | None  # (N, B) chosen classes for a cross_entropy output


def generated_output(program) -> str:
    outs = [u for u, o in program.outputs.items() if o.loss != "none"] or list(program.outputs)
    if not outs:
        raise TrainingError("--generate needs an output unit")
    out = outs[0]
    if program.outputs[out].at == "last":
        raise TrainingError(f"--generate: output '{out}' has at: last (one output per sequence); "
                            f"generation needs an output at every step")
    if any(c.delay < 0 for c in program.connections):
        raise TrainingError("--generate needs a causal network; this one reads the future (negative delays)")
    return out


def check_generation(program, steps: int) -> None:
    """Refuse `--generate N` beyond the step and memory bounds (compiler/budget.py) before training:
    N forward steps, each output kept (and written to generation.json as text, ~25 bytes a number)."""
    from compiler import budget

    out = generated_output(program)
    budget.check_steps("--generate", steps, "N of --generate N")
    budget.check_memory(f"--generate {steps:,} (the outputs, kept and written as JSON)",
                        steps * (program.units[out].size + 1) * (8 + 25))


def _constant(x) -> bool:
    """Two or more steps, each equal to the last (a bias input)."""
    x = np.asarray(x)
    return len(x) >= 2 and bool((x == x[-1]).all())


def choose_mode(program, out: str, prime: dict | None = None) -> str:
    """`hold` for output feedback with priming inputs constant over two or more steps (a bias
    input), `feedback` for one input of the output's size, else `zeros`."""
    if program.read_back(out) and prime is not None and all(_constant(x) for x in prime.values()):
        return "hold"
    if len(program.inputs) == 1 and next(iter(program.inputs.values())) == program.units[out].size:
        return "feedback"
    return "zeros"


def _next_input(program, out, y, temperature, rng, symbols=False):
    """(next input (B, size), chosen classes or None) from one step's output y (B, size).

    `symbols`: a bce output (e.g. the allowed next symbols of a grammar) picks one symbol too."""
    loss = program.outputs[out].loss
    identity = program.units[out].activation.name == "identity"
    if loss == "bce" and symbols:
        p = 1 / (1 + np.exp(-y)) if identity else y
        loss, y, identity = "cross_entropy", np.log(np.maximum(p, 1e-12)), True
    if loss == "cross_entropy":
        logits = y if identity else np.log(np.maximum(y, 1e-12))
        if temperature > 0:
            z = logits / temperature
            p = np.exp(z - z.max(axis=-1, keepdims=True))
            p /= p.sum(axis=-1, keepdims=True)
            idx = np.array([rng.choice(p.shape[-1], p=row) for row in p])
        else:
            idx = logits.argmax(axis=-1)
        x = np.zeros_like(y)
        x[np.arange(len(idx)), idx] = 1.0
        return x, idx
    if loss == "bce":
        p = 1 / (1 + np.exp(-y)) if identity else y
        return (p > 0.5).astype(y.dtype), None
    return y, None


def generate(net, prime: dict, steps: int, mode: str | None = None, temperature: float = 0.0,
             seed: int = 0, symbols: bool = False, teacher: dict | None = None) -> Generation:
    """Prime with `prime` ({input: (T0, B, size)}) and generate `steps` outputs.

    `symbols`: feed back one chosen symbol also for a bce output (tasks that decode symbols).
    `teacher`: teacher forcing while primed ({output: (T0, B, size) targets}, as `forward` takes it)."""
    program, be = net.program, net.backend
    out = generated_output(program)
    mode = mode or choose_mode(program, out, prime)
    if mode == "feedback" and choose_mode(program, out) != "feedback":
        raise TrainingError(f"--generate: feeding the output back needs one input of the output's size "
                            f"({program.units[out].size})")
    if mode == "hold" and not program.read_back(out):
        raise TrainingError(f"--generate: holding the input needs output '{out}' read back with a delay")
    rng = np.random.default_rng(seed)
    outs, state = net.forward(prime, return_state=True, teacher=teacher)
    y = np.asarray(be.to_numpy(outs[out][-1]), dtype=np.float64)
    B = y.shape[0]
    values, chosen = [], []
    for i in range(steps):
        x, idx = _next_input(program, out, y, temperature, rng, symbols)
        values.append(y)
        chosen.append(idx)
        if i == steps - 1:
            break
        if mode == "feedback":
            step_in = {next(iter(program.inputs)): x[None]}
        elif mode == "hold":
            step_in = {n: np.asarray(v)[-1:] for n, v in prime.items()}
        else:
            step_in = {n: np.zeros((1, B, k)) for n, k in program.inputs.items()}
        outs, state = net.forward(step_in, state=state, return_state=True)
        y = np.asarray(be.to_numpy(outs[out][0]), dtype=np.float64)
    sym = np.stack(chosen) if chosen and chosen[0] is not None else None
    return Generation(out, mode, np.stack(values) if values else np.zeros((0, B, y.shape[-1])), sym)
