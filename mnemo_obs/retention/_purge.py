"""purge(): delete old ``metrics`` rows in short batches, one purge at a time.

:func:`purge` deletes the rows older than a number of days in batches of
``batch_size``, each its own short transaction, so a table of millions of
rows can be trimmed while the app keeps writing: no batch holds its locks,
its snapshot or its WAL for long. Every wait is bounded: a batch that waits
for a lock longer than ``lock_timeout`` gives up and says so, and a purge
that finds another one running (another worker, a cron job) waits at most
as long, then skips.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .. import db
from ..errors import ConfigurationError, DatabaseError, PurgeSkipped
from ..partitions import layout as partition_layout
from ..partitions import purge as partition_purge
from ..schema import METRIC_TYPES

logger = logging.getLogger("mnemo_obs.retention")

# Beyond this, now() - days leaves PostgreSQL's timestamp range (4713 BC).
MAX_DAYS = 1_000_000

# One batch: lock the oldest ``n`` rows before the cutoff, walking
# idx_metrics_time from the bottom, and delete them by ctid (a TID scan, about
# 3 to 6 times faster than ``id IN (...)``, which probes the uuid primary key
# once per row; see benchmarks/retention.py). SKIP LOCKED: a batch never
# waits on rows another session holds (purges themselves run one at a time,
# under an advisory lock); the row locks cost a fifth more WAL.
# ``timestamp >= %(after)s`` starts each batch where the previous one stopped,
# so it does not walk again over the index entries of the rows just deleted
# (dead until VACUUM).
# On the partitioned layout ``{table}`` is one partition: a ctid names a row
# only within its own table.
_BATCH_SQL = """
WITH deleted AS (
    DELETE FROM {table} WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM {table}
        WHERE timestamp < %(cutoff)s::timestamptz
          AND timestamp >= %(after)s::timestamptz{type_filter}
        ORDER BY timestamp
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING timestamp
)
SELECT count(*), max(timestamp)::text FROM deleted
"""
_COUNT_SQL = "SELECT count(*) FROM metrics WHERE timestamp < %(cutoff)s::timestamptz{type_filter}"
_TYPE_FILTER = " AND metric_type = %(metric_type)s"
# Timestamps travel as text, written and read back by the same session: exact,
# and free of Python's datetime range (years 1 to 9999), which a large
# older_than_days or a row with an odd timestamp would leave.
# The cutoff starts a minute: the minute rollups of what remains are then all
# of raw rows still there, so the two agree after a purge.
_CUTOFF_SQL = "SELECT date_trunc('minute', now() - make_interval(secs => %s), 'UTC')::text"
# Rollups are small (a row per endpoint and hour or day): they are kept
# longer than raw rows, and trimmed in one statement.
ROLLUP_DAYS = 400
_ROLLUP_STATE_SQL = """
UPDATE metrics_rollups_state SET purged_before = greatest(purged_before, %(cutoff)s::timestamptz)
"""
_ROLLUP_CUTOFF_SQL = (
    "SELECT date_trunc('minute', now() - make_interval(secs => %(seconds)s), 'UTC')::text"
)
_ROLLUP_TRIM_SQL = "DELETE FROM metrics_rollups WHERE bucket < %(cutoff)s::timestamptz"

# One purge at a time across every process and host that shares the table
# (app workers, cron): a session-level advisory lock, held for the purge.
# "mnemo" + 1; the schema's migration lock is "mnemo".
ADVISORY_LOCK_KEY = 0x6D6E656D6F + 1

# A batch waits at most this long for a lock (a LOCK TABLE, an ALTER, a
# VACUUM FULL held by another session), then the purge gives up and says
# so; a purge finding another one running waits this long, then skips.
LOCK_TIMEOUT = 5.0
# A batch takes tens of milliseconds; one running this long is stuck.
STATEMENT_TIMEOUT = 60.0


def _number(name: str, value: object, *, low: float, high: float, low_ok: bool = False) -> float:
    """Return ``value`` as a float if it is a finite number in range, else raise naming it."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not (low <= value if low_ok else low < value)
        or value > high
    ):
        raise ConfigurationError(
            f"{name} must be a finite number {'>=' if low_ok else '>'} {low:g} "
            f"and <= {high:g}, got {value!r}"
        )
    return float(value)


def _validate(older_than_days: object, batch_size: object, metric_type: object) -> float:
    days = _number("older_than_days", older_than_days, low=0, high=MAX_DAYS)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size must be a positive int, got {batch_size!r}")
    if metric_type is not None and metric_type not in METRIC_TYPES:
        raise ConfigurationError(
            f"metric_type must be one of {', '.join(METRIC_TYPES)} (or None), got {metric_type!r}"
        )
    return days


def purge(
    dsn_or_conn: str | psycopg2.extensions.connection | None,
    *,
    older_than_days: float = 30,
    batch_size: int = 10_000,
    metric_type: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    rollup_days: float | None = ROLLUP_DAYS,
    _on_connection: Callable[[psycopg2.extensions.connection | None], None] | None = None,
) -> int:
    """Delete the ``metrics`` rows older than ``older_than_days``, in short batches.

    The cutoff (the server's ``now()`` minus the days) is fixed once at the
    start, so the purge ends even while new rows keep arriving. Each batch
    is its own short transaction, so an interruption or an error keeps the
    batches already done. Only one purge runs at a time on a database:
    another one waits up to ``lock_timeout`` for it, then skips. On the
    partitioned layout (docs/partitions.md), the partitions older than the
    cutoff are dropped whole, and only the one it falls in (and DEFAULT) is
    deleted from in batches.

    Args:
        dsn_or_conn: a DSN (None: ``$MNEMO_OBS_DSN``), connected to and closed
            here; or an open psycopg2 connection with no transaction in
            progress, left open with its autocommit setting restored.
        older_than_days: delete rows whose ``timestamp`` is older than this
            many days (fractions allowed). Default 30.
        batch_size: rows per batch (transaction). Default 10,000: 20-70 ms
            per batch on a shared 2-core machine (benchmarks/retention.py).
        metric_type: only rows of this type (one of ``schema.METRIC_TYPES``).
        dry_run: count the rows that would go, delete nothing.
        progress: called after each batch with the rows deleted so far.
        lock_timeout: seconds a batch may wait for a lock, and a purge for
            another purge to finish (default 5).
        rollup_days: also delete the rollups older than this many days
            (default 400; None keeps them). They are small, and keep the
            figures of a window whose raw rows are gone.

    Returns:
        The number of rows deleted, or that would be with ``dry_run``.

    Raises:
        ConfigurationError: a bad argument, before anything is deleted.
        PurgeSkipped: another purge was still running after ``lock_timeout``.
        DatabaseError: the server is unreachable, refused a statement, or a
            batch waited for a lock past ``lock_timeout``; the message says
            how many rows were deleted before that.
    """
    days = _validate(older_than_days, batch_size, metric_type)
    if progress is not None and not callable(progress):
        raise ConfigurationError(f"progress must be callable, got {progress!r}")
    wait = _number("lock_timeout", lock_timeout, low=0, high=3600, low_ok=True)
    keep = (
        None if rollup_days is None else _number("rollup_days", rollup_days, low=0, high=MAX_DAYS)
    )
    dsn: str | None = None
    if isinstance(dsn_or_conn, psycopg2.extensions.connection):
        conn, owned = dsn_or_conn, False
        if conn.closed:
            raise ConfigurationError("purge() was given a closed connection")
        status = conn.get_transaction_status()
        if status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            raise ConfigurationError(
                "purge() runs its own short transactions: commit or roll back the "
                "connection's transaction first"
            )
        where = db.describe(conn.dsn)
    elif dsn_or_conn is None or isinstance(dsn_or_conn, str):
        dsn = db.resolve_dsn(dsn_or_conn)
        where = db.describe(dsn)
        conn, owned = db.connect(dsn, application_name="mnemo_obs.retention"), True
    else:
        raise ConfigurationError(
            f"dsn_or_conn must be a DSN or a psycopg2 connection, got {dsn_or_conn!r}"
        )

    done = [0]  # rows deleted so far, for the error message
    saved_autocommit = conn.autocommit
    locked = False
    if _on_connection is not None:
        _on_connection(conn)
    try:
        conn.autocommit = True
        if dry_run:
            return _count(conn, days, metric_type)
        locked = _take_lock(conn, wait)
        if not locked:
            raise PurgeSkipped(
                f"another purge is running on {where}: this one skipped (waited {wait:g} s for it)"
            )
        deleted = _purge(conn, days, batch_size, metric_type, progress, done, wait)
        if metric_type in (None, "api"):
            _trim_rollups(conn, days, keep, wait)
        return deleted
    except psycopg2.errors.LockNotAvailable as exc:
        raise DatabaseError(
            f"purge gave up on {where} after {done[0]} rows deleted: a batch waited more "
            f"than {wait:g} s for a lock on the metrics table (another session holds one)"
        ) from exc
    except psycopg2.errors.QueryCanceled as exc:
        raise DatabaseError(
            f"purge stopped on {where} after {done[0]} rows deleted: a batch was cancelled "
            f"({db.explain(exc, dsn)})"
        ) from exc
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"purge failed on {where} after {done[0]} rows deleted: {db.explain(exc, dsn)}"
        ) from exc
    finally:
        if _on_connection is not None:
            _on_connection(None)
        if owned:
            conn.close()  # also ends the session's advisory lock
        elif not conn.closed:
            # Interrupted mid-statement, it may refuse: leave it as it is then.
            with contextlib.suppress(psycopg2.Error):
                with conn.cursor() as cur:
                    # Our BEGIN is not psycopg2's: its rollback() would not end it.
                    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                        cur.execute("ROLLBACK")
                    if locked:
                        cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
                conn.autocommit = saved_autocommit


def _take_lock(conn: psycopg2.extensions.connection, wait: float) -> bool:
    """Take the purge lock, waiting up to ``wait`` seconds for another purge to end."""
    deadline = time.monotonic() + wait
    with conn.cursor() as cur:
        while True:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
            if cur.fetchone()[0]:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(0.2, left))


def _trim_rollups(
    conn: psycopg2.extensions.connection, days: float, keep: float | None, wait: float
) -> None:
    """Note where raw api rows now start, and trim rollups past ``keep`` days."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('metrics_rollups_state') IS NOT NULL")
        if not cur.fetchone()[0]:
            return
        cur.execute(_CUTOFF_SQL, (days * 86400.0,))
        (cutoff,) = cur.fetchone()
        cur.execute(_ROLLUP_STATE_SQL, {"cutoff": cutoff})
        if keep is not None:
            cur.execute(_ROLLUP_CUTOFF_SQL, {"seconds": keep * 86400.0})
            (trim_before,) = cur.fetchone()
            # Partitioned: whole months older than the cutoff are dropped, and
            # the DELETE reaches only the month it falls in (and DEFAULT).
            found = partition_purge.plan(cur, partition_layout.ROLLUPS, trim_before, True)
            for name in found[0] if found else ():
                partition_purge.drop(cur, name, _timeouts(wait), wait, count=False)
                logger.debug("dropped rollup partition %s", name)
            cur.execute(_ROLLUP_TRIM_SQL, {"cutoff": trim_before})
            logger.debug("trimmed %d rollup rows older than %g days", cur.rowcount, keep)


def _timeouts(wait: float) -> str:
    """SET LOCAL statements for one transaction's lock and statement timeouts.

    Each batch is one transaction whose timeouts are its own, so a
    connection given to us keeps its settings.
    """
    return (
        f"SET LOCAL lock_timeout = {max(1, round(wait * 1000))}; "
        f"SET LOCAL statement_timeout = {round(STATEMENT_TIMEOUT * 1000)}"
    )


def _count(conn: psycopg2.extensions.connection, days: float, metric_type: str | None) -> int:
    type_filter = _TYPE_FILTER if metric_type else ""
    with conn.cursor() as cur:
        cur.execute(_CUTOFF_SQL, (days * 86400.0,))
        (cutoff,) = cur.fetchone()
        cur.execute(
            _COUNT_SQL.format(type_filter=type_filter),
            {"cutoff": cutoff, "metric_type": metric_type},
        )
        (count,) = cur.fetchone()
    logger.debug("dry run: %d rows older than %s", count, cutoff)
    return int(count)


def _purge(
    conn: psycopg2.extensions.connection,
    days: float,
    batch_size: int,
    metric_type: str | None,
    progress: Callable[[int], None] | None,
    done: list[int],
    wait: float,
) -> int:
    type_filter = _TYPE_FILTER if metric_type else ""
    started = time.monotonic()
    timeouts = _timeouts(wait)
    with conn.cursor() as cur:
        cur.execute(_CUTOFF_SQL, (days * 86400.0,))
        (cutoff,) = cur.fetchone()
        tables = ["metrics"]
        # The partitioned layout: drop the partitions older than the cutoff,
        # then delete in batches from those that reach back before it.
        cur.execute("BEGIN")
        cur.execute(timeouts)
        found = partition_purge.plan(cur, partition_layout.METRICS, cutoff, metric_type is None)
        cur.execute("COMMIT")
        if found is not None:
            older, tables = found
            for name in older:
                done[0] += partition_purge.drop(cur, name, timeouts, wait)
                logger.debug("dropped partition %s", name)
                if progress is not None:
                    progress(done[0])
        batches = 0
        for table in tables:
            params: dict[str, Any] = {
                "cutoff": cutoff,
                "metric_type": metric_type,
                "limit": batch_size,
                "after": "-infinity",
            }
            sql = _BATCH_SQL.format(table=table, type_filter=type_filter)
            while True:
                cur.execute("BEGIN")
                cur.execute(timeouts)
                cur.execute(sql, params)
                count, last = cur.fetchone()
                cur.execute("COMMIT")
                batches += 1
                done[0] += count
                if count and progress is not None:
                    progress(done[0])
                # Fewer than asked: nothing older is left.
                if count < batch_size:
                    break
                params["after"] = last
    logger.debug(
        "purged %d rows older than %s in %d batches, %.1f s",
        done[0],
        cutoff,
        batches,
        time.monotonic() - started,
    )
    return done[0]
