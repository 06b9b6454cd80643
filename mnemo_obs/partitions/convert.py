"""``mnemo-obs migrate --to-partitioned``: a plain ``metrics`` table made partitioned, live.

While apps keep writing:

1. a partitioned twin is built beside the plain table (:mod:`.build`), with
   a partition for each day that holds rows and the days ahead;
2. a trigger on the plain table copies every row inserted from then on into
   the twin, in the inserting transaction (one statement per COPY batch);
3. the rows already there are copied in batches by timestamp range, each
   its own transaction, with progress;
4. one short transaction, under a lock timeout, takes the plain table's
   lock, drops the trigger and swaps the names. The plain table is kept as
   ``metrics_plain_old`` unless asked to drop it.

No row is lost: a row committed before the trigger existed is copied by a
batch (creating the trigger waits for every transaction writing the table),
and one inserted after it is copied by the trigger; a row both ways is
copied once (``ON CONFLICT DO NOTHING`` on the twin's primary key). Purges
and the partition job wait meanwhile (their advisory locks are held).

The rollup table is converted too, in one transaction holding its rows
still (the rollup job is held off by its own lock): it is small, a row per
endpoint and minute at most.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.errors

from .. import db, schema
from ..errors import DatabaseError
from ..retention._purge import ADVISORY_LOCK_KEY as PURGE_LOCK
from ..rollups.compaction import ADVISORY_LOCK_KEY as ROLLUP_LOCK
from . import build
from .keeper import ADVISORY_LOCK_KEY as KEEPER_LOCK
from .keeper import keep
from .layout import METRICS, ROLLUPS, Spec, columns, create_settings, relkind

TRIGGER = "mnemo_obs_partitioning_mirror"
FUNCTION = "mnemo_obs_partitioning_mirror()"
BATCH_SIZE = 50_000
LOCK_TIMEOUT = 5.0
# The swap needs the plain table's ACCESS EXCLUSIVE lock for an instant:
# tried this many times, each waiting at most the lock timeout, before
# giving up (and undoing everything).
SWAP_ATTEMPTS = 10
_STATEMENT_TIMEOUT_MS = 600_000


@dataclass
class Progress:
    """How far a conversion is: rows copied of about how many, and for how long."""

    table: str
    copied: int = 0
    estimated: int = 0
    seconds: float = 0.0


@dataclass
class Conversion:
    """What a conversion did.

    ``converted``: the tables made partitioned (none when they already
    were); ``created``: there was no ``metrics`` table, so the partitioned
    layout was created; ``kept``: the plain tables' new names (none when
    dropped); ``partitions``: of ``metrics`` now, DEFAULT included.
    """

    converted: list[str] = field(default_factory=list)
    created: bool = False
    copied: int = 0
    partitions: int = 0
    kept: list[str] = field(default_factory=list)
    seconds: float = 0.0


def to_partitioned(
    dsn: str | None,
    *,
    batch_size: int = BATCH_SIZE,
    ahead: int | None = None,
    keep_plain: bool = True,
    lock_timeout: float = LOCK_TIMEOUT,
    progress: Callable[[Progress], None] | None = None,
) -> Conversion:
    """Convert the plain ``metrics`` and ``metrics_rollups`` tables to the partitioned layout.

    Idempotent: tables already partitioned are left as they are (a database
    without a ``metrics`` table gets the partitioned layout straight away).
    An interrupted conversion leaves the plain tables in place and in use;
    run it again, it starts over.

    Raises:
        DatabaseError: the server failed, a purge kept running past
            ``lock_timeout``, the swap could not get its lock, or the name the
            plain table is kept under is taken.
    """
    dsn = db.resolve_dsn(dsn)
    started = time.monotonic()
    conn = db.connect(dsn, application_name="mnemo_obs.partitioning")
    result = Conversion()
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            if relkind(cur, METRICS.table) is None:
                schema.apply_schema(dsn, partitioned=True, ahead_days=ahead)
                result.created = True
                return _finish(cur, result, started)
            schema.apply_schema(dsn)  # the rollup tables, when they are missing
            for key, what in (
                (KEEPER_LOCK, "the partition job (or another conversion)"),
                (PURGE_LOCK, "a purge"),
            ):
                if not _lock(cur, key, lock_timeout):
                    raise DatabaseError(
                        f"{what} is running on {db.describe(dsn)}: try again when it ends"
                    )
            conn.autocommit = False
            create_settings(cur, ahead)
            conn.commit()
            if relkind(cur, METRICS.table) == "r":
                _convert_metrics(conn, cur, batch_size, keep_plain, lock_timeout, progress, result)
            if relkind(cur, ROLLUPS.table) == "r":
                if not _lock(cur, ROLLUP_LOCK, max(lock_timeout, 60.0)):
                    raise DatabaseError(f"the rollup job kept running on {db.describe(dsn)}")
                _convert_rollups(conn, cur, keep_plain, lock_timeout, result)
            keep(conn)  # the days ahead, rows that reached DEFAULT meanwhile
            return _finish(cur, result, started)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"conversion failed on {db.describe(dsn)}: {db.explain(exc, dsn)}"
        ) from exc
    finally:
        conn.close()  # also ends the session's advisory locks


def _finish(cur: Any, result: Conversion, started: float) -> Conversion:
    cur.execute(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(%s)", (METRICS.table,)
    )
    result.partitions = int(cur.fetchone()[0])
    cur.connection.commit()
    result.seconds = time.monotonic() - started
    return result


def _lock(cur: Any, key: int, wait: float) -> bool:
    """Take a session advisory lock, waiting up to ``wait`` seconds for its holder."""
    deadline = time.monotonic() + wait
    while True:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        if cur.fetchone()[0]:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _prepare(conn: Any, cur: Any, spec: Spec, keep_plain: bool, lock_timeout: float) -> str:
    """Clear what an interrupted conversion left, check names, build the twin; its name."""
    _set_timeouts(cur, lock_timeout)
    cur.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {spec.table}")
    cur.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")
    twin = build.prepare_twin(cur, spec, keep_plain=keep_plain)
    conn.commit()
    return twin


def _convert_metrics(
    conn: Any,
    cur: Any,
    batch_size: int,
    keep_plain: bool,
    lock_timeout: float,
    progress: Callable[[Progress], None] | None,
    result: Conversion,
) -> None:
    spec = METRICS
    twin = _prepare(conn, cur, spec, keep_plain, lock_timeout)
    cols = ", ".join(columns(cur, spec.table))
    try:
        # From this commit on, every row inserted into the plain table is
        # inserted into the twin too, in the same transaction.
        _set_timeouts(cur, lock_timeout)
        cur.execute(
            f"""CREATE FUNCTION {FUNCTION} RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO {twin} ({cols}) SELECT {cols} FROM mirrored ON CONFLICT DO NOTHING;
                RETURN NULL;
            END $$"""
        )
        cur.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON {spec.table} "
            f"REFERENCING NEW TABLE AS mirrored FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}"
        )
        conn.commit()
        result.copied += _copy(conn, cur, spec, twin, cols, batch_size, lock_timeout, progress)

        def before(cur: Any) -> None:
            cur.execute(f"LOCK TABLE {spec.table} IN ACCESS EXCLUSIVE MODE")
            cur.execute(f"DROP TRIGGER {TRIGGER} ON {spec.table}")
            cur.execute(f"DROP FUNCTION {FUNCTION}")

        _swap(conn, cur, spec, twin, keep_plain, lock_timeout, before, result)
    except BaseException:
        _undo(conn, cur, spec, twin, lock_timeout)
        raise


def _copy(
    conn: Any,
    cur: Any,
    spec: Spec,
    twin: str,
    cols: str,
    batch_size: int,
    lock_timeout: float,
    progress: Callable[[Progress], None] | None,
) -> int:
    """Copy the rows there before the trigger, in batches of about ``batch_size``; how many."""
    col = spec.column
    # Every row committed before the trigger is at or before this; later
    # rows, whatever their timestamp, come through the trigger.
    cur.execute(
        f"SELECT max({col})::text, (SELECT reltuples::bigint FROM pg_class "
        "WHERE oid = to_regclass(%s)) FROM " + spec.table,
        (spec.table,),
    )
    top, estimated = cur.fetchone()
    conn.commit()
    done = Progress(spec.table, estimated=max(int(estimated or 0), 0))
    started = time.monotonic()
    low, first = "-infinity", True
    while top is not None:
        above = ">=" if first else ">"
        # The batch ends at the timestamp batch_size rows on: ties go whole.
        cur.execute(
            f"SELECT {col}::text FROM {spec.table} WHERE {col} {above} %(low)s::timestamptz "
            f"AND {col} <= %(top)s::timestamptz ORDER BY {col} OFFSET %(n)s LIMIT 1",
            {"low": low, "top": top, "n": batch_size - 1},
        )
        row = cur.fetchone()
        high = top if row is None else row[0]
        _set_timeouts(cur, lock_timeout)
        cur.execute(
            f"INSERT INTO {twin} ({cols}) SELECT {cols} FROM {spec.table} "
            f"WHERE {col} {above} %(low)s::timestamptz AND {col} <= %(high)s::timestamptz "
            "ON CONFLICT DO NOTHING",
            {"low": low, "high": high},
        )
        done.copied += max(cur.rowcount, 0)
        conn.commit()
        done.seconds = time.monotonic() - started
        if progress is not None:
            progress(done)
        if row is None:
            break
        low, first = high, False
    return done.copied


def _convert_rollups(
    conn: Any, cur: Any, keep_plain: bool, lock_timeout: float, result: Conversion
) -> None:
    """Copy and swap in one transaction: the rollups are small, and rows are updated in place."""
    spec = ROLLUPS
    twin = _prepare(conn, cur, spec, keep_plain, lock_timeout)

    def before(cur: Any) -> None:
        # Readers go on meanwhile; rebuilds and purges wait (the rollup job is held off).
        cur.execute(f"LOCK TABLE {spec.table} IN EXCLUSIVE MODE")
        build.copy_all(cur, spec.table, twin)
        cur.execute(f"LOCK TABLE {spec.table} IN ACCESS EXCLUSIVE MODE")

    try:
        _swap(conn, cur, spec, twin, keep_plain, lock_timeout, before, result)
    except BaseException:
        _undo(conn, cur, spec, twin, lock_timeout)
        raise


def _swap(
    conn: Any,
    cur: Any,
    spec: Spec,
    twin: str,
    keep_plain: bool,
    lock_timeout: float,
    before: Callable[[Any], None],
    result: Conversion,
) -> None:
    """``before(cur)`` and the swap in one transaction, tried again while a lock is busy."""
    for attempt in range(SWAP_ATTEMPTS):
        try:
            _set_timeouts(cur, lock_timeout)
            before(cur)
            kept = build.swap(cur, spec, twin, keep=keep_plain)
            conn.commit()
        except psycopg2.errors.LockNotAvailable:
            conn.rollback()
            if attempt + 1 == SWAP_ATTEMPTS:
                raise
            time.sleep(min(1.0, lock_timeout))
            continue
        result.converted.append(spec.table)
        result.kept += [kept] if kept else []
        return


def _undo(conn: Any, cur: Any, spec: Spec, twin: str, lock_timeout: float) -> None:
    """After a failure: the plain table as it was, without the trigger, and no twin."""
    with contextlib.suppress(psycopg2.Error):
        conn.rollback()
        _set_timeouts(cur, lock_timeout)
        cur.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON {spec.table}")
        cur.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}")
        cur.execute(f"DROP TABLE IF EXISTS {twin}")
        conn.commit()


def _set_timeouts(cur: Any, lock_timeout: float) -> None:
    cur.execute(
        f"SET LOCAL lock_timeout = {max(1, round(lock_timeout * 1000))}; "
        f"SET LOCAL statement_timeout = {_STATEMENT_TIMEOUT_MS}"
    )
