"""PostgresCollector (both slow-query sources) and SystemCollector against the real host."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg2
import pytest

from mnemo_obs import apply_schema, embedded
from mnemo_obs.collectors import PostgresCollector, SystemCollector
from mnemo_obs.errors import DatabaseError


def test_postgres_counts_connections_of_this_database(dsn: str) -> None:
    extra = [psycopg2.connect(dsn) for _ in range(3)]
    collector = PostgresCollector(dsn)
    try:
        result = collector.collect()
        with extra[0].cursor() as cur:
            cur.execute("SHOW max_connections")
            (max_connections,) = cur.fetchone()
            cur.execute("SELECT pg_database_size(current_database())")
            (size,) = cur.fetchone()
    finally:
        collector.close()
        for conn in extra:
            conn.close()
    # Our three idle ones plus the collector's own active one.
    assert result["connections_idle"] >= 3
    assert result["connections_active"] >= 1
    assert result["connections_total"] >= 4
    assert result["connections_max"] == int(max_connections)
    assert 0 < result["cache_hit_ratio"] <= 100
    assert result["db_size_mb"] == pytest.approx(size / 1024 / 1024, rel=0.05)
    assert result["slow_queries_source"] == "pg_stat_activity"
    assert result["slow_queries_count"] == 0


def test_slow_query_running_now_counts_without_pg_stat_statements(dsn: str) -> None:
    sleeper = psycopg2.connect(dsn)
    with sleeper.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    thread = threading.Thread(target=lambda: _sleep_until_cancelled(sleeper), daemon=True)
    thread.start()
    watcher = psycopg2.connect(dsn)
    watcher.autocommit = True
    collector = PostgresCollector(dsn, slow_query_ms=50)
    try:
        # Wait (bounded) until the sleep has run past the threshold, by the server's clock.
        deadline = time.monotonic() + 20
        with watcher.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT now() - query_start > interval '60 milliseconds' "
                    "FROM pg_stat_activity WHERE pid = %s AND state = 'active'",
                    (pid,),
                )
                row = cur.fetchone()
                if row and row[0]:
                    break
                assert time.monotonic() < deadline, "the sleeping query never showed up"
                time.sleep(0.02)
        result = collector.collect()
    finally:
        with watcher.cursor() as cur:
            cur.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(timeout=20)
        collector.close()
        watcher.close()
        sleeper.close()
    assert result["slow_queries_source"] == "pg_stat_activity"
    assert result["slow_queries_count"] == 1


def _sleep_until_cancelled(conn: psycopg2.extensions.connection) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(30)")
    except psycopg2.Error:
        pass


@pytest.fixture
def statements_pg() -> Iterator[str]:
    """A cluster with pg_stat_statements loaded and installed."""
    try:
        server = embedded.start(
            postgres_args="-h 127.0.0.1 -F -c logging_collector=off "
            "-c shared_preload_libraries=pg_stat_statements"
        )
    except Exception as exc:
        pytest.skip(f"no PostgreSQL with pg_stat_statements: {exc}")
    try:
        dsn = server.url()
        apply_schema(dsn)
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except psycopg2.Error as exc:
            pytest.skip(f"pg_stat_statements unavailable: {exc}")
        finally:
            conn.close()
        yield dsn
    finally:
        server.stop()


def test_slow_statements_from_pg_stat_statements(statements_pg: str) -> None:
    conn = psycopg2.connect(statements_pg)
    conn.autocommit = True
    collector = PostgresCollector(statements_pg, slow_query_ms=50)
    try:
        before = collector.collect()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(0.1)")  # mean 100 ms: slow
            cur.execute("SELECT 1 + 1")  # fast
        after = collector.collect()
    finally:
        collector.close()
        conn.close()
    assert before["slow_queries_source"] == after["slow_queries_source"] == "pg_stat_statements"
    assert after["slow_queries_count"] == before["slow_queries_count"] + 1


def test_extension_installed_but_not_loaded_falls_back(dsn: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            except psycopg2.Error as exc:
                pytest.skip(f"pg_stat_statements unavailable: {exc}")
        collector = PostgresCollector(dsn)
        try:
            result = collector.collect()
        finally:
            collector.close()
        assert result["slow_queries_source"] == "pg_stat_activity"
        assert result["slow_queries_count"] == 0
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
        conn.close()


def test_postgres_down_raises_one_line(owned_pg) -> None:  # type: ignore[no-untyped-def]
    owned_pg.stop_server()
    collector = PostgresCollector(owned_pg.dsn)
    try:
        with pytest.raises(DatabaseError, match="cannot connect") as info:
            collector.collect()
        assert "\n" not in str(info.value)
    finally:
        collector.close()


def test_bad_threshold_refused(dsn: str) -> None:
    with pytest.raises(ValueError, match="slow_query_ms"):
        PostgresCollector(dsn, slow_query_ms=0)


def test_system_matches_psutil(tmp_path: Path) -> None:
    collector = SystemCollector(disk_path=str(tmp_path))
    # Spin a little so the primed CPU figure has something to measure.
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    result = collector.collect()
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(tmp_path))
    assert result["cpu_count"] == psutil.cpu_count()
    assert 0 <= result["cpu_percent"] <= 100
    assert result["memory_total_mb"] == round(memory.total / 1024 / 1024, 2)
    assert 0 < result["memory_used_mb"] < result["memory_total_mb"]
    assert result["memory_percent"] == pytest.approx(
        100 * result["memory_used_mb"] / result["memory_total_mb"], abs=2
    )
    assert result["disk_total_gb"] == round(disk.total / 1024**3, 2)
    assert 0 <= result["disk_percent"] <= 100


def test_system_refuses_a_missing_disk_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="disk_path"):
        SystemCollector(disk_path=str(tmp_path / "nope"))
