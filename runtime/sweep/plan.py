"""What a sweep runs: the trials of a grid and/or random search over spec values, times seeds.

A trial is (overrides, seed): the `--set KEY=VALUE` items of one `timeloom run` of the spec.
Its id is a short hash of the base spec's content, the fixed overrides, the swept values and
the seed, so the same trial gets the same id (and directory) in every invocation: that is
what makes a sweep resumable.

    --grid training.lr=1e-3,1e-2          every value (grid search; the product over --grid keys)
    --sample training.lr=loguniform:1e-4,1e-1   random search: --samples N draws per grid point
             uniform:LO,HI  loguniform:LO,HI  randint:LO,HI (inclusive)  choice:V1,V2,...
    --seeds 10  (seeds 0..9)   --seeds 3,7,11  (those seeds)
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field

import numpy as np

from compiler.errors import TimeloomError
from runtime.train import overrides as _overrides

MAX_TRIALS = 100_000  # a sweep's trials are listed, stored and run one by one: far more is a typo

DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")


@dataclass(frozen=True)
class Trial:
    """One `timeloom run SPEC --set ... --seed SEED` of a sweep."""

    id: str
    params: dict  # swept key -> value (grid and sampled), in option order
    seed: int | None  # None: the spec's own training.seed (no override)
    items: tuple  # every --set item, in the order `timeloom run` applies them

    def command(self, spec: str) -> str:
        """The equivalent `timeloom run` command line."""
        parts = ["timeloom", "run", spec]
        for item in self.items:
            if self.seed is not None and item == f"training.seed={self.seed}":
                parts += ["--seed", str(self.seed)]
            else:
                parts += ["--set", _quote(item)]
        return " ".join(parts)

    def label(self) -> str:
        return " ".join(f"{k}={_show(v)}" for k, v in self.params.items()) or "(spec)"


@dataclass
class Plan:
    """The search: fixed overrides, grid, random distributions, seeds (what sweep.json stores)."""

    sets: list = field(default_factory=list)  # ["training.epochs=2", ...]
    grid: dict = field(default_factory=dict)  # key -> [values]
    sample: dict = field(default_factory=dict)  # key -> [dist, args...]
    samples: int = 0
    search_seed: int = 0
    seeds: list | None = None

    def to_json(self) -> dict:
        return {"sets": list(self.sets), "grid": self.grid, "sample": self.sample, "samples": self.samples,
                "search_seed": self.search_seed, "seeds": self.seeds}

    @classmethod
    def from_json(cls, d: dict) -> Plan:
        """The plan sweep.json stores, checked (a hand-edited or damaged file is a TimeloomError)."""
        def need(ok, what):
            if not ok:
                raise TimeloomError(f"sweep.json: the stored plan's {what}; the file is damaged: restore it, or "
                                    f"start the sweep again under a new --name")
        need(isinstance(d, dict), "plan is not a mapping")
        sets, grid, sample = d.get("sets") or [], d.get("grid") or {}, d.get("sample") or {}
        samples, search_seed, seeds = d.get("samples") or 0, d.get("search_seed") or 0, d.get("seeds")
        need(isinstance(sets, list) and all(isinstance(x, str) for x in sets), "sets are not a list of KEY=VALUE")
        need(isinstance(grid, dict) and all(isinstance(v, list) and v for v in grid.values()),
             "grid is not a mapping of keys to lists of values")
        need(isinstance(sample, dict) and all(isinstance(v, list) and v and isinstance(v[0], str)
                                              for v in sample.values()), "sample is not a mapping to [dist, args]")
        need(isinstance(samples, int) and not isinstance(samples, bool) and samples >= 0, "samples is not a count")
        need(isinstance(search_seed, int) and not isinstance(search_seed, bool), "search_seed is not an integer")
        need(seeds is None or (isinstance(seeds, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                                                and x >= 0 for x in seeds)
                               and len(set(seeds)) == len(seeds)), "seeds are not distinct integers >= 0")
        return cls(list(sets), dict(grid), dict(sample), samples, search_seed, seeds)

    def keys(self) -> list[str]:
        return list(self.grid) + [k for k in self.sample if k not in self.grid]


# -- option parsing ------------------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """Split at top-level commas: "1e-3,1e-2" -> 2 values; "[1, 2],[3]" -> 2 YAML lists."""
    out, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _key_value(opt: str, item: str) -> tuple[str, str]:
    key, eq, text = item.partition("=")
    if not eq or not key.strip() or not text.strip():
        raise TimeloomError(f"{opt} {item!r}: write KEY=VALUES, e.g. {opt} training.lr=1e-3,1e-2")
    return key.strip(), text.strip()


def _value(opt: str, key: str, text: str):
    if not text:
        raise TimeloomError(f"{opt} {key}: empty value in the list")
    _, value = _overrides.parse(f"{key}={text}")
    return value


def parse_grid(items: list[str]) -> dict:
    """["training.lr=1e-3,1e-2", ...] -> {"training.lr": [0.001, 0.01]} (values parsed as YAML)."""
    grid = {}
    for item in items:
        key, text = _key_value("--grid", item)
        values = [_value("--grid", key, v) for v in split_values(text)]
        if key in grid:
            raise TimeloomError(f"--grid {key} is given twice; list all its values in one --grid")
        grid[key] = values
    return grid


def parse_sample(items: list[str]) -> dict:
    """["training.lr=loguniform:1e-4,1e-1"] -> {"training.lr": ["loguniform", 0.0001, 0.1]}."""
    out = {}
    for item in items:
        key, text = _key_value("--sample", item)
        dist, colon, args = text.partition(":")
        dist = dist.strip()
        if not colon or dist not in DISTRIBUTIONS:
            raise TimeloomError(f"--sample {item!r}: write KEY=DIST:ARGS with DIST one of "
                                f"{', '.join(DISTRIBUTIONS)}, e.g. training.lr=loguniform:1e-4,1e-1")
        values = [_value("--sample", key, v) for v in split_values(args)]
        if dist == "choice":
            if not values:
                raise TimeloomError(f"--sample {item!r}: choice needs at least one value")
        else:
            if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                           for v in values) or not values[0] < values[1]:
                raise TimeloomError(f"--sample {item!r}: {dist} needs two numbers LO,HI with LO < HI")
            if dist == "loguniform" and values[0] <= 0:
                raise TimeloomError(f"--sample {item!r}: loguniform needs LO > 0")
            if dist == "randint" and not all(isinstance(v, int) for v in values):
                raise TimeloomError(f"--sample {item!r}: randint needs two integers")
        out[key] = [dist, *values]
    return out


def parse_seeds(text: str | None) -> list[int] | None:
    """"10" -> [0..9]; "3,7" -> [3, 7]; None -> None (the spec's own seed)."""
    if text is None:
        return None
    try:
        if "," in text:
            seeds = [int(s) for s in split_values(text)]
        else:
            n = int(text)
            if n < 1:
                raise ValueError
            if n > MAX_TRIALS:
                raise TimeloomError(f"--seeds {text}: more than {MAX_TRIALS:,} seeds; a sweep runs at most "
                                    f"{MAX_TRIALS:,} trials")
            seeds = list(range(n))
    except ValueError:
        raise TimeloomError(f"--seeds {text!r}: give a count (10 = seeds 0..9) or a list (3,7,11)") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise TimeloomError(f"--seeds {text!r}: seeds must be distinct and >= 0")
    return seeds


# -- the trials ----------------------------------------------------------------------------------
def spec_digest(spec: dict) -> str:
    """sha256 of the canonical JSON of the whole spec dict (model, data and training)."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def trial_id(digest: str, sets: list, params: dict, seed) -> str:
    canon = {"spec": digest, "set": [_canon_item(i) for i in sets],
             "params": {k: params[k] for k in sorted(params)}, "seed": seed}
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def configurations(plan: Plan) -> list[dict]:
    """Every point of the search: the grid's product, times `samples` random draws if any."""
    grid_points = [dict(zip(plan.grid, combo)) for combo in itertools.product(*plan.grid.values())] \
        if plan.grid else [{}]
    if not plan.sample:
        return grid_points
    n = max(1, plan.samples)
    rng = np.random.default_rng(plan.search_seed)
    out = []
    for point in grid_points:
        for _ in range(n):
            drawn = {k: draw(spec, rng) for k, spec in plan.sample.items()}
            out.append({**point, **{k: v for k, v in drawn.items() if k not in point}})
    return out


def draw(spec: list, rng):
    dist, *args = spec
    if dist == "choice":
        return args[int(rng.integers(len(args)))]
    lo, hi = args
    if dist == "randint":
        return int(rng.integers(lo, hi + 1))
    if dist == "uniform":
        return _round(float(rng.uniform(lo, hi)))
    return _round(float(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def count(plan: Plan) -> int:
    """How many trials the plan makes (at most: repeated draws are dropped), without making them."""
    n = math.prod(len(v) for v in plan.grid.values()) if plan.grid else 1
    return n * (max(1, plan.samples) if plan.sample else 1) * (len(plan.seeds) if plan.seeds is not None else 1)


def trials(plan: Plan, digest: str) -> list[Trial]:
    """The trials of the plan, configurations-major (all seeds of a configuration together)."""
    planned = count(plan)
    if planned > MAX_TRIALS:
        raise TimeloomError(f"the sweep plans {planned:,} trials (grid x samples x seeds), more than "
                            f"{MAX_TRIALS:,}; plan fewer values, --samples or --seeds")
    seeds = plan.seeds if plan.seeds is not None else [None]
    out, seen = [], set()
    for params in configurations(plan):
        for seed in seeds:
            items = list(plan.sets) + [f"{k}={_dump(v)}" for k, v in params.items()]
            if seed is not None:
                items.append(f"training.seed={seed}")
            tid = trial_id(digest, plan.sets, params, seed)
            if tid in seen:  # e.g. a choice: drawn twice
                continue
            seen.add(tid)
            out.append(Trial(tid, dict(params), seed, tuple(items)))
    return out


def _round(x: float) -> float:
    """4 significant digits: readable overrides, the same id for the same draw."""
    return float(f"{x:.4g}")


def _dump(v) -> str:
    """A value as the YAML text of a --set item (parses back to the same value)."""
    if isinstance(v, str):
        try:
            if _overrides.parse(f"k={v}")[1] == v:
                return v
        except TimeloomError:
            pass
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v, separators=(", ", ": ")) if isinstance(v, (list, dict)) else \
        ("true" if v is True else "false" if v is False else "null" if v is None else str(v))


def _canon_item(item: str) -> list:
    path, value = _overrides.parse(item)
    return [".".join(str(p) for p in path), value]


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _quote(item: str) -> str:
    import shlex
    return shlex.quote(item)
