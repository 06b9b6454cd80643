"""The owner's side of :class:`~mnemo_obs.MetricsWriter`: start, flush, close.

A mixin, as ``_drain`` is for the writer threads: ``writer.py`` holds the
queue and what the request threads call, this what the app calls to start
and stop it. It uses the state ``MetricsWriter._reset`` makes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from . import schema
from ._support import LIVE, install_process_hooks
from .partitions.keeper import PartitionKeeper
from .rollups.compaction import Compactor

log = logging.getLogger("mnemo_obs.writer")


class Lifecycle:
    """Starting the writer threads, waiting for rows to settle, and closing."""

    _dsn: str
    _writers: int
    _ABANDON_GRACE: float
    _shutdown_timeout: float
    _max_queue: int
    _limit: int
    _state: str
    _queue: deque[tuple[Any, ...]]
    _start_lock: threading.Lock
    _close_lock: threading.Lock
    _close_result: bool | None
    _lock: threading.Lock
    _settled: threading.Condition
    _wake: threading.Event
    _abandon: threading.Event
    _threads: list[threading.Thread]
    _taken: int
    _in_flight: dict[int, int]
    _abandoned: set[int]
    _flush_waiters: int
    _stopping: bool
    _dropped_retries: int
    _schema_ready: bool
    _schema_lock: threading.Lock
    _run: Any
    _maintain_rollups: bool
    _compactor: Compactor | None
    _maintain_partitions: bool
    _keeper: PartitionKeeper | None

    def _start(self) -> None:
        install_process_hooks()
        LIVE.add(self)
        for index in range(self._writers):
            name = "mnemo_obs.writer" if index == 0 else f"mnemo_obs.writer-{index + 1}"
            thread = threading.Thread(target=self._run, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self._maintain_rollups:
            self._compactor = Compactor(self._dsn)
            self._compactor.start()
        if self._maintain_partitions:
            self._keeper = PartitionKeeper(self._dsn)
            self._keeper.start()
        self._limit = self._max_queue
        self._state = "running"

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every row queued before the call is written, rejected or given up.

        Returns False if ``timeout`` seconds pass first (None: no limit),
        for example while the database is down.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._taken + len(self._queue)
            self._flush_waiters += 1
        try:
            self._wake.set()
            with self._settled:
                while (min(self._in_flight) if self._in_flight else self._taken) < target:
                    if self._state != "running" and not any(t.is_alive() for t in self._threads):
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    # Bounded so a flush never outlives the threads it waits on.
                    self._settled.wait(0.5 if remaining is None else min(remaining, 0.5))
            return True
        finally:
            with self._lock:
                self._flush_waiters -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Write what is queued, then stop the threads and close their connections.

        Returns True if every row accepted before the close was written (or
        rejected by the database) within ``timeout`` seconds (None:
        ``shutdown_timeout``). Otherwise the rows still unwritten are
        dropped and counted as ``dropped_after_retries``, including a batch
        stuck in a write to a server that stopped answering (should that
        write complete later, its rows move to ``written``). A second or
        concurrent call waits for the first and returns the same answer.
        Rows submitted after close are refused and counted as
        ``dropped_closed``.
        """
        timeout = self._shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, timeout)
        # A concurrent close waits for the first one: its answer is the truth.
        if not self._close_lock.acquire(timeout=max(0.0, timeout) + self._ABANDON_GRACE + 1):
            return False
        try:
            if self._close_result is None:
                self._close_result = self._close(deadline)
                if self._compactor is not None:
                    self._compactor.stop(max(0.0, deadline - time.monotonic()))
                if self._keeper is not None:
                    self._keeper.stop(max(0.0, deadline - time.monotonic()))
            return self._close_result
        finally:
            self._close_lock.release()

    def _close(self, deadline: float) -> bool:
        with self._start_lock:
            was_running = self._state == "running"
            self._state = "closed"
            self._limit = 0
        if not was_running:
            return True
        with self._lock:
            self._stopping = True
        self._wake.set()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if not any(thread.is_alive() for thread in self._threads):
            return True
        # Threads waiting to retry stop at once and count what they held; a
        # thread stuck in a write to a hung server is left to finish alone,
        # its batch counted as dropped now (moved to written if it lands).
        self._abandon.set()
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._taken += left
            self._dropped_retries += left
        for thread in self._threads:
            thread.join(self._ABANDON_GRACE)
        with self._lock:
            stuck = sum(self._in_flight.values())
            for start, remaining in self._in_flight.items():
                self._dropped_retries += remaining
                self._in_flight[start] = 0
                self._abandoned.add(start)
            self._settled.notify_all()
        log.error(
            "closed with %d rows unwritten (%d in a write that did not return); "
            "they are counted as dropped",
            left + stuck,
            stuck,
        )
        return False

    def _ensure_schema(self) -> None:
        """With ``create_schema=True``, apply the schema once (idempotent, under its lock)."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                schema.apply_schema(self._dsn)
                self._schema_ready = True
