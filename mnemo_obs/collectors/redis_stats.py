"""Memory, keys and hit rate of a Redis server, from one ``INFO`` call.

(Named ``redis_stats`` so it never shadows the ``redis`` package.)
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import db
from ..errors import ConfigurationError
from ._base import MB, percent, rounded

KEYS = (
    "connected",
    "memory_used_mb",
    "memory_max_mb",
    "memory_max_source",
    "memory_percent",
    "keys_total",
    "hit_rate",
    "evicted_keys",
    "connected_clients",
)


class RedisCollector:
    """Redis health from ``INFO``; never raises.

    Args:
        client: the ``redis.Redis`` to ask. Its own timeouts apply; build one
            with :meth:`from_url` for short ones.

    ``collect()`` returns ``connected``, ``memory_used_mb``,
    ``memory_max_mb`` with ``memory_max_source`` (``"maxmemory"`` when a
    limit is set, else ``"system"``: with ``maxmemory`` 0 Redis has no limit
    of its own and the host's ``total_system_memory`` is the real ceiling),
    ``memory_percent`` (of that ceiling), ``keys_total`` (summed over the
    keyspace's databases), ``hit_rate`` (keyspace hits over hits + misses,
    percent, 0 when there were none), ``evicted_keys`` and
    ``connected_clients``. When Redis cannot be reached it returns
    ``{"connected": false, "error": "<message>"}`` with the other keys null.
    """

    # A summary must not wait on a dead Redis: one short try, no retries.
    TIMEOUT = 1.0

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._owned = False
        self._url: str | None = None  # masked out of error messages

    @classmethod
    def from_url(cls, url: str, *, timeout: float = TIMEOUT) -> RedisCollector:
        """Build a collector with its own client: ``timeout`` seconds, no retries.

        Raises:
            ConfigurationError: ``url`` is not a Redis URL (no I/O happens here).
        """
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                client_name="mnemo_obs.collector",
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid Redis URL {db.mask(url)!r}: {db.redact(str(exc), url)}"
            ) from None
        collector = cls(client)
        collector._owned = True
        collector._url = url
        return collector

    @staticmethod
    def unavailable(error: str) -> dict[str, Any]:
        """The answer when there is no Redis to ask: every key null, ``connected`` false."""
        result: dict[str, Any] = dict.fromkeys(KEYS)
        result["connected"] = False
        result["error"] = error
        return result

    @property
    def where(self) -> str:
        """The server, as ``host:port`` (or ``unix:<path>``): what the sampler's rows name."""
        kwargs = self._client.connection_pool.connection_kwargs
        if kwargs.get("path"):
            return f"unix:{kwargs['path']}"
        return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"

    def collect(self) -> dict[str, Any]:
        """One ``INFO`` round trip turned into the summary's keys."""
        return self.collect_with_counters()[0]

    def collect_with_counters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`collect`'s keys, and the raw counters of the same ``INFO`` (empty if down).

        The counters (``keyspace_hits``, ``keyspace_misses``, ``evicted_keys``,
        ``expired_keys``) count since the server started, or since ``CONFIG
        RESETSTAT``; ``run_id`` changes at each start and ``uptime_seconds``
        says since when, so a reader of their history can tell a restart.
        """
        try:
            info = self._client.info()
        except (redis.RedisError, OSError) as exc:
            return self.unavailable(db.redact(str(exc) or type(exc).__name__, self._url)), {}
        used = int(info.get("used_memory", 0))
        maxmemory = int(info.get("maxmemory", 0))
        if maxmemory > 0:
            ceiling, source = maxmemory, "maxmemory"
        else:
            ceiling, source = int(info.get("total_system_memory", 0)), "system"
        hits = int(info.get("keyspace_hits", 0))
        misses = int(info.get("keyspace_misses", 0))
        keys = sum(
            int(value.get("keys", 0))
            for name, value in info.items()
            if name.startswith("db") and name[2:].isdigit() and isinstance(value, dict)
        )
        counters = {
            "keyspace_hits": hits,
            "keyspace_misses": misses,
            "evicted_keys": int(info.get("evicted_keys", 0)),
            "expired_keys": int(info.get("expired_keys", 0)),
            "uptime_seconds": int(info.get("uptime_in_seconds", 0)),
            "run_id": str(info.get("run_id", "")),
        }
        section = {
            "connected": True,
            "memory_used_mb": rounded(used / MB),
            "memory_max_mb": rounded(ceiling / MB) if ceiling else None,
            "memory_max_source": source if ceiling else None,
            "memory_percent": percent(used, ceiling),
            "keys_total": keys,
            "hit_rate": percent(hits, hits + misses) or 0.0,
            "evicted_keys": int(info.get("evicted_keys", 0)),
            "connected_clients": int(info.get("connected_clients", 0)),
        }
        return section, counters

    def close(self) -> None:
        """Close the client :meth:`from_url` made (a given client is left to its owner)."""
        if self._owned:
            self._client.close()
