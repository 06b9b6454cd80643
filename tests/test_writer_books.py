"""The writer's books: every row offered is in exactly one place, at every read."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from typing import Any

import falcon
import falcon.testing
import psycopg2
import pytest

from mnemo_obs import MetricsWriter
from mnemo_obs.installation import install

from .recording import FAST_RETRY, fetch, wait_child, wait_until
from .servers import OwnedPostgres
from .test_connection_faults import backend_pid
from .test_writer import unreachable_dsn, writer_threads

ACCEPTED_PLACES = ("written", "rejected", "dropped_after_retries", "in_flight", "queue_depth")


def assert_books(stats: dict[str, Any]) -> None:
    """Every accepted row is in exactly one place."""
    assert stats["enqueued"] == sum(stats[key] for key in ACCEPTED_PLACES), stats


def test_a_queue_smaller_than_a_batch_drops_nothing_under_light_load(
    dsn: str, make_writer: Any
) -> None:
    """max_queue < batch_size: the writer wakes at half the queue, not only every interval."""
    writer = make_writer(dsn, max_queue=50)  # batch_size 500, flush_interval 1 s
    for i in range(200):  # about 200 rows/s: the queue would fill 4 times a second
        assert writer.record("system", "burst", float(i))
        time.sleep(0.005)
    assert writer.flush(10)
    stats = writer.stats()
    assert stats["dropped_queue_full"] == 0 and stats["written"] == 200


def test_install_with_a_small_queue_records_every_request(dsn: str, redis_url: str) -> None:
    app = falcon.App()
    app.add_route("/x", _Ok())
    handle = install(app, dsn=dsn, redis_url=redis_url, max_queue=50)
    try:
        client = falcon.testing.TestClient(app)
        for _ in range(100):
            assert client.simulate_get("/x").status_code == 200
            time.sleep(0.005)
        assert handle.writer.flush(10)
        assert handle.writer.stats()["dropped_queue_full"] == 0
        assert len(fetch(dsn, "metric_type = 'api'")) == 100
    finally:
        assert handle.close(10)


class _Ok:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.text = "ok"


def test_the_books_add_up_at_every_read_through_an_outage(owned_pg: OwnedPostgres) -> None:
    writer = MetricsWriter(owned_pg.dsn, max_queue=300, batch_size=50, **FAST_RETRY)
    stop = threading.Event()
    reads: list[dict[str, Any]] = []

    def produce() -> None:
        while not stop.is_set():
            writer.submit_request(time.time(), "/books", 1.0, "GET", 200, "t" * 36)
            time.sleep(0.0005)

    def read() -> None:
        while not stop.is_set():
            reads.append(writer.stats())

    threads = [threading.Thread(target=produce) for _ in range(3)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    try:
        wait_until("rows written", lambda: writer.stats()["written"] > 500)
        owned_pg.stop_server()
        wait_until("drops while the database is down", lambda: writer.stats()["dropped_queue_full"])
        owned_pg.start_server()
        written = writer.stats()["written"]
        wait_until("writing again", lambda: writer.stats()["written"] > written)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert writer.close(10)
    final = writer.stats()
    for stats in [*reads, final]:
        assert_books(stats)
    assert len(reads) > 100
    assert any(stats["in_flight"] for stats in reads)
    assert final["in_flight"] == final["queue_depth"] == 0
    assert final["written"] <= len(fetch(owned_pg.dsn))  # at least once


def test_a_close_that_abandons_a_stuck_batch_counts_it_and_answers_the_truth(
    dsn: str, make_writer: Any
) -> None:
    writer = make_writer(dsn, application_name="abandon-test", max_queue=100, batch_size=10)
    assert writer.record("system", "before", 1.0)
    assert writer.flush(10)
    backend = backend_pid(dsn, "abandon-test")
    threads_before = set(writer_threads())
    os.kill(backend, signal.SIGSTOP)
    try:
        accepted = sum(writer.record("system", "during", float(i)) for i in range(50))
        wait_until("a batch stuck in the COPY", lambda: writer.stats()["in_flight"])
        answers: list[bool] = []
        closers = [
            threading.Thread(target=lambda: answers.append(writer.close(timeout=0.3)))
            for _ in range(2)
        ]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(30)
        assert answers == [False, False]  # concurrent closes: the same truth
        assert writer.close(timeout=0.3) is False  # and again
        stats = writer.stats()
        assert_books(stats)
        assert stats["in_flight"] == stats["queue_depth"] == 0
        assert stats["written"] + stats["dropped_after_retries"] == accepted + 1
    finally:
        os.kill(backend, signal.SIGCONT)
    # The stuck write lands after all: its rows move from dropped to written.
    wait_until("the stuck writer thread to end", lambda: not set(writer_threads()) & threads_before)
    stats = writer.stats()
    assert_books(stats)
    assert stats["written"] + stats["dropped_after_retries"] == accepted + 1
    assert len(fetch(dsn)) == stats["written"]


def test_close_answers_true_again_when_everything_was_written(dsn: str) -> None:
    writer = MetricsWriter(dsn)
    writer.record("system", "x", 1.0)
    results: list[bool] = []
    closers = [threading.Thread(target=lambda: results.append(writer.close(10))) for _ in range(3)]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join(30)
    assert results == [True, True, True]
    assert writer.close() is True


class _PausingDeque(deque):  # type: ignore[type-arg]
    """A queue whose append waits until told: a producer paused between check and append."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def append(self, row: Any) -> None:
        self.entered.set()
        assert self.release.wait(30)
        super().append(row)


def test_a_row_appended_while_close_runs_is_refused_not_stranded(dsn: str) -> None:
    writer = MetricsWriter(dsn)
    assert writer.record("system", "first", 1.0)  # started
    assert writer.flush(10)
    pausing = _PausingDeque()
    writer._queue = pausing
    result: list[bool] = []
    producer = threading.Thread(
        target=lambda: result.append(writer.submit_request(time.time(), "/l", 1.0, "GET", 200, "t"))
    )
    producer.start()
    assert pausing.entered.wait(30)  # past the length check, not yet appended
    assert writer.close(10) is True  # nothing accepted was left unwritten
    pausing.release.set()
    producer.join(30)
    assert result == [False]  # refused: closed meanwhile
    stats = writer.stats()
    assert_books(stats)
    assert stats["queue_depth"] == 0 and stats["dropped_closed"] == 1
    assert stats["written"] == 1


def test_a_writer_closed_before_fork_stays_closed_in_the_child(dsn: str) -> None:
    writer = MetricsWriter(dsn)
    writer.record("system", "parent", 1.0)
    assert writer.close(10)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            refused = writer.record("system", "child", 1.0) is False
            started = any(t.name.startswith("mnemo_obs.writer") for t in threading.enumerate())
            code = 0 if refused and not started and writer.stats()["dropped_closed"] == 1 else 3
        finally:
            os._exit(code)
    assert wait_child(pid) == 0
    assert [r["metric_name"] for r in fetch(dsn)] == ["parent"]


def test_healthy_and_last_error_at_say_whether_it_recovered(owned_pg: OwnedPostgres) -> None:
    writer = MetricsWriter(owned_pg.dsn, **FAST_RETRY)
    try:
        writer.record("system", "a", 1.0)
        assert writer.flush(10)
        stats = writer.stats()
        assert stats["healthy"] is True and stats["last_error_at"] is None
        owned_pg.stop_server()
        writer.record("system", "b", 1.0)
        wait_until("the failure to show", lambda: writer.stats()["healthy"] is False)
        stats = writer.stats()
        assert stats["last_error"] and stats["last_error_at"].endswith("+00:00")
        owned_pg.start_server()
        assert writer.flush(30)
        stats = writer.stats()
        assert stats["healthy"] is True
        assert stats["last_error"]  # kept, with when it happened
        assert stats["last_write_at"] >= stats["last_error_at"]
    finally:
        writer.close(10)


def test_a_non_string_endpoint_is_counted_and_recorded_unmatched(dsn: str) -> None:
    from mnemo_obs import MetricsWSGIMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    with MetricsWriter(dsn) as writer:
        wrapped = MetricsWSGIMiddleware(app, writer, endpoint_of=lambda environ: 42)
        client = falcon.testing.TestClient(wrapped)
        assert client.simulate_get("/a").status_code == 200
        assert client.simulate_get("/b").status_code == 200
        assert wrapped.failures == {"endpoint_of: TypeError": 2}
        assert writer.flush(10)
    assert [r["metric_name"] for r in fetch(dsn)] == ["<unmatched>", "<unmatched>"]


def test_the_summary_ignores_non_finite_values_already_stored(dsn: str) -> None:
    from mnemo_obs.collectors import ApiCollector

    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO metrics (metric_type, metric_name, value, metadata) VALUES "
                "('api', '/a', 10, '{\"status_code\": 200}'), "
                "('api', '/a', 'NaN', '{\"status_code\": 200}'), "
                "('api', '/a', 'Infinity', '{\"status_code\": 500}'), "
                "('api', '/a', '-Infinity', '{\"status_code\": 200}')"
            )
    finally:
        conn.close()
    collector = ApiCollector(dsn)
    try:
        api = collector.collect(1)
    finally:
        collector.close()
    assert (api["request_count"], api["avg_latency_ms"], api["p99_latency_ms"]) == (1, 10.0, 10.0)
    assert api["error_count"] == 0


@pytest.mark.parametrize("max_queue", [1, 2, 7])
def test_tiny_queues_still_write_everything_flushed(
    dsn: str, make_writer: Any, max_queue: int
) -> None:
    writer = make_writer(dsn, max_queue=max_queue)
    accepted = 0
    for i in range(20):
        accepted += writer.record("system", "tiny", float(i))
        assert writer.flush(10)
    assert accepted == 20 and writer.stats()["written"] == 20


def test_an_unreachable_database_books_add_up_after_close() -> None:
    writer = MetricsWriter(unreachable_dsn(), max_queue=100, batch_size=10, **FAST_RETRY)
    accepted = sum(writer.record("system", "x", float(i)) for i in range(500))
    assert not writer.close(0.3)
    stats = writer.stats()
    assert_books(stats)
    assert stats["enqueued"] == accepted == stats["dropped_after_retries"]
    assert stats["dropped_queue_full"] == 500 - accepted
