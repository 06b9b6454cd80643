"""Per-request overhead in-process: what each way of recording requests adds to a bare Falcon app.

Every variant is the same one-route Falcon app called through WSGI with a
prepared environ, so only the recording differs:

- bare: no middleware;
- floor: the naive recorder: clock + ``str(uuid.uuid4())`` + header +
  ``queue.Queue.put_nowait``, with a consumer thread blocked in ``get()``;
- MetricsMiddleware with its real MetricsWriter, writing to PostgreSQL
  while the loop runs (its thread's CPU is counted: it shares the GIL);
- a prometheus_client Histogram middleware labelled method/route/status;
- opentelemetry-instrumentation-falcon, SDK with a BatchSpanProcessor to an
  in-memory exporter;
- a synchronous INSERT per request (the reference design);
- MetricsMiddleware on a skipped path (like ``/health``): a trace id and
  its header, no row.

The process is pinned to one core during the section, as a worker would be.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import falcon
import falcon.testing
import psycopg2

from mnemo_obs import MetricsMiddleware, MetricsWriter
from mnemo_obs.prometheus import PrometheusExporter

from ._common import Context, interleave, raw_only_database, spread, table


class _Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.text = "ok"


def _app(*middleware: Any, factory: Callable[..., falcon.App] = falcon.App) -> falcon.App:
    app = factory(middleware=list(middleware))
    app.add_route("/items/{item_id}", _Item())
    return app


class _Floor:
    """clock + str(uuid4()) + header + Queue.put_nowait: the straightforward recorder."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while self.queue.get() is not None:
            pass

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.start = time.perf_counter()
        req.context.trace_id = str(uuid.uuid4())

    def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        resp.set_header("X-Trace-ID", req.context.trace_id)
        row = (req.uri_template, time.perf_counter() - req.context.start, req.context.trace_id)
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(row)

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join(timeout=10)


class _Prometheus:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Histogram

        self.histogram = Histogram(
            "request_seconds",
            "request latency",
            ["method", "route", "status"],
            registry=CollectorRegistry(),
        )

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.start = time.perf_counter()

    def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        self.histogram.labels(req.method, req.uri_template, resp.status).observe(
            time.perf_counter() - req.context.start
        )


class _SyncInsert:
    """One INSERT (autocommit) per request, on the request thread."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.start = time.perf_counter()
        req.context.trace_id = str(uuid.uuid4())

    def process_response(self, req: Any, resp: Any, resource: Any, ok: bool) -> None:
        resp.set_header("X-Trace-ID", req.context.trace_id)
        latency_ms = (time.perf_counter() - req.context.start) * 1000
        meta = {
            "endpoint": req.uri_template,
            "method": req.method,
            "status_code": resp.status_code if hasattr(resp, "status_code") else 200,
            "trace_id": req.context.trace_id,
        }
        with self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO metrics (metric_type, metric_name, value, metadata) "
                "VALUES ('api', %s, %s, %s)",
                (req.uri_template, latency_ms, json.dumps(meta)),
            )


def _runner(
    app: falcon.App,
    requests: int,
    cpu: list[float],
    settle: Callable[[], Any] | None = None,
    background: tuple[Callable[[], float], list[float]] | None = None,
) -> Callable[[], float]:
    """One repetition: wall µs per request in the loop, returned; process CPU µs per
    request, appended to ``cpu``, covers the loop plus ``settle`` (a background
    thread finishing the rows of the loop), so background work is paid for.
    ``background``: a clock of one background thread's CPU seconds, and the list
    that gets its share, µs per request."""
    environ = falcon.testing.create_environ(path="/items/42")

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        pass

    def run() -> float:
        thread_started = background[0]() if background else 0.0
        cpu_started = time.process_time()
        started = time.perf_counter()
        for _ in range(requests):
            for _chunk in app(dict(environ), start_response):
                pass
        wall = time.perf_counter() - started
        if settle is not None:
            settle()
        cpu.append((time.process_time() - cpu_started) / requests * 1e6)
        if background:
            background[1].append((background[0]() - thread_started) / requests * 1e6)
        return wall / requests * 1e6

    return run


def _otel_app() -> tuple[falcon.App, Callable[[], None], Callable[[], None]]:
    from opentelemetry.instrumentation.falcon import FalconInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    instrumentor = FalconInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    app = _app(factory=falcon.App)  # falcon.App is the instrumented class now

    def stop() -> None:
        instrumentor.uninstrument()
        provider.shutdown()

    return app, exporter.clear, stop


def run(ctx: Context) -> str:
    with raw_only_database(ctx.dsn) as raw_dsn:
        return _run(ctx, raw_dsn)


def _run(ctx: Context, raw_dsn: str) -> str:
    quick = ctx.quick
    # Under max_queue per repetition: the loop outruns what PostgreSQL can
    # ingest here (~35k rows/s), and dropped rows would cost nothing.
    fast_n, otel_n, insert_n = (1_000, 200, 100) if quick else (5_000, 1_000, 500)
    repeats = 3 if quick else 15
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    floor = _Floor()
    writer = MetricsWriter(ctx.dsn)
    raw_writer = MetricsWriter(raw_dsn)
    exported_writer = MetricsWriter(ctx.dsn)
    PrometheusExporter(exported_writer)
    sync = _SyncInsert(ctx.dsn)
    otel_app, otel_clear, otel_stop = _otel_app()
    names = [
        "bare app",
        "floor: clock + uuid4 + header + Queue.put_nowait",
        "MetricsMiddleware + MetricsWriter (binary COPY to PostgreSQL)",
        "prometheus_client Histogram (method, route, status)",
        "opentelemetry-instrumentation-falcon, BatchSpanProcessor",
        "synchronous INSERT per request",
        "MetricsMiddleware, a skipped path (trace id and header, no row)",
        "MetricsMiddleware + MetricsWriter, a database without rollup tables",
        "MetricsMiddleware + MetricsWriter + Prometheus exporter (counted on the writer thread)",
    ]
    cpu: dict[str, list[float]] = {name: [] for name in names}
    try:
        conn = psycopg2.connect(ctx.dsn)
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE metrics, metrics_rollups")
        conn.close()

        writer.record("api", "warm-up", 0.0)  # start its thread, to read its CPU clock
        writer.flush(timeout=60)
        writer_clock = time.pthread_getcpuclockid(writer._threads[0].ident)  # type: ignore[arg-type]
        writer_cpu: list[float] = []

        def drain_floor() -> None:
            deadline = time.monotonic() + 10
            while not floor.queue.empty() and time.monotonic() < deadline:
                time.sleep(0.0005)

        apps = [
            (_app(), fast_n, None),
            (_app(floor), fast_n, drain_floor),
            (_app(MetricsMiddleware(writer)), fast_n, lambda: writer.flush(timeout=60)),
            (_app(_Prometheus()), fast_n, None),
            (otel_app, otel_n, otel_clear),
            (_app(sync), insert_n, None),
            # The request's own path is in the skip list, as /health is.
            (_app(MetricsMiddleware(writer, skip_paths=("/items/42",))), fast_n, None),
            (_app(MetricsMiddleware(raw_writer)), fast_n, lambda: raw_writer.flush(timeout=60)),
            (
                _app(MetricsMiddleware(exported_writer)),
                fast_n,
                lambda: exported_writer.flush(timeout=60),
            ),
        ]
        variants = {
            name: _runner(app, n, cpu[name], settle)
            for name, (app, n, settle) in zip(names, apps, strict=True)
        }
        variants[names[2]] = _runner(
            apps[2][0],
            fast_n,
            cpu[names[2]],
            apps[2][2],
            (lambda: time.clock_gettime(writer_clock), writer_cpu),
        )
        for variant in variants.values():  # warm-up: routers compile, connections open
            variant()
        for values in [*cpu.values(), writer_cpu]:
            values.clear()
        results = interleave(variants, repeats)
        stats = writer.stats()
    finally:
        otel_stop()
        floor.close()
        writer.close()
        raw_writer.close()
        exported_writer.close()
        sync.conn.close()
        os.sched_setaffinity(0, affinity)

    def added(values: list[float], base: list[float]) -> list[float]:
        return [v - b for v, b in zip(values, base, strict=True)]

    bare, bare_cpu = results[names[0]], cpu[names[0]]
    prom_cpu = statistics.median(added(cpu[names[3]], bare_cpu))
    ours_cpu = added(cpu[names[2]], bare_cpu)
    request_side = [total - thread for total, thread in zip(ours_cpu, writer_cpu, strict=True)]
    rollups_ratio = statistics.median(cpu[names[2]]) / statistics.median(cpu[names[7]])
    prom_added = statistics.median(cpu[names[8]]) - statistics.median(cpu[names[2]])
    rows = []
    for name in names:
        wall, used = results[name], cpu[name]
        first = name == names[0]
        rows.append(
            [
                name,
                spread(wall),
                "" if first else spread(added(wall, bare)),
                spread(used),
                "" if first else spread(added(used, bare_cpu)),
                "" if first else f"{statistics.median(added(used, bare_cpu)) / prom_cpu:.2f}",
            ]
        )
    return "\n\n".join(
        [
            "## Per-request overhead, in-process",
            f"Falcon {falcon.__version__}, one route, the WSGI app called directly, the "
            f"process pinned to one core; {repeats} interleaved repetitions of {fast_n:,} "
            f"requests ({otel_n:,} for OpenTelemetry, {insert_n:,} for the INSERT). "
            "Median (min..max) µs per request. Wall: the request loop alone. CPU: this "
            "process's CPU time for the loop plus its background threads finishing that "
            "loop's rows (MetricsWriter's flush, the floor's consumer, OpenTelemetry's "
            "exporter), so work moved off the request thread is still paid for; the "
            "PostgreSQL server's own work is not in it.",
            table(
                [
                    "variant",
                    "wall µs/request",
                    "wall added",
                    "CPU µs/request",
                    "CPU added",
                    "CPU added ÷ prometheus's",
                ],
                rows,
            ),
            f"Of MetricsMiddleware's CPU added, the writer thread's: {spread(writer_cpu)} "
            f"µs per request (its own CPU clock); the rest, {spread(request_side)} µs, is "
            f"the request thread's, against prometheus_client's {prom_cpu:.2f} µs. "
            f"MetricsWriter in this run: {stats['written']:,} rows written in "
            f"{stats['batches']:,} batches, {stats['dropped_queue_full']:,} dropped, "
            f"{stats['rejected']:,} rejected.",
            f"With the rollups, the CPU per request (all threads) is "
            f"{rollups_ratio:.2f} times that of a writer to a database without them (target: "
            "at most 1.10): the second COPY of each batch, and the background job. "
            f"Counting for Prometheus on the writer thread adds {prom_added:.2f} µs of CPU "
            "per request.",
        ]
    )
