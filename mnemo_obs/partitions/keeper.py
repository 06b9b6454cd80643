"""The background job of the partitioned layout: partitions made ahead, DEFAULT emptied.

Each pass, for ``metrics`` and ``metrics_rollups`` when they are partitioned:

1. makes the partitions from the current one to ``ahead_days`` ahead (7
   unless ``mnemo-obs migrate --partitioned --ahead-days N`` chose another);
2. makes the partitions that rows in the DEFAULT partition belong to,
   moving those rows in (a day of rows lands there only when no process ran
   this job for longer than the days ahead, or for a row with an odd
   timestamp).

Each partition is its own short transaction. One process at a time does the
work, across every process and host (a session advisory lock: a process
finding it taken skips the pass). Every statement has a lock timeout and a
statement timeout, and it never runs on the request path. On a plain
``metrics`` table a pass costs one catalog query and does nothing, so an
app keeps working, unchanged, after ``mnemo-obs migrate --to-partitioned``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions

from .. import db
from ..errors import DatabaseError, MnemoObsError
from . import build
from .layout import SPECS, ahead_days, create_partition, default_starts, partitions, relkind

log = logging.getLogger("mnemo_obs.partitions")

# "mnemo" + 3: the migration holds "mnemo", purges + 1, the rollup job + 2.
ADVISORY_LOCK_KEY = 0x6D6E656D6F + 3
# Attaching a partition locks DEFAULT, which readers of the table hold too:
# a short wait, then the next pass tries again (with a week ahead, there are
# many passes before a partition is needed).
LOCK_TIMEOUT_MS = 2_000
# Moving a day of rows out of DEFAULT is the long case.
STATEMENT_TIMEOUT_MS = 300_000
# Partitions made for DEFAULT rows per pass, at most: odd timestamps spread
# over many days cannot make one pass long.
DEFAULT_STARTS = 31


@dataclass
class Pass:
    """What one pass did: the partitions it made, and the rows it moved out of DEFAULT."""

    created: list[str] = field(default_factory=list)
    moved: int = 0


def keep(conn: psycopg2.extensions.connection) -> Pass | None:
    """Run one pass on ``conn`` (autocommit off); what it did, or None if another process runs one.

    Raises:
        psycopg2.Error: a statement failed (a lock waited on too long, a
            timeout); the partitions made before it are kept.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        (locked,) = cur.fetchone()
        conn.commit()
        if not locked:
            return None
        try:
            done = Pass()
            for spec in SPECS:
                _timeouts(cur)
                if relkind(cur, spec.table) != "p":
                    conn.commit()
                    continue
                days = ahead_days(cur)
                existing, default = partitions(cur, spec)
                starts = build.ahead(cur, spec, days)
                if default is not None:
                    starts += default_starts(cur, spec, default, DEFAULT_STARTS)
                conn.commit()
                for start in sorted(set(starts)):
                    end = spec.next(start)
                    if not spec.nameable(start) or any(p.overlaps(start, end) for p in existing):
                        continue
                    _timeouts(cur)
                    moved = create_partition(cur, spec, start, default)
                    conn.commit()
                    done.created.append(spec.name(start))
                    done.moved += moved
                    if moved:
                        log.info(
                            "partitions: moved %d rows out of %s into %s",
                            moved,
                            default,
                            spec.name(start),
                        )
            return done
        finally:
            with contextlib.suppress(psycopg2.Error):
                conn.rollback()
                cur.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
                conn.commit()


def _timeouts(cur: Any) -> None:
    cur.execute(
        f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}; "
        f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"
    )


class PartitionKeeper:
    """Run :func:`keep` on a daemon thread: a first pass ``first_delay`` seconds after
    :meth:`start`, then one every ``interval``.

    The writer starts one with its threads (``mnemo_obs.partitions``); each
    process runs one, and the advisory lock lets one of them work at a time.
    A failed pass is logged once per error and tried again at the next
    interval; the thread never dies of it. ``stop(timeout)`` cancels a
    statement under way (from a thread of its own, so a server that stopped
    answering cannot hold it) and returns within ``timeout``.

    Args:
        dsn: the database.
        interval: seconds between passes (``INTERVAL``, an hour).
        first_delay: seconds before the first pass (``FIRST_DELAY``, 60, plus
            up to as much again at random, so processes started together
            spread out).

    Attributes:
        passes: passes that did their work (not skipped, not failed).
        last: what the last of them did.
        last_error: the message of the last failed pass, None once one succeeds.
    """

    INTERVAL = 3600.0
    # Partitions exist days ahead: no hurry at start-up, which has enough to do.
    FIRST_DELAY = 60.0

    def __init__(
        self,
        dsn: str,
        *,
        interval: float | None = None,
        first_delay: float | None = None,
    ) -> None:
        self._dsn = dsn
        self._interval = self.INTERVAL if interval is None else interval
        self._first_delay = (
            self.FIRST_DELAY * (1 + random.random()) if first_delay is None else first_delay
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._pid: int | None = None
        self.passes = 0
        self.last: Pass | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        """Start the thread; a no-op while it runs."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mnemo_obs.partitions", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread (cancelling a statement under way); True once it has ended."""
        self._stop.set()
        return db.stop_job(
            self._thread, self._dsn, lambda: self._pid, timeout, "mnemo_obs.partitions-cancel"
        )

    def _loop(self) -> None:
        delay = self._first_delay
        while not self._stop.wait(delay):
            self.run_once()
            delay = self._interval
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def run_once(self) -> Pass | None:
        """One pass now, on this thread; what it did (None: skipped or failed)."""
        try:
            if self._conn is None or self._conn.closed:
                conn = db.connect(self._dsn, application_name="mnemo_obs.partitions")
                conn.autocommit = False
                self._conn, self._pid = conn, conn.get_backend_pid()
                if self._stop.is_set():  # stop() came before the connection existed
                    db.cancel_backend(self._dsn, self._pid)
            done = keep(self._conn)
        except (psycopg2.Error, MnemoObsError) as exc:
            message = str(exc) if isinstance(exc, DatabaseError) else db.explain(exc, self._dsn)
            if message != self.last_error and not self._stop.is_set():
                log.warning("partitions: %s (will try again)", message)
            self.last_error = message
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = self._pid = None
            return None
        except Exception:  # never let a surprise kill the thread
            log.exception("partitions: unexpected error (will try again)")
            return None
        if done is not None:
            self.passes += 1
            self.last = done
            if self.last_error is not None:
                log.info("partitions: working again")
            self.last_error = None
            if done.created:
                log.info("partitions: created %s", ", ".join(done.created))
        return done
