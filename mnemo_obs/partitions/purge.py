"""Retention on the partitioned layout: old partitions dropped, batches only where the cutoff is.

A partition whose every row is older than the cutoff is dropped: no row
deleted one by one, no WAL for each, no dead rows for VACUUM, and its disk
space is back at once. Only the partition that straddles the cutoff, and
the DEFAULT partition (which may hold rows of any time), are deleted from in
batches, by :func:`mnemo_obs.retention.purge`'s own loop. A purge of one
metric type cannot drop partitions (they hold the other types too): it
deletes in batches from every partition that reaches back before the cutoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg2.errors

from .layout import PARTITIONS_SQL, Spec, relkind

# A DROP waits for an ACCESS EXCLUSIVE lock on the parent table, and every
# writer and reader that comes after it waits behind it: so it waits a
# little at a time, letting them through in between.
ATTEMPT_WAIT = 0.5


def plan(cur: Any, spec: Spec, cutoff: str, whole: bool) -> tuple[list[str], list[str]] | None:
    """(partitions to drop, tables to delete from in batches); None for a plain table.

    ``cutoff`` is a timestamptz as text; ``whole``: every row older than the
    cutoff goes (no filter on the rows), so whole partitions may be dropped.
    Compared in SQL: the cutoff may lie before any date Python can hold.
    """
    if relkind(cur, spec.table) != "p":
        return None
    cur.execute(
        f"""SELECT name, is_default, hi <= %(cutoff)s::timestamptz,
                   lo IS NULL OR lo < %(cutoff)s::timestamptz
            FROM ({PARTITIONS_SQL}) AS p ORDER BY is_default, lo NULLS FIRST, name""",
        {"table": spec.table, "cutoff": cutoff},
    )
    older, reaching = [], []
    for name, is_default, before, reaches in cur.fetchall():
        if is_default:
            reaching.append(name)
        elif whole and before:
            older.append(name)
        elif reaches:
            reaching.append(name)
    return older, reaching


def drop(
    cur: Any,
    table: str,
    timeouts: str,
    wait: float,
    *,
    count: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Drop the partition ``table`` (``cur`` in autocommit); the rows it held.

    The rows are counted just before the DROP, outside its transaction so
    that the parent's lock is held only for the DROP itself. Each attempt
    waits at most :data:`ATTEMPT_WAIT` for the lock, for ``wait`` seconds
    in all; then the lock timeout error is raised.
    """
    rows = 0
    if count:
        cur.execute("BEGIN")
        cur.execute(timeouts)
        cur.execute(f"SELECT count(*) FROM {table}")
        (rows,) = cur.fetchone()
        cur.execute("COMMIT")
    deadline = time.monotonic() + wait
    while True:
        attempt = max(1, round(min(ATTEMPT_WAIT, max(0.0, deadline - time.monotonic())) * 1000))
        cur.execute("BEGIN")
        cur.execute(timeouts)
        cur.execute(f"SET LOCAL lock_timeout = {attempt}")
        try:
            cur.execute(f"DROP TABLE {table}")
        except psycopg2.errors.LockNotAvailable:
            cur.execute("ROLLBACK")
            if time.monotonic() >= deadline:
                raise
            sleep(min(ATTEMPT_WAIT, max(0.0, deadline - time.monotonic())))
            continue
        cur.execute("COMMIT")
        return int(rows)
