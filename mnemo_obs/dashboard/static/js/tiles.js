// The tiles: figures from the summary, each with its own error state, so a
// failing section (PostgreSQL down, Redis unreachable) never blanks the others.

import { byTestId, el } from "./dom.js";
import * as fmt from "./format.js";

const API_TILES = [
  "tile-rps-minute",
  "tile-rps",
  "tile-request-count",
  "tile-error-rate",
  "tile-p50",
  "tile-p95",
  "tile-p99",
];

function set(id, { value, sub = "", state = "ok", body = null }) {
  const tile = byTestId(id);
  tile.dataset.state = state;
  tile.querySelector(".value").textContent = value;
  tile.querySelector(".sub").textContent = sub;
  const holder = tile.querySelector(".body");
  if (holder) holder.replaceChildren(...(body || []));
}

function fail(id, message) {
  set(id, { value: "unavailable", sub: message, state: "error" });
}

/** A labelled bar (a <meter>, so no inline style is needed) with its figure. */
function gauge(label, percent, figure, { highIsGood = false } = {}) {
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = 100;
  // The meter's colour: green in the good region, amber next to it, red past.
  meter.low = highIsGood ? 50 : 70;
  meter.high = 90;
  meter.optimum = highIsGood ? 100 : 0;
  meter.value = Math.max(0, Math.min(100, Number(percent) || 0));
  meter.title = fmt.percent(percent);
  return el("div", { className: "gauge" }, [
    el("span", { text: label }),
    meter,
    el("span", { className: "figure", text: figure }),
  ]);
}

function count(n, one, many = `${one}s`) {
  return `${fmt.number(n)} ${n === 1 ? one : many}`;
}

function facts(text) {
  return el("p", { className: "facts", text });
}

function precision(api) {
  if (api.percentiles === "exact") return "exact";
  return `approximate (±${fmt.number(100 * (api.relative_error || 0))} %)`;
}

function renderApi(api) {
  if (!api || api.error) {
    for (const id of API_TILES) fail(id, api ? api.error : "no api section");
    return;
  }
  const last = api.last_minute || {};
  set("tile-rps-minute", {
    value: fmt.perSecond(last.requests_per_second),
    sub: last.start ? `the minute from ${fmt.clock(last.start)}` : "",
  });
  set("tile-rps", { value: fmt.perSecond(api.requests_per_second), sub: "over the period" });
  set("tile-request-count", {
    value: fmt.number(api.request_count),
    sub: `since ${fmt.clock(api.window_start)}`,
  });
  set("tile-error-rate", {
    value: fmt.percent(api.error_rate),
    sub: `${fmt.number(api.error_count)} with status ≥ 400`,
    state: api.error_count > 0 ? "warn" : "ok",
  });
  const mark = precision(api);
  for (const p of ["p50", "p95", "p99"]) {
    set(`tile-${p}`, { value: fmt.ms(api[`${p}_latency_ms`]), sub: mark });
  }
}

function renderWriter(writer) {
  if (!writer) {
    fail("tile-writer", "this server has no writer statistics");
    return;
  }
  const drops =
    (writer.dropped_queue_full || 0) +
    (writer.dropped_closed || 0) +
    (writer.dropped_after_retries || 0);
  const rejected = writer.rejected || 0;
  let state = "ok";
  if (writer.queue_depth > 0) state = "warn"; // rows waiting for the next batch: normal under load
  if (drops > 0 || rejected > 0 || writer.healthy === false) state = "bad";
  const body = [
    el("p", {
      className: drops > 0 ? "facts bad" : "facts",
      text: `${fmt.number(drops)} dropped (queue full ${fmt.number(writer.dropped_queue_full)}, after retries ${fmt.number(writer.dropped_after_retries)}, at close ${fmt.number(writer.dropped_closed)})`,
    }),
    facts(`${fmt.number(writer.written)} written in ${count(writer.batches, "batch", "batches")}`),
  ];
  if (rejected > 0) body.push(el("p", { className: "facts bad", text: `${fmt.number(rejected)} rejected by the database` }));
  if (writer.last_error) body.push(el("p", { className: "facts bad", text: `last error: ${writer.last_error}` }));
  set("tile-writer", {
    value: `queue ${fmt.number(writer.queue_depth)}`,
    sub: writer.healthy === false ? "unhealthy: see its last error" : "rows waiting for the next batch",
    state,
    body,
  });
}

function renderRedis(redis) {
  if (!redis || redis.error || redis.connected === false) {
    const message = redis ? redis.error || "not connected" : "no redis section";
    if (/^no Redis configured/.test(message)) {
      set("tile-redis", { value: "not configured", sub: message, state: "off" });
    } else {
      fail("tile-redis", message);
    }
    return;
  }
  set("tile-redis", {
    value: fmt.megabytes(redis.memory_used_mb),
    sub: `of ${fmt.megabytes(redis.memory_max_mb)} (${redis.memory_max_source || "limit"})`,
    body: [
      gauge("memory", redis.memory_percent, fmt.percent(redis.memory_percent)),
      gauge("hit rate", redis.hit_rate, fmt.percent(redis.hit_rate), { highIsGood: true }),
      facts(
        `${count(redis.keys_total, "key")} · ${count(redis.connected_clients, "client")} · ${fmt.number(redis.evicted_keys)} evicted`,
      ),
    ],
  });
}

function renderPostgres(pg) {
  if (!pg || pg.error) {
    fail("tile-postgres", pg ? pg.error : "no postgres section");
    return;
  }
  const used = pg.connections_max ? (100 * pg.connections_total) / pg.connections_max : 0;
  set("tile-postgres", {
    value: `${fmt.number(pg.connections_total)} connections`,
    sub: `${fmt.number(pg.connections_active)} active of ${fmt.number(pg.connections_max)} allowed`,
    state: pg.slow_queries_count > 0 ? "warn" : "ok",
    body: [
      gauge("connections", used, `${fmt.number(used, 0)} %`),
      gauge("cache hits", pg.cache_hit_ratio, fmt.percent(pg.cache_hit_ratio), { highIsGood: true }),
      facts(
        `database ${fmt.megabytes(pg.db_size_mb)} · ${count(pg.slow_queries_count, "slow query", "slow queries")} (${pg.slow_queries_source})`,
      ),
    ],
  });
}

function renderSystem(system) {
  if (!system || system.error) {
    fail("tile-system", system ? system.error : "no system section");
    return;
  }
  const worst = Math.max(system.cpu_percent || 0, system.memory_percent || 0, system.disk_percent || 0);
  set("tile-system", {
    value: `CPU ${fmt.percent(system.cpu_percent)}`,
    sub: count(system.cpu_count, "core"),
    state: worst >= 90 ? "warn" : "ok",
    body: [
      gauge("CPU", system.cpu_percent, fmt.percent(system.cpu_percent)),
      gauge("memory", system.memory_percent, fmt.percent(system.memory_percent)),
      gauge("disk", system.disk_percent, fmt.percent(system.disk_percent)),
      facts(
        `memory ${fmt.megabytes(system.memory_used_mb)} of ${fmt.megabytes(system.memory_total_mb)} · disk ${fmt.number(system.disk_used_gb)} of ${fmt.number(system.disk_total_gb)} GB`,
      ),
    ],
  });
}

/** Every tile from one summary answer. */
export function renderSummary(summary) {
  renderApi(summary.api);
  renderWriter(summary.writer);
  renderRedis(summary.redis);
  renderPostgres(summary.postgres);
  renderSystem(summary.system);
}

/** The summary call itself failed: every tile says so. */
export function failSummary(message) {
  for (const id of [...API_TILES, "tile-writer", "tile-redis", "tile-postgres", "tile-system"]) {
    fail(id, message);
  }
}
