"""Real Feast stores for the tests and the feature-store benchmark: PostgreSQL and Redis as plain processes.

PostgreSQL is Debian's (/usr/lib/postgresql/<major>/bin), Redis is Debian's `redis-server`; both are
installed with apt-get when missing (`make tools` does it first; `ensure_installed()` here does it for a
script run on its own). Each server listens on 127.0.0.1 on a free port, keeps its data in a fresh
directory and is stopped (its process group killed, the directory removed) by `stop()`: a session leaves
nothing running.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user (created by the
Debian package) through runuser; its data directory is made outside any 0700 pytest folder and owned by it.
Both servers ask for a password (scram-sha-256, Redis `requirepass`), so the tests exercise credentials
that reach Feast only as `${ENV}` references in feature_store.yaml.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "feast"
PG_DATABASE = "features"
PG_PASSWORD = "pg-test-secret"
REDIS_PASSWORD = "redis-test-secret"
PG_SYSTEM_USER = "postgres"
APT_PACKAGES = {"redis-server": "redis-server", "postgres": "postgresql"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _apt_install(package: str) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(f"{package} is missing and this is not root: apt-get install -y {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env, timeout=900)


def ensure_installed() -> None:
    """Install Debian's redis-server and postgresql when missing (what `make tools` does)."""
    if shutil.which("redis-server") is None:
        _apt_install(APT_PACKAGES["redis-server"])
    if pg_bin_dir() is None:
        _apt_install(APT_PACKAGES["postgres"])


def _wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout}s")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Postgres:
    """A PostgreSQL server on 127.0.0.1:<port>, database `features`, user `feast` with a password."""

    port: int = 0
    dir: Path | None = None
    proc: subprocess.Popen | None = None
    _as_user: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def sqlalchemy_url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def start(self) -> Postgres:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin): apt-get install -y postgresql")
        # Outside any 0700 folder (pytest's tmp is one), so the postgres user reaches it.
        self.dir = Path(tempfile.mkdtemp(prefix="mlplatform-pg-"))
        os.chmod(self.dir, 0o755)
        data, pwfile, log = self.dir / "data", self.dir / "pwfile", self.dir / "postgres.log"
        pwfile.write_text(PG_PASSWORD + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            for path in (self.dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", PG_SYSTEM_USER, "--"]
        subprocess.run(
            [*self._as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}",
             "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"],
            check=True, capture_output=True, text=True, timeout=120,
        )
        self.port = free_port()
        log_file = open(log, "ab")  # the server writes to it for its whole life; closed here once handed over
        if os.geteuid() == 0:
            os.chown(log, pwd.getpwnam(PG_SYSTEM_USER).pw_uid, -1)
        self.proc = subprocess.Popen(
            [*self._as_user, str(bin_dir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.dir), "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log_file.close()
        _wait_port(self.port, self.proc, "postgres", log)
        self._psql_ready(bin_dir)
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, PG_DATABASE],
            check=True, capture_output=True, text=True, timeout=60, env={**os.environ, "PGPASSWORD": PG_PASSWORD},
        )
        return self

    def _psql_ready(self, bin_dir: Path) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                                   capture_output=True, timeout=10)
            if ready.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError("postgres did not accept connections within 30s")

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # postgres: SIGINT is a fast shutdown
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


@dataclass
class Redis:
    """A redis-server on 127.0.0.1:<port> with `requirepass`, no persistence."""

    port: int = 0
    dir: Path | None = None
    proc: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        """Feast's redis connection string without the password (which comes from ${ENV})."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Redis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="mlplatform-redis-"))
        self.port = free_port()
        log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass", REDIS_PASSWORD,
             "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
             "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        log.touch()
        _wait_port(self.port, self.proc, "redis-server", log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["install"]:
        sys.exit("usage: stores.py install   (Debian's redis-server and postgresql, when missing)")
    ensure_installed()
