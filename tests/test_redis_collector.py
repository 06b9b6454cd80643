"""RedisCollector against a real redis-server: known keys, hits, misses and memory limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from mnemo_obs.collectors import RedisCollector
from mnemo_obs.collectors.redis_stats import KEYS
from mnemo_obs.errors import ConfigurationError

from .servers import RedisServer, free_port


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.config_set("maxmemory", 0)
    c.close()


def test_known_keys_hits_and_misses(redis_url: str, client: redis.Redis) -> None:
    client.mset({"a": 1, "b": 2, "c": 3})
    other = redis.Redis.from_url(redis_url, db=3)
    try:
        other.set("elsewhere", 1)
        other.set("elsewhere2", 1)
        client.get("a")
        client.get("b")
        client.get("missing")
        collector = RedisCollector.from_url(redis_url)
        try:
            result = collector.collect()
        finally:
            collector.close()
    finally:
        other.flushdb()
        other.close()
    assert result["connected"] is True
    assert result["keys_total"] == 5
    assert result["hit_rate"] == round(100 * 2 / 3, 2)
    assert result["evicted_keys"] == 0
    assert result["connected_clients"] >= 2
    assert result["memory_used_mb"] > 0
    assert set(result) == set(KEYS)


def test_no_lookups_means_hit_rate_zero(redis_url: str) -> None:
    collector = RedisCollector.from_url(redis_url)
    try:
        result = collector.collect()
    finally:
        collector.close()
    assert result["hit_rate"] == 0.0
    assert result["keys_total"] == 0


def test_maxmemory_set_is_the_ceiling(redis_url: str, client: redis.Redis) -> None:
    client.config_set("maxmemory", 64 * 1024 * 1024)
    used = client.info("memory")["used_memory"]
    result = RedisCollector(client).collect()
    assert result["memory_max_source"] == "maxmemory"
    assert result["memory_max_mb"] == 64.0
    # used_memory moves between two INFO calls; the percent must match its own MB.
    assert result["memory_percent"] == pytest.approx(result["memory_used_mb"] / 64 * 100, abs=0.02)
    assert result["memory_used_mb"] == pytest.approx(used / 1024 / 1024, rel=0.2)


def test_maxmemory_unset_falls_back_to_system_memory(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)
    system = client.info("memory")["total_system_memory"]
    result = RedisCollector(client).collect()
    assert result["memory_max_source"] == "system"
    assert result["memory_max_mb"] == round(system / 1024 / 1024, 2)


def test_stopped_redis_reports_disconnected_then_recovers(owned_redis: RedisServer) -> None:
    collector = RedisCollector.from_url(owned_redis.url)
    try:
        assert collector.collect()["connected"] is True
        owned_redis.stop_server()
        down = collector.collect()
        assert down["connected"] is False
        assert down["error"]
        assert all(down[key] is None for key in KEYS if key != "connected")
        owned_redis.start_server()
        assert collector.collect()["connected"] is True
    finally:
        collector.close()


def test_nothing_listening_reports_disconnected() -> None:
    collector = RedisCollector.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        result = collector.collect()
    finally:
        collector.close()
    assert result["connected"] is False
    assert "Error" in result["error"] or "refused" in result["error"].lower()


def test_bad_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="invalid Redis URL"):
        RedisCollector.from_url("http://not-redis")
