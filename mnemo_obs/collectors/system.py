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
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self._disk_path)
        return {
            "cpu_percent": rounded(psutil.cpu_percent(interval=None)),
            "cpu_count": psutil.cpu_count(logical=True),
            "memory_used_mb": rounded((memory.total - memory.available) / MB),
            "memory_total_mb": rounded(memory.total / MB),
            "memory_percent": rounded(memory.percent),
            "disk_used_gb": rounded(disk.used / GB),
            "disk_total_gb": rounded(disk.total / GB),
            "disk_percent": rounded(disk.percent),
        }
