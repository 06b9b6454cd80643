"""Helpers for the live-log tests: an app that logs, a real waitress server, an SSE reader."""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import falcon
import pytest

from mnemo_obs.installation import Installation, install

PREFIX = "/api/monitoring/advanced"
LOGS = f"{PREFIX}/logs"
STREAM = f"{PREFIX}/logs/stream"
TOKEN = "log-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APP_LOGGER = "app"

app_log = logging.getLogger(APP_LOGGER)


class Work:
    """``GET /work?n=3``: logs n lines (and a warning) while the request runs."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        n = req.get_param_as_int("n", default=3, min_value=0, max_value=100)
        for i in range(n):
            app_log.info("step %d of %d", i + 1, n)
        app_log.warning("work done")
        resp.media = {"trace_id": req.context.trace_id}


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


def make_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/work", Work())
    app.add_route("/hello", Hello())
    return app


@contextmanager
def app_logger(level: int = logging.DEBUG) -> Iterator[logging.Logger]:
    """The ``app`` logger at ``level`` for the test, restored after."""
    previous = app_log.level
    app_log.setLevel(level)
    try:
        yield app_log
    finally:
        app_log.setLevel(previous)


def install_logs(dsn: str, app: falcon.App | None = None, **kwargs: Any) -> Installation:
    """install() with the test token, on the ``app`` logger, no Redis unless given."""
    kwargs.setdefault("log_token", TOKEN)
    kwargs.setdefault("log_loggers", (APP_LOGGER,))
    kwargs.setdefault("redis_url", "")
    kwargs.setdefault("log_heartbeat_seconds", 0.2)
    kwargs.setdefault("cache_ttl", 0)
    return install(app if app is not None else make_app(), dsn=dsn, **kwargs)


@pytest.fixture
def logs_app(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``logs_app(**install_kwargs) -> (app, installation)`` on the ``app`` logger, closed after."""
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    handles: list[Installation] = []

    def make(**kwargs: Any) -> tuple[Any, Installation]:
        app = make_app()
        handle = install_logs(dsn, app, **kwargs)
        handles.append(handle)
        return app, handle

    with app_logger():
        yield make
    for handle in handles:
        handle.close(10)


def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: status, headers (lower-case names), body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


class SSEClient:
    """A stream read incrementally, with a socket timeout on every read."""

    def __init__(
        self, port: int, path: str = STREAM, headers: dict[str, str] | None = None, timeout=20.0
    ) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers={**AUTH, **(headers or {})})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.raw = b""
        self.ended = False

    def next_block(self) -> dict[str, Any] | None:
        """The next event block (fields, comments), or None at the end of the response."""
        block: dict[str, Any] = {"comments": [], "data": []}
        while True:
            line = self.resp.readline()
            self.raw += line
            if not line:
                self.ended = True
                return None
            text = line.decode("utf-8").rstrip("\n")
            if text == "":
                if block["comments"] or len(block) > 2 or block["data"]:
                    return block
                continue
            if text.startswith(":"):
                block["comments"].append(text[1:].strip())
                continue
            name, _, value = text.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                block["data"].append(value)
            else:
                block[name] = value

    def events(self, kind: str | None = None, count: int = 1) -> list[dict[str, Any]]:
        """Read until ``count`` events (of ``kind``, if given) arrived; each with ``json``."""
        assert self.status == 200, (self.status, self.resp.read())
        found: list[dict[str, Any]] = []
        while len(found) < count:
            block = self.next_block()
            assert block is not None, f"the stream ended after {found!r}"
            if "event" in block and (kind is None or block["event"] == kind):
                block["json"] = json.loads("\n".join(block["data"]))
                found.append(block)
        return found

    def read_to_end(self) -> list[dict[str, Any]]:
        blocks = []
        while (block := self.next_block()) is not None:
            blocks.append(block)
        return blocks

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
