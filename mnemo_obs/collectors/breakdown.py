"""The per-endpoint, time-series and slowest-request views of a window.

Each takes an open cursor and a :class:`~mnemo_obs.rollups.reads.Window`,
reads the rollups (or the raw rows of a small window, exactly) and returns
plain JSON values. :class:`~mnemo_obs.collectors.MetricsCollector` runs
them on its reader thread, with its timeout and cache.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..rollups import reads
from ._base import rounded
from .api import figures

MAX_ENDPOINTS = 1000
MAX_SLOWEST = 100
MAX_POINTS = 1440
# Steps for about 60 to 120 points: the smallest that gives at most 120.
STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
RAW_SERVICE = "coalesce(metadata->>'service', '')"
RAW_METHOD = "coalesce(metadata->>'method', '')"


def endpoints(
    cur: Any, window: reads.Window, *, service: str | None = None, limit: int = 50
) -> dict[str, Any]:
    """Per service, endpoint and method: counts, errors, percentiles; costliest first."""
    chosen = reads.plan(cur, window, level=1, service=service)
    stated = chosen.window
    groups = reads.read(
        cur,
        chosen,
        level=1,
        # Byte order (C) makes grouping by text a memcmp, not a locale's compare.
        keys=('service COLLATE "C"', 'endpoint COLLATE "C"', 'method COLLATE "C"'),
        raw_keys=(RAW_SERVICE, "metric_name", RAW_METHOD),
        service=service,
    )
    rows = []
    for (svc, endpoint, method), group in groups.items():
        entry = {"service": svc, "endpoint": endpoint, "method": method}
        entry.update(figures(group, stated.seconds))
        entry["max_latency_ms"] = rounded(group.high)
        entry["total_time_ms"] = rounded(group.total_ms)
        rows.append(entry)
    rows.sort(key=lambda row: (-(row["total_time_ms"] or 0), row["endpoint"], row["method"]))
    return {
        "period_hours": window.hours,
        **stated.describe(),
        **reads.precision(chosen.exact),
        "endpoints": rows[:limit],
    }


def choose_step(window: reads.Window) -> int:
    """The smallest of :data:`STEPS` that cuts the window into at most 120 points."""
    for step in STEPS:
        if window.hours * 3600 / step <= 120:
            return step
    return STEPS[-1]


def timeseries(
    cur: Any,
    window: reads.Window,
    *,
    step: int | None = None,
    endpoint: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """Contiguous points of ``step`` seconds from the window's start; empty ones have 0 and null."""
    step = step or choose_step(window)
    level = 0 if endpoint is None else 1
    # The points start at a multiple of the step, so each rollup row of a
    # width that divides the step falls in one point: coarse rows, few of them.
    since = window.start.timestamp()
    aligned = datetime.fromtimestamp(math.floor(since / step) * step, timezone.utc)
    window = replace(window, start=aligned)
    chosen = reads.plan(cur, window, level=level, service=service, endpoint=endpoint)
    stated = chosen.window
    start_epoch = stated.start.timestamp()
    # Rollup rows of a width that divides the step, and that the start is
    # aligned to, fall in exactly one point.
    widths = tuple(w for w in reads.sql.WIDTHS if step % w == 0 and start_epoch % w == 0)
    point = f"floor(extract(epoch FROM bucket - %(start)s) / {step})::int"
    raw_point = f"floor(extract(epoch FROM timestamp - %(start)s) / {step})::int"
    groups = reads.read(
        cur,
        chosen,
        level=level,
        keys=(point,),
        raw_keys=(raw_point,),
        widths=widths or (60,),
        service=service,
        endpoint=endpoint,
    )
    count = max(1, math.ceil((stated.end - stated.start).total_seconds() / step))
    points = []
    for index in range(count):
        group = groups.get((index,))
        values = figures(group, step)
        points.append(
            {
                "start": (stated.start + timedelta(seconds=index * step)).isoformat(),
                "request_count": values["request_count"],
                "error_count": values["error_count"],
                "avg_latency_ms": values["avg_latency_ms"],
                "p50_latency_ms": values["p50_latency_ms"],
                "p95_latency_ms": values["p95_latency_ms"],
                "p99_latency_ms": values["p99_latency_ms"],
            }
        )
    return {
        "period_hours": window.hours,
        "step_seconds": step,
        **stated.describe(),
        **reads.precision(chosen.exact),
        "points": points,
    }


def slowest(
    cur: Any,
    window: reads.Window,
    *,
    limit: int = 20,
    endpoint: str | None = None,
    service: str | None = None,
) -> dict[str, Any]:
    """The slowest requests, slowest first, with their trace ids.

    A small window's raw rows give exactly the slowest. Past that, the
    rollups keep the slowest request of each endpoint per bucket (a minute
    to a day: the coarser, the older), so two slow requests of one endpoint
    in the same bucket show as one.
    """
    chosen = reads.plan(cur, window, level=1, service=service, endpoint=endpoint)
    stated = chosen.window
    params = stated.params(service=service, endpoint=endpoint, limit=limit)
    if chosen.exact:
        cur.execute(
            f"SELECT metadata->>'trace_id', {RAW_SERVICE}, metric_name, {RAW_METHOD}, "
            f"{reads.sql.STATUS}, value, timestamp "
            f"FROM metrics WHERE {reads.raw_filter(service, endpoint)} "
            "ORDER BY value DESC LIMIT %(limit)s",
            params,
        )
    else:
        filters = reads._filters(service, endpoint)
        cur.execute(
            "SELECT slowest_trace_id, service, endpoint, method, slowest_status, slowest_ms, "
            f"slowest_at FROM {reads.source(1, reads.sql.WIDTHS, filters)} "
            "WHERE slowest_ms IS NOT NULL ORDER BY slowest_ms DESC LIMIT %(limit)s",
            params,
        )
    requests = [
        {
            "trace_id": trace_id,
            "service": svc,
            "endpoint": name,
            "method": method,
            "status_code": status,
            "latency_ms": rounded(latency),
            "timestamp": at.isoformat() if at is not None else None,
        }
        for trace_id, svc, name, method, status, latency, at in cur.fetchall()
    ]
    return {
        "period_hours": window.hours,
        **stated.describe(),
        "exact": chosen.exact,
        "requests": requests,
    }
