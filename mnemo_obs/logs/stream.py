"""One SSE response's chunks: a first comment, a ``hello``, the replay, then live records.

Records come from Redis when it is configured and answers, else from this
process's buffer, and the ``hello`` event says which. A stream ends after
its lifetime (EventSource then reconnects with ``Last-Event-ID`` and
resumes), when the logs are closed, or when its client has gone.

A departed client is noticed only when a write fails, a write or two after
it left, so heartbeats (every ``heartbeat`` seconds) also bound how long a
slot outlives its client. Under waitress with ``channel_request_lookahead``
set, ``waitress.client_disconnected`` notices at once, and is checked at
every wake-up.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from . import sse
from .buffer import parse_local_id
from .records import to_json
from .redis_stream import parse_redis_id

if TYPE_CHECKING:
    from .buffer import LogBuffer
    from .records import LogFilter
    from .redis_stream import RedisLogReader

REDIS_ERRORS = (redis.RedisError, OSError)
# Entries read per pass; a pass over more waits for the next one.
BATCH = 500
# After a wake-up, records this close together go out in one write.
COALESCE = 0.05


@dataclass
class Plan:
    """What one stream serves: filters, where it starts, how long it lives."""

    buffer: LogBuffer
    reader: RedisLogReader | None
    match: LogFilter
    tail: int
    resume: str | None
    deadline: float
    heartbeat: float
    retry_ms: int
    closing: threading.Event
    disconnected: Callable[[], bool] = lambda: False
    clock: Callable[[], float] = time.monotonic
    pid: int = field(default_factory=os.getpid)

    def encode(self, seq: int, entry: Any) -> bytes:
        """The ``log`` event of one of this process's entries."""
        event_id = self.buffer.format_id(seq)
        return sse.log_event(event_id, to_json(entry, event_id, self.pid))


class _Unavailable(Exception):
    """Redis failed before the stream sent anything of it: serve the local buffer."""


def events(plan: Plan) -> Iterator[bytes]:
    """The stream's chunks: a first comment at once, a ``hello``, the replay, then live records."""
    yield sse.comment("mnemo_obs live logs") + sse.retry(plan.retry_ms)
    reason = None
    reader = plan.reader
    if reader is not None:
        if reader.available():
            chunks = _redis_events(plan, reader)
            try:
                first = next(chunks)
            except _Unavailable as exc:
                reason = f"Redis unavailable: {exc}"
            except StopIteration:
                return
            else:
                yield first
                yield from chunks
                return
        else:
            reason = f"Redis unavailable (failed recently: {reader.last_error})"
    yield from _local_events(plan, reason)


def _hello(plan: Plan, source: str, reason: str | None) -> bytes:
    return sse.json_event(
        "hello",
        {
            "source": source,
            "reason": reason,
            "filters": plan.match.describe(),
            "tail": plan.tail,
            "resume": plan.resume,
            "heartbeat_seconds": plan.heartbeat,
        },
    )


def _gap(lost: int | None, after: str | None, reason: str) -> bytes:
    return sse.json_event("gap", {"lost": lost, "after": after, "reason": reason})


_UNKNOWN = (
    "the resume id is not from this source (another process, an earlier run, or the other "
    "source): records since then may be missing; the newest are replayed"
)
_ENDED = "the stream's lifetime is over: reconnect with Last-Event-ID to resume"


class _Pacer:
    """When the next heartbeat is due, and whether the stream should stop."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.last_write = plan.clock()

    def done(self) -> bool:
        plan = self.plan
        return plan.closing.is_set() or plan.clock() >= plan.deadline or plan.disconnected()

    def wrote(self) -> None:
        self.last_write = self.plan.clock()

    def wait_for(self) -> float:
        """Seconds until the next heartbeat or the end; 0 when a heartbeat is due."""
        plan = self.plan
        now = plan.clock()
        return max(0.0, min(self.last_write + plan.heartbeat, plan.deadline) - now)

    def ping(self, mark: str | None) -> bytes:
        self.wrote()
        return sse.mark(mark) if mark is not None else sse.comment("ping")


def _local_events(plan: Plan, reason: str | None) -> Iterator[bytes]:
    buffer, match = plan.buffer, plan.match
    wake = buffer.subscribe()
    try:
        cursor = buffer.last_seq  # the stream starts now: later records are live ones
        yield _hello(plan, "local", reason)
        out: list[bytes] = []
        resume = _resume_local(plan, cursor)
        if resume is None:
            if plan.resume is not None:
                out.append(_gap(None, plan.resume, _UNKNOWN))
            replay = [item for item in buffer.tail(match, plan.tail) if item[0] <= cursor]
            out.extend(_local_event(plan, seq, entry) for seq, entry in replay)
        else:
            cursor = resume
        if out:
            yield b"".join(out)
        pacer = _Pacer(plan)
        unmarked = False  # records skipped by the filter since the last id sent
        everything, encoded, encode = match.everything, buffer.encoded, plan.encode
        while not pacer.done():
            wake.clear()
            items, lost = buffer.after(cursor, BATCH)
            out = [_gap(lost, buffer.format_id(cursor), "overwritten")] if lost else []
            for seq, entry in items:
                if everything or match.matches(entry):
                    out.append(encoded(seq, entry, encode))
                    unmarked = False
                else:
                    unmarked = True
            if items:
                cursor = items[-1][0]
            if out:
                yield b"".join(out)
                pacer.wrote()
            if len(items) == BATCH:
                continue
            wait = pacer.wait_for()
            if wait <= 0:
                yield pacer.ping(buffer.format_id(cursor) if unmarked else None)
                unmarked = False
            elif wake.wait(wait):
                plan.closing.wait(COALESCE)
        yield sse.comment(_ENDED)
    finally:
        buffer.unsubscribe(wake)


def _resume_local(plan: Plan, newest: int) -> int | None:
    """The seq to resume after, or None when the id is not one of this buffer's."""
    if plan.resume is None:
        return None
    parsed = parse_local_id(plan.resume)
    if parsed is not None:
        epoch, seq = parsed
        return seq if epoch == plan.buffer.epoch and seq <= newest else None
    if plan.resume.isdigit() and int(plan.resume) <= newest:
        return int(plan.resume)
    return None


def _local_event(plan: Plan, seq: int, entry: Any) -> bytes:
    return plan.buffer.encoded(seq, entry, plan.encode)


def _redis_events(plan: Plan, reader: RedisLogReader) -> Iterator[bytes]:
    match = plan.match
    out: list[bytes] = []
    try:
        resume = plan.resume if plan.resume and parse_redis_id(plan.resume) else None
        if resume is not None:
            cursor = resume
            if reader.trimmed_after(resume):
                out.append(_gap(None, resume, "trimmed from the Redis stream"))
        else:
            if plan.resume is not None:
                out.append(_gap(None, plan.resume, _UNKNOWN))
            replay, cursor = reader.tail(match, plan.tail)
            out.extend(sse.json_event("log", record, record["id"]) for record in replay)
    except REDIS_ERRORS as exc:
        raise _Unavailable(reader.failed(exc)) from None
    yield _hello(plan, "redis", None) + b"".join(out)
    pacer = _Pacer(plan)
    unmarked = False
    while not pacer.done():
        try:
            records, new_cursor = reader.read(cursor, pacer.wait_for() or None)
        except REDIS_ERRORS as exc:
            yield sse.comment(f"Redis failed ({reader.failed(exc)}): reconnect to resume")
            return
        out = []
        for record in records:
            if match.matches_dict(record):
                out.append(sse.json_event("log", record, record["id"]))
                unmarked = False
            else:
                unmarked = True
        unmarked = unmarked or (new_cursor != cursor and not records)
        cursor = new_cursor
        if out:
            yield b"".join(out)
            pacer.wrote()
        if pacer.wait_for() <= 0:
            yield pacer.ping(cursor if unmarked else None)
            unmarked = False
        elif records and len(records) < reader.SCAN:
            plan.closing.wait(COALESCE)
    yield sse.comment(_ENDED)
