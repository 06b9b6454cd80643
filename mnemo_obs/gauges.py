"""The gauges the sampler records: their rows' types and names, which are counters, who takes them.

One row per gauge and sample, in the ``metrics`` table, with ``metric_type``
the section (``redis``, ``postgres``, ``system``) and ``metric_name`` the
gauge. Writer health is a ``system`` row too, its names starting with
``writer_`` and its metadata saying ``"scope": "process"``: ``system`` is
what the table calls the app's own machinery, and ``cache`` stays free for
an app's own cache figures (recorded with ``MetricsWriter.record``).

A *counter* only grows, from the start of its server (or process), so its
history gives rates and ratios over any window from the difference between
two samples; a *gauge* is a level, read as it is.
"""

from __future__ import annotations

# scope -> who samples it: one process in all ("cluster"), one per host, or every process.
CLUSTER, HOST, PROCESS = "cluster", "host", "process"

REDIS_GAUGES = (
    "up",  # 1 when INFO answered, 0 when it did not (the other rows are then missing)
    "memory_used_mb",
    "memory_percent",
    "keys_total",
    "connected_clients",
    "hit_rate",  # since the server started, as in the summary
    "uptime_seconds",
)
REDIS_COUNTERS = ("keyspace_hits", "keyspace_misses", "evicted_keys", "expired_keys")

POSTGRES_GAUGES = (
    "connections_active",
    "connections_idle",
    "connections_total",
    "cache_hit_ratio",  # since the statistics were reset, as in the summary
    "db_size_mb",
    "slow_queries_count",
)
POSTGRES_COUNTERS = ("blks_hit", "blks_read", "xact_commit", "xact_rollback")

SYSTEM_GAUGES = (
    "cpu_percent",  # over the last interval, all cores
    "memory_used_mb",
    "memory_percent",
    "disk_used_gb",
    "disk_percent",
)

WRITER_GAUGES = ("writer_queue_depth", "writer_in_flight", "writer_healthy")
WRITER_COUNTERS = (
    "writer_enqueued",
    "writer_written",
    "writer_rejected",
    "writer_dropped_queue_full",
    "writer_dropped_closed",
    "writer_dropped_after_retries",
)
# The writer row every sample has, that the fleet read looks for first.
WRITER_HEARTBEAT = "writer_enqueued"

NAMES: dict[str, tuple[str, ...]] = {
    "redis": REDIS_GAUGES + REDIS_COUNTERS,
    "postgres": POSTGRES_GAUGES + POSTGRES_COUNTERS,
    "system": SYSTEM_GAUGES + WRITER_GAUGES + WRITER_COUNTERS,
}
COUNTERS = frozenset(REDIS_COUNTERS + POSTGRES_COUNTERS + WRITER_COUNTERS)


def kind(metric_name: str) -> str:
    """``"counter"`` or ``"gauge"``."""
    return "counter" if metric_name in COUNTERS else "gauge"


def scope(metric_type: str, metric_name: str) -> str:
    """Who samples this gauge: ``cluster``, ``host`` or ``process``."""
    if metric_type in ("redis", "postgres"):
        return CLUSTER
    return PROCESS if metric_name.startswith("writer_") else HOST
