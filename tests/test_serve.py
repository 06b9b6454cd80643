"""``mnemo-obs serve`` as a real subprocess, and ``mnemo-obs summary``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest

from mnemo_obs.cli import main

from .servers import RedisServer, free_port
from .test_api_collector import insert
from .test_cli import ROOT, run_cli

STARTUP_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


@contextmanager
def serving(
    *args: str, env: dict[str, str], new_session: bool = False
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``mnemo-obs serve`` on a free port; yield it once /health answers; kill on failure."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnemo_obs", "serve", "--port", str(port), "--threads", "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        start_new_session=new_session,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert proc.poll() is None, f"serve exited early: {proc.communicate()}"
            try:
                if get(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "serve did not answer /health in time"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def stop(
    proc: subprocess.Popen[str], sig: signal.Signals, group: bool = False
) -> tuple[int, str, str]:
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"serve did not exit after {sig.name}: {out}\n{err}")
    return proc.returncode, out, err


def count_api_rows(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics WHERE metric_type = 'api'")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_serve_records_summarises_and_flushes_on_sigterm(dsn: str, redis_url: str) -> None:
    with serving("--dsn", dsn, "--token", "tok", env={"MNEMO_OBS_REDIS_URL": redis_url}) as (
        proc,
        base,
    ):
        assert get(f"{base}/items/7")[0] == 200
        assert get(f"{base}/items/4242")[0] == 404
        assert get(f"{base}/boom")[0] == 500
        assert get(f"{base}/slow?ms=5")[0] == 200
        assert get(f"{base}/api/monitoring/advanced/summary")[0] == 401
        # Rows reach the table within the writer's flush interval (1 s): poll, bounded.
        deadline = time.monotonic() + 20
        while count_api_rows(dsn) < 4:
            assert time.monotonic() < deadline, "rows never reached the table"
            time.sleep(0.1)
        status, body = get(f"{base}/api/monitoring/advanced/summary?period_hours=2", token="tok")
        assert status == 200
        summary = json.loads(body)
        assert summary["api"]["request_count"] == 4
        assert summary["api"]["error_count"] == 2
        assert summary["redis"]["connected"] is True
        assert summary["writer"]["written"] == 4
        # These last ones sit in the writer's queue until shutdown flushes them.
        for i in range(20):
            assert get(f"{base}/items/{i}")[0] == 200
        code, out, err = stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert "stopped: 24 rows written, 0 dropped" in out
    assert "/items/42" in out and "Authorization: Bearer" in out
    assert count_api_rows(dsn) == 24


def test_serve_without_dsn_runs_an_embedded_database_and_survives_ctrl_c(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"MNEMO_OBS_DSN": "", "MNEMO_OBS_REDIS_URL": "", "MNEMO_OBS_TOKEN": ""}
    with serving(env=env, new_session=True) as (proc, base):
        for i in range(5):
            assert get(f"{base}/items/{i}")[0] == 200
        # Ctrl-C in a terminal signals the whole process group, the database
        # included: it must still be there for the final flush.
        code, out, err = stop(proc, signal.SIGINT, group=True)
    assert code == 0, err
    assert "throwaway PostgreSQL" in out
    assert "stopped: 5 rows written, 0 dropped" in out


def test_serve_on_a_busy_port_exits_2(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--dsn", dsn, "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port"),
        (["--threads", "0"], "--threads"),
        (["--max-queue", "0"], "--max-queue"),
    ],
)
def test_serve_bad_flags_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_serve_unreachable_database_exits_2_with_one_line() -> None:
    # Falcon 3.1 imports cgi, which warns under PYTHONDEVMODE (tox sets it); users see no warning.
    proc = run_cli(
        "serve",
        "--dsn",
        f"postgresql://postgres@127.0.0.1:{free_port()}/x",
        "--port",
        "0",
        env={"PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot connect to PostgreSQL" in lines[0], proc.stderr


def test_summary_prints_json(dsn: str, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    insert(dsn, [(10.0, 200, 1.0), (20.0, 500, 100.0)])
    assert main(["summary", "--dsn", dsn, "--redis-url", redis_url]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["api"]["request_count"] == 1
    assert summary["redis"]["connected"] is True
    assert main(["summary", "--dsn", dsn, "--period-hours", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["api"]["request_count"] == 2


def test_summary_from_environment_as_a_subprocess(dsn: str, redis_url: str) -> None:
    proc = run_cli("summary", env={"MNEMO_OBS_DSN": dsn, "MNEMO_OBS_REDIS_URL": redis_url})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["redis"]["connected"] is True


@pytest.mark.parametrize("period", ["0", "-1", "nan", "inf", "721", "abc"])
def test_summary_bad_period_exits_2(period: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["summary", "--period-hours", period])
    assert info.value.code == 2
    assert "--period-hours" in capsys.readouterr().err


def test_summary_unreachable_servers_exit_2(
    dsn: str, owned_redis: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["summary", "--dsn", f"postgresql://postgres@127.0.0.1:{free_port()}/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot connect to PostgreSQL" in err[0]
    owned_redis.stop_server()
    assert main(["summary", "--dsn", dsn, "--redis-url", owned_redis.url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach Redis" in err[0]
    assert main(["summary", "--dsn", dsn, "--redis-url", "nope://x"]) == 2
    assert "invalid Redis URL" in capsys.readouterr().err


def test_help_lists_the_new_commands(capsys: pytest.CaptureFixture[str]) -> None:
    for command, flags in (
        (
            "serve",
            ["--dsn", "--redis-url", "--token", "--host", "--port", "--threads", "--max-queue"],
        ),
        ("summary", ["--dsn", "--redis-url", "--period-hours"]),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert all(flag in out for flag in flags)


def test_the_readme_curl_block_pasted_at_once_shows_its_counts(dsn: str) -> None:
    """The README's block: four requests, then at once the summary that counts them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("pasted at once:\n\n```sh\n", 1)[1].split("```", 1)[0]
    urls = [re.findall(r"http://\S+?(?='|\s|$)", line)[0] for line in block.splitlines()]
    assert len(urls) == 5 and urls[-1].endswith("/api/monitoring/advanced/summary")
    with serving("--dsn", dsn, env={}) as (proc, base):
        paths = [url.replace("http://127.0.0.1:8001", "") for url in urls]
        statuses = [get(f"{base}{path}")[0] for path in paths[:-1]]
        assert statuses == [200, 404, 500, 200]
        status, body = get(f"{base}{paths[-1]}")
        assert status == 200
        assert json.loads(body)["api"]["request_count"] == 4
        stop(proc, signal.SIGTERM)
