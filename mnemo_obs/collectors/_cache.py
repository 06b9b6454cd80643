"""A small TTL cache where concurrent misses on one key wait for a single computation."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlightCache(Generic[T]):
    """Values kept ``ttl`` seconds; one computation per stale key, however many ask.

    The first caller to find a key missing or expired computes it, outside
    the lock; callers arriving meanwhile wait for that result instead of
    starting their own. A computation that raises is not cached, and its
    exception goes to everyone who waited on it. In a forked child,
    computations under way in the parent are forgotten.

    Args:
        ttl: seconds a value stays fresh; 0 disables caching but still
            merges concurrent computations.
        max_entries: keys kept at most; expired ones go first.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[Hashable, tuple[float, T]] = {}
        self._inflight: dict[Hashable, Future[T]] = {}
        _LIVE.add(self)

    def _after_fork(self) -> None:
        # The threads computing in the parent do not exist in a forked child:
        # a caller there must not wait on their futures, nor on their lock.
        self._lock = threading.Lock()
        self._inflight = {}

    def get(self, key: Hashable, compute: Callable[[], T], *, wait: float | None = None) -> T:
        """The fresh value for ``key``, computing it with ``compute()`` if needed.

        A caller that finds the key being computed waits at most ``wait``
        seconds (None: no limit) for that result, then computes its own.
        """
        with self._lock:
            now = self._clock()
            entry = self._values.get(key)
            if entry is not None and entry[0] > now:
                return entry[1]
            future = self._inflight.get(key)
            leader = future is None
            if future is None:
                future = self._inflight[key] = Future()
        if not leader:
            try:
                return future.result(wait)
            except FutureTimeout:
                return compute()
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._inflight[key]
            future.set_exception(exc)
            raise
        with self._lock:
            del self._inflight[key]
            if self._ttl > 0:
                self._store(key, value)
        future.set_result(value)
        return value

    def _store(self, key: Hashable, value: T) -> None:
        now = self._clock()
        if key not in self._values and len(self._values) >= self._max_entries:
            for stale in [k for k, (expires, _v) in self._values.items() if expires <= now]:
                del self._values[stale]
            while len(self._values) >= self._max_entries:
                del self._values[next(iter(self._values))]  # the oldest insertion
        self._values[key] = (now + self._ttl, value)

    def clear(self) -> None:
        """Forget every cached value (computations under way still finish)."""
        with self._lock:
            self._values.clear()


_LIVE: weakref.WeakSet[SingleFlightCache[object]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_LIVE):
        cache._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
