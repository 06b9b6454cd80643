"""``mnemo-obs rollup --rebuild``: rollups from the raw rows, for tables filled without them.

A table filled before the rollups existed (or by another tool) has raw rows
and no rollups. A rebuild aggregates the raw rows into minute rows, ten
minutes at a time, each chunk one transaction that replaces that range's
minute rows; the background job then rolls them up to hours and days. It is
idempotent (run it again: the same rows), and it never touches a range
whose raw rows are gone: only from the oldest raw row (or the last purge's
cutoff) on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg2
import psycopg2.extensions

from .. import db
from ..errors import ConfigurationError, DatabaseError
from . import sql

CHUNK = timedelta(minutes=10)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class Progress:
    """How far a rebuild is: raw rows read, minutes done, of how many."""

    rows: int = 0
    chunks_done: int = 0
    chunks: int = 0
    seconds: float = 0.0


def _floor_minute(moment: datetime) -> datetime:
    seconds = (moment - _EPOCH).total_seconds()
    return _EPOCH + timedelta(seconds=math.floor(seconds / 60) * 60)


def rebuild(
    dsn: str | None,
    *,
    hours: float | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Rebuild the minute rollups of the last ``hours`` (None: every raw row) from raw rows.

    Each chunk locks the rollups table against writes for its transaction
    (the writers' batches wait, tens to hundreds of milliseconds), deletes
    the chunk's minute rows, un-rolls the coarser rows it touched, and
    writes its minute rows again from ``metrics``.

    Raises:
        ConfigurationError: a bad argument, or no rollup tables (run
            ``mnemo-obs migrate``).
        DatabaseError: the server failed; the chunks done so far are kept.
    """
    if hours is not None and (
        isinstance(hours, bool)
        or not isinstance(hours, int | float)
        or not math.isfinite(hours)
        or hours <= 0
    ):
        raise ConfigurationError(f"hours must be a finite number > 0, got {hours!r}")
    dsn = db.resolve_dsn(dsn)
    conn = db.connect(dsn, application_name="mnemo_obs.rebuild")
    done = Progress()
    started = time.monotonic()
    try:
        with conn.cursor() as cur:
            start, end = _range(cur, hours)
            conn.commit()
            if start is None or end is None or start >= end:
                return done
            chunk_starts = []
            moment = start
            while moment < end:
                chunk_starts.append(moment)
                moment += CHUNK
            done.chunks = len(chunk_starts)
            for chunk in chunk_starts:
                done.rows += _chunk(conn, cur, chunk, min(chunk + CHUNK, end))
                done.chunks_done += 1
                done.seconds = time.monotonic() - started
                if progress is not None:
                    progress(done)
            # The coverage now starts where the rebuild did.
            cur.execute(
                f"UPDATE {sql.STATE} SET covered_since = least(covered_since, %s::timestamptz)",
                (start,),
            )
            conn.commit()
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"rebuild failed on {db.describe(dsn)} after {done.chunks_done} of {done.chunks} "
            f"chunks: {db.explain(exc, dsn)}"
        ) from exc
    finally:
        conn.close()
    done.seconds = time.monotonic() - started
    return done


def _range(cur: Any, hours: float | None) -> tuple[datetime | None, datetime | None]:
    """The minutes to rebuild: where raw rows are complete, up to the current minute."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (sql.TABLE,))
    if not cur.fetchone()[0]:
        raise ConfigurationError("the rollup tables do not exist: run `mnemo-obs migrate` first")
    cur.execute(
        f"SELECT now(), (SELECT min(timestamp) FROM metrics WHERE metric_type = 'api'), "
        f"(SELECT purged_before FROM {sql.STATE})"
    )
    now, oldest, purged = cur.fetchone()
    if oldest is None:
        return None, None
    start = _floor_minute(oldest)
    if purged is not None and purged > start:
        start = _floor_minute(purged)
        if start < purged:  # the purge cut into this minute: its raw rows are partial
            start += timedelta(minutes=1)
    if hours is not None:
        start = max(start, _floor_minute(now - timedelta(hours=hours)))
    return start, _floor_minute(now) + timedelta(minutes=1)


def _chunk(conn: psycopg2.extensions.connection, cur: Any, start: datetime, end: datetime) -> int:
    """Replace the minute rows of [start, end) with those of the raw rows; how many rows read."""
    params = {"start": start, "end": end}
    # Writers (and the background job) wait for this transaction: what they
    # write is then either in the raw rows read here, or added after it.
    # In the order the background job takes them (pending, then rollups): no deadlock.
    cur.execute(f"LOCK TABLE {sql.PENDING} IN SHARE ROW EXCLUSIVE MODE")
    cur.execute(f"LOCK TABLE {sql.TABLE} IN SHARE ROW EXCLUSIVE MODE")
    # Pending rows of the range are raw rows read below: counted once.
    cur.execute(
        f"DELETE FROM {sql.PENDING} WHERE timestamp >= %(start)s AND timestamp < %(end)s", params
    )
    cur.execute(
        f"DELETE FROM {sql.TABLE} WHERE width = 60 AND bucket >= %(start)s AND bucket < %(end)s",
        params,
    )
    for child, width in sql.PARENT.items():
        # The parents that held these minutes go; their other children roll up again.
        lo = sql.floor_sql("%(start)s::timestamptz", width)
        hi = sql.floor_sql("(%(end)s::timestamptz - interval '1 microsecond')", width)
        cur.execute(
            f"DELETE FROM {sql.TABLE} WHERE width = {width} AND bucket >= {lo} AND bucket <= {hi}",
            params,
        )
        cur.execute(
            f"UPDATE {sql.TABLE} SET rolled_up = false WHERE width = {child} AND rolled_up "
            f"AND bucket >= {lo} AND bucket < {hi} + interval '{width} seconds'",
            params,
        )
    cur.execute(
        "SELECT count(*) FROM metrics WHERE metric_type = 'api' "
        "AND timestamp >= %(start)s AND timestamp < %(end)s",
        params,
    )
    (rows,) = cur.fetchone()
    cur.execute(sql.minutes_from_metrics(), params)
    conn.commit()
    return int(rows)
