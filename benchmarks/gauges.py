"""Gauges: what the sampler writes and costs, and what reading its rows back costs.

- Rows and bytes: one tick of a sampler that holds every lock (Redis, when
  ``redis-server`` is on PATH: a throwaway one; PostgreSQL; the host) and
  writes its writer health, counted in the table; what that makes a day at
  the default interval (60 s); and the table's growth per row (heap and
  indexes) over a day of such rows.
- CPU: the process's CPU time (every thread: the sampler's, its database
  thread's and the writer's) per tick, for a process that holds every lock
  and for one that holds none (writer health, and one try for the locks).
- Reads: a day (``--quick``) or a month of samples written as the sampler
  writes them (one Redis, one database, one host, two processes, every 60
  s, a Redis restart half way), then, interleaved: one gauge's series
  (``GET gauges``), the summary's counters over the window and the fleet.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg2

from mnemo_obs import MetricsWriter, gauges
from mnemo_obs.collectors import fleet
from mnemo_obs.collectors import gauges as gauge_reads
from mnemo_obs.collectors.breakdown import choose_step
from mnemo_obs.rollups import reads
from mnemo_obs.sampler import Sampler

from ._common import Context, interleave, spread, table, truncate_metrics
from .logs import _redis_server

PROCESSES = 2
# One tick's rows of every part, as the sampler writes them (values made up,
# counters growing, Redis restarted half way).
FILL = """
INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata)
SELECT now() - t * interval '60 seconds', g.metric_type, g.metric_name,
       CASE WHEN NOT g.counter THEN random() * 100
            WHEN g.metric_type = 'redis' AND t < %(half)s THEN (%(half)s - t) * 17
            ELSE (2 * %(ticks)s - t) * 17 END,
       jsonb_build_object('host', 'bench-host', 'pid', g.pid, 'service', '',
                          'scope', g.scope, 'interval', 60,
                          'source', CASE WHEN g.metric_type = 'postgres' THEN current_database()
                                         ELSE g.source END)
       || CASE WHEN g.counter AND g.metric_type = 'redis'
               THEN jsonb_build_object('epoch', CASE WHEN t < %(half)s THEN 'b' ELSE 'a' END)
               WHEN g.counter THEN jsonb_build_object('epoch', '')
               WHEN g.scope = 'process'
               THEN jsonb_build_object('started', 1.0 * g.pid, 'last_error', NULL)
               ELSE '{}'::jsonb END
FROM generate_series(0, %(ticks)s - 1) AS t,
     (SELECT * FROM unnest(%(types)s::text[], %(names)s::text[], %(counters)s::bool[],
                           %(scopes)s::text[], %(sources)s::text[], %(pids)s::int[])
        AS x(metric_type, metric_name, counter, scope, source, pid)) AS g
"""


def _kinds() -> list[tuple[str, str, bool, str, str, int]]:
    """Every row of one tick: type, name, counter, scope, source, pid."""
    rows: list[tuple[str, str, bool, str, str, int]] = []
    for metric_type in ("redis", "postgres"):
        source = "redis.bench:6379" if metric_type == "redis" else "bench"
        for name in gauges.NAMES[metric_type]:
            rows.append((metric_type, name, name in gauges.COUNTERS, "cluster", source, 1))
    for name in gauges.SYSTEM_GAUGES:
        rows.append(("system", name, False, "host", "bench-host", 1))
    for pid in range(1, PROCESSES + 1):
        for name in gauges.WRITER_GAUGES + gauges.WRITER_COUNTERS:
            counter = name in gauges.COUNTERS
            rows.append(("system", name, counter, "process", f"bench-host:{pid}", pid))
    return rows


def _fill(cur: Any, ticks: int) -> int:
    kinds = _kinds()
    columns = list(zip(*kinds, strict=True))
    cur.execute(
        FILL,
        {
            "ticks": ticks,
            "half": ticks // 2,
            "types": list(columns[0]),
            "names": list(columns[1]),
            "counters": list(columns[2]),
            "scopes": list(columns[3]),
            "sources": list(columns[4]),
            "pids": list(columns[5]),
        },
    )
    cur.execute("VACUUM ANALYZE metrics")
    return len(kinds) * ticks


def _size(cur: Any) -> int:
    cur.execute("SELECT pg_total_relation_size('metrics')")
    return int(cur.fetchone()[0])


def _one_tick(dsn: str, redis_url: str) -> dict[str, int]:
    """Rows of one tick of a sampler holding every lock, per part."""
    writer = MetricsWriter(dsn)
    sampler = Sampler(writer, redis_url=redis_url, interval=3600)
    try:
        time.sleep(0.2)  # some CPU time since the sampler was made: cpu_percent has a value
        sampler.sample_once()
        writer.flush(30)
    finally:
        sampler.stop(10)
        writer.close(10)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT metric_type, metadata->>'scope', count(*) FROM metrics "
                "WHERE NOT coalesce((metadata->>'final')::bool, false) GROUP BY 1, 2"
            )
            found = {f"{kind} ({scope})": int(n) for kind, scope, n in cur.fetchall()}
    finally:
        conn.close()
    return found


def _cpu_per_tick(dsn: str, redis_url: str, ticks: int, repeats: int) -> dict[str, list[float]]:
    """Process CPU ms per tick, holding every lock and holding none."""
    writers = [MetricsWriter(dsn), MetricsWriter(dsn)]
    leader = Sampler(writers[0], redis_url=redis_url, interval=3600)
    follower = Sampler(writers[1], redis_url=redis_url, interval=3600)
    leader.sample_once()  # takes the locks: the follower gets none

    def per_tick(sampler: Sampler, writer: MetricsWriter) -> Callable[[], float]:
        def run() -> float:
            started = time.process_time()
            for _ in range(ticks):
                sampler.sample_once()
            writer.flush(30)
            return 1000 * (time.process_time() - started) / ticks

        return run

    try:
        return interleave(
            {
                "holding every lock": per_tick(leader, writers[0]),
                "holding none": per_tick(follower, writers[1]),
            },
            repeats,
        )
    finally:
        for sampler in (leader, follower):
            sampler.stop(10)
        for writer in writers:
            writer.close(10)


def _reads(dsn: str, hours: tuple[float, ...], repeats: int) -> list[list[object]]:
    conn = psycopg2.connect(dsn)
    conn.set_session(isolation_level="REPEATABLE READ", readonly=True)

    def timed(read: Callable[[Any, reads.Window], Any], span: float) -> Callable[[], float]:
        def run() -> float:
            with conn.cursor() as cur:
                started = time.perf_counter()
                read(cur, reads.open_window(cur, span))
                elapsed = time.perf_counter() - started
            conn.rollback()
            return 1000 * elapsed

        return run

    variants: dict[str, Callable[[], float]] = {}
    for span in hours:
        variants[f"gauges: redis memory_used_mb, {span:g} h"] = timed(
            lambda cur, window: gauge_reads.series(
                cur, window, "redis", "memory_used_mb", choose_step(window)
            ),
            span,
        )
        variants[f"gauges: writer_enqueued ({PROCESSES} processes), {span:g} h"] = timed(
            lambda cur, window: gauge_reads.series(
                cur, window, "system", "writer_enqueued", choose_step(window)
            ),
            span,
        )
        variants[f"summary: counters over the window, {span:g} h"] = timed(
            lambda cur, window: gauge_reads.window_counters(cur, window, "redis.bench:6379"),
            span,
        )
        variants[f"summary: fleet, {span:g} h"] = timed(fleet.fleet, span)
    try:
        results = interleave(variants, repeats)
    finally:
        conn.close()
    return [[name, spread(values, "{:.1f}")] for name, values in results.items()]


def run(ctx: Context) -> str:
    ticks = 5 if ctx.quick else 30
    repeats = 3 if ctx.quick else 5
    span_days = 1 if ctx.quick else 30
    server = _redis_server()
    redis_url = server[1] if server is not None else ""
    out = ["## Gauges: the sampler's rows, their cost, and their reads\n"]
    try:
        truncate_metrics(ctx.dsn)
        per_tick = _one_tick(ctx.dsn, redis_url)
        cpu = _cpu_per_tick(ctx.dsn, redis_url, ticks, repeats)
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(10)
    rows = [[part, n, f"{n * 1440:,}"] for part, n in sorted(per_tick.items())]
    out.append(
        "One tick of a process that holds every lock"
        + ("" if server else " (redis-server not found: no redis rows)")
        + ", and a day of them at the default interval (60 s):\n"
    )
    out.append(table(["rows of", "per tick", "per day"], rows))
    cluster = sum(n for part, n in per_tick.items() if "cluster" in part)
    host = sum(n for part, n in per_tick.items() if "(host)" in part)
    process = sum(n for part, n in per_tick.items() if "process" in part)
    out.append(
        f"\nA day: 1,440 x ({cluster} + {host} per host + {process} per process) rows; "
        f"one host with 4 processes: {1440 * (cluster + host + 4 * process):,} rows.\n"
    )
    out.append(
        f"\nProcess CPU per tick (all threads), median of {repeats} runs of {ticks} ticks:\n"
    )
    out.append(table(["sampler", "ms per tick"], [[k, spread(v)] for k, v in cpu.items()]))

    conn = psycopg2.connect(ctx.dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            truncate_metrics(ctx.dsn)
            before = _size(cur)
            written = _fill(cur, span_days * 1440)
            grown = _size(cur) - before
    finally:
        conn.close()
    out.append(
        f"\n{span_days} day(s) of samples (one Redis, one database, one host, {PROCESSES} "
        f"processes, every 60 s): {written:,} rows, {grown / 2**20:.0f} MB with the "
        f"indexes, {grown / written:.0f} bytes a row.\n"
    )
    hours = (1.0, 24.0) if ctx.quick else (1.0, 24.0, 720.0)
    out.append(f"\nReads (ms, median (min..max) of {repeats}, interleaved):\n")
    out.append(table(["read", "ms"], _reads(ctx.dsn, hours, repeats)))
    truncate_metrics(ctx.dsn)
    return "\n".join(out)
