// The side panels (similar patterns, correlation graph, strategy performance) and the stage-health strip.
// Everything the API answers is put into the page as text (textContent, SVG text nodes), never as HTML.
"use strict";

import {getJson, getText} from "./api.js";

const SVG = "http://www.w3.org/2000/svg";

/** An element with attributes and text (the text as a text node). */
export function el(tag, attributes = {}, text = null) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  if (text !== null && text !== undefined) node.textContent = String(text);
  return node;
}

function svg(tag, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== null) node.textContent = String(text);
  return node;
}

export function utc(ms) {
  return ms === null || ms === undefined ? "–" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

export function percent(value, digits = 3) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "n/a";
  return (value >= 0 ? "+" : "") + (value * 100).toFixed(digits) + "%";
}

/** Set a panel's state note ("n/a", "unavailable", ...); hide the panel when ``hidden``. */
export function panelState(panel, text, {hidden = false} = {}) {
  panel.hidden = hidden;
  panel.querySelector(".panel-state").textContent = text ? "· " + text : "";
}

export function describeFailure(error) {
  if (!error || error.status === undefined) return "unreachable, retrying";
  if (error.status === 404) return "n/a";
  if (error.status === 429) return "rate limited, retrying";
  if (error.status === 503) return "unavailable, retrying";
  return "error " + error.status;
}

export function fillRows(tbody, rows) {
  tbody.replaceChildren(...rows.map((cells) => {
    const tr = el("tr");
    for (const cell of cells) {
      const td = typeof cell === "object" && cell !== null ? el("td", cell.attrs || {}, cell.text) : el("td", {}, cell);
      tr.append(td);
    }
    return tr;
  }));
}

// --- similar patterns ----------------------------------------------------------------------------------------

export function renderPatterns(panel, answer) {
  const query = panel.querySelector("#patterns-query");
  const tbody = panel.querySelector("#patterns tbody");
  if (!answer.query) {
    query.textContent = "Not enough closed bars yet to embed the current shape.";
    fillRows(tbody, []);
    return;
  }
  query.textContent = `Current window: ${answer.query.symbol} · ${answer.query.broker}, ending ${utc(answer.query.window_end_ms)} UTC` +
    (answer.data.length ? "" : " — no earlier window with a known forward return yet.");
  fillRows(tbody, answer.data.map((m) => [
    `${m.symbol} · ${m.broker}`, utc(m.window_end_ms), {text: m.distance.toFixed(4), attrs: {class: "num"}},
    {text: percent(m.forward_return), attrs: {class: "num"}}]));
}

// --- correlation graph ---------------------------------------------------------------------------------------

/** The correlation neighbours of ``center`` as a small graph: depth-1 nodes on an inner ring, depth-2 outside. */
export function renderGraph(svgNode, center, rows, onSelect, selectable) {
  const width = 340, height = 250, cx = width / 2, cy = height / 2;
  svgNode.replaceChildren();
  const positions = new Map([[center, {x: cx, y: cy, angle: 0}]]);
  const byDepth = new Map();
  for (const row of rows) {
    if (!byDepth.has(row.depth)) byDepth.set(row.depth, []);
    if (!byDepth.get(row.depth).some((r) => r.symbol === row.symbol)) byDepth.get(row.depth).push(row);
  }
  const first = byDepth.get(1) || [];
  first.forEach((row, i) => {
    const angle = (2 * Math.PI * i) / Math.max(first.length, 1) - Math.PI / 2;
    positions.set(row.symbol, {x: cx + 75 * Math.cos(angle), y: cy + 75 * Math.sin(angle), angle});
  });
  for (const depth of [...byDepth.keys()].filter((d) => d > 1).sort()) {
    const rowsAt = byDepth.get(depth);
    rowsAt.forEach((row, i) => {
      const via = positions.get(row.via);
      const base = via ? via.angle : (2 * Math.PI * i) / rowsAt.length;
      const angle = base + (i % 2 ? 0.35 : -0.35) * Math.ceil((i + 1) / 2) / 2;
      const radius = Math.min(75 + 38 * (depth - 1), 112);
      if (!positions.has(row.symbol)) {
        positions.set(row.symbol, {x: cx + radius * Math.cos(angle), y: cy + radius * Math.sin(angle), angle});
      }
    });
  }
  const edges = svg("g", {class: "edges"});
  for (const row of rows) {
    const a = positions.get(row.via), b = positions.get(row.symbol);
    if (!a || !b) continue;
    const line = svg("line", {x1: a.x, y1: a.y, x2: b.x, y2: b.y,
                              stroke: row.weight >= 0 ? "#26a69a" : "#ef5350",
                              "stroke-width": (1 + 4 * Math.abs(row.weight)).toFixed(2), "stroke-opacity": 0.8});
    line.append(svg("title", {}, `${row.via} – ${row.symbol}: correlation ${row.weight.toFixed(3)} (${row.timeframe})`));
    edges.append(line);
  }
  svgNode.append(edges);
  for (const [symbol, p] of positions) {
    const isCenter = symbol === center;
    const canSelect = !isCenter && selectable(symbol);
    const group = svg("g", {class: isCenter ? "center" : "node" + (canSelect ? " selectable" : ""),
                            "data-symbol": symbol});
    group.append(svg("circle", {cx: p.x, cy: p.y, r: isCenter ? 24 : 19}));
    group.append(svg("text", {x: p.x, y: p.y + 4, "text-anchor": "middle"}, symbol.length > 8 ? symbol.slice(0, 7) + "…" : symbol));
    group.append(svg("title", {}, canSelect ? `${symbol}: click to chart it` : symbol));
    if (canSelect) group.addEventListener("click", () => onSelect(symbol));
    svgNode.append(group);
  }
  if (!rows.length) {
    svgNode.append(svg("text", {x: cx, y: height - 12, "text-anchor": "middle"}, "no correlated symbol above the threshold yet"));
  }
}

// --- strategy performance ------------------------------------------------------------------------------------

export function renderPerformance(panel, rows) {
  fillRows(panel.querySelector("#performance tbody"), rows.map((r) => [
    r.strategy, r.horizon, {text: r.count, attrs: {class: "num"}},
    {text: (r.hit_rate * 100).toFixed(1) + "%", attrs: {class: "num"}}, {text: percent(r.mean_return), attrs: {class: "num"}},
    {text: percent(r.median_return), attrs: {class: "num"}},
    {text: percent(r.max_adverse_excursion), attrs: {class: "num"}}]));
}

// --- stage health --------------------------------------------------------------------------------------------

const DLQ = /^tickwire_dlq_records_total\{([^}]*)\}\s+([0-9.eE+-]+)$/;

export function dlqTotals(metrics) {
  const totals = new Map();
  for (const line of metrics.split("\n")) {
    const match = DLQ.exec(line.trim());
    if (!match) continue;
    const stage = /(?:^|,)stage="([^"]*)"/.exec(match[1]);
    if (!stage) continue;
    totals.set(stage[1], (totals.get(stage[1]) || 0) + Number(match[2]));
  }
  return totals;
}

function seconds(value) {
  if (typeof value !== "number") return "?";
  return value < 10 ? value.toFixed(1) + " s" : Math.round(value) + " s";
}

/** Polls /health and /metrics (no key needed) and shows each stage: state, lag, circuits, dead letters per second. */
export class HealthStrip {
  constructor(node) {
    this.node = node;
    this.previous = null;  // {at, totals}
  }

  async refresh() {
    let health, metrics;
    try {
      health = await getJson("/health", {}, {keyed: false, okStatuses: [503]});
    } catch (error) {
      this.node.replaceChildren(el("span", {class: "chip down"}, "health: unreachable"));
      return;
    }
    try { metrics = await getText("/metrics"); } catch (error) { metrics = null; }
    const now = Date.now();
    const totals = metrics === null ? null : dlqTotals(metrics);
    const rates = new Map();
    const measured = Boolean(totals && this.previous);
    if (measured) {
      const dt = (now - this.previous.at) / 1000;
      for (const [stage, total] of totals) rates.set(stage, Math.max(0, total - (this.previous.totals.get(stage) || 0)) / dt);
    }
    if (totals) this.previous = {at: now, totals};
    const chips = [el("span", {class: "chip " + (health.status === "ok" ? "up" : health.status === "degraded" ? "paused" : "down")},
                      `API ${health.status}`)];
    for (const [name, dep] of Object.entries(health.dependencies || {})) {
      if (dep.status !== "up") chips.push(el("span", {class: "chip down"}, `${name} down`));
    }
    if (!health.stages) {
      chips.push(el("span", {class: "chip"}, "no stages in this process (tickwire api)"));
    } else {
      for (const [stage, report] of Object.entries(health.stages)) {
        const open = Object.entries(report.circuits || {}).filter(([, c]) => c.state === "open").map(([sink]) => sink);
        const chip = el("span", {class: "chip " + report.state, "data-stage": stage});
        chip.append(el("b", {}, stage), document.createTextNode(
          ` ${report.state} · lag ${seconds(report.lag.seconds)} / ${report.lag.records} rec · ` +
          (open.length ? `circuit open: ${open.join(", ")}` : "circuits closed") +
          ` · DLQ ${measured ? (rates.get(stage) || 0).toFixed(2) + "/s" : totals ? "…" : "n/a"}`));
        chips.push(chip);
      }
    }
    this.node.replaceChildren(...chips);
  }
}
