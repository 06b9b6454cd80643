"""``mnemo-obs migrate --to-partitioned``: a plain table converted while writers keep writing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mnemo_obs import DatabaseError, MetricsWriter, apply_schema
from mnemo_obs.cli import main
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.partitions import convert
from mnemo_obs.partitions.convert import Progress, to_partitioned
from mnemo_obs.retention._purge import ADVISORY_LOCK_KEY as PURGE_LOCK
from mnemo_obs.rollups import compact

from .partition_support import connection, partition_names, query, rows_by_table
from .recording import wait_until
from .servers import database_beside

ROWS = 20_000  # over the last ten days, one every 43 seconds


@pytest.fixture
def plain_db(pg_server: Any) -> Iterator[str]:
    """A plain database holding ROWS api rows over ten days."""
    with database_beside(pg_server.dsn, "to_partition") as dsn:
        apply_schema(dsn)
        query(
            dsn,
            """INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata)
               SELECT now() - g * interval '43.2 seconds', 'api', '/r' || g %% 5, g %% 97,
                      jsonb_build_object('endpoint', '/r' || g %% 5, 'method', 'GET',
                                         'status_code', 200, 'trace_id', md5(g::text))
               FROM generate_series(1, %s) AS g""",
            (ROWS,),
        )
        yield dsn


def layout_of(dsn: str, table: str = "metrics") -> str:
    ((kind,),) = query(
        dsn, "SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)", (table,)
    )
    return kind


def leftovers(dsn: str) -> list[tuple[Any, ...]]:
    """What a conversion adds beside the plain tables: its trigger, function and twins."""
    return query(
        dsn,
        "SELECT tgname::text FROM pg_trigger WHERE tgname = %(t)s "
        "UNION ALL SELECT proname::text FROM pg_proc WHERE proname = %(t)s "
        "UNION ALL SELECT relname::text FROM pg_class WHERE relname LIKE '%%\\_partitioned'",
        {"t": convert.TRIGGER},
    )


class Producer:
    """A thread recording rows as fast as the writer takes them, now and then a late one."""

    def __init__(self, writer: MetricsWriter) -> None:
        self.writer = writer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            # One row in ten is late: stamped days ago, inside a range the
            # batches may have copied already; only the trigger can carry it.
            stamp = time.time() - (86400 * (n % 9) if n % 10 == 0 else 0)
            self.writer.record("api", f"/live{n % 3}", float(n % 50), {"n": n}, timestamp=stamp)
            if n % 5 == 0:
                time.sleep(0.002)  # a few thousand rows a second: the queue never fills


def test_converting_while_writers_write_loses_no_row(plain_db: str) -> None:
    writers = [
        MetricsWriter(plain_db, writers=2, batch_size=200, max_queue=200_000) for _ in range(2)
    ]
    producers = [Producer(writer) for writer in writers]
    seen: list[Progress] = []
    try:
        wait_until(
            "rows from both writers", lambda: all(w.stats()["written"] > 500 for w in writers)
        )
        written_before = sum(int(w.stats()["written"]) for w in writers)
        done = to_partitioned(plain_db, batch_size=1_500, progress=seen.append)
        ((kept,),) = query(plain_db, "SELECT count(*) FROM metrics_plain_old")
        # Writers kept writing through the conversion, and go on after it.
        wait_until(
            "rows written into the partitioned table",
            lambda: query(plain_db, "SELECT count(*) FROM metrics")[0][0] > kept + 1000,
        )
    finally:
        for producer in producers:
            producer.stop.set()
            producer.thread.join(10)
        closed = [writer.close(30) for writer in writers]
    assert closed == [True, True]
    stats = [writer.stats() for writer in writers]
    assert all(s["dropped_queue_full"] == 0 and s["rejected"] == 0 for s in stats), stats
    written = sum(int(s["written"]) for s in stats)
    assert written > written_before + 1000  # many batches went in during the conversion
    assert done.converted == ["metrics", "metrics_rollups"]
    assert done.kept == ["metrics_plain_old", "metrics_rollups_plain_old"]
    assert len(seen) > 10 and seen[-1].copied == done.copied >= ROWS
    # Rows in == rows out: every row ever accepted is in the partitioned table, once.
    assert query(plain_db, "SELECT count(*), count(DISTINCT id) FROM metrics") == [
        (ROWS + written, ROWS + written)
    ]
    # ...and every row of the plain table is there, with the same values.
    assert query(
        plain_db,
        "SELECT count(*) FROM metrics_plain_old AS o LEFT JOIN metrics AS m "
        "ON m.id = o.id AND m.timestamp = o.timestamp AND m.value = o.value "
        "AND m.metadata = o.metadata WHERE m.id IS NULL",
    ) == [(0,)]
    assert layout_of(plain_db) == "p" and layout_of(plain_db, "metrics_rollups") == "p"
    assert leftovers(plain_db) == []
    # Every day of rows has its partition: nothing was left in DEFAULT.
    assert "metrics_default" not in rows_by_table(plain_db)
    assert len(partition_names(plain_db)) >= 18  # ten days back, seven ahead, today


def compact_now(dsn: str) -> None:
    with connection(dsn) as conn:
        conn.autocommit = False
        compact(conn)


def test_reads_agree_after_the_conversion(plain_db: str) -> None:
    # The rows' rollups, as the writer and the rollup job would have made them.
    query(
        plain_db,
        "INSERT INTO metrics_rollups_pending SELECT timestamp, metric_type, metric_name, value, "
        "metadata FROM metrics",
    )
    compact_now(plain_db)
    with MetricsCollector(plain_db, redis_url="", cache_ttl=0) as collector:
        before = collector.endpoints(72)["endpoints"]
        to_partitioned(plain_db, keep_plain=False)
        compact_now(plain_db)  # the rollup job works on the partitioned rollups
        after = collector.endpoints(72)["endpoints"]
    assert [e["request_count"] for e in after] == [e["request_count"] for e in before]
    assert sum(e["request_count"] for e in after) > 5000
    assert query(plain_db, "SELECT count(*) > 100 FROM metrics_rollups") == [(True,)]
    assert query(plain_db, "SELECT to_regclass('metrics_plain_old')") == [(None,)]


def test_the_command_line_shows_progress_and_says_what_it_kept(
    plain_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--to-partitioned", "--batch-size", "5000", "--dsn", plain_db]) == 0
    captured = capsys.readouterr()
    assert "metrics: 5,000 rows copied" in captured.err
    assert "converted metrics and metrics_rollups on " in captured.out
    assert f"{ROWS:,} rows copied in batches" in captured.out
    assert "kept as metrics_plain_old, metrics_rollups_plain_old" in captured.out
    assert "DROP TABLE metrics_plain_old" in captured.out
    # Again: nothing to do.
    assert main(["migrate", "--to-partitioned", "--dsn", plain_db]) == 0
    assert "already partitioned: 1" in capsys.readouterr().out


def test_the_kept_name_taken_changes_nothing(plain_db: str) -> None:
    query(plain_db, "CREATE TABLE metrics_plain_old (x int)")
    with pytest.raises(DatabaseError, match='"metrics_plain_old" already exists'):
        to_partitioned(plain_db)
    assert layout_of(plain_db) == "r" and leftovers(plain_db) == []
    assert to_partitioned(plain_db, keep_plain=False).converted == ["metrics", "metrics_rollups"]
    assert query(plain_db, "SELECT count(*) FROM metrics") == [(ROWS,)]


def test_an_interrupted_conversion_leaves_the_plain_table_as_it_was(plain_db: str) -> None:
    def interrupt(done: Progress) -> None:
        if done.copied >= 4000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        to_partitioned(plain_db, batch_size=2000, progress=interrupt)
    assert layout_of(plain_db) == "r" and leftovers(plain_db) == []
    query(plain_db, "INSERT INTO metrics (metric_type, metric_name, value) VALUES ('api', 'x', 1)")
    assert to_partitioned(plain_db, batch_size=2000).copied == ROWS + 1


def test_a_running_purge_holds_it_off(plain_db: str) -> None:
    with connection(plain_db) as other:
        other.autocommit = True
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (PURGE_LOCK,))
        with pytest.raises(
            DatabaseError, match=r"a purge is running on .*: try again when it ends"
        ):
            to_partitioned(plain_db, lock_timeout=0.2)
    assert layout_of(plain_db) == "r" and leftovers(plain_db) == []


def test_privileges_carry_over(plain_db: str) -> None:
    role = f"mnemo_reader_{uuid.uuid4().hex[:8]}"
    query(plain_db, f"CREATE ROLE {role}")
    try:
        query(plain_db, f"GRANT SELECT, INSERT ON metrics TO {role}")
        to_partitioned(plain_db)
        assert query(
            plain_db,
            "SELECT has_table_privilege(%(r)s, 'metrics', 'SELECT'), "
            "has_table_privilege(%(r)s, 'metrics', 'INSERT'), "
            "has_table_privilege(%(r)s, 'metrics', 'DELETE')",
            {"r": role},
        ) == [(True, True, False)]
    finally:
        query(plain_db, f"DROP OWNED BY {role}")
        query(plain_db, f"DROP ROLE {role}")


def test_no_metrics_table_gets_the_partitioned_layout(pg_server: Any) -> None:
    with database_beside(pg_server.dsn, "empty") as dsn:
        done = to_partitioned(dsn, ahead=3)
        assert done.created and done.converted == []
        assert layout_of(dsn) == "p" and len(partition_names(dsn)) == 4
