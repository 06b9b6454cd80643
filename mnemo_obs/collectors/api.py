"""Latency percentiles and error rates of recent requests, from the ``metrics`` table."""

from __future__ import annotations

from typing import Any

from ._base import check_positive, rounded
from ._pg import PgConnections

# One statement, one pass: the range condition on the timestamp is served by
# idx_metrics_time or idx_metrics_type_time (the planner has preferred the
# smaller idx_metrics_time in every mix of types we tried), and the three
# percentiles share one sort (percentile_cont over an array of fractions). The status test compares
# jsonb values, which never raises: a text cast (::int) would be faster by
# ~15 ms per 100k rows, but one malformed row would then break every summary.
# jsonb orders numbers below booleans, arrays and objects and above strings,
# so a JSON number >= 400 counts and a string such as "500" does not.
# Non-finite values (written by other tools: the writer refuses them) are
# left out, or one NaN would make the average NaN: PostgreSQL orders NaN
# above infinity, so "< 'Infinity'" excludes both.
QUERY = """
SELECT count(*),
       avg(value),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value),
       count(*) FILTER (WHERE metadata->'status_code' >= '400'::jsonb)
FROM metrics
WHERE metric_type = 'api'
  AND timestamp >= now() - %(seconds)s * interval '1 second'
  AND value < 'Infinity'::float8 AND value > '-Infinity'::float8
"""

# Ten years would pass too, but a month is the retention the reference plans for
# and keeps a careless dashboard from sorting the whole table.
MAX_PERIOD_HOURS = 720.0


class ApiCollector:
    """Request statistics over the api rows of the last ``period_hours``.

    Args:
        source: a DSN (we open and own a small pool; call :meth:`close`) or
            a :class:`PgConnections` shared with other collectors.

    ``collect()`` returns ``avg_latency_ms``, ``p50_latency_ms``,
    ``p95_latency_ms``, ``p99_latency_ms`` (continuous percentiles, null for
    an empty window), ``request_count``, ``requests_per_second`` (count over
    the period in seconds), ``error_count`` (``metadata.status_code``, a
    JSON number, >= 400) and ``error_rate`` (percent of requests). Floats are rounded to
    2 decimals. Rows stamped after the database's ``now()`` (a client clock
    slightly ahead) still count.
    """

    def __init__(self, source: str | PgConnections) -> None:
        self._owned = not isinstance(source, PgConnections)
        self._connections = source if isinstance(source, PgConnections) else PgConnections(source)

    def collect(self, period_hours: float = 1.0) -> dict[str, Any]:
        """Aggregate the window; raises :class:`DatabaseError` when PostgreSQL fails."""
        hours = check_positive("period_hours", period_hours, maximum=MAX_PERIOD_HOURS)
        seconds = hours * 3600.0
        with self._connections.connection() as conn, conn.cursor() as cur:
            cur.execute(QUERY, {"seconds": seconds})
            count, avg, percentiles, errors = cur.fetchone()
        p50, p95, p99 = percentiles if percentiles is not None else (None, None, None)
        return {
            "avg_latency_ms": rounded(avg),
            "p50_latency_ms": rounded(p50),
            "p95_latency_ms": rounded(p95),
            "p99_latency_ms": rounded(p99),
            "request_count": count,
            "requests_per_second": rounded(count / seconds),
            "error_count": errors,
            "error_rate": rounded(100.0 * errors / count) if count else 0.0,
        }

    def close(self) -> None:
        """Close the pool this collector opened from a DSN (a shared one is left open)."""
        if self._owned:
            self._connections.close()
