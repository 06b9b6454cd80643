"""install()'s arguments checked, and its routes planned, before anything is made.

:func:`plan_install` turns the arguments of :func:`mnemo_obs.install` into a
:class:`Plan`: every value checked, the DSN and token resolved, every
route it will add listed and refused when the app already has it. A bad
call stops here with a ConfigurationError naming the argument, before a
writer, a thread or a route exists. The checks run in a fixed order, so a
call with two bad arguments always names the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import falcon
import falcon.asgi

from . import db
from ._guard import paths
from .dashboard import Dashboard
from .errors import ConfigurationError
from .gauge_routes import ROUTE as GAUGE_ROUTE
from .logs import LiveLogs
from .middleware import MetricsMiddleware
from .read_routes import ROUTES
from .resources import resolve_token
from .retention._purge import MAX_DAYS, _number
from .sampler.sampler import check_interval

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


@dataclass(frozen=True)
class Plan:
    """install()'s arguments once checked: the connection, the routes, the settings.

    Attributes:
        dsn: the resolved DSN of the ``metrics`` table.
        token: the resolved bearer token of the summary, or None (open).
        prefix: the monitoring routes' prefix, without a trailing ``/``.
        summary_path: ``{prefix}/summary``.
        health_path: the health route, or None.
        prometheus_path: the Prometheus route, or None.
        read_paths: the read routes, the gauges route, then Prometheus's.
        log_paths: the two live log routes, or none with ``logs=False``.
        dashboard: the :class:`Dashboard` to serve, or None.
        own_paths: the summary, read, log and health routes and the dashboard
            page: never recorded.
        skip_paths, skip_prefixes: the caller's skip lists (the second with
            the dashboard's files).
        logs: whether to collect and serve the logs.
        retention_days, retention_options: the :class:`RetentionScheduler`'s.
        sample_interval: the :class:`Sampler`'s interval, or None.
    """

    dsn: str
    token: str | None
    prefix: str
    summary_path: str
    health_path: str | None
    prometheus_path: str | None
    read_paths: tuple[str, ...]
    log_paths: tuple[str, ...]
    dashboard: Dashboard | None
    own_paths: tuple[str, ...]
    skip_paths: tuple[str, ...]
    skip_prefixes: tuple[str, ...]
    logs: bool
    retention_days: float | None
    retention_options: dict[str, Any]
    sample_interval: float | None

    @property
    def dashboard_path(self) -> str | None:
        """Where the dashboard page is served, or None."""
        return self.dashboard.path if self.dashboard is not None else None


def plan_install(
    app: falcon.App,
    *,
    dsn: str | None,
    token: str | None,
    prefix: str,
    health_path: str | None,
    dashboard_path: str | None,
    prometheus_path: str | None,
    skip_paths: tuple[str, ...],
    skip_prefixes: tuple[str, ...],
    retention_days: float | None,
    retention_options: Mapping[str, Any] | None,
    create_schema: bool,
    logs: bool,
    sample_interval: float | None,
) -> Plan:
    """Check install()'s arguments against ``app``, in order; what to make and mount.

    Raises:
        ConfigurationError: the first bad argument, a missing DSN, an ASGI
            or non-Falcon app, mnemo_obs already on it, or a route taken.
    """
    check_app(app)
    skip_paths = paths("skip_paths", skip_paths)
    skip_prefixes = paths("skip_prefixes", skip_prefixes)
    prefix = check_path("prefix", prefix).rstrip("/")
    summary_path = f"{prefix}/summary"
    if health_path is not None:
        check_path("health_path", health_path)
    retention_days, options, sample_interval = check_settings(
        retention_days=retention_days,
        retention_options=retention_options,
        create_schema=create_schema,
        logs=logs,
        sample_interval=sample_interval,
    )
    log_paths = LiveLogs.paths(prefix) if logs else ()
    read_paths = tuple(f"{prefix}/{name}" for name in (*ROUTES, GAUGE_ROUTE))
    if prometheus_path is not None:
        check_path("prometheus_path", prometheus_path)
        read_paths += (prometheus_path,)
    monitoring = (summary_path, health_path, *read_paths, *log_paths)
    for path in monitoring:
        if path is not None:
            refuse_taken_route(app, path)
    dashboard = None
    if dashboard_path is not None:
        dashboard = Dashboard(
            dashboard_path,
            api_prefix=prefix or "/",  # "" when the routes sit at the root of a mount
            logs_stream=log_paths[1] if log_paths else None,
            reserved=monitoring,
        )
        for path in dashboard.routes:
            refuse_taken_route(app, path)
    dsn = db.resolve_dsn(dsn)
    resolved_token = resolve_token(token)
    own_paths = (summary_path, *read_paths, *log_paths) + ((health_path,) if health_path else ())
    if dashboard is not None:  # its polling and its files are not the app's traffic
        own_paths += (dashboard.path,)
        skip_prefixes += (dashboard.static_prefix,)
    return Plan(
        dsn=dsn,
        token=resolved_token,
        prefix=prefix,
        summary_path=summary_path,
        health_path=health_path,
        prometheus_path=prometheus_path,
        read_paths=read_paths,
        log_paths=log_paths,
        dashboard=dashboard,
        own_paths=own_paths,
        skip_paths=skip_paths,
        skip_prefixes=skip_prefixes,
        logs=logs,
        retention_days=retention_days,
        retention_options=options,
        sample_interval=sample_interval,
    )


def check_app(app: object) -> None:
    """Refuse what is not a WSGI Falcon app (saying what to use instead), or has mnemo_obs."""
    if isinstance(app, falcon.asgi.App):
        raise ConfigurationError("install() needs a WSGI falcon.App, not falcon.asgi.App")
    if not isinstance(app, falcon.App):
        kind = type(app)
        name = f"{kind.__module__.split('.')[0]}.{kind.__qualname__}"
        hint = (
            "wrap it with mnemo_obs.MetricsWSGIMiddleware instead (README: Any WSGI app)"
            if callable(app)
            else "pass the falcon.App itself"
        )
        raise ConfigurationError(f"install() is for Falcon apps, got a {name}: {hint}")
    if any(isinstance(m, MetricsMiddleware) for m in getattr(app, "_unprepared_middleware", ())):
        raise ConfigurationError("mnemo_obs is already installed on this app")


def check_path(name: str, path: str) -> str:
    """``path``, when it is a str starting with ``/`` and no route template."""
    if not isinstance(path, str) or not path.startswith("/") or "{" in path:
        raise ConfigurationError(f"{name} must be a path starting with '/', got {path!r}")
    return path


def refuse_taken_route(app: falcon.App, path: str) -> None:
    """Refuse to replace a route the app already has at exactly ``path``."""
    router = getattr(app, "_router", None)
    found = router.find(path) if router is not None else None
    if found is not None and found[3] == path:
        raise ConfigurationError(
            f"the app already has a route at {path!r}: pass another path (or None for "
            "health_path) so install() does not replace it"
        )


def check_settings(
    *,
    retention_days: float | None,
    retention_options: Mapping[str, Any] | None,
    create_schema: bool,
    logs: bool,
    sample_interval: float | None,
) -> tuple[float | None, dict[str, Any], float | None]:
    """The retention days and options and the sample interval, checked; the flags too.

    Raises:
        ConfigurationError: the first bad one, naming it.
    """
    if retention_days is not None:
        # What `mnemo-obs purge --days` accepts: fractions too.
        retention_days = _number("retention_days", retention_days, low=0, high=MAX_DAYS)
    if not isinstance(create_schema, bool):
        raise ConfigurationError(f"create_schema must be True or False, got {create_schema!r}")
    options = dict(retention_options or {})
    if options and retention_days is None:
        raise ConfigurationError("retention_options needs retention_days")
    unknown = sorted(set(options) - set(RETENTION_OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"retention_options: unknown {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(RETENTION_OPTIONS)}"
        )
    if not isinstance(logs, bool):
        raise ConfigurationError(f"logs must be True or False, not {logs!r}")
    return retention_days, options, check_interval("sample_interval", sample_interval)
