"""A PostgreSQL that stops answering with TCP still up must never stop the app from answering.

Two ways to freeze it: a loopback proxy that stops forwarding (the network
case), and SIGSTOP on every process of a cluster the test owns (the server
case). In both, statement_timeout, keepalives and tcp_user_timeout never
fire: only our own bounds do.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import falcon
import psutil
import pytest

from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.installation import install

from .httpserver import get, serving
from .proxy import FreezableProxy
from .recording import wait_until
from .servers import OwnedPostgres

SUMMARY = "/api/monitoring/advanced/summary"


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


def summary_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mnemo_obs.summary"]


@pytest.fixture
def proxied(dsn: str) -> Iterator[tuple[FreezableProxy, str]]:
    proxy, proxied_dsn = FreezableProxy.for_dsn(dsn)
    try:
        yield proxy, proxied_dsn
    finally:
        proxy.close()


def test_a_frozen_database_never_stops_the_app_answering(
    proxied: tuple[FreezableProxy, str], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """waitress with 4 threads, the summary polled again and again while PostgreSQL is frozen."""
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    proxy, dsn = proxied
    app = falcon.App()
    app.add_route("/hello", Hello())
    handle = install(app, dsn=dsn, redis_url=redis_url, cache_ttl=0, summary_timeout=1.0)
    threads_before = len(summary_threads())
    try:
        with serving(app, threads=4) as port:
            status, _, body = get(port, SUMMARY)
            assert status == 200 and "error" not in body["api"], body
            assert get(port, "/hello")[0] == 200
            proxy.freeze()
            try:
                # More polls than waitress has threads, several at once: each is
                # answered, with the PostgreSQL sections saying why they are empty.
                with ThreadPoolExecutor(4) as pool:
                    polls = list(pool.map(lambda _: get(port, SUMMARY), range(8)))
                for status, _, body in polls:
                    assert status == 200
                    for section in ("api", "postgres"):
                        assert "did not answer" in body[section]["error"], body[section]
                    assert body["redis"]["connected"] is True
                    assert "cpu_count" in body["system"]
                # The app's own routes and the health check still answer.
                assert get(port, "/hello")[0] == 200
                assert get(port, "/health")[0] == 200
                # One thread per process is held by the stuck query, never more.
                assert len(summary_threads()) == threads_before + 1
            finally:
                proxy.thaw()
            wait_until(
                "the summary to recover after the thaw",
                lambda: "error" not in get(port, SUMMARY)[2]["api"],
            )
            assert handle.writer.flush(10)
            status, _, body = get(port, SUMMARY)
            assert body["api"]["request_count"] >= 2
    finally:
        assert handle.close(10)


def cluster_processes(server: OwnedPostgres) -> list[psutil.Process]:
    postmaster = psutil.Process(server._server.server_pid)
    return [postmaster, *postmaster.children(recursive=True)]


def test_a_sigstopped_server_gives_a_bounded_summary(owned_pg: OwnedPostgres) -> None:
    with MetricsCollector(owned_pg.dsn, redis_url="", cache_ttl=0, timeout=0.5) as collector:
        assert "error" not in collector.collect_all()["api"]
        processes = cluster_processes(owned_pg)
        for process in processes:
            os.kill(process.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                summary = collector.collect_all(1)
                assert "did not answer" in summary["api"]["error"]
                assert "did not answer" in summary["postgres"]["error"]
                assert "cpu_count" in summary["system"]
        finally:
            for process in processes:
                os.kill(process.pid, signal.SIGCONT)
        wait_until(
            "the summary to recover after SIGCONT",
            lambda: "error" not in collector.collect_all()["api"],
        )


def test_windows_that_round_alike_share_one_summary(dsn: str) -> None:
    """Distinct period_hours within a minute are one cached summary, not one query each."""
    with MetricsCollector(dsn, redis_url="", cache_ttl=3600) as collector:
        first = collector.collect_all(1.0)
        for hours in (1.0001, 0.9999, 1 + 20 / 3600, 1 - 20 / 3600):
            again = collector.collect_all(hours)
            assert again["collected_at"] == first["collected_at"]
            assert again["period_hours"] == 1.0
        other = collector.collect_all(1 + 100 / 3600)
        assert other["period_hours"] == pytest.approx(1 + 120 / 3600)
        # Past a day, the grain is the hour.
        assert collector.collect_all(100.4)["period_hours"] == 100.0
        assert collector.collect_all(0.001)["period_hours"] == pytest.approx(1 / 60)


def test_distinct_windows_against_a_frozen_database_hold_one_thread(
    proxied: tuple[FreezableProxy, str],
) -> None:
    proxy, dsn = proxied
    threads_before = len(summary_threads())
    with MetricsCollector(dsn, redis_url="", cache_ttl=0, timeout=0.5) as collector:
        assert "error" not in collector.collect_all()["api"]
        proxy.freeze()
        try:
            with ThreadPoolExecutor(8) as pool:
                summaries = list(pool.map(collector.collect_all, [1 + i for i in range(20)]))
            assert all("error" in s["api"] for s in summaries)
            assert len(summary_threads()) == threads_before + 1
        finally:
            proxy.thaw()
        wait_until("recovery", lambda: "error" not in collector.collect_all(3)["api"])
