"""mnemo_obs: request metrics, trace ids and a live health summary for WSGI apps.

Rows go to a PostgreSQL ``metrics`` table through a background batch writer,
so the request path never touches the database.
"""

from __future__ import annotations

from .errors import ConfigurationError, DatabaseError, MnemoObsError
from .schema import apply_schema

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DatabaseError",
    "MnemoObsError",
    "__version__",
    "apply_schema",
]
