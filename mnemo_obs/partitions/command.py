"""``mnemo-obs migrate --partitioned`` and ``--to-partitioned``: what they print."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import psycopg2

from .. import db, retention, schema
from ..errors import DatabaseError
from .convert import BATCH_SIZE, Progress, to_partitioned
from .keeper import keep
from .layout import METRICS, ahead_days, partitions


def _ahead_days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 366:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, 1 to 366, got {text!r}")
    return int(text)


def add_arguments(migrate: argparse.ArgumentParser) -> None:
    """Add the partitioned layout's options to the ``migrate`` parser."""
    from ..cli._options import _lock_seconds, _positive_int  # the same checks as purge's options

    layouts = migrate.add_mutually_exclusive_group()
    layouts.add_argument(
        "--partitioned",
        action="store_true",
        help="create the tables partitioned by day (docs/partitions.md); on a partitioned "
        "database, make the partitions missing ahead",
    )
    layouts.add_argument(
        "--to-partitioned",
        action="store_true",
        help="convert a plain metrics table to the partitioned layout, copying its rows in "
        "batches while apps keep writing",
    )
    migrate.add_argument(
        "--ahead-days",
        type=_ahead_days,
        metavar="N",
        help="days of partitions kept ready ahead (default: 7, or the number chosen before)",
    )
    migrate.add_argument(
        "--batch-size",
        type=_positive_int,
        default=BATCH_SIZE,
        metavar="N",
        help="with --to-partitioned: rows copied per transaction (default: %(default)s)",
    )
    migrate.add_argument(
        "--lock-timeout",
        type=_lock_seconds,
        default=retention.LOCK_TIMEOUT,
        metavar="S",
        help="with --to-partitioned: seconds to wait for a lock, and for a purge to end "
        "(default: %(default)g)",
    )
    migrate.add_argument(
        "--drop-old",
        action="store_true",
        help="with --to-partitioned: drop the plain table once swapped (default: keep it "
        "as metrics_plain_old)",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse options that do not go with the layout asked for (exit 2)."""
    if args.ahead_days is not None and not (args.partitioned or args.to_partitioned):
        parser.error("migrate: --ahead-days goes with --partitioned or --to-partitioned")
    given = [
        name
        for name, value, default in (
            ("--batch-size", args.batch_size, BATCH_SIZE),
            ("--lock-timeout", args.lock_timeout, retention.LOCK_TIMEOUT),
            ("--drop-old", args.drop_old, False),
        )
        if value != default
    ]
    if given and not args.to_partitioned:
        parser.error(f"migrate: {', '.join(given)} goes with --to-partitioned")


class _Shown:
    """Print a conversion's progress on ``stream``, at most once per ``every`` seconds."""

    def __init__(
        self, stream: TextIO, *, every: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream, self._every, self._clock = stream, every, clock
        self._last = clock() - every

    def __call__(self, done: Progress) -> None:
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        of = f" of about {done.estimated:,}" if done.estimated > done.copied else ""
        rate = done.copied / done.seconds if done.seconds else 0.0
        print(
            f"  {done.table}: {done.copied:,}{of} rows copied ({rate:,.0f} rows/s)",
            file=self._stream,
        )


def _ready(dsn: str) -> str:
    """``"9 partitions, 7 days ahead"``: what the partitioned ``metrics`` table has now."""
    conn = db.connect(dsn, application_name="mnemo_obs.migrate")
    try:
        with conn, conn.cursor() as cur:
            ranges, _default = partitions(cur, METRICS)
            return f"{len(ranges)} day partitions and a DEFAULT one, {ahead_days(cur)} days ahead"
    finally:
        conn.close()


def _keep(dsn: str) -> int:
    """One pass of the partition job (for setups where no app runs it); rows moved."""
    conn = db.connect(dsn, application_name="mnemo_obs.partitions")
    try:
        conn.autocommit = False
        done = keep(conn)
    except psycopg2.Error as exc:
        raise DatabaseError(
            f"making partitions failed on {db.describe(dsn)}: {db.explain(exc, dsn)}"
        ) from exc
    finally:
        conn.close()
    return 0 if done is None else done.moved


def migrate(dsn: str, args: Any) -> int:
    """Run ``mnemo-obs migrate --partitioned`` or ``--to-partitioned`` with parsed ``args``."""
    where = db.describe(dsn)
    if not args.to_partitioned:
        applied = schema.apply_schema(dsn, partitioned=True, ahead_days=args.ahead_days)
        moved = _keep(dsn)
        print(f"schema up to date on {where} ({', '.join(applied)}), partitioned: {_ready(dsn)}")
        if moved:
            print(f"moved {moved:,} rows out of the DEFAULT partition into their own")
        return 0
    done = to_partitioned(
        dsn,
        batch_size=args.batch_size,
        ahead=args.ahead_days,
        keep_plain=not args.drop_old,
        lock_timeout=args.lock_timeout,
        progress=_Shown(sys.stderr),
    )
    if not done.converted:
        verb = "created" if done.created else "already"
        print(f"metrics on {where} {verb} partitioned: {_ready(dsn)}")
        return 0
    rate = done.copied / done.seconds if done.seconds else 0.0
    print(
        f"converted {' and '.join(done.converted)} on {where} to the partitioned layout in "
        f"{done.seconds:.1f} s: {done.copied:,} rows copied in batches ({rate:,.0f} rows/s), "
        f"rows written meanwhile copied as they came; {_ready(dsn)}"
    )
    if done.kept:
        drops = "; ".join(f"DROP TABLE {name}" for name in done.kept)
        print(f"the plain tables are kept as {', '.join(done.kept)}: once satisfied, {drops}")
    return 0
