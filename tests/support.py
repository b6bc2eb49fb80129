"""Helpers for tests: random inputs and targets that fit a program's inputs and outputs, and
`timeloom` commands run in-process."""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from hypothesis import strategies as st

import compiler


def random_batch(program, T, B, rng, lengths=False):
    """(inputs, targets, masks, lengths) for `program` with sequence length T and batch B."""
    inputs = {n: rng.standard_normal((T, B, k)) for n, k in program.inputs.items()}
    targets, masks = {}, {}
    for name, out in program.outputs.items():
        size = program.units[name].size
        lead = (B,) if out.at == "last" else (T, B)
        if out.loss == "cross_entropy":
            targets[name] = rng.integers(0, size, lead)
        elif out.loss == "bce":
            targets[name] = (rng.random(lead + (size,)) > 0.5).astype(float)
        else:
            targets[name] = rng.standard_normal(lead + (size,))
        if out.at == "mask":
            masks[name] = (rng.random((T, B)) > 0.3).astype(float)
    lens = None
    if lengths:
        lens = rng.integers(max(1, T // 2), T + 1, size=B)
        lens[0] = T
    return inputs, targets, masks, lens


def shrink(spec, n=3):
    """The spec with every `size` (inputs, units, blocks, template params) capped at n."""
    if isinstance(spec, dict):
        return {k: min(v, n) if k == "size" and isinstance(v, int) else shrink(v, n) for k, v in spec.items()}
    if isinstance(spec, list):
        return [shrink(v, n) for v in spec]
    return spec


def load_small(path, n=3):
    return compiler.compile_spec(shrink(yaml.safe_load(path.read_text()), n))


ACTIVATIONS = ("tanh", "sigmoid", "identity", "softplus")


@st.composite
def random_specs(draw, backward=True):
    """A random small recurrent graph, valid by construction (the same generator as test_gradients).

    Units form a forward group (delays >= 0 inside) and a backward group (delays <= 0 inside),
    one group entirely before the other in index order. Inside a group, a connection from a
    lower to a higher index may have delay 0, any other one has a nonzero delay of the group's
    sign; between groups connections go from the first group to the second only, with any delay
    in [-3, 3]. So no cycle mixes signs and every zero-delay edge (connections and gates, whose
    gate unit always has a lower index than the target) goes up in index: no algebraic loop.
    Each unit gets one connection from an input or a lower-index unit, so every unit is reached.
    `backward=False`: no backward group and no negative delay at all.
    """
    inputs = {f"x{i}": {"size": draw(st.integers(1, 3))} for i in range(draw(st.integers(1, 2)))}
    groups = [+1] * draw(st.integers(1, 3)) + [-1] * draw(st.integers(0, 2 if backward else 0))
    if draw(st.booleans()):
        groups.reverse()
    names = [f"{'f' if g > 0 else 'b'}{i}" for i, g in enumerate(groups)]
    units = {}
    for name in names:
        size = draw(st.integers(1, 4))
        unit = {"size": size, "activation": draw(st.sampled_from(ACTIVATIONS))}
        if draw(st.integers(0, 3)) == 0:
            unit["bias"] = False
        if draw(st.booleans()):
            unit["initial"] = "learned"
        if draw(st.integers(0, 2)) == 0:
            alpha = draw(st.one_of(st.floats(0.1, 0.9),
                                   st.lists(st.floats(0.1, 0.9), min_size=size, max_size=size)))
            unit["leak"] = {"alpha": alpha, "trainable": draw(st.booleans())}
        units[name] = unit
    size = {**{k: v["size"] for k, v in inputs.items()}, **{k: v["size"] for k, v in units.items()}}
    lowest = -3 if backward else 0

    def delays(i, j):
        if groups[i] != groups[j]:
            return list(range(lowest, 4)) if i < j else []
        return [groups[i] * d for d in (range(4) if i < j else range(1, 4))]

    def connection(src, j, delay):
        tgt = names[j]
        c = {"from": src, "to": tgt, "delay": delay}
        kinds = ["full"] + (["diagonal", "identity", {"fixed": 0.5}] if size[src] == size[tgt] else [])
        c["weight"] = draw(st.sampled_from(kinds))
        if draw(st.integers(0, 3)) == 0:
            c["bias"] = True
        if draw(st.integers(0, 5)) == 0:
            c["trainable"] = False
        kind = draw(st.sampled_from(["none", "none", "target", "source"]))
        side = size[tgt] if kind == "target" else size[src]
        gates = [names[k] for k in range(j) if size[names[k]] == side]
        if kind != "none" and gates:
            c["gate"] = {"unit": draw(st.sampled_from(gates)), "complement": draw(st.booleans()), "at": kind}
        return c

    conns = []
    for j in range(len(names)):
        src = draw(st.sampled_from(list(inputs) + names[:j]))
        delay = draw(st.integers(lowest, 3)) if src in inputs else draw(st.sampled_from(delays(names.index(src), j)))
        conns.append(connection(src, j, delay))
    pairs = [(i, j) for i in range(len(names)) for j in range(len(names)) if delays(i, j)]
    for _ in range(draw(st.integers(0, 4))):
        if pairs:
            i, j = draw(st.sampled_from(pairs))
            conns.append(connection(names[i], j, draw(st.sampled_from(delays(i, j)))))
    outputs = {}
    for name in draw(st.permutations(names))[:draw(st.integers(1, min(2, len(names))))]:
        act = units[name]["activation"] if "leak" not in units[name] else "leaky"  # fused losses need f(net)
        losses = ["mse"] + (["bce"] if act in ("sigmoid", "identity") else []) + \
                 (["cross_entropy"] if act == "identity" else [])
        outputs[name] = {"loss": draw(st.sampled_from(losses)), "at": draw(st.sampled_from(["all", "last", "mask"]))}
    return {"timeloom": 1, "name": "random", "inputs": inputs, "units": units,
            "connections": conns, "outputs": outputs}


# -- the CLI in-process ----------------------------------------------------------------------------
def cli_in(cwd, args):
    """`timeloom ARGS` in this process (typer's CliRunner) with `cwd` as the working directory."""
    from typer.testing import CliRunner

    import cli
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli.app, [str(a) for a in args])
    finally:
        os.chdir(old)


def only_run(folder: Path) -> Path:
    """The one run directory `timeloom run` made under folder/runs."""
    runs = sorted((Path(folder) / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def final_params(rundir: Path) -> dict:
    """The parameters of a run directory's newest checkpoint."""
    from runtime.train import checkpoint
    return checkpoint.load(checkpoint.latest(Path(rundir) / "checkpoints")).params


def elman_yaml(name="tiny", h=4, at="last", data="{task: adding, length: 8}", training="{epochs: 1}") -> str:
    """The text of a small Elman spec (x(2) -> h -> y(1), h -> h with delay 1) for the CLI tests;
    flow-style lines, so that tests can edit it with str.replace."""
    return (f"timeloom: 1\nname: {name}\ninputs:\n  x: {{size: 2}}\nunits:\n"
            f"  h: {{size: {h}, activation: tanh}}\n  y: {{size: 1, activation: identity}}\n"
            "connections:\n  - {from: x, to: h}\n  - {from: h, to: h, delay: 1}\n  - {from: h, to: y}\n"
            f"outputs:\n  y: {{loss: mse, at: {at}}}\ndata: {data}\ntraining: {training}\n")
