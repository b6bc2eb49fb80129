"""The memory horizon (compiler/receptive.py): lags counted by hand for the TCN's dilations,
delayed_rnn, the bidirectional LSTM and small hand-made specs, and, for every example spec and
random graphs, the lags read off the unrolled graph (networkx ancestors) as an independent oracle."""
from __future__ import annotations

import copy

import networkx as nx
import pytest
from conftest import SPECS
from hypothesis import HealthCheck, given, settings

from compiler import compile_spec
from compiler.receptive import Tail
from support import random_specs

SPEC_DIR = SPECS[0].parent


def spec(name):
    return compile_spec(SPEC_DIR / f"{name}.yaml")


def net(connections, units=None, inputs=None, outputs=("y",)):
    """A small spec: input x, unit h (tanh) and output y (identity) unless given."""
    units = units or {"h": {"size": 2, "activation": "tanh"}}
    units = {**units, "y": {"size": 1, "activation": "identity"}}
    conns = [dict(zip(("from", "to", "delay"), c)) for c in connections]
    return compile_spec({"timeloom": 1, "name": "hand", "inputs": inputs or {"x": {"size": 1}}, "units": units,
                         "connections": conns, "outputs": {o: {"loss": "mse"} for o in outputs}})


def unrolled_lags(program, x, y, T):
    """{t - s : (x, s) reaches (y, t)} over the unrolled graph of T steps, for every t."""
    g = program.unroll(T)
    out = set()
    for t in range(T):
        out |= {t - n[1] for n in nx.ancestors(g, (y, t)) if n[0] == x and g.nodes[n]["kind"] == "input"}
    return out


# ------------------------------------------------------------------------------ hand-computed
def test_tcn_receptive_field_is_the_8_steps_of_its_header():
    # kernel 2, dilations 1, 2, 4 (each block residual): lags {0,1} + {0,2} + {0,4} = 0..7
    r = spec("tcn").receptive_field()["y", "x"]
    assert r.finite and r.lags == tuple(range(8))
    assert (r.min_lag, r.max_lag, r.size, r.lookahead) == (0, 7, 8, 0)
    assert r.past is None and r.ahead is None
    assert "lags 0..7 (receptive field 8 steps)" in r.text()


def test_tcn_without_the_residual_paths_keeps_only_the_full_dilation_sums():
    # without residual connections every path goes through all three convolutions:
    # {0,1} + {0,2} + {0,4} is still 0..7; with dilations 1, 1, 4 it is {0,1,2} + {0,4} = 0..2, 4..6
    import yaml

    text = yaml.safe_load((SPEC_DIR / "tcn.yaml").read_text())
    text["blocks"]["c2"]["dilation"] = 1
    r = compile_spec(text).receptive_field()["y", "x"]
    assert r.lags == (0, 1, 2, 4, 5, 6)
    assert r.size == 7 and "6 lags used" in r.text()


def test_delayed_rnn_every_lag_from_0():
    # h_t reads h_{t-1}, h_{t-5}, h_{t-10}: every k >= 0 is a sum of 1s
    r = spec("delayed_rnn").receptive_field()["y", "x"]
    assert not r.finite and r.min_lag == 0 and r.max_lag is None and r.lookahead == 0
    assert r.past == Tail(0, 1, (0,)) and r.ahead is None and r.settled
    assert r.lags == tuple(range(0, r.window + 1))
    assert "unbounded past: every lag >= 0" in r.text()


def test_bidirectional_reaches_every_lag_both_ways():
    r = spec("bidirectional_lstm").receptive_field()["y", "x"]
    assert r.min_lag is None and r.max_lag is None and r.lookahead is None
    assert r.past == Tail(0, 1, (0,)) and r.ahead == Tail(0, 1, (0,))
    assert r.lags == tuple(range(-r.window, r.window + 1))
    assert "unbounded look-ahead" in r.text()


def test_backward_half_alone_is_look_ahead_only():
    # the bidirectional spec with the output reading the backward LSTM only
    import yaml

    text = yaml.safe_load((SPEC_DIR / "bidirectional_lstm.yaml").read_text())
    text["connections"][1] = {"from": "bi.bwd.h", "to": "y"}
    r = compile_spec(text).receptive_field()["y", "x"]
    assert r.max_lag == 0 and r.min_lag is None and r.past is None and r.ahead == Tail(0, 1, (0,))
    assert r.lags == tuple(range(-r.window, 1))


def test_two_self_delays_2_and_3():
    # x->h delay 1, h->h delays 2 and 3, h->y: 1 + (sums of 2s and 3s) = 1, 3, 4, 5, ...;
    # plus x->y delay -2 directly: a look-ahead of 2 steps
    p = net([("x", "h", 1), ("h", "h", 2), ("h", "h", 3), ("h", "y", 0), ("x", "y", -2)])
    r = p.receptive_field()["y", "x"]
    assert r.min_lag == -2 and r.max_lag is None and r.lookahead == 2
    assert r.lags[:5] == (-2, 1, 3, 4, 5) and r.past == Tail(3, 1, (0,))
    assert r.text() == "y <- x: unbounded past: lags -2, 1, then every lag >= 3; look-ahead 2 steps"


def test_even_delays_give_every_second_lag():
    p = net([("x", "h", 0), ("h", "h", 2), ("h", "h", 4), ("h", "y", 0)])
    r = p.receptive_field()["y", "x"]
    assert r.past == Tail(0, 2, (0,)) and set(r.lags) == set(range(0, r.window + 1, 2))
    assert "every 2nd lag >= 0 (0, 2, 4, ...)" in r.text()


def test_two_routes_with_periods_2_and_3_repeat_every_6():
    # y reads a (self-delay 2) and b (self-delay 3): multiples of 2 or 3, i.e. 0, 2, 3, 4 mod 6
    units = {"a": {"size": 1, "activation": "tanh"}, "b": {"size": 1, "activation": "tanh"}}
    p = net([("x", "a", 0), ("x", "b", 0), ("a", "a", 2), ("b", "b", 3), ("a", "y", 0), ("b", "y", 0)], units)
    r = p.receptive_field()["y", "x"]
    assert r.past == Tail(0, 6, (0, 2, 3, 4))
    assert set(r.lags) == {k for k in range(r.window + 1) if k % 2 == 0 or k % 3 == 0}
    assert "that are 0, 2, 3, 4 mod 6" in r.text()


def test_finite_two_delays_and_an_unreached_pair():
    inputs = {"x": {"size": 1}, "z": {"size": 1}}
    units = {"h": {"size": 2, "activation": "tanh"}, "w": {"size": 1, "activation": "tanh"}}
    p = compile_spec({"timeloom": 1, "name": "hand", "inputs": inputs,
                      "units": {**units, "y": {"size": 1, "activation": "identity"}},
                      "connections": [{"from": "x", "to": "h", "delay": 1}, {"from": "x", "to": "h", "delay": 3},
                                      {"from": "h", "to": "y"}, {"from": "z", "to": "w"}],
                      "outputs": {"y": {"loss": "mse"}, "w": {"loss": "mse"}}})
    rf = p.receptive_field()
    r = rf["y", "x"]
    assert r.lags == (1, 3) and (r.min_lag, r.max_lag, r.size) == (1, 3, 3)
    assert not rf["y", "z"].reachable and rf["y", "z"].text() == "y <- z: not reachable"
    assert rf["w", "z"].lags == (0,) and rf["w", "z"].size == 1
    assert [(r.output, r.input) for r in rf.reaches] == [("y", "x"), ("y", "z"), ("w", "x"), ("w", "z")]
    with pytest.raises(KeyError):
        rf["h", "x"]


def test_leak_is_a_self_loop_of_delay_1():
    p = net([("x", "h", 2), ("h", "y", 0)], {"h": {"size": 2, "activation": "tanh", "leak": {"alpha": 0.5}}})
    r = p.receptive_field()["y", "x"]
    assert r.min_lag == 2 and r.past == Tail(2, 1, (0,)) and r.lags == tuple(range(2, r.window + 1))


def test_text_lists_every_output_and_input():
    text = spec("tcn").receptive_field().text(indent="  ")
    assert text.splitlines()[0].startswith("  memory horizon")
    assert text.splitlines()[1] == "    y <- x: lags 0..7 (receptive field 8 steps)"


# ------------------------------------------------------------------------------ the unrolled graph as oracle
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_example_specs_agree_with_the_unrolled_graph(path):
    from support import shrink
    import yaml

    p = compile_spec(shrink(yaml.safe_load(path.read_text()), 2))
    T = 12
    for r in p.receptive_field().reaches:
        assert r.settled
        assert set(r.lags) & set(range(-T + 1, T)) == unrolled_lags(p, r.input, r.output, T), (r.output, r.input)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs(backward=False))
def test_random_causal_graphs_agree_with_the_unrolled_graph(spec):
    p = compile_spec(copy.deepcopy(spec))
    T = 9
    for r in p.receptive_field().reaches:
        assert set(r.lags) & set(range(-T + 1, T)) == unrolled_lags(p, r.input, r.output, T)
        assert r.settled
        if r.finite:
            assert set(r.lags) == unrolled_lags(p, r.input, r.output, r.max_lag + 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=random_specs())
def test_random_graphs_with_backward_parts_contain_the_unrolled_lags(spec):
    # walks that leave [0, T) on the way are not in the unrolled graph, so only one inclusion holds
    p = compile_spec(copy.deepcopy(spec))
    T = 8
    for r in p.receptive_field().reaches:
        seen = unrolled_lags(p, r.input, r.output, T)
        assert seen <= set(r.lags)
        if r.min_lag is not None and seen:
            assert r.min_lag <= min(seen)
        if r.max_lag is not None and seen:
            assert max(seen) <= r.max_lag


# ------------------------------------------------------------------------------ where it is shown
def test_compile_prints_the_memory_horizon():
    from typer.testing import CliRunner

    import cli

    result = CliRunner().invoke(cli.app, ["compile", str(SPEC_DIR / "tcn.yaml")])
    assert result.exit_code == 0, result.output
    assert "    y <- x: lags 0..7 (receptive field 8 steps)" in result.output.splitlines()
    result = CliRunner().invoke(cli.app, ["compile", str(SPEC_DIR / "delayed_rnn.yaml")])
    assert "    y <- x: unbounded past: every lag >= 0" in result.output.splitlines()


def test_report_section_tabulates_every_pair():
    from types import SimpleNamespace

    from runtime.diagnostics.report import SECTIONS, s_receptive

    assert "receptive" in SECTIONS
    html = s_receptive(SimpleNamespace(program=spec("bidirectional_lstm")))
    assert "<td>y</td><td>x</td>" in html.replace(' class=""', "")
    assert html.count("unbounded") >= 2 and "look-ahead" in html
