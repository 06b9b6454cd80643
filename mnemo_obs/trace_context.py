"""The trace id a request continues: X-Trace-ID, OpenTelemetry's current span, or W3C traceparent.

Requests from OpenTelemetry-instrumented clients carry a W3C ``traceparent``
header; apps instrumented with OpenTelemetry have a current span while a
request runs. Taking their trace id, instead of starting a new one, keeps a
trace whole across our door. The mapping is plain both ways: a W3C trace-id
is 32 lowercase hex digits, and mnemo_obs shows it in UUID form (8-4-4-4-12,
the same digits with hyphens): remove the hyphens to search the same id in
an OpenTelemetry backend.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from .tracing import TRACE_ENVIRON_KEY, new_trace_id, valid_trace_id

TRACEPARENT_ENVIRON_KEY = "HTTP_TRACEPARENT"

# version "-" trace-id "-" parent-id "-" flags, lowercase hex only.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_PARENT = "0" * 16


def as_uuid(hex32: str) -> str:
    """32 hex digits in UUID form (8-4-4-4-12)."""
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def parse_traceparent(value: str) -> str | None:
    """The trace id of a valid W3C ``traceparent``, in UUID form; None if it is not valid.

    The W3C Trace Context rules: lowercase hex; version ``ff`` is invalid;
    version ``00`` is exactly 55 characters; a later version may be longer,
    and is read by its prefix, the 56th character then being a ``-``; an
    all-zero trace-id or parent-id is invalid.
    """
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace, parent, _flags = match.groups()
    if version == "ff" or trace == _ZERO_TRACE or parent == _ZERO_PARENT:
        return None
    if version == "00" and len(value) != 55:
        return None
    if len(value) > 55 and value[55] != "-":
        return None
    return as_uuid(trace)


def from_opentelemetry() -> str | None:
    """The trace id of OpenTelemetry's current span, when it is loaded and one is valid."""
    trace_module = sys.modules.get("opentelemetry.trace")
    if trace_module is None:  # not loaded: nothing to ask, and nothing imported
        return None
    try:
        context = trace_module.get_current_span().get_span_context()
    except Exception:  # an SDK in a state we do not know: ours then
        return None
    if not context.is_valid:
        return None
    return as_uuid(f"{context.trace_id:032x}")


def continued_trace_id(environ: dict[str, Any]) -> str:
    """The request's trace id: its X-Trace-ID, else OpenTelemetry's span, else its
    traceparent, else a new one."""
    incoming = environ.get(TRACE_ENVIRON_KEY)
    if incoming:
        valid = valid_trace_id(incoming)
        if valid is not None:
            return valid
    if "opentelemetry.trace" in sys.modules:
        found = from_opentelemetry()
        if found is not None:
            return found
    parent = environ.get(TRACEPARENT_ENVIRON_KEY)
    if parent:
        found = parse_traceparent(parent)
        if found is not None:
            return found
    return new_trace_id()
