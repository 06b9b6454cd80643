"""The ``mnemo-obs`` command line.

``make_parser()`` builds the parser and ``main(argv)`` runs it and returns
the exit status, so tests call it in-process. Bad input exits 2 through
``parser.error``; a runtime failure (server unreachable, missing rights)
prints one line on stderr and also exits 2. Only the CLI configures logging.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import psycopg2

from . import __version__, db, retention, schema
from .errors import DatabaseError, MnemoObsError, PurgeSkipped
from .partitions import command as partition_command

PROG = "mnemo-obs"


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help=f"PostgreSQL connection string or URL (default: ${db.DSN_ENV})",
    )


def _add_read_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--read-dsn",
        help="a streaming replica to read the requests from; the postgres section still "
        "describes --dsn, and reads go to --dsn while the replica is down or lagging "
        "(default: $MNEMO_OBS_READ_DSN; none when unset)",
    )


def _cmd_migrate(args: argparse.Namespace) -> int:
    dsn = db.resolve_dsn(args.dsn)
    if args.partitioned or args.to_partitioned:
        return partition_command.migrate(dsn, args)
    applied = schema.apply_schema(dsn)
    print(f"schema up to date on {db.describe(dsn)} ({', '.join(applied)})")
    return 0


def _add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        help="Redis the summary reports on, e.g. redis://127.0.0.1:6379/0 "
        "(default: $MNEMO_OBS_REDIS_URL; none when unset)",
    )


def _period_hours(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 720:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 720, got {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be 0..65535, got {text!r}")
    return int(text)


def _threads(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"must be 1..256, got {text!r}")
    return int(text)


def _max_queue(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise argparse.ArgumentTypeError(f"must be 1..10000000 rows, got {text!r}")
    return int(text)


def _token(text: str) -> str:
    from .resources import _TOKEN_RE  # the same rule as install(token=)

    if not _TOKEN_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "a token is letters, digits and -._~+/ (then optional =), with no spaces"
        )
    return text


def _cmd_serve(args: argparse.Namespace) -> int:
    from . import demo_server  # waitress and the demo app load only for this command

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


def _cmd_summary(args: argparse.Namespace) -> int:
    from .collectors import MetricsCollector

    if not args.verbose:
        # A failing section is the one line printed below: not also a warning.
        logging.getLogger("mnemo_obs.collectors").setLevel(logging.CRITICAL)
    with MetricsCollector(
        db.resolve_dsn(args.dsn), read_dsn=args.read_dsn, redis_url=args.redis_url, cache_ttl=0
    ) as c:
        summary = c.collect_all(args.period_hours)
    # The database is what the summary is about: without it, say why in one line.
    for section in ("api", "postgres"):
        if "error" in summary[section]:
            raise DatabaseError(summary[section]["error"])
    if c.redis is not None and not summary["redis"]["connected"]:
        raise DatabaseError(f"cannot reach Redis: {summary['redis']['error']}")
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_endpoints(args: argparse.Namespace) -> int:
    from .collectors import MetricsCollector

    if not args.verbose:
        logging.getLogger("mnemo_obs.collectors").setLevel(logging.CRITICAL)
    with MetricsCollector(
        db.resolve_dsn(args.dsn), read_dsn=args.read_dsn, redis_url="", cache_ttl=0
    ) as collector:
        view = collector.endpoints(args.period_hours, service=args.service, limit=args.limit)
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(_endpoints_table(view))
    return 0


def _endpoints_table(view: dict[str, object]) -> str:
    """The per-endpoint view as a terminal table, where the time goes first."""
    header = ("endpoint", "method", "requests", "req/s", "errors %", "p50", "p95", "p99", "total s")
    rows = [header]
    for entry in view["endpoints"]:  # type: ignore[attr-defined]
        name = (
            entry["endpoint"] if not entry["service"] else f"{entry['service']} {entry['endpoint']}"
        )
        rows.append(
            (
                name,
                entry["method"],
                f"{entry['request_count']:,}",
                f"{entry['requests_per_second']:g}",
                f"{entry['error_rate']:g}",
                *(f"{entry[k]:g}" if entry[k] is not None else "-" for k in _PERCENTILES),
                f"{(entry['total_time_ms'] or 0) / 1000:,.1f}",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            str(cell).ljust(width) if i < 2 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    mark = "exact" if view["percentiles"] == "exact" else f"within {view['relative_error']:.0%}"
    where = f"; read from the {view['reads_from']}" if "reads_from" in view else ""
    lines.append(
        f"{len(rows) - 1} endpoints, {view['window_start']} to {view['window_end']}; "
        f"latencies in ms, percentiles {mark}{where}"
    )
    return "\n".join(lines)


_PERCENTILES = ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms")


def _cmd_rollup(args: argparse.Namespace) -> int:
    from .rollups import compact, rebuild

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


def _lock_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 to 3600, got {text!r}")
    return value


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
        lock_timeout=args.lock_timeout,
        rollup_days=args.rollup_days,
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # -v is also accepted after the command (mnemo-obs purge -v ...).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log debug messages to stderr",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    migrate = commands.add_parser(
        "migrate",
        parents=[common],
        help="create the metrics table, its indexes and comments (idempotent)",
        description="Create the metrics table, its indexes and comments if they are "
        "missing. Safe to run again: a migrated database is left as it is.",
    )
    _add_dsn(migrate)
    partition_command.add_arguments(migrate)  # --partitioned, --to-partitioned
    migrate.set_defaults(handler=_cmd_migrate)

    purge = commands.add_parser(
        "purge",
        parents=[common],
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
    purge.add_argument(
        "--lock-timeout",
        type=_lock_seconds,
        default=retention.LOCK_TIMEOUT,
        metavar="S",
        help="seconds a batch may wait for a lock, and this purge for another one to end, "
        "before giving up (default: %(default)g); a skipped purge exits 3",
    )
    purge.add_argument(
        "--rollup-days",
        type=_positive_days,
        default=retention.ROLLUP_DAYS,
        metavar="N",
        help="also delete the rollups older than N days (default: %(default)g): they are "
        "small, and keep the figures of windows whose rows are gone",
    )
    _add_dsn(purge)
    purge.set_defaults(handler=_cmd_purge)

    serve = commands.add_parser(
        "serve",
        parents=[common],
        help="serve a demo app with mnemo_obs installed (waitress)",
        description="Serve a small demo Falcon app with mnemo_obs installed, applying the "
        "schema first. With no DSN it starts a throwaway PostgreSQL, deleted on exit. "
        "SIGINT/SIGTERM: stop accepting, flush the rows, exit 0.",
    )
    serve.add_argument(
        "--dsn",
        help=f"PostgreSQL connection string or URL (default: ${db.DSN_ENV}, else an "
        "embedded throwaway PostgreSQL)",
    )
    _add_read_dsn(serve)
    _add_redis_url(serve)
    serve.add_argument(
        "--token",
        type=_token,
        help="bearer token for the summary and the live logs (default: $MNEMO_OBS_TOKEN; when "
        "unset the summary is open and the logs get a token made for the run, printed)",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=_port, default=8001, help="port, 0 for any (default: %(default)s)"
    )
    serve.add_argument(
        "--threads", type=_threads, default=8, help="waitress worker threads (default: %(default)s)"
    )
    serve.add_argument(
        "--max-queue",
        type=_max_queue,
        help="rows the writer may hold before it drops (default: install()'s, 10000)",
    )
    serve.set_defaults(handler=_cmd_serve)

    summary = commands.add_parser(
        "summary",
        parents=[common],
        help="print the summary JSON, read straight from PostgreSQL, Redis and this host",
        description="Print the summary (api, redis, postgres, system) as JSON. "
        "An unreachable server gives one line on stderr and exit status 2.",
    )
    _add_dsn(summary)
    _add_read_dsn(summary)
    _add_redis_url(summary)
    summary.add_argument(
        "--period-hours",
        type=_period_hours,
        default=1.0,
        help="the api window in hours, > 0 and <= 720 (default: %(default)s)",
    )
    summary.set_defaults(handler=_cmd_summary)

    endpoints = commands.add_parser(
        "endpoints",
        parents=[common],
        help="print latency, traffic and errors per endpoint, where the time goes first",
        description="Print one line per service, endpoint and method over the window: "
        "requests, requests/s, error rate, p50/p95/p99 and total time, sorted by total time.",
    )
    _add_dsn(endpoints)
    _add_read_dsn(endpoints)
    endpoints.add_argument(
        "--period-hours",
        type=_period_hours,
        default=1.0,
        help="the window in hours, > 0 and <= 720 (default: %(default)s)",
    )
    endpoints.add_argument("--service", help="only this service ('' for rows of no service)")
    endpoints.add_argument(
        "--limit", type=_limit, default=50, metavar="N", help="at most N lines (default: 50)"
    )
    endpoints.add_argument("--json", action="store_true", help="print the JSON instead")
    endpoints.set_defaults(handler=_cmd_endpoints)

    rollup = commands.add_parser(
        "rollup",
        parents=[common],
        help="rebuild the rollups from raw rows, or compact them now",
        description="--rebuild: make the rollups of raw rows written without them (before "
        "the upgrade, or by another tool), in chunks, with progress; idempotent, and never "
        "touching a range whose raw rows are gone. --compact: run the background job's work "
        "once (for setups where no app process runs it). Another process compacting: exit 3.",
    )
    _add_dsn(rollup)
    rollup.add_argument("--rebuild", action="store_true", help="rebuild from raw rows")
    rollup.add_argument(
        "--hours",
        type=_positive_days,
        metavar="N",
        help="with --rebuild: only the last N hours (default: every raw row)",
    )
    rollup.add_argument("--compact", action="store_true", help="compact the rollups now")
    rollup.set_defaults(handler=_cmd_rollup)
    return parser


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"must be 1..1000, got {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mnemo-obs`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command == "rollup" and not (args.rebuild or args.compact):
        parser.error("rollup: say --rebuild or --compact")
    if args.command == "rollup" and args.hours is not None and not args.rebuild:
        parser.error("rollup: --hours goes with --rebuild")
    if args.command == "migrate":
        partition_command.check_arguments(parser, args)
    # Only serve reports its progress; other commands print their result,
    # and a failure as one line.
    quiet = logging.INFO if args.command == "serve" else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except PurgeSkipped as exc:
        print(f"{PROG}: skipped: {exc}", file=sys.stderr)
        return 3
    except MnemoObsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
