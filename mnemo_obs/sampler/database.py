"""The PostgreSQL half of a sampler's tick, on a thread of its own that a tick waits on, bounded.

Each tick asks PostgreSQL which locks this process holds (and tries the
others, see :mod:`.leases`), when the gauges of a lock just won were last
sampled, and, when the database's lock is ours, its statistics. A
PostgreSQL that stops answering (frozen, TCP up) holds that one thread
(``mnemo_obs.sampler-db``), never the sampler's: a tick waits at most its
timeout, and while the thread is held the next ticks do not wait at all.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import psycopg2

from .. import db
from ..collectors._reader import BoundedReader, ReadTimeout
from ..collectors.postgres_stats import PostgresCollector
from ..errors import MnemoObsError
from .leases import Leases


class DatabaseSide:
    """Ask PostgreSQL, for one sampler, within ``timeout`` seconds.

    Args:
        dsn: the database.
        wanted: each part (``postgres``, ``redis``, ``system``) and its lock's name.
        heartbeats: each part and the row (type, name, source or None) that
            says when it was last sampled, by anyone.
        interval: the sampler's interval.
        timeout: seconds a tick waits at most.
        idle_timeout: seconds after which the server ends a silent session.
    """

    def __init__(
        self,
        dsn: str,
        *,
        wanted: dict[str, str],
        heartbeats: dict[str, tuple[str, str, str | None]],
        interval: float,
        timeout: float,
        idle_timeout: float,
    ) -> None:
        self._dsn = dsn
        self._wanted = wanted
        self._heartbeats = heartbeats
        self._interval = interval
        self._timeout = timeout
        self._reader = BoundedReader("mnemo_obs.sampler-db", max_pending=2)
        self._leases = Leases(dsn, idle_timeout=idle_timeout)
        self._postgres = PostgresCollector(dsn)
        self.closed = False
        # Said the same way at each tick it lasts, so it is logged once.
        self._late = f"PostgreSQL at {db.describe(dsn)} did not answer within {timeout:g} s"

    @property
    def connected(self) -> bool:
        """Whether a lock connection is open (this process holds, or is trying, a lock)."""
        return self._leases.conn is not None

    def ask(self, stop: threading.Event) -> tuple[set[str], set[str], Any]:
        """``(held, due, postgres)``: the locks held, the parts to sample now, PostgreSQL's figures.

        The figures are ``(section, counters)`` (see ``PostgresCollector.read``),
        an error message, or None when the database is not ours to sample.
        Waits at most ``timeout``, less if ``stop`` is set.

        Raises:
            ReadTimeout: no answer in time (the thread may still be waiting).
            DatabaseError: PostgreSQL could not be asked (nothing is held).
        """
        if self._reader.stuck_for() > self._timeout:
            raise ReadTimeout(self._late)  # still waiting for an earlier tick's answer
        future = self._reader.submit("tick", self._work)
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return future.result(min(0.1, max(0.0, deadline - time.monotonic())))  # type: ignore[no-any-return]
            except FutureTimeout:
                if time.monotonic() >= deadline or stop.is_set():
                    raise ReadTimeout(self._late) from None

    def _work(self) -> tuple[set[str], set[str], Any]:
        """On the database thread."""
        if self.closed:  # a tick that outlived close(): the locks are being released
            return set(), set(), None
        held, won = self._leases.refresh(self._wanted)
        due = set(held)
        for part in won:
            metric_type, name, source = self._heartbeats[part]
            age = self._leases.seconds_since(metric_type, name, source, 2 * self._interval)
            if age is not None and age < self._interval:
                due.discard(part)  # the previous holder sampled it within the interval
        figures: Any = None
        if "postgres" in due:
            try:
                with self._leases.conn.cursor() as cur:
                    figures = self._postgres.read(cur)
            except psycopg2.Error as exc:
                figures = db.explain(exc, self._dsn)
        return held, due, figures

    def close(self, timeout: float) -> bool:
        """Release the locks (close their connection) within ``timeout``, then stop the thread.

        Returns False when PostgreSQL did not answer in time: the release is
        left queued behind the stuck read, and the server frees the locks
        when it ends the session.
        """
        self.closed = True
        released = True
        if self._leases.conn is not None:
            try:
                self._reader.run("release", self._leases.release, timeout)
            except (ReadTimeout, MnemoObsError):
                released = False
        self._reader.close()
        self._postgres.close()
        return released

    def forget(self) -> None:
        """In a forked child: drop the parent's connection without closing it."""
        self._leases.forget()
