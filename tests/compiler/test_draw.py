"""Graph export and drawing: JSON, GraphML, DOT, PNG and SVG of folded and unrolled graphs.

The graphs are built by hand here, following docs/ARCHITECTURE.md ("Program"), so these tests
do not depend on the rest of the compiler; one test draws a compiled program end to end."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import networkx as nx
import pytest

from compiler import draw

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def folded(inputs, units, connections, leaks=()):
    """A folded graph: connections (src, tgt, delay, gate unit or None) plus their gate edges."""
    g = nx.MultiDiGraph()
    for n in inputs:
        g.add_node(n, kind="input", size=3)
    for n in units:
        g.add_node(n, kind="unit", size=4, activation="tanh", leak=n in leaks, initial="zeros")
    for src, tgt, delay, gate in connections:
        name = f"{src}->{tgt}" + (f"@{delay}" if delay else "")
        g.add_edge(src, tgt, key=name, kind="connection", param=name, delay=delay, weight="full",
                   gate=gate, gate_complement=False, gate_at="target" if gate else None)
        if gate:
            g.add_edge(gate, tgt, key=f"{name}:gate", kind="gate", delay=0, param=name)
    for u in leaks:
        g.add_edge(u, u, key=f"{u}:leak", kind="leak", delay=1, param=f"{u}.alpha")
    return g


def unroll(g, steps):
    """Nodes (name, t); every edge from (src, t - delay) to (tgt, t); initial nodes outside [0, T)."""
    u = nx.DiGraph(name="hand", steps=steps)
    for n, d in g.nodes(data=True):
        u.add_nodes_from(((n, t) for t in range(steps)), kind=d["kind"], unit=n)
    for a, b, d in g.edges(data=True):
        for t in range(steps):
            src = (a, t - d["delay"])
            if not 0 <= src[1] < steps:
                u.add_node(src, kind="initial", unit=a)
            if u.has_edge(src, (b, t)):
                u.edges[src, (b, t)]["params"] += (d["param"],)
                continue
            u.add_edge(src, (b, t), kind=d["kind"], param=d["param"], params=(d["param"],),
                       delay=d["delay"], gate=d.get("gate") if d["kind"] == "connection" else None)
    return u


@pytest.fixture
def elman():
    return folded(["x"], ["h", "y"], [("x", "h", 0, None), ("h", "h", 1, None), ("h", "y", 0, None)])


@pytest.fixture
def lstm():
    """An LSTM cell with peepholes, a leaky cell, a delay-5 skip and a readout y."""
    conns = [("x", k, 0, None) for k in "ifog"] + [("h", k, 1, None) for k in "ifog"]
    conns += [("c", "c", 1, "f"), ("g", "c", 0, "i"), ("c", "ct", 0, None), ("ct", "h", 0, "o"),
              ("c", "i", 1, None), ("c", "f", 1, None), ("c", "o", 0, None), ("h", "h", 5, None),
              ("h", "y", 0, None)]
    return folded(["x"], ["i", "f", "o", "g", "c", "ct", "h", "y"], conns, leaks=["c"])


def test_json_round_trips_the_folded_multigraph(lstm):
    data = json.loads(json.dumps(draw.graph_to_json(lstm)))
    back = nx.node_link_graph(data, edges="edges")
    assert back.is_multigraph() and back.is_directed()
    assert back.number_of_nodes() == lstm.number_of_nodes() == 9
    assert back.number_of_edges() == lstm.number_of_edges()
    assert back.has_edge("c", "c", key="c->c@1") and back.has_edge("f", "c", key="c->c@1:gate")
    assert back.edges["h", "h", "h->h@5"]["delay"] == 5


def test_json_names_unrolled_nodes_unit_at_t(elman):
    g = unroll(elman, 4)
    data = json.loads(json.dumps(draw.graph_to_json(g)))
    nodes = {n["id"]: n for n in data["nodes"]}
    assert len(nodes) == g.number_of_nodes() == 3 * 4 + 1
    assert nodes["h@3"]["unit"] == "h" and nodes["h@3"]["t"] == 3
    assert nodes["h@-1"]["kind"] == "initial" and nodes["h@-1"]["t"] == -1
    assert len(data["edges"]) == g.number_of_edges()
    edge = next(e for e in data["edges"] if e["source"] == "h@-1")
    assert edge["target"] == "h@0" and edge["params"] == ["h->h@1"]


def _node_lines(dot):
    return re.findall(r'^\s*"((?:[^"\\]|\\.)*)" \[label=', dot, flags=re.M)


def _edge_line(dot, a, b):
    lines = [line for line in dot.splitlines() if line.strip().startswith(f'"{a}" -> "{b}" [')]
    assert len(lines) == 1, (a, b, lines)
    return lines[0]


def test_dot_has_one_node_line_per_node(elman, lstm):
    for g in (elman, lstm, unroll(lstm, 5)):
        ids = _node_lines(draw.graph_to_dot(g, "t"))
        assert sorted(ids) == sorted(draw.node_id(n) for n in g)


def test_dot_styles_say_delay_and_gate(lstm):
    dot = draw.graph_to_dot(unroll(lstm, 6), "lstm")
    assert "style=dashed" in _edge_line(dot, "h@2", "i@3")  # delay 1
    assert "style=dashed" not in _edge_line(dot, "x@3", "i@3")  # delay 0: solid
    five = _edge_line(dot, "h@0", "h@5")
    assert "style=dotted" in five and 'label="d=5"' in five
    assert "arrowhead=dot" in _edge_line(dot, "f@2", "c@2")  # a gate
    assert re.search(r'^\s*"h@-3" \[.*fillcolor="#e0e0e0"', dot, flags=re.M)  # initial: grey
    assert re.search(r'^\s*"x@0" \[.*pos="0,0!"', dot, flags=re.M)  # time x, inputs at the bottom
    folded_dot = draw.graph_to_dot(lstm, "lstm")
    assert "rankdir=LR" in folded_dot
    recurrent = _edge_line(folded_dot, "h", "i")
    assert 'label="h->i@1"' in recurrent and "style=dashed" in recurrent and "constraint=false" in recurrent


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz not installed")
def test_graphviz_reads_both_dot_graphs(lstm):
    for g in (lstm, unroll(lstm, 3)):
        out = subprocess.run(["dot", "-Tsvg"], input=draw.graph_to_dot(g, "lstm"), capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "<svg" in out.stdout


def test_graphml_rereads_with_networkx(tmp_path, lstm):
    for g in (lstm, unroll(lstm, 4)):
        path = tmp_path / "g.graphml"
        draw.write(g, path, "graphml")
        back = nx.read_graphml(path)
        assert back.number_of_nodes() == g.number_of_nodes()
        assert back.number_of_edges() == g.number_of_edges()
    assert back.nodes["h@-5"]["kind"] == "initial"
    assert back.edges["h@-2", "h@3"]["delay"] == 5 and back.edges["h@-2", "h@3"]["params"] == "h->h@5"
    assert "gate" not in back.edges["x@0", "i@0"]  # None is left out, GraphML has no null


def test_pictures_are_png_and_svg_files(tmp_path, elman, lstm):
    draw.write(unroll(lstm, 3), tmp_path / "u.png", "png", True, "lstm T=3")
    draw.write(lstm, tmp_path / "f.svg", "svg", False, "lstm")
    draw.draw(unroll(elman, 3), tmp_path / "e.svg")  # format and kind of graph guessed
    png = (tmp_path / "u.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    for name in ("f.svg", "e.svg"):
        svg = (tmp_path / name).read_bytes()
        assert svg.startswith(b"<?xml") and b"<svg" in svg[:2000]


def test_large_graphs_are_drawn_without_labels(tmp_path, lstm, monkeypatch):
    monkeypatch.setattr(draw, "LARGE", 10)
    draw.draw(unroll(lstm, 8), tmp_path / "big.png", True, "big")
    assert (tmp_path / "big.png").read_bytes().startswith(PNG_MAGIC)


def test_unknown_format_raises_naming_the_formats(tmp_path, elman):
    with pytest.raises(ValueError, match="graphml"):
        draw.write(elman, tmp_path / "g.pdf", "pdf")
    with pytest.raises(ValueError):
        draw.draw(elman, tmp_path / "g.jpg", False)
    assert not (tmp_path / "g.pdf").exists()


def test_write_guesses_the_format_from_the_suffix(tmp_path, elman):
    draw.write(elman, tmp_path / "g.json")
    assert json.loads((tmp_path / "g.json").read_text())["multigraph"] is True


def test_rows_run_from_inputs_to_outputs(lstm):
    rows = draw.unit_rows(unroll(lstm, 3))
    assert rows[0] == "x" and rows[-1] == "y"
    for a, b in [("g", "c"), ("c", "ct"), ("ct", "h"), ("c", "o"), ("o", "h")]:
        assert rows.index(a) < rows.index(b)
    assert draw.unit_rows(lstm) == rows  # the folded graph gives the same order


def test_draws_a_compiled_program(tmp_path):
    import compiler

    p = compiler.compile_spec({
        "timeloom": 1, "name": "elman", "inputs": {"x": {"size": 3}},
        "units": {"h": {"size": 4, "activation": "tanh"}, "y": {"size": 3, "activation": "softmax"}},
        "connections": [{"from": "x", "to": "h"}, {"from": "h", "to": "h", "delay": 1},
                        {"from": "h", "to": "y"}],
        "outputs": {"y": {"loss": "cross_entropy", "at": "all"}}})
    g = p.unroll(3)
    draw.write(g, tmp_path / "e.png", "png", True, "elman")
    assert (tmp_path / "e.png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(_node_lines(draw.graph_to_dot(p.graph, "e"))) == ["h", "x", "y"]
    assert json.loads(json.dumps(draw.graph_to_json(g)))["nodes"][0]["id"] == "x@0"
