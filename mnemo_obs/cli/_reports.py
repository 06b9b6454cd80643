"""The subcommands that only read and print: ``summary`` and ``endpoints``.

Both read through :class:`~mnemo_obs.collectors.MetricsCollector` with no
cache, and print JSON or, for ``endpoints``, a terminal table. Without
``-v`` a failing section is the one line ``main`` prints, not also a logged
warning. The commands that change the database or run a server are in
``_commands``.
"""

from __future__ import annotations

import argparse
import json
import logging

from .. import db
from ..errors import DatabaseError


def _cmd_summary(args: argparse.Namespace) -> int:
    from ..collectors import MetricsCollector

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
    from ..collectors import MetricsCollector

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
