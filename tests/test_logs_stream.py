"""Live logs over a real waitress server: tokens, trace ids, resume, gaps, caps, lifetimes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mnemo_obs.installation import Installation

from .logs_support import (
    AUTH,
    LOGS,
    STREAM,
    SSEClient,
    app_log,
    app_logger,
    get,
    install_logs,
    make_app,
    serving,
)
from .recording import wait_until


@pytest.fixture
def logs_app(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``logs_app(**install_kwargs) -> (app, installation)``, closed at the end."""
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


def test_the_token_is_always_required_and_every_refusal_has_a_json_body(
    logs_app: Callable[..., Any],
) -> None:
    app, _handle = logs_app(log_token=None)
    with serving(app) as port:
        for path in (LOGS, STREAM):
            for accept in ("application/json", "text/event-stream", "*/*"):
                status, headers, body = get(port, path, {"Accept": accept})
                assert status == 403
                assert headers["content-type"].startswith("application/json")
                assert "log_token" in json.loads(body)["description"]
    app, _handle = logs_app()
    with serving(app) as port:
        for path in (LOGS, STREAM):
            for auth in ("Bearer wrong", "Basic bG9nLXQwa2Vu", ""):
                status, headers, body = get(
                    port, path, {"Authorization": auth, "Accept": "text/event-stream"}
                )
                assert status == 401
                assert headers["www-authenticate"] == 'Bearer realm="mnemo_obs"'
                assert json.loads(body)["title"] == "Unauthorized"
        status, _headers, body = get(port, LOGS, AUTH)
        assert status == 200
        assert json.loads(body)["source"] == "local"


def test_the_stream_answers_at_once_with_sse_headers(logs_app: Callable[..., Any]) -> None:
    app, _handle = logs_app()
    with serving(app) as port, SSEClient(port, headers={"Accept": "text/event-stream"}) as stream:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        first = stream.next_block()
        assert first is not None and first["comments"] == ["mnemo_obs live logs"]
        retry = stream.next_block()
        assert retry is not None and retry["retry"] == "1000"
        (hello,) = stream.events("hello")
        assert hello["json"]["source"] == "local"
    # waitress asserts on hop-by-hop headers from the app: it served the stream, so none.


def test_records_carry_the_request_trace_id_and_the_filter_keeps_only_theirs(
    logs_app: Callable[..., Any],
) -> None:
    app, handle = logs_app()
    with serving(app) as port:
        traces = []
        for n in (2, 3, 1):
            status, headers, body = get(port, f"/work?n={n}")
            assert status == 200
            traces.append(headers["x-trace-id"])
        app_log.info("outside any request")
        status, _headers, body = get(port, f"{LOGS}?trace_id={traces[1]}", AUTH)
        records = json.loads(body)["records"]
        assert [r["message"] for r in records] == [
            "step 1 of 3",
            "step 2 of 3",
            "step 3 of 3",
            "work done",
        ]
        assert {r["trace_id"] for r in records} == {traces[1]}
        status, _headers, body = get(port, f"{LOGS}?trace_id={traces[1]}&level=warning", AUTH)
        assert [r["message"] for r in json.loads(body)["records"]] == ["work done"]
        # A fresh stream filtered on a trace id first replays what that request wrote.
        with SSEClient(port, f"{STREAM}?trace_id={traces[0]}") as stream:
            logs = stream.events("log", 3)
            assert [e["json"]["message"] for e in logs] == ["step 1 of 2", "step 2 of 2", "work done"]
            assert all(e["id"] == e["json"]["id"] for e in logs)
    # The log routes are not recorded as requests.
    assert handle.writer.flush(10)
    assert handle.writer.stats()["written"] == 3
