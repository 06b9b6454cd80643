"""``mnemo-obs purge``: in-process through main() and as a real subprocess."""

from __future__ import annotations

import io

import pytest

from mnemo_obs.cli import _Progress, main

from .servers import free_port
from .test_cli import run_cli
from .test_retention import OLD_AGES, RECENT_AGES, ids_left, insert_aged


def test_purge_deletes_old_rows_and_says_how_many(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_aged(dsn, OLD_AGES)
    recent = insert_aged(dsn, RECENT_AGES)
    assert main(["purge", "--days", "30", "--batch-size", "4", "--dsn", dsn]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"deleted {len(OLD_AGES)} rows older than 30 days in ")
    assert out.rstrip().endswith(" s")
    assert ids_left(dsn) == set(recent)


def test_purge_dry_run_and_type(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    insert_aged(dsn, OLD_AGES, "api")
    insert_aged(dsn, OLD_AGES[:3], "system")
    before = ids_left(dsn)
    assert main(["purge", "--days", "30", "--dry-run", "--dsn", dsn]) == 0
    assert capsys.readouterr().out.startswith(f"would delete {len(OLD_AGES) + 3} rows older")
    assert ids_left(dsn) == before
    assert main(["purge", "--days", "29.5", "--type", "system", "--dsn", dsn]) == 0
    assert capsys.readouterr().out.startswith("deleted 3 system rows older than 29.5 days")
    assert len(ids_left(dsn)) == len(OLD_AGES)


@pytest.mark.parametrize("days", ["0", "-1", "-0.5", "thirty", "nan", "inf", "", "1e9"])
def test_bad_days_exit_2_and_delete_nothing(
    dsn: str, capsys: pytest.CaptureFixture[str], days: str
) -> None:
    insert_aged(dsn, [40])
    with pytest.raises(SystemExit) as info:
        main(["purge", f"--days={days}", "--dsn", dsn])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --days: must be a positive number of days" in err
    assert repr(days) in err
    assert len(ids_left(dsn)) == 1


def test_days_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["purge", "--dsn", "host=nowhere"])
    assert info.value.code == 2
    assert "--days" in capsys.readouterr().err


def test_unknown_type_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["purge", "--days", "30", "--type", "http"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --type: invalid choice: 'http'" in err
    for name in ("api", "redis", "postgres", "system", "cache"):
        assert f"'{name}'" in err


@pytest.mark.parametrize("size", ["0", "-3", "1.5", "many"])
def test_bad_batch_size_exits_2(capsys: pytest.CaptureFixture[str], size: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["purge", "--days", "30", f"--batch-size={size}"])
    assert info.value.code == 2
    assert "argument --batch-size: must be a positive integer" in capsys.readouterr().err


def test_progress_prints_rows_and_rate_at_most_once_per_second() -> None:
    now = [100.0]
    out = io.StringIO()
    progress = _Progress(out, every=1.0, clock=lambda: now[0])
    for deleted, at in [(10_000, 100.4), (20_000, 100.9), (30_000, 101.5), (40_000, 102.0)]:
        now[0] = at
        progress(deleted)
    now[0] = 102.6
    progress(52_000)
    assert out.getvalue().splitlines() == [
        "  30,000 rows deleted so far (20,000 rows/s)",
        "  52,000 rows deleted so far (20,000 rows/s)",
    ]


def test_purge_subprocess_via_env(dsn: str) -> None:
    insert_aged(dsn, OLD_AGES)
    recent = insert_aged(dsn, RECENT_AGES)
    proc = run_cli("purge", "--days", "30", env={"MNEMO_OBS_DSN": dsn})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"deleted {len(OLD_AGES)} rows older than 30 days in ")
    assert ids_left(dsn) == set(recent)


def test_purge_subprocess_errors_exit_2() -> None:
    proc = run_cli(
        "purge", "--days", "30", "--dsn", f"postgresql://postgres@127.0.0.1:{free_port()}/x"
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mnemo-obs: error: cannot connect to PostgreSQL at 127.0.0.1:")
    proc = run_cli("purge", "--days", "0", "--dsn", "host=nowhere")
    assert proc.returncode == 2
    assert "argument --days" in proc.stderr and "Traceback" not in proc.stderr
