"""Flask: ``mnemo_obs.flask.init_app(app)`` records every request and serves the monitoring routes.

Following Flask's extension conventions: settings come from the app's
config (``MNEMO_OBS_DSN``, ``MNEMO_OBS_TOKEN``, ...), keyword arguments
win over them, and the :class:`~mnemo_obs.MonitoringApp` is kept in
``app.extensions["mnemo_obs"]``. Only this module needs Flask; ``import
mnemo_obs`` never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask import current_app, request
from werkzeug.exceptions import MethodNotAllowed

from ._guard import paths
from ._mount import check_prefix
from .errors import ConfigurationError
from .monitoring import MonitoringApp, monitoring_app, options
from .resources import DEFAULT_PREFIX
from .wsgi import MetricsWSGIMiddleware

if TYPE_CHECKING:
    import flask

EXTENSION = "mnemo_obs"
CONFIG_PREFIX = "MNEMO_OBS_"
# Where the matched rule goes for the recording middleware: request.environ
# is the environ it handed to Flask.
ENDPOINT_KEY = "mnemo_obs.endpoint"
# Options of the recording side; the rest are monitoring_app()'s.
_RECORDING = ("prefix", "skip_paths", "skip_prefixes")
_DEFAULT_SKIP_PATHS = ("/health", "/metrics")


def settings_of(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The options from ``MNEMO_OBS_*`` config keys, then ``overrides``, which win.

    Raises:
        ConfigurationError: a ``MNEMO_OBS_*`` key or an argument that is no
            option (a typo would otherwise be ignored), naming it.
    """
    allowed = (*_RECORDING, *options())
    settings: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(key, str) and key.startswith(CONFIG_PREFIX):
            name = key[len(CONFIG_PREFIX) :].lower()
            if name not in allowed:
                raise ConfigurationError(
                    f"app.config[{key!r}] is not a mnemo_obs setting; the settings are "
                    f"{', '.join(CONFIG_PREFIX + option.upper() for option in allowed)}"
                )
            settings[name] = value
    for name, value in overrides.items():
        if name not in allowed:
            raise ConfigurationError(
                f"init_app(): unknown option {name!r}; allowed: {', '.join(allowed)}"
            )
        settings[name] = value
    return settings


def init_app(app: flask.Flask, **overrides: Any) -> MonitoringApp:
    """Record every request of ``app`` and serve the monitoring routes under ``prefix``.

    Wraps ``app.wsgi_app`` in a :class:`~mnemo_obs.MetricsWSGIMiddleware`
    whose endpoint is the matched URL rule (``/items/<int:item_id>``); a
    405 keeps the rule of its path, and a request no rule matches is
    ``<unmatched>``. Under ``prefix`` (default ``/api/monitoring/advanced``)
    it serves ``/summary``, ``/endpoints``, ``/timeseries``, ``/slowest``,
    ``/health``, ``/logs`` and ``/logs/stream`` (and the dashboard where this
    version has one), before Flask routes the request: they are not in
    ``app.url_map``, and they are never recorded.

    Settings are ``app.config["MNEMO_OBS_<OPTION>"]`` (``MNEMO_OBS_DSN``,
    ``MNEMO_OBS_TOKEN``, ``MNEMO_OBS_PREFIX``, ...), or keyword arguments,
    which win: ``prefix``, ``skip_paths`` (default ``("/health",
    "/metrics")``), ``skip_prefixes`` (default none), and every option of
    :func:`mnemo_obs.monitoring_app`. The environment variables
    (``$MNEMO_OBS_DSN``, ...) remain the last fallback.

    Returns:
        The :class:`~mnemo_obs.MonitoringApp`, also in
        ``app.extensions["mnemo_obs"]``; close it at shutdown
        (``mnemo_obs.serve()`` and the gunicorn recipe do).

    Raises:
        ConfigurationError: a bad or unknown setting, or mnemo_obs already on ``app``.
    """
    if EXTENSION in app.extensions:
        raise ConfigurationError("mnemo_obs is already initialised on this Flask app")
    settings = settings_of(app.config, overrides)
    # Checked before anything is made, so a bad one leaves nothing behind.
    prefix = check_prefix("prefix", settings.pop("prefix", DEFAULT_PREFIX))
    skip_paths = paths("skip_paths", settings.pop("skip_paths", _DEFAULT_SKIP_PATHS))
    skip_prefixes = paths("skip_prefixes", settings.pop("skip_prefixes", ()))
    monitoring = monitoring_app(**settings)
    try:
        middleware = MetricsWSGIMiddleware(
            app.wsgi_app,
            monitoring.writer,
            skip_paths=skip_paths,
            skip_prefixes=skip_prefixes,
            endpoint_of=_endpoint_of,
            monitoring=monitoring,
            monitoring_prefix=prefix,
        )
    except BaseException:
        monitoring.close(0)
        raise
    # First of the app's before_request functions: one that answers early
    # (an auth check) must not leave the request without its route.
    app.before_request_funcs.setdefault(None, []).insert(0, _remember_rule)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions[EXTENSION] = monitoring
    return monitoring


def _remember_rule() -> None:
    """Put the matched rule's pattern in the environ, for :func:`_endpoint_of`.

    Runs after routing. On a 405 Flask leaves ``request.url_rule`` None;
    the rule is then matched again with a method it allows (only on 405s,
    so the cost is theirs alone).
    """
    try:
        rule = request.url_rule
        if rule is None and isinstance(request.routing_exception, MethodNotAllowed):
            rule = _rule_for_other_method(request.routing_exception)
        request.environ[ENDPOINT_KEY] = rule.rule if rule is not None else None
    except Exception:  # never fail the request for its name: it stays <unmatched>
        request.environ[ENDPOINT_KEY] = None


def _rule_for_other_method(exc: MethodNotAllowed) -> Any:
    methods = exc.valid_methods or ()
    adapter = current_app.create_url_adapter(request)
    if not methods or adapter is None:
        return None
    try:
        rule, _args = adapter.match(method=next(iter(methods)), return_rule=True)
    except Exception:  # werkzeug's redirects and errors: no rule to name
        return None
    return rule


def _endpoint_of(environ: dict[str, Any]) -> str | None:
    return environ.get(ENDPOINT_KEY)
