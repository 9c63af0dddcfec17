// The price chart: candles and volume, indicator overlays (price pane) and indicator panes (RSI, MACD, ATR),
// signal markers. Lightweight Charts (vendored, window.LightweightCharts) draws on canvases.
"use strict";

const LWC = window.LightweightCharts;

export const COLORS = {
  up: "#26a69a", down: "#ef5350", upVolume: "rgba(38, 166, 154, 0.35)", downVolume: "rgba(239, 83, 80, 0.35)",
  buy: "#1e40ff", sell: "#ff8f00", close: "#8e24aa",
};

// Overlays on the price pane, by group name: the indicator names each draws and their colours.
const OVERLAY_COLORS = {sma_20: "#e6c200", sma_50: "#795548", ema_20: "#00b8d4", ema_50: "#c51162", vwap: "#2e7d32"};
const EXTRA_COLORS = ["#ff5722", "#3f51b5", "#009688", "#9c27b0", "#607d8b", "#cddc39"];
const BB_COLOR = "#7c4dff";

export function overlayGroups(names) {
  // names: every indicator name seen on the bars -> [{id, label, series: [{name, color}]}]
  const groups = [];
  let extra = 0;
  const sorted = [...names].sort((a, b) => a.localeCompare(b, "en", {numeric: true}));
  for (const name of sorted) {
    if (/^(sma|ema)_\d+$/.test(name) || name === "vwap") {
      const color = OVERLAY_COLORS[name] || EXTRA_COLORS[extra++ % EXTRA_COLORS.length];
      groups.push({id: name, label: name.replace("_", " ").toUpperCase(), series: [{name, color}]});
    }
  }
  if (names.has("bb_upper") || names.has("bb_middle") || names.has("bb_lower")) {
    groups.push({id: "bb", label: "Bollinger", series: [
      {name: "bb_upper", color: BB_COLOR}, {name: "bb_middle", color: BB_COLOR, dashed: true},
      {name: "bb_lower", color: BB_COLOR}]});
  }
  return groups;
}

// Panes under the price pane: what each draws.
export const PANE_GROUPS = [
  {id: "rsi", label: "RSI 14", needs: ["rsi_14"], series: [{name: "rsi_14", color: "#0091ea"}], levels: [30, 70]},
  {id: "macd", label: "MACD", needs: ["macd"], series: [
    {name: "macd_hist", histogram: true}, {name: "macd", color: "#3949ab"}, {name: "macd_signal", color: "#ef6c00"}]},
  {id: "atr", label: "ATR 14", needs: ["atr_14"], series: [{name: "atr_14", color: "#6d4c41"}]},
];

function seconds(ms) { return Math.floor(ms / 1000); }

export class PriceChart {
  constructor(container) {
    this.container = container;
    this.chart = LWC.createChart(container, {
      autoSize: true,
      layout: {background: {type: "solid", color: "#ffffff"}, textColor: "#1d232a", attributionLogo: false,
               panes: {separatorColor: "#d9dde3"}},
      grid: {vertLines: {color: "#f0f2f5"}, horzLines: {color: "#f0f2f5"}},
      timeScale: {timeVisible: true, secondsVisible: false, rightOffset: 4},
      rightPriceScale: {borderColor: "#d9dde3"},
      crosshair: {mode: LWC.CrosshairMode.Normal},
    });
    this.candles = this.chart.addSeries(LWC.CandlestickSeries, {
      upColor: COLORS.up, downColor: COLORS.down, wickUpColor: COLORS.up, wickDownColor: COLORS.down,
      borderVisible: false});
    this.volume = this.chart.addSeries(LWC.HistogramSeries, {
      priceFormat: {type: "volume"}, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false});
    this.chart.priceScale("volume").applyOptions({scaleMargins: {top: 0.82, bottom: 0}});
    this.markers = LWC.createSeriesMarkers(this.candles, []);
    this.bars = [];
    this.forming = null;
    this.precision = null;  // set from the data (setPrecision)
    this.overlays = new Map();  // group id -> [series]
    this.panes = new Map();     // group id -> [series]
    this.paneOrder = [];
  }

  onHover(handler) { this.chart.subscribeCrosshairMove(handler); }

  /** Show every bar (after a new selection's first bars). */
  fit() { this.chart.timeScale().fitContent(); }

  setPrecision(precision) {
    if (precision === this.precision) return;
    this.precision = precision;
    const priceFormat = {type: "price", precision, minMove: Math.pow(10, -precision)};
    this.candles.applyOptions({priceFormat});
    for (const list of this.overlays.values()) for (const series of list) series.applyOptions({priceFormat});
  }

  /** Closed bars (oldest first) and the bar being formed from live ticks (or null). */
  setBars(bars, forming) {
    this.bars = bars;
    this.forming = forming && (!bars.length || forming.start_ms > bars[bars.length - 1].start_ms) ? forming : null;
    const shown = this.forming ? [...bars, this.forming] : bars;
    this.candles.setData(shown.map((bar) => ({time: seconds(bar.start_ms), open: bar.open, high: bar.high,
                                               low: bar.low, close: bar.close})));
    this.volume.setData(shown.map((bar) => ({time: seconds(bar.start_ms), value: volumeOf(bar),
                                              color: bar.close >= bar.open ? COLORS.upVolume : COLORS.downVolume})));
    for (const [id, list] of this.overlays) this._fill(id, list, this._overlaySpec(id));
    for (const [id, list] of this.panes) this._fill(id, list, PANE_GROUPS.find((g) => g.id === id));
    this.container.dataset.bars = String(shown.length);
  }

  /** The bar being formed from live ticks changed (same or later start than the last one shown). */
  updateForming(bar) {
    if (this.bars.length && bar.start_ms <= this.bars[this.bars.length - 1].start_ms) return;
    this.forming = bar;
    this.candles.update({time: seconds(bar.start_ms), open: bar.open, high: bar.high, low: bar.low, close: bar.close});
    this.volume.update({time: seconds(bar.start_ms), value: volumeOf(bar),
                        color: bar.close >= bar.open ? COLORS.upVolume : COLORS.downVolume});
    this.container.dataset.bars = String(this.bars.length + 1);
  }

  setOverlayGroups(groups) { this.overlayGroupsKnown = groups; }

  _overlaySpec(id) { return (this.overlayGroupsKnown || []).find((g) => g.id === id); }

  showOverlay(group, shown) {
    const present = this.overlays.get(group.id);
    if (shown && !present) {
      const precision = this.precision === null ? 5 : this.precision;
      const priceFormat = {type: "price", precision, minMove: Math.pow(10, -precision)};
      const list = group.series.map((spec) => this.chart.addSeries(LWC.LineSeries, {
        color: spec.color, lineWidth: 2, lineStyle: spec.dashed ? LWC.LineStyle.Dashed : LWC.LineStyle.Solid,
        priceLineVisible: false, lastValueVisible: true, crosshairMarkerVisible: false, priceFormat,
        title: spec.name}));
      this.overlays.set(group.id, list);
      this._fill(group.id, list, group);
    } else if (!shown && present) {
      for (const series of present) this.chart.removeSeries(series);
      this.overlays.delete(group.id);
    }
    this._publish();
  }

  showPane(group, shown) {
    const present = this.panes.has(group.id);
    if (shown === present) return;
    // Panes are numbered in order and an empty pane goes away, so all indicator panes are laid out again.
    for (const list of this.panes.values()) for (const series of list) this.chart.removeSeries(series);
    this.panes.clear();
    this.paneOrder = shown ? [...this.paneOrder, group.id] : this.paneOrder.filter((id) => id !== group.id);
    this.paneOrder.forEach((id, index) => {
      const spec = PANE_GROUPS.find((g) => g.id === id);
      const list = spec.series.map((s) => s.histogram
        ? this.chart.addSeries(LWC.HistogramSeries, {priceLineVisible: false, lastValueVisible: false,
                                                     title: s.name, priceFormat: this._paneFormat(spec)}, index + 1)
        : this.chart.addSeries(LWC.LineSeries, {color: s.color, lineWidth: 2, priceLineVisible: false,
                                                crosshairMarkerVisible: false, title: s.name,
                                                priceFormat: this._paneFormat(spec)}, index + 1));
      for (const level of spec.levels || []) {
        list[0].createPriceLine({price: level, color: "#9aa3ad", lineWidth: 1, lineStyle: LWC.LineStyle.Dashed,
                                 axisLabelVisible: false});
      }
      this.panes.set(id, list);
      this._fill(id, list, spec);
    });
    const panes = this.chart.panes();
    if (panes.length) panes[0].setStretchFactor(3);
    this._publish();
  }

  _paneFormat(spec) {
    // RSI is 0..100; MACD and ATR are price differences: more digits than the price itself.
    const precision = spec.id === "rsi" ? 2 : Math.min((this.precision === null ? 5 : this.precision) + 1, 10);
    return {type: "price", precision, minMove: Math.pow(10, -precision)};
  }

  _fill(id, list, group) {
    if (!group) return;
    group.series.forEach((spec, index) => {
      const points = [];
      for (const bar of this.bars) {
        const value = (bar.indicators || {})[spec.name];
        if (typeof value !== "number") continue;
        const point = {time: seconds(bar.start_ms), value};
        if (spec.histogram) point.color = value >= 0 ? "rgba(38, 166, 154, 0.6)" : "rgba(239, 83, 80, 0.6)";
        points.push(point);
      }
      list[index].setData(points);
    });
  }

  _publish() {
    this.container.dataset.overlays = [...this.overlays.keys()].join(",");
    this.container.dataset.panes = this.paneOrder.join(",");
  }

  /** Markers: [{id, time_ms (a shown bar's start), action}] */
  setMarkers(markers) {
    const shapes = {
      buy: {position: "belowBar", shape: "arrowUp", color: COLORS.buy},
      sell: {position: "aboveBar", shape: "arrowDown", color: COLORS.sell},
      close: {position: "aboveBar", shape: "circle", color: COLORS.close},
    };
    const drawn = markers.filter((m) => shapes[m.action]).sort((a, b) => a.time_ms - b.time_ms)
      .map((m) => ({id: m.id, time: seconds(m.time_ms), size: 1.4, text: m.action.toUpperCase(), ...shapes[m.action]}));
    this.markers.setMarkers(drawn);
    this.container.dataset.markers = String(drawn.length);
  }

  /** The start (ms) of the shown bar holding ``time_ms``, or null. */
  barAt(time_ms) {
    const shown = this.forming ? [...this.bars, this.forming] : this.bars;
    for (let i = shown.length - 1; i >= 0; i--) {
      const bar = shown[i];
      if (bar.start_ms <= time_ms) return time_ms < bar.end_ms ? bar.start_ms : null;
    }
    return null;
  }
}

function volumeOf(bar) {
  if (bar.volume_real > 0) return bar.volume_real;
  if (bar.volume > 0) return bar.volume;
  return bar.ticks || 0;
}
