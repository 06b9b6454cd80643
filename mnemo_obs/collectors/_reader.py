"""One background thread for the collectors' blocking reads; callers wait with a bound.

A PostgreSQL that stops answering with its TCP connection still up (a frozen
server, a network that drops packets without a reset) defeats
``statement_timeout``, keepalives and ``tcp_user_timeout``: a query waits
forever. Run on a request thread, that query would take the thread with
it, and every later summary another one, until the server stops answering
the app's own routes. Here the query runs on one thread of its own; a
caller waits at most its timeout, and while that thread is stuck the next
callers are answered at once instead of queueing behind it. At most one
thread per reader is ever held by a stuck query.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ..errors import DatabaseError

log = logging.getLogger("mnemo_obs.collectors")


class ReadTimeout(DatabaseError):
    """A read did not finish within the caller's bound (the reader may still be waiting)."""


class BoundedReader:
    """Run read jobs one at a time on a daemon thread; callers wait on their futures, bounded.

    Jobs are merged by key: a caller asking for a key already pending or
    running waits for that job instead of queueing another. At most
    ``max_pending`` keys wait at once; past that, a caller is refused at
    once. The thread starts on the first job, and again in a forked child.

    Args:
        name: the thread's name.
        max_pending: distinct jobs waiting or running at most.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        name: str,
        *,
        max_pending: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._max_pending = max_pending
        self._clock = clock
        self._closed = False
        self._forget()
        _LIVE.add(self)

    def _forget(self) -> None:
        """No thread and no jobs: at construction, and in a forked child."""
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._jobs: deque[tuple[Hashable, Callable[[], Any], Future[Any]]] = deque()
        self._pending: dict[Hashable, Future[Any]] = {}
        self._running_since: float | None = None
        self._thread: threading.Thread | None = None

    def stuck_for(self) -> float:
        """Seconds the current job has been running (0 when idle)."""
        since = self._running_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def submit(self, key: Hashable, job: Callable[[], Any]) -> Future[Any]:
        """Queue ``job`` under ``key`` (or join the one pending); its future.

        Raises:
            DatabaseError: too many distinct jobs are waiting, or the reader is closed.
        """
        with self._lock:
            if self._closed:
                raise DatabaseError("the collector is closed")
            future = self._pending.get(key)
            if future is not None:
                return future
            if len(self._pending) >= self._max_pending:
                raise DatabaseError(
                    f"{len(self._pending)} summary reads are already waiting on PostgreSQL"
                )
            future = Future()
            self._pending[key] = future
            self._jobs.append((key, job, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()
            return future

    def start(self, key: Hashable, job: Callable[[], Any], timeout: float) -> Future[Any]:
        """:meth:`submit`, unless the thread has been held for more than ``timeout`` already.

        Raises:
            ReadTimeout: a read has been waiting for longer than ``timeout``:
                the server does not answer, so say so now rather than queue
                behind it.
            DatabaseError: refused (see :meth:`submit`).
        """
        stuck = self.stuck_for()
        if stuck > timeout:
            raise ReadTimeout(f"no answer for {stuck:.0f} s (a read is still waiting)")
        return self.submit(key, job)

    def run(self, key: Hashable, job: Callable[[], Any], timeout: float) -> Any:
        """``job()``'s result, run on the reader thread, waiting at most ``timeout`` seconds.

        Raises:
            ReadTimeout: no result within ``timeout``, or the thread has been
                held for longer than that already (see :meth:`start`).
            DatabaseError: refused (see :meth:`submit`).
            Exception: whatever ``job`` raised.
        """
        future = self.start(key, job, timeout)
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise ReadTimeout(f"no answer within {timeout:g} s") from None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if self._closed and not self._jobs:
                    return
                key, job, future = self._jobs.popleft()
                self._running_since = self._clock()
            try:
                result = job()
            except BaseException as exc:  # goes to the callers; the loop goes on
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with self._lock:
                    self._running_since = None
                    self._pending.pop(key, None)

    def close(self) -> None:
        """Let the thread end once its jobs are done; never waits for it."""
        with self._lock:
            self._closed = True
            self._ready.notify_all()


_LIVE: weakref.WeakSet[BoundedReader] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The parent's reader thread does not exist here, and a caller must not
    # wait on the jobs it had under way.
    for reader in list(_LIVE):
        reader._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
