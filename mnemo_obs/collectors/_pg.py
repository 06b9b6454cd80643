"""Read-only PostgreSQL connections for the collectors, with timeouts, returned as lent.

Separate from the writer's connection on purpose: a summary that waits on a
slow query must not hold up the rows being written, and the other way round.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from .. import db
from ..errors import ConfigurationError, DatabaseError
from ._base import check_positive

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_INTRANS = psycopg2.extensions.TRANSACTION_STATUS_INTRANS


class PgConnections:
    """Lend connections for read queries, with connect and statement timeouts.

    Nothing connects at construction: a connection is opened on first use
    (and one is kept open between uses), so an app can start while its
    database is still down and the summary reports the error instead. A
    forked child (a pre-forking server's worker) opens its own on first use:
    the parent's are left to the parent, neither used nor closed.

    Args:
        dsn: libpq connection string or URL; defaults to ``$MNEMO_OBS_DSN``.
            Ignored when ``pool`` is given.
        pool: an existing pool to borrow from instead (it stays yours: we
            never close it). A borrowed connection comes back exactly as it
            was lent: our queries run in a transaction of their own, with
            ``SET LOCAL statement_timeout``, rolled back before the return;
            its autocommit setting is left alone.
        maxconn: most connections open at once (default 4).
        connect_timeout: seconds to wait for a connection (default 3).
        statement_timeout: seconds a query may run before the server
            cancels it (default 3).
    """

    MAXCONN = 4
    # A summary is polled by dashboards: it should fail fast and say why,
    # not hold a thread for the libpq default (forever).
    CONNECT_TIMEOUT = 3
    STATEMENT_TIMEOUT = 3.0
    _KEEP_IDLE = 1

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: psycopg2.pool.AbstractConnectionPool | None = None,
        maxconn: int = MAXCONN,
        connect_timeout: int = CONNECT_TIMEOUT,
        statement_timeout: float = STATEMENT_TIMEOUT,
    ) -> None:
        if isinstance(maxconn, bool) or not isinstance(maxconn, int) or maxconn < 1:
            raise ConfigurationError(f"maxconn must be an int >= 1, got {maxconn!r}")
        if (
            isinstance(connect_timeout, bool)
            or not isinstance(connect_timeout, int)
            or connect_timeout < 1
        ):
            raise ConfigurationError(
                f"connect_timeout must be an int >= 1 (seconds), got {connect_timeout!r}"
            )
        seconds = check_positive("statement_timeout", statement_timeout)
        self._statement_timeout_ms = int(seconds * 1000)
        self._given_pool = pool
        self._dsn = "" if pool is not None else db.resolve_dsn(dsn)
        self._maxconn = maxconn
        self._connect_timeout = connect_timeout
        self._closed = False
        self._forget()
        _LIVE.add(self)

    def _forget(self) -> None:
        """Start with no connection: at construction, and in a forked child.

        In a child, using the parent's sockets would mix two processes'
        messages on one session, and closing them would end the parent's
        sessions (psycopg2 sends the terminate message on close(), though
        not when a connection is merely garbage-collected in another
        process). A parent thread may have held the lock at the fork.
        """
        self._lock = threading.Lock()
        self._idle: list[psycopg2.extensions.connection] = []
        self._open = 0

    @property
    def where(self) -> str:
        """The server and database, for messages (never the password)."""
        return db.describe(self._dsn) if self._dsn else "the given pool"

    def _connect(self) -> psycopg2.extensions.connection:
        params = psycopg2.extensions.parse_dsn(self._dsn)
        timeout = f"-c statement_timeout={self._statement_timeout_ms}"
        options = f"{params['options']} {timeout}" if params.get("options") else timeout
        conn = db.connect(
            self._dsn,
            application_name="mnemo_obs.collector",
            connect_timeout=self._connect_timeout,
            options=options,
        )
        # Each use is one read-only transaction with one snapshot: a read of
        # rollups, pending rows and raw rows sees them all at one moment.
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        return conn

    def _take(self) -> psycopg2.extensions.connection:
        with self._lock:
            if self._closed:
                raise DatabaseError("the collector's connections are closed")
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
                self._open -= 1
            if self._open >= self._maxconn:
                raise DatabaseError(
                    f"all {self._maxconn} collector connections to {self.where} are busy"
                )
            self._open += 1
        try:
            return self._connect()
        except BaseException:
            with self._lock:
                self._open -= 1
            raise

    def _give_back(self, conn: psycopg2.extensions.connection, broken: bool) -> None:
        broken = broken or not _end_transaction(conn)
        with self._lock:
            keep = not (broken or conn.closed or self._closed) and len(self._idle) < self._KEEP_IDLE
            if keep:
                self._idle.append(conn)
                return
            self._open -= 1
        with suppress(Exception):
            conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Lend a connection inside a read-only REPEATABLE READ transaction, ended after.

        Errors become one-line :class:`DatabaseError`. A connection that
        failed is closed rather than kept, so the next use after a database
        restart gets a fresh one.
        """
        if self._given_pool is not None:
            with self._borrowed() as conn:
                yield conn
            return
        conn = self._take()
        broken = False
        try:
            yield conn
        except psycopg2.Error as exc:
            # A lost server or a cancelled query may leave it unusable: start afresh.
            broken = True
            raise DatabaseError(
                f"PostgreSQL at {self.where}: {db.explain(exc, self._dsn)}"
            ) from exc
        except BaseException:
            broken = True
            raise
        finally:
            self._give_back(conn, broken)

    @contextmanager
    def _borrowed(self) -> Iterator[psycopg2.extensions.connection]:
        pool = self._given_pool
        assert pool is not None
        try:
            conn = pool.getconn()
        except psycopg2.pool.PoolError as exc:
            raise DatabaseError(f"PostgreSQL connection pool: {exc}") from exc
        except psycopg2.Error as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {db.explain(exc)}") from exc
        broken = bool(conn.closed)
        try:
            if broken:
                raise DatabaseError("the pool lent a closed connection")
            if conn.info.transaction_status != _IDLE:
                raise DatabaseError(
                    "the pool lent a connection inside a transaction; left untouched"
                )
            autocommit = conn.autocommit
            try:
                with conn.cursor() as cur:
                    # Ours, with one snapshot, ended before the return; the
                    # app's settings are untouched.
                    cur.execute(
                        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                        if autocommit
                        else "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
                    )
                    cur.execute("SET LOCAL statement_timeout = %s", (self._statement_timeout_ms,))
                yield conn
            except psycopg2.Error as exc:
                raise DatabaseError(f"PostgreSQL: {db.explain(exc)}") from exc
            finally:
                broken = not _end_transaction(conn)
        finally:
            try:
                pool.putconn(conn, close=broken or bool(conn.closed))
            except psycopg2.pool.PoolError:
                conn.close()  # the pool was closed meanwhile

    def close(self) -> None:
        """Close the connections we opened (a given pool is left to its owner). Idempotent.

        A connection in use (a query waiting on a server that stopped
        answering) is closed when it is given back, never from here: closing
        it would wait on that query.
        """
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn in idle:
            with suppress(Exception):
                conn.close()


def _end_transaction(conn: psycopg2.extensions.connection) -> bool:
    """Roll back the transaction our queries ran in; False if the connection is unusable."""
    if conn.closed:
        return False
    try:
        if conn.autocommit:
            if conn.info.transaction_status != _IDLE:
                with conn.cursor() as cur:
                    cur.execute("ROLLBACK")
        else:
            conn.rollback()
    except psycopg2.Error:
        return False
    return conn.info.transaction_status == _IDLE


def query_or_none(cur: Any, sql: str, params: dict[str, Any]) -> Any:
    """Run a query that may fail harmlessly (a view not loaded); its first row, or None.

    Inside a transaction (a borrowed connection), a savepoint keeps the
    failure from aborting the queries that follow.
    """
    in_transaction = cur.connection.info.transaction_status == _INTRANS
    if in_transaction:
        cur.execute("SAVEPOINT mnemo_obs")
    try:
        cur.execute(sql, params)
        row = cur.fetchone()
    except psycopg2.Error:
        if in_transaction:
            cur.execute("ROLLBACK TO SAVEPOINT mnemo_obs")
        return None
    if in_transaction:
        cur.execute("RELEASE SAVEPOINT mnemo_obs")
    return row


_LIVE: weakref.WeakSet[PgConnections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for connections in list(_LIVE):
        connections._forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
