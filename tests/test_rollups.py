"""Rollups against a real PostgreSQL: they always agree with the raw rows, whatever happens."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg2
import pytest

from mnemo_obs import MetricsWriter
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.retention import purge
from mnemo_obs.rollups import compact, rebuild
from mnemo_obs.rollups.compaction import ADVISORY_LOCK_KEY

from .recording import FAST_RETRY, wait_child, wait_until
from .servers import OwnedPostgres


def query(dsn: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def compact_now(dsn: str) -> dict[str, int]:
    """One whole pass of the background job, now (waiting for another one to finish)."""
    conn = psycopg2.connect(dsn)
    conn.autocommit = False
    try:
        while True:
            done = compact(conn)
            if done is not None:
                return done
            time.sleep(0.05)
    finally:
        conn.close()


def raw_counts(dsn: str, hours: float) -> dict[tuple[str, str], int]:
    rows = query(
        dsn,
        "SELECT metric_name, coalesce(metadata->>'method', ''), count(*) FROM metrics "
        "WHERE metric_type = 'api' AND timestamp >= date_trunc('minute', now() - "
        "make_interval(secs => %s), 'UTC') GROUP BY 1, 2",
        (hours * 3600,),
    )
    return {(name, method): count for name, method, count in rows}


def read_counts(collector: MetricsCollector, hours: float) -> dict[tuple[str, str], int]:
    view = collector.endpoints(hours, limit=1000)
    return {(e["endpoint"], e["method"]): e["request_count"] for e in view["endpoints"]}


@pytest.fixture
def collector(dsn: str) -> Iterator[MetricsCollector]:
    with MetricsCollector(dsn, redis_url="", cache_ttl=0) as made:
        yield made


@pytest.fixture
def from_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads come from the rollups, not the raw rows, however few the rows."""
    from mnemo_obs.rollups import reads

    monkeypatch.setattr(reads, "EXACT_MAX_ROWS", 0)


def submit(writer: MetricsWriter, count: int, *, ago: float = 0.0, route: str = "/r") -> None:
    now = time.time()
    for i in range(count):
        writer.submit_request(
            now - ago - random.random(), f"{route}{i % 3}", 1.0 + i % 7, "GET", 200, "t" * 36
        )


def test_rollups_agree_with_the_raw_rows_through_every_stage(
    dsn: str, collector: MetricsCollector, from_rollups: None
) -> None:
    writer = MetricsWriter(dsn, maintain_rollups=False)
    try:
        submit(writer, 300, ago=3 * 3600)  # hours ago: rolled into their hour, then day
        submit(writer, 300, ago=120)
        submit(writer, 300)
        assert writer.flush(10)
        # Pending only, then minutes, then hours and days: the same counts throughout.
        expected = raw_counts(dsn, 24)
        assert sum(expected.values()) == 900
        assert read_counts(collector, 24) == expected
        assert query(dsn, "SELECT count(*) FROM metrics_rollups_pending") == [(900,)]
        done = compact_now(dsn)
        assert done["pending"] == 900
        assert query(dsn, "SELECT count(*) FROM metrics_rollups_pending") == [(0,)]
        assert read_counts(collector, 24) == expected
        compact_now(dsn)
        assert read_counts(collector, 24) == expected
        for hours in (0.1, 1, 2, 5, 168, 720):
            assert read_counts(collector, hours) == raw_counts(dsn, hours), hours
    finally:
        writer.close(10)


def test_two_writer_processes_into_the_same_minutes(
    dsn: str, collector: MetricsCollector, from_rollups: None
) -> None:
    writer = MetricsWriter(dsn, batch_size=7)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            submit(writer, 500, route="/c")
            code = 0 if writer.flush(30) else 3
        finally:
            os._exit(code)
    try:
        submit(writer, 500, route="/c")
        assert writer.flush(30)
        assert wait_child(pid) == 0
        compact_now(dsn)
        counts = read_counts(collector, 1)
        assert counts == raw_counts(dsn, 1)
        assert sum(counts.values()) == 1000
    finally:
        writer.close(10)


def test_a_batch_retried_after_an_outage_lands_in_its_own_minute(
    owned_pg: OwnedPostgres, from_rollups: None
) -> None:
    writer = MetricsWriter(owned_pg.dsn, maintain_rollups=False, **FAST_RETRY)
    collector = MetricsCollector(owned_pg.dsn, redis_url="", cache_ttl=0)
    try:
        owned_pg.stop_server()
        stamp = time.time() - 5 * 60  # five minutes ago, written late
        for _ in range(20):
            writer.submit_request(stamp, "/late", 2.0, "GET", 500, "t" * 36)
        wait_until("a failed attempt", lambda: writer.stats()["last_error"])
        owned_pg.start_server()
        assert writer.flush(30)
        compact_now(owned_pg.dsn)
        minute = query(
            owned_pg.dsn,
            "SELECT bucket, count, error_count FROM metrics_rollups "
            "WHERE width = 60 AND level = 1 AND endpoint = '/late'",
        )
        assert len(minute) == 1
        bucket, count, errors = minute[0]
        assert abs(bucket.timestamp() - (stamp // 60) * 60) < 1
        assert (count, errors) == (20, 20)
        assert read_counts(collector, 1) == raw_counts(owned_pg.dsn, 1)
    finally:
        writer.close(10)
        collector.close()


def test_rejected_rows_are_counted_nowhere(
    dsn: str, collector: MetricsCollector, from_rollups: None
) -> None:
    query(dsn, "ALTER TABLE metrics ADD CONSTRAINT test_no_refused CHECK (metric_name <> '/no')")
    try:
        writer = MetricsWriter(dsn, maintain_rollups=False)
        try:
            for name in ("/yes", "/no", "/yes", "/no", "/yes"):
                writer.submit_request(time.time(), name, 1.0, "GET", 200, "t" * 36)
            assert writer.flush(10)
            assert writer.stats()["rejected"] == 2
        finally:
            writer.close(10)
    finally:
        query(dsn, "ALTER TABLE metrics DROP CONSTRAINT test_no_refused")
    compact_now(dsn)
    assert read_counts(collector, 1) == {("/yes", "GET"): 3}


def test_after_a_purge_raw_rows_and_rollups_agree(
    dsn: str, collector: MetricsCollector, from_rollups: None
) -> None:
    writer = MetricsWriter(dsn, maintain_rollups=False)
    try:
        for hours_ago in (30, 10, 5, 1, 0):
            submit(writer, 60, ago=hours_ago * 3600)
        assert writer.flush(10)
    finally:
        writer.close(10)
    compact_now(dsn)
    assert purge(dsn, older_than_days=8 / 24) == 120  # the rows of 30 and 10 hours ago
    for hours in (1, 6, 8):
        assert read_counts(collector, hours) == raw_counts(dsn, hours), hours
    # Past the purge, the rollups keep the figures the raw rows no longer have.
    assert sum(read_counts(collector, 48).values()) == 300
    assert sum(raw_counts(dsn, 48).values()) == 180
    summary = collector.collect_all(48)["api"]
    assert summary["request_count"] == 300 and summary["percentiles"] == "approximate"


def test_a_rebuild_is_idempotent_and_keeps_what_raw_rows_no_longer_hold(
    dsn: str, collector: MetricsCollector, from_rollups: None
) -> None:
    # Rows written by another tool: raw rows, no rollups.
    query(
        dsn,
        "INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata) "
        "SELECT now() - i * interval '1 minute', 'api', '/other', i, "
        "jsonb_build_object('method', 'GET', 'status_code', 200, 'trace_id', 'x') "
        "FROM generate_series(0, 299) AS i",
    )
    ((covered,),) = query(
        dsn, "UPDATE metrics_rollups_state SET covered_since = now() RETURNING covered_since"
    )
    before = collector.endpoints(24)
    assert before["endpoints"] == []  # not covered: the answer says where it starts
    assert datetime.fromisoformat(before["window_start"]) >= covered
    done = rebuild(dsn)
    assert done.rows == 300
    assert read_counts(collector, 24) == raw_counts(dsn, 24) == {("/other", "GET"): 300}
    again = rebuild(dsn)
    assert again.rows == 300
    compact_now(dsn)
    assert read_counts(collector, 24) == raw_counts(dsn, 24)
    # After a purge a rebuild starts where the raw rows do: the older rollups stay.
    purge(dsn, older_than_days=2 / 24)
    rebuild(dsn)
    compact_now(dsn)
    assert sum(read_counts(collector, 24).values()) == 300


def test_compaction_runs_in_one_process_at_a_time(dsn: str) -> None:
    holder = psycopg2.connect(dsn)
    holder.autocommit = True
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        conn = psycopg2.connect(dsn)
        conn.autocommit = False
        try:
            assert compact(conn) is None  # busy: skipped
        finally:
            conn.close()
    finally:
        holder.close()
    assert compact_now(dsn) is not None
