"""Reads from a streaming standby: where they run, the lag, and the fallback to the primary.

Against a real primary and a standby made with ``pg_basebackup -R`` (see
tests/replica.py). Pausing replay on the standby makes its data stand still
while the primary takes more rows, so a count tells which server answered.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import falcon
import psycopg2
import pytest

from mnemo_obs import ConfigurationError, DatabaseError
from mnemo_obs.cli import main
from mnemo_obs.collectors import MetricsCollector
from mnemo_obs.installation import install

from .httpserver import get, serving
from .proxy import FreezableProxy
from .recording import TIMEOUT, wait_until
from .replica import ReplicaPair
from .test_api_collector import insert

PREFIX = "/api/monitoring/advanced"
ROWS = [(5.0, 200, 1.0), (7.0, 500, 1.0), (9.0, 200, 2.0)]
# Checks of a replica set aside come fast, so a recovery is seen at once.
FAST = {"cache_ttl": 0, "redis_url": "", "replica_retry": 0.05}


@pytest.fixture
def pair(replica_pair: ReplicaPair) -> ReplicaPair:
    """The session's primary and standby, both running, caught up, with no rows."""
    replica_pair.reset()
    return replica_pair


@pytest.fixture
def make_collector(pair: ReplicaPair) -> Iterator[Any]:
    """``make_collector(**options)``: a MetricsCollector on the pair, closed at the end."""
    made: list[MetricsCollector] = []

    def make(**options: Any) -> MetricsCollector:
        collector = MetricsCollector(
            pair.primary.dsn, **{"read_dsn": pair.standby_dsn, **FAST, **options}
        )
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


def port_of(dsn: str) -> int:
    return int(psycopg2.extensions.parse_dsn(dsn)["port"])


def read_through(collector: MetricsCollector, sql: str) -> tuple[Any, str]:
    """Run ``sql`` as the api section and the read views run theirs: its row, and where."""
    router = collector._router

    def job(cur: Any) -> Any:
        cur.execute(sql)
        return cur.fetchone()

    pending = router.submit(("test", sql), job)
    return router.result(pending, deadline=time.monotonic() + TIMEOUT), pending.where


def summary_of(collector: MetricsCollector) -> tuple[int | None, dict[str, Any]]:
    """The api request count and the postgres section of a fresh summary."""
    summary = collector.collect_all()
    return summary["api"].get("request_count"), summary["postgres"]


def test_reads_run_on_the_standby_and_the_postgres_section_on_the_primary(
    pair: ReplicaPair, make_collector: Any
) -> None:
    collector = make_collector()
    row, where = read_through(collector, "SELECT pg_is_in_recovery(), inet_server_port()")
    assert where == "replica"
    assert row == (True, port_of(pair.standby_dsn))
    # Sessions held open on the primary alone: the postgres section counts them.
    sessions = [psycopg2.connect(pair.primary.dsn) for _ in range(3)]
    try:
        summary = collector.collect_all()
    finally:
        for session in sessions:
            session.close()
    postgres = summary["postgres"]
    assert postgres["connections_total"] >= 4, postgres
    assert postgres["reads_from"] == "replica"
    assert postgres["replica_status"] == "ok"
    assert postgres["replica_error"] is None
    assert summary["api"]["request_count"] == 0
    # Caught up, with nothing more to apply: no lag, however long the primary is
    # idle (a wait, not one look: the server's own housekeeping writes WAL too).
    wait_until("a lag of 0", lambda: summary_of(collector)[1]["replica_lag_seconds"] == 0.0)


def test_the_summary_counts_what_the_standby_has_applied_and_reports_its_lag(
    pair: ReplicaPair, make_collector: Any
) -> None:
    collector = make_collector(replica_max_lag=3600)  # behind, but within the bound
    pair.pause_replay()
    insert(pair.primary.dsn, ROWS)
    pair.wait_caught_up(applied=False)  # received, not applied: behind
    count, postgres = summary_of(collector)
    # The standby has not applied the rows: the summary was read there.
    assert count == 0
    assert postgres["reads_from"] == "replica"
    assert postgres["replica_lag_seconds"] > 0
    pair.resume_replay()
    wait_until("the rows to reach the standby's summary", lambda: summary_of(collector)[0] == 3)
    wait_until("the lag to fall to 0", lambda: summary_of(collector)[1]["replica_lag_seconds"] == 0)


def test_a_standby_lagging_past_the_bound_sends_reads_to_the_primary(
    pair: ReplicaPair, make_collector: Any
) -> None:
    collector = make_collector(replica_max_lag=0.2)
    pair.pause_replay()
    insert(pair.primary.dsn, ROWS)
    wait_until(
        "the standby to lag past 0.2 s",
        lambda: summary_of(collector)[1]["replica_status"] == "lagging",
    )
    count, postgres = summary_of(collector)
    assert count == 3  # the primary's rows
    assert postgres["reads_from"] == "primary"
    assert postgres["replica_lag_seconds"] > 0.2
    assert "past replica_max_lag (0.2 s)" in postgres["replica_error"]
    pair.resume_replay()
    wait_until(
        "reads to return to the standby",
        lambda: summary_of(collector)[1]["reads_from"] == "replica",
    )
    assert summary_of(collector)[0] == 3


def test_without_fallback_a_lagging_standby_is_still_read_and_says_so(
    pair: ReplicaPair, make_collector: Any
) -> None:
    collector = make_collector(replica_max_lag=0.2, replica_fallback=False)
    pair.pause_replay()
    insert(pair.primary.dsn, ROWS)
    wait_until(
        "the standby to lag past 0.2 s",
        lambda: summary_of(collector)[1]["replica_status"] == "lagging",
    )
    count, postgres = summary_of(collector)
    assert count == 0
    assert postgres["reads_from"] == "replica"


def test_stopping_the_standby_falls_back_to_the_primary_and_back(
    pair: ReplicaPair, make_collector: Any
) -> None:
    collector = make_collector()
    assert summary_of(collector)[1]["reads_from"] == "replica"
    insert(pair.primary.dsn, ROWS)
    assert pair.standby is not None
    pair.standby.stop_server()
    count, postgres = summary_of(collector)
    assert count == 3
    assert postgres["reads_from"] == "primary"
    assert postgres["replica_status"] == "down"
    assert postgres["replica_lag_seconds"] is None
    assert postgres["replica_error"].startswith(f"replica at 127.0.0.1:{port_of(pair.standby_dsn)}")
    assert "connections_total" in postgres  # the primary, described as before
    # Set aside: the next reads go to the primary without trying it again.
    row, where = read_through(collector, "SELECT pg_is_in_recovery()")
    assert (row, where) == ((False,), "primary")
    pair.standby.start_server()
    wait_until(
        "reads to return to the restarted standby",
        lambda: summary_of(collector)[1]["reads_from"] == "replica",
    )
    assert summary_of(collector)[0] == 3


def test_with_the_primary_down_the_requests_are_still_read_from_the_standby(
    pair: ReplicaPair, make_collector: Any, make_writer: Any
) -> None:
    """Only the postgres section needs the primary (and the schema check runs there alone)."""
    insert(pair.primary.dsn, ROWS)
    pair.wait_caught_up()
    collector = make_collector(writer=make_writer(pair.primary.dsn, create_schema=True))
    pair.primary.stop_server()
    try:
        summary = collector.collect_all()
        assert summary["api"]["request_count"] == 3
        assert summary["postgres"]["reads_from"] == "replica"
        assert summary["postgres"]["replica_status"] == "ok"
        assert "cannot connect" in summary["postgres"]["error"]
    finally:
        pair.primary.start_server()


def test_without_fallback_a_stopped_standby_fails_the_reads(
    pair: ReplicaPair, make_collector: Any
) -> None:
    collector = make_collector(replica_fallback=False)
    assert pair.standby is not None
    pair.standby.stop_server()
    summary = collector.collect_all()
    assert "replica_fallback is off" in summary["api"]["error"]
    assert summary["postgres"]["reads_from"] == "replica"
    assert summary["postgres"]["replica_status"] == "down"
    assert "connections_total" in summary["postgres"]
    with pytest.raises(DatabaseError) as info:
        collector.endpoints(1)
    assert "replica_fallback is off" in str(info.value)


def replica_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mnemo_obs.replica"]


def test_a_frozen_standby_falls_back_within_the_bound_and_is_not_retried(
    pair: ReplicaPair, make_collector: Any
) -> None:
    """TCP up, no answer: one read finds it out, within its share; the next ones skip it."""
    proxy, proxied = FreezableProxy.for_dsn(pair.standby_dsn)
    try:
        threads_before = len(replica_threads())
        collector = make_collector(read_dsn=proxied, timeout=2.0)
        insert(pair.primary.dsn, ROWS)
        pair.wait_caught_up()
        count, postgres = summary_of(collector)
        assert (count, postgres["reads_from"]) == (3, "replica")
        proxy.freeze()
        try:
            count, postgres = summary_of(collector)
            assert count == 3
            assert postgres["reads_from"] == "primary"
            assert postgres["replica_status"] == "down"
            # Its share of the 2 s: the other half is the primary's.
            assert "no answer within 1 s" in postgres["replica_error"]
            connections = proxy.accepted
            # Checks are due every 0.05 s, but the replica's thread is still
            # held by the read it never answered: nothing more is sent its way.
            for _ in range(5):
                count, again = summary_of(collector)
                assert count == 3 and again["reads_from"] == "primary"
                assert again["replica_error"] == postgres["replica_error"]
                assert collector.endpoints(1)["reads_from"] == "primary"
            assert proxy.accepted == connections
            assert len(replica_threads()) <= threads_before + 1
        finally:
            proxy.thaw()
        wait_until(
            "reads to return to the thawed standby",
            lambda: summary_of(collector)[1]["reads_from"] == "replica",
        )
    finally:
        proxy.close()


def test_a_server_that_is_no_standby_is_not_read(dsn: str) -> None:
    """A read_dsn naming a primary (a promoted standby, a mistake): reads stay on the primary."""
    with MetricsCollector(dsn, read_dsn=dsn, **FAST) as collector:
        count, postgres = summary_of(collector)
        assert count == 0
        assert postgres["reads_from"] == "primary"
        assert postgres["replica_status"] == "not_standby"
        assert "not a standby" in postgres["replica_error"]


class Item:
    def on_get(self, req: falcon.Request, resp: falcon.Response, item_id: str) -> None:
        resp.media = {"id": item_id}


def test_read_routes_through_waitress_read_the_standby_then_fall_back(
    pair: ReplicaPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    monkeypatch.setenv("MNEMO_OBS_READ_DSN", pair.standby_dsn)  # the deployment's way
    app = falcon.App()
    app.add_route("/items/{item_id}", Item())
    # A lag bound no slow run reaches while replay is paused below.
    handle = install(
        app, dsn=pair.primary.dsn, redis_url="", cache_ttl=0, logs=False, replica_max_lag=3600
    )
    try:
        with serving(app) as port:
            pair.pause_replay()
            for item in ("a", "b"):
                assert get(port, f"/items/{item}")[0] == 200
            assert handle.writer.flush(10)
            status, _, body = get(port, f"{PREFIX}/endpoints")
            assert status == 200, body
            assert body["reads_from"] == "replica"
            assert body["endpoints"] == []  # the standby has not applied them
            status, _, summary = get(port, f"{PREFIX}/summary")
            assert summary["postgres"]["reads_from"] == "replica"
            assert summary["api"]["request_count"] == 0
            pair.resume_replay()
            assert pair.standby is not None
            pair.standby.stop_server()
            status, _, body = get(port, f"{PREFIX}/endpoints")
            assert status == 200 and body["reads_from"] == "primary"
            assert body["endpoints"][0]["request_count"] == 2
            for route in ("timeseries", "slowest"):
                status, _, body = get(port, f"{PREFIX}/{route}")
                assert status == 200 and body["reads_from"] == "primary", body
            status, _, summary = get(port, f"{PREFIX}/summary")
            assert summary["postgres"]["replica_status"] == "down"
            assert summary["api"]["request_count"] == 2
    finally:
        assert handle.close(10)


def test_cli_reads_from_the_replica(
    pair: ReplicaPair, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    insert(pair.primary.dsn, ROWS)
    pair.wait_caught_up()
    base = ["--dsn", pair.primary.dsn, "--read-dsn", pair.standby_dsn]
    assert main(["summary", *base]) == 0
    postgres = json.loads(capsys.readouterr().out)["postgres"]
    assert postgres["reads_from"] == "replica" and postgres["replica_status"] == "ok"
    assert main(["endpoints", *base]) == 0
    out = capsys.readouterr().out
    assert "read from the replica" in out and "/r" in out
    monkeypatch.setenv("MNEMO_OBS_READ_DSN", pair.standby_dsn)
    assert main(["endpoints", "--json", "--dsn", pair.primary.dsn]) == 0
    assert json.loads(capsys.readouterr().out)["reads_from"] == "replica"


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"read_dsn": "host=127.0.0.1 port"}, "read_dsn"),
        ({"replica_max_lag": 0}, "replica_max_lag"),
        ({"replica_max_lag": float("nan")}, "replica_max_lag"),
        ({"replica_fallback": "yes"}, "replica_fallback"),
    ],
)
def test_bad_replica_settings_are_refused(options: dict[str, Any], named: str) -> None:
    read_dsn = options.pop("read_dsn", "")
    with pytest.raises(ConfigurationError, match=named):
        install(falcon.App(), dsn="host=127.0.0.1 port=1", read_dsn=read_dsn, **options)
