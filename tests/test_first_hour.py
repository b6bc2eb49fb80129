"""A new user's first hour (issue 15): the README's example trains as printed, the no-data hint
proposes tasks that fit, `--set` does not silently create things, every stage's errors at once,
help texts with examples, one loader for every entry point."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import cli_in, elman_yaml, only_run

from compiler import SpecError, TimeloomError, UsageError, compile_spec, load_spec

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

TINY = elman_yaml(data="{task: adding, length: 8, train_size: 32, test_size: 16}",
                  training="{epochs: 1, batch_size: 16, seed: 0}")


def run_cli(cwd, *args):
    result = cli_in(cwd, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def readme_spec() -> str:
    """The YAML block under the README's '## A spec', exactly as printed."""
    text = README.read_text()
    section = text.split("## A spec", 1)[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


# -- item 1: the README example trains as written --------------------------------------------------
def test_the_readme_example_spec_trains_as_printed(tmp_path):
    spec_text = readme_spec()
    assert "data:" in spec_text and "training:" in spec_text
    assert "timeloom run my_elman.yaml" in README.read_text()  # the command is shown
    (tmp_path / "data").symlink_to(ROOT / "data")  # "saved in the checkout's top folder, beside data/"
    write(tmp_path, spec_text, "my_elman.yaml")
    result = run_cli(tmp_path, "run", "my_elman.yaml", "--epochs", "1", "--set", "training.steps_per_epoch=2",
                     "--set", "data.validation_chars=2000", "--no-report", "-q")
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    evaluation = json.loads((run / "evaluation.json").read_text())
    # the text task's metric; 2 batches of 100 characters, truncated BPTT every 50: 4 optimizer steps
    assert evaluation["metric"] == "bpc" and evaluation["status"] == "completed" and evaluation["steps"] == 4


def _first_proposal(message: str) -> dict:
    found = re.search(r"`data: (\{[^`]*\})`", message)
    assert found, message
    return yaml.safe_load(found.group(1))


@pytest.mark.parametrize("edit,task", [
    (lambda s: s, "text"),  # 27 in, 27 out softmax + cross_entropy
    (lambda s: s.replace("x: {size: 27}", "x: {size: 2}").replace("y: {size: 27, activation: softmax}",
                                                                  "y: {size: 1}")
     .replace("{loss: cross_entropy, at: all}", "{loss: mse, at: last}"), "adding"),
    (lambda s: s.replace("x: {size: 27}", "x: {size: 1}").replace("y: {size: 27, activation: softmax}",
                                                                  "y: {size: 1}")
     .replace("{loss: cross_entropy, at: all}", "{loss: mse, at: all}"), "mackey_glass"),
    (lambda s: s.replace("x: {size: 27}", "x: {size: 7}").replace("y: {size: 27, activation: softmax}",
                                                                  "y: {size: 7, activation: sigmoid}")
     .replace("{loss: cross_entropy, at: all}", "{loss: bce, at: all}"), "embedded_reber"),
])
def test_the_no_data_hint_proposes_a_task_that_fits(tmp_path, edit, task):
    without = edit(readme_spec().split("data:")[0])
    path = write(tmp_path, without)
    result = run_cli(tmp_path, "run", path, "--epochs", "1", "-q")
    assert result.exit_code == 2 and "has no data: section" in result.output, result.output
    proposal = _first_proposal(result.output)
    assert proposal["task"] == task, result.output
    # the oracle: the proposed data: section, added to the spec, builds the task (its own size checks)
    from runtime.data import make_task
    program = compile_spec(dict(yaml.safe_load(without), data=proposal), file=str(path))
    make_task(program, proposal, 0)


def test_every_registered_task_can_be_proposed():
    from runtime.data import TASKS
    from runtime.data.suggest import CANDIDATES
    assert set(CANDIDATES) == set(TASKS) - {"files"}


def test_make_task_without_data_gives_the_same_hint(tmp_path):
    from compiler import DataError
    from runtime.data import make_task
    program = compile_spec(write(tmp_path, TINY.split("data:")[0]))
    with pytest.raises(DataError, match=r"`data: \{task: adding, length: 50\}`"):
        make_task(program)


def test_the_no_data_hint_says_what_to_change_when_only_at_differs(tmp_path):
    path = write(tmp_path, TINY.split("data:")[0].replace("at: last", "at: all"))
    result = run_cli(tmp_path, "run", path)
    assert result.exit_code == 2
    assert "task: adding" in result.output and "at: last" in result.output, result.output


def test_the_readme_own_data_example_trains(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((500, 20, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x.sum(axis=(1, 2))[:, None])
    assert "data: {task: files, files: {x: x.npy, y: y.npy}}" in README.read_text()
    spec = TINY.split("data:")[0] + "data: {task: files, files: {x: x.npy, y: y.npy}}\n" \
        + "training: {epochs: 1, batch_size: 50, seed: 0}\n"
    result = run_cli(tmp_path, "run", write(tmp_path, spec), "--no-report", "-q")
    assert result.exit_code == 0, result.output
    assert (only_run(tmp_path) / "evaluation.json").is_file()


# -- item 2: --set does not silently create things ---------------------------------------------------
@pytest.mark.parametrize("item,words", [
    ("units.hidden.size=32", ["there is no unit 'hidden'", "units: h, y", "--set units.hidden={"]),
    ("units.hh.size=32", ["there is no unit 'hh'", "did you mean 'h'"]),
    ("blocks.mem.size=32", ["there is no block 'mem'", "the spec has no blocks"]),
    ("inputs.xx.size=3", ["there is no input 'xx'", "did you mean 'x'"]),
    ("outputs.h.loss=mse", ["there is no output 'h'", "outputs.h={loss: mse}"]),
    ("units.h2=7", ["there is no unit 'h2'", "did you mean 'h'"]),
    (".".join(["a"] * 5000) + "=1", ["5000 dotted parts", "at most 16"]),
    ("units..size=3", ["empty part"]),
])
def test_set_naming_what_does_not_exist_is_an_error(tmp_path, item, words):
    path = write(tmp_path, TINY)
    result = run_cli(tmp_path, "run", path, "--set", item)
    assert result.exit_code == 2, result.output
    assert all(w in result.output for w in words), result.output
    assert not (tmp_path / "runs").exists()


def test_every_entry_point_checks_set_the_same_way(tmp_path):
    path = write(tmp_path, TINY)
    for args in (["inspect", "graph", path, "-o", tmp_path / "g.html"], ["inspect", "spectrum", path],
                 ["sweep", path, "--grid", "units.hh.size=3,4", "--dry-run"]):
        result = run_cli(tmp_path, *args, *(["--set", "units.hh.size=3"] if args[0] == "inspect" else []))
        assert result.exit_code == 2, (args, result.output)
        assert "there is no unit 'hh'" in result.output and "did you mean 'h'" in result.output, result.output


def test_a_whole_new_unit_is_added_and_run_prints_the_compilers_warning(tmp_path):
    path = write(tmp_path, TINY)
    result = run_cli(tmp_path, "run", path, "--set", "units.h2={size: 3, activation: tanh}", "--no-report", "-q")
    assert result.exit_code == 0, result.output
    assert "warning: unit 'h2' does not influence any output" in result.output
    assert "--set units.h2=" in result.output  # the warning names the --set that made it
    resolved = yaml.safe_load((only_run(tmp_path) / "spec.yaml").read_text())
    assert resolved["units"]["h2"] == {"size": 3, "activation": "tanh"}


def test_a_bad_value_names_the_set_and_a_file_error_its_line(tmp_path):
    path = write(tmp_path, TINY.replace("activation: tanh", "activation: tahn"))
    with pytest.raises(SpecError) as err:
        load_spec(path, ["training.lr=-1"])
    text = [str(e) for e in err.value.errors]
    assert any(t.startswith("--set training.lr=-1: error:") for t in text), text
    assert any(t.startswith(f"{path}:6:") and "did you mean 'tanh'" in t for t in text), text


# -- item 4: errors stage by stage -------------------------------------------------------------------
BAD = """\
timeloom: 1
inputs:
  x: {size: 3}
units:
  h: {size: 4, activation: tahn}
  y: {size: 1}
blocks:
  b: {type: LSTM, size: 3}
connections:
  - {from: x, to: h}
  - {from: z, to: y}
  - {from: h, to: y}
  - {from: x, to: b}
outputs:
  y: {loss: mse}
"""


@pytest.mark.parametrize("command", ["compile", "run"])
def test_every_stage_reports_its_errors_at_once(tmp_path, command):
    path = write(tmp_path, BAD)
    result = run_cli(tmp_path, command, path)
    assert result.exit_code == 2, result.output
    out = result.output
    assert f"{path}:5:" in out and "'tahn'" in out and "did you mean 'tanh'" in out  # schema
    assert f"{path}:8:" in out and "unknown block type 'LSTM' (did you mean 'lstm'?)" in out  # expansion
    assert f"{path}:11:" in out and "unknown source 'z'" in out  # expansion
    assert "3 errors" in out
    assert "'h'" not in out.split("unknown source 'z'")[1]  # no cascade from the unit that failed


@pytest.mark.parametrize("command", ["compile", "run"])
def test_a_data_key_the_task_does_not_take_is_a_compile_error_beside_the_others(tmp_path, command):
    """data: keys are checked against the task's parameters at compile time (a sweep would otherwise
    launch every trial to fail), together with the schema's errors."""
    text = TINY.replace("train_size: 32", "val_size: 32")
    path = write(tmp_path, text.replace("h: {size: 4, activation: tanh}", "h: {size: 4, activation: tahn}"))
    result = run_cli(tmp_path, command, path)
    assert result.exit_code == 2, result.output
    out = result.output
    line = text.splitlines().index(next(t for t in text.splitlines() if t.startswith("data:"))) + 1
    assert f"{path}:{line}:" in out and "data.val_size is not a parameter of task adding" in out, out
    assert "did you mean 'train_size'" in out and "'tahn'" in out and "2 errors" in out, out
    assert "Traceback" not in out
    assert compile_spec(write(tmp_path, TINY)).data["train_size"] == 32  # the task's own keys pass


def test_a_top_level_schema_error_does_not_hide_the_expansions_errors(tmp_path):
    path = write(tmp_path, BAD.replace("timeloom: 1\n", "").replace("tahn", "tanh").replace("LSTM", "lstm"))
    with pytest.raises(SpecError) as err:
        compile_spec(path)
    text = "\n".join(str(e) for e in err.value.errors)
    assert "missing required key 'timeloom'" in text and "unknown source 'z'" in text, text
    assert len(err.value.errors) == 2, text


def test_case_insensitive_suggestions():
    from compiler.schema import did_you_mean
    assert did_you_mean("LSTM", ["rnn", "lstm", "gru"]) == " (did you mean 'lstm'?)"
    assert did_you_mean("Tanh", ["tanh", "sigmoid"]) == " (did you mean 'tanh'?)"
    assert did_you_mean("Sigmod", ["tanh", "sigmoid"]) == " (did you mean 'sigmoid'?)"
    assert did_you_mean("zzz", ["tanh", "sigmoid"]) == ""


def test_a_later_stage_error_at_the_place_of_a_schema_error_is_reported_once(tmp_path):
    path = write(tmp_path, TINY.replace("h: {size: 4, activation: tanh}", "h: {size: -4, activation: tanh}"))
    with pytest.raises(SpecError) as err:
        compile_spec(path)
    assert len(err.value.errors) == 1, [str(e) for e in err.value.errors]


def test_a_spec_with_data_but_no_outputs_fails_at_compile_time(tmp_path):
    path = write(tmp_path, TINY.replace("outputs:\n  y: {loss: mse, at: last}\n", ""))
    result = run_cli(tmp_path, "compile", path)
    assert result.exit_code == 2, result.output
    assert f"{path}:12:1: error: the spec has data:" in result.output and "no outputs:" in result.output
    assert "`outputs: {y: {loss: mse}}`" in result.output
    # without data: it is a valid (untrainable) spec, as before
    compile_spec(write(tmp_path, TINY.replace("outputs:\n  y: {loss: mse, at: last}\n", "").split("data:")[0]))


# -- item 6: CLI manners --------------------------------------------------------------------------
COMMANDS = [["compile"], ["run"], ["import"], ["export"], ["sweep"], ["inspect", "gradients"],
            ["inspect", "spectrum"], ["inspect", "states"], ["inspect", "report"], ["inspect", "graph"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_no_placeholders_and_one_example(tmp_path, command):
    result = run_cli(tmp_path, *command, "--help")
    assert result.exit_code == 0
    out = result.output
    assert "<bool>" not in out and not re.search(r"\{[a-z_]+\}", out), out
    assert out.count("Example: timeloom " + command[0]) == 1, out


def test_version_bare_timeloom_and_the_command_list(tmp_path):
    assert run_cli(tmp_path, "--version").output.startswith("timeloom ")
    bare = run_cli(tmp_path)
    assert bare.exit_code == 0 and "Usage" in bare.output
    commands = bare.output.split("Commands")[1]
    for line in commands.splitlines():
        assert not line.rstrip(" │").endswith("..."), line  # first sentences are not cut


def test_the_best_epoch_star_is_explained(tmp_path):
    path = write(tmp_path, TINY.replace("training: {epochs: 1,", "training: {epochs: 2, early_stopping: "
                                                                 "{patience: 2},"))
    result = run_cli(tmp_path, "run", path, "--no-report")
    assert result.exit_code == 0, result.output
    assert "* marks the best epoch so far" in result.output
    assert re.search(r"epoch 1/2 .*\*$", result.output, re.M), result.output


# -- one loader; errors users see are TimeloomErrors --------------------------------------------------
def test_load_spec_is_what_run_records(tmp_path):
    path = write(tmp_path, TINY)
    loaded = load_spec(path, ["training.lr=0.05", "units.h.size=5"])
    assert loaded.program.units["h"].size == 5 and loaded.spec["training"]["lr"] == 0.05
    result = run_cli(tmp_path, "run", path, "--set", "training.lr=0.05", "--set", "units.h.size=5", "--no-report",
                     "-q")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((only_run(tmp_path) / "spec.yaml").read_text()) == loaded.spec


def test_load_run_keeps_its_old_signature(tmp_path):
    from runtime.train import overrides, session
    path = write(tmp_path, TINY)
    assert run_cli(tmp_path, "run", path, "--no-report", "-q").exit_code == 0
    run = only_run(tmp_path)
    old = session.load_run(run, ["units.h.size=6"], overrides.apply)
    new = session.load_run(run, ["units.h.size=6"])
    assert old[0].units["h"].size == new[0].units["h"].size == 6 and old[1] == new[1]
    with pytest.raises(TimeloomError, match="no unit 'hh'"):
        session.load_run(run, ["units.hh.size=6"])


def test_value_errors_users_meet_are_timeloom_errors(tmp_path):
    from runtime import Network
    program = compile_spec(write(tmp_path, TINY))
    for call in (lambda: program.unroll(0), lambda: Network(program, executor="fastest")):
        with pytest.raises(UsageError) as err:
            call()
        assert isinstance(err.value, TimeloomError) and isinstance(err.value, ValueError)
