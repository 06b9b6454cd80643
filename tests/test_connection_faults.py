"""Connections under faults: keepalives, the writer's statement timeout, a hung server, fork."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import psycopg2
import pytest

from mnemo_obs import db
from mnemo_obs.collectors import PgConnections
from mnemo_obs.collectors._cache import SingleFlightCache

from .recording import FAST_RETRY, TIMEOUT, fetch, wait_child, wait_until
from .test_writer import writer_threads


def backend_pid(dsn: str, application_name: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
            (pid,) = cur.fetchone()
            return pid
    finally:
        conn.close()


def with_params(dsn: str, **params: str) -> str:
    merged = {**psycopg2.extensions.parse_dsn(dsn), **params}
    return " ".join(f"{key}='{value}'" for key, value in merged.items())


@pytest.mark.parametrize(("given", "idle"), [({}, "30"), ({"keepalives_idle": "7"}, "7")])
def test_connections_notice_a_vanished_server_within_a_minute(
    dsn: str, given: dict[str, str], idle: str
) -> None:
    # libpq leaves the keepalive timing to the kernel (2 hours on Linux) unless told.
    conn = db.connect(with_params(dsn, **given))
    try:
        params = conn.get_dsn_parameters()
        assert (params["keepalives"], params["keepalives_idle"]) == ("1", idle)
        assert (params["keepalives_interval"], params["keepalives_count"]) == ("10", "3")
    finally:
        conn.close()
    connections = PgConnections(dsn)
    try:
        with connections.connection() as pooled:
            assert pooled.get_dsn_parameters()["keepalives_idle"] == "30"
    finally:
        connections.close()


def test_a_blocked_copy_times_out_is_retried_and_loses_nothing(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn, statement_timeout=0.3, **FAST_RETRY)
    assert writer.record("system", "before", 1.0)
    assert writer.flush(timeout=10)
    locker = psycopg2.connect(dsn)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE metrics IN ACCESS EXCLUSIVE MODE")
        for i in range(50):
            assert writer.record("system", "blocked", float(i))
        wait_until(
            "a statement timeout in the writer's last_error",
            lambda: "statement timeout" in (writer.stats()["last_error"] or ""),
        )
        assert not writer.flush(timeout=0.2)
    finally:
        locker.rollback()
        locker.close()
    assert writer.flush(timeout=TIMEOUT)
    stats = writer.stats()
    assert (stats["written"], stats["dropped_after_retries"], stats["rejected"]) == (51, 0, 0)
    assert len(fetch(dsn, "metric_name = 'blocked'")) == 50


def test_the_statement_timeout_is_validated_and_can_be_off(dsn: str, make_writer: Any) -> None:
    from mnemo_obs import ConfigurationError, MetricsWriter

    for bad in (-1, float("nan"), "30"):
        with pytest.raises(ConfigurationError, match="statement_timeout"):
            MetricsWriter(dsn, statement_timeout=bad)
    writer = make_writer(dsn, statement_timeout=0)
    assert writer.record("system", "no-timeout", 1.0)
    assert writer.flush(timeout=10)


def test_a_hung_server_never_blocks_requests_or_close(dsn: str, make_writer: Any) -> None:
    """The writer's backend stops answering mid-COPY (SIGSTOP): nothing else waits on it."""
    writer = make_writer(dsn, application_name="hung-backend-test", max_queue=100, batch_size=10)
    assert writer.record("system", "before", 1.0)
    assert writer.flush(timeout=10)
    backend = backend_pid(dsn, "hung-backend-test")
    threads_before = set(writer_threads())
    os.kill(backend, signal.SIGSTOP)
    try:
        accepted = sum(writer.record("system", "during", float(i)) for i in range(1000))
        assert accepted <= 100 + 10  # the queue, plus the batch stuck in the COPY
        assert not writer.flush(timeout=0.3)
        assert writer.close(timeout=0.3) is False  # returns, though a thread is stuck
        stuck = writer.stats()
        assert stuck["dropped_queue_full"] == 1000 - accepted
    finally:
        os.kill(backend, signal.SIGCONT)
    # Once the server answers again, the stuck batch completes and the thread ends.
    wait_until("the stuck writer thread to end", lambda: not set(writer_threads()) & threads_before)
    stats = writer.stats()
    dropped = stats["dropped_after_retries"] + stats["dropped_queue_full"]
    assert stats["written"] + dropped == 1001
    assert len(fetch(dsn)) == stats["written"]


def test_a_forked_child_opens_its_own_read_connections(dsn: str) -> None:
    connections = PgConnections(dsn)

    def backend() -> int:
        with connections.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]

    try:
        parents = backend()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            code = 1
            try:
                code = 0 if backend() != parents else 3
                connections.close()  # must not end the parent's sessions
            finally:
                os._exit(code)
        assert wait_child(pid) == 0, "the child borrowed its parent's connection"
        assert backend() == parents  # the parent's session survived the child's close()
    finally:
        connections.close()


def test_a_computation_in_flight_at_fork_does_not_block_the_child() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache(0)
    entered, release = threading.Event(), threading.Event()

    def slow() -> str:
        entered.set()
        release.wait(TIMEOUT)
        return "parent"

    thread = threading.Thread(target=lambda: cache.get("summary", slow))
    thread.start()
    try:
        assert entered.wait(TIMEOUT)
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child: that thread does not exist here)
            code = 1
            try:
                signal.alarm(10)  # a child that waits on the parent's computation dies
                code = 0 if cache.get("summary", lambda: "child") == "child" else 3
            finally:
                os._exit(code)
        assert wait_child(pid) == 0, "the child waited on its parent's computation"
    finally:
        release.set()
        thread.join(TIMEOUT)
