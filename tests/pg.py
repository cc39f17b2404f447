"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` + ``pg_ctl``.

The server runs from a temporary directory on a free loopback port (and a unix socket
in that directory), as the unprivileged ``postgres`` user when started by root
(PostgreSQL refuses to run as root), trusts local connections, and is stopped by PID.

    with postgres_server() as url:   # postgresql://postgres@127.0.0.1:<port>/recbento
        ...
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.procs import free_port

__all__ = ["PostgresMissing", "PostgresServer", "find_bin", "postgres_server", "with_schema"]

DATABASE = "recbento"


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries (or the user to run them as) are not installed."""


def find_bin(name: str) -> str:
    """``initdb`` / ``pg_ctl``: on PATH, else the newest Debian install."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if candidates:

        def version(path: str) -> tuple[int, ...]:
            return tuple(int(n) for n in re.findall(r"\d+", path.split("/")[3]))

        return max(candidates, key=version)
    raise PostgresMissing(
        f"PostgreSQL's {name} is neither on PATH nor under /usr/lib/postgresql/*/bin: the "
        "feedback-store tests need a real server. Install it (Debian/Ubuntu: "
        "apt-get install -y postgresql; .ci/run does this) and run the tests again."
    )


def _as_postgres() -> tuple[list[str], int | None, int | None]:
    """Command prefix, uid and gid to run the server with (root may not run it)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresMissing(
            "running as root, and there is no 'postgres' user to run the PostgreSQL "
            "server as (the postgresql package creates it; or: useradd --system postgres)"
        ) from exc
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"], user.pw_uid, user.pw_gid
    prefix = ["su", "postgres", "-s", "/bin/sh", "-c"]
    return prefix, user.pw_uid, user.pw_gid


def _run(prefix: list[str], cmd: list[str]) -> None:
    if prefix and prefix[0] == "su":  # su takes one shell string
        import shlex

        cmd = [shlex.join(cmd)]
    out = subprocess.run(prefix + cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory; :meth:`stop` / :meth:`start`."""

    def __init__(self, *, start_timeout: float = 60) -> None:
        self.start_timeout = start_timeout
        self._initdb, self._pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        self._prefix, uid, gid = _as_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="recbento-pg-"))
        self.pid: int | None = None
        self.port = free_port()
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        if uid is not None:
            os.chown(self.root, uid, gid)
            os.chown(self.sock, uid, gid)
        try:  # --no-sync: only initdb's own files skip fsync; the server runs with fsync on
            args = ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]
            _run(self._prefix, [self._initdb, "-D", str(self.data), *args])
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        """Start the server (creating the ``recbento`` database on the first start)."""
        import psycopg

        opts = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1"
        wait = str(int(self.start_timeout))
        log = str(self.root / "log")
        _run(self._prefix, [self._pg_ctl, "-D", str(self.data), "-l", log, "-o", opts, "-w",
                            "-t", wait, "start"])  # fmt: skip
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = "SELECT 1 FROM pg_database WHERE datname = %s"
            if not conn.execute(exists, [DATABASE]).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT) of the postmaster by PID; SIGKILL if it lingers."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=timeout)
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Run a private PostgreSQL server; yield the URL of its empty ``recbento`` database."""
    server = PostgresServer()
    try:
        server.start()
        yield server.url
    finally:
        server.remove()


def with_schema(url: str, schema: str | None = None) -> str:
    """Create a fresh schema in ``url``'s database; a URL whose tables live in it."""
    import psycopg

    schema = schema or f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"
