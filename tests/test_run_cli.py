"""`timeloom run`: the run directory, overrides, determinism, kill-and-resume, Ctrl-C,
checkpoint refusal, evaluation only, NaN stops, bad data, generation, ridge.

Until the built-in data tasks land, a tiny task with their interface stands in for them
(installed in-process with monkeypatch, or by a driver script for real subprocesses).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from support import cli_in, final_params, only_run

from runtime.train import checkpoint

ROOT = Path(__file__).resolve().parents[1]

TASK = textwrap.dedent('''
    import time
    from collections import namedtuple
    import numpy as np

    Batch = namedtuple("Batch", "inputs targets lengths masks")

    class TinyTask:
        """mse: y_t = 0.5 x_{t-1}; cross_entropy: the next symbol of a random one-hot sequence."""
        name = "tiny"
        PARAMS = {"length": 5, "steps": 4, "val": 8, "nan_at": None, "sleep": 0.0, "bad_shape": False}
        STEPS_SETTING = "data.length"  # what compiler/budget.py asks of a task before building it

        @classmethod
        def sequence_steps(cls, params):
            return {**cls.PARAMS, **params}["length"]

        @classmethod
        def sequences_per_epoch(cls, params, training):
            return None

        def __init__(self, program, seed, length=5, steps=4, val=8, nan_at=None, sleep=0.0, bad_shape=False, **_):
            self.program, self.seed, self.T, self.steps = program, seed, length, steps
            self.val, self.nan_at, self.sleep, self.bad_shape = val, nan_at, sleep, bad_shape
            self.out = next(iter(program.outputs))
            self.loss = program.outputs[self.out].loss
            self.metric = "accuracy" if self.loss == "cross_entropy" else "mse"
            self.higher_is_better = self.loss == "cross_entropy"
            self.drawn = 0

        def batch(self, rng, B):
            (xin, k), T = next(iter(self.program.inputs.items())), self.T
            if self.loss == "cross_entropy":
                sym = rng.integers(0, k, (T + 1, B))
                x, y = np.eye(k)[sym[:-1]], sym[1:]
            else:
                x = rng.uniform(-1, 1, (T, B, k))
                y = np.zeros((T, B, self.program.units[self.out].size))
                y[1:] = 0.5 * x[:-1, :, :1]
            if self.bad_shape:
                x = np.concatenate([x, x], axis=-1)
            return Batch({xin: x}, {self.out: y}, None, None)

        def train_batches(self, batch_size, rng):
            for _ in range(self.steps):
                b = self.batch(rng, batch_size)
                self.drawn += 1
                if self.drawn == self.nan_at:
                    b.targets[self.out][...] = np.nan
                if self.sleep:
                    time.sleep(self.sleep)
                yield b

        def validation(self):
            return [self.batch(np.random.default_rng(self.seed + 1000), self.val)]

        def evaluate(self, net):
            b = self.validation()[0]
            y = net.backend.to_numpy(net.forward(b.inputs)[self.out])
            t = b.targets[self.out]
            if self.loss == "cross_entropy":
                return {"accuracy": float((y.argmax(-1) == t).mean())}
            return {"mse": float(((y - t) ** 2).mean()), "baseline": self.baseline()["mse"]}

        def baseline(self):
            if self.loss == "cross_entropy":
                return {"accuracy": 1.0 / next(iter(self.program.inputs.values()))}
            return {"mse": float((self.validation()[0].targets[self.out] ** 2).mean())}

    def install():  # the spec says task: adding; its data: keys are TinyTask's (checked at compile time)
        import runtime.data
        import runtime.train.tasks as tasks
        runtime.data.TASKS["adding"] = TinyTask
        tasks.load_task = lambda program, seed: TinyTask(
            program, seed, **{k: v for k, v in program.data.items() if k != "task"})
''')

SPEC = """\
timeloom: 1
name: tiny
inputs:
  x: {size: 1}
units:
  h: {size: 6, activation: tanh}
  y: {size: 1, activation: identity}
connections:
  - {from: x, to: h}
  - {from: h, to: h, delay: 1}
  - {from: h, to: y}
outputs:
  y: {loss: mse, at: all}
data: {task: adding, length: 5, steps: 4%s}
training:
  optimizer: adam
  lr: 0.03
  epochs: %d
  batch_size: 8
  seed: 0
  clip_norm: 1.0
"""


def write_spec(folder: Path, epochs=3, data="", name="tiny.yaml") -> Path:
    path = folder / name
    path.write_text(SPEC % (data, epochs))
    return path


@pytest.fixture
def tiny(monkeypatch):
    import runtime.train.tasks as tasks
    ns: dict = {}
    exec(TASK, ns)
    import runtime.data
    monkeypatch.setitem(runtime.data.TASKS, "adding", ns["TinyTask"])
    monkeypatch.setattr(tasks, "load_task", lambda program, seed: ns["TinyTask"](
        program, seed, **{k: v for k, v in program.data.items() if k != "task"}))
    return ns


def invoke(args, cwd: Path):
    return cli_in(cwd, ["run", *args])


# -- in-process runs ---------------------------------------------------------------------------------
def test_run_writes_the_run_directory_and_a_summary(tiny, tmp_path):
    spec = write_spec(tmp_path)
    result = invoke([spec], tmp_path)
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    assert run.name.startswith("tiny-")
    for f in ("spec.yaml", "run.json", "metrics.jsonl", "curves.png", "evaluation.json"):
        assert (run / f).is_file(), f
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 13))
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["metric"] == "mse" and ev["status"] == "completed" and ev["mse"] < ev["baseline"]
    out = result.output
    assert "epoch 1/3  step 4  loss" in out and "epoch 3/3  step 12" in out  # per-epoch lines without a TTY
    assert "tiny: finished after 3 epochs, 12 steps" in out and f"run         {run.relative_to(tmp_path)}/" in out
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_overrides_are_applied_and_kept_in_the_resolved_spec(tiny, tmp_path):
    spec = write_spec(tmp_path)
    result = invoke([spec, "--set", "training.lr=0.01", "--set", "training.bptt={truncate: 2}",
                     "--epochs", "2", "--seed", "5", "--dtype", "float64"], tmp_path)
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    import yaml
    resolved = yaml.safe_load((run / "spec.yaml").read_text())
    assert resolved["training"] | {} == {"optimizer": "adam", "lr": 0.01, "epochs": 2, "batch_size": 8, "seed": 5,
                                         "clip_norm": 1.0, "bptt": {"truncate": 2}}
    info = json.loads((run / "run.json").read_text())
    assert info["dtype"] == "float64" and info["seed"] == 5
    assert info["overrides"] == ["training.lr=0.01", "training.bptt={truncate: 2}", "training.epochs=2",
                                 "training.seed=5"]
    # 3 windows of a length-5 batch: 3 optimizer steps per batch
    assert "epoch 2/2  step 24" in result.output


@pytest.mark.parametrize("args,words", [
    (["--set", "training.lr=-1"], ["--set training.lr=-1", "error"]),
    (["--set", "training.lrr=0.1"], ["--set training.lrr=0.1", "lrr"]),
    (["--set", "training.lr"], ["KEY=VALUE"]),
    (["--backend", "tpu"], ["unknown backend 'tpu'"]),
])
def test_bad_overrides_exit_2_with_a_message(tiny, tmp_path, args, words):
    result = invoke([write_spec(tmp_path), *args], tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert all(w in result.output for w in words), result.output


def test_same_seed_same_numbers(tiny, tmp_path):
    spec = write_spec(tmp_path)
    for name in ("a", "b"):
        assert invoke([spec, "--name", name], tmp_path).exit_code == 0
    a, b = sorted((tmp_path / "runs").iterdir())

    def numbers(run):
        return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]

    assert numbers(a) == numbers(b)
    pa, pb = final_params(a), final_params(b)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_evaluate_a_checkpoint_without_training(tiny, tmp_path):
    spec = write_spec(tmp_path)
    assert invoke([spec], tmp_path).exit_code == 0
    run = only_run(tmp_path)
    ck = checkpoint.latest(run / "checkpoints")
    result = invoke([spec, "--checkpoint", ck, "--evaluate"], tmp_path)
    assert result.exit_code == 0, result.output
    ev = json.loads(result.output.strip().splitlines()[-1])
    assert ev["mse"] == json.loads((run / "evaluation.json").read_text())["mse"]
    assert ev["step"] == 12 and len(list((tmp_path / "runs").iterdir())) == 1  # nothing new written


def test_checkpoint_of_another_spec_is_refused(tiny, tmp_path):
    spec = write_spec(tmp_path)
    assert invoke([spec], tmp_path).exit_code == 0
    ck = checkpoint.latest(only_run(tmp_path) / "checkpoints")
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("size: 6", "size: 7"))
    for args in ([other, "--checkpoint", ck, "--evaluate"], [other, "--checkpoint", ck]):
        result = invoke(args, tmp_path)
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "was saved from a different model" in result.output and str(ck) in result.output
    changed_lr = tmp_path / "lr.yaml"
    changed_lr.write_text(spec.read_text().replace("lr: 0.03", "lr: 0.5"))
    assert invoke([changed_lr, "--checkpoint", ck, "--evaluate"], tmp_path).exit_code == 0


def test_nan_stops_with_the_step_and_keeps_the_last_checkpoint(tiny, tmp_path):
    spec = write_spec(tmp_path, data=", nan_at: 7")
    result = invoke([spec], tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    run = only_run(tmp_path)
    kept = checkpoint.latest(run / "checkpoints")
    line = [ln for ln in result.output.splitlines() if ln.startswith("error:")][0]
    assert "step 7 (epoch 2, batch 3)" in line and "target of output 'y'" in line
    assert str(kept.relative_to(tmp_path)) in line
    assert kept.name == "ckpt-00000004-0001-00000.npz"
    assert all(np.isfinite(v).all() for v in checkpoint.load(kept).params.values())


def test_wrong_shape_data_exits_2_naming_the_input_and_shape(tiny, tmp_path):
    result = invoke([write_spec(tmp_path, data=", bad_shape: true")], tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "input 'x' has shape (5, 8, 2), expected (T, B, 1)" in result.output


def test_wrong_shape_user_files_give_file_input_shape_error(tmp_path):
    pytest.importorskip("runtime.data", reason="the built-in data tasks have not landed yet")
    np.save(tmp_path / "x.npy", np.zeros((4, 5, 3)))  # the spec's input x has size 1
    np.save(tmp_path / "y.npy", np.zeros((4, 5, 1)))
    spec = tmp_path / "files.yaml"
    spec.write_text((SPEC % ("", 1)).replace("data: {task: adding, length: 5, steps: 4}",
                                              "data: {task: files, files: {x: x.npy, y: y.npy}}"))
    result = invoke([spec], tmp_path)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "x.npy" in result.output and "x" in result.output and "(4, 5, 3)" in result.output


def test_a_spec_without_data_exits_2(tmp_path):
    spec = tmp_path / "nodata.yaml"
    spec.write_text(SPEC.split("data:")[0])
    result = invoke([spec], tmp_path)
    assert result.exit_code == 2 and "has no data: section" in result.output


def test_generate_after_training_writes_generation_json(tiny, tmp_path):
    spec = tmp_path / "sym.yaml"
    spec.write_text((SPEC % ("", 2)).replace("x: {size: 1}", "x: {size: 4}")
                    .replace("y: {size: 1, activation: identity}", "y: {size: 4, activation: softmax}")
                    .replace("loss: mse", "loss: cross_entropy"))
    result = invoke([spec, "--generate", "7", "--prime-steps", "3"], tmp_path)
    assert result.exit_code == 0, result.output
    gen = json.loads((only_run(tmp_path) / "generation.json").read_text())
    assert gen["mode"] == "feedback" and gen["prime_steps"] == 3 and len(gen["symbols"]) == 7
    assert "generated (feedback, 7 steps)" in result.output


def test_ridge_method_fits_the_readout(tiny, tmp_path):
    spec = tmp_path / "esn.yaml"
    spec.write_text(textwrap.dedent("""\
        timeloom: 1
        name: esn
        inputs: {x: {size: 1}}
        blocks:
          res: {type: reservoir, size: 30, spectral_radius: 0.9, density: 0.2}
        units:
          y: {size: 1, activation: identity}
        connections:
          - {from: x, to: res}
          - {from: res, to: y}
        outputs:
          y: {loss: mse, at: all}
        data: {task: adding, length: 20, steps: 3}
        training: {method: ridge, ridge: {alpha: 1.0e-6, washout: 2}, batch_size: 16, seed: 0}
    """))
    result = invoke([spec], tmp_path)
    assert result.exit_code == 0, result.output
    ev = json.loads((only_run(tmp_path) / "evaluation.json").read_text())
    assert ev["ridge"]["samples"] == 3 * 16 * 18 and ev["mse"] < 0.05 * ev["baseline"]
    assert "ridge readout: 864 steps x 31 features" in result.output


# -- real processes: kill -9 and Ctrl-C, then --resume -----------------------------------------------
def driver(folder: Path) -> Path:
    path = folder / "drive.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n{TASK}\ninstall()\n"
                    "import cli\ncli.app(prog_name='timeloom')\n")
    return path


def start(folder: Path, *args):
    return subprocess.Popen([sys.executable, str(driver(folder)), "run", *map(str, args)], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(folder: Path, predicate, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list((folder / "runs").glob("*/metrics.jsonl")) if (folder / "runs").exists() else []
        if runs:
            lines = runs[0].read_text().splitlines()
            records = [json.loads(x) for x in lines[:-1]]  # the last line may be half written
            if predicate(records):
                return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted:\n{proc.stdout.read()}")
        time.sleep(0.005)
    pytest.fail("the run did not get there in time")


ARGS = ("--dtype", "float64", "--epochs", "4")
DATA = ", sleep: 0.03"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole")
    spec = write_spec(folder, data=DATA)
    proc = start(folder, spec, *ARGS)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return final_params(only_run(folder))


def test_killed_run_resumes_to_the_same_parameters_bitwise(tmp_path, uninterrupted):
    spec = write_spec(tmp_path, data=DATA)
    proc = start(tmp_path, spec, *ARGS)
    # in the middle of epoch 3, after the checkpoint of epoch 2
    wait_for(tmp_path, lambda rs: any(r["kind"] == "step" and r["epoch"] == 3 and r["batch"] >= 2 for r in rs), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = only_run(tmp_path)
    assert not (run / "evaluation.json").exists()
    assert checkpoint.latest(run / "checkpoints").name == "ckpt-00000008-0002-00000.npz"
    resumed = subprocess.run([sys.executable, str(driver(tmp_path)), "run", "--resume", str(run)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "finished after 4 epochs, 16 steps" in resumed.stdout
    params = final_params(run)
    assert all(np.array_equal(params[k], uninterrupted[k]) for k in uninterrupted)
    epochs = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in x]
    assert epochs == [1, 2, 3, 4]


def test_ctrl_c_saves_exits_cleanly_and_resumes_bitwise(tmp_path, uninterrupted):
    spec = write_spec(tmp_path, data=DATA)
    proc = start(tmp_path, spec, *ARGS)
    wait_for(tmp_path, lambda rs: any(r["kind"] == "step" and r["step"] >= 6 for r in rs), proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "interrupted" in out and "resume with: timeloom run --resume" in out
    run = only_run(tmp_path)
    saved = checkpoint.load(checkpoint.latest(run / "checkpoints"))
    assert saved.meta["kind"] == "interrupt" and saved.meta["step"] >= 6
    resumed = subprocess.run([sys.executable, str(driver(tmp_path)), "run", "--resume", str(run), str(spec)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    params = final_params(run)
    assert all(np.array_equal(params[k], uninterrupted[k]) for k in uninterrupted)


def test_an_empty_prime_is_refused_before_training(tmp_path):
    res = cli_in(tmp_path, ["run", ROOT / "specs" / "teacher_forcing.yaml", "--epochs", "1", "--generate", "5",
                            "--prime", "", "--runs-dir", "runs"])
    assert res.exit_code == 2 and "--prime is empty" in res.output, res.output
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made
