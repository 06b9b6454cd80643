"""LogHandler: a ``logging.Handler`` that keeps records for the live log routes.

On the logging thread it reads a few attributes, formats the message
(``record.getMessage()``, cut to ``message_max`` characters) and, only when
the record has an exception, its traceback; then it appends a tuple to the
:class:`LogBuffer` and, with Redis, to the forwarder's queue. No I/O, no
JSON, no wait beyond the buffer's short lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._support import Counter, positive_int
from ..tracing import _current

if TYPE_CHECKING:
    from .buffer import LogBuffer
    from .records import Entry


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [cut: {len(text):,} characters in all]"


class LogHandler(logging.Handler):
    """Keep each record as a small entry in ``buffer`` (and hand it to ``forward``).

    Each entry holds the time, level, logger name, the formatted message,
    the trace id (a ``trace_id`` already on the record, else the request's,
    from :func:`mnemo_obs.current_trace_id`) and the exception text.

    Args:
        buffer: where entries go.
        level: the lowest level kept (default INFO). The logger's own level
            still applies first: a logger at WARNING never passes INFO on.
        forward: called with each entry after the buffer (the Redis
            forwarder's ``submit``); must not block.
        forward_skip_thread: records logged on this thread are kept locally
            but not forwarded (the forwarder's own thread: what it logs about
            a failing Redis must not feed back into it).
        message_max: characters of message kept (default 8,192).
        exc_max: characters of exception text kept (default 16,384).
    """

    MESSAGE_MAX = 8192
    EXC_MAX = 16384

    def __init__(
        self,
        buffer: LogBuffer,
        *,
        level: int = logging.INFO,
        forward: Callable[[Entry], object] | None = None,
        forward_skip_thread: Callable[[], int | None] | None = None,
        message_max: int = MESSAGE_MAX,
        exc_max: int = EXC_MAX,
    ) -> None:
        super().__init__(level)
        self.buffer = buffer
        self._forward = forward
        self._skip_thread = forward_skip_thread or (lambda: None)
        self._message_max = positive_int("message_max", message_max)
        self._exc_max = positive_int("exc_max", exc_max)
        self._exc_formatter = logging.Formatter()
        self._errors = Counter()
        self._reported = False

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # Without logging.Handler's own RLock: the buffer has its lock, and
        # emit() keeps no other state. (Python 3.12 returns the record; a
        # true value does for both.)
        if self.filters and not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if len(message) > self._message_max:
                message = _cut(message, self._message_max)
            exc = None
            if record.exc_info:
                if not record.exc_text:  # cached on the record, as logging.Formatter does
                    record.exc_text = self._exc_formatter.formatException(record.exc_info)
                exc = record.exc_text
            elif record.exc_text:
                exc = record.exc_text
            if exc is not None and len(exc) > self._exc_max:
                exc = _cut(exc, self._exc_max)
            trace_id = getattr(record, "trace_id", None)
            if trace_id is None or trace_id == "-":
                trace_id = _current.get()
            elif not isinstance(trace_id, str):
                trace_id = str(trace_id)
            entry = (
                record.created,
                record.levelno,
                record.levelname,
                record.name,
                message,
                trace_id,
                exc,
            )
            self.buffer.append(entry)
            if self._forward is not None and threading.get_ident() != self._skip_thread():
                self._forward(entry)
            if record.levelno >= logging.WARNING:
                self._last_resort(record)
        except Exception:
            self._failed(record)

    def _last_resort(self, record: logging.LogRecord) -> None:
        # Python prints WARNING and above on stderr (logging.lastResort) when
        # a record finds no handler at all. Ours counts as one, so an app that
        # configured no logging would lose that output: give it back, unless
        # another handler is now on the record's way.
        last_resort = logging.lastResort
        if last_resort is None or record.levelno < last_resort.level:
            return
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return
            logger = logger.parent if logger.propagate else None
        last_resort.handle(record)

    def _failed(self, record: logging.LogRecord) -> None:
        self._errors.bump()
        if not self._reported:
            # Once, through logging's own stderr report: logging it would
            # come straight back here.
            self._reported = True
            self.handleError(record)

    @property
    def errors(self) -> int:
        """Records this handler failed to keep (a message whose formatting raised)."""
        return self._errors.value()
