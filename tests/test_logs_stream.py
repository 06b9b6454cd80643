"""Live logs over a real waitress server: tokens, trace ids, resume, gaps, caps, lifetimes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

from .httpserver import serving
from .logs_support import (
    AUTH,
    LOGS,
    STREAM,
    SSEClient,
    app_log,
    get,
    install_logs,
    make_app,
)
from .recording import wait_until


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
            assert [e["json"]["message"] for e in logs] == [
                "step 1 of 2",
                "step 2 of 2",
                "work done",
            ]
            assert all(e["id"] == e["json"]["id"] for e in logs)
    # The log routes are not recorded as requests.
    assert handle.writer.flush(10)
    assert handle.writer.stats()["written"] == 3


def test_resume_after_a_disconnect_loses_nothing_and_a_real_gap_is_reported(
    logs_app: Callable[..., Any],
) -> None:
    # Each closed stream holds its slot until a heartbeat fails: room for them all.
    app, handle = logs_app(log_buffer_size=20, log_max_streams=10)
    with serving(app) as port:
        for i in range(5):
            app_log.info("before %d", i)
        with SSEClient(port, f"{STREAM}?tail=2") as stream:
            replay = stream.events("log", 2)
            assert [e["json"]["message"] for e in replay] == ["before 3", "before 4"]
            app_log.info("live 0")
            (live,) = stream.events("log")
            assert live["json"]["message"] == "live 0"
        last_id = live["id"]
        # Written while no stream is open: a reconnect with Last-Event-ID gets them all, once.
        for i in range(10):
            app_log.info("missed %d", i)
        with SSEClient(port, headers={"Last-Event-ID": last_id}) as stream:
            (hello,) = stream.events("hello")
            assert hello["json"]["resume"] == last_id
            resumed = stream.events("log", 10)
            assert [e["json"]["message"] for e in resumed] == [f"missed {i}" for i in range(10)]
        # The same through the query parameter (for clients that cannot set the header).
        with SSEClient(port, f"{STREAM}?last_event_id={resumed[4]['id']}") as stream:
            assert [e["json"]["message"] for e in stream.events("log", 5)] == [
                f"missed {i}" for i in range(5, 10)
            ]
        # 30 records into a buffer of 20 while away: 10 more than it holds are lost, and said so.
        last_id = resumed[-1]["id"]
        for i in range(30):
            app_log.info("flood %d", i)
        with SSEClient(port, headers={"Last-Event-ID": last_id}) as stream:
            (gap,) = stream.events("gap")
            assert gap["json"]["lost"] == 10
            assert gap["data"] and gap["json"]["after"] == last_id
            kept = stream.events("log", 20)
            assert [e["json"]["message"] for e in kept] == [f"flood {i}" for i in range(10, 30)]
        # An id from another process (or an earlier run) is a gap too, then the newest replay.
        with SSEClient(port, f"{STREAM}?tail=1", {"Last-Event-ID": "0badf00d:3"}) as stream:
            (gap,) = stream.events("gap")
            assert gap["json"]["lost"] is None
            assert stream.events("log")[0]["json"]["message"] == "flood 29"
    assert handle.logs.buffer.stats()["overwritten"] == 46 - 20


def test_records_skipped_by_the_filter_still_move_the_resume_point(
    logs_app: Callable[..., Any],
) -> None:
    app, _handle = logs_app(log_buffer_size=10, log_max_streams=10)
    with serving(app) as port:
        with SSEClient(port, f"{STREAM}?level=error&tail=0") as stream:
            stream.events("hello")
            for i in range(5):
                app_log.info("noise %d", i)
            # With nothing to send, the heartbeat carries the id past the skipped records
            # (an id with no data: EventSource keeps it as Last-Event-ID, fires nothing).
            while True:
                block = stream.next_block()
                assert block is not None
                if "id" in block:
                    break
            assert block.get("event") is None and not block["data"]
        for i in range(20):
            app_log.info("more noise %d", i)
        with SSEClient(port, f"{STREAM}?level=error", {"Last-Event-ID": block["id"]}) as again:
            (gap,) = again.events("gap")  # 20 into 10 slots after the mark: 10 lost
            assert gap["json"]["lost"] == 10


def test_hostile_messages_cannot_break_the_framing(logs_app: Callable[..., Any]) -> None:
    app, _handle = logs_app()
    hostile = [
        "line one\r\nline two\rline three\nline four",
        '\n\ndata: {"forged": true}\n\nid: 999\nevent: log\n\n',
        "nul\x00byte and \u2028 separators \u2029 and a lone surrogate \udcff",
        "x" * 1_000_000,
        "retry: 1\n\n: comment\n\nevent: gap",
    ]
    with serving(app) as port, SSEClient(port, f"{STREAM}?tail=0") as stream:
        stream.events("hello")
        for message in hostile:
            app_log.warning(message)
        app_log.error("last", exc_info=ValueError("boom\n\ndata: injected"))
        logs = stream.events("log", len(hostile) + 1)
        assert b"\x00" not in stream.raw
        messages = [e["json"]["message"] for e in logs]
        assert messages[:3] == [m.replace("\udcff", "\udcff") for m in hostile[:3]]
        assert messages[3].startswith("x" * 8192) and "cut: 1,000,000 characters" in messages[3]
        assert len(messages[3]) < 8300
        assert messages[4] == hostile[4]
        assert "data: injected" in logs[5]["json"]["exc"]
        # Each record is one event with one data line, whatever it held.
        assert all(len(e["data"]) == 1 for e in logs)
        assert [e["event"] for e in logs] == ["log"] * 6


def test_bad_parameters_are_400s_naming_the_parameter(logs_app: Callable[..., Any]) -> None:
    app, _handle = logs_app()
    with serving(app) as port:
        for path, headers, name in [
            (f"{STREAM}?level=LOUD", {}, "level"),
            (f"{LOGS}?level=", {}, "level"),
            (f"{STREAM}?tail=-1", {}, "tail"),
            (f"{STREAM}?tail=99999999", {}, "tail"),
            (f"{LOGS}?limit=abc", {}, "limit"),
            (f"{LOGS}?trace_id=a&trace_id=b", {}, "trace_id"),
            (f"{LOGS}?trace_id={'z' * 500}", {}, "trace_id"),
            (f"{STREAM}?logger=%0a", {}, "logger"),
            (STREAM, {"Last-Event-ID": "not an id"}, "Last-Event-ID"),
            (f"{STREAM}?last_event_id=1;DROP", {}, "last_event_id"),
        ]:
            status, resp_headers, body = get(
                port, path, {**AUTH, **headers, "Accept": "text/event-stream"}
            )
            assert status == 400, path
            assert resp_headers["content-type"].startswith("application/json")
            assert f'"{name}"' in json.loads(body)["description"], path
        for level in ("debug", "Info", "WARNING", "error", "CRITICAL"):
            assert get(port, f"{LOGS}?level={level}", AUTH)[0] == 200


def test_the_lifetime_ends_the_response(logs_app: Callable[..., Any]) -> None:
    app, handle = logs_app(log_max_stream_seconds=0.5)
    with serving(app) as port, SSEClient(port) as stream:
        blocks = stream.read_to_end()  # returns: the server ended the response
        assert stream.ended
        assert "reconnect with Last-Event-ID" in blocks[-1]["comments"][0]
    wait_until("the slot to be free", lambda: handle.logs.slots.open == 0)


def test_over_the_cap_503_while_the_apps_routes_keep_answering(
    logs_app: Callable[..., Any],
) -> None:
    """waitress with 4 threads, 2 streams at most, 10 clients trying to stream."""
    app, handle = logs_app(log_max_streams=2, log_max_stream_seconds=60)
    with serving(app, threads=4) as port:
        results: list[tuple[int, dict[str, str], bytes]] = []
        streams: list[SSEClient] = []
        lock = threading.Lock()

        def client() -> None:
            stream = SSEClient(port)
            with lock:
                if stream.status == 200:
                    streams.append(stream)
                else:
                    results.append((stream.status, stream.headers, stream.resp.read()))
                    stream.close()

        threads = [threading.Thread(target=client) for _ in range(10)]
        try:
            for thread in threads:
                thread.start()
            for _ in range(20):  # the app keeps answering while they try, and after
                assert get(port, "/hello")[0] == 200
            for thread in threads:
                thread.join(30)
            assert len(streams) == 2
            assert len(results) == 8
            for status, headers, body in results:
                assert status == 503
                assert 1 <= int(headers["retry-after"]) <= 60
                assert "log_max_streams" in json.loads(body)["description"]
            for _ in range(20):
                assert get(port, "/work?n=1")[0] == 200
            for stream in streams:  # and the two streams got those records
                assert len(stream.events("log", 40)) == 40
            assert handle.logs.slots.open == 2
            # A client that leaves frees its slot within a few heartbeats.
            streams.pop().close()
            wait_until("the departed client's slot", lambda: handle.logs.slots.open == 1)
            with SSEClient(port) as again:
                assert again.status == 200
        finally:
            for stream in streams:
                stream.close()
    wait_until("every slot to be free", lambda: handle.logs.slots.open == 0)


def test_close_ends_open_streams_and_detaches_the_handler(logs_app: Callable[..., Any]) -> None:
    app, handle = logs_app()
    with serving(app) as port, SSEClient(port) as stream:
        stream.events("hello")
        assert handle.logs.handler in app_log.handlers
        handle.close(10)
        stream.read_to_end()
        assert stream.ended
    assert handle.logs.handler not in app_log.handlers
    assert handle.logs.slots.open == 0


def test_logs_false_adds_no_route_and_no_handler(dsn: str) -> None:
    before = list(logging.getLogger().handlers)
    handle = install_logs(dsn, logs=False, log_loggers=("",))
    try:
        assert handle.logs is None
        assert logging.getLogger().handlers == before
    finally:
        handle.close(10)


def test_the_root_logger_by_default(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.INFO)
    app = make_app()
    handle = install_logs(dsn, app, log_loggers=("",))
    try:
        assert handle.logs.handler in root.handlers
        logging.getLogger("some.library").info("from a library")
        logging.getLogger("some.library").debug("below INFO: not kept")
        client = falcon.testing.TestClient(app)
        records = client.simulate_get(f"{LOGS}?logger=some", headers=AUTH).json["records"]
        assert [r["message"] for r in records] == ["from a library"]
        assert records[0]["level"] == "INFO" and records[0]["trace_id"] is None
    finally:
        handle.close(10)
        root.setLevel(previous)
    assert handle.logs.handler not in root.handlers
