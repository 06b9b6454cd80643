"""Every process's writer health, from the rows of their samplers: the summary's ``writer.fleet``.

Each process's sampler records its ``writer.stats()`` every interval (see
:mod:`mnemo_obs.sampler`). Here the last sample of each process seen in
the window (24 hours at most) says how it is: ``live`` when it reported
within :data:`STALE_INTERVALS` of its intervals (plus :data:`GRACE` for
rows still on their way), ``stopped`` when its last sample was the one a
clean stop records, else ``gone``: it stopped reporting (killed, frozen,
its host lost, or its writer unable to reach the database). The totals
add up the live processes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from .. import gauges
from ..rollups import reads
from ._base import rounded

STALE_INTERVALS = 3
# A sample reaches the table a flush interval (1 s) after it is taken, more
# while the writer retries; and hosts' clocks differ by a little.
GRACE = 5.0
MAX_HOURS = 24
# Listed at most, the most recently seen first; the totals count them all.
MAX_PROCESSES = 200
FIELDS = (
    *(name.removeprefix("writer_") for name in gauges.WRITER_COUNTERS),
    "in_flight",
    "queue_depth",
)

LAST_SAMPLES = """
SELECT DISTINCT ON (metadata->>'source', metadata->>'started') timestamp, metadata
FROM metrics
WHERE metric_type = 'system' AND metric_name = %(beat)s AND timestamp >= %(since)s
ORDER BY metadata->>'source', metadata->>'started', timestamp DESC
"""
THEIR_ROWS = """
SELECT timestamp, metadata->>'source', metadata->'started', metric_name, value
FROM metrics
WHERE metric_type = 'system' AND metric_name = ANY(%(names)s) AND timestamp = ANY(%(stamps)s)
"""


def fleet(cur: Any, window: reads.Window) -> dict[str, Any]:
    """Every process seen since the window started (24 hours at most), and the live ones' totals."""
    since = max(window.start, window.end - timedelta(hours=MAX_HOURS))
    cur.execute(LAST_SAMPLES, {"beat": gauges.WRITER_HEARTBEAT, "since": since})
    last = cur.fetchall()
    values: dict[tuple[Any, ...], dict[str, float]] = defaultdict(dict)
    if last:
        cur.execute(
            THEIR_ROWS,
            {
                "names": list(gauges.WRITER_GAUGES + gauges.WRITER_COUNTERS),
                "stamps": sorted({stamp for stamp, _meta in last}),
            },
        )
        for stamp, source, started, name, value in cur.fetchall():
            values[(stamp, source, started)][name] = value
    processes = []
    for stamp, meta in last:
        key = (stamp, meta.get("source"), meta.get("started"))
        processes.append(_process(stamp, meta, values.get(key, {}), window))
    live = [p for p in processes if p["status"] == "live"]
    totals: dict[str, Any] = {field: sum(p[field] or 0 for p in live) for field in FIELDS}
    totals["unhealthy"] = sum(1 for p in live if p["healthy"] is False)
    processes.sort(key=lambda p: p["last_seen"], reverse=True)
    return {
        "since": since.isoformat(),
        "processes_live": len(live),
        "processes_stopped": sum(1 for p in processes if p["status"] == "stopped"),
        "processes_gone": sum(1 for p in processes if p["status"] == "gone"),
        "totals": totals,
        "processes": processes[:MAX_PROCESSES],
    }


def _process(
    stamp: Any, meta: dict[str, Any], found: dict[str, float], window: reads.Window
) -> dict[str, Any]:
    """One process's entry: who, when last seen, how it is, and its last counters."""
    age = max(0.0, (window.end - stamp).total_seconds())
    interval = meta.get("interval")
    every = float(interval) if isinstance(interval, (int, float)) else 60.0
    if meta.get("final"):
        status = "stopped"
    elif age <= STALE_INTERVALS * every + GRACE:
        status = "live"
    else:
        status = "gone"
    entry: dict[str, Any] = {
        "host": meta.get("host"),
        "pid": meta.get("pid"),
        "service": meta.get("service"),
        "status": status,
        "last_seen": stamp.isoformat(),
        "seconds_since_seen": rounded(age, 1),
        "interval": interval,
    }
    for field in FIELDS:
        value = found.get(f"writer_{field}")
        entry[field] = None if value is None else int(value)
    healthy = found.get("writer_healthy")
    entry["healthy"] = None if healthy is None else healthy >= 1
    entry["last_error"] = meta.get("last_error")
    entry["last_error_at"] = meta.get("last_error_at")
    return entry
