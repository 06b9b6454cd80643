"""``mnemo-obs endpoints`` and ``mnemo-obs rollup``, in-process and as a subprocess."""

from __future__ import annotations

import json
import time

import pytest

from mnemo_obs import MetricsWriter
from mnemo_obs.cli import main

from .test_cli import run_cli
from .test_rollups import query


def write(dsn: str, service: str | None = None) -> None:
    with MetricsWriter(dsn, service=service, maintain_rollups=False) as writer:
        for i in range(40):
            writer.submit_request(
                time.time(), f"/e{i % 2}", 10.0 + i, "GET", 500 if i % 10 == 0 else 200, "t" * 36
            )


def test_endpoints_prints_a_table_and_json(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    write(dsn)
    assert main(["endpoints", "--dsn", dsn]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["endpoint", "method", "requests"]
    assert [line.split()[0] for line in out[1:3]] == ["/e1", "/e0"]  # more time first
    assert "2 endpoints" in out[-1] and "percentiles exact" in out[-1]
    assert main(["endpoints", "--dsn", dsn, "--json", "--limit", "1"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert [e["endpoint"] for e in view["endpoints"]] == ["/e1"]
    assert main(["endpoints", "--dsn", dsn, "--json"]) == 0
    errors = {
        e["endpoint"]: e["error_count"] for e in json.loads(capsys.readouterr().out)["endpoints"]
    }
    assert errors == {"/e0": 4, "/e1": 0}


def test_services_from_the_environment_and_the_filter(
    dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNEMO_OBS_SERVICE", "billing")
    write(dsn)
    monkeypatch.delenv("MNEMO_OBS_SERVICE")
    write(dsn, service="")
    assert main(["endpoints", "--dsn", dsn, "--json", "--service", "billing"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert {e["service"] for e in view["endpoints"]} == {"billing"}
    assert sum(e["request_count"] for e in view["endpoints"]) == 40


def test_rollup_rebuild_as_a_subprocess(dsn: str) -> None:
    query(
        dsn,
        "INSERT INTO metrics (timestamp, metric_type, metric_name, value, metadata) "
        "SELECT now() - i * interval '10 seconds', 'api', '/x', 1, '{\"method\": \"GET\"}' "
        "FROM generate_series(1, 100) AS i",
    )
    proc = run_cli("rollup", "--rebuild", "--hours", "2", "--dsn", dsn)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("rebuilt the rollups of 100 rows in ")
    assert "rows/s" in proc.stdout
    assert query(dsn, "SELECT sum(count) FROM metrics_rollups WHERE width = 60 AND level = 0") == [
        (100,)
    ]
    proc = run_cli("rollup", "--compact", "--dsn", dsn)
    assert proc.returncode == 0 and "compacted" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [["rollup"], ["rollup", "--hours", "2", "--compact"], ["endpoints", "--limit", "0"]],
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*args, "--dsn", "postgresql://x@127.0.0.1/x"])
    assert info.value.code == 2
