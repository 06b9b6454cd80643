// The view's state lives in the URL query, so a view can be shared or bookmarked.
// Only values that differ from the defaults are written. The token never goes here.

export const PERIODS = ["0.25", "1", "6", "24", "168", "720"];
export const SORTS = ["count", "rps", "errors", "p50", "p95", "p99", "total"];
export const LEVELS = ["", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];
const DEFAULTS = {
  period: "1",
  service: null, // null: every service; "": requests recorded without one
  endpoint: null,
  sort: "total",
  dir: "desc",
  level: "",
  trace: null,
  refresh: 5,
  paused: false,
  infra: false, // the infrastructure panel open
};

function pick(query, name, allowed) {
  const value = query.get(name);
  return allowed.includes(value) ? value : DEFAULTS[name];
}

/** The state that the URL's query string describes; unknown or bad values give defaults. */
export function readState(search = location.search) {
  const query = new URLSearchParams(search);
  const refresh = Number(query.get("refresh"));
  return {
    period: pick(query, "period", PERIODS),
    service: query.has("service") ? query.get("service") : null,
    endpoint: query.has("endpoint") ? query.get("endpoint") : null,
    sort: pick(query, "sort", SORTS),
    dir: pick(query, "dir", ["asc", "desc"]),
    level: pick(query, "level", LEVELS),
    trace: query.get("trace") || null,
    refresh: query.has("refresh") && refresh >= 1 && refresh <= 3600 ? refresh : DEFAULTS.refresh,
    paused: query.get("paused") === "1",
    infra: query.get("infra") === "1",
  };
}

/** Put ``state`` in the address bar (replacing the entry: filters are not history steps). */
export function writeState(state) {
  const query = new URLSearchParams();
  for (const name of Object.keys(DEFAULTS)) {
    const value = state[name];
    if (value === DEFAULTS[name] || value === null || value === undefined) continue;
    query.set(name, value === true ? "1" : String(value));
  }
  const search = query.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}`);
}
