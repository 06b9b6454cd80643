"""Stream slots: a cap on open streams, and the WSGI iterable that always gives its slot back.

Under a sync server (waitress) each open stream holds a worker thread, so
streams are capped per process. :class:`EventStream` is the iterable the
server writes from: its ``close()``, which a WSGI server calls however the
response ends (finished, failed, client gone), frees the slot, and a
finalizer frees it too if the iterable is dropped without being closed.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator


class StreamSlots:
    """At most ``limit`` streams at once; each slot remembers when its stream must end."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._ends: dict[object, float] = {}

    def acquire(self, lifetime: float) -> Slot | None:
        """A slot for a stream that ends ``lifetime`` seconds from now; None when all are taken."""
        with self._lock:
            if len(self._ends) >= self.limit:
                return None
            slot = Slot(self, self._clock() + lifetime)
            self._ends[slot] = slot.deadline
            return slot

    def _release(self, slot: Slot) -> None:
        with self._lock:
            self._ends.pop(slot, None)

    def retry_after(self) -> int:
        """Whole seconds until the soonest open stream ends (at least 1)."""
        with self._lock:
            soonest = min(self._ends.values(), default=self._clock())
        return max(1, int(soonest - self._clock() + 0.999))

    @property
    def open(self) -> int:
        return len(self._ends)


class Slot:
    """One stream's place; :meth:`release` is idempotent."""

    __slots__ = ("__weakref__", "_slots", "deadline")

    def __init__(self, slots: StreamSlots, deadline: float) -> None:
        self._slots = slots
        self.deadline = deadline

    def release(self) -> None:
        self._slots._release(self)


class EventStream:
    """The WSGI iterable of one stream: its chunks, and a ``close()`` that frees its slot."""

    def __init__(self, chunks: Iterator[bytes], slot: Slot) -> None:
        self._chunks = chunks
        # Frees the slot if the server drops the iterable without close().
        self._release = weakref.finalize(self, slot.release)

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._release()
