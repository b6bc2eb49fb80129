"""Every file in tests/compiler/invalid/ is a spec with mistakes; its first comment lines say
which errors the compiler must report:

    # expect: LINE:COL: words that must all appear in the message

Several `# expect:` lines mean several errors reported at once (collected, not the first one).
The compiler must raise SpecError with each of them, and the CLI must print them as
`file:line:col: error: message` and exit with status 2, never with a traceback.
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import cli
from compiler import SpecError, compile_spec
from compiler.budget import BudgetError
from compiler.loader import load_file

ROOT = Path(__file__).resolve().parents[2]
INVALID = Path(__file__).resolve().with_name("invalid")
CASES = sorted(INVALID.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+):(\d+): (.+)$")


@dataclass(frozen=True)
class Expected:
    line: int
    column: int
    words: tuple

    def found_in(self, issue) -> bool:
        return ((issue.line, issue.column) == (self.line, self.column)
                and all(w in issue.message for w in self.words))

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {' '.join(self.words)}"


def expectations(path: Path) -> list[Expected]:
    """The leading `# expect:` lines of a corpus file."""
    out = []
    for text in path.read_text(encoding="utf-8").splitlines():
        m = EXPECT.match(text)
        if not m:
            break
        out.append(Expected(int(m.group(1)), int(m.group(2)), tuple(m.group(3).split())))
    return out


def _relative(path: Path) -> str:
    return os.path.relpath(path, ROOT)


def test_corpus_covers_at_least_30_mistakes_each_with_an_expectation():
    assert len(CASES) >= 30
    for path in CASES:
        assert expectations(path), f"{path.name} does not start with '# expect: LINE:COL: words'"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_compiler_reports_every_expected_error_at_its_place(path):
    with pytest.raises(SpecError) as info:
        compile_spec(path)
    errors = info.value.errors
    report = "\n".join(f"  {e.line}:{e.column}: {e.message}" for e in errors)
    for want in expectations(path):
        assert any(want.found_in(e) for e in errors), f"{path.name}: expected {want}\ngot:\n{report}"
    places = [(e.line, e.column) for e in errors]
    assert places == sorted(places), f"{path.name}: not in file order:\n{report}"
    for e in errors:
        assert e.severity == "error"
        assert e.file == str(path)
        assert e.line >= 1 and e.column >= 1, f"{path.name}: no position for {e.message!r}"
        assert "Traceback" not in e.message and "\n" not in e.message
        assert str(e).startswith(f"{path}:{e.line}:{e.column}: error: ")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_cli_prints_file_line_col_errors_and_exits_2(path, monkeypatch):
    rel = _relative(path)
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli.app, ["compile", rel])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    for want in expectations(path):
        prefix = f"{rel}:{want.line}:{want.column}: error: "
        assert any(ln.startswith(prefix) and all(w in ln for w in want.words) for ln in lines), \
            f"no line starting {prefix!r} with {' '.join(want.words)!r} in:\n{result.output}"
    n = len([ln for ln in lines if ": error: " in ln])
    assert lines[-1] == f"{n} error{'s' if n != 1 else ''}"


def test_two_errors_in_one_file_are_both_reported():
    with pytest.raises(SpecError) as info:
        compile_spec(INVALID / "two_errors.yaml")
    assert len(info.value.errors) == 2
    assert [e.line for e in info.value.errors] == sorted(e.line for e in info.value.errors)


@pytest.mark.parametrize("name", ["yaml_unclosed_bracket", "algebraic_loop"])
def test_real_process_exits_2_without_traceback(name):
    """One real `python -m cli` run per kind of failure (loader, semantics): no test-runner magic."""
    rel = _relative(INVALID / f"{name}.yaml")
    proc = subprocess.run([sys.executable, "-m", "cli", "compile", rel], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    (want,) = expectations(INVALID / f"{name}.yaml")
    assert f"{rel}:{want.line}:{want.column}: error: " in proc.stderr
    assert proc.stdout == ""


UNUSED = """\
timeloom: 1
inputs: {x: {size: 3}}
units:
  h: {size: 4, activation: tanh}
  spare: {size: 2, activation: tanh}
  y: {size: 2}
connections:
  - {from: x, to: h}
  - {from: h, to: h, delay: 1}
  - {from: h, to: y}
  - {from: h, to: spare}
outputs:
  y: {loss: mse}
"""


def test_unused_unit_is_a_warning_not_an_error(tmp_path):
    path = tmp_path / "unused.yaml"
    path.write_text(UNUSED)
    program = compile_spec(path)
    (w,) = program.warnings
    assert w.severity == "warning"
    assert (w.line, w.column) == (5, 3)
    assert "'spare'" in w.message and "does not influence any output" in w.message
    assert str(w).startswith(f"{path}:5:3: warning: ")
    result = CliRunner().invoke(cli.app, ["compile", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}:5:3: warning: " in result.output


def test_dollar_signs_in_free_text_are_not_parameter_references(tmp_path):
    path = tmp_path / "dollars.yaml"
    path.write_text("timeloom: 1\ndescription: costs $5, see $HOME\ninputs: {x: {size: 2}}\n"
                    "units: {y: {size: 2}}\nconnections: [{from: x, to: y}]\noutputs: {y: {loss: mse}}\n"
                    "data: {task: text, path: $HOME/corpus.txt}\n")
    assert compile_spec(path).data["path"] == "$HOME/corpus.txt"


TEMPLATE = """\
timeloom: 1
templates:
  t:
    params: {size: 4, d: 1, act: tanh, w: full, g: gt, init: glorot, lb: true, alpha: 0.5, name: h}
    units:
      h: {size: $size, activation: $act, leak: {alpha: $alpha}}
      gt: {size: $size, activation: sigmoid}
    connections:
      - {from: h, to: "${name}", delay: $d, weight: $w, gate: $g, init: $init, bias: $lb}
    inputs: [h, gt]
    outputs: [h]
inputs: {x: {size: 4}}
blocks:
  b: {type: t, PARAM: VALUE}
units: {y: {size: 2}}
connections: [{from: x, to: b}, {from: b, to: y}]
outputs: {y: {loss: mse}}
"""


@pytest.mark.parametrize("param, value, place", [
    ("size", "ten", "6:17"), ("d", "x", "9:41"), ("d", "null", "9:41"), ("d", "[1, 2]", "9:41"),
    ("d", "1.5", "9:41"), ("w", "x", "9:53"), ("w", "{a: 1}", "9:53"), ("g", "2", "9:63"),
    ("lb", "x", "9:86"), ("alpha", "x", "6:56"), ("alpha", "2", "6:56"), ("name", "1.5", "9:23"),
])
def test_template_parameter_values_are_checked_after_substitution(param, value, place):
    """A parameter's value may be anything until it is put in place: then the schema checks it,
    the error points at the "$param" in the template and names the instance and the value."""
    with pytest.raises(SpecError) as info:
        compile_spec(TEMPLATE.replace("PARAM", param).replace("VALUE", value), file="t.yaml")
    hits = [e for e in info.value.errors if f"{e.line}:{e.column}" == place]
    assert hits, [str(e) for e in info.value.errors]
    assert all("in block 'b', an instance of template 't' at line 14" in e.message for e in hits)
    assert f"with {param}: " in hits[0].message


JUNK = st.sampled_from([None, 0, -1, 1.5, "x", "$n", "${a}", "", [], {}, [1, 2], {"a": 1}, True, "h",
                        "lstm", [[1]], "x.h", 10**6])


def _paths(data, path=()):
    yield path
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, path + (i,))


@settings(max_examples=60, deadline=None)
@example(spec=ROOT / "specs" / "leaky.yaml", picks=[(0.1875, False, 10**6)])  # a 10**6-cell unit: over budget
@given(spec=st.sampled_from(sorted((ROOT / "specs").glob("*.yaml"))),
       picks=st.lists(st.tuples(st.floats(0, 1), st.booleans(), JUNK), min_size=1, max_size=3))
def test_mangled_specs_give_spec_errors_never_crashes(spec, picks):
    """Replace or delete random values of a valid spec: compile either works, raises SpecError,
    or refuses a size that does not fit the memory/time bound (BudgetError, e.g. size: 10**6)."""
    data, _ = load_file(spec)
    for where, delete, junk in picks:
        paths = [p for p in _paths(data) if p]
        path = paths[int(where * (len(paths) - 1))]
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if delete and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(junk)  # never the same list twice: no cycles
    try:
        compile_spec(data)
    except SpecError as e:
        assert e.errors and all(issue.message for issue in e.errors)
    except BudgetError as e:
        assert "TIMELOOM_MAX" in str(e) or "limit" in str(e)


def test_a_block_the_schema_refused_raises_no_follow_on_errors_at_its_connections():
    """A gru of size 0 is one mistake: its connections are not also reported as going to a
    block without ports (whose fix, "add inputs: to the template", would be wrong)."""
    with pytest.raises(SpecError) as info:
        compile_spec(INVALID / "block_size_zero.yaml")
    assert [(e.line, e.column) for e in info.value.errors] == [(5, 26)]


def test_a_reservoir_so_sparse_it_has_no_weights_is_a_warning(tmp_path):
    path = tmp_path / "sparse.yaml"
    path.write_text("timeloom: 1\ninputs: {x: {size: 1}}\nblocks:\n"
                    "  res: {type: reservoir, size: 200, density: 1.0e-9}\n"
                    "units:\n  y: {size: 1, activation: identity}\n"
                    "connections:\n  - {from: x, to: res}\n  - {from: res, to: y}\noutputs:\n  y: {loss: mse}\n")
    (w,) = compile_spec(path).warnings
    assert w.severity == "warning" and w.line == 4
    assert "density 1e-09 leaves about 4e-05 of its 200x200 weights non-zero" in w.message
    assert "at least 2.5e-05" in w.message
