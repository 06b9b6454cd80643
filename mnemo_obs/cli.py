"""The ``mnemo-obs`` command line.

``make_parser()`` builds the parser and ``main(argv)`` runs it and returns
the exit status, so tests call it in-process. Bad input exits 2 through
``parser.error``; a runtime failure (server unreachable, missing rights)
prints one line on stderr and also exits 2. Only the CLI configures logging.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from . import db, retention, schema
from .errors import MnemoObsError

PROG = "mnemo-obs"


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help=f"PostgreSQL connection string or URL (default: ${db.DSN_ENV})",
    )


def _cmd_migrate(args: argparse.Namespace) -> int:
    dsn = db.resolve_dsn(args.dsn)
    applied = schema.apply_schema(dsn)
    print(f"schema up to date on {db.describe(dsn)} ({', '.join(applied)})")
    return 0


def _positive_days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not math.isfinite(days) or not 0 < days <= retention.MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of days (at most {retention.MAX_DAYS}), got {text!r}"
        )
    return days


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


class _Progress:
    """Print rows deleted so far and the rate on ``stream``, at most once per ``every`` s."""

    def __init__(
        self,
        stream: TextIO,
        *,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream, self._every, self._clock = stream, every, clock
        self._started = self._last = clock()

    def __call__(self, deleted: int) -> None:
        now = self._clock()
        if now - self._last < self._every:
            return
        self._last = now
        rate = deleted / (now - self._started) if now > self._started else 0.0
        print(f"  {deleted:,} rows deleted so far ({rate:,.0f} rows/s)", file=self._stream)


def _cmd_purge(args: argparse.Namespace) -> int:
    dsn = db.resolve_dsn(args.dsn)
    started = time.monotonic()
    count = retention.purge(
        dsn,
        older_than_days=args.days,
        batch_size=args.batch_size,
        metric_type=args.type,
        dry_run=args.dry_run,
        progress=_Progress(sys.stderr),
    )
    elapsed = time.monotonic() - started
    what = f"{args.type} rows" if args.type else "rows"
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count:,} {what} older than {args.days:g} days in {elapsed:.1f} s")
    return 0


def make_parser() -> argparse.ArgumentParser:
    """Build the ``mnemo-obs`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Request metrics, trace ids and a health summary for WSGI apps, "
        "stored in PostgreSQL.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    migrate = commands.add_parser(
        "migrate",
        help="create the metrics table, its indexes and comments (idempotent)",
        description="Create the metrics table, its indexes and comments if they are "
        "missing. Safe to run again: a migrated database is left as it is.",
    )
    _add_dsn(migrate)
    migrate.set_defaults(handler=_cmd_migrate)

    purge = commands.add_parser(
        "purge",
        help="delete metrics older than --days, in short batches",
        description="Delete the metrics rows older than --days, in batches that are each "
        "their own short transaction, so the app keeps writing meanwhile. Run it from cron.",
    )
    purge.add_argument(
        "--days",
        type=_positive_days,
        required=True,
        help="delete rows older than this many days (a positive number, e.g. 30)",
    )
    purge.add_argument(
        "--type",
        choices=schema.METRIC_TYPES,
        help="only rows of this metric type (default: all types)",
    )
    purge.add_argument(
        "--batch-size",
        type=_positive_int,
        default=10_000,
        metavar="N",
        help="rows per batch, each its own transaction (default: 10000)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="count the rows that would go, delete nothing"
    )
    _add_dsn(purge)
    purge.set_defaults(handler=_cmd_purge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mnemo-obs`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except MnemoObsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
