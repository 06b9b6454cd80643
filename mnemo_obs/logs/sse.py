"""Server-Sent Events framing: text in, bytes that no message can break out of.

An event is ``field: value`` lines ended by a blank line. A value must
not contain CR or LF (either ends the line, and a second one ends the
event), and NUL makes a browser drop an id. Log records travel as JSON
made with ``ensure_ascii``, so their ``data:`` is one line of ASCII
whatever the message holds (CR, LF, U+2028, NUL, lone surrogates are all
escaped); other text is split into one ``data:`` line per line.
"""

from __future__ import annotations

import json
import re
from typing import Any

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _clean(value: str) -> str:
    """One line: line breaks become spaces, NUL goes."""
    return _LINE_BREAK.sub(" ", value).replace("\0", "")


def comment(text: str) -> bytes:
    """A comment line (``: text``), which EventSource ignores; keeps the connection alive."""
    return f": {_clean(text)}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    """How long EventSource waits before it reconnects."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def event(name: str, data: str, event_id: str | None = None) -> bytes:
    """One event; ``data`` may hold line breaks: each line becomes its own ``data:`` line.

    ``data`` is never empty on the wire: EventSource ignores an event without
    data, so an empty string is sent as one empty ``data:`` line.
    """
    lines = [f"id: {_clean(event_id)}"] if event_id is not None else []
    lines.append(f"event: {_clean(name)}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data.replace("\0", "")))
    return ("\n".join(lines) + "\n\n").encode("utf-8", "replace")


def json_event(name: str, payload: Any, event_id: str | None = None) -> bytes:
    """An event whose data is ``payload`` as one line of ASCII JSON."""
    return event(name, json.dumps(payload, ensure_ascii=True, separators=(",", ":")), event_id)


def log_event(event_id: str, json_line: str) -> bytes:
    """A ``log`` event from a record's JSON (:func:`~mnemo_obs.logs.records.to_json`).

    The fast path: both are ASCII without line breaks by construction, so
    nothing is split or cleaned here.
    """
    return f"id: {event_id}\nevent: log\ndata: {json_line}\n\n".encode("ascii")


def mark(event_id: str) -> bytes:
    """An id with no data: EventSource records it as the last id but fires no event.

    Sent with a heartbeat when the filter skipped records, so a reconnect
    resumes after them rather than re-reading (or losing) them.
    """
    return f"id: {_clean(event_id)}\n: ping\n\n".encode()
