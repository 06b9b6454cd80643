"""Trace ids: making them, checking incoming ones, and putting them on log records.

The middlewares set the id of the request being served in a context
variable; :class:`TraceIdFilter` copies it onto every log record, so the
application's own log lines carry the id that the client sees in
``X-Trace-ID``.
"""

from __future__ import annotations

import logging
import os
import random
import re
from contextvars import ContextVar

TRACE_HEADER = "X-Trace-ID"
# The WSGI environ key of an incoming X-Trace-ID header.
TRACE_ENVIRON_KEY = "HTTP_X_TRACE_ID"

_current: ContextVar[str | None] = ContextVar("mnemo_obs_trace_id", default=None)

# Canonical 8-4-4-4-12 form only, any version, either case; fullmatch, so a
# trailing newline (which "$" would let through) is refused.
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


# Trace ids need to be unique, not secret: like OpenTelemetry's id generator,
# a PRNG (seeded from os.urandom) rather than a syscall per id, which cost
# about twice as much (os.urandom(16) alone was 0.56 us of 1.15). Our own
# instance, so an app's random.seed() cannot make ids repeat.
_random = random.Random()
_getrandbits = _random.getrandbits

# Ids are made 256 at a time, formatted by a few C-level passes over one
# buffer, and handed out by list.pop() (atomic: no lock): about 0.17 us an
# id, where formatting one id at a time in Python cost 0.7 us, most of a
# request's trace id work.
_BATCH = 256
_pool: list[str] = []
_pop = _pool.pop
# Any hex digit -> the RFC 4122 variant digit (binary 10xx) with its low bits.
_VARIANT = bytes.maketrans(b"0123456789abcdef", b"89ab89ab89ab89ab")


def _after_fork_in_child() -> None:
    # A forked worker must not hand out the parent's pooled ids, nor
    # continue its sequence.
    _pool.clear()
    _random.seed()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _fresh_ids(count: int) -> list[str]:
    """``count`` random version-4 UUID strings."""
    # 16 random bytes an id, hex in groups of 4 digits: "xxxx-" x 8 an id.
    text = bytearray(_getrandbits(128 * count).to_bytes(16 * count, "big").hex("-", 2).encode())
    text.append(0x2D)
    # Each id's 40 characters to "8-4-4-4-12\n": its last hyphen becomes the
    # line end, three hyphens go (right to left, so offsets stay put).
    text[39::40] = b"\n" * count
    del text[34::40]
    del text[29::39]
    del text[4::38]
    text[14::37] = b"4" * count  # the version digit
    text[19::37] = text[19::37].translate(_VARIANT)
    del text[-1]
    return text.decode().split("\n")


def new_trace_id() -> str:
    """Return a fresh random version-4 UUID as a lower-case string.

    A third of the cost of ``str(uuid.uuid4())``, which reads ``os.urandom``
    and builds an object per id; ids come from a pool refilled in batches.
    """
    try:
        return _pop()
    except IndexError:
        ids = _fresh_ids(_BATCH)
        trace_id = ids.pop()
        _pool.extend(ids)
        return trace_id


# The nil UUID is nobody's trace.
_NIL = "00000000-0000-0000-0000-000000000000"


def valid_trace_id(value: str | None) -> str | None:
    """Return ``value`` lower-cased if it is a well-formed UUID, else None.

    Only the canonical 36-character form is accepted, so an incoming header
    can never put CR/LF, long junk or anything but hex digits and hyphens
    into our response headers, logs or rows; the nil UUID is refused.
    """
    if value and len(value) == 36 and _UUID_RE.fullmatch(value) and value != _NIL:
        return value.lower()
    return None


def current_trace_id() -> str | None:
    """The trace id of the request being served in this context, or None."""
    return _current.get()


class TraceIdFilter(logging.Filter):
    """Put the current request's trace id on each log record as ``record.trace_id``.

    Attach it to a handler (``handler.addFilter(TraceIdFilter())``) and use
    ``%(trace_id)s`` in the format. Outside a request the attribute is
    ``default``. A ``trace_id`` already on the record (``extra=``) is kept.
    It never filters anything out.

    Args:
        default: the value outside a request.
    """

    def __init__(self, *, default: str = "-") -> None:
        super().__init__()
        if not isinstance(default, str):
            raise TypeError(f"default must be a str, not {default!r}")
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            record.trace_id = _current.get() or self.default
        return True
