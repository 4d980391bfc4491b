"""A real PostgreSQL and a real ``mlflow server`` on loopback, started in a folder and stopped after:
what the tracking bench measures against, and what the tests that need them start.

PostgreSQL comes from the distribution's package (``initdb`` / ``pg_ctl``, on ``$PATH`` or in Debian's
``/usr/lib/postgresql/<version>/bin``). ``initdb`` refuses to run as root: as root, both run as the
``postgres`` user in a folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    """``name`` (initdb, pg_ctl, createdb) on ``$PATH``, else in Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return debian[-1] if debian else None


class Postgres:
    """A throwaway PostgreSQL cluster on a free loopback port, with database ``mlflow`` (trust auth on
    loopback only: it lives as long as a test). ``max_connections`` leaves room for a server's pool."""

    def __init__(self, max_connections: int = 400):
        initdb, self.pg_ctl, createdb = (postgres_bin(n) for n in ("initdb", "pg_ctl", "createdb"))
        if not (initdb and self.pg_ctl and createdb):
            raise FileNotFoundError(
                "initdb / pg_ctl / createdb not found (Debian: apt-get install postgresql)"
            )
        # Its own folder under /tmp: the postgres user cannot enter root's private temporary folders.
        self.folder = Path(tempfile.mkdtemp(prefix="gan_ray_pg_"))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self._run(initdb, "-D", str(self.data), "-U", "mlflow", "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={max_connections}"
        )
        self._run(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "postgres.log"),
            "-o",
            options,
            "-w",
            "start",
        )
        self._run(createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow", "mlflow")
        self.uri = f"postgresql://mlflow@127.0.0.1:{self.port}/mlflow"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class MlflowServer:
    """``mlflow server`` on ``backend_uri``, its artifacts in ``folder``, on a loopback port that stays
    the same across :meth:`kill` and :meth:`start` (a restarted server is the same address)."""

    def __init__(
        self,
        backend_uri: str,
        folder: Path,
        *,
        workers: int = 4,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        port: int | None = None,
    ):
        self.backend_uri, self.folder, self.workers = backend_uri, Path(folder), workers
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        if pool_size is not None:
            self.env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = str(pool_size)
        if max_overflow is not None:
            self.env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] = str(max_overflow)
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> MlflowServer:
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow)] if mlflow.exists() else [sys.executable, "-m", "mlflow"]
        command += [
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            (self.folder / "artifacts").as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (the server writes to it while it lives)
        self.process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=log, start_new_session=True, cwd=self.folder
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited: see {self.folder / 'server.log'}")
            try:
                if requests.get(self.uri + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.kill()
        raise TimeoutError(f"mlflow server on {self.uri} not up in {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL to the server and its workers: an outage, not a shutdown."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self.process = None
