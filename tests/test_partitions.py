"""The partitioned layout: its tables, the partitions made ahead, DEFAULT, the summary's view."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from mnemo_obs import DatabaseError, MetricsWriter, apply_schema
from mnemo_obs.cli import main
from mnemo_obs.collectors import MetricsCollector, PostgresCollector
from mnemo_obs.partitions import keeper, layout
from mnemo_obs.partitions.keeper import PartitionKeeper

from .partition_support import (
    connection,
    day_name,
    insert_aged,
    keep_now,
    partition_names,
    query,
    rows_by_table,
)
from .proxy import FreezableProxy
from .recording import wait_until
from .servers import OwnedPostgres, database_beside, truncate_metrics
from .test_cli import run_cli


@pytest.fixture
def pdsn(pg_partitioned: str) -> str:
    """The session's partitioned database, emptied, with the partitions a migration makes."""
    truncate_metrics(pg_partitioned)
    return pg_partitioned


@pytest.fixture
def plain_db(pg_server: Any) -> Iterator[str]:
    """A fresh database with the plain layout."""
    with database_beside(pg_server.dsn, "plain") as dsn:
        apply_schema(dsn)
        yield dsn


# -- the tables ----------------------------------------------------------------

COLUMNS = """SELECT column_name, data_type, character_maximum_length, is_nullable,
                    column_default, col_description(to_regclass(%(t)s), ordinal_position)
             FROM information_schema.columns WHERE table_name = %(t)s ORDER BY ordinal_position"""
CHECKS = """SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
            WHERE conrelid = to_regclass(%(t)s) AND contype = 'c' ORDER BY conname"""
INDEXES = """SELECT c.relname,
                    regexp_replace(pg_get_indexdef(i.indexrelid), ' ON (ONLY )?\\S+', ' ON')
             FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid
             WHERE i.indrelid = to_regclass(%(t)s) AND NOT i.indisprimary ORDER BY 1"""
PRIMARY_KEY = """SELECT a.attname FROM pg_index AS i
                 JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
                 JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = to_regclass(%(t)s) AND i.indisprimary ORDER BY k.n"""


@pytest.mark.parametrize("table", ["metrics", "metrics_rollups"])
def test_the_layouts_differ_only_in_the_primary_key(pg_server: Any, pdsn: str, table: str) -> None:
    plain, partitioned = pg_server.dsn, pdsn
    comment = "SELECT obj_description(to_regclass(%(t)s), 'pg_class')"
    for sql in (COLUMNS, CHECKS, INDEXES, comment):
        assert query(plain, sql, {"t": table}) == query(partitioned, sql, {"t": table}), sql
    assert query(plain, INDEXES, {"t": table})  # there is something to compare
    assert query(plain, comment, {"t": table})[0][0]  # the table's comment
    if table == "metrics":
        assert query(plain, COLUMNS, {"t": table})[1][5]  # the columns' comments too
        assert query(plain, PRIMARY_KEY, {"t": table}) == [("id",)]
        assert query(partitioned, PRIMARY_KEY, {"t": table}) == [("id",), ("timestamp",)]
    else:
        assert (
            query(plain, PRIMARY_KEY, {"t": table})
            == query(partitioned, PRIMARY_KEY, {"t": table})
            == []
        )
    kinds = query(pdsn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", (table,))
    assert kinds == [("p",)]


def test_every_partition_has_every_index(pdsn: str) -> None:
    names = [*partition_names(pdsn), "metrics_default"]
    for name in names:
        ((count,),) = query(
            pdsn, "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", (name,)
        )
        assert count == 5, name  # the primary key and the four of the plain table


def test_from_today_to_seven_days_ahead_and_a_default(pdsn: str) -> None:
    names = partition_names(pdsn)
    assert names == [day_name(pdsn, -days) for days in range(8)]
    assert len(partition_names(pdsn, "metrics_rollups")) in (1, 2)  # this month, maybe the next
    kinds = dict(
        query(
            pdsn,
            "SELECT c.relname, pg_get_expr(c.relpartbound, 0) FROM pg_inherits AS i "
            "JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = 'metrics'::regclass",
        )
    )
    assert kinds["metrics_default"] == "DEFAULT"


def test_no_row_is_refused_whatever_its_timestamp(pdsn: str) -> None:
    ids = insert_aged(pdsn, [0, -3, -100, 1, 400, 20_000])
    query(
        pdsn,
        "INSERT INTO metrics (timestamp, metric_type, metric_name, value) "
        "VALUES ('-infinity', 'api', '/odd', 1), ('infinity', 'api', '/odd', 1)",
    )
    assert len(ids) == 6
    assert sum(rows_by_table(pdsn).values()) == 8
    assert rows_by_table(pdsn)["metrics_default"] == 6  # all but today's and 3 days ahead
    # The check constraint still refuses what the plain table refuses.
    with pytest.raises(psycopg2.errors.CheckViolation, match="valid_metric_type"):
        insert_aged(pdsn, [0], "bogus")


def test_the_writer_writes_into_the_day_partition(pdsn: str, make_writer: Any) -> None:
    writer = make_writer(pdsn, maintain_partitions=False)
    writer.submit_request(time.time(), "/x", 1.0, "GET", 200, "t" * 36)
    assert writer.flush(10)
    assert rows_by_table(pdsn) == {day_name(pdsn, 0): 1}


def test_migrating_again_keeps_rows_and_the_chosen_days_ahead(pdsn: str) -> None:
    ids = insert_aged(pdsn, [0, 2])
    assert main(["migrate", "--partitioned", "--ahead-days", "10", "--dsn", pdsn]) == 0
    # Today, ten days ahead, and the day of the row two days back (moved out of DEFAULT).
    assert len(partition_names(pdsn)) == 12
    assert apply_schema(pdsn, partitioned=True) == apply_schema(pdsn)
    assert query(pdsn, f"SELECT ahead_days FROM {layout.SETTINGS}") == [(10,)]
    assert len(partition_names(pdsn)) == 12
    assert {row[0] for row in query(pdsn, "SELECT id::text FROM metrics")} == set(ids)


def test_migrate_partitioned_refuses_a_plain_table(plain_db: str, capsys: Any) -> None:
    assert main(["migrate", "--partitioned", "--dsn", plain_db]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert 'the "metrics" table' in err and "mnemo-obs migrate --to-partitioned" in err
    assert query(
        plain_db, "SELECT relkind::text FROM pg_class WHERE oid = 'metrics'::regclass"
    ) == [("r",)]
    with pytest.raises(DatabaseError, match="is a plain table"):
        apply_schema(plain_db, partitioned=True)


def test_migrate_partitioned_from_a_shell(pg_server: Any) -> None:
    with database_beside(pg_server.dsn, "fresh") as dsn:
        proc = run_cli("migrate", "--partitioned", "--dsn", dsn)
        assert proc.returncode == 0, proc.stderr
        assert "partitioned: 8 day partitions and a DEFAULT one, 7 days ahead" in proc.stdout
        assert len(partition_names(dsn)) == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ahead-days", "3"], "--ahead-days goes with --partitioned or --to-partitioned"),
        (["--partitioned", "--ahead-days", "0"], "must be a whole number of days"),
        (["--partitioned", "--batch-size", "10"], "--batch-size goes with --to-partitioned"),
        (["--partitioned", "--drop-old"], "--drop-old goes with --to-partitioned"),
        (["--partitioned", "--to-partitioned"], "not allowed with argument"),
    ],
)
def test_options_that_do_not_fit_exit_2(argv: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(["migrate", *argv, "--dsn", "host=nowhere"])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_apply_schema_checks_its_arguments(pdsn: str) -> None:
    with pytest.raises(ValueError, match="ahead_days"):
        apply_schema(pdsn, ahead_days=3)
    with pytest.raises(ValueError, match="ahead_days"):
        apply_schema(pdsn, partitioned=True, ahead_days=0)
    with pytest.raises(ValueError, match="partitioned must be True or False"):
        apply_schema(pdsn, partitioned="yes")  # type: ignore[arg-type]


# -- the job: partitions ahead, DEFAULT emptied -----------------------------------


def test_a_pass_makes_the_missing_days_and_moves_default_rows_in(pdsn: str) -> None:
    # 20 and 31 days ahead: no partition yet. The two rows 20 days ahead share
    # one moment, so they share one day whatever the time of day.
    far = insert_aged(pdsn, [-20, -20, -31])
    past = insert_aged(pdsn, [3])
    recent = insert_aged(pdsn, [0])
    query(pdsn, f"UPDATE {layout.SETTINGS} SET ahead_days = 9")
    query(pdsn, "DROP TABLE " + day_name(pdsn, -2))
    assert rows_by_table(pdsn)["metrics_default"] == 4
    done = keep_now(pdsn)
    assert done is not None
    made = {day_name(pdsn, d) for d in (-2, -8, -9, -20, -31, 3)}
    assert {name for name in done.created if name.startswith("metrics_p")} == made
    assert done.moved == 4
    assert "metrics_default" not in rows_by_table(pdsn)
    by_day = rows_by_table(pdsn)
    assert by_day[day_name(pdsn, -20)] == 2 and by_day[day_name(pdsn, 3)] == 1
    assert {row[0] for row in query(pdsn, "SELECT id::text FROM metrics")} == set(
        far + past + recent
    )
    assert keep_now(pdsn).created == []  # nothing left to do


def test_rows_that_cannot_have_a_partition_stay_in_default(pdsn: str) -> None:
    query(
        pdsn,
        "INSERT INTO metrics (timestamp, metric_type, metric_name, value) "
        "VALUES ('infinity', 'api', '/odd', 1), ('0900-01-01', 'api', '/odd', 1)",
    )
    assert keep_now(pdsn).created == []
    assert rows_by_table(pdsn) == {"metrics_default": 2}


def test_rollup_rows_in_default_get_their_month(pdsn: str) -> None:
    query(
        pdsn,
        "INSERT INTO metrics_rollups (width, bucket, level, count, error_count, sum_ms, min_ms, "
        "max_ms, bins, counts) VALUES (86400, now() - interval '100 days', 0, 1, 0, 1, 1, 1, "
        "'{1}', '{1}')",
    )
    assert rows_by_table(pdsn, "metrics_rollups") == {"metrics_rollups_default": 1}
    done = keep_now(pdsn)
    assert len([name for name in done.created if name.startswith("metrics_rollups_p")]) == 1
    assert list(rows_by_table(pdsn, "metrics_rollups")) == [done.created[-1]]


def test_one_process_at_a_time(pdsn: str) -> None:
    query(pdsn, "DROP TABLE " + day_name(pdsn, -7))
    with connection(pdsn) as other:
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (keeper.ADVISORY_LOCK_KEY,))
        assert keep_now(pdsn) is None
        assert day_name(pdsn, -7) not in partition_names(pdsn)
    assert keep_now(pdsn).created == [day_name(pdsn, -7)]


def test_a_pass_waits_a_bounded_time_for_a_locked_default(pdsn: str) -> None:
    query(pdsn, "DROP TABLE " + day_name(pdsn, -7))
    with connection(pdsn) as reader:
        with reader.cursor() as cur:  # a read of the table holds its DEFAULT partition
            cur.execute("SELECT count(*) FROM metrics")
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            keep_now(pdsn)
        assert day_name(pdsn, -7) not in partition_names(pdsn)
        reader.rollback()
    assert keep_now(pdsn).created == [day_name(pdsn, -7)]


def test_on_a_plain_table_a_pass_does_nothing(plain_db: str) -> None:
    insert_aged(plain_db, [-20])
    assert keep_now(plain_db).created == []
    assert query(plain_db, "SELECT count(*) FROM pg_inherits") == [(0,)]


def test_the_writer_runs_the_job(pdsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(PartitionKeeper, "FIRST_DELAY", 0.0)
    insert_aged(pdsn, [-30])
    writer = MetricsWriter(pdsn, maintain_rollups=False)
    try:
        writer.record("api", "/x", 1.0)
        wait_until("the job's first pass", lambda: day_name(pdsn, -30) in partition_names(pdsn))
        assert "mnemo_obs.partitions" in [t.name for t in threading.enumerate()]
        assert rows_by_table(pdsn).get("metrics_default") is None
    finally:
        assert writer.close(10)
    assert "mnemo_obs.partitions" not in [t.name for t in threading.enumerate()]


def test_maintain_partitions_false_starts_no_job(pdsn: str, make_writer: Any) -> None:
    writer = make_writer(pdsn, maintain_partitions=False)
    writer.record("api", "/x", 1.0)
    assert writer.flush(10)
    assert writer._keeper is None
    with pytest.raises(ValueError, match="maintain_partitions"):
        MetricsWriter(pdsn, maintain_partitions="no")  # type: ignore[arg-type]


def test_a_frozen_server_holds_neither_stop_nor_close(pdsn: str) -> None:
    proxy, proxied = FreezableProxy.for_dsn(pdsn)
    job = PartitionKeeper(proxied, first_delay=0, interval=0.05)
    try:
        job.start()
        wait_until("a pass through the proxy", lambda: job.passes >= 1)
        proxy.freeze()  # the next pass waits for an answer that never comes
        stopped = threading.Event()
        threading.Thread(target=lambda: (job.stop(1.0), stopped.set()), daemon=True).start()
        wait_until("stop() to return while the server is frozen", stopped.is_set)
    finally:
        proxy.close()
    wait_until("the thread to end once its connection is gone", lambda: job.stop(0.1))


def test_a_failing_pass_is_logged_once_per_error_and_the_job_goes_on(
    owned_pg: OwnedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    apply_schema(owned_pg.dsn)  # plain: a pass is one catalog query
    job = PartitionKeeper(owned_pg.dsn, first_delay=3600)
    assert job.run_once() is not None
    owned_pg.stop_server()
    try:
        for _ in range(4):  # the connection lost, then refused three times
            assert job.run_once() is None
    finally:
        owned_pg.start_server()
    warnings = [r.getMessage() for r in caplog.records if r.name == "mnemo_obs.partitions"]
    assert len(warnings) == 2 and "Connection refused" in warnings[1], warnings
    assert job.last_error is not None
    assert job.run_once() is not None and job.last_error is None


# -- the summary -----------------------------------------------------------------


def test_the_summary_says_the_layout_and_the_default_rows(pdsn: str, plain_db: str) -> None:
    plain = PostgresCollector(plain_db)
    partitioned = PostgresCollector(pdsn)
    try:
        assert plain.collect()["partitions"] == {"layout": "plain"}
        assert partitioned.collect()["partitions"] == {
            "layout": "partitioned",
            "partitions": 8,
            "ahead_days": 7,
            "ahead_days_target": 7,
            "default_rows": 0,
        }
        insert_aged(pdsn, [5, 6, -40])
        query(pdsn, "DROP TABLE " + day_name(pdsn, -3))
        # From PostgreSQL's statistics, which follow commits within a second or so.
        wait_until(
            "the three rows in DEFAULT to show",
            lambda: partitioned.collect()["partitions"]["default_rows"] == 3,
        )
        assert partitioned.collect()["partitions"]["ahead_days"] == 2
        query(pdsn, "DROP TABLE " + day_name(pdsn, 0))
        assert partitioned.collect()["partitions"]["ahead_days"] is None
    finally:
        plain.close()
        partitioned.close()
    with MetricsCollector(pdsn, redis_url="", cache_ttl=0) as collector:
        assert collector.collect_all()["postgres"]["partitions"]["default_rows"] == 3


def test_migrate_partitioned_does_the_jobs_work_for_cron(
    pdsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_aged(pdsn, [-20, 12])
    assert main(["migrate", "--partitioned", "--dsn", pdsn]) == 0
    assert "moved 2 rows out of the DEFAULT partition" in capsys.readouterr().out
    assert "metrics_default" not in rows_by_table(pdsn)
