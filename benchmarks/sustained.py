"""Sustained load: the writer's queue under a producer at 2x and 0.5x its write rate.

First the writer's rate is measured here (rows submitted as fast as one
thread can, until all are committed). Then, for each factor, a producer
thread submits request rows at that multiple of it, paced every 10 ms, for
a fixed time, with the default queue bound (10,000 rows). At 2x the queue
fills and the excess must be dropped and counted; at 0.5x nothing may be
dropped. Either way every submitted row must be accounted for exactly:
submitted == written + dropped, and the table must hold the rows written.
Memory must stay flat: the process's RSS is sampled during the run.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import psutil
import psycopg2

from mnemo_obs import MetricsWriter
from mnemo_obs.tracing import new_trace_id

from ._common import Context, table

TICK = 0.01  # the producer's pacing step, seconds
ROUTES = [f"/api/v1/resource{i}/{{item_id}}" for i in range(20)]


def _truncate_and_count(dsn: str, truncate: bool) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics")
            count = int(cur.fetchone()[0])
            if truncate:
                cur.execute("TRUNCATE metrics, metrics_rollups")
            return count
    finally:
        conn.close()


def _write_rate(dsn: str, rows: int) -> float:
    """Rows/s of one writer, submit to committed, with one thread submitting flat out."""
    _truncate_and_count(dsn, truncate=True)
    with MetricsWriter(dsn, max_queue=rows + 1) as writer:
        writer.record("api", "warm-up", 0.0)
        writer.flush(timeout=60)
        trace = new_trace_id()
        started = time.perf_counter()
        for i in range(rows):
            writer.submit_request(time.time(), ROUTES[i % 20], 1.0, "GET", 200, trace)
        if not writer.flush(timeout=120):
            raise RuntimeError("the writer did not finish")
        return rows / (time.perf_counter() - started)


def _run_case(dsn: str, rate: float, seconds: float) -> dict[str, Any]:
    """Produce at ``rate`` rows/s for ``seconds``; return what happened."""
    _truncate_and_count(dsn, truncate=True)
    process = psutil.Process()
    writer = MetricsWriter(dsn)
    submitted = accepted = 0
    depth_peak = 0
    rss: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        nonlocal depth_peak
        while not stop.wait(0.1):
            rss.append(process.memory_info().rss)
            depth_peak = max(depth_peak, int(writer.stats()["queue_depth"]))  # type: ignore[call-overload]

    writer.record("api", "warm-up", 0.0)  # threads and connection up, untimed
    writer.flush(timeout=60)
    sampler = threading.Thread(target=sample, daemon=True)
    rss.append(process.memory_info().rss)
    sampler.start()
    trace = new_trace_id()
    submit = writer.submit_request
    started = time.perf_counter()
    deadline = started + seconds
    now = started
    try:
        while now < deadline:
            # Catch up to where the schedule says we should be, then sleep a tick.
            due = int((now - started) * rate) - submitted
            for i in range(due):
                accepted += submit(time.time(), ROUTES[i % 20], 1.0, "GET", 200, trace)
            submitted += due
            time.sleep(TICK)
            now = time.perf_counter()
        produced_for = now - started
        flushed = writer.flush(timeout=120)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        sampler.join(timeout=5)
        writer.close(timeout=30)
    stats = writer.stats()
    return {
        "submitted": submitted,
        "accepted": accepted,
        "produced_rate": submitted / produced_for,
        "written": int(stats["written"]) - 1,  # the warm-up row
        "dropped": int(stats["dropped_queue_full"]),
        "lost": int(stats["dropped_after_retries"]) + int(stats["rejected"]),
        "rows": _truncate_and_count(dsn, truncate=False) - 1,
        "flushed": flushed,
        "elapsed": elapsed,
        "depth_peak": depth_peak,
        "rss": rss,
    }


def run(ctx: Context) -> str:
    calibrate_rows, seconds = (5_000, 2.0) if ctx.quick else (50_000, 15.0)
    rate = statistics.median(_write_rate(ctx.dsn, calibrate_rows) for _ in range(3))
    body = []
    problems = []
    for factor in (2.0, 0.5):
        case = _run_case(ctx.dsn, factor * rate, seconds)
        exact = (
            case["submitted"] == case["written"] + case["dropped"]
            and case["written"] == case["rows"] == case["accepted"]
            and not case["lost"]
        )
        if not exact or not case["flushed"]:
            problems.append(f"{factor}x: {case}")
        rss = [value / 2**20 for value in case["rss"]]
        half = rss[len(rss) // 2 :]
        body.append(
            [
                f"{factor:g}x",
                f"{factor * rate:,.0f}",
                f"{case['produced_rate']:,.0f}",
                f"{case['submitted']:,}",
                f"{case['written']:,}",
                f"{case['dropped']:,}",
                "yes" if exact else "**no**",
                f"{case['depth_peak']:,}",
                f"{rss[0]:.0f} / {max(rss):.0f} / {rss[-1]:.0f}",
                f"{max(half) - min(half):+.1f}",
            ]
        )
    if problems:
        raise RuntimeError("rows not accounted for: " + "; ".join(problems))
    return "\n\n".join(
        [
            "## Sustained load: the queue at 2x and 0.5x the write rate",
            f"The writer's rate measured first: {rate:,.0f} rows/s (one writer, one thread "
            f"submitting flat out, median of 3 runs of {calibrate_rows:,} rows). Then a "
            f"producer thread submits at 2x and 0.5x that, paced every {TICK * 1000:.0f} ms, "
            f"for {seconds:g} s, into a writer with the default bound ({MetricsWriter.MAX_QUEUE:,}"
            " rows), and the writer is flushed. Exact: submitted == written + dropped, "
            "written == rows in the table == rows accepted, nothing rejected or lost. RSS is "
            "sampled every 100 ms; its range over the second half of the run shows whether "
            "memory keeps growing.",
            table(
                [
                    "producer",
                    "target rows/s",
                    "achieved rows/s",
                    "submitted",
                    "written",
                    "dropped (queue full)",
                    "exact",
                    "peak queue depth",
                    "RSS MB start / peak / end",
                    "RSS MB drift, 2nd half",
                ],
                body,
            ),
        ]
    )
