"""Retention: delete old ``metrics`` rows in short batches, now or once a day.

:func:`purge` deletes the rows older than a number of days in batches of
``batch_size``, each its own short transaction, so a table of millions of
rows can be trimmed while the app keeps writing: no batch holds its locks,
its snapshot or its WAL for long. :class:`RetentionScheduler` runs it on a
daemon thread about once a day; a cron line calling ``mnemo-obs purge`` is
the recommended way (see the README).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from . import db
from .errors import ConfigurationError, DatabaseError, MnemoObsError
from .schema import METRIC_TYPES

logger = logging.getLogger("mnemo_obs.retention")

# Beyond this, now() - days leaves PostgreSQL's timestamp range (4713 BC).
MAX_DAYS = 1_000_000

# One batch: lock the oldest ``n`` rows before the cutoff, walking
# idx_metrics_time from the bottom, and delete them by ctid (a TID scan, about
# 3 to 6 times faster than ``id IN (...)``, which probes the uuid primary key
# once per row; see benchmarks/retention.py). SKIP LOCKED lets two purges run
# at once, each taking rows the other has not locked; without it the second
# would wait on the first's rows, find them gone, see a short batch and stop
# early. The row locks cost a fifth more WAL and up to 40 % more time.
# ``timestamp >= %(after)s`` starts each batch where the previous one stopped,
# so it does not walk again over the index entries of the rows just deleted
# (dead until VACUUM).
_BATCH_SQL = """
WITH deleted AS (
    DELETE FROM metrics WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM metrics
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
_CUTOFF_SQL = "SELECT (now() - make_interval(secs => %s))::text"


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
) -> int:
    """Delete the ``metrics`` rows older than ``older_than_days``, in short batches.

    The cutoff (the server's ``now()`` minus the days) is fixed once at the
    start, so the purge ends even while new rows keep arriving. Each batch
    is its own transaction (autocommit), so an interruption or an error
    keeps the batches already done.

    Args:
        dsn_or_conn: a DSN (None: ``$MNEMO_OBS_DSN``), connected to and closed
            here; or an open psycopg2 connection with no transaction in
            progress, left open with its autocommit setting restored.
        older_than_days: delete rows whose ``timestamp`` is older than this
            many days (fractions allowed). Default 30, the seed's retention.
        batch_size: rows per batch (transaction). Default 10,000: 20-70 ms
            per batch on a shared 2-core machine (benchmarks/retention.py).
        metric_type: only rows of this type (one of ``schema.METRIC_TYPES``).
        dry_run: count the rows that would go, delete nothing.
        progress: called after each batch with the rows deleted so far.

    Returns:
        The number of rows deleted, or that would be with ``dry_run``.

    Raises:
        ConfigurationError: a bad argument, before anything is deleted.
        DatabaseError: the server is unreachable or refused a statement; the
            message says how many rows were deleted before that.
    """
    days = _validate(older_than_days, batch_size, metric_type)
    if progress is not None and not callable(progress):
        raise ConfigurationError(f"progress must be callable, got {progress!r}")
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
    try:
        conn.autocommit = True
        return _purge(conn, days, batch_size, metric_type, dry_run, progress, done)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"purge failed on {where} after {done[0]} rows deleted: {db.first_line(exc)}"
        ) from exc
    finally:
        if owned:
            conn.close()
        elif not conn.closed:
            # Interrupted mid-statement, it may refuse: leave it as it is then.
            with contextlib.suppress(psycopg2.Error):
                conn.autocommit = saved_autocommit


def _purge(
    conn: psycopg2.extensions.connection,
    days: float,
    batch_size: int,
    metric_type: str | None,
    dry_run: bool,
    progress: Callable[[int], None] | None,
    done: list[int],
) -> int:
    type_filter = _TYPE_FILTER if metric_type else ""
    started = time.monotonic()
    with conn.cursor() as cur:
        cur.execute(_CUTOFF_SQL, (days * 86400.0,))
        (cutoff,) = cur.fetchone()
        params: dict[str, Any] = {"cutoff": cutoff, "metric_type": metric_type}
        if dry_run:
            cur.execute(_COUNT_SQL.format(type_filter=type_filter), params)
            (count,) = cur.fetchone()
            logger.debug("dry run: %d rows older than %s", count, cutoff)
            return int(count)
        sql = _BATCH_SQL.format(type_filter=type_filter)
        params.update(limit=batch_size, after="-infinity")
        batches = 0
        while True:
            cur.execute(sql, params)
            count, last = cur.fetchone()
            batches += 1
            done[0] += count
            if count and progress is not None:
                progress(done[0])
            # Fewer than asked: nothing older is left (or another purge holds it).
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


class _Stopped(Exception):
    """Raised from the progress callback to end a purge between batches on stop()."""


class RetentionScheduler:
    """Run :func:`purge` on a daemon thread about once per ``interval``.

    The thread (named ``mnemo_obs.retention``) starts on :meth:`start`, runs
    a first purge ``first_delay`` seconds later, then one every
    ``interval``. Each wait is stretched by a random fraction up to
    ``jitter``, so the workers of one app started together do not all purge
    at the same moment. A failed purge is logged and retried at the next
    interval: the thread never dies of it. Each run opens its own
    connection and closes it, so nothing is held between runs.

    Attributes:
        runs: purges attempted so far (read-only).
        last_deleted: rows deleted by the last successful purge, or None.
        last_error: the one-line message of the last failed purge, or None.
    """

    INTERVAL = 86400.0  # once a day, the seed's "cleanup job"
    # Long enough that starting the app is not slowed down by a purge,
    # short enough that a restarted app still purges.
    FIRST_DELAY = 60.0
    JITTER = 0.1

    def __init__(
        self,
        *,
        dsn: str | None = None,
        older_than_days: float = 30,
        interval: float = INTERVAL,
        first_delay: float = FIRST_DELAY,
        jitter: float = JITTER,
        batch_size: int = 10_000,
        metric_type: str | None = None,
    ) -> None:
        self._days = _validate(older_than_days, batch_size, metric_type)
        year = 366 * 86400.0
        self._interval = _number("interval", interval, low=0, high=year)
        self._first_delay = _number("first_delay", first_delay, low=0, high=year, low_ok=True)
        self._jitter = _number("jitter", jitter, low=0, high=1, low_ok=True)
        self._dsn = db.resolve_dsn(dsn)
        self._batch_size = batch_size
        self._metric_type = metric_type
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.last_deleted: int | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        """Start the thread; a no-op while it runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mnemo_obs.retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread, ending a purge in progress after its current batch.

        Returns:
            True when the thread has ended within ``timeout`` seconds.
        """
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _delay(self, base: float) -> float:
        return base * (1 + random.uniform(0, self._jitter)) if self._jitter else base

    def _loop(self) -> None:
        stop = self._stop
        delay = self._first_delay
        while not stop.wait(self._delay(delay)):
            self._run_once(stop)
            delay = self._interval

    def _run_once(self, stop: threading.Event) -> None:
        def check_stop(_deleted: int) -> None:
            if stop.is_set():
                raise _Stopped

        self.runs += 1
        started = time.monotonic()
        try:
            deleted = purge(
                self._dsn,
                older_than_days=self._days,
                batch_size=self._batch_size,
                metric_type=self._metric_type,
                progress=check_stop,
            )
        except _Stopped:
            logger.info("retention: purge interrupted by stop()")
        except MnemoObsError as exc:
            self.last_error = str(exc)
            logger.error("retention: %s (next try in %.0f s)", exc, self._interval)
        except Exception as exc:  # never let a surprise kill the thread
            self.last_error = db.first_line(exc)
            logger.exception("retention: unexpected error (next try in %.0f s)", self._interval)
        else:
            self.last_deleted, self.last_error = deleted, None
            logger.info(
                "retention: deleted %d rows older than %g days in %.1f s",
                deleted,
                self._days,
                time.monotonic() - started,
            )
