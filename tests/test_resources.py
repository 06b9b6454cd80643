"""SummaryResource and HealthResource through falcon.testing, token off and on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import falcon
import falcon.testing
import pytest

from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.errors import ConfigurationError
from mnemo_obs.resources import HealthResource, SummaryResource, resolve_token

from .servers import RedisServer
from .test_api_collector import insert

SUMMARY = "/api/monitoring/advanced/summary"
TOKEN = "s3cret-Token_1"

BAD_PERIODS = [
    "period_hours=abc",
    "period_hours=",
    "period_hours=nan",
    "period_hours=NaN",
    "period_hours=inf",
    "period_hours=-inf",
    "period_hours=1e309",
    "period_hours=0",
    "period_hours=-1",
    "period_hours=720.01",
    "period_hours=1000",
    "period_hours=1,2",
    "period_hours=1&period_hours=2",
]


@pytest.fixture
def make_client(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., falcon.testing.TestClient]]:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    collectors: list[MetricsCollector] = []

    def make(token: str | None = None, redis: str | None = None) -> falcon.testing.TestClient:
        collector = MetricsCollector(dsn, redis_url=redis or redis_url, cache_ttl=0)
        collectors.append(collector)
        app = falcon.App()
        app.add_route(SUMMARY, SummaryResource(collector, token=token))
        app.add_route("/health", HealthResource())
        return falcon.testing.TestClient(app)

    yield make
    for collector in collectors:
        collector.close()


def test_summary_has_every_section(
    dsn: str, make_client: Callable[..., falcon.testing.TestClient]
) -> None:
    insert(dsn, [(10.0, 200, 1.0), (30.0, 404, 1.0), (99.0, 200, 300.0)])
    resp = make_client().simulate_get(SUMMARY)
    assert resp.status_code == 200
    body = resp.json
    assert {"api", "redis", "postgres", "system", "writer", "collected_at"} <= set(body)
    assert body["api"]["request_count"] == 2
    assert body["api"]["error_count"] == 1
    assert body["writer"] is None
    assert body["period_hours"] == 1.0
    assert resp.headers["Cache-Control"] == "no-store"
    wide = make_client().simulate_get(SUMMARY, query_string="period_hours=24")
    assert wide.json["api"]["request_count"] == 3


@pytest.mark.parametrize("query", ["period_hours=0.5", "period_hours=720", "period_hours=1e2"])
def test_good_periods(make_client: Callable[..., falcon.testing.TestClient], query: str) -> None:
    resp = make_client().simulate_get(SUMMARY, query_string=query)
    assert resp.status_code == 200
    assert resp.json["period_hours"] == float(query.split("=")[1])


@pytest.mark.parametrize("query", BAD_PERIODS)
@pytest.mark.parametrize("token", [None, TOKEN])
def test_bad_period_is_400_with_a_json_reason(
    make_client: Callable[..., falcon.testing.TestClient], query: str, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = make_client(token=token).simulate_get(SUMMARY, query_string=query, headers=headers)
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "period_hours" in resp.json["description"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN],
)
def test_token_refuses_missing_wrong_or_malformed(
    make_client: Callable[..., falcon.testing.TestClient], authorization: str | None
) -> None:
    client = make_client(token=TOKEN)
    headers = {"Authorization": authorization} if authorization is not None else {}
    resp = client.simulate_get(SUMMARY, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "api" not in (resp.json or {})
    # Refused before the period is looked at.
    bad = client.simulate_get(SUMMARY, query_string="period_hours=nan", headers=headers)
    assert bad.status_code == 401


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_right_token_passes_and_health_stays_open(
    make_client: Callable[..., falcon.testing.TestClient], scheme: str
) -> None:
    client = make_client(token=TOKEN)
    resp = client.simulate_get(SUMMARY, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert resp.status_code == 200
    assert "api" in resp.json
    assert client.simulate_get("/health").json == {"status": "ok"}


def test_token_from_environment(
    make_client: Callable[..., falcon.testing.TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNEMO_OBS_TOKEN", TOKEN)
    client = make_client()
    assert client.simulate_get(SUMMARY).status_code == 401
    ok = client.simulate_get(SUMMARY, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


def test_redis_stopped_still_200(
    make_client: Callable[..., falcon.testing.TestClient], owned_redis: RedisServer
) -> None:
    client = make_client(redis=owned_redis.url)
    owned_redis.stop_server()
    resp = client.simulate_get(SUMMARY)
    assert resp.status_code == 200
    assert resp.json["redis"]["connected"] is False
    assert resp.json["api"]["request_count"] == 0


@pytest.mark.parametrize("bad", ["", "has space", "tab\tx", "é", "=abc"])
def test_unusable_tokens_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="bearer token"):
        resolve_token(bad)


def test_empty_env_token_means_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNEMO_OBS_TOKEN", "")
    assert resolve_token(None) is None
    monkeypatch.setenv("MNEMO_OBS_TOKEN", "bad token")
    with pytest.raises(ConfigurationError, match=r"\$MNEMO_OBS_TOKEN"):
        resolve_token(None)
