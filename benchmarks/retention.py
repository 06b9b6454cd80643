"""Retention: purge() in short batches vs one plain DELETE, on identical fresh tables.

Each repetition refills ``metrics`` with N old rows (31 to 60 days old) and
N recent ones (0 to 29 days), oldest first as a live table grows, from one
template table: insert without indexes, build the primary key and the four
indexes, VACUUM ANALYZE, CHECKPOINT. Then one variant deletes the N old
rows. Variants run interleaved: A B C D B A (the first two twice).

- plain DELETE: one statement, one transaction for all N rows.
- purge(): mnemo_obs.retention.purge, batches of 10,000 by ctid.
- ctid, no row locks: purge()'s batches without ``FOR UPDATE SKIP
  LOCKED``, to show what letting two purges share the work costs.
- batches by id: purge()'s batches, deleted by ``id IN (...)`` instead of
  by ctid, to show what the TID scan saves.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import psycopg2

from mnemo_obs import retention, schema

from ._common import Context, interleave, spread, table

BATCH = 10_000
_TEMPLATE = "bench_retention_template"

_ID_BATCH_SQL = """
WITH deleted AS (
    DELETE FROM metrics WHERE id IN (
        SELECT id FROM metrics WHERE timestamp < %(cutoff)s AND timestamp >= %(after)s
        ORDER BY timestamp LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING timestamp
)
SELECT count(*), max(timestamp) FROM deleted
"""
_NO_LOCK_SQL = retention._purge._BATCH_SQL.format(table="metrics", type_filter="").replace(
    "FOR UPDATE SKIP LOCKED", ""
)


def _make_template(cur: psycopg2.extensions.cursor, n: int) -> None:
    # Ages, not timestamps, so each refill is relative to its own now().
    cur.execute(
        f"""DROP TABLE IF EXISTS {_TEMPLATE};
        CREATE UNLOGGED TABLE {_TEMPLATE} AS
        SELECT gen_random_uuid() AS id,
               CASE WHEN g < %(n)s THEN interval '60 days' - g * (interval '29 days' / %(n)s)
                    ELSE interval '29 days' - (g - %(n)s) * (interval '29 days' / %(n)s) END AS age,
               (ARRAY['api', 'api', 'api', 'redis', 'postgres', 'system', 'cache'])[1 + g %% 7]
                   AS metric_type,
               '/route/' || g %% 23 AS metric_name,
               random() * 100 AS value,
               jsonb_build_object('endpoint', '/route/' || g %% 23, 'method', 'GET',
                                  'status_code', 200, 'trace_id', md5(g::text)) AS metadata
        FROM generate_series(0, 2 * %(n)s - 1) AS g""",
        {"n": n},
    )


def _refill(cur: psycopg2.extensions.cursor) -> None:
    """Fresh table and indexes, built the same way before every variant."""
    cur.execute("TRUNCATE metrics, metrics_rollups")
    for index in ("idx_metrics_type_time", "idx_metrics_time", "idx_metrics_name"):
        cur.execute(f"DROP INDEX IF EXISTS {index}")
    cur.execute("DROP INDEX IF EXISTS idx_metrics_type_name_time")
    cur.execute("ALTER TABLE metrics DROP CONSTRAINT IF EXISTS metrics_pkey")
    cur.execute(
        f"""INSERT INTO metrics (id, timestamp, metric_type, metric_name, value, metadata)
        SELECT id, now() - age, metric_type, metric_name, value, metadata FROM {_TEMPLATE}"""
    )
    _restore_indexes(cur)
    cur.execute("VACUUM ANALYZE metrics")
    # Start each variant with no dirty buffers. Not a superuser on
    # MNEMO_OBS_BENCH_DSN: noisier, still fair.
    with contextlib.suppress(psycopg2.Error):
        cur.execute("CHECKPOINT")


def _restore_indexes(cur: psycopg2.extensions.cursor) -> None:
    cur.execute("SET maintenance_work_mem = '256MB'")
    cur.execute(
        "DO $$ BEGIN ALTER TABLE metrics ADD PRIMARY KEY (id); "
        "EXCEPTION WHEN invalid_table_definition THEN NULL; END $$"
    )
    for _name, sql in schema.migration_files():
        cur.execute(sql)


def _wal_lsn(cur: psycopg2.extensions.cursor) -> int:
    cur.execute("SELECT pg_current_wal_lsn() - '0/0'")
    return int(cur.fetchone()[0])


def _batches(sql: str, conn: psycopg2.extensions.connection, tick: Callable[[int], None]) -> int:
    """purge()'s loop, with another statement for each batch."""
    with conn.cursor() as cur:
        cur.execute("SELECT now() - interval '30 days'")
        params = {"cutoff": cur.fetchone()[0], "after": "-infinity", "limit": BATCH}
        total = 0
        while True:
            cur.execute(sql, params)
            count, params["after"] = cur.fetchone()
            total += count
            tick(total)
            if count < BATCH:
                return total


def run(ctx: Context) -> str:
    n = 20_000 if ctx.quick else 1_000_000
    conn = psycopg2.connect(ctx.dsn, application_name="mnemo_obs.bench")
    conn.autocommit = True
    cur = conn.cursor()
    results: dict[str, list[tuple[float, int, float, int]]] = {}

    def measure(name: str, delete: Callable[[Callable[[int], None]], int]) -> float:
        _refill(cur)
        longest = [0.0]
        last = [time.perf_counter()]

        def tick(_deleted: int) -> None:  # called after each committed batch
            now = time.perf_counter()
            longest[0] = max(longest[0], now - last[0])
            last[0] = now

        wal = _wal_lsn(cur)
        started = last[0] = time.perf_counter()
        deleted = delete(tick)
        elapsed = time.perf_counter() - started
        longest[0] = max(longest[0], time.perf_counter() - last[0])
        results.setdefault(name, []).append((elapsed, deleted, longest[0], _wal_lsn(cur) - wal))
        return elapsed

    def plain(tick: Callable[[int], None]) -> int:
        cur.execute("DELETE FROM metrics WHERE timestamp < now() - interval '30 days'")
        return cur.rowcount

    def batched(tick: Callable[[int], None]) -> int:
        return retention.purge(conn, older_than_days=30, batch_size=BATCH, progress=tick)

    try:
        _make_template(cur, n)
        _refill(cur)
        cur.execute("SELECT now() - interval '30 days'")
        cur.execute(
            "EXPLAIN " + retention._purge._BATCH_SQL.format(table="metrics", type_filter=""),
            {"cutoff": cur.fetchone()[0], "after": "-infinity", "limit": BATCH},
        )
        plan = "\n".join(row[0] for row in cur.fetchall())
        main_pair = {
            "plain DELETE": lambda: measure("plain DELETE", plain),
            "purge() by ctid": lambda: measure("purge() by ctid", batched),
        }
        side = {
            "ctid, no row locks": lambda: measure(
                "ctid, no row locks", lambda t: _batches(_NO_LOCK_SQL, conn, t)
            ),
            "batches by id": lambda: measure(
                "batches by id", lambda t: _batches(_ID_BATCH_SQL, conn, t)
            ),
        }
        # A B C D B A: each refill costs ~20 s at 1M, so the two side
        # variants run once, to keep the section under 4 minutes.
        interleave({**main_pair, **side}, 1)
        interleave(dict(reversed(main_pair.items())), 1)
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {_TEMPLATE}")
        cur.execute("TRUNCATE metrics, metrics_rollups")
        _restore_indexes(cur)
        cur.close()
        conn.close()

    base = statistics.median(r[0] for r in results["plain DELETE"])
    rows = []
    for name, runs in results.items():
        times = [r[0] for r in runs]
        rows.append(
            [
                name,
                f"{runs[0][1]:,}",
                spread(times),
                f"{statistics.median(r[1] / r[0] for r in runs):,.0f}",
                spread([r[2] * 1000 for r in runs], "{:.0f}"),
                f"{statistics.median(r[3] for r in runs) / 2**20:.0f}",
                f"{statistics.median(times) / base:.1f}x",
            ]
        )
    return "\n\n".join(
        [
            "## Retention: purge in batches vs one DELETE",
            f"Deleting {n:,} rows older than 30 days among {2 * n:,} (the table with its "
            "five indexes, refilled fresh before each run), in the order A B C D B A, "
            f"batches of {BATCH:,}; median (min..max). Longest transaction: for batches, the "
            "longest time between two commits.",
            table(
                [
                    "variant",
                    "rows deleted",
                    "time s",
                    "rows/s",
                    "longest transaction ms",
                    "WAL MB",
                    "time vs plain",
                ],
                rows,
            ),
            "Plan of one batch (`EXPLAIN`):\n\n```\n" + plan + "\n```",
        ]
    )
