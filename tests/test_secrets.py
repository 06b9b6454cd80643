"""No password in any message: CLI output, exceptions, log lines, stats, reprs, JSON errors."""

from __future__ import annotations

import logging
from collections.abc import Callable

import falcon
import falcon.testing
import pytest

from mnemo_obs import ConfigurationError, MetricsWriter, db
from mnemo_obs.cli import main
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.collectors.redis_stats import RedisCollector
from mnemo_obs.installation import install
from mnemo_obs.retention import RetentionScheduler

from .recording import FAST_RETRY, wait_until
from .servers import free_port

SECRET = "TopSecretPw"


def bad_dsns() -> list[str]:
    port = free_port()
    return [
        f"host=127.0.0.1 password={SECRET} port",  # libpq cannot parse it
        f"host=127.0.0.1 password='Top {SECRET} x' port",
        f"postgresql://app:{SECRET}@[127.0.0.1/x",
        f"postgresql://app:{SECRET}@127.0.0.1:{port}/x?connect_timeout=2",  # refused
        f"host=127.0.0.1 port={port} user=app password={SECRET} connect_timeout=2",
        f"postgresql://127.0.0.1:{port}/x?password={SECRET}&connect_timeout=2",
    ]


def bad_redis_urls() -> list[str]:
    return [f"redis://:{SECRET}@127.0.0.1:{free_port()}/0", f"redis://u:{SECRET}@127.0.0.1:xx/0"]


def assert_clean(*texts: object) -> None:
    for text in texts:
        assert SECRET not in str(text), text
        assert "Secret" not in str(text), text


@pytest.mark.parametrize(
    "command",
    [
        lambda dsn, url: ["migrate", "--dsn", dsn],
        lambda dsn, url: ["summary", "--dsn", dsn, "--redis-url", url],
        lambda dsn, url: ["endpoints", "--dsn", dsn, "--read-dsn", dsn],
        lambda dsn, url: ["purge", "--days", "30", "--dsn", dsn],
        lambda dsn, url: ["serve", "--dsn", dsn, "--redis-url", url, "--port", "0"],
    ],
    ids=["migrate", "summary", "endpoints", "purge", "serve"],
)
def test_cli_errors_mask_passwords(
    command: Callable[[str, str], list[str]],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for dsn in bad_dsns():
        for url in bad_redis_urls():
            with caplog.at_level(logging.DEBUG):
                assert main(command(dsn, url)) == 2
            out, err = capsys.readouterr()
            assert err.startswith("mnemo-obs: error: ")
            assert_clean(out, err, *(r.getMessage() for r in caplog.records))
            caplog.clear()


def test_library_errors_mask_passwords(caplog: pytest.LogCaptureFixture) -> None:
    for dsn in bad_dsns()[:3]:
        for make in (
            lambda d: MetricsWriter(d),
            lambda d: MetricsCollector(d),
            lambda d: MetricsCollector("host=127.0.0.1", read_dsn=d),
            lambda d: RetentionScheduler(dsn=d),
            lambda d: install(falcon.App(), dsn=d),
            lambda d: db.resolve_dsn(d),
        ):
            with pytest.raises(ConfigurationError) as info:
                make(dsn)
            assert_clean(info.value, repr(info.value))
    for url in bad_redis_urls()[1:]:
        with pytest.raises(ConfigurationError) as info:
            RedisCollector.from_url(url)
        assert_clean(info.value)


def test_writer_and_summary_errors_mask_passwords(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    dsn, url = bad_dsns()[3], bad_redis_urls()[0]
    with caplog.at_level(logging.DEBUG):
        writer = MetricsWriter(dsn, **FAST_RETRY)
        try:
            writer.record("system", "x", 1.0)
            wait_until("the writer's error", lambda: writer.stats()["last_error"])
            assert_clean(writer.stats(), repr(writer))
        finally:
            writer.close(0.2)
        app = falcon.App()
        handle = install(app, dsn=bad_dsns()[4], read_dsn=bad_dsns()[5], redis_url=url, cache_ttl=0)
        try:
            body = falcon.testing.TestClient(app).simulate_get(handle.summary_path).json
            for section in ("api", "postgres", "redis"):
                assert body[section]["error"]
            assert body["postgres"]["replica_error"]
            assert_clean(body, repr(handle), repr(handle.writer))
        finally:
            handle.close(0.2)
    assert_clean(*(r.getMessage() for r in caplog.records))
    assert_clean(*(r.exc_text or "" for r in caplog.records))


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://a:pw@h/d", "postgresql://a:***@h/d"),
        ("postgresql://a:p@w@h/d", "postgresql://a:***@h/d"),
        ("postgresql://h/d?sslmode=x&password=pw", "postgresql://h/d?sslmode=x&password=***"),
        ("host=h password=pw user=u", "host=h password=*** user=u"),
        ("host=h password = 'p w' user=u", "host=h password = *** user=u"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("postgresql://a@h/d", "postgresql://a@h/d"),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert db.mask(text) == masked
