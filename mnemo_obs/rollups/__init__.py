"""Rollups: aggregates of the requests per minute up to per day, for reads at any size.

The writer copies every batch for them; :class:`Compactor` (started by the
writer) aggregates and rolls them up in the background; :func:`rebuild`
makes them from raw rows written without them; :mod:`.reads` reads a window.
"""

from __future__ import annotations

from .compaction import Compactor, compact
from .histogram import RELATIVE_ERROR
from .rebuild import Progress, rebuild

__all__ = ["RELATIVE_ERROR", "Compactor", "Progress", "compact", "rebuild"]
