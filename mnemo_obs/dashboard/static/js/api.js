// Calls to the JSON routes, with the token as a Bearer header when one is set.

/** The server refused the token, or wants one (401). */
export class AuthError extends Error {}

/** Any other failure: an HTTP error (with the server's reason) or no answer at all. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The server's reason from a JSON error body ({title, description}), else the status. */
export async function reason(resp) {
  try {
    const body = await resp.json();
    if (body && (body.title || body.description)) {
      return [body.title, body.description].filter(Boolean).join(": ");
    }
  } catch {
    // Not JSON: say the status.
  }
  return `HTTP ${resp.status}`;
}

export class Api {
  /** `base`: the routes' prefix, relative to the page (the page's data-api). */
  constructor(base) {
    const href = new URL(base, document.baseURI).href;
    this.base = href.endsWith("/") ? href : `${href}/`;
    this.token = null;
  }

  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : { ...extra };
  }

  url(path, params = {}) {
    const url = new URL(path, this.base);
    for (const [name, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) url.searchParams.set(name, value);
    }
    return url;
  }

  /** GET a JSON route; throws AuthError, ApiError, or the AbortError of `signal`. */
  async get(path, params, signal) {
    let resp;
    try {
      resp = await fetch(this.url(path, params), {
        headers: this.headers(),
        signal,
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "The server did not answer.");
    }
    if (resp.status === 401) throw new AuthError(await reason(resp));
    if (!resp.ok) throw new ApiError(resp.status, await reason(resp));
    return resp.json();
  }
}
