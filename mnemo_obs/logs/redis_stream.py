"""Log records through a Redis Stream, so one stream shows every process's logs.

:class:`~mnemo_obs.logs.forwarder.RedisLogForwarder` writes them;
:class:`RedisLogReader` is what the routes read with: the newest records
(``XREVRANGE``), what follows an id (``XREAD BLOCK``, a short block so a
stream can check its lifetime and send heartbeats), and whether records
after an id were trimmed away.

Every Redis call has a socket timeout: a frozen Redis costs a stream or a
batch a second or two, never a hung thread. A failure marks Redis down for
a few seconds, during which readers go straight to the local buffer.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from .records import LogFilter

DEFAULT_KEY = "mnemo_obs:logs"
_REDIS_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def parse_redis_id(text: str) -> tuple[int, int] | None:
    """``(ms, seq)`` of a Redis stream id ``"<ms>-<seq>"``, or None if it is not one."""
    if not _REDIS_ID.fullmatch(text):
        return None
    ms, seq = text.split("-")
    return int(ms), int(seq)


def client(url: str, timeout: float, name: str) -> redis.Redis:
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=min(timeout, 1.0),
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            client_name=name,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid log_redis_url {url!r}: {exc}") from None


def one_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0]


class RedisLogReader:
    """Read a log stream back: the newest records, what follows an id, trimmed-away gaps.

    Each call raises ``redis.RedisError`` or ``OSError`` on failure and
    marks Redis down for ``DOWN_FOR`` seconds; :meth:`available` then says
    False without asking, so streams go straight to the local buffer.
    """

    # XREAD blocks this long at most, so a stream wakes to check its
    # lifetime, its client and its heartbeat.
    BLOCK = 1.0
    # Above BLOCK, so a blocked XREAD returns before the socket gives up.
    TIMEOUT = 2.5
    DOWN_FOR = 5.0
    SCAN = 500
    SCAN_MAX = 20_000

    def __init__(self, url: str, *, key: str = DEFAULT_KEY) -> None:
        self.url = url
        self.key = key
        self._client = client(url, self.TIMEOUT, "mnemo_obs.logs.reader")
        self._down_until = 0.0
        self.last_error: str | None = None

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> str:
        """Mark Redis down for a while; return the error as one line."""
        self.last_error = one_line(exc)
        self._down_until = time.monotonic() + self.DOWN_FOR
        return self.last_error

    @staticmethod
    def _decode(entry_id: str, fields: dict[str, str]) -> dict[str, Any] | None:
        try:
            record = json.loads(fields["r"])
        except (KeyError, ValueError, TypeError):
            return None  # not ours: skipped
        if not isinstance(record, dict):
            return None
        return {"id": entry_id, **record}

    def tail(self, match: LogFilter, count: int) -> tuple[list[dict[str, Any]], str]:
        """The newest ``count`` records passing ``match`` (oldest first), and the newest id.

        The newest id is where following starts (``"0-0"`` for an empty
        stream), so nothing added meanwhile is missed.
        """
        found: list[dict[str, Any]] = []
        newest = None
        upper = "+"
        scanned = 0
        while scanned < self.SCAN_MAX:
            chunk = self._client.xrevrange(self.key, upper, "-", count=self.SCAN)
            if not chunk:
                break
            if newest is None:
                newest = chunk[0][0]
            scanned += len(chunk)
            for entry_id, fields in chunk:
                record = self._decode(entry_id, fields)
                if record is not None and match.matches_dict(record):
                    found.append(record)
            if len(found) >= count or len(chunk) < self.SCAN:
                break
            upper = f"({chunk[-1][0]}"
        found = found[:count] if count > 0 else []
        found.reverse()
        return found, newest or "0-0"

    def read(self, after: str, block: float | None) -> tuple[list[dict[str, Any]], str]:
        """Records after id ``after`` (waiting up to ``block`` s for one), and the new cursor."""
        block_ms = None if block is None else max(1, int(min(block, self.BLOCK) * 1000))
        answer = self._client.xread({self.key: after}, count=self.SCAN, block=block_ms)
        if not answer:
            return [], after
        entries = answer[0][1]
        records = [r for r in (self._decode(i, f) for i, f in entries) if r is not None]
        return records, entries[-1][0] if entries else after

    def trimmed_after(self, after: str) -> bool:
        """Whether records that followed id ``after`` may have been trimmed away.

        True when ``after`` is older than the stream's first record, or newer
        than anything the stream ever held (an id from another stream).
        Redis does not keep how many records a trim removed, so this can
        say True when the first record kept was the very next one.
        """
        wanted = parse_redis_id(after)
        try:
            info = self._client.xinfo_stream(self.key)
        except redis.ResponseError:
            return wanted not in (None, (0, 0))  # no such key: whatever followed is gone
        first = info.get("first-entry")
        last = parse_redis_id(str(info.get("last-generated-id", "0-0")))
        if wanted is None or last is None:
            return True
        if wanted > last:
            return True
        first_id = parse_redis_id(first[0]) if first else None
        return first_id is not None and first_id > wanted and info.get("length", 0) > 0

    def close(self) -> None:
        self._client.close()
