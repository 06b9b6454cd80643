"""Log-scale latency histograms with a bounded relative error, in the style of DDSketch.

A latency ``v`` > 0 ms falls in bin ``i = ceil(ln v / ln g)``, which holds
the values in ``(g^(i-1), g^i]``; the bin's value is ``2 g^i / (g + 1)``,
within ``e = (g - 1) / (g + 1)`` of every value in it (``e`` the relative
error, ``g = (1 + e) / (1 - e)``). So a quantile read
from merged bins is within ``e`` (relative) of the true order statistic it
lands on. Bins are plain integers: histograms merge by adding counts, in
SQL (``unnest`` and ``GROUP BY``) or here, and only non-empty bins are
stored. There is no lower or upper limit: 0.01 ms to 10 minutes is about
900 bins at 1 %, of which a route's traffic touches a few hundred.

The same formula runs in PostgreSQL (:data:`BIN_SQL`) when the writer
aggregates a batch, so both sides must agree: they share the constants here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# 1 %: every quantile is within 1 % of a true order statistic.
RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LN_GAMMA = math.log(GAMMA)
# Zero and negative latencies (a clock that stepped back) share one bin.
ZERO_BIN = -(2**31)


def bin_sql(value: str) -> str:
    """The SQL expression of a value's bin, as :func:`bin_of` computes it."""
    return f"CASE WHEN {value} > 0 THEN ceil(ln({value}) / {LN_GAMMA!r})::int ELSE {ZERO_BIN} END"


def bin_of(value: float) -> int:
    """The bin of a latency in ms."""
    if value <= 0:
        return ZERO_BIN
    return math.ceil(math.log(value) / LN_GAMMA)


def value_of(index: int) -> float:
    """The value a bin stands for: within :data:`RELATIVE_ERROR` of anything in it."""
    if index == ZERO_BIN:
        return 0.0
    return 2 * GAMMA**index / (GAMMA + 1)


def merge(pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``(bin, count)`` pairs summed per bin, in bin order."""
    merged: dict[int, int] = {}
    for index, count in pairs:
        merged[index] = merged.get(index, 0) + count
    return sorted(merged.items())


def quantiles(
    bins: Sequence[tuple[int, int]],
    fractions: Sequence[float],
    low: float | None = None,
    high: float | None = None,
) -> list[float | None]:
    """The quantiles of a merged histogram (``bins`` sorted by bin), None when it is empty.

    The rank is that of ``percentile_cont``'s lower neighbour, ``floor((n -
    1) q)``: the answer is within the relative error of that order
    statistic, which lies between the two that ``percentile_cont``
    interpolates. ``low`` and ``high`` (the exact min and max, when known)
    bound the answer, which only brings it closer.
    """
    total = sum(count for _index, count in bins)
    if not total:
        return [None] * len(fractions)
    results: list[float | None] = []
    for fraction in fractions:
        rank = math.floor((total - 1) * fraction)
        seen = 0
        for index, count in bins:
            seen += count
            if seen > rank:
                value = value_of(index)
                break
        if low is not None:
            value = max(value, low)
        if high is not None:
            value = min(value, high)
        results.append(value)
    return results
