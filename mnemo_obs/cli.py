"""The ``mnemo-obs`` command line.

``make_parser()`` builds the parser and ``main(argv)`` runs it and returns
the exit status, so tests call it in-process. Bad input exits 2 through
``parser.error``; a runtime failure (server unreachable, missing rights)
prints one line on stderr and also exits 2. Only the CLI configures logging.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import db, schema
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
