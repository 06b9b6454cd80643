"""A streaming replica: does it keep up with the writer, and what does a read there cost?

A primary and a standby made with ``pg_basebackup -R`` (``tests/replica.py``,
both started here, on the same cores as everything else; the section's own
servers, whatever ``MNEMO_OBS_BENCH_DSN`` says). First one writer
writes an hour of request rows flat out into the primary (binary COPY,
rollups kept as usual) while the standby's lag is sampled every 50 ms with the very query
the reads use, and the WAL it still has to apply is measured against the
primary's position. Then, the rows rolled up (one pass of the background
job) and applied on the standby, the summary is read with the cache off
from a collector without a replica and from one with ``read_dsn``,
interleaved: the difference is the lag check and the second server.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import psycopg2

from mnemo_obs import MetricsWriter
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.collectors.replica import LAG_QUERY
from mnemo_obs.rollups import compact
from mnemo_obs.tracing import new_trace_id
from tests.replica import ReplicaPair
from tests.waiting import wait_until

from ._common import Context, interleave, spread, table

SAMPLE_EVERY = 0.05
ROUTES = [f"/api/v1/resource{i}/{{item_id}}" for i in range(20)]
BEHIND = "SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())"


def _position(dsn: str) -> str:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


def _ingest(pair: ReplicaPair, rows: int) -> dict[str, Any]:
    """Write ``rows`` flat out; the standby's lag and backlog meanwhile, and its catch-up."""
    primary = psycopg2.connect(pair.primary.dsn)
    standby = psycopg2.connect(pair.standby_dsn)
    primary.autocommit = standby.autocommit = True
    lags: list[float] = []
    backlog: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        with primary.cursor() as p, standby.cursor() as s:
            while not stop.wait(SAMPLE_EVERY):
                p.execute("SELECT pg_current_wal_lsn()")
                (position,) = p.fetchone()
                s.execute(LAG_QUERY)
                lag = s.fetchone()[1]
                s.execute(BEHIND, (position,))
                lags.append(float(lag) if lag is not None else float("nan"))
                backlog.append(float(s.fetchone()[0]))

    start_position = _position(pair.primary.dsn)
    sampler = threading.Thread(target=sample, daemon=True)
    try:
        with MetricsWriter(pair.primary.dsn, max_queue=rows + 1) as writer:
            writer.record("api", "warm-up", 0.0)
            writer.flush(timeout=60)
            sampler.start()
            trace = new_trace_id()
            # An hour of traffic, oldest first, as the reads see a steady day's.
            first = time.time() - 3600
            started = time.perf_counter()
            for i in range(rows):
                when = first + 3600 * i / rows
                writer.submit_request(when, ROUTES[i % 20], 1.0, "GET", 200, trace)
            if not writer.flush(timeout=300):
                raise RuntimeError("the writer did not finish")
            elapsed = time.perf_counter() - started
        stop.set()
        sampler.join(timeout=10)
        end_position = _position(pair.primary.dsn)
        # How long after the writer's last commit the standby has applied it all.
        caught_up = time.perf_counter()
        with standby.cursor() as s:

            def applied() -> bool:
                s.execute(BEHIND, (end_position,))
                return bool(s.fetchone()[0] <= 0)

            wait_until("the standby to apply the writer's rows", applied, timeout=300)
        catch_up = time.perf_counter() - caught_up
        with primary.cursor() as p:
            p.execute("SELECT pg_wal_lsn_diff(%s, %s)", (end_position, start_position))
            wal = float(p.fetchone()[0])
            p.execute("SELECT pg_total_relation_size('metrics')")
            size = float(p.fetchone()[0])
    finally:
        stop.set()
        primary.close()
        standby.close()
    return {
        "rate": rows / elapsed,
        "wal_rate": wal / elapsed,
        "wal_per_row": wal / rows,
        "size_per_row": size / rows,
        "lags": lags,
        "backlog": backlog,
        "catch_up": catch_up,
    }


def _compact(pair: ReplicaPair) -> int:
    """Move every pending row into the rollups, as the background job does, and replicate it.

    The writer's own job stops with the writer, and a read adds the rows
    still pending on the fly: after a burst of half a million, that is
    what a read would measure.
    """
    conn = psycopg2.connect(pair.primary.dsn)
    try:
        while (done := compact(conn)) is None:  # another one under way: wait for it
            time.sleep(0.1)
    finally:
        conn.close()
    pair.wait_caught_up()
    return done["pending"]


def _reads(pair: ReplicaPair, repeats: int) -> dict[str, list[float]]:
    """ms per summary (cache off) without and with the replica, interleaved."""
    plain = MetricsCollector(pair.primary.dsn, redis_url="", cache_ttl=0)
    replica = MetricsCollector(
        pair.primary.dsn, read_dsn=pair.standby_dsn, redis_url="", cache_ttl=0
    )
    try:
        for collector in (plain, replica):  # connections open, untimed
            collector.collect_all()
        if replica.collect_all()["postgres"]["reads_from"] != "replica":
            raise RuntimeError("the summary did not read from the replica")

        def timed(collector: MetricsCollector) -> float:
            started = time.perf_counter()
            summary = collector.collect_all()
            if "error" in summary["api"]:
                raise RuntimeError(summary["api"]["error"])
            return (time.perf_counter() - started) * 1000

        return interleave(
            {"primary only": lambda: timed(plain), "read_dsn (replica)": lambda: timed(replica)},
            repeats,
        )
    finally:
        plain.close()
        replica.close()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(ctx: Context) -> str:
    rows, repeats = (20_000, 5) if ctx.quick else (500_000, 21)
    pair = ReplicaPair()
    try:
        ingest = _ingest(pair, rows)
        pending = _compact(pair)
        reads = _reads(pair, repeats)
    finally:
        pair.close()
    lags = [lag for lag in ingest["lags"] if lag == lag] or [float("nan")]
    backlog = [b / 2**20 for b in ingest["backlog"]] or [float("nan")]
    lines = [
        "## A streaming replica",
        "",
        f"One writer writes {rows:,} request rows (an hour of traffic at "
        f"{rows / 3600:,.0f} a second) flat out into the primary; a standby "
        "(pg_basebackup -R, same machine) streams them. Lag: the reads' own measure "
        f"(`LAG_QUERY`), sampled every {SAMPLE_EVERY * 1000:.0f} ms "
        f"({len(ingest['lags'])} samples); backlog: WAL the standby had still to apply, "
        "against the primary's position at the same moment.",
        "",
        table(
            [
                "rows/s written",
                "WAL MB/s",
                "lag s median / p95 / max",
                "backlog MB median / max",
                "caught up after the last commit, s",
                "bytes a row: metrics with its indexes / WAL",
            ],
            [
                [
                    f"{ingest['rate']:,.0f}",
                    f"{ingest['wal_rate'] / 2**20:.1f}",
                    f"{statistics.median(lags):.3f} / {_quantile(lags, 0.95):.3f} / "
                    f"{max(lags):.3f}",
                    f"{statistics.median(backlog):.1f} / {max(backlog):.1f}",
                    f"{ingest['catch_up']:.2f}",
                    f"{ingest['size_per_row']:,.0f} / {ingest['wal_per_row']:,.0f}",
                ]
            ],
        ),
        "",
        f"When the writer stopped, {pending:,} rows were still waiting for the rollups' "
        "background job (writing flat out, it falls behind; reads add those rows on the fly).",
        "",
        f"The summary with the cache off, {repeats} interleaved runs, median (min..max) ms; "
        f"the table holds those {rows:,} rows, the hour of the window, rolled up.",
        "",
        table(
            ["reads", "summary ms"],
            [[name, spread(values, "{:.1f}")] for name, values in reads.items()],
        ),
    ]
    return "\n".join(lines)
