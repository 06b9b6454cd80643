// The token: taken from the URL fragment (#token=...) or asked for, kept in
// sessionStorage (this tab only), sent as a header. The fragment never reaches
// the server, and is removed from the address bar as soon as it is read.

import { byTestId } from "./dom.js";

const KEY = "mnemo_obs.token";

export function loadToken() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the form asks on each load
  }
}

export function storeToken(token) {
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage disabled: the token lives as long as the page.
  }
}

/** Read `#token=...` into sessionStorage and take it out of the address bar. */
export function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token === null) return;
  if (token) storeToken(token);
  history.replaceState(null, "", `${location.pathname}${location.search}`);
}

/** The form that asks for the token. `onToken(token)` gets what was entered, "" to forget. */
export class TokenForm {
  constructor(onToken) {
    this.panel = byTestId("token-panel");
    this.form = byTestId("token-form");
    this.input = byTestId("token-input");
    this.message = byTestId("token-message");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const token = this.input.value.trim();
      if (!token) return;
      this.input.value = "";
      onToken(token);
    });
    byTestId("token-forget").addEventListener("click", () => {
      this.input.value = "";
      onToken("");
    });
    byTestId("token-cancel").addEventListener("click", () => this.hide());
  }

  /** Ask; `error` marks the message as a refusal rather than a request. */
  show(message, error = false) {
    this.message.textContent = message;
    this.panel.dataset.state = error ? "error" : "ask";
    this.panel.hidden = false;
    this.input.focus();
  }

  hide() {
    this.panel.hidden = true;
  }
}
