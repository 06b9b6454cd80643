"""Print the README's reliability figures: ``python -m tests.reliability_report``.

Runs the scenarios of ``tests/test_reliability.py`` on a throwaway
PostgreSQL cluster and redis-server of its own (about a minute) and prints a
markdown table. ``--requests`` sets the load test's count (default 20,000).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mnemo_obs import apply_schema

from . import reliability_scenarios as scenarios
from .servers import OwnedPostgres, RedisServer, truncate_metrics


def _row(name: str, f: dict[str, Any], fault: str, recovery: str) -> str:
    latency = (
        f"{f['median_before_ms']} / {f['median_during_ms']}"
        if "median_during_ms" in f
        else f"{f['median_ms']}"
    )
    growth = f.get("rss_max_growth_mb", f.get("rss_growth_mb"))
    return (
        f"| {name} | {f['requests']:,} | {f['failed']} | {f['lost']} | {f['written']:,} "
        f"| {f['dropped']:,} | {fault} | {latency} | {growth} | {recovery} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability_report")
    parser.add_argument("--requests", type=int, default=20_000, help="load test requests")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = parser.parse_args(argv)
    pg = OwnedPostgres()
    redis = RedisServer()
    figures: dict[str, dict[str, Any]] = {}
    try:
        apply_schema(pg.dsn)
        runs = [
            ("load", lambda: scenarios.load_nothing_lost(pg.dsn, requests=args.requests)),
            ("outage", lambda: scenarios.database_outage(pg)),
            ("lock", lambda: scenarios.slow_database(pg.dsn)),
            ("redis", lambda: scenarios.redis_outage(pg.dsn, redis)),
            ("sigterm", lambda: scenarios.sigterm_under_load(pg.dsn)),
        ]
        for name, run in runs:
            truncate_metrics(pg.dsn)
            print(f"running {name}...", file=sys.stderr, flush=True)
            figures[name] = run()
    finally:
        redis.close()
        pg.close()
    load, outage, lock = figures["load"], figures["outage"], figures["lock"]
    redis_f, sigterm = figures["redis"], figures["sigterm"]
    print(
        "| scenario | requests | failed | lost | rows written | dropped (counted) | fault held "
        "| median latency ms (before / during) | RSS growth MB | writer resumed after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(_row(f"load, `mnemo-obs serve` ({load['requests_per_s']:,} req/s)", load, "-", "-"))
    print(
        _row(
            f"PostgreSQL stopped (queue {outage['max_queue']:,})",
            outage,
            f"{outage['fault_s']} s",
            f"{outage['recovery_s']} s",
        )
    )
    print(
        _row(
            f"table locked (queue {lock['max_queue']:,})",
            lock,
            f"{lock['fault_s']} s",
            f"{lock['recovery_s']} s",
        )
    )
    print()
    print(
        f"Redis stopped: every summary 200 ({redis_f['summaries']} polled); "
        f"`redis.connected` false {redis_f['noticed_down_s']} s after the stop and true "
        f"{redis_f['noticed_up_s']} s after the restart (2 s summary cache)."
    )
    print(
        f"SIGTERM under load: exit {sigterm['exit_status']}, `{sigterm['stopped_line']}`; "
        f"{sigterm['rows_at_signal']:,} rows in the table at the signal, {sigterm['rows']:,} "
        f"after; {sigterm['answered_without_row']} answered requests without a row, "
        f"{sigterm['rows_without_answer']} rows whose answer the closing server never sent."
    )
    if args.json:
        for figure in figures.values():
            figure.pop("stderr", None)
        print(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
