// The slowest requests of the period, slowest first. A click on a trace id
// copies it and, with live logs, shows that request's logs.

import { byTestId, el } from "./dom.js";
import * as fmt from "./format.js";

export class SlowestTable {
  /** `onTrace(traceId)` when a trace id is clicked. */
  constructor({ onTrace }) {
    this.body = byTestId("slowest-table").querySelector("tbody");
    this.note = byTestId("slowest-note");
    this.onTrace = onTrace;
  }

  row(entry) {
    const trace = entry.trace_id
      ? el("button", {
          className: "trace",
          testid: "trace-id",
          text: entry.trace_id,
          title: "Copy this trace id and show its logs",
          attrs: { type: "button" },
        })
      : el("span", { className: "muted", text: fmt.NONE });
    if (entry.trace_id) trace.addEventListener("click", () => this.onTrace(entry.trace_id));
    const status = Number(entry.status_code);
    return el("tr", { testid: "slow-request" }, [
      el("td", {}, [trace]),
      el("td", { className: "name" }, [
        el("span", { className: "method", text: entry.method }),
        el("span", { className: "endpoint", text: entry.endpoint }),
      ]),
      el("td", { className: `num status-${Math.floor(status / 100)}`, text: entry.status_code ?? fmt.NONE }),
      el("td", { className: "num", text: fmt.ms(entry.latency_ms) }),
      el("td", { text: fmt.dateTime(entry.timestamp) }),
    ]);
  }

  render(answer, state) {
    const rows = (answer.requests || []).map((r) => this.row(r));
    if (!rows.length) {
      rows.push(el("tr", {}, [el("td", { className: "empty", text: "No requests in this period.", attrs: { colspan: "5" } })]));
    }
    this.body.replaceChildren(...rows);
    const scope = state.endpoint === null ? "every endpoint" : "this endpoint";
    this.note.textContent = answer.exact
      ? `The slowest requests of ${scope} in the period.`
      : `Over a long period the slowest request of each endpoint per minute, hour or day is kept (${scope}).`;
  }

  fail(message) {
    this.body.replaceChildren(el("tr", {}, [el("td", { className: "empty error", text: message, attrs: { colspan: "5" } })]));
  }
}
