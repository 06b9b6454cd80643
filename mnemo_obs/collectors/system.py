"""CPU, memory and disk of the host the app runs on, from psutil."""

from __future__ import annotations

import os
from typing import Any

import psutil

from ..errors import ConfigurationError
from ._base import GB, MB, rounded


class SystemCollector:
    """Host statistics; never blocks.

    Args:
        disk_path: the filesystem whose usage is reported (default ``/``).
            Checked at construction.

    ``collect()`` returns ``cpu_percent`` (all cores, since the previous
    call: the constructor primes it so the first answer means something),
    ``cpu_count`` (logical), ``memory_used_mb`` (total minus available, so
    it agrees with ``memory_percent``; page cache counts as free),
    ``memory_total_mb``, ``memory_percent``, ``disk_used_gb``, ``disk_total_gb`` and
    ``disk_percent``.

    ``psutil.cpu_percent(interval=None)`` keeps one baseline per process, so
    another caller of it in the same process shortens our measuring window.
    """

    def __init__(self, *, disk_path: str = "/") -> None:
        if not isinstance(disk_path, str) or not os.path.isdir(disk_path):
            raise ConfigurationError(f"disk_path must be an existing directory, got {disk_path!r}")
        self._disk_path = disk_path
        psutil.cpu_percent(interval=None)  # the baseline: the first call always says 0.0

    def collect(self) -> dict[str, Any]:
        """Read CPU, memory and disk now."""
        return {
            "cpu_percent": rounded(psutil.cpu_percent(interval=None)),
            "cpu_count": psutil.cpu_count(logical=True),
            **self.usage(),
        }

    def usage(self) -> dict[str, Any]:
        """Memory and disk only: no CPU reading, so psutil's baseline is left alone."""
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self._disk_path)
        return {
            "memory_used_mb": rounded((memory.total - memory.available) / MB),
            "memory_total_mb": rounded(memory.total / MB),
            "memory_percent": rounded(memory.percent),
            "disk_used_gb": rounded(disk.used / GB),
            "disk_total_gb": rounded(disk.total / GB),
            "disk_percent": rounded(disk.percent),
        }


def busy_percent(before: Any, after: Any) -> float | None:
    """CPU busy between two ``psutil.cpu_times()``, in percent of all cores; None if no time passed.

    psutil's own formula (idle and iowait are not busy; guest time is already
    in user time), without its process-wide baseline that another caller of
    ``psutil.cpu_percent`` would move.
    """

    def split(times: Any) -> tuple[float, float]:
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        return total - times.idle - getattr(times, "iowait", 0.0), total

    busy_before, total_before = split(before)
    busy_after, total_after = split(after)
    elapsed = total_after - total_before
    if elapsed <= 0:
        return None
    return rounded(min(100.0, max(0.0, 100.0 * (busy_after - busy_before) / elapsed)))
