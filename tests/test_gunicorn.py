"""gunicorn as docs/frameworks.md and docs/operations.md say, three workers of each class.

Every worker's rows arrive; no row is lost on SIGTERM (with the documented
``worker_exit`` hook, or without it: atexit) nor on a HUP reload; retention
purges run one at a time. The apps answer ``/pid`` with the worker's pid
and the request's trace id, so each row can be traced to the worker that
served it without adding anything to the rows.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import pytest

from .recording import readme_example, wait_until
from .reliability import db_trace_ids
from .servers import free_port
from .test_cli import ROOT
from .test_retention import insert_aged
from .test_retention_locks import another_purge_running

pytest.importorskip("gunicorn")

WORKERS = 3
DEADLINE = 60.0

FALCON_APP = """
import logging
import os

import falcon

import mnemo_obs

logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s: %(message)s")


class Pid:
    def on_get(self, req, resp):
        resp.media = {"pid": os.getpid(), "trace_id": req.context.trace_id}


app = falcon.App()
app.add_route("/pid", Pid())
monitoring = mnemo_obs.install(app, logs=False, **OPTIONS)
"""

FLASK_APP = """
import os

from flask import Flask, request

import mnemo_obs.flask

app = Flask(__name__)


@app.get("/pid")
def pid():
    return {"pid": os.getpid(), "trace_id": request.environ["mnemo_obs.trace_id"]}


mnemo_obs.flask.init_app(app, prefix="/monitoring")
"""

DJANGO_SETTINGS = """
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "mysite.urls"
SECRET_KEY = "only-for-the-tests"
"""

DJANGO_URLS = """
import os

from django.http import JsonResponse


def pid(request):
    return JsonResponse({"pid": os.getpid(), "trace_id": request.META["mnemo_obs.trace_id"]})


urlpatterns.append(path("pid", pid))
"""


class Gunicorn:
    """A gunicorn arbiter on a free port, its log in a file (a pipe could fill and block it)."""

    def __init__(
        self, tmp_path: Path, app: str, dsn: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "gunicorn.log"
        command = shutil.which("gunicorn", path=os.path.dirname(sys.executable)) or "gunicorn"
        with open(self.log_path, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                [
                    command,
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    str(WORKERS),
                    *args,
                    app,
                ],
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "PYTHONPATH": f"{tmp_path}:{ROOT}",
                    "MNEMO_OBS_DSN": dsn,
                    **(env or {}),
                },
            )

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def workers(self) -> set[int]:
        """The pids of the arbiter's live workers."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return set()
        alive = set()
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive.add(child.pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    def stop(self) -> int:
        """SIGTERM to the arbiter; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gunicorn did not stop:\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def gunicorn(tmp_path: Path, app: str, dsn: str, *args: str, **kwargs: Any) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp_path, app, dsn, *args, **kwargs)
    try:
        wait_until("gunicorn to answer", lambda: _pid(server.port), timeout=DEADLINE)
        wait_until("every worker to start", lambda: len(server.workers()) == WORKERS)
        yield server
    finally:
        server.kill()


def _pid(port: int) -> tuple[int, str] | None:
    """GET /pid on a fresh connection: (worker pid, trace id), or None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/pid", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        answer = json.loads(body)
        assert answer["trace_id"] == resp.getheader("X-Trace-ID")
        return answer["pid"], answer["trace_id"]
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


class PidLoad:
    """Threads asking /pid on fresh connections (so every worker gets some) until stopped."""

    def __init__(self, port: int, concurrency: int = 6) -> None:
        self.answered: dict[str, int] = {}  # trace id -> the pid that answered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(port,), daemon=True)
            for _ in range(concurrency)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, port: int) -> None:
        while not self._stop.is_set():
            answer = _pid(port)
            if answer is None:
                self._stop.wait(0.01)  # a server going away: not a tight loop
                continue
            with self._lock:
                self.answered[answer[1]] = answer[0]

    def pids(self) -> set[int]:
        with self._lock:
            return set(self.answered.values())

    def count(self) -> int:
        with self._lock:
            return len(self.answered)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)
        return dict(self.answered)


def check_every_answer_has_its_row(dsn: str, answered: dict[str, int], pids: set[int]) -> None:
    rows = set(db_trace_ids(dsn))
    missing = set(answered) - rows
    assert not missing, f"{len(missing)} answered requests have no row"
    assert {answered[trace] for trace in rows if trace in answered} == pids


HOOKS = {
    "mnemo_obs.gunicorn": lambda: readme_example("gunicorn-conf"),
    "own hook": lambda: readme_example("gunicorn-own-hook"),
    "atexit": lambda: "",
}


@pytest.mark.parametrize(
    ("worker_class", "hook", "preload"),
    [
        *((worker_class, hook, False) for worker_class in ("sync", "gthread") for hook in HOOKS),
        ("sync", "mnemo_obs.gunicorn", True),
    ],
)
def test_every_worker_writes_and_sigterm_loses_no_row(
    dsn: str, tmp_path: Path, worker_class: str, hook: str, preload: bool
) -> None:
    (tmp_path / "myapp.py").write_text(FALCON_APP.replace("**OPTIONS", ""), encoding="utf-8")
    (tmp_path / "gunicorn.conf.py").write_text(HOOKS[hook](), encoding="utf-8")
    args: tuple[str, ...] = ("--config", "gunicorn.conf.py", "--worker-class", worker_class)
    if worker_class == "gthread":  # (with sync, threads > 1 would switch to gthread)
        args += ("--threads", "2")
    if preload:
        args += ("--preload",)
    with gunicorn(tmp_path, "myapp:app", dsn, *args) as server:
        workers = server.workers()
        assert len(workers) == WORKERS
        load = PidLoad(server.port)
        try:
            wait_until("every worker to answer", lambda: load.pids() == workers)
            wait_until("rows in the table", lambda: len(db_trace_ids(dsn)) >= 200)
            status = server.stop()
        finally:
            answered = load.stop()
    assert status == 0, server.log()
    assert "Exception during worker exit" not in server.log()
    check_every_answer_has_its_row(dsn, answered, workers)


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_a_hup_reload_loses_no_row(dsn: str, tmp_path: Path, worker_class: str) -> None:
    (tmp_path / "myapp.py").write_text(FALCON_APP.replace("**OPTIONS", ""), encoding="utf-8")
    (tmp_path / "gunicorn.conf.py").write_text(readme_example("gunicorn-conf"), encoding="utf-8")
    args = ("--config", "gunicorn.conf.py", "--worker-class", worker_class)
    with gunicorn(tmp_path, "myapp:app", dsn, *args) as server:
        old = server.workers()
        load = PidLoad(server.port)
        try:
            wait_until("every worker to answer", lambda: load.pids() == old)
            server.proc.send_signal(signal.SIGHUP)
            # New workers answer, the old ones finish what they had and exit.
            wait_until("the old workers to exit", lambda: not old & server.workers())
            new = server.workers()
            assert len(new) == WORKERS and not new & old
            wait_until("every new worker to answer", lambda: new <= load.pids())
            status = server.stop()
        finally:
            answered = load.stop()
    assert status == 0, server.log()
    check_every_answer_has_its_row(dsn, answered, old | new)


@pytest.mark.parametrize(("framework", "worker_class"), [("flask", "gthread"), ("django", "sync")])
def test_flask_and_django_under_gunicorn(
    dsn: str, tmp_path: Path, framework: str, worker_class: str
) -> None:
    if framework == "flask":
        pytest.importorskip("flask")
        (tmp_path / "myapp.py").write_text(FLASK_APP, encoding="utf-8")
        target, env, endpoint, summary = "myapp:app", {}, "/pid", "/monitoring/summary"
    else:
        pytest.importorskip("django")
        site = tmp_path / "mysite"
        site.mkdir()
        (site / "__init__.py").write_text("", encoding="utf-8")
        settings = readme_example("django-settings") + DJANGO_SETTINGS
        (site / "settings.py").write_text(settings, encoding="utf-8")
        (site / "urls.py").write_text(readme_example("django-urls") + DJANGO_URLS, "utf-8")
        wsgi = "from django.core.wsgi import get_wsgi_application\n\napp = get_wsgi_application()\n"
        (site / "wsgi.py").write_text(wsgi, encoding="utf-8")
        target, endpoint, summary = "mysite.wsgi:app", "/pid", "/monitoring/summary"
        env = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    (tmp_path / "gunicorn.conf.py").write_text(readme_example("gunicorn-conf"), encoding="utf-8")
    args = ("--config", "gunicorn.conf.py", "--worker-class", worker_class)
    with gunicorn(tmp_path, target, dsn, *args, env=env) as server:
        workers = server.workers()
        load = PidLoad(server.port)
        try:
            wait_until("every worker to answer", lambda: load.pids() == workers)
            wait_until("rows in the table", lambda: len(db_trace_ids(dsn)) >= 100)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            try:
                conn.request("GET", summary)
                resp = conn.getresponse()
                body = json.loads(resp.read())
            finally:
                conn.close()
            assert resp.status == 200 and body["api"]["request_count"] >= 100
            status = server.stop()
        finally:
            answered = load.stop()
    assert status == 0, server.log()
    check_every_answer_has_its_row(dsn, answered, workers)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT DISTINCT metric_name FROM metrics WHERE metric_type = 'api'")
            assert {row[0] for row in cur.fetchall()} == {endpoint}
    finally:
        conn.close()


RETENTION = (
    '{"retention_days": 30, "retention_options": {"first_delay": 0, "interval": 0.2, '
    '"jitter": 0, "lock_timeout": 0.05, "batch_size": 20}}'
)
DELETED = re.compile(r"^(\d+) mnemo_obs\.retention: retention: deleted (\d+) rows", re.M)
SKIPPED = re.compile(r"^(\d+) mnemo_obs\.retention: retention: another purge is running", re.M)


def test_retention_in_every_worker_purges_one_at_a_time(dsn: str, tmp_path: Path) -> None:
    old = insert_aged(dsn, [31 + i / 10_000 for i in range(4000)])
    app = FALCON_APP.replace("**OPTIONS", f"**{RETENTION}")
    (tmp_path / "myapp.py").write_text(app, encoding="utf-8")
    (tmp_path / "gunicorn.conf.py").write_text(readme_example("gunicorn-conf"), encoding="utf-8")
    args = ("--config", "gunicorn.conf.py", "--worker-class", "sync")
    with ExitStack() as held:
        held.enter_context(another_purge_running(dsn))  # as from another host, or cron
        with gunicorn(tmp_path, "myapp:app", dsn, *args) as server:
            workers = server.workers()
            # Each worker's scheduler tries, finds the purge lock taken, skips.
            wait_until(
                "every worker to skip its purge",
                lambda: {int(pid) for pid in SKIPPED.findall(server.log())} == workers,
            )
            held.close()
            # Released: the workers race for it every 0.2 s until the rows are gone.
            wait_until("the old rows to be purged", lambda: _count_aged(dsn) == 0)
            wait_until(
                "every worker to purge again",
                lambda: {int(pid) for pid, _ in DELETED.findall(server.log())} == workers,
            )
            assert server.stop() == 0, server.log()
    log = server.log()
    deleted = [int(count) for _pid, count in DELETED.findall(log)]
    # One purge took every row; every other one, before or after it, found none left:
    # no two purges ever split the work.
    assert sorted(deleted)[-1] == len(old) and sum(deleted) == len(old), deleted
    assert "Traceback" not in log, log


def _count_aged(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics WHERE metric_name = '/aged'")
            return int(cur.fetchone()[0])
    finally:
        conn.close()
