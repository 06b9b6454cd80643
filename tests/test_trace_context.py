"""W3C traceparent and OpenTelemetry: a trace continues through mnemo_obs instead of restarting."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import falcon
import falcon.testing
import pytest

from mnemo_obs import MetricsMiddleware, MetricsWSGIMiddleware
from mnemo_obs.trace_context import as_uuid, parse_traceparent

from .recording import UUID4, fetch

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
UUID_FORM = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"00-{TRACE}-{PARENT}-01", UUID_FORM),
        (f"00-{TRACE}-{PARENT}-00", UUID_FORM),  # not sampled: still its id
        (f"01-{TRACE}-{PARENT}-01", UUID_FORM),  # a later version...
        (f"01-{TRACE}-{PARENT}-01-what-comes-next", UUID_FORM),  # ...read by its prefix
        (f"cc-{TRACE}-{PARENT}-09", UUID_FORM),
        # Refused by the specification's rules:
        (f"ff-{TRACE}-{PARENT}-01", None),  # version ff
        (f"00-{'0' * 32}-{PARENT}-01", None),  # all-zero trace-id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero parent-id
        (f"00-{TRACE.upper()}-{PARENT}-01", None),  # uppercase hex
        (f"0A-{TRACE}-{PARENT}-01", None),
        (f"00-{TRACE}-{PARENT}-01-extra", None),  # version 00 is exactly 55 characters
        (f"01-{TRACE}-{PARENT}-01extra", None),  # a later version: a "-" after the flags
        (f"00-{TRACE}-{PARENT}", None),  # too short
        (f"00-{TRACE[:-1]}g-{PARENT}-01", None),  # not hex
        (f"00_{TRACE}_{PARENT}_01", None),
        (f"00-{TRACE}-{PARENT}-1", None),
        ("", None),
        (" " + f"00-{TRACE}-{PARENT}-01", None),
    ],
)
def test_traceparent_parsing_follows_the_specification(header: str, expected: str | None) -> None:
    assert parse_traceparent(header) == expected


def test_the_mapping_both_ways() -> None:
    assert as_uuid(TRACE) == UUID_FORM
    assert UUID_FORM.replace("-", "") == TRACE


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"trace_id": req.context.trace_id}


@pytest.fixture
def app(dsn: str, make_writer: Any) -> Iterator[tuple[falcon.App, Any]]:
    writer = make_writer(dsn)
    made = falcon.App(middleware=[MetricsMiddleware(writer)])
    made.add_route("/hello", Hello())
    yield made, writer


def test_a_request_continues_the_callers_trace(app: tuple[falcon.App, Any], dsn: str) -> None:
    made, writer = app
    client = falcon.testing.TestClient(made)
    continued = client.simulate_get("/hello", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
    assert continued.headers["X-Trace-ID"] == UUID_FORM == continued.json["trace_id"]
    # An X-Trace-ID wins over a traceparent; a bad traceparent gives a fresh id.
    given = "0b6a1f2c-3d4e-4f50-8a61-7b8c9d0e1f20"
    both = client.simulate_get(
        "/hello", headers={"X-Trace-ID": given, "traceparent": f"00-{TRACE}-{PARENT}-01"}
    )
    assert both.headers["X-Trace-ID"] == given
    bad = client.simulate_get("/hello", headers={"traceparent": f"ff-{TRACE}-{PARENT}-01"})
    assert UUID4.fullmatch(bad.headers["X-Trace-ID"])
    # The nil UUID is nobody's trace.
    nil = client.simulate_get(
        "/hello", headers={"X-Trace-ID": "0" * 8 + "-0000-0000-0000-" + "0" * 12}
    )
    assert UUID4.fullmatch(nil.headers["X-Trace-ID"])
    assert writer.flush(10)
    assert UUID_FORM in [row["metadata"]["trace_id"] for row in fetch(dsn)]


def test_the_wsgi_wrapper_continues_it_too(dsn: str, make_writer: Any) -> None:
    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["mnemo_obs.trace_id"].encode()]

    wrapped = MetricsWSGIMiddleware(inner, make_writer(dsn))
    result = falcon.testing.TestClient(wrapped).simulate_get(
        "/", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}
    )
    assert result.text == UUID_FORM == result.headers["X-Trace-ID"]


def test_opentelemetry_in_the_same_app_shares_its_trace_id(dsn: str, make_writer: Any) -> None:
    """The real SDK and its Falcon instrumentation: the span's trace id is the request's."""
    otel_trace = pytest.importorskip("opentelemetry.trace")
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.falcon")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = instrumentation.FalconInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        writer = make_writer(dsn)
        app = falcon.App(middleware=[MetricsMiddleware(writer)])  # the instrumented class
        app.add_route("/hello", Hello())
        client = falcon.testing.TestClient(app)
        plain = client.simulate_get("/hello")
        continued = client.simulate_get(
            "/hello", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}
        )
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    span_ids = [as_uuid(f"{span.context.trace_id:032x}") for span in spans]
    assert plain.headers["X-Trace-ID"] == span_ids[0]  # OpenTelemetry's, not a new one
    assert continued.headers["X-Trace-ID"] == UUID_FORM == span_ids[1]
    assert otel_trace.get_current_span().get_span_context().is_valid is False  # none left over
