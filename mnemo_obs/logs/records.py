"""What a log record becomes: a small tuple on the caller's thread, a dict for JSON, a filter.

The handler keeps an *entry* per record, a plain tuple made on the
logging thread with nothing but attribute reads and ``getMessage()``:
``(created, levelno, levelname, logger, message, trace_id, exc)``. Dates,
JSON and the process details are added later, by whoever reads it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from typing import Any

from ..errors import ConfigurationError

# Positions in an entry.
CREATED, LEVELNO, LEVELNAME, LOGGER, MESSAGE, TRACE_ID, EXC = range(7)

Entry = tuple[float, int, str, str, str, "str | None", "str | None"]

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}
# Logger names are the app's own; one this long is a bug, and it would be
# kept 5,000 times over.
LOGGER_MAX = 200
_HOST = socket.gethostname()


def parse_level(value: object, name: str = "level") -> int:
    """A level name (DEBUG, INFO, WARNING, ERROR, CRITICAL, any case) or a number 0..100.

    Raises:
        ConfigurationError: anything else, naming ``name`` and the value.
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100:
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        if text in LEVELS:
            return LEVELS[text]
        if text.isdigit() and int(text) <= 100:
            return int(text)
    raise ConfigurationError(
        f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL (or a number 0..100), "
        f"not {value!r}"
    )


# (second, its text): records come in bursts, most share their second. One
# tuple, swapped whole, so threads never see one second with another's text.
_stamp: tuple[int, str] = (-1, "")


def iso_time(created: float) -> str:
    """Epoch seconds as ISO-8601 UTC with milliseconds."""
    global _stamp
    second = int(created)
    cached = _stamp
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _stamp = cached
    return f"{cached[1]}.{int(created * 1000) % 1000:03d}+00:00"


def to_dict(entry: Entry, pid: int | None = None) -> dict[str, Any]:
    """The JSON shape of an entry made in this process (``id`` is added by the caller)."""
    return {
        "time": iso_time(entry[CREATED]),
        "level": entry[LEVELNAME],
        "levelno": entry[LEVELNO],
        "logger": entry[LOGGER],
        "message": entry[MESSAGE],
        "trace_id": entry[TRACE_ID],
        "exc": entry[EXC],
        "pid": os.getpid() if pid is None else pid,
        "host": _HOST,
    }


def _quote_or_null(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def to_json(entry: Entry, event_id: str | None, pid: int) -> str:
    """:func:`to_dict` (plus ``id`` unless None) as one line of ASCII JSON, made by hand.

    Four times as fast as ``json.dumps`` of the dict, which matters once
    per record per open stream. Strings go through ``json``'s own C escaper
    (every control character, CR, LF and NUL escaped, non-ASCII as \\u);
    ``event_id`` is ours (hex, digits, ``:``, ``-``).
    """
    head = "{" if event_id is None else f'{{"id":"{event_id}",'
    return (
        f'{head}"time":"{iso_time(entry[CREATED])}",'
        f'"level":{_quote(entry[LEVELNAME])},"levelno":{int(entry[LEVELNO])},'
        f'"logger":{_quote(entry[LOGGER])},"message":{_quote(entry[MESSAGE])},'
        f'"trace_id":{_quote_or_null(entry[TRACE_ID])},"exc":{_quote_or_null(entry[EXC])},'
        f'"pid":{pid},"host":{_quote(_HOST)}}}'
    )


class LogFilter:
    """Which records a reader wants: a trace id, a minimum level, a logger and its children.

    Args:
        trace_id: only records with this trace id (exact); None for any.
        min_level: only records at this level or above (0: all).
        logger: only this logger and its children (``"app"`` matches
            ``app`` and ``app.db``, not ``apple``); None or ``""`` for any.
    """

    __slots__ = ("_child", "everything", "logger", "min_level", "trace_id")

    def __init__(
        self, *, trace_id: str | None = None, min_level: int = 0, logger: str | None = None
    ) -> None:
        self.trace_id = trace_id or None
        self.min_level = min_level
        self.logger = logger or None
        self._child = f"{logger}." if logger else ""
        self.everything = self.trace_id is None and min_level <= 0 and self.logger is None

    def _logger_ok(self, name: str) -> bool:
        return self.logger is None or name == self.logger or name.startswith(self._child)

    def matches(self, entry: Entry) -> bool:
        """Whether an entry of this process passes."""
        return (
            entry[LEVELNO] >= self.min_level
            and (self.trace_id is None or entry[TRACE_ID] == self.trace_id)
            and self._logger_ok(entry[LOGGER])
        )

    def matches_dict(self, record: dict[str, Any]) -> bool:
        """Whether a record read back from JSON (another process's, say) passes."""
        levelno = record.get("levelno")
        return (
            isinstance(levelno, int)
            and levelno >= self.min_level
            and (self.trace_id is None or record.get("trace_id") == self.trace_id)
            and self._logger_ok(str(record.get("logger", "")))
        )

    def describe(self) -> dict[str, Any]:
        """The filter as JSON, for the stream's ``hello`` event."""
        return {
            "trace_id": self.trace_id,
            "level": logging.getLevelName(self.min_level) if self.min_level else None,
            "logger": self.logger,
        }
