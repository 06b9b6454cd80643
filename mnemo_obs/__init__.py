"""mnemo_obs: request metrics, trace ids and a live health summary for WSGI apps.

Rows go to a PostgreSQL ``metrics`` table through a background batch writer,
so the request path never touches the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigurationError, DatabaseError, MnemoObsError
from .middleware import MetricsMiddleware
from .schema import apply_schema
from .tracing import TraceIdFilter, current_trace_id
from .writer import MetricsWriter
from .wsgi import MetricsWSGIMiddleware

if TYPE_CHECKING:
    from .installation import Installation, install
    from .monitoring import MonitoringApp, monitoring_app
    from .serving import serve

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "Installation",
    "MetricsMiddleware",
    "MetricsWSGIMiddleware",
    "MetricsWriter",
    "MnemoObsError",
    "MonitoringApp",
    "TraceIdFilter",
    "__version__",
    "apply_schema",
    "current_trace_id",
    "install",
    "monitoring_app",
    "serve",
]


def __getattr__(name: str) -> object:
    # install() needs Falcon and serve() waitress: loaded on first use, so
    # `import mnemo_obs` stays light.
    if name in ("install", "Installation"):
        from . import installation

        return getattr(installation, name)
    if name in ("monitoring_app", "MonitoringApp"):
        from . import monitoring

        return getattr(monitoring, name)
    if name == "serve":
        from .serving import serve

        return serve
    raise AttributeError(f"module 'mnemo_obs' has no attribute {name!r}")
