"""``install(app, ...)``: one call adds request recording and the monitoring routes to an app.

Here: :func:`install`, a short sequence of steps, and :class:`Installation`,
what it returns. The steps: the checks in :mod:`._install_checks`, making and
mounting the parts in :mod:`._install_parts`. (Not named ``install.py``: that
submodule would replace the ``mnemo_obs.install`` function once imported.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import falcon

from ._install_checks import RETENTION_OPTIONS as RETENTION_OPTIONS
from ._install_checks import plan_install
from ._install_parts import log_installed, make_parts, make_writer, mount
from ._support import INSTALLATIONS
from .collectors import MetricsCollector
from .collectors.replica import Replica
from .dashboard import DEFAULT_PATH as DEFAULT_DASHBOARD_PATH
from .logs import LiveLogs
from .middleware import MetricsMiddleware
from .resources import DEFAULT_PREFIX
from .retention import RetentionScheduler
from .sampler import Sampler
from .writer import MetricsWriter

DEFAULT_SKIP_PATHS = ("/health", "/metrics")


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
    plan = plan_install(
        app,
        dsn=dsn,
        token=token,
        prefix=prefix,
        health_path=health_path,
        dashboard_path=dashboard_path,
        prometheus_path=prometheus_path,
        skip_paths=skip_paths,
        skip_prefixes=skip_prefixes,
        retention_days=retention_days,
        retention_options=retention_options,
        create_schema=create_schema,
        logs=logs,
        sample_interval=sample_interval,
    )
    writer = make_writer(
        plan.dsn,
        create_schema=create_schema,
        service=service,
        max_queue=max_queue,
        batch_size=batch_size,
        flush_interval=flush_interval,
        writers=writers,
    )
    parts = make_parts(
        plan,
        writer,
        redis_url=redis_url,
        cache_ttl=cache_ttl,
        summary_timeout=summary_timeout,
        read_dsn=read_dsn,
        replica_max_lag=replica_max_lag,
        replica_fallback=replica_fallback,
        token=token,
        log_level=log_level,
        log_loggers=log_loggers,
        log_buffer_size=log_buffer_size,
        log_redis_url=log_redis_url,
        log_redis_key=log_redis_key,
        log_token=log_token,
        log_max_streams=log_max_streams,
        log_max_stream_seconds=log_max_stream_seconds,
        log_heartbeat_seconds=log_heartbeat_seconds,
    )
    mount(app, plan, parts)
    if parts.sampler is not None:
        parts.sampler.start()
    log_installed(plan, parts)
    return Installation(
        writer=writer,
        collector=parts.collector,
        middleware=parts.middleware,
        retention=parts.retention,
        summary_path=plan.summary_path,
        token_required=plan.token is not None,
        logs=parts.logs,
        dashboard_path=plan.dashboard_path,
        routes=plan.own_paths,
        sampler=parts.sampler,
    )
