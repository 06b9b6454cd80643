"""LiveLogs: the log handler, its buffer, Redis if any, and the two routes, set up together.

:func:`mnemo_obs.install` builds one from its ``log_*`` options. Building
one validates every setting and starts nothing; :meth:`LiveLogs.attach`
puts the handler on its loggers, :meth:`LiveLogs.add_routes` adds the
routes, and :meth:`LiveLogs.close` undoes both and stops the forwarder.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._support import positive_float, positive_int
from ..errors import ConfigurationError
from .buffer import LogBuffer
from .forwarder import RedisLogForwarder
from .handler import LogHandler
from .records import LOGGER_MAX, LogFilter, parse_level, to_dict
from .redis_stream import DEFAULT_KEY, RedisLogReader
from .slots import StreamSlots
from .stream import REDIS_ERRORS

if TYPE_CHECKING:
    import falcon

log = logging.getLogger("mnemo_obs.logs")


def _logger_names(loggers: Iterable[str]) -> tuple[str, ...]:
    if isinstance(loggers, str):
        raise ConfigurationError(
            f"log_loggers must be an iterable of logger names, not the string {loggers!r} "
            '(the root logger is "")'
        )
    names = tuple(loggers)
    for name in names:
        if not isinstance(name, str) or len(name) > LOGGER_MAX:
            raise ConfigurationError(f"log_loggers: {name!r} is not a logger name")
    if not names:
        raise ConfigurationError('log_loggers must name at least one logger ("" is the root)')
    return names


class LiveLogs:
    """Collect log records and serve them at ``{prefix}/logs`` and ``{prefix}/logs/stream``.

    Args:
        level: the lowest level kept (name or number; default INFO).
        loggers: names of the loggers the handler goes on (default
            ``("",)``, the root logger, which sees every logger that propagates).
        buffer_size: records kept in this process (default 5,000); also
            the Redis stream's approximate ``MAXLEN``.
        redis_url: a Redis to share records through (``XADD``/``XREAD``),
            so one stream shows every process; None or ``""`` for none.
        redis_key: the Redis Stream's key (default ``mnemo_obs:logs``).
        token: the bearer token both routes need; defaults to
            ``$MNEMO_OBS_TOKEN``. Without one they answer 403.
        max_streams: streams open at once in this process (default 2);
            each holds a server thread.
        max_stream_seconds: a stream's lifetime (default 60); EventSource
            then reconnects and resumes.
        heartbeat_seconds: a ``: ping`` comment after this long without a
            write (default 2). A client that left is noticed when a write
            fails, a write or two later, so this bounds how long its slot
            stays taken.

    Raises:
        ConfigurationError: a bad setting, naming it.
    """

    MAX_STREAMS = 2
    MAX_STREAM_SECONDS = 60.0
    # 2 s, not the 15 s usual for SSE keep-alives: waitress notices a
    # departed client only when a write fails, one or two writes after it
    # left, and the slot (a server thread) is held until then.
    HEARTBEAT_SECONDS = 2.0
    # EventSource reconnects this long after a stream ends.
    RETRY_MS = 1000

    def __init__(
        self,
        *,
        level: str | int = "INFO",
        loggers: Iterable[str] = ("",),
        buffer_size: int = LogBuffer.SIZE,
        redis_url: str | None = None,
        redis_key: str = DEFAULT_KEY,
        token: str | None = None,
        max_streams: int = MAX_STREAMS,
        max_stream_seconds: float = MAX_STREAM_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        _clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.level = parse_level(level, "log_level")
        self.loggers = _logger_names(loggers)
        self.buffer = LogBuffer(positive_int("log_buffer_size", buffer_size))
        if not isinstance(redis_key, str) or not redis_key:
            raise ConfigurationError(f"log_redis_key must be a non-empty string, not {redis_key!r}")
        from ..resources import resolve_token  # it loads Falcon, which the routes need anyway

        self.token = resolve_token(token)
        self.max_streams = positive_int("log_max_streams", max_streams)
        self.max_stream_seconds = positive_float("log_max_stream_seconds", max_stream_seconds)
        self.heartbeat_seconds = positive_float("log_heartbeat_seconds", heartbeat_seconds)
        self.clock = _clock
        self.slots = StreamSlots(self.max_streams, _clock)
        self.closing = threading.Event()
        self.forwarder: RedisLogForwarder | None = None
        self.reader: RedisLogReader | None = None
        if redis_url:
            self.reader = RedisLogReader(redis_url, key=redis_key)
            self.forwarder = RedisLogForwarder(redis_url, key=redis_key, maxlen=self.buffer.size)
        forwarder = self.forwarder
        self.handler = LogHandler(
            self.buffer,
            level=self.level,
            forward=forwarder.submit if forwarder is not None else None,
            forward_skip_thread=(lambda: forwarder.thread_ident) if forwarder else None,
        )
        self._attached: list[logging.Logger] = []
        self.records_path: str | None = None  # set by add_routes
        self.stream_path: str | None = None

    @staticmethod
    def paths(prefix: str) -> tuple[str, str]:
        """The two routes under ``prefix``: ``/logs`` and ``/logs/stream``."""
        return f"{prefix}/logs", f"{prefix}/logs/stream"

    def add_routes(self, app: falcon.App, prefix: str) -> None:
        # Imported here: the resources need Falcon, `import mnemo_obs.logs` does not.
        from .resources import LogsResource, LogStreamResource

        self.records_path, self.stream_path = self.paths(prefix)
        app.add_route(self.records_path, LogsResource(self))
        app.add_route(self.stream_path, LogStreamResource(self))

    def attach(self) -> None:
        """Put the handler on its loggers (once)."""
        for name in self.loggers:
            logger = logging.getLogger(name or None)
            if self.handler not in logger.handlers:
                logger.addHandler(self.handler)
                self._attached.append(logger)
            if logger.getEffectiveLevel() > self.level:
                log.info(
                    "live logs: logger %r is at %s, so records below it never reach the "
                    "live logs (set its level to %s to collect them)",
                    name or "root",
                    logging.getLevelName(logger.getEffectiveLevel()),
                    logging.getLevelName(self.level),
                )

    def recent(self, match: LogFilter, limit: int) -> tuple[str, list[dict[str, Any]], str | None]:
        """``(source, records, reason)``: the newest ``limit`` matches, from Redis if it answers."""
        reason = None
        reader = self.reader
        if reader is not None:
            if reader.available():
                try:
                    return "redis", reader.tail(match, limit)[0], None
                except REDIS_ERRORS as exc:
                    reason = f"Redis unavailable: {reader.failed(exc)}"
            else:
                reason = f"Redis unavailable (failed recently: {reader.last_error})"
        pid = os.getpid()
        records = [
            {"id": self.buffer.format_id(seq), **to_dict(entry, pid)}
            for seq, entry in self.buffer.tail(match, limit)
        ]
        return "local", records, reason

    def stats(self) -> dict[str, Any]:
        """The buffer's, the handler's and the forwarder's counters, and the open streams."""
        return {
            "buffer": self.buffer.stats(),
            "handler_errors": self.handler.errors,
            "redis": None if self.forwarder is None else self.forwarder.stats(),
            "streams_open": self.slots.open,
            "max_streams": self.max_streams,
        }

    def close(self, timeout: float = 5.0) -> bool:
        """Detach the handler, end open streams, stop the forwarder within ``timeout``.

        Returns:
            True when the forwarder thread (if any) stopped in time.
        """
        for logger in self._attached:
            logger.removeHandler(self.handler)
        self._attached.clear()
        self.closing.set()
        self.buffer.wake_all()
        stopped = True
        if self.forwarder is not None:
            stopped = self.forwarder.close(timeout)
        if self.reader is not None:
            self.reader.close()
        return stopped
