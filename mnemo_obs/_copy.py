"""Rows to COPY text, and a batch into the ``metrics`` table in one round trip.

COPY beat ``execute_values`` here by about 1.6x in rows/s at half the
Python CPU per row (``python -m benchmarks --only writer``); the CPU
matters because the writer thread shares the GIL with the request threads.
Every text field is escaped for COPY's text format, so no value can end a
field or a row early: backslash, tab, newline and carriage return become
backslash escapes and NUL bytes (which PostgreSQL text cannot hold) are
removed.
"""

from __future__ import annotations

import io
import json
import re
import time
from json.encoder import encode_basestring_ascii as _json_str
from typing import TYPE_CHECKING, Any

import psycopg2

from .db import first_line

if TYPE_CHECKING:
    import psycopg2.extensions

COPY_SQL = "COPY metrics (timestamp, metric_type, metric_name, value, metadata) FROM STDIN"
NAME_MAX = 100  # metric_name is VARCHAR(100): longer names are cut, not rejected.
UNMATCHED = "<unmatched>"

_SPECIAL = re.compile(r"[\\\t\n\r\x00]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": None})
# A JSON "\u0000" escape that is not itself an escaped backslash followed by
# "u0000": jsonb refuses NUL, so it is removed like NUL in text fields.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_COPY_LINE = re.compile(r"COPY metrics, line (\d+)")
# Per-writer caches of escaped names; routes are few, but record() names are
# the caller's, so the caches are emptied past this size.
_CACHE_MAX = 4096


def escape(text: str) -> str:
    """Escape ``text`` as one field of COPY's text format."""
    if _SPECIAL.search(text) is None:
        return text
    return text.translate(_ESCAPES)


def _status_code(status: object) -> int:
    """The number of a status line ("404 Not Found"), an int or an HTTPStatus."""
    return int(status[:3]) if isinstance(status, str) else int(status)  # type: ignore[call-overload]


def clean_name(name: str) -> str:
    """A metric name as stored: NUL bytes removed, cut to 100 characters."""
    return name.replace("\x00", "")[:NAME_MAX]


class Formatter:
    """Turns queued rows into COPY lines. One per writer thread.

    Two row shapes come off the queue: a request row
    ``(start, endpoint, latency_ms, method, status_code, trace_id)`` from the
    middlewares, and a general row ``(timestamp, metric_type, metric_name,
    value, metadata)`` from :meth:`MetricsWriter.record`. The metadata JSON
    is built here, on the writer thread, never on the request path.
    """

    def __init__(self) -> None:
        self._second = -1
        self._second_text = ""
        self._names: dict[str, str] = {}
        self._api_meta: dict[tuple[str, str], tuple[str, str]] = {}
        self._codes: dict[object, int] = {}

    def lines(self, rows: list[tuple[Any, ...]]) -> tuple[list[str], int, str | None]:
        """Return the COPY lines, how many rows could not be formatted, and why."""
        out: list[str] = []
        bad = 0
        error = None
        if max(len(self._names), len(self._api_meta), len(self._codes)) > _CACHE_MAX:
            self._names.clear()
            self._api_meta.clear()
            self._codes.clear()
        api_line, general_line = self._api_line, self._general_line
        for row in rows:
            try:
                out.append(api_line(row) if len(row) == 6 else general_line(row))
            except Exception as exc:  # a bad row is counted, never fails its batch
                bad += 1
                error = f"unwritable row: {type(exc).__name__}: {exc}"
        try:
            "".join(out).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate somewhere: find its row
            good = []
            for line in out:
                try:
                    line.encode("utf-8")
                    good.append(line)
                except UnicodeEncodeError as exc:
                    bad += 1
                    error = f"unwritable row: {exc}"
            out = good
        return out, bad, error

    def _timestamp(self, ts: float) -> str:
        second = int(ts // 1)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S.", time.gmtime(second))
            self._second = second
        # str() of 1xxxxxx sliced: the zero-padded microseconds without the
        # cost of a format spec (":06d" took most of a row's formatting time).
        return f"{self._second_text}{str(int((ts - second) * 1_000_000) + 1_000_000)[1:]}+00"

    def _name(self, name: str) -> str:
        text = self._names.get(name)
        if text is None:
            text = self._names[name] = escape(clean_name(name))
        return text

    def _api_line(self, row: tuple[Any, ...]) -> str:
        start, endpoint, latency_ms, method, status_code, trace_id = row
        cached = self._api_meta.get((endpoint, method))
        if cached is None:
            cached = self._api_meta[(endpoint, method)] = (
                self._name(endpoint),
                escape(
                    f'{{"endpoint": {_json_str(endpoint.replace(chr(0), ""))}, '
                    f'"method": {_json_str(method.replace(chr(0), ""))}, "status_code": '
                ),
            )
        name, meta = cached
        # "200 OK", 200 or HTTPStatus.OK, whatever the framework holds: an int
        # by a dict lookup, so its str() is safe in the line.
        code = self._codes.get(status_code)
        if code is None:
            code = self._codes[status_code] = _status_code(status_code)
        # Exact type checked, not trusted: its repr() goes into the line.
        if latency_ms.__class__ is not float:
            latency_ms = float(latency_ms)
        # Ours are UUIDs; anything else a caller passes is escaped like the rest.
        if not trace_id.isprintable() or '"' in trace_id or "\\" in trace_id:
            trace_id = escape(_json_str(trace_id)[1:-1])
        if start // 1 != self._second:
            self._timestamp(start)
        return (
            f"{self._second_text}{str(int((start - self._second) * 1_000_000) + 1_000_000)[1:]}"
            f"+00\tapi\t{name}\t{latency_ms!r}\t{meta}{code}, "
            f'"trace_id": "{trace_id}"}}\n'
        )

    def _general_line(self, row: tuple[Any, ...]) -> str:
        ts, metric_type, metric_name, value, metadata = row
        meta = "{}"
        if metadata:
            meta = json.dumps(metadata, default=str, separators=(",", ":"))
            if "\\u0000" in meta:
                meta = _JSON_NUL.sub(r"\1", meta)
            meta = escape(meta)
        return (
            f"{self._timestamp(ts)}\t{escape(metric_type.replace(chr(0), ''))}\t"
            f"{self._name(metric_name)}\t{float(value)!r}\t{meta}\n"
        )


class Interrupted(Exception):
    """The connection failed during a batch: what is left to write, and the cause."""

    def __init__(self, remaining: list[str], written: int, rejected: int, cause: BaseException):
        super().__init__(str(cause))
        self.remaining = remaining
        self.written = written
        self.rejected = rejected
        self.cause = cause


def _copy(conn: psycopg2.extensions.connection, lines: list[str]) -> None:
    # The connection is in autocommit: the COPY commits by itself, so a
    # batch is one round trip (no BEGIN, no COMMIT).
    data = "".join(lines).encode("utf-8")
    # One read of the whole batch: psycopg2 releases and retakes the GIL
    # around each chunk it sends, and while request threads are busy each
    # retake can wait a full switch interval (5 ms); 8 KiB chunks made that
    # a dozen waits per batch.
    with conn.cursor() as cur:
        cur.copy_expert(COPY_SQL, io.BytesIO(data), size=len(data) + 1)


def _bad_line(exc: psycopg2.Error, size: int) -> int | None:
    """Index of the line PostgreSQL names in a COPY error, if it names one in range."""
    context = getattr(getattr(exc, "diag", None), "context", None) or ""
    match = _COPY_LINE.search(context)
    if match is None:
        return None
    index = int(match.group(1)) - 1
    return index if 0 <= index < size else None


def write_lines(
    conn: psycopg2.extensions.connection, lines: list[str]
) -> tuple[int, int, str | None]:
    """COPY ``lines``; return (rows written, rows rejected, first rejection message).

    A data error (a constraint, a value the column refuses) costs only its
    own row: COPY names the line, so the rows before it are written again
    and the rest goes on; without a line number the chunk is halved. Any
    other failure is the connection's, and raises :class:`Interrupted` with
    the rows not yet written.
    """
    written = rejected = 0
    error = None
    stack = [lines]
    while stack:
        chunk = stack.pop()
        try:
            _copy(conn, chunk)
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
            rejected_now, pieces = _split(chunk, _bad_line(exc, len(chunk)))
            rejected += rejected_now
            if rejected_now and error is None:
                error = first_line(exc)
            stack.extend(reversed([piece for piece in pieces if piece]))
        except Exception as exc:
            remaining = [line for piece in stack for line in piece] + chunk
            raise Interrupted(remaining, written, rejected, exc) from exc
        else:
            written += len(chunk)
    return written, rejected, error


def _split(chunk: list[str], bad: int | None) -> tuple[int, list[list[str]]]:
    if bad is not None:
        return 1, [chunk[:bad], chunk[bad + 1 :]]
    if len(chunk) == 1:
        return 1, []
    half = len(chunk) // 2
    return 0, [chunk[:half], chunk[half:]]
