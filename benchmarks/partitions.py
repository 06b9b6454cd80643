"""Partitions: the plain layout against the partitioned one, side by side in one run.

Two databases beside the bench database, one per layout, each filled with the
same rows: N api rows a day over the 30 whole days before today (UTC) and
today so far, 20 routes, lognormal latencies, and their rollups (made by the
background job's own pass). Then, one layout against the other, interleaved:

- reads: the summary's api section (``ApiCollector.collect``) and the rollup
  reads (``endpoints``, ``timeseries``) over 1, 24 and 720 hours, cache off;
- ingest: ``MetricsWriter`` (one writer thread, batches of 500, the rollups'
  copy included) appending request rows, timed from the first row to the
  last commit;
- retention: ``purge()`` of the oldest of the 30 days. On the plain table,
  batches of 10,000 deleted by ctid; on the partitioned one, that day's
  partition dropped. Time, WAL written (``pg_current_wal_lsn()`` before and
  after), the table's size (indexes and partitions included) after the
  purge, then the time of the ``VACUUM`` that the delete calls for and the
  size after it. Runs go plain, partitioned, partitioned, plain, ...; before
  each, the day is put back (its rows inserted again, the plain table
  vacuumed, the partition made again) and a CHECKPOINT taken, so every run
  starts alike.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg2
import psycopg2.extensions

from mnemo_obs import MetricsWriter, apply_schema, schema
from mnemo_obs.collectors import ApiCollector, MetricsCollector
from mnemo_obs.partitions import build, layout
from mnemo_obs.retention import purge
from mnemo_obs.rollups import compact

from ._common import Context, interleave, spread, table
from .writer import _rows

LAYOUTS = ("plain", "partitioned")
DAYS = 30
HOURS = (1, 24, 720)
BATCH = 10_000
# N rows a day for the days k = first..last before today (0: today, up to now).
FILL = """
INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata)
SELECT ts, 'api', '/r' || (i %% 20) || '/{id}',
       exp(1.5 + (i %% 20) * 0.1 + 0.8 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())),
       jsonb_build_object('endpoint', '/r' || (i %% 20) || '/{id}', 'method', 'GET',
                          'status_code', CASE WHEN i %% 33 = 0 THEN 500 ELSE 200 END,
                          'trace_id', md5(ts::text || i)::uuid::text)
FROM generate_series(%(first)s, %(last)s) AS k,
     generate_series(0, %(per_day)s - 1) AS i,
     LATERAL (SELECT date_trunc('day', now(), 'UTC') - k * interval '24 hours'
                     + make_interval(secs => (i + 0.5) * 86400.0 / %(per_day)s) AS ts) AS t
WHERE ts < now()
"""
# The table with its indexes; for the partitioned one, every partition's.
SIZE = """
SELECT coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('metrics')),
                pg_total_relation_size('metrics'))
"""


@contextlib.contextmanager
def _database(dsn: str, label: str) -> Iterator[str]:
    """A database beside ``dsn``'s with the schema in the ``label`` layout, dropped at the end."""
    params = psycopg2.extensions.parse_dsn(dsn)
    name = f"{params.get('dbname', 'postgres')}_{label}_layout"
    admin = psycopg2.connect(dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}"')
        params["dbname"] = name
        made = " ".join(f"{key}='{value}'" for key, value in params.items())
        apply_schema(made, partitioned=label == "partitioned")
        yield made
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def _cursor(dsn: str) -> Iterator[Any]:
    conn = psycopg2.connect(dsn, application_name="mnemo_obs.bench")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = 0; SET maintenance_work_mem = '256MB'")
            yield cur
    finally:
        conn.close()


def _fill(dsn: str, per_day: int, partitioned: bool) -> float:
    """The 30 days and today, their rollups; seconds taken (indexes built after the rows)."""
    started = time.perf_counter()
    with _cursor(dsn) as cur:
        if partitioned:  # each day's partition, and the months of the rollups
            today = layout.METRICS.floor(layout.now(cur))
            days = [today - timedelta(days=k) for k in range(DAYS + 1)]
            cur.execute("BEGIN")
            build.create_missing(cur, layout.METRICS, days)
            build.create_missing(cur, layout.ROLLUPS, layout.ROLLUPS.starts(days[-1], today))
            cur.execute("COMMIT")
        cur.execute(
            "DROP INDEX idx_metrics_type_time, idx_metrics_time, idx_metrics_name, "
            "idx_metrics_type_name_time"
        )
        cur.execute("ALTER TABLE metrics DROP CONSTRAINT metrics_pkey")
        cur.execute(FILL, {"per_day": per_day, "first": 0, "last": DAYS})
        key = "id, timestamp" if partitioned else "id"
        cur.execute(f"ALTER TABLE metrics ADD CONSTRAINT metrics_pkey PRIMARY KEY ({key})")
        cur.execute(dict(schema.migration_files())["v5_to_v6_metrics_table.sql"])
        cur.execute(
            "INSERT INTO metrics_rollups_pending SELECT timestamp, metric_type, metric_name, "
            "value, metadata FROM metrics"
        )
    conn = psycopg2.connect(dsn)
    try:
        compact(conn)  # autocommit off: its own transactions
    finally:
        conn.close()
    with _cursor(dsn) as cur:
        cur.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def _timed(read: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        read()
        return (time.perf_counter() - started) * 1000

    return run


def _reads(dsns: dict[str, str], repeats: int) -> list[list[str]]:
    collectors = {
        name: MetricsCollector(dsn, redis_url="", cache_ttl=0, timeout=120)
        for name, dsn in dsns.items()
    }
    apis = {name: ApiCollector(dsn) for name, dsn in dsns.items()}
    rows = []
    try:
        for hours in HOURS:
            for what in ("summary", "endpoints", "timeseries"):
                variants = {}
                for name in LAYOUTS:
                    if what == "summary":
                        read = lambda a=apis[name], h=hours: a.collect(h)  # noqa: E731
                    else:
                        read = lambda c=collectors[name], h=hours, w=what: getattr(c, w)(h)  # noqa: E731
                    variants[name] = _timed(read)
                for variant in variants.values():
                    variant()  # warm-up: connections, caches
                times = interleave(variants, repeats)
                rows.append(_pair_row(f"{what}, {hours} h", times, "{:.1f}"))
    finally:
        for collector in collectors.values():
            collector.close()
        for api in apis.values():
            api.close()
    return rows


def _pair_row(name: str, times: dict[str, list[float]], fmt: str) -> list[str]:
    """A table row: each layout's median (min..max), and the median of paired ratios."""
    ratios = [p / q for p, q in zip(times["partitioned"], times["plain"], strict=True) if q]
    return [
        name,
        spread(times["plain"], fmt),
        spread(times["partitioned"], fmt),
        f"{statistics.median(ratios):.2f}",
    ]


def _ingest(dsns: dict[str, str], count: int, repeats: int) -> list[list[str]]:
    rows = _rows(count)

    def run(dsn: str) -> Callable[[], float]:
        def measured() -> float:
            writer = MetricsWriter(
                dsn, max_queue=count + 1, maintain_rollups=False, maintain_partitions=False
            )
            try:
                writer.record("api", "warm-up", 0.0)  # the thread and its connection, untimed
                writer.flush(timeout=60)
                started = time.perf_counter()
                for row in rows:
                    writer.submit_request(*row)
                if not writer.flush(timeout=600):
                    raise RuntimeError("the writer did not finish")
                elapsed = time.perf_counter() - started
                if writer.stats()["written"] != count + 1:
                    raise RuntimeError(f"rows lost: {writer.stats()}")
                return count / elapsed
            finally:
                writer.close()

        return measured

    times = interleave({name: run(dsn) for name, dsn in dsns.items()}, repeats)
    return [_pair_row(f"MetricsWriter, {count:,} rows a run", times, "{:,.0f}")]


def _retention(dsns: dict[str, str], per_day: int, repeats: int) -> list[list[str]]:
    figures: dict[str, list[tuple[float, ...]]] = {n: [] for n in LAYOUTS}

    def run(name: str) -> Callable[[], float]:
        dsn = dsns[name]

        def measured() -> float:
            with _cursor(dsn) as cur:
                _put_back(cur, name, per_day)
                # The cutoff: 30 seconds into the day after the oldest, so it
                # truncates (to the minute) to that day's start whatever the run takes.
                cur.execute(
                    "SELECT extract(epoch FROM now() - (date_trunc('day', now(), 'UTC') "
                    "- interval '%s days' + interval '30 seconds')) / 86400",
                    (DAYS - 1,),
                )
                (days,) = cur.fetchone()
                cur.execute(SIZE)
                before = float(cur.fetchone()[0])
                wal = _lsn(cur)
                started = time.perf_counter()
                deleted = purge(dsn, older_than_days=float(days), batch_size=BATCH)
                elapsed = time.perf_counter() - started
                wal = _lsn(cur) - wal
                cur.execute(SIZE)
                size = float(cur.fetchone()[0])
                started = time.perf_counter()
                cur.execute("VACUUM metrics")
                vacuum = time.perf_counter() - started
                cur.execute(SIZE)
                after = float(cur.fetchone()[0])
            figures[name].append((elapsed, deleted, wal, before, size, vacuum, after))
            return elapsed

        return measured

    interleave({name: run(name) for name in LAYOUTS}, repeats)
    out = []
    for name in LAYOUTS:
        runs = figures[name]
        mb = 2.0**20
        out.append(
            [
                name,
                f"{runs[0][1]:,}",
                spread([r[0] for r in runs], "{:.3f}"),
                spread([r[2] / mb for r in runs], "{:.1f}"),
                spread([r[3] / mb for r in runs], "{:.0f}"),
                spread([r[4] / mb for r in runs], "{:.0f}"),
                spread([r[5] for r in runs], "{:.2f}"),
                spread([r[6] / mb for r in runs], "{:.0f}"),
            ]
        )
    ratio = [p[0] / q[0] for p, q in zip(figures["partitioned"], figures["plain"], strict=True)]
    out.append(
        ["partitioned ÷ plain (paired)", "", f"{statistics.median(ratio):.3f}", "", "", "", "", ""]
    )
    return out


def _put_back(cur: Any, name: str, per_day: int) -> None:
    """The oldest day as the fill made it (rows again, partition again), then a CHECKPOINT."""
    cur.execute(
        "SELECT count(*) FROM metrics WHERE timestamp < date_trunc('day', now(), 'UTC') "
        "- interval '%s days'",
        (DAYS - 1,),
    )
    if cur.fetchone()[0] == 0:
        if name == "partitioned":
            today = layout.METRICS.floor(layout.now(cur))
            cur.execute("BEGIN")
            build.create_missing(cur, layout.METRICS, [today - timedelta(days=DAYS)])
            cur.execute("COMMIT")
        cur.execute(FILL, {"per_day": per_day, "first": DAYS, "last": DAYS})
        cur.execute("VACUUM ANALYZE metrics")
    # Not a superuser on MNEMO_OBS_BENCH_DSN: noisier, still fair.
    with contextlib.suppress(psycopg2.Error):
        cur.execute("CHECKPOINT")


def _lsn(cur: Any) -> int:
    cur.execute("SELECT pg_current_wal_lsn() - '0/0'")
    return int(cur.fetchone()[0])


def run(ctx: Context) -> str:
    per_day = 2_000 if ctx.quick else 100_000
    count = 5_000 if ctx.quick else 50_000
    repeats = 2 if ctx.quick else 6
    with _database(ctx.dsn, "plain") as plain, _database(ctx.dsn, "partitioned") as partitioned:
        dsns = {"plain": plain, "partitioned": partitioned}
        fills = {name: _fill(dsn, per_day, name == "partitioned") for name, dsn in dsns.items()}
        with _cursor(partitioned) as cur:
            ranges, _default = layout.partitions(cur, layout.METRICS)
        reads = _reads(dsns, 3 if ctx.quick else 7)
        ingest = _ingest(dsns, count, repeats)
        retention = _retention(dsns, per_day, repeats)
    rows_total = per_day * DAYS
    return "\n\n".join(
        [
            "## Partitions: plain table against daily partitions",
            f"The same {rows_total:,}+ api rows in each layout: {per_day:,} a day over the "
            f"{DAYS} days before today and today so far, 20 routes; the partitioned table has "
            f"{len(ranges)} day partitions and DEFAULT. Fill (rows, indexes, rollups): "
            f"{fills['plain']:.0f} s plain, {fills['partitioned']:.0f} s partitioned. "
            "Interleaved runs, median (min..max); the ratio is the median of the runs' "
            "paired ratios.",
            "**Retention**: `purge()` of the oldest day (one of 30), the day put back and a "
            f"CHECKPOINT before each of {repeats} runs; batches of {BATCH:,} on the plain "
            "table, the day's partition dropped on the partitioned one. Sizes: the table, "
            "its indexes and partitions. Then a VACUUM of the table: the plain table's "
            "deleted rows need one before their space can be used again (it is not given "
            "back to the system); the partitioned table has nothing left to clean.",
            table(
                [
                    "layout",
                    "rows deleted",
                    "purge s",
                    "WAL MB",
                    "size before, MB",
                    "size after, MB",
                    "VACUUM after, s",
                    "size after VACUUM, MB",
                ],
                retention,
            ),
            f"**Ingest**: rows/s, {repeats} runs each.",
            table(["", "plain", "partitioned", "partitioned ÷ plain"], ingest),
            "**Reads**, ms, cache off.",
            table(["read", "plain", "partitioned", "partitioned ÷ plain"], reads),
        ]
    )
