"""``install(app, ...)``: one call adds request recording and the monitoring routes to an app.

(Not named ``install.py``: importing a submodule of that name would replace
the ``mnemo_obs.install`` function with the module.)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import falcon
import falcon.asgi

from . import db
from .collectors import MetricsCollector
from .collectors.summary import REDIS_URL_ENV
from .errors import ConfigurationError
from .logs import LiveLogs
from .middleware import MetricsMiddleware
from .resources import DEFAULT_PREFIX, HealthResource, SummaryResource, resolve_token
from .writer import MetricsWriter

if TYPE_CHECKING:
    from .retention import RetentionScheduler

log = logging.getLogger("mnemo_obs")

DEFAULT_SKIP_PATHS = ("/health", "/metrics")
# The RetentionScheduler arguments retention_options may set (the days and
# the DSN come from install()'s own arguments).
RETENTION_OPTIONS = ("interval", "first_delay", "jitter", "batch_size", "metric_type")


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
    ) -> None:
        self.writer = writer
        self.collector = collector
        self.middleware = middleware
        self.retention = retention
        self.summary_path = summary_path
        self.token_required = token_required
        self.logs = logs

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop the writer, stop retention and live logs, close the connections.

        Returns:
            True when every queued row was written within ``timeout``.
        """
        try:
            flushed = self.writer.close(timeout)
        finally:
            if self.retention is not None:
                self.retention.stop(timeout)
            if self.logs is not None:
                self.logs.close(5.0 if timeout is None else timeout)
            self.collector.close()
        return flushed

    def __enter__(self) -> Installation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    skip_paths: tuple[str, ...] = DEFAULT_SKIP_PATHS,
    skip_prefixes: tuple[str, ...] = (),
    max_queue: int | None = None,
    batch_size: int | None = None,
    flush_interval: float | None = None,
    writers: int | None = None,
    retention_days: int | None = None,
    retention_options: Mapping[str, Any] | None = None,
    cache_ttl: float = MetricsCollector.CACHE_TTL,
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
) -> Installation:
    """Record every request of ``app`` and serve the summary and health routes.

    Adds a :class:`MetricsMiddleware` (through ``app.add_middleware``, which
    Falcon 3.1 and 4 accept at any time, even after the first request) and
    the routes ``{prefix}/summary`` and ``health_path``. The middleware runs
    after the app's own middleware, so their ``process_request`` time is not
    in the latency. Nothing connects here: the writer's thread starts on the
    first row, and the collector connects on the first summary.

    Args:
        app: a ``falcon.App`` (WSGI; ``falcon.asgi.App`` is refused).
        dsn: PostgreSQL DSN of the ``metrics`` table; defaults to
            ``$MNEMO_OBS_DSN``. Apply the schema first (``mnemo-obs migrate``).
        redis_url: the Redis the summary reports on; defaults to
            ``$MNEMO_OBS_REDIS_URL``; unset means none.
        token: bearer token for the summary; defaults to ``$MNEMO_OBS_TOKEN``;
            unset means open. Set one in production: the summary reveals
            host details.
        prefix: where the monitoring routes live (default
            ``/api/monitoring/advanced``).
        health_path: the open health route (default ``/health``); None adds
            none, for an app that has its own.
        skip_paths: paths not recorded (default ``/health``, ``/metrics``).
            The summary and health routes are never recorded, so a dashboard
            polling them does not fill the table with its own requests.
        skip_prefixes: path prefixes not recorded (default none).
        max_queue, batch_size, flush_interval, writers: the
            :class:`MetricsWriter` settings; None keeps its defaults.
        retention_days: when set, delete rows older than this many days,
            once a day, in a background thread (:class:`RetentionScheduler`).
        retention_options: more ``RetentionScheduler`` arguments, among
            ``interval``, ``first_delay``, ``jitter``, ``batch_size`` and
            ``metric_type`` (e.g. ``{"interval": 3600}``); only with
            ``retention_days``.
        cache_ttl: seconds the summary is reused (default 2).
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

    Returns:
        An :class:`Installation`; call its ``close()`` at shutdown to flush.

    Raises:
        ConfigurationError: a bad setting, a missing DSN, an ASGI app, mnemo_obs
            already installed on ``app``, or a route already taken.
    """
    if not isinstance(app, falcon.App):
        raise ConfigurationError(f"install() needs a falcon.App, got {type(app).__name__}")
    if isinstance(app, falcon.asgi.App):
        raise ConfigurationError("install() needs a WSGI falcon.App, not falcon.asgi.App")
    if any(isinstance(m, MetricsMiddleware) for m in getattr(app, "_unprepared_middleware", ())):
        raise ConfigurationError("mnemo_obs is already installed on this app")
    prefix = _check_path("prefix", prefix).rstrip("/")
    summary_path = f"{prefix}/summary"
    if health_path is not None:
        _check_path("health_path", health_path)
    if retention_days is not None and (
        isinstance(retention_days, bool)
        or not isinstance(retention_days, int)
        or retention_days < 1
    ):
        raise ConfigurationError(f"retention_days must be an int >= 1, got {retention_days!r}")
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
    log_paths = LiveLogs.paths(prefix) if logs else ()
    for path in (summary_path, health_path, *log_paths):
        if path is not None:
            _refuse_taken_route(app, path)
    dsn = db.resolve_dsn(dsn)
    resolved_token = resolve_token(token)
    own_paths = (summary_path, *log_paths) + ((health_path,) if health_path else ())
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

    collector = MetricsCollector(dsn, redis_url=redis_url, cache_ttl=cache_ttl)
    writer: MetricsWriter | None = None
    live_logs: LiveLogs | None = None
    try:
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
        writer = MetricsWriter(dsn, **writer_settings)
        middleware = MetricsMiddleware(
            writer,
            skip_paths=tuple(dict.fromkeys((*skip_paths, *own_paths))),
            skip_prefixes=tuple(skip_prefixes),
        )
        retention = (
            _start_retention(dsn, retention_days, retention_options) if retention_days else None
        )
    except BaseException:
        if writer is not None:
            writer.close(0)
        if live_logs is not None:
            live_logs.close(0)
        collector.close()
        raise
    app.add_middleware(middleware)
    app.add_route(summary_path, SummaryResource(collector, writer=writer, token=resolved_token))
    if health_path is not None:
        app.add_route(health_path, HealthResource())
    if live_logs is not None:
        live_logs.add_routes(app, prefix)
        live_logs.attach()
    log.info(
        "mnemo_obs installed: recording to %s, summary at %s%s",
        db.describe(dsn),
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
    )


def _start_retention(dsn: str, days: int, options: dict[str, Any]) -> RetentionScheduler:
    # Imported here: only apps that ask for retention load its module.
    from .retention import RetentionScheduler

    scheduler = RetentionScheduler(dsn=dsn, older_than_days=days, **options)
    scheduler.start()
    return scheduler
