"""Helpers for the dashboard tests: an app with known routes, a real server, known traffic."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import falcon
import pytest

from mnemo_obs.installation import Installation, install

from .httpserver import get, serving
from .recording import wait_until

PREFIX = "/api/monitoring/advanced"
DASHBOARD = "/monitoring"
TOKEN = "dash-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP_LOGGER = "dashapp"
# 21 requests: 12 fast, 4 slow, 3 failing (500), 2 items; 3 errors.
TRAFFIC = ["/fast"] * 12 + ["/slow?ms=40"] * 4 + ["/fail"] * 3 + ["/items/1", "/items/2"]

app_log = logging.getLogger(APP_LOGGER)


class Fast:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"ok": True}


class Slow:
    """``GET /slow?ms=N``: logs, sleeps N ms, logs again."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        ms = req.get_param_as_int("ms", default=20, min_value=0, max_value=2000)
        app_log.info("slow request: sleeping %d ms", ms)
        time.sleep(ms / 1000)
        app_log.warning("slow request done after %d ms", ms)
        resp.media = {"slept_ms": ms}


class Fail:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        app_log.error("failing on purpose")
        raise falcon.HTTPInternalServerError(description="on purpose")


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {"id": item_id}


class Say:
    """``GET /say?text=...``: logs the text as given (hostile messages included)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        app_log.warning("%s", req.get_param("text", default=""))
        resp.media = {"trace_id": req.context.trace_id}


def make_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/fast", Fast())
    app.add_route("/slow", Slow())
    app.add_route("/fail", Fail())
    app.add_route("/items/{item_id}", Item())
    app.add_route("/say", Say())
    return app


@pytest.fixture
def dashboard_app(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[falcon.App, Installation]]]:
    """``dashboard_app(**install_kwargs) -> (app, installation)``, closed after.

    Defaults: no Redis, the cache off (each call reads afresh), the live logs'
    token ``TOKEN`` and no summary token.
    """
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    monkeypatch.delenv("MNEMO_OBS_REDIS_URL", raising=False)
    handles: list[Installation] = []
    previous = app_log.level
    app_log.setLevel(logging.DEBUG)

    def make(app: falcon.App | None = None, **kwargs: Any) -> tuple[falcon.App, Installation]:
        app = app if app is not None else make_app()
        kwargs.setdefault("redis_url", "")
        kwargs.setdefault("cache_ttl", 0)
        kwargs.setdefault("log_token", TOKEN)
        kwargs.setdefault("log_loggers", (APP_LOGGER,))
        kwargs.setdefault("log_heartbeat_seconds", 0.25)
        handle = install(app, dsn=dsn, **kwargs)
        handles.append(handle)
        return app, handle

    try:
        yield make
    finally:
        for handle in handles:
            handle.close(10)
        app_log.setLevel(previous)


@contextmanager
def running(app: falcon.App, threads: int = 6) -> Iterator[str]:
    """Serve ``app`` with waitress on 127.0.0.1; yield its base URL."""
    with serving(app, threads=threads) as port:
        yield f"http://127.0.0.1:{port}"


def _split(base: str) -> tuple[int, str]:
    """The port and the path prefix (a WSGI mount) of a base URL."""
    parts = urlsplit(base)
    assert parts.port is not None
    return parts.port, parts.path.rstrip("/")


def send(base: str, paths: list[str]) -> list[str]:
    """GET each path; the trace ids the server gave."""
    port, root = _split(base)
    ids = []
    for path in paths:
        _status, headers, _body = get(port, f"{root}{path}")
        ids.append(headers["x-trace-id"])
    return ids


def api(base: str, route: str, headers: dict[str, str] | None = None) -> Any:
    """A JSON route's answer (``route`` with its query), asserting a 200."""
    port, root = _split(base)
    status, _headers, body = get(port, f"{root}{PREFIX}/{route}", headers=headers)
    assert status == 200, (route, status, body)
    return body


def wait_for_count(base: str, count: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Wait until the summary counts ``count`` requests; its api section."""
    found: dict[str, Any] = {}

    def counted() -> bool:
        found.update(api(base, "summary", headers)["api"])
        return found.get("request_count") == count

    wait_until(f"the summary to count {count} requests", counted)
    return found


def number(value: float | int | None) -> str:
    """A figure as the page shows it (format.js's number(), locale en-US)."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    text = f"{value:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
