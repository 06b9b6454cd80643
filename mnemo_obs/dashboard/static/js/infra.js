// The infrastructure panel: the sampler's history of four gauges (GET /gauges,
// docs/gauges.md), one small chart each, one line per source. Collapsed by
// default, it calls nothing until opened: then its four calls at once, and
// again on a clock of its own (CLOCK seconds, or the page's refresh interval
// when that is longer), never with the page's refresh.

import uPlot from "../vendor/uplot/uPlot.esm.js";
import { AuthError } from "./api.js";
import { axes, isolated, palette, plotWidth } from "./charts.js";
import { byTestId, el } from "./dom.js";
import * as fmt from "./format.js";

export const CLOCK = 30; // seconds: the sampler's default interval is 60
const HEIGHT = 150;
// The server's steps (collectors/breakdown.py): its default for a window is
// the smallest that gives at most 120 points.
const STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
const EMPTY = "No samples in this window: is the sampler on (sample_interval)?";

const percentScale = () => [0, 100];
const fromZero = (u, min, max) => [0, max > 0 ? max * 1.1 : 1];

// PostgreSQL's connections_total rather than connections_active: the total
// (active and idle) is what runs into max_connections, while the active ones,
// sampled once an interval, are mostly the sampler's own query.
const GAUGES = [
  { type: "redis", name: "memory_used_mb", title: "Redis memory", unit: "MB used", tick: " MB",
    empty: "No samples in this window: is the sampler on, with a Redis configured?" },
  { type: "postgres", name: "connections_total", title: "PostgreSQL connections", unit: "active and idle", tick: "" },
  { type: "system", name: "cpu_percent", title: "Host CPU", unit: "% of all cores", tick: " %", range: percentScale },
  { type: "system", name: "memory_percent", title: "Host memory", unit: "% used", tick: " %", range: percentScale },
];

/** The step the server takes by default for a window of `hours`. */
export function defaultStep(hours) {
  return STEPS.find((step) => (hours * 3600) / step <= 120) ?? STEPS[STEPS.length - 1];
}

/** Seconds as the notes say them: "30 s", "1 min", "6 h". */
function seconds(value) {
  if (value >= 3600) return `${fmt.number(value / 3600, 1)} h`;
  if (value >= 60) return `${fmt.number(value / 60, 1)} min`;
  return `${fmt.number(value, 1)} s`;
}

class GaugeChart {
  constructor(gauge) {
    this.gauge = gauge;
    this.holder = el("div", { className: "plot" });
    this.note = el("span", { className: "muted", attrs: { "data-part": "note" } });
    this.empty = el("p", { className: "empty muted", text: gauge.empty || EMPTY, attrs: { "data-part": "empty" } });
    this.error = el("p", { className: "error", attrs: { "data-part": "error" } });
    this.empty.hidden = true;
    this.error.hidden = true;
    this.figure = el(
      "figure",
      { className: "chart", testid: "infra-chart", attrs: { "data-gauge": `${gauge.type}.${gauge.name}` } },
      [
        el("figcaption", {}, [
          el("span", { text: gauge.title }),
          " ",
          el("span", { className: "muted", text: gauge.unit, attrs: { "data-part": "unit" } }),
          " ",
          this.note,
        ]),
        this.holder,
        this.empty,
        this.error,
      ],
    );
    this.plot = null;
    this.sources = null; // the sources the plot was made for
    this.data = null;
    this.interval = null; // the slowest source's sample interval, from the last answer
  }

  /**
   * The step to ask for: the server's default (null), unless the samples come
   * further apart than that: then the smallest step as long as the interval,
   * or every other point would be empty.
   */
  step(hours) {
    if (!(this.interval > defaultStep(hours))) return null;
    return STEPS.find((step) => step >= this.interval) ?? STEPS[STEPS.length - 1];
  }

  params(hours) {
    const { type, name } = this.gauge;
    return { metric_type: type, metric_name: name, period_hours: hours, step_seconds: this.step(hours) };
  }

  /** The gauge's answer for the window; asked again once if its interval wants another step. */
  async load(api, hours, signal) {
    let body = await api.get("gauges", this.params(hours), signal);
    const intervals = (body.series || []).map((s) => Number(s.interval)).filter((v) => v > 0);
    this.interval = intervals.length ? Math.max(...intervals) : null;
    const step = this.step(hours);
    if (step !== null && step !== body.step_seconds) body = await api.get("gauges", this.params(hours), signal);
    return body;
  }

  options(colors, sources) {
    const { tick } = this.gauge;
    const show = (u, v) => (v === null || v === undefined ? fmt.NONE : `${fmt.number(v)}${tick}`);
    return {
      width: plotWidth(this.holder),
      height: HEIGHT,
      cursor: { drag: { x: false, y: false }, sync: { key: "infra" } },
      scales: { y: { range: this.gauge.range || fromZero } },
      axes: axes(colors, tick),
      series: [
        {},
        ...sources.map((source, i) => ({
          label: source || "(no source)",
          stroke: colors.lines[i % colors.lines.length],
          width: 2,
          points: { size: 5, filter: isolated },
          value: show,
        })),
      ],
    };
  }

  /** One answer of /gauges: a line per source, or the empty state. */
  draw(body) {
    const series = body.series || [];
    const samples = series.reduce((sum, s) => sum + (s.samples || 0), 0);
    this.error.hidden = true;
    if (series.length === 0 || samples === 0) {
      this.figure.dataset.state = "empty";
      this.figure.dataset.series = "0";
      this.figure.dataset.points = "0";
      this.note.textContent = "";
      this.holder.hidden = true;
      this.empty.hidden = false;
      return;
    }
    // Every series has the same points (the window's steps); matched by time all the same.
    const xs = (series[0].points || []).map((p) => Date.parse(p.start) / 1000);
    const at = new Map(xs.map((x, i) => [x, i]));
    const columns = series.map((s) => {
      const ys = new Array(xs.length).fill(null);
      for (const p of s.points || []) {
        const i = at.get(Date.parse(p.start) / 1000);
        if (i !== undefined) ys[i] = p.value; // null: no sample, a gap in the line
      }
      return ys;
    });
    this.data = [xs, ...columns];
    const sources = series.map((s) => String(s.source ?? ""));
    this.empty.hidden = true;
    this.holder.hidden = false;
    const key = JSON.stringify(sources);
    if (this.plot === null || key !== this.sources) {
      if (this.plot) this.plot.destroy();
      this.sources = key;
      this.plot = new uPlot(this.options(palette(), sources), this.data, this.holder);
    } else {
      this.plot.setData(this.data);
    }
    const every = this.interval ? ` · sampled every ${seconds(this.interval)}` : "";
    this.note.textContent = `· per ${seconds(body.step_seconds)}${every}`;
    this.figure.dataset.state = "ok";
    this.figure.dataset.series = String(series.length);
    this.figure.dataset.points = String(xs.length);
  }

  fail(message) {
    this.error.textContent = message;
    this.error.hidden = false;
    this.empty.hidden = true;
    this.holder.hidden = true;
    this.figure.dataset.state = "error";
  }

  resize() {
    const width = plotWidth(this.holder);
    if (this.plot && !this.holder.hidden && width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }

  /** Made again, for a theme change (uPlot keeps its colours from its options). */
  rebuild() {
    if (!this.plot) return;
    this.plot.destroy();
    this.plot = new uPlot(this.options(palette(), JSON.parse(this.sources)), this.data, this.holder);
  }
}

export class InfraPanel {
  /**
   * `api`: the page's Api; `onToggle(open)` when the panel is opened or
   * closed; `onNeedToken()` when the server answers 401.
   */
  constructor({ api, onToggle, onNeedToken }) {
    this.api = api;
    this.onNeedToken = onNeedToken;
    this.details = byTestId("infra-panel");
    this.updated = byTestId("infra-updated");
    this.clock = this.details.querySelector('[data-part="clock"]');
    this.charts = GAUGES.map((gauge) => new GaugeChart(gauge));
    const grid = this.details.querySelector('[data-part="charts"]');
    grid.replaceChildren(...this.charts.map((c) => c.figure));
    this.state = null;
    this.timer = null;
    this.controller = null;
    this.refreshes = 0;
    this.details.addEventListener("toggle", () => {
      onToggle(this.details.open);
      if (this.details.open) this.refresh();
      else this.stop();
    });
    new ResizeObserver(() => this.charts.forEach((c) => c.resize())).observe(grid);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.charts.forEach((c) => c.rebuild()));
  }

  /** Open or close it (as the URL says). */
  show(open) {
    this.details.open = open; // a change fires "toggle", which loads or stops
  }

  /** The page's state changed: a new period loads now; pausing stops the clock, resuming loads. */
  follow(state) {
    const before = this.state;
    this.state = state;
    this.clock.textContent = `refreshed every ${seconds(this.every())}`;
    if (before === null) return;
    if (state.period !== before.period || (before.paused && !state.paused)) this.refresh();
    else if (state.paused) clearTimeout(this.timer);
  }

  /** Stop the clock and any call under way (closed, hidden tab, token asked for). */
  stop() {
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  /** Seconds between its loads: CLOCK, or the page's refresh interval when longer. */
  every() {
    return Math.max(CLOCK, this.state.refresh);
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.details.open || this.state.paused || document.hidden) return;
    this.timer = setTimeout(() => this.refresh(), this.every() * 1000);
  }

  /** The four gauges at once, each drawn (or failed) on its own; nothing while closed. */
  async refresh() {
    this.stop();
    if (!this.details.open || this.state === null) return;
    const mine = (this.controller = new AbortController());
    const hours = this.state.period;
    const results = await Promise.allSettled(this.charts.map((c) => c.load(this.api, hours, mine.signal)));
    if (mine !== this.controller) return; // stopped, or a newer load took over
    this.controller = null;
    if (results.some((r) => r.status === "rejected" && r.reason instanceof AuthError)) {
      this.onNeedToken();
      return;
    }
    results.forEach((r, i) => {
      if (r.status === "fulfilled") this.charts[i].draw(r.value);
      else this.charts[i].fail((r.reason && r.reason.message) || String(r.reason));
    });
    this.refreshes += 1;
    this.details.dataset.refreshes = String(this.refreshes);
    this.updated.textContent = `Updated ${fmt.clock(new Date())}.`;
    this.schedule();
  }
}
