"""Prometheus exposition: request and writer metrics, counted on the writer thread.

``install(app, prometheus_path="/metrics")`` serves the standard text format
through prometheus_client (the extra ``mnemo-obs[prometheus]``):

- ``mnemo_obs_requests_total`` and ``mnemo_obs_request_duration_seconds``
  (a histogram), labelled by service, endpoint (the route template), method
  and status;
- the writer's books: ``mnemo_obs_rows_written_total``,
  ``mnemo_obs_rows_dropped_total{reason}``, ``mnemo_obs_rows_rejected_total``
  and ``mnemo_obs_queue_depth``.

They are counted on the writer thread, from each batch it takes: the
request path does nothing more. Under several processes (gunicorn), each
counts its own; with ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client's
multiprocess mode adds them up at each scrape, with its documented limits.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from ._copy import _status_code
from .errors import ConfigurationError

if TYPE_CHECKING:
    import falcon

    from .writer import MetricsWriter

LABELS = ("service", "endpoint", "method", "status")
# Seconds: from a fast cached answer to a slow report.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DROPS = ("queue_full", "after_retries", "closed")


class PrometheusExporter:
    """Feed prometheus_client metrics from a writer's batches, and serve them.

    Args:
        writer: the writer whose batches are counted (the exporter adds
            itself as an observer of it).
        registry: where the metrics go (default: a registry of its own).

    Raises:
        ConfigurationError: prometheus_client is not installed.
    """

    def __init__(self, writer: MetricsWriter, *, registry: Any = None) -> None:
        try:
            import prometheus_client
        except ImportError:
            raise ConfigurationError(
                "prometheus_path needs prometheus_client: pip install 'mnemo-obs[prometheus]'"
            ) from None
        self._client = prometheus_client
        self._multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self._writer = writer
        self._service = writer._service
        self._requests = prometheus_client.Counter(
            "mnemo_obs_requests", "Requests answered.", LABELS, registry=self.registry
        )
        self._duration = prometheus_client.Histogram(
            "mnemo_obs_request_duration_seconds",
            "Time to answer a request (head and buffered body ready).",
            LABELS,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._written = prometheus_client.Counter(
            "mnemo_obs_rows_written", "Rows written to PostgreSQL.", registry=self.registry
        )
        self._rejected = prometheus_client.Counter(
            "mnemo_obs_rows_rejected", "Rows the database refused.", registry=self.registry
        )
        self._dropped = prometheus_client.Counter(
            "mnemo_obs_rows_dropped", "Rows dropped, by reason.", ["reason"], registry=self.registry
        )
        self._depth = prometheus_client.Gauge(
            "mnemo_obs_queue_depth",
            "Rows waiting to be written.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._children: dict[tuple[Any, str, str], tuple[Any, Any]] = {}
        self._sync_lock = threading.Lock()  # the writer thread and a scrape both sync
        self._seen = {"written": 0, "rejected": 0, **{reason: 0 for reason in _DROPS}}
        writer._observers.append(self.observe)

    def observe(self, rows: list[tuple[Any, ...]]) -> None:
        """Count a batch's requests, and bring the writer's counters up to date."""
        children = self._children
        for row in rows:
            if len(row) != 6:  # a row of record(): not a request
                continue
            _start, endpoint, latency_ms, method, status, _trace = row
            key = (status, endpoint, method)
            pair = children.get(key)
            if pair is None:
                if len(children) > 10_000:  # scanners' methods: bound the label sets
                    children.clear()
                labels = (self._service, endpoint, method, str(_status_code(status)))
                pair = children[key] = (
                    self._requests.labels(*labels),
                    self._duration.labels(*labels),
                )
            pair[0].inc()
            pair[1].observe(latency_ms / 1000.0)
        self.sync()

    def sync(self) -> None:
        """Move the writer's books into the counters (their increase since the last sync)."""
        with self._sync_lock:
            self._sync()

    def _sync(self) -> None:
        stats = self._writer.stats()
        now = {
            "written": stats["written"],
            "rejected": stats["rejected"],
            **{reason: stats[f"dropped_{reason}"] for reason in _DROPS},
        }
        for name, value in now.items():
            step = int(value) - self._seen[name]  # type: ignore[call-overload]
            if step > 0:
                if name == "written":
                    self._written.inc(step)
                elif name == "rejected":
                    self._rejected.inc(step)
                else:
                    self._dropped.labels(name).inc(step)
            self._seen[name] = int(value)  # type: ignore[call-overload]
        self._depth.set(stats["queue_depth"])  # type: ignore[arg-type]

    def exposition(self) -> tuple[bytes, str]:
        """The text format now, and its content type."""
        self.sync()
        registry = self.registry
        if self._multiprocess:
            from prometheus_client import multiprocess

            registry = self._client.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return self._client.generate_latest(registry), self._client.CONTENT_TYPE_LATEST


class MetricsResource:
    """``GET {prometheus_path}``: the exposition, behind the summary's token."""

    def __init__(self, exporter: PrometheusExporter, check: Any) -> None:
        self._exporter = exporter
        self._check = check

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the metrics in Prometheus's text format."""
        self._check(req)
        body, content_type = self._exporter.exposition()
        resp.data = body
        resp.content_type = content_type
        resp.cache_control = ["no-store"]
