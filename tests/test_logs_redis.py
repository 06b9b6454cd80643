"""Live logs through Redis: every process in one stream; Redis down or frozen falls back."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from mnemo_obs.installation import Installation
from mnemo_obs.logs import LogFilter

from .httpserver import serving
from .logs_support import (
    AUTH,
    LOGS,
    STREAM,
    SSEClient,
    app_log,
    app_logger,
    get,
    install_logs,
)
from .recording import wait_until
from .servers import RedisServer

CHILD = textwrap.dedent(
    """
    import logging, os, sys
    from mnemo_obs.logs import LiveLogs

    live = LiveLogs(redis_url=sys.argv[1], loggers=("app",), token="x")
    live.attach()
    logger = logging.getLogger("app")
    logger.setLevel(logging.INFO)
    logger.info("from the child %d", os.getpid())
    assert live.close(10)
    assert live.forwarder.stats()["sent"] == 1, live.forwarder.stats()
    print(os.getpid())
    """
)


def _sent(handle: Installation, count: int) -> None:
    forwarder = handle.logs.forwarder  # type: ignore[union-attr]
    wait_until(f"{count} records in Redis", lambda: forwarder.stats()["sent"] >= count)


def test_two_processes_show_up_in_one_stream(logs_app: Callable[..., Any], redis_url: str) -> None:
    app, handle = logs_app(redis_url=redis_url)
    app_log.info("from the parent %d", os.getpid())
    _sent(handle, 1)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    child_pid = int(child.stdout.strip())
    with serving(app) as port, SSEClient(port) as stream:
        (hello,) = stream.events("hello")
        assert hello["json"]["source"] == "redis"
        replay = stream.events("log", 2)
        assert [(e["json"]["pid"], e["json"]["message"]) for e in replay] == [
            (os.getpid(), f"from the parent {os.getpid()}"),
            (child_pid, f"from the child {child_pid}"),
        ]
        # Redis entry ids, and live records follow.
        assert all(e["id"].count("-") == 1 for e in replay)
        app_log.warning("live from the parent")
        (live,) = stream.events("log")
        assert live["json"]["message"] == "live from the parent"
        _status, headers, body = get(port, f"{LOGS}?level=warning", AUTH)
        assert headers["x-log-source"] == "redis"
        assert [r["message"] for r in json.loads(body)["records"]] == ["live from the parent"]
        # The summary's keys_total counts the log stream's key.
        summary = get(port, "/api/monitoring/advanced/summary")[2]
        assert json.loads(summary)["redis"]["keys_total"] == 1


def test_resume_by_redis_id_and_a_trimmed_stream_is_a_gap(
    logs_app: Callable[..., Any], redis_url: str
) -> None:
    app, handle = logs_app(redis_url=redis_url, log_buffer_size=50, log_max_streams=10)
    for i in range(3):
        app_log.info("first %d", i)
    _sent(handle, 3)
    with serving(app) as port:
        with SSEClient(port) as stream:
            last = stream.events("log", 3)[-1]
        for i in range(3):
            app_log.info("while away %d", i)
        _sent(handle, 6)
        with SSEClient(port, headers={"Last-Event-ID": last["id"]}) as stream:
            assert [e["json"]["message"] for e in stream.events("log", 3)] == [
                f"while away {i}" for i in range(3)
            ]
        # Far more than MAXLEN ~50 while away: Redis trims whole nodes, then the
        # old id is gone and the stream says records may be missing.
        for i in range(600):
            app_log.info("flood %d", i)
        _sent(handle, 606)
        with SSEClient(port, headers={"Last-Event-ID": last["id"]}) as stream:
            (gap,) = stream.events("gap")
            assert gap["json"]["after"] == last["id"]
            # Then what the stream still holds, in order, up to the newest.
            first = int(stream.events("log")[0]["json"]["message"].split()[1])
            rest = stream.events("log", 599 - first)
            assert [e["json"]["message"] for e in rest] == [
                f"flood {i}" for i in range(first + 1, 600)
            ]


def test_with_redis_down_the_local_buffer_serves_and_says_so(
    logs_app: Callable[..., Any], owned_redis: RedisServer
) -> None:
    app, handle = logs_app(redis_url=owned_redis.url, log_loggers=("app", "mnemo_obs"))
    app_log.info("before the outage")
    _sent(handle, 1)
    owned_redis.stop_server()
    for i in range(200):
        app_log.info("during the outage %d", i)
    forwarder = handle.logs.forwarder
    wait_until("drops counted", lambda: forwarder.stats()["dropped_redis_error"] > 0)
    with serving(app) as port:
        with SSEClient(port, f"{STREAM}?logger=app&tail=1") as stream:
            (hello,) = stream.events("hello")
            assert hello["json"]["source"] == "local"
            assert "Redis unavailable" in hello["json"]["reason"]
            assert stream.events("log")[0]["json"]["message"] == "during the outage 199"
        _status, headers, body = get(port, LOGS, AUTH)
        answer = json.loads(body)
        assert headers["x-log-source"] == answer["source"] == "local"
        assert "Redis unavailable" in answer["reason"]
        assert answer["stats"]["redis"]["redis_up"] is False
    # The forwarder said so once, however many records it could not send.
    own = LogFilter(logger="mnemo_obs.logs")
    messages = [r["message"] for r in handle.logs.recent(own, 100)[1]]
    assert [m for m in messages if "Redis unreachable" in m] == messages[:1]
    # Back up: it says so once more, and forwards again; what it logged on its
    # own thread stays local, so a failing Redis never feeds on its own reports.
    owned_redis.start_server()
    app_log.info("after the outage")
    wait_until("forwarding again", lambda: forwarder.stats()["redis_up"])
    wait_until("the recovery line", lambda: len(handle.logs.recent(own, 100)[1]) == 2)
    assert "answers again" in handle.logs.recent(own, 100)[1][1]["message"]
    app_log.info("last")  # sent after anything the forwarder queued before it
    client = redis.Redis.from_url(owned_redis.url, decode_responses=True)
    try:

        def in_redis() -> list[dict[str, Any]]:
            return [json.loads(f["r"]) for _id, f in client.xrange("mnemo_obs:logs")]

        wait_until(
            "the last record in Redis", lambda: [r["message"] for r in in_redis()][-1:] == ["last"]
        )
        assert {r["logger"] for r in in_redis()} == {"app"}
    finally:
        client.close()


def test_a_frozen_redis_hangs_neither_logging_nor_the_app(
    logs_app: Callable[..., Any], owned_redis: RedisServer
) -> None:
    app, handle = logs_app(redis_url=owned_redis.url)
    app_log.info("before the freeze")
    _sent(handle, 1)
    assert owned_redis.process is not None
    os.kill(owned_redis.process.pid, signal.SIGSTOP)
    try:
        done = threading.Event()

        def log_a_lot() -> None:
            for i in range(2000):
                app_log.info("frozen %d", i)
            done.set()

        thread = threading.Thread(target=log_a_lot)
        thread.start()
        wait_until("logging calls to return while Redis is frozen", done.is_set, timeout=15)
        thread.join()
        with serving(app) as port:
            assert get(port, "/hello")[0] == 200
            assert get(port, "/work?n=2")[0] == 200
            # The stream falls back to the local buffer once Redis times out (a few s).
            with SSEClient(port, f"{STREAM}?tail=1") as stream:
                (hello,) = stream.events("hello")
                assert hello["json"]["source"] == "local"
                assert stream.events("log")[0]["json"]["message"] == "work done"
            assert get(port, "/hello")[0] == 200
            status, headers, _body = get(port, LOGS, AUTH)
            assert (status, headers["x-log-source"]) == (200, "local")
    finally:
        os.kill(owned_redis.process.pid, signal.SIGCONT)
    app_log.info("after the thaw")
    wait_until("forwarding again after the thaw", lambda: handle.logs.forwarder.stats()["redis_up"])


def test_a_full_forwarder_queue_drops_counts_and_says_so_once(
    owned_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    from mnemo_obs.logs.forwarder import RedisLogForwarder

    forwarder = RedisLogForwarder(owned_redis.url)
    forwarder.MAX_QUEUE = 3  # type: ignore[misc]
    entry = (0.0, 20, "INFO", "app", "m", None, None)
    owned_redis.stop_server()
    try:
        with caplog.at_level(logging.WARNING, logger="mnemo_obs.logs"):
            forwarder.submit(entry)
            wait_until("the failed batch", lambda: forwarder.stats()["dropped_redis_error"] == 1)
            for _ in range(10):  # while it waits to retry: 3 queued, 7 dropped
                forwarder.submit(entry)
            stats = forwarder.stats()
            assert (stats["queued"], stats["dropped_queue_full"]) == (3, 7)
            wait_until("the retry", lambda: forwarder.stats()["dropped_redis_error"] == 4)
            wait_until("the drain", lambda: "drains again" in caplog.text)
        full = [r for r in caplog.records if "the most kept" in r.getMessage()]
        assert len(full) == 1
        assert "7 records dropped" in caplog.text
    finally:
        assert forwarder.close(10)


def test_close_stops_the_forwarder_thread(dsn: str, redis_url: str) -> None:
    with app_logger():
        handle = install_logs(dsn, redis_url=redis_url)
        app_log.info("one")
        _sent(handle, 1)
        thread = handle.logs.forwarder._thread  # type: ignore[union-attr]
        assert thread is not None and thread.name == "mnemo_obs.logs" and thread.is_alive()
        assert handle.close(10)
        assert not thread.is_alive()
        app_log.info("after close: not kept, not sent")
    assert handle.logs.forwarder.stats()["sent"] == 1  # type: ignore[union-attr]
    assert handle.logs.buffer.stats()["appended"] == 1
