"""``install(app, ...)``: one call adds request recording and the monitoring routes to an app.

(Not named ``install.py``: importing a submodule of that name would replace
the ``mnemo_obs.install`` function with the module.)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import falcon
import falcon.asgi

from . import db
from ._guard import paths
from ._support import INSTALLATIONS
from .collectors import MetricsCollector
from .collectors.replica import Replica
from .collectors.summary import REDIS_URL_ENV
from .dashboard import DEFAULT_PATH as DEFAULT_DASHBOARD_PATH
from .dashboard import Dashboard
from .errors import ConfigurationError
from .gauge_routes import ROUTE as GAUGE_ROUTE
from .gauge_routes import add_gauge_route
from .logs import LiveLogs
from .middleware import MetricsMiddleware
from .prometheus import MetricsResource, PrometheusExporter
from .read_routes import ROUTES, add_read_routes
from .resources import DEFAULT_PREFIX, HealthResource, SummaryResource, _BearerCheck, resolve_token
from .retention import RetentionScheduler
from .retention._purge import MAX_DAYS, _number
from .sampler import Sampler
from .sampler.sampler import check_interval
from .writer import MetricsWriter

log = logging.getLogger("mnemo_obs")

DEFAULT_SKIP_PATHS = ("/health", "/metrics")
# The RetentionScheduler arguments retention_options may set (the days and
# the DSN come from install()'s own arguments).
RETENTION_OPTIONS = (
    "interval",
    "first_delay",
    "jitter",
    "batch_size",
    "metric_type",
    "lock_timeout",
    "rollup_days",
)


class Installation:
    """What :func:`install` set up; :meth:`close` stops it all (flushing the writer first).

    Attributes:
        writer: the :class:`MetricsWriter` that stores one row per request.
        collector: the :class:`MetricsCollector` behind the summary.
        middleware: the :class:`MetricsMiddleware` added to the app.
        retention: the :class:`RetentionScheduler`, or None without ``retention_days``.
        summary_path: where the summary is served.
        token_required: whether the summary asks for a bearer token.
        logs: the :class:`~mnemo_obs.logs.LiveLogs` behind the log routes,
            or None with ``logs=False``.
        dashboard_path: where the dashboard page is served, or None with
            ``dashboard_path=None``.
        routes: every path served (the summary, the read routes, the logs,
            health, Prometheus, the dashboard page; not its files).
        sampler: the :class:`~mnemo_obs.sampler.Sampler` that records the
            infrastructure gauges and writer health, or None with
            ``sample_interval=None``.
    """

    def __init__(
        self,
        *,
        writer: MetricsWriter,
        collector: MetricsCollector,
        middleware: MetricsMiddleware,
        retention: RetentionScheduler | None,
        summary_path: str,
        token_required: bool,
        logs: LiveLogs | None = None,
        dashboard_path: str | None = None,
        routes: tuple[str, ...] = (),
        sampler: Sampler | None = None,
    ) -> None:
        self.writer = writer
        self.collector = collector
        self.middleware = middleware
        self.retention = retention
        self.summary_path = summary_path
        self.token_required = token_required
        self.logs = logs
        self.dashboard_path = dashboard_path
        self.routes = routes
        self.sampler = sampler
        INSTALLATIONS.add(self)  # for mnemo_obs.serve(): closed at SIGTERM

    def close(self, timeout: float | None = None) -> bool:
        """Stop the sampler, flush and stop the writer, stop retention and live logs, close.

        Everything shares one deadline, ``timeout`` seconds from the call
        (None: the writer's ``shutdown_timeout``, 5 s): a purge blocked on a
        lock is cancelled, and a server that stopped answering is left
        behind, never waited on past it.

        Returns:
            True when every queued row was written within ``timeout``.
        """
        if timeout is None:
            timeout = self.writer._shutdown_timeout
        deadline = time.monotonic() + timeout
        if self.sampler is not None:
            # First: its last rows go through the writer, which is still open.
            self.sampler.stop(timeout)
        try:
            flushed = self.writer.close(max(0.0, deadline - time.monotonic()))
        finally:
            if self.retention is not None:
                self.retention.stop(max(0.0, deadline - time.monotonic()))
            if self.logs is not None:
                self.logs.close(max(0.0, deadline - time.monotonic()))
            self.collector.close()
        return flushed

    def __enter__(self) -> Installation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _check_app(app: object) -> None:
    """Refuse what is not a WSGI Falcon app, saying what to use instead."""
    if isinstance(app, falcon.App) and not isinstance(app, falcon.asgi.App):
        return
    if isinstance(app, falcon.asgi.App):
        raise ConfigurationError("install() needs a WSGI falcon.App, not falcon.asgi.App")
    kind = type(app)
    name = f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"
    hint = (
        "wrap it with mnemo_obs.MetricsWSGIMiddleware instead (README: Any WSGI app)"
        if callable(app)
        else "pass the falcon.App itself"
    )
    raise ConfigurationError(f"install() is for Falcon apps, got a {name}: {hint}")


def _add_first(app: falcon.App, middleware: MetricsMiddleware) -> None:
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


def _check_path(name: str, path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "{" in path:
        raise ConfigurationError(f"{name} must be a path starting with '/', got {path!r}")
    return path


def _refuse_taken_route(app: falcon.App, path: str) -> None:
    """Refuse to replace a route the app already has at exactly ``path``."""
    router = getattr(app, "_router", None)
    found = router.find(path) if router is not None else None
    if found is not None and found[3] == path:
        raise ConfigurationError(
            f"the app already has a route at {path!r}: pass another path (or None for "
            "health_path) so install() does not replace it"
        )


def install(
    app: falcon.App,
    *,
    dsn: str | None = None,
    redis_url: str | None = None,
    token: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    health_path: str | None = "/health",
    dashboard_path: str | None = DEFAULT_DASHBOARD_PATH,
    skip_paths: tuple[str, ...] = DEFAULT_SKIP_PATHS,
    skip_prefixes: tuple[str, ...] = (),
    max_queue: int | None = None,
    batch_size: int | None = None,
    flush_interval: float | None = None,
    writers: int | None = None,
    retention_days: int | None = None,
    retention_options: Mapping[str, Any] | None = None,
    cache_ttl: float = MetricsCollector.CACHE_TTL,
    summary_timeout: float = MetricsCollector.TIMEOUT,
    create_schema: bool = False,
    service: str | None = None,
    read_dsn: str | None = None,
    replica_max_lag: float = Replica.MAX_LAG,
    replica_fallback: bool = True,
    prometheus_path: str | None = None,
    logs: bool = True,
    log_level: str | int = "INFO",
    log_loggers: Iterable[str] = ("",),
    log_buffer_size: int = 5000,
    log_redis_url: str | None = None,
    log_redis_key: str = "mnemo_obs:logs",
    log_token: str | None = None,
    log_max_streams: int = LiveLogs.MAX_STREAMS,
    log_max_stream_seconds: float = LiveLogs.MAX_STREAM_SECONDS,
    log_heartbeat_seconds: float = LiveLogs.HEARTBEAT_SECONDS,
    sample_interval: float | None = Sampler.INTERVAL,
) -> Installation:
    """Record every request of ``app`` and serve the summary and health routes.

    Adds a :class:`MetricsMiddleware` (through ``app.add_middleware``, which
    Falcon 3.1 and 4 accept at any time, even after the first request) and
    the routes ``{prefix}/summary`` and ``health_path``. The middleware goes
    first, before the app's own: it sees every request, including those
    the app's middleware refuses, and the latency includes their time.
    Nothing connects here: the writer's thread starts on the
    first row, and the collector connects on the first summary.

    Args:
        app: a ``falcon.App`` (WSGI; ``falcon.asgi.App`` is refused).
        dsn: PostgreSQL DSN of the ``metrics`` table; defaults to
            ``$MNEMO_OBS_DSN``. Apply the schema first (``mnemo-obs migrate``),
            or pass ``create_schema=True``.
        redis_url: the Redis the summary reports on; defaults to
            ``$MNEMO_OBS_REDIS_URL``; unset means none.
        token: bearer token for the summary; defaults to ``$MNEMO_OBS_TOKEN``;
            unset means open. Set one in production: the summary reveals
            host details.
        prefix: where the monitoring routes live (default
            ``/api/monitoring/advanced``).
        health_path: the open health route (default ``/health``); None adds
            none, for an app that has its own.
        dashboard_path: where the dashboard page is served (default
            ``/monitoring``), its files under ``{dashboard_path}/static/``;
            None serves none. The page holds no data and is open; its
            calls to the JSON routes carry the token.
        skip_paths: paths not recorded (default ``/health``, ``/metrics``).
            The summary and health routes are never recorded, so a dashboard
            polling them does not fill the table with its own requests.
        skip_prefixes: path prefixes not recorded (default none).
        max_queue, batch_size, flush_interval, writers: the
            :class:`MetricsWriter` settings; None keeps its defaults.
        retention_days: when set, delete rows older than this many days
            (fractions allowed, as ``mnemo-obs purge --days``), once a day,
            in a background thread (:class:`RetentionScheduler`).
        retention_options: more ``RetentionScheduler`` arguments, among
            ``interval``, ``first_delay``, ``jitter``, ``batch_size`` and
            ``metric_type`` (e.g. ``{"interval": 3600}``); only with
            ``retention_days``.
        cache_ttl: seconds the summary is reused (default 2).
        summary_timeout: seconds the summary waits for PostgreSQL at most
            (default 5); past it, its api and postgres sections report the
            timeout, whatever the server does.
        create_schema: apply the schema at the first connection (idempotent,
            safe from several processes at once) instead of expecting
            ``mnemo-obs migrate`` to have run.
        service: this app's name, when several apps share one table
            (default ``$MNEMO_OBS_SERVICE``, else none): in every row, and a
            filter of every read.
        read_dsn: a streaming replica of the database (a standby made with
            ``pg_basebackup -R``, say) for the summary's api section and the
            read routes; defaults to ``$MNEMO_OBS_READ_DSN``; unset or ``""``
            reads from the primary. Writes, retention, rollup upkeep and the
            postgres section stay on ``dsn``.
        replica_max_lag: seconds behind the primary past which the replica
            is set aside (default 30).
        replica_fallback: read from the primary while the replica is down
            or lagging (default True); False makes those reads fail instead.
        prometheus_path: serve Prometheus's text format here (e.g.
            ``"/metrics"``; default None: not served), behind the summary's
            token; needs ``pip install 'mnemo-obs[prometheus]'``.
        logs: collect log records and serve them at ``{prefix}/logs`` and
            ``{prefix}/logs/stream`` (default True); False adds neither
            the handler nor the routes.
        log_level: the lowest level collected (default INFO).
        log_loggers: loggers the handler goes on (default ``("",)``: the root).
        log_buffer_size: records kept in memory per process (default 5,000).
        log_redis_url: Redis Stream shared by every process; defaults to
            ``redis_url`` (then ``$MNEMO_OBS_REDIS_URL``); ``""`` for none.
        log_redis_key: the stream's key (default ``mnemo_obs:logs``).
        log_token: the token the log routes need; defaults to ``token``
            (then ``$MNEMO_OBS_TOKEN``). Without any they answer 403.
        log_max_streams: streams open at once per process (default 2).
        log_max_stream_seconds: a stream's lifetime (default 60).
        log_heartbeat_seconds: a ping after this long without a write (default 2).
        sample_interval: seconds between samples of the Redis, PostgreSQL and
            host gauges and of the writer's health, into the ``metrics``
            table (default 60; from 0.1 to 86,400); None for none. See
            :class:`~mnemo_obs.sampler.Sampler`.

    Returns:
        An :class:`Installation`; call its ``close()`` at shutdown to flush.

    Raises:
        ConfigurationError: a bad setting, a missing DSN, an ASGI app, mnemo_obs
            already installed on ``app``, or a route already taken.
    """
    _check_app(app)
    if any(isinstance(m, MetricsMiddleware) for m in getattr(app, "_unprepared_middleware", ())):
        raise ConfigurationError("mnemo_obs is already installed on this app")
    skip_paths = paths("skip_paths", skip_paths)
    skip_prefixes = paths("skip_prefixes", skip_prefixes)
    prefix = _check_path("prefix", prefix).rstrip("/")
    summary_path = f"{prefix}/summary"
    if health_path is not None:
        _check_path("health_path", health_path)
    if retention_days is not None:
        # What `mnemo-obs purge --days` accepts: fractions too.
        retention_days = _number("retention_days", retention_days, low=0, high=MAX_DAYS)
    if not isinstance(create_schema, bool):
        raise ConfigurationError(f"create_schema must be True or False, got {create_schema!r}")
    retention_options = dict(retention_options or {})
    if retention_options and retention_days is None:
        raise ConfigurationError("retention_options needs retention_days")
    unknown = sorted(set(retention_options) - set(RETENTION_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"retention_options: unknown {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(RETENTION_OPTIONS)}"
        )
    if not isinstance(logs, bool):
        raise ConfigurationError(f"logs must be True or False, not {logs!r}")
    sample_interval = check_interval("sample_interval", sample_interval)
    log_paths = LiveLogs.paths(prefix) if logs else ()
    read_paths = tuple(f"{prefix}/{name}" for name in (*ROUTES, GAUGE_ROUTE))
    if prometheus_path is not None:
        _check_path("prometheus_path", prometheus_path)
        read_paths += (prometheus_path,)
    for path in (summary_path, health_path, *read_paths, *log_paths):
        if path is not None:
            _refuse_taken_route(app, path)
    dashboard = None
    if dashboard_path is not None:
        dashboard = Dashboard(
            dashboard_path,
            api_prefix=prefix or "/",  # "" when the routes sit at the root of a mount
            logs_stream=log_paths[1] if log_paths else None,
            reserved=(summary_path, health_path, *read_paths, *log_paths),
        )
        for path in dashboard.routes:
            _refuse_taken_route(app, path)
    dsn = db.resolve_dsn(dsn)
    resolved_token = resolve_token(token)
    own_paths = (summary_path, *read_paths, *log_paths) + ((health_path,) if health_path else ())
    if dashboard is not None:  # its polling and its files are not the app's traffic
        own_paths += (dashboard.path,)
        skip_prefixes += (dashboard.static_prefix,)
    writer_settings: dict[str, Any] = {
        key: value
        for key, value in (
            ("max_queue", max_queue),
            ("batch_size", batch_size),
            ("flush_interval", flush_interval),
            ("writers", writers),
        )
        if value is not None
    }

    writer = MetricsWriter(dsn, create_schema=create_schema, service=service, **writer_settings)
    # Before anything else is made: a missing prometheus_client stops here.
    exporter = PrometheusExporter(writer) if prometheus_path is not None else None
    collector: MetricsCollector | None = None
    live_logs: LiveLogs | None = None
    sampler: Sampler | None = None
    try:
        collector = MetricsCollector(
            dsn,
            redis_url=redis_url,
            cache_ttl=cache_ttl,
            timeout=summary_timeout,
            writer=writer,
            read_dsn=read_dsn,
            replica_max_lag=replica_max_lag,
            replica_fallback=replica_fallback,
        )
        if logs:
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
            skip_paths=tuple(dict.fromkeys((*skip_paths, *own_paths))),
            skip_prefixes=tuple(skip_prefixes),
        )
        if sample_interval is not None:
            sampler = Sampler(writer, dsn=dsn, redis_url=redis_url, interval=sample_interval)
        retention = (
            _start_retention(dsn, retention_days, retention_options) if retention_days else None
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
    _add_first(app, middleware)
    app.add_route(summary_path, SummaryResource(collector, writer=writer, token=resolved_token))
    add_read_routes(app, prefix, collector, resolved_token)
    if exporter is not None and prometheus_path is not None:
        app.add_route(prometheus_path, MetricsResource(exporter, _BearerCheck(resolved_token)))
    add_gauge_route(app, prefix, collector, resolved_token)
    if health_path is not None:
        app.add_route(health_path, HealthResource())
    if live_logs is not None:
        live_logs.add_routes(app, prefix)
        live_logs.attach()
    if dashboard is not None:
        dashboard.add_routes(app)
    replica = collector.replica
    if sampler is not None:
        sampler.start()
    log.info(
        "mnemo_obs installed: recording to %s%s, summary at %s%s",
        db.describe(dsn),
        f", reading from the replica at {replica.where}" if replica is not None else "",
        summary_path,
        " (token required)" if resolved_token else "",
    )
    return Installation(
        writer=writer,
        collector=collector,
        middleware=middleware,
        retention=retention,
        summary_path=summary_path,
        token_required=resolved_token is not None,
        logs=live_logs,
        dashboard_path=dashboard.path if dashboard is not None else None,
        routes=own_paths + ((dashboard.path,) if dashboard is not None else ()),
        sampler=sampler,
    )


def _start_retention(dsn: str, days: float, options: dict[str, Any]) -> RetentionScheduler:
    scheduler = RetentionScheduler(dsn=dsn, older_than_days=days, **options)
    scheduler.start()
    return scheduler
