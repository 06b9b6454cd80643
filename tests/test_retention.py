"""Retention: purge() and RetentionScheduler against a real PostgreSQL."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg2
import pytest

from mnemo_obs import ConfigurationError, DatabaseError, retention
from mnemo_obs.retention import RetentionScheduler, purge

from .recording import TIMEOUT, wait_until
from .servers import free_port


@contextmanager
def connection(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(dsn)
    try:
        yield conn
    finally:
        conn.close()


def insert_aged(dsn: str, ages_days: Sequence[float], metric_type: str = "api") -> list[str]:
    """Insert one row per age (days before the server's now()); return their ids."""
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO metrics (timestamp, metric_type, metric_name, value)
               SELECT now() - make_interval(secs => age * 86400), %s, '/aged', age
               FROM unnest(%s::float8[]) AS age
               RETURNING id::text""",
            (metric_type, list(ages_days)),
        )
        return [row[0] for row in cur.fetchall()]


def ids_left(dsn: str) -> set[str]:
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT id::text FROM metrics")
        return {row[0] for row in cur.fetchall()}


OLD_AGES = [30.01, 30.5, 31, 45, 60, 90, 365] * 4  # 28 rows
RECENT_AGES = [0, 0.001, 1, 7, 29, 29.99]


def test_deletes_exactly_the_older_rows_across_batches(dsn: str) -> None:
    old = insert_aged(dsn, OLD_AGES)
    recent = insert_aged(dsn, RECENT_AGES)
    seen: list[int] = []
    assert purge(dsn, older_than_days=30, batch_size=5, progress=seen.append) == len(old)
    assert ids_left(dsn) == set(recent)
    # 28 rows in batches of 5: five full batches and one of 3.
    assert seen == [5, 10, 15, 20, 25, 28]
    assert purge(dsn, older_than_days=30, batch_size=5) == 0


def test_fractional_days(dsn: str) -> None:
    insert_aged(dsn, [0.4, 0.6, 2])
    assert purge(dsn, older_than_days=0.5) == 2
    assert len(ids_left(dsn)) == 1


def test_metric_type_filter(dsn: str) -> None:
    old_api = insert_aged(dsn, OLD_AGES, "api")
    insert_aged(dsn, OLD_AGES[:10], "redis")
    recent_redis = insert_aged(dsn, RECENT_AGES, "redis")
    assert purge(dsn, older_than_days=30, batch_size=3, metric_type="redis") == 10
    assert ids_left(dsn) == set(old_api) | set(recent_redis)


def test_dry_run_counts_and_deletes_nothing(dsn: str) -> None:
    insert_aged(dsn, OLD_AGES, "api")
    insert_aged(dsn, OLD_AGES[:5], "cache")
    before = ids_left(dsn)
    assert purge(dsn, older_than_days=30, dry_run=True) == len(OLD_AGES) + 5
    assert purge(dsn, older_than_days=30, dry_run=True, metric_type="cache") == 5
    assert purge(dsn, older_than_days=400, dry_run=True) == 0
    assert ids_left(dsn) == before


@pytest.mark.parametrize("autocommit", [False, True])
def test_given_connection_stays_open_with_its_autocommit(dsn: str, autocommit: bool) -> None:
    insert_aged(dsn, [40, 1])
    with connection(dsn) as conn:
        conn.autocommit = autocommit
        assert purge(conn, older_than_days=30) == 1
        assert not conn.closed
        assert conn.autocommit is autocommit
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics")
            assert cur.fetchone() == (1,)


def test_refuses_a_connection_inside_a_transaction(dsn: str) -> None:
    insert_aged(dsn, [40])
    with connection(dsn) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")  # opens a transaction (autocommit is off)
        with pytest.raises(ConfigurationError, match="commit or roll back"):
            purge(conn, older_than_days=30)
        conn.rollback()
    assert len(ids_left(dsn)) == 1


def test_concurrent_inserts_during_a_purge_lose_no_row(dsn: str) -> None:
    """A writer thread with its own connection keeps inserting between (and during) batches."""
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO metrics (timestamp, metric_type, metric_name, value)
               SELECT now() - interval '40 days' + g * interval '1 second', 'api', '/old', 1
               FROM generate_series(1, 3000) g"""
        )
    inserted: list[str] = []
    committed = threading.Condition()
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with connection(dsn) as conn:
                deadline = time.monotonic() + TIMEOUT
                while not done.is_set() and time.monotonic() < deadline:
                    with conn, conn.cursor() as cur:
                        cur.execute(
                            """INSERT INTO metrics (metric_type, metric_name, value)
                               SELECT 'api', '/new', g FROM generate_series(1, 20) g
                               RETURNING id::text"""
                        )
                        rows = [row[0] for row in cur.fetchall()]
                    with committed:
                        inserted.extend(rows)
                        committed.notify_all()
        except BaseException as exc:
            errors.append(exc)

    def wait_for_more_inserts(_deleted: int) -> None:
        # Hand over to the writer between batches: the purge goes on only
        # once the writer has committed more rows, so the two interleave.
        with committed:
            seen = len(inserted)
            assert committed.wait_for(lambda: len(inserted) > seen, timeout=TIMEOUT)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with committed:
            assert committed.wait_for(lambda: inserted, timeout=TIMEOUT)
        assert (
            purge(dsn, older_than_days=30, batch_size=200, progress=wait_for_more_inserts) == 3000
        )
    finally:
        done.set()
        thread.join(TIMEOUT)
    assert not errors
    assert len(inserted) >= 20 * 16  # at least one commit per batch (15 batches), plus the first
    assert ids_left(dsn) == set(inserted)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"older_than_days": 0}, "0"),
        ({"older_than_days": -3}, "-3"),
        ({"older_than_days": math.nan}, "nan"),
        ({"older_than_days": math.inf}, "inf"),
        ({"older_than_days": "30"}, "'30'"),
        ({"older_than_days": True}, "True"),
        ({"older_than_days": None}, "None"),
        ({"older_than_days": 10**9}, "1000000000"),
        ({"batch_size": 0}, "0"),
        ({"batch_size": -1}, "-1"),
        ({"batch_size": 2.5}, "2.5"),
        ({"batch_size": "100"}, "'100'"),
        ({"metric_type": "http"}, "'http'"),
        ({"metric_type": "API"}, "'API'"),
        ({"progress": 3}, "3"),
    ],
)
def test_bad_arguments_raise_before_deleting(dsn: str, kwargs: dict, named: str) -> None:
    insert_aged(dsn, [40, 50])
    with pytest.raises(ConfigurationError) as info:
        purge(dsn, **kwargs)
    assert named in str(info.value)
    assert isinstance(info.value, ValueError)
    assert len(ids_left(dsn)) == 2


def test_bad_target_and_unreachable_server() -> None:
    with pytest.raises(ConfigurationError, match="42"):
        purge(42)  # type: ignore[arg-type]
    with pytest.raises(DatabaseError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:"):
        purge(f"postgresql://postgres@127.0.0.1:{free_port()}/x", older_than_days=30)


def test_refused_delete_is_one_line_database_error(dsn: str) -> None:
    insert_aged(dsn, [40])
    with connection(dsn) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS mnemo_obs_ro")
            cur.execute("CREATE ROLE mnemo_obs_ro LOGIN")
            cur.execute("GRANT SELECT ON metrics TO mnemo_obs_ro")
        try:
            params = psycopg2.extensions.parse_dsn(dsn)
            params["user"] = "mnemo_obs_ro"
            params.pop("password", None)
            ro_dsn = " ".join(f"{key}='{value}'" for key, value in params.items())
            assert purge(ro_dsn, older_than_days=30, dry_run=True) == 1
            with pytest.raises(DatabaseError) as info:
                purge(ro_dsn, older_than_days=30)
            message = str(info.value)
            assert "after 0 rows deleted" in message and "permission denied" in message
            assert "\n" not in message
        finally:
            with admin.cursor() as cur:
                cur.execute("REVOKE ALL ON metrics FROM mnemo_obs_ro")
                cur.execute("DROP ROLE mnemo_obs_ro")
    assert len(ids_left(dsn)) == 1


# -- RetentionScheduler ------------------------------------------------------


def test_scheduler_runs_purge_then_stops(dsn: str) -> None:
    insert_aged(dsn, OLD_AGES)
    recent = insert_aged(dsn, RECENT_AGES)
    scheduler = RetentionScheduler(
        dsn=dsn, older_than_days=30, first_delay=0, interval=3600, jitter=0, batch_size=7
    )
    scheduler.start()
    try:
        names = {t.name: t for t in threading.enumerate()}
        assert "mnemo_obs.retention" in names and names["mnemo_obs.retention"].daemon
        wait_until("a first purge", lambda: scheduler.last_deleted is not None)
        assert scheduler.last_deleted == len(OLD_AGES)
        assert scheduler.runs == 1 and scheduler.last_error is None
        assert ids_left(dsn) == set(recent)
    finally:
        # Waiting out the hour-long interval: stop() must cut it short.
        assert scheduler.stop(timeout=TIMEOUT)
    assert "mnemo_obs.retention" not in {t.name for t in threading.enumerate()}


def test_scheduler_repeats_every_interval(dsn: str) -> None:
    scheduler = RetentionScheduler(dsn=dsn, first_delay=0, interval=0.01, jitter=0)
    scheduler.start()
    try:
        wait_until("three purges", lambda: scheduler.runs >= 3)
        insert_aged(dsn, [40])
        wait_until("every old row deleted", lambda: not ids_left(dsn))
    finally:
        assert scheduler.stop(timeout=TIMEOUT)


def test_scheduler_logs_errors_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="mnemo_obs.retention")
    scheduler = RetentionScheduler(
        dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        first_delay=0,
        interval=0.01,
        jitter=0.5,
    )
    scheduler.start()
    try:
        wait_until("two purges", lambda: scheduler.runs >= 2)
        assert scheduler._thread is not None and scheduler._thread.is_alive()
    finally:
        assert scheduler.stop(timeout=TIMEOUT)
    assert scheduler.last_error and "cannot connect" in scheduler.last_error
    assert scheduler.last_deleted is None
    assert any("cannot connect" in r.getMessage() for r in caplog.records)


def test_scheduler_stop_before_start_and_restart(dsn: str) -> None:
    scheduler = RetentionScheduler(dsn=dsn, first_delay=3600, jitter=0)
    assert scheduler.stop(timeout=1)
    scheduler.start()
    scheduler.start()  # no-op while running
    assert [t.name for t in threading.enumerate()].count("mnemo_obs.retention") == 1
    assert scheduler.stop(timeout=TIMEOUT)
    assert scheduler.runs == 0  # the first run was an hour away
    scheduler.start()
    assert scheduler.stop(timeout=TIMEOUT)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"older_than_days": 0}, "0"),
        ({"interval": 0}, "0"),
        ({"interval": -1}, "-1"),
        ({"interval": math.nan}, "nan"),
        ({"first_delay": -1}, "-1"),
        ({"first_delay": "soon"}, "'soon'"),
        ({"jitter": 2}, "2"),
        ({"batch_size": 0}, "0"),
        ({"metric_type": "web"}, "'web'"),
    ],
)
def test_scheduler_validates_eagerly(dsn: str, kwargs: dict, named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        RetentionScheduler(dsn=dsn, **kwargs)
    assert named in str(info.value)


def test_scheduler_needs_a_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MNEMO_OBS_DSN", raising=False)
    with pytest.raises(ConfigurationError, match="MNEMO_OBS_DSN"):
        RetentionScheduler()


@pytest.mark.parametrize("metric_type", [None, "api"])
def test_batches_walk_the_time_index_and_delete_by_tid(
    dsn: str, layout: str, metric_type: str | None
) -> None:
    # On the partitioned layout, a batch deletes from one partition: these
    # rows, up to 70 days old, are in DEFAULT (partitions start today).
    table = "metrics" if layout == "plain" else "metrics_default"
    index = "idx_metrics_time" if layout == "plain" else "metrics_default_timestamp_idx"
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO metrics (timestamp, metric_type, metric_name, value)
               SELECT now() - g * interval '5 minutes', (ARRAY['api', 'redis'])[1 + g % 2],
                      '/r' || g % 10, g
               FROM generate_series(1, 20000) g"""
        )
        cur.execute("ANALYZE metrics")
        cur.execute("SELECT now() - interval '30 days'")
        (cutoff,) = cur.fetchone()
        sql = retention._purge._BATCH_SQL.format(
            table=table, type_filter=retention._purge._TYPE_FILTER if metric_type else ""
        )
        cur.execute(
            "EXPLAIN " + sql,
            {
                "cutoff": cutoff,
                "after": "-infinity",
                "limit": 1000,
                "metric_type": metric_type,
            },
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
    assert f"Index Scan Backward using {index} on {table}" in plan, plan
    assert "LockRows" in plan and "Tid Scan on metrics" in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan, plan


def test_extreme_days_and_timestamps_outside_pythons_datetime_range(dsn: str) -> None:
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        cur.execute(
            """INSERT INTO metrics (timestamp, metric_type, metric_name, value)
               VALUES ('-infinity', 'api', '/x', 1), ('0100-01-01 BC', 'api', '/x', 1),
                      (now() - interval '3000 years', 'api', '/x', 1),
                      (now() - interval '1 day', 'api', '/x', 1)"""
        )
    assert purge(dsn, older_than_days=1_000_000, dry_run=True) == 2
    assert purge(dsn, older_than_days=1_000_000, batch_size=1) == 2
    assert purge(dsn, older_than_days=30, batch_size=1) == 1
    assert len(ids_left(dsn)) == 1


@pytest.mark.parametrize(
    ("datestyle", "timezone"),
    [("SQL, DMY", "Europe/Paris"), ("Postgres, MDY", "America/New_York"), ("German", "UTC")],
)
def test_session_date_settings_do_not_move_the_cutoff(
    dsn: str, datestyle: str, timezone: str
) -> None:
    # The cutoff starts a minute: rows a few minutes older than 30 days go.
    insert_aged(dsn, [30.003 + i / 100_000 for i in range(30)])
    recent = insert_aged(dsn, [29.9999 - i / 100_000 for i in range(30)])
    with connection(dsn) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT set_config('DateStyle', %s, false)", (datestyle,))
            cur.execute("SELECT set_config('TimeZone', %s, false)", (timezone,))
        assert purge(conn, older_than_days=30, batch_size=7) == 30
    assert ids_left(dsn) == set(recent)
