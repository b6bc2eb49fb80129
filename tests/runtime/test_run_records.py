"""What a run leaves to look at: curves.png (integer epoch/step ticks, plain numbers on the log
axis, the task's baseline dashed and labelled), the spectrum picture's legend (which circle is the
unit circle), and spec.resolved.yaml (every default that applied, equal to config.py's)."""
from __future__ import annotations

import math
import re
from dataclasses import fields

import numpy as np
import pytest
import yaml
from conftest import SPECS
from support import cli_in, only_run

from compiler import compile_spec
from runtime.diagnostics.spectrum import Spectrum, draw
from runtime.train import tasks
from runtime.train.config import Config
from runtime.train.optimizers import DEFAULT_LR
from runtime.train.resolved import resolved_spec, resolved_training
from runtime.train.rundir import curves_figure, plot_curves

PLAIN = re.compile(r"^(\d+(\.\d*)?|\d(\.\d+)?e[-\u2212]\d+)$")  # 0.2, 1, 1e-05: no $10^{-2}$ mathtext


def records(epochs=7, per_epoch=10, metric="accuracy"):
    out = [{"kind": "step", "step": s, "loss": 0.7 * math.exp(-s / 30) + 0.01} for s in range(1, epochs * per_epoch + 1)]
    out += [{"kind": "epoch", "epoch": e, "step": e * per_epoch, "loss": 0.7 * math.exp(-e / 3) + 0.01,
             "val_loss": 0.7 * math.exp(-e / 3) + 0.02, metric: min(1.0, 0.12 * e)} for e in range(1, epochs + 1)]
    return out


def labels(axis, minor=False):
    return [t.get_text() for t in (axis.get_ticklabels(minor=minor))]


def test_curves_have_integer_ticks_plain_log_labels_and_the_baseline():
    fig = curves_figure(records(), "accuracy", {"accuracy": 0.125, "loss": 0.6931})
    fig.canvas.draw()
    loss_ax, metric_ax = fig.axes[:2]
    assert loss_ax.get_yscale() == "log"
    shown = [t for t in labels(loss_ax.yaxis) + labels(loss_ax.yaxis, minor=True) if t]
    assert shown and all(PLAIN.match(t) for t in shown), shown
    assert not any("$" in t or "^" in t for t in shown)
    for ax in (loss_ax, metric_ax):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert min(loss_ax.get_xticks()) >= 0
    for ax, value, name in ((metric_ax, 0.125, "accuracy"), (loss_ax, 0.6931, "loss")):
        line = next(ln for ln in ax.get_lines() if ln.get_label().startswith("baseline"))
        assert line.get_linestyle() == "--"
        assert np.allclose(line.get_ydata(), value)
        assert name in line.get_label() and "trivial predictor" in line.get_label()
        assert line.get_label() in [t.get_text() for t in ax.get_legend().get_texts()]


def test_curves_without_a_baseline_or_a_metric():
    fig = curves_figure(records()[:30], None, None)
    assert len(fig.axes) == 1
    assert not any(ln.get_label().startswith("baseline") for ln in fig.axes[0].get_lines())
    assert curves_figure([], "mse", None) is None


def test_a_few_epochs_tick_only_whole_epochs():
    # 3 epochs: matplotlib's default locator would put ticks at 1.0, 1.25, 1.5, ...
    fig = curves_figure(records(epochs=3), "accuracy", None)
    fig.canvas.draw()
    ax = fig.axes[1]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [1.0, 2.0, 3.0]


def test_plot_curves_calls_the_task_baseline(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(__import__("json").dumps(r) + "\n" for r in records()))
    calls = []
    path = plot_curves(tmp_path, "accuracy", lambda: calls.append(1) or {"accuracy": 0.125})
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG" and calls == [1]

    def broken():
        raise RuntimeError("no baseline")

    assert plot_curves(tmp_path, "accuracy", broken).is_file()  # drawn without the line


def test_spectrum_legend_names_the_unit_circle():
    items = [Spectrum("step Jacobian", "jacobian", np.array([0.5 + 0.2j, 0.5 - 0.2j, -0.3])),
             Spectrum("h->h@1", "weight", np.array([0.9, 0.1j, -0.1j]), requested=0.95)]
    fig = draw(items)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "unit circle |z| = 1" in texts and "spectral radius" in texts and "radius asked in the spec" in texts
    assert "eigenvalues (step Jacobian)" in texts and "eigenvalues" in texts
    ax = fig.axes[0]
    unit = [ln for ln in ax.get_lines() if ln.get_label() == "unit circle |z| = 1"][0]
    x, y = unit.get_xdata(), unit.get_ydata()
    centre = complex((x.max() + x.min()) / 2, (y.max() + y.min()) / 2)
    assert np.allclose(np.abs(x + 1j * y - centre), 1.0, atol=1e-3)  # the labelled circle has radius 1
    radius = [ln for ln in ax.get_lines() if ln.get_label() == "spectral radius"][0]
    assert np.allclose(np.abs(radius.get_xdata() + 1j * radius.get_ydata() - centre), 0.5385, atol=1e-3)


# ------------------------------------------------------------------------------ spec.resolved.yaml
def test_resolved_training_fills_in_config_defaults():
    t = resolved_training(Config.from_training({}))
    defaults = {f.name: f.default for f in fields(Config)}
    assert t["optimizer"] == defaults["optimizer"] == "adam"
    assert t["lr"] == DEFAULT_LR["adam"]
    for key in ("method", "epochs", "batch_size", "seed", "weight_decay"):
        assert t[key] == defaults[key], key
    assert "momentum" not in t  # adam does not read it: a resolved spec with it would be refused
    assert t["betas"] == [0.9, 0.999] and t["eps"] == 1e-8  # adam's own defaults, spelled out
    assert t["checkpoint"] == {"every": defaults["checkpoint_every"], "keep": defaults["keep"]}
    assert "clip_norm" not in t and "early_stopping" not in t and "bptt" not in t  # off: absent
    sgd = resolved_training(Config.from_training({"optimizer": "sgd", "early_stopping": {}}))
    assert sgd["lr"] == DEFAULT_LR["sgd"] and sgd["early_stopping"]["patience"] == 5


@pytest.mark.parametrize("path", [p for p in SPECS if yaml.safe_load(p.read_text()).get("data")], ids=lambda p: p.stem)
def test_resolved_spec_is_a_spec_that_reads_back_as_the_same_settings(path):
    spec = yaml.safe_load(path.read_text())
    program = compile_spec(spec, file=str(path))  # data paths are relative to the spec's folder
    cfg = Config.from_training(program.training)
    task = tasks.load_task(program, cfg.seed)
    out = resolved_spec(spec, cfg, task)
    again = compile_spec(out)  # still a valid spec
    assert Config.from_training(again.training) == cfg
    assert out["data"]["task"] == task.name and all(out["data"][k] == v for k, v in task.params.items()
                                                    if v is not None)
    assert {k: v for k, v in spec.items() if k not in ("training", "data")} == \
           {k: v for k, v in out.items() if k not in ("training", "data")}


def test_run_directory_keeps_the_resolved_spec(tmp_path):
    spec = {"timeloom": 1, "name": "tiny", "inputs": {"x": {"size": 2}},
            "units": {"h": {"size": 3, "activation": "tanh"}, "y": {"size": 1, "activation": "identity"}},
            "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
            "outputs": {"y": {"loss": "mse", "at": "last"}},
            "data": {"task": "adding", "length": 5, "train_size": 16, "test_size": 8},
            "training": {"steps_per_epoch": 2, "batch_size": 4}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    result = cli_in(tmp_path, ["run", "tiny.yaml", "--epochs", "1", "--no-report", "--set", "training.lr=0.01"])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    written = yaml.safe_load((run / "spec.yaml").read_text())
    resolved = yaml.safe_load((run / "spec.resolved.yaml").read_text())
    assert "optimizer" not in written["training"]
    assert (run / "spec.resolved.yaml").read_text().startswith("# The spec as `timeloom run` used it")
    t = resolved["training"]
    assert (t["optimizer"], t["lr"], t["epochs"], t["batch_size"], t["steps_per_epoch"], t["seed"]) == \
           ("adam", 0.01, 1, 4, 2, Config.seed)
    assert t["checkpoint"] == {"every": Config.checkpoint_every, "keep": Config.keep}
    assert resolved["data"] == {"task": "adding", "input": "x", "output": "y", "length": 5, "train_size": 16,
                                "test_size": 8}
    assert (run / "curves.png").is_file()
    assert "spec.resolved.yaml" in next(ln for ln in result.output.splitlines() if ln.lstrip().startswith("files"))


def test_resume_with_overrides_updates_the_resolved_spec(tmp_path):
    spec = {"timeloom": 1, "name": "tiny", "inputs": {"x": {"size": 2}},
            "units": {"h": {"size": 3, "activation": "tanh"}, "y": {"size": 1, "activation": "identity"}},
            "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}, {"from": "h", "to": "y"}],
            "outputs": {"y": {"loss": "mse", "at": "last"}},
            "data": {"task": "adding", "length": 5, "train_size": 16, "test_size": 8},
            "training": {"steps_per_epoch": 2, "batch_size": 4, "optimizer": "sgd"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(spec))
    assert cli_in(tmp_path, ["run", "tiny.yaml", "--epochs", "1", "--no-report", "-q"]).exit_code == 0
    run = only_run(tmp_path)
    before = yaml.safe_load((run / "spec.resolved.yaml").read_text())["training"]
    assert (before["epochs"], before["lr"]) == (1, DEFAULT_LR["sgd"])
    result = cli_in(tmp_path, ["run", "--resume", run, "--set", "training.epochs=2", "--no-report", "-q"])
    assert result.exit_code == 0, result.output
    after = yaml.safe_load((run / "spec.resolved.yaml").read_text())["training"]
    assert (after["epochs"], after["lr"], after["optimizer"]) == (2, DEFAULT_LR["sgd"], "sgd")
