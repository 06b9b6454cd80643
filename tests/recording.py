"""Helpers for the request-recording tests: reading rows back, writers that are always closed."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from mnemo_obs import MetricsWriter

from .waiting import TIMEOUT, wait_until  # noqa: F401  (wait_until: where the tests import it)

README = Path(__file__).resolve().parent.parent / "README.md"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


# Fast enough that outage tests take well under a second to notice recovery.
FAST_RETRY = {"retry_initial": 0.02, "retry_max": 0.1}


def fetch(dsn: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of the metrics table as dicts, oldest first."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT timestamp, metric_type, metric_name, value, metadata FROM metrics "
                f"WHERE {where} ORDER BY timestamp, metric_name",
                params,
            )
            names = [column.name for column in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def readme_example(name: str) -> str:
    """The python block that follows ``<!-- example: NAME -->`` in the README or docs/."""
    for page in (README, *sorted((README.parent / "docs").glob("*.md"))):
        text = page.read_text(encoding="utf-8")
        match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", text, re.S)
        if match:
            return match.group(1)
    raise AssertionError(f"no example {name!r} in the README or docs/")


@pytest.fixture
def make_writer() -> Iterator[Any]:
    """``make_writer(dsn, **options)``: a MetricsWriter closed when the test ends."""
    made: list[MetricsWriter] = []

    def make(dsn: str, **options: Any) -> MetricsWriter:
        writer = MetricsWriter(dsn, **options)
        made.append(writer)
        return writer

    yield make
    for writer in made:
        writer.close(timeout=5)


def wait_child(pid: int, timeout: float = TIMEOUT) -> int:
    """The exit code of a forked child; killed (and the test failed) past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not finish")
        time.sleep(0.02)
