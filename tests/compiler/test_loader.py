"""The YAML loader: plain data plus source positions, duplicate keys, alias bombs, YAML 1.2 floats."""
from __future__ import annotations

import pytest

from compiler import SpecError, compile_spec
from compiler.loader import MAX_ALIASES, MAX_NODES, load_file, load_yaml

SPEC = """\
timeloom: 1
inputs:
  x: {size: 3}
units:
  h:
    size: 4
    activation: tanh
connections:
  - {from: x, to: h}
  - from: h
    to: h
    delay: 1
"""


def _errors(text: str, file: str = "t.yaml"):
    with pytest.raises(SpecError) as info:
        load_yaml(text, file)
    return info.value.errors


def test_loads_plain_dicts_and_lists():
    data, _ = load_yaml(SPEC, "t.yaml")
    assert data == {"timeloom": 1, "inputs": {"x": {"size": 3}},
                    "units": {"h": {"size": 4, "activation": "tanh"}},
                    "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1}]}
    assert type(data["units"]) is dict and type(data["connections"]) is list


def test_positions_of_values_are_1_based_line_and_column():
    _, pos = load_yaml(SPEC, "t.yaml")
    assert pos.file == "t.yaml"
    assert pos[()] == (1, 1)
    assert pos[("inputs", "x")] == (3, 6)  # the flow mapping "{size: 3}"
    assert pos[("inputs", "x", "size")] == (3, 13)
    assert pos[("units", "h")] == (6, 5)  # a block mapping starts at its first key
    assert pos[("units", "h", "activation")] == (7, 17)
    assert pos[("connections", 0)] == (9, 5)
    assert pos[("connections", 0, "to")] == (9, 19)
    assert pos[("connections", 1)] == (10, 5)
    assert pos[("connections", 1, "delay")] == (12, 12)


def test_positions_of_keys_are_kept_apart_from_values():
    _, pos = load_yaml(SPEC, "t.yaml")
    assert pos.keys[("units",)] == (4, 1)
    assert pos.keys[("units", "h")] == (5, 3)
    assert pos.keys[("units", "h", "size")] == (6, 5)
    assert pos.keys[("connections", 1, "delay")] == (12, 5)
    assert pos.key(("units", "h")) == (5, 3)
    assert pos.key(("connections", 0)) == (9, 5)  # list items have no key: the value's place


def test_find_falls_back_to_the_nearest_parent():
    _, pos = load_yaml(SPEC, "t.yaml")
    assert pos.find(("units", "h", "leak", "alpha")) == pos[("units", "h")]
    assert pos.find(("nowhere",)) == (1, 1)
    issue = pos.issue(("units", "h", "size"), "bad size")
    assert (issue.file, issue.line, issue.column, issue.path) == ("t.yaml", 6, 11, "/units/h/size")
    assert pos.issue(("units", "h"), "m", at_key=True).line == 5


def test_duplicate_top_level_key_is_an_error_naming_both_lines():
    (e,) = _errors("timeloom: 1\nunits: {}\nname: a\nunits: {}\n")
    assert (e.line, e.column) == (4, 1)
    assert "duplicate key 'units'" in e.message and "line 2" in e.message
    assert e.path == "/units"


def test_duplicate_nested_keys_are_all_collected():
    errors = _errors("timeloom: 1\nunits:\n  h: {size: 1, size: 2}\n  g:\n    size: 1\n    size: 2\n")
    assert [(e.line, e.column) for e in errors] == [(3, 16), (6, 5)]
    assert all("duplicate key 'size'" in e.message for e in errors)
    assert errors[1].path == "/units/g/size"


def test_merge_keys_are_not_duplicates_and_written_keys_override_them():
    text = "base: &b {size: 3, activation: relu}\nu: &u {<<: *b, activation: tanh}\nv: *u\n"
    data, pos = load_yaml(text, "t.yaml")
    assert data["u"] == data["v"] == {"size": 3, "activation": "tanh"}
    assert pos.keys[("u", "activation")] == (2, 16)


def test_a_few_aliases_are_fine():
    data, _ = load_yaml("a: &s {size: 3}\nb: *s\nc: [*s, *s]\n", "t.yaml")
    assert data["b"] == data["c"][1] == {"size": 3}


def test_more_aliases_than_the_limit_are_refused():
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * (MAX_ALIASES + 1)) + "]\n"
    (e,) = _errors(text)
    assert f"{MAX_ALIASES + 1} YAML aliases" in e.message and f"limit {MAX_ALIASES}" in e.message
    load_yaml("a: &x 1\nb: [" + ", ".join(["*x"] * MAX_ALIASES) + "]\n", "t.yaml")


def test_billion_laughs_is_refused_quickly_at_the_value_that_explodes():
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    (e,) = _errors("\n".join(lines) + "\n")
    assert "alias bomb" in e.message and f"{MAX_NODES:,}" in e.message
    assert e.line == 6  # f = 9 * e + 1 nodes is the first value above the limit


def test_recursive_anchor_is_refused():
    (e,) = _errors("a: &a [1, *a]\n")
    assert (e.line, e.column) == (1, 4)
    assert "contains itself" in e.message


def test_deep_nesting_is_an_error_not_a_recursion_crash():
    (e,) = _errors("a: " + "[" * 600 + "]" * 600 + "\n")
    assert "too deeply" in e.message


def test_yaml_1_2_floats():
    data, _ = load_yaml("a: 1e-3\nb: 1.0e-3\nc: 1E3\nd: .5\ne: -2.5e+2\nf: 3\ng: '1e-3'\nh: 1.\n", "t.yaml")
    assert data == {"a": 0.001, "b": 0.001, "c": 1000.0, "d": 0.5, "e": -250.0, "f": 3, "g": "1e-3", "h": 1.0}
    assert type(data["a"]) is float and type(data["c"]) is float and type(data["f"]) is int


def test_lr_written_as_1e_3_is_accepted_by_the_schema():
    text = ("timeloom: 1\ninputs: {x: {size: 2}}\nunits: {y: {size: 2}}\nconnections: [{from: x, to: y}]\n"
            "outputs: {y: {loss: mse}}\ntraining: {lr: 1e-3}\n")
    assert compile_spec(text, file="t.yaml").training["lr"] == 0.001


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_says_how_to_start(text):
    (e,) = _errors(text)
    assert (e.line, e.column) == (1, 1)
    assert "empty" in e.message and "timeloom: 1" in e.message


def test_syntax_error_has_the_problem_position():
    (e,) = _errors("a: [1, 2\nb: 3\n")
    assert (e.line, e.column) == (2, 2)
    assert "'[' at line 1, column 4 is not closed" in e.message


def test_tabs_are_explained():
    (e,) = _errors("a:\n\tb: 1\n")
    assert e.line == 2 and "tabs" in e.message


def test_two_documents_are_refused():
    (e,) = _errors("a: 1\n---\nb: 2\n")
    assert e.line == 2 and "one YAML document" in e.message


def test_unsafe_tags_are_refused():
    (e,) = _errors("a: !!python/object/apply:os.system [echo hi]\n")
    assert e.line == 1 and "not supported" in e.message
    (e,) = _errors("a: !!python/name:os.system x\n")
    assert "YAML error" in e.message


def test_a_list_as_a_key_is_refused():
    (e,) = _errors("? [1, 2]\n: x\n")
    assert "plain name" in e.message


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_file(tmp_path / "nope.yaml")
    (e,) = info.value.errors
    assert e.file.endswith("nope.yaml") and "not found" in e.message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(SpecError) as info:
        load_file(path)
    assert "cannot read" in info.value.errors[0].message
