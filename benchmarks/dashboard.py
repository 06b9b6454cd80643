"""Dashboard: bytes on first load, JSON calls per refresh, the browser's time per refresh.

Headless Chromium (Playwright, driving the system's ``chromium`` or
``$MNEMO_OBS_CHROMIUM``) loads the dashboard from the demo app, served by
waitress in this process with mnemo_obs installed, over an hour of history
on 50 endpoints, so the table, the charts and the slowest requests are full.

1. First load, in a fresh browser context (empty cache): every response's
   bytes as transferred (headers and the encoded body), the log stream's
   excepted (it never ends). Then a reload in the same context, where the
   assets come from the cache.
2. Refreshes: the page refreshing every second; JSON calls counted per
   refresh (``/gauges`` among them: the infrastructure panel, closed by
   default, must make none), and the page's own ``performance.measure``
   entries: a refresh from its first call to the last figure drawn, and the
   drawing alone.

Measured, not asserted. Goals: under 300 kB on first load, at most 4 JSON
calls per refresh. Without Playwright or Chromium the section says so.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import waitress

from mnemo_obs.demo import make_app
from mnemo_obs.installation import install

from ._common import Context, spread, table, truncate_metrics

GOAL_BYTES = 300_000
GOAL_CALLS = 4
ENDPOINTS = 50
ROUTES = ("summary", "timeseries", "endpoints", "slowest")
COUNTED = (*ROUTES, "gauges")  # the infrastructure panel's route: no call while it is closed
CHROMIUM_ARGS = [  # as the tests: root needs --no-sandbox, the rest keep Chromium offline
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str | None:
    return (
        os.environ.get("MNEMO_OBS_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    socket_map: dict[int, object] = {}
    server = waitress.create_server(app, map=socket_map, host="127.0.0.1", port=0, threads=6)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
    finally:
        server.task_dispatcher.shutdown()  # type: ignore[union-attr]
        server.trigger.pull_trigger(lambda: waitress.wasyncore.close_all(socket_map))  # type: ignore[union-attr]
        thread.join(10)


def _history(writer: Any, rows: int) -> None:
    """``rows`` requests over the last hour, spread over ENDPOINTS endpoints."""
    rng = random.Random(13)
    now = time.time()
    for i in range(rows):
        endpoint = f"/api/v1/resource{i % ENDPOINTS}/{{id}}"
        writer.record(
            "api",
            endpoint,
            rng.lognormvariate(1.5, 0.8),
            {
                "method": "GET" if i % 5 else "POST",
                "status_code": 500 if i % 97 == 0 else 200,
                "trace_id": str(uuid.uuid4()),
            },
            timestamp=now - rng.uniform(5, 3500),
        )
    assert writer.flush(60)


# The browser's own count: transferSize is headers plus encoded body, 0 from
# the cache. The log stream never finishes, so it has no entry.
TRANSFERRED = """() => {
    const entries = [...performance.getEntriesByType('navigation'),
                     ...performance.getEntriesByType('resource')];
    return entries.map(e => [e.name, e.transferSize]);
}"""


def _transferred(page: Any) -> tuple[int, int, int]:
    """(bytes, of which JSON, requests) of the page so far."""
    entries = page.evaluate(TRANSFERRED)
    total = sum(size for _name, size in entries)
    json_bytes = sum(size for name, size in entries if "/api/" in name)
    return total, json_bytes, len(entries)


def _first_load(browser: Any, url: str) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1")
        page.wait_for_load_state("load")
        first = _transferred(page)
        page.reload()
        page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1")
        page.wait_for_load_state("load")
        return {"first": first, "reload": _transferred(page)}
    finally:
        context.close()


def _refreshes(browser: Any, url: str, count: int) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        calls: list[str] = []

        def count_json(request: Any) -> None:
            if urlsplit(request.url).path.rsplit("/", 1)[-1] in COUNTED:
                calls.append(request.url)

        page.on("request", count_json)
        page.goto(url.replace("#", "?refresh=1#"))
        page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1")
        start = len(calls)
        done = int(page.get_attribute("body", "data-refreshes") or 1)
        page.wait_for_function(
            "n => Number(document.body.dataset.refreshes || 0) >= n",
            arg=done + count,
            timeout=count * 5000 + 30000,
        )
        finished = int(page.get_attribute("body", "data-refreshes") or 0) - done
        in_flight = len(calls) - start  # a refresh that started after the last finished counts 4
        measures = page.evaluate(
            "() => ['mnemo-refresh', 'mnemo-render'].map(name =>"
            " performance.getEntriesByName(name).map(e => e.duration))"
        )
        return {
            "calls_per_refresh": in_flight / max(finished, 1),
            "calls": in_flight,
            "gauges_calls": sum(1 for u in calls if urlsplit(u).path.endswith("/gauges")),
            "refreshes": finished,
            "refresh_ms": measures[0][1:],  # the first one also waited for the modules
            "render_ms": measures[1][1:],
        }
    finally:
        context.close()


def run(ctx: Context) -> str:
    """Measure, and return the markdown section."""
    title = "## Dashboard"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        return f"{title}\n\nSkipped: Playwright is not installed ({exc}); pip install playwright."
    chromium = _chromium()
    if chromium is None:
        return f"{title}\n\nSkipped: no chromium on the PATH (Debian: apt-get install chromium)."
    loads, refreshes = (1, 3) if ctx.quick else (5, 30)
    rows = 2_000 if ctx.quick else 20_000
    truncate_metrics(ctx.dsn)
    token = secrets.token_urlsafe(18)
    app = make_app()
    handle = install(
        app, dsn=ctx.dsn, redis_url="", log_token=token, cache_ttl=2, log_heartbeat_seconds=0.5
    )
    try:
        _history(handle.writer, rows)
        with _serving(app) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                url = f"{base}/monitoring#token={token}"
                firsts = [_first_load(browser, url) for _ in range(loads)]
                refresh = _refreshes(browser, url, refreshes)
            finally:
                browser.close()
    finally:
        handle.close(10)
    first_bytes = [f["first"][0] for f in firsts]
    reload_bytes = [f["reload"][0] for f in firsts]
    kb = "{:.1f}"
    load_rows = [
        (
            "first load (empty cache)",
            spread([b / 1000 for b in first_bytes], kb),
            spread([f["first"][1] / 1000 for f in firsts], kb),
            firsts[0]["first"][2],
        ),
        (
            "reload (assets cached)",
            spread([b / 1000 for b in reload_bytes], kb),
            spread([f["reload"][1] / 1000 for f in firsts], kb),
            firsts[0]["reload"][2],
        ),
    ]
    median_kb = statistics.median(first_bytes) / 1000
    calls = refresh["calls_per_refresh"]
    refresh_rows = [
        ("a refresh: 4 calls, then every figure drawn", spread(refresh["refresh_ms"], "{:.1f}")),
        ("drawing alone (tiles, charts, tables)", spread(refresh["render_ms"], "{:.1f}")),
    ]
    return "\n\n".join(
        [
            title,
            f"The demo app with {rows:,} requests on {ENDPOINTS} endpoints in the last hour; "
            f"headless Chromium at 1280x900; waitress in this process. {loads} first load(s), "
            "each in a fresh context, until the first refresh is drawn: kB transferred as the "
            "browser counts it (Resource Timing's transferSize: headers and gzipped bodies, 0 "
            "from the cache), median (min..max); the live log stream, still open, is not counted.",
            table(["load", "kB transferred", "of which JSON", "requests"], load_rows),
            f"First load: {median_kb:.1f} kB, goal under {GOAL_BYTES / 1000:.0f} kB: "
            f"{'met' if median_kb * 1000 < GOAL_BYTES else 'missed'}.",
            f"{refresh['refreshes']} refreshes, one a second: {refresh['calls']} JSON calls, "
            f"{calls:.2f} a refresh (goal at most {GOAL_CALLS}: "
            f"{'met' if calls <= GOAL_CALLS else 'missed'}), of which "
            f"{refresh['gauges_calls']} to `/gauges` (the infrastructure panel, closed). "
            "The page's own "
            "`performance.measure` entries, ms, median (min..max):",
            table(["what", "ms"], refresh_rows),
        ]
    )
