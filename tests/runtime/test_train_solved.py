"""early_stopping.train_solved (Gers & Schmidhuber 2001: train until the training set is learned):
the task's check against a per-string evaluation with the allowed-next-symbol sets written in
the tests, and the trainer stopping at the first solved epoch, not before."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from compiler import compile_spec
from compiler.errors import TrainingError
from runtime import Network
from runtime.train import checkpoint
from runtime.train.config import Config
from runtime.train.trainer import Trainer
from tests.runtime.test_anbncn_eval import Counter, make, one_string, slow_ok
from tests.runtime.test_train import EchoTask, spec
from tests.support import cli_in

ROOT = Path(__file__).resolve().parents[2]


class Holes(Counter):
    """The exact counter, except that the string for n = `wrong` gets its last output flipped."""

    def __init__(self, wrong: int):
        super().__init__(limit=10_000)
        self.wrong = wrong

    def forward(self, inputs, lengths=None):
        y = super().forward(inputs, lengths)["y"]
        x = np.asarray(inputs["x"])
        L = np.full(x.shape[1], x.shape[0]) if lengths is None else np.asarray(lengths)
        for j in range(x.shape[1]):
            if (x[:L[j], j].argmax(-1) == 1).sum() == self.wrong:
                y[L[j] - 1, j, 3] = 1 - y[L[j] - 1, j, 3]
        return {"y": y}


def slow_train_solved(predictor, lo, hi) -> bool:
    return all(slow_ok(lambda x: predictor.forward({"x": x})["y"], n) for n in range(lo, hi + 1))


@pytest.mark.parametrize("predictor", [Counter(9), Counter(10), Counter(637), Holes(3), Holes(10), Holes(11)])
def test_train_solved_matches_a_per_string_check_of_n_1_to_10(predictor):
    _, task = make([1, 50])
    assert task.train_n == (1, 10) or list(task.train_n) == [1, 10]
    expected = slow_train_solved(predictor, 1, 10)
    assert task.train_solved(predictor) is expected
    # the cases were chosen so that both answers occur: a counter saturating at 9, a hole at n = 3 or 10
    assert expected == (getattr(predictor, "limit", 0) >= 10 and getattr(predictor, "wrong", 11) > 10)


def test_train_solved_of_a_real_network_matches_running_each_string_alone():
    program, task = make([1, 50])
    net = Network(program, seed=5, dtype="float64")
    rng = np.random.default_rng(2)
    for name, p in net.params.items():
        net.params[name] = rng.uniform(-2, 2, p.shape)
    expected = all(slow_ok(lambda x: net.forward({"x": x})["y"], n) for n in range(1, 11))
    assert task.train_solved(net) is expected


class SolvedAfter(EchoTask):
    """EchoTask whose training set counts as solved from the k-th check on."""

    def __init__(self, program, seed=0, k=3):
        super().__init__(program, seed)
        self.k, self.checks = k, 0

    def train_solved(self, net):
        self.checks += 1
        return self.checks >= self.k


def trainer(task_cls, stop, epochs=10):
    program = compile_spec(spec(training={"lr": 0.01, "epochs": epochs, "batch_size": 4, "early_stopping": stop}))
    cfg = Config.from_training(program.training)
    net = Network(program, dtype="float64", seed=cfg.seed)
    return Trainer(net, task_cls(program, cfg.seed), cfg), cfg


def test_the_trainer_stops_at_the_first_epoch_whose_training_set_is_solved():
    tr, cfg = trainer(SolvedAfter, {"train_solved": True})
    assert cfg.train_solved and cfg.patience is None  # no loss-based stopping unless patience is given
    result = tr.fit()
    assert result.status == "early_stopped"
    epochs = [r for r in tr.history if r["kind"] == "epoch"]
    assert [r["train_solved"] for r in epochs] == [False, False, True]
    assert tr.pos.epoch == 3


def test_train_solved_on_a_task_without_a_training_set_notion_is_refused():
    with pytest.raises(TrainingError, match="train_solved.*has no solved training set"):
        trainer(EchoTask, {"train_solved": True})


def test_timeloom_run_anbncn_stops_when_n_1_to_10_are_solved(tmp_path):
    text = yaml.safe_load((ROOT / "specs" / "anbncn.yaml").read_text())
    text["data"]["eval_n"] = [1, 60]
    text["training"].pop("eps", None)  # Adam's default eps: seed 0 solves n = 1..10 at epoch 15 of 60
    text["training"].update(epochs=60, early_stopping={"train_solved": True})
    path = tmp_path / "anbncn.yaml"
    path.write_text(yaml.safe_dump(text))
    r = cli_in(tmp_path, ["run", path, "--seed", "0", "-q", "--no-report", "--runs-dir", tmp_path / "runs"])
    assert r.exit_code == 0, r.output
    run = next((tmp_path / "runs").iterdir())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in epochs if e["kind"] == "epoch"]
    assert len(epochs) < 60 and epochs[-1]["train_solved"] and not any(e["train_solved"] for e in epochs[:-1])
    # the saved network solves every training string when each is run alone, and the final
    # evaluation starts at least there
    program = compile_spec(text)
    net = Network(program, dtype="float32", seed=0)
    ckpt = sorted((run / "checkpoints").glob("ckpt-*.npz"))[-1]
    saved = checkpoint.load(ckpt).params
    for k in net.params:
        net.params[k] = saved[k]
    for n in range(1, 11):
        assert slow_ok(lambda x: net.forward({"x": x.astype(np.float32)})["y"], n), n
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["solved_up_to_n"] >= 10


@pytest.mark.parametrize("stop", [{"train_solved": True}, {"train_solved": True, "patience": 3},
                                  {"patience": 2}])
def test_the_resolved_spec_keeps_train_solved(stop):
    from runtime.train.resolved import resolved_training
    cfg = Config.from_training({"early_stopping": stop})
    again = Config.from_training(resolved_training(cfg))
    assert (again.train_solved, again.patience) == (cfg.train_solved, cfg.patience)
    assert again.train_solved == bool(stop.get("train_solved")) and again.patience == stop.get("patience")
