"""Reads at scale: the summary and the read routes over a day of traffic and 30 days of rollups.

The data: 10M api rows (100 req/s for about 28 hours, 20 routes, lognormal
latencies, about 3 % errors; the same as ``scale_fill.sql`` makes), their
rollups made by ``rebuild()`` and rolled up by the background job's pass,
and 28 more days of hour, six-hour and day rollups copied from that day's
(the rollups a month of such traffic leaves; its raw rows would be 260M). Then, with the
cache off, interleaved, each read at 1, 24 and 720 hours:

- the summary's api section (``ApiCollector.collect``), as it was before
  rollups (one ``percentile_cont`` over the raw rows of the window) and now;
- ``endpoints``, ``timeseries`` and ``slowest``.

Also: the rate of ``rollup --rebuild``, how long the exact path
(``percentile_cont`` over the raw rows) takes at a few window sizes (what
sets the threshold below which reads are exact), and how far the
approximate percentiles are from ``percentile_cont`` on the same rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg2

from mnemo_obs.collectors import ApiCollector, MetricsCollector
from mnemo_obs.rollups import compact, histogram, reads, rebuild

from ._common import Context, interleave, spread, table, truncate_metrics

HOURS = (1, 24, 720)
TARGET_MS = 100.0
# The read before rollups: every raw row of the window, sorted once.
RAW_SUMMARY = """
SELECT count(*), avg(value),
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value),
       count(*) FILTER (WHERE metadata->'status_code' >= '400'::jsonb)
FROM metrics
WHERE metric_type = 'api' AND timestamp >= now() - %(seconds)s * interval '1 second'
"""
FILL = """
INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata)
SELECT now() - make_interval(secs => i * 0.01), 'api', '/r' || (i %% 20) || '/{id}',
       exp(1.5 + (i %% 20) * 0.1 + 0.8 * sqrt(-2 * ln(random())) * cos(2 * pi() * random())),
       jsonb_build_object('endpoint', '/r' || (i %% 20) || '/{id}', 'method', 'GET',
                          'status_code', CASE WHEN i %% 33 = 0 THEN 500
                                              WHEN i %% 41 = 0 THEN 404 ELSE 200 END,
                          'trace_id', md5(i::text)::uuid::text)
FROM generate_series(1, %(rows)s) AS i
"""


def _execute(dsn: str, *statements: str, params: dict[str, Any] | None = None) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0")
            for statement in statements:
                cur.execute(statement, params if "%(" in statement else None)
    finally:
        conn.close()


def _fill(dsn: str, rows: int, days: int) -> dict[str, float]:
    """The raw rows, their rollups, and ``days`` of older rollups; timings."""
    truncate_metrics(dsn)
    started = time.perf_counter()
    _execute(
        dsn,
        "SET maintenance_work_mem = '512MB'",
        "DROP INDEX IF EXISTS idx_metrics_type_time, idx_metrics_time, idx_metrics_name, "
        "idx_metrics_type_name_time",
        "ALTER TABLE metrics DROP CONSTRAINT IF EXISTS metrics_pkey",
        FILL,
        "ALTER TABLE metrics ADD PRIMARY KEY (id)",
        "CREATE INDEX idx_metrics_type_time ON metrics (metric_type, timestamp DESC)",
        "CREATE INDEX idx_metrics_time ON metrics (timestamp DESC)",
        "CREATE INDEX idx_metrics_name ON metrics (metric_name)",
        "CREATE INDEX idx_metrics_type_name_time ON metrics "
        "(metric_type, metric_name, timestamp DESC)",
        "VACUUM ANALYZE metrics",
        params={"rows": rows},
    )
    filled = time.perf_counter() - started
    done = rebuild(dsn)
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = False
        compact(conn)
    finally:
        conn.close()
    compacted = time.perf_counter() - started
    # Older days: the finished hours and days of the filled ones, moved back.
    _execute(
        dsn,
        "INSERT INTO metrics_rollups SELECT width, bucket - k * interval '1 day', level, "
        "service, endpoint, method, status_code, count, error_count, sum_ms, min_ms, max_ms, "
        "bins, counts, slowest_ms, slowest_trace_id, slowest_at - k * interval '1 day', "
        "slowest_status, true FROM metrics_rollups, generate_series(2, %(days)s) AS k "
        "WHERE width IN (3600, 21600) AND bucket < date_trunc('day', now(), 'UTC')",
        "INSERT INTO metrics_rollups SELECT width, bucket - k * interval '1 day', level, "
        "service, endpoint, method, status_code, count, error_count, sum_ms, min_ms, max_ms, "
        "bins, counts, slowest_ms, slowest_trace_id, slowest_at - k * interval '1 day', "
        "slowest_status, false FROM metrics_rollups, generate_series(2, %(days)s) AS k "
        "WHERE width = 86400 AND bucket < date_trunc('day', now(), 'UTC') "
        "AND bucket >= date_trunc('day', now(), 'UTC') - interval '1 day'",
        "VACUUM ANALYZE metrics_rollups",
        params={"days": days},
    )
    return {
        "fill_s": filled,
        "rebuild_rows": done.rows,
        "rebuild_s": done.seconds,
        "compact_s": compacted,
    }


def _timed(read: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        read()
        return (time.perf_counter() - started) * 1000

    return run


def _raw_summary(dsn: str, hours: float) -> Callable[[], object]:
    def read() -> object:
        conn = psycopg2.connect(dsn)
        try:
            with conn.cursor() as cur:
                cur.execute("SET statement_timeout = '60s'")
                cur.execute(RAW_SUMMARY, {"seconds": hours * 3600})
                return cur.fetchone()
        finally:
            conn.close()

    return read


def _exact_path_ms(dsn: str, repeats: int) -> list[list[object]]:
    """The exact read (percentile_cont over raw rows) at a few window sizes."""
    rows = []
    for size in (10_000, 50_000, 100_000):
        hours = size / 100 / 3600  # the fill's 100 rows a second
        times = interleave({"exact": _timed(_raw_summary(dsn, hours))}, repeats)["exact"]
        rows.append([f"{size:,}", spread(times, "{:.1f}")])
    return rows


def _accuracy(dsn: str) -> list[list[object]]:
    """Approximate percentiles of the day against percentile_cont on the same rows."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value) "
                "FROM metrics WHERE metric_type = 'api' "
                "AND timestamp >= date_trunc('minute', now() - interval '24 hours', 'UTC')"
            )
            (exact,) = cur.fetchone()
    finally:
        conn.close()
    with MetricsCollector(dsn, redis_url="", cache_ttl=0) as collector:
        api = collector.collect_all(24)["api"]
    return [
        [key, f"{cont:.3f}", f"{api[key]:.2f}", f"{abs(api[key] - cont) / cont:.2%}"]
        for key, cont in zip(
            ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms"), exact, strict=True
        )
    ]


def run(ctx: Context) -> str:
    rows, days = (200_000, 3) if ctx.quick else (10_000_000, 30)
    repeats = 3 if ctx.quick else 7
    fill = _fill(ctx.dsn, rows, days)
    collector = MetricsCollector(ctx.dsn, redis_url="", cache_ttl=0, timeout=120)
    api = ApiCollector(ctx.dsn)
    variants: dict[str, Callable[[], float]] = {}
    for hours in HOURS:
        if hours <= 24:  # past that the raw read runs past any timeout
            variants[f"summary before rollups, {hours} h"] = _timed(_raw_summary(ctx.dsn, hours))
        variants[f"summary, {hours} h"] = _timed(lambda h=hours: api.collect(h))
        variants[f"endpoints, {hours} h"] = _timed(lambda h=hours: collector.endpoints(h))
        variants[f"timeseries, {hours} h"] = _timed(lambda h=hours: collector.timeseries(h))
        variants[f"slowest, {hours} h"] = _timed(lambda h=hours: collector.slowest(h))
    try:
        for variant in variants.values():  # warm-up: connections, caches
            variant()
        results = interleave(variants, repeats)
        exact_rows = _exact_path_ms(ctx.dsn, repeats)
        accuracy = _accuracy(ctx.dsn)
    finally:
        collector.close()
        api.close()
    body = [
        [name, spread(times, "{:.1f}"), "yes" if statistics.median(times) < TARGET_MS else "no"]
        for name, times in results.items()
    ]
    truncate_metrics(ctx.dsn)
    rate = fill["rebuild_rows"] / fill["rebuild_s"] if fill["rebuild_s"] else 0.0
    return "\n\n".join(
        [
            "## Reads at scale: rollups",
            f"{rows:,} api rows over {rows / 100 / 3600:.1f} hours (100 a second, 20 routes), "
            f"their rollups, and {days} days of older rollups. Cache off; "
            f"{repeats} interleaved runs, median (min..max) in ms. Exact percentiles up to "
            f"{reads.EXACT_MAX_ROWS:,} rows in the window, else within "
            f"{histogram.RELATIVE_ERROR:.0%}.",
            table(["read", "ms", f"under {TARGET_MS:.0f} ms"], body),
            f"Fill: {fill['fill_s']:.0f} s. `rollup --rebuild`: {fill['rebuild_rows']:,} rows in "
            f"{fill['rebuild_s']:.1f} s, {rate:,.0f} rows/s; then one pass of the background "
            f"job (rolling {rows / 100 / 3600:.0f} hours of minutes up): "
            f"{fill['compact_s']:.1f} s.",
            "The exact path (percentile_cont over the raw rows of the window), by rows in "
            "the window:",
            table(["rows", "ms"], exact_rows),
            "Approximate percentiles of the last 24 hours against percentile_cont on the "
            "same rows:",
            table(["", "percentile_cont", "from the rollups", "relative difference"], accuracy),
        ]
    )
