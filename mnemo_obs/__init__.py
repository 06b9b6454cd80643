"""mnemo_obs: request metrics, trace ids and a live health summary for WSGI apps.

Rows go to a PostgreSQL ``metrics`` table through a background batch writer,
so the request path never touches the database.
"""

from __future__ import annotations

from .errors import ConfigurationError, DatabaseError, MnemoObsError
from .middleware import MetricsMiddleware
from .schema import apply_schema
from .tracing import TraceIdFilter, current_trace_id
from .writer import MetricsWriter
from .wsgi import MetricsWSGIMiddleware

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "MetricsMiddleware",
    "MetricsWSGIMiddleware",
    "MetricsWriter",
    "MnemoObsError",
    "TraceIdFilter",
    "__version__",
    "apply_schema",
    "current_trace_id",
]
