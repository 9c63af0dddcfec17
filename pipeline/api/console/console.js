// The tickwire console: one tenant's series from this server's API, with the key typed into the page.
// No build step: plain ES modules, served by the API with a strict Content-Security-Policy.
"use strict";

import {ApiError, forgetKey, getJson, getKey, readTickStream, setKey, sleep} from "./api.js";
import {overlayGroups, PANE_GROUPS, PriceChart} from "./chart.js";
import {
  describeFailure, el, fillRows, HealthStrip, panelState, percent, renderGraph, renderPatterns, renderPerformance, utc,
} from "./panels.js";

const $ = (selector) => document.querySelector(selector);
// /health asks every store a question: every 10 s while the tab is visible is plenty for a person.
const REFRESH_MS = {candles: 10_000, signals: 15_000, panels: 60_000, health: 10_000};
const BARS = 500;

const state = {
  routes: new Set(),         // "GET /v1/..." the server serves (from /openapi.json)
  timeframes: ["1m"],
  series: [],                // [{symbol, broker, last_tick_ms}]
  run: null,                 // the selection being shown: {symbol, broker, timeframe, controller}
  bars: [],
  forming: null,
  signals: [],
  performance: null,         // [{strategy, symbol, horizon, ...}] or null (not available)
  lastTick: null,
  groups: [],                // overlay groups offered
  shownOverlays: new Set(),
  shownPanes: new Set(),
};
let chart = null;

// --- status and the key ------------------------------------------------------------------------------------

function status(text, {error = false} = {}) {
  const node = $("#status");
  node.textContent = text;
  node.classList.toggle("error", error);
}

function needKey(message, {error = false} = {}) {
  stopRun();
  document.body.dataset.state = "need-key";
  $("#controls").hidden = true;
  $("#main").hidden = true;
  $("#key-forget").hidden = true;
  status(message, {error});
  $("#key-input").focus();
}

function keyRefused() {
  forgetKey();
  needKey("This key was refused (unknown, revoked or mistyped). Enter a valid API key.", {error: true});
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#key-input");
  const key = input.value.trim();
  input.value = "";  // the key is kept in sessionStorage only, not in the page
  if (!key) return needKey("Enter an API key.");
  setKey(key);
  start();
});

$("#key-forget").addEventListener("click", () => {
  forgetKey();
  needKey("Key forgotten. Enter an API key to continue.");
});

// --- routes and timeframes the server has --------------------------------------------------------------------

async function discover() {
  try {
    const document_ = await getJson("/openapi.json", {}, {keyed: false});
    for (const [path, methods] of Object.entries(document_.paths || {})) {
      for (const method of Object.keys(methods)) state.routes.add(method.toUpperCase() + " " + path);
    }
    const candles = ((document_.paths || {})["/v1/candles"] || {}).get;
    const timeframe = ((candles && candles.parameters) || []).find((p) => p.name === "timeframe");
    if (timeframe && timeframe.schema && Array.isArray(timeframe.schema.enum)) state.timeframes = timeframe.schema.enum;
  } catch (error) {
    status("Could not read /openapi.json; assuming the default routes.", {error: true});
  }
}

const has = (route) => state.routes.size === 0 || state.routes.has(route);

// --- symbols ---------------------------------------------------------------------------------------------------

async function loadSeries() {
  const series = [];
  let cursor = null;
  for (let page = 0; page < 10; page++) {
    const answer = await getJson("/v1/symbols", {limit: 1000, cursor});
    series.push(...answer.data);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return series;
}

async function start() {
  document.body.dataset.state = "loading";
  status("Loading this key's symbols…");
  let series;
  try {
    series = await loadSeries();
  } catch (error) {
    if (error.status === 401) return keyRefused();
    status("Symbols: " + describeFailure(error) + (error.message ? ` (${error.message})` : ""), {error: true});
    await sleep(5000);
    if (getKey()) start();
    return;
  }
  state.series = series;
  $("#key-forget").hidden = false;
  $("#controls").hidden = false;
  $("#main").hidden = false;
  if (!chart) {
    chart = new PriceChart($("#chart"));
    chart.onHover(showTooltip);
    $("#chart").addEventListener("mouseleave", hideTooltip);
  }
  const symbolSelect = $("#symbol");
  symbolSelect.replaceChildren(...series.map((s, i) => el("option", {value: String(i)}, `${s.symbol} · ${s.broker}`)));
  const timeframeSelect = $("#timeframe");
  timeframeSelect.replaceChildren(...state.timeframes.map((tf) => el("option", {value: tf}, tf)));
  document.body.dataset.state = "ready";
  if (!series.length) {
    status("This key's tenant has no ticks yet.");
    return;
  }
  status(`${series.length} series. Values shown are this tenant's only.`);
  let newest = 0;
  series.forEach((s, i) => { if ((s.last_tick_ms || 0) > (series[newest].last_tick_ms || 0)) newest = i; });
  symbolSelect.value = String(newest);
  select();
}

$("#symbol").addEventListener("change", () => select());
$("#timeframe").addEventListener("change", () => select());

// --- one selection: chart, stream, panels ----------------------------------------------------------------------

function stopRun() {
  if (state.run) state.run.controller.abort();
  state.run = null;
}

function timeframeMs(name) {
  const match = /^(\d+)([smhd])$/.exec(name);
  if (!match) return 60_000;
  return Number(match[1]) * {s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000}[match[2]];
}

function every(run, ms, task) {
  const timer = setInterval(() => { if (state.run === run) task(run); }, ms);
  run.controller.signal.addEventListener("abort", () => clearInterval(timer), {once: true});
}

function select() {
  stopRun();
  const series = state.series[Number($("#symbol").value)];
  if (!series) return;
  const run = {symbol: series.symbol, broker: series.broker, timeframe: $("#timeframe").value || state.timeframes[0],
               controller: new AbortController()};
  run.tfMs = timeframeMs(run.timeframe);
  state.run = run;
  state.bars = [];
  state.forming = null;
  state.signals = [];
  state.lastTick = null;
  chart.setBars([], null);
  chart.setMarkers([]);
  hideTooltip();
  $("#quote-symbol").textContent = `${run.symbol} · ${run.broker} · ${run.timeframe}`;
  $("#last-price").textContent = "–";
  $("#last-time").textContent = "";
  refreshCandles(run).then(() => refreshSignals(run));
  refreshPerformance(run);
  refreshPatterns(run);
  refreshGraph(run);
  runStream(run);
  every(run, REFRESH_MS.candles, refreshCandles);
  every(run, REFRESH_MS.signals, refreshSignals);
  every(run, REFRESH_MS.panels, (r) => { refreshPerformance(r); refreshPatterns(r); refreshGraph(r); });
}

const params = (run, extra = {}) => ({symbol: run.symbol, broker: run.broker, ...extra});

function failed(run, error) {
  if (state.run !== run) return true;
  if (error instanceof ApiError && error.status === 401) { keyRefused(); return true; }
  return false;
}

function decimals(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return 0;
  const text = String(value);
  if (text.includes("e")) return 8;
  const dot = text.indexOf(".");
  return dot < 0 ? 0 : Math.min(text.length - dot - 1, 8);
}

async function refreshCandles(run) {
  let bars;
  try {
    const answer = await getJson("/v1/candles", params(run, {timeframe: run.timeframe, limit: BARS}));
    bars = answer.data.slice().reverse();
    if (bars.length && bars[0].indicators === undefined) await addIndicators(run, bars);
  } catch (error) {
    if (failed(run, error)) return;
    $("#chart-note").textContent = "Bars: " + describeFailure(error);
    return;
  }
  if (state.run !== run) return;
  state.bars = bars;
  const precision = Math.max(2, ...bars.slice(-50).map((b) => Math.max(decimals(b.bid_close), decimals(b.ask_close))));
  chart.setPrecision(Math.min(precision, 8));
  updateIndicatorControls(bars);
  chart.setBars(bars, state.forming);
  if (!run.fitted && bars.length) {
    run.fitted = true;
    chart.fit();
  }
  if (state.forming && bars.length && state.forming.start_ms <= bars[bars.length - 1].start_ms) state.forming = null;
  $("#chart-note").textContent = bars.length ? "" : `No closed ${run.timeframe} bar of ${run.symbol} yet.`;
  drawMarkers();
}

// --- indicators ------------------------------------------------------------------------------------------------

async function addIndicators(run, bars) {
  // Bars of a server whose /v1/candles rows carry no indicators: ask /v1/indicators; without it, none (n/a).
  let byStart = new Map();
  if (has("GET /v1/indicators")) {
    try {
      const answer = await getJson("/v1/indicators", params(run, {timeframe: run.timeframe, limit: BARS}));
      byStart = new Map(answer.data.map((row) => [row.start_ms + "/" + row.broker, row.indicators]));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
    }
  }
  for (const bar of bars) bar.indicators = byStart.get(bar.start_ms + "/" + bar.broker) || {};
}

function swatch(color) {
  const node = el("span", {class: "swatch"});
  node.style.backgroundColor = color;  // CSSOM, not an inline style attribute: allowed by the policy
  return node;
}

function updateIndicatorControls(bars) {
  const names = new Set();
  for (const bar of bars) for (const name of Object.keys(bar.indicators || {})) names.add(name);
  const groups = overlayGroups(names);
  const signature = groups.map((g) => g.id).join(",") + "|" + PANE_GROUPS.filter((g) => g.needs.every((n) => names.has(n))).map((g) => g.id).join(",");
  chart.setOverlayGroups(groups);
  state.groups = groups;
  if (signature === state.indicatorSignature) return;
  state.indicatorSignature = signature;
  const overlays = $("#overlays");
  const legend = el("legend", {}, "Overlays");
  if (!groups.length) {
    overlays.replaceChildren(legend, el("span", {class: "muted"}, names.size ? "n/a" : "none yet (warming up, or n/a)"));
  } else {
    overlays.replaceChildren(legend, ...groups.map((group) => {
      const input = el("input", {type: "checkbox", "data-overlay": group.id});
      input.checked = state.shownOverlays.has(group.id);
      input.addEventListener("change", () => {
        if (input.checked) state.shownOverlays.add(group.id); else state.shownOverlays.delete(group.id);
        chart.showOverlay(group, input.checked);
      });
      const label = el("label");
      label.append(input, swatch(group.series[0].color), document.createTextNode(group.label));
      return label;
    }));
  }
  for (const group of groups) chart.showOverlay(group, state.shownOverlays.has(group.id));
  const panes = $("#panes");
  const available = PANE_GROUPS.filter((g) => g.needs.every((n) => names.has(n)));
  if (!available.length) {
    panes.replaceChildren(el("legend", {}, "Panes"), el("span", {class: "muted"}, "none yet (warming up, or n/a)"));
  } else {
    panes.replaceChildren(el("legend", {}, "Panes"), ...available.map((group) => {
      const input = el("input", {type: "checkbox", "data-pane": group.id});
      input.checked = state.shownPanes.has(group.id);
      input.addEventListener("change", () => {
        if (input.checked) state.shownPanes.add(group.id); else state.shownPanes.delete(group.id);
        chart.showPane(group, input.checked);
      });
      const label = el("label");
      label.append(input, swatch(group.series.find((s) => s.color).color), document.createTextNode(group.label));
      return label;
    }));
  }
  for (const group of PANE_GROUPS) chart.showPane(group, state.shownPanes.has(group.id) && available.includes(group));
}

// --- the newest tick, live ---------------------------------------------------------------------------------------

function onTick(run, tick) {
  if (state.run !== run) return;
  const previous = state.lastTick;
  state.lastTick = tick;
  const digits = Math.max(decimals(tick.bid), decimals(tick.ask), 2);
  const price = $("#last-price");
  price.textContent = `${tick.bid.toFixed(digits)} / ${tick.ask.toFixed(digits)}`;
  const mid = (tick.bid + tick.ask) / 2;
  const before = previous ? (previous.bid + previous.ask) / 2 : mid;
  price.className = mid > before ? "up" : mid < before ? "down" : "";
  $("#last-time").textContent = utc(tick.time_msc) + " UTC";
  const last = state.bars[state.bars.length - 1];
  if (!last) return;
  const offset = ((last.start_ms % run.tfMs) + run.tfMs) % run.tfMs;  // day bars follow the broker's day
  const start = Math.floor((tick.time_msc - offset) / run.tfMs) * run.tfMs + offset;
  if (start <= last.start_ms) return;  // a tick of a stored bar: the next refresh shows it
  let forming = state.forming;
  if (!forming || forming.start_ms !== start) {
    if (forming && start > forming.start_ms) setTimeout(() => { if (state.run === run) refreshCandles(run); }, 1500);
    forming = state.forming = {start_ms: start, end_ms: start + run.tfMs, open: mid, high: mid, low: mid, close: mid,
                               ticks: 0, volume: 0, volume_real: 0};
  }
  forming.high = Math.max(forming.high, mid);
  forming.low = Math.min(forming.low, mid);
  forming.close = mid;
  forming.ticks += 1;
  chart.updateForming(forming);
  drawMarkers();
}

async function runStream(run) {
  const note = $("#stream-state");
  if (!has("GET /v1/ticks/stream")) return pollLatest(run, note);
  let wait = 1000;
  while (state.run === run) {
    try {
      note.textContent = "live";
      const reason = await readTickStream(run.symbol, run.broker, (tick) => onTick(run, tick), run.controller.signal);
      if (state.run !== run) return;
      note.textContent = reason === "idle" ? "no tick for a while; reconnecting" : `stream ended (${reason}); reconnecting`;
      wait = reason === "idle" ? 5000 : 1000;
    } catch (error) {
      if (state.run !== run || failed(run, error)) return;
      if (error instanceof ApiError && error.status === 404) return pollLatest(run, note);
      note.textContent = "stream: " + describeFailure(error);
      wait = error.retryAfterS ? error.retryAfterS * 1000 : Math.min(wait * 2, 30_000);
    }
    await sleep(wait, run.controller.signal);
  }
}

async function pollLatest(run, note) {
  // An older server without /v1/ticks/stream: ask /v1/ticks/latest every second instead.
  note.textContent = "polling";
  while (state.run === run) {
    try {
      const answer = await getJson("/v1/ticks/latest", params(run));
      if (answer.data.length) onTick(run, answer.data[0]);
    } catch (error) {
      if (failed(run, error)) return;
      note.textContent = "latest tick: " + describeFailure(error);
    }
    await sleep(1000, run.controller.signal);
  }
}

// --- signals, markers and outcomes ------------------------------------------------------------------------------

function outcomeLines(signal) {
  // Per-signal outcomes when /v1/signals carries them; else the strategy's performance on this symbol.
  const own = signal.outcomes;
  if (own && (Array.isArray(own) ? own.length : Object.keys(own).length)) {
    const list = Array.isArray(own) ? own : Object.entries(own).map(([horizon, value]) => ({horizon, ...value}));
    return list.map((o) => {
      const horizon = o.horizon || (o.horizon_ms ? Math.round(o.horizon_ms / 60_000) + "m" : "?");
      const value = typeof o.directed_return === "number" ? percent(o.directed_return)
        : typeof o.move === "number" ? "move " + percent(o.move) : "n/a";
      return `${horizon}: ${value}` + (o.first_hit ? ` (${o.first_hit} first)` : "");
    });
  }
  if (state.performance === null) return ["outcome: n/a"];
  if (signal.action !== "buy" && signal.action !== "sell") return [`${signal.action}: no direction, no outcome`];
  const rows = state.performance.filter((r) => r.strategy === signal.strategy && r.symbol === signal.symbol);
  if (!rows.length) return [`${signal.strategy}: no outcome yet`];
  return rows.map((r) => `${signal.strategy} ${r.horizon}: tp first in ${rate(r.hit_rate)} of ${r.count}, ` +
                         `mean ${percent(r.mean_return)}, median ${percent(r.median_return)}`);
}

function rate(value) { return typeof value === "number" ? (value * 100).toFixed(0) + "%" : "n/a"; }

function shortOutcome(signal) {
  const own = signal.outcomes;
  if (own && (Array.isArray(own) ? own.length : Object.keys(own).length)) return outcomeLines(signal)[0];
  if (state.performance === null) return "n/a";
  if (signal.action !== "buy" && signal.action !== "sell") return "no direction";
  const row = state.performance.find((r) => r.strategy === signal.strategy && r.symbol === signal.symbol);
  return row ? `${row.horizon}: ${rate(row.hit_rate)} tp · ${percent(row.mean_return, 2)}` : "none yet";
}

async function refreshSignals(run) {
  let rows;
  const panel = $("#signals-panel");
  try {
    const from = state.bars.length ? state.bars[0].start_ms : undefined;
    rows = (await getJson("/v1/signals", params(run, {limit: 200, from}))).data;
  } catch (error) {
    if (failed(run, error)) return;
    panelState(panel, describeFailure(error), {hidden: error.status === 404});
    return;
  }
  if (state.run !== run) return;
  state.signals = rows;
  panelState(panel, rows.length ? "" : "none on these bars");
  renderSignals();
  drawMarkers();
}

function renderSignals() {
  const tbody = $("#signals tbody");
  fillRows(tbody, state.signals.map((s) => [
    utc(s.time_msc), {text: s.action, attrs: {class: "action-" + s.action}}, s.strategy,
    {text: s.price === null ? "–" : s.price, attrs: {class: "num"}}, shortOutcome(s)]));
  [...tbody.rows].forEach((row, i) => { row.dataset.signal = state.signals[i].id; });
}

function drawMarkers() {
  if (!chart) return;
  const markers = [];
  for (const signal of state.signals) {
    const bar = chart.barAt(signal.time_msc);
    if (bar !== null) markers.push({id: signal.id, time_ms: bar, action: signal.action});
  }
  const key = markers.map((m) => m.id + "@" + m.time_ms).join(",");
  if (key === state.markerKey) return;
  state.markerKey = key;
  chart.setMarkers(markers);
}

async function refreshPerformance(run) {
  const panel = $("#performance-panel");
  if (!has("GET /v1/strategies/performance")) {
    state.performance = null;
    return panelState(panel, "n/a", {hidden: true});
  }
  try {
    const rows = (await getJson("/v1/strategies/performance", {symbol: run.symbol})).data;
    if (state.run !== run) return;
    state.performance = rows;
    panelState(panel, rows.length ? "" : "no outcome yet");
    renderPerformance(panel, rows);
  } catch (error) {
    if (failed(run, error)) return;
    if (error.status === 404) state.performance = null;
    panelState(panel, describeFailure(error), {hidden: error.status === 404});
  }
  renderSignals();
}

function hideTooltip() {
  $("#tooltip").hidden = true;
  for (const row of document.querySelectorAll("#signals tbody tr.highlight")) row.classList.remove("highlight");
}

function showTooltip(param) {
  if (param && !param.sourceEvent) return;  // the data changed under a still mouse: keep what is shown
  if (!param || !param.point || param.time === undefined || !state.run) return hideTooltip();
  let signals = [];
  if (param.hoveredObjectId !== undefined) signals = state.signals.filter((s) => s.id === param.hoveredObjectId);
  if (!signals.length) {
    const barMs = Number(param.time) * 1000;
    signals = state.signals.filter((s) => ["buy", "sell", "close"].includes(s.action) && chart.barAt(s.time_msc) === barMs);
  }
  if (!signals.length) return hideTooltip();
  const lines = [];
  for (const s of signals.slice(0, 4)) {
    lines.push(`${s.action.toUpperCase()} · ${s.strategy} · ${utc(s.time_msc)} UTC`);
    const levels = [["price", s.price], ["sl", s.sl], ["tp", s.tp]].filter(([, v]) => v !== null && v !== undefined)
      .map(([n, v]) => `${n} ${v}`);
    lines.push([...levels, `confidence ${Number(s.confidence).toFixed(2)}`].join(" · "));
    if (s.reason) lines.push(`reason: ${s.reason}`);
    lines.push(...outcomeLines(s).map((line) => "outcome " + line));
  }
  if (signals.length > 4) lines.push(`… and ${signals.length - 4} more`);
  const tooltip = $("#tooltip");
  tooltip.textContent = lines.join("\n");
  tooltip.hidden = false;
  const box = $("#chart");
  const left = Math.min(param.point.x + 18, Math.max(0, box.clientWidth - tooltip.offsetWidth - 8));
  tooltip.style.left = left + "px";
  tooltip.style.top = (box.offsetTop + param.point.y + 18) + "px";
  const ids = new Set(signals.map((s) => s.id));
  for (const row of document.querySelectorAll("#signals tbody tr")) row.classList.toggle("highlight", ids.has(row.dataset.signal));
}

// --- patterns and the correlation graph ------------------------------------------------------------------------

async function refreshPatterns(run) {
  const panel = $("#patterns-panel");
  try {
    const answer = await getJson("/v1/patterns/similar", params(run, {timeframe: run.timeframe, k: 5}));
    if (state.run !== run) return;
    panelState(panel, "");
    renderPatterns(panel, answer);
  } catch (error) {
    if (failed(run, error)) return;
    panelState(panel, describeFailure(error), {hidden: error.status === 404});
  }
}

async function refreshGraph(run) {
  const panel = $("#graph-panel");
  try {
    const rows = (await getJson("/v1/graph/neighbors", {symbol: run.symbol, depth: 2})).data;
    if (state.run !== run) return;
    panelState(panel, rows.length ? "" : "none yet");
    const known = new Set(state.series.map((s) => s.symbol));
    renderGraph($("#graph"), run.symbol, rows, chooseSymbol, (symbol) => known.has(symbol));
  } catch (error) {
    if (failed(run, error)) return;
    panelState(panel, describeFailure(error), {hidden: error.status === 404});
  }
}

function chooseSymbol(symbol) {
  const current = state.run;
  let index = state.series.findIndex((s) => s.symbol === symbol && current && s.broker === current.broker);
  if (index < 0) index = state.series.findIndex((s) => s.symbol === symbol);
  if (index < 0) return;
  $("#symbol").value = String(index);
  select();
}

// --- start --------------------------------------------------------------------------------------------------------

async function boot() {
  if (!window.LightweightCharts) {
    status("The chart library did not load.", {error: true});
    return;
  }
  const health = new HealthStrip($("#health"));
  health.refresh();
  setInterval(() => { if (!document.hidden) health.refresh(); }, REFRESH_MS.health);
  await discover();
  if (getKey()) start();
  else needKey("Enter an API key of your tenant (tickwire keys create --tenant NAME). It stays in this tab only.");
}

boot();
