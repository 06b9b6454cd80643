"""Retention on the partitioned layout: old partitions dropped whole, batches at the cutoff."""

from __future__ import annotations

import psycopg2
import pytest

from mnemo_obs import DatabaseError
from mnemo_obs.cli import main
from mnemo_obs.retention import purge

from .partition_support import (
    connection,
    day_name,
    insert_aged,
    keep_now,
    partition_names,
    query,
    rows_by_table,
)
from .servers import truncate_metrics

MINUTE = 1 / 1440


@pytest.fixture
def pdsn(pg_partitioned: str) -> str:
    truncate_metrics(pg_partitioned)
    return pg_partitioned


def at_noon(dsn: str, days_ago: int, count: int) -> list[str]:
    """``count`` rows at noon (UTC) of the day ``days_ago`` days back; their ids."""
    rows = query(
        dsn,
        """INSERT INTO metrics (timestamp, metric_type, metric_name, value)
           SELECT date_trunc('day', now() - %s * interval '1 day', 'UTC') + interval '12 hours'
                  + g * interval '1 minute', 'api', '/noon', g
           FROM generate_series(1, %s) AS g RETURNING id::text""",
        (days_ago, count),
    )
    return [row[0] for row in rows]


def noon_cutoff(dsn: str) -> float:
    """The days back to noon (UTC) 30 days ago: a cutoff far from midnight at
    any time of day, so rows a minute and a half either side share its day."""
    ((days,),) = query(
        dsn,
        "SELECT extract(epoch FROM now() - date_trunc('day', now() - interval '30 days', 'UTC')"
        " - interval '12 hours') / 86400",
    )
    return float(days)


def aged_layout(dsn: str) -> tuple[dict[str, list[str]], float]:
    """Rows in their own day partitions 40 and 35 days back, around a cutoff about 30 days
    back, and one in DEFAULT: the ids of each group, and the cutoff in days."""
    days = noon_cutoff(dsn)
    groups = {
        "40 days": at_noon(dsn, 40, 3),
        "35 days": at_noon(dsn, 35, 2),
        # A minute and a half either side of the cutoff (to the minute), in
        # the day partition holding both.
        "before the cutoff": insert_aged(dsn, [days + 1.5 * MINUTE]),
        "after the cutoff": insert_aged(dsn, [days - 1.5 * MINUTE, 29, 1, 0]),
    }
    keep_now(dsn)  # their partitions, made by the job, the rows moved in
    groups["default"] = insert_aged(dsn, [400])  # no partition for it: DEFAULT
    assert rows_by_table(dsn)["metrics_default"] == 1
    return groups, days


def test_old_partitions_go_whole_and_only_the_straddling_one_in_batches(pdsn: str) -> None:
    groups, days = aged_layout(pdsn)
    straddling = day_name(pdsn, days)
    dropped = {day_name(pdsn, 40), day_name(pdsn, 35)}
    assert dropped <= set(partition_names(pdsn))
    seen: list[int] = []
    assert purge(pdsn, older_than_days=days, batch_size=1, progress=seen.append) == 7
    # Whole partitions first (3 rows, then 2), then one row a batch: the
    # straddling partition's, then DEFAULT's.
    assert seen == [3, 5, 6, 7]
    names = set(partition_names(pdsn))
    assert not dropped & names
    assert straddling in names and day_name(pdsn, 29) in names
    kept = {row[0] for row in query(pdsn, "SELECT id::text FROM metrics")}
    assert kept == set(groups["after the cutoff"])
    assert purge(pdsn, older_than_days=days) == 0


def test_a_purge_of_one_type_drops_no_partition(pdsn: str) -> None:
    _groups, days = aged_layout(pdsn)
    redis_ids = insert_aged(pdsn, [40, 35.5, 29], "redis")
    before = set(partition_names(pdsn))
    assert purge(pdsn, older_than_days=days, metric_type="redis", batch_size=1) == 2
    assert set(partition_names(pdsn)) == before
    assert {
        row[0] for row in query(pdsn, "SELECT id::text FROM metrics WHERE metric_type = 'redis'")
    } == {redis_ids[2]}
    assert query(pdsn, "SELECT count(*) FROM metrics WHERE metric_type = 'api'") == [(11,)]


def test_a_dry_run_drops_nothing(pdsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    _groups, days = aged_layout(pdsn)
    before = set(partition_names(pdsn))
    assert main(["purge", "--days", repr(days), "--dry-run", "--dsn", pdsn]) == 0
    assert capsys.readouterr().out.startswith("would delete 7 rows older than ")
    assert set(partition_names(pdsn)) == before
    assert main(["purge", "--days", repr(days), "--dsn", pdsn]) == 0
    assert capsys.readouterr().out.startswith("deleted 7 rows older than ")


def test_a_drop_waits_a_bounded_time_for_its_lock(pdsn: str) -> None:
    _groups, days = aged_layout(pdsn)
    with connection(pdsn) as reader:
        with reader.cursor() as cur:  # an open read holds every partition of metrics
            cur.execute("SELECT count(*) FROM metrics")
        with pytest.raises(
            DatabaseError, match=r"after 0 rows deleted: .* more than 1 s for a lock"
        ):
            purge(pdsn, older_than_days=days, lock_timeout=1)
        reader.rollback()
    assert day_name(pdsn, 40) in partition_names(pdsn)
    assert purge(pdsn, older_than_days=days) == 7


def test_rollups_past_their_days_go_by_the_month(pdsn: str) -> None:
    for days in (500, 300):
        query(
            pdsn,
            "INSERT INTO metrics_rollups (width, bucket, level, count, error_count, sum_ms, "
            "min_ms, max_ms, bins, counts, rolled_up) VALUES (86400, now() - %s * interval "
            "'1 day', 0, 1, 0, 1, 1, 1, '{1}', '{1}', true)",
            (days,),
        )
    made = keep_now(pdsn).created
    months = [name for name in made if name.startswith("metrics_rollups_p")]
    assert len(months) == 2
    purge(pdsn, older_than_days=30, rollup_days=400)
    names = partition_names(pdsn, "metrics_rollups")
    assert months[0] not in names and months[1] in names
    assert query(pdsn, "SELECT count(*) FROM metrics_rollups") == [(1,)]


def test_a_plain_table_is_purged_as_before(pg_server: object) -> None:
    # The plain layout's own tests run in test_retention.py; here, only that
    # the partitioned path is not taken for it.
    dsn = pg_server.dsn  # type: ignore[attr-defined]
    truncate_metrics(dsn)
    insert_aged(dsn, [40, 1])
    assert purge(dsn, older_than_days=30) == 1
    with pytest.raises(psycopg2.Error):
        query(dsn, "SELECT 'metrics_default'::regclass")
