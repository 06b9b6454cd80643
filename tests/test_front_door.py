"""What a new user meets first: the embed and serve() of the README, hints that lead to the fix."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon
import falcon.testing
import psycopg2
import pytest

from mnemo_obs import ConfigurationError, MetricsWriter
from mnemo_obs.cli import main
from mnemo_obs.installation import install
from mnemo_obs.retention import purge

from .recording import FAST_RETRY, UUID4, readme_example, wait_until
from .reliability import db_trace_ids, load
from .servers import ExistingPostgres, OwnedPostgres, free_port
from .test_cli import ROOT, run_cli
from .test_serve import get

SUMMARY = "/api/monitoring/advanced/summary"


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


def hello_app() -> falcon.App:
    app = falcon.App()
    app.add_route("/hello", Hello())
    return app


@pytest.fixture
def unmigrated(pg_server: OwnedPostgres | ExistingPostgres) -> Iterator[str]:
    """A fresh database of the session's server, with no metrics table."""
    params = psycopg2.extensions.parse_dsn(pg_server.dsn)
    name = f"unmigrated_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(pg_server.dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        params["dbname"] = name
        yield " ".join(f"{key}='{value}'" for key, value in params.items())
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


# -- a trace id on every response ----------------------------------------------


def test_the_monitoring_routes_answer_with_a_trace_id(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`curl -I .../summary | grep X-Trace-ID`, as the reference system checks."""
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    app = hello_app()
    handle = install(app, dsn=dsn, redis_url=redis_url)
    try:
        client = falcon.testing.TestClient(app)
        for path in (SUMMARY, "/health"):
            for method in (client.simulate_get, client.simulate_head):
                assert UUID4.fullmatch(method(path).headers["X-Trace-ID"])
        assert handle.writer.flush(10)
        assert handle.writer.stats()["enqueued"] == 0  # never recorded
    finally:
        handle.close(10)


# -- forgetting mnemo-obs migrate ------------------------------------------------


def test_a_missing_table_says_what_to_do_once(
    unmigrated: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    hint = "run `mnemo-obs migrate`, or pass create_schema=True"
    with caplog.at_level(logging.WARNING, logger="mnemo_obs"):
        writer = MetricsWriter(unmigrated, **FAST_RETRY)
        try:
            writer.record("system", "x", 1.0)
            wait_until("a few failed attempts", lambda: writer.stats()["last_error"])
            assert not writer.flush(0.5)  # several retries meanwhile
            assert hint in writer.stats()["last_error"]
        finally:
            writer.close(0.1)
    warnings = [r.getMessage() for r in caplog.records if r.name == "mnemo_obs.writer"]
    assert len([m for m in warnings if hint in m]) == 1, warnings
    assert main(["summary", "--dsn", unmigrated]) == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 1
    assert main(["purge", "--days", "30", "--dsn", unmigrated]) == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 1


def test_create_schema_applies_it_at_the_first_connection(
    unmigrated: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    app = hello_app()
    handle = install(app, dsn=unmigrated, redis_url=redis_url, create_schema=True, cache_ttl=0)
    try:
        client = falcon.testing.TestClient(app)
        # The summary first (no row yet): it applies the schema itself.
        assert client.simulate_get(SUMMARY).json["api"]["request_count"] == 0
        assert client.simulate_get("/hello").status_code == 200
        assert client.simulate_get(SUMMARY).json["api"]["request_count"] == 1
    finally:
        assert handle.close(10)
    with MetricsWriter(unmigrated, create_schema=True) as writer:  # again: a no-op
        assert writer.record("system", "again", 1.0)
    assert purge(unmigrated, older_than_days=30) == 0


# -- SIGTERM-safe embedding ----------------------------------------------------


def test_the_documented_embed_loses_no_row_on_sigterm_under_load(dsn: str, tmp_path: Path) -> None:
    """The README's install() + mnemo_obs.serve() example, as a real process, stopped under load."""
    port = free_port()
    code = readme_example("install").replace("port=8000", f"port={port}")
    assert f"port={port}" in code and "mnemo_obs.serve(app" in code
    script = tmp_path / "app.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MNEMO_OBS_DSN": dsn},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until("the app to answer", lambda: _answers(f"{base}/health"), timeout=60)
        with load(f"{base}/items/7", concurrency=4) as client:
            wait_until("rows in the table", lambda: len(db_trace_ids(dsn)) >= 200)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
            report = client.finish(stop=True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    answered = {r[1] for r in report.results if r[0] == 200}
    assert len(answered) >= 200
    assert answered <= set(db_trace_ids(dsn))  # every answered request has its row


def _answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


def test_serve_refuses_outside_the_main_thread() -> None:
    import threading

    from mnemo_obs import serve

    errors: list[BaseException] = []

    def run() -> None:
        try:
            serve(hello_app(), port=0)
        except ConfigurationError as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert errors and "main thread" in str(errors[0])


# -- the summary right after the requests ----------------------------------------


def test_a_summary_right_after_requests_counts_them(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MNEMO_OBS_TOKEN", raising=False)
    app = hello_app()
    handle = install(app, dsn=dsn, redis_url=redis_url)  # default cache and flush interval
    try:
        client = falcon.testing.TestClient(app)
        for _ in range(5):
            client.simulate_get("/hello")
        assert client.simulate_get(SUMMARY).json["api"]["request_count"] == 5
    finally:
        handle.close(10)


# -- the command line ----------------------------------------------------------


def test_version_and_verbose_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    from mnemo_obs import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mnemo-obs {__version__}"
    port = free_port()
    assert main(["migrate", "-v", "--dsn", f"postgresql://x@127.0.0.1:{port}/x"]) == 2
    assert main(["-v", "migrate", "--dsn", f"postgresql://x@127.0.0.1:{port}/x"]) == 2


def test_summary_against_a_refused_database_prints_one_line() -> None:
    proc = run_cli("summary", "--dsn", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("mnemo-obs: error: ")


def test_serve_refuses_a_bad_token_before_starting_anything() -> None:
    proc = run_cli("serve", "--token", "bad token", "--port", "0")
    assert proc.returncode == 2
    assert "PostgreSQL" not in proc.stdout
    assert "--token: a token is letters, digits" in proc.stderr
    assert "None" not in proc.stderr


# -- install() mistakes ----------------------------------------------------------


def test_a_flask_app_is_pointed_at_the_wsgi_middleware(dsn: str) -> None:
    from flask import Flask

    with pytest.raises(ConfigurationError, match=r"flask\.Flask.*MetricsWSGIMiddleware"):
        install(Flask(__name__), dsn=dsn)

    def bare(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    with pytest.raises(ConfigurationError, match="MetricsWSGIMiddleware"):
        install(bare, dsn=dsn)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cache_ttl": -1}, "cache_ttl"),
        ({"skip_paths": "/x"}, re.escape("a list of paths, such as ['/x']")),
        ({"skip_paths": None}, "a list of paths"),
        ({"skip_prefixes": 3}, "a list of paths"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": "30"}, "retention_days"),
        ({"create_schema": "yes"}, "create_schema"),
        ({"summary_timeout": 0}, "timeout"),
    ],
)
def test_install_mistakes_are_configuration_errors(
    dsn: str, kwargs: dict[str, Any], message: str
) -> None:
    app = hello_app()
    with pytest.raises(ConfigurationError, match=message):
        install(app, dsn=dsn, **kwargs)
    assert not app._unprepared_middleware  # nothing added


def test_retention_days_takes_what_purge_takes(dsn: str) -> None:
    handle = install(hello_app(), dsn=dsn, retention_days=0.5)
    try:
        assert handle.retention is not None
    finally:
        handle.close(5)
