"""The process's one :class:`~mnemo_obs.MonitoringApp`, made from ``settings.MNEMO_OBS``.

The middleware records with its writer and the monitoring URLs serve it,
so a process has one writer, one collector and one set of live logs,
whichever of the two Django loads first.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from ..errors import ConfigurationError
from ..monitoring import MonitoringApp, monitoring_app, options

SETTING = "MNEMO_OBS"
# Keys of the middleware; the rest are monitoring_app()'s.
RECORDING = ("skip_paths", "skip_prefixes")
DEFAULT_SKIP_PATHS = ("/health", "/metrics")

_lock = threading.Lock()
_made: dict[str, Any] = {}


def split_settings(value: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """``settings.MNEMO_OBS`` as (monitoring_app() options, middleware options).

    Raises:
        ConfigurationError: not a dict, or a key that is no option, naming it.
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"settings.{SETTING} must be a dict of options, not {value!r}")
    allowed = (*RECORDING, *options())
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise ConfigurationError(
            f"settings.{SETTING}: unknown option {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )
    recording = {"skip_paths": DEFAULT_SKIP_PATHS, "skip_prefixes": ()}
    monitoring: dict[str, Any] = {}
    for key, item in value.items():
        (recording if key in RECORDING else monitoring)[key] = item
    return monitoring, recording


def get_monitoring() -> MonitoringApp:
    """The process's :class:`~mnemo_obs.MonitoringApp`, made on first use from the settings.

    Close it at shutdown (``get_monitoring().close(timeout)``; the gunicorn
    recipe does, and ``mnemo_obs.serve()`` closes it on SIGTERM).

    Raises:
        ConfigurationError: a bad ``settings.MNEMO_OBS``.
    """
    made = _made.get("monitoring")
    if made is None:
        with _lock:
            made = _made.get("monitoring")
            if made is None:
                options_, _ = split_settings(getattr(settings, SETTING, {}))
                made = _made["monitoring"] = monitoring_app(**options_)
    return made


def recording_settings() -> dict[str, Any]:
    """The middleware's ``skip_paths`` and ``skip_prefixes`` from the settings."""
    return split_settings(getattr(settings, SETTING, {}))[1]
