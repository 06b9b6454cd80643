"""Where a read runs: on the replica while it may be read, else on the primary, by one deadline.

Each side has a reader thread of its own, so a replica that stops answering
holds its thread, never the primary's: the read falls back at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from ..errors import DatabaseError, MnemoObsError
from ._pg import PgConnections
from ._reader import BoundedReader, ReadTimeout
from .replica import Replica, ReplicaUnusable

PRIMARY = "primary"
REPLICA = "replica"


@dataclass
class Pending:
    """A read under way: its job, where it runs (``where`` follows a fallback), its future."""

    key: Hashable
    job: Callable[[Any], Any]
    where: str
    future: Future[Any] | None = None
    error: MnemoObsError | None = None


class Router:
    """Run ``job(cursor)`` reads on the replica (when given and usable) or on the primary.

    Args:
        primary: the primary's connections.
        replica: the :class:`Replica`, or None to read from the primary only.
        timeout: seconds a read may take in all, fallback included.
        prepare: called on the primary's reader thread before each job
            there (the writer's schema check), or None.
    """

    # A read on the replica waits at most this share of the timeout, so a
    # fallback to the primary still has the rest.
    REPLICA_SHARE = 0.5

    def __init__(
        self,
        primary: PgConnections,
        replica: Replica | None,
        *,
        timeout: float,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self._primary = primary
        self._reader = BoundedReader("mnemo_obs.summary")
        self.replica = replica
        self._timeout = timeout
        self._prepare = prepare

    def submit(self, key: Hashable, job: Callable[[Any], Any], *, replica: bool = True) -> Pending:
        """Start a read; never raises (a refusal is kept for :meth:`result`).

        ``replica=False`` keeps it on the primary (what describes the primary).
        """
        if replica and self.replica is not None:
            try:
                # No ``prepare`` there: the schema is the primary's business, and a
                # primary that fails must not be blamed on the replica.
                future = self.replica.submit(key, job, self._timeout * self.REPLICA_SHARE)
                return Pending(key, job, REPLICA, future)
            except ReplicaUnusable as exc:
                if not self.replica.fallback:
                    return Pending(key, job, REPLICA, error=_no_fallback(exc))
        return self._on_primary(Pending(key, job, PRIMARY))

    def result(self, pending: Pending, deadline: float) -> Any:
        """The read's result by ``deadline`` (monotonic), falling back to the primary if allowed.

        Raises:
            DatabaseError: it failed, or no answer came in time
                (:class:`ReadTimeout`); the message names the server.
        """
        if pending.where == REPLICA and pending.error is None:
            assert self.replica is not None and pending.future is not None
            wait = min(deadline - time.monotonic(), self._timeout * self.REPLICA_SHARE)
            try:
                return self.replica.wait(pending.future, max(0.0, wait))
            except ReplicaUnusable as exc:
                if not self.replica.fallback:
                    raise _no_fallback(exc) from None
                self._on_primary(pending)
        if pending.error is not None:
            raise pending.error
        assert pending.future is not None
        try:
            return pending.future.result(max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise self._silent(f"no answer within {self._timeout:g} s") from None

    def _on_primary(self, pending: Pending) -> Pending:
        """Start ``pending``'s job on the primary's thread (a fallback, or its first try)."""
        pending.where, pending.future = PRIMARY, None
        job = pending.job
        try:
            pending.future = self._reader.start(
                pending.key, lambda: self._run_on_primary(job), self._timeout
            )
        except ReadTimeout as exc:
            pending.error = self._silent(str(exc))
        except DatabaseError as exc:
            pending.error = exc
        return pending

    def _run_on_primary(self, job: Callable[[Any], Any]) -> Any:
        """On the primary's thread: ``prepare``, then ``job`` on a connection of its own."""
        if self._prepare is not None:
            self._prepare()
        with self._primary.connection() as conn, conn.cursor() as cur:
            return job(cur)

    def _silent(self, detail: str) -> ReadTimeout:
        return ReadTimeout(f"PostgreSQL at {self._primary.where} did not answer: {detail}")

    def close(self) -> None:
        """Let the reader threads end and close the replica's connections (not the primary's)."""
        self._reader.close()
        if self.replica is not None:
            self.replica.close()


def _no_fallback(exc: ReplicaUnusable) -> DatabaseError:
    return DatabaseError(f"{exc}; not reading from the primary (replica_fallback is off)")
