"""Hostile input never costs a request: query strings, trace ids, paths, methods, credentials.

Property-based (hypothesis) in-process, then raw bytes through a real
waitress server, with every recorded row read back from PostgreSQL.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import falcon
import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnemo_obs.demo import make_app
from mnemo_obs.installation import Installation, install

from .httpserver import serving
from .recording import UUID4, fetch

SUMMARY = "/api/monitoring/advanced/summary"
TOKEN = "s3cret-Token_1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ANY_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What a row's name can be: a route template of the demo app, or <unmatched>.
NAMES = {"/", "/items/{item_id:int}", "/slow", "/boom", "<unmatched>"}
SLOW_EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def installed(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[falcon.App, Installation]]:
    """The demo app with mnemo_obs installed behind a token (summary cached 60 s)."""
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    app = make_app()
    handle = install(app, dsn=dsn, redis_url=redis_url, token=TOKEN, cache_ttl=60)
    try:
        yield app, handle
    finally:
        handle.close(10)


def no_crlf(headers: Any) -> bool:
    return not any("\r" in v or "\n" in v for v in headers.values())


# Latin-1 text, as a WSGI server hands it over, with and without a period_hours= in front.
_LATIN1 = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF), max_size=40)
QUERIES = st.one_of(
    # A leading "?" is refused by Falcon's test client itself, before the app.
    _LATIN1.map(lambda text: text.lstrip("?")),
    _LATIN1.map(lambda text: f"period_hours={text}"),
    st.floats().map(lambda number: f"period_hours={number!r}"),
    st.binary(max_size=12).map(lambda raw: "period_hours=" + urllib.parse.quote_from_bytes(raw)),
    st.lists(st.sampled_from(["period_hours=1", "period_hours=2", "x=1", "&", "="])).map("".join),
)


@SLOW_EXAMPLES
@given(query=QUERIES)
def test_summary_query_string_is_200_or_a_json_400(installed: Any, query: str) -> None:
    app, _handle = installed
    resp = falcon.testing.TestClient(app).simulate_get(SUMMARY, query_string=query, headers=AUTH)
    assert resp.status_code in (200, 400), (query, resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    assert no_crlf(resp.headers)
    if resp.status_code == 200:
        assert 0 < resp.json["period_hours"] <= 720
        assert "error" not in resp.json["api"]
    else:
        assert "period_hours" in resp.json["description"]


TRACE_IDS = st.one_of(
    st.text(max_size=80),
    st.uuids().map(str).map(str.upper),
    st.uuids().map(str),
    st.tuples(st.uuids().map(str), st.text(max_size=4), st.integers(0, 36)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    ),
)


@SLOW_EXAMPLES
@given(given_id=TRACE_IDS)
def test_any_incoming_trace_id_gives_a_uuid_and_one_row(
    installed: Any, dsn: str, given_id: str
) -> None:
    app, handle = installed
    query = "metadata->>'trace_id' = lower(%s)"
    valid = ANY_UUID.fullmatch(given_id.lower())
    before = len(fetch(dsn, query, (given_id,))) if valid else 0  # hypothesis repeats ids
    resp = falcon.testing.TestClient(app).simulate_get("/items/7", headers={"X-Trace-ID": given_id})
    assert resp.status_code == 200
    assert no_crlf(resp.headers)
    trace_id = resp.headers["X-Trace-ID"]
    if valid:
        assert trace_id == given_id.lower()  # a well-formed one is kept
    else:
        assert UUID4.fullmatch(trace_id), trace_id  # anything else is replaced
    assert handle.writer.flush(10)
    rows = fetch(dsn, query, (trace_id,))
    assert [row["metric_name"] for row in rows] == ["/items/{item_id:int}"] * (before + 1)


@contextmanager
def waitress_server(app: falcon.App) -> Iterator[int]:
    with serving(app, threads=2) as port:
        yield port


def raw_request(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as bytes (HTTP/1.0: the server closes); status, headers, body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


HOSTILE_REQUESTS = [
    b"GET /" + b"a" * 10_000,
    b"GET /items/" + b"9" * 10_000,  # past int()'s 4,300-digit limit
    b"GET /items/%00%ff%fe%0d%0a%25%zz%",
    b"GET /%C0%AF%E2%80%A8%F0%9F%92%A9",
    b"GET /items/1;DROP%20TABLE%20metrics;--",
    b"GET /items/1'%20OR%20'1'='1",
    b"GET /slow?ms=1;DELETE%20FROM%20metrics",
    b"GET /items/7?q=%27);DROP%20TABLE%20metrics;--&q=\\x00",
    b"SELECT*FROM /items/7",
    b"X" * 10_000 + b" /items/7",
    b"DELETE /items/7",
]


def test_hostile_requests_through_waitress_are_answered_and_recorded_safely(
    installed: Any, dsn: str
) -> None:
    app, handle = installed
    traced = {}
    with waitress_server(app) as port:
        for request in HOSTILE_REQUESTS:
            status, headers, _body = raw_request(port, request + b" HTTP/1.0\r\n\r\n")
            assert status < 500, (request[:60], status)
            assert UUID4.fullmatch(headers["x-trace-id"])
            traced[headers["x-trace-id"]] = (request, status)
        # Bytes that are not UTF-8 in the path, or not allowed in a header, are
        # refused by waitress itself: no trace id, no row.
        for request in (b"GET /items/\xff\xfe HTTP/1.0\r\n\r\n",):
            status, headers, _body = raw_request(port, request)
            assert status == 400 and "x-trace-id" not in headers
    assert handle.writer.flush(10)
    rows = {row["metadata"]["trace_id"]: row for row in fetch(dsn)}
    assert set(rows) == set(traced)
    for trace_id, (request, status) in traced.items():
        row = rows[trace_id]
        assert row["metric_name"] in NAMES, row["metric_name"][:80]
        assert row["metadata"]["status_code"] == status
        # A method is cut to 32 characters: a client cannot make rows (or the
        # writer's caches) as large as its request line.
        assert row["metadata"]["method"] == request.split(b" ")[0][:32].decode()
    assert handle.writer.stats()["rejected"] == 0


BAD_AUTHORIZATION = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}",
    f"Token {TOKEN}",
    TOKEN,
    f"Bearer {TOKEN}, Bearer {TOKEN}",
    f"Bearer {TOKEN.upper()}",
    "Bearer " + "A" * 10_000,
    "Bearer \u00e9\u00ff",
]


def test_every_monitoring_request_without_the_token_is_a_bare_401(installed: Any) -> None:
    app, _handle = installed
    bodies = set()
    with waitress_server(app) as port:
        for query in ("", "?period_hours=24", "?period_hours=nan", "?period_hours=1&x=%00"):
            for authorization in BAD_AUTHORIZATION:
                header = (
                    b""
                    if authorization is None
                    else b"Authorization: %s\r\n" % (authorization.encode("latin-1"))
                )
                request = b"GET %s%s HTTP/1.0\r\n%s\r\n" % (
                    SUMMARY.encode(),
                    query.encode(),
                    header,
                )
                status, headers, body = raw_request(port, request)
                assert status == 401, (query, authorization)
                assert headers["www-authenticate"] == 'Bearer realm="mnemo_obs"'
                # A trace id like every response; the summary is never recorded.
                assert UUID4.fullmatch(headers["x-trace-id"])
                bodies.add(body)
        status, _headers, body = raw_request(
            port,
            b"GET %s HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n"
            % (SUMMARY.encode(), TOKEN.encode()),
        )
        assert status == 200 and b'"api"' in body
    # One body for every refusal, naming no figure, host detail or token.
    assert len(bodies) == 1
    (refusal,) = bodies
    for secret in (TOKEN.encode(), b"api", b"redis", b"postgres", b"memory", b"writer"):
        assert secret not in refusal
