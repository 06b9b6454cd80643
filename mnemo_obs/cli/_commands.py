"""The subcommands that act: ``migrate``, ``serve``, ``rollup`` and ``purge``.

Each ``_cmd_*`` takes the parsed arguments and returns the exit status; it
prints its result on stdout and its progress on stderr, and leaves failures
(:class:`~mnemo_obs.errors.MnemoObsError`) to ``main``, which prints them as
one line. The commands that only read and print are in ``_reports``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TextIO

import psycopg2

from .. import db, retention, schema
from ..errors import DatabaseError
from ..partitions import command as partition_command
from ._options import PROG


def _cmd_migrate(args: argparse.Namespace) -> int:
    dsn = db.resolve_dsn(args.dsn)
    if args.partitioned or args.to_partitioned:
        return partition_command.migrate(dsn, args)
    applied = schema.apply_schema(dsn)
    print(f"schema up to date on {db.describe(dsn)} ({', '.join(applied)})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .. import demo_server  # waitress and the demo app load only for this command

    return demo_server.run(
        dsn=args.dsn,
        read_dsn=args.read_dsn,
        redis_url=args.redis_url,
        token=args.token,
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_queue=args.max_queue,
    )


def _cmd_rollup(args: argparse.Namespace) -> int:
    from ..rollups import compact, rebuild

    dsn = db.resolve_dsn(args.dsn)
    if args.rebuild:

        def show(done: object) -> None:
            print(
                f"  {done.chunks_done}/{done.chunks} chunks, {done.rows:,} rows",  # type: ignore[attr-defined]
                file=sys.stderr,
            )

        done = rebuild(dsn, hours=args.hours, progress=show)
        rate = done.rows / done.seconds if done.seconds else 0.0
        print(
            f"rebuilt the rollups of {done.rows:,} rows in {done.seconds:.1f} s "
            f"({rate:,.0f} rows/s)"
        )
    if args.compact:
        conn = db.connect(dsn, application_name="mnemo_obs.rollups")
        try:
            conn.autocommit = False
            passes = compact(conn)
        except psycopg2.Error as exc:
            raise DatabaseError(f"compaction failed: {db.explain(exc, dsn)}") from exc
        finally:
            conn.close()
        if passes is None:
            print(f"{PROG}: skipped: another process is compacting the rollups", file=sys.stderr)
            return 3
        print(f"compacted the rollups: {passes['pending']:,} pending rows moved")
    return 0


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
        lock_timeout=args.lock_timeout,
        rollup_days=args.rollup_days,
    )
    elapsed = time.monotonic() - started
    what = f"{args.type} rows" if args.type else "rows"
    verb = "would delete" if args.dry_run else "deleted"
    print(f"{verb} {count:,} {what} older than {args.days:g} days in {elapsed:.1f} s")
    return 0
