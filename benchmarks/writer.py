"""Writer throughput into the real ``metrics`` table (all five indexes), one commit per batch.

- MetricsWriter end to end: ``submit_request`` for every row, then
  ``flush()``; timed from the first submit until everything is committed:
  with the rollup tables (rows and their per-minute rollups in one
  transaction a batch), and in a database without them (one COPY a batch,
  as before rollups existed);
- the same with ``writers=2`` and ``writers=4``;
- the baselines, each given ready tuples and writing batches of 500 from
  this thread: ``cursor.executemany``, ``psycopg2.extras.execute_values``,
  and COPY (``copy_expert``) of text built with ``json.dumps`` per row;
- binary COPY of batches encoded (by the writer's own Formatter) before the
  clock starts: the server's ceiling for what the writer sends.

Rows/s is wall time; CPU µs/row is this process's CPU time (all threads)
over the same span, the time the writer takes from request threads.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import psycopg2
import psycopg2.extras

from mnemo_obs import MetricsWriter
from mnemo_obs._batch import DIRECT
from mnemo_obs._copy import HEADER, TRAILER, Formatter
from mnemo_obs.tracing import new_trace_id

from ._common import Context, interleave, raw_only_database, spread, table, truncate_metrics

BATCH = 500
ROUTES = [f"/api/v1/resource{i}/{{item_id}}" for i in range(20)]
INSERT = "INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata) "
TEXT_COPY = "COPY metrics (timestamp, metric_type, metric_name, value, metadata) FROM STDIN"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": None})


def escape(text: str) -> str:
    """One field of COPY's text format."""
    return text.translate(_ESCAPES)


def _rows(count: int) -> list[tuple[Any, ...]]:
    now = time.time()
    return [
        (
            now + i * 1e-4,
            ROUTES[i % len(ROUTES)],
            0.5 + (i % 997) / 10,
            "GET" if i % 5 else "POST",
            (200, 200, 200, 404, 500)[i % 5],
            new_trace_id(),
        )
        for i in range(count)
    ]


def _as_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    start, endpoint, latency, method, status, trace_id = row
    meta = {"endpoint": endpoint, "method": method, "status_code": status, "trace_id": trace_id}
    return (
        datetime.fromtimestamp(start, timezone.utc),
        "api",
        endpoint,
        latency,
        psycopg2.extras.Json(meta),
    )


def _as_copy_line(row: tuple[Any, ...]) -> str:
    start, endpoint, latency, method, status, trace_id = row
    meta = {"endpoint": endpoint, "method": method, "status_code": status, "trace_id": trace_id}
    stamp = datetime.fromtimestamp(start, timezone.utc).isoformat()
    return f"{stamp}\tapi\t{escape(endpoint)}\t{latency!r}\t{escape(json.dumps(meta))}\n"


def _baseline(
    dsn: str, rows: list[tuple[Any, ...]], write: Callable[..., None]
) -> Callable[[], float]:
    def run() -> float:
        truncate_metrics(dsn)
        conn = psycopg2.connect(dsn)
        try:
            started, cpu = time.perf_counter(), time.process_time()
            with conn.cursor() as cur:
                for i in range(0, len(rows), BATCH):
                    write(cur, rows[i : i + BATCH])
                    conn.commit()
            return _figures(len(rows), started, cpu)
        finally:
            conn.close()

    return run


def _executemany(cur: Any, batch: list[tuple[Any, ...]]) -> None:
    cur.executemany(INSERT + "VALUES (%s, %s, %s, %s, %s)", [_as_params(r) for r in batch])


def _execute_values(cur: Any, batch: list[tuple[Any, ...]]) -> None:
    psycopg2.extras.execute_values(
        cur, INSERT + "VALUES %s", [_as_params(r) for r in batch], page_size=BATCH
    )


def _copy(cur: Any, batch: list[tuple[Any, ...]]) -> None:
    data = "".join(_as_copy_line(r) for r in batch).encode()
    cur.copy_expert(TEXT_COPY, io.BytesIO(data), size=len(data) + 1)


def _copy_ceiling(dsn: str, rows: list[tuple[Any, ...]]) -> Callable[[], float]:
    """Binary COPY of batches encoded before the clock starts: what the server alone allows."""
    formatter = Formatter()
    batches = [
        b"".join((HEADER, *formatter.lines(rows[i : i + BATCH])[0], TRAILER))
        for i in range(0, len(rows), BATCH)
    ]

    def write(cur: Any, batch: list[tuple[Any, ...]]) -> None:
        data = next(pending)
        cur.copy_expert(DIRECT.copies[0], io.BytesIO(data), size=len(data) + 1)

    run = _baseline(dsn, rows, write)
    pending = iter(())

    def measured() -> float:
        nonlocal pending
        pending = iter(batches)
        return run()

    return measured


def _ours(dsn: str, rows: list[tuple[Any, ...]], writers: int) -> Callable[[], float]:
    def run() -> float:
        truncate_metrics(dsn)
        writer = MetricsWriter(dsn, writers=writers, max_queue=len(rows) + 1)
        try:
            writer.record("api", "warm-up", 0.0)  # start the threads and connect, untimed
            writer.flush(timeout=60)
            started, cpu = time.perf_counter(), time.process_time()
            submit = writer.submit_request
            for row in rows:
                submit(*row)
            if not writer.flush(timeout=600):
                raise RuntimeError("the writer did not finish")
            figures = _figures(len(rows), started, cpu)
            stats = writer.stats()
            if stats["written"] != len(rows) + 1:
                raise RuntimeError(f"rows lost: {stats}")
            return figures
        finally:
            writer.close()

    return run


_last_cpu = [0.0]  # CPU µs/row of the latest run, read right after it


def _figures(count: int, started: float, cpu: float) -> float:
    """Rows/s; the same run's CPU µs/row is left in ``_last_cpu`` for the table."""
    elapsed = time.perf_counter() - started
    _last_cpu[0] = (time.process_time() - cpu) / count * 1e6
    return count / elapsed


def run(ctx: Context) -> str:
    with raw_only_database(ctx.dsn) as raw_dsn:
        return _run(ctx, raw_dsn)


WITH_ROLLUPS = "MetricsWriter, writers=1: rows, and for the rollups, one transaction a batch"
RAW_ONLY = "MetricsWriter, writers=1, no rollup tables: one COPY a batch"


def _run(ctx: Context, raw_dsn: str) -> str:
    count = 5_000 if ctx.quick else 50_000
    repeats = 1 if ctx.quick else 3
    rows = _rows(count)
    plain = {
        WITH_ROLLUPS: _ours(ctx.dsn, rows, 1),
        RAW_ONLY: _ours(raw_dsn, rows, 1),
        "MetricsWriter, writers=2": _ours(ctx.dsn, rows, 2),
        "MetricsWriter, writers=4": _ours(ctx.dsn, rows, 4),
        "executemany": _baseline(ctx.dsn, rows, _executemany),
        "execute_values": _baseline(ctx.dsn, rows, _execute_values),
        "COPY text (copy_expert, json.dumps per row)": _baseline(ctx.dsn, rows, _copy),
        "binary COPY of pre-encoded batches (the server's ceiling)": _copy_ceiling(ctx.dsn, rows),
    }
    cpu: dict[str, list[float]] = {name: [] for name in plain}

    def with_cpu(name: str, run: Callable[[], float]) -> Callable[[], float]:
        def measured() -> float:
            figure = run()
            cpu[name].append(_last_cpu[0])
            return figure

        return measured

    results = interleave({name: with_cpu(name, fn) for name, fn in plain.items()}, repeats)
    truncate_metrics(ctx.dsn)
    copy = statistics.median(results["COPY text (copy_expert, json.dumps per row)"])
    ratio = statistics.median(results[WITH_ROLLUPS]) / statistics.median(results[RAW_ONLY])
    body = [
        [
            name,
            spread(values, "{:,.0f}"),
            f"{statistics.median(values) / copy:.2f}",
            spread(cpu[name], "{:.1f}"),
        ]
        for name, values in results.items()
    ]
    return "\n\n".join(
        [
            "## Writer throughput into the metrics table",
            f"{count:,} request rows per run, batches of {BATCH}, the table truncated "
            f"before each run; {repeats} interleaved runs, median (min..max). CPU is this "
            "process's (all threads), per row.",
            table(["method", "rows/s", "÷ COPY", "CPU µs/row"], body),
            f"With rollups ÷ without: {ratio:.2f} in rows/s (target: at least 0.8). The "
            "writers=2 and 4 rows write for the rollups too.",
        ]
    )
