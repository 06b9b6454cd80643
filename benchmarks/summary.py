"""Summary latency: ApiCollector.collect() and GET /summary with 10k, 100k and 1M api rows.

Each size has that many api rows in the one-hour window and five times as
many outside it (2 to 26 hours old), so the window must be found, not just
read. Rows are made server-side with generate_series, cumulatively: each size
adds to the previous one, with the indexes dropped during the fill and built
again after (6M rows into five live indexes take minutes; this, about one).
The report records the plan PostgreSQL chose.
"""

from __future__ import annotations

import time

import falcon
import falcon.testing
import psycopg2

from mnemo_obs import apply_schema
from mnemo_obs.collectors import ApiCollector, MetricsCollector
from mnemo_obs.collectors.api import QUERY
from mnemo_obs.resources import SummaryResource

from ._common import Context, interleave, spread, table, truncate_metrics

SIZES = (10_000, 100_000, 1_000_000)
TARGET_MS = 100.0  # at 100k rows in the window

# Recent rows spread evenly over 30 minutes, so they stay in the window for a
# run of half an hour. Statuses: 1 in 10 is a 4xx or 5xx. Metadata as the
# middleware writes it, so the rows have their real width.
FILL = """
INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata)
SELECT now() - %(base)s::interval - %(spread)s::interval * (i::float8 / %(n)s),
       'api',
       '/items/{item_id}',
       random() * random() * 200,
       jsonb_build_object(
           'endpoint', '/items/{item_id}',
           'method', 'GET',
           'status_code', CASE WHEN i %% 10 = 0 THEN 500 - (i %% 20) * 5 ELSE 200 END,
           'trace_id', md5(i::text))
FROM generate_series(1, %(n)s) AS i
"""


def _fill(dsn: str, inside: int, outside: int) -> float:
    """Add rows, then rebuild the schema's indexes; return the seconds it took."""
    started = time.perf_counter()
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(
                "SELECT indexname FROM pg_indexes "
                "WHERE tablename = 'metrics' AND indexname LIKE 'idx_metrics_%'"
            )
            for (name,) in cur.fetchall():
                cur.execute(f'DROP INDEX "{name}"')
            cur.execute("ALTER TABLE metrics DROP CONSTRAINT metrics_pkey")
            cur.execute(FILL, {"base": "0 minutes", "spread": "30 minutes", "n": inside})
            cur.execute(FILL, {"base": "2 hours", "spread": "24 hours", "n": outside})
            cur.execute("SET maintenance_work_mem = '256MB'")
            cur.execute("ALTER TABLE metrics ADD PRIMARY KEY (id)")
        apply_schema(dsn)  # the four secondary indexes, exactly as shipped
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE metrics")
    finally:
        conn.close()
    return time.perf_counter() - started


def _plan(dsn: str) -> tuple[str, str]:
    """The plan's scan line and the whole EXPLAIN (ANALYZE, BUFFERS) text."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + QUERY, {"seconds": 3600.0})
            lines = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    scans = [line.strip().lstrip("-> ").split("  (")[0] for line in lines if "Scan" in line]
    return " / ".join(scans), "\n".join(lines)


def _timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000.0


def run(ctx: Context) -> str:
    """Measure, and return the markdown section."""
    sizes = SIZES[:1] if ctx.quick else SIZES
    repeats = 5 if ctx.quick else 11
    truncate_metrics(ctx.dsn)

    api = ApiCollector(ctx.dsn)
    # cache_ttl=0: every request collects, as the first one after the TTL does.
    collector = MetricsCollector(ctx.dsn, redis_url="", cache_ttl=0)
    app = falcon.App()
    app.add_route("/summary", SummaryResource(collector, token=None))
    client = falcon.testing.TestClient(app)

    def http_summary() -> None:
        resp = client.simulate_get("/summary")
        assert resp.status_code == 200, resp.text

    rows, plans = [], []
    have = 0
    try:
        for size in sizes:
            fill_s = _fill(ctx.dsn, size - have, 5 * (size - have))
            have = size
            assert api.collect()["request_count"] == size
            http_summary()  # warm both paths once
            results = interleave(
                {
                    "collect": lambda: _timed(api.collect),
                    "http": lambda: _timed(http_summary),
                },
                repeats,
            )
            scan, text = _plan(ctx.dsn)
            plans.append((size, text))
            rows.append(
                (
                    f"{size:,}",
                    f"{6 * size:,}",
                    spread(results["collect"], "{:.1f}"),
                    spread(results["http"], "{:.1f}"),
                    scan,
                    f"{fill_s:.1f}",
                )
            )
    finally:
        api.close()
        collector.close()

    report = [
        "## Summary latency",
        "",
        f"Api rows in the one-hour window, 5x as many older; {repeats} interleaved runs, "
        "median (min..max) in ms. `GET /summary` goes through falcon.testing with the "
        "cache off, so it adds the postgres and system sections and JSON to the api query. "
        f"Target: < {TARGET_MS:.0f} ms at 100k.",
        "",
        table(
            [
                "rows in window",
                "rows in table",
                "ApiCollector.collect ms",
                "GET /summary ms",
                "plan",
                "fill s",
            ],
            rows,
        ),
    ]
    shown_size, shown_plan = next(((s, p) for s, p in plans if s == 100_000), plans[-1])
    report += ["", f"Plan at {shown_size:,} rows (EXPLAIN ANALYZE, BUFFERS):", "", "```"]
    report += [shown_plan, "```"]
    return "\n".join(report)
