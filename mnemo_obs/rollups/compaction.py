"""The background job that keeps rollups small: pending rows to minutes, minutes to hours to days.

Each pass, in short transactions of its own:

1. moves pending rows (what the writers copied) into per-minute rollup rows;
2. merges rows that share a key and have not been rolled up yet;
3. rolls each finished bucket into the next width (minute, quarter hour,
   hour, six hours, day: the current quarter hour's row holds its finished
   minutes, and so on), and marks the children ``rolled_up``;
4. deletes minute and quarter-hour rows older than :data:`MINUTE_DAYS` (the coarser
   keep the figures).

It runs one at a time across every process and host (a session advisory
lock: a process finding it taken skips the pass), never on the request path,
and every statement has a lock and a statement timeout.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from typing import Any

import psycopg2
import psycopg2.extensions

from .. import db
from ..errors import DatabaseError, MnemoObsError
from . import sql

log = logging.getLogger("mnemo_obs.rollups")

# "mnemo" + 2: the migration holds "mnemo", purges "mnemo" + 1.
ADVISORY_LOCK_KEY = 0x6D6E656D6F + 2
# Minute and quarter-hour rows serve the edges of windows up to a week and
# time series with steps under an hour; the coarser rows keep the figures.
MINUTE_DAYS = 8
# Pending rows moved per statement: a backlog (a job that was down) is
# worked through in steps of this many.
PENDING_STEP = 100_000
_LOCK_TIMEOUT_MS = 5_000
_STATEMENT_TIMEOUT_MS = 60_000


def compact(conn: psycopg2.extensions.connection, *, full: bool = True) -> dict[str, int] | None:
    """Run one pass on ``conn`` (autocommit off); the rows each step touched, or None if busy.

    ``full=False`` only moves pending rows (cheap: the job does it every
    few seconds, so reads have little pending to add).
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        (locked,) = cur.fetchone()
        conn.commit()
        if not locked:
            return None
        try:
            done = {"pending": 0}
            while True:
                moved = _step(conn, cur, sql.consume_pending(), {"limit": PENDING_STEP}, True)
                done["pending"] += moved
                if moved < PENDING_STEP:
                    break
            if full:
                for width in sql.WIDTHS:
                    done[f"merged_{width}"] = _step(conn, cur, sql.merge_partials(width), {})
                for width in sql.PARENT:
                    cur.execute(f"SELECT {sql.floor_sql('now()', width)}")
                    (start,) = cur.fetchone()
                    done[f"rolled_{width}"] = _step(
                        conn, cur, sql.roll_up(width), {"before": start}
                    )
                    done[f"merged_up_{width}"] = _step(
                        conn, cur, sql.merge_partials(sql.PARENT[width]), {}
                    )
                done["expired"] = _step(
                    conn,
                    cur,
                    f"DELETE FROM {sql.TABLE} WHERE width < 3600 AND rolled_up "
                    "AND bucket < now() - %(days)s * interval '1 day'",
                    {"days": MINUTE_DAYS},
                )
            return done
        finally:
            with contextlib.suppress(psycopg2.Error):
                conn.rollback()
                cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
                conn.commit()


def _step(
    conn: psycopg2.extensions.connection,
    cur: Any,
    statement: str,
    params: dict[str, Any],
    counted: bool = False,
) -> int:
    """One statement in a transaction of its own; the rows it touched (or counted)."""
    cur.execute(
        f"SET LOCAL lock_timeout = {_LOCK_TIMEOUT_MS}; "
        f"SET LOCAL statement_timeout = {_STATEMENT_TIMEOUT_MS}"
    )
    cur.execute(statement, params)
    count = cur.fetchone()[0] if counted else cur.rowcount
    conn.commit()
    return max(count, 0)


class Compactor:
    """Run :func:`compact` on a daemon thread: pending rows every ``pending_interval``
    seconds, the whole pass every ``interval``.

    The writer starts one with its threads (``mnemo_obs.rollups``); each
    process runs one, and the advisory lock lets one of them work at a time.
    A failed pass is logged once per error and tried again later; the
    thread never dies of it. ``stop(timeout)`` cancels a statement under way.

    Args:
        dsn: the database.
        interval: seconds between whole passes (default 60).
        pending_interval: seconds between moves of pending rows (default 2).
    """

    INTERVAL = 60.0
    PENDING_INTERVAL = 2.0

    def __init__(
        self,
        dsn: str,
        *,
        interval: float = INTERVAL,
        pending_interval: float = PENDING_INTERVAL,
    ) -> None:
        self._dsn = dsn
        self._interval = interval
        self._pending_interval = pending_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._pid: int | None = None  # its backend, to cancel a statement on stop()
        self._last_error: str | None = None
        self.passes = 0

    def start(self) -> None:
        """Start the thread; a no-op while it runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mnemo_obs.rollups", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread (cancelling a statement under way); True once it has ended."""
        self._stop.set()
        return db.stop_job(
            self._thread, self._dsn, lambda: self._pid, timeout, "mnemo_obs.rollups-cancel"
        )

    def _loop(self) -> None:
        # Spread the processes of one app, which often start together.
        next_full = random.uniform(0, self._interval)
        waited = 0.0
        while not self._stop.wait(self._pending_interval):
            waited += self._pending_interval
            full = waited >= next_full
            if full:
                waited, next_full = 0.0, self._interval
            self._run(full)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _run(self, full: bool) -> None:
        try:
            if self._conn is None or self._conn.closed:
                conn = db.connect(self._dsn, application_name="mnemo_obs.rollups")
                conn.autocommit = False
                self._conn, self._pid = conn, conn.get_backend_pid()
            done = compact(self._conn, full=full)
            self.passes += done is not None
            if self._last_error is not None:
                log.info("rollups: working again")
                self._last_error = None
        except (psycopg2.Error, MnemoObsError) as exc:
            message = str(exc) if isinstance(exc, DatabaseError) else db.explain(exc, self._dsn)
            if message != self._last_error and not self._stop.is_set():
                log.warning("rollups: %s (will try again)", message)
            self._last_error = message
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = self._pid = None
        except Exception:  # never let a surprise kill the thread
            log.exception("rollups: unexpected error (will try again)")
