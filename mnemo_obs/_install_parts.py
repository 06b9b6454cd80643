"""install()'s parts: made in order around one writer, then mounted on the app.

:func:`make_parts` makes the Prometheus exporter, the collector, the live
logs, the recording middleware, the sampler and the retention scheduler
for a checked :class:`~mnemo_obs._install_checks.Plan`; when one fails,
those made before it are closed, so a failed :func:`mnemo_obs.install`
leaves no thread or connection behind. :func:`mount` then puts the
middleware first and adds every route. Nothing connects here: the
writer's thread starts on the first row, the collector connects on the
first summary.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import falcon

from . import db
from ._install_checks import Plan
from .collectors import MetricsCollector
from .collectors.summary import REDIS_URL_ENV
from .gauge_routes import add_gauge_route
from .logs import LiveLogs
from .middleware import MetricsMiddleware
from .prometheus import MetricsResource, PrometheusExporter
from .read_routes import add_read_routes
from .resources import HealthResource, SummaryResource, _BearerCheck
from .retention import RetentionScheduler
from .sampler import Sampler
from .writer import MetricsWriter

log = logging.getLogger("mnemo_obs")


@dataclass(frozen=True)
class Parts:
    """What :func:`make_parts` made: for :func:`mount`, then the Installation."""

    writer: MetricsWriter
    exporter: PrometheusExporter | None
    collector: MetricsCollector
    middleware: MetricsMiddleware
    logs: LiveLogs | None
    sampler: Sampler | None
    retention: RetentionScheduler | None


def make_writer(
    dsn: str,
    *,
    create_schema: bool,
    service: str | None,
    max_queue: int | None,
    batch_size: int | None,
    flush_interval: float | None,
    writers: int | None,
) -> MetricsWriter:
    """The :class:`MetricsWriter`; a setting left None keeps its default."""
    settings: dict[str, Any] = {
        key: value
        for key, value in (
            ("max_queue", max_queue),
            ("batch_size", batch_size),
            ("flush_interval", flush_interval),
            ("writers", writers),
        )
        if value is not None
    }
    return MetricsWriter(dsn, create_schema=create_schema, service=service, **settings)


def make_parts(
    plan: Plan,
    writer: MetricsWriter,
    *,
    redis_url: str | None,
    cache_ttl: float,
    summary_timeout: float,
    read_dsn: str | None,
    replica_max_lag: float,
    replica_fallback: bool,
    token: str | None,
    log_level: str | int,
    log_loggers: Iterable[str],
    log_buffer_size: int,
    log_redis_url: str | None,
    log_redis_key: str,
    log_token: str | None,
    log_max_streams: int,
    log_max_stream_seconds: float,
    log_heartbeat_seconds: float,
) -> Parts:
    """Make every part around ``writer``, in order, and start the retention scheduler.

    When a part fails, the sampler, the writer, the live logs and the
    collector (those made) are closed, in that order, and the error goes
    on; the exporter only observes the writer.
    """
    # Before anything else is made: a missing prometheus_client stops here.
    exporter = PrometheusExporter(writer) if plan.prometheus_path is not None else None
    collector: MetricsCollector | None = None
    live_logs: LiveLogs | None = None
    sampler: Sampler | None = None
    try:
        collector = MetricsCollector(
            plan.dsn,
            redis_url=redis_url,
            cache_ttl=cache_ttl,
            timeout=summary_timeout,
            writer=writer,
            read_dsn=read_dsn,
            replica_max_lag=replica_max_lag,
            replica_fallback=replica_fallback,
        )
        if plan.logs:
            if log_redis_url is None:
                log_redis_url = os.environ.get(REDIS_URL_ENV) if redis_url is None else redis_url
            live_logs = LiveLogs(
                level=log_level,
                loggers=log_loggers,
                buffer_size=log_buffer_size,
                redis_url=log_redis_url,
                redis_key=log_redis_key,
                token=log_token if log_token is not None else token,
                max_streams=log_max_streams,
                max_stream_seconds=log_max_stream_seconds,
                heartbeat_seconds=log_heartbeat_seconds,
            )
        middleware = MetricsMiddleware(
            writer,
            skip_paths=tuple(dict.fromkeys((*plan.skip_paths, *plan.own_paths))),
            skip_prefixes=tuple(plan.skip_prefixes),
        )
        if plan.sample_interval is not None:
            sampler = Sampler(
                writer, dsn=plan.dsn, redis_url=redis_url, interval=plan.sample_interval
            )
        retention = (
            start_retention(plan.dsn, plan.retention_days, plan.retention_options)
            if plan.retention_days
            else None
        )
    except BaseException:
        if sampler is not None:
            sampler.stop(0)
        writer.close(0)
        if live_logs is not None:
            live_logs.close(0)
        if collector is not None:
            collector.close()
        raise
    return Parts(
        writer=writer,
        exporter=exporter,
        collector=collector,
        middleware=middleware,
        logs=live_logs,
        sampler=sampler,
        retention=retention,
    )


def start_retention(dsn: str, days: float, options: dict[str, Any]) -> RetentionScheduler:
    """A :class:`RetentionScheduler` deleting rows older than ``days``, started."""
    scheduler = RetentionScheduler(dsn=dsn, older_than_days=days, **options)
    scheduler.start()
    return scheduler


def mount(app: falcon.App, plan: Plan, parts: Parts) -> None:
    """Put the middleware first, then add every route and attach the log handler."""
    add_first(app, parts.middleware)
    app.add_route(
        plan.summary_path, SummaryResource(parts.collector, writer=parts.writer, token=plan.token)
    )
    add_read_routes(app, plan.prefix, parts.collector, plan.token)
    if parts.exporter is not None and plan.prometheus_path is not None:
        app.add_route(
            plan.prometheus_path, MetricsResource(parts.exporter, _BearerCheck(plan.token))
        )
    add_gauge_route(app, plan.prefix, parts.collector, plan.token)
    if plan.health_path is not None:
        app.add_route(plan.health_path, HealthResource())
    if parts.logs is not None:
        parts.logs.add_routes(app, plan.prefix)
        parts.logs.attach()
    if plan.dashboard is not None:
        plan.dashboard.add_routes(app)


def add_first(app: falcon.App, middleware: MetricsMiddleware) -> None:
    """Put ``middleware`` first, so it sees every request and its process_response runs last.

    First, a request that the app's own middleware refuses (a 401 from an
    auth middleware, a 429 from a rate limiter) still gets its row and its
    X-Trace-ID, and X-Trace-ID is added to Access-Control-Expose-Headers
    after a CORS middleware has set it. Falcon has no public way to insert
    a middleware; its list is re-prepared by ``add_middleware([])``.
    """
    unprepared = getattr(app, "_unprepared_middleware", None)
    if isinstance(unprepared, list):
        unprepared.insert(0, middleware)
        app.add_middleware([])
    else:  # a Falcon we do not know: last is still better than nothing
        log.warning("mnemo_obs: cannot put its middleware first on this Falcon; appended")
        app.add_middleware(middleware)


def log_installed(plan: Plan, parts: Parts) -> None:
    """Say where the rows go, where the reads come from and where the summary is."""
    replica = parts.collector.replica
    log.info(
        "mnemo_obs installed: recording to %s%s, summary at %s%s",
        db.describe(plan.dsn),
        f", reading from the replica at {replica.where}" if replica is not None else "",
        plan.summary_path,
        " (token required)" if plan.token else "",
    )
