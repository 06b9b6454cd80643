"""LogBuffer: the last N log entries of this process, each with an increasing id.

A fixed-size ring: entry ``seq`` lives in slot ``seq % size``, so a full
buffer overwrites the oldest entry, and how many were overwritten is
``next - size``: counted without a counter. Appending takes one short lock
(no I/O, no allocation but a pair); readers copy what they need under the
same lock and filter outside it.

Readers that follow the buffer (the SSE streams) each get an Event that an
append sets, only if it is not set already, so a burst of records wakes a
stream once, not once per record.
"""

from __future__ import annotations

import os
import re
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._support import positive_int

if TYPE_CHECKING:
    from .records import Entry, LogFilter

# Local ids are "<epoch>:<seq>": the epoch is new in every process (and
# after a fork), so an id from another worker or an earlier run is told
# apart from one of ours instead of being read as a position in our buffer.
_LOCAL_ID = re.compile(r"([0-9a-f]{8}):([0-9]{1,18})")

_BUFFERS: weakref.WeakSet[LogBuffer] = weakref.WeakSet()


def _new_epoch() -> str:
    return os.urandom(4).hex()


def _after_fork_in_child() -> None:
    # The parent's streams do not exist here, and its lock may be held by a
    # thread that does not exist either. Entries are kept, under a new epoch.
    for buffer in list(_BUFFERS):
        buffer._lock = threading.Lock()
        buffer._wakers = ()
        buffer.epoch = _new_epoch()


os.register_at_fork(after_in_child=_after_fork_in_child)


def parse_local_id(text: str) -> tuple[str, int] | None:
    """``(epoch, seq)`` of a local id ``"<epoch>:<seq>"``, or None if it is not one."""
    match = _LOCAL_ID.fullmatch(text)
    return (match.group(1), int(match.group(2))) if match else None


class LogBuffer:
    """A thread-safe ring of the last ``size`` entries, with ids, gap counts and wake-ups.

    Args:
        size: entries kept (default 5,000). Past it the oldest is overwritten.
    """

    SIZE = 5000

    def __init__(self, size: int = SIZE) -> None:
        self.size = positive_int("log_buffer_size", size)
        self._slots: list[tuple[int, Entry] | None] = [None] * self.size
        # Each record's event, made by the first stream that sends it and
        # reused by the others (a list item swap is atomic: no lock).
        self._encoded: list[tuple[int, bytes] | None] = [None] * self.size
        self._next = 1  # the seq of the next entry; ids start at 1
        self._lock = threading.Lock()
        self._wakers: tuple[threading.Event, ...] = ()
        self.epoch = _new_epoch()
        _BUFFERS.add(self)

    # -- the logging thread -------------------------------------------------

    def append(self, entry: Entry) -> int:
        """Keep ``entry``; return its seq. Never blocks beyond a short lock."""
        with self._lock:
            seq = self._next
            self._next = seq + 1
            self._slots[seq % self.size] = (seq, entry)
        for wake in self._wakers:
            if not wake.is_set():
                wake.set()
        return seq

    # -- readers ------------------------------------------------------------

    def format_id(self, seq: int) -> str:
        """The public id of entry ``seq``: ``"<epoch>:<seq>"``."""
        return f"{self.epoch}:{seq}"

    @property
    def last_seq(self) -> int:
        """The seq of the newest entry (0 before the first)."""
        return self._next - 1

    def after(self, seq: int, limit: int) -> tuple[list[tuple[int, Entry]], int]:
        """Up to ``limit`` entries after ``seq``, oldest first, and how many were lost.

        Lost entries came after ``seq`` but were overwritten before this
        read: the reader is told, never silently skipped ahead.
        """
        with self._lock:
            nxt = self._next
            oldest = max(1, nxt - self.size)
            start = seq + 1
            lost = max(0, oldest - start)
            start = max(start, oldest)
            end = min(nxt, start + limit)
            slots = self._slots
            size = self.size
            items = [slots[i % size] for i in range(start, end)]
        return items, lost  # type: ignore[return-value]

    def tail(self, match: LogFilter, count: int) -> list[tuple[int, Entry]]:
        """The newest ``count`` entries that pass ``match``, oldest first."""
        if count <= 0:
            return []
        with self._lock:
            nxt = self._next
            oldest = max(1, nxt - self.size)
            slots = self._slots
            size = self.size
            held = [slots[i % size] for i in range(oldest, nxt)]
        found: list[tuple[int, Entry]] = []
        for item in reversed(held):
            if match.matches(item[1]):  # type: ignore[index]
                found.append(item)  # type: ignore[arg-type]
                if len(found) >= count:
                    break
        found.reverse()
        return found

    def encoded(self, seq: int, entry: Entry, make: Callable[[int, Entry], bytes]) -> bytes:
        """``make(seq, entry)``, made once per entry however many streams send it."""
        index = seq % self.size
        cached = self._encoded[index]
        if cached is not None and cached[0] == seq:
            return cached[1]
        data = make(seq, entry)
        self._encoded[index] = (seq, data)
        return data

    def subscribe(self) -> threading.Event:
        """An Event that every append sets; pass it to :meth:`unsubscribe` when done."""
        wake = threading.Event()
        with self._lock:
            self._wakers = (*self._wakers, wake)
        return wake

    def unsubscribe(self, wake: threading.Event) -> None:
        with self._lock:
            self._wakers = tuple(w for w in self._wakers if w is not wake)

    def wake_all(self) -> None:
        """Wake every follower (used at close, so streams notice it at once)."""
        for wake in self._wakers:
            wake.set()

    def stats(self) -> dict[str, int]:
        """``size``, ``held``, ``appended`` and ``overwritten`` since start, in this process."""
        appended = self._next - 1
        return {
            "size": self.size,
            "held": min(appended, self.size),
            "appended": appended,
            "overwritten": max(0, appended - self.size),
        }
