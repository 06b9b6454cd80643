"""The ``mnemo-obs`` command line.

``make_parser()`` builds the parser and ``main(argv)`` runs it and returns
the exit status, so tests call it in-process. Bad input exits 2 through
``parser.error``; a runtime failure (server unreachable, missing rights)
prints one line on stderr and also exits 2. Only the CLI configures logging.

One module per concern: ``_parser`` describes the command line,
``_options`` holds the option checks it shares, ``_commands`` the
subcommands that act (migrate, serve, rollup, purge) and ``_reports`` those
that only read and print (summary, endpoints). This module runs them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..errors import MnemoObsError, PurgeSkipped
from ..partitions import command as partition_command
from ._commands import _Progress as _Progress  # re-exported for the tests
from ._options import PROG
from ._parser import make_parser

__all__ = ["PROG", "main", "make_parser"]


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
