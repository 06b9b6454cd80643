"""Helpers for the partitioned-layout tests: catalog reads and rows at chosen times."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from mnemo_obs.partitions import layout
from mnemo_obs.partitions.keeper import Pass, keep


@contextmanager
def connection(dsn: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(dsn)
    try:
        yield conn
    finally:
        conn.close()


def query(dsn: str, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else []


def partition_names(dsn: str, table: str = "metrics") -> list[str]:
    """The range partitions of ``table``, oldest first (DEFAULT not included)."""
    spec = next(s for s in layout.SPECS if s.table == table)
    with connection(dsn) as conn, conn, conn.cursor() as cur:
        ranges, _default = layout.partitions(cur, spec)
    return [p.name for p in ranges]


def rows_by_table(dsn: str, table: str = "metrics") -> dict[str, int]:
    """How many rows each partition of ``table`` holds (only those with rows)."""
    return dict(query(dsn, f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1"))


def insert_aged(dsn: str, ages_days: Sequence[float], metric_type: str = "api") -> list[str]:
    """One row per age (days before the server's now(), negative: ahead); their ids."""
    rows = query(
        dsn,
        """INSERT INTO metrics (timestamp, metric_type, metric_name, value)
           SELECT now() - make_interval(secs => age * 86400), %s, '/aged', age
           FROM unnest(%s::float8[]) AS age RETURNING id::text""",
        (metric_type, list(ages_days)),
    )
    return [row[0] for row in rows]


def keep_now(dsn: str) -> Pass | None:
    """One pass of the partition job, on a connection of its own."""
    with connection(dsn) as conn:
        conn.autocommit = False
        return keep(conn)


def day_name(dsn: str, days_ago: float) -> str:
    """The name of the day partition that holds now() minus ``days_ago`` days."""
    ((moment,),) = query(dsn, "SELECT now() - make_interval(secs => %s)", (days_ago * 86400,))
    return layout.METRICS.name(layout.METRICS.floor(moment))
