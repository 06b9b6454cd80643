// Building the page. Every value from the API goes in through textContent or a
// property, never as HTML: names of routes, services and log messages are chosen
// by whoever sends requests.

/** The element with this data-testid (the page's stable hooks). */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/**
 * A new element. `options.text` becomes its textContent; `options.attrs` are
 * set one by one (never a style or an event handler: the page's CSP forbids both).
 */
export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined && options.text !== null) node.textContent = String(options.text);
  if (options.testid) node.dataset.testid = options.testid;
  if (options.title) node.title = options.title;
  for (const [name, value] of Object.entries(options.attrs || {})) node.setAttribute(name, value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** Show a short message in the corner for a few seconds. */
export function toast(message) {
  const node = byTestId("toast");
  node.textContent = message;
  node.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { node.hidden = true; }, 3000);
}

/** Copy text to the clipboard; true when it worked. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // Refused (no permission, page not focused): try the old way below.
    }
  }
  // Plain http on another host is not a secure context: no navigator.clipboard.
  const area = el("textarea", { className: "offscreen", attrs: { "aria-hidden": "true" } });
  area.value = text;
  document.body.append(area);
  area.select();
  let copied = false;
  try {
    copied = document.execCommand("copy");
  } catch {
    copied = false;
  }
  area.remove();
  return copied;
}
