"""What the subcommands' options share: the program's name and the value checks.

The ``type=`` functions turn one option's text into its value or raise
``argparse.ArgumentTypeError``, which argparse reports as a usage error
(exit 2). The ``_add_*`` helpers add an option several subcommands take with
the same help. This module imports no other module of the CLI, so each of
them can import it; the package re-exports ``_lock_seconds`` and
``_positive_int`` for ``mnemo_obs.partitions.command``'s ``migrate`` options.
"""

from __future__ import annotations

import argparse
import math

from .. import db, retention

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
    from ..resources import _TOKEN_RE  # the same rule as install(token=)

    if not _TOKEN_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            "a token is letters, digits and -._~+/ (then optional =), with no spaces"
        )
    return text


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


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"must be 1..1000, got {text!r}")
    return int(text)
