"""A private PostgreSQL cluster for the tests: initdb in a temporary directory, its own free port
on loopback, its unix socket in that directory, fsync on (a 2xx means durable there too), small
buffers (the machine is shared), stopped and removed at the end of the test session.

Debian's `postgresql` package provides the programs. Missing, the tests that need it skip with a
one-line reason on a developer's machine and fail under `CI=true` (`.ci/run` installs it), like
the other real peers (tests/support/peers.py).

PostgreSQL refuses to run as root, and CI runs as root: then the cluster runs as `nobody`
(through `setpriv`), and its directory belongs to `nobody`; otherwise as the current user.
Access is by password (scram-sha-256) so that the tests exercise the way alertd is given one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.peers import in_ci
from tests.support.proc import free_port

PACKAGE = "postgresql"
USER = "alertd_test"
# Tests make a database each; a few daemons hold a handful of connections each.
MAX_CONNECTIONS = 60


def find_bin() -> Path | None:
    """The directory of initdb and postgres: Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("postgres")
    return Path(found).parent if found and shutil.which("initdb") else None


def require_bin() -> Path:
    found = find_bin()
    if found is not None:
        return found
    reason = f"PostgreSQL not found: apt-get install {PACKAGE}"
    if in_ci():
        pytest.fail(f"CI=true needs PostgreSQL; {reason}", pytrace=False)
    pytest.skip(reason)


def _as_server_user() -> list[str]:
    """The command prefix that runs a program as the cluster's user (nobody when we are root)."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@dataclass
class PgCluster:
    """A running cluster. `database()` makes a fresh database and returns its URL."""

    bin: Path
    root: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    user: str = USER
    _count: int = 0

    def url(self, database: str = "postgres", *, password: bool = False) -> str:
        """postgresql://user@host:port/database; with `password`, the password in it too
        (for the tests' own connections; alertd is given it by env or file instead)."""
        auth = f"{self.user}:{self.password}" if password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql over TCP (as alertd connects) and return its unaligned output."""
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql],
            env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"psql failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def database(self, prefix: str = "t") -> str:
        """A new, empty database; its URL (without the password)."""
        self._count += 1
        name = f"{prefix}_{os.getpid()}_{self._count}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: checkpoint, then exit
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(bin_dir: Path) -> PgCluster:
    """initdb a new cluster in a temporary directory and start it; raises if it cannot."""
    # Not pytest's tmp_path: its base is private to root, and `nobody` must reach the directory.
    root = Path(tempfile.mkdtemp(prefix="alertd-pg-"))
    data = root / "data"
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    prefix = _as_server_user()
    if prefix:
        os.chmod(root, 0o700)
        for path in (root, pwfile):
            os.chown(path, _nobody_uid(), -1)
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
         "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pwfile.unlink()
    port = free_port()
    log = open(root / "server.log", "ab")  # noqa: SIM115 (kept open by the server process)
    process = subprocess.Popen(
        [*prefix, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
         "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on",
         "-c", "shared_buffers=16MB", "-c", f"max_connections={MAX_CONNECTIONS}",
         "-c", "max_wal_size=256MB", "-c", "log_min_messages=warning"],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    log.close()
    cluster = PgCluster(bin=bin_dir, root=root, port=port, password=password, process=process)
    deadline = time.monotonic() + 60
    while True:
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", str(root), "-p", str(port)], check=False
        )
        if ready.returncode == 0:
            return cluster
        if process.poll() is not None or time.monotonic() > deadline:
            text = cluster.log()
            cluster.stop()
            raise RuntimeError(f"PostgreSQL did not start:\n{text[-2000:]}")
        time.sleep(0.1)


def _nobody_uid() -> int:
    import pwd

    return pwd.getpwnam("nobody").pw_uid
