"""A throwaway PostgreSQL cluster for demos and tests, root-safe.

Wraps testing.postgresql (an optional dependency: ``pip install
'mnemo-obs[demo]'``). ``initdb`` and ``postgres`` refuse to run as root, and
CI runs as root, so when the current user is root the cluster's directory is
handed to an unprivileged account and both programs run under it through
``setpriv``, which execs in place: the pid we signal is the server's own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from typing import Any

from .errors import ConfigurationError

USER_ENV = "MNEMO_OBS_PG_USER"
BASE_ENV = "MNEMO_OBS_PG_BASE"
_DEFAULT_USERS = ("postgres", "nobody")


def _reachable_by_others(path: str) -> bool:
    """True when every directory from / down to ``path`` lets other users through."""
    path = os.path.realpath(path)
    while True:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _unprivileged_user() -> pwd.struct_passwd:
    names = [os.environ[USER_ENV]] if os.environ.get(USER_ENV) else list(_DEFAULT_USERS)
    for name in names:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise ConfigurationError(
        f"running as root, and no unprivileged user ({', '.join(names)}) exists to run "
        f"PostgreSQL: create one (useradd postgres) or set {USER_ENV}"
    )


def _base_dir_for(user: pwd.struct_passwd) -> str:
    candidates = [os.environ.get(BASE_ENV), tempfile.gettempdir(), "/var/tmp", "/dev/shm"]
    for parent in filter(None, candidates):
        if os.path.isdir(parent) and _reachable_by_others(parent):
            path = tempfile.mkdtemp(prefix="mnemo_obs-pg-", dir=parent)
            os.chown(path, user.pw_uid, user.pw_gid)
            return path
    raise ConfigurationError(
        f"running as root, and no directory that user {user.pw_name!r} can reach was "
        f"found for the cluster: set {BASE_ENV} to a directory it can enter"
    )


def start(**settings: Any) -> Any:
    """Start a throwaway cluster and return its ``testing.postgresql.Postgresql``.

    Call ``.url()`` for its DSN, ``.terminate()`` and ``.start()`` to stop and
    restart it on the same port, and ``.stop()`` to stop it and delete its
    files. Settings go to testing.postgresql (``port=``, ``postgres_args=``).

    Raises:
        ConfigurationError: testing.postgresql or the server binaries are
            missing, or (as root) no unprivileged user can run the server.
    """
    try:
        import testing.postgresql
    except ImportError:
        raise ConfigurationError(
            "the embedded PostgreSQL needs testing.postgresql: "
            "pip install 'mnemo-obs[demo]' (or pass a DSN)"
        ) from None
    for program in ("initdb", "postgres"):
        try:
            testing.postgresql.find_program(program, ["bin"])
        except RuntimeError:
            raise ConfigurationError(
                f"the embedded PostgreSQL needs the server binaries ({program} not found): "
                "install them (apt-get install postgresql) or pass a DSN"
            ) from None

    # Its own session (setsid execs in place, so the pid is still the
    # server's): a Ctrl-C in a terminal signals the whole foreground process
    # group, and the database must outlive the app's final flush into it.
    session = [setsid] if (setsid := shutil.which("setsid")) else []

    if os.geteuid() != 0:

        class _OwnSession(testing.postgresql.Postgresql):  # type: ignore[misc]
            def get_server_commandline(self) -> list[str]:
                return session + super().get_server_commandline()

        return _OwnSession(**settings)

    user = _unprivileged_user()
    prefix = [
        *session,
        shutil.which("setpriv") or "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--init-groups",
        "--",
    ]

    class _AsUser(testing.postgresql.Postgresql):  # type: ignore[misc]
        def initialize_database(self) -> None:
            # setup() made data/ and tmp/ as root: hand them over first.
            for root, dirs, files in os.walk(self.base_dir):
                for name in dirs + files:
                    os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)
            if os.path.exists(os.path.join(self.base_dir, "data", "PG_VERSION")):
                return
            args = [
                *prefix,
                self.initdb,
                "-D",
                os.path.join(self.base_dir, "data"),
                "--lc-messages=C",
                *self.settings["initdb_args"].split(),
            ]
            proc = subprocess.run(args, capture_output=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"initdb failed: {proc.stderr.decode(errors='replace')}")

        def get_server_commandline(self) -> list[str]:
            return prefix + super().get_server_commandline()

    settings.setdefault("base_dir", None)
    owned_dir = settings["base_dir"] is None
    if owned_dir:
        settings["base_dir"] = _base_dir_for(user)
    try:
        server = _AsUser(**settings)
    except Exception:
        if owned_dir:
            shutil.rmtree(settings["base_dir"], ignore_errors=True)
        raise
    # Given a base_dir, testing.postgresql keeps it; we made it, so it goes on stop().
    server._use_tmpdir = owned_dir
    return server
