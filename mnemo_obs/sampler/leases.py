"""Who samples what: session advisory locks in PostgreSQL, held on one connection per process.

Why PostgreSQL and not Redis ``SET NX`` with an expiry: PostgreSQL is always
there (Redis is optional, and the rows go to PostgreSQL anyway), and a
session lock needs no expiry to tune. The server frees it the moment the
holder's session ends: at once for a process that exits or is killed (its
kernel closes the socket); after ``idle_session_timeout`` (set here to a
few intervals) for a holder that stopped asking, such as a frozen process
(PostgreSQL 14 and later); after the TCP keepalives set here for a host
that vanished. An expiring Redis key must outlast the slowest sample yet
expire soon after a holder dies, needs a compare-and-renew script, and can
be evicted or lost in a Redis restart, leaving two holders.

A process that holds no lock keeps no connection: it connects, tries, and
disconnects, once an interval.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import Any

import psycopg2

from .. import db
from ..errors import DatabaseError

# "mnem": the first key of every sampler lock (two int4 keys, a space apart
# from the single bigint keys of the migration, purges and rollups).
NAMESPACE = 0x6D6E656D
_STATEMENT_TIMEOUT_MS = 5000
# Server-side keepalives: a holder whose host vanished loses its locks in
# about a minute (PostgreSQL's own default is the kernel's: two hours).
_SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
)


def lock_key(name: str) -> tuple[int, int]:
    """The two int4 keys of the lock called ``name`` (its CRC-32 as the second)."""
    crc = zlib.crc32(name.encode("utf-8"))
    return NAMESPACE, crc - (1 << 32) if crc >= 1 << 31 else crc


class Leases:
    """Try and keep a set of named advisory locks on one connection.

    Args:
        dsn: the database of the ``metrics`` table.
        idle_timeout: seconds of silence after which the server ends the
            session (and frees its locks); a few sample intervals.
        connect_timeout: seconds to wait for a connection.

    Used from one thread at a time (the sampler's database thread).
    """

    def __init__(self, dsn: str, *, idle_timeout: float, connect_timeout: int = 5) -> None:
        self._dsn = dsn
        self._idle_timeout_ms = max(1000, round(idle_timeout * 1000))
        self._connect_timeout = connect_timeout
        self.conn: Any = None
        self.held: set[str] = set()

    def refresh(self, wanted: dict[str, str]) -> tuple[set[str], set[str]]:
        """Check the locks held, try the others; ``(held, newly_acquired)``.

        ``wanted`` maps a scope to its lock's name. One round trip. Raises
        :class:`~mnemo_obs.errors.DatabaseError` when PostgreSQL cannot be
        asked: then nothing is held (a broken session has lost its locks).
        """
        try:
            if self.conn is None or self.conn.closed:
                self.held = set()
                self.conn = self._connect()
            missing = [scope for scope in wanted if scope not in self.held]
            with self.conn.cursor() as cur:
                if missing:
                    # A lock already held is not tried again: each success
                    # would stack one more hold to release.
                    values = ", ".join(["(%s, %s, %s)"] * len(missing))
                    args: list[Any] = []
                    for scope in missing:
                        args.extend((scope, *lock_key(wanted[scope])))
                    cur.execute(
                        f"SELECT s FROM (VALUES {values}) AS v(s, a, b) "
                        "WHERE pg_try_advisory_lock(a, b)",
                        args,
                    )
                    won = {row[0] for row in cur.fetchall()}
                else:
                    cur.execute("SELECT 1")  # the session is alive: its locks are held
                    won = set()
        except DatabaseError:
            self.release()
            raise
        except (psycopg2.Error, OSError) as exc:
            self.release()
            raise DatabaseError(
                f"PostgreSQL at {db.describe(self._dsn)}: {db.explain(exc, self._dsn)}"
            ) from exc
        self.held |= won
        if not self.held:
            self.release()  # a follower keeps no connection between tries
        return set(self.held), won

    def seconds_since(
        self, metric_type: str, metric_name: str, source: str | None, within: float
    ) -> float | None:
        """Seconds since the last row of this gauge (and source) (None: none in ``within`` s).

        What a new holder reads before its first sample, so that a handover
        does not give two samples in one interval.
        """
        sql = (
            "SELECT extract(epoch FROM now() - max(timestamp))::float8 FROM metrics "
            "WHERE metric_type = %s AND metric_name = %s "
            "AND timestamp > now() - %s * interval '1 second'"
        )
        params: tuple[Any, ...] = (metric_type, metric_name, within)
        if source is not None:
            sql += " AND metadata->>'source' = %s"
            params += (source,)
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, params)
                (seconds,) = cur.fetchone()
        except psycopg2.Error:
            return None  # no table yet, or a failure the next refresh reports
        return None if seconds is None else max(0.0, float(seconds))

    def release(self) -> None:
        """Close the connection: the server frees every lock it held."""
        conn, self.conn, self.held = self.conn, None, set()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def forget(self) -> None:
        """Drop the connection without closing it (a forked child: it is the parent's)."""
        self.conn, self.held = None, set()

    def _connect(self) -> Any:
        conn = db.connect(
            self._dsn, application_name="mnemo_obs.sampler", connect_timeout=self._connect_timeout
        )
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {_STATEMENT_TIMEOUT_MS}")
                cur.execute(_SERVER_KEEPALIVES)
                if conn.server_version >= 140000:
                    cur.execute(f"SET idle_session_timeout = {self._idle_timeout_ms}")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.close()
            raise
        return conn
