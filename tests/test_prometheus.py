"""Prometheus exposition through a real server, checked by promtool, and across processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import pytest

from mnemo_obs import ConfigurationError
from mnemo_obs.installation import Installation, install

from .httpserver import get, serving
from .test_cli import ROOT

pytest.importorskip("prometheus_client")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        if item_id == "missing":
            raise falcon.HTTPNotFound()
        resp.media = {"id": item_id}


@pytest.fixture
def served(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, Installation]]:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    app = falcon.App()
    app.add_route("/items/{item_id}", Item())
    handle = install(app, dsn=dsn, prometheus_path="/metrics", service="shop", logs=False)
    try:
        with serving(app) as port:
            yield port, handle
    finally:
        handle.close(10)


def metrics(port: int, headers: dict[str, str] | None = None) -> tuple[int, str]:
    status, head, body = get(port, "/metrics", headers=headers)
    assert status != 200 or head["content-type"].startswith("text/plain; version=")
    return status, body.decode() if isinstance(body, bytes) else str(body)


def test_requests_and_the_writers_books(served: tuple[int, Installation]) -> None:
    port, handle = served
    for item in ("a", "b", "missing", "a"):
        get(port, f"/items/{item}")
    assert handle.writer.flush(10)
    status, text = metrics(port)
    assert status == 200
    labels = 'endpoint="/items/{item_id}",method="GET",service="shop"'
    assert f'mnemo_obs_requests_total{{{labels},status="200"}} 3.0' in text
    assert f'mnemo_obs_requests_total{{{labels},status="404"}} 1.0' in text
    assert f'mnemo_obs_request_duration_seconds_count{{{labels},status="200"}} 3.0' in text
    assert "mnemo_obs_rows_written_total 4.0" in text
    assert "mnemo_obs_queue_depth 0.0" in text
    # The scrape itself is never recorded.
    assert 'endpoint="/metrics"' not in text
    check_with_promtool(text)


def check_with_promtool(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool is missing (apt-get install prometheus)")
        pytest.skip("promtool is missing (apt-get install prometheus)")
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_token_protects_the_metrics(dsn: str) -> None:
    app = falcon.App()
    handle = install(app, dsn=dsn, prometheus_path="/metrics", token="scrape-me", logs=False)
    try:
        with serving(app) as port:
            assert metrics(port)[0] == 401
            assert metrics(port, {"Authorization": "Bearer scrape-me"})[0] == 200
    finally:
        handle.close(10)


def test_without_prometheus_client_a_clear_error(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    with pytest.raises(ConfigurationError, match=r"mnemo-obs\[prometheus\]"):
        install(falcon.App(), dsn=dsn, prometheus_path="/metrics")


MULTIPROCESS = """
import os, sys, time
from mnemo_obs import MetricsWriter
from mnemo_obs.prometheus import PrometheusExporter
writer = MetricsWriter(sys.argv[1], maintain_rollups=False)
exporter = PrometheusExporter(writer)
pids = []
for worker in range(3):
    pid = os.fork()
    if pid == 0:
        writer.record("system", "x", 1.0)  # this worker's own writer starts
        exporter.observe([(time.time(), "/w", 5.0, "GET", 200, "t" * 36)] * (worker + 1))
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
body, _ = exporter.exposition()
sys.stdout.write(body.decode())
"""


def test_several_processes_add_up_in_multiprocess_mode(dsn: str, tmp_path: Path) -> None:
    """gunicorn's case: prometheus_client's multiprocess mode sums what each worker counted."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS, dsn],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = 'mnemo_obs_requests_total{endpoint="/w",method="GET",service="",status="200"} 6.0'
    assert line in proc.stdout, proc.stdout
    check_with_promtool(proc.stdout)


def test_an_observer_failure_costs_figures_not_rows(dsn: str, make_writer: Any) -> None:
    writer = make_writer(dsn)

    def broken(rows: list[Any]) -> None:
        raise RuntimeError("a bad exporter")

    writer._observers.append(broken)
    assert writer.record("system", "kept", 1.0)
    assert writer.flush(10)
    assert writer.stats()["written"] == 1
