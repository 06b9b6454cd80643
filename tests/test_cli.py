"""The mnemo-obs command line, in-process through main() and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest

from mnemo_obs.cli import main

from .servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mnemo_obs ARGS`` as a separate process, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mnemo_obs", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=False,
    )


def test_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "migrate" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["migrate", "--help"])
    out = capsys.readouterr().out
    assert "--dsn" in out and "MNEMO_OBS_DSN" in out


def test_migrate_against_refused_port_exits_2_with_one_line() -> None:
    proc = run_cli("migrate", "--dsn", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mnemo-obs: error: cannot connect to PostgreSQL at 127.0.0.1:")
    assert "Traceback" not in proc.stderr


def test_migrate_with_bad_dsn_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--dsn", "not a dsn at all"]) == 2
    err = capsys.readouterr().err
    assert "invalid DSN" in err and len(err.strip().splitlines()) == 1


def test_migrate_without_dsn_names_the_env_var(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MNEMO_OBS_DSN", raising=False)
    assert main(["migrate"]) == 2
    assert "MNEMO_OBS_DSN" in capsys.readouterr().err


def test_migrate_without_rights_exits_2(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS mnemo_obs_reader")
        cur.execute("CREATE ROLE mnemo_obs_reader LOGIN")
    try:
        params = psycopg2.extensions.parse_dsn(dsn)
        params["user"] = "mnemo_obs_reader"
        params.pop("password", None)
        # A database without the table, where this role may not create one.
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS mnemo_obs_norights")
            cur.execute("CREATE DATABASE mnemo_obs_norights")
        params["dbname"] = "mnemo_obs_norights"
        reader_dsn = " ".join(f"{k}='{v}'" for k, v in params.items())
        assert main(["migrate", "--dsn", reader_dsn]) == 2
        err = capsys.readouterr().err
        assert "migration failed" in err and "permission denied" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS mnemo_obs_norights WITH (FORCE)")
            cur.execute("DROP ROLE IF EXISTS mnemo_obs_reader")
        conn.close()


def test_migrate_against_good_dsn_exits_0_via_env(dsn: str) -> None:
    proc = run_cli("migrate", env={"MNEMO_OBS_DSN": dsn})
    assert proc.returncode == 0, proc.stderr
    assert "schema up to date" in proc.stdout
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('metrics') IS NOT NULL")
            assert cur.fetchone() == (True,)
    finally:
        conn.close()
