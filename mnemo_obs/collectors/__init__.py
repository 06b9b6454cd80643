"""Collectors: one class per source, each with ``collect() -> dict``, and MetricsCollector.

Each collector receives its data source through its constructor and can be
used on its own; :class:`MetricsCollector` combines them for the summary.
"""

from __future__ import annotations

from ._base import Collector
from ._pg import PgConnections
from .api import ApiCollector
from .postgres_stats import PostgresCollector
from .redis_stats import RedisCollector
from .summary import MetricsCollector
from .system import SystemCollector

__all__ = [
    "ApiCollector",
    "Collector",
    "MetricsCollector",
    "PgConnections",
    "PostgresCollector",
    "RedisCollector",
    "SystemCollector",
]
