"""RetentionScheduler: :func:`~mnemo_obs.retention.purge` on a daemon thread, about once a day."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from .. import db
from ..errors import MnemoObsError, PurgeSkipped
from ._purge import LOCK_TIMEOUT, ROLLUP_DAYS, _number, _validate, purge

logger = logging.getLogger("mnemo_obs.retention")


class _Stopped(Exception):
    """Raised from the progress callback to end a purge between batches on stop()."""


class RetentionScheduler:
    """Run :func:`purge` on a daemon thread about once per ``interval``.

    The thread (named ``mnemo_obs.retention``) starts on :meth:`start`, runs
    a first purge ``first_delay`` seconds later, then one every
    ``interval``. Each wait is stretched by a random fraction up to
    ``jitter``, so the workers of one app started together do not all purge
    at the same moment; and purges run one at a time across processes and
    hosts, so a worker finding another one purging skips its round. A
    failed purge is logged and retried at the next interval: the thread
    never dies of it. Each run opens its own connection and closes it, so
    nothing is held between runs.

    Attributes:
        runs: purges attempted so far (read-only).
        skipped: runs skipped because another process was purging.
        last_deleted: rows deleted by the last successful purge, or None.
        last_error: the one-line message of the last failed purge, or None.
    """

    INTERVAL = 86400.0  # once a day
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
        lock_timeout: float = LOCK_TIMEOUT,
        rollup_days: float | None = ROLLUP_DAYS,
    ) -> None:
        self._days = _validate(older_than_days, batch_size, metric_type)
        year = 366 * 86400.0
        self._interval = _number("interval", interval, low=0, high=year)
        self._first_delay = _number("first_delay", first_delay, low=0, high=year, low_ok=True)
        self._jitter = _number("jitter", jitter, low=0, high=1, low_ok=True)
        self._lock_timeout = _number("lock_timeout", lock_timeout, low=0, high=3600, low_ok=True)
        self._rollup_days = (
            None if rollup_days is None else _number("rollup_days", rollup_days, low=0, high=1e6)
        )
        self._dsn = db.resolve_dsn(dsn)
        self._batch_size = batch_size
        self._metric_type = metric_type
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None  # the running purge's backend, to cancel it on stop()
        self._conn_lock = threading.Lock()
        self.runs = 0
        self.skipped = 0
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
        """Stop the thread, cancelling a purge batch in progress.

        A cancelled purge keeps the batches it finished. The cancel is sent
        from a thread of its own, so a server that stopped answering cannot
        hold this call past ``timeout``, and again until the thread ends
        (:func:`mnemo_obs.db.stop_job`).

        Returns:
            True when the thread has ended within ``timeout`` seconds (None:
            no limit).
        """
        self._stop.set()
        return db.stop_job(
            self._thread, self._dsn, self._backend, timeout, "mnemo_obs.retention-cancel"
        )

    def _backend(self) -> int | None:
        with self._conn_lock:
            return self._pid

    def _delay(self, base: float) -> float:
        return base * (1 + random.uniform(0, self._jitter)) if self._jitter else base

    def _loop(self) -> None:
        stop = self._stop
        delay = self._first_delay
        while not stop.wait(self._delay(delay)):
            self._run_once(stop)
            delay = self._interval

    def _track(self, conn: Any) -> None:
        pid = None if conn is None else conn.get_backend_pid()  # no I/O
        with self._conn_lock:
            self._pid = pid
        if pid is not None and self._stop.is_set():
            db.cancel_backend(self._dsn, pid)  # stop() came before the connection existed

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
                lock_timeout=self._lock_timeout,
                rollup_days=self._rollup_days,
                _on_connection=self._track,
            )
        except _Stopped:
            logger.info("retention: purge interrupted by stop()")
        except PurgeSkipped as exc:
            self.skipped += 1
            logger.info("retention: %s", exc)
        except MnemoObsError as exc:
            if stop.is_set():
                logger.info("retention: purge interrupted by stop()")
                return
            self.last_error = str(exc)
            logger.error("retention: %s (next try in %.0f s)", exc, self._interval)
        except Exception as exc:  # never let a surprise kill the thread
            self.last_error = db.redact(db.first_line(exc), self._dsn)
            logger.exception("retention: unexpected error (next try in %.0f s)", self._interval)
        else:
            self.last_deleted, self.last_error = deleted, None
            logger.info(
                "retention: deleted %d rows older than %g days in %.1f s",
                deleted,
                self._days,
                time.monotonic() - started,
            )
