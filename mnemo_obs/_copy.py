"""Rows to binary COPY tuples: the encoding half of the writer (``_batch`` sends them).

COPY beat ``execute_values`` here by about 1.6x in rows/s at half the
Python CPU per row (``python -m benchmarks --only writer``); the CPU
matters because the writer thread shares the GIL with the request threads.
COPY's binary format halved that CPU again against its text format: a
float and a timestamp are packed as they are (``repr()`` of the latency and
the timestamp's text were two thirds of a text line's cost), nothing needs
escaping, and the server parses less. Text goes through as UTF-8 with NUL
bytes removed (PostgreSQL text cannot hold them); metadata is JSON built
with ``json``'s own string encoder, so no value can break a field or a row.
"""

from __future__ import annotations

import json
import re
import struct
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

NAME_MAX = 100  # metric_name is VARCHAR(100): longer names are cut, not rejected.
UNMATCHED = "<unmatched>"

# Binary COPY: a signature, flags and header-extension length, then per row
# a field count and, per field, its length and bytes; -1 ends the data.
HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)
# timestamptz travels as microseconds since 2000-01-01 UTC.
_EPOCH_2000 = 946_684_800.0
# A row's fixed start: 5 fields, then the timestamp's length (8).
_ROW_START = struct.pack(">hi", 5, 8)
_FLOAT_LENGTH = struct.pack(">i", 8)
_JSONB_VERSION = b"\x01"
_TRACE_END = b'"}'
_int32 = struct.Struct(">i").pack
_general = struct.Struct(">6sq")  # row start + timestamp; the rest is joined
# A JSON "\u0000" escape that is not itself an escaped backslash followed by
# "u0000": jsonb refuses NUL, so it is removed like NUL in text fields.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
# Per-writer caches of packed parts; routes are few, but record() names are
# the caller's (and methods the client's), so the caches are emptied past this size.
_CACHE_MAX = 4096


def _status_code(status: object) -> int:
    """The number of a status line ("404 Not Found"), an int or an HTTPStatus."""
    return int(status[:3]) if isinstance(status, str) else int(status)  # type: ignore[call-overload]


def clean_name(name: str) -> str:
    """A metric name as stored: NUL bytes removed, cut to 100 characters."""
    return name.replace("\x00", "")[:NAME_MAX]


def _text(value: str) -> bytes:
    """One text field: its length, then its UTF-8 bytes (NUL removed)."""
    data = value.replace("\x00", "").encode("utf-8")
    return _int32(len(data)) + data


def _jsonb(text: str) -> bytes:
    """One jsonb field from JSON text (version 1: the text form)."""
    data = _JSONB_VERSION + text.encode("utf-8")
    return _int32(len(data)) + data


class Formatter:
    """Turns queued rows into binary COPY tuples. One per writer thread.

    Two row shapes come off the queue: a request row
    ``(start, endpoint, latency_ms, method, status_code, trace_id)`` from the
    middlewares, and a general row ``(timestamp, metric_type, metric_name,
    value, metadata)`` from :meth:`MetricsWriter.record`. The metadata JSON
    is built here, on the writer thread, never on the request path.
    """

    def __init__(self, *, service: str = "") -> None:
        self._api: dict[tuple[Any, str, str], tuple[Any, bytes, bytes, bytes]] = {}
        self._names: dict[str, bytes] = {}
        self._service = service
        # The service goes in every row's metadata, after the endpoint.
        self._service_json = (
            f'"service": {_json_str(service.replace(chr(0), ""))}, ' if service else ""
        )

    def lines(self, rows: list[tuple[Any, ...]]) -> tuple[list[bytes], int, str | None]:
        """Return one encoded tuple per row, how many rows could not be encoded, and why."""
        out: list[bytes] = []
        bad = 0
        error = None
        if len(self._api) > _CACHE_MAX or len(self._names) > _CACHE_MAX:
            self._api.clear()
            self._names.clear()
        append, api, cached, general = out.append, self._api_tuple, self._api.get, self._general
        for row in rows:
            try:
                if len(row) == 6:
                    # The common case inline: a request row whose endpoint,
                    # method and status were seen before, with a trace id
                    # of ours (36 printable characters, no quote or backslash).
                    start, endpoint, latency_ms, method, status, trace_id = row
                    parts = cached((status, endpoint, method))
                    if (
                        parts is not None
                        and len(trace_id) == 36
                        and trace_id.isascii()
                        and trace_id.isprintable()
                        and '"' not in trace_id
                        and "\\" not in trace_id
                    ):
                        pack, name, meta, _ = parts
                        if latency_ms.__class__ is not float:
                            latency_ms = float(latency_ms)
                        append(
                            pack(
                                _ROW_START,
                                int((start - _EPOCH_2000) * 1_000_000.0),
                                name,
                                latency_ms,
                                meta,
                                trace_id.encode(),
                                _TRACE_END,
                            )
                        )
                    else:
                        append(api(row))
                else:
                    append(general(row))
            except Exception as exc:  # a bad row is counted, never fails its batch
                bad += 1
                error = f"unwritable row: {type(exc).__name__}: {exc}"
        return out, bad, error

    def _api_parts(
        self, status: Any, endpoint: str, method: str
    ) -> tuple[Any, bytes, bytes, bytes]:
        """Packed parts of a (status, endpoint, method): cached, built once."""
        code = _status_code(status)
        # Everything between the timestamp and the latency: metric_type,
        # metric_name, the latency's length.
        name = _text("api") + self._name(endpoint) + _FLOAT_LENGTH
        prefix = (
            f'{{"endpoint": {_json_str(endpoint.replace(chr(0), ""))}, {self._service_json}'
            f'"method": {_json_str(method.replace(chr(0), ""))}, "status_code": {code}, '
            '"trace_id": "'
        ).encode()
        # The metadata field up to the trace id, its length counting a
        # 36-character id and the closing quote and brace.
        meta = _int32(len(_JSONB_VERSION) + len(prefix) + 36 + 2) + _JSONB_VERSION + prefix
        pack = struct.Struct(f">6sq{len(name)}sd{len(meta)}s36s2s").pack
        parts = self._api[(status, endpoint, method)] = (pack, name, meta, prefix)
        return parts

    def _api_tuple(self, row: tuple[Any, ...]) -> bytes:
        """A request row the inline path did not take: first of its kind, or an odd trace id."""
        start, endpoint, latency_ms, method, status, trace_id = row
        parts = self._api.get((status, endpoint, method))
        if parts is None:
            parts = self._api_parts(status, endpoint, method)
        pack, name, _, prefix = parts
        latency_ms = float(latency_ms)
        stamp = int((start - _EPOCH_2000) * 1_000_000.0)
        trace = trace_id.replace("\x00", "")
        if (
            len(trace) == 36
            and trace.isascii()
            and trace.isprintable()
            and '"' not in trace
            and "\\" not in trace
        ):
            return pack(_ROW_START, stamp, name, latency_ms, parts[2], trace.encode(), _TRACE_END)
        # Anything a caller passed that is not one of our ids: JSON-escaped.
        meta = prefix + _json_str(trace)[1:].encode() + b"}"
        return (
            _general.pack(_ROW_START, stamp)
            + name
            + struct.pack(">d", latency_ms)
            + _int32(len(meta) + 1)
            + _JSONB_VERSION
            + meta
        )

    def _name(self, name: str) -> bytes:
        data = self._names.get(name)
        if data is None:
            data = self._names[name] = _text(clean_name(name))
        return data

    def _general(self, row: tuple[Any, ...]) -> bytes:
        ts, metric_type, metric_name, value, metadata = row
        meta = "{}"
        if self._service and (metadata is None or "service" not in metadata):
            metadata = {**(metadata or {}), "service": self._service}
        if metadata:
            meta = json.dumps(metadata, default=str, separators=(",", ":"))
            if "\\u0000" in meta:
                meta = _JSON_NUL.sub(r"\1", meta)
        # Floor, not truncation: a timestamp before 2000 stays in its microsecond.
        stamp = int((ts - _EPOCH_2000) * 1_000_000.0 // 1)
        return b"".join(
            (
                _general.pack(_ROW_START, stamp),
                _text(metric_type),
                self._name(metric_name),
                _FLOAT_LENGTH,
                struct.pack(">d", float(value)),
                _jsonb(meta),
            )
        )
