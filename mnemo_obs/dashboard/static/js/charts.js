// The two charts, drawn by uPlot from one /timeseries answer: p50/p95/p99
// latency, and requests with errors, per step. Colours come from the CSS, so
// they follow the light or dark theme; a theme change redraws. The palette,
// axes, isolated points and width are shared with the infrastructure panel.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import * as fmt from "./format.js";
import { byTestId } from "./dom.js";

const HEIGHT = 230;

/** The charts' colours, read from the CSS variables of the current theme. */
export function palette() {
  const style = getComputedStyle(document.documentElement);
  const read = (name) => style.getPropertyValue(name).trim();
  return {
    fg: read("--muted"),
    grid: read("--grid"),
    p50: read("--p50"),
    p95: read("--p95"),
    p99: read("--p99"),
    req: read("--req"),
    reqFill: read("--req-fill"),
    err: read("--bad"),
    errFill: read("--err-fill"),
    lines: ["--line-1", "--line-2", "--line-3", "--line-4"].map(read), // one per source
  };
}

/** A time axis and a value axis whose ticks end with `unit`. */
export function axes(colors, unit) {
  const axis = { stroke: colors.fg, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid, width: 1 } };
  return [
    { ...axis, space: 70 },
    { ...axis, size: 64, values: (u, ticks) => ticks.map((t) => `${fmt.number(t, 1)}${unit}`) },
  ];
}

/** Points for values with no neighbour (no line to draw them), when uPlot shows none. */
export function isolated(u, index, show) {
  if (show) return null;
  const ys = u.data[index];
  const found = [];
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] !== null && (i === 0 || ys[i - 1] === null) && (i === ys.length - 1 || ys[i + 1] === null)) found.push(i);
  }
  return found.length ? found : null;
}

function latencyOptions(colors, width) {
  const line = (label, stroke) => ({
    label,
    stroke,
    width: 2,
    points: { size: 6, filter: isolated },
    value: (u, v) => fmt.ms(v),
  });
  return {
    width,
    height: HEIGHT,
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: axes(colors, " ms"),
    series: [{}, line("p50", colors.p50), line("p95", colors.p95), line("p99", colors.p99)],
  };
}

function trafficOptions(colors, width) {
  const bars = uPlot.paths.bars({ size: [0.8, 40] });
  return {
    width,
    height: HEIGHT,
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: axes(colors, ""),
    series: [
      {},
      { label: "requests", stroke: colors.req, fill: colors.reqFill, width: 0, paths: bars, points: { show: false }, value: (u, v) => fmt.number(v) },
      { label: "errors", stroke: colors.err, fill: colors.errFill, width: 0, paths: bars, points: { show: false }, value: (u, v) => fmt.number(v) },
    ],
  };
}

/** A chart's width: its holder's, at least 240 px (a closed or hidden holder has none). */
export function plotWidth(holder) {
  return Math.max(240, holder.clientWidth || 0);
}

class Chart {
  constructor(testid, options, columns) {
    this.figure = byTestId(testid);
    this.holder = this.figure.querySelector(".plot");
    this.error = this.figure.querySelector('[data-part="error"]');
    this.note = this.figure.querySelector('[data-part="note"]');
    this.options = options;
    this.columns = columns;
    this.plot = null;
    this.data = null;
  }

  width() {
    return plotWidth(this.holder);
  }

  draw(series) {
    const points = series.points || [];
    const xs = points.map((p) => Date.parse(p.start) / 1000);
    this.data = [xs, ...this.columns.map((key) => points.map((p) => p[key]))];
    if (this.plot === null) {
      this.plot = new uPlot(this.options(palette(), this.width()), this.data, this.holder);
    } else {
      this.plot.setData(this.data);
    }
    const step = series.step_seconds >= 3600 ? `${series.step_seconds / 3600} h` : `${series.step_seconds / 60} min`;
    this.note.textContent = `per ${step}${series.percentiles === "approximate" ? " · percentiles approximate" : ""}`;
    this.error.hidden = true;
    this.figure.dataset.state = "ok";
    this.figure.dataset.points = String(xs.length);
  }

  fail(message) {
    this.error.textContent = message;
    this.error.hidden = false;
    this.figure.dataset.state = "error";
  }

  resize() {
    const width = this.width();
    if (this.plot && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }

  /** Made again, for a theme change (uPlot keeps its colours from its options). */
  rebuild() {
    if (!this.plot) return;
    this.plot.destroy();
    this.plot = new uPlot(this.options(palette(), this.width()), this.data, this.holder);
  }
}

export class Charts {
  constructor() {
    this.latency = new Chart("chart-latency", latencyOptions, ["p50_latency_ms", "p95_latency_ms", "p99_latency_ms"]);
    this.traffic = new Chart("chart-traffic", trafficOptions, ["request_count", "error_count"]);
    const both = [this.latency, this.traffic];
    new ResizeObserver(() => both.forEach((c) => c.resize())).observe(this.latency.figure.parentElement);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => both.forEach((c) => c.rebuild()));
  }

  draw(series) {
    this.latency.draw(series);
    this.traffic.draw(series);
  }

  fail(message) {
    this.latency.fail(message);
    this.traffic.fail(message);
  }
}
