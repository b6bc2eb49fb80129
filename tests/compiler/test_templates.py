"""Blocks and templates lower to primitives: a built-in block and the same cell written by hand
from units, connections and gates (docs/ARCHITECTURE.md, "Blocks") compile to the same folded
graph and the same parameters. Hand-written units are named "p.i", "p.h", ... so the names
match the block's exactly."""
from __future__ import annotations

import textwrap
from pathlib import Path

import networkx as nx
import pytest

from compiler import SpecError, compile_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"
EDGE_ATTRS = ("kind", "delay", "weight", "gate", "gate_complement", "gate_at", "param")


def compile_text(text: str):
    return compile_spec(textwrap.dedent(text), file="t.yaml")


def edge_list(program):
    return sorted((a, b, k) + tuple(d.get(x) for x in EDGE_ATTRS)
                  for a, b, k, d in program.graph.edges(keys=True, data=True))


def node_list(program):
    return sorted((n, tuple(sorted(d.items()))) for n, d in program.graph.nodes(data=True))


def param_table(program):
    return {n: (p.shape, p.init, p.trainable, p.kind) for n, p in program.params.items()}


def _edge_attrs(edges: dict) -> list:
    """The parallel edges between two nodes of a MultiDiGraph, as a sorted list of attributes."""
    return sorted(tuple(str(d.get(x)) for x in ("kind", "delay", "weight", "gate")) for d in edges.values())


def _edge_match(e1, e2):
    return _edge_attrs(e1) == _edge_attrs(e2)


def assert_same_program(block, hand):
    assert nx.is_isomorphic(block.graph, hand.graph, node_match=lambda a, b: a == b, edge_match=_edge_match)
    assert node_list(block) == node_list(hand)
    assert edge_list(block) == edge_list(hand)
    assert param_table(block) == param_table(hand)
    assert [(c.units, c.direction) for c in block.components] == [(c.units, c.direction) for c in hand.components]


# ------------------------------------------------------------------------------------- LSTM

LSTM_BLOCK = """\
timeloom: 1
inputs: {x: {size: 3}}
blocks:
  p: {type: lstm, size: 4 OPTIONS}
units:
  y: {size: 2}
connections:
  - {from: x, to: p}
  - {from: p, to: y}
outputs: {y: {loss: mse}}
"""


def lstm_block(options: str = ""):
    return compile_text(LSTM_BLOCK.replace(" OPTIONS", ", " + options if options else ""))


HAND_LSTM = """\
timeloom: 1
inputs: {x: {size: 3}}
units:
  p.i: {size: 4, activation: sigmoid}
  p.f: {size: 4, activation: sigmoid}
  p.o: {size: 4, activation: sigmoid}
  p.g: {size: 4, activation: tanh}
  p.c: {size: 4, activation: identity, bias: false}
  p.ct: {size: 4, activation: tanh, bias: false}
  p.h: {size: 4, activation: identity, bias: false}
  y: {size: 2}
connections:
  - {from: x, to: [p.i, p.f, p.o, p.g]}
  - {from: p.h, to: [p.i, p.f, p.o, p.g], delay: 1}
  - {from: p.c, to: p.c, delay: 1, weight: identity, gate: p.f}      # keep:  f * c_{t-1}
  - {from: p.g, to: p.c, weight: identity, gate: p.i}                # write: i * g
  - {from: p.c, to: p.ct, weight: identity}                          # ct = tanh(c)
  - {from: p.ct, to: p.h, weight: identity, gate: p.o}               # h = o * ct
  - {from: p.h, to: y}
outputs: {y: {loss: mse}}
"""


def test_lstm_block_equals_lstm_written_by_hand():
    block, hand = lstm_block(), compile_text(HAND_LSTM)
    assert_same_program(block, hand)
    assert set(block.units) == {"p.i", "p.f", "p.o", "p.g", "p.c", "p.ct", "p.h", "y"}
    assert block.params["p.h->p.g@1"].shape == (4, 4)
    assert block.params["x->p.i"].shape == (4, 3)
    assert "p.c->p.c@1" not in block.params  # identity: no parameter


def test_lstm_with_peepholes_equals_hand_written():
    hand = HAND_LSTM.replace("  - {from: p.h, to: y}", """\
  - {from: p.c, to: [p.i, p.f], delay: 1, weight: diagonal}          # peepholes read c_{t-1}
  - {from: p.c, to: p.o, weight: diagonal}                           # ... and o reads c_t
  - {from: p.h, to: y}""")
    block = lstm_block("peepholes: true")
    assert_same_program(block, compile_text(hand))
    assert block.params["p.c->p.o"].shape == (4,)
    assert block.params["p.c->p.i@1"].init == {"kind": "uniform", "low": -0.1, "high": 0.1}


def test_lstm_coupled_gates_equal_hand_written():
    hand = (HAND_LSTM.replace("  p.i: {size: 4, activation: sigmoid}\n", "")
            .replace("to: [p.i, p.f, p.o, p.g]", "to: [p.f, p.o, p.g]")
            .replace("gate: p.i}", "gate: {unit: p.f, complement: true}}"))
    block = lstm_block("coupled: true")
    assert_same_program(block, compile_text(hand))
    assert "p.i" not in block.units


def test_lstm_without_forget_gate_equals_hand_written():
    hand = (HAND_LSTM.replace("  p.f: {size: 4, activation: sigmoid}\n", "")
            .replace("to: [p.i, p.f, p.o, p.g]", "to: [p.i, p.o, p.g]")
            .replace("weight: identity, gate: p.f}", "weight: identity}"))
    block = lstm_block("forget_gate: false")
    assert_same_program(block, compile_text(hand))
    edge = block.graph.edges["p.c", "p.c", "p.c->p.c@1"]
    assert edge["gate"] is None and edge["delay"] == 1


def test_lstm_gers2000_biases_and_cell_input_squash():
    hand = (HAND_LSTM.replace("p.i: {size: 4, activation: sigmoid}", "p.i: {size: 4, activation: sigmoid, bias: {value: -1}}")
            .replace("p.f: {size: 4, activation: sigmoid}", "p.f: {size: 4, activation: sigmoid, bias: {value: 1}}")
            .replace("p.g: {size: 4, activation: tanh}", "p.g: {size: 4, activation: {scaled_sigmoid: [-2, 2]}}"))
    block = lstm_block("gers2000: true")
    assert_same_program(block, compile_text(hand))
    assert block.params["p.i.bias"].init == {"kind": "constant", "value": -1.0}
    assert block.params["p.f.bias"].init == {"kind": "constant", "value": 1.0}
    assert block.params["p.o.bias"].init == {"kind": "zeros"}
    g = block.units["p.g"].activation
    assert (g.name, g.lo, g.hi) == ("scaled_sigmoid", -2.0, 2.0)
    assert block.graph.nodes["p.g"]["activation"] == "scaled_sigmoid[-2,2]"


def test_lstm_forget_bias_and_recurrent_init_options():
    block = lstm_block("forget_bias: 2.0, init: orthogonal, initial: learned")
    assert block.params["p.f.bias"].init == {"kind": "constant", "value": 2.0}
    for gate in "ifog":
        assert block.params[f"p.h->p.{gate}@1"].init == {"kind": "orthogonal"}
    assert block.params["x->p.i"].init == {"kind": "glorot"}  # input weights keep their default
    assert block.params["p.c.h0"].shape == block.params["p.h.h0"].shape == (4,)


def test_lstm_gate_bias_start_values_per_cell():
    import numpy as np

    from runtime import Network
    block = lstm_block("gers2000: true, input_bias: [-1.0, -2.0, -3.0, -4.0], output_bias: -2.0, "
                       "forget_bias: [2.0, 2.0, 4.0, 4.0]")
    assert block.params["p.i.bias"].init == {"kind": "constant", "value": [-1.0, -2.0, -3.0, -4.0]}
    assert block.params["p.o.bias"].init == {"kind": "constant", "value": -2.0}
    assert block.params["p.f.bias"].init == {"kind": "constant", "value": [2.0, 2.0, 4.0, 4.0]}
    net = Network(block, seed=0)
    assert np.allclose(net.params["p.i.bias"], [-1, -2, -3, -4])
    assert np.allclose(net.params["p.o.bias"], [-2, -2, -2, -2])
    with pytest.raises(Exception, match="4 cells"):
        lstm_block("input_bias: [-1.0, -2.0]")
    with pytest.raises(Exception, match="input gate"):
        lstm_block("coupled: true, input_bias: -1.0")
    block = lstm_block("forget_gate: false, gers2000: true, input_bias: -2.0")  # the 1997 cell
    assert block.params["p.i.bias"].init == {"kind": "constant", "value": -2.0}  # overrides gers2000's -1
    assert "p.f.bias" not in block.params


def test_the_three_lstm_specs_are_the_documented_variants():
    p1997 = compile_spec(SPECS / "lstm_1997.yaml")
    assert not any(u.endswith(".f") for u in p1997.units)
    coupled = compile_spec(SPECS / "lstm_coupled.yaml")
    assert not any(u.endswith(".i") for u in coupled.units)
    gers = compile_spec(SPECS / "lstm_gers2000.yaml")
    assert any(str(u.activation) == "scaled_sigmoid[-2,2]" for u in gers.units.values())


# -------------------------------------------------------------------------------------- GRU

GRU_BLOCK = LSTM_BLOCK.replace("type: lstm", "type: gru")
HAND_GRU = """\
timeloom: 1
inputs: {x: {size: 3}}
units:
  p.r: {size: 4, activation: sigmoid}
  p.z: {size: 4, activation: sigmoid}
  p.n: {size: 4, activation: tanh}
  p.h: {size: 4, activation: identity, bias: false}
  y: {size: 2}
connections:
  - {from: x, to: [p.r, p.z, p.n]}
  - {from: p.h, to: [p.r, p.z], delay: 1}
  - RESET
  - {from: p.n, to: p.h, weight: identity, gate: {unit: p.z, complement: true}}   # (1 - z) * n
  - {from: p.h, to: p.h, delay: 1, weight: identity, gate: p.z}                   # z * h_{t-1}
  - {from: p.h, to: y}
outputs: {y: {loss: mse}}
"""


@pytest.mark.parametrize("linear_before_reset, reset", [
    (True, "{from: p.h, to: p.n, delay: 1, bias: true, gate: p.r}"),       # r * (U h + b): torch's form
    (False, "{from: p.h, to: p.n, delay: 1, gate: {unit: p.r, at: source}}"),  # U (r * h): the paper's
])
def test_gru_block_equals_gru_written_by_hand(linear_before_reset, reset):
    lbr = "true" if linear_before_reset else "false"
    block = compile_text(GRU_BLOCK.replace(" OPTIONS", f", linear_before_reset: {lbr}"))
    hand = compile_text(HAND_GRU.replace("RESET", reset))
    assert_same_program(block, hand)
    edge = block.graph.edges["p.h", "p.n", "p.h->p.n@1"]
    assert edge["gate"] == "p.r" and edge["gate_at"] == ("target" if linear_before_reset else "source")
    assert ("p.h->p.n@1.bias" in block.params) == linear_before_reset


# ------------------------------------------------------------------------------ conv, bidir

def test_conv_block_expands_to_taps_at_delays_0_d_2d():
    program = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS", "type: conv, size: 4, kernel: 3, dilation: 2"))
    taps = sorted(d["delay"] for a, b, d in program.graph.edges(data=True) if (a, b) == ("x", "p.h"))
    assert taps == [0, 2, 4]
    assert {"x->p.h", "x->p.h@2", "x->p.h@4"} <= set(program.params)
    assert program.params["x->p.h@4"].shape == (4, 3)
    assert program.units["p.h"].activation.name == "relu"
    assert not any(c.recurrent for c in program.components)  # a convolution has no cycle


def test_conv_equals_three_hand_written_delayed_connections():
    block = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS", "type: conv, size: 4, kernel: 3, dilation: 2"))
    hand = compile_text("""\
        timeloom: 1
        inputs: {x: {size: 3}}
        units:
          p.h: {size: 4, activation: relu}
          y: {size: 2}
        connections:
          - {from: x, to: p.h}
          - {from: x, to: p.h, delay: 2}
          - {from: x, to: p.h, delay: 4}
          - {from: p.h, to: y}
        outputs: {y: {loss: mse}}
        """)
    assert_same_program(block, hand)


@pytest.mark.parametrize("n_in, weight", [(4, "identity"), (3, "full")])
def test_conv_residual_skip_is_identity_when_sizes_match(n_in, weight):
    program = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS", "type: conv, size: 4, residual: true")
                           .replace("{x: {size: 3}}", f"{{x: {{size: {n_in}}}}}"))
    skip = program.graph.edges["x", "p.out", "x->p.out"]
    assert skip["weight"] == weight and skip["delay"] == 0
    assert ("x->p.out" in program.params) == (weight == "full")
    assert "p.out->y" in program.params  # the block's output port is p.out


def test_bidirectional_flips_the_delays_of_the_backward_copy():
    program = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS",
                                              "type: bidirectional, cell: {type: lstm, size: 4}"))
    delays = {}
    for a, b, d in program.graph.edges(data=True):
        if d["kind"] == "connection" and a.startswith("p.") and b.startswith("p."):
            delays.setdefault(a.split(".")[1], set()).add(d["delay"])
    assert delays == {"fwd": {0, 1}, "bwd": {0, -1}}
    assert "p.bwd.h->p.bwd.i@-1" in program.params and "p.fwd.h->p.fwd.i@1" in program.params
    assert {"x->p.fwd.i", "x->p.bwd.i", "p.fwd.h->y", "p.bwd.h->y"} <= set(program.params)
    directions = sorted(c.direction for c in program.components if c.recurrent)
    assert directions == [-1, 1]


def test_bidirectional_equals_forward_and_backward_cells_by_hand():
    block = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS",
                                            "type: bidirectional, cell: {type: rnn, size: 4}"))
    hand = compile_text("""\
        timeloom: 1
        inputs: {x: {size: 3}}
        units:
          p.fwd.h: {size: 4, activation: tanh}
          p.bwd.h: {size: 4, activation: tanh}
          y: {size: 2}
        connections:
          - {from: p.fwd.h, to: p.fwd.h, delay: 1}
          - {from: p.bwd.h, to: p.bwd.h, delay: -1}
          - {from: x, to: [p.fwd.h, p.bwd.h]}
          - {from: [p.fwd.h, p.bwd.h], to: y}
        outputs: {y: {loss: mse}}
        """)
    assert_same_program(block, hand)


# ------------------------------------------------------------------------- stack, leaky, esn

def test_stack_names_layers_l0_to_ln_and_chains_them():
    program = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS",
                                              "type: stack, n: 3, layer: {type: rnn, size: 4}"))
    assert set(program.units) == {"p.l0.h", "p.l1.h", "p.l2.h", "y"}
    assert {"x->p.l0.h", "p.l0.h->p.l1.h", "p.l1.h->p.l2.h", "p.l2.h->y"} <= set(program.params)
    assert {f"p.l{j}.h->p.l{j}.h@1" for j in range(3)} <= set(program.params)
    assert not any(k.startswith(("x->p.l1", "x->p.l2")) for k in program.params)
    assert len([c for c in program.components if c.recurrent]) == 3


def test_stack_of_lstms_names_nested_units():
    program = compile_spec(SPECS / "deep_lstm.yaml")
    layered = sorted({u.rsplit(".", 1)[0] for u in program.units if u.count(".") == 2})
    assert layered and all(".l" in name for name in layered)


def test_leaky_block_has_a_leak_and_an_alpha_parameter():
    program = compile_text(LSTM_BLOCK.replace("type: lstm, size: 4 OPTIONS",
                                              "type: leaky, size: 4, alpha: [0.1, 0.5, 0.9, 0.99], initial: learned"))
    assert program.params["p.h.alpha"].init == {"kind": "constant", "value": [0.1, 0.5, 0.9, 0.99]}
    assert program.params["p.h.alpha"].trainable is False
    assert program.graph.edges["p.h", "p.h", "p.h:leak"]["delay"] == 1
    assert "p.h.h0" in program.params


def test_reservoir_weights_are_fixed_and_sparse():
    program = compile_spec(SPECS / "esn.yaml")
    rec = [p for n, p in program.params.items() if n.endswith("@1")]
    assert rec and all(not p.trainable and p.init["kind"] == "sparse" for p in rec)
    assert any(p.trainable for p in program.params.values())  # the readout


# --------------------------------------------------------------------------- user templates

DCM_BY_HAND = """\
timeloom: 1
inputs: {x: {size: 7}}
blocks:
  mem.cell: {type: lstm, size: 16, peepholes: true}
units:
  y: {size: 7, activation: sigmoid}
connections:
  - {from: [mem.cell.i, mem.cell.f, mem.cell.o], to: [mem.cell.i, mem.cell.f, mem.cell.o], delay: 1}
  - {from: x, to: mem.cell}
  - {from: mem.cell, to: y}
outputs: {y: {loss: bce}}
"""


def test_dcm_user_template_adds_gate_to_gate_connections_with_delay_1():
    program = compile_spec(SPECS / "dcm.yaml")
    gates = ["mem.cell.i", "mem.cell.f", "mem.cell.o"]
    for a in gates:
        for b in gates:
            edge = program.graph.edges[a, b, f"{a}->{b}@1"]
            assert edge["delay"] == 1 and edge["weight"] == "full"
            assert program.params[f"{a}->{b}@1"].shape == (16, 16)
    assert_same_program(program, compile_text(DCM_BY_HAND))


def test_template_defaults_and_instance_parameters_and_string_substitution():
    program = compile_text("""\
        timeloom: 1
        templates:
          pair:
            params: {size: 4, side: left, d: 1}
            units:
              "${side}": {size: $size, activation: tanh}
              out: {size: $size}
            connections:
              - {from: "${side}", to: "${side}", delay: $d}
              - {from: "${side}", to: out}
            inputs: ["${side}"]
            outputs: [out]
        inputs: {x: {size: 3}}
        blocks:
          a: {type: pair}
          b: {type: pair, size: 6, side: right, d: 3}
        connections:
          - {from: x, to: [a, b]}
          - {from: [a, b], to: y}
        units: {y: {size: 2}}
        outputs: {y: {loss: mse}}
        """)
    assert program.units["a.left"].size == 4 and program.units["b.right"].size == 6
    assert {"a.left->a.left@1", "b.right->b.right@3", "x->a.left", "x->b.right", "a.out->y", "b.out->y"} \
        <= set(program.params)


def test_template_used_twice_reports_its_mistake_once():
    with pytest.raises(SpecError) as info:
        compile_text("""\
            timeloom: 1
            templates:
              cell:
                units: {h: {size: 4}}
                connections: [{from: h, to: hh}]
                inputs: [h]
                outputs: [h]
            inputs: {x: {size: 3}}
            blocks: {a: {type: cell}, b: {type: cell}}
            connections: [{from: x, to: [a, b]}]
            outputs: {a.h: {loss: mse}}
            """)
    messages = [e.message for e in info.value.errors]
    assert len([m for m in messages if "unknown target 'hh'" in m]) == 2  # one per instance, named
    assert any("block 'a'" in m for m in messages) and any("block 'b'" in m for m in messages)


# -------------------------------------------------------------------------- parameter names

def test_duplicate_connections_get_numbered_parameter_names():
    program = compile_text("""\
        timeloom: 1
        inputs: {x: {size: 3}}
        units:
          h: {size: 4, activation: tanh}
        connections:
          - {from: x, to: h}
          - {from: x, to: h}
          - {from: h, to: h, delay: 1}
          - {from: h, to: h, delay: 1, init: orthogonal}
          - {from: h, to: h, delay: 1, weight: diagonal}
          - {from: x, to: h, delay: 2}
        outputs: {h: {loss: mse}}
        """)
    names = [c.name for c in program.connections]
    assert names == ["x->h", "x->h#2", "h->h@1", "h->h@1#2", "h->h@1#3", "x->h@2"]
    assert program.params["h->h@1#2"].init == {"kind": "orthogonal"}
    assert program.params["h->h@1#3"].shape == (4,)
    assert len(program.graph.get_edge_data("x", "h")) == 3


def test_parameter_names_follow_docs_architecture():
    """The names documented in docs/ARCHITECTURE.md, "Parameter names"."""
    program = compile_spec(SPECS / "gru.yaml")
    prefix = next(u for u in program.units if u.endswith(".n")).rsplit(".", 1)[0]
    for name in (f"{prefix}.h->{prefix}.n@1", f"{prefix}.h->{prefix}.n@1.bias", f"{prefix}.r.bias"):
        assert name in program.params
    bi = compile_spec(SPECS / "bidirectional_lstm.yaml")
    assert "bi.bwd.h->bi.bwd.i@-1" in bi.params
