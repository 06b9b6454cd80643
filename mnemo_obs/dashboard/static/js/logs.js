// The live log panel: a tail of the app's log records, read from the SSE route
// with fetch() and the token as a header. It resumes with Last-Event-ID when a
// stream ends (each lives a minute), backs off when the server is at its stream
// cap (503), and says what to do when the token is missing (401) or no token is
// configured for logs at all (403).

import { reason } from "./api.js";
import { byTestId, el } from "./dom.js";
import * as fmt from "./format.js";
import { SSEParser } from "./sse.js";

const KEEP = 500; // entries kept on the page; the oldest go first
const MAX_BACKOFF = 30000;
const NO_TOKEN =
  "The live logs always need a token. Enter it; if the server has none, set one: " +
  "log_token= (or token=) in mnemo_obs.install(), or $MNEMO_OBS_TOKEN.";

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });

export class LogPanel {
  /**
   * `streamPath`: the stream route relative to the page ("" without live logs);
   * `api`: gives the headers (the token); `onTrace(id)` when a record's trace id
   * is clicked; `onNeedToken()` for the panel's token button.
   */
  constructor({ streamPath, api, onTrace, onNeedToken }) {
    this.url = streamPath ? new URL(streamPath, document.baseURI) : null;
    this.api = api;
    this.onTrace = onTrace;
    this.list = byTestId("log-list");
    this.status = byTestId("log-status");
    this.tokenButton = byTestId("log-token-button");
    this.tokenButton.addEventListener("click", onNeedToken);
    this.filters = { level: "", trace: null };
    this.lastId = null;
    this.seen = new Set();
    this.controller = null;
  }

  say(text, state = "ok") {
    this.status.textContent = text;
    this.status.dataset.state = state;
  }

  /** Follow the stream with these filters, from a fresh tail. */
  follow(filters) {
    this.filters = { ...filters };
    this.lastId = null;
    this.seen.clear();
    this.list.replaceChildren();
    this.start();
  }

  /** (Re)connect, resuming after the last id if there is one. */
  start() {
    this.stop();
    if (!this.url) {
      this.say("Live logs are off on this server (install(..., logs=False)).", "off");
      return;
    }
    if (!this.api.token) {
      // The stream always needs a token: asking without one can only be refused.
      this.say(NO_TOKEN, "error");
      this.tokenButton.hidden = false;
      return;
    }
    this.controller = new AbortController();
    this.run(this.controller.signal);
  }

  /** Close the stream (it frees a server thread); start() resumes. */
  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  request() {
    const url = new URL(this.url);
    if (this.filters.trace) url.searchParams.set("trace_id", this.filters.trace);
    if (this.filters.level) url.searchParams.set("level", this.filters.level);
    const extra = this.lastId ? { "Last-Event-ID": this.lastId } : {};
    return [url, this.api.headers(extra)];
  }

  async run(signal) {
    let backoff = 1000;
    this.tokenButton.hidden = true;
    while (!signal.aborted) {
      const [url, headers] = this.request();
      let resp;
      try {
        resp = await fetch(url, { headers, signal, cache: "no-store", credentials: "same-origin" });
      } catch {
        if (signal.aborted) return;
        this.say(`The log stream failed; trying again in ${backoff / 1000} s.`, "error");
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
        continue;
      }
      if (resp.status === 401 || resp.status === 403 || resp.status === 400) {
        await this.refused(resp);
        return; // nothing changes until the token or a filter does
      }
      if (resp.status === 503) {
        // Over the server's stream cap. Retry-After is when a stream will surely
        // end; a stream this page just closed frees its slot within seconds, so
        // try sooner, backing off, but never later than the server said.
        const until = Math.max(Number(resp.headers.get("Retry-After")) || 5, 1) * 1000;
        const wait = Math.min(backoff, until);
        this.say(`${await reason(resp)} Trying again in ${Math.round(wait / 100) / 10} s.`, "error");
        await sleep(wait, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
        continue;
      }
      if (!resp.ok) {
        this.say(`${await reason(resp)}; trying again in ${backoff / 1000} s.`, "error");
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF);
        continue;
      }
      backoff = 1000;
      const retry = await this.read(resp, signal);
      if (signal.aborted) return;
      // The stream's lifetime is over (or the server went away): resume after the last id.
      this.say("Reconnecting…", "wait");
      await sleep(retry, signal);
    }
  }

  async refused(resp) {
    const why = await reason(resp);
    if (resp.status === 401) {
      this.say("The live logs refused this token (401). Enter the logs' token.", "error");
      this.tokenButton.hidden = false;
    } else {
      this.say(why, "error"); // 403: how to set a token; 400: which filter is wrong
    }
  }

  /** Read one response to its end; the retry delay the server asked for. */
  async read(resp, signal) {
    const parser = new SSEParser((event) => this.event(event));
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
        if (parser.lastId) this.lastId = parser.lastId;
      }
    } catch {
      // Aborted, or the connection dropped: resume from the last id either way.
    } finally {
      if (parser.lastId) this.lastId = parser.lastId;
      if (signal.aborted) reader.cancel().catch(() => {});
    }
    return parser.retry ?? 1000;
  }

  event({ type, data }) {
    let payload;
    try {
      payload = JSON.parse(data);
    } catch {
      return;
    }
    if (type === "hello") {
      const where = payload.source === "redis" ? "every process, through Redis" : "this process";
      this.say(`Live: ${where}${payload.reason ? ` (${payload.reason})` : ""}.`);
    } else if (type === "log") {
      this.append(payload);
    } else if (type === "gap") {
      const lost = payload.lost === null ? "Some records" : `${fmt.number(payload.lost)} records`;
      this.notice(`${lost} were lost here (${payload.reason}).`);
    }
  }

  entry(record) {
    const parts = [
      el("span", { className: "time", text: fmt.clock(record.time) }),
      el("span", { className: "level", text: record.level }),
      el("span", { className: "logger", text: record.logger }),
      el("span", { className: "message", text: record.message }),
    ];
    if (record.trace_id) {
      const button = el("button", {
        className: "trace",
        text: record.trace_id,
        title: "Show only this request's logs",
        attrs: { type: "button" },
      });
      button.addEventListener("click", () => this.onTrace(record.trace_id));
      parts.push(button);
    }
    if (record.exc) parts.push(el("pre", { text: record.exc }));
    const li = el("li", { className: "log-entry", testid: "log-entry" }, parts);
    li.dataset.level = record.level;
    li.dataset.id = record.id;
    if (record.trace_id) li.dataset.traceId = record.trace_id;
    return li;
  }

  append(record) {
    if (this.seen.has(record.id)) return;
    this.seen.add(record.id);
    this.add(this.entry(record));
  }

  notice(text) {
    this.add(el("li", { className: "log-entry notice-row", testid: "log-notice", text }));
  }

  add(node) {
    const list = this.list;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(node);
    while (list.children.length > KEEP) {
      const first = list.firstElementChild;
      if (first.dataset.id) this.seen.delete(first.dataset.id);
      first.remove();
    }
    if (atBottom) list.scrollTop = list.scrollHeight;
  }
}
