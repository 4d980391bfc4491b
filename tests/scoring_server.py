"""``mlflow models serve`` as a user starts it (``--env-manager local``, a loopback port), for the tests
that query a served model over HTTP. Stopped with its whole process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from process_tree import free_ports, signal_sessions


class ScoringServer:
    """The scoring server of ``model_uri`` (resolved through ``tracking_uri``), its log in ``folder``."""

    def __init__(self, model_uri: str, tracking_uri: str, folder: Path):
        self.model_uri, self.folder = model_uri, Path(folder)
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        bin_dir = str(Path(sys.executable).parent)
        # The server runs `uvicorn` from PATH: the venv's, as an activated venv would give it.
        self.env = {
            **os.environ,
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> ScoringServer:
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [str(mlflow), "models", "serve", "-m", self.model_uri, "--env-manager", "local"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.folder / "serve.log", "ab")  # noqa: SIM115 (the server writes to it while it lives)
        self.process = subprocess.Popen(
            command, env=self.env, stdout=log, stderr=log, start_new_session=True, cwd=self.folder
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited:\n{self.log()}")
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"mlflow models serve not up on {self.url} in {timeout_s:.0f} s:\n{self.log()}")

    def log(self) -> str:
        path = self.folder / "serve.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def invoke(self, body: str | dict) -> requests.Response:
        """POST ``body`` (JSON text, or an object to encode) to ``/invocations``."""
        data = body if isinstance(body, str) else None
        return requests.post(
            self.url + "/invocations",
            data=data,
            json=None if data is not None else body,
            headers={"Content-Type": "application/json"},
            timeout=120,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        left = signal_sessions([self.process.pid], signal.SIGTERM)
        if left:
            signal_sessions([self.process.pid], signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None
