"""The ``mnemo-obs`` argument parser: every subcommand, its options and help.

``make_parser()`` is the one place the command line is described: each
subcommand's parser gets its options, their checks (from ``_options``) and
its handler as the ``handler`` default, which ``main`` calls. Checks that
span several options are ``main``'s, after parsing.
"""

from __future__ import annotations

import argparse

from .. import __version__, db, retention, schema
from ..partitions import command as partition_command
from ._commands import _cmd_migrate, _cmd_purge, _cmd_rollup, _cmd_serve
from ._options import (
    PROG,
    _add_dsn,
    _add_read_dsn,
    _add_redis_url,
    _limit,
    _lock_seconds,
    _max_queue,
    _period_hours,
    _port,
    _positive_days,
    _positive_int,
    _threads,
    _token,
)
from ._reports import _cmd_endpoints, _cmd_summary


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
