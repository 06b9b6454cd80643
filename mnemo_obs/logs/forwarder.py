"""RedisLogForwarder: log entries into a Redis Stream, from a background thread.

The handler hands each entry to :meth:`RedisLogForwarder.submit`, which
appends it to a bounded deque (past ``MAX_QUEUE`` it is dropped and
counted) and wakes the thread only if it sleeps. The thread, named
``mnemo_obs.logs``, ``XADD``s them in pipelined batches with an
approximate ``MAXLEN``, so the stream stays about as long as the local
buffer. While Redis fails, batches are dropped and counted, the failure is
logged once and the recovery once, and the thread retries every
``RETRY`` seconds; the local buffer keeps every record meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

import redis

from .._support import Counter
from .records import to_json
from .redis_stream import DEFAULT_KEY, client, one_line

if TYPE_CHECKING:
    from .records import Entry

log = logging.getLogger("mnemo_obs.logs")

_XADD_ALL = """
for i = 2, #ARGV do
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[i])
end
return #ARGV - 1
"""

_FORWARDERS: weakref.WeakSet[RedisLogForwarder] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # The parent's thread is not here, and its locks may be held: the child
    # starts its own thread with its first record (the queue stays the parent's).
    for forwarder in list(_FORWARDERS):
        forwarder._reset(closed=forwarder._closed)


os.register_at_fork(after_in_child=_after_fork_in_child)


class RedisLogForwarder:
    """``XADD`` entries to a Redis Stream from a background thread, off the logging thread.

    Nothing connects or starts at construction: the thread starts with the
    first entry (again in a forked child). While Redis fails, batches are
    dropped and counted, and the thread retries every ``retry`` seconds.
    """

    MAX_QUEUE = 10_000
    BATCH = 500
    # A record is in Redis this long after it was logged, at most, while
    # Redis answers: a live tail, not a batch job.
    INTERVAL = 0.05
    TIMEOUT = 1.0
    RETRY = 2.0

    def __init__(self, url: str, *, key: str = DEFAULT_KEY, maxlen: int = 5000) -> None:
        self.url = url
        self.key = key
        self.maxlen = maxlen
        self._client = client(url, self.TIMEOUT, "mnemo_obs.logs.forwarder")
        # One command per batch: redis-py packs a command in Python, and 500
        # XADDs cost ten times what one EVALSHA with 500 arguments does.
        self._script: Any = self._client.register_script(_XADD_ALL)
        self._reset()
        _FORWARDERS.add(self)

    def _reset(self, closed: bool = False) -> None:
        self._queue: deque[Entry] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = closed
        self._dropped_full = Counter()
        self._sent = self._dropped_redis = self._full_seen = 0
        self._full = False
        self._down_since: float | None = None
        self._last_error: str | None = None

    @property
    def thread_ident(self) -> int | None:
        """The forwarder thread's id (records it logs are not forwarded)."""
        thread = self._thread
        return thread.ident if thread is not None else None

    def submit(self, entry: Entry) -> None:
        """Queue ``entry`` (the logging thread's hot path); dropped and counted when full."""
        queue = self._queue
        if len(queue) >= self.MAX_QUEUE:
            self._dropped_full.bump()
            return
        if self._thread is None and not self._start():
            return
        queue.append(entry)
        if not self._wake.is_set():
            self._wake.set()

    def _start(self) -> bool:
        with self._start_lock:
            if self._closed:
                return False
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="mnemo_obs.logs", daemon=True)
                self._thread = thread
                thread.start()
        return True

    def _run(self) -> None:
        queue = self._queue
        while not self._stop.is_set() or queue:
            if not queue:
                self._note_full()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            batch = [queue.popleft() for _ in range(min(len(queue), self.BATCH))]
            self._send(batch)
            self._note_full()
            if self._down_since is not None:
                self._stop.wait(self.RETRY)
            elif len(queue) < self.BATCH:
                self._stop.wait(self.INTERVAL)  # let a burst gather into one round trip

    def _note_full(self) -> None:
        # Said from this thread, once when drops start and once when they
        # stop: the logging thread must never log from inside the handler.
        dropped = self._dropped_full.value()
        if dropped > self._full_seen and not self._full:
            self._full = True
            log.warning(
                "live logs: %d records wait for Redis, the most kept; newer ones are "
                "dropped for Redis and counted (this process keeps them)",
                self.MAX_QUEUE,
            )
        elif dropped == self._full_seen and self._full:
            self._full = False
            log.warning("live logs: the Redis queue drains again; %d records dropped", dropped)
        self._full_seen = dropped

    def _send(self, batch: list[Entry]) -> None:
        pid = os.getpid()
        try:
            records = [to_json(entry, None, pid) for entry in batch]
            if self._script is not None:
                try:
                    self._script(keys=[self.key], args=[self.maxlen, *records])
                except redis.ResponseError as exc:  # scripts refused (ACL, a proxy): plain XADDs
                    log.warning("live logs: Redis refused the XADD script (%s)", one_line(exc))
                    self._script = None
            if self._script is None:
                pipe = self._client.pipeline(transaction=False)
                for record in records:
                    pipe.xadd(self.key, {"r": record}, maxlen=self.maxlen, approximate=True)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._dropped_redis += len(batch)
            self._last_error = one_line(exc)
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.warning(
                    "live logs: Redis unreachable (%s); records stay in this process "
                    "until it answers, the others are dropped and counted",
                    self._last_error,
                )
            return
        self._sent += len(batch)
        if self._down_since is not None:
            # A warning: it reports records lost.
            log.warning(
                "live logs: Redis answers again after %.1f s; %d records were not forwarded",
                time.monotonic() - self._down_since,
                self._dropped_redis,
            )
            self._down_since = None

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is queued (within ``timeout``), stop the thread; True if it stopped."""
        with self._start_lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        stopped = True
        if thread is not None:
            thread.join(timeout)
            stopped = not thread.is_alive()
        self._client.close()
        return stopped

    def stats(self) -> dict[str, Any]:
        """Counters since start, in this process."""
        return {
            "sent": self._sent,
            "queued": len(self._queue),
            "dropped_queue_full": self._dropped_full.value(),
            "dropped_redis_error": self._dropped_redis,
            "redis_up": self._down_since is None,
            "last_error": self._last_error,
        }
