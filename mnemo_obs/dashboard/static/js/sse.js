// A Server-Sent Events parser for a stream read with fetch(): EventSource cannot
// send an Authorization header, and the token must never go in a URL.

export class SSEParser {
  /** `onEvent({type, data, id})` for each event that has data (as EventSource fires). */
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.pending = "";
    this.data = [];
    this.type = "";
    this.lastId = null; // the last id seen, with or without data: where to resume
    this.retry = null;
  }

  /** Feed decoded text as it arrives; complete lines are handled at once. */
  push(text) {
    const lines = (this.pending + text).split("\n");
    this.pending = lines.pop();
    for (const line of lines) this.line(line.endsWith("\r") ? line.slice(0, -1) : line);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the first bytes, pings
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  dispatch() {
    if (this.data.length) {
      this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastId });
    }
    this.data = [];
    this.type = "";
  }
}
