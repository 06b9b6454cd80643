"""The writer threads of :class:`~mnemo_obs.MetricsWriter`: take a batch, COPY it, retry.

A mixin, so the queue's two sides read as two modules: ``writer.py`` is
what the request threads and the owner call, this is what the background
threads run. It uses the state ``MetricsWriter._reset`` makes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions

from . import db
from ._batch import DIRECT, Interrupted, Target, prepare, write_lines
from ._copy import Formatter
from .errors import DatabaseError

log = logging.getLogger("mnemo_obs.writer")


class DrainThreads:
    """Run by each writer thread: batches off the shared queue into PostgreSQL."""

    _dsn: str
    _application_name: str
    _statement_timeout_ms: int
    _batch_size: int
    _wake_at: int
    _flush_interval: float
    _retry_initial: float
    _retry_max: float
    _max_retries: int | None
    _queue: deque[tuple[Any, ...]]
    _lock: threading.Lock
    _settled: threading.Condition
    _wake: threading.Event
    _abandon: threading.Event
    _abandoned: set[int]
    _ensure_schema: Any
    _service: str
    _observers: list[Any]
    _observer_errors: set[str]
    _warned_no_rollups: bool
    _taken: int
    _in_flight: dict[int, int]
    _flush_waiters: int
    _stopping: bool
    _written: int
    _rejected: int
    _dropped_retries: int
    _batches: int
    _last_error: str | None
    _last_error_at: float | None
    _last_write_at: float | None

    def _take(self) -> tuple[int, list[tuple[Any, ...]]] | None:
        """Wait for a batch and take it; None once stopping with nothing left."""
        timed_out = False
        while True:
            with self._lock:
                if self._abandon.is_set():
                    return None
                queue = self._queue
                size = len(queue)
                if size and (
                    size >= self._wake_at or timed_out or self._flush_waiters or self._stopping
                ):
                    # Only writer threads pop, and they hold the lock: the rows are there.
                    batch = [queue.popleft() for _ in range(min(size, self._batch_size))]
                    start = self._taken
                    self._taken += len(batch)
                    self._in_flight[start] = len(batch)
                    return start, batch
                if self._stopping:
                    return None
            timed_out = not self._wake.wait(self._flush_interval)
            self._wake.clear()

    def _run(self) -> None:
        formatter = Formatter(service=self._service)
        conn: _Link | None = None
        try:
            while True:
                taken = self._take()
                if taken is None:
                    return
                start, rows = taken
                for observe in self._observers:
                    self._observe(observe, rows)
                try:
                    lines, unformattable, error = formatter.lines(rows)
                    if unformattable:
                        self._count(start, rejected=unformattable, error=error)
                        log.warning("rejected %d of %d rows: %s", unformattable, len(rows), error)
                    conn = self._deliver(conn, start, lines)
                except Exception as exc:  # never let the loop die; a bug costs its batch
                    log.exception("mnemo_obs writer: unexpected error, %d rows lost", len(rows))
                    self._count(start, error=f"{type(exc).__name__}: {exc}")
                finally:
                    with self._lock:
                        # Whatever this batch did not account for is dropped (a bug's batch).
                        left = self._in_flight.pop(start)
                        self._dropped_retries += left
                        self._abandoned.discard(start)
                        self._settled.notify_all()
        finally:
            if conn is not None:
                _close_quietly(conn.conn)

    def _observe(self, observe: Any, rows: list[tuple[Any, ...]]) -> None:
        """Hand a batch to an observer (Prometheus), here on the writer thread; never fail."""
        try:
            observe(rows)
        except Exception as exc:  # an observer's bug costs its figures, not the rows
            key = f"{type(exc).__name__}: {exc}"
            if key not in self._observer_errors:
                self._observer_errors.add(key)
                log.exception("mnemo_obs writer: an observer failed (logged once)")

    def _deliver(self, conn: _Link | None, start: int, lines: list[bytes]) -> _Link | None:
        """Write ``lines``, reconnecting and backing off until done or given up."""
        failures = 0
        while lines:
            try:
                if conn is None:
                    conn = self._connect()
                written, rejected, error = write_lines(conn.conn, lines, conn.target)
            except Interrupted as exc:
                self._count(start, written=exc.written, rejected=exc.rejected)
                lines, cause = exc.remaining, db.explain(exc.cause, self._dsn)
                conn = _close_link(conn)
            except DatabaseError as exc:  # connect() failed
                cause = str(exc)
                conn = _close_link(conn)
            else:
                self._count(start, written=written, rejected=rejected, error=error, batch=True)
                if rejected:
                    log.warning("rejected %d of %d rows: %s", rejected, len(lines), error)
                if failures:
                    log.info("writing again after %d failed attempts", failures)
                return conn
            failures += 1
            self._count(start, error=cause)
            if failures == 1:
                log.warning("cannot write %d rows, will retry: %s", len(lines), cause)
            if self._max_retries is not None and failures > self._max_retries:
                log.error("dropping %d rows after %d failed attempts", len(lines), failures)
                self._count(start, dropped=len(lines))
                return conn
            delay = min(self._retry_initial * 2 ** (failures - 1), self._retry_max)
            if self._abandon.wait(delay):
                self._count(start, dropped=len(lines))
                return conn
        return conn

    def _connect(self) -> _Link:
        self._ensure_schema()  # with create_schema=True, once
        conn = db.connect(
            self._dsn, application_name=self._application_name, client_encoding="UTF8"
        )
        conn.autocommit = True
        options = psycopg2.extensions.parse_dsn(self._dsn).get("options", "")
        try:
            if self._statement_timeout_ms and "statement_timeout" not in options:
                # A SET rather than a startup option, which poolers such as
                # PgBouncer refuse; one round trip per connection.
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = %s", (self._statement_timeout_ms,))
            target = prepare(conn)
        except psycopg2.Error as exc:
            _close_quietly(conn)
            raise DatabaseError(
                f"preparing the writer's connection: {db.explain(exc, self._dsn)}"
            ) from exc
        if target is DIRECT and not self._warned_no_rollups:
            self._warned_no_rollups = True
            log.warning(
                "no rollup tables: rows are written, but reads scan them; run `mnemo-obs "
                "migrate` (or pass create_schema=True) for reads that stay fast"
            )
        return _Link(conn, target)

    def _count(
        self,
        start: int,
        *,
        written: int = 0,
        rejected: int = 0,
        dropped: int = 0,
        error: str | None = None,
        batch: bool = False,
    ) -> None:
        """Move rows of the batch taken at ``start`` from in flight to where they ended."""
        now = time.time()
        with self._lock:
            if start in self._abandoned:
                # close() already counted this batch as dropped: a write that
                # returned after all moves its rows from there.
                self._dropped_retries -= written + rejected
            else:
                self._in_flight[start] -= written + rejected + dropped
                self._dropped_retries += dropped
            self._written += written
            self._rejected += rejected
            if batch and written:
                self._batches += 1
                self._last_write_at = now
            if error is not None:
                self._last_error = error
                self._last_error_at = now


@dataclass
class _Link:
    """A writer thread's connection and where its batches go."""

    conn: Any
    target: Target


def _close_link(link: _Link | None) -> None:
    if link is not None:
        _close_quietly(link.conn)


def _close_quietly(conn: Any) -> None:
    with suppress(Exception):  # already broken: nothing more to do
        conn.close()
