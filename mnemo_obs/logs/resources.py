"""Falcon resources: ``GET {prefix}/logs`` (JSON) and ``GET {prefix}/logs/stream`` (SSE).

Both always need the token: logs say more than metrics. Errors (403, 401,
400, 503) are answered with a JSON body set here rather than raised,
because Falcon's error serializer sends an empty body to a client whose
``Accept`` is ``text/event-stream``, and an SSE client must still read why.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import falcon

from ..errors import ConfigurationError
from ..resources import _BearerCheck
from ..tracing import valid_trace_id
from .buffer import parse_local_id
from .records import LOGGER_MAX, LogFilter, parse_level
from .redis_stream import parse_redis_id
from .slots import EventStream
from .stream import Plan, events

if TYPE_CHECKING:
    from .live import LiveLogs

SSE_TYPE = "text/event-stream"
TRACE_ID_MAX = 128
RESUME_ID_MAX = 64
NO_TOKEN = (
    "Live logs always need a token, and none is set. Pass log_token= (or token=) to "
    "mnemo_obs.install(), or set $MNEMO_OBS_TOKEN (mnemo-obs serve makes one when --token is "
    "not given), then send it as 'Authorization: Bearer <token>'."
)


def _answer_error(resp: falcon.Response, error: falcon.HTTPError) -> None:
    """Answer ``error`` with its JSON body whatever the client accepts."""
    resp.status = error.status
    for name, value in (error.headers or {}).items():
        resp.set_header(name, value)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(error.to_dict())
    resp.cache_control = ["no-store"]


class _Access:
    """403 when no token is configured, 401 (as the summary's) when it is missing or wrong."""

    def __init__(self, token: str | None) -> None:
        self._check = _BearerCheck(token) if token else None

    def __call__(self, req: falcon.Request) -> None:
        if self._check is None:
            raise falcon.HTTPForbidden(title="Live logs need a token", description=NO_TOKEN)
        self._check(req)


def _param(req: falcon.Request, name: str) -> str | None:
    raw = req.params.get(name)
    if isinstance(raw, list):
        raise falcon.HTTPInvalidParam("It was given more than once.", name)
    return raw


def _int_param(req: falcon.Request, name: str, default: int, maximum: int) -> int:
    raw = _param(req, name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise falcon.HTTPInvalidParam(f"It must be a whole number 0..{maximum}, got {raw!r}.", name)
    return int(raw)


def parse_filter(req: falcon.Request) -> LogFilter:
    """``trace_id``, ``level`` (at least this level) and ``logger`` (and its children).

    Raises:
        falcon.HTTPInvalidParam: a bad value, or one given twice (400).
    """
    trace_id = _param(req, "trace_id")
    if trace_id is not None:
        if len(trace_id) > TRACE_ID_MAX or not trace_id.isprintable():
            raise falcon.HTTPInvalidParam(
                f"It must be printable text of at most {TRACE_ID_MAX} characters.", "trace_id"
            )
        trace_id = valid_trace_id(trace_id) or trace_id
    level = _param(req, "level")
    try:
        min_level = parse_level(level) if level is not None else 0
    except ConfigurationError:
        raise falcon.HTTPInvalidParam(
            f"It must be DEBUG, INFO, WARNING, ERROR or CRITICAL (any case), got {level!r}.",
            "level",
        ) from None
    logger = _param(req, "logger")
    if logger is not None and (len(logger) > LOGGER_MAX or not logger.isprintable()):
        raise falcon.HTTPInvalidParam(
            f"It must be a logger name of at most {LOGGER_MAX} characters.", "logger"
        )
    return LogFilter(trace_id=trace_id, min_level=min_level, logger=logger)


def _resume_id(req: falcon.Request) -> str | None:
    """``Last-Event-ID`` (the header EventSource sends), else ``last_event_id=``."""
    header = req.get_header("Last-Event-ID")
    name, value = ("Last-Event-ID", header) if header else ("last_event_id", None)
    if value is None:
        value = _param(req, "last_event_id")
    if value is None or value == "":
        return None
    value = value.strip()
    if len(value) > RESUME_ID_MAX or not (
        value.isdigit() or parse_local_id(value) or parse_redis_id(value)
    ):
        raise falcon.HTTPInvalidParam(
            "It must be an id this endpoint sent (such as 3f2a9c1b:42 or 1700000000000-0).", name
        )
    return value


class LogsResource:
    """``GET {prefix}/logs?trace_id=&level=&logger=&limit=``: buffered records as JSON."""

    def __init__(self, live: LiveLogs) -> None:
        self._live = live
        self._access = _Access(live.token)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer the newest ``limit`` (default 100) matching records, oldest first."""
        try:
            self._access(req)
            match = parse_filter(req)
            limit = _int_param(req, "limit", 100, self._live.buffer.size)
        except falcon.HTTPError as error:
            _answer_error(resp, error)
            return
        source, records, reason = self._live.recent(match, limit)
        body: dict[str, Any] = {
            "source": source,
            "reason": reason,
            "count": len(records),
            "records": records,
            "stats": self._live.stats(),
        }
        resp.media = body
        resp.set_header("X-Log-Source", source)
        resp.cache_control = ["no-store"]


class LogStreamResource:
    """``GET {prefix}/logs/stream?trace_id=&level=&logger=&tail=``: live records over SSE."""

    def __init__(self, live: LiveLogs) -> None:
        self._live = live
        self._access = _Access(live.token)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Open a stream: replay (or resume), then follow, until its lifetime ends."""
        live = self._live
        try:
            self._access(req)
            match = parse_filter(req)
            tail = _int_param(req, "tail", 100, live.buffer.size)
            resume = _resume_id(req)
            slot = live.slots.acquire(live.max_stream_seconds)
            if slot is None:
                retry = live.slots.retry_after()
                raise falcon.HTTPServiceUnavailable(
                    title="Too many log streams",
                    description=f"{live.slots.limit} log streams are open, the most this "
                    f"process serves at once (log_max_streams); retry in {retry} s.",
                    retry_after=retry,
                )
        except falcon.HTTPError as error:
            _answer_error(resp, error)
            return
        disconnected = req.env.get("waitress.client_disconnected")
        plan = Plan(
            buffer=live.buffer,
            reader=live.reader,
            match=match,
            tail=tail,
            resume=resume,
            deadline=slot.deadline,
            heartbeat=live.heartbeat_seconds,
            retry_ms=live.RETRY_MS,
            closing=live.closing,
            disconnected=disconnected if callable(disconnected) else (lambda: False),
            clock=live.clock,
        )
        resp.content_type = SSE_TYPE
        resp.cache_control = ["no-cache"]
        # nginx would otherwise buffer the stream; hop-by-hop headers
        # (Connection, Transfer-Encoding) are the server's, never the app's.
        resp.set_header("X-Accel-Buffering", "no")
        resp.stream = EventStream(events(plan), slot)
