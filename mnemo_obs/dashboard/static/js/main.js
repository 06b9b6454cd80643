// The dashboard: reads the state from the URL and the token from the fragment
// or the tab's storage, then refreshes every few seconds with four calls
// (summary, timeseries, endpoints, slowest) and follows the live logs. The
// infrastructure panel, when open, loads on a slower clock of its own.

import { Api, AuthError } from "./api.js";
import { Charts } from "./charts.js";
import { byTestId, copyText, el, toast } from "./dom.js";
import { EndpointTable } from "./endpoints.js";
import * as fmt from "./format.js";
import { InfraPanel } from "./infra.js";
import { LogPanel } from "./logs.js";
import { SlowestTable } from "./slowest.js";
import { readState, writeState } from "./state.js";
import { renderSummary, failSummary } from "./tiles.js";
import { TokenForm, loadToken, storeToken, takeTokenFromFragment } from "./token.js";

const SLOWEST = 10; // rows of the slowest requests

takeTokenFromFragment();
const api = new Api(document.body.dataset.api);
api.token = loadToken();
let state = readState();
writeState(state);

let timer = null;
let controller = null;
let refreshes = 0;
let blocked = false; // a 401: wait for a token, never retry on our own
let services = null;

const periodSelect = byTestId("period-select");
const serviceSelect = byTestId("service-select");
const pauseButton = byTestId("refresh-toggle");
const updated = byTestId("last-updated");
const banner = byTestId("banner");

function change(patch, { reload = true } = {}) {
  state = { ...state, ...patch };
  writeState(state);
  infra.follow(state);
  if (reload) refresh();
}

const charts = new Charts();
const infra = new InfraPanel({
  api,
  onToggle: (open) => change({ infra: open }, { reload: false }),
  onNeedToken: () => needToken(),
});
infra.follow(state);
const table = new EndpointTable({
  onSort: (key) => {
    const dir = state.sort === key && state.dir === "desc" ? "asc" : "desc";
    change({ sort: key, dir }, { reload: false });
    table.resort(state);
  },
  onSelect: (endpoint) => {
    change({ endpoint });
    showEndpoint();
  },
});

const logs = new LogPanel({
  streamPath: document.body.dataset.logs,
  api,
  onTrace: (trace) => followTrace(trace),
  onNeedToken: () => tokenForm.show("Enter the token of the live logs."),
});

async function onTrace(trace) {
  const copied = await copyText(trace);
  followTrace(trace);
  toast(copied ? "Trace id copied; its logs are below." : "Its logs are below (copying was refused).");
  if (document.body.dataset.logs) byTestId("log-panel").scrollIntoView({ block: "nearest" });
}

const slowest = new SlowestTable({ onTrace });

function followTrace(trace) {
  change({ trace }, { reload: false });
  showTrace();
  logs.follow({ level: state.level, trace: state.trace });
}

const tokenForm = new TokenForm((token) => {
  api.token = token || null;
  storeToken(api.token);
  blocked = false;
  tokenForm.hide();
  toast(token ? "Token set for this tab." : "Token forgotten.");
  refresh();
  infra.refresh();
  logs.start();
});

function showEndpoint() {
  byTestId("endpoint-filter").hidden = state.endpoint === null;
  byTestId("endpoint-filter-name").textContent = state.endpoint ?? "";
}

function showTrace() {
  byTestId("log-trace-filter").hidden = state.trace === null;
  byTestId("log-trace-filter-id").textContent = state.trace ?? "";
}

function showServices(names) {
  const key = JSON.stringify(names);
  const control = byTestId("service-control");
  control.hidden = names.length < 2 && state.service === null;
  if (key === services) return; // unchanged: leave an open list alone
  services = key;
  const options = [el("option", { text: "all services", attrs: { value: "*" } })];
  names.forEach((name, index) => {
    options.push(el("option", { text: name === "" ? "(no service)" : name, attrs: { value: String(index) } }));
  });
  serviceSelect.replaceChildren(...options);
  serviceSelect.dataset.names = key;
  const chosen = names.indexOf(state.service);
  serviceSelect.value = chosen >= 0 ? String(chosen) : "*";
}

function needToken() {
  blocked = true;
  clearTimeout(timer);
  infra.stop();
  const refused = Boolean(api.token);
  if (refused) {
    api.token = null;
    storeToken(null);
  }
  tokenForm.show(
    refused
      ? "The server refused this token (401). Check it and enter it again."
      : "This dashboard's data needs the monitoring token.",
    refused,
  );
}

function schedule() {
  clearTimeout(timer);
  if (!state.paused && !blocked && !document.hidden) timer = setTimeout(refresh, state.refresh * 1000);
}

/** One refresh: the four calls at once, then each part drawn (or failed) on its own. */
async function refresh() {
  clearTimeout(timer);
  if (controller) controller.abort();
  const mine = (controller = new AbortController());
  performance.mark("mnemo-refresh-start");
  const common = { period_hours: state.period, service: state.service };
  const filtered = { ...common, endpoint: state.endpoint };
  const results = await Promise.allSettled([
    api.get("summary", common, mine.signal),
    api.get("timeseries", filtered, mine.signal),
    api.get("endpoints", common, mine.signal),
    api.get("slowest", { ...filtered, limit: SLOWEST }, mine.signal),
  ]);
  if (mine !== controller) return; // a newer refresh took over
  controller = null;
  if (results.some((r) => r.status === "rejected" && r.reason instanceof AuthError)) {
    needToken();
    return;
  }
  performance.mark("mnemo-refresh-data");
  const [summary, series, endpoints, slow] = results;
  const problem = (r) => (r.reason && r.reason.message) || String(r.reason);
  if (summary.status === "fulfilled") {
    renderSummary(summary.value);
    if (summary.value.api && Array.isArray(summary.value.api.services)) showServices(summary.value.api.services);
  } else {
    failSummary(problem(summary));
  }
  if (series.status === "fulfilled") charts.draw(series.value);
  else charts.fail(problem(series));
  if (endpoints.status === "fulfilled") table.render(endpoints.value, state);
  else table.fail(problem(endpoints));
  if (slow.status === "fulfilled") slowest.render(slow.value, state);
  else slowest.fail(problem(slow));
  const failed = results.filter((r) => r.status === "rejected");
  banner.hidden = failed.length < results.length;
  banner.textContent = failed.length === results.length ? `The server did not answer: ${problem(failed[0])}` : "";
  performance.measure("mnemo-refresh", "mnemo-refresh-start");
  performance.measure("mnemo-render", "mnemo-refresh-data");
  refreshes += 1;
  if (refreshes % 200 === 0) performance.clearMeasures();
  document.body.dataset.refreshes = String(refreshes);
  updated.textContent = `updated ${fmt.clock(new Date())}`;
  schedule();
}

function showPaused() {
  pauseButton.textContent = state.paused ? "Resume" : "Pause";
  pauseButton.setAttribute("aria-pressed", String(state.paused));
}

periodSelect.value = state.period;
periodSelect.addEventListener("change", () => change({ period: periodSelect.value }));
serviceSelect.addEventListener("change", () => {
  const names = JSON.parse(serviceSelect.dataset.names || "[]");
  const value = serviceSelect.value;
  change({ service: value === "*" ? null : names[Number(value)] });
});
byTestId("endpoint-filter-clear").addEventListener("click", () => {
  change({ endpoint: null });
  showEndpoint();
});
pauseButton.addEventListener("click", () => {
  change({ paused: !state.paused }, { reload: false });
  showPaused();
  if (state.paused) clearTimeout(timer);
  else refresh();
});
byTestId("token-button").addEventListener("click", () =>
  tokenForm.show(api.token ? "A token is set for this tab. Enter another, or forget it." : "Enter the monitoring token."),
);
const levelSelect = byTestId("log-level");
levelSelect.value = state.level;
levelSelect.addEventListener("change", () => {
  change({ level: levelSelect.value }, { reload: false });
  logs.follow({ level: state.level, trace: state.trace });
});
byTestId("log-trace-clear").addEventListener("click", () => {
  change({ trace: null }, { reload: false });
  showTrace();
  logs.follow({ level: state.level, trace: null });
});
// A hidden tab stops polling and closes its log stream (each holds a server thread).
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    infra.stop();
    logs.stop();
  } else {
    if (!blocked) {
      refresh();
      infra.refresh();
    }
    logs.start();
  }
});

showPaused();
showEndpoint();
showTrace();
refresh();
infra.show(state.infra);
logs.follow({ level: state.level, trace: state.trace });
