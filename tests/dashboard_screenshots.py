"""Screenshots of the dashboard with demo data: light, dark, a phone's width, the infra panel.

    python -m tests.dashboard_screenshots [--out docs] [--dsn DSN] [--redis-url URL]

The demo app of ``mnemo-obs serve`` with mnemo_obs installed, under waitress,
with an hour of made-up history (rows recorded with past timestamps, so the
charts have a shape) and a few live requests (so the slowest requests and
the live logs have lines). The sampler runs every second; once it has
sampled, its gauges get an hour of made-up history too, for the same
sources, so the infrastructure panel's charts have lines. Without ``--dsn``
(or ``$MNEMO_OBS_DSN``) it starts a throwaway PostgreSQL. The tests run it
into a temporary directory; run it by hand to refresh the images in docs/.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mnemo_obs import apply_schema, embedded
from mnemo_obs.demo import make_app
from mnemo_obs.installation import install

from .browser import launched
from .dashboard_support import running, send, wait_for_count
from .waiting import wait_until

# (file, colour scheme, viewport width, height, at most this tall: the whole page, or
# its top; or the data-testid of the one element shown, opened by the query)
SHOTS = (
    ("dashboard.png", "light", 1280, 900, None),
    ("dashboard-dark.png", "dark", 1280, 900, None),
    ("dashboard-phone.png", "light", 390, 844, 1800),
    ("dashboard-infra.png", "light", 1280, 900, "infra-panel"),
)
PARTS = {"infra-panel": "?infra=1"}  # the query that opens each part
GAUGES = (
    ("redis", "memory_used_mb"),
    ("postgres", "connections_total"),
    ("system", "cpu_percent"),
    ("system", "memory_percent"),
)
SAMPLE_INTERVAL = 1.0
LIVE = [
    "/slow?ms=180",
    "/slow?ms=320",
    "/slow?ms=90",
    "/boom",
    "/items/7",
    "/items/42",
    "/items/4242",
    "/",
]


def history(writer: Any, now: float, seed: int = 13) -> int:
    """An hour of requests to the demo's routes, recorded with their past timestamps."""
    rng = random.Random(seed)
    rows = 0
    for minute in range(59, 0, -1):
        start = now - minute * 60
        busy = 1 + 0.5 * math.sin(minute / 8)
        spike = 3.0 if 18 <= minute <= 22 else 1.0  # a slow patch, 20 minutes ago
        plan = [
            ("/items/{item_id:int}", int(24 * busy), lambda: rng.lognormvariate(0.6, 0.5)),
            ("/slow", int(4 * busy), lambda spike=spike: rng.uniform(90, 260) * spike),
            ("/", int(6 * busy), lambda: rng.lognormvariate(0.2, 0.4)),
            ("/boom", 1 if minute % 7 == 0 else 0, lambda: rng.uniform(1, 3)),
        ]
        for endpoint, count, latency in plan:
            for _ in range(count):
                status = 500 if endpoint == "/boom" else 200
                if endpoint.startswith("/items") and rng.random() < 0.06:
                    status = 404
                writer.record(
                    "api",
                    endpoint,
                    latency(),
                    {"method": "GET", "status_code": status, "trace_id": str(uuid.uuid4())},
                    timestamp=start + rng.uniform(0, 59),
                )
                rows += 1
    return rows


def gauge_history(handle: Any, now: float, redis: bool, seed: int = 13) -> int:
    """An hour of the panel's gauges before the sampler started, for the sources it samples.

    Shaped on the sampler's first values: Redis memory growing to its level
    (with a 3-minute hole, as a Redis restart leaves), connections and CPU
    rising with the slow patch 20 minutes ago, memory steady.
    """
    rng = random.Random(seed)
    wanted = [g for g in GAUGES if redis or g[0] != "redis"]

    def first_samples() -> dict[tuple[str, str], dict[str, Any]]:
        found = {}
        for metric_type, metric_name in wanted:
            answer = handle.collector.gauges(metric_type, metric_name, 0.25)
            for series in answer["series"]:
                values = [p["value"] for p in series["points"] if p["value"] is not None]
                if values:
                    found[(metric_type, metric_name)] = {**series, "last": values[-1]}
        return found

    found: dict[tuple[str, str], dict[str, Any]] = {}

    def sampled() -> bool:
        found.update(first_samples())
        return len(found) == len(wanted)

    wait_until("the sampler's first samples", sampled)
    rows = 0
    host = socket.gethostname()
    for (metric_type, metric_name), series in found.items():
        last = series["last"]
        scope = "cluster" if metric_type != "system" else "host"
        metadata = {
            "host": series.get("host", host),
            "pid": os.getpid(),
            "service": "",
            "scope": scope,
            "source": series["source"],
            "interval": 60.0,
        }
        for minute in range(60, 0, -1):
            spike = 18 <= minute <= 22
            if metric_name == "memory_used_mb":
                if 40 <= minute <= 42:
                    continue  # Redis down: a hole in its line
                value = last * (0.55 + 0.45 * (60 - minute) / 60) * rng.uniform(0.98, 1.02)
            elif metric_name == "connections_total":
                value = max(1, round(last + (6 if spike else 0) + rng.choice((-1, 0, 0, 1))))
            elif metric_name == "cpu_percent":
                calm = rng.uniform(6, 18) + 4 * math.sin(minute / 6)
                value = rng.uniform(55, 72) if spike else calm
            else:
                value = last + rng.uniform(-0.4, 0.4) + (1.5 if spike else 0)
            # One a minute, mid-minute: one sample in each of the panel's points.
            stamp = math.floor(now / 60) * 60 - minute * 60 + rng.uniform(20, 40)
            handle.writer.record(metric_type, metric_name, value, metadata, timestamp=stamp)
            rows += 1
    return rows


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header."""
    with path.open("rb") as image:
        head = image.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def make(dsn: str, out: Path, redis_url: str = "", browser: Any = None) -> list[Path]:
    """Serve the demo with history, take the screenshots into ``out``; their paths.

    ``browser``: a Playwright Chromium to use (one is launched without it).

    Raises:
        AssertionError: the page logged an error, or a request failed.
    """
    out.mkdir(parents=True, exist_ok=True)
    demo_log = logging.getLogger("mnemo_obs.demo")
    previous = demo_log.level
    demo_log.setLevel(logging.INFO)
    token = secrets.token_urlsafe(18)
    app = make_app()
    # Heartbeats often, so the log stream of one screenshot's page frees its
    # slot (2 per process) quickly for the next page's.
    handle = install(
        app,
        dsn=dsn,
        redis_url=redis_url,
        log_token=token,
        cache_ttl=0,
        log_heartbeat_seconds=0.25,
        sample_interval=SAMPLE_INTERVAL,
    )
    made = []
    try:
        now = time.time()
        rows = history(handle.writer, now)
        gauge_history(handle, now, bool(redis_url))
        assert handle.writer.flush(30)
        with running(app) as base:
            send(base, LIVE)
            wait_for_count(base, rows + len(LIVE))
            with contextlib.ExitStack() as stack:
                if browser is None:
                    browser = stack.enter_context(launched())
                for name, scheme, width, height, top in SHOTS:
                    path = out / name
                    query = PARTS.get(top, "") if isinstance(top, str) else ""
                    url = f"{base}/monitoring{query}#token={token}"
                    _shoot(browser, url, path, scheme, (width, height), top)
                    made.append(path)
    finally:
        handle.close(10)
        demo_log.setLevel(previous)
    return made


def _shoot(
    browser: Any, url: str, path: Path, scheme: str, size: tuple[int, int], top: int | str | None
) -> None:
    width, height = size
    context = browser.new_context(
        viewport={"width": width, "height": height},
        color_scheme=scheme,
        locale="en-US",
        timezone_id="UTC",
        is_mobile=width < 600,
    )
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))
        page.goto(url)
        page.wait_for_function("() => Number(document.body.dataset.refreshes || 0) >= 1")
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=log-entry]').length >= 4"
        )
        page.evaluate("document.fonts.ready")
        if isinstance(top, str):  # one part of the page, loaded
            part = page.get_by_test_id(top)
            page.wait_for_function(
                "id => Number(document.querySelector(`[data-testid=${id}]`)"
                ".dataset.refreshes || 0) >= 1",
                arg=top,
            )
            part.screenshot(path=str(path))
        else:
            total = page.evaluate("document.documentElement.scrollHeight")
            clip = {"x": 0, "y": 0, "width": width, "height": min(top or total, total)}
            page.screenshot(path=str(path), full_page=True, clip=clip)
        # A 503 is the log panel meeting the previous page's stream, not yet
        # freed: it retries by itself (and the wait above saw its records).
        assert [e for e in errors if "status of 503" not in e] == [], errors
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.dashboard_screenshots")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where the PNGs go")
    parser.add_argument("--dsn", default=os.environ.get("MNEMO_OBS_DSN"))
    parser.add_argument("--redis-url", default=os.environ.get("MNEMO_OBS_REDIS_URL", ""))
    args = parser.parse_args(argv)
    server = None
    dsn = args.dsn
    if not dsn:
        server = embedded.start()
        dsn = server.url()
    try:
        apply_schema(dsn)
        for path in make(dsn, args.out, args.redis_url):
            width, height = png_size(path)
            print(f"{path} ({width}x{height})")
    finally:
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
