"""MetricsCollector: the four collectors behind one cached, fault-isolated ``collect_all()``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import db
from ..errors import ConfigurationError, MnemoObsError
from ._base import check_positive
from ._cache import SingleFlightCache
from ._pg import PgConnections
from ._routing import Router
from .api import ApiCollector
from .gauge_views import GaugeViews
from .postgres_stats import PostgresCollector
from .redis_stats import RedisCollector
from .replica import Replica
from .system import SystemCollector
from .views import Views, check_service, hours_of

if TYPE_CHECKING:
    import psycopg2.pool
    import redis

    from ..writer import MetricsWriter

log = logging.getLogger("mnemo_obs.collectors")

REDIS_URL_ENV = "MNEMO_OBS_REDIS_URL"
READ_DSN_ENV = "MNEMO_OBS_READ_DSN"
SECTIONS = ("api", "redis", "postgres", "system")


class MetricsCollector(Views, GaugeViews):
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
        timeout: seconds a summary waits for PostgreSQL at most (default
            5), whatever the server does: past it, the api and postgres
            sections report the timeout. PostgreSQL reads run on one
            background thread per collector (``mnemo_obs.summary``), so a
            server that stops answering holds that thread, never a caller's.
            A read on the replica has a thread of its own
            (``mnemo_obs.replica``) and half of ``timeout``, so a fallback
            to the primary still has the other half.
        writer: the :class:`~mnemo_obs.MetricsWriter` of this process. A
            fresh collection first flushes it (``FLUSH_WAIT``, 0.5 s at most),
            so a summary right after some requests counts them; with
            ``create_schema=True`` on it, the schema is applied before the
            first read.
        read_dsn: a streaming replica (standby) of the database, for the api
            section and the read views; defaults to ``$MNEMO_OBS_READ_DSN``;
            ``""`` (or neither set) reads from the primary. The postgres
            section still describes the primary (see :class:`Replica`).
        replica_max_lag: seconds behind the primary past which the replica
            is set aside (default 30).
        replica_fallback: read from the primary while the replica is set
            aside (default True); with False, reads fail instead.
        replica_retry: seconds between checks of a replica set aside (default 5).
    """

    CACHE_TTL = 2.0
    TIMEOUT = 5.0
    # Long enough to write a few batches, short enough that a summary with
    # the database down still answers at once.
    FLUSH_WAIT = 0.5

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
        timeout: float = TIMEOUT,
        writer: MetricsWriter | None = None,
        read_dsn: str | None = None,
        replica_max_lag: float = Replica.MAX_LAG,
        replica_fallback: bool = True,
        replica_retry: float = Replica.RETRY,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            isinstance(cache_ttl, bool)
            or not isinstance(cache_ttl, (int, float))
            or not 0 <= cache_ttl < float("inf")
        ):
            raise ConfigurationError(
                f"cache_ttl must be a finite number of seconds >= 0, got {cache_ttl!r}"
            )
        redis_timeout = check_positive("redis_timeout", redis_timeout)
        self._redis_timeout = redis_timeout
        self._timeout = check_positive("timeout", timeout)
        self._writer = writer
        if redis_client is not None and redis_url:
            raise ConfigurationError("pass redis_url or redis_client, not both")
        Replica.check(replica_max_lag, replica_fallback, replica_retry)  # even with no replica
        read_dsn = read_dsn if read_dsn is not None else os.environ.get(READ_DSN_ENV, "")
        replica = None
        if read_dsn:
            replica_connections = PgConnections(
                _read_dsn(read_dsn),
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
            )
            replica = Replica(
                replica_connections,
                max_lag=replica_max_lag,
                fallback=replica_fallback,
                retry=replica_retry,
            )
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
        self._router = Router(
            self._connections,
            replica,
            timeout=self._timeout,
            prepare=writer._ensure_schema if writer is not None else None,
        )
        self._last_errors: dict[str, str] = {}

    @property
    def replica(self) -> Replica | None:
        """The replica the reads go to while it is usable, or None (``read_dsn`` unset)."""
        return self._router.replica

    def collect_all(
        self, period_hours: float = 1.0, service: str | None = None, *, fleet: bool = False
    ) -> dict[str, Any]:
        """``{"api", "redis", "postgres", "system", "collected_at", "period_hours"}``, cached.

        With ``fleet=True``, also ``"fleet"``: every process's writer health
        (see :mod:`~mnemo_obs.collectors.fleet`). The redis and postgres
        sections carry their hit ratios over the window, from the sampler's
        rows (see :mod:`~mnemo_obs.collectors.gauges`).

        The window is ``period_hours`` rounded to the minute (to the hour
        past a day; see :func:`normalise_hours`), given back as
        ``period_hours``. A section that fails becomes ``{"error": "<one
        line>"}``; the others are still served. Never raises for a server
        problem, and returns within about ``timeout`` seconds (plus Redis's
        own timeout) whatever PostgreSQL does.

        Raises:
            ValueError: ``period_hours`` is not a finite number in (0, 720].
        """
        hours = hours_of(period_hours)
        check_service(service)
        # A caller finding this window being collected waits for that; the
        # bound only matters if something is badly wrong.
        wait = self._timeout + 2 * self._redis_timeout + 1
        return self._cache.get(
            ("summary", hours, service, fleet),
            lambda: self._collect(hours, service, fleet),
            wait=wait,
        )

    def _collect(
        self, hours: float, service: str | None = None, fleet: bool = False
    ) -> dict[str, Any]:
        if self._writer is not None:
            # This process's rows first, so the summary counts them; bounded,
            # so a database that is down or frozen costs half a second.
            self._writer.flush(self.FLUSH_WAIT)
        deadline = time.monotonic() + self._timeout
        # The requests on the replica when there is one; the primary's health on the primary.
        api = self._router.submit(
            ("api", hours, service), lambda cur: self.api.read(cur, hours, service)
        )
        postgres = self._router.submit(
            ("postgres",), lambda cur: self.postgres.read(cur)[0], replica=False
        )
        # The sampler's rows (the counters' increase over the window, the
        # fleet) on the primary too: they go with its health, and a replica
        # that stops answering then costs the summary one wait, not two.
        infra = self._router.submit(
            ("infrastructure", hours, fleet),
            lambda cur: self._infrastructure(cur, hours, fleet),
            replica=False,
        )
        result: dict[str, Any] = {}
        # Redis and the host meanwhile, on this thread: both bounded on their own.
        for name, read in (("redis", self._collect_redis), ("system", self.system.collect)):
            result[name] = self._section(name, read)
        result["api"] = self._section("api", lambda: self._router.result(api, deadline))
        result["postgres"] = self._section(
            "postgres", lambda: self._router.result(postgres, deadline)
        )
        if self._router.replica is not None:
            result["postgres"].update(reads_from=api.where, **self._router.replica.describe())
        found = self._section("infrastructure", lambda: self._router.result(infra, deadline))
        self._add_infrastructure(result, found, fleet)
        for name in SECTIONS:
            self._note(name, result[name].get("error"))
        ordered = {name: result[name] for name in SECTIONS}
        ordered["collected_at"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        ordered["period_hours"] = hours
        if fleet:
            ordered["fleet"] = result["fleet"]
        return ordered

    @staticmethod
    def _section(name: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            return read()
        except MnemoObsError as exc:
            return {"error": str(exc)}
        except Exception as exc:  # a bug or a surprise must not take the others down
            log.exception("summary section %r failed", name)
            return {"error": f"{type(exc).__name__}: {exc}"}

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
        """Close the connections and Redis client we made. Idempotent; never waits on a server."""
        self._router.close()
        self._connections.close()
        if self.redis is not None:
            self.redis.close()
        self._cache.clear()

    def __enter__(self) -> MetricsCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_dsn(dsn: str) -> str:
    """``dsn`` when libpq can parse it; else a ConfigurationError naming read_dsn, masked."""
    try:
        return db.resolve_dsn(dsn)
    except ConfigurationError as exc:
        raise ConfigurationError(f"read_dsn: {exc}") from None
