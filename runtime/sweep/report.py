"""The results of a sweep: the per-trial table (results.csv), the aggregate in the form of the
papers (aggregate.json and the printed summary) and metric.png.

Aggregate, per configuration (the swept values; its trials differ only in the seed) and over
all trials:

    trials      trials of the configuration; failed: ended with an error after the retries
                (a NaN stop counts here too), stopped: cut short by the ASHA scheduler
    success     solved / finished trials (finished = not failed), the success criterion at
                some epoch's evaluation (success.py)
    steps       the median over the solved trials of the optimizer steps to the first solving
                epoch (also x batch_size: "training sequences")
    metric      the task metric of the final evaluation: median [min, max] over the finished
                trials, and the best (min or max by the task's direction) with its trial
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from . import success as _success
from .plan import Trial, _show


def trial_rows(store, trials: list[Trial], criterion) -> list[dict]:
    """One row per trial of the plan (in plan order), solved / steps to solve by `criterion`."""
    table = store.table()
    out = []
    for t in trials:
        row = dict(table.get(t.id) or {"status": "pending"})
        rec = {**row, "history": store.history(t.id) if row.get("status") != "pending" else [],
               "evaluation": store.evaluation(t.id)}
        solved, steps, epoch = _success.judge(criterion, rec)
        if criterion is not None and criterion.metric not in (row.get("metric"), "loss", "val_loss") and \
                row.get("value") is not None and rec["evaluation"].get(criterion.metric) is None and \
                not any(criterion.metric in r for r in rec["history"]):
            solved = None  # the criterion names a metric this task does not have
        bs = row.get("batch_size")
        out.append({
            "id": t.id, "status": row.get("status"), "attempts": row.get("attempts", 0),
            **{f"{k}": v for k, v in t.params.items()},
            "seed": t.seed if t.seed is not None else row.get("seed"),
            "metric": row.get("metric"), "value": row.get("value"), "baseline": row.get("baseline"),
            "higher_is_better": row.get("higher_is_better"),
            "solved": solved, "steps_to_solve": steps,
            "sequences_to_solve": steps * bs if steps is not None and bs else None, "epoch_solved": epoch,
            "epochs": row.get("epochs"), "steps": row.get("steps"), "loss": row.get("loss"),
            "val_loss": row.get("val_loss"), "seconds": row.get("seconds"), "run_dir": row.get("run_dir"),
            "error": row.get("error"), "_params": dict(t.params),
        })
    return out


def write_csv(path: Path, rows: list[dict], keys: list[str]) -> None:
    cols = ["id", "status", "attempts", *keys, "seed", "metric", "value", "baseline", "solved", "steps_to_solve",
            "sequences_to_solve", "epoch_solved", "epochs", "steps", "loss", "val_loss", "seconds", "run_dir",
            "error"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_cell(r.get(c)) for c in cols])
    tmp.replace(path)


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def _stats(rows: list[dict], criterion) -> dict:
    finished = [r for r in rows if r["status"] in ("completed", "early_stopped", "stopped")]
    failed = [r for r in rows if r["status"] == "failed"]
    values = [float(r["value"]) for r in finished if _finite(r.get("value"))]
    hib = next((bool(r["higher_is_better"]) for r in rows if r.get("higher_is_better") is not None), False)
    out = {"trials": len(rows), "finished": len(finished), "failed": len(failed),
           "stopped": sum(r["status"] == "stopped" for r in rows),
           "pending": sum(r["status"] == "pending" for r in rows)}
    if criterion is not None and any(r["solved"] is not None for r in finished):
        solved = [r for r in finished if r["solved"]]
        steps = [r["steps_to_solve"] for r in solved if r["steps_to_solve"] is not None]
        seqs = [r["sequences_to_solve"] for r in solved if r["sequences_to_solve"] is not None]
        out.update(solved=len(solved), success_rate=len(solved) / len(finished) if finished else None,
                   median_steps_to_solve=statistics.median(steps) if steps else None,
                   median_sequences_to_solve=statistics.median(seqs) if seqs else None)
    else:
        out.update(solved=None, success_rate=None, median_steps_to_solve=None, median_sequences_to_solve=None)
    if values:
        best = (max if hib else min)((r for r in finished if _finite(r.get("value"))), key=lambda r: r["value"])
        out.update(median=statistics.median(values), mean=statistics.fmean(values),
                   std=statistics.pstdev(values) if len(values) > 1 else 0.0, min=min(values), max=max(values),
                   best=best["value"], best_trial=best["id"], best_seed=best["seed"])
    else:
        out.update(median=None, mean=None, std=None, min=None, max=None, best=None, best_trial=None,
                   best_seed=None)
    return out


def aggregate(rows: list[dict], keys: list[str], criterion) -> dict:
    """{"metric", "higher_is_better", "criterion", "configurations": [...], "overall": {...}, "best": ...}."""
    groups: dict[str, list] = {}
    params: dict[str, dict] = {}
    for r in rows:
        k = json.dumps([r["_params"].get(key) for key in keys], default=str)
        groups.setdefault(k, []).append(r)
        params[k] = {key: r["_params"].get(key) for key in keys}
    configs = [{"params": params[k], **_stats(g, criterion)} for k, g in groups.items()]
    metric = next((r["metric"] for r in rows if r.get("metric")), None)
    hib = next((bool(r["higher_is_better"]) for r in rows if r.get("higher_is_better") is not None), False)
    ranked = [c for c in configs if c["median"] is not None]
    best_config = None
    if ranked:
        def score(c):
            med = c["median"] if hib else -c["median"]
            return (c["success_rate"] if c["success_rate"] is not None else -1.0, med)
        best_config = max(ranked, key=score)["params"]
    return {"metric": metric, "higher_is_better": hib,
            "criterion": criterion.to_json() if criterion is not None else None,
            "keys": keys, "configurations": configs, "overall": _stats(rows, criterion),
            "best_configuration": best_config}


# -- the printed summary -------------------------------------------------------------------------------
def summary(agg: dict, rows: list[dict], name: str, path: Path, seconds: float | None = None,
            ran: int | None = None, skipped: int | None = None) -> str:
    o, metric, keys = agg["overall"], agg["metric"] or "metric", agg["keys"]
    crit = agg["criterion"]
    head = f"sweep {name}: {o['trials']} trial{'s' if o['trials'] != 1 else ''}, {o['finished']} finished, " \
           f"{o['failed']} failed"
    if o["stopped"]:
        head += f" ({o['stopped']} stopped by the scheduler)"
    if o["pending"]:
        head += f", {o['pending']} not run"
    if ran is not None:
        head += f"; ran {ran} now, {skipped} done before"
    if seconds is not None:
        head += f" in {_duration(seconds)}"
    lines = [head]
    lines.append(f"  success: {crit['text']} ({crit['source']})" if crit else
                 "  success: no criterion for this task; give --success 'METRIC<VALUE'")
    better = "higher" if agg["higher_is_better"] else "lower"
    cols = [*keys, "trials", "failed", "success", "median steps", f"{metric} median [min, max]", f"best {metric}"]
    table = []
    for c in agg["configurations"] + [{"params": None, **o}]:
        cells = [_show(c["params"][k]) for k in keys] if c["params"] is not None else \
            (["all"] + [""] * (len(keys) - 1) if keys else [])
        if c["params"] is None and not keys:
            cells = []
        rate = "-" if c["success_rate"] is None else f"{c['solved']}/{c['finished']} ({100 * c['success_rate']:.0f}%)"
        steps = "-" if c["median_steps_to_solve"] is None else f"{c['median_steps_to_solve']:,.0f}"
        spread = "-" if c["median"] is None else f"{c['median']:.4g} [{c['min']:.4g}, {c['max']:.4g}]"
        best = "-" if c["best"] is None else f"{c['best']:.4g}"
        table.append(cells + [str(c["trials"]), str(c["failed"]), rate, steps, spread, best])
    if not keys:  # a seeds-only sweep: the overall row is the one configuration
        table = table[-1:]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for i, r in enumerate(table):
        if keys and i == len(table) - 1 and len(table) > 2:
            lines.append("  " + "  ".join("-" * w for w in widths))
        if keys and i == len(table) - 1 and len(table) == 2:
            continue  # one configuration: "all" would repeat it
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
    if o["best_trial"]:
        b = next(r for r in rows if r["id"] == o["best_trial"])
        label = " ".join(f"{k}={_show(b['_params'][k])}" for k in keys)
        lines.append(f"  best trial {b['id']}: {label + ' ' if label else ''}seed {b['seed']}: {metric} "
                     f"{b['value']:.6g} ({better} is better; baseline {_num(b.get('baseline'))})")
        if b.get("run_dir"):
            lines.append(f"    {b['run_dir']}/")
    for r in rows:
        if r["status"] == "failed":
            label = " ".join(f"{k}={_show(r['_params'][k])}" for k in keys)
            lines.append(f"  failed {r['id']} ({label + ' ' if label else ''}seed {r['seed']}, "
                         f"{r['attempts']} attempts): {_first_line(r.get('error'))}")
    files = [f for f in ("results.csv", "aggregate.json", "metric.png", "trials.json") if (path / f).exists()]
    lines.append(f"  sweep       {path}/")
    lines.append(f"  files       {' '.join(files)}")
    return "\n".join(lines)


def _first_line(text) -> str:
    text = str(text or "?").strip().splitlines()[0] if text else "?"
    return text if len(text) <= 160 else text[:157] + "..."


def _num(v):
    return f"{v:.4g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _duration(s: float) -> str:
    m, sec = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else (f"{m}m {sec:02d}s" if m else f"{s:.1f}s")


# -- metric.png --------------------------------------------------------------------------------------
def plot(path: Path, rows: list[dict], keys: list[str], metric: str | None, hib: bool, criterion=None):
    """One panel per swept key: the final metric at each value, median and min-max over seeds, a
    line per combination of the other keys; seeds-only: the metric per seed. None if nothing to draw."""
    done = [r for r in rows if r["status"] in ("completed", "early_stopped", "stopped") and _finite(r.get("value"))]
    if not done:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = keys or ["seed"]
    fig = Figure(figsize=(5.2 * len(panels), 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    values = [r["value"] for r in done]
    for ax, key in zip(axes, panels):
        getx = (lambda r: r["seed"]) if key == "seed" else (lambda r, key=key: r["_params"].get(key))
        xs = [getx(r) for r in done]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        cats = [] if numeric else sorted({json.dumps(x, default=str) for x in xs})
        pos = (lambda x: x) if numeric else (lambda x, cats=cats: cats.index(json.dumps(x, default=str)))
        others = [k for k in keys if k != key]
        lines: dict[str, list] = {}
        for r in done:
            label = " ".join(f"{k}={_show(r['_params'].get(k))}" for k in others)
            lines.setdefault(label, []).append(r)
        if len(lines) > 6:  # e.g. random search: every other value is new; one group, no lines
            lines = {"": done}
        for i, (label, group) in enumerate(sorted(lines.items())):
            color = f"C{i % 10}"
            at: dict = {}
            for r in group:
                at.setdefault(pos(getx(r)), []).append(r["value"])
            px = sorted(at)
            med = [statistics.median(at[x]) for x in px]
            lo = [med[j] - min(at[x]) for j, x in enumerate(px)]
            hi = [max(at[x]) - med[j] for j, x in enumerate(px)]
            seeds_x = [pos(getx(r)) for r in group]
            ax.scatter(seeds_x, [r["value"] for r in group], s=12, alpha=0.35, color=color, lw=0)
            ax.errorbar(px, med, yerr=[lo, hi], fmt="o-" if key != "seed" and label else "o", color=color, capsize=3,
                        lw=1.2, ms=4, label=label or None)
        if numeric and len(set(xs)) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(cats)))
            ax.set_xticklabels([c.strip('"') for c in cats], rotation=30 if len(cats) > 4 else 0)
        if criterion is not None and criterion.metric == metric:
            ax.axhline(criterion.threshold, color="0.5", ls="--", lw=0.8, label=f"success: {criterion}")
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric} ({'higher' if hib else 'lower'} is better)")
        ax.set_title(f"{metric} by {key}" + (" (median, min-max over seeds)" if key != "seed" else ""),
                     fontsize=9)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize=7)
    if min(values) > 0 and max(values) / min(values) >= 20:
        for ax in axes:
            ax.set_yscale("log")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    return path
