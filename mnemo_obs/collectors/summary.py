"""MetricsCollector: the four collectors behind one cached, fault-isolated ``collect_all()``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import MnemoObsError
from ._base import check_positive
from ._cache import SingleFlightCache
from ._pg import PgConnections
from .api import MAX_PERIOD_HOURS, ApiCollector
from .postgres_stats import PostgresCollector
from .redis_stats import RedisCollector
from .system import SystemCollector

if TYPE_CHECKING:
    import psycopg2.pool
    import redis

log = logging.getLogger("mnemo_obs.collectors")

REDIS_URL_ENV = "MNEMO_OBS_REDIS_URL"
SECTIONS = ("api", "redis", "postgres", "system")


class MetricsCollector:
    """Everything the summary shows, with each section failing on its own.

    Nothing connects at construction. PostgreSQL reads go through a small
    pool of their own (see :class:`PgConnections`), apart from the writer's
    connection, with connect and statement timeouts.

    Args:
        dsn: PostgreSQL DSN; defaults to ``$MNEMO_OBS_DSN``. Ignored when
            ``pool`` is given.
        pool: an existing ``psycopg2.pool`` to borrow from (left open by
            :meth:`close`).
        redis_url: Redis to report on; defaults to ``$MNEMO_OBS_REDIS_URL``.
            ``""`` (or neither set) means no Redis: the section says
            ``connected: false``.
        redis_client: a ``redis.Redis`` to use instead of a URL (left open).
        cache_ttl: seconds a summary is reused (default 2), so a dashboard
            polling every second, or many clients at once, cost one
            collection per period. 0 disables the cache.
        statement_timeout: seconds before PostgreSQL cancels a summary query
            (default 3).
        connect_timeout: seconds to wait for a PostgreSQL connection (default 3).
        redis_timeout: seconds to wait for Redis (default 1).
        slow_query_ms: the threshold of ``slow_queries_count`` (default 100).
        disk_path: the filesystem of ``disk_*`` (default ``/``).
    """

    CACHE_TTL = 2.0

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: psycopg2.pool.AbstractConnectionPool | None = None,
        redis_url: str | None = None,
        redis_client: redis.Redis | None = None,
        cache_ttl: float = CACHE_TTL,
        statement_timeout: float = PgConnections.STATEMENT_TIMEOUT,
        connect_timeout: int = PgConnections.CONNECT_TIMEOUT,
        redis_timeout: float = RedisCollector.TIMEOUT,
        slow_query_ms: float = PostgresCollector.SLOW_QUERY_MS,
        disk_path: str = "/",
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(cache_ttl, (int, float)) or not 0 <= cache_ttl < float("inf"):
            raise ValueError(
                f"cache_ttl must be a finite number of seconds >= 0, got {cache_ttl!r}"
            )
        redis_timeout = check_positive("redis_timeout", redis_timeout)
        if redis_client is not None and redis_url:
            raise ValueError("pass redis_url or redis_client, not both")
        self._connections = PgConnections(
            dsn,
            pool=pool,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self.api = ApiCollector(self._connections)
        self.postgres = PostgresCollector(self._connections, slow_query_ms=slow_query_ms)
        self.system = SystemCollector(disk_path=disk_path)
        if redis_client is not None:
            self.redis: RedisCollector | None = RedisCollector(redis_client)
        else:
            url = redis_url if redis_url is not None else os.environ.get(REDIS_URL_ENV, "")
            self.redis = RedisCollector.from_url(url, timeout=redis_timeout) if url else None
        self._cache: SingleFlightCache[dict[str, Any]] = SingleFlightCache(cache_ttl, clock=_clock)
        self._last_errors: dict[str, str] = {}

    def collect_all(self, period_hours: float = 1.0) -> dict[str, Any]:
        """``{"api", "redis", "postgres", "system", "collected_at"}``, cached ``cache_ttl`` seconds.

        A section that fails becomes ``{"error": "<one line>"}``; the others
        are still served. Never raises for a server problem.

        Raises:
            ValueError: ``period_hours`` is not a finite number in (0, 720].
        """
        hours = check_positive("period_hours", period_hours, maximum=MAX_PERIOD_HOURS)
        return self._cache.get(hours, lambda: self._collect(hours))

    def _collect(self, hours: float) -> dict[str, Any]:
        readers: dict[str, Callable[[], dict[str, Any]]] = {
            "api": lambda: self.api.collect(hours),
            "redis": self._collect_redis,
            "postgres": self.postgres.collect,
            "system": self.system.collect,
        }
        result: dict[str, Any] = {}
        for name, read in readers.items():
            try:
                result[name] = read()
                error = None
            except MnemoObsError as exc:
                error = str(exc)
            except Exception as exc:  # a bug or a surprise must not take the others down
                error = f"{type(exc).__name__}: {exc}"
                log.exception("summary section %r failed", name)
            if error is not None:
                result[name] = {"error": error}
            self._note(name, error or result[name].get("error"))
        result["collected_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        return result

    def _collect_redis(self) -> dict[str, Any]:
        if self.redis is None:
            return RedisCollector.unavailable(
                f"no Redis configured (pass redis_url or set {REDIS_URL_ENV})"
            )
        return self.redis.collect()

    def _note(self, section: str, error: str | None) -> None:
        """Log when a section starts failing, changes its error, or recovers; not on each poll."""
        previous = self._last_errors.get(section)
        if error == previous or (section == "redis" and self.redis is None):
            return
        if error is None:
            self._last_errors.pop(section, None)
            log.info("summary section %r recovered", section)
        else:
            self._last_errors[section] = error
            log.warning("summary section %r failed: %s", section, error)

    def close(self) -> None:
        """Close the pool and Redis client we made. Idempotent."""
        self._connections.close()
        if self.redis is not None:
            self.redis.close()
        self._cache.clear()

    def __enter__(self) -> MetricsCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
