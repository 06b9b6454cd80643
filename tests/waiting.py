"""A bounded wait for a condition; no pytest here, so the benchmarks may use it too."""

from __future__ import annotations

import time
from collections.abc import Callable

# Bound on every wait; only reached when something is broken.
TIMEOUT = 30.0


def wait_until(what: str, predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; fail the test, naming ``what``, after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
