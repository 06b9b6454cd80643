"""The sampler's rows: one per gauge and sample, with who took it, through the process's writer."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from .. import gauges

if TYPE_CHECKING:
    from ..writer import MetricsWriter

# The fields of writer.stats() recorded, and the row each becomes.
WRITER_FIELDS = {name: f"writer_{name}" for name in (
    "enqueued", "written", "rejected", "dropped_queue_full", "dropped_closed",
    "dropped_after_retries", "in_flight", "queue_depth",
)}  # fmt: skip


class Rows:
    """Turn one sample into rows and queue them on ``writer``.

    Every row's metadata says who took it and of what: ``host``, ``pid``,
    ``service`` (the writer's), ``scope`` (``cluster``, ``host`` or
    ``process``), ``source`` (the Redis server, the database, the host, or
    ``host:pid``) and ``interval`` (seconds between this sampler's samples).
    Counter rows add ``epoch`` (Redis's ``run_id``, PostgreSQL's
    ``stats_reset``), which changes when the counters start again.
    """

    def __init__(
        self, writer: MetricsWriter, *, host: str, pid: int, started: float, interval: float
    ) -> None:
        self._writer = writer
        self._host = host
        self._pid = pid
        self._started = started
        self._interval = interval
        self.last_writer_stats: dict[str, Any] | None = None

    def record(
        self,
        metric_type: str,
        scope: str,
        source: str,
        values: dict[str, Any],
        extra: dict[str, Any] | None = None,
        names: tuple[str, ...] | None = None,
    ) -> bool:
        """One row per known, finite value (a missing one is a gap, never a made-up 0).

        False when the writer is closed (nothing queued, nothing counted).
        """
        if self._writer._state == "closed":
            return False
        when = time.time()
        metadata = {
            "host": self._host,
            "pid": self._pid,
            "service": self._writer._service,
            "scope": scope,
            "source": source,
            "interval": self._interval,
            **(extra or {}),
        }
        for name in gauges.NAMES[metric_type] if names is None else names:
            value = values.get(name)
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.record(metric_type, name, value, metadata, when)
        return True

    def writer_health(self, *, final: bool = False) -> bool:
        """This process's ``writer.stats()``; ``final`` marks the last one of a clean stop."""
        stats = self._writer.stats()
        values: dict[str, Any] = {row: stats[field] for field, row in WRITER_FIELDS.items()}
        values["writer_healthy"] = stats["healthy"]
        extra: dict[str, Any] = {
            "started": self._started,  # with host and pid, tells a reused pid apart
            "last_error": stats["last_error"],
            "last_error_at": stats["last_error_at"],
        }
        if final:
            extra["final"] = True
        names = gauges.WRITER_GAUGES + gauges.WRITER_COUNTERS
        source = f"{self._host}:{self._pid}"
        if not self.record("system", gauges.PROCESS, source, values, extra, names):
            return False
        self.last_writer_stats = stats
        return True

    def postgres(self, section: dict[str, Any], counters: dict[str, Any]) -> None:
        """PostgreSQL's gauges and counters (see ``PostgresCollector.read``)."""
        self.record(
            "postgres",
            gauges.CLUSTER,
            str(counters["database"]),
            {**section, **counters},
            {"epoch": counters["stats_reset"] or ""},
        )

    def redis(self, where: str, section: dict[str, Any], counters: dict[str, Any]) -> None:
        """Redis's gauges and counters; only ``up`` = 0 when it did not answer."""
        if not section.get("connected"):
            self.record("redis", gauges.CLUSTER, where, {"up": 0})
            return
        values = {**section, **counters, "up": 1}
        if not counters["keyspace_hits"] + counters["keyspace_misses"]:
            del values["hit_rate"]  # no lookups yet: no rate, rather than the summary's 0
        self.record("redis", gauges.CLUSTER, where, values, {"epoch": counters["run_id"]})

    def system(self, values: dict[str, Any]) -> None:
        """The host's gauges."""
        self.record("system", gauges.HOST, self._host, values, names=gauges.SYSTEM_GAUGES)
