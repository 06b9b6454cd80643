"""Latency percentiles and error rates of recent requests: the summary's api section."""

from __future__ import annotations

from typing import Any

from ..rollups import reads
from ._base import check_positive, rounded
from ._pg import PgConnections

# Ten years would pass too, but a month is the retention the reference
# system plans for and keeps a careless dashboard from a needless read.
MAX_PERIOD_HOURS = 720.0


def figures(group: reads.Group | None, seconds: float) -> dict[str, Any]:
    """The latency and error keys of one group of requests (None: none in the window)."""
    if group is None:
        group = reads.Group()
    p50, p95, p99 = group.percentiles() if group.count else (None, None, None)
    count = group.count
    return {
        "avg_latency_ms": rounded(group.total_ms / count) if count else None,
        "p50_latency_ms": rounded(p50),
        "p95_latency_ms": rounded(p95),
        "p99_latency_ms": rounded(p99),
        "request_count": count,
        "requests_per_second": rounded(count / seconds),
        "error_count": group.errors,
        "error_rate": rounded(100.0 * group.errors / count) if count else 0.0,
    }


class ApiCollector:
    """Request statistics over the api rows of the last ``period_hours``.

    Args:
        source: a DSN (we open and own a small pool; call :meth:`close`) or
            a :class:`PgConnections` shared with other collectors.

    ``collect()`` returns ``avg_latency_ms``, ``p50_latency_ms``,
    ``p95_latency_ms``, ``p99_latency_ms`` (null for an empty window),
    ``request_count``, ``requests_per_second`` (count over the window in
    seconds), ``error_count`` (status >= 400) and ``error_rate`` (percent of
    requests); ``percentiles`` (``"exact"`` or ``"approximate"``) with
    ``relative_error``; ``window_start`` and ``window_end``; and
    ``services``, the service names seen (``""``: none given); and
    ``last_minute``: ``requests_per_second`` over the last whole minute and
    its ``start``. Floats are
    rounded to 2 decimals. The counts are exact for the window stated, at
    any table size: they come from the rollups.
    """

    def __init__(self, source: str | PgConnections) -> None:
        self._owned = not isinstance(source, PgConnections)
        self._connections = source if isinstance(source, PgConnections) else PgConnections(source)

    def collect(self, period_hours: float = 1.0, service: str | None = None) -> dict[str, Any]:
        """Aggregate the window; raises :class:`DatabaseError` when PostgreSQL fails.

        ``service`` selects one service's requests (``""``: those with none).
        """
        hours = check_positive("period_hours", period_hours, maximum=MAX_PERIOD_HOURS)
        with self._connections.connection() as conn, conn.cursor() as cur:
            return self.read(cur, hours, service)

    @staticmethod
    def read(cur: Any, period_hours: float = 1.0, service: str | None = None) -> dict[str, Any]:
        """:meth:`collect` on an open cursor, in a REPEATABLE READ transaction of the caller's."""
        hours = check_positive("period_hours", period_hours, maximum=MAX_PERIOD_HOURS)
        window = reads.open_window(cur, hours)
        chosen = reads.plan(cur, window, level=0, service=service)
        groups = reads.read(cur, chosen, level=0, service=service)
        services = reads.services(cur, window, chosen.exact)
        last = reads.last_minute(cur, window, service)
        return {
            **figures(groups.get(()), chosen.window.seconds),
            **reads.precision(chosen.exact),
            **chosen.window.describe(),
            "services": services,
            "last_minute": last,
        }

    def close(self) -> None:
        """Close the pool this collector opened from a DSN (a shared one is left open)."""
        if self._owned:
            self._connections.close()
