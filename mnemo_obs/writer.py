"""MetricsWriter: a bounded in-memory queue drained into PostgreSQL by background threads.

The request path appends a tuple to a ``collections.deque`` after a length
check: no lock, no I/O, no JSON. The writer threads sleep on an Event that
a producer sets only when the queue reaches the wake-up depth (or a
flush/close asks), else they wake every ``flush_interval``. Measured with
a consumer blocked in ``queue.Queue.get()`` instead, every row cost a GIL
hand-off to that thread, a few microseconds per request.

The books (see :meth:`MetricsWriter.stats`): every row offered is refused
at the door (``dropped_queue_full``, ``dropped_closed``) or accepted
(``enqueued``), and every accepted row is in exactly one of ``written``,
``rejected``, ``dropped_after_retries``, ``in_flight`` and ``queue_depth``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from . import db
from ._drain import DrainThreads
from ._lifecycle import Lifecycle
from ._support import Counter, finite, iso, positive_float, positive_int, resolve_service
from .errors import ConfigurationError
from .partitions.keeper import PartitionKeeper
from .rollups.compaction import Compactor
from .schema import METRIC_TYPES

log = logging.getLogger("mnemo_obs.writer")


class MetricsWriter(Lifecycle, DrainThreads):
    """Write metric rows to the ``metrics`` table in batches, off the request path.

    Nothing opens or starts at construction: the threads and their
    connections start with the first row. After ``fork()`` the child starts
    its own queue and threads on its first row (the parent's queued rows
    stay the parent's); a writer closed before the fork stays closed. Rows
    are written at least once: a batch whose commit was lost with the
    connection may be written twice.

    Args:
        dsn: libpq DSN or URL; defaults to ``$MNEMO_OBS_DSN``.
        max_queue: rows held in memory at most (``MAX_QUEUE``, 10,000). Past
            it, new rows are dropped and counted. Concurrent producers may
            overshoot it by one row each; each writer thread also holds at
            most one batch it is retrying.
        batch_size: rows per COPY at most (``BATCH_SIZE``, 500).
        flush_interval: seconds a row waits at most before a partial batch
            is written (``FLUSH_INTERVAL``, 1.0).
        writers: threads draining the queue, each with its own connection
            (1). More help when each batch waits on a network round trip.
        retry_initial: first backoff, in seconds, after a failed write
            (``RETRY_INITIAL``, 0.5); it doubles on each failure...
        retry_max: ...up to this (``RETRY_MAX``, 5.0), which is also the
            longest the writer waits to write again once the database is back.
        max_retries: failed attempts after which a batch is dropped and
            counted; None (the default) retries for as long as it runs.
        shutdown_timeout: seconds ``close()`` (and so the atexit hook) waits
            by default (``SHUTDOWN_TIMEOUT``, 5.0).
        statement_timeout: seconds the server lets one COPY run before
            cancelling it (``STATEMENT_TIMEOUT``, 30.0; 0: no limit). A
            cancelled batch is kept and retried, and the timeout shows in
            ``stats()["last_error"]``. A DSN that sets its own wins.
        application_name: shown in ``pg_stat_activity``.
        create_schema: apply the schema (``mnemo-obs migrate``) on the first
            connection, idempotently, instead of expecting it to be there.
        service: the name of the app, when several share one table
            (``$MNEMO_OBS_SERVICE``; default none). It goes in every row's
            metadata as ``"service"`` and in the rollups' key, and every read
            can select it.
        maintain_rollups: run the background job that turns the rows into
            rollups and keeps them small (a thread, ``mnemo_obs.rollups``,
            started with the writer's; one process at a time does the work).
            Turn it off only where another process, or ``mnemo-obs rollup
            --compact`` from cron, does it.
        maintain_partitions: run the background job of the partitioned layout
            (a thread, ``mnemo_obs.partitions``: partitions made days ahead,
            rows moved out of the DEFAULT partition; one process at a time
            does the work). On a plain table it does nothing; turn it off
            only where another process runs it (docs/partitions.md).
    """

    MAX_QUEUE = 10_000
    BATCH_SIZE = 500
    FLUSH_INTERVAL = 1.0
    RETRY_INITIAL = 0.5
    # After a long outage the backoff sits at this: 5 s, so the writer is
    # writing again within 5 s of the database's return (at 30 s, half a
    # minute more of rows would be dropped). A refused connection every 5 s
    # costs the server nothing.
    RETRY_MAX = 5.0
    # Long enough to write a full queue to a healthy server, short enough
    # not to hold up a process exit when the database is gone.
    SHUTDOWN_TIMEOUT = 5.0
    _ABANDON_GRACE = 1.0
    # A batch takes tens of milliseconds; a COPY still running after this
    # waits on something else (a lock held by another session, a stuck
    # server), and is better cancelled, retried and reported than waited on
    # in silence.
    STATEMENT_TIMEOUT = 30.0

    def __init__(
        self,
        dsn: str | None = None,
        *,
        max_queue: int | None = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        writers: int = 1,
        retry_initial: float | None = None,
        retry_max: float | None = None,
        max_retries: int | None = None,
        shutdown_timeout: float | None = None,
        statement_timeout: float | None = None,
        application_name: str = "mnemo_obs.writer",
        create_schema: bool = False,
        service: str | None = None,
        maintain_rollups: bool = True,
        maintain_partitions: bool = True,
    ) -> None:
        self._dsn = db.resolve_dsn(dsn)
        self._max_queue = positive_int(
            "max_queue", self.MAX_QUEUE if max_queue is None else max_queue
        )
        self._batch_size = positive_int(
            "batch_size", self.BATCH_SIZE if batch_size is None else batch_size
        )
        # A writer wakes when the queue holds a batch, or half the queue if
        # that comes first: waking only at batch_size, a queue smaller than
        # a batch would fill and drop rows between two flush intervals.
        self._wake_at = max(1, min(self._batch_size, self._max_queue // 2))
        self._flush_interval = positive_float(
            "flush_interval", self.FLUSH_INTERVAL if flush_interval is None else flush_interval
        )
        self._writers = positive_int("writers", writers)
        self._retry_initial = positive_float(
            "retry_initial", self.RETRY_INITIAL if retry_initial is None else retry_initial
        )
        self._retry_max = positive_float(
            "retry_max", self.RETRY_MAX if retry_max is None else retry_max
        )
        if self._retry_max < self._retry_initial:
            raise ConfigurationError(
                f"retry_max ({retry_max!r}) must be >= retry_initial ({self._retry_initial!r})"
            )
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise ConfigurationError(
                f"max_retries must be None or an int >= 0, not {max_retries!r}"
            )
        self._max_retries = max_retries
        self._shutdown_timeout = positive_float(
            "shutdown_timeout",
            self.SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout,
            zero=True,
        )
        self._statement_timeout_ms = round(
            1000
            * positive_float(
                "statement_timeout",
                self.STATEMENT_TIMEOUT if statement_timeout is None else statement_timeout,
                zero=True,
            )
        )
        if not isinstance(application_name, str):
            raise ConfigurationError(f"application_name must be a str, not {application_name!r}")
        self._application_name = application_name
        if not isinstance(create_schema, bool):
            raise ConfigurationError(f"create_schema must be True or False, not {create_schema!r}")
        self._create_schema = create_schema
        self._service = resolve_service(service)
        if not isinstance(maintain_rollups, bool):
            raise ConfigurationError(
                f"maintain_rollups must be True or False, not {maintain_rollups!r}"
            )
        self._maintain_rollups = maintain_rollups
        if not isinstance(maintain_partitions, bool):
            raise ConfigurationError(
                f"maintain_partitions must be True or False, not {maintain_partitions!r}"
            )
        self._maintain_partitions = maintain_partitions
        # Called with each batch on the writer thread (the Prometheus exporter).
        self._observers: list[Any] = []
        self._reset()

    def _reset(self, *, closed: bool = False) -> None:
        """(Re)make all run-time state: at construction, and in a forked child."""
        self._queue: deque[tuple[Any, ...]] = deque()
        # 0 until started and again once closed, so the first row (and any
        # row after close) takes the slow path without a flag test per row.
        self._limit = 0
        self._state = "closed" if closed else "idle"  # idle -> running -> closed
        self._start_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._close_result: bool | None = True if closed else None
        self._wake = threading.Event()
        self._abandon = threading.Event()
        self._lock = threading.Lock()  # writer side: taking rows, the books
        self._settled = threading.Condition(self._lock)
        self._threads: list[threading.Thread] = []
        self._dropped_full = Counter()
        self._dropped_closed = Counter()
        self._taken = 0  # rows ever taken off the queue
        # Batch start index -> its rows not yet accounted for.
        self._in_flight: dict[int, int] = {}
        self._abandoned: set[int] = set()  # batches close() gave up on, still in a write
        self._flush_waiters = 0
        self._stopping = False
        self._schema_ready = not self._create_schema
        self._schema_lock = threading.Lock()
        self._warned_no_rollups = False
        self._compactor: Compactor | None = None
        self._keeper: PartitionKeeper | None = None
        self._observer_errors: set[str] = set()
        self._written = self._rejected = self._dropped_retries = self._batches = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._last_write_at: float | None = None

    # -- the request path ---------------------------------------------------

    def submit_request(
        self,
        start: float,
        endpoint: str,
        latency_ms: float,
        method: str,
        status_code: int | str,
        trace_id: str,
    ) -> bool:
        """Queue one request row (the middlewares' hot path); False if dropped.

        ``start`` is epoch seconds (``time.time()``); ``status_code`` may
        also be a status line (``"404 Not Found"``) or an ``HTTPStatus``,
        turned into a number on the writer thread. The row's metadata is
        ``{"endpoint", "method", "status_code", "trace_id"}``, built later
        on the writer thread.
        """
        queue = self._queue
        if len(queue) < self._limit:
            row = (start, endpoint, latency_ms, method, status_code, trace_id)
            queue.append(row)
            if len(queue) >= self._wake_at and not self._wake.is_set():
                self._wake.set()
            if self._limit:
                return True
            return self._refuse_late(row)  # closed between the check and the append
        return self._submit_slow((start, endpoint, latency_ms, method, status_code, trace_id))

    def record(
        self,
        metric_type: str,
        metric_name: str,
        value: float,
        metadata: dict[str, Any] | None = None,
        timestamp: float | None = None,
    ) -> bool:
        """Queue one row of any kind; False if it was dropped.

        ``metadata`` is copied (one level) and JSON-encoded on the writer
        thread; ``timestamp`` is epoch seconds, default now.

        Raises:
            ValueError: ``metric_type`` is not one the table accepts (api,
                redis, postgres, system, cache), or ``value`` or
                ``timestamp`` is not a finite number.
            TypeError: a name that is not a str, or metadata not a dict.
        """
        if not isinstance(metric_type, str) or not isinstance(metric_name, str):
            raise TypeError(
                f"metric_type and metric_name must be str: {metric_type!r}, {metric_name!r}"
            )
        if metric_type not in METRIC_TYPES:
            raise ValueError(
                f"metric_type must be one of {', '.join(METRIC_TYPES)}, not {metric_type!r}"
            )
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict or None, not {metadata!r}")
        number = finite("value", value)
        stamp = time.time() if timestamp is None else finite("timestamp", timestamp)
        row = (stamp, metric_type, metric_name, number, dict(metadata) if metadata else None)
        queue = self._queue
        if len(queue) < self._limit:
            queue.append(row)
            if len(queue) >= self._wake_at and not self._wake.is_set():
                self._wake.set()
            if self._limit:
                return True
            return self._refuse_late(row)
        return self._submit_slow(row)

    def _submit_slow(self, row: tuple[Any, ...]) -> bool:
        if self._state == "running":
            if len(self._queue) < self._limit:  # started by another thread meanwhile
                self._queue.append(row)
                return True if self._limit else self._refuse_late(row)
            self._dropped_full.bump()
            return False
        with self._start_lock:
            if self._state == "idle":
                self._start()
            if self._state == "closed":
                self._dropped_closed.bump()
                return False
            if len(self._queue) >= self._limit:
                self._dropped_full.bump()
                return False
            self._queue.append(row)
            return True

    def _refuse_late(self, row: tuple[Any, ...]) -> bool:
        """A row appended after close() began: take it back and refuse it, unless already taken.

        Rare (a producer paused between its length check and its append while
        another thread closed the writer); without this the row could sit in
        a queue nobody drains any more.
        """
        with self._lock:
            while True:
                try:
                    self._queue.remove(row)
                except ValueError:  # a writer thread (or close) took it: accounted for
                    return True
                except RuntimeError:  # the deque changed under the search: search again
                    continue
                self._dropped_closed.bump()
                return False

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stats(self) -> dict[str, object]:
        """Counters since start (per process), JSON-serialisable and cheap to read.

        Read in one step, so they add up at every moment: ``enqueued ==
        written + rejected + dropped_after_retries + in_flight +
        queue_depth``.
        """
        with self._lock:
            depth = len(self._queue)
            error_at = self._last_error_at
            write_at = self._last_write_at
            return {
                "enqueued": self._taken + depth,
                "written": self._written,
                "rejected": self._rejected,
                "dropped_after_retries": self._dropped_retries,
                "in_flight": sum(self._in_flight.values()),
                "queue_depth": depth,
                "dropped_queue_full": self._dropped_full.value(),
                "dropped_closed": self._dropped_closed.value(),
                "batches": self._batches,
                # Healthy: no write has failed since the last one that succeeded.
                "healthy": error_at is None or (write_at is not None and write_at >= error_at),
                "last_error": self._last_error,
                "last_error_at": iso(error_at),
                "last_write_at": iso(write_at),
            }

    def __repr__(self) -> str:
        return f"<MetricsWriter {db.describe(self._dsn)} {self._state}>"
