"""Live logs: a log handler, a bounded buffer with ids, and SSE routes that follow it.

:func:`mnemo_obs.install` sets it all up (its ``log_*`` options). The
parts stand alone too: :class:`LogBuffer` and :class:`LogHandler` need no
web framework; the routes (``mnemo_obs.logs.resources``) need Falcon and
are loaded only when added.
"""

from __future__ import annotations

from .buffer import LogBuffer
from .handler import LogHandler
from .live import LiveLogs
from .records import LogFilter

__all__ = ["LiveLogs", "LogBuffer", "LogFilter", "LogHandler"]
