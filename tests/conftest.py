"""Session fixtures that own real PostgreSQL and Redis servers.

PostgreSQL: a throwaway cluster (testing.postgresql; as root, run under an
unprivileged user), or the server named by MNEMO_OBS_TEST_DSN, on which the
suite creates its own database and drops it at the end.
A primary and its streaming standby, for the replica tests: always owned
(tests/replica.py), even with MNEMO_OBS_TEST_DSN.
Redis: a throwaway redis-server on a free port, or MNEMO_OBS_TEST_REDIS_URL.
With CI=true a server that cannot be had fails the tests instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import hypothesis
import pytest
import redis

from mnemo_obs import apply_schema

from .browser import browser  # noqa: F401  (the dashboard tests' headless Chromium)
from .dashboard_support import dashboard_app  # noqa: F401  (a fixture for the dashboard tests)
from .logs_support import logs_app  # noqa: F401  (a fixture for the live-log tests)
from .recording import make_writer  # noqa: F401  (a fixture for the recording tests)
from .replica import ReplicaPair
from .servers import ExistingPostgres, OwnedPostgres, RedisServer, truncate_metrics

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# In CI, property tests draw the same examples every run: a red build is then
# a change of ours, never a new random draw.
hypothesis.settings.register_profile("ci", derandomize=True)
if IN_CI:
    hypothesis.settings.load_profile("ci")


def _unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} unavailable: {exc}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[OwnedPostgres | ExistingPostgres]:
    """The session's PostgreSQL, with the schema applied to its test database."""
    try:
        existing = os.environ.get("MNEMO_OBS_TEST_DSN")
        server: OwnedPostgres | ExistingPostgres = (
            ExistingPostgres(existing) if existing else OwnedPostgres()
        )
    except Exception as exc:
        _unavailable("PostgreSQL", exc)
    try:
        apply_schema(server.dsn)
        yield server
    finally:
        server.close()


@pytest.fixture
def dsn(pg_server: OwnedPostgres | ExistingPostgres) -> str:
    """DSN of a database whose ``metrics`` table is empty when the test starts."""
    truncate_metrics(pg_server.dsn)
    return pg_server.dsn


@pytest.fixture
def owned_pg() -> Iterator[OwnedPostgres]:
    """A PostgreSQL cluster of this test's own, schema applied, that it may stop and restart."""
    try:
        server = OwnedPostgres()
    except Exception as exc:
        _unavailable("an owned PostgreSQL cluster", exc)
    try:
        apply_schema(server.dsn)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def replica_pair() -> Iterator[ReplicaPair]:
    """A primary (schema applied) and a standby streaming from it, owned by the session."""
    try:
        pair = ReplicaPair()
    except Exception as exc:
        _unavailable("a primary and its standby (pg_basebackup -R)", exc)
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    """The session's redis-server (None when MNEMO_OBS_TEST_REDIS_URL names another)."""
    if os.environ.get("MNEMO_OBS_TEST_REDIS_URL"):
        yield None
        return
    try:
        server = RedisServer()
    except Exception as exc:
        _unavailable("redis-server", exc)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer | None) -> str:
    """URL of a Redis database that is empty, with fresh stats, when the test starts."""
    url = os.environ.get("MNEMO_OBS_TEST_REDIS_URL") or redis_server.url  # type: ignore[union-attr]
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        client.config_resetstat()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {url}", exc)
    finally:
        client.close()
    return url


@pytest.fixture
def owned_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, that it may stop and restart."""
    try:
        server = RedisServer()
    except Exception as exc:
        _unavailable("an owned redis-server", exc)
    try:
        yield server
    finally:
        server.close()
