"""MetricsWriter on a real PostgreSQL: batches, escaping, rejections, drops, lifecycle, fork."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnemo_obs import ConfigurationError, MetricsWriter

from .recording import FAST_RETRY, fetch, wait_child, wait_until
from .servers import free_port

ROOT = Path(__file__).resolve().parent.parent
STATS_KEYS = {
    "enqueued",
    "written",
    "dropped_queue_full",
    "dropped_after_retries",
    "dropped_closed",
    "rejected",
    "batches",
    "queue_depth",
    "in_flight",
    "healthy",
    "last_error",
    "last_error_at",
    "last_write_at",
}


def unreachable_dsn() -> str:
    """A DSN nothing listens on: every connect is refused at once."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"


def writer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mnemo_obs.writer")]


def sessions(dsn: str, application_name: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application_name,),
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_nothing_opens_or_starts_before_the_first_row(dsn: str, make_writer: Any) -> None:
    threads_before = writer_threads()
    writer = make_writer(dsn, application_name="lazy-start-test")
    assert writer_threads() == threads_before
    assert sessions(dsn, "lazy-start-test") == 0
    assert writer.flush(timeout=5)  # nothing queued: nothing to start either
    assert writer_threads() == threads_before

    assert writer.record("system", "cpu", 1.0)
    assert writer.flush(timeout=10)
    assert len(writer_threads()) == len(threads_before) + 1
    assert sessions(dsn, "lazy-start-test") == 1
    assert writer.close(timeout=10)
    assert writer_threads() == threads_before
    # The backend ends after the client has closed: wait for the server to see it.
    wait_until("the writer's session to end", lambda: sessions(dsn, "lazy-start-test") == 0)


def test_record_writes_the_row_it_was_given(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    before = time.time()
    assert writer.record("system", "cpu_percent", 12.5, {"host": "a", "n": [1, 2]})
    assert writer.record("cache", "hits", 3, timestamp=1_700_000_000.25)
    assert writer.flush(timeout=10)
    rows = {row["metric_name"]: row for row in fetch(dsn)}
    cpu = rows["cpu_percent"]
    assert (cpu["metric_type"], cpu["value"], cpu["metadata"]) == (
        "system",
        12.5,
        {"host": "a", "n": [1, 2]},
    )
    assert before - 1 <= cpu["timestamp"].timestamp() <= time.time() + 1
    assert str(cpu["timestamp"].utcoffset()) == "0:00:00"
    hits = rows["hits"]
    assert hits["timestamp"].timestamp() == 1_700_000_000.25
    assert (hits["value"], hits["metadata"]) == (3.0, {})
    stats = writer.stats()
    assert set(stats) == STATS_KEYS
    json.dumps(stats)
    assert stats["enqueued"] == stats["written"] == 2
    assert stats["queue_depth"] == 0 and stats["last_error"] is None
    assert stats["last_write_at"].endswith("+00:00")


HOSTILE = [
    "tab\there",
    "newline\nhere",
    "cr\rhere",
    "back\\slash",
    "\\N",
    "\\.",
    "end\\",
    "nul\x00byte",
    "\\t literal",
    "\"quoted\" 'single'",
    "unicode é ☃ 𝄞",
    "\x01\x02\x1b[31m",
    "a\\\x00u0000",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_text_is_stored_as_given(dsn: str, make_writer: Any, name: str) -> None:
    writer = make_writer(dsn)
    assert writer.record("system", name, 1.0, {"name": name, name: "key"})
    assert writer.record("system", "after", 2.0)  # the row after it is intact too
    assert writer.flush(timeout=10)
    clean = name.replace("\x00", "")
    rows = fetch(dsn)
    assert [(r["metric_name"], r["metadata"]) for r in rows if r["metric_name"] != "after"] == [
        (clean, {"name": clean, clean: "key"})
    ]
    assert [r["value"] for r in rows if r["metric_name"] == "after"] == [2.0]
    assert writer.stats()["rejected"] == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=150))
def test_any_text_round_trips(dsn: str, make_writer: Any, name: str) -> None:
    writer = make_writer(dsn)
    marker = f"m{time.monotonic_ns()}"
    assert writer.record("system", name, 1.0, {"marker": marker, "name": name})
    assert writer.flush(timeout=10)
    rows = fetch(dsn, "metadata->>'marker' = %s", (marker,))
    assert len(rows) == 1
    assert rows[0]["metric_name"] == name.replace("\x00", "")[:100]
    assert rows[0]["metadata"]["name"] == name.replace("\x00", "")
    writer.close()


def test_a_long_name_is_cut_to_100_characters(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)
    assert writer.record("system", "x" * 99 + "é" * 50, 1.0)
    assert writer.flush(timeout=10)
    assert [r["metric_name"] for r in fetch(dsn)] == ["x" * 99 + "é"]
    assert writer.stats()["rejected"] == 0


def test_rows_the_database_refuses_cost_only_themselves(
    dsn: str, make_writer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A constraint of the test's own stands for anything a database may refuse
    # (a trigger, a narrower column): the writer refuses bad types itself.
    with psycopg2.connect(dsn) as admin, admin.cursor() as cur:
        cur.execute(
            "ALTER TABLE metrics ADD CONSTRAINT test_refused "
            "CHECK (metric_name NOT LIKE 'refused%%')"
        )
    try:
        writer = make_writer(dsn, flush_interval=60, batch_size=100)
        for i in range(10):
            writer.record("system", f"good-{i}", float(i))
            if i == 3:
                writer.record("system", "refused-by-check", 0.0)
            if i == 7:
                writer.record("api", "refused-too", 0.0)
        writer.record("system", "bad-json", 1.0, {"x": "\ud800"})  # a lone surrogate
        with caplog.at_level(logging.WARNING, logger="mnemo_obs"):
            assert writer.flush(timeout=10)
    finally:
        with psycopg2.connect(dsn) as admin, admin.cursor() as cur:
            cur.execute("ALTER TABLE metrics DROP CONSTRAINT test_refused")
    names = sorted(r["metric_name"] for r in fetch(dsn))
    assert names == sorted(f"good-{i}" for i in range(10))
    stats = writer.stats()
    assert (stats["written"], stats["rejected"], stats["batches"]) == (10, 3, 1)
    assert "test_refused" in stats["last_error"] or "unwritable" in stats["last_error"]
    rejections = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert 1 <= len(rejections) <= 2  # once per batch (plus once for the row not encodable)


def test_a_full_queue_drops_and_counts_every_row(make_writer: Any) -> None:
    writer = make_writer(unreachable_dsn(), max_queue=1000, batch_size=50, **FAST_RETRY)
    producers, per_producer = 8, 5000
    accepted = [0] * producers

    def produce(index: int) -> None:
        for _ in range(per_producer):
            if writer.submit_request(time.time(), "/x", 1.0, "GET", 200, "t"):
                accepted[index] += 1

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not writer.flush(timeout=0.3)
    stats = writer.stats()
    total = sum(accepted)
    assert stats["enqueued"] == total
    assert stats["dropped_queue_full"] == producers * per_producer - total
    # The bound: the queue, plus one batch held for retry, plus an overshoot
    # of at most one row per concurrent producer.
    assert total <= 1000 + 50 + producers - 1
    assert stats["queue_depth"] <= 1000 + producers - 1
    assert stats["written"] == 0
    assert "cannot connect" in stats["last_error"]

    assert not writer.close(timeout=0.2)
    stats = writer.stats()
    assert stats["dropped_after_retries"] == total
    assert stats["queue_depth"] == 0
    assert writer.record("system", "late", 1.0) is False
    assert writer.stats()["dropped_closed"] == 1


def test_max_retries_gives_a_batch_up(make_writer: Any) -> None:
    writer = make_writer(unreachable_dsn(), max_retries=2, **FAST_RETRY)
    for i in range(20):
        writer.record("system", "x", float(i))
    assert writer.flush(timeout=20)  # settled: given up, not written
    stats = writer.stats()
    assert (stats["written"], stats["dropped_after_retries"]) == (0, 20)


def test_close_writes_everything_queued(dsn: str) -> None:
    with MetricsWriter(dsn, flush_interval=60, batch_size=100) as writer:
        for i in range(1234):
            writer.submit_request(time.time(), "/close", float(i), "GET", 200, "t")
    assert len(fetch(dsn)) == 1234
    assert writer.stats()["written"] == 1234
    assert writer.close() is True  # again: nothing left to do


def test_several_writer_threads_share_the_queue(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn, writers=4, batch_size=50, application_name="pool-test")
    for i in range(5000):
        writer.submit_request(time.time(), "/pool", float(i), "GET", 200, "t")
    assert writer.flush(timeout=30)
    assert writer.stats()["written"] == len(fetch(dsn)) == 5000
    assert sorted(r["value"] for r in fetch(dsn)) == [float(i) for i in range(5000)]
    names = writer_threads()
    assert {"mnemo_obs.writer", "mnemo_obs.writer-4"} <= set(names)
    assert 1 <= sessions(dsn, "pool-test") <= 4


def test_a_forked_child_writes_its_own_rows(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn, flush_interval=60)
    writer.record("system", "parent-before", 1.0)
    assert writer.flush(timeout=10)
    writer.record("system", "queued-at-fork", 2.0)  # the parent's: the child must not write it
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            ok = all(writer.record("system", "child", float(i)) for i in range(50))
            ok = ok and writer.flush(timeout=20)
            code = 0 if ok and writer.stats()["written"] == 50 else 3
        finally:
            os._exit(code)
    assert wait_child(pid, timeout=60) == 0
    writer.record("system", "parent-after", 3.0)
    assert writer.flush(timeout=10)
    names = [r["metric_name"] for r in fetch(dsn)]
    assert names.count("child") == 50
    assert sorted(set(names)) == ["child", "parent-after", "parent-before", "queued-at-fork"]
    assert len(names) == 53
    stats = writer.stats()
    assert stats["written"] == 3 and stats["last_error"] is None  # its connection survived


def test_rows_left_at_exit_are_written_by_the_atexit_hook(dsn: str) -> None:
    script = (
        "from mnemo_obs import MetricsWriter\n"
        f"writer = MetricsWriter({dsn!r}, flush_interval=60)\n"
        "for i in range(300):\n"
        "    writer.record('system', 'at-exit', float(i))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(fetch(dsn, "metric_name = 'at-exit'")) == 300


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"max_queue": 0}, "max_queue"),
        ({"batch_size": -1}, "batch_size"),
        ({"batch_size": True}, "batch_size"),
        ({"flush_interval": 0}, "flush_interval"),
        ({"flush_interval": float("inf")}, "flush_interval"),
        ({"writers": 0}, "writers"),
        ({"writers": 1.5}, "writers"),
        ({"retry_initial": -1}, "retry_initial"),
        ({"retry_initial": 2, "retry_max": 1}, "retry_max"),
        ({"max_retries": -1}, "max_retries"),
        ({"shutdown_timeout": "5"}, "shutdown_timeout"),
    ],
)
def test_bad_options_are_refused_naming_the_value(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        MetricsWriter("postgresql://localhost/x", **options)


def test_dsn_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNEMO_OBS_DSN", raising=False)
    with pytest.raises(ConfigurationError, match="MNEMO_OBS_DSN"):
        MetricsWriter()
    monkeypatch.setenv("MNEMO_OBS_DSN", "postgresql://envhost/x")
    assert "envhost" in repr(MetricsWriter())
    assert "argument" in repr(MetricsWriter("postgresql://argument/x"))


def test_record_refuses_what_is_not_a_row(make_writer: Any) -> None:
    writer = make_writer("postgresql://localhost/x")
    with pytest.raises(TypeError):
        writer.record("system", None, 1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'not a number'"):
        writer.record("system", "x", "not a number")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        writer.record("system", "x", 1.0, metadata=["no"])  # type: ignore[arg-type]
    # Refused up front, naming the value: the database would refuse them
    # later and silently, and one NaN made a whole window's average null.
    for bad, named in (
        ({"metric_type": "bogus"}, "'bogus'"),
        ({"metric_type": "API"}, "'API'"),
        ({"value": float("nan")}, "nan"),
        ({"value": float("inf")}, "inf"),
        ({"value": float("-inf")}, "-inf"),
        ({"timestamp": float("nan")}, "nan"),
    ):
        args = {"metric_type": "system", "metric_name": "x", "value": 1.0, **bad}
        with pytest.raises(ValueError, match=named):
            writer.record(**args)
    assert writer.stats()["enqueued"] == 0


def test_request_rows_take_any_form_of_status(dsn: str, make_writer: Any) -> None:
    from http import HTTPStatus

    writer = make_writer(dsn)
    for status in ("404 Not Found", 201, HTTPStatus.ACCEPTED, "500"):
        assert writer.submit_request(time.time(), "/s", 1.0, "GET", status, str(status))
    writer.submit_request(time.time(), "/s", 1.0, "GET", "bad", "x")  # no number: rejected
    assert writer.flush(timeout=10)
    assert sorted(r["metadata"]["status_code"] for r in fetch(dsn)) == [201, 202, 404, 500]
    assert writer.stats()["rejected"] == 1
