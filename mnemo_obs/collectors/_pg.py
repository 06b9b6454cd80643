"""Read-only PostgreSQL connections for the collectors: a small pool with timeouts.

Separate from the writer's connection on purpose: a summary that waits on a
slow query must not hold up the rows being written, and the other way round.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from .. import db
from ..errors import DatabaseError
from ._base import check_positive


class PgConnections:
    """Borrow connections from a ``ThreadedConnectionPool``, with connect and statement timeouts.

    Nothing connects at construction: the pool is made on first use, so an
    app can start while its database is still down and the summary reports
    the error instead. A forked child (a pre-forking server's worker) makes
    its own pool on first use: the parent's connections are left to the
    parent, neither used nor closed.

    Args:
        dsn: libpq connection string or URL; defaults to ``$MNEMO_OBS_DSN``.
            Ignored when ``pool`` is given.
        pool: an existing pool to borrow from instead (it stays yours: we
            never close it). Its connections get ``SET statement_timeout``
            on every borrow, since we did not open them.
        maxconn: most connections open at once (default 4). One stays open
            between collections.
        connect_timeout: seconds to wait for a connection (default 3).
        statement_timeout: seconds a query may run before the server
            cancels it (default 3), so a hung database cannot hang the
            summary endpoint.
    """

    MAXCONN = 4
    # A summary is polled by dashboards: it should fail fast and say why,
    # not hold a request thread for the libpq default (forever).
    CONNECT_TIMEOUT = 3
    STATEMENT_TIMEOUT = 3.0

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: psycopg2.pool.AbstractConnectionPool | None = None,
        maxconn: int = MAXCONN,
        connect_timeout: int = CONNECT_TIMEOUT,
        statement_timeout: float = STATEMENT_TIMEOUT,
    ) -> None:
        if not isinstance(maxconn, int) or maxconn < 1:
            raise ValueError(f"maxconn must be an int >= 1, got {maxconn!r}")
        if not isinstance(connect_timeout, int) or connect_timeout < 1:
            raise ValueError(
                f"connect_timeout must be an int >= 1 (seconds), got {connect_timeout!r}"
            )
        seconds = check_positive("statement_timeout", statement_timeout)
        self._statement_timeout_ms = int(seconds * 1000)
        self._given_pool = pool
        self._dsn = "" if pool is not None else db.resolve_dsn(dsn)
        self._maxconn = maxconn
        self._connect_timeout = connect_timeout
        self._pool: psycopg2.pool.AbstractConnectionPool | None = pool
        self._lock = threading.Lock()
        self._closed = False
        _LIVE.add(self)

    def _forget_parents_pool(self) -> None:
        # In a forked child. Using the parent's sockets would mix two
        # processes' messages on one session, and closing them would end the
        # parent's sessions (psycopg2 sends the terminate message on close(),
        # though not when a connection is merely garbage-collected in another
        # process). A parent thread may have held the lock at the fork.
        self._lock = threading.Lock()
        if self._given_pool is None:
            self._pool = None

    @property
    def where(self) -> str:
        """The server and database, for messages (never the password)."""
        return db.describe(self._dsn) if self._dsn else "the given pool"

    def _get_pool(self) -> psycopg2.pool.AbstractConnectionPool:
        with self._lock:
            if self._closed:
                raise DatabaseError("the collector's connections are closed")
            if self._pool is None:
                params = psycopg2.extensions.parse_dsn(self._dsn)
                timeout = f"-c statement_timeout={self._statement_timeout_ms}"
                options = f"{params['options']} {timeout}" if params.get("options") else timeout
                extra = {"options": options, **db.keepalive_params(params)}
                if "connect_timeout" not in params:
                    extra["connect_timeout"] = str(self._connect_timeout)
                if "application_name" not in params:
                    extra["application_name"] = "mnemo_obs.collector"
                try:
                    # minconn=1: the pool closes every returned connection
                    # beyond minconn, so 0 would reconnect on each summary.
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        1, self._maxconn, self._dsn, **extra
                    )
                except psycopg2.Error as exc:
                    raise DatabaseError(
                        f"cannot connect to PostgreSQL at {self.where}: {db.first_line(exc)}"
                    ) from exc
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        """Borrow an autocommit connection; errors become one-line :class:`DatabaseError`.

        A connection that failed is closed rather than returned, so the next
        borrow after a database restart gets a fresh one.
        """
        pool = self._get_pool()
        try:
            conn = pool.getconn()
        except psycopg2.pool.PoolError as exc:
            raise DatabaseError(f"PostgreSQL connection pool: {exc}") from exc
        except psycopg2.Error as exc:
            raise DatabaseError(
                f"cannot connect to PostgreSQL at {self.where}: {db.first_line(exc)}"
            ) from exc
        broken = False
        try:
            if conn.closed:
                broken = True
                raise DatabaseError(f"lost the connection to PostgreSQL at {self.where}")
            if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            conn.autocommit = True
            if self._given_pool is not None:
                with conn.cursor() as cur:
                    cur.execute("SET statement_timeout = %s", (self._statement_timeout_ms,))
            yield conn
        except psycopg2.Error as exc:
            # A failed statement leaves an autocommit connection usable; a
            # lost server or a cancelled query may not: start afresh.
            broken = True
            raise DatabaseError(f"PostgreSQL at {self.where}: {db.first_line(exc)}") from exc
        finally:
            try:
                pool.putconn(conn, close=broken or bool(conn.closed))
            except psycopg2.pool.PoolError:
                conn.close()  # the pool was closed meanwhile

    def close(self) -> None:
        """Close the pool we made (a given pool is left to its owner). Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._given_pool is None:
            pool.closeall()


_LIVE: weakref.WeakSet[PgConnections] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for connections in list(_LIVE):
        connections._forget_parents_pool()


os.register_at_fork(after_in_child=_after_fork_in_child)
