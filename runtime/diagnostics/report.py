"""report.html: one self-contained page per run (images embedded, no external file or script).

Sections (ids in SECTIONS): summary, the spec, the folded and unrolled graph pictures, the
interactive unrolled graph, loss and metric curves, the final evaluation, and the diagnostics:
gradient flow over time (at initialisation and after training), eigenvalues (step Jacobian and
recurrent weights), states and gates over time. A section that cannot be computed says why
instead of failing the page. `write_run_report` is what `timeloom run` calls at its end.
"""
from __future__ import annotations

import base64
import html
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from compiler.errors import UsageError

from . import bounded, gradients, spectrum, states, viewer
from .common import copy_network, network, png_bytes, sample_batch

SECTIONS = {"summary": "Summary", "spec": "Spec", "graphs": "Graphs", "viewer": "Unrolled graph (interactive)",
            "curves": "Loss and metric curves", "evaluation": "Final evaluation",
            "gradients": "Gradient flow over time", "spectrum": "Eigenvalues and spectral radius",
            "states": "States and gates over time",
            "receptive": "Memory horizon (receptive field)"}
STATIC_STEPS = 4  # steps of the unrolled picture
BATCH = 8  # sequences for the gradient flow
MAX_STEPS = 400  # longest sequence the diagnostics look at
REPORT_JACOBIAN = 1024  # state dimensions above which the report skips the step Jacobian

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #222; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 12px 24px 48px; background: #fff; }
nav { position: sticky; top: 0; background: #223; padding: 8px 24px; z-index: 5; }
nav a { color: #dde; margin-right: 14px; font-size: 13px; text-decoration: none; }
nav a:hover { color: #fff; text-decoration: underline; }
h1 { font-size: 24px; margin: 14px 0 4px; } h2 { font-size: 19px; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 34px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
pre { background: #f4f4f4; padding: 10px; overflow: auto; font-size: 12px; max-height: 480px; border-radius: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; } th { background: #f0f0f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.note { color: #555; font-size: 13px; } .failed { color: #b00020; font-weight: 600; }
.sub { color: #666; font-size: 13px; }
"""


# -- small HTML helpers ---------------------------------------------------------------------------
def esc(x) -> str:
    return html.escape(str(x))


def img(data: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def fig_img(fig, alt: str, dpi: int = 90) -> str:
    return img(png_bytes(fig, dpi), alt)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if not np.isfinite(v) else f"{v:.6g}"
    return "-" if v is None else str(v)


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return '<p class="note">(nothing)</p>'
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) else ""}">'
        f"{esc(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def flatten(d: dict, prefix: str = "") -> list[dict]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flatten(v, key + ".")
        else:
            rows.append({"key": key, "value": v if not isinstance(v, list) else json.dumps(v)})
    return rows


# -- the context every section reads ----------------------------------------------------------------
class Context:
    def __init__(self, rundir, net, task=None, evaluation=None):
        self.rundir = Path(rundir) if rundir else None
        self.net = copy_network(net)
        self.program = net.program
        self.task = task
        self.evaluation = evaluation if evaluation is not None else self._json("evaluation.json")
        self.info = self._json("run.json") or {}
        self._batch = None

    def _json(self, name):
        path = self.rundir / name if self.rundir else None
        if path is not None and path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                return None
        return None

    @property
    def batch(self):
        if self._batch is None:
            if self.task is None:
                raise UsageError("no data task: the diagnostics need the spec's data: section")
            self._batch = sample_batch(self.task, BATCH, bounded.diag_steps(self.program, MAX_STEPS))
        return self._batch

    def initial_net(self):
        if getattr(self, "_initial", None) is None:  # made once: gradients and spectrum both read it
            self._initial = network(self.program, seed=self.info.get("seed", self.net.seed))
        return self._initial


# -- sections ---------------------------------------------------------------------------------------
def _resumed(entry: dict) -> str:
    """One --resume of run.json: the checkpoint it went on from, with the overrides it gave (the
    run's spec from then on, once a checkpoint after them was reached)."""
    text = f"from {entry.get('from', '?')}"
    if entry.get("overrides"):
        text += f" with {' '.join(entry['overrides'])}" + ("" if entry.get("applied") else " (not reached)")
    return text


def s_summary(cx: Context) -> str:
    p, info, ev = cx.program, cx.info, cx.evaluation or {}
    s = p.summary()
    rows = [{"key": "spec", "value": info.get("source") or p.source or p.name},
            {"key": "units", "value": bounded.listed([f"{n}[{k}]" for n, k in s["units"].items()])},
            {"key": "trainable parameters", "value": s["parameters"]},
            {"key": "fixed parameters", "value": s["fixed_parameters"]},
            {"key": "recurrent components", "value": "; ".join(" -> ".join(c["units"]) for c in s["components"]) or "none"}]
    resumed = [e for e in info.get("resumed") or [] if isinstance(e, dict)]
    for k in ("backend", "dtype", "seed", "started", "overrides"):
        if info.get(k) not in (None, []):
            key = "overrides (at the start)" if k == "overrides" and resumed else k
            rows.append({"key": key, "value": info[k] if not isinstance(info[k], list) else " ".join(info[k])})
    if resumed:
        rows.append({"key": "resumed", "value": "; ".join(_resumed(e) for e in resumed)})
    for k in ("status", "epochs", "steps", "checkpoint"):
        if ev.get(k) is not None:
            rows.append({"key": k, "value": ev[k]})
    metric = ev.get("metric")
    if metric:
        base = ev.get("baseline")
        base = base.get(metric) if isinstance(base, dict) else base
        better = "higher" if ev.get("higher_is_better") else "lower"
        rows.append({"key": f"final {metric}", "value": f"{_fmt(ev.get(metric))}   (baseline {_fmt(base)}, {better} is better)"})
    return table(rows, ["key", "value"])


def s_spec(cx: Context) -> str:
    path = cx.rundir / "spec.yaml" if cx.rundir else None
    if path is not None and path.is_file():
        text = path.read_text()
    else:
        import yaml
        text = yaml.safe_dump(cx.program.spec, sort_keys=False, default_flow_style=None)
    return f"<pre>{esc(text)}</pre>"


def _graph_png(g, unrolled: bool, title: str) -> bytes:
    from compiler import draw

    buf = io.BytesIO()
    draw.draw(g, buf, unrolled=unrolled, title=title, fmt="png")
    return buf.getvalue()


def s_graphs(cx: Context) -> str:
    from compiler.graph import unroll

    p, (view, kept) = cx.program, bounded.sampled_program(cx.program)
    head = "" if view is p else bounded.graph_summary(p, kept)
    sample = "" if view is p else f" (a sample of {len(kept)} of {len(p.order):,} units)"
    folded = _graph_png(view.graph, False, f"{p.name}: folded graph{sample}")
    unrolled = _graph_png(unroll(view, STATIC_STEPS), True, f"{p.name}: unrolled over {STATIC_STEPS} steps{sample}")
    return (head + "<h3>Folded</h3>" + img(folded, "folded graph") + f"<h3>Unrolled ({STATIC_STEPS} steps)</h3>"
            + img(unrolled, "unrolled graph") + '<p class="note">The same pictures: <code>timeloom compile SPEC '
            f'--folded -o folded.png</code> and <code>--steps {STATIC_STEPS} -o unrolled.svg</code>.</p>')


def s_viewer(cx: Context) -> str:
    from compiler.graph import unroll

    wanted = cx.batch.T if cx.task is not None else 20
    view, kept = bounded.sampled_program(cx.program)
    T = viewer.steps_for(view, min(wanted, 200))
    g = unroll(view, T)
    head = "" if view is cx.program else bounded.note(
        f"Large network: a sampled view of {len(kept)} of {len(cx.program.order):,} units (see Graphs).")
    return (head + f'<p class="note">{g.number_of_nodes()} nodes, {g.number_of_edges()} edges ({T} steps).</p>'
            + viewer.viewer_html(g, "graph-viewer"))


def s_curves(cx: Context) -> str:
    path = cx.rundir / "curves.png" if cx.rundir else None
    parts = [img(path.read_bytes(), "loss and metric curves")] if path is not None and path.is_file() else \
        ['<p class="note">no curves.png (no training steps logged)</p>']
    from runtime.train.rundir import MetricsLog

    epochs = [r for r in MetricsLog(cx.rundir / "metrics.jsonl").records() if r.get("kind") == "epoch"] \
        if cx.rundir else []
    if epochs:
        keys = [k for k in epochs[-1] if k not in ("kind",) and not isinstance(epochs[-1][k], (dict, list))]
        shown = epochs if len(epochs) <= 12 else epochs[:3] + epochs[-9:]
        parts.append("<h3>Per epoch</h3>" + table(shown, keys)
                     + (f'<p class="note">{len(epochs) - 12} epochs in between left out (see metrics.jsonl).</p>'
                        if len(epochs) > 12 else ""))
    return "".join(parts)


def s_evaluation(cx: Context) -> str:
    if not cx.evaluation:
        return '<p class="note">no final evaluation (the run was interrupted or failed)</p>'
    return table(flatten(cx.evaluation), ["key", "value"])


def s_gradients(cx: Context) -> str:
    b = cx.batch
    every = gradients.state_units(cx.program)
    units = bounded.evenly(every, bounded.MAX_CURVES)
    cut = bounded.steps_note(cx.program, MAX_STEPS) if b.T == bounded.diag_steps(cx.program, MAX_STEPS) else ""
    head = cut + ("" if len(units) == len(every) else bounded.note(
        f"Large network: {len(every):,} state units; the curves and the table show a sample of {len(units)} "
        f"(evenly spaced in computation order): {', '.join(units)}. All of them: timeloom inspect gradients "
        f"SPEC --checkpoint RUNDIR --units ..."))
    flows = [gradients.gradient_flow(cx.initial_net(), b, units=units, label="initialisation"),
             gradients.gradient_flow(cx.net, b, units=units, label="after training")]
    fig = gradients.draw([(cx.program.name, flows)], width=9.0)
    rows = [{k: r[k] for k in ("state", "unit", "lag0", "relative_at_last", "last_lag", "vanish_lag", "zero_beyond")}
            for r in gradients.summary_rows([(cx.program.name, flows)])]
    for r in rows:
        r["||dL/dh_T||"] = r.pop("lag0")
        r["ratio at the last lag reached"] = r.pop("relative_at_last")
        r["that lag"] = r.pop("last_lag")
        lag, zero = r.pop("vanish_lag"), r.pop("zero_beyond")
        r["lag where < 1e-6 of start"] = lag if lag is not None else \
            "never" if zero is None else f"never (exactly 0 beyond lag {zero})"
    return (head + fig_img(fig, "gradient flow") + table(rows) +
            f'<p class="note">The loss at each sequence\'s last step only; lag k = steps back from it; '
            f'{flows[0].sequences} validation sequences of up to {b.T} steps. '
            f'<code>timeloom inspect gradients SPEC --checkpoint RUNDIR --batch {BATCH} --steps {b.T}</code> gives '
            f'this picture and a CSV.</p>')


def s_spectrum(cx: Context) -> str:
    b = cx.batch
    dims = sum(k * n for _, k, n in spectrum.state_layout(cx.net))
    trained = spectrum.weight_spectra(cx.net)
    limit = bounded.jacobian_limit(cx.program, REPORT_JACOBIAN)
    jac = spectrum.jacobian_spectrum(cx.net, b.inputs) if dims <= limit else None
    every = ([jac] if jac is not None else []) + trained
    items = bounded.evenly(every, bounded.MAX_SPECTRA)
    head = "" if len(items) == len(every) else bounded.note(
        f"Large network: {len(every):,} matrices; the pictures and the table show a sample of {len(items)} "
        f"(evenly spaced). Largest spectral radius of all: {max(s.radius for s in every):.6g}.")
    init = {s.name: s for s in spectrum.weight_spectra(cx.initial_net())}
    rows = []
    for s in items:
        r = {"matrix": s.name, "spectral radius": s.radius}
        if s.kind == "weight":
            r["at initialisation"] = init[s.name].radius if s.name in init else None
            r["asked (spec)"] = s.requested
        r["note"] = s.note
        rows.append(r)
    if not items:
        return '<p class="note">no recurrent weight matrix and no state: a network without memory</p>'
    fig = spectrum.draw(items, title=f"{cx.program.name}: eigenvalues after training (unit circle grey)")
    note = "" if dims <= limit else f" The step Jacobian is left out ({dims} state dimensions)."
    return (head + fig_img(fig, "eigenvalues") + table(rows, ["matrix", "spectral radius", "at initialisation",
                                                      "asked (spec)", "note"])
            + f'<p class="note">Step Jacobian ds_t/ds_(t-1) by central finite differences at the middle step '
              f'of the first validation sequence.{note}</p>')


def s_states(cx: Context) -> str:
    if cx.task is None:
        raise UsageError("no data task: the states over time need the spec's data: section")
    seq = states.choose_sequence(cx.task, None, max_steps=bounded.diag_steps(cx.program, 120))
    units = states.default_units(cx.program)
    traj = states.trajectories(cx.net, seq.inputs, units)
    fig = states.draw(traj, seq.labels, title=f"{cx.program.name}: {seq.description}", program=cx.program)
    return (fig_img(fig, "states over time") + f'<p class="note">{esc(", ".join(units))} on {esc(seq.description)}. '
            f'<code>timeloom inspect states SPEC --units ... --sequence ...</code> for others.</p>')


def s_receptive(cx: Context) -> str:
    """For every output and input, the lags through which the input reaches it (compiler/receptive.py)."""
    rf = cx.program.receptive_field()
    rows = [{"output": r.output, "input": r.input, "shortest lag": "unbounded" if r.min_lag is None else r.min_lag,
             "longest lag": "unbounded" if r.max_lag is None else r.max_lag, "lags": r.text().split(": ", 1)[1]}
            for r in rf.reaches]
    return (table(rows, ["output", "input", "shortest lag", "longest lag", "lags"]) if rows else
            '<p class="note">no outputs</p>') + (
        '<p class="note">Lag k: the output at step t reads the input at step t - k (negative k: look-ahead, '
        'from backward components); computed from the delays on the folded graph. '
        '<code>timeloom compile SPEC</code> prints the same.</p>')


BUILDERS = {"summary": s_summary, "spec": s_spec, "graphs": s_graphs, "viewer": s_viewer, "curves": s_curves,
            "evaluation": s_evaluation, "gradients": s_gradients, "spectrum": s_spectrum, "states": s_states,
            "receptive": s_receptive}


def build(rundir, net, task=None, evaluation=None) -> tuple[str, dict]:
    """(the HTML text, {section: error message} of the sections that could not be computed)."""
    cx = Context(rundir, net, task, evaluation)
    failed, body = {}, []
    for key, title in SECTIONS.items():
        t0 = time.monotonic()
        try:
            content = BUILDERS[key](cx)
        except Exception as e:  # noqa: BLE001 - one failing diagnostic must not cost the whole report
            failed[key] = f"{type(e).__name__}: {e}"
            content = f'<p class="failed">could not compute this section: {esc(failed[key])}</p>'
        body.append(f'<section id="{key}" data-seconds="{time.monotonic() - t0:.2f}"><h2>{esc(title)}</h2>'
                    f"{content}</section>")
    name = cx.program.name
    where = esc(cx.rundir.name) if cx.rundir else ""
    nav = "".join(f'<a href="#{k}">{esc(t.split(" (")[0])}</a>' for k, t in SECTIONS.items())
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(name)}: run report</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<style>{CSS}{viewer.STYLE}</style></head><body><nav>{nav}</nav><main>"
            f'<h1>{esc(name)}</h1><div class="sub">timeloom run report {where} &middot; written '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")}</div>' + "".join(body) + "</main></body></html>\n")
    return page, failed


def write_report(rundir, net, task=None, evaluation=None, path=None) -> tuple[Path, dict]:
    """Write report.html (or `path`); returns (path, failed sections)."""
    from runtime.train.rundir import write_text

    text, failed = build(rundir, net, task, evaluation)
    path = Path(path) if path else Path(rundir) / "report.html"
    write_text(path, text)
    return path, failed


def write_run_report(rundir, net, task=None, evaluation=None) -> Path | None:
    """For the end of `timeloom run`: never raises; problems become a warning on stderr."""
    try:
        path, failed = write_report(rundir, net, task, evaluation)
    except Exception as e:  # noqa: BLE001 - the report must not hide the run's outcome
        print(f"warning: could not write report.html: {e}", file=sys.stderr)
        return None
    for key, why in failed.items():
        print(f"warning: report.html: section '{key}' left out: {why}", file=sys.stderr)
    return path


__all__ = ["SECTIONS", "build", "write_report", "write_run_report"]
