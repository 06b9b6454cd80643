"""Mounting the monitoring app under a prefix of another WSGI app.

Used by :class:`~mnemo_obs.MetricsWSGIMiddleware` (``monitoring=``,
``monitoring_prefix=``): requests under the prefix go to the monitoring
app with the prefix moved from ``PATH_INFO`` to ``SCRIPT_NAME``, as
werkzeug's ``DispatcherMiddleware`` does; the rest go to the app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._guard import paths
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .monitoring import MonitoringApp
    from .writer import MetricsWriter

_UNSAFE = set("{}?#%\\\"'<> ")


def check_prefix(name: str, prefix: object) -> str:
    """A mount prefix: ``/`` then path segments, no trailing ``/``; returned without it.

    Raises:
        ConfigurationError: anything else (``/`` alone would take every path), naming it.
    """
    if (
        not isinstance(prefix, str)
        or not prefix.startswith("/")
        or not prefix.isascii()
        or not prefix.isprintable()
        or "//" in prefix
        or _UNSAFE & set(prefix)
        or prefix.rstrip("/") == ""
    ):
        raise ConfigurationError(
            f"{name} must be a path such as '/monitoring' (ASCII, not '/' alone, without "
            f"'//', spaces or any of {''.join(sorted(_UNSAFE - {' '}))}), got {prefix!r}"
        )
    return prefix.rstrip("/")


class PrefixDispatcher:
    """WSGI: ``prefix`` and what is under it go to ``monitoring``, the rest to ``app``."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], monitoring: MonitoringApp, prefix: str
    ) -> None:
        self.app = app
        self.monitoring = monitoring
        self.prefix = prefix
        self._under = prefix + "/"

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == self.prefix or path.startswith(self._under):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + self.prefix
            environ["PATH_INFO"] = path[len(self.prefix) :]
            return self.monitoring(environ, start_response)
        return self.app(environ, start_response)


def with_monitoring(
    app: Callable[..., Iterable[bytes]],
    writer: MetricsWriter,
    monitoring: MonitoringApp,
    prefix: object,
    skip_paths: Iterable[str],
    skip_prefixes: Iterable[str],
) -> tuple[PrefixDispatcher, tuple[str, ...], tuple[str, ...]]:
    """The app with ``monitoring`` mounted at ``prefix``, and skip lists that cover it.

    Raises:
        ConfigurationError: ``writer`` is not the monitoring app's (the
            process would have two), a bad prefix or skip list.
    """
    from .monitoring import MonitoringApp  # loads Falcon: only when mounting

    if not isinstance(monitoring, MonitoringApp):
        raise ConfigurationError(
            f"monitoring must be what mnemo_obs.monitoring_app() returns, not {monitoring!r}"
        )
    if writer is not monitoring.writer:
        raise ConfigurationError(
            "pass monitoring.writer as the writer: the monitoring routes and the "
            "recording share one writer per process"
        )
    mount = check_prefix("monitoring_prefix", prefix)
    return (
        PrefixDispatcher(app, monitoring, mount),
        (*paths("skip_paths", skip_paths), mount),
        (*paths("skip_prefixes", skip_prefixes), mount + "/"),
    )
