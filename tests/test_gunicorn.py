"""gunicorn as docs/operations.md says: no row lost on SIGTERM, with or without worker_exit.

Its workers exit normally on a graceful stop, so the atexit hook already
writes what is queued; the documented worker_exit hook closes with a bound
of your choosing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .recording import wait_until
from .reliability import db_trace_ids, load
from .servers import free_port
from .test_cli import ROOT
from .test_front_door import _answers

pytest.importorskip("gunicorn")

APP = """
import falcon

import mnemo_obs


class Items:
    def on_get(self, req, resp, item_id):
        resp.media = {"id": item_id}


app = falcon.App()
app.add_route("/items/{item_id}", Items())
monitoring = mnemo_obs.install(app)
"""


def recipe() -> str:
    """The gunicorn.conf.py block of docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    block = text.split("# gunicorn.conf.py\n", 1)[1].split("```", 1)[0]
    return "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())


@pytest.mark.parametrize("hook", [True, False], ids=["worker_exit", "atexit"])
@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_sigterm_under_load_loses_no_row(
    dsn: str, tmp_path: Path, worker_class: str, hook: bool
) -> None:
    (tmp_path / "myapp.py").write_text(APP, encoding="utf-8")
    (tmp_path / "gunicorn.conf.py").write_text(recipe() if hook else "", encoding="utf-8")
    port = free_port()
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
    proc = subprocess.Popen(
        [
            gunicorn,
            "--config",
            str(tmp_path / "gunicorn.conf.py"),
            "--workers",
            "2",
            "--worker-class",
            worker_class,
            "--bind",
            f"127.0.0.1:{port}",
            "myapp:app",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}", "MNEMO_OBS_DSN": dsn},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until("gunicorn to answer", lambda: _answers(f"{base}/health"), timeout=60)
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
