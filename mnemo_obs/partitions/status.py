"""The summary's view of the layout: which one, how far ahead partitions are ready, DEFAULT rows."""

from __future__ import annotations

from typing import Any

from .layout import METRICS, ahead_days, now, partitions, relkind


def status(cur: Any) -> dict[str, Any]:
    """``{"layout": ...}``, and for the partitioned layout what a dashboard should watch.

    ``ahead_days``: whole days after the current one whose partitions are
    ready (None when the current day's is missing: its rows go to DEFAULT).
    ``default_rows``: rows in the DEFAULT partition (from PostgreSQL's
    statistics), which the background job moves out when it makes their
    partition.
    """
    kind = relkind(cur, METRICS.table)
    if kind != "p":
        return {"layout": None if kind is None else "plain"}
    ranges, default = partitions(cur, METRICS)
    today = METRICS.floor(now(cur))
    covered = today
    for part in ranges:
        if part.start is not None and part.end is not None and part.start <= covered < part.end:
            covered = part.end
    ready = None if covered == today else (covered - today).days - 1
    rows = None
    if default is not None:
        # PostgreSQL's statistics, not a count: a count would wait behind a
        # LOCK TABLE metrics, and the postgres section must not. They follow
        # every commit within a second or so.
        cur.execute(
            "SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = to_regclass(%s)",
            (default,),
        )
        row = cur.fetchone()
        rows = None if row is None else max(int(row[0]), 0)
    return {
        "layout": "partitioned",
        "partitions": len(ranges),
        "ahead_days": ready,
        "ahead_days_target": ahead_days(cur),
        "default_rows": rows,
    }
