"""Percentiles merged from the rollups' histograms, against percentile_cont on the same rows.

The promise: an approximate percentile is within the relative error of a
value lying between the two order statistics percentile_cont interpolates.
Checked on real PostgreSQL with the distributions that break sketches:
uniform, lognormal, bimodal, and a heavy tail with rare 10-second requests.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import psycopg2
import pytest

from mnemo_obs import MetricsWriter
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.rollups import histogram, reads

from .test_rollups import compact_now

COUNT = 20_000
FRACTIONS = (0.5, 0.95, 0.99)
KEYS = ("p50_latency_ms", "p95_latency_ms", "p99_latency_ms")


def _bimodal(rng: random.Random) -> float:
    return abs(rng.gauss(5, 1)) if rng.random() < 0.5 else abs(rng.gauss(200, 20))


def _heavy_tail(rng: random.Random) -> float:
    # Mostly a few ms, and 1 request in 200 takes about 10 seconds.
    return rng.uniform(9_000, 11_000) if rng.random() < 0.005 else rng.lognormvariate(1, 0.5)


DISTRIBUTIONS: dict[str, Callable[[random.Random], float]] = {
    "uniform": lambda rng: rng.uniform(1, 1000),
    "lognormal": lambda rng: rng.lognormvariate(2, 1),
    "bimodal": _bimodal,
    "heavy tail": _heavy_tail,
}


def neighbours(values: list[float], fraction: float) -> tuple[float, float]:
    """The two order statistics percentile_cont interpolates between."""
    position = fraction * (len(values) - 1)
    return values[math.floor(position)], values[math.ceil(position)]


def within(estimate: float, low: float, high: float, error: float) -> bool:
    """``estimate`` is within ``error`` (relative) of some value in [low, high]."""
    # Float rounding of the bin boundaries, and the 2-decimal rounding of the API.
    slack = 1e-9 + 0.005
    if low <= estimate <= high:
        return True
    nearest = low if estimate < low else high
    return abs(estimate - nearest) <= error * nearest + slack


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_approximate_percentiles_are_within_the_stated_error(
    dsn: str, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "EXACT_MAX_ROWS", 0)  # from the histograms, however few rows
    rng = random.Random(name)
    now = time.time()
    with MetricsWriter(dsn, maintain_rollups=False, max_queue=COUNT + 1) as writer:
        for i in range(COUNT):
            latency = DISTRIBUTIONS[name](rng)
            # Spread over 3 hours: minute, hour (and maybe day) rows are merged.
            writer.submit_request(now - i * 0.5, f"/d{i % 4}", latency, "GET", 200, "t" * 36)
    compact_now(dsn)
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT value FROM metrics WHERE timestamp >= date_trunc('minute', "
                "now() - interval '24 hours', 'UTC') ORDER BY value"
            )
            values = [row[0] for row in cur.fetchall()]
            cur.execute(
                "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY value) "
                "FROM metrics"
            )
            (exact,) = cur.fetchone()
    finally:
        conn.close()
    assert len(values) == COUNT
    with MetricsCollector(dsn, redis_url="", cache_ttl=0) as collector:
        api = collector.collect_all(24)["api"]
    assert api["percentiles"] == "approximate"
    assert api["relative_error"] == histogram.RELATIVE_ERROR
    for key, fraction, cont in zip(KEYS, FRACTIONS, exact, strict=True):
        low, high = neighbours(values, fraction)
        assert low <= cont <= high
        assert within(api[key], low, high, histogram.RELATIVE_ERROR), (name, key, api[key], cont)


def test_the_histogram_holds_its_bound_at_every_rank() -> None:
    """The merge and the rank rule alone, over many fractions and merged halves."""
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(0, 3) for _ in range(5_000))  # 0.0001 ms to minutes
    halves = [values[0::2], values[1::2]]
    merged = histogram.merge((histogram.bin_of(v), 1) for half in halves for v in half)
    fractions = [i / 1000 for i in range(1001)]
    estimates = histogram.quantiles(merged, fractions, values[0], values[-1])
    for fraction, estimate in zip(fractions, estimates, strict=True):
        low, high = neighbours(values, fraction)
        assert estimate is not None
        assert within(estimate, low, high, histogram.RELATIVE_ERROR), (fraction, estimate, low)
    assert histogram.quantiles([], [0.5]) == [None]
    assert histogram.value_of(histogram.bin_of(0.0)) == 0.0
