/**
 * The report page: one self-contained HTML file (no external assets: styles, data and the
 * drawing script are inline). Charts are SVG drawn by the inline script from the embedded
 * series, so opening the file anywhere (a CI artefact, a mail attachment) shows them.
 */
import type { ReportData } from "./report.ts";
import { FaultLog } from "./engine.ts";

const esc = (s: string): string =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;");

/** JSON safe inside a <script> element. */
const scriptJson = (v: unknown): string =>
  JSON.stringify(v)
    .replaceAll("<", "\\u003c")
    .replaceAll("\u2028", "\\u2028")
    .replaceAll("\u2029", "\\u2029");

// The drawing script. Plain ES2017, no dependencies; it reads #sim-data and fills each
// .chart element with an SVG. Kept as a string so the page stays one file.
const DRAW = String.raw`
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("sim-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  function el(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, String(attrs[k]));
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return Number((v / 1e9).toPrecision(3)) + "G";
    if (a >= 1e6) return Number((v / 1e6).toPrecision(3)) + "M";
    if (a >= 1e3) return Number((v / 1e3).toPrecision(3)) + "k";
    if (a === 0 || a >= 1) return String(Math.round(v * 100) / 100);
    return v.toPrecision(2);
  }
  function fmtTime(us) {
    if (us >= 1e6) return (us / 1e6).toFixed(2) + " s";
    if (us >= 1e3) return (us / 1e3).toFixed(1) + " ms";
    return Math.round(us) + " µs";
  }
  var t = data.series.t;
  function valuesFor(chart, metric) {
    var v = data.series.values[metric] || [];
    if (chart.kind !== "rate") return v;
    // Per-second rate of a counter between consecutive samples of virtual time.
    // Averaged over a window of samples (about 1/50 of the run) so the trend shows.
    var w = Math.max(1, Math.round(v.length / 50));
    var out = [];
    for (var i = 0; i < v.length; i++) {
      var j = Math.max(0, i - w);
      var dt = (t[i] - t[j]) / 1e6;
      out.push(i === 0 ? 0 : dt > 0 ? (v[i] - v[j]) / dt : out[i - 1]);
    }
    return out;
  }
  function lineChart(host, chart) {
    var W = 640, H = 240, L = 64, R = 12, T = 12, B = 36;
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img" }, host);
    el("title", {}, svg).textContent = chart.title;
    var lines = chart.series.map(function (s) { return { label: s.label, v: valuesFor(chart, s.metric) }; });
    var n = t.length;
    var ymax = 0;
    lines.forEach(function (l) { l.v.forEach(function (x) { if (x > ymax) ymax = x; }); });
    if (ymax <= 0) ymax = 1;
    // A round top for the axis: 1, 2, 2.5 or 5 times a power of ten.
    var p10 = Math.pow(10, Math.floor(Math.log10(ymax)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var si = 0; si < steps.length; si++) if (steps[si] * p10 >= ymax) { ymax = steps[si] * p10; break; }
    if (ymax < 4 && chart.kind !== "rate") ymax = 4;
    var t0 = n > 0 ? t[0] : 0, t1 = n > 1 ? t[n - 1] : t0 + 1;
    if (t1 === t0) t1 = t0 + 1;
    function X(tt) { return L + ((tt - t0) / (t1 - t0)) * (W - L - R); }
    function Y(v) { return T + (1 - v / ymax) * (H - T - B); }
    el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafafa", stroke: "#d4d4d4" }, svg);
    for (var g = 0; g <= 4; g++) {
      var gv = (ymax * g) / 4, gy = Y(gv);
      el("line", { x1: L, x2: W - R, y1: gy, y2: gy, stroke: "#e5e5e5" }, svg);
      var lab = el("text", { x: L - 6, y: gy + 4, "text-anchor": "end", "font-size": 11, fill: "#525252" }, svg);
      lab.textContent = fmt(gv);
    }
    for (var k = 0; k <= 4; k++) {
      var tt = t0 + ((t1 - t0) * k) / 4;
      var tl = el("text", { x: X(tt), y: H - B + 16, "text-anchor": k === 0 ? "start" : k === 4 ? "end" : "middle", "font-size": 11, fill: "#525252" }, svg);
      tl.textContent = fmtTime(tt);
    }
    var unit = el("text", { x: L, y: H - 4, "font-size": 11, fill: "#525252" }, svg);
    unit.textContent = chart.unit + " over virtual time";
    lines.forEach(function (l, i) {
      if (l.v.length === 0) return;
      var d = "";
      for (var j = 0; j < l.v.length; j++) d += (j === 0 ? "M" : "L") + X(t[j]).toFixed(1) + " " + Y(l.v[j]).toFixed(1);
      if (l.v.length === 1) d += "L" + (X(t[0]) + 1).toFixed(1) + " " + Y(l.v[0]).toFixed(1);
      var p = el("path", { d: d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 1.6, "data-points": l.v.length, class: "series" }, svg);
      el("title", {}, p).textContent = l.label;
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    lines.forEach(function (l, i) {
      var last = l.v.length > 0 ? l.v[l.v.length - 1] : 0;
      var s = document.createElement("span");
      s.innerHTML = '<i style="background:' + COLORS[i % COLORS.length] + '"></i>';
      s.appendChild(document.createTextNode(l.label + " (last " + fmt(last) + ")"));
      legend.appendChild(s);
    });
    host.appendChild(legend);
  }
  function faultChart(host) {
    var f = data.faults;
    if (f.kinds.length === 0) {
      var p = document.createElement("p");
      p.className = "empty";
      p.textContent = f.none || "No faults injected in this run.";
      host.appendChild(p);
      return;
    }
    // One bar per kind, stacked by outcome group (a handful of colours that stay apart);
    // the table beside the chart gives every outcome with its count.
    var W = 560, rowH = 24, L = 150, R = 70, T = 8;
    var H = T + f.kinds.length * rowH + 8;
    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img" }, host);
    el("title", {}, svg).textContent = "Faults injected, by kind and outcome group";
    var max = 0;
    f.kinds.forEach(function (k) { var s = 0; k.byGroup.forEach(function (c) { s += c; }); if (s > max) max = s; });
    f.kinds.forEach(function (k, r) {
      var y = T + r * rowH;
      var lab = el("text", { x: L - 6, y: y + 15, "text-anchor": "end", "font-size": 12, fill: "#262626" }, svg);
      lab.textContent = k.kind;
      var x = L, total = 0;
      k.byGroup.forEach(function (c, g) {
        if (c === 0) return;
        total += c;
        var w = (c / max) * (W - L - R);
        var b = el("rect", { x: x, y: y + 3, width: Math.max(w, 1), height: rowH - 8, fill: f.groups[g].color, class: "bar" }, svg);
        el("title", {}, b).textContent = k.kind + ": " + f.groups[g].name + " × " + c.toLocaleString("en-US");
        x += w;
      });
      var tl = el("text", { x: x + 6, y: y + 15, "font-size": 12, fill: "#525252" }, svg);
      tl.textContent = total.toLocaleString("en-US");
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    f.groups.forEach(function (g) {
      var s = document.createElement("span");
      s.innerHTML = '<i style="background:' + g.color + '"></i>';
      s.appendChild(document.createTextNode(g.name));
      legend.appendChild(s);
    });
    host.appendChild(legend);
  }
  var charts = document.querySelectorAll(".chart");
  for (var i = 0; i < charts.length; i++) {
    var host = charts[i];
    var idx = host.getAttribute("data-chart");
    if (idx === "faults") faultChart(host);
    else lineChart(host, data.charts[Number(idx)]);
  }
  document.body.setAttribute("data-drawn", "yes");
})();
`;

/**
 * Outcome groups for the fault chart, first match wins: a handful of colours a reader can
 * tell apart, however many distinct outcome texts the scenarios write.
 */
export const FAULT_GROUPS: readonly { readonly name: string; readonly color: string; readonly re: RegExp }[] =
  [
    {
      name: "refused (error value, chain given back)",
      color: "#dc2626",
      re: /refused|given back empty|walk ended|error/,
    },
    { name: "dropped and counted", color: "#d97706", re: /dropped/ },
    { name: "answered with RST", color: "#7c3aed", re: /RST/ },
    { name: "not reached, no effect", color: "#737373", re: /repaired before|no effect|ignored/ },
    {
      name: "served, or read without harm",
      color: "#16a34a",
      re: /\bserved\b|delivered|without harm|used with/,
    },
    { name: "other", color: "#0891b2", re: /[^]/ },
  ];

export const faultGroup = (outcome: string): number => FAULT_GROUPS.findIndex((g) => g.re.test(outcome));

const faultChartData = (
  r: ReportData,
): {
  none: string | null;
  groups: { name: string; color: string }[];
  kinds: { kind: string; byGroup: number[] }[];
} => ({
  none: r.faults.none,
  groups: FAULT_GROUPS.map((g) => ({ name: g.name, color: g.color })),
  kinds: Object.entries(r.faults.table).map(([kind, row]) => {
    const byGroup = FAULT_GROUPS.map(() => 0);
    for (const [o, c] of Object.entries(row)) byGroup[faultGroup(o)]! += c;
    return { kind, byGroup };
  }),
});

/** Every kind and outcome with its count, beside the chart (the colour is its group's). */
const outcomeTable = (r: ReportData): string => {
  const rows = Object.entries(r.faults.table).flatMap(([kind, row]) =>
    Object.entries(row)
      .sort((a, b) => b[1] - a[1])
      .map(
        ([o, c], i) =>
          `<tr><td>${i === 0 ? esc(kind) : ""}</td><td><i style="background:${FAULT_GROUPS[faultGroup(o)]!.color}"></i> ${esc(
            o,
          )}</td><td class="num">${c.toLocaleString("en-US")}</td></tr>`,
      ),
  );
  return rows.length === 0
    ? ""
    : `<table class="outcomes"><tr><th>kind</th><th>outcome</th><th>count</th></tr>${rows.join("")}</table>`;
};

export const renderHtml = (r: ReportData): string => {
  const status =
    r.status === "passed"
      ? `<span class="ok">passed</span>`
      : r.status === "skipped"
        ? `<span class="skip">skipped: ${esc(r.skipReason ?? "")}</span>`
        : `<span class="bad">invariant broken</span>`;
  const violation =
    r.violation === undefined
      ? ""
      : `<div class="violation"><b>${esc(r.violation.rule)}</b> at step ${r.violation.step}: ${esc(
          r.violation.message,
        )}<br>Replay: <code>${esc(r.replay)}</code></div>`;
  const totals = r.totals
    .map((m) => `<tr><td>${esc(m.label)}</td><td class="num">${m.value.toLocaleString("en-US")}</td></tr>`)
    .join("");
  const facts = Object.entries(r.facts)
    .map(
      ([k, v]) =>
        `<tr><td>${esc(k)}</td><td>${esc(typeof v === "number" ? v.toLocaleString("en-US") : String(v))}</td></tr>`,
    )
    .join("");
  const notes = r.notes.map((n) => `<li>${esc(n)}</li>`).join("");
  const chartBlocks = r.charts
    .map(
      (c, i) =>
        `<section><h2>${esc(c.title)}</h2><div class="chart" data-chart="${i}" data-title="${esc(c.title)}"></div></section>`,
    )
    .join("\n");
  const faultRows = r.faults.examples
    .map(
      (f) =>
        `<tr><td class="num">${f.id.toLocaleString("en-US")}</td><td class="num">${f.step.toLocaleString("en-US")}</td><td>${esc(f.kind)}</td><td>${esc(
          f.detail,
        )}</td><td>${esc(f.outcome)}</td></tr>`,
    )
    .join("");
  const faultTable =
    r.faults.examples.length === 0
      ? ""
      : `<details><summary>${r.faults.injected.toLocaleString("en-US")} faults${
          r.faults.examples.length < r.faults.injected
            ? ` (the first ${FaultLog.EXAMPLES_PER_KIND} of each kind listed; the trace has them all)`
            : ""
        }</summary><table><tr><th>#</th><th>step</th><th>kind</th><th>what</th><th>handled</th></tr>${faultRows}</table></details>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>virtio-lab sim: ${esc(r.scenario)} seed ${r.seed}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #171717; margin: 24px auto; max-width: 1360px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 15px; margin: 0 0 8px; }
.sub { color: #525252; margin-bottom: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(660px, 1fr)); gap: 16px; }
section { border: 1px solid #e5e5e5; border-radius: 8px; padding: 12px; background: #fff; }
table { border-collapse: collapse; } td, th { padding: 2px 10px 2px 0; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #15803d; font-weight: 600; } .bad { color: #b91c1c; font-weight: 600; } .skip { color: #a16207; font-weight: 600; }
.violation { background: #fef2f2; border: 1px solid #fecaca; padding: 8px 12px; border-radius: 6px; margin: 8px 0 16px; }
.legend { font-size: 12px; color: #404040; margin-top: 4px; } .legend span { margin-right: 14px; white-space: nowrap; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
.empty { color: #737373; } code { background: #f5f5f5; padding: 1px 4px; border-radius: 3px; }
.wide { grid-column: 1 / -1; } .faults { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.faults > .chart { flex: 0 0 560px; } .faults > table { flex: 1 1 420px; }
.outcomes td { font-size: 12px; } .outcomes i { display: inline-block; width: 10px; height: 10px; border-radius: 2px; }
.top { display: flex; gap: 16px; flex-wrap: wrap; margin-bottom: 16px; } .top section { flex: 1 1 320px; }
</style>
</head>
<body>
<h1>${esc(r.scenario)} · seed ${r.seed} · ${status}</h1>
<div class="sub">${esc(r.summaryLine)}<br>${r.steps.toLocaleString("en-US")} steps, ${(
    r.virtualUs / 1000
  ).toFixed(
    1,
  )} ms virtual time, oracle ${r.options.oracle ? "on" : "off"}, fault rate ${r.options.faults}. Replay: <code>${esc(
    r.replay,
  )}</code></div>
${violation}
<div class="top">
<section><h2>Totals</h2><table>${totals}</table></section>
<section><h2>Run</h2><table>${facts}<tr><td>trace events</td><td>${r.traceEvents.toLocaleString(
    "en-US",
  )}</td></tr><tr><td>trace sha256</td><td><code>${r.traceSha256.slice(0, 16)}…</code></td></tr></table>${
    notes === "" ? "" : `<ul>${notes}</ul>`
  }</section>
</div>
<div class="grid">
${chartBlocks}
<section class="wide"><h2>Faults injected and how each was handled</h2><div class="faults"><div class="chart" data-chart="faults" data-title="faults"></div>${outcomeTable(
    r,
  )}</div>${faultTable}</section>
</div>
<script type="application/json" id="sim-data">${scriptJson({
    series: r.series,
    charts: r.charts,
    faults: faultChartData(r),
  })}</script>
<script>${DRAW}</script>
</body>
</html>
`;
};
