"""Reads of the sampler's rows: a gauge's history, and counters' increase over a window.

Gauge rows are few (one per gauge and source a sample interval), so these
read the raw rows through ``idx_metrics_type_name_time``: a month of one
gauge sampled every minute is 43,200 rows.

Counters start again when their server does (or its statistics are reset).
Their increase over a window is the sum of the differences between
consecutive samples of one source, where a sample below the one before, or
with another ``epoch`` (Redis's ``run_id``, PostgreSQL's ``stats_reset``),
counts from zero: its own value is what accrued since the reset.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

from .. import gauges
from ..rollups import reads
from ._base import percent, rounded

FINITE = "value < 'Infinity'::float8 AND value > '-Infinity'::float8"
NUMBER = (
    "CASE WHEN jsonb_typeof(metadata->'{key}') = 'number' THEN (metadata->>'{key}')::float8 END"
)
# One gauge's samples in the window, narrow: computed before any sort (OFFSET
# 0 keeps them so), a month of them sorts in memory.
SAMPLES = f"""
SELECT metadata->>'source' AS source, timestamp, value,
       coalesce(metadata->>'epoch', '') AS epoch{{details}}
FROM metrics
WHERE metric_type = %(type)s AND metric_name = %(name)s AND timestamp >= %(start)s
  AND {FINITE}{{source}}
OFFSET 0
"""
DETAILS = (
    ", metadata->>'host' AS host, metadata->>'pid' AS pid, metadata->>'service' AS service, "
    f"{NUMBER.format(key='interval')} AS every"
)
# Each sample with the one before it (of the same source, in ``{window}``).
LAGGED = """
SELECT *, lag(value) OVER w AS prev, lag(epoch) OVER w AS prev_epoch
FROM ({samples}) AS r
WINDOW w AS ({window})
"""
INCREASE = (
    "CASE WHEN prev IS NULL THEN 0 WHEN value >= prev AND epoch = prev_epoch "
    "THEN value - prev ELSE value END"
)
RESET = "prev IS NOT NULL AND (value < prev OR epoch <> prev_epoch)"
POINTS = """
SELECT source, floor(extract(epoch FROM timestamp - %(start)s) / %(step)s)::int,
       count(*), avg(value), min(value), max(value),
       (array_agg(value ORDER BY timestamp DESC))[1], {increase}, {resets},
       max(host), max(pid), max(service), max(every)
FROM ({rows}) AS s
GROUP BY 1, 2 ORDER BY 1, 2
"""
# A counter's increase over the window, from one source's samples.
COUNTER = f"""
SELECT %(type)s, %(name)s, sum({INCREASE}), count(*), count(*) FILTER (WHERE {RESET}),
       min(timestamp), max(timestamp)
FROM ({{rows}}) AS s
"""


def counter_sql(source: str) -> str:
    """:data:`COUNTER` over the samples of one source (an SQL expression)."""
    samples = SAMPLES.format(details="", source=f" AND metadata->>'source' = {source}")
    return COUNTER.format(rows=LAGGED.format(samples=samples, window="ORDER BY timestamp"))


def series(
    cur: Any, window: reads.Window, metric_type: str, metric_name: str, step: int
) -> dict[str, Any]:
    """One series per source, of contiguous points ``step`` seconds long from an aligned start.

    A point holds the samples taken in it: ``value`` (their average for a
    gauge, the last for a counter), ``min``, ``max`` and ``samples``, and
    for a counter its ``increase``. A point without a sample has nulls and
    ``samples`` 0; runs of them between a series' first and last sample are
    listed as its ``gaps`` (an outage, or a sampler that was off).
    """
    counter = gauges.kind(metric_name) == "counter"
    start = datetime.fromtimestamp(math.floor(window.start.timestamp() / step) * step, timezone.utc)
    samples = SAMPLES.format(details=DETAILS, source="")
    if counter:
        lagged = LAGGED.format(samples=samples, window="PARTITION BY source ORDER BY timestamp")
        sql = POINTS.format(
            increase=f"sum({INCREASE})", resets=f"count(*) FILTER (WHERE {RESET})", rows=lagged
        )
    else:  # a level: no order needed, no sort
        sql = POINTS.format(increase="NULL", resets="0", rows=samples)
    cur.execute(sql, {"start": start, "step": step, "type": metric_type, "name": metric_name})
    count = max(1, math.ceil((window.end - start).total_seconds() / step))
    found: dict[str, dict[int, tuple[Any, ...]]] = {}
    for row in cur.fetchall():
        if row[1] < count:
            found.setdefault(row[0] or "", {})[row[1]] = row[2:]
    scope = gauges.scope(metric_type, metric_name)
    out = []
    for source, points in found.items():
        out.append(_series(source, points, start, step, count, counter, scope))
    return {
        "metric_type": metric_type,
        "metric_name": metric_name,
        "kind": "counter" if counter else "gauge",
        "scope": scope,
        "period_hours": window.hours,
        "step_seconds": step,
        "window_start": start.isoformat(),
        "window_end": window.end.isoformat(),
        "series": out,
    }


def _series(
    source: str,
    points: dict[int, tuple[Any, ...]],
    start: datetime,
    step: int,
    count: int,
    counter: bool,
    scope: str,
) -> dict[str, Any]:
    listed = []
    latest = points[max(points)]
    host, pid, service, interval = latest[7:11]
    for index in range(count):
        row = points.get(index)
        point: dict[str, Any] = {"start": (start + timedelta(seconds=index * step)).isoformat()}
        if row is None:
            point.update(value=None, min=None, max=None, samples=0)
            if counter:
                point["increase"] = None
        else:
            samples, avg, low, high, last, increase = row[:6]
            point.update(
                value=rounded(last if counter else avg, 4),
                min=rounded(low, 4),
                max=rounded(high, 4),
                samples=int(samples),
            )
            if counter:
                point["increase"] = rounded(increase, 4)
        listed.append(point)
    entry: dict[str, Any] = {"source": source}
    if scope != gauges.CLUSTER:
        entry["host"] = host
    if scope == gauges.PROCESS:
        entry["pid"] = int(pid) if pid is not None and str(pid).isdigit() else pid
        entry["service"] = service
    entry["interval"] = interval
    entry["samples"] = sum(int(row[0]) for row in points.values())
    if counter:
        entry["resets"] = sum(int(row[6]) for row in points.values())
    entry["gaps"] = gaps(listed, min(points), max(points), step)
    entry["points"] = listed
    return entry


def gaps(points: list[dict[str, Any]], first: int, last: int, step: int) -> list[dict[str, str]]:
    """Runs of points without a sample between the first and the last that have one."""
    runs: list[dict[str, str]] = []
    index = first
    while index <= last:
        if points[index]["samples"]:
            index += 1
            continue
        end = index
        while end <= last and not points[end]["samples"]:
            end += 1
        runs.append({"start": points[index]["start"], "end": points[end]["start"]})
        index = end
    return runs


def window_counters(cur: Any, window: reads.Window, redis_source: str | None) -> dict[str, Any]:
    """The increase of the Redis and PostgreSQL counters over the window, per counter.

    ``{(metric_type, metric_name): {"increase", "samples", "resets", "first", "last"}}``,
    for the Redis server ``redis_source`` (``host:port``; None: no Redis) and
    the database.
    """
    # PostgreSQL's rows are of this database (current_database()); Redis's of
    # the server this collector reports on.
    parts = [
        (counter_sql("current_database()"), "postgres", name)
        for name in ("blks_hit", "blks_read", "xact_commit")
    ]
    if redis_source is not None:
        parts += [
            (counter_sql("%(redis)s"), "redis", name)
            for name in ("keyspace_hits", "keyspace_misses")
        ]
    found = []
    for sql, metric_type, name in parts:
        cur.execute(sql, window.params(redis=redis_source, type=metric_type, name=name))
        found.append(cur.fetchone())
    return {
        (row[0], row[1]): {
            "increase": row[2],
            "samples": row[3],
            "resets": row[4],
            "first": row[5],
            "last": row[6],
        }
        for row in found
        if row[3]
    }


def redis_window(counters: dict[str, Any] | None) -> dict[str, Any]:
    """The Redis section's keys over the window: ``hit_rate_window`` and its counts."""
    hits, misses, detail = _pair(counters, "redis", "keyspace_hits", "keyspace_misses")
    return {
        "hit_rate_window": percent(hits, hits + misses),
        "window_counters": {"keyspace_hits": hits, "keyspace_misses": misses, **detail},
    }


def postgres_window(counters: dict[str, Any] | None) -> dict[str, Any]:
    """The PostgreSQL section's keys over the window: ``cache_hit_ratio_window`` and more."""
    hits, reads_, detail = _pair(counters, "postgres", "blks_hit", "blks_read")
    commits = (counters or {}).get(("postgres", "xact_commit"))
    rate = None
    if commits and commits["samples"] > 1 and commits["last"] > commits["first"]:
        rate = rounded(commits["increase"] / (commits["last"] - commits["first"]).total_seconds())
    return {
        "cache_hit_ratio_window": percent(hits, hits + reads_),
        "commits_per_second_window": rate,
        "window_counters": {"blks_hit": hits, "blks_read": reads_, **detail},
    }


def _pair(
    counters: dict[str, Any] | None, metric_type: str, first: str, second: str
) -> tuple[int, int, dict[str, Any]]:
    """Two counters' increases, and what they were computed from."""
    one = (counters or {}).get((metric_type, first))
    two = (counters or {}).get((metric_type, second))
    if one is None or two is None:
        return 0, 0, {"samples": 0, "resets": 0, "first_sample": None, "last_sample": None}
    detail = {
        "samples": int(min(one["samples"], two["samples"])),
        "resets": int(max(one["resets"], two["resets"])),
        "first_sample": min(one["first"], two["first"]).isoformat(),
        "last_sample": max(one["last"], two["last"]).isoformat(),
    }
    return int(one["increase"]), int(two["increase"]), detail
