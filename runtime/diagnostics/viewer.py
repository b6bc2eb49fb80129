"""An interactive view of the unrolled graph: a self-contained HTML fragment (canvas + a short
inline script, no library, works offline) built from `compiler.draw.graph_to_json`.

Layout as in the static pictures: time left to right, one row per unit (inputs at the bottom).
Drag to pan, wheel to zoom (around the pointer), double-click to see the whole graph (and back); hovering a node shows its
unit, t and the connections into it (parameter, delay, gate), hovering an edge shows its
parameter, delay and gate. Edge colours follow compiler/draw.py's STYLES. Meant for graphs up
to a few thousand nodes (edges are drawn as one path per style).
"""
from __future__ import annotations

import html
import json

from compiler import draw as graph_draw

MAX_NODES = 3000


def steps_for(program, wanted: int, max_nodes: int = MAX_NODES) -> int:
    """How many steps to unroll so that the graph stays under max_nodes nodes."""
    per_step = len(program.units) + len(program.inputs)
    return max(2, min(int(wanted), max_nodes // max(1, per_step) - 1))


def graph_data(g) -> dict:
    """Compact arrays for the script, from the node-link JSON of the unrolled graph."""
    data = graph_draw.graph_to_json(g)
    rows = graph_draw.unit_rows(g)
    row = {u: i for i, u in enumerate(rows)}
    index, nodes = {}, []
    for i, n in enumerate(data["nodes"]):
        index[n["id"]] = i
        nodes.append([row[n["unit"]], n["t"], n.get("kind", "unit")])
    edges = []
    for e in data["edges"]:
        style = graph_draw.edge_style(e)
        params = e.get("params") or ([e["param"]] if e.get("param") else [])
        edges.append([index[e["source"]], index[e["target"]], style, ", ".join(map(str, params)),
                      e.get("delay") or 0, e.get("gate") or ""])
    styles = {k: [v[0], v[1] != "-" or k == "gate", v[3]] for k, v in graph_draw.STYLES.items()}
    kinds = {k: [v[0], v[1], v[2]] for k, v in graph_draw.NODES.items()}
    return {"rows": rows, "nodes": nodes, "edges": edges, "styles": styles, "kinds": kinds,
            "steps": g.graph.get("steps")}


SCRIPT = r"""
(function () {
  var box = document.getElementById("%(id)s"), cv = box.querySelector("canvas"), tip = box.querySelector(".tip");
  var D = JSON.parse(box.querySelector("script[type='application/json']").textContent);
  var ctx = cv.getContext("2d"), X = 60, Y = 44, view = {s: 1, x: 0, y: 0}, W = 0, H = 0, R = D.rows.length;
  var tmin = Infinity, tmax = -Infinity;
  D.nodes.forEach(function (n) { tmin = Math.min(tmin, n[1]); tmax = Math.max(tmax, n[1]); });
  function pos(n) { return [(n[1] - tmin) * X, (R - 1 - n[0]) * Y]; }
  function geom(e) {  // [x0, y0, cx, cy, x1, y1]: a quadratic curve in world coordinates
    var a = pos(D.nodes[e[0]]), b = pos(D.nodes[e[1]]), dt = D.nodes[e[1]][1] - D.nodes[e[0]][1];
    var dr = D.nodes[e[1]][0] - D.nodes[e[0]][0], cx = (a[0] + b[0]) / 2, cy = (a[1] + b[1]) / 2;
    if (dr === 0 && dt !== 0) cy -= (e[2] === "leak" ? -1 : 1) * Y * Math.min(0.7, 0.2 + 0.1 * Math.abs(dt));
    else if (dt === 0 && Math.abs(dr) > 1) cx += (e[2] === "gate" ? -1 : 1) * X * 0.3;
    return [a[0], a[1], cx, cy, b[0], b[1]];
  }
  var G = D.edges.map(geom);
  function fit(all) {  // all: the whole graph; else the rows fill the height (pan along time)
    var w = Math.max(X, (tmax - tmin) * X), h = Math.max(Y, (R - 1) * Y), fy = (H - 70) / h;
    view.s = Math.min(1.6, Math.max(0.02, all ? Math.min((W - 170) / w, fy) : fy));
    view.x = 130; view.y = (H - h * view.s) / 2 + 8;
  }
  function size() {
    var r = box.getBoundingClientRect(), d = window.devicePixelRatio || 1;
    W = Math.max(200, r.width); H = cv.clientHeight || 480;
    cv.width = W * d; cv.height = H * d; ctx.setTransform(d, 0, 0, d, 0, 0);
  }
  function sx(x) { return x * view.s + view.x; }
  function sy(y) { return y * view.s + view.y; }
  function draw() {
    ctx.clearRect(0, 0, W, H);
    var r = Math.max(1.5, Math.min(12, 10 * view.s)), byStyle = {};
    G.forEach(function (g, i) { (byStyle[D.edges[i][2]] = byStyle[D.edges[i][2]] || []).push(g); });
    Object.keys(byStyle).forEach(function (k) {
      var st = D.styles[k]; ctx.strokeStyle = st[0]; ctx.lineWidth = k === "leak" ? 0.7 : 1.1;
      ctx.setLineDash(st[1] ? [5, 3] : []); ctx.beginPath();
      byStyle[k].forEach(function (g) {
        ctx.moveTo(sx(g[0]), sy(g[1])); ctx.quadraticCurveTo(sx(g[2]), sy(g[3]), sx(g[4]), sy(g[5]));
      });
      ctx.stroke();
    });
    ctx.setLineDash([]);
    D.nodes.forEach(function (n) {
      var p = pos(n), k = D.kinds[n[2]] || D.kinds.unit, x = sx(p[0]), y = sy(p[1]);
      if (x < -r || y < -r || x > W + r || y > H + r) return;
      ctx.fillStyle = k[0]; ctx.strokeStyle = k[1]; ctx.beginPath();
      if (n[2] === "input") ctx.rect(x - r, y - r, 2 * r, 2 * r); else ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.fill(); ctx.stroke();
    });
    ctx.fillStyle = "#333"; ctx.font = "12px sans-serif"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
    D.rows.forEach(function (u, i) {
      var y = sy((R - 1 - i) * Y);
      if (y > 0 && y < H) { ctx.fillStyle = "rgba(255,255,255,0.85)"; ctx.fillRect(0, y - 8, 104, 16);
        ctx.fillStyle = "#333"; ctx.fillText(u, 100, y); }
    });
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    var every = Math.max(1, Math.ceil(40 / (X * view.s)));
    for (var t = tmin; t <= tmax; t++) if ((t - tmin) %% every === 0) {
      var x = sx((t - tmin) * X); if (x > 104 && x < W) { ctx.fillStyle = "#555"; ctx.fillText("t=" + t, x, 4); }
    }
  }
  function world(ev) { var r = cv.getBoundingClientRect();
    return [(ev.clientX - r.left - view.x) / view.s, (ev.clientY - r.top - view.y) / view.s]; }
  function near(ev) {
    var w = world(ev), t = Math.round(w[0] / X) + tmin, row = R - 1 - Math.round(w[1] / Y), best = null;
    var rad = Math.max(1.5, Math.min(12, 10 * view.s)) / view.s;
    D.nodes.forEach(function (n, i) { if (n[1] === t && n[0] === row) {
      var p = pos(n); if (Math.hypot(p[0] - w[0], p[1] - w[1]) <= rad + 2 / view.s) best = ["node", i]; } });
    if (best) return best;
    var lim = 5 / view.s, dmin = lim;
    G.forEach(function (g, i) {
      for (var s = 0; s <= 1.0001; s += 0.125) {
        var u = 1 - s, x = u * u * g[0] + 2 * u * s * g[2] + s * s * g[4], y = u * u * g[1] + 2 * u * s * g[3] + s * s * g[5];
        var d = Math.hypot(x - w[0], y - w[1]); if (d < dmin) { dmin = d; best = ["edge", i]; }
      }
    });
    return best;
  }
  function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;"); }
  function name(i) { var n = D.nodes[i]; return esc(D.rows[n[0]] + "@" + n[1]); }
  function describe(e) {
    if (e[2] === "gate") return esc("gate of " + e[3] + " (multiplies it, same step)");
    if (e[2] === "leak") return esc("leak " + e[3] + " (alpha * own output, delay " + e[4] + ")");
    return esc(e[3] + "  (delay " + e[4] + (e[5] ? ", gated by " + e[5] : "") + ")");
  }
  function show(ev, hit) {
    if (!hit) { tip.style.display = "none"; return; }
    var lines;
    if (hit[0] === "node") {
      var n = D.nodes[hit[1]];
      lines = ["<b>" + esc(D.rows[n[0]]) + "</b>  t=" + n[1] + "  (" + esc(n[2]) + ")"];
      D.edges.forEach(function (e) { if (e[1] === hit[1]) lines.push("&larr; " + name(e[0]) + ": " + describe(e)); });
    } else {
      var e = D.edges[hit[1]];
      lines = [name(e[0]) + " &rarr; " + name(e[1]), describe(e)];
    }
    tip.innerHTML = lines.slice(0, 14).join("<br>");
    var r = box.getBoundingClientRect();
    tip.style.left = Math.min(ev.clientX - r.left + 14, W - 260) + "px"; tip.style.top = (ev.clientY - r.top + 14) + "px";
    tip.style.display = "block";
  }
  var drag = null;
  cv.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY, view.x, view.y]; });
  window.addEventListener("mouseup", function () { drag = null; });
  cv.addEventListener("mousemove", function (ev) {
    if (drag) { view.x = drag[2] + ev.clientX - drag[0]; view.y = drag[3] + ev.clientY - drag[1]; draw(); return; }
    show(ev, near(ev));
  });
  cv.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  cv.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = cv.getBoundingClientRect(), mx = ev.clientX - r.left, my = ev.clientY - r.top;
    var f = Math.exp(-ev.deltaY * 0.0015), s = Math.min(8, Math.max(0.01, view.s * f));
    view.x = mx - (mx - view.x) * s / view.s; view.y = my - (my - view.y) * s / view.s; view.s = s; draw();
  }, {passive: false});
  var whole = false;
  cv.addEventListener("dblclick", function () { whole = !whole; fit(whole); draw(); });
  window.addEventListener("resize", function () { size(); draw(); });
  box.locate = function (i) {  // client coordinates of node i (for tests and scripts)
    var p = pos(D.nodes[i]), r = cv.getBoundingClientRect(); return [r.left + sx(p[0]), r.top + sy(p[1])];
  };
  size(); fit(false); draw();
  box.setAttribute("data-ready", D.nodes.length + " nodes, " + D.edges.length + " edges");
})();
"""

STYLE = """
.graph-viewer { position: relative; border: 1px solid #ccc; border-radius: 4px; background: #fff; }
.graph-viewer canvas { display: block; width: 100%; height: 480px; cursor: grab; }
.graph-viewer .tip { display: none; position: absolute; pointer-events: none; background: #fffff0;
  border: 1px solid #999; padding: 4px 6px; font: 12px/1.35 monospace; max-width: 520px; z-index: 2;
  box-shadow: 1px 1px 4px rgba(0,0,0,.2); }
.graph-viewer .legend { font: 12px sans-serif; padding: 4px 8px; color: #444; }
.graph-viewer .legend span { display: inline-block; margin-right: 14px; }
.graph-viewer .legend i { display: inline-block; width: 18px; height: 0; border-top: 2px solid; margin-right: 4px;
  vertical-align: middle; }
"""


def _legend(data) -> str:
    used = {e[2] for e in data["edges"]}
    parts = [f'<span><i style="border-top-color:{c}{";border-top-style:dashed" if dashed else ""}"></i>'
             f'{html.escape(text)}</span>' for k, (c, dashed, text) in data["styles"].items() if k in used]
    return ('<div class="legend">' + "".join(parts) + "<span>drag: pan, wheel: zoom, double-click: whole graph / back, "
            "hover: unit, t, parameter, delay, gate</span></div>")


def viewer_html(g, element_id: str = "graph-viewer") -> str:
    """A <div> with the canvas, the graph's data and the script (needs STYLE in the page)."""
    data = graph_data(g)
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (f'<div class="graph-viewer" id="{html.escape(element_id)}"><canvas></canvas><div class="tip"></div>'
            f'{_legend(data)}<script type="application/json">{payload}</script>'
            f"<script>{SCRIPT % {'id': element_id}}</script></div>")


def page(g, title: str) -> str:
    """A standalone HTML page with only the viewer (`timeloom inspect graph`)."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="icon" href="data:,"><style>body{{font-family:sans-serif;margin:16px}}{STYLE}</style>'
            f"</head><body><h2>{html.escape(title)}</h2>{viewer_html(g)}</body></html>\n")
