"""What every collector shares: the protocol and number formatting."""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigurationError

MB = 1024 * 1024
GB = 1024 * MB


@runtime_checkable
class Collector(Protocol):
    """Anything with ``collect() -> dict`` of plain JSON values.

    A collector takes its data source (DSN, connection pool, Redis client,
    psutil) through its constructor, so tests feed it real fixture data.
    """

    def collect(self) -> dict[str, Any]: ...


def rounded(value: float | int | None, digits: int = 2) -> float | None:
    """``value`` as a float rounded to ``digits``, or None for None, NaN and infinities.

    JSON has no NaN, and a dashboard should see "no data", not a made-up 0.
    """
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return round(value, digits)


def percent(part: float | int, whole: float | int) -> float | None:
    """``part / whole`` in percent, rounded; None when ``whole`` is 0."""
    if not whole:
        return None
    return rounded(100.0 * part / whole)


def check_positive(name: str, value: float, *, maximum: float | None = None) -> float:
    """``value`` as a float when finite, > 0 (and <= maximum); else ConfigurationError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0 or (maximum is not None and number > maximum):
        bound = f" and <= {maximum:g}" if maximum is not None else ""
        raise ConfigurationError(f"{name} must be a finite number > 0{bound}, got {value!r}")
    return number
