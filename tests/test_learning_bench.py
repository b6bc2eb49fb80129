"""benchmarks/learning.py helpers: the compact per-n curve and a target over k of N seeds."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def learning():
    if "learning_bench" not in sys.modules:
        spec = importlib.util.spec_from_file_location("learning_bench", ROOT / "benchmarks" / "learning.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["learning_bench"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["learning_bench"]


def test_compact_curve_keeps_exactly_the_solved_n_as_ranges():
    rng = __import__("numpy").random.default_rng(0)
    ok = (rng.random(300) > 0.3).astype(int)
    curve = [[n, int(v)] for n, v in zip(range(1, 301), ok)]
    out = learning().compact_curve({"solved_up_to_n": 3, "solved_by_n": curve})
    assert "solved_by_n" not in out and out["solved_up_to_n"] == 3
    solved = {n for lo, hi in out["solved_ranges"] for n in range(lo, hi + 1)}
    assert solved == {n for n, v in curve if v}
    assert all(b[0] > a[1] + 1 for a, b in zip(out["solved_ranges"], out["solved_ranges"][1:]))  # maximal runs
    assert learning().compact_curve({"mse": 1.0}) == {"mse": 1.0}


def row(values, need):
    return {"bench": "x", "spec": "specs/x.yaml", "task": "t", "metric": "m", "target": "t", "paper": "-",
            "values": values, "best": max(values), "median": 0, "baseline": 0, "met": sum(v >= 50 for v in values),
            "need": need, "tried": "what was tried", "epochs": [1], "budget_stopped": 0, "seconds": [1.0],
            "free_run_nrmse": [], "seeds": list(range(len(values)))}


def test_a_target_over_8_of_10_seeds_is_met_with_8_and_missed_with_7():
    table = learning().table
    eight = [60] * 8 + [10, 10]
    assert "8/10 (target: 8 of 10; met)" in table([row(eight, 8)]) and "missed" not in table([row(eight, 8)])
    assert "7/10; missed: what was tried" in table([row([60] * 7 + [10] * 3, 8)])
    assert "8/10; missed: what was tried" in table([row(eight, None)])  # default: every seed must meet it


def test_run_paths_are_stored_relative_to_the_repository_and_found_again():
    bench = learning()
    inside = ROOT / "runs" / "learning" / "bench-x"
    assert bench.stored_path(inside) == str(Path("runs", "learning", "bench-x"))
    assert bench.run_path(bench.stored_path(inside)) == inside
    assert bench.stored_path("/elsewhere/runs/bench-y") == "bench-y"  # outside: the folder's name only
    assert bench.stored_path("/elsewhere/runs/bench-y/checkpoints/c.npz") == str(Path("bench-y", "checkpoints", "c.npz"))


def test_the_committed_results_name_no_path_of_the_machine_they_were_run_on():
    import json
    results = json.loads((ROOT / "benchmarks" / "results" / "learning.json").read_text())
    found = []

    def walk(v):
        if isinstance(v, dict):
            for key, x in v.items():
                if key in ("rundir", "checkpoint") and isinstance(x, str) and Path(x).is_absolute():
                    found.append(x)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(results)
    assert not found, found[:3]
