// The per-endpoint table: sortable by each figure; a click on a row (or Enter)
// shows that endpoint in the charts and the slowest requests, a second click
// shows every endpoint again.

import { byTestId, el } from "./dom.js";
import * as fmt from "./format.js";

// Sort key (in the URL) -> the field of /endpoints and how it is shown.
export const COLUMNS = {
  count: { field: "request_count", show: (v) => fmt.number(v) },
  rps: { field: "requests_per_second", show: fmt.perSecond },
  errors: { field: "error_rate", show: fmt.percent },
  p50: { field: "p50_latency_ms", show: fmt.ms },
  p95: { field: "p95_latency_ms", show: fmt.ms },
  p99: { field: "p99_latency_ms", show: fmt.ms },
  total: { field: "total_time_ms", show: fmt.duration },
};

/** Rows ordered by `sort` (a COLUMNS key), nulls last either way, then by name. */
export function sortRows(rows, sort, dir) {
  const field = COLUMNS[sort].field;
  const sign = dir === "asc" ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = a[field];
    const y = b[field];
    if (x === null || y === null) {
      if (x !== y) return x === null ? 1 : -1;
    } else if (x !== y) {
      return sign * (x - y);
    }
    return `${a.endpoint} ${a.method}`.localeCompare(`${b.endpoint} ${b.method}`);
  });
}

export class EndpointTable {
  /** `onSort(key)` when a header is clicked; `onSelect(endpoint)` when a row is. */
  constructor({ onSort, onSelect }) {
    this.table = byTestId("endpoints-table");
    this.body = this.table.querySelector("tbody");
    this.onSelect = onSelect;
    for (const button of this.table.querySelectorAll("th button[data-sort]")) {
      button.addEventListener("click", () => onSort(button.dataset.sort));
    }
  }

  headers(state) {
    for (const button of this.table.querySelectorAll("th button[data-sort]")) {
      const th = button.parentElement;
      if (button.dataset.sort === state.sort) {
        th.setAttribute("aria-sort", state.dir === "asc" ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    }
  }

  row(entry, state, manyServices) {
    const name = el("td", { className: "name" }, [
      el("span", { className: "method", text: entry.method }),
      el("span", { className: "endpoint", text: entry.endpoint }),
      manyServices ? el("span", { className: "service", text: entry.service || "(no service)" }) : null,
    ]);
    const cells = Object.values(COLUMNS).map(({ field, show }) =>
      el("td", { className: "num", text: show(entry[field]) }),
    );
    const selected = state.endpoint === entry.endpoint;
    const tr = el("tr", { testid: "endpoint-row", attrs: { tabindex: "0", "aria-selected": String(selected) } }, [name, ...cells]);
    const choose = () => this.onSelect(selected ? null : entry.endpoint);
    tr.addEventListener("click", choose);
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose();
      }
    });
    return tr;
  }

  render(answer, state) {
    this.rows = answer.endpoints || [];
    this.state = state;
    this.headers(state);
    const services = new Set(this.rows.map((r) => r.service));
    const rows = sortRows(this.rows, state.sort, state.dir).map((r) => this.row(r, state, services.size > 1));
    if (!rows.length) {
      rows.push(el("tr", {}, [el("td", { className: "empty", text: "No requests in this period.", attrs: { colspan: "8" } })]));
    }
    this.body.replaceChildren(...rows);
  }

  /** Sorted again from the last answer, without a call. */
  resort(state) {
    if (this.rows) this.render({ endpoints: this.rows }, state);
  }

  fail(message) {
    this.body.replaceChildren(el("tr", {}, [el("td", { className: "empty error", text: message, attrs: { colspan: "8" } })]));
  }
}
