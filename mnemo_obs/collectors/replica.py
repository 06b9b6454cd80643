"""A streaming replica for the reads: is it a standby, how far behind, and when to stop using it.

With ``read_dsn``, the summary's api section and the read views run on a
streaming standby, so their queries cost the primary nothing. Each read
there first checks, in the same transaction and on the same connection,
that the server is in recovery and how far behind it is. A replica that is
down, does not answer, is no standby (it was promoted) or lags past
``max_lag`` is set aside: reads go to the primary at once, and a check on
the replica's own thread, every ``retry`` seconds, says when they may
return. No caller ever waits on a replica that failed: only the one read
that finds it failing, and that one at most its share of the timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import suppress
from typing import Any, TypeVar

from ..errors import ConfigurationError, DatabaseError
from ._base import check_positive, rounded
from ._pg import PgConnections
from ._reader import BoundedReader, ReadTimeout

log = logging.getLogger("mnemo_obs.collectors")

T = TypeVar("T")

# The standby's lag, in seconds, from the standby alone (no query on the
# primary, no privilege beyond the default):
# * it receives WAL (its WAL receiver runs) and has applied all it received:
#   0. So a primary with nothing to write is not taken for a lagging one, as
#   `now() - pg_last_xact_replay_timestamp()` alone would be. "All" is `<=`:
#   after a restart the received position starts again below the applied one.
# * otherwise: the time since the last transaction it applied was committed
#   on the primary, an upper bound (it may be that nothing came after it);
#   null when it has applied none since it started: unknown.
# pg_stat_wal_receiver shows every user the receiver's pid (its details only
# to pg_read_all_stats): enough to know that it runs.
LAG_QUERY = """
SELECT pg_is_in_recovery(),
       CASE
         WHEN NOT pg_is_in_recovery() THEN NULL
         WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL)
              AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0.0
         ELSE greatest(0.0, extract(epoch FROM clock_timestamp()
                                               - pg_last_xact_replay_timestamp()))::float8
       END
"""

OK = "ok"
LAGGING = "lagging"
DOWN = "down"
NOT_STANDBY = "not_standby"


class ReplicaUnusable(DatabaseError):
    """The replica cannot serve this read: down, silent, no standby, or lagging past the bound."""


class Replica:
    """A streaming standby to read from, with its state: ok, lagging, down or not a standby.

    Args:
        connections: the replica's :class:`PgConnections` (closed by :meth:`close`).
        max_lag: seconds behind the primary past which it is set aside
            (default 30).
        fallback: whether reads go to the primary when the replica is set
            aside (default True). With False, a replica that lags is still
            read (and says so), and one that is down makes the reads fail.
        retry: seconds between the checks of a replica set aside (default 5).
        clock: monotonic seconds (injectable for tests).
    """

    MAX_LAG = 30.0
    # Often enough that reads are back on the replica soon after it is; each
    # check is one short query on the replica's own thread.
    RETRY = 5.0

    def __init__(
        self,
        connections: PgConnections,
        *,
        max_lag: float = MAX_LAG,
        fallback: bool = True,
        retry: float = RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_lag, self._retry = self.check(max_lag, fallback, retry)
        self.connections = connections
        self.fallback = fallback
        self._clock = clock
        self._reader = BoundedReader("mnemo_obs.replica", clock=clock)
        self._lock = threading.Lock()
        _LIVE.add(self)
        self._status = "unchecked"
        self._lag: float | None = None
        self._error: str | None = None
        self._retry_at = 0.0

    @staticmethod
    def check(max_lag: float, fallback: bool, retry: float) -> tuple[float, float]:
        """``max_lag`` and ``retry`` as floats; ConfigurationError naming a bad setting."""
        if not isinstance(fallback, bool):
            raise ConfigurationError(f"replica_fallback must be True or False, got {fallback!r}")
        return (
            check_positive("replica_max_lag", max_lag),
            check_positive("replica_retry", retry),
        )

    @property
    def where(self) -> str:
        """The replica's server and database, for messages (never the password)."""
        return self.connections.where

    def describe(self) -> dict[str, Any]:
        """``replica_status``, ``replica_lag_seconds`` and ``replica_error``, as last seen."""
        with self._lock:
            return {
                "replica_status": self._status,
                "replica_lag_seconds": rounded(self._lag, 3),
                "replica_error": self._error,
            }

    def submit(self, key: Hashable, job: Callable[[Any], T], timeout: float) -> Future[T]:
        """Start ``job(cursor)`` on the replica's thread, after its check; its future.

        Raises:
            ReplicaUnusable: the replica is set aside (a check is started when
                one is due), or its thread has been held for more than
                ``timeout`` by a read it does not answer.
        """
        self._check_due()
        try:
            return self._reader.start(key, lambda: self._read(job), timeout)
        except ReadTimeout as exc:
            raise self._fail(DOWN, str(exc)) from None
        except DatabaseError as exc:  # too many reads waiting on it already
            raise ReplicaUnusable(f"replica at {self.where}: {exc}") from None

    def wait(self, future: Future[T], timeout: float) -> T:
        """The result of a read :meth:`submit` started, waiting at most ``timeout`` seconds.

        Raises:
            ReplicaUnusable: the read failed or did not answer in time; the
                replica is set aside for ``retry`` seconds.
        """
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise self._fail(DOWN, f"no answer within {timeout:g} s") from None
        except ReplicaUnusable:
            raise
        except DatabaseError as exc:
            raise self._fail(DOWN, str(exc)) from None

    def _check_due(self) -> None:
        """Raise while the replica is set aside; start its check in the background when due."""
        with self._lock:
            aside = self._status in (DOWN, NOT_STANDBY) or (
                self._status == LAGGING and self.fallback
            )
            if not aside:
                return
            error = self._error or self._status
            due = self._clock() >= self._retry_at
            if due:
                self._retry_at = self._clock() + self._retry
        # A thread still held by a read the replica never answered means it
        # still does not: no new check behind it.
        if due and not self._reader.stuck_for():
            with suppress(DatabaseError):  # closed, or busy: the next one
                self._reader.submit(("check",), self._check_alone)
        raise ReplicaUnusable(error)

    def _read(self, job: Callable[[Any], T]) -> T:
        """On the replica's thread: the check, then ``job`` in the same transaction."""
        with self.connections.connection() as conn, conn.cursor() as cur:
            refused = self._check(cur)
            if refused is None:
                return job(cur)
        raise ReplicaUnusable(refused)

    def _check_alone(self) -> None:
        try:
            with self.connections.connection() as conn, conn.cursor() as cur:
                self._check(cur)
        except DatabaseError as exc:
            self._fail(DOWN, str(exc))

    def _check(self, cur: Any) -> str | None:
        """Record whether the server is a standby and its lag; why it may not be read, or None."""
        cur.execute(LAG_QUERY)
        in_recovery, lag = cur.fetchone()
        if not in_recovery:
            return str(self._fail(NOT_STANDBY, "not a standby (pg_is_in_recovery() is false)"))
        if lag is not None and lag <= self._max_lag:
            self._set(OK, lag, None)
            return None
        behind = "lag unknown" if lag is None else f"{lag:.1f} s behind"
        refused = self._fail(LAGGING, f"{behind}, past replica_max_lag ({self._max_lag:g} s)", lag)
        return str(refused) if self.fallback else None

    def _fail(self, status: str, reason: str, lag: float | None = None) -> ReplicaUnusable:
        """Set the replica aside for ``retry`` seconds; the error to raise."""
        # PgConnections' messages name the server already: name it once.
        for named in (f" to PostgreSQL at {self.where}", f"PostgreSQL at {self.where}: "):
            reason = reason.replace(named, "")
        error = f"replica at {self.where}: {reason}"
        with self._lock:
            self._retry_at = self._clock() + self._retry
        self._set(status, lag, error)
        return ReplicaUnusable(error)

    def _set(self, status: str, lag: float | None, error: str | None) -> None:
        with self._lock:
            previous, self._status, self._lag, self._error = self._status, status, lag, error
        # Logged when the state changes, not on every read.
        if status == previous:
            return
        if status == OK:
            log.info("reads are back on the replica at %s", self.where)
        elif self.fallback:
            log.warning("%s; reading from the primary meanwhile", error)
        else:
            log.warning("%s (replica_fallback is off)", error)

    def close(self) -> None:
        """Close the replica's connections and let its thread end; never waits on the server."""
        self._reader.close()
        self.connections.close()


_LIVE: weakref.WeakSet[Replica] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A parent thread may have held the lock at the fork; the state is kept
    # (its reader and connections start afresh on their own).
    for replica in list(_LIVE):
        replica._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
