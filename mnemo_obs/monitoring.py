"""``monitoring_app(...)``: the monitoring routes as a WSGI app of their own, for any stack.

A Flask, Django, Pyramid or bare WSGI app gets the summary, the read
routes, the health check and the live logs without Falcon in its own
code: they are served by a small internal ``falcon.App`` (Falcon is a
dependency of mnemo_obs anyway), set up by :func:`mnemo_obs.install`
itself, so the options, their checks and the routes are the same as for
a Falcon app. The app answers relative to where it is mounted
(``SCRIPT_NAME``/``PATH_INFO``), so any prefix works.

Its writer is the one the recording side uses too
(``MetricsWSGIMiddleware(app, monitoring.writer, monitoring=monitoring)``):
one writer, one collector and one set of live logs per process.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import falcon

from .errors import ConfigurationError
from .installation import install
from .wsgi import ENVIRON_KEY

if TYPE_CHECKING:
    from .collectors import MetricsCollector
    from .installation import Installation
    from .logs import LiveLogs
    from .retention import RetentionScheduler
    from .writer import MetricsWriter

# install()'s options that the mount decides, not the caller: the routes
# live at the root of the monitoring app, and every request to it gets a
# trace id but no row.
_FIXED = ("app", "prefix", "health_path", "skip_paths", "skip_prefixes")
# Where the dashboard page goes inside the monitoring app.
DASHBOARD_PATH = "/dashboard"


def options() -> tuple[str, ...]:
    """The keyword arguments :func:`monitoring_app` takes: install()'s, less the fixed ones."""
    return tuple(name for name in inspect.signature(install).parameters if name not in _FIXED)


class MonitoringApp:
    """The monitoring routes as a WSGI app, and what they read: writer, collector, logs.

    Built by :func:`monitoring_app`. Call it as a WSGI app under any
    prefix; its routes are ``/summary``, ``/endpoints``, ``/timeseries``,
    ``/slowest``, ``/health``, ``/logs`` and ``/logs/stream`` below the
    mount point. Every answer carries an ``X-Trace-ID`` (the one
    :class:`~mnemo_obs.MetricsWSGIMiddleware` gave the request, when it
    runs outside); no request to it is recorded as a row.

    Attributes:
        writer: the :class:`~mnemo_obs.MetricsWriter` to record the app's
            requests with (hand it to the recording middleware).
        collector: the :class:`~mnemo_obs.collectors.MetricsCollector` behind the routes.
        logs: the :class:`~mnemo_obs.logs.LiveLogs`, or None with ``logs=False``.
        retention: the :class:`~mnemo_obs.retention.RetentionScheduler`, or None.
        installation: the :class:`~mnemo_obs.Installation` on the internal Falcon app.
        routes: the paths it answers, relative to its mount point.
        token_required: whether the summary and read routes ask for a bearer token.
    """

    def __init__(self, falcon_app: falcon.App, installation: Installation) -> None:
        self._app = falcon_app
        self.installation = installation
        self.routes = installation.routes

    @property
    def writer(self) -> MetricsWriter:
        return self.installation.writer

    @property
    def collector(self) -> MetricsCollector:
        return self.installation.collector

    @property
    def logs(self) -> LiveLogs | None:
        return self.installation.logs

    @property
    def retention(self) -> RetentionScheduler | None:
        return self.installation.retention

    @property
    def token_required(self) -> bool:
        return self.installation.token_required

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Answer a monitoring request; ``PATH_INFO`` is the path below the mount point."""
        outer = environ.get(ENVIRON_KEY)
        if outer:
            # The recording middleware outside already gave this request its
            # trace id (header, logs): the internal one takes the same.
            environ["HTTP_X_TRACE_ID"] = outer
        return self._app(environ, start_response)

    def close(self, timeout: float | None = None) -> bool:
        """Flush and stop the writer, stop retention and live logs, close the connections.

        The same as :meth:`mnemo_obs.Installation.close`; ``mnemo_obs.serve()``
        calls it on SIGTERM.

        Returns:
            True when every queued row was written within ``timeout``.
        """
        return self.installation.close(timeout)

    def __enter__(self) -> MonitoringApp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def monitoring_app(**options_: Any) -> MonitoringApp:
    """Make the monitoring routes a WSGI app to mount under any prefix.

    Takes the options of :func:`mnemo_obs.install`, all keyword-only and
    checked the same way, except ``prefix``, ``health_path``,
    ``skip_paths`` and ``skip_prefixes``, which the mount decides: ``dsn``,
    ``redis_url``, ``token``, ``service``, the writer's (``max_queue``,
    ``batch_size``, ``flush_interval``, ``writers``, ``create_schema``),
    the summary's (``cache_ttl``, ``summary_timeout``), retention
    (``retention_days``, ``retention_options``) and the live logs (``logs``,
    ``log_level``, ``log_token``, ...). Nothing connects here.

    Mount it with :class:`~mnemo_obs.MetricsWSGIMiddleware`
    (``monitoring=``, ``monitoring_prefix=``), which also records the app's
    requests with :attr:`MonitoringApp.writer`, or with any dispatcher that
    moves the prefix from ``PATH_INFO`` to ``SCRIPT_NAME`` (werkzeug's
    ``DispatcherMiddleware``, ``mnemo_obs.django.urls``).

    Returns:
        A :class:`MonitoringApp`; ``close()`` it at shutdown (``mnemo_obs.serve()``
        and the gunicorn recipe do).

    Raises:
        ConfigurationError: an unknown option, or a bad value (naming it).
    """
    allowed = options()
    unknown = sorted(set(options_) - set(allowed))
    if unknown:
        fixed = [name for name in unknown if name in _FIXED]
        why = (
            f"{fixed[0]!r} is decided by where the app is mounted"
            if fixed
            else f"allowed: {', '.join(allowed)}"
        )
        raise ConfigurationError(
            f"monitoring_app(): unknown option {', '.join(map(repr, unknown))}; {why}"
        )
    settings: dict[str, Any] = dict(options_)
    settings.setdefault("dashboard_path", DASHBOARD_PATH)
    app = falcon.App()
    installation = install(
        app,
        prefix="/",  # the routes at the root of the mount: /summary, /logs, ...
        health_path="/health",
        skip_prefixes=("/",),  # a trace id for each request, never a row
        **settings,
    )
    return MonitoringApp(app, installation)
